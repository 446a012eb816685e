//! `TestApp`: a real dialtone API on a free port, on a fresh database, with typed request helpers.

pub mod database;

use std::sync::Arc;
use std::time::Duration;

use dialtone::api::{ApiServer, ApiSettings, AppState};
use dialtone::auth::{Keys, Role};
use dialtone::config::Secret;
use dialtone::domain::TenantSlug;
use dialtone::metrics::HttpMetrics;
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
    /// Starts an API on a fresh database.
    pub async fn spawn() -> TestApp {
        let db_url = database::fresh().await;
        Self::spawn_on(db_url, 1024 * 1024).await
    }

    /// Starts an API on `db_url` with a body limit.
    pub async fn spawn_on(db_url: String, max_body: usize) -> TestApp {
        let keys = Arc::new(Keys::new(Some(&Secret::new(SECRET)), &[], "dialtone").unwrap());
        let pool = dialtone::db::pool(&db_url, 8).unwrap();
        let state = AppState {
            pool,
            keys: keys.clone(),
            metrics: Arc::new(HttpMetrics::default()),
            frontend: None,
            tftp_stats: None,
        };
        let settings = ApiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_body,
            workers: 2,
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
            shutdown,
        }
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
