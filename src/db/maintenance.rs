//! Housekeeping of tables that only grow: tombstones (needed only until every snapshot follower has
//! reloaded, which each does at least every `snapshot_reload_secs`), old fetch events, what phones no
//! longer in their tenant last got, and the ids of stored fetch-event batches (kept a day: long enough
//! for any retry).

use deadpool_postgres::GenericClient;

use super::DbError;

/// How [`prune`] looks for fetch events past their retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventScan {
    /// Only the oldest pages of events by id, a window of `batch` at a time: reads what it deletes (plus
    /// one window), however large the table. Events are stored in about the order they happen, so the old
    /// ones are at the front; a window that holds none ends the pass.
    Oldest,
    /// The whole table, for events stored out of order (a writer whose clock ran ahead): a sequential
    /// scan per batch, so only now and then.
    Whole,
}

/// Windows (or batches) of fetch-event pages one [`prune`] deletes at most.
pub const MAX_EVENT_BATCHES: u64 = 20;

/// Deletes tombstones older than `keep_secs`, and fetch events and the last served files of phones no
/// longer in their tenant older than `retention_days`: at most `batch` tombstones and served files, and
/// up to [`MAX_EVENT_BATCHES`] batches of `batch` pages of fetch events, found as `scan` says. Returns
/// how many rows went, counting each fetch event as one.
pub async fn prune(
    c: &impl GenericClient,
    keep_secs: i64,
    retention_days: i64,
    batch: i64,
    scan: EventScan,
) -> Result<u64, DbError> {
    let tombstones = c
        .execute(
            "DELETE FROM tombstones WHERE revision IN (
                SELECT revision FROM tombstones WHERE at < now() - make_interval(secs => $1) LIMIT $2)",
            &[&(keep_secs as f64), &batch],
        )
        .await?;
    // Fetch events go a page at a time (sql/V14), once the page's newest event is past the retention.
    // `WHERE last_at < cutoff ORDER BY first_id LIMIT n` over the whole table was planned as a sequential
    // scan and sort: every call read every row, also when none was old (6.7 M rows, 0.8 s on a bench
    // database).
    let statement = match scan {
        EventScan::Oldest => {
            "WITH gone AS (DELETE FROM fetch_event_pages WHERE first_id IN (
                SELECT first_id FROM (SELECT first_id, last_at FROM fetch_event_pages ORDER BY first_id LIMIT $2) oldest
                WHERE last_at < now() - make_interval(days => $1::int)) RETURNING n)
             SELECT count(*), coalesce(sum(n), 0)::bigint FROM gone"
        }
        EventScan::Whole => {
            "WITH gone AS (DELETE FROM fetch_event_pages WHERE first_id IN (
                SELECT first_id FROM fetch_event_pages WHERE last_at < now() - make_interval(days => $1::int)
                ORDER BY first_id LIMIT $2) RETURNING n)
             SELECT count(*), coalesce(sum(n), 0)::bigint FROM gone"
        }
    };
    let mut events = 0;
    for _ in 0..MAX_EVENT_BATCHES {
        let row = c
            .query_one(statement, &[&(retention_days as i32), &batch])
            .await?;
        let (pages, n): (i64, i64) = (row.get(0), row.get(1));
        events += n as u64;
        let done = match scan {
            EventScan::Oldest => pages == 0,
            EventScan::Whole => pages < batch,
        };
        if done {
            break;
        }
    }
    // What a phone last got outlives the fetch history while the phone is still in its tenant.
    let served = c
        .execute(
            "DELETE FROM phone_files_served WHERE ctid IN (
                SELECT s.ctid FROM phone_files_served s
                WHERE s.at < now() - make_interval(days => $1::int)
                  AND NOT EXISTS (SELECT 1 FROM phones p WHERE p.mac = s.phone_mac AND p.tenant_id = s.tenant_id)
                LIMIT $2)",
            &[&(retention_days as i32), &batch],
        )
        .await?;
    let batches = c
        .execute(
            "DELETE FROM fetch_batches WHERE at < now() - interval '1 day'",
            &[],
        )
        .await?;
    Ok(tombstones + events + served + batches)
}
