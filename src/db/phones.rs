//! Phones and their lines: create, replace, find, list with filters, delete.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use crate::domain::{MacAddress, PhoneSpec, Settings};

/// A line as the API shows it: the password never, only whether one is set.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct LineOut {
    /// Line key position, from 1.
    pub position: i16,
    /// SIP user / extension.
    pub number: String,
    /// Digest user name.
    pub auth_name: String,
    /// Whether a password is stored (the password itself is write-only).
    pub password_set: bool,
    /// Display name.
    pub display_name: Option<String>,
    /// Short label beside the key.
    pub short_label: Option<String>,
}

/// Configuration drift of a phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigState {
    /// Every per-device file it last fetched equals what it would get now.
    Current,
    /// At least one differs: the phone needs a resync.
    Outdated,
    /// It never fetched a per-device file.
    NeverFetched,
}

/// A stored phone.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Phone {
    /// MAC address, upper-case without separators.
    #[schema(value_type = String, example = "0004F2A1B2C3")]
    pub mac: MacAddress,
    /// Identifier.
    pub id: Uuid,
    /// Model number.
    pub model: String,
    /// Label.
    pub label: String,
    /// Description.
    pub description: String,
    /// Whether it is provisioned.
    pub enabled: bool,
    /// Lines in key order.
    pub lines: Vec<LineOut>,
    /// Per-phone overrides.
    pub settings: Settings,
    /// Whether the phone's last fetched per-device files equal what it would get now.
    pub config_state: ConfigState,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Change sequence number (the ETag).
    #[serde(skip)]
    pub revision: i64,
    /// Problems worth knowing that did not stop the write (e.g. a pinned firmware load not uploaded yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Filters for listing phones.
#[derive(Clone, Debug, Default)]
pub struct PhoneFilter {
    /// Only this model.
    pub model: Option<String>,
    /// Only enabled / disabled phones.
    pub enabled: Option<bool>,
    /// Case-insensitive substring of the label or a line number.
    pub search: Option<String>,
}

const COLUMNS: &str = "p.mac, p.id, p.model, p.label, p.description, p.enabled, p.settings, p.created_at, p.updated_at, p.revision";

fn from_row(r: &Row, lines: Vec<LineOut>) -> Phone {
    let mac: String = r.get(0);
    Phone {
        mac: MacAddress::from_bare_hex(&mac).unwrap_or_else(|| MacAddress::from_octets([0; 6])),
        id: r.get(1),
        model: r.get(2),
        label: r.get(3),
        description: r.get(4),
        enabled: r.get(5),
        lines,
        settings: Settings::from_json(r.get(6)).unwrap_or_default(),
        config_state: ConfigState::NeverFetched,
        created_at: r.get(7),
        updated_at: r.get(8),
        revision: r.get(9),
        warnings: Vec::new(),
    }
}

/// The owner and revision of a MAC, locking the row until the transaction ends.
pub async fn lock_owner(
    c: &impl GenericClient,
    mac: &MacAddress,
) -> Result<Option<(Uuid, i64)>, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached("SELECT tenant_id, revision FROM phones WHERE mac = $1 FOR UPDATE")
                .await?,
            &[&mac.to_string()],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Inserts a phone if its MAC is free; `false` when someone else took it first.
pub async fn insert(
    c: &impl GenericClient,
    tenant: Uuid,
    mac: &MacAddress,
    spec: &PhoneSpec,
) -> Result<bool, DbError> {
    let n = c
        .execute(
            &c.prepare_cached("INSERT INTO phones (mac, id, tenant_id, model, label, description, enabled, settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (mac) DO NOTHING").await?,
            &[
                &mac.to_string(),
                &Uuid::new_v4(),
                &tenant,
                &spec.model.as_str(),
                &spec.label,
                &spec.description,
                &spec.enabled,
                &spec.settings.to_json(),
            ],
        )
        .await?;
    if n == 1 {
        write_lines(c, mac, spec).await?;
    }
    Ok(n == 1)
}

/// Overwrites a phone's fields and lines. A line given without a password keeps the password stored for
/// the same position.
pub async fn replace(
    c: &impl GenericClient,
    mac: &MacAddress,
    spec: &PhoneSpec,
) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached("UPDATE phones SET model = $2, label = $3, description = $4, enabled = $5, settings = $6, updated_at = now()
         WHERE mac = $1").await?,
        &[&mac.to_string(), &spec.model.as_str(), &spec.label, &spec.description, &spec.enabled, &spec.settings.to_json()],
    )
    .await?;
    write_lines(c, mac, spec).await
}

/// The columns of `phone_lines` for `spec`'s lines, as arrays for one `unnest` insert. A line without a
/// password takes the one in `old` for its position.
#[derive(Default)]
struct LineArrays {
    positions: Vec<i16>,
    numbers: Vec<String>,
    auth: Vec<String>,
    passwords: Vec<Option<String>>,
    display: Vec<Option<String>>,
    short: Vec<Option<String>>,
}

impl LineArrays {
    fn of(spec: &PhoneSpec, old: &HashMap<i16, Option<String>>) -> LineArrays {
        let mut a = LineArrays::default();
        a.extend(spec, old);
        a
    }

    /// Appends `spec`'s lines (see [`LineArrays::of`]).
    fn extend(&mut self, spec: &PhoneSpec, old: &HashMap<i16, Option<String>>) {
        for (i, l) in spec.lines.iter().enumerate() {
            let pos = i as i16 + 1;
            self.positions.push(pos);
            self.numbers.push(l.number.clone());
            self.auth.push(l.auth_name.clone());
            self.passwords.push(
                l.password
                    .clone()
                    .or_else(|| old.get(&pos).cloned().flatten()),
            );
            self.display.push(l.display_name.clone());
            self.short.push(l.short_label.clone());
        }
    }

    /// The lines as the API shows them.
    fn out(&self) -> Vec<LineOut> {
        (0..self.positions.len())
            .map(|i| LineOut {
                position: self.positions[i],
                number: self.numbers[i].clone(),
                auth_name: self.auth[i].clone(),
                password_set: self.passwords[i].is_some(),
                display_name: self.display[i].clone(),
                short_label: self.short[i].clone(),
            })
            .collect()
    }
}

async fn write_lines(
    c: &impl GenericClient,
    mac: &MacAddress,
    spec: &PhoneSpec,
) -> Result<(), DbError> {
    let mac = mac.to_string();
    let old: HashMap<i16, Option<String>> = c
        .query(
            &c.prepare_cached(
                "DELETE FROM phone_lines WHERE phone_mac = $1 RETURNING position, password",
            )
            .await?,
            &[&mac],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let a = LineArrays::of(spec, &old);
    c.execute(
        &c.prepare_cached("INSERT INTO phone_lines (phone_mac, position, number, auth_name, password, display_name, short_label)
         SELECT $1, * FROM unnest($2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])").await?,
        &[&mac, &a.positions, &a.numbers, &a.auth, &a.passwords, &a.display, &a.short],
    )
    .await?;
    Ok(())
}

/// The statement of [`try_create_many`].
static CREATE_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH i AS (SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                               $7::boolean[], $8::jsonb[], $9::text[], $10::text[], $11::jsonb[])
           AS i(slug, id, mac, model, label, description, enabled, settings, subject, role, detail)),
 p AS (INSERT INTO phones (mac, id, tenant_id, model, label, description, enabled, settings)
       SELECT i.mac, i.id, t.id, i.model, i.label, i.description, i.enabled, i.settings
       FROM i JOIN tenants t ON t.slug = i.slug ORDER BY i.mac
       ON CONFLICT (mac) DO NOTHING
       RETURNING mac, id, model, label, description, enabled, settings, created_at, updated_at, revision,
                 tenant_id),
 l AS (INSERT INTO phone_lines (phone_mac, position, number, auth_name, password, display_name, short_label)
       SELECT u.mac, u.position, u.number, u.auth_name, u.password, u.display_name, u.short_label
       FROM unnest($12::text[], $13::smallint[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
            AS u(mac, position, number, auth_name, password, display_name, short_label)
       JOIN p ON p.mac = u.mac),
 a AS (INSERT INTO audit_events (subject, role, tenant_id, tenant_slug, action, target, detail)
       SELECT i.subject, i.role, p.tenant_id, i.slug, 'phone.create', p.mac, i.detail
       FROM p JOIN i ON i.mac = p.mac ORDER BY i.mac)
SELECT {COLUMNS} FROM p"
    )
});

/// A create for [`try_create_many`]: a new MAC for the tenant named `slug`, and its audit event
/// (`phone.create` by `actor` with `detail`).
#[derive(Clone, Debug)]
pub struct NewPhone {
    /// The tenant's slug.
    pub slug: String,
    /// The MAC, free in every tenant for the create to happen.
    pub mac: MacAddress,
    /// The phone.
    pub spec: PhoneSpec,
    /// Who creates it.
    pub actor: super::audit::Actor,
    /// The audit event's detail.
    pub detail: serde_json::Value,
}

/// Creates phones, their lines and their audit events in one statement, atomic on its own: one round trip
/// and one commit for all of them instead of a transaction of eight statements each. One result per
/// create, in order: `None` when that one was not written because there is no such tenant or the MAC
/// exists (in any tenant, or earlier in `creates`); the caller then takes its general path, which tells
/// those apart. The phones are inserted in MAC order, so two such statements never wait on each other in
/// opposite orders.
pub async fn try_create_many(
    c: &impl GenericClient,
    creates: &[NewPhone],
) -> Result<Vec<Option<Phone>>, DbError> {
    let macs: Vec<String> = creates.iter().map(|p| p.mac.to_string()).collect();
    let slugs: Vec<&str> = creates.iter().map(|p| p.slug.as_str()).collect();
    let ids: Vec<Uuid> = creates.iter().map(|_| Uuid::new_v4()).collect();
    let models: Vec<&str> = creates.iter().map(|p| p.spec.model.as_str()).collect();
    let labels: Vec<&str> = creates.iter().map(|p| p.spec.label.as_str()).collect();
    let descriptions: Vec<&str> = creates
        .iter()
        .map(|p| p.spec.description.as_str())
        .collect();
    let enabled: Vec<bool> = creates.iter().map(|p| p.spec.enabled).collect();
    let settings: Vec<serde_json::Value> =
        creates.iter().map(|p| p.spec.settings.to_json()).collect();
    let subjects: Vec<&str> = creates.iter().map(|p| p.actor.subject.as_str()).collect();
    let roles: Vec<&str> = creates.iter().map(|p| p.actor.role.as_str()).collect();
    let details: Vec<&serde_json::Value> = creates.iter().map(|p| &p.detail).collect();
    // Every create's lines in one set of arrays, each line with its phone's MAC.
    let mut lines = LineArrays::default();
    let mut line_macs: Vec<&str> = Vec::new();
    for (p, mac) in creates.iter().zip(&macs) {
        lines.extend(&p.spec, &HashMap::new());
        line_macs.resize(lines.positions.len(), mac);
    }
    let rows = c
        .query(
            &c.prepare_cached(&CREATE_MANY).await?,
            &[
                &slugs,
                &ids,
                &macs,
                &models,
                &labels,
                &descriptions,
                &enabled,
                &settings,
                &subjects,
                &roles,
                &details,
                &line_macs,
                &lines.positions,
                &lines.numbers,
                &lines.auth,
                &lines.passwords,
                &lines.display,
                &lines.short,
            ],
        )
        .await?;
    let mut created: HashMap<String, &Row> = rows.iter().map(|r| (r.get(0), r)).collect();
    Ok(creates
        .iter()
        .zip(&macs)
        .map(|(p, mac)| {
            // A MAC given twice is one row, answered for its first create.
            let row = created.remove(mac.as_str())?;
            Some(from_row(
                row,
                LineArrays::of(&p.spec, &HashMap::new()).out(),
            ))
        })
        .collect())
}

/// The lines of phone `p` as one JSON column, `[[position, number, auth_name, password set, display_name,
/// short_label], …]` in key order (NULL when it has none), read by [`lines_from_json`]. One aggregate and
/// one sort: measured with pgbench against six `array_agg(… ORDER BY position)`, ~25% more statements/s.
const LINES_JSON: &str = "(SELECT json_agg(json_build_array(l.position, l.number, l.auth_name,
        l.password IS NOT NULL, l.display_name, l.short_label) ORDER BY l.position)
     FROM phone_lines l WHERE l.phone_mac = p.mac)";

type LineTuple = (i16, String, String, bool, Option<String>, Option<String>);

/// The lines selected by [`LINES_JSON`] in column `at`.
fn lines_from_json(r: &Row, at: usize) -> Vec<LineOut> {
    let lines: Option<Json<Vec<LineTuple>>> = r.get(at);
    lines
        .map(|Json(v)| v)
        .unwrap_or_default()
        .into_iter()
        .map(
            |(position, number, auth_name, password_set, display_name, short_label)| LineOut {
                position,
                number,
                auth_name,
                password_set,
                display_name,
                short_label,
            },
        )
        .collect()
}

/// Finds a tenant's phone with its lines, in one statement.
pub async fn find(
    c: &impl GenericClient,
    tenant: Uuid,
    mac: &MacAddress,
) -> Result<Option<Phone>, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached(&format!(
                "SELECT {COLUMNS}, {LINES_JSON} FROM phones p WHERE p.tenant_id = $1 AND p.mac = $2"
            ))
            .await?,
            &[&tenant, &mac.to_string()],
        )
        .await?;
    Ok(row.map(|r| from_row(&r, lines_from_json(&r, 10))))
}

/// What a read of one phone by tenant slug finds.
#[derive(Debug)]
pub enum Lookup {
    /// No tenant has this slug.
    NoTenant,
    /// The tenant exists but has no phone with this MAC.
    NoPhone,
    /// The phone, and the SHA-256 of the last served copy of each file it fetched: (file name, sha256).
    Found(Box<Phone>, Vec<(String, Vec<u8>)>),
}

/// Reads a phone of the tenant named `slug`, its lines and its last served files (`phone_files_served`):
/// the tenant, the phone and what it last got in one statement and one round trip (the API's `GET`).
pub async fn lookup(
    c: &impl GenericClient,
    slug: &str,
    mac: &MacAddress,
) -> Result<Lookup, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached(&format!(
                "SELECT {COLUMNS}, {LINES_JSON}, f.files, f.shas
                 FROM tenants t
                 LEFT JOIN phones p ON p.tenant_id = t.id AND p.mac = $2
                 LEFT JOIN LATERAL (SELECT array_agg(s.file_name) AS files, array_agg(s.sha256) AS shas
                     FROM phone_files_served s WHERE s.tenant_id = t.id AND s.phone_mac = p.mac) f ON true
                 WHERE t.slug = $1"
            ))
            .await?,
            &[&slug, &mac.to_string()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Lookup::NoTenant);
    };
    // The tenant's row with no phone joined: every phone column is NULL.
    if row.get::<_, Option<String>>(0).is_none() {
        return Ok(Lookup::NoPhone);
    }
    let phone = from_row(&row, lines_from_json(&row, 10));
    let files: Option<Vec<String>> = row.get(11);
    let shas: Option<Vec<Vec<u8>>> = row.get(12);
    let served = files
        .unwrap_or_default()
        .into_iter()
        .zip(shas.unwrap_or_default())
        .collect();
    Ok(Lookup::Found(Box::new(phone), served))
}

/// Lists a tenant's phones by MAC after `after`, filtered.
pub async fn list(
    c: &impl GenericClient,
    tenant: Uuid,
    filter: &PhoneFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Phone>, DbError> {
    let search = filter.search.as_ref().map(|s| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let rows = c
        .query(
            &c.prepare_cached(&format!(
                "SELECT {COLUMNS}, {LINES_JSON} FROM phones p WHERE p.tenant_id = $1
                   AND p.mac > coalesce($2::text, '')
                   AND ($3::text IS NULL OR p.model = $3)
                   AND ($4::boolean IS NULL OR p.enabled = $4)
                   AND ($5::text IS NULL OR p.label ILIKE $5 OR EXISTS (
                        SELECT 1 FROM phone_lines l WHERE l.phone_mac = p.mac AND l.number ILIKE $5))
                 ORDER BY p.mac LIMIT $6"
            )).await?,
            &[&tenant, &after, &filter.model, &filter.enabled, &search, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| from_row(r, lines_from_json(r, 10)))
        .collect())
}

/// Deletes a phone.
pub async fn delete(c: &impl GenericClient, mac: &MacAddress) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached("DELETE FROM phones WHERE mac = $1")
            .await?,
        &[&mac.to_string()],
    )
    .await?;
    Ok(())
}

/// Every phone of `tenant` with the number of its first line (lowest position), by MAC.
pub async fn first_line_numbers(
    c: &impl GenericClient,
    tenant: Uuid,
) -> Result<Vec<(String, Option<String>)>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT p.mac, (SELECT l.number FROM phone_lines l WHERE l.phone_mac = p.mac
                            ORDER BY l.position LIMIT 1)
             FROM phones p WHERE p.tenant_id = $1 ORDER BY p.mac",
            )
            .await?,
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
