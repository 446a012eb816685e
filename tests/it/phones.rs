//! `/v1/tenants/{t}/phones`: PUT/POST/GET/PATCH/DELETE, list filters, MAC notations, model limits,
//! write-only passwords.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{phone_body, TestApp};

#[tokio::test]
async fn put_creates_then_replaces_and_every_mac_notation_is_the_same_phone() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let r = app.put_phone("acme", "00:04:f2:a1:b2:c3").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["mac"], "0004F2A1B2C3");
    assert_eq!(r.body["lines"][0]["password_set"], true);
    assert!(
        !r.text.contains("s3cret"),
        "the password is never returned: {}",
        r.text
    );
    for notation in [
        "0004.F2A1.B2C3",
        "0004-f2a1-b2c3",
        "0004F2A1B2C3",
        "00-04-F2-A1-B2-C3",
    ] {
        let r = app
            .call(
                Method::GET,
                &format!("/v1/tenants/acme/phones/{notation}"),
                Some(&app.admin()),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{notation}");
        assert_eq!(r.body["mac"], "0004F2A1B2C3");
    }
    let r = app.put_phone("acme", "0004.F2A1.B2C3").await;
    assert_eq!(r.status, StatusCode::OK, "the second PUT replaces");
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_line_without_a_password_keeps_the_stored_one() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.put_phone("acme", "0004F2A1B2C3").await;
    let body = json!({"model": "7960", "lines": [{"number": "1001"}, {"number": "1002"}]});
    let r = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/phones/0004F2A1B2C3",
            Some(&app.admin()),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["lines"][0]["password_set"], true);
    assert_eq!(r.body["lines"][1]["password_set"], false);
    let stored: Option<String> = {
        let c = app.sql().await;
        c.query_one(
            "SELECT password FROM phone_lines WHERE phone_mac = '0004F2A1B2C3' AND position = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    };
    assert_eq!(stored.as_deref(), Some("s3cret-pw-1001"));
}

#[tokio::test]
async fn bad_macs_models_and_line_counts_are_422_with_field_paths() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    for mac in ["0004F2A1B2", "00:04:f2:a1:b2:zz", "hello"] {
        let r = app.put_phone("acme", mac).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{mac}");
        assert_eq!(r.body["errors"][0]["path"], "mac");
    }
    let cases = [
        (
            json!({"model": "7950", "lines": [{"number": "1"}]}),
            "model",
        ),
        (
            json!({"model": "7940", "lines": [{"number": "1"}, {"number": "2"}, {"number": "3"}]}),
            "lines",
        ),
        (json!({"model": "7960", "lines": []}), "lines"),
        (
            json!({"model": "7960", "label": "a label far too long", "lines": [{"number": "1"}]}),
            "label",
        ),
        (
            json!({"model": "7960", "lines": [{"number": "1", "password": "has space"}]}),
            "lines[0].password",
        ),
        (
            json!({"model": "7960", "lines": [{"number": "bad number!"}]}),
            "lines[0].number",
        ),
        (
            json!({"model": "7960", "lines": [{"number": "1", "colour": "red"}]}),
            "lines[0]",
        ),
        (
            json!({"model": "7960", "lines": [{"number": "1"}], "settings": {"sip": {"transport": "carrier-pigeon"}}}),
            "settings.sip.transport",
        ),
        (
            json!({"model": "7960", "lines": [{"number": "1"}], "settings": {"firmware": {"loads": {"7942": "SIP42.9-4-2SR3-1S"}}}}),
            "settings.firmware.loads.7942",
        ),
    ];
    for (body, path) in cases {
        let r = app
            .call(
                Method::PUT,
                "/v1/tenants/acme/phones/0004F2000009",
                Some(&app.admin()),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert!(
            r.body["errors"][0]["path"]
                .as_str()
                .unwrap()
                .starts_with(path),
            "{body}: {}",
            r.text
        );
    }
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones",
            Some(&app.admin()),
            None,
        )
        .await;
    assert!(
        r.body["items"].as_array().unwrap().is_empty(),
        "no partial writes"
    );
}

#[tokio::test]
async fn post_creates_and_refuses_an_existing_mac() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let mut body = phone_body();
    body["mac"] = json!("00:04:f2:00:00:01");
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/phones",
            Some(&app.admin()),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.headers["location"],
        "/v1/tenants/acme/phones/0004F2000001"
    );
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/phones",
            Some(&app.admin()),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/phones",
            Some(&app.admin()),
            Some(phone_body()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["path"], "mac");
}

#[tokio::test]
async fn a_mac_owned_by_another_tenant_is_409_for_put_and_post() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    assert_eq!(
        app.put_phone("acme", "0004F2A1B2C3").await.status,
        StatusCode::CREATED
    );
    let r = app.put_phone("bravo", "0004F2A1B2C3").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        !r.text.contains("acme"),
        "the owner is not revealed: {}",
        r.text
    );
    let mut body = phone_body();
    body["mac"] = json!("0004F2A1B2C3");
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/bravo/phones",
            Some(&app.admin()),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/bravo/phones/0004F2A1B2C3",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["detail"], "no such phone in this tenant",
        "{}",
        r.text
    );
    // A tenant that does not exist is told apart from a phone that does not.
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/nosuch/phones/0004F2A1B2C3",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["detail"], "no such tenant", "{}", r.text);
}

#[tokio::test]
async fn patch_merges_and_if_match_guards_writes() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let created = app.put_phone("acme", "0004F2A1B2C3").await;
    let etag = created.headers["etag"].to_str().unwrap().to_owned();
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme/phones/0004F2A1B2C3",
            Some(&app.admin()),
            Some(json!({"label": "Lobby", "settings": {"sip": {"port": 5080}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["label"], "Lobby");
    assert_eq!(r.body["settings"]["sip"]["port"], 5080);
    assert_eq!(
        r.body["lines"][0]["display_name"], "Alice",
        "untouched fields stay"
    );
    assert_eq!(
        r.body["lines"][0]["password_set"], true,
        "the password survives a patch"
    );

    let stale = app
        .http
        .put(format!("{}/v1/tenants/acme/phones/0004F2A1B2C3", app.base))
        .bearer_auth(app.admin())
        .header("If-Match", &etag)
        .json(&phone_body())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let fresh = r.headers["etag"].to_str().unwrap().to_owned();
    let ok = app
        .http
        .delete(format!("{}/v1/tenants/acme/phones/0004F2A1B2C3", app.base))
        .bearer_auth(app.admin())
        .header("If-Match", &fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    // If-Match on a phone that does not exist.
    let r = app
        .http
        .put(format!("{}/v1/tenants/acme/phones/0004F2A1B2C3", app.base))
        .bearer_auth(app.admin())
        .header("If-Match", &fresh)
        .json(&phone_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme/phones/0004F2A1B2C3",
            Some(&app.admin()),
            Some(json!({"label": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_filters_by_model_enabled_and_text() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let phones = [
        (
            "000000000001",
            json!({"model": "7960", "label": "Reception", "lines": [{"number": "1001"}]}),
        ),
        (
            "000000000002",
            json!({"model": "7940", "label": "Kitchen", "lines": [{"number": "1002"}]}),
        ),
        (
            "000000000003",
            json!({"model": "7942", "label": "Boss", "enabled": false, "lines": [{"number": "2001"}]}),
        ),
    ];
    for (mac, body) in phones {
        let r = app
            .call(
                Method::PUT,
                &format!("/v1/tenants/acme/phones/{mac}"),
                Some(&app.admin()),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let macs = |r: &crate::helpers::Resp| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["mac"].as_str().unwrap().to_owned())
            .collect()
    };
    let t = app.admin();
    assert_eq!(
        macs(
            &app.call(
                Method::GET,
                "/v1/tenants/acme/phones?model=7940",
                Some(&t),
                None
            )
            .await
        ),
        ["000000000002"]
    );
    assert_eq!(
        macs(
            &app.call(
                Method::GET,
                "/v1/tenants/acme/phones?enabled=false",
                Some(&t),
                None
            )
            .await
        ),
        ["000000000003"]
    );
    assert_eq!(
        macs(
            &app.call(
                Method::GET,
                "/v1/tenants/acme/phones?q=recep",
                Some(&t),
                None
            )
            .await
        ),
        ["000000000001"]
    );
    assert_eq!(
        macs(
            &app.call(Method::GET, "/v1/tenants/acme/phones?q=200", Some(&t), None)
                .await
        ),
        ["000000000003"]
    );
    assert_eq!(
        macs(
            &app.call(Method::GET, "/v1/tenants/acme/phones?q=%25", Some(&t), None)
                .await
        )
        .len(),
        0,
        "LIKE wildcards are literal"
    );
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones?limit=2",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(macs(&r), ["000000000001", "000000000002"]);
    let c = r.body["next_cursor"].as_str().unwrap();
    assert_eq!(
        macs(
            &app.call(
                Method::GET,
                &format!("/v1/tenants/acme/phones?limit=2&cursor={c}"),
                Some(&t),
                None
            )
            .await
        ),
        ["000000000003"]
    );
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/phones?model=1234",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}
