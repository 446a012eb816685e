//! `Config`: every setting with its default, loaded as defaults < TOML file (`--config`) < `DIALTONE_*`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A public key that verifies tokens minted elsewhere (a portal's identity provider).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// `EdDSA`, `ES256` or `RS256`.
    pub algorithm: String,
    /// Path of the PEM file.
    pub pem_file: PathBuf,
    /// Optional key id (`kid` header) this key answers to.
    #[serde(default)]
    pub kid: Option<String>,
}

/// All settings. See the README's configuration table for each one's meaning.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// PostgreSQL URL; none means "start a private cluster under `data_dir`" (serve only).
    pub database_url: Option<Secret>,
    /// Where dialtone keeps its private PostgreSQL and generated secrets.
    pub data_dir: PathBuf,
    /// REST API listener.
    pub api_listen: SocketAddr,
    /// TFTP listener.
    pub tftp_listen: SocketAddr,
    /// HTTP file listener (port 6970).
    pub http_listen: SocketAddr,
    /// HS256 secret; when unset, `serve` and `token` use (or create) `data_dir/jwt-secret`.
    pub jwt_secret: Option<Secret>,
    /// Required `aud` claim.
    pub jwt_audience: String,
    /// Public keys for EdDSA/ES256/RS256 tokens.
    pub jwt_public_keys: Vec<PublicKeyConfig>,
    /// API database connections per process (split across the API workers' own pools); background
    /// work has a pool of the same bound.
    pub db_pool_size: usize,
    /// Largest accepted JSON body, bytes.
    pub max_json_body: usize,
    /// Log filter (`info`, `dialtone=debug`, …).
    pub log: String,
    /// Worker threads of the HTTP API (0 = one per core).
    pub api_workers: usize,
    /// Health, readiness and metrics of `dialtone provision` (the API serves them in `serve`).
    pub admin_listen: SocketAddr,
    /// Largest TFTP block size granted (RFC 2348: 8 to 65464).
    pub tftp_max_blksize: u16,
    /// Largest TFTP window granted (RFC 7440).
    pub tftp_max_windowsize: u16,
    /// TFTP retransmission timeout, milliseconds.
    pub tftp_timeout_ms: u64,
    /// TFTP retransmissions before a transfer is given up.
    pub tftp_retries: u32,
    /// Concurrent TFTP transfers per source address.
    pub tftp_max_transfers_per_source: usize,
    /// "File not found" answers per source address and minute before the source is ignored.
    pub tftp_miss_budget_per_minute: u32,
    /// How long an over-budget source is ignored, seconds.
    pub tftp_cooldown_secs: u64,
    /// Receive buffer of the TFTP listening socket, bytes.
    pub tftp_recv_buffer_bytes: usize,
    /// TFTP worker threads, each with its own listening socket (0 = one per core but one, at least one;
    /// see `tftp::default_workers`).
    pub tftp_workers: usize,
    /// HTTP :6970 worker threads, each with its own listening socket (0 = one per core).
    pub http_workers: usize,
    /// Give each :6970 connection to the worker numbered after the core it arrived on, instead of a hash's
    /// pick (see `frontend::http`).
    pub http_steer_by_cpu: bool,
    /// Proxies (CIDR) whose `X-Forwarded-For` the :6970 listener believes.
    pub http_trusted_proxies: Vec<String>,
    /// Full snapshot reload period even without notifications, seconds.
    pub snapshot_reload_secs: u64,
    /// Fetch events held in memory while the database is slow or away.
    pub fetch_queue_capacity: usize,
    /// Poll the database for changes every this many milliseconds instead of LISTEN/NOTIFY (0: off; use
    /// it when following a read replica).
    pub snapshot_poll_ms: u64,
    /// Days of fetch history kept (older events are pruned by API processes).
    pub fetch_retention_days: u32,
    /// Remote resync `NOTIFY`s sent per second by a tenant-wide resync (1 to 1000).
    pub resync_rate_per_second: u32,
    /// Public addresses phones should use as TFTP server (DHCP options 66 and 150 of `dhcp-config`).
    pub provisioning_addresses: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            data_dir: PathBuf::from("dialtone-data"),
            api_listen: "0.0.0.0:8080".parse().expect("valid"),
            // Dual-stack: IPv4 and IPv6 on one socket.
            tftp_listen: "[::]:69".parse().expect("valid"),
            http_listen: "0.0.0.0:6970".parse().expect("valid"),
            jwt_secret: None,
            jwt_audience: "dialtone".into(),
            jwt_public_keys: Vec::new(),
            db_pool_size: 16,
            max_json_body: 64 * 1024 * 1024,
            log: "info".into(),
            api_workers: 0,
            admin_listen: "127.0.0.1:9970".parse().expect("valid"),
            tftp_max_blksize: 65464,
            tftp_max_windowsize: 64,
            tftp_timeout_ms: 1000,
            tftp_retries: 5,
            tftp_max_transfers_per_source: 512,
            tftp_miss_budget_per_minute: 600,
            tftp_cooldown_secs: 60,
            tftp_recv_buffer_bytes: 8 << 20,
            tftp_workers: 0,
            http_workers: 0,
            http_steer_by_cpu: true,
            http_trusted_proxies: Vec::new(),
            snapshot_reload_secs: 60,
            fetch_queue_capacity: 100_000,
            fetch_retention_days: 90,
            snapshot_poll_ms: 0,
            resync_rate_per_second: 20,
            provisioning_addresses: Vec::new(),
        }
    }
}

impl Config {
    /// Loads defaults, then the TOML file if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Applies `DIALTONE_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn parse<T: std::str::FromStr>(key: &str, v: String) -> anyhow::Result<T> {
            match v.parse() {
                Ok(x) => Ok(x),
                // Never echo the value: the variable may hold a secret.
                Err(_) => bail!("environment variable {key} has an invalid value"),
            }
        }
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(v) = get("DIALTONE_DATABASE_URL") {
            self.database_url = Some(Secret::new(v));
        }
        if let Some(v) = get("DIALTONE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("DIALTONE_API_LISTEN") {
            self.api_listen = parse("DIALTONE_API_LISTEN", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_LISTEN") {
            self.tftp_listen = parse("DIALTONE_TFTP_LISTEN", v)?;
        }
        if let Some(v) = get("DIALTONE_HTTP_LISTEN") {
            self.http_listen = parse("DIALTONE_HTTP_LISTEN", v)?;
        }
        if let Some(v) = get("DIALTONE_JWT_SECRET") {
            self.jwt_secret = Some(Secret::new(v));
        }
        if let Some(v) = get("DIALTONE_JWT_AUDIENCE") {
            self.jwt_audience = v;
        }
        if let Some(v) = get("DIALTONE_DB_POOL_SIZE") {
            self.db_pool_size = parse("DIALTONE_DB_POOL_SIZE", v)?;
        }
        if let Some(v) = get("DIALTONE_MAX_JSON_BODY") {
            self.max_json_body = parse("DIALTONE_MAX_JSON_BODY", v)?;
        }
        if let Some(v) = get("DIALTONE_LOG") {
            self.log = v;
        }
        if let Some(v) = get("DIALTONE_API_WORKERS") {
            self.api_workers = parse("DIALTONE_API_WORKERS", v)?;
        }
        if let Some(v) = get("DIALTONE_ADMIN_LISTEN") {
            self.admin_listen = parse("DIALTONE_ADMIN_LISTEN", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_MAX_BLKSIZE") {
            self.tftp_max_blksize = parse("DIALTONE_TFTP_MAX_BLKSIZE", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_MAX_WINDOWSIZE") {
            self.tftp_max_windowsize = parse("DIALTONE_TFTP_MAX_WINDOWSIZE", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_MAX_TRANSFERS_PER_SOURCE") {
            self.tftp_max_transfers_per_source =
                parse("DIALTONE_TFTP_MAX_TRANSFERS_PER_SOURCE", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_MISS_BUDGET_PER_MINUTE") {
            self.tftp_miss_budget_per_minute = parse("DIALTONE_TFTP_MISS_BUDGET_PER_MINUTE", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_COOLDOWN_SECS") {
            self.tftp_cooldown_secs = parse("DIALTONE_TFTP_COOLDOWN_SECS", v)?;
        }
        if let Some(v) = get("DIALTONE_TFTP_WORKERS") {
            self.tftp_workers = parse("DIALTONE_TFTP_WORKERS", v)?;
        }
        if let Some(v) = get("DIALTONE_HTTP_WORKERS") {
            self.http_workers = parse("DIALTONE_HTTP_WORKERS", v)?;
        }
        if let Some(v) = get("DIALTONE_HTTP_STEER_BY_CPU") {
            self.http_steer_by_cpu = parse("DIALTONE_HTTP_STEER_BY_CPU", v)?;
        }
        if let Some(v) = get("DIALTONE_HTTP_TRUSTED_PROXIES") {
            self.http_trusted_proxies = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("DIALTONE_PROVISIONING_ADDRESSES") {
            self.provisioning_addresses = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("DIALTONE_SNAPSHOT_POLL_MS") {
            self.snapshot_poll_ms = parse("DIALTONE_SNAPSHOT_POLL_MS", v)?;
        }
        if let Some(v) = get("DIALTONE_FETCH_RETENTION_DAYS") {
            self.fetch_retention_days = parse("DIALTONE_FETCH_RETENTION_DAYS", v)?;
        }
        if let Some(v) = get("DIALTONE_SNAPSHOT_RELOAD_SECS") {
            self.snapshot_reload_secs = parse("DIALTONE_SNAPSHOT_RELOAD_SECS", v)?;
        }
        if let Some(v) = get("DIALTONE_FETCH_QUEUE_CAPACITY") {
            self.fetch_queue_capacity = parse("DIALTONE_FETCH_QUEUE_CAPACITY", v)?;
        }
        if let Some(v) = get("DIALTONE_RESYNC_RATE_PER_SECOND") {
            self.resync_rate_per_second = parse("DIALTONE_RESYNC_RATE_PER_SECOND", v)?;
        }
        Ok(())
    }

    /// The HS256 secret: configured, or read from (and on first use written to) `data_dir/jwt-secret`.
    pub fn jwt_secret_or_generate(&self) -> anyhow::Result<Secret> {
        if let Some(s) = &self.jwt_secret {
            return Ok(s.clone());
        }
        let path = self.data_dir.join("jwt-secret");
        if let Ok(s) = std::fs::read_to_string(&path) {
            let s = s.trim();
            if s.len() >= 32 {
                return Ok(Secret::new(s));
            }
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(16) {
            chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        let secret = hex::encode(bytes);
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(secret.as_bytes())?;
        Ok(Secret::new(secret))
    }
}

/// Parses durations such as `90s`, `15m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_defaults() {
        let mut c: Config =
            toml::from_str("api_listen = \"127.0.0.1:9000\"\nlog = \"debug\"").unwrap();
        assert_eq!(c.api_listen.port(), 9000);
        c.apply_env(|k| (k == "DIALTONE_API_LISTEN").then(|| "127.0.0.1:0".to_string()))
            .unwrap();
        assert_eq!(c.api_listen.port(), 0);
        assert_eq!(c.log, "debug");
        assert_eq!(c.http_listen.port(), 6970);
    }

    #[test]
    fn bad_env_values_are_named_but_not_echoed() {
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "DIALTONE_DB_POOL_SIZE").then(|| "lots-secret".to_string()))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("DIALTONE_DB_POOL_SIZE") && !msg.contains("lots-secret"),
            "{msg}"
        );
    }

    #[test]
    fn provisioning_addresses_from_file_and_env() {
        assert!(Config::default().provisioning_addresses.is_empty());
        let mut c: Config = toml::from_str("provisioning_addresses = [\"198.51.100.1\"]").unwrap();
        assert_eq!(c.provisioning_addresses, ["198.51.100.1"]);
        c.apply_env(|k| {
            (k == "DIALTONE_PROVISIONING_ADDRESSES")
                .then(|| " 192.0.2.10, 192.0.2.11,,".to_string())
        })
        .unwrap();
        assert_eq!(c.provisioning_addresses, ["192.0.2.10", "192.0.2.11"]);
        // An empty variable leaves the configured list alone.
        c.apply_env(|k| (k == "DIALTONE_PROVISIONING_ADDRESSES").then(String::new))
            .unwrap();
        assert_eq!(c.provisioning_addresses.len(), 2);
    }

    #[test]
    fn http_steering_is_on_unless_the_file_or_the_environment_turns_it_off() {
        assert!(Config::default().http_steer_by_cpu);
        let mut c: Config = toml::from_str("http_steer_by_cpu = false").unwrap();
        assert!(!c.http_steer_by_cpu);
        c.apply_env(|k| (k == "DIALTONE_HTTP_STEER_BY_CPU").then(|| "true".to_string()))
            .unwrap();
        assert!(c.http_steer_by_cpu);
        let err = c
            .apply_env(|k| (k == "DIALTONE_HTTP_STEER_BY_CPU").then(|| "sometimes".to_string()))
            .unwrap_err();
        assert!(
            err.to_string().contains("DIALTONE_HTTP_STEER_BY_CPU"),
            "{err}"
        );
        assert!(c.http_steer_by_cpu, "a refused value changes nothing");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<Config>("api_lisen = \"127.0.0.1:9000\"").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config {
            jwt_secret: Some(Secret::new("topsecret")),
            database_url: Some(Secret::new("postgres://u:pw@h/db")),
            ..Config::default()
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("topsecret") && !dbg.contains("pw@h"), "{dbg}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5y"), None);
    }
}
