//! Races decided by the database: one MAC claimed by two tenants, overlapping networks created at once;
//! many requests on one shared (pipelined) connection.

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

#[tokio::test]
async fn a_shared_connection_answers_concurrent_statements_and_is_replaced_when_it_breaks() {
    use std::sync::Arc;
    let app = TestApp::spawn().await;
    let pool = dialtone::db::pool(&app.db_url, 4).unwrap();
    let shared = dialtone::db::SharedConnection::new(pool.clone());
    let first = shared.get().await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &shared.get().await.unwrap()),
        "one connection, shared"
    );
    // Requests in flight at once, each asking for the connection as a handler does, share one backend and
    // each get their own answer, in any interleaving.
    let answers = futures_util::future::join_all((0..64i32).map(|i| {
        let shared = shared.clone();
        async move {
            let row = shared
                .get()
                .await
                .unwrap()
                .query_one("SELECT $1::int * 2, pg_backend_pid()", &[&i])
                .await
                .unwrap();
            (row.get::<_, i32>(0), row.get::<_, i32>(1))
        }
    }))
    .await;
    assert_eq!(
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        (0..64).map(|i| i * 2).collect::<Vec<_>>()
    );
    let pid = answers[0].1;
    assert!(answers.iter().all(|a| a.1 == pid), "all on one backend");
    // Its backend dies: the next use gets a new, working connection.
    pool.get()
        .await
        .unwrap()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !first.is_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken connection was not noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let second = shared.get().await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    let new_pid: i32 = second
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(new_pid, pid);
}
