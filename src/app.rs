//! `app`: wires one dialtone process together (database, snapshot refresher, API, TFTP, HTTP :6970,
//! fetch-event writer) and runs it until shutdown. The CLI and the integration tests both start
//! processes through [`start`], so the tests exercise the real wiring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiServer, ApiSettings, AppState};
use crate::auth::Keys;
use crate::config::Config;
use crate::db;
use crate::domain::Prefix;
use crate::frontend::http::{HttpFilesServer, HttpFilesSettings};
use crate::frontend::{EventQueue, Frontend};
use crate::metrics::HttpMetrics;
use crate::snapshot::{RefresherSettings, SnapshotHandle};
use crate::tftp::{TftpConfig, TftpServer};

/// The token keys of a configuration (the HS256 secret is generated into the data dir when unset).
pub fn keys(config: &Config) -> anyhow::Result<Keys> {
    let secret = config.jwt_secret_or_generate()?;
    Keys::new(Some(&secret), &config.jwt_public_keys, &config.jwt_audience)
}

/// The configured `provisioning_addresses`, parsed; a bad address stops the start-up.
pub fn provisioning_addresses(config: &Config) -> anyhow::Result<Vec<std::net::IpAddr>> {
    config
        .provisioning_addresses
        .iter()
        .map(|a| {
            a.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow::anyhow!("provisioning_addresses: {a:?} is not an IP address"))
        })
        .collect()
}

/// A started process: the addresses it bound, and its tasks.
pub struct Running {
    /// The REST API, when running.
    pub api: Option<SocketAddr>,
    /// TFTP, when running.
    pub tftp: Option<SocketAddr>,
    /// HTTP :6970, when running.
    pub http: Option<SocketAddr>,
    /// The admin listener of a provisioning-only process.
    pub admin: Option<SocketAddr>,
    /// The snapshot this process serves from.
    pub snapshot: SnapshotHandle,
    /// The front end, when running.
    pub frontend: Option<Arc<Frontend>>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

impl Running {
    /// Runs until shutdown or until any part fails (then stops the rest).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(done) = self.tasks.join_next().await {
            let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = outcome {
                if result.is_ok() {
                    result = Err(e);
                }
            }
            self.shutdown.cancel();
        }
        result
    }
}

/// Which front ends a process runs.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// The REST API.
    pub api: bool,
    /// TFTP and HTTP :6970.
    pub frontend: bool,
}

impl Parts {
    /// Everything (`serve`).
    pub const ALL: Parts = Parts {
        api: true,
        frontend: true,
    };
}

/// Applies migrations, waiting up to 30 s for the database to answer.
pub async fn migrate_with_retry(url: &str) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        match db::migrate(url).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(applied = n, "migrations applied");
                }
                return Ok(());
            }
            Err(db::DbError::Unavailable(_)) if tries < 30 => {
                tries += 1;
                tracing::warn!("database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => bail!("migrating the database: {e}"),
        }
    }
}

/// Starts the parts of a process on database `url`; `local_db` says whether it is a private cluster.
pub async fn start(
    config: &Config,
    url: &str,
    parts: Parts,
    local_db: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    // A bad setting stops the start-up before anything is touched.
    let provisioning_addresses = provisioning_addresses(config)?;
    // The API brings a fresh database (or a new release) up to date before serving; a provisioning-only
    // process leaves that to `migrate` unless it runs its own private database.
    if parts.api || local_db {
        migrate_with_retry(url).await?;
    }
    let pool = db::pool(url, config.db_pool_size)?;
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    let snapshot = start_refresher(config, url, &shutdown, &mut tasks).await;
    let mut frontend = None;
    let mut tftp_stats = None;
    let mut bound = Bound::default();
    if parts.frontend {
        let (fe, stats, b) = start_frontend(
            config,
            snapshot.clone(),
            pool.clone(),
            &shutdown,
            &mut tasks,
        )
        .await?;
        frontend = Some(fe);
        tftp_stats = Some(stats);
        bound = b;
    }
    let mut running = Running {
        api: None,
        tftp: bound.tftp,
        http: bound.http,
        admin: None,
        snapshot: snapshot.clone(),
        frontend: None,
        tasks: tokio::task::JoinSet::new(),
        shutdown: shutdown.clone(),
    };
    if parts.api {
        tasks.spawn(janitor(
            pool.clone(),
            config.snapshot_reload_secs,
            config.fetch_retention_days,
            shutdown.clone(),
        ));
        let state = AppState {
            shared: db::SharedConnection::new(pool.clone()),
            creates: Default::default(),
            pool,
            keys: Arc::new(keys(config)?),
            metrics: Arc::new(HttpMetrics::default()),
            snapshot,
            frontend: frontend.clone(),
            tftp_stats: tftp_stats.clone(),
            resync_rate_per_second: config.resync_rate_per_second,
            provisioning_addresses,
            worker_pools: Default::default(),
            changes: Default::default(),
        };
        let settings = ApiSettings {
            listen: config.api_listen,
            max_body: config.max_json_body,
            workers: config.api_workers,
            worker_pools: Some(db::PoolSpec::parse(url, config.db_pool_size)?),
        };
        let server = ApiServer::build(settings, state)
            .with_context(|| format!("binding the API to {}", config.api_listen))?;
        tracing::info!(address = %server.local_addr(), "API listening on http://{}", server.local_addr());
        running.api = Some(server.local_addr());
        let token = shutdown.clone();
        tasks.spawn(async move { Ok(server.run_until_stopped(token).await?) });
    } else if let Some(fe) = &frontend {
        let (addr, server) =
            crate::frontend::admin::start(config.admin_listen, fe.clone(), tftp_stats.clone())
                .with_context(|| {
                    format!("binding the admin listener to {}", config.admin_listen)
                })?;
        tracing::info!(address = %addr, "admin (health, metrics) listening on http://{addr}");
        running.admin = Some(addr);
        let token = shutdown.clone();
        tasks.spawn(
            async move { Ok(crate::frontend::admin::run_until_stopped(server, token).await?) },
        );
    }
    running.tasks = tasks;
    running.frontend = frontend;
    Ok(running)
}

/// Prunes tombstones (kept for ten snapshot reload periods, at least an hour) and fetch events past
/// their retention, every ten minutes, in bounded batches: the oldest events by id each time, the whole
/// table once a day (the first time ten minutes after start) for events stored out of order. Failures are
/// logged and retried next time.
async fn janitor(
    pool: db::Pool,
    reload_secs: u64,
    retention_days: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keep_secs = (reload_secs * 10).max(3600) as i64;
    // Rounds of ten minutes between whole-table passes: a day.
    const WHOLE_EVERY: u64 = 144;
    for round in 0u64.. {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        let result = async {
            let client = pool.get().await?;
            let scan = if round % WHOLE_EVERY == 0 {
                db::maintenance::EventScan::Whole
            } else {
                db::maintenance::EventScan::Oldest
            };
            db::maintenance::prune(&client, keep_secs, i64::from(retention_days), 50_000, scan)
                .await
        }
        .await;
        match result {
            Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old tombstones and fetch events"),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "pruning skipped"),
        }
    }
    Ok(())
}

/// The front end's listening addresses, filled by [`start_frontend`].
#[derive(Default)]
struct Bound {
    tftp: Option<SocketAddr>,
    http: Option<SocketAddr>,
}

/// Binds TFTP. With the default address only: on a host without IPv6 fall back to `0.0.0.0`, and without
/// the privilege to bind port 69 fall back to 6969 (with a warning), so that `serve` runs anywhere;
/// an address configured explicitly is used as given or fails.
async fn bind_tftp(
    config: TftpConfig,
    frontend: Arc<Frontend>,
    is_default: bool,
) -> std::io::Result<TftpServer> {
    let first = TftpServer::build(config.clone(), frontend.clone()).await;
    let Err(e) = first else { return first };
    if !is_default {
        return Err(e);
    }
    let mut alt = config;
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        alt.listen = SocketAddr::from(([0, 0, 0, 0], alt.listen.port()));
        if let Ok(server) = TftpServer::build(alt.clone(), frontend.clone()).await {
            tracing::warn!("IPv6 is unavailable here; TFTP listens on IPv4 only");
            return Ok(server);
        }
    }
    for listen in [
        SocketAddr::from((alt.listen.ip(), 6969)),
        SocketAddr::from(([0, 0, 0, 0], 6969)),
    ] {
        alt.listen = listen;
        if let Ok(server) = TftpServer::build(alt.clone(), frontend.clone()).await {
            tracing::warn!(error = %e, "cannot bind TFTP port 69 (run as root or grant CAP_NET_BIND_SERVICE); using {listen} instead");
            return Ok(server);
        }
    }
    Err(e)
}

/// Starts the snapshot refresher and waits (a few seconds at most) for the first load, so that phones
/// are served from a real snapshot rather than an empty one when the database answers.
async fn start_refresher(
    config: &Config,
    url: &str,
    shutdown: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> SnapshotHandle {
    let handle = SnapshotHandle::default();
    let refresher = RefresherSettings {
        url: url.to_owned(),
        full_reload_every: Duration::from_secs(config.snapshot_reload_secs.max(1)),
        retry_every: Duration::from_millis(500),
        poll_every: (config.snapshot_poll_ms > 0)
            .then(|| Duration::from_millis(config.snapshot_poll_ms)),
        prepare: Some(crate::provisioning::warm),
    };
    {
        let (handle, token) = (handle.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::snapshot::refresher::run(refresher, handle, token).await;
            Ok(())
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !handle.is_loaded() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle
}

async fn start_frontend(
    config: &Config,
    handle: SnapshotHandle,
    pool: db::Pool,
    shutdown: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<(Arc<Frontend>, Arc<crate::tftp::TftpStats>, Bound)> {
    let mut bound = Bound::default();
    let trusted = config
        .http_trusted_proxies
        .iter()
        .map(|p| {
            p.parse::<Prefix>()
                .map_err(|e| anyhow::anyhow!("http_trusted_proxies: {p}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let events = Arc::new(EventQueue::new(config.fetch_queue_capacity));
    {
        let (events, handle, token) = (events.clone(), handle.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::frontend::events::run_writer(
                events,
                handle,
                pool,
                Duration::from_millis(250),
                token,
            )
            .await;
            Ok(())
        });
    }
    let frontend = Arc::new(Frontend::new(handle, events));
    let tftp_config = TftpConfig {
        listen: config.tftp_listen,
        max_blksize: config.tftp_max_blksize,
        max_windowsize: config.tftp_max_windowsize,
        timeout: Duration::from_millis(config.tftp_timeout_ms.max(1)),
        retries: config.tftp_retries,
        max_transfers_per_source: config.tftp_max_transfers_per_source,
        miss_budget_per_minute: config.tftp_miss_budget_per_minute,
        cooldown: Duration::from_secs(config.tftp_cooldown_secs),
        recv_buffer_bytes: config.tftp_recv_buffer_bytes,
        workers: config.tftp_workers,
        ..TftpConfig::default()
    };
    let tftp = bind_tftp(
        tftp_config,
        frontend.clone(),
        config.tftp_listen == Config::default().tftp_listen,
    )
    .await
    .with_context(|| format!("binding TFTP to {}", config.tftp_listen))?;
    tracing::info!(address = %tftp.local_addr(), "TFTP listening on {}", tftp.local_addr());
    bound.tftp = Some(tftp.local_addr());
    let stats = tftp.stats();
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(tftp.run_until_stopped(token).await?) });
    let http = HttpFilesServer::build(
        HttpFilesSettings {
            listen: config.http_listen,
            trusted_proxies: trusted,
            workers: config.http_workers,
            steer_by_cpu: config.http_steer_by_cpu,
        },
        frontend.clone(),
    )
    .with_context(|| format!("binding HTTP files to {}", config.http_listen))?;
    tracing::info!(address = %http.local_addr(), "HTTP files listening on http://{}", http.local_addr());
    bound.http = Some(http.local_addr());
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(http.run_until_stopped(token).await?) });
    Ok((frontend, stats, bound))
}
