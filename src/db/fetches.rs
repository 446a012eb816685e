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

/// Most events in one page of `fetch_event_pages` (sql/V14): ids within a page are `first_id + 0..n`, and
/// pages start 65,536 ids apart.
const PAGE_MAX: usize = 65_536;

/// Stores a batch of events, in the caller's transaction: one page (a row of `fetch_event_pages`, sql/V14)
/// per tenant and phone of the batch, or per tenant for the events that name no phone, each page's events
/// in batch order, all pages with one binary `COPY`. A phone's events of more than 65,536 (`PAGE_MAX`) go
/// to more pages.
pub async fn insert_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[NewFetch],
) -> Result<(), DbError> {
    use bytes::{BufMut, BytesMut};
    use futures_util::SinkExt;
    use tokio_postgres::types::{IsNull, ToSql, Type};
    const TYPES: [Type; 13] = [
        Type::UUID,
        Type::TEXT,
        Type::INT4,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ_ARRAY,
        Type::TEXT_ARRAY,
        Type::INET_ARRAY,
        Type::INT4_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::INT8_ARRAY,
        Type::INT8_ARRAY,
        Type::BYTEA_ARRAY,
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
    let live_events = || events.iter().filter(|e| live.contains(&e.tenant));
    // The whole batch in PostgreSQL's binary COPY format, sent as one message (tokio-postgres'
    // BinaryCopyInWriter flushes every 4 KiB, which woke the backend ~200 times a batch).
    let mut buf = BytesMut::with_capacity(64 + events.len() * 96);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension
    for page in pages(live_events()) {
        let n = i32::try_from(page.len()).expect("a page holds at most PAGE_MAX events");
        let last_at = page.iter().map(|e| e.at).max();
        let at: Vec<OffsetDateTime> = page.iter().map(|e| e.at).collect();
        let protocol: Vec<&str> = page.iter().map(|e| e.protocol).collect();
        let source: Vec<std::net::IpAddr> = page.iter().map(|e| e.source).collect();
        let port: Vec<i32> = page.iter().map(|e| i32::from(e.source_port)).collect();
        let file_name: Vec<&str> = page.iter().map(|e| e.file_name.as_str()).collect();
        let outcome: Vec<&str> = page.iter().map(|e| e.outcome).collect();
        let bytes: Vec<i64> = page.iter().map(|e| e.bytes).collect();
        let duration: Vec<i64> = page.iter().map(|e| e.duration_us).collect();
        let sha256: Vec<Option<&[u8]>> = page.iter().map(|e| e.sha256.as_deref()).collect();
        let values: [&(dyn ToSql + Sync); 13] = [
            &page[0].tenant,
            &page[0].phone,
            &n,
            &last_at,
            &at,
            &protocol,
            &source,
            &port,
            &file_name,
            &outcome,
            &bytes,
            &duration,
            &sha256,
        ];
        buf.put_i16(TYPES.len() as i16);
        for (value, ty) in values.iter().zip(&TYPES) {
            let at = buf.len();
            buf.put_i32(0);
            let len = match value
                .to_sql_checked(ty, &mut buf)
                .map_err(|e| DbError::Other(format!("encoding a fetch event page: {e}")))?
            {
                IsNull::Yes => -1,
                IsNull::No => i32::try_from(buf.len() - at - 4)
                    .map_err(|_| DbError::Other("fetch event page too long".into()))?,
            };
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    buf.put_i16(-1);
    let sink = tx
        .copy_in(
            "COPY fetch_event_pages (tenant_id, phone_mac, n, last_at, at, protocol, source, source_port,
                                     file_name, outcome, bytes, duration_us, sha256)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(buf.freeze()).await?;
    sink.finish().await?;
    record_served(tx, live_events()).await
}

/// The pages of `events`: grouped by tenant and phone (or no phone) in the order each group first
/// appears, each group in event order, split every [`PAGE_MAX`] events.
fn pages<'a>(events: impl IntoIterator<Item = &'a NewFetch>) -> Vec<Vec<&'a NewFetch>> {
    let mut index: std::collections::HashMap<(Uuid, Option<&str>), usize> =
        std::collections::HashMap::new();
    let mut pages: Vec<Vec<&NewFetch>> = Vec::new();
    for e in events {
        let key = (e.tenant, e.phone.as_deref());
        let i = match index.get(&key) {
            Some(&i) if pages[i].len() < PAGE_MAX => i,
            _ => {
                pages.push(Vec::new());
                index.insert(key, pages.len() - 1);
                pages.len() - 1
            }
        };
        pages[i].push(e);
    }
    pages
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
    /// Id: a phone's later events have larger ids (increasing, not consecutive).
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

/// A phone's fetch history, newest first, before the event with id `before`: `limit` events at most.
///
/// The phone's pages are found newest first by `-first_id`, an order only the per-phone index has (with
/// `first_id DESC` PostgreSQL could read the primary key backwards past every other phone's pages, and
/// did whenever its statistics said the phone had many: see [`super::newest_first_before`]). Each page
/// holds at least one event before `before` (its first). A window over the newer pages' counts says how
/// many events each page still has to give (`wanted`); pages with none are not read at all, and of the
/// others PostgreSQL slices out only those. Reading `limit` events of each of `limit` pages had sent a
/// busy device's 1,001-event history page as ~1 M events: 350-430 ms, against 3-5 ms now.
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
                "SELECT first_id, lo, at[lo:hi], protocol[lo:hi], source[lo:hi], source_port[lo:hi],
                        file_name[lo:hi], outcome[lo:hi], bytes[lo:hi], duration_us[lo:hi], sha256[lo:hi]
                 FROM (SELECT p.*, s.hi::int AS hi,
                              greatest(1, s.hi - ($4 - coalesce(sum(s.hi) OVER newer, 0)) + 1)::int AS lo,
                              $4 - coalesce(sum(s.hi) OVER newer, 0) AS wanted
                       FROM (SELECT * FROM fetch_event_pages
                             WHERE tenant_id = $1 AND phone_mac = $2 AND {}
                             ORDER BY -first_id LIMIT $4) p
                       CROSS JOIN LATERAL (SELECT least(p.n, coalesce($3::bigint - p.first_id, p.n)) AS hi) s
                       WINDOW newer AS (ORDER BY -p.first_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) q
                 WHERE wanted > 0
                 ORDER BY -first_id",
                super::newest_first_before("$3", "first_id")
            ))
            .await?,
            &[&tenant, &mac, &before, &limit],
        )
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let first_id: i64 = r.try_get(0)?;
        let lo: i32 = r.try_get(1)?;
        let at: Vec<OffsetDateTime> = r.try_get(2)?;
        let protocol: Vec<String> = r.try_get(3)?;
        let source: Vec<std::net::IpAddr> = r.try_get(4)?;
        let port: Vec<i32> = r.try_get(5)?;
        let file_name: Vec<String> = r.try_get(6)?;
        let outcome: Vec<String> = r.try_get(7)?;
        let bytes: Vec<i64> = r.try_get(8)?;
        let duration: Vec<i64> = r.try_get(9)?;
        let sha256: Vec<Option<Vec<u8>>> = r.try_get(10)?;
        // The writer fills every array of a page alike; a page written by hand that does not is read as
        // far as all of its arrays go, never past one.
        let len = [
            at.len(),
            protocol.len(),
            source.len(),
            port.len(),
            file_name.len(),
            outcome.len(),
            bytes.len(),
            duration.len(),
            sha256.len(),
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        for j in (0..len).rev() {
            out.push(FetchEvent {
                id: first_id + i64::from(lo) - 1 + j as i64,
                at: at[j],
                protocol: protocol[j].clone(),
                source: source[j],
                source_port: port[j],
                file_name: file_name[j].clone(),
                outcome: outcome[j].clone(),
                bytes: bytes[j],
                duration_us: duration[j],
                sha256: sha256[j].as_deref().map(hex::encode),
            });
        }
    }
    Ok(out)
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
                "SELECT source[array_upper(source, 1)], at[array_upper(at, 1)] FROM fetch_event_pages
                 WHERE tenant_id = $1 AND phone_mac = $2 ORDER BY -first_id LIMIT 1",
            )
            .await?,
            &[&tenant, &mac],
        )
        .await?;
    // NULL only from an empty page written by hand.
    Ok(row.and_then(|r| Some((r.get::<_, Option<_>>(0)?, r.get::<_, Option<_>>(1)?))))
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
             CROSS JOIN LATERAL (SELECT e.source[array_upper(e.source, 1)] AS source FROM fetch_event_pages e
                                 WHERE e.tenant_id = p.tenant_id AND e.phone_mac = p.mac
                                 ORDER BY -e.first_id LIMIT 1) f
             WHERE p.tenant_id = $1 AND f.source IS NOT NULL ORDER BY p.mac",
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A served event of `phone` (or of none) in tenant `tenant`, told apart by its source `port`.
    pub(crate) fn event(tenant: u128, phone: Option<&str>, port: u16) -> NewFetch {
        NewFetch {
            at: OffsetDateTime::UNIX_EPOCH,
            tenant: Uuid::from_u128(tenant),
            protocol: "tftp",
            source: std::net::IpAddr::from([10, 0, 0, 1]),
            source_port: port,
            file_name: "SIPDefault.cnf".into(),
            phone: phone.map(str::to_owned),
            outcome: "served",
            bytes: 1,
            duration_us: 1,
            sha256: None,
            served_known: false,
        }
    }

    fn ports(pages: &[Vec<&NewFetch>]) -> Vec<Vec<u16>> {
        pages
            .iter()
            .map(|p| p.iter().map(|e| e.source_port).collect())
            .collect()
    }

    #[test]
    fn a_batch_pages_by_tenant_and_phone_in_first_seen_order_keeping_event_order() {
        let events = [
            event(1, Some("A"), 1),
            event(1, None, 2),
            event(2, Some("A"), 3),
            event(1, Some("A"), 4),
            event(1, Some("B"), 5),
            event(2, None, 6),
            event(1, None, 7),
            event(1, Some("A"), 8),
        ];
        assert_eq!(
            ports(&pages(&events)),
            [vec![1, 4, 8], vec![2, 7], vec![3], vec![5], vec![6]]
        );
    }

    #[test]
    fn a_page_holds_at_most_page_max_events() {
        let events: Vec<NewFetch> = (0..PAGE_MAX + 2)
            .map(|i| event(1, Some("A"), (i % 60_000) as u16))
            .chain([event(1, Some("B"), 9)])
            .collect();
        let pages = pages(&events);
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [PAGE_MAX, 2, 1]);
        assert_eq!(pages[1][0].source_port, (PAGE_MAX % 60_000) as u16);
        assert_eq!(pages[2][0].phone.as_deref(), Some("B"));
    }
}
