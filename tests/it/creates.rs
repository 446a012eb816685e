//! Group commit of phone creates (`api::CreateBatcher`, `db::phones::try_create_many`): creates waiting at
//! the same time share a statement, each still gets its own answer, and one tenant's stuck create does not
//! hold up another tenant's.

use std::collections::HashMap;
use std::time::Duration;

use dialtone::api::CreateBatcher;
use dialtone::db::audit::Actor;
use dialtone::db::phones::NewPhone;
use dialtone::db::{DbError, Pool};
use dialtone::domain::{MacAddress, PhoneSpec, PhoneSpecInput};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{phone_body, TestApp};

fn new_phone(slug: &str, mac: &str) -> NewPhone {
    let input: PhoneSpecInput = serde_json::from_value(phone_body()).unwrap();
    NewPhone {
        slug: slug.to_owned(),
        mac: mac.parse().unwrap(),
        spec: PhoneSpec::parse(input).unwrap(),
        actor: Actor {
            subject: "tester".into(),
            role: "platform-admin".into(),
        },
        detail: json!({"model": "7960"}),
    }
}

/// A test app with the tenants `slugs`, a pool of `connections` to its database, and a batcher.
async fn with_tenants(slugs: &[&str], connections: usize) -> (TestApp, Pool, CreateBatcher) {
    let app = TestApp::spawn().await;
    for slug in slugs {
        app.create_tenant(slug).await;
    }
    let pool = dialtone::db::pool(&app.db_url, connections).unwrap();
    (app, pool, CreateBatcher::default())
}

/// The transaction ids that wrote the phones `macs`, one per phone.
async fn writers(app: &TestApp, macs: &[String]) -> Vec<String> {
    app.sql()
        .await
        .query(
            "SELECT xmin::text FROM phones WHERE mac = ANY($1)",
            &[&macs],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn creates_waiting_together_commit_together() {
    let (app, pool, batcher) = with_tenants(&["acme"], 4).await;
    let macs: Vec<String> = (0..10).map(|i| format!("0004F2C000{i:02X}")).collect();
    // All ten are queued before any statement runs (this test's runtime has one thread): the first two
    // start statements at once (the lane's pipeline), the other eight wait and share the next one.
    let results = join_all(
        macs.iter()
            .map(|m| batcher.create(&pool, new_phone("acme", m))),
    )
    .await;
    for (mac, r) in macs.iter().zip(&results) {
        let phone = r.as_ref().unwrap().as_ref().expect("created");
        assert_eq!(phone.mac.to_string(), *mac);
        assert_eq!(phone.lines.len(), 1);
        assert!(phone.lines[0].password_set);
    }
    let mut txs = writers(&app, &macs).await;
    assert_eq!(txs.len(), 10);
    txs.sort();
    txs.dedup();
    assert_eq!(txs.len(), 3, "two alone, then eight in one transaction");
    let audited = app
        .count(
            "SELECT count(*) FROM audit_events WHERE action = 'phone.create' AND target = ANY($1)",
            &[&macs],
        )
        .await;
    assert_eq!(audited, 10, "one audit event per create");
    let lines = app
        .count(
            "SELECT count(*) FROM phone_lines WHERE phone_mac = ANY($1) AND password = 's3cret-pw-1001'",
            &[&macs],
        )
        .await;
    assert_eq!(lines, 10);
}

#[tokio::test]
async fn each_create_of_a_shared_statement_gets_its_own_answer() {
    let (app, pool, batcher) = with_tenants(&["acme", "bravo"], 4).await;
    assert_eq!(
        app.put_phone("bravo", "0004F2D00001").await.status,
        StatusCode::CREATED
    );
    let mut unstorable = new_phone("acme", "0004F2D00005");
    unstorable.spec.label = "a\0b".into();
    // Two fillers take the lane's two places, so the rest share one statement.
    let creates = vec![
        new_phone("acme", "0004F2D000F1"),
        new_phone("acme", "0004F2D000F2"),
        new_phone("acme", "0004F2D00002"),
        new_phone("acme", "0004F2D00001"), // bravo's MAC
        new_phone("acme", "0004F2D00003"),
        new_phone("acme", "0004F2D00003"), // the same MAC again
        unstorable,
        new_phone("acme", "0004F2D00004"),
    ];
    let results = join_all(creates.into_iter().map(|p| batcher.create(&pool, p))).await;
    let answers: Vec<&str> = results
        .iter()
        .map(|r| match r {
            Ok(Some(_)) => "created",
            Ok(None) => "general path",
            Err(DbError::InvalidText) => "invalid text",
            Err(e) => panic!("unexpected {e:?}"),
        })
        .collect();
    assert_eq!(
        answers,
        [
            "created",
            "created",
            "created",
            "general path",
            "created",
            "general path",
            "invalid text",
            "created"
        ]
    );
    // Nothing of the unstorable one, bravo's phone untouched, no audit event for what was not created.
    let c = app.sql().await;
    let owners: HashMap<String, String> = c
        .query(
            "SELECT p.mac, t.slug FROM phones p JOIN tenants t ON t.id = p.tenant_id
             WHERE p.mac LIKE '0004F2D%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: HashMap<String, String> = [
        ("0004F2D000F1", "acme"),
        ("0004F2D000F2", "acme"),
        ("0004F2D00001", "bravo"),
        ("0004F2D00002", "acme"),
        ("0004F2D00003", "acme"),
        ("0004F2D00004", "acme"),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(owners, expected);
    let audited = app
        .count(
            "SELECT count(*) FROM audit_events WHERE action = 'phone.create' AND tenant_slug = 'acme'",
            &[],
        )
        .await;
    assert_eq!(audited, 5);
    let lines = app
        .count(
            "SELECT count(*) FROM phone_lines WHERE phone_mac LIKE '0004F2D%'",
            &[],
        )
        .await;
    assert_eq!(lines, 6);
}

#[tokio::test]
async fn a_tenants_create_waiting_on_a_lock_does_not_hold_up_another_tenants() {
    let (app, pool, batcher) = with_tenants(&["acme", "bravo"], 4).await;
    // acme's row locked as a tenant delete or rename would: its creates' foreign-key check waits.
    let mut locker = app.sql().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM tenants WHERE slug = 'acme' FOR UPDATE", &[])
        .await
        .unwrap();
    let stuck = tokio::spawn({
        let (batcher, pool) = (batcher.clone(), pool.clone());
        async move {
            batcher
                .create(&pool, new_phone("acme", "0004F2E00001"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stuck.is_finished(), "acme's create waits for the lock");
    let other = tokio::time::timeout(
        Duration::from_secs(30),
        batcher.create(&pool, new_phone("bravo", "0004F2E00002")),
    )
    .await
    .expect("bravo's create does not wait for acme's lock");
    assert!(other.unwrap().is_some());
    assert!(!stuck.is_finished());
    tx.rollback().await.unwrap();
    let acme = stuck.await.unwrap().unwrap();
    assert_eq!(
        acme.map(|p| p.mac),
        Some("0004F2E00001".parse::<MacAddress>().unwrap())
    );
}

#[tokio::test]
async fn concurrent_api_creates_answer_like_sequential_ones() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    assert_eq!(
        app.put_phone("bravo", "0004F2F00000").await.status,
        StatusCode::CREATED
    );
    let admin = app.admin();
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for i in 1..=24u8 {
        requests.push(("acme", format!("0004F2F000{i:02X}")));
        expected.push(vec![StatusCode::CREATED]);
    }
    // One MAC twice: one creates it, the other replaces it, in either order.
    requests.push(("acme", "0004F2F000AA".into()));
    requests.push(("acme", "0004F2F000AA".into()));
    expected.push(vec![StatusCode::CREATED, StatusCode::OK]);
    expected.push(vec![StatusCode::CREATED, StatusCode::OK]);
    requests.push(("acme", "0004F2F00000".into()));
    expected.push(vec![StatusCode::CONFLICT]);
    requests.push(("nosuch", "0004F2F000BB".into()));
    expected.push(vec![StatusCode::NOT_FOUND]);
    let paths: Vec<String> = requests
        .iter()
        .map(|(slug, mac)| format!("/v1/tenants/{slug}/phones/{mac}"))
        .collect();
    let responses = join_all(
        paths
            .iter()
            .map(|path| app.call(Method::PUT, path, Some(&admin), Some(phone_body()))),
    )
    .await;
    for ((req, ok), resp) in requests.iter().zip(&expected).zip(&responses) {
        assert!(
            ok.contains(&resp.status),
            "{req:?}: {} {}",
            resp.status,
            resp.text
        );
        if resp.status.is_success() {
            assert_eq!(resp.body["mac"], req.1);
            assert_eq!(resp.body["lines"][0]["password_set"], true);
            assert!(resp.headers.contains_key("etag"));
        }
    }
    let twice: Vec<StatusCode> = responses[24..26].iter().map(|r| r.status).collect();
    assert!(twice.contains(&StatusCode::CREATED) && twice.contains(&StatusCode::OK));
    let c = app.sql().await;
    let counts = c
        .query_one(
            "SELECT (SELECT count(*) FROM phones p JOIN tenants t ON t.id = p.tenant_id WHERE t.slug = 'acme'),
                    (SELECT count(*) FROM audit_events WHERE tenant_slug = 'acme' AND action = 'phone.create'),
                    (SELECT count(*) FROM audit_events WHERE tenant_slug = 'acme' AND action = 'phone.replace'),
                    (SELECT t.slug FROM phones p JOIN tenants t ON t.id = p.tenant_id WHERE p.mac = '0004F2F00000')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(counts.get::<_, i64>(0), 25);
    assert_eq!(counts.get::<_, i64>(1), 25);
    assert_eq!(counts.get::<_, i64>(2), 1);
    assert_eq!(counts.get::<_, String>(3), "bravo");
}

#[tokio::test]
async fn a_busy_tenants_lane_lets_go_of_its_connection_when_others_wait_for_one() {
    // One connection for everybody; the pool gives up on a waiter after 2 s.
    let (_app, pool, batcher) = with_tenants(&["acme", "bravo"], 1).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    // acme keeps its lane busy for 5 s: a create always waits there when a statement ends.
    let busy: Vec<_> = (0..4u32)
        .map(|t| {
            let (batcher, pool) = (batcher.clone(), pool.clone());
            tokio::spawn(async move {
                let mut created = 0u32;
                while tokio::time::Instant::now() < until {
                    let mac = format!("0004F3{t:02X}{created:04X}");
                    batcher
                        .create(&pool, new_phone("acme", &mac))
                        .await
                        .unwrap();
                    created += 1;
                }
                created
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = batcher
        .create(&pool, new_phone("bravo", "0004F2E00003"))
        .await
        .expect("bravo gets the connection in its turn");
    assert!(other.is_some());
    assert!(
        tokio::time::Instant::now() < until,
        "bravo's create ended while acme's lane was still busy"
    );
    for t in busy {
        assert!(t.await.unwrap() > 0);
    }
}
