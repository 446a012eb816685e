//! `TestApp`: a real dialtone API on a free port, on a fresh database, with typed request helpers.

pub mod database;

use std::sync::Arc;
use std::time::Duration;

use dialtone::api::{ApiServer, ApiSettings, AppState};
use dialtone::app::Parts;
use dialtone::auth::{Keys, Role};
use dialtone::config::{Config, Secret};
use dialtone::domain::TenantSlug;
use dialtone::metrics::HttpMetrics;
use dialtone::snapshot::SnapshotHandle;
use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The HS256 secret of every test server.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A running API and what it takes to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Connection string of this test's database.
    pub db_url: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The server's keys (for minting tokens).
    pub keys: Arc<Keys>,
    /// TFTP address, when the front end runs.
    pub tftp: Option<std::net::SocketAddr>,
    /// HTTP :6970 address, when the front end runs.
    pub http_files: Option<std::net::SocketAddr>,
    /// The process's snapshot.
    pub snapshot: SnapshotHandle,
    shutdown: CancellationToken,
}

/// A response: status, headers, JSON body (or `Value::Null`).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Starts the graceful shutdown `serve` begins on SIGTERM (the test's process goes on).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Starts the API (with its snapshot refresher) on a fresh database.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(
            Parts {
                api: true,
                frontend: false,
            },
            |_| {},
        )
        .await
    }

    /// Starts everything `serve` starts (API, TFTP, HTTP :6970) on a fresh database.
    pub async fn spawn_full() -> TestApp {
        Self::spawn_with(Parts::ALL, |_| {}).await
    }

    /// Starts `parts` on a fresh database, with `adjust` applied to the configuration.
    pub async fn spawn_with(parts: Parts, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db_url = database::fresh().await;
        let mut config = Config {
            database_url: Some(Secret::new(db_url.clone())),
            jwt_secret: Some(Secret::new(SECRET)),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            tftp_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            api_workers: 2,
            db_pool_size: 8,
            max_json_body: 1024 * 1024,
            ..Config::default()
        };
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let url = config.database_url.as_ref().unwrap().expose().to_owned();
        let running = dialtone::app::start(&config, &url, parts, false, shutdown.clone())
            .await
            .expect("start dialtone");
        let base = running
            .api
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        let (tftp, http_files, snapshot) = (running.tftp, running.http, running.snapshot.clone());
        tokio::spawn(running.wait());
        let keys = Arc::new(dialtone::app::keys(&config).unwrap());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp {
            base,
            db_url,
            http,
            keys,
            tftp,
            http_files,
            snapshot,
            shutdown,
        }
    }

    /// An API whose database cannot be reached (for 503 tests).
    pub async fn spawn_unreachable() -> TestApp {
        let db_url = "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=1".to_owned();
        let keys = Arc::new(Keys::new(Some(&Secret::new(SECRET)), &[], "dialtone").unwrap());
        let pool = dialtone::db::pool(&db_url, 8).unwrap();
        let snapshot = SnapshotHandle::default();
        let state = AppState {
            shared: dialtone::db::SharedConnection::new(pool.clone()),
            creates: Default::default(),
            pool,
            keys: keys.clone(),
            metrics: Arc::new(HttpMetrics::default()),
            snapshot: snapshot.clone(),
            frontend: None,
            tftp_stats: None,
            resync_rate_per_second: 20,
            provisioning_addresses: Vec::new(),
            worker_pools: Default::default(),
            changes: Default::default(),
        };
        let settings = ApiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_body: 1024,
            workers: 2,
            worker_pools: Some(dialtone::db::PoolSpec::parse(&db_url, 8).unwrap()),
        };
        let server = ApiServer::build(settings, state).unwrap();
        let base = format!("http://{}", server.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(server.run_until_stopped(shutdown.clone()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp {
            base,
            db_url,
            http,
            keys,
            tftp: None,
            http_files: None,
            snapshot,
            shutdown,
        }
    }

    /// A connection of its own to the app's database, for checks the API does not show.
    pub async fn sql(&self) -> tokio_postgres::Client {
        let (c, conn) = dialtone::db::parse_config(&self.db_url)
            .unwrap()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        c
    }

    /// A platform-admin token.
    pub fn admin(&self) -> String {
        self.keys
            .issue(
                "test-admin",
                Role::PlatformAdmin,
                None,
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    /// A tenant-admin token of `tenant`.
    pub fn tenant_admin(&self, tenant: &str) -> String {
        let slug: TenantSlug = tenant.parse().unwrap();
        self.keys
            .issue(
                &format!("admin-of-{tenant}"),
                Role::TenantAdmin,
                Some(&slug),
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    /// A tenant-viewer token of `tenant`.
    pub fn viewer(&self, tenant: &str) -> String {
        let slug: TenantSlug = tenant.parse().unwrap();
        self.keys
            .issue(
                &format!("viewer-of-{tenant}"),
                Role::TenantViewer,
                Some(&slug),
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    /// Sends a request with an optional token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::read(req.send().await.expect("request")).await
    }

    /// Reads a response.
    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// Creates tenant `slug` with the spec's example settings; panics unless 201.
    pub async fn create_tenant(&self, slug: &str) -> Value {
        let r = self
            .call(
                Method::POST,
                "/v1/tenants",
                Some(&self.admin()),
                Some(tenant_body(slug)),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create tenant {slug}: {}",
            r.text
        );
        r.body
    }

    /// Adds network `cidr` to `slug`; returns the response.
    pub async fn add_network(&self, slug: &str, cidr: &str) -> Resp {
        self.call(
            Method::POST,
            &format!("/v1/tenants/{slug}/networks"),
            Some(&self.admin()),
            Some(json!({"cidr": cidr})),
        )
        .await
    }

    /// The one `bigint` that `sql` selects (a `count(*)`), over a connection of its own.
    pub async fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> i64 {
        self.sql()
            .await
            .query_one(sql, params)
            .await
            .unwrap()
            .get(0)
    }

    /// PUTs a one-line 7960 with `mac` into `slug`.
    pub async fn put_phone(&self, slug: &str, mac: &str) -> Resp {
        self.call(
            Method::PUT,
            &format!("/v1/tenants/{slug}/phones/{mac}"),
            Some(&self.admin()),
            Some(phone_body()),
        )
        .await
    }
}

/// The id of the tenant named `slug`, read over `c`.
pub async fn tenant_id(c: &tokio_postgres::Client, slug: &str) -> uuid::Uuid {
    c.query_one("SELECT id FROM tenants WHERE slug = $1", &[&slug])
        .await
        .unwrap()
        .get(0)
}

/// The spec's example tenant body.
pub fn tenant_body(slug: &str) -> Value {
    json!({"slug": slug, "name": format!("Tenant {slug}"),
       "settings": {"sip": {"registrar": "sip.acme.example", "port": 5060, "transport": "udp"},
                    "time": {"ntp_server": "ntp.acme.example", "time_zone": "Europe/London"},
                    "voicemail_number": "*97",
                    "dial_plan": [{"match": "9.", "timeout": 3}],
                    "ring_list": [{"name": "Old Style", "file": "ringer1.pcm"}],
                    "firmware": {"os79xx": "P0S3-8-12-00",
                                 "loads": {"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}}}})
}

/// The spec's example phone body.
pub fn phone_body() -> Value {
    json!({"model": "7960", "label": "Reception",
           "lines": [{"number": "1001", "auth_name": "1001", "password": "s3cret-pw-1001", "display_name": "Alice"}]})
}
