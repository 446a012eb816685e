//! Bulk writes for phone imports: read what exists for a set of MACs, and write many phones and their
//! lines with a few statements per chunk (`unnest` arrays), inside the caller's transaction.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::DbError;
use crate::domain::{MacAddress, PhoneSpec};

/// An applied import that wrote at least this many phones refreshes the phone tables' statistics at once
/// ([`analyze`]).
pub const ANALYZE_AFTER: u64 = 1_000;

/// Refreshes PostgreSQL's statistics of `phones` and `phone_lines`. Autovacuum does it too, but only on
/// its next round (`autovacuum_naptime`, a minute by default): until then tables a bulk import grew have
/// no statistics (a new database) or stale ones, and the planner, taking `phone_mac = ANY($1)` for a
/// third of the table, reads every line for each snapshot delta's few changed phones (measured right
/// after a 10,000-phone import under a stream of API creates: 183 sequential scans of `phone_lines` in
/// 5 s, 3,606 creates/s; with statistics none, 4,580/s).
pub async fn analyze(c: &impl GenericClient) -> Result<(), DbError> {
    c.batch_execute("ANALYZE phones, phone_lines").await?;
    Ok(())
}

/// A stored line, password included (for "keep the stored password" and change detection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLine {
    /// Line number (SIP user).
    pub number: String,
    /// Digest user.
    pub auth_name: String,
    /// Digest password.
    pub password: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Short label.
    pub short_label: Option<String>,
}

/// A stored phone as the import compares it.
#[derive(Clone, Debug)]
pub struct StoredPhone {
    /// Owner.
    pub tenant: Uuid,
    /// Model.
    pub model: String,
    /// Label.
    pub label: String,
    /// Description.
    pub description: String,
    /// Enabled.
    pub enabled: bool,
    /// Settings as stored.
    pub settings: serde_json::Value,
    /// Lines in key order.
    pub lines: Vec<StoredLine>,
}

/// The stored phones among `macs` (any tenant), locked until the transaction ends.
pub async fn lock_existing(
    c: &impl GenericClient,
    macs: &[String],
) -> Result<HashMap<String, StoredPhone>, DbError> {
    let mut out: HashMap<String, StoredPhone> = HashMap::new();
    for chunk in macs.chunks(10_000) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for r in c
            .query(
                &c.prepare_cached("SELECT mac, tenant_id, model, label, description, enabled, settings FROM phones WHERE mac = ANY($1) FOR UPDATE").await?,
                &[&chunk],
            )
            .await?
        {
            out.insert(
                r.get(0),
                StoredPhone {
                    tenant: r.get(1),
                    model: r.get(2),
                    label: r.get(3),
                    description: r.get(4),
                    enabled: r.get(5),
                    settings: r.get(6),
                    lines: Vec::new(),
                },
            );
        }
        for r in c
            .query(
                &c.prepare_cached("SELECT phone_mac, number, auth_name, password, display_name, short_label FROM phone_lines
                 WHERE phone_mac = ANY($1) ORDER BY phone_mac, position").await?,
                &[&chunk],
            )
            .await?
        {
            let mac: String = r.get(0);
            if let Some(p) = out.get_mut(&mac) {
                p.lines.push(StoredLine {
                    number: r.get(1),
                    auth_name: r.get(2),
                    password: r.get(3),
                    display_name: r.get(4),
                    short_label: r.get(5),
                });
            }
        }
    }
    Ok(out)
}

/// One phone to write, with its lines' final passwords resolved.
pub struct PhoneWrite<'a> {
    /// MAC.
    pub mac: MacAddress,
    /// The phone.
    pub spec: &'a PhoneSpec,
    /// Final password per line (given, or kept from the stored line of the same position).
    pub passwords: Vec<Option<String>>,
}

/// Inserts or replaces phones of `tenant` (never one of another tenant: such a row is not written and
/// is counted out of the returned number). Lines are replaced as a whole.
pub async fn write_many(
    c: &impl GenericClient,
    tenant: Uuid,
    phones: &[PhoneWrite<'_>],
) -> Result<u64, DbError> {
    let mut written = 0;
    for chunk in phones.chunks(5_000) {
        let macs: Vec<String> = chunk.iter().map(|p| p.mac.to_string()).collect();
        let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::new_v4()).collect();
        let models: Vec<&str> = chunk.iter().map(|p| p.spec.model.as_str()).collect();
        let labels: Vec<&str> = chunk.iter().map(|p| p.spec.label.as_str()).collect();
        let descriptions: Vec<&str> = chunk.iter().map(|p| p.spec.description.as_str()).collect();
        let enabled: Vec<bool> = chunk.iter().map(|p| p.spec.enabled).collect();
        let settings: Vec<serde_json::Value> =
            chunk.iter().map(|p| p.spec.settings.to_json()).collect();
        written += c
            .execute(
                &c.prepare_cached("INSERT INTO phones (mac, id, tenant_id, model, label, description, enabled, settings)
                 SELECT u.mac, u.id, $1, u.model, u.label, u.description, u.enabled, u.settings
                 FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::boolean[], $8::jsonb[])
                      AS u(mac, id, model, label, description, enabled, settings)
                 ON CONFLICT (mac) DO UPDATE SET model = EXCLUDED.model, label = EXCLUDED.label,
                      description = EXCLUDED.description, enabled = EXCLUDED.enabled, settings = EXCLUDED.settings,
                      updated_at = now()
                 WHERE phones.tenant_id = EXCLUDED.tenant_id").await?,
                &[&tenant, &macs, &ids, &models, &labels, &descriptions, &enabled, &settings],
            )
            .await?;
        // Driven by the chunk's MACs, one by one through the keys. The former `phone_mac = ANY($1) AND
        // phone_mac IN (SELECT mac FROM phones WHERE tenant_id = $2)` was planned, once statistics said
        // the tenant had few phones, as a loop over every phone of the tenant with the whole array searched
        // in the index each time: 12.3 s for one 5,000-row chunk into a tenant of 50,000 phones (this
        // statement 17-26 ms).
        c.execute(
            &c.prepare_cached(
                "DELETE FROM phone_lines l USING unnest($1::text[]) AS m (mac), phones p
                 WHERE p.mac = m.mac AND p.tenant_id = $2 AND l.phone_mac = p.mac",
            )
            .await?,
            &[&macs, &tenant],
        )
        .await?;
        let mut l_mac = Vec::new();
        let mut l_pos: Vec<i16> = Vec::new();
        let mut l_number = Vec::new();
        let mut l_auth = Vec::new();
        let mut l_password: Vec<Option<&str>> = Vec::new();
        let mut l_display: Vec<Option<&str>> = Vec::new();
        let mut l_short: Vec<Option<&str>> = Vec::new();
        for (p, mac) in chunk.iter().zip(&macs) {
            for (i, line) in p.spec.lines.iter().enumerate() {
                l_mac.push(mac.as_str());
                l_pos.push(i as i16 + 1);
                l_number.push(line.number.as_str());
                l_auth.push(line.auth_name.as_str());
                l_password.push(p.passwords.get(i).and_then(|x| x.as_deref()));
                l_display.push(line.display_name.as_deref());
                l_short.push(line.short_label.as_deref());
            }
        }
        c.execute(
            &c.prepare_cached("INSERT INTO phone_lines (phone_mac, position, number, auth_name, password, display_name, short_label)
             SELECT u.* FROM unnest($1::text[], $2::smallint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                  AS u(phone_mac, position, number, auth_name, password, display_name, short_label)
             WHERE EXISTS (SELECT 1 FROM phones p WHERE p.mac = u.phone_mac AND p.tenant_id = $8)").await?,
            &[&l_mac, &l_pos, &l_number, &l_auth, &l_password, &l_display, &l_short, &tenant],
        )
        .await?;
    }
    Ok(written)
}
