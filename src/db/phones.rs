//! Phones and their lines: create, replace, find, list with filters, delete.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
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
    from_row_at(r, 0, lines)
}

/// A phone from the [`COLUMNS`] of `r` starting at column `at`.
fn from_row_at(r: &Row, at: usize, lines: Vec<LineOut>) -> Phone {
    let mac: String = r.get(at);
    Phone {
        mac: MacAddress::from_bare_hex(&mac).unwrap_or_else(|| MacAddress::from_octets([0; 6])),
        id: r.get(at + 1),
        model: r.get(at + 2),
        label: r.get(at + 3),
        description: r.get(at + 4),
        enabled: r.get(at + 5),
        lines,
        settings: Settings::from_json(r.get(at + 6)).unwrap_or_default(),
        config_state: ConfigState::NeverFetched,
        created_at: r.get(at + 7),
        updated_at: r.get(at + 8),
        revision: r.get(at + 9),
        warnings: Vec::new(),
    }
}

async fn lines_of(
    c: &impl GenericClient,
    macs: &[String],
) -> Result<HashMap<String, Vec<LineOut>>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached("SELECT phone_mac, position, number, auth_name, password IS NOT NULL, display_name, short_label
             FROM phone_lines WHERE phone_mac = ANY($1) ORDER BY phone_mac, position").await?,
            &[&macs],
        )
        .await?;
    let mut out: HashMap<String, Vec<LineOut>> = HashMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(LineOut {
            position: r.get(1),
            number: r.get(2),
            auth_name: r.get(3),
            password_set: r.get(4),
            display_name: r.get(5),
            short_label: r.get(6),
        });
    }
    Ok(out)
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
    let mut positions = Vec::new();
    let mut numbers = Vec::new();
    let mut auth = Vec::new();
    let mut passwords: Vec<Option<String>> = Vec::new();
    let mut display = Vec::new();
    let mut short = Vec::new();
    for (i, l) in spec.lines.iter().enumerate() {
        let pos = i as i16 + 1;
        positions.push(pos);
        numbers.push(l.number.clone());
        auth.push(l.auth_name.clone());
        passwords.push(
            l.password
                .clone()
                .or_else(|| old.get(&pos).cloned().flatten()),
        );
        display.push(l.display_name.clone());
        short.push(l.short_label.clone());
    }
    c.execute(
        &c.prepare_cached("INSERT INTO phone_lines (phone_mac, position, number, auth_name, password, display_name, short_label)
         SELECT $1, * FROM unnest($2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])").await?,
        &[&mac, &positions, &numbers, &auth, &passwords, &display, &short],
    )
    .await?;
    Ok(())
}

/// The lines of phone `p` as one row: a `LATERAL` join giving each column as an array in key order
/// (NULLs when the phone has no lines), read by [`lines_from_arrays`].
const LINES_LATERAL: &str = "LEFT JOIN LATERAL (SELECT array_agg(l.position ORDER BY l.position) AS pos,
        array_agg(l.number ORDER BY l.position) AS num, array_agg(l.auth_name ORDER BY l.position) AS auth,
        array_agg(l.password IS NOT NULL ORDER BY l.position) AS pw,
        array_agg(l.display_name ORDER BY l.position) AS disp, array_agg(l.short_label ORDER BY l.position) AS short
     FROM phone_lines l WHERE l.phone_mac = p.mac) ln ON true";
const LINES_COLUMNS: &str = "ln.pos, ln.num, ln.auth, ln.pw, ln.disp, ln.short";

/// The lines selected by [`LINES_COLUMNS`], starting at column `at`.
fn lines_from_arrays(r: &Row, at: usize) -> Vec<LineOut> {
    let pos: Option<Vec<i16>> = r.get(at);
    let num: Option<Vec<String>> = r.get(at + 1);
    let auth: Option<Vec<String>> = r.get(at + 2);
    let pw: Option<Vec<bool>> = r.get(at + 3);
    let disp: Option<Vec<Option<String>>> = r.get(at + 4);
    let short: Option<Vec<Option<String>>> = r.get(at + 5);
    let (Some(pos), Some(num), Some(auth), Some(pw), Some(disp), Some(short)) =
        (pos, num, auth, pw, disp, short)
    else {
        return Vec::new();
    };
    pos.into_iter()
        .zip(num)
        .zip(auth)
        .zip(pw)
        .zip(disp)
        .zip(short)
        .map(
            |(((((position, number), auth_name), password_set), display_name), short_label)| {
                LineOut {
                    position,
                    number,
                    auth_name,
                    password_set,
                    display_name,
                    short_label,
                }
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
                "SELECT {COLUMNS}, {LINES_COLUMNS} FROM phones p {LINES_LATERAL}
                 WHERE p.tenant_id = $1 AND p.mac = $2"
            ))
            .await?,
            &[&tenant, &mac.to_string()],
        )
        .await?;
    Ok(row.map(|r| from_row(&r, lines_from_arrays(&r, 10))))
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

/// Reads a phone of the tenant named `slug`, its lines and its last served files: the tenant, the phone
/// and its fetch history in one statement and one round trip (the API's `GET` of a phone).
pub async fn lookup(
    c: &impl GenericClient,
    slug: &str,
    mac: &MacAddress,
) -> Result<Lookup, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached(&format!(
                "SELECT t.id, {COLUMNS}, {LINES_COLUMNS}, f.files, f.shas
                 FROM tenants t
                 LEFT JOIN phones p ON p.tenant_id = t.id AND p.mac = $2
                 {LINES_LATERAL}
                 LEFT JOIN LATERAL (SELECT array_agg(x.file_name) AS files, array_agg(x.sha256) AS shas FROM (
                     SELECT DISTINCT ON (e.file_name) e.file_name, e.sha256 FROM fetch_events e
                     WHERE e.tenant_id = t.id AND e.phone_mac = p.mac AND e.outcome = 'served'
                       AND e.sha256 IS NOT NULL
                     ORDER BY e.file_name, e.id DESC) x) f ON true
                 WHERE t.slug = $1"
            ))
            .await?,
            &[&slug, &mac.to_string()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Lookup::NoTenant);
    };
    if row.get::<_, Option<String>>(1).is_none() {
        return Ok(Lookup::NoPhone);
    }
    let phone = from_row_at(&row, 1, lines_from_arrays(&row, 11));
    let files: Option<Vec<String>> = row.get(17);
    let shas: Option<Vec<Vec<u8>>> = row.get(18);
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
                "SELECT {COLUMNS} FROM phones p WHERE p.tenant_id = $1
                   AND ($2::text IS NULL OR p.mac > $2)
                   AND ($3::text IS NULL OR p.model = $3)
                   AND ($4::boolean IS NULL OR p.enabled = $4)
                   AND ($5::text IS NULL OR p.label ILIKE $5 OR EXISTS (
                        SELECT 1 FROM phone_lines l WHERE l.phone_mac = p.mac AND l.number ILIKE $5))
                 ORDER BY p.mac LIMIT $6"
            )).await?,
            &[&tenant, &after, &filter.model, &filter.enabled, &search, &limit],
        )
        .await?;
    let macs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut lines = lines_of(c, &macs).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let mac: String = r.get(0);
            let l = lines.remove(&mac).unwrap_or_default();
            from_row(r, l)
        })
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
