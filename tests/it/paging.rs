//! Paged and newest-first reads read only what they return, whatever PostgreSQL's statistics say: a
//! cursor is an index condition, and a "newest first" read orders by an expression only its own index
//! has. Each test runs the `db` functions in generic plans (what a pooled connection's prepared statement
//! ends up with) beside one large tenant or one busy device, and counts the rows PostgreSQL read.

use deadpool_postgres::GenericClient;
use reqwest::StatusCode;

use crate::helpers::{tenant_id, TestApp};

/// Rows of `table` read so far in the current transaction: by sequential scans, plus index entries
/// returned by any of its indexes.
async fn rows_read(c: &impl GenericClient, table: &str) -> i64 {
    c.query_one(
        "SELECT pg_stat_get_xact_tuples_returned($1::text::regclass)
              + coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)::bigint
         FROM pg_index WHERE indrelid = $1::text::regclass",
        &[&table],
    )
    .await
    .unwrap()
    .get(0)
}

/// A transaction whose statements run in generic plans.
async fn generic_plans(c: &mut deadpool_postgres::Object) -> deadpool_postgres::Transaction<'_> {
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    tx
}

/// The API's own kind of connection (what `db` functions take), to the app's database.
async fn connection(app: &TestApp) -> deadpool_postgres::Object {
    dialtone::db::pool(&app.db_url, 1)
        .unwrap()
        .get()
        .await
        .unwrap()
}

/// One device that fetches far more than all others (a looping phone, a monitoring probe) must not make
/// the others' history, last-seen address or resync slow. With its events filling the table, PostgreSQL's
/// statistics say every phone has that many events, and a prepared statement's generic plan read a rare
/// phone's newest events backwards along the primary key, past all of the busy device's: here 20,000 rows
/// for 3 events (3.9 M rows, 671 ms on a bench database). Each of these reads must touch only the phone's
/// own rows.
#[tokio::test]
async fn a_phones_history_reads_its_own_events_even_beside_a_busy_device() {
    const BUSY: &str = "0004F2D000B1";
    const QUIET: &str = "0004F2D000B2";
    let app = TestApp::spawn().await;
    app.create_tenant("skew").await;
    for mac in [BUSY, QUIET] {
        assert_eq!(app.put_phone("skew", mac).await.status, StatusCode::CREATED);
    }
    let mut c = connection(&app).await;
    let tenant = tenant_id(&c, "skew").await;
    // The quiet phone's three events first (from 10.0.0.1, .2, .3), then the busy device's 20,000.
    c.execute(
        "INSERT INTO fetch_events (at, tenant_id, protocol, source, source_port, file_name, phone_mac, outcome,
                                   bytes, duration_us)
         SELECT now(), $1, 'tftp', ('10.0.0.' || i)::inet, 1024, 'SIPDefault.cnf', $2, 'served', 100, 50
         FROM generate_series(1, 3) i",
        &[&tenant, &QUIET],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO fetch_events (at, tenant_id, protocol, source, source_port, file_name, phone_mac, outcome,
                                   bytes, duration_us)
         SELECT now(), $1, 'tftp', '10.0.9.9', 1024, 'SIPDefault.cnf', $2, 'served', 100, 50
         FROM generate_series(1, 20000)",
        &[&tenant, &BUSY],
    )
    .await
    .unwrap();
    c.batch_execute("ANALYZE fetch_event_pages").await.unwrap();

    let tx = generic_plans(&mut c).await;
    let before = rows_read(&tx, "fetch_event_pages").await;
    let first = dialtone::db::fetches::history(&tx, tenant, QUIET, None, 2)
        .await
        .unwrap();
    let rest = dialtone::db::fetches::history(&tx, tenant, QUIET, Some(first[1].id), 2)
        .await
        .unwrap();
    let sources: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|e| e.source.to_string())
        .collect();
    assert_eq!(
        sources,
        ["10.0.0.3", "10.0.0.2", "10.0.0.1"],
        "newest first, paged"
    );
    let (seen, _) = dialtone::db::fetches::last_seen(&tx, tenant, QUIET)
        .await
        .unwrap()
        .expect("the quiet phone was seen");
    assert_eq!(seen.to_string(), "10.0.0.3");
    let all = dialtone::db::fetches::last_seen_all(&tx, tenant)
        .await
        .unwrap();
    let all: Vec<(String, String)> = all.into_iter().map(|(m, ip)| (m, ip.to_string())).collect();
    assert_eq!(
        all,
        [
            (BUSY.to_owned(), "10.0.9.9".to_owned()),
            (QUIET.to_owned(), "10.0.0.3".to_owned())
        ]
    );
    // A forged cursor below every id reads nothing (and does not overflow the negation).
    let none = dialtone::db::fetches::history(&tx, tenant, QUIET, Some(i64::MIN), 2)
        .await
        .unwrap();
    assert!(none.is_empty());
    let read = rows_read(&tx, "fetch_event_pages").await - before;
    assert!(
        read <= 20,
        "the reads touched {read} rows of fetch_event_pages for 3 events of the quiet phone and one of the busy one"
    );
}

/// Paging through a large tenant reads one page a request, wherever the cursor is, and a small
/// tenant's pages do not read the large tenant's rows: phones, discovered devices, the audit log (one
/// tenant's and the platform's). A cursor written as `$2 IS NULL OR mac > $2` was a filter, not an index
/// condition: the last page of a 169,000-phone tenant read every phone before it (52 ms; 0.07 ms now).
#[tokio::test]
async fn pages_read_only_their_rows_beside_a_large_tenant() {
    const PHONES: i64 = 3_000;
    let app = TestApp::spawn().await;
    app.create_tenant("large").await;
    app.create_tenant("small").await;
    for mac in ["0004F2E00001", "0004F2E00002", "0004F2E00003"] {
        assert_eq!(
            app.put_phone("small", mac).await.status,
            StatusCode::CREATED
        );
    }
    let mut c = connection(&app).await;
    let (large, small) = (tenant_id(&c, "large").await, tenant_id(&c, "small").await);
    // The large tenant's phones (MACs 0A0000000001...), as many unknown devices, and an audit event each.
    c.batch_execute(&format!(
        "INSERT INTO phones (mac, id, tenant_id, model)
         SELECT '0A' || lpad(upper(to_hex(i)), 10, '0'), gen_random_uuid(), '{large}', '7960'
         FROM generate_series(1, {PHONES}) i;
         INSERT INTO discovered_devices (tenant_id, mac, first_seen, last_seen, source, files)
         SELECT '{large}', '0B' || lpad(upper(to_hex(i)), 10, '0'), now(), now(), '10.1.0.1', ARRAY['x']
         FROM generate_series(1, {PHONES}) i;
         INSERT INTO audit_events (subject, role, tenant_id, tenant_slug, action, target)
         SELECT 'test', 'platform-admin', '{large}', 'large', 'phone.create', i::text
         FROM generate_series(1, {PHONES}) i;
         ANALYZE phones, discovered_devices, audit_events;"
    ))
    .await
    .unwrap();
    let tx = generic_plans(&mut c).await;
    let filter = dialtone::db::phones::PhoneFilter::default();

    let before = rows_read(&tx, "phones").await;
    let page = dialtone::db::phones::list(&tx, large, &filter, Some("0A0000000B54"), 50)
        .await
        .unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(
        page[0].mac.to_string(),
        "0A0000000B55",
        "the page after the cursor"
    );
    let page = dialtone::db::phones::list(&tx, small, &filter, None, 50)
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    let read = rows_read(&tx, "phones").await - before;
    assert!(read <= 120, "two pages of phones read {read} rows");

    let before = rows_read(&tx, "discovered_devices").await;
    let page = dialtone::db::fetches::discovered(&tx, large, Some("0B0000000B54"), 50)
        .await
        .unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[0].mac, "0B0000000B55");
    let read = rows_read(&tx, "discovered_devices").await - before;
    assert!(read <= 60, "a page of discovered devices read {read} rows");

    let before = rows_read(&tx, "audit_events").await;
    let mine = dialtone::db::audit::list(&tx, Some(small), None, 50)
        .await
        .unwrap();
    let actions: Vec<&str> = mine.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "phone.create",
            "phone.create",
            "phone.create",
            "tenant.create"
        ],
        "the small tenant's own events, newest first"
    );
    let oldest_large = tx
        .query_one(
            "SELECT min(id) FROM audit_events WHERE tenant_id = $1",
            &[&large],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    let all = dialtone::db::audit::list(&tx, None, Some(oldest_large + 10), 50)
        .await
        .unwrap();
    assert!(
        all.iter().all(|e| e.id < oldest_large + 10) && all.len() >= 10,
        "the platform page before the cursor"
    );
    let forged = dialtone::db::audit::list(&tx, Some(small), Some(i64::MIN), 50)
        .await
        .unwrap();
    assert!(forged.is_empty(), "a cursor below every id");
    let read = rows_read(&tx, "audit_events").await - before;
    assert!(read <= 120, "two pages of the audit log read {read} rows");
}

/// Deleting a tenant deletes its fetch events through indexes, beside a large tenant: those that name a
/// phone through the per-phone index, the others (shared files, misses) through the small index that V13
/// keeps for them. Neither kind may be left behind, and no other tenant's events may be read or lost.
#[tokio::test]
async fn deleting_a_tenant_reads_only_its_own_fetch_events() {
    let app = TestApp::spawn().await;
    app.create_tenant("large").await;
    app.create_tenant("small").await;
    let mut c = connection(&app).await;
    let (large, small) = (tenant_id(&c, "large").await, tenant_id(&c, "small").await);
    // Half of each tenant's events name a phone, half do not (as in a boot storm's shared files).
    let insert = "INSERT INTO fetch_events (at, tenant_id, protocol, source, source_port, file_name, phone_mac,
                                            outcome, bytes, duration_us)
                  SELECT now(), $1, 'tftp', '10.0.0.1', 1024,
                         CASE WHEN i % 2 = 0 THEN 'SIP0004F2D000' || lpad((i % 100)::text, 2, '0') || '.cnf'
                              ELSE 'SIPDefault.cnf' END,
                         CASE WHEN i % 2 = 0 THEN '0004F2D000' || lpad((i % 100)::text, 2, '0') END,
                         'served', 100, 50
                  FROM generate_series(1, $2::int) i";
    c.execute(insert, &[&large, &20_000i32]).await.unwrap();
    c.execute(insert, &[&small, &6i32]).await.unwrap();
    c.batch_execute("ANALYZE fetch_event_pages").await.unwrap();

    let tx = c.transaction().await.unwrap();
    let before = rows_read(&tx, "fetch_event_pages").await;
    let deleted = tx
        .execute("DELETE FROM tenants WHERE id = $1", &[&small])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let read = rows_read(&tx, "fetch_event_pages").await - before;
    let left = |tenant: uuid::Uuid| {
        let tx = &tx;
        async move {
            tx.query_one(
                "SELECT count(*) FILTER (WHERE phone_mac IS NOT NULL), count(*) FILTER (WHERE phone_mac IS NULL)
                 FROM fetch_events WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .unwrap()
        }
    };
    assert_eq!(
        left(small).await,
        (0, 0),
        "both kinds of its events went with it"
    );
    assert_eq!(
        left(large).await,
        (10_000, 10_000),
        "the other tenant's events stay"
    );
    assert!(
        read <= 20,
        "deleting a tenant with 6 fetch events read {read} rows of fetch_event_pages beside 20,000 of another tenant"
    );
}

/// The writer stores a batch as one page per phone (and one for the events that name no phone), yet a
/// phone's history reads event by event: newest first, paged with cursors that fall inside a page and
/// across pages, with ids that grow with time; its last-seen address is its newest event's, and the
/// `fetch_events` view shows every event once.
#[tokio::test]
async fn a_phones_events_stored_in_pages_read_one_by_one_newest_first() {
    use dialtone::db::fetches::{self, NewFetch};
    const ONE: &str = "0004F2D000C1";
    const TWO: &str = "0004F2D000C2";
    let app = TestApp::spawn().await;
    app.create_tenant("pages").await;
    for mac in [ONE, TWO] {
        assert_eq!(
            app.put_phone("pages", mac).await.status,
            StatusCode::CREATED
        );
    }
    let mut c = connection(&app).await;
    let tenant = tenant_id(&c, "pages").await;
    let event = |phone: Option<&str>, port: u16| NewFetch {
        at: time::OffsetDateTime::now_utc(),
        tenant,
        protocol: "tftp",
        source: format!("10.0.1.{port}").parse().unwrap(),
        source_port: port,
        file_name: phone.map_or("SIPDefault.cnf".into(), |m| format!("SIP{m}.cnf")),
        phone: phone.map(str::to_owned),
        outcome: "served",
        bytes: 100,
        duration_us: 50,
        sha256: Some(vec![port as u8; 32]),
        served_known: false,
    };
    // Phone ONE's events are ports 1-5: three in the first batch (between the others'), two in the next.
    let batches = [
        vec![
            event(Some(ONE), 1),
            event(None, 100),
            event(Some(TWO), 200),
            event(Some(ONE), 2),
            event(None, 101),
            event(Some(ONE), 3),
        ],
        vec![event(Some(ONE), 4), event(Some(ONE), 5)],
    ];
    for batch in &batches {
        let tx = c.transaction().await.unwrap();
        fetches::insert_batch(&tx, batch).await.unwrap();
        tx.commit().await.unwrap();
    }
    let pages: i64 = c
        .query_one(
            "SELECT count(*) FROM fetch_event_pages WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        pages, 4,
        "one page per phone and batch, one for the shared files"
    );

    let mut paged = Vec::new();
    let mut before = None;
    for _ in 0..5 {
        let page = fetches::history(&c, tenant, ONE, before, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before = Some(page.last().unwrap().id);
        paged.extend(page);
    }
    let ports: Vec<i32> = paged.iter().map(|e| e.source_port).collect();
    assert_eq!(ports, [5, 4, 3, 2, 1], "newest first, each event once");
    assert!(
        paged.windows(2).all(|w| w[0].id > w[1].id),
        "ids fall as the history goes back: {:?}",
        paged.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert_eq!(paged[0].sha256.as_deref(), Some(&"05".repeat(32)[..]));
    assert_eq!(paged[4].file_name, format!("SIP{ONE}.cnf"));
    let all = fetches::history(&c, tenant, ONE, None, 50).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        paged.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    // A page wanted only in part after a newer one: just the events still wanted.
    let three = fetches::history(&c, tenant, ONE, None, 3).await.unwrap();
    assert_eq!(
        three.iter().map(|e| e.source_port).collect::<Vec<_>>(),
        [5, 4, 3]
    );
    // A cursor inside the first batch's page: only the events before it.
    let older = fetches::history(&c, tenant, ONE, Some(paged[3].id), 50)
        .await
        .unwrap();
    assert_eq!(older.iter().map(|e| e.source_port).collect::<Vec<_>>(), [1]);
    let two = fetches::history(&c, tenant, TWO, None, 50).await.unwrap();
    assert_eq!(two.iter().map(|e| e.source_port).collect::<Vec<_>>(), [200]);

    let (seen, _) = fetches::last_seen(&c, tenant, ONE).await.unwrap().unwrap();
    assert_eq!(seen.to_string(), "10.0.1.5");
    let view: Vec<(i64, Option<String>, i32)> = c
        .query(
            "SELECT id, phone_mac, source_port FROM fetch_events WHERE tenant_id = $1 ORDER BY source_port",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let ports: Vec<i32> = view.iter().map(|v| v.2).collect();
    assert_eq!(ports, [1, 2, 3, 4, 5, 100, 101, 200]);
    for e in &paged {
        assert!(
            view.contains(&(e.id, Some(ONE.to_owned()), e.source_port)),
            "the view shows event {} under the id the history gave it",
            e.id
        );
    }

    // Pages written by hand with arrays of different lengths, or none, are read as far as every array
    // goes: no panic, no error.
    c.batch_execute(&format!(
        "INSERT INTO fetch_event_pages (tenant_id, phone_mac, n, last_at, at, protocol, source, source_port,
                                        file_name, outcome, bytes, duration_us, sha256)
         VALUES ('{tenant}', '{TWO}', 2, now(), ARRAY[now(), now()], '{{tftp}}', '{{10.0.9.1,10.0.9.2}}',
                 '{{7,8}}', '{{a,b}}', '{{served,served}}', '{{1,1}}', '{{1,1}}', '{{NULL,NULL}}'),
                ('{tenant}', '{TWO}', 1, now(), '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}')"
    ))
    .await
    .unwrap();
    let two = fetches::history(&c, tenant, TWO, None, 50).await.unwrap();
    assert_eq!(
        two.iter().map(|e| e.source_port).collect::<Vec<_>>(),
        [7, 200]
    );
    assert!(fetches::last_seen(&c, tenant, TWO).await.unwrap().is_none());
}
