//! Bulk import and export: create-or-update by MAC, per-row results, dry run, all-or-nothing, partial
//! application, CSV and JSON, and export → import as a no-op.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Resp, TestApp};

async fn import(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> Resp {
    let r = app
        .http
        .post(format!("{}/v1/tenants/acme/phone-imports{query}", app.base))
        .bearer_auth(app.tenant_admin("acme"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    TestApp::read(r).await
}

fn results(report: &Value) -> Vec<String> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap().to_owned())
        .collect()
}

async fn phone_count(app: &TestApp) -> usize {
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones?limit=1000",
            Some(&app.admin()),
            None,
        )
        .await;
    r.body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn json_import_creates_updates_and_reports_each_row() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.put_phone("acme", "000000000003").await;
    let rows = json!([
        {"mac": "00:00:00:00:00:01", "model": "7960", "label": "One", "lines": [{"number": "101", "password": "pw-one"}]},
        {"mac": "0000.0000.0002", "model": "7942", "lines": [{"number": "102"}]},
        {"mac": "000000000003", "model": "7960", "label": "Reception", "lines": [{"number": "1001", "auth_name": "1001", "display_name": "Alice"}]},
    ]);
    // Dry run: the report, and nothing written.
    let r = import(
        &app,
        "?dry_run=true",
        "application/json",
        rows.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        results(&r.body),
        ["created", "created", "unchanged"],
        "{}",
        r.text
    );
    assert_eq!(r.body["applied"], false);
    assert_eq!(phone_count(&app).await, 1);
    // For real.
    let r = import(&app, "", "application/json", rows.to_string().into_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["created"].as_u64(),
            r.body["unchanged"].as_u64(),
            r.body["applied"].as_bool()
        ),
        (Some(2), Some(1), Some(true))
    );
    assert_eq!(r.body["rows"][0]["mac"], "000000000001");
    assert_eq!(phone_count(&app).await, 3);
    // The unchanged row kept its password (none was given).
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones/000000000003",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["lines"][0]["password_set"], true);
    // Importing again changes nothing; changing a label is an update.
    let r = import(&app, "", "application/json", rows.to_string().into_bytes()).await;
    assert_eq!(
        results(&r.body),
        ["unchanged", "unchanged", "unchanged"],
        "passwords given again or kept count as unchanged: {}",
        r.text
    );
    let mut changed = rows.clone();
    changed[1]["label"] = json!("Two");
    let r = import(
        &app,
        "",
        "application/json",
        changed.to_string().into_bytes(),
    )
    .await;
    assert_eq!(results(&r.body)[1], "updated");
    let audit = app
        .call(
            Method::GET,
            "/v1/audit-events?tenant=acme",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(audit.body["items"][0]["action"], "phone.import");
}

#[tokio::test]
async fn a_bad_row_applies_nothing_unless_partial() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    app.put_phone("bravo", "0B0000000001").await;
    let rows = json!([
        {"mac": "0A0000000001", "model": "7960", "lines": [{"number": "1"}]},
        {"mac": "0A0000000002", "model": "7940", "lines": [{"number": "1"}, {"number": "2"}, {"number": "3"}]},
        {"mac": "0B0000000001", "model": "7960", "lines": [{"number": "1"}]},
        {"mac": "0A0000000001", "model": "7960", "lines": [{"number": "1"}]},
        {"mac": "zz", "model": "7960", "lines": [{"number": "1"}]},
        {"model": "7960", "lines": [{"number": "1"}]},
        "not an object",
    ]);
    let r = import(&app, "", "application/json", rows.to_string().into_bytes()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let report = &r.body["report"];
    assert_eq!(
        results(report),
        ["created", "error", "error", "error", "error", "error", "error"]
    );
    assert_eq!(report["rows"][1]["errors"][0]["path"], "lines");
    assert!(report["rows"][2]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("another tenant"));
    assert!(report["rows"][3]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("earlier row"));
    assert_eq!(report["rows"][5]["errors"][0]["path"], "mac");
    assert_eq!(r.body["errors"][0]["path"], "rows[2].lines");
    assert!(!r.text.contains("bravo"), "the other tenant is not named");
    assert_eq!(phone_count(&app).await, 0, "all or nothing");
    let r = import(
        &app,
        "?partial=true",
        "application/json",
        rows.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["created"].as_u64(),
            r.body["errors"].as_u64(),
            r.body["applied"].as_bool()
        ),
        (Some(1), Some(6), Some(true))
    );
    assert_eq!(phone_count(&app).await, 1);
    // Other tenant's phone untouched.
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/bravo/phones/0B0000000001",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["model"], "7960");
}

#[tokio::test]
async fn csv_import_and_export_round_trip_as_a_no_op() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let mut csv = String::from("mac,model,label,enabled,settings,line1_number,line1_auth_name,line1_password,line1_display_name,line2_number,line2_password\n");
    for i in 0..300 {
        csv.push_str(&format!(
            "0A00000{i:05X},7960,\"Desk, {i}\",true,,{},{},pw{i},\"Name, {i}\",{},pw2\n",
            2000 + i,
            2000 + i,
            5000 + i
        ));
    }
    csv.push_str(
        "0B0000000001,7942,Lobby,false,\"{\"\"sip\"\": {\"\"port\"\": 5080}}\",3000,,,,,\n",
    );
    let r = import(&app, "", "text/csv", csv.clone().into_bytes()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        &r.text[..r.text.len().min(500)]
    );
    assert_eq!(r.body["created"], 301);
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones/0A0000000007",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["label"], "Desk, 7");
    assert_eq!(r.body["lines"][0]["display_name"], "Name, 7");
    assert_eq!(r.body["lines"][1]["number"], "5007");
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones/0B0000000001",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(
        (
            r.body["enabled"].as_bool(),
            r.body["settings"]["sip"]["port"].as_u64()
        ),
        (Some(false), Some(5080))
    );

    for format in ["csv", "json"] {
        let export = app
            .http
            .get(format!(
                "{}/v1/tenants/acme/phone-exports?format={format}",
                app.base
            ))
            .bearer_auth(app.viewer("acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(export.status(), StatusCode::OK);
        let ct = export.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = export.bytes().await.unwrap().to_vec();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            !text.contains("pw1") && !text.contains("password"),
            "{format}: passwords are not exported"
        );
        let r = import(&app, "", &ct, body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{format}: {}",
            &r.text[..r.text.len().min(500)]
        );
        assert_eq!(
            (
                r.body["unchanged"].as_u64(),
                r.body["created"].as_u64(),
                r.body["updated"].as_u64()
            ),
            (Some(301), Some(0), Some(0)),
            "{format}: export then import is a no-op"
        );
    }
    // The passwords are still there after both round trips.
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones/0A0000000007",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["lines"][0]["password_set"], true);
}

#[tokio::test]
async fn malformed_imports_are_refused_whole() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let cases: Vec<(&str, &str, StatusCode)> = vec![
        ("application/json", "{\"mac\": 1}", StatusCode::BAD_REQUEST),
        (
            "application/json",
            "[{\"mac\": \"000000000001\"",
            StatusCode::BAD_REQUEST,
        ),
        ("text/plain", "mac\n", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "text/csv",
            "mac,model,colour\n",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "text/csv",
            "mac,line1_number\n",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (ct, body, want) in cases {
        let r = import(&app, "", ct, body.as_bytes().to_vec()).await;
        assert_eq!(r.status, want, "{ct} {body}: {}", r.text);
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/phone-imports",
            Some(&app.viewer("acme")),
            Some(json!([])),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(phone_count(&app).await, 0);
}

/// Manual `ANALYZE`s of `phones` and `phone_lines` so far (autovacuum's are counted apart).
async fn manual_analyzes(c: &tokio_postgres::Client) -> Vec<i64> {
    c.query(
        "SELECT analyze_count FROM pg_stat_user_tables WHERE relname IN ('phones', 'phone_lines') ORDER BY relname",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A large import refreshes the planner's statistics of the phone tables at once; a small one leaves it to
/// autovacuum. (Without statistics the snapshot's delta read every line for a few changed phones.)
#[tokio::test]
async fn a_large_import_refreshes_the_phone_tables_statistics() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let c = app.sql().await;
    assert_eq!(manual_analyzes(&c).await, vec![0, 0]);
    let rows = |from: u64, n: u64| -> Vec<u8> {
        let rows: Vec<Value> = (from..from + n)
            .map(|i| json!({"mac": format!("0004F2{i:06X}"), "model": "7960", "lines": [{"number": "1001"}]}))
            .collect();
        Value::Array(rows).to_string().into_bytes()
    };
    let r = import(&app, "", "application/json", rows(0, 10)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = import(&app, "", "application/json", rows(10, 1_000)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["applied"], true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let counts = manual_analyzes(&c).await;
        if counts == vec![1, 1] {
            break;
        }
        assert!(
            counts.iter().all(|&n| n <= 1),
            "the 10-phone import analyzed too: {counts:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no ANALYZE of phones and phone_lines after a 1,000-phone import: {counts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let planned: (f32, f32) = {
        let r = c
            .query_one(
                "SELECT (SELECT reltuples FROM pg_class WHERE relname = 'phones'),
                        (SELECT reltuples FROM pg_class WHERE relname = 'phone_lines')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(planned, (1_010.0, 1_010.0));
}
