//! Audit events: every mutation recorded with its subject; tenant admins see only their tenant.

use reqwest::{Method, StatusCode};

use crate::helpers::TestApp;

#[tokio::test]
async fn mutations_are_recorded_with_the_token_subject_and_scoped_by_tenant() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    app.add_network("acme", "10.1.0.0/16").await;
    let r = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/phones/0004F2000001",
            Some(&app.tenant_admin("acme")),
            Some(crate::helpers::phone_body()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.put_phone("bravo", "0004F2000002").await;

    let r = app
        .call(Method::GET, "/v1/audit-events", Some(&app.admin()), None)
        .await;
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "phone.create",
            "phone.create",
            "network.create",
            "tenant.create",
            "tenant.create"
        ]
    );
    assert!(!r.text.contains("s3cret"), "no secret in audit details");

    let r = app
        .call(
            Method::GET,
            "/v1/audit-events",
            Some(&app.tenant_admin("acme")),
            None,
        )
        .await;
    let items = r.body["items"].as_array().unwrap();
    assert!(items.iter().all(|e| e["tenant"] == "acme"), "{}", r.text);
    assert_eq!(items[0]["subject"], "admin-of-acme");
    assert_eq!(items[0]["target"], "0004F2000001");
    let r = app
        .call(
            Method::GET,
            "/v1/audit-events?tenant=bravo",
            Some(&app.tenant_admin("acme")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::GET,
            "/v1/audit-events?limit=2",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let c = r.body["next_cursor"].as_str().unwrap();
    let r = app
        .call(
            Method::GET,
            &format!("/v1/audit-events?limit=10&cursor={c}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3);
}
