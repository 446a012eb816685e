//! Races decided by the database: one MAC claimed by two tenants, overlapping networks created at once.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{phone_body, TestApp};

#[tokio::test]
async fn two_tenants_racing_for_one_mac_exactly_one_wins() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    for round in 0..10u8 {
        let mac = format!("0004F20000{round:02X}");
        let (pa, pb) = (
            format!("/v1/tenants/acme/phones/{mac}"),
            format!("/v1/tenants/bravo/phones/{mac}"),
        );
        let (ta, tb) = (app.tenant_admin("acme"), app.tenant_admin("bravo"));
        let a = app.call(Method::PUT, &pa, Some(&ta), Some(phone_body()));
        let b = app.call(Method::PUT, &pb, Some(&tb), Some(phone_body()));
        let (a, b) = tokio::join!(a, b);
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "round {round}: {} / {}",
            a.text,
            b.text
        );
    }
}

#[tokio::test]
async fn overlapping_networks_created_concurrently_exactly_one_wins() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    for round in 0..60u8 {
        let admin = app.admin();
        let a = app.call(
            Method::POST,
            "/v1/tenants/acme/networks",
            Some(&admin),
            Some(json!({"cidr": format!("10.{round}.0.0/16")})),
        );
        let b = app.call(
            Method::POST,
            "/v1/tenants/bravo/networks",
            Some(&admin),
            Some(json!({"cidr": format!("10.{round}.128.0/17")})),
        );
        let (a, b) = tokio::join!(a, b);
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "round {round}: {} / {}",
            a.text,
            b.text
        );
    }
}
