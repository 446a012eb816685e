//! The database layer: the only place with SQL. Pools, errors, migrations, and one file per aggregate.

pub mod audit;
pub mod cluster;
pub mod fetches;
pub mod files;
pub mod imports;
pub mod maintenance;
pub mod migrate;
pub mod networks;
pub mod phones;
pub mod snapshot;
pub mod templates;
pub mod tenants;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

pub use deadpool_postgres::Pool;

/// What can go wrong in the database layer, in terms the API maps to statuses.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DbError {
    /// A constraint refused the write (unique, exclusion, foreign key, check).
    #[error("constraint {constraint} violated")]
    Constraint {
        /// The constraint's name.
        constraint: String,
    },
    /// Text PostgreSQL cannot store (a NUL character): the request's fault.
    #[error("text with a character that cannot be stored")]
    InvalidText,
    /// Two transactions collided (deadlock or serialization failure); the other one won.
    #[error("concurrent change")]
    Concurrent,
    /// The database cannot be reached or the pool timed out.
    #[error("database unavailable")]
    Unavailable(String),
    /// A migration problem.
    #[error("migration: {0}")]
    Migration(String),
    /// Anything else: a bug or an unexpected state.
    #[error("database error: {0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNIQUE_VIOLATION
                || *code == SqlState::EXCLUSION_VIOLATION
                || *code == SqlState::FOREIGN_KEY_VIOLATION
                || *code == SqlState::CHECK_VIOLATION
            {
                return DbError::Constraint {
                    constraint: db.constraint().unwrap_or("unknown").to_owned(),
                };
            }
            if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *code == SqlState::UNTRANSLATABLE_CHARACTER
            {
                return DbError::InvalidText;
            }
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
            {
                return DbError::Concurrent;
            }
            if code.code().starts_with("08")
                || code.code().starts_with("57P")
                || *code == SqlState::TOO_MANY_CONNECTIONS
            {
                return DbError::Unavailable(db.message().to_owned());
            }
            return DbError::Other(format!("{}: {}", code.code(), db.message()));
        }
        if e.is_closed() {
            return DbError::Unavailable("connection closed".into());
        }
        // I/O errors (connection refused, reset) carry no database error.
        DbError::Unavailable(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    /// Failing to get a connection (refused, timed out, authentication, "not accepting connections") means
    /// the database is unavailable to this process, whatever the server said.
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Unavailable(e.to_string())
    }
}

/// Parses a database URL or libpq key=value string.
pub fn parse_config(url: &str) -> Result<tokio_postgres::Config, DbError> {
    tokio_postgres::Config::from_str(url)
        .map_err(|_| DbError::Other("the database URL does not parse".into()))
}

/// What a connection pool connects to and how many connections it may hold: kept so that the API can
/// build one pool per worker thread (see `ApiSettings::worker_pools`). The database password inside is
/// redacted from `Debug`.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    config: tokio_postgres::Config,
    /// Most connections of one pool built from this spec.
    pub max_size: usize,
}

impl PoolSpec {
    /// Parses a database URL or libpq key=value string.
    pub fn parse(url: &str, max_size: usize) -> Result<PoolSpec, DbError> {
        let mut config = parse_config(url)?;
        config.connect_timeout(Duration::from_secs(2));
        config.application_name("dialtone");
        Ok(PoolSpec { config, max_size })
    }

    /// The same with at most `max_size` connections per pool.
    pub fn with_max_size(mut self, max_size: usize) -> PoolSpec {
        self.max_size = max_size;
        self
    }

    /// The same, with sessions that leave change notifications to the caller (`dialtone.defer_notify`,
    /// sql/V8): see `api::ChangeNotifier`.
    pub fn deferring_notify(mut self) -> PoolSpec {
        // Added to the URL's own `options` (e.g. a search_path), not in their place.
        let options = match self.config.get_options() {
            Some(own) if !own.trim().is_empty() => format!("{own} -c dialtone.defer_notify=on"),
            _ => "-c dialtone.defer_notify=on".to_owned(),
        };
        self.config.options(&options);
        self
    }

    /// Builds a pool (connections are made lazily; waits for a free one at most 2 s).
    pub fn build(&self) -> Result<Pool, DbError> {
        let mgr = Manager::from_config(
            self.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(mgr)
            .max_size(self.max_size)
            .wait_timeout(Some(Duration::from_secs(2)))
            .create_timeout(Some(Duration::from_secs(2)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Other(e.to_string()))
    }
}

/// One pooled connection that many requests use at the same time: tokio-postgres pipelines their
/// statements on it, so one backend answers them back to back instead of one backend being woken per
/// request. Measured on 2 cores, API GET of a phone with 8 clients: PostgreSQL CPU per request 0.051 ms
/// with a connection per request (8 per worker), 0.031 ms sharing one (and 27,000 instead of 18,000
/// requests/s). Only for reads by key that finish quickly: a slow statement would hold up the others, a
/// transaction needs a connection of its own, and writes gain nothing (the one-statement phone create was
/// slower on it: 2,100-2,150 instead of 3,070-3,130 creates/s). Kept until it breaks, then replaced.
#[derive(Clone)]
pub struct SharedConnection {
    pool: Pool,
    current: Arc<Mutex<Option<Arc<deadpool_postgres::Object>>>>,
}

impl SharedConnection {
    /// Shares a connection of `pool` (taken on first use; it stays checked out).
    pub fn new(pool: Pool) -> SharedConnection {
        SharedConnection {
            pool,
            current: Default::default(),
        }
    }

    /// The connection in `slot`, unless there is none or it broke.
    fn usable(
        slot: &Option<Arc<deadpool_postgres::Object>>,
    ) -> Option<Arc<deadpool_postgres::Object>> {
        slot.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The shared connection: the current one, or a new one from the pool when there is none or it broke.
    pub async fn get(&self) -> Result<Arc<deadpool_postgres::Object>, DbError> {
        let lock = || self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = Self::usable(&lock()) {
            return Ok(c);
        }
        let fresh = Arc::new(self.pool.get().await?);
        let mut slot = lock();
        // Another request may have replaced it meanwhile: share that one (ours goes back to the pool).
        Ok(Self::usable(&slot).unwrap_or_else(|| {
            *slot = Some(fresh.clone());
            fresh
        }))
    }
}

/// SQL condition on the id column `column` for a page read newest first as `ORDER BY -column` (through an
/// index on `(…, (-column))`, an order no other index has: sql/V11, V12, V14): below the cursor id in
/// parameter `param`, or anywhere when it is NULL. A cursor at or below 0, which no page returns, reads
/// nothing: `greatest` keeps a forged `i64::MIN` from overflowing the negation.
pub(crate) fn newest_first_before(param: &str, column: &str) -> String {
    format!(
        "-{column} > -greatest(coalesce({param}::bigint, {}), 0)",
        i64::MAX
    )
}

/// Builds a connection pool (connections are made lazily; waits for a free one at most 2 s).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    PoolSpec::parse(url, max_size)?.build()
}

/// Connects once (no pool) and applies the migrations.
pub async fn migrate(url: &str) -> Result<usize, DbError> {
    let cfg = parse_config(url)?;
    let (mut client, conn) = cfg.connect(NoTls).await?;
    let task = tokio::spawn(conn);
    let result = migrate::run(&mut client).await;
    drop(client);
    let _ = task.await;
    result
}

/// Announces that something changed, to every process listening on the change channel (the snapshot
/// refreshers): one `NOTIFY` in a transaction of its own.
pub async fn notify_changes(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            &client.prepare_cached("SELECT pg_notify($1, '')").await?,
            &[&crate::snapshot::refresher::CHANNEL],
        )
        .await?;
    Ok(())
}

/// Runs `SELECT 1` to check that the database answers.
pub async fn ping(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client.query_one("SELECT 1", &[]).await?;
    Ok(())
}

/// An opaque pagination cursor: the last key of the previous page, base64url-encoded.
pub fn encode_cursor(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Decodes a cursor made by [`encode_cursor`]; `None` when it is not one.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    // Cursors are keys this API wrote: printable text only (a NUL would not even reach PostgreSQL).
    String::from_utf8(bytes)
        .ok()
        .filter(|k| !k.is_empty() && !k.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferring_notify_keeps_the_urls_own_options() {
        let own = PoolSpec::parse("host=/run/pg options='-c search_path=prov'", 4)
            .unwrap()
            .deferring_notify();
        assert_eq!(
            own.config.get_options(),
            Some("-c search_path=prov -c dialtone.defer_notify=on")
        );
        let none = PoolSpec::parse("host=/run/pg", 4)
            .unwrap()
            .deferring_notify();
        assert_eq!(
            none.config.get_options(),
            Some("-c dialtone.defer_notify=on")
        );
    }
}
