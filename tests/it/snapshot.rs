//! The snapshot loader: a delta over the previous snapshot equals a full load, including a transaction
//! that was still open during the previous load and committed after it.

use dialtone::db::maintenance::EventScan;
use dialtone::db::snapshot::{load, BlobCache, Loaded};
use dialtone::snapshot::Snapshot;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{tenant_id, TestApp};

/// A load over `prev` (a delta when the tenants are the same).
async fn load_after(
    reader: &mut tokio_postgres::Client,
    blobs: &mut BlobCache,
    prev: &Loaded,
) -> Loaded {
    load(reader, blobs, Some((&prev.snapshot, &prev.xsnapshot)))
        .await
        .unwrap()
}

/// A served fetch event of `tenant` (of `phone`'s per-device `file` when a phone is given), its content
/// `sha` repeated.
fn served(
    tenant: uuid::Uuid,
    phone: Option<&str>,
    file: &str,
    sha: u8,
    at: time::OffsetDateTime,
) -> dialtone::db::fetches::NewFetch {
    dialtone::db::fetches::NewFetch {
        at,
        tenant,
        protocol: "tftp",
        source: "127.0.0.1".parse().unwrap(),
        source_port: 1000,
        file_name: file.into(),
        phone: phone.map(str::to_owned),
        outcome: "served",
        bytes: 100,
        duration_us: 5,
        sha256: Some(vec![sha; 32]),
        served_known: false,
    }
}

/// Stores `events` as the fetch-event writer does: one batch, one transaction.
async fn store_batch(pool: &dialtone::db::Pool, events: Vec<dialtone::db::fetches::NewFetch>) {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    dialtone::db::fetches::insert_batch(&tx, &events)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Everything a phone renders from, in a comparable form.
fn phones(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .phones_shared()
        .map(|p| {
            format!(
                "{} t={} {} {} {} {:?} {:?}",
                p.mac,
                s.tenant(p.tenant).slug,
                p.model,
                p.label,
                p.enabled,
                p.lines,
                p.settings
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_delta_equals_a_full_load_even_across_concurrent_commits() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    for n in 1..=5 {
        app.put_phone("acme", &format!("0A00000000{n:02X}")).await;
    }
    let mut reader = app.sql().await;
    let mut blobs = BlobCache::new();
    let first = load(&mut reader, &mut blobs, None).await.unwrap();
    assert!(!first.delta);
    assert_eq!(first.snapshot.phone_count(), 5);

    // A writer opens a transaction and writes a phone, but does not commit before the next load.
    let mut writer = app.sql().await;
    let open = writer.transaction().await.unwrap();
    open.batch_execute(
        "INSERT INTO phones (mac, id, tenant_id, model, label) SELECT 'B00000000001', gen_random_uuid(), id, '7960', 'late' FROM tenants WHERE slug = 'bravo';
         INSERT INTO phone_lines (phone_mac, position, number, auth_name, password) VALUES ('B00000000001', 1, '9001', '9001', 'pw');",
    )
    .await
    .unwrap();

    // Meanwhile: a replace, a patch, a delete and a create through the API.
    app.call(
        Method::PATCH,
        "/v1/tenants/acme/phones/0A0000000001",
        Some(&app.admin()),
        Some(json!({"label": "Lobby"})),
    )
    .await;
    app.call(
        Method::DELETE,
        "/v1/tenants/acme/phones/0A0000000002",
        Some(&app.admin()),
        None,
    )
    .await;
    app.put_phone("bravo", "0B0000000001").await;
    set_sip_port(&app, "acme", 5080).await;

    let second = load_after(&mut reader, &mut blobs, &first).await;
    assert!(second.delta, "same tenants: a delta");
    let full = load(&mut reader, &mut blobs, None).await.unwrap();
    assert_eq!(phones(&second.snapshot), phones(&full.snapshot));
    assert!(second
        .snapshot
        .phone(dialtone::domain::MacAddress::from_bare_hex("B00000000001").unwrap())
        .is_none());
    assert_eq!(sip_port(&second.snapshot, "acme"), Some(5080));

    // The open transaction commits after the second load: the next delta must still see it.
    open.commit().await.unwrap();
    let third = load_after(&mut reader, &mut blobs, &second).await;
    let late = third
        .snapshot
        .phone(dialtone::domain::MacAddress::from_bare_hex("B00000000001").unwrap());
    assert_eq!(
        late.map(|p| p.label.as_str()),
        Some("late"),
        "a commit that ran across a load is not lost"
    );
    let full = load(&mut reader, &mut blobs, None).await.unwrap();
    assert_eq!(phones(&third.snapshot), phones(&full.snapshot));

    // A new tenant changes the tenant indices: the loader falls back to a full load.
    app.create_tenant("charlie").await;
    let fourth = load_after(&mut reader, &mut blobs, &third).await;
    assert!(!fourth.delta);
    assert_eq!(phones(&fourth.snapshot), phones(&full.snapshot));
}

#[tokio::test]
async fn pruning_removes_old_tombstones_and_fetch_events_only() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.put_phone("acme", "0A0000000001").await;
    app.put_phone("acme", "0A0000000002").await;
    app.call(
        Method::DELETE,
        "/v1/tenants/acme/phones/0A0000000001",
        Some(&app.admin()),
        None,
    )
    .await;
    let c = app.sql().await;
    c.batch_execute(
        "UPDATE tombstones SET at = now() - interval '2 hours';
         INSERT INTO fetch_events (at, tenant_id, protocol, source, source_port, file_name, outcome, bytes, duration_us)
         SELECT now() - make_interval(days => d), id, 'tftp', '127.0.0.1', 1000, 'x', 'served', 1, 1
         FROM tenants, generate_series(1, 100) d;
         -- What phones last got: old for a deleted phone (goes), old for a phone still there (stays),
         -- recent for a phone that never existed (stays until it is old).
         INSERT INTO phone_files_served (tenant_id, phone_mac, file_name, sha256, at)
         SELECT id, mac, 'SIP' || mac || '.cnf', '\\x00', now() - make_interval(days => d)
         FROM tenants, (VALUES ('0A0000000001', 40), ('0A0000000002', 40), ('0A0000000003', 1)) v (mac, d);",
    )
    .await
    .unwrap();
    let pool = dialtone::db::pool(&app.db_url, 1).unwrap();
    let gone = dialtone::db::maintenance::prune(
        &pool.get().await.unwrap(),
        3600,
        30,
        1000,
        EventScan::Oldest,
    )
    .await
    .unwrap();
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM tombstones").await, 0);
    assert_eq!(
        count("SELECT count(*) FROM fetch_events").await,
        29,
        "days 1..=29 stay"
    );
    let kept: Vec<String> = c
        .query("SELECT phone_mac FROM phone_files_served ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, ["0A0000000002", "0A0000000003"]);
    assert_eq!(gone, 1 + 71 + 1);
}

#[tokio::test]
async fn tenant_wide_stamps_are_computed_before_a_snapshot_is_published() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.put_phone("acme", "0A0000000001").await;
    let mac = dialtone::domain::MacAddress::from_bare_hex("0A0000000001").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let snap = loop {
        let s = app.snapshot.current();
        if s.phone(mac).is_some() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshot did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let t = snap.tenant_by_slug("acme").unwrap();
    // The 7940/7960 sync stamp hashes every such phone of the tenant: never on the request path.
    let stamp = snap.tenant_memo(t, || panic!("the sync stamp was left for the request path"));
    assert!(stamp > 0);
}

#[tokio::test]
async fn polling_mode_follows_changes_without_listen() {
    // The mode for following a read replica, where LISTEN is impossible: no notification is listened to.
    let app = TestApp::spawn_with(
        dialtone::app::Parts {
            api: true,
            frontend: false,
        },
        |c| c.snapshot_poll_ms = 100,
    )
    .await;
    app.create_tenant("acme").await;
    app.put_phone("acme", "0A0000000001").await;
    let mac = dialtone::domain::MacAddress::from_bare_hex("0A0000000001").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.snapshot.current().phone(mac).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "polling never picked up the phone"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.call(
        Method::DELETE,
        "/v1/tenants/acme/phones/0A0000000001",
        Some(&app.admin()),
        None,
    )
    .await;
    while app.snapshot.current().phone(mac).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "polling never saw the deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fetch_events_go_with_their_tenant_and_a_deleted_tenants_batch_is_not_stored() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let c = app.sql().await;
    let (acme, other) = (tenant_id(&c, "acme").await, tenant_id(&c, "other").await);
    let event = |tenant: uuid::Uuid, n: u16| dialtone::db::fetches::NewFetch {
        source_port: n,
        ..served(
            tenant,
            None,
            &format!("SIP0A000000000{n}.cnf"),
            n as u8,
            time::OffsetDateTime::now_utc(),
        )
    };
    let pool = dialtone::db::pool(&app.db_url, 1).unwrap();
    let store = |events| store_batch(&pool, events);
    store(vec![event(acme, 1), event(other, 2), event(acme, 3)]).await;
    let rows = c
        .query(
            "SELECT tenant_id, source_port, file_name, sha256 FROM fetch_events ORDER BY source_port",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(uuid::Uuid, i32, String, Vec<u8>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (acme, 1, "SIP0A0000000001.cnf".into(), vec![1; 32]),
            (other, 2, "SIP0A0000000002.cnf".into(), vec![2; 32]),
            (acme, 3, "SIP0A0000000003.cnf".into(), vec![3; 32]),
        ]
    );
    let r = app
        .call(Method::DELETE, "/v1/tenants/acme", Some(&app.admin()), None)
        .await;
    assert_eq!(r.status, reqwest::StatusCode::NO_CONTENT, "{}", r.text);
    let tenants_of = |sql: &'static str| {
        let c = &c;
        async move {
            c.query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, uuid::Uuid>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        tenants_of("SELECT tenant_id FROM fetch_events").await,
        vec![other],
        "the deleted tenant's events went with it"
    );
    // A batch that still holds events of the deleted tenant stores only the others.
    store(vec![event(acme, 4), event(other, 5)]).await;
    assert_eq!(
        tenants_of("SELECT tenant_id FROM fetch_events ORDER BY source_port").await,
        vec![other, other]
    );
}

#[tokio::test]
async fn each_phone_files_last_served_copy_is_kept_newest_first_and_goes_with_its_tenant() {
    use dialtone::db::fetches::NewFetch;
    use time::{Duration, OffsetDateTime};
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let c = app.sql().await;
    let (acme, other) = (tenant_id(&c, "acme").await, tenant_id(&c, "other").await);
    let t0 = OffsetDateTime::now_utc();
    let at = |s: i64| t0 + Duration::seconds(s);
    let pool = dialtone::db::pool(&app.db_url, 1).unwrap();
    let store = |events| store_batch(&pool, events);
    let (a, b) = ("0A0000000001", "0B0000000002");
    let (sip_a, sep_a) = ("SIP0A0000000001.cnf", "SEP0A0000000001.cnf.xml");
    // One batch: two copies of A's SIP file (the later wins, however they are ordered), A's SEP file,
    // a tenant-wide file (no phone), a failed fetch with a phone, and B of the other tenant.
    store(vec![
        served(acme, Some(a), sip_a, 2, at(2)),
        served(acme, Some(a), sip_a, 1, at(1)),
        served(acme, Some(a), sep_a, 3, at(1)),
        served(acme, None, "SIPDefault.cnf", 4, at(1)),
        NewFetch {
            outcome: "not_found",
            sha256: None,
            ..served(acme, Some(a), "SIP0A0000000001.cnf.bak", 0, at(3))
        },
        served(other, Some(b), "SIP0B0000000002.cnf", 5, at(1)),
    ])
    .await;
    let rows = || {
        let c = &c;
        async move {
            c.query(
                "SELECT tenant_id, phone_mac, file_name, sha256 FROM phone_files_served
                 ORDER BY phone_mac, file_name",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let sha: Vec<u8> = r.get(3);
                (
                    r.get::<_, uuid::Uuid>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    sha[0],
                )
            })
            .collect::<Vec<_>>()
        }
    };
    let want = |sip_a_sha: u8| {
        vec![
            (acme, a.to_owned(), sep_a.to_owned(), 3),
            (acme, a.to_owned(), sip_a.to_owned(), sip_a_sha),
            (other, b.to_owned(), "SIP0B0000000002.cnf".to_owned(), 5),
        ]
    };
    assert_eq!(rows().await, want(2));
    // A later batch with an older copy (a slow transfer that ended late) does not replace it.
    store(vec![served(acme, Some(a), sip_a, 6, at(0))]).await;
    assert_eq!(rows().await, want(2));
    store(vec![served(acme, Some(a), sip_a, 7, at(5))]).await;
    assert_eq!(rows().await, want(7));
    // The same content fetched again is not written again: `at` stays when the phone first got it.
    store(vec![served(acme, Some(a), sip_a, 7, at(9))]).await;
    let first_got: OffsetDateTime = c
        .query_one(
            "SELECT at FROM phone_files_served WHERE phone_mac = $1 AND file_name = $2",
            &[&a, &sip_a],
        )
        .await
        .unwrap()
        .get(0);
    let micros = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1000;
    assert_eq!(micros(first_got), micros(at(5)));
    // An event the writer knows to be stored already is kept as an event but writes no row.
    store(vec![NewFetch {
        served_known: true,
        ..served(acme, Some(a), sip_a, 8, at(10))
    }])
    .await;
    assert_eq!(rows().await, want(7));
    // The API reads it: the phone exists and its last SIP file is not what it would get now.
    app.put_phone("acme", a).await;
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/acme/phones/{a}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["config_state"], "outdated", "{}", r.text);
    let r = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme?cascade=true",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        rows().await,
        vec![(other, b.to_owned(), "SIP0B0000000002.cnf".to_owned(), 5)],
        "the deleted tenant's rows went with it"
    );
}

#[tokio::test]
async fn api_change_notifications_are_spaced_and_the_last_write_is_always_announced() {
    use dialtone::api::{ChangeNotifier, NOTIFY_GAP};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let app = TestApp::spawn().await;
    let (_listen, mut heard) = listener(&app.db_url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while heard.try_recv().is_ok() {}
    // When each notification arrived.
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let collector = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while heard.recv().await.is_some() {
                arrivals.lock().unwrap().push(Instant::now());
            }
        })
    };
    let notifier = ChangeNotifier::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pool = dialtone::db::pool(&app.db_url, 2).unwrap();
    tokio::spawn(notifier.clone().run(pool, shutdown.clone()));
    // A write request about every millisecond for 300 ms: many more than one per gap.
    let start = Instant::now();
    let (mut signals, mut last) = (0, start);
    while start.elapsed() < Duration::from_millis(300) {
        notifier.signal();
        last = Instant::now();
        signals += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(NOTIFY_GAP * 20).await;
    shutdown.cancel();
    collector.abort();
    let arrivals = arrivals.lock().unwrap().clone();
    assert!(
        arrivals.iter().any(|&t| t > last),
        "the last signal was never announced ({} notifications)",
        arrivals.len()
    );
    let gaps = (last - start).as_millis() / NOTIFY_GAP.as_millis();
    assert!(
        arrivals.len() as u128 <= gaps + 2,
        "{} notifications for {signals} signals in {:?}: more than one per {NOTIFY_GAP:?}",
        arrivals.len(),
        last - start
    );
}

/// A client LISTENing on the change channel, and the notifications it receives.
async fn listener(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (c, mut conn) = dialtone::db::parse_config(url)
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                if n.channel() == dialtone::snapshot::refresher::CHANNEL {
                    let _ = tx.send(());
                }
            }
        }
    });
    c.batch_execute(&format!(
        "LISTEN {}",
        dialtone::snapshot::refresher::CHANNEL
    ))
    .await
    .unwrap();
    (c, rx)
}

#[tokio::test]
async fn api_writes_are_announced_once_committed_and_deferring_sessions_stay_silent() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let (_listen, mut heard) = listener(&app.db_url).await;
    let quiet = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>| {
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        n
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    quiet(&mut heard);

    // A session like the API's worker pools' writes without notifying…
    let mut config = dialtone::db::parse_config(&app.db_url).unwrap();
    config.options("-c dialtone.defer_notify=on");
    let (deferring, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    deferring
        .batch_execute(
            "INSERT INTO phones (mac, id, tenant_id, model) SELECT 'D00000000001', gen_random_uuid(), id, '7960' FROM tenants WHERE slug = 'acme'",
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        quiet(&mut heard),
        0,
        "a deferring session notified by itself"
    );

    // …while any other session's write notifies as before,
    let plain = app.sql().await;
    plain
        .batch_execute("UPDATE phones SET label = 'x' WHERE mac = 'D00000000001'")
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv())
        .await
        .expect("a plain session's write was not announced");

    // …and a write through the API is announced by the API after it committed: the listener, woken, sees
    // the new phone.
    quiet(&mut heard);
    assert_eq!(
        app.put_phone("acme", "0A0000000077").await.status,
        reqwest::StatusCode::CREATED
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv())
        .await
        .expect("an API write was not announced");
    let seen = plain
        .query_opt("SELECT 1 FROM phones WHERE mac = '0A0000000077'", &[])
        .await
        .unwrap();
    assert!(seen.is_some());
}

/// Old fetch events go a window of the oldest ids at a time, several windows a call; a block of events
/// stored out of order (a writer's clock a year ahead) ends that pass, and the occasional whole-table
/// pass takes the old events behind it.
#[tokio::test]
async fn pruning_reads_the_oldest_events_and_sweeps_the_whole_table_for_the_rest() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let c = app.sql().await;
    let insert = |days: i32, n: i32| {
        let c = &c;
        async move {
            c.execute(
                "INSERT INTO fetch_events (at, tenant_id, protocol, source, source_port, file_name, outcome, bytes,
                                           duration_us)
                 SELECT now() - make_interval(days => $1), id, 'tftp', '127.0.0.1', 1000, 'x', 'served', 1, 1
                 FROM tenants, generate_series(1, $2)",
                &[&days, &n],
            )
            .await
            .unwrap();
        }
    };
    let count = || async {
        c.query_one("SELECT count(*) FROM fetch_events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let pool = dialtone::db::pool(&app.db_url, 1).unwrap();
    let prune = |scan| {
        let pool = &pool;
        async move {
            dialtone::db::maintenance::prune(&pool.get().await.unwrap(), 3600, 30, 20, scan)
                .await
                .unwrap()
        }
    };

    // In order: 50 old events, then 10 recent ones; windows of 20 take the 50 in three.
    insert(40, 50).await;
    insert(1, 10).await;
    assert_eq!(prune(EventScan::Oldest).await, 50);
    assert_eq!(count().await, 10);

    // 30 events from a clock a year ahead, then 50 old ones: the first window holds none to delete.
    insert(-365, 30).await;
    insert(40, 50).await;
    assert_eq!(prune(EventScan::Oldest).await, 0);
    assert_eq!(count().await, 90);
    assert_eq!(prune(EventScan::Whole).await, 50);
    assert_eq!(count().await, 40);
}

/// Sets tenant `slug`'s SIP port through the API.
async fn set_sip_port(app: &TestApp, slug: &str, port: u16) {
    app.call(
        Method::PATCH,
        &format!("/v1/tenants/{slug}"),
        Some(&app.admin()),
        Some(json!({"settings": {"sip": {"port": port}}})),
    )
    .await;
}

/// The SIP port in tenant `slug`'s settings.
fn sip_port(s: &Snapshot, slug: &str) -> Option<u16> {
    let t = s.tenant(s.tenant_by_slug(slug)?);
    Some(t.settings.sip.as_ref()?.port?.0)
}

/// A delta parses the settings of the tenants written since the previous load only; the others come from
/// the previous snapshot (with 2,000 tenants, parsing them all was half of every delta). Shown with a row
/// changed behind the triggers' back, its transaction id unchanged: a delta keeps its previous settings,
/// and a full load, the refresher's periodic safety net, reads it.
#[tokio::test]
async fn a_delta_reads_only_the_changed_tenants_settings() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    let mut reader = app.sql().await;
    let mut blobs = BlobCache::new();
    let first = load(&mut reader, &mut blobs, None).await.unwrap();
    assert_eq!(sip_port(&first.snapshot, "bravo"), Some(5060));

    app.sql()
        .await
        .batch_execute(
            "ALTER TABLE tenants DISABLE TRIGGER tenants_revision;
             UPDATE tenants SET settings = jsonb_set(settings, '{sip,port}', '5099') WHERE slug = 'bravo';
             ALTER TABLE tenants ENABLE TRIGGER tenants_revision;",
        )
        .await
        .unwrap();
    set_sip_port(&app, "acme", 5080).await;

    let second = load_after(&mut reader, &mut blobs, &first).await;
    assert!(second.delta);
    assert_eq!(
        sip_port(&second.snapshot, "acme"),
        Some(5080),
        "written since: read"
    );
    assert_eq!(
        sip_port(&second.snapshot, "bravo"),
        Some(5060),
        "not written since (as far as the triggers know): the previous snapshot's"
    );
    let full = load(&mut reader, &mut blobs, None).await.unwrap();
    assert_eq!(sip_port(&full.snapshot, "acme"), Some(5080));
    assert_eq!(sip_port(&full.snapshot, "bravo"), Some(5099));
}

/// A full load reads phones and lines in one stream and groups the rows by phone: every phone gets exactly
/// its own lines, in position order, whichever join PostgreSQL picks (lines written out of order; a hash
/// join hands a phone's lines back in another order than the primary key), and phones without lines get
/// none.
#[tokio::test]
async fn a_full_load_gives_each_phone_its_own_lines_in_position_order_under_any_join() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    app.sql()
        .await
        .batch_execute(
            "INSERT INTO phones (mac, id, tenant_id, model)
                 SELECT m, gen_random_uuid(), t.id, '7960'
                 FROM (VALUES ('0A0000000001', 'acme'), ('0A0000000002', 'acme'), ('0A0000000003', 'bravo'),
                              ('0A0000000004', 'acme'), ('0A0000000005', 'bravo')) v (m, s)
                 JOIN tenants t ON t.slug = v.s;
             INSERT INTO phone_lines (phone_mac, position, number, auth_name, password) VALUES
                 ('0A0000000001', 3, '103', '103', 'p3'), ('0A0000000003', 2, '302', '302', NULL),
                 ('0A0000000001', 1, '101', '101', 'p1'), ('0A0000000004', 1, '401', '401', 'p4'),
                 ('0A0000000003', 1, '301', '301', NULL), ('0A0000000001', 2, '102', '102', 'p2'),
                 ('0A0000000005', 1, '501', '501', 'p5');",
        )
        .await
        .unwrap();
    let want = [
        ("0A0000000001", vec!["101", "102", "103"]),
        ("0A0000000002", vec![]),
        ("0A0000000003", vec!["301", "302"]),
        ("0A0000000004", vec!["401"]),
        ("0A0000000005", vec!["501"]),
    ];
    let mut reader = app.sql().await;
    let mut blobs = BlobCache::new();
    for plan in [
        "RESET ALL",
        "SET enable_mergejoin = off; SET enable_nestloop = off",
        "SET enable_mergejoin = off; SET enable_hashjoin = off",
    ] {
        reader.batch_execute(plan).await.unwrap();
        let loaded = load(&mut reader, &mut blobs, None).await.unwrap();
        let got: Vec<(String, Vec<String>)> = {
            let mut v: Vec<_> = loaded
                .snapshot
                .phones_shared()
                .map(|p| {
                    (
                        p.mac.to_string(),
                        p.lines.iter().map(|l| l.number.clone()).collect(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let want: Vec<(String, Vec<String>)> = want
            .iter()
            .map(|(m, l)| (m.to_string(), l.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(got, want, "plan: {plan}");
        let first = loaded
            .snapshot
            .phone(dialtone::domain::MacAddress::from_bare_hex("0A0000000001").unwrap())
            .unwrap();
        assert_eq!(
            first
                .lines
                .iter()
                .map(|l| l.password.as_str())
                .collect::<Vec<_>>(),
            ["p1", "p2", "p3"],
            "plan: {plan}"
        );
    }
}

/// Everything a snapshot derives from its phones per tenant, for comparing two loads: each tenant's
/// sorted MAC list and its digest sums.
fn per_tenant(s: &Snapshot) -> Vec<String> {
    use dialtone::domain::Family;
    (0..s.tenants().len())
        .map(|t| {
            let macs: Vec<String> = s.phones_of(t).iter().map(|m| m.to_string()).collect();
            let sums: Vec<_> = [Family::Sip79xx, Family::Sip79x1, Family::Sip89xx99xx]
                .into_iter()
                .map(|f| s.digest_sum(t, f))
                .collect();
            format!("{} {macs:?} {sums:?}", s.tenant(t).slug)
        })
        .collect()
}

/// The refresher's periodic full reload shares with the current snapshot every phone that is unchanged,
/// under the same tenant index, and builds anew the ones that changed, also behind the triggers' back
/// (what the safety net is for): edited, deleted or inserted without a revision, a transaction id or a
/// tombstone for the deltas to see. Built from the current snapshot in O(changes), it must equal a plain
/// full load, tenant MAC lists and digest sums included. When a new tenant shifts the tenant indices,
/// nothing is shared and every phone still gets its own tenant.
#[tokio::test]
async fn a_full_reload_shares_unchanged_phones_and_rebuilds_changed_ones() {
    use dialtone::db::snapshot::load_full;
    use dialtone::domain::MacAddress;
    let app = TestApp::spawn().await;
    app.create_tenant("bravo").await;
    app.create_tenant("delta").await;
    for mac in [
        "0A0000000001",
        "0A0000000002",
        "0A0000000003",
        "0A0000000005",
    ] {
        app.put_phone("bravo", mac).await;
    }
    app.put_phone("delta", "0A0000000004").await;
    let mut reader = app.sql().await;
    let mut blobs = BlobCache::new();
    let first = load(&mut reader, &mut blobs, None).await.unwrap();
    // The sums are computed now, so that the reload carries them instead of computing them afresh.
    let before = per_tenant(&first.snapshot);
    assert!(before[0].contains("0A0000000005"));
    let mac = |m: &str| MacAddress::from_bare_hex(m).unwrap();
    let shared = |a: &Snapshot, b: &Snapshot, m: &str| {
        std::sync::Arc::ptr_eq(
            a.phone_shared(mac(m)).unwrap(),
            b.phone_shared(mac(m)).unwrap(),
        )
    };

    // Behind the triggers: a label and a line's password changed, a phone deleted, a phone inserted.
    app.sql()
        .await
        .batch_execute(
            "ALTER TABLE phones DISABLE TRIGGER USER; ALTER TABLE phone_lines DISABLE TRIGGER USER;
             UPDATE phones SET label = 'behind' WHERE mac = '0A0000000002';
             UPDATE phone_lines SET password = 'changed' WHERE phone_mac = '0A0000000003';
             DELETE FROM phones WHERE mac = '0A0000000005';
             INSERT INTO phones (mac, id, tenant_id, model, label)
                 SELECT '0A0000000006', gen_random_uuid(), id, '7960', 'new' FROM tenants WHERE slug = 'delta';
             ALTER TABLE phones ENABLE TRIGGER USER; ALTER TABLE phone_lines ENABLE TRIGGER USER;",
        )
        .await
        .unwrap();
    let second = load_full(&mut reader, &mut blobs, &first.snapshot)
        .await
        .unwrap();
    assert!(shared(&first.snapshot, &second.snapshot, "0A0000000001"));
    assert!(shared(&first.snapshot, &second.snapshot, "0A0000000004"));
    assert!(!shared(&first.snapshot, &second.snapshot, "0A0000000002"));
    assert!(!shared(&first.snapshot, &second.snapshot, "0A0000000003"));
    assert_eq!(
        second.snapshot.phone(mac("0A0000000002")).unwrap().label,
        "behind"
    );
    assert_eq!(
        second.snapshot.phone(mac("0A0000000003")).unwrap().lines[0].password,
        "changed"
    );
    assert!(second.snapshot.phone(mac("0A0000000005")).is_none());
    assert_eq!(
        second.snapshot.phone(mac("0A0000000006")).unwrap().label,
        "new"
    );
    let plain = load(&mut reader, &mut blobs, None).await.unwrap();
    assert_eq!(phones(&second.snapshot), phones(&plain.snapshot));
    assert_eq!(per_tenant(&second.snapshot), per_tenant(&plain.snapshot));
    assert_ne!(per_tenant(&second.snapshot), before);

    // A tenant that sorts first moves every other tenant's index: nothing can be shared.
    app.create_tenant("alpha").await;
    let third = load_full(&mut reader, &mut blobs, &second.snapshot)
        .await
        .unwrap();
    for m in [
        "0A0000000001",
        "0A0000000002",
        "0A0000000003",
        "0A0000000004",
    ] {
        assert!(!shared(&second.snapshot, &third.snapshot, m), "{m}");
    }
    let plain = load(&mut reader, &mut blobs, None).await.unwrap();
    assert_eq!(phones(&third.snapshot), phones(&plain.snapshot));
    assert_eq!(per_tenant(&third.snapshot), per_tenant(&plain.snapshot));
    let tenant_of = |m: &str| {
        let s = &third.snapshot;
        s.tenant(s.phone(mac(m)).unwrap().tenant).slug.to_string()
    };
    assert_eq!(tenant_of("0A0000000001"), "bravo");
    assert_eq!(tenant_of("0A0000000004"), "delta");
}
