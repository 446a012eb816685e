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
use crate::domain::TenantSlug;
use crate::metrics::HttpMetrics;

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
        Command::Serve | Command::Api => runtime.block_on(serve(config)),
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    let (url, cluster) = database(&config).await?;
    let result = run_api(&config, &url, shutdown).await;
    if let Some(c) = cluster {
        tokio::task::spawn_blocking(move || c.stop()).await?;
    }
    result
}

async fn run_api(config: &Config, url: &str, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Migrations first: a fresh database (or a new release) is brought up to date before serving.
    let mut tries = 0;
    loop {
        match db::migrate(url).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(applied = n, "migrations applied");
                }
                break;
            }
            Err(db::DbError::Unavailable(_)) if tries < 30 => {
                tries += 1;
                tracing::warn!("database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => bail!("migrating the database: {e}"),
        }
    }
    let pool = db::pool(url, config.db_pool_size)?;
    let state = AppState {
        pool,
        keys: Arc::new(keys(config)?),
        metrics: Arc::new(HttpMetrics::default()),
    };
    let settings = ApiSettings {
        listen: config.api_listen,
        max_body: config.max_json_body,
        workers: config.api_workers,
    };
    let server = ApiServer::build(settings, state)
        .with_context(|| format!("binding the API to {}", config.api_listen))?;
    tracing::info!(address = %server.local_addr(), "API listening on http://{}", server.local_addr());
    server.run_until_stopped(shutdown).await?;
    Ok(())
}
