//! Housekeeping of tables that only grow: tombstones (needed only until every snapshot follower has
//! reloaded, which each does at least every `snapshot_reload_secs`), old fetch events, what phones no
//! longer in their tenant last got, and the ids of stored fetch-event batches (kept a day: long enough
//! for any retry).

use deadpool_postgres::GenericClient;

use super::DbError;

/// Deletes tombstones older than `keep_secs`, and fetch events and the last served files of phones no
/// longer in their tenant older than `retention_days`, at most `batch` rows of each per call; returns how
/// many rows went.
pub async fn prune(
    c: &impl GenericClient,
    keep_secs: i64,
    retention_days: i64,
    batch: i64,
) -> Result<u64, DbError> {
    let tombstones = c
        .execute(
            "DELETE FROM tombstones WHERE revision IN (
                SELECT revision FROM tombstones WHERE at < now() - make_interval(secs => $1) LIMIT $2)",
            &[&(keep_secs as f64), &batch],
        )
        .await?;
    let events = c
        .execute(
            "DELETE FROM fetch_events WHERE id IN (
                SELECT id FROM fetch_events WHERE at < now() - make_interval(days => $1::int) ORDER BY id LIMIT $2)",
            &[&(retention_days as i32), &batch],
        )
        .await?;
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
