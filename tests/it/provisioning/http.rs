//! HTTP :6970: GET and HEAD, Content-Length, content types, 404 on a miss, no redirects, and
//! `X-Forwarded-For` only from configured trusted proxies.

use std::time::Duration;

use dialtone::app::Parts;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::clients;
use super::{
    eventually, http_files, patch_settings, put_global_file, put_phone, sha256_hex,
    tenant_with_network, tftp, wait_snapshot,
};
use crate::helpers::TestApp;

const MAC: &str = "0004F2A1B2C3";
const MAC_42: &str = "0004F2420042";

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_and_head_with_lengths_types_and_misses() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    put_phone(&app, "alpha", MAC, "7960", "1001").await;
    put_phone(&app, "alpha", MAC_42, "7942", "1042").await;
    let firmware = super::prng(300_000, 9);
    put_global_file(&app, "P0S3-8-12-00.sb2", firmware.clone()).await;
    wait_snapshot(&app, "127.0.1.5", "P0S3-8-12-00.sb2", |_| true).await;
    wait_snapshot(&app, "127.0.1.5", &format!("SEP{MAC_42}.cnf.xml"), |_| true).await;

    let web = clients::http_from("127.0.1.5");
    let base = http_files(&app);
    for (name, ctype) in [
        ("SIPDefault.cnf".to_owned(), "text/plain"),
        (format!("SIP{MAC}.cnf"), "text/plain"),
        ("OS79XX.TXT".to_owned(), "text/plain"),
        ("RINGLIST.DAT".to_owned(), "text/plain"),
        (format!("SEP{MAC_42}.cnf.xml"), "text/xml"),
        (format!("SEP{MAC}.cnf.xml"), "text/xml"),
        ("XMLDefault.cnf.xml".to_owned(), "text/xml"),
        ("dialplan.xml".to_owned(), "text/xml"),
        ("syncinfo.xml".to_owned(), "text/xml"),
        ("P0S3-8-12-00.sb2".to_owned(), "application/octet-stream"),
    ] {
        let url = clients::file_url(base, &name);
        let r = web.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {name}");
        let ct = header(&r, "content-type").unwrap_or_default().to_owned();
        assert!(
            ct.starts_with(ctype),
            "GET {name}: content-type {ct}, want {ctype}"
        );
        let len: usize = header(&r, "content-length")
            .unwrap_or_else(|| panic!("GET {name}: no Content-Length"))
            .parse()
            .unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(len, body.len(), "GET {name}: Content-Length");
        assert!(!body.is_empty(), "GET {name}: empty");
        // Same namespace, same bytes as TFTP.
        let t = clients::tftp_get(tftp(&app), "127.0.1.5", &name, &[])
            .await
            .unwrap_or_else(|e| panic!("TFTP {name}: {e:?}"));
        assert_eq!(
            sha256_hex(&body),
            sha256_hex(&t.data),
            "{name}: HTTP vs TFTP"
        );
        if name.ends_with(".sb2") {
            assert!(body[..] == firmware[..], "firmware bytes differ");
        }
        // HEAD: same status and headers, no body.
        let h = web.head(&url).send().await.unwrap();
        assert_eq!(h.status(), StatusCode::OK, "HEAD {name}");
        assert_eq!(
            header(&h, "content-type").unwrap_or_default(),
            ct,
            "HEAD {name}"
        );
        assert_eq!(
            header(&h, "content-length").map(|v| v.parse::<usize>().unwrap()),
            Some(len),
            "HEAD {name}: Content-Length"
        );
        assert!(h.bytes().await.unwrap().is_empty(), "HEAD {name}: a body");
    }

    // Misses are 404 (HEAD too), never a redirect.
    for name in [
        "no-such-file.bin",
        "SIP0004F2FFFFFF.cnf",
        "CTLSEP0004F2A1B2C3.tlv",
        "ITLFile.tlv",
        "",
        "Desktops/",
        "sub/dir/",
    ] {
        let url = clients::file_url(base, name);
        for m in [Method::GET, Method::HEAD] {
            let r = web.request(m.clone(), &url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{m} /{name}");
            assert!(header(&r, "location").is_none(), "{m} /{name}: a Location");
        }
    }
    // Non-canonical spellings are served in place, not redirected to the canonical name.
    for name in ["/SIPDefault.cnf", "sipdefault.cnf", "./dialplan.xml"] {
        let r = web.get(clients::file_url(base, name)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "/{name}");
        assert!(header(&r, "location").is_none());
    }
    // Other methods are not served.
    let r = web
        .post(clients::file_url(base, "SIPDefault.cnf"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "POST answered {}", r.status());
    // Without configured proxies, X-Forwarded-For is ignored.
    let r = clients::http_from("127.0.3.5")
        .get(clients::file_url(base, "SIPDefault.cnf"))
        .header("X-Forwarded-For", "127.0.1.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn x_forwarded_for_is_honoured_only_from_trusted_proxies() {
    let app = TestApp::spawn_with(Parts::ALL, |c| {
        c.http_trusted_proxies = vec!["127.0.9.0/24".into()]
    })
    .await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    tenant_with_network(&app, "bravo", "127.0.2.0/24").await;
    patch_settings(
        &app,
        "bravo",
        json!({"time": {"ntp_server": "ntp.bravo.example"}}),
    )
    .await;
    put_phone(&app, "alpha", MAC, "7960", "1001").await;
    wait_snapshot(&app, "127.0.1.5", &format!("SIP{MAC}.cnf"), |_| true).await;
    wait_snapshot(&app, "127.0.2.5", "SIPDefault.cnf", |b| {
        String::from_utf8_lossy(b).contains("ntp.bravo.example")
    })
    .await;
    let base = http_files(&app);
    let get = |peer: &'static str, xff: Option<&'static str>, name: String| async move {
        let mut req = clients::http_from(peer).get(clients::file_url(base, &name));
        if let Some(x) = xff {
            req = req.header("X-Forwarded-For", x);
        }
        let r = req.send().await.unwrap();
        (
            r.status(),
            String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned(),
        )
    };
    let own = format!("SIP{MAC}.cnf");

    // From a trusted proxy: the right-most untrusted address decides the tenant.
    let (s, body) = get("127.0.9.5", Some("127.0.1.5"), own.clone()).await;
    assert_eq!(s, StatusCode::OK, "proxied request for alpha's phone");
    assert!(body.contains("line1_name: \"1001\""), "{body}");
    let (s, _) = get(
        "127.0.9.5",
        Some("203.0.113.9, 127.0.1.5, 127.0.9.7"),
        own.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "chain through two trusted proxies");
    let (s, body) = get("127.0.9.5", Some("127.0.2.5"), "SIPDefault.cnf".into()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("ntp.bravo.example"),
        "served as bravo: {body}"
    );
    // The proxy itself is in no tenant network.
    let (s, _) = get("127.0.9.5", None, "SIPDefault.cnf".into()).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the proxy without X-Forwarded-For"
    );
    // From anyone else the header is ignored.
    let (s, _) = get("127.0.3.5", Some("127.0.1.5"), own.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "untrusted peer in no network");
    let (s, _) = get("127.0.2.5", Some("127.0.1.5"), own.clone()).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "bravo's network claiming to be alpha"
    );
    let (s, body) = get("127.0.2.5", Some("127.0.1.5"), "SIPDefault.cnf".into()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("ntp.bravo.example"),
        "served as bravo: {body}"
    );

    // Fetch history records the forwarded client, not the proxy.
    let token = app.admin();
    let items = eventually(
        Duration::from_secs(5),
        "the proxied fetch in the history",
        || {
            let (app, token) = (&app, token.clone());
            async move {
                let r = app
                    .call(
                        Method::GET,
                        &format!("/v1/tenants/alpha/phones/{MAC}/fetches"),
                        Some(&token),
                        None,
                    )
                    .await;
                let items = r.body["items"].as_array().cloned().unwrap_or_default();
                (items.len() >= 2).then_some(items)
            }
        },
    )
    .await;
    for e in &items {
        assert_eq!(e["protocol"], "http");
        assert_eq!(e["source"], "127.0.1.5", "{e}");
        assert_eq!(e["outcome"], "served");
    }
}

/// Keep-alive and pipelining on one raw connection: a HEAD miss (no body), two pipelined GETs answered
/// in order, a request with a body answered and the connection closed, a garbage head answered 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_connection_carries_pipelined_requests_and_heads_without_bodies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    put_phone(&app, "alpha", MAC, "7960", "1001").await;
    let cnf = wait_snapshot(&app, "127.0.1.5", &format!("SIP{MAC}.cnf"), |_| true).await;
    let dialplan = wait_snapshot(&app, "127.0.1.5", "dialplan.xml", |_| true).await;
    let connect = || async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.1.5:0".parse().unwrap()).unwrap();
        s.connect(http_files(&app)).await.unwrap()
    };
    let mut c = connect().await;
    let request = format!(
        "HEAD /nothing-here.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /SIP{MAC}.cnf HTTP/1.1\r\nHost: t\r\n\r\nGET /dialplan.xml HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    c.write_all(request.as_bytes()).await.unwrap();
    let want_len = 3 * 60 + cnf.len() + dialplan.len();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while !got.ends_with(&dialplan) {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("answers within 5 s")
            .unwrap();
        assert!(n > 0, "closed early after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        assert!(
            got.len() < want_len + 1000,
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    let text = String::from_utf8(got).unwrap();
    let heads: Vec<&str> = text.matches("HTTP/1.1 ").collect();
    assert_eq!(heads.len(), 3, "{text}");
    let (head_miss, rest) = text.split_once("HTTP/1.1 200 OK").unwrap();
    assert!(
        head_miss.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{text}"
    );
    assert!(
        head_miss.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head_miss:?}"
    );
    let cnf_text = String::from_utf8(cnf.clone()).unwrap();
    let first_body_at = rest.find(&cnf_text).expect("SIP<MAC>.cnf first");
    assert!(
        rest[first_body_at..].contains("HTTP/1.1 200 OK"),
        "then dialplan.xml"
    );
    assert!(rest.contains(&format!("Content-Length: {}\r\n", cnf.len())));
    // A request with a body is answered, then the connection is closed (the body is never parsed as a
    // request).
    c.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s")
        .unwrap();
    let rest = String::from_utf8(rest).unwrap();
    assert!(
        rest.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{rest}"
    );
    assert!(rest.contains("Allow: GET, HEAD\r\n"));
    assert_eq!(rest.matches("HTTP/1.1").count(), 1, "{rest}");
    // Garbage gets 400 and a closed connection.
    let mut c = connect().await;
    c.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer))
        .await
        .expect("closed within 5 s")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
}

/// A head sent in pieces, longer than the server's first read buffer, is read across several events and
/// answered once it is whole; the connection then carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_sent_in_pieces_is_answered_once_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    put_phone(&app, "alpha", MAC, "7960", "1001").await;
    let cnf = wait_snapshot(&app, "127.0.1.5", &format!("SIP{MAC}.cnf"), |_| true).await;
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.1.5:0".parse().unwrap()).unwrap();
    let mut c = s.connect(http_files(&app)).await.unwrap();
    let pad = "p".repeat(5000);
    let head = format!("GET /SIP{MAC}.cnf HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n");
    let pieces = [&head[..10], &head[10..3000], &head[3000..head.len() - 1]];
    let mut buf = [0u8; 8192];
    for piece in pieces {
        c.write_all(piece.as_bytes()).await.unwrap();
        // Nothing is answered before the head is whole.
        let early = tokio::time::timeout(Duration::from_millis(150), c.read(&mut buf)).await;
        assert!(early.is_err(), "answered a partial head: {early:?}");
    }
    c.write_all(b"\n").await.unwrap();
    for round in 0..2 {
        let mut got = Vec::new();
        while !got.ends_with(&cnf) {
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
                .await
                .expect("answers within 5 s")
                .unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
        if round == 0 {
            // The same connection carries the next request, sent whole.
            c.write_all(head.as_bytes()).await.unwrap();
        }
    }
}

/// On shutdown an idle keep-alive connection is closed at once and no new one is accepted, while an
/// answer still being written to a slow reader is written to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_idle_connections_and_finishes_answers_being_written() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const IMAGE: &str = "SIP42.9-4-2SR3-1S.sb2";
    const SIZE: usize = 8 * 1024 * 1024 + 17;
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    let image = super::prng(SIZE, 0xb0d1);
    put_global_file(&app, IMAGE, image.clone()).await;
    let dialplan = wait_snapshot(&app, "127.0.1.5", "dialplan.xml", |_| true).await;
    wait_snapshot(&app, "127.0.1.5", IMAGE, |b| b.len() == SIZE).await;
    let server = http_files(&app);
    let connect = |rcvbuf: Option<u32>| async move {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = rcvbuf {
            s.set_recv_buffer_size(n).unwrap();
        }
        s.bind("127.0.1.5:0".parse().unwrap()).unwrap();
        s.connect(server).await
    };
    let mut buf = vec![0u8; 64 * 1024];
    // An idle keep-alive connection.
    let mut idle = connect(None).await.unwrap();
    idle.write_all(b"GET /dialplan.xml HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(&dialplan) {
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // A slow reader: a small receive buffer, and it reads one piece before the shutdown.
    let mut slow = connect(Some(64 * 1024)).await.unwrap();
    slow.write_all(format!("GET /{IMAGE} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let n = slow.read(&mut buf).await.unwrap();
    answer.extend_from_slice(&buf[..n]);
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.begin_shutdown();
    let closed = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf))
        .await
        .expect("the idle connection is closed within 3 s");
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "idle connection got {closed:?}"
    );
    let mut refused = false;
    for _ in 0..30 {
        if connect(None).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "new connections are still accepted after shutdown");

    tokio::time::timeout(Duration::from_secs(8), slow.read_to_end(&mut answer))
        .await
        .expect("the answer is finished and the connection closed within 8 s")
        .unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&answer[..split]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {SIZE}\r\n")),
        "{head}"
    );
    assert_eq!(answer.len() - split, SIZE, "the whole image, then the end");
    assert_eq!(sha256_hex(&answer[split..]), sha256_hex(&image));
}

/// A connection that stalls in the middle of a head is closed after the read timeout (10 s), without an
/// answer; the server goes on answering others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_stalled_in_a_head_is_closed_after_the_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    wait_snapshot(&app, "127.0.1.5", "dialplan.xml", |_| true).await;
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.1.5:0".parse().unwrap()).unwrap();
    let mut c = s.connect(http_files(&app)).await.unwrap();
    c.write_all(b"GET /dialplan.xml HT").await.unwrap();
    let started = std::time::Instant::now();
    let r = clients::http_from("127.0.1.6")
        .get(clients::file_url(http_files(&app), "dialplan.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "others are answered meanwhile");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf))
        .await
        .expect("closed within 20 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer to a partial head");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
}
