//! The command line: `serve`, `api`, `migrate`, `token issue`, `openapi`. One small function per command;
//! this is where processes are wired together and where shutdown starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiServer, ApiSettings, AppState};
use crate::auth::{Keys, Role};
use crate::config::{parse_duration, Config};
use crate::db::{self, cluster::LocalCluster};
use crate::domain::{Prefix, TenantSlug};
use crate::frontend::http::{HttpFilesServer, HttpFilesSettings};
use crate::frontend::{EventQueue, Frontend};
use crate::metrics::HttpMetrics;
use crate::snapshot::{RefresherSettings, SnapshotHandle};
use crate::tftp::{TftpConfig, TftpServer};

/// dialtone: provisioning for Cisco SIP desk phones.
#[derive(Debug, Parser)]
#[command(name = "dialtone", version, about)]
pub struct Cli {
    /// TOML configuration file (settings there are overridden by DIALTONE_* variables).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process (starts a private PostgreSQL when no database URL is set).
    Serve,
    /// The REST API only.
    Api,
    /// The TFTP + HTTP :6970 provisioning front end only (with an admin listener for health and metrics).
    Provision,
    /// Apply the database migrations (idempotent, safe to run concurrently).
    Migrate,
    /// Tokens for bootstrap and scripts.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print the OpenAPI document.
    Openapi,
}

/// `dialtone token …`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Print a signed JWT (HS256, with the configured or generated secret).
    Issue {
        /// platform-admin, tenant-admin or tenant-viewer.
        #[arg(long)]
        role: String,
        /// Tenant slug (tenant roles).
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime, e.g. 90s, 15m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// The token's subject (shown in audit events).
        #[arg(long, default_value = "cli")]
        subject: String,
    },
}

/// Runs the command line.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_logging(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve => runtime.block_on(serve(
            config,
            Parts {
                api: true,
                frontend: true,
            },
        )),
        Command::Api => runtime.block_on(serve(
            config,
            Parts {
                api: true,
                frontend: false,
            },
        )),
        Command::Provision => runtime.block_on(serve(
            config,
            Parts {
                api: false,
                frontend: true,
            },
        )),
        Command::Migrate => runtime.block_on(migrate(config)),
        Command::Token {
            action:
                TokenAction::Issue {
                    role,
                    tenant,
                    ttl,
                    subject,
                },
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let tenant = tenant
                .map(|t| t.parse::<TenantSlug>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let ttl =
                parse_duration(&ttl).context("--ttl: use a number with s, m, h or d (e.g. 24h)")?;
            let keys = keys(&config)?;
            println!("{}", keys.issue(&subject, role, tenant.as_ref(), ttl)?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", crate::api::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn keys(config: &Config) -> anyhow::Result<Keys> {
    let secret = config.jwt_secret_or_generate()?;
    Keys::new(Some(&secret), &config.jwt_public_keys, &config.jwt_audience)
}

/// The database to use: the configured URL, or a private cluster under the data dir (returned so that
/// the caller stops it on shutdown).
async fn database(config: &Config) -> anyhow::Result<(String, Option<LocalCluster>)> {
    if let Some(url) = &config.database_url {
        return Ok((url.expose().to_owned(), None));
    }
    let dir = config.data_dir.join("postgres");
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&dir)).await??;
    ensure_database(&cluster.connection_string("postgres"), "dialtone").await?;
    tracing::info!(data_dir = %config.data_dir.display(), "using the private PostgreSQL under the data dir");
    Ok((cluster.connection_string("dialtone"), Some(cluster)))
}

/// Creates database `name` if it does not exist.
pub async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let (client, conn) = db::parse_config(admin_url)?
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    let task = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        // Two processes may race here; the loser's "already exists" is fine.
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e.into());
            }
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let (url, cluster) = database(&config).await?;
    let applied = db::migrate(&url).await?;
    println!("applied {applied} migration(s)");
    if let Some(c) = cluster {
        c.stop();
    }
    Ok(())
}

/// Cancels the token on SIGINT or SIGTERM.
fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// Which front ends a process runs.
#[derive(Clone, Copy, Debug)]
struct Parts {
    api: bool,
    frontend: bool,
}

async fn serve(config: Config, parts: Parts) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    let (url, cluster) = database(&config).await?;
    let result = run(&config, &url, parts, cluster.is_some(), shutdown.clone()).await;
    shutdown.cancel();
    if let Some(c) = cluster {
        tokio::task::spawn_blocking(move || c.stop()).await?;
    }
    result
}

async fn migrate_with_retry(url: &str) -> anyhow::Result<()> {
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

async fn run(
    config: &Config,
    url: &str,
    parts: Parts,
    local_db: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The API brings a fresh database (or a new release) up to date before serving; a provisioning-only
    // process leaves that to `migrate` unless it runs its own private database.
    if parts.api || local_db {
        migrate_with_retry(url).await?;
    }
    let pool = db::pool(url, config.db_pool_size)?;
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    let mut frontend = None;
    let mut tftp_stats = None;
    if parts.frontend {
        let (fe, stats) = start_frontend(config, url, pool.clone(), &shutdown, &mut tasks).await?;
        frontend = Some(fe);
        tftp_stats = Some(stats);
    }
    if parts.api {
        let state = AppState {
            pool,
            keys: Arc::new(keys(config)?),
            metrics: Arc::new(HttpMetrics::default()),
            frontend: frontend.clone(),
            tftp_stats: tftp_stats.clone(),
        };
        let settings = ApiSettings {
            listen: config.api_listen,
            max_body: config.max_json_body,
            workers: config.api_workers,
        };
        let server = ApiServer::build(settings, state)
            .with_context(|| format!("binding the API to {}", config.api_listen))?;
        tracing::info!(address = %server.local_addr(), "API listening on http://{}", server.local_addr());
        let token = shutdown.clone();
        tasks.spawn(async move { Ok(server.run_until_stopped(token).await?) });
    } else if let Some(fe) = &frontend {
        let (addr, server) =
            crate::frontend::admin::start(config.admin_listen, fe.clone(), tftp_stats.clone())
                .with_context(|| {
                    format!("binding the admin listener to {}", config.admin_listen)
                })?;
        tracing::info!(address = %addr, "admin (health, metrics) listening on http://{addr}");
        let token = shutdown.clone();
        tasks.spawn(
            async move { Ok(crate::frontend::admin::run_until_stopped(server, token).await?) },
        );
    }
    // Run until a signal, or until any part fails (then stop the rest).
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            if result.is_ok() {
                result = Err(e);
            }
        }
        shutdown.cancel();
    }
    result
}

async fn start_frontend(
    config: &Config,
    url: &str,
    pool: db::Pool,
    shutdown: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<(Arc<Frontend>, Arc<crate::tftp::TftpStats>)> {
    let trusted = config
        .http_trusted_proxies
        .iter()
        .map(|p| {
            p.parse::<Prefix>()
                .map_err(|e| anyhow::anyhow!("http_trusted_proxies: {p}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let handle = SnapshotHandle::default();
    let refresher = RefresherSettings {
        url: url.to_owned(),
        full_reload_every: Duration::from_secs(config.snapshot_reload_secs.max(1)),
        retry_every: Duration::from_millis(500),
    };
    {
        let (handle, token) = (handle.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::snapshot::refresher::run(refresher, handle, token).await;
            Ok(())
        });
    }
    // Serve the first real snapshot, not an empty one, when the database answers within a few seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !handle.is_loaded() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
        ..TftpConfig::default()
    };
    let tftp = TftpServer::build(tftp_config, frontend.clone())
        .await
        .with_context(|| format!("binding TFTP to {}", config.tftp_listen))?;
    tracing::info!(address = %tftp.local_addr(), "TFTP listening on {}", tftp.local_addr());
    let stats = tftp.stats();
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(tftp.run_until_stopped(token).await?) });
    let http = HttpFilesServer::build(
        HttpFilesSettings {
            listen: config.http_listen,
            trusted_proxies: trusted,
            workers: 0,
        },
        frontend.clone(),
    )
    .with_context(|| format!("binding HTTP files to {}", config.http_listen))?;
    tracing::info!(address = %http.local_addr(), "HTTP files listening on http://{}", http.local_addr());
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(http.run_until_stopped(token).await?) });
    Ok((frontend, stats))
}
