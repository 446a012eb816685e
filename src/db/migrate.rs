//! The migration runner: applies `sql/V<n>__<name>.sql` in order, once, under an advisory lock.

use tokio_postgres::Client;

use super::DbError;

/// The embedded migrations, in order. Add new files here (and never edit an applied one).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../../sql/V1__init.sql")),
    (
        2,
        "files_and_fetches",
        include_str!("../../sql/V2__files_and_fetches.sql"),
    ),
    (
        3,
        "change_txids",
        include_str!("../../sql/V3__change_txids.sql"),
    ),
    (
        4,
        "file_directories",
        include_str!("../../sql/V4__file_directories.sql"),
    ),
    (
        5,
        "tenant_templates",
        include_str!("../../sql/V5__tenant_templates.sql"),
    ),
    (
        6,
        "fetch_batches",
        include_str!("../../sql/V6__fetch_batches.sql"),
    ),
    (
        7,
        "fetch_events_without_fk",
        include_str!("../../sql/V7__fetch_events_without_fk.sql"),
    ),
    (
        8,
        "deferred_notify",
        include_str!("../../sql/V8__deferred_notify.sql"),
    ),
    (
        9,
        "phone_files_served",
        include_str!("../../sql/V9__phone_files_served.sql"),
    ),
    (
        10,
        "fetch_events_phone_index",
        include_str!("../../sql/V10__fetch_events_phone_index.sql"),
    ),
    (
        11,
        "fetch_events_newest_first",
        include_str!("../../sql/V11__fetch_events_newest_first.sql"),
    ),
    (
        12,
        "audit_events_tenant_newest_first",
        include_str!("../../sql/V12__audit_events_tenant_newest_first.sql"),
    ),
    (
        13,
        "fetch_events_shared_files_index",
        include_str!("../../sql/V13__fetch_events_shared_files_index.sql"),
    ),
    (
        14,
        "fetch_event_pages",
        include_str!("../../sql/V14__fetch_event_pages.sql"),
    ),
];

/// Advisory-lock key that serialises concurrent `migrate` runs across processes.
const LOCK_KEY: i64 = 0x6469_616c_746f_6e65; // "dialtone"

/// Applies every migration not yet applied. Idempotent, and safe to run from many processes at once:
/// they queue on an advisory lock, and each file runs in its own transaction with its checksum recorded.
pub async fn run(client: &mut Client) -> Result<usize, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply(client).await;
    // Unlock even when a migration failed; the session would release it at disconnect anyway.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply(client: &mut Client) -> Result<usize, DbError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let checksum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sql.as_bytes()));
        let row = client
            .query_opt(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?;
        if let Some(row) = row {
            let stored: String = row.get(0);
            if stored != checksum {
                return Err(DbError::Migration(format!(
                    "migration V{version}__{name} was edited after it was applied"
                )));
            }
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &checksum],
        )
        .await?;
        tx.commit().await?;
        applied += 1;
    }
    Ok(applied)
}

/// A hash of every migration, used to name test template databases.
pub fn fingerprint() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (v, n, sql) in MIGRATIONS {
        h.update(format!("{v}{n}").as_bytes());
        h.update(sql.as_bytes());
    }
    hex::encode(&h.finalize()[..6])
}
