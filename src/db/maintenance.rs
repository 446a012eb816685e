//! Housekeeping of tables that only grow: tombstones (needed only until every snapshot follower has
//! reloaded, which each does at least every `snapshot_reload_secs`), old fetch events, what phones no
//! longer in their tenant last got, and the ids of stored fetch-event batches (kept a day: long enough
//! for any retry).

use deadpool_postgres::GenericClient;

use super::DbError;

/// How [`prune`] looks for fetch events past their retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventScan {
    /// Only the oldest events by id, a window of `batch` at a time: reads what it deletes (plus one
    /// window), however large the table. Events are stored in about the order they happen, so the old
    /// ones are at the front; a window that holds none ends the pass.
    Oldest,
    /// The whole table, for events stored out of order (a writer whose clock ran ahead): a sequential
    /// scan per batch, so only now and then.
    Whole,
}

/// Windows (or batches) of fetch events one [`prune`] deletes at most.
pub const MAX_EVENT_BATCHES: u64 = 20;

/// Deletes tombstones older than `keep_secs`, and fetch events and the last served files of phones no
/// longer in their tenant older than `retention_days`: at most `batch` tombstones and served files, and
/// up to [`MAX_EVENT_BATCHES`] batches of `batch` fetch events, found as `scan` says. Returns how many
/// rows went.
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
    // `WHERE at < cutoff ORDER BY id LIMIT n` over the whole table was planned as a sequential scan and
    // sort: every call read every event, also when none was old (6.7 M rows, 0.8 s on a bench database).
    let statement = match scan {
        EventScan::Oldest => {
            "DELETE FROM fetch_events WHERE id IN (
                SELECT id FROM (SELECT id, at FROM fetch_events ORDER BY id LIMIT $2) oldest
                WHERE at < now() - make_interval(days => $1::int))"
        }
        EventScan::Whole => {
            "DELETE FROM fetch_events WHERE id IN (
                SELECT id FROM fetch_events WHERE at < now() - make_interval(days => $1::int) ORDER BY id LIMIT $2)"
        }
    };
    let mut events = 0;
    for _ in 0..MAX_EVENT_BATCHES {
        let n = c
            .execute(statement, &[&(retention_days as i32), &batch])
            .await?;
        events += n;
        let done = match scan {
            EventScan::Oldest => n == 0,
            EventScan::Whole => n < batch as u64,
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
