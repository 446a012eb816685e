//! Tenant isolation on the wire: another tenant's MAC, a source in no tenant network, refused names, and
//! how fast a change made through the API reaches the wire.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::clients::{self, FetchError};
use super::{
    http_files, metric, metrics, patch_settings, put_phone, tenant_with_network, tftp,
    wait_snapshot,
};
use crate::helpers::TestApp;

const MAC_A: &str = "0004F2AA0001";
const MAC_B: &str = "0004F2BB0002";
const MAC_UNKNOWN: &str = "0004F2CC0003";

/// Tenants `a` (127.0.1.0/24, phone MAC_A) and `b` (127.0.2.0/24, phone MAC_B), both in the snapshot.
async fn two_tenants(app: &TestApp) {
    tenant_with_network(app, "alpha", "127.0.1.0/24").await;
    tenant_with_network(app, "bravo", "127.0.2.0/24").await;
    put_phone(app, "alpha", MAC_A, "7960", "1001").await;
    put_phone(app, "bravo", MAC_B, "7960", "2002").await;
    wait_snapshot(app, "127.0.1.5", &format!("SIP{MAC_A}.cnf"), |_| true).await;
    wait_snapshot(app, "127.0.2.5", &format!("SIP{MAC_B}.cnf"), |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_mac_gets_not_found_identical_to_an_unknown_file() {
    let app = TestApp::spawn_full().await;
    let app = &app;
    two_tenants(app).await;
    let b_file = format!("SIP{MAC_B}.cnf");

    // Control: from its own network the phone gets its file (with a real client).
    let own = clients::curl_tftp(tftp(app), "127.0.2.5", &b_file, &[]).await;
    assert!(own.ok(), "{:?}", own.out);
    assert!(String::from_utf8_lossy(&own.data).contains("line1_name: \"2002\""));

    // From tenant A's network: curl reports "file not found" (CURLE_TFTP_NOTFOUND = 68), no file.
    for name in [b_file.clone(), format!("SEP{MAC_B}.cnf.xml")] {
        let other = clients::curl_tftp(tftp(app), "127.0.1.5", &name, &[]).await;
        assert_eq!(other.out.status.code(), Some(68), "{name}: {:?}", other.out);
        assert!(other.data.is_empty(), "{name}: got bytes");
        let raw = clients::tftp_get(tftp(app), "127.0.1.5", &name, &[]).await;
        assert_eq!(
            raw.unwrap_err(),
            FetchError::Tftp(1, "File not found".into())
        );
    }

    // The answer is byte-identical to the answer for an unknown file and for an unknown MAC.
    let first = |name: String| async move {
        clients::first_reply(tftp(app), "127.0.1.5", &name, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("no answer to {name}"))
    };
    let foreign = first(b_file.clone()).await;
    assert_eq!(&foreign[..4], b"\x00\x05\x00\x01", "{foreign:?}");
    assert_eq!(foreign, first("no-such-file.cfg".into()).await);
    assert_eq!(foreign, first(format!("SIP{MAC_UNKNOWN}.cnf")).await);

    // HTTP: 404, and the same response as for an unknown file.
    let web = clients::http_from("127.0.1.5");
    let get = |name: String| {
        let web = web.clone();
        async move {
            let r = web
                .get(clients::file_url(http_files(app), &name))
                .send()
                .await
                .unwrap();
            let ct = r.headers().get("content-type").cloned();
            (r.status(), ct, r.bytes().await.unwrap())
        }
    };
    let foreign = get(b_file.clone()).await;
    assert_eq!(foreign.0, StatusCode::NOT_FOUND);
    assert_eq!(foreign, get("no-such-file.cfg".into()).await);
    assert_eq!(
        get(b_file.clone()).await.0,
        StatusCode::NOT_FOUND,
        "HTTP must not serve another tenant's phone"
    );
    let own = clients::http_from("127.0.2.5")
        .get(clients::file_url(http_files(app), &b_file))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);

    // The attempt is counted as a security event.
    let m = metrics(app).await;
    assert!(
        metric(&m, "dialtone_provisioning_security_events_total").unwrap_or(0.0) >= 4.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_in_no_tenant_network_gets_no_answer() {
    let app = TestApp::spawn_full().await;
    let app = &app;
    two_tenants(app).await;
    // Control: the same requests from a tenant network are answered.
    assert!(clients::first_reply(
        tftp(app),
        "127.0.1.5",
        "SIPDefault.cnf",
        Duration::from_secs(3)
    )
    .await
    .is_some());
    let before = metric(
        &metrics(app).await,
        "dialtone_provisioning_unknown_source_total",
    )
    .unwrap();
    // From 127.0.3.5 (in no network): no packet at all, neither for a file nor for a known MAC nor
    // for a miss.
    let stranger = |name: String| async move {
        let reply =
            clients::first_reply(tftp(app), "127.0.3.5", &name, Duration::from_millis(1500)).await;
        assert!(reply.is_none(), "{name}: answered {reply:?}");
    };
    tokio::join!(
        stranger("SIPDefault.cnf".into()),
        stranger(format!("SIP{MAC_A}.cnf")),
        stranger("no-such-file.cfg".into()),
    );
    let after = metric(
        &metrics(app).await,
        "dialtone_provisioning_unknown_source_total",
    )
    .unwrap();
    assert!(
        after >= before + 3.0,
        "unknown sources not counted: {before} -> {after}"
    );
    // HTTP: 404 for everything.
    let web = clients::http_from("127.0.3.5");
    for name in ["SIPDefault.cnf".to_owned(), format!("SIP{MAC_A}.cnf")] {
        let r = web
            .get(clients::file_url(http_files(app), &name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_with_dot_dot_or_backslashes_get_an_error_never_a_file() {
    let app = TestApp::spawn_full().await;
    let app = &app;
    two_tenants(app).await;
    let ok = clients::tftp_get(tftp(app), "127.0.1.5", "SIPDefault.cnf", &[]).await;
    assert!(ok.is_ok(), "control: {ok:?}");
    for name in [
        "../SIPDefault.cnf",
        "/../SIPDefault.cnf",
        "a/../SIPDefault.cnf",
        "./../SIPDefault.cnf",
        "../../../../etc/passwd",
        "..",
        "..\\SIPDefault.cnf",
        "\\SIPDefault.cnf",
        "SIPDefault.cnf\\",
        "sub\\SIPDefault.cnf",
        "C:\\windows\\win.ini",
    ] {
        let p = clients::first_reply(tftp(app), "127.0.1.5", name, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(&p[..2], b"\x00\x05", "{name}: not an ERROR packet: {p:?}");
        let code = u16::from_be_bytes([p[2], p[3]]);
        assert!(code == 1 || code == 2, "{name}: error code {code}");
    }
    // Over HTTP the same names (percent-encoded so the client keeps them) are 404.
    let web = clients::http_from("127.0.1.5");
    for path in [
        "..%2FSIPDefault.cnf",
        "a%2F..%2FSIPDefault.cnf",
        "%5CSIPDefault.cnf",
        "..%5CSIPDefault.cnf",
    ] {
        let r = web
            .get(format!("http://{}/{path}", http_files(app)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_the_api_is_served_within_a_second() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    wait_snapshot(&app, "127.0.1.5", "dialplan.xml", |_| true).await;
    let server = tftp(&app);
    for (i, pattern) in ["8765.", "5432.", "7777."].iter().enumerate() {
        let digits = pattern.trim_end_matches('.');
        let before = clients::tftp_get(server, "127.0.1.5", "dialplan.xml", &[])
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&before.data).contains(digits));
        let sent = Instant::now();
        patch_settings(
            &app,
            "alpha",
            json!({"dial_plan": [{"match": pattern, "timeout": 2 + i}]}),
        )
        .await;
        let committed = Instant::now();
        // Poll the wire (not the snapshot) with a deadline well past the bound, then assert the bound.
        let deadline = committed + Duration::from_secs(5);
        let served_at = loop {
            let got = clients::tftp_get(server, "127.0.1.5", "dialplan.xml", &[])
                .await
                .unwrap();
            if String::from_utf8_lossy(&got.data).contains(digits) {
                break Instant::now();
            }
            assert!(Instant::now() < deadline, "change {pattern} never served");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let from_commit = served_at - committed;
        let from_request = served_at - sent;
        println!(
            "change-to-served latency #{}: {:.1} ms after the PATCH response ({:.1} ms after the request was sent)",
            i + 1,
            from_commit.as_secs_f64() * 1e3,
            from_request.as_secs_f64() * 1e3
        );
        assert!(
            from_commit < Duration::from_secs(1),
            "change {pattern} took {from_commit:?} to reach TFTP"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_and_removing_networks_take_effect_on_the_wire() {
    let app = TestApp::spawn_full().await;
    let app = &app;
    two_tenants(app).await;
    let own = format!("SIP{MAC_A}.cnf");
    let web = clients::http_from("127.0.1.5");
    let status = |name: String| {
        let web = web.clone();
        async move {
            web.get(clients::file_url(http_files(app), &name))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(own.clone()).await, StatusCode::OK);
    let patch_phone = |enabled: bool| async move {
        let r = app
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/tenants/alpha/phones/{MAC_A}"),
                Some(&app.admin()),
                Some(json!({ "enabled": enabled })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    };
    // A disabled phone gets "file not found"; the rest of its tenant is still served.
    patch_phone(false).await;
    wait_snapshot_miss(app, "127.0.1.5", &own).await;
    assert_eq!(status(own.clone()).await, StatusCode::NOT_FOUND);
    let t = clients::tftp_get(tftp(app), "127.0.1.5", &own, &[]).await;
    assert_eq!(t.unwrap_err(), FetchError::Tftp(1, "File not found".into()));
    assert_eq!(status("SIPDefault.cnf".into()).await, StatusCode::OK);
    patch_phone(true).await;
    wait_snapshot(app, "127.0.1.5", &own, |_| true).await;
    // A disabled tenant gets "file not found" for everything.
    let r = app
        .call(
            reqwest::Method::PATCH,
            "/v1/tenants/alpha",
            Some(&app.admin()),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_snapshot_miss(app, "127.0.1.5", "SIPDefault.cnf").await;
    for name in [own.clone(), "SIPDefault.cnf".into()] {
        assert_eq!(status(name.clone()).await, StatusCode::NOT_FOUND, "{name}");
        let t = clients::tftp_get(tftp(app), "127.0.1.5", &name, &[]).await;
        assert_eq!(t.unwrap_err(), FetchError::Tftp(1, "File not found".into()));
    }
    // Bravo is untouched.
    let t = clients::tftp_get(tftp(app), "127.0.2.5", "SIPDefault.cnf", &[]).await;
    assert!(t.is_ok(), "{t:?}");
    // Removing bravo's network: its addresses are strangers within a second.
    let nets = app
        .call(
            reqwest::Method::GET,
            "/v1/tenants/bravo/networks",
            Some(&app.admin()),
            None,
        )
        .await;
    let id = nets.body["items"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/tenants/bravo/networks/{id}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let removed = Instant::now();
    let bravo = clients::http_from("127.0.2.5");
    loop {
        let s = bravo
            .get(clients::file_url(http_files(app), "SIPDefault.cnf"))
            .send()
            .await
            .unwrap()
            .status();
        if s == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            removed.elapsed() < Duration::from_secs(1),
            "still served 1 s after the network was removed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reply = clients::first_reply(
        tftp(app),
        "127.0.2.5",
        "SIPDefault.cnf",
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        reply.is_none(),
        "a removed network still gets answers: {reply:?}"
    );
}

/// Waits until the process's snapshot no longer serves `name` to `source`.
async fn wait_snapshot_miss(app: &TestApp, source: &str, name: &str) {
    let ip = source.parse().unwrap();
    super::eventually(
        Duration::from_secs(10),
        &format!("the snapshot to stop serving {name} to {source}"),
        || {
            let miss =
                dialtone::provisioning::provision(&app.snapshot.current(), ip, name).is_err();
            async move { miss.then_some(()) }
        },
    )
    .await;
}
