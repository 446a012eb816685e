//! `/v1/tenants`: create, read, list, patch (deep merge), delete (with and without cascade), ETags.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{tenant_body, TestApp};

#[tokio::test]
async fn create_returns_201_with_id_and_the_settings_as_given() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("acme").await;
    assert!(t["id"].as_str().unwrap().len() == 36);
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["settings"], tenant_body("acme")["settings"]);
    let r = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin()), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["id"], t["id"]);
    assert!(r.headers.get("etag").is_some());
}

#[tokio::test]
async fn duplicate_slug_is_409_and_bad_slug_or_settings_are_422_with_paths() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin()),
            Some(tenant_body("acme")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/problem+json");

    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin()),
            Some(json!({"slug": "Bad Slug", "name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["path"], "slug");

    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin()),
            Some(json!({"slug": "b", "name": "B", "settings": {"sip": {"port": 0}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["path"], "settings.sip.port");

    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin()),
            Some(json!({"slug": "c", "name": ""})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["path"], "name");
    // Nothing was written by the failed requests.
    let r = app
        .call(Method::GET, "/v1/tenants", Some(&app.admin()), None)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn patch_merges_settings_deeply_and_honours_if_match() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let get = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin()), None)
        .await;
    let etag = get.headers["etag"].to_str().unwrap().to_owned();

    let r = app
        .http
        .patch(format!("{}/v1/tenants/acme", app.base))
        .bearer_auth(app.admin())
        .header("If-Match", &etag)
        .json(&json!({"settings": {"sip": {"registrar": "sip2.acme.example"}}}))
        .send()
        .await
        .unwrap();
    let r = TestApp::read(r).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["settings"]["sip"]["registrar"], "sip2.acme.example");
    assert_eq!(
        r.body["settings"]["sip"]["port"], 5060,
        "untouched keys survive the merge"
    );
    assert_eq!(r.body["settings"]["voicemail_number"], "*97");
    assert_ne!(
        r.headers["etag"].to_str().unwrap(),
        etag,
        "the ETag changes with the content"
    );

    // The old ETag no longer matches.
    let r = app
        .http
        .patch(format!("{}/v1/tenants/acme", app.base))
        .bearer_auth(app.admin())
        .header("If-Match", &etag)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin()), None)
        .await;
    assert_eq!(
        r.body["name"], "Tenant acme",
        "a refused write changes nothing"
    );

    // null removes a key; a bad value is a 422 and changes nothing.
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.admin()),
            Some(json!({"settings": {"voicemail_number": null}})),
        )
        .await;
    assert!(r.body["settings"].get("voicemail_number").is_none());
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.admin()),
            Some(json!({"settings": {"time": {"time_zone": "Nowhere/Else"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["path"], "settings.time.time_zone");
}

#[tokio::test]
async fn delete_is_refused_while_phones_or_networks_exist_unless_cascading() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    assert_eq!(
        app.add_network("acme", "10.1.0.0/16").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.put_phone("acme", "0004F2000001").await.status,
        StatusCode::CREATED
    );
    let r = app
        .call(Method::DELETE, "/v1/tenants/acme", Some(&app.admin()), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("1 phone(s) and 1 network(s)"),
        "{}",
        r.text
    );
    let r = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme?cascade=true",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin()), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The MAC is free again.
    app.create_tenant("other").await;
    assert_eq!(
        app.put_phone("other", "0004F2000001").await.status,
        StatusCode::CREATED
    );
    // An empty tenant deletes without cascade.
    app.create_tenant("empty").await;
    let r = app
        .call(
            Method::DELETE,
            "/v1/tenants/empty",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn list_paginates_with_an_opaque_cursor() {
    let app = TestApp::spawn().await;
    for s in ["a1", "a2", "a3", "a4", "a5"] {
        app.create_tenant(s).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tenants?limit=2".to_owned();
    loop {
        let r = app.call(Method::GET, &path, Some(&app.admin()), None).await;
        assert_eq!(r.status, StatusCode::OK);
        for t in r.body["items"].as_array().unwrap() {
            seen.push(t["slug"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tenants?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "a5"]);
    let r = app
        .call(Method::GET, "/v1/tenants?limit=0", Some(&app.admin()), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            Method::GET,
            "/v1/tenants?cursor=%%%",
            Some(&app.admin()),
            None,
        )
        .await;
    assert!(r.status.is_client_error());
    let r = app
        .call(
            Method::GET,
            "/v1/tenants?limit=abc",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn tenant_admins_see_only_their_tenant_and_cannot_toggle_enabled() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    let r = app
        .call(
            Method::GET,
            "/v1/tenants",
            Some(&app.tenant_admin("acme")),
            None,
        )
        .await;
    let slugs: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].clone())
        .collect();
    assert_eq!(slugs, [json!("acme")]);
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.tenant_admin("acme")),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.tenant_admin("acme")),
            Some(json!({"name": "Acme plc"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}
