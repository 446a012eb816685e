//! The provisioning front end end to end: a full process (API + TFTP + HTTP :6970) on a fresh database,
//! driven through the REST API and fetched from with real clients (curl, tftp-hpa, atftp), the suite's own
//! raw TFTP client and an HTTP client, from source addresses inside and outside tenant networks.
//!
//! Every address in 127.0.0.0/8 is local on Linux: tenants get networks like 127.0.1.0/24 and the clients
//! bind to 127.0.1.5 and the like. tftp-hpa and atftp cannot choose their source, so the tests that use
//! them give a tenant 127.0.0.0/24.

mod abuse;
mod boot;
pub(crate) mod clients;
mod drift;
mod http;
mod isolation;
mod loadgen;
mod resilience;
mod transfer;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;

/// The fixture's test MAC.
pub const TEST_MAC: &str = "0004F2A1B2C3";

/// Hex SHA-256.
pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn prng(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls `f` every 20 ms until it gives `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The TFTP address of a full process.
pub fn tftp(app: &TestApp) -> SocketAddr {
    app.tftp.expect("the front end runs")
}

/// The HTTP :6970 address of a full process.
pub fn http_files(app: &TestApp) -> SocketAddr {
    app.http_files.expect("the front end runs")
}

/// Uploads raw `bytes` to an API path (`/v1/files/NAME` or `/v1/tenants/T/files/NAME`) as platform admin.
pub async fn put_raw(app: &TestApp, path: &str, bytes: Vec<u8>) -> StatusCode {
    let r = app
        .http
        .put(format!("{}{}", app.base, path))
        .bearer_auth(app.admin())
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("PUT a file");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "PUT {path}: {status} {text}"
    );
    status
}

/// Uploads a global file.
pub async fn put_global_file(app: &TestApp, name: &str, bytes: Vec<u8>) {
    put_raw(app, &format!("/v1/files/{name}"), bytes).await;
}

/// Uploads a file of tenant `t`.
pub async fn put_tenant_file(app: &TestApp, t: &str, name: &str, bytes: Vec<u8>) {
    put_raw(app, &format!("/v1/tenants/{t}/files/{name}"), bytes).await;
}

/// Creates tenant `slug` (the spec's example settings) with network `cidr`.
pub async fn tenant_with_network(app: &TestApp, slug: &str, cidr: &str) {
    app.create_tenant(slug).await;
    let r = app.add_network(slug, cidr).await;
    assert_eq!(r.status, StatusCode::CREATED, "network {cidr}: {}", r.text);
}

/// A one-line phone body.
pub fn phone_of(model: &str, number: &str, display: &str) -> Value {
    json!({"model": model, "label": "Desk", "lines": [
        {"number": number, "auth_name": number, "password": format!("pw-{number}"), "display_name": display}
    ]})
}

/// PUTs phone `mac` of `model` with one line `number` into tenant `t`.
pub async fn put_phone(app: &TestApp, t: &str, mac: &str, model: &str, number: &str) {
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/tenants/{t}/phones/{mac}"),
            Some(&app.admin()),
            Some(phone_of(model, number, "Alice")),
        )
        .await;
    assert!(
        r.status == StatusCode::CREATED || r.status == StatusCode::OK,
        "PUT phone {mac}: {} {}",
        r.status,
        r.text
    );
}

/// PATCHes tenant `t`'s settings (merge patch) as platform admin.
pub async fn patch_settings(app: &TestApp, t: &str, settings: Value) {
    let r = app
        .call(
            Method::PATCH,
            &format!("/v1/tenants/{t}"),
            Some(&app.admin()),
            Some(json!({ "settings": settings })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "PATCH tenant {t}: {}", r.text);
}

/// Waits (in process, without touching the wire) until the process's snapshot serves `name` to
/// `source` with content satisfying `pred`; returns the bytes.
pub async fn wait_snapshot(
    app: &TestApp,
    source: &str,
    name: &str,
    pred: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let ip = source.parse().unwrap();
    eventually(
        Duration::from_secs(10),
        &format!("the snapshot to serve {name} to {source}"),
        || {
            let r = dialtone::provisioning::provision(&app.snapshot.current(), ip, name);
            let got = match r {
                Ok(s) if pred(&s.bytes) => Some(s.bytes.to_vec()),
                _ => None,
            };
            async move { got }
        },
    )
    .await
}

/// `/metrics` of the API.
pub async fn metrics(app: &TestApp) -> String {
    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.text
}

/// The value of the series whose line starts with `series` (exact labels), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
