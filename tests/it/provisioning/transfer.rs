//! Firmware through every client: a ~5 MB pseudo-random image uploaded through the API, fetched with
//! curl (`--interface`, blksize 8192), tftp-hpa (plain RFC 1350), atftp (windowsize 16 with blksize
//! 4096, and blksize 8192 with windowsize 8), the suite's raw client (blksize 8192, windowsize 16, tsize)
//! and HTTP :6970, all compared by SHA-256.

use reqwest::StatusCode;

use super::clients;
use super::{http_files, put_global_file, sha256_hex, tenant_with_network, tftp, wait_snapshot};
use crate::helpers::TestApp;

const IMAGE: &str = "SIP42.9-4-2SR3-1S.sb2";
const SIZE: usize = 5 * 1024 * 1024 + 4321;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firmware_is_byte_exact_through_every_client() {
    let app = TestApp::spawn_full().await;
    // tftp-hpa and atftp cannot choose their source: 127.0.0.1 belongs to tenant "local".
    tenant_with_network(&app, "local", "127.0.0.0/24").await;
    tenant_with_network(&app, "alpha", "127.0.1.0/24").await;
    let image = super::prng(SIZE, 0x5eed);
    let want = sha256_hex(&image);
    put_global_file(&app, IMAGE, image.clone()).await;
    wait_snapshot(&app, "127.0.1.5", IMAGE, |b| b.len() == SIZE).await;
    let server = tftp(&app);

    let raw = async {
        clients::tftp_get(
            server,
            "127.0.1.5",
            IMAGE,
            &[("blksize", "8192"), ("windowsize", "16"), ("tsize", "0")],
        )
        .await
    };
    let curl = clients::curl_tftp(server, "127.0.1.6", IMAGE, &["--tftp-blksize", "8192"]);
    // atftp keeps its socket's default receive buffer (rmem_default, 208 KiB here): a window of 16
    // blocks of 8192 bytes overflows it on loopback, the window's tail is lost and every window then
    // waits for the server's retransmission timeout (~12 blocks a second: over a minute for 5 MB).
    // So atftp runs windowsize 16 with blksize 4096, and blksize 8192 with windowsize 8.
    let atftp = clients::atftp_get(
        server,
        IMAGE,
        &["blksize 4096", "windowsize 16", "tsize enable"],
    );
    let atftp8k = clients::atftp_get(server, IMAGE, &["blksize 8192", "windowsize 8"]);
    let hpa = clients::tftp_hpa_get(server, IMAGE);
    let http = async {
        let r = clients::http_from("127.0.1.7")
            .get(clients::file_url(http_files(&app), IMAGE))
            .send()
            .await
            .unwrap();
        (r.status(), r.bytes().await.unwrap())
    };
    let (raw, curl, atftp, atftp8k, hpa, http) = tokio::join!(raw, curl, atftp, atftp8k, hpa, http);

    let raw = raw.expect("raw client");
    assert_eq!(raw.oack_value("blksize"), Some("8192"));
    assert_eq!(raw.oack_value("windowsize"), Some("16"));
    assert_eq!(raw.oack_value("tsize"), Some(SIZE.to_string().as_str()));
    assert_eq!(raw.sizes.len(), SIZE / 8192 + 1, "block count");
    assert_eq!(
        sha256_hex(&raw.data),
        want,
        "raw client (blksize 8192, windowsize 16)"
    );
    assert!(curl.ok(), "curl: {:?}", curl.out);
    assert_eq!(sha256_hex(&curl.data), want, "curl (blksize 8192)");
    assert!(atftp.ok(), "atftp: {:?}", atftp.out);
    assert_eq!(
        sha256_hex(&atftp.data),
        want,
        "atftp (blksize 4096, windowsize 16)"
    );
    assert!(atftp8k.ok(), "atftp: {:?}", atftp8k.out);
    assert_eq!(
        sha256_hex(&atftp8k.data),
        want,
        "atftp (blksize 8192, windowsize 8)"
    );
    assert!(hpa.ok(), "tftp-hpa: {:?}", hpa.out);
    assert_eq!(sha256_hex(&hpa.data), want, "tftp-hpa (512-byte blocks)");
    assert_eq!(http.0, StatusCode::OK);
    assert_eq!(sha256_hex(&http.1), want, "HTTP :6970");

    // tftp-hpa's and atftp's source (127.0.0.1) decides the tenant like any other: a per-tenant file
    // of "local" is what they get, not alpha's.
    super::put_tenant_file(&app, "local", "site.cfg", b"local\n".to_vec()).await;
    super::put_tenant_file(&app, "alpha", "site.cfg", b"alpha\n".to_vec()).await;
    wait_snapshot(&app, "127.0.0.1", "site.cfg", |b| b == b"local\n").await;
    wait_snapshot(&app, "127.0.1.5", "site.cfg", |b| b == b"alpha\n").await;
    let hpa = clients::tftp_hpa_get(server, "site.cfg").await;
    assert_eq!(hpa.data, b"local\n", "{:?}", hpa.out);
    let at = clients::atftp_get(server, "site.cfg", &[]).await;
    assert_eq!(at.data, b"local\n", "{:?}", at.out);
    let cu = clients::curl_tftp(server, "127.0.1.5", "site.cfg", &[]).await;
    assert_eq!(cu.data, b"alpha\n", "{:?}", cu.out);
    // A miss: tftp-hpa and atftp report failure and write no file content.
    let hpa = clients::tftp_hpa_get(server, "no-such-image.sbn").await;
    assert!(hpa.data.is_empty(), "tftp-hpa got bytes for a miss");
    let at = clients::atftp_get(server, "no-such-image.sbn", &[]).await;
    assert!(!at.ok() && at.data.is_empty(), "atftp: {:?}", at.out);
}
