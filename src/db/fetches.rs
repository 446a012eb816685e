//! Fetch events (what each phone fetched, when, and what it got) and discovered devices.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

/// One fetch event ready to store.
#[derive(Clone, Debug)]
pub struct NewFetch {
    /// When the request arrived.
    pub at: OffsetDateTime,
    /// Tenant.
    pub tenant: Uuid,
    /// `tftp` or `http`.
    pub protocol: &'static str,
    /// Source address.
    pub source: std::net::IpAddr,
    /// Source port.
    pub source_port: u16,
    /// Requested name.
    pub file_name: String,
    /// The phone, when the name is a per-device name of a known phone.
    pub phone: Option<String>,
    /// `served`, `not_found`, `refused` or `aborted`.
    pub outcome: &'static str,
    /// Bytes sent.
    pub bytes: i64,
    /// Duration, microseconds.
    pub duration_us: i64,
    /// SHA-256 of what was served.
    pub sha256: Option<Vec<u8>>,
    /// `phone_files_served` is known to hold this phone's file with this content already (the writer
    /// stored it lately): the event is stored, the row is not written again.
    pub served_known: bool,
}

/// A MAC seen asking for its files from a tenant's network, with no phone.
#[derive(Clone, Debug)]
pub struct Sighting {
    /// Tenant.
    pub tenant: Uuid,
    /// MAC, canonical.
    pub mac: String,
    /// When.
    pub at: OffsetDateTime,
    /// From where.
    pub source: std::net::IpAddr,
    /// What it asked for.
    pub file_name: String,
    /// Model family guessed from the name.
    pub model_guess: Option<&'static str>,
}

/// Records that batch `id` is being stored; false when it already was (a retry after a commit whose
/// outcome the writer could not see). Call in the batch's transaction.
pub async fn claim_batch(c: &impl GenericClient, id: Uuid) -> Result<bool, DbError> {
    let n = c
        .execute(
            &c.prepare_cached(
                "INSERT INTO fetch_batches (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
            )
            .await?,
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Which of `ids` were stored.
pub async fn stored_batches(
    c: &impl GenericClient,
    ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached("SELECT id FROM fetch_batches WHERE id = ANY($1)")
                .await?,
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Stores a batch of events with one binary COPY, in the caller's transaction.
pub async fn insert_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[NewFetch],
) -> Result<(), DbError> {
    use bytes::{BufMut, BytesMut};
    use futures_util::SinkExt;
    use tokio_postgres::types::{IsNull, ToSql, Type};
    const TYPES: [Type; 11] = [
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::TEXT,
        Type::INET,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::BYTEA,
    ];
    if events.is_empty() {
        return Ok(());
    }
    // The batch's tenants, locked against deletion until the batch commits (the foreign key's job, once
    // per batch instead of once per row). A tenant deleted since the request: its events go with it.
    let mut tenants: Vec<Uuid> = events.iter().map(|e| e.tenant).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let live: Vec<Uuid> = tx
        .query(
            &tx.prepare_cached("SELECT id FROM tenants WHERE id = ANY($1) FOR KEY SHARE")
                .await?,
            &[&tenants],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The whole batch in PostgreSQL's binary COPY format, sent as one message (tokio-postgres'
    // BinaryCopyInWriter flushes every 4 KiB, which woke the backend ~200 times a batch).
    let mut buf = BytesMut::with_capacity(32 + events.len() * 192);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension
    for e in events.iter().filter(|e| live.contains(&e.tenant)) {
        let port = i32::from(e.source_port);
        let values: [&(dyn ToSql + Sync); 11] = [
            &e.at,
            &e.tenant,
            &e.protocol,
            &e.source,
            &port,
            &e.file_name,
            &e.phone,
            &e.outcome,
            &e.bytes,
            &e.duration_us,
            &e.sha256,
        ];
        buf.put_i16(TYPES.len() as i16);
        for (value, ty) in values.iter().zip(&TYPES) {
            let at = buf.len();
            buf.put_i32(0);
            let len = match value
                .to_sql_checked(ty, &mut buf)
                .map_err(|e| DbError::Other(format!("encoding a fetch event: {e}")))?
            {
                IsNull::Yes => -1,
                IsNull::No => i32::try_from(buf.len() - at - 4)
                    .map_err(|_| DbError::Other("fetch event field too long".into()))?,
            };
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    buf.put_i16(-1);
    let sink = tx
        .copy_in(
            "COPY fetch_events (at, tenant_id, protocol, source, source_port, file_name, phone_mac, outcome, bytes, duration_us, sha256)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(buf.freeze()).await?;
    sink.finish().await?;
    record_served(tx, events.iter().filter(|e| live.contains(&e.tenant))).await
}

/// Of each (tenant, phone, per-device file) among the served `events` that `phone_files_served` is not
/// known to hold already, the copy to store: the newest by time, the later one of a tie (a batch is in the
/// order transfers ended). In key order. The writer's memory of what it stored uses the same choice.
pub fn newest_served<'a>(
    events: impl IntoIterator<Item = &'a NewFetch>,
) -> std::collections::BTreeMap<(Uuid, &'a str, &'a str), (&'a [u8], OffsetDateTime)> {
    let mut newest = std::collections::BTreeMap::new();
    for e in events {
        let (Some(mac), Some(sha), "served", false) =
            (&e.phone, &e.sha256, e.outcome, e.served_known)
        else {
            continue;
        };
        let slot = newest
            .entry((e.tenant, mac.as_str(), e.file_name.as_str()))
            .or_insert((sha.as_slice(), e.at));
        if slot.1 <= e.at {
            *slot = (sha.as_slice(), e.at);
        }
    }
    newest
}

/// Keeps `phone_files_served` (sql/V9) up to date with [`newest_served`] of `events`, unless a newer copy
/// is stored already. A copy whose content is already stored is skipped by a plain index lookup: phones
/// mostly fetch unchanged files again, and an update to the same content cost 4-9 µs a row against
/// 0.5-0.7 µs for the lookup (5,000-row batches). Keys are upserted in sorted order, so two writers'
/// batches lock rows in the same order and cannot deadlock.
async fn record_served<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    events: impl Iterator<Item = &'a NewFetch>,
) -> Result<(), DbError> {
    let newest = newest_served(events);
    if newest.is_empty() {
        return Ok(());
    }
    let n = newest.len();
    let (mut tenants, mut macs, mut files, mut shas, mut ats) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((tenant, mac, file), (sha, at)) in newest {
        tenants.push(tenant);
        macs.push(mac);
        files.push(file);
        shas.push(sha);
        ats.push(at);
    }
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO phone_files_served (tenant_id, phone_mac, file_name, sha256, at)
             SELECT u.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[])
                 AS u (tenant_id, phone_mac, file_name, sha256, at)
             LEFT JOIN phone_files_served o USING (tenant_id, phone_mac, file_name)
             WHERE o.sha256 IS DISTINCT FROM u.sha256
             ON CONFLICT (tenant_id, phone_mac, file_name) DO UPDATE
                SET sha256 = EXCLUDED.sha256, at = EXCLUDED.at
                WHERE phone_files_served.at <= EXCLUDED.at",
        )
        .await?,
        &[&tenants, &macs, &files, &shas, &ats],
    )
    .await?;
    Ok(())
}

/// Records sightings of unknown MACs (insert or refresh).
pub async fn upsert_sightings(
    c: &impl GenericClient,
    sightings: &[Sighting],
) -> Result<(), DbError> {
    for s in sightings {
        c.execute(
            &c.prepare_cached("INSERT INTO discovered_devices (tenant_id, mac, first_seen, last_seen, source, files, model_guess)
             SELECT $1, $2, $3, $3, $4, ARRAY[$5::text], $6 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1)
             ON CONFLICT (tenant_id, mac) DO UPDATE SET
                last_seen = GREATEST(discovered_devices.last_seen, EXCLUDED.last_seen),
                source = EXCLUDED.source,
                requests = discovered_devices.requests + 1,
                model_guess = coalesce(discovered_devices.model_guess, EXCLUDED.model_guess),
                files = CASE WHEN $5 = ANY(discovered_devices.files) OR cardinality(discovered_devices.files) >= 32
                             THEN discovered_devices.files ELSE discovered_devices.files || $5::text END").await?,
            &[&s.tenant, &s.mac, &s.at, &s.source, &s.file_name, &s.model_guess],
        )
        .await?;
    }
    Ok(())
}

/// A stored fetch event, as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FetchEvent {
    /// Sequential id.
    pub id: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `tftp` or `http`.
    pub protocol: String,
    /// Source address.
    #[schema(value_type = String)]
    pub source: std::net::IpAddr,
    /// Source port.
    pub source_port: i32,
    /// Requested name.
    pub file_name: String,
    /// `served`, `not_found`, `refused` or `aborted`.
    pub outcome: String,
    /// Bytes sent.
    pub bytes: i64,
    /// Duration in microseconds.
    pub duration_us: i64,
    /// SHA-256 (hex) of what was served.
    pub sha256: Option<String>,
}

fn fetch_from_row(r: &tokio_postgres::Row) -> FetchEvent {
    FetchEvent {
        id: r.get(0),
        at: r.get(1),
        protocol: r.get(2),
        source: r.get(3),
        source_port: r.get(4),
        file_name: r.get(5),
        outcome: r.get(6),
        bytes: r.get(7),
        duration_us: r.get(8),
        sha256: r.get::<_, Option<Vec<u8>>>(9).map(hex::encode),
    }
}

const FETCH_COLUMNS: &str =
    "id, at, protocol, source, source_port, file_name, outcome, bytes, duration_us, sha256";

/// A phone's fetch history, newest first (ordered by `-id`: see [`super::newest_first_before`]; with
/// `ORDER BY id DESC` PostgreSQL could read the primary key backwards past every other phone's events,
/// and did whenever its statistics said the phone had many).
pub async fn history(
    c: &impl GenericClient,
    tenant: Uuid,
    mac: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<FetchEvent>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(&format!(
                "SELECT {FETCH_COLUMNS} FROM fetch_events WHERE tenant_id = $1 AND phone_mac = $2
                 AND {} ORDER BY -id LIMIT $4",
                super::newest_first_before("$3")
            ))
            .await?,
            &[&tenant, &mac, &before, &limit],
        )
        .await?;
    Ok(rows.iter().map(fetch_from_row).collect())
}

/// The last served copy of each per-device file of each of the given phones: (mac, file name, sha256, at).
pub async fn last_served(
    c: &impl GenericClient,
    tenant: Uuid,
    macs: &[String],
) -> Result<Vec<(String, String, Vec<u8>, OffsetDateTime)>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT phone_mac, file_name, sha256, at FROM phone_files_served
                 WHERE tenant_id = $1 AND phone_mac = ANY($2)",
            )
            .await?,
            &[&tenant, &macs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Where and when phone `mac` of `tenant` was last seen: the source address of its most recently recorded
/// fetch event (any protocol, any outcome).
pub async fn last_seen(
    c: &impl GenericClient,
    tenant: Uuid,
    mac: &str,
) -> Result<Option<(std::net::IpAddr, OffsetDateTime)>, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached(
                "SELECT source, at FROM fetch_events WHERE tenant_id = $1 AND phone_mac = $2
                 ORDER BY -id LIMIT 1",
            )
            .await?,
            &[&tenant, &mac],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The last-seen source address of every phone of `tenant` that has fetched anything, by MAC.
pub async fn last_seen_all(
    c: &impl GenericClient,
    tenant: Uuid,
) -> Result<Vec<(String, std::net::IpAddr)>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT p.mac, f.source FROM phones p
             CROSS JOIN LATERAL (SELECT e.source FROM fetch_events e
                                 WHERE e.tenant_id = p.tenant_id AND e.phone_mac = p.mac
                                 ORDER BY -e.id LIMIT 1) f
             WHERE p.tenant_id = $1 ORDER BY p.mac",
            )
            .await?,
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A device seen on a tenant's network without a phone.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DiscoveredDevice {
    /// MAC, upper-case without separators.
    pub mac: String,
    /// First request.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Latest request.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Latest source address.
    #[schema(value_type = String)]
    pub source: std::net::IpAddr,
    /// Names it asked for (up to 32).
    pub files: Vec<String>,
    /// Model family guessed from the names (`7940/7960` or null).
    pub model_guess: Option<String>,
    /// Number of requests.
    pub requests: i64,
}

/// Discovered devices of a tenant that still have no phone, by MAC after `after`.
///
/// Reads the page only: the cursor is an index condition, and "has no phone" is a subquery per row
/// rather than `NOT EXISTS`, which PostgreSQL may turn into an anti-join over all of the tenant's
/// devices before the `LIMIT`.
pub async fn discovered(
    c: &impl GenericClient,
    tenant: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<DiscoveredDevice>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached("SELECT d.mac, d.first_seen, d.last_seen, d.source, d.files, d.model_guess, d.requests FROM discovered_devices d
             WHERE d.tenant_id = $1 AND d.mac > coalesce($2::text, '')
               AND (SELECT true FROM phones p WHERE p.mac = d.mac) IS NULL
             ORDER BY d.mac LIMIT $3").await?,
            &[&tenant, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DiscoveredDevice {
            mac: r.get(0),
            first_seen: r.get(1),
            last_seen: r.get(2),
            source: r.get(3),
            files: r.get(4),
            model_guess: r.get(5),
            requests: r.get(6),
        })
        .collect())
}
