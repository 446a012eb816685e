//! The command line: `serve`, `api`, `migrate`, `token issue`, `openapi`. One small function per command;
//! this is where processes are wired together and where shutdown starts.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::{self, Parts};
use crate::auth::Role;
use crate::config::{parse_duration, Config};
use crate::db::{self, cluster::LocalCluster};
use crate::domain::TenantSlug;

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
    /// Fleet operations against a running API (URL and token from flags or DIALTONE_URL / DIALTONE_TOKEN).
    Phones {
        /// What to do.
        #[command(subcommand)]
        action: PhonesAction,
        /// API base URL.
        #[arg(
            long,
            env = "DIALTONE_URL",
            default_value = "http://127.0.0.1:8080",
            global = true
        )]
        url: String,
        /// Bearer token; when absent, a short-lived platform-admin token is signed with the local secret.
        #[arg(long, env = "DIALTONE_TOKEN", global = true, hide_env_values = true)]
        token: Option<String>,
    },
    /// Load generators for capacity planning (TFTP boot storm).
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        action: crate::bench::BenchAction,
    },
}

/// `dialtone phones …`.
#[derive(Debug, Subcommand)]
pub enum PhonesAction {
    /// Create or update phones from a .csv or .json file (all or nothing unless --partial).
    Import {
        /// The file (`.csv` with a header row, or `.json` with an array).
        file: PathBuf,
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Check and report only.
        #[arg(long)]
        dry_run: bool,
        /// Apply the good rows even when some are refused.
        #[arg(long)]
        partial: bool,
    },
    /// Print a tenant's phones in the import format (no passwords).
    Export {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
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
            let keys = app::keys(&config)?;
            println!("{}", keys.issue(&subject, role, tenant.as_ref(), ttl)?);
            Ok(())
        }
        Command::Bench { action } => runtime.block_on(crate::bench::run(action)),
        Command::Phones { action, url, token } => {
            let token = match token {
                Some(t) => t,
                None => app::keys(&config)?.issue(
                    "cli",
                    Role::PlatformAdmin,
                    None,
                    std::time::Duration::from_secs(3600),
                )?,
            };
            let target = crate::ops::Target { url, token };
            match action {
                PhonesAction::Import {
                    file,
                    tenant,
                    dry_run,
                    partial,
                } => {
                    let refused = runtime.block_on(crate::ops::import(
                        &target, &tenant, &file, dry_run, partial,
                    ))?;
                    if refused > 0 {
                        anyhow::bail!("{refused} row(s) refused");
                    }
                    Ok(())
                }
                PhonesAction::Export {
                    tenant,
                    format,
                    output,
                } => runtime.block_on(crate::ops::export(
                    &target,
                    &tenant,
                    &format,
                    output.as_deref(),
                )),
            }
        }
        Command::Openapi => {
            println!("{}", crate::api::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

/// Logs to stderr with the configured filter. Whatever the filter says, tokio-postgres's statement log is
/// capped at info: at debug it prints every statement's parameters, SIP passwords included.
fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(
            "tokio_postgres::query=info"
                .parse()
                .expect("a valid directive"),
        );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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

async fn serve(config: Config, parts: Parts) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone());
    let (url, cluster) = database(&config).await?;
    let result = match app::start(&config, &url, parts, cluster.is_some(), shutdown.clone()).await {
        Ok(running) => running.wait().await,
        Err(e) => Err(e),
    };
    shutdown.cancel();
    if let Some(c) = cluster {
        tokio::task::spawn_blocking(move || c.stop()).await?;
    }
    result
}
