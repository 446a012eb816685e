//! What phones got and would get: fetch history, configuration drift (`config_state`), discovered devices,
//! previews (byte-identical to the wire) and the per-tenant request counters in `/metrics`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::clients;
use super::{
    eventually, http_files, metric, metrics, patch_settings, put_phone, sha256_hex,
    tenant_with_network, tftp, wait_snapshot,
};
use crate::helpers::TestApp;

const MAC1: &str = "0004F2D00001";
const MAC2: &str = "0004F2D00002";
const MAC3: &str = "0004F2D00003";

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.call(Method::GET, path, Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.text);
    r.body
}

async fn config_state(app: &TestApp, mac: &str) -> String {
    get_json(
        app,
        &format!("/v1/tenants/alpha/phones/{mac}"),
        &app.admin(),
    )
    .await["config_state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn macs_in_state(app: &TestApp, state: &str) -> BTreeSet<String> {
    get_json(
        app,
        &format!("/v1/tenants/alpha/phones?config_state={state}"),
        &app.admin(),
    )
    .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mac"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_state(app: &TestApp, mac: &str, want: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("{mac} to be {want}"),
        || async move { (config_state(app, mac).await == want).then_some(()) },
    )
    .await;
}

/// Waits until the fetch history of `mac` holds an event for `file` with `outcome`; returns it.
async fn wait_fetch(app: &TestApp, mac: &str, file: &str, outcome: &str, after_id: i64) -> Value {
    let token = app.viewer("alpha");
    eventually(
        Duration::from_secs(5),
        &format!("a {outcome} fetch of {file} in {mac}'s history"),
        || {
            let token = token.clone();
            async move {
                let body = get_json(
                    app,
                    &format!("/v1/tenants/alpha/phones/{mac}/fetches"),
                    &token,
                )
                .await;
                body["items"].as_array().unwrap().iter().find_map(|e| {
                    (e["file_name"] == file
                        && e["outcome"] == outcome
                        && e["id"].as_i64().unwrap() > after_id)
                        .then(|| e.clone())
                })
            }
        },
    )
    .await
}

/// The writer holds a phone's events for a second after the first (`frontend::events::Hold`), so that the
/// requests of one boot are stored as one page (a row of `fetch_event_pages`), not one page per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phones_requests_within_a_second_are_stored_as_one_page() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    put_phone(&app, "alpha", MAC1, "7960", "1001").await;
    let file = format!("SIP{MAC1}.cnf");
    wait_snapshot(&app, "127.0.1.5", &file, |_| true).await;
    // Two fetches further apart than the writer's batches (a quarter of a second).
    clients::tftp_get(tftp(&app), "127.0.1.5", &file, &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    clients::tftp_get(tftp(&app), "127.0.1.5", &file, &[])
        .await
        .unwrap();
    let token = app.viewer("alpha");
    eventually(
        Duration::from_secs(5),
        "both fetches in the history",
        || {
            let token = token.clone();
            let app = &app;
            async move {
                let body = get_json(
                    app,
                    &format!("/v1/tenants/alpha/phones/{MAC1}/fetches"),
                    &token,
                )
                .await;
                (body["items"].as_array().unwrap().len() == 2).then_some(())
            }
        },
    )
    .await;
    let c = dialtone::db::pool(&app.db_url, 1)
        .unwrap()
        .get()
        .await
        .unwrap();
    let row = c
        .query_one(
            "SELECT count(*), sum(n)::bigint FROM fetch_event_pages WHERE phone_mac = $1",
            &[&MAC1],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (1, 2),
        "pages and events of the phone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_history_and_configuration_drift() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    put_phone(&app, "alpha", MAC1, "7960", "1001").await;
    put_phone(&app, "alpha", MAC2, "7942", "1002").await;
    put_phone(&app, "alpha", MAC3, "7960", "1003").await;
    let f1 = format!("SIP{MAC1}.cnf");
    let f2 = format!("SEP{MAC2}.cnf.xml");
    wait_snapshot(&app, "127.0.1.5", &f1, |_| true).await;
    wait_snapshot(&app, "127.0.1.5", &f2, |_| true).await;
    for mac in [MAC1, MAC2, MAC3] {
        assert_eq!(config_state(&app, mac).await, "never_fetched", "{mac}");
    }

    // Phone 1 over TFTP (with options), phone 2 over HTTP.
    let got1 = clients::tftp_get(tftp(&app), "127.0.1.5", &f1, &[("blksize", "1024")])
        .await
        .unwrap();
    let r = clients::http_from("127.0.1.6")
        .get(clients::file_url(http_files(&app), &f2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got2 = r.bytes().await.unwrap().to_vec();

    let e1 = wait_fetch(&app, MAC1, &f1, "served", 0).await;
    assert_eq!(e1["protocol"], "tftp");
    assert_eq!(e1["source"], "127.0.1.5");
    assert!(e1["source_port"].as_i64().unwrap() > 0, "{e1}");
    assert_eq!(e1["bytes"].as_i64().unwrap() as usize, got1.data.len());
    assert_eq!(e1["sha256"].as_str().unwrap(), sha256_hex(&got1.data));
    let e2 = wait_fetch(&app, MAC2, &f2, "served", 0).await;
    assert_eq!(
        (e2["protocol"].as_str(), e2["source"].as_str()),
        (Some("http"), Some("127.0.1.6"))
    );
    assert_eq!(e2["sha256"].as_str().unwrap(), sha256_hex(&got2));
    // Phone 3's history is empty; phone 1's holds nothing of phone 2.
    let h3 = get_json(
        &app,
        &format!("/v1/tenants/alpha/phones/{MAC3}/fetches"),
        &app.admin(),
    )
    .await;
    assert_eq!(h3["items"].as_array().unwrap().len(), 0, "{h3}");
    let h1 = get_json(
        &app,
        &format!("/v1/tenants/alpha/phones/{MAC1}/fetches"),
        &app.admin(),
    )
    .await;
    assert!(
        h1["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["file_name"] == f1.as_str()),
        "{h1}"
    );

    // Drift: what they fetched is what they would get now.
    assert_eq!(config_state(&app, MAC1).await, "current");
    assert_eq!(config_state(&app, MAC2).await, "current");
    assert_eq!(config_state(&app, MAC3).await, "never_fetched");
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(macs_in_state(&app, "current").await, set(&[MAC1, MAC2]));
    assert_eq!(macs_in_state(&app, "never_fetched").await, set(&[MAC3]));
    assert_eq!(macs_in_state(&app, "outdated").await, set(&[]));

    // A change to phone 1 makes it outdated (and only it).
    let r = app
        .call(
            Method::PATCH,
            &format!("/v1/tenants/alpha/phones/{MAC1}"),
            Some(&app.admin()),
            Some(
                json!({"lines": [{"number": "1001", "auth_name": "1001", "password": "pw-1001",
                                    "display_name": "Alice Renamed"}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_state(&app, MAC1, "outdated").await;
    assert_eq!(config_state(&app, MAC2).await, "current");
    assert_eq!(macs_in_state(&app, "outdated").await, set(&[MAC1]));
    let fetched_ids = e1["id"].as_i64().unwrap();

    // It fetches again: current again.
    let again = clients::tftp_get(tftp(&app), "127.0.1.5", &f1, &[])
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&again.data).contains("Alice Renamed"));
    let e1b = wait_fetch(&app, MAC1, &f1, "served", fetched_ids).await;
    assert_eq!(e1b["sha256"].as_str().unwrap(), sha256_hex(&again.data));
    wait_state(&app, MAC1, "current").await;

    // A tenant-wide change that reaches every device file makes both fetched phones outdated.
    patch_settings(
        &app,
        "alpha",
        json!({"sip": {"registrar": "sip2.acme.example"}}),
    )
    .await;
    wait_state(&app, MAC1, "outdated").await;
    wait_state(&app, MAC2, "outdated").await;
    assert_eq!(config_state(&app, MAC3).await, "never_fetched");
    assert_eq!(macs_in_state(&app, "outdated").await, set(&[MAC1, MAC2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_mac_asking_from_a_tenant_network_is_discovered() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    tenant_with_network(&app, "bravo", "127.0.2.0/24").await;
    put_phone(&app, "bravo", MAC2, "7960", "2002").await;
    wait_snapshot(&app, "127.0.2.5", &format!("SIP{MAC2}.cnf"), |_| true).await;
    let server = tftp(&app);
    let unknown = "0004F2E0000E";
    let elsewhere = "0004F2E0000F";
    // Another tenant's phone and a stranger's request are not "discovered" in alpha.
    let _ = clients::tftp_get(server, "127.0.1.7", &format!("SIP{MAC2}.cnf"), &[]).await;
    let stray = clients::first_reply(
        server,
        "127.0.3.5",
        &format!("SEP{elsewhere}.cnf.xml"),
        Duration::from_millis(300),
    )
    .await;
    assert!(stray.is_none());
    for name in [format!("SEP{unknown}.cnf.xml"), format!("SIP{unknown}.cnf")] {
        let r = clients::tftp_get(server, "127.0.1.7", &name, &[]).await;
        assert_eq!(
            r.unwrap_err(),
            clients::FetchError::Tftp(1, "File not found".into())
        );
    }
    let viewer = app.viewer("alpha");
    let found = eventually(
        Duration::from_secs(5),
        "the unknown MAC in discovered-devices",
        || {
            let (app, viewer) = (&app, viewer.clone());
            async move {
                let body = get_json(app, "/v1/tenants/alpha/discovered-devices", &viewer).await;
                let items = body["items"].as_array().unwrap().clone();
                items
                    .iter()
                    .any(|d| d["mac"] == unknown && d["requests"].as_i64() >= Some(2))
                    .then_some(items)
            }
        },
    )
    .await;
    assert_eq!(found.len(), 1, "only the unknown MAC: {found:?}");
    let d = &found[0];
    assert_eq!(d["source"], "127.0.1.7");
    let files: Vec<&str> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&format!("SIP{unknown}.cnf").as_str()), "{d}");
    assert!(
        files.contains(&format!("SEP{unknown}.cnf.xml").as_str()),
        "{d}"
    );
    assert_eq!(d["model_guess"], "7940/7960");
    let b = get_json(&app, "/v1/tenants/bravo/discovered-devices", &app.admin()).await;
    assert_eq!(b["items"].as_array().unwrap().len(), 0, "{b}");
    // Once it is provisioned it is no longer "discovered".
    put_phone(&app, "alpha", unknown, "7960", "1009").await;
    let body = get_json(&app, "/v1/tenants/alpha/discovered-devices", &viewer).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preview_is_byte_identical_to_the_wire_and_admin_only() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    tenant_with_network(&app, "bravo", "127.0.2.0/24").await;
    put_phone(&app, "alpha", MAC1, "7960", "1001").await;
    put_phone(&app, "alpha", MAC2, "7942", "1002").await;
    wait_snapshot(&app, "127.0.1.5", &format!("SEP{MAC2}.cnf.xml"), |_| true).await;
    wait_snapshot(&app, "127.0.1.5", &format!("SIP{MAC1}.cnf"), |_| true).await;
    let admin = app.tenant_admin("alpha");
    let preview = |path: String, token: String| {
        let app = &app;
        async move {
            let r = app
                .http
                .get(format!("{}{path}", app.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let sha = r
                .headers()
                .get("x-content-sha256")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status(), sha, r.bytes().await.unwrap().to_vec())
        }
    };
    let device = [
        (MAC1, format!("SIP{MAC1}.cnf")),
        (MAC1, format!("SEP{MAC1}.cnf.xml")),
        (MAC2, format!("SEP{MAC2}.cnf.xml")),
    ];
    let mut paths: Vec<(String, String)> = device
        .iter()
        .map(|(mac, f)| {
            (
                format!("/v1/tenants/alpha/phones/{mac}/files/{f}"),
                f.clone(),
            )
        })
        .collect();
    for f in [
        "SIPDefault.cnf",
        "XMLDefault.cnf.xml",
        "dialplan.xml",
        "OS79XX.TXT",
        "RINGLIST.DAT",
        "syncinfo.xml",
    ] {
        paths.push((format!("/v1/tenants/alpha/files-preview/{f}"), f.to_owned()));
    }
    for (path, file) in &paths {
        let (status, sha, body) = preview(path.clone(), admin.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let wire = clients::tftp_get(tftp(&app), "127.0.1.5", file, &[])
            .await
            .unwrap_or_else(|e| panic!("TFTP {file}: {e:?}"));
        assert!(
            body == wire.data,
            "{path}: preview differs from what the phone gets"
        );
        assert_eq!(
            sha.as_deref(),
            Some(sha256_hex(&wire.data).as_str()),
            "{path}"
        );
        // The platform admin sees the same; a viewer and another tenant's admin get 403.
        assert_eq!(preview(path.clone(), app.admin()).await.2, body, "{path}");
        assert_eq!(
            preview(path.clone(), app.viewer("alpha")).await.0,
            StatusCode::FORBIDDEN,
            "viewer {path}"
        );
        assert_eq!(
            preview(path.clone(), app.tenant_admin("bravo")).await.0,
            StatusCode::FORBIDDEN,
            "bravo's admin {path}"
        );
    }
    // What phones do not get, the preview does not show either.
    let (status, _, _) = preview(
        format!("/v1/tenants/alpha/phones/{MAC2}/files/SIP{MAC2}.cnf"),
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a 7942 has no SIP<MAC>.cnf");
    let wire = clients::tftp_get(tftp(&app), "127.0.1.5", &format!("SIP{MAC2}.cnf"), &[]).await;
    assert_eq!(
        wire.unwrap_err(),
        clients::FetchError::Tftp(1, "File not found".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_counted_per_tenant_protocol_and_outcome() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    wait_snapshot(&app, "127.0.1.5", "SIPDefault.cnf", |_| true).await;
    let server = tftp(&app);
    for _ in 0..5 {
        clients::tftp_get(server, "127.0.1.5", "SIPDefault.cnf", &[])
            .await
            .unwrap();
    }
    for _ in 0..3 {
        assert!(
            clients::tftp_get(server, "127.0.1.5", "nothing-here.bin", &[])
                .await
                .is_err()
        );
    }
    let web = clients::http_from("127.0.1.5");
    for _ in 0..2 {
        let r = web
            .get(clients::file_url(http_files(&app), "dialplan.xml"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let series = |proto: &str, outcome: &str| {
        format!("dialtone_provisioning_requests_total{{tenant=\"alpha\",protocol=\"{proto}\",outcome=\"{outcome}\"}}")
    };
    let text = eventually(Duration::from_secs(5), "the request counters", || {
        let app = &app;
        let (s, n, h) = (
            series("tftp", "served"),
            series("tftp", "not_found"),
            series("http", "served"),
        );
        async move {
            let m = metrics(app).await;
            let ok = metric(&m, &s).unwrap_or(0.0) >= 5.0
                && metric(&m, &n).unwrap_or(0.0) >= 3.0
                && metric(&m, &h).unwrap_or(0.0) >= 2.0;
            ok.then_some(m)
        }
    })
    .await;
    println!(
        "metrics: {} = {:?}",
        series("tftp", "served"),
        metric(&text, &series("tftp", "served"))
    );
    // Exact counts: nothing else asked.
    assert_eq!(
        metric(&text, &series("tftp", "served")),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &series("tftp", "not_found")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &series("http", "served")),
        Some(2.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "dialtone_provisioning_bytes_total{protocol=\"tftp\"}"
        )
        .unwrap()
            > 0.0
    );
}
