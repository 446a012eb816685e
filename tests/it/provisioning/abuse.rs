//! Abuse on the wire against the whole front end: a MAC enumeration sweep is answered only up to the
//! miss budget, then the source gets silence for the cool-down (even for files that exist), then service
//! again; names every phone asks for never spend the budget; garbage, responses and write requests sent
//! to the listening port never crash it and never earn a reply larger than the request.

use std::time::{Duration, Instant};

use dialtone::app::Parts;

use super::clients::{self, rrq, udp_from};
use super::{metric, metrics, put_phone, tenant_with_network, tftp, wait_snapshot};
use crate::helpers::TestApp;

/// Sends one packet and returns the first reply within `within`.
async fn reply_to(
    sock: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    packet: &[u8],
    within: Duration,
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    while sock.try_recv_from(&mut buf).is_ok() {}
    sock.send_to(packet, to).await.unwrap();
    match tokio::time::timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Sends `packets` from one socket as fast as the socket takes them, then counts the replies and their
/// largest size until the line has been quiet for `quiet`.
async fn blast(
    sock: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    packets: &[Vec<u8>],
    quiet: Duration,
) -> (usize, usize) {
    let mut buf = vec![0u8; 70_000];
    let mut replies = 0;
    let mut largest = 0;
    for p in packets {
        sock.send_to(p, to).await.unwrap();
        // Drain what is already there, without waiting, so the socket buffer never overflows.
        while let Ok((n, _)) = sock.try_recv_from(&mut buf) {
            replies += 1;
            largest = largest.max(n);
        }
    }
    while let Ok(Ok((n, _))) = tokio::time::timeout(quiet, sock.recv_from(&mut buf)).await {
        replies += 1;
        largest = largest.max(n);
    }
    (replies, largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enumeration_sweep_is_cut_off_at_the_budget_then_served_again_after_the_cooldown() {
    let budget = 50;
    let app = TestApp::spawn_with(Parts::ALL, |c| {
        c.tftp_miss_budget_per_minute = budget;
        c.tftp_cooldown_secs = 2;
    })
    .await;
    tenant_with_network(&app, "acme", "127.0.60.0/24").await;
    put_phone(&app, "acme", "0004F2000001", "7960", "1001").await;
    wait_snapshot(&app, "127.0.60.5", "SIP0004F2000001.cnf", |_| true).await;
    let server = tftp(&app);

    // Names every phone asks for (trust lists) never count: 3x the budget of them, all answered.
    let known_absent: Vec<Vec<u8>> = (0..budget * 3)
        .map(|i| rrq(&format!("CTLSEP0004F2{i:06X}.tlv"), "octet", &[]))
        .collect();
    let sock = udp_from("127.0.60.9").await;
    let (answered, _) = blast(&sock, server, &known_absent, Duration::from_millis(500)).await;
    assert_eq!(
        answered,
        (budget * 3) as usize,
        "CTL/ITL misses are answered and never spend the budget"
    );

    // A sweep of 10,000 MAC-shaped names from one source.
    let sweep: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| rrq(&format!("SEP0A{i:010X}.cnf.xml"), "octet", &[]))
        .collect();
    let sock = udp_from("127.0.60.7").await;
    let start = Instant::now();
    let (answered, largest) = blast(&sock, server, &sweep, Duration::from_millis(500)).await;
    println!(
        "sweep: 10000 requests in {:?}, {answered} answered",
        start.elapsed()
    );
    assert!(
        answered <= budget as usize,
        "{answered} answers to a sweep with a budget of {budget}"
    );
    assert!(
        answered >= (budget as usize) / 2,
        "the budget is actually served before the cut-off: {answered}"
    );
    assert!(largest <= 64, "only short error packets: {largest} bytes");

    // During the cool-down even an existing file gets nothing; another source is unaffected.
    let during = reply_to(
        &sock,
        server,
        &rrq("SIP0004F2000001.cnf", "octet", &[]),
        Duration::from_millis(400),
    )
    .await;
    assert!(during.is_none(), "silence during the cool-down");
    let other = clients::tftp_get(server, "127.0.60.8", "SIP0004F2000001.cnf", &[]).await;
    assert!(
        other.is_ok(),
        "another phone of the site is served meanwhile"
    );
    let m = metrics(&app).await;
    assert!(
        metric(&m, "dialtone_tftp_cooldowns_total").unwrap_or(0.0) >= 1.0,
        "the security event is counted"
    );
    assert!(
        metric(&m, "dialtone_tftp_dropped_total{reason=\"miss_budget\"}").unwrap_or(0.0) > 9000.0,
        "{m}"
    );

    // After the cool-down the same source is served again.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if clients::tftp_get(server, "127.0.60.7", "SIP0004F2000001.cnf", &[])
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the source was never served again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_responses_and_writes_at_the_listening_port_earn_nothing_larger_than_themselves() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "acme", "127.0.61.0/24").await;
    put_phone(&app, "acme", "0004F2000001", "7960", "1001").await;
    wait_snapshot(&app, "127.0.61.5", "SIP0004F2000001.cnf", |_| true).await;
    let server = tftp(&app);
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 1],
        vec![0, 1, b'a'],
        b"\x00\x01SIP0004F2000001.cnf".to_vec(),
        b"\x00\x01SIP0004F2000001.cnf\x00".to_vec(),
        b"\x00\x01SIP0004F2000001.cnf\x00mail\x00".to_vec(),
        b"\x00\x02x.cnf\x00octet\x00".to_vec(),
        b"\x00\x03\x00\x01hello".to_vec(),
        b"\x00\x04\x00\x01".to_vec(),
        b"\x00\x05\x00\x01oops\x00".to_vec(),
        b"\x00\x06blksize\x00512\x00".to_vec(),
        b"\x00\x07whatever".to_vec(),
        b"\xff\xff\xff\xff".to_vec(),
        vec![0xAA; 1400],
        vec![0; 65_000],
    ];
    for opt in [
        ("blksize", "0"),
        ("blksize", "7"),
        ("blksize", "65465"),
        ("windowsize", "0"),
        ("blksize", "abc"),
        ("tsize", "-1"),
        ("timeout", "0"),
    ] {
        packets.push(rrq("SIP0004F2000001.cnf", "octet", &[opt]));
    }
    packets.push(rrq("SIP0004F2000001.cnf", "netascii", &[]));
    // From outside every tenant network: silence, whatever the packet.
    let stranger = udp_from("127.0.62.9").await;
    for p in &packets {
        let reply = reply_to(&stranger, server, p, Duration::from_millis(150)).await;
        assert!(
            reply.is_none(),
            "a stranger got a reply to {:?}",
            &p[..p.len().min(24)]
        );
    }
    // From inside: at most an error or the file, never a reply to a response packet.
    let inside = udp_from("127.0.61.9").await;
    for p in &packets {
        let opcode = p.get(1).copied().unwrap_or(0);
        let reply = reply_to(&inside, server, p, Duration::from_millis(150)).await;
        if p.len() < 2 || p[0] != 0 || !(1..=2).contains(&opcode) {
            assert!(
                reply.is_none(),
                "a reply to a non-request {:?}",
                &p[..p.len().min(24)]
            );
        }
    }
    // Still serving afterwards, with every bad option ignored rather than fatal.
    let ok = clients::tftp_get(
        server,
        "127.0.61.5",
        "SIP0004F2000001.cnf",
        &[("blksize", "7")],
    )
    .await
    .expect("still serving");
    assert!(String::from_utf8_lossy(&ok.data).contains("line1_name"));
}
