//! Remote resync: `POST /v1/tenants/{t}/phones/{mac}/resync` and `POST /v1/tenants/{t}/resync` send a SIP
//! `NOTIFY` (`Event: check-sync`) to each phone's last-seen address. The phones are played by UDP sockets
//! bound to the address the phone fetched its files from (any 127.0.0.0/8 address is local on Linux), and,
//! where installed, by `sipp` running a tiny UAS scenario.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::UdpSocket;

use crate::helpers::TestApp;
use crate::provisioning::clients;
use crate::provisioning::{eventually, put_phone, tenant_with_network, tftp, wait_snapshot};

const T: &str = "resync";
const NET: &str = "127.0.40.0/24";

/// Value of header `name` (first occurrence) in a SIP message.
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

/// A response to `req` with `status`, copying Via, From, To, Call-ID and CSeq as a UAS must.
fn reply(req: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(req, h).unwrap_or_else(|| panic!("no {h} in {req}"));
        let v = if h == "To" {
            format!("{v};tag=phone1")
        } else {
            v.to_owned()
        };
        out.push_str(&format!("{h}: {v}\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Receives one datagram (within 5 s), answers it with `status` (unless `None`), returns it and its source.
async fn answer_one(phone: &UdpSocket, status: Option<&str>) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), phone.recv_from(&mut buf))
        .await
        .expect("a NOTIFY within 5 s")
        .unwrap();
    let req = String::from_utf8(buf[..n].to_vec()).expect("UTF-8");
    if let Some(s) = status {
        phone
            .send_to(reply(&req, s).as_bytes(), from)
            .await
            .unwrap();
    }
    (req, from)
}

/// Makes phone `mac` (a 7960) fetch its `SIP<mac>.cnf` over TFTP from `src`, and waits until the fetch
/// event is stored.
async fn fetch_from(app: &TestApp, src: &str, mac: &str) {
    let name = format!("SIP{mac}.cnf");
    wait_snapshot(app, src, &name, |_| true).await;
    clients::tftp_get(tftp(app), src, &name, &[])
        .await
        .unwrap_or_else(|e| panic!("TFTP fetch of {name} from {src}: {e:?}"));
    let path = format!("/v1/tenants/{T}/phones/{mac}/fetches");
    eventually(
        Duration::from_secs(5),
        &format!("a fetch event of {mac}"),
        || {
            let path = path.clone();
            async move {
                let r = app.call(Method::GET, &path, Some(&app.admin()), None).await;
                (r.body["items"].as_array().is_some_and(|a| !a.is_empty())).then_some(())
            }
        },
    )
    .await;
}

async fn resync_phone(app: &TestApp, mac: &str, query: &str, token: &str) -> crate::helpers::Resp {
    app.call(
        Method::POST,
        &format!("/v1/tenants/{T}/phones/{mac}/resync{query}"),
        Some(token),
        None,
    )
    .await
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String, Value)> {
    let r = app
        .call(
            Method::GET,
            &format!("/v1/audit-events?tenant={T}"),
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
                e["detail"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resync_sends_check_sync_to_the_last_seen_address() {
    const SEEN: &str = "0004F2E00001";
    const NEVER: &str = "0004F2E00002";
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, T, NET).await;
    tenant_with_network(&app, "other", "127.0.41.0/24").await;
    put_phone(&app, T, SEEN, "7960", "1001").await;
    put_phone(&app, T, NEVER, "7960", "1002").await;
    fetch_from(&app, "127.0.40.7", SEEN).await;

    let phone = UdpSocket::bind("127.0.40.7:0").await.unwrap();
    let port = phone.local_addr().unwrap().port();
    let admin = app.tenant_admin(T);
    let (platform, q) = (app.admin(), format!("?port={port}"));
    let (api, (req, from)) = tokio::join!(
        resync_phone(&app, "00:04:f2:e0:00:01", &q, &admin),
        answer_one(&phone, Some("200 OK"))
    );
    println!("NOTIFY as received from {from}:\n{req}");
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert_eq!(api.body["mac"], SEEN);
    assert_eq!(api.body["target"], format!("127.0.40.7:{port}"));
    assert_eq!(api.body["sent"], true);
    assert_eq!(api.body["response"], "200 OK", "{}", api.body);
    assert!(api.body["note"].is_null(), "{}", api.body);

    // The request line and headers, exactly.
    let first = req.split("\r\n").next().unwrap();
    assert_eq!(first, format!("NOTIFY sip:1001@127.0.40.7:{port} SIP/2.0"));
    assert!(req.ends_with("\r\n\r\n"), "{req:?}");
    let us = from.ip().to_string();
    let via = header(&req, "Via").unwrap();
    let via_rest = via
        .strip_prefix(&format!("SIP/2.0/UDP {from};branch=z9hG4bK"))
        .unwrap_or_else(|| panic!("Via {via} names the sending socket {from}"));
    assert!(
        via_rest.ends_with(";rport") && via_rest.len() > ";rport".len() + 8,
        "{via}"
    );
    assert_eq!(header(&req, "Max-Forwards"), Some("70"));
    let from_h = header(&req, "From").unwrap();
    assert!(
        from_h.starts_with(&format!("<sip:dialtone@{us}>;tag=")) && from_h.len() > 30,
        "{from_h}"
    );
    assert_eq!(header(&req, "To"), Some("<sip:1001@127.0.40.7>"));
    let call_id = header(&req, "Call-ID").unwrap();
    assert!(
        call_id.ends_with(&format!("@{us}")) && call_id.len() > 20,
        "{call_id}"
    );
    assert_eq!(header(&req, "CSeq"), Some("1 NOTIFY"));
    assert_eq!(header(&req, "Event"), Some("check-sync"));
    assert_eq!(header(&req, "Subscription-State"), Some("terminated"));
    assert_eq!(
        header(&req, "Contact"),
        Some(format!("<sip:dialtone@{from}>").as_str())
    );
    assert_eq!(header(&req, "User-Agent"), Some("dialtone"));
    assert_eq!(header(&req, "Content-Length"), Some("0"));

    // A phone that challenges: reported as "sent, asked for authentication", not retried.
    let (api, (req2, _)) = tokio::join!(
        resync_phone(&app, SEEN, &q, &platform),
        answer_one(&phone, Some("401 Unauthorized"))
    );
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert_eq!(api.body["sent"], true);
    assert_eq!(api.body["response"], "401 Unauthorized");
    assert!(
        api.body["note"]
            .as_str()
            .unwrap()
            .contains("authentication"),
        "{}",
        api.body
    );
    assert_ne!(
        header(&req2, "Call-ID"),
        Some(call_id),
        "a fresh Call-ID each time"
    );
    let mut buf = [0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), phone.recv_from(&mut buf))
            .await
            .is_err(),
        "no retry after a challenge"
    );

    // A phone that does not answer: sent, no response.
    let silent = resync_phone(&app, SEEN, &format!("?port={port}"), &admin).await;
    assert_eq!(silent.status, StatusCode::OK, "{}", silent.text);
    assert_eq!(
        (silent.body["sent"].clone(), silent.body["response"].clone()),
        (Value::Bool(true), Value::Null)
    );
    // Default port: 5060.
    let default = resync_phone(&app, SEEN, "", &admin).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.text);
    assert_eq!(default.body["target"], "127.0.40.7:5060");

    // Never seen: 409 with a clear message.
    let r = resync_phone(&app, NEVER, &format!("?port={port}"), &admin).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(
        r.headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains(NEVER)
            && detail.contains("never fetched")
            && detail.contains("cannot be reached"),
        "{detail}"
    );
    // Viewers, other tenants, no token, unknown phone, bad port, bad MAC.
    for (token, want) in [
        (app.viewer(T), StatusCode::FORBIDDEN),
        (app.tenant_admin("other"), StatusCode::FORBIDDEN),
    ] {
        let r = resync_phone(&app, SEEN, &format!("?port={port}"), &token).await;
        assert_eq!(r.status, want, "{}", r.text);
    }
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{T}/phones/{SEEN}/resync"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = resync_phone(&app, "0004F2E0FFFF", "", &admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for q in ["?port=0", "?port=65536", "?port=-1"] {
        let r = resync_phone(&app, SEEN, q, &admin).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["path"], "port");
    }
    let r = resync_phone(&app, "not-a-mac", "", &admin).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // Nothing else reached the phone: forbidden and failed calls send nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), phone.recv_from(&mut buf))
            .await
            .is_ok(),
        "the unanswered NOTIFY is still queued"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), phone.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing more"
    );

    // Audited: every sent resync, with its target.
    let audit = audit_actions(&app).await;
    let resyncs: Vec<_> = audit
        .iter()
        .filter(|(a, _, _)| a == "phone.resync")
        .collect();
    assert_eq!(resyncs.len(), 4, "{audit:?}");
    assert!(resyncs.iter().all(|(_, t, _)| t == SEEN));
    assert!(resyncs
        .iter()
        .any(|(_, _, d)| d["target"] == format!("127.0.40.7:{port}")));
}

/// Collects datagrams on `sock` until `want` arrived (answering each 200 OK) or 15 s passed.
async fn collect(sock: Arc<UdpSocket>, want: usize) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut buf = vec![0u8; 65536];
    while got.len() < want {
        let Ok(r) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await else {
            break;
        };
        let (n, from) = r.unwrap();
        let req = String::from_utf8(buf[..n].to_vec()).unwrap();
        sock.send_to(reply(&req, "200 OK").as_bytes(), from)
            .await
            .unwrap();
        got.push((Instant::now(), req));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_wide_resync_is_rate_limited_and_reports_never_seen_phones() {
    let app =
        TestApp::spawn_with(dialtone::app::Parts::ALL, |c| c.resync_rate_per_second = 5).await;
    tenant_with_network(&app, T, NET).await;
    // Six seen phones (three behind each of two addresses), one never seen.
    let macs: Vec<String> = (1..=7).map(|i| format!("0004F2E100{i:02}")).collect();
    for (i, mac) in macs.iter().enumerate() {
        put_phone(&app, T, mac, "7960", &format!("20{i:02}")).await;
    }
    for (i, mac) in macs[..6].iter().enumerate() {
        let src = if i % 2 == 0 {
            "127.0.40.7"
        } else {
            "127.0.40.9"
        };
        fetch_from(&app, src, mac).await;
    }
    let a = Arc::new(UdpSocket::bind("127.0.40.7:0").await.unwrap());
    let port = a.local_addr().unwrap().port();
    let b = Arc::new(
        UdpSocket::bind(("127.0.40.9", port))
            .await
            .expect("the same port on the second address"),
    );
    let (ca, cb) = (
        tokio::spawn(collect(a.clone(), 3)),
        tokio::spawn(collect(b.clone(), 3)),
    );

    // Viewers may not.
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{T}/resync?port={port}"),
            Some(&app.viewer(T)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let started = Instant::now();
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{T}/resync?port={port}"),
            Some(&app.tenant_admin(T)),
            None,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (ga, gb) = (ca.await.unwrap(), cb.await.unwrap());
    let first = ga.iter().chain(&gb).map(|(t, _)| *t).min().unwrap();
    let last = ga.iter().chain(&gb).map(|(t, _)| *t).max().unwrap();
    println!(
        "tenant resync at 5/s: 6 NOTIFYs spread over {:?} (first to last arrival); the API call took {took:?}",
        last - first
    );
    let s = &r.body;
    assert_eq!(s["sent"], 6, "{s}");
    assert_eq!(s["never_seen"], 1, "{s}");
    assert_eq!(s["answered"], 6, "{s}");
    assert_eq!(s["skipped"], 0, "{s}");
    assert_eq!(s["truncated"], false, "{s}");
    let results = s["results"].as_array().unwrap();
    let listed: Vec<&str> = results.iter().map(|x| x["mac"].as_str().unwrap()).collect();
    assert_eq!(listed, macs.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, x) in results.iter().enumerate() {
        if i < 6 {
            let ip = if i % 2 == 0 {
                "127.0.40.7"
            } else {
                "127.0.40.9"
            };
            assert_eq!(x["target"], format!("{ip}:{port}"), "{x}");
            assert_eq!(
                (x["sent"].as_bool(), x["response"].as_str()),
                (Some(true), Some("200 OK")),
                "{x}"
            );
        } else {
            assert!(x["target"].is_null() && x["sent"] == false, "{x}");
            assert!(x["note"].as_str().unwrap().contains("never fetched"), "{x}");
        }
    }
    // Each address got the NOTIFYs of its own phones, and the sends went out in MAC order, one at a time.
    let users = |g: &[(Instant, String)]| -> Vec<String> {
        g.iter()
            .map(|(_, m)| m.split(['@', ':']).nth(1).unwrap().to_owned())
            .collect()
    };
    assert_eq!(users(&ga), ["2000", "2002", "2004"]);
    assert_eq!(users(&gb), ["2001", "2003", "2005"]);
    let mut all: Vec<(Instant, String)> = ga.iter().chain(&gb).cloned().collect();
    all.sort_by_key(|(t, _)| *t);
    assert_eq!(
        users(&all),
        ["2000", "2001", "2002", "2003", "2004", "2005"],
        "arrival order follows MAC order"
    );
    for (_, m) in &all {
        assert_eq!(header(m, "Event"), Some("check-sync"));
    }
    let audit = audit_actions(&app).await;
    let t = audit
        .iter()
        .find(|(a, _, _)| a == "tenant.resync")
        .expect("tenant.resync audited");
    assert_eq!(t.1, T);
    assert_eq!(
        (t.2["phones"].as_i64(), t.2["reachable"].as_i64()),
        (Some(7), Some(6))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sipp_as_the_phone_accepts_the_notify() {
    if std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_err()
    {
        println!("SKIP sipp_as_the_phone_accepts_the_notify: sipp is not installed (apt-get install -y sip-tester)");
        return;
    }
    const MAC: &str = "0004F2E20001";
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, T, NET).await;
    put_phone(&app, T, MAC, "7960", "3001").await;
    fetch_from(&app, "127.0.40.8", MAC).await;
    let port = {
        let s = std::net::UdpSocket::bind("127.0.40.8:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sipp/notify_uas.xml"
    );
    let workdir = clients::tmpdir("sipp");
    let port_s = port.to_string();
    let sipp = tokio::process::Command::new("sipp")
        .args([
            "-sf",
            scenario,
            "-i",
            "127.0.40.8",
            "-p",
            &port_s,
            "-m",
            "1",
            "-timeout",
            "10s",
            "-timeout_error",
            "-nostdin",
        ])
        .current_dir(&workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sipp");
    // sipp needs a moment to bind: until then the NOTIFY meets "port unreachable"; resend until answered.
    let admin = app.tenant_admin(T);
    let body = eventually(Duration::from_secs(8), "sipp to answer the NOTIFY", || {
        let admin = admin.clone();
        let app = &app;
        let port_s = port_s.clone();
        async move {
            let r = resync_phone(app, MAC, &format!("?port={port_s}"), &admin).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            if r.body["response"].is_null() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            } else {
                Some(r.body)
            }
        }
    })
    .await;
    assert_eq!(body["response"], "200 OK", "{body}");
    assert_eq!(body["target"], format!("127.0.40.8:{port}"));
    let out = tokio::time::timeout(Duration::from_secs(15), sipp.wait_with_output())
        .await
        .expect("sipp ends after one call")
        .unwrap();
    assert!(
        out.status.success(),
        "sipp failed ({}): the NOTIFY did not match the scenario\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
