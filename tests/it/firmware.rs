//! Firmware pinning checks: warnings on writes that pin loads not in the file store, and the
//! firmware-status report (manifests and the images they list).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

async fn upload(app: &TestApp, name: &str, content: &[u8]) {
    let r = app
        .http
        .put(format!("{}/v1/files/{name}", app.base))
        .bearer_auth(app.admin())
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{name}: {}", r.status());
}

async fn status_until(app: &TestApp, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app
            .call(
                Method::GET,
                "/v1/tenants/acme/firmware-status",
                Some(&app.viewer("acme")),
                None,
            )
            .await;
        if r.status == StatusCode::OK && ok(&r.body) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "firmware status never matched: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pinned_loads_missing_from_the_store_are_warned_and_reported() {
    let app = TestApp::spawn().await;
    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin()),
            Some(json!({"slug": "acme", "name": "Acme", "settings": {"firmware": {"os79xx": "P003-8-12-00",
                "loads": {"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let warnings = r.body["warnings"]
        .as_array()
        .expect("warnings on the create response");
    assert_eq!(warnings.len(), 3, "{}", r.text);
    assert!(
        r.text.contains("P0S3-8-12-00.loads") && r.text.contains("SIP42.9-4-2SR3-1S.loads"),
        "{}",
        r.text
    );

    upload(&app, "P003-8-12-00.sbn", b"ual").await;
    upload(
        &app,
        "P0S3-8-12-00.loads",
        b"\x00\x00signed\x00P003-8-12-00.sbn\nP0S3-8-12-00.sb2\n",
    )
    .await;
    upload(
        &app,
        "SIP42.9-4-2SR3-1S.loads",
        b"jar42sip.9-4-2ES26.sbn cnu42.9-4-2ES26.sbn",
    )
    .await;
    upload(&app, "jar42sip.9-4-2ES26.sbn", b"jar").await;
    app.put_phone("acme", "0004F2000001").await;
    let r = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/phones/0004F2000002",
            Some(&app.admin()),
            Some(json!({"model": "7942", "lines": [{"number": "2"}], "settings": {"firmware": {"loads": {"7942": "SIP42.9-4-2SR4-3S"}}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        r.body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("SIP42.9-4-2SR4-3S.loads"),
        "{}",
        r.text
    );

    // The snapshot follows the uploads one by one: wait for the final picture, not any three files.
    let expected = json!([
        "P0S3-8-12-00.sb2",
        "SIP42.9-4-2SR4-3S.loads",
        "cnu42.9-4-2ES26.sbn"
    ]);
    let s = status_until(&app, |s| s["missing_files"] == expected).await;
    let missing: Vec<&str> = s["missing_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(
        missing,
        [
            "P0S3-8-12-00.sb2",
            "SIP42.9-4-2SR4-3S.loads",
            "cnu42.9-4-2ES26.sbn"
        ],
        "{s}"
    );
    assert_eq!(s["os79xx"]["missing"], json!([]));
    let m7960 = s["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "7960")
        .unwrap();
    assert_eq!(m7960["phones"], 1);
    assert_eq!(
        m7960["tenant_load"]["present"],
        json!(["P0S3-8-12-00.loads", "P003-8-12-00.sbn"])
    );
    let m7942 = s["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "7942")
        .unwrap();
    assert_eq!(m7942["phone_loads"][0]["phones"], 1);
    assert_eq!(
        m7942["phone_loads"][0]["status"]["load"],
        "SIP42.9-4-2SR4-3S"
    );

    // Completing the store clears the warnings.
    upload(&app, "P0S3-8-12-00.sb2", b"app").await;
    upload(&app, "cnu42.9-4-2ES26.sbn", b"cnu").await;
    status_until(&app, |s| {
        s["missing_files"] == json!(["SIP42.9-4-2SR4-3S.loads"])
    })
    .await;
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.admin()),
            Some(json!({"name": "Acme Ltd"})),
        )
        .await;
    assert!(
        r.body.get("warnings").is_none(),
        "no warnings once every file is there: {}",
        r.text
    );
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/bravo/firmware-status",
            Some(&app.tenant_admin("acme")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
