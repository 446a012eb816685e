//! `/v1/tenants/{t}/networks`: create, list, read, delete; overlap rules.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn overlap_across_tenants_is_409_naming_the_prefix_and_nesting_within_one_is_allowed() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    let r = app.add_network("acme", "10.20.0.0/16").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.body["id"].is_string());
    assert_eq!(
        app.add_network("acme", "10.20.5.0/24").await.status,
        StatusCode::CREATED,
        "nesting inside one tenant"
    );
    assert_eq!(
        app.add_network("acme", "10.20.0.0/16").await.status,
        StatusCode::CONFLICT,
        "exact duplicate"
    );

    for (cidr, why) in [
        ("10.20.0.0/16", "identical"),
        ("10.20.9.0/24", "nested"),
        ("10.0.0.0/8", "containing"),
    ] {
        let r = app.add_network("bravo", cidr).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{why}: {}", r.text);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("10.20."),
            "{why}: the conflicting prefix is named: {detail}"
        );
        assert!(
            detail.contains("acme"),
            "a platform admin is told the other tenant: {detail}"
        );
    }
    // A tenant admin learns the prefix, never the other tenant.
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/bravo/networks",
            Some(&app.tenant_admin("bravo")),
            Some(json!({"cidr": "10.20.1.0/24"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("10.20.") && !detail.contains("acme"),
        "{detail}"
    );

    // IPv6 works the same way.
    assert_eq!(
        app.add_network("acme", "2001:db8::/48").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.add_network("bravo", "2001:db8:0:1::/64").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.add_network("bravo", "2001:db8:1::/48").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn bad_cidrs_are_422() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    for bad in [
        "10.20.1.0/16",
        "10.20.0.0",
        "10.20.0.0/33",
        "banana",
        "",
        "2001:db8::1/32",
    ] {
        let r = app.add_network("acme", bad).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["path"], "cidr");
    }
    let r = app.add_network("acme", "10.20.1.0/16").await;
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("10.20.0.0/16"),
        "suggests the network: {}",
        r.text
    );
    // A tenant admin cannot claim huge prefixes.
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/networks",
            Some(&app.tenant_admin("acme")),
            Some(json!({"cidr": "0.0.0.0/0"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn list_get_and_delete() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let id = app.add_network("acme", "192.0.2.0/24").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.add_network("acme", "198.51.100.0/24").await;
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/networks",
            Some(&app.viewer("acme")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/acme/networks/{id}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["cidr"], "192.0.2.0/24");
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/networks/{id}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/acme/networks/{id}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/networks/not-a-uuid",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
