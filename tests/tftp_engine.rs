//! Integration tests of the TFTP engine: real clients (curl, tftp-hpa, atftp) and a raw-UDP test client
//! against a `TftpServer` backed by an in-memory `FileSource` stub.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialtone::tftp::{
    FileSource, Lookup, Outcome, TftpConfig, TftpServer, TftpStats, TftpStatsSnapshot,
    TransferReport,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------------
// Fixtures

/// Source IPs for which the stub answers `Silent`.
const SILENT_IP: &str = "127.0.0.10";

/// In-memory `FileSource`: exact names from a map; `whoami.cfg` returns the peer's IP; CTLSEP*/ITL*/
/// *.sgn are free misses; `refused*` is refused; `SILENT_IP` gets silence; anything else is a counting
/// miss.
struct MemSource {
    files: HashMap<String, Bytes>,
    silent: IpAddr,
    reports: Mutex<Vec<TransferReport>>,
    lookups: AtomicUsize,
}

impl MemSource {
    fn new(files: Vec<(&str, Vec<u8>)>) -> Arc<Self> {
        Arc::new(MemSource {
            files: files
                .into_iter()
                .map(|(n, d)| (n.to_owned(), Bytes::from(d)))
                .collect(),
            silent: SILENT_IP.parse().unwrap(),
            reports: Mutex::new(Vec::new()),
            lookups: AtomicUsize::new(0),
        })
    }

    fn reports(&self) -> Vec<TransferReport> {
        self.reports.lock().unwrap().clone()
    }

    fn report_for(&self, name: &str) -> Option<TransferReport> {
        self.reports().into_iter().find(|r| r.name == name)
    }
}

impl FileSource for MemSource {
    fn lookup(&self, peer: SocketAddr, name: &str) -> Lookup {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if peer.ip() == self.silent {
            return Lookup::Silent;
        }
        if name == "whoami.cfg" {
            return Lookup::Serve(Bytes::from(peer.ip().to_string()));
        }
        if let Some(d) = self.files.get(name) {
            return Lookup::Serve(d.clone());
        }
        if name.starts_with("CTLSEP") || name.starts_with("ITL") || name.ends_with(".sgn") {
            return Lookup::NotFound {
                counts_as_miss: false,
            };
        }
        if name.starts_with("refused") {
            return Lookup::Refused;
        }
        Lookup::NotFound {
            counts_as_miss: true,
        }
    }

    fn report(&self, report: TransferReport) {
        self.reports.lock().unwrap().push(report);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn prng(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

const TEXT: &[u8] = b"line one\nline two\r\nbare\rcr\n";
const TEXT_NETASCII: &[u8] = b"line one\r\nline two\r\0\r\nbare\r\0cr\r\n";

fn standard_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("small.bin", prng(1500, 1)),
        ("100k.bin", prng(100 * 1024, 2)),
        ("5m.bin", prng(5_000_000, 3)),
        ("1024.bin", prng(1024, 4)),
        ("2936.bin", prng(2936, 5)),
        ("16384.bin", prng(16384, 6)),
        ("empty.bin", Vec::new()),
        ("text.txt", TEXT.to_vec()),
        ("rollover.bin", prng(600_000, 7)),
    ]
}

fn file(name: &str) -> Vec<u8> {
    standard_files()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

struct Srv {
    addr: SocketAddr,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    stats: Arc<TftpStats>,
    src: Arc<MemSource>,
}

impl Srv {
    fn stats(&self) -> TftpStatsSnapshot {
        self.stats.snapshot()
    }

    /// Cancels and waits (bounded) for `run_until_stopped` to return.
    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

fn test_config() -> TftpConfig {
    TftpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(1),
        ..TftpConfig::default()
    }
}

async fn start_with(config: TftpConfig, files: Vec<(&str, Vec<u8>)>) -> Srv {
    let src = MemSource::new(files);
    let server = TftpServer::build(config, src.clone()).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "local_addr must report the real port");
    let stats = server.stats();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(server.run_until_stopped(stop.clone()));
    Srv {
        addr,
        stop,
        handle,
        stats,
        src,
    }
}

async fn start(tweak: impl FnOnce(&mut TftpConfig)) -> Srv {
    let mut c = test_config();
    tweak(&mut c);
    start_with(c, standard_files()).await
}

/// Polls `cond` until it holds or `within` passes, then panics with `what`.
async fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The report of a transfer the client saw through: the server knows it is served only once the client's
/// final ACK arrives, and that ACK is the last thing the client sends, so the report may trail the client
/// by a moment. (Refusals and misses are recorded before the answer leaves, so no wait is needed there.)
async fn report_after_client(srv: &Srv, name: &str) -> TransferReport {
    wait_for(Duration::from_secs(5), "the transfer's report", || {
        srv.src.report_for(name).is_some()
    })
    .await;
    srv.src.report_for(name).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Raw test client (its own byte handling, independent of the engine's codec)

#[path = "support/tftp_wire.rs"]
mod wire;
use wire::{ack, be16, parse_pairs, request as rrq, udp_from as client};

/// Receives one datagram or `None` after `within`.
async fn recv(s: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(within, s.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            buf.truncate(n);
            Some((buf, from))
        }
        Ok(Err(e)) => panic!("recv error: {e}"),
        Err(_) => None,
    }
}

#[derive(Debug)]
struct Fetched {
    data: Vec<u8>,
    oack: Option<Vec<(String, String)>>,
    /// Payload size of every in-order DATA block.
    sizes: Vec<usize>,
}

#[derive(Debug, PartialEq)]
enum FetchError {
    Tftp(u16, String),
    Timeout,
}

fn oack_value<'a>(f: &'a Fetched, k: &str) -> Option<&'a str> {
    f.oack
        .as_ref()?
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

/// A complete read: RRQ, optional OACK, DATA with ACK per window (RFC 7440 client side: ACK the last
/// in-order block when the window is full, on the final block, or on a gap).
async fn fetch(
    c: &UdpSocket,
    server: SocketAddr,
    name: &str,
    mode: &str,
    opts: &[(&str, &str)],
) -> Result<Fetched, FetchError> {
    let req = rrq(1, name, mode, opts);
    c.send_to(&req, server).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (mut blksize, mut window) = (512usize, 1usize);
    let mut tid: Option<SocketAddr> = None;
    let mut f = Fetched {
        data: Vec::new(),
        oack: None,
        sizes: Vec::new(),
    };
    let mut expected: u16 = 1;
    let mut in_window = 0usize;
    let mut last_ack: Option<[u8; 4]> = None;
    let mut timeouts = 0;
    loop {
        let (n, from) =
            match tokio::time::timeout(Duration::from_secs(2), c.recv_from(&mut buf)).await {
                Ok(r) => r.unwrap(),
                Err(_) => {
                    timeouts += 1;
                    if timeouts > 5 {
                        return Err(FetchError::Timeout);
                    }
                    match (last_ack, tid) {
                        (Some(a), Some(t)) => c.send_to(&a, t).await.unwrap(),
                        _ => c.send_to(&req, server).await.unwrap(),
                    };
                    continue;
                }
            };
        match tid {
            Some(t) if t != from => continue,
            Some(_) => {}
            None => tid = Some(from),
        }
        let p = &buf[..n];
        let send_ack = |b: u16| {
            let a = ack(b);
            async move {
                c.send_to(&a, from).await.unwrap();
                a
            }
        };
        match be16(p) {
            6 => {
                if f.oack.is_some() || !f.sizes.is_empty() {
                    continue;
                }
                let pairs = parse_pairs(&p[2..]);
                for (k, v) in &pairs {
                    match k.to_ascii_lowercase().as_str() {
                        "blksize" => blksize = v.parse().unwrap(),
                        "windowsize" => window = v.parse().unwrap(),
                        _ => {}
                    }
                }
                f.oack = Some(pairs);
                last_ack = Some(send_ack(0).await);
            }
            5 => {
                let msg = String::from_utf8_lossy(&p[4..])
                    .trim_end_matches('\0')
                    .to_owned();
                return Err(FetchError::Tftp(be16(&p[2..]), msg));
            }
            3 => {
                let block = be16(&p[2..]);
                let data = &p[4..];
                if block == expected {
                    f.data.extend_from_slice(data);
                    f.sizes.push(data.len());
                    expected = expected.wrapping_add(1);
                    in_window += 1;
                    if data.len() < blksize {
                        send_ack(block).await;
                        return Ok(f);
                    }
                    if in_window >= window {
                        last_ack = Some(send_ack(block).await);
                        in_window = 0;
                    }
                } else {
                    last_ack = Some(send_ack(expected.wrapping_sub(1)).await);
                    in_window = 0;
                }
            }
            _ => {}
        }
    }
}

async fn fetch_ok(srv: &Srv, name: &str, mode: &str, opts: &[(&str, &str)]) -> Fetched {
    let c = client("127.0.0.1").await;
    fetch(&c, srv.addr, name, mode, opts)
        .await
        .unwrap_or_else(|e| panic!("fetch {name} {opts:?}: {e:?}"))
}

// ---------------------------------------------------------------------------------------------------
// Real clients

fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "dialtone-tftp-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a client binary; a missing binary fails the test (CI installs them).
async fn run_tool(bin: &str, args: &[&str]) -> std::process::Output {
    let fut = tokio::process::Command::new(bin)
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{bin}` is not installed; these tests need it (apt-get install -y curl tftp-hpa atftp)"
        ),
        Ok(Err(e)) => panic!("cannot run {bin}: {e}"),
        Err(_) => panic!("{bin} {args:?} did not finish within 30 s"),
    }
}

fn curl_url(srv: &Srv, name: &str) -> String {
    format!("tftp://{}/{}", srv.addr, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn curl_fetches_files_byte_exact() {
    let srv = start(|_| {}).await;
    let dir = tmpdir("curl");
    for (name, extra) in [
        ("small.bin", None),
        ("100k.bin", None),
        ("100k.bin", Some("1468")),
        ("100k.bin", Some("8192")),
        ("1024.bin", Some("512")),
        // curl 7.88 fails on an empty file when it negotiates options (also against dnsmasq:
        // "getpeername() failed"), so the empty file is fetched without options.
        ("empty.bin", Some("no-options")),
    ] {
        let out = dir.join("out");
        let out_s = out.to_str().unwrap();
        let url = curl_url(&srv, name);
        let mut args = vec!["-sS", "--max-time", "20", "-o", out_s, &url];
        match extra {
            Some("no-options") => args.push("--tftp-no-options"),
            Some(b) => args.extend(["--tftp-blksize", b]),
            None => {}
        }
        let o = run_tool("curl", &args).await;
        assert!(o.status.success(), "curl {args:?}: {o:?}");
        assert!(
            std::fs::read(&out).unwrap() == file(name),
            "{name} {extra:?} differs"
        );
    }
    let r = report_after_client(&srv, "100k.bin").await;
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(r.bytes, 100 * 1024);
    assert_eq!(r.peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn curl_source_address_reaches_lookup_and_errors_map() {
    let srv = start(|_| {}).await;
    let dir = tmpdir("curl-src");
    let out = dir.join("out");
    let out_s = out.to_str().unwrap();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let url = curl_url(&srv, "whoami.cfg");
        let o = run_tool(
            "curl",
            &[
                "-sS",
                "--max-time",
                "20",
                "--interface",
                ip,
                "-o",
                out_s,
                &url,
            ],
        )
        .await;
        assert!(o.status.success(), "{o:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), ip);
    }
    // Unknown file: curl reports "TFTP: File Not Found" (CURLE_TFTP_NOTFOUND = 68).
    let url = curl_url(&srv, "nope.cfg");
    let o = run_tool("curl", &["-sS", "--max-time", "20", "-o", out_s, &url]).await;
    assert_eq!(o.status.code(), Some(68), "{o:?}");
    // Upload: the write request is refused with ERROR 2 (CURLE_TFTP_PERM = 69).
    let up = dir.join("up");
    std::fs::write(&up, b"x").unwrap();
    let url = curl_url(&srv, "up.cfg");
    let o = run_tool(
        "curl",
        &["-sS", "--max-time", "20", "-T", up.to_str().unwrap(), &url],
    )
    .await;
    assert_eq!(o.status.code(), Some(69), "{o:?}");
    assert_eq!(srv.stats().refused, 1);
    assert_eq!(
        srv.src.report_for("up.cfg").unwrap().outcome,
        Outcome::Refused
    );
    std::fs::remove_dir_all(dir).unwrap();
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tftp_hpa_binary_and_netascii() {
    let srv = start(|_| {}).await;
    let dir = tmpdir("hpa");
    let port = srv.addr.port().to_string();
    for name in ["100k.bin", "small.bin", "16384.bin"] {
        let out = dir.join(name);
        let out_s = out.to_str().unwrap();
        let o = run_tool(
            "tftp",
            &["127.0.0.1", &port, "-m", "binary", "-c", "get", name, out_s],
        )
        .await;
        assert!(o.status.success(), "{o:?}");
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(got == file(name), "{name} differs ({} bytes)", got.len());
    }
    // netascii: the client converts CR LF back to LF and CR NUL back to CR, so the round trip is exact.
    let out = dir.join("text.txt");
    let out_s = out.to_str().unwrap();
    let o = run_tool(
        "tftp",
        &[
            "127.0.0.1",
            &port,
            "-m",
            "ascii",
            "-c",
            "get",
            "text.txt",
            out_s,
        ],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(std::fs::read(&out).unwrap(), TEXT);
    std::fs::remove_dir_all(dir).unwrap();
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atftp_with_options() {
    let srv = start(|_| {}).await;
    let dir = tmpdir("atftp");
    let port = srv.addr.port().to_string();
    for (name, opts) in [
        ("100k.bin", vec![]),
        ("100k.bin", vec!["blksize 8192"]),
        (
            "5m.bin",
            vec!["blksize 8192", "windowsize 8", "tsize enable"],
        ),
        ("16384.bin", vec!["blksize 1024", "timeout 2"]),
    ] {
        let out = dir.join("out");
        let out_s = out.to_str().unwrap().to_owned();
        let mut args: Vec<&str> = vec!["-g", "-r", name, "-l", &out_s];
        for o in &opts {
            args.extend(["--option", o]);
        }
        args.extend(["127.0.0.1", &port]);
        let o = run_tool("atftp", &args).await;
        assert!(o.status.success(), "atftp {args:?}: {o:?}");
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(
            got == file(name),
            "{name} {opts:?} differs ({} bytes)",
            got.len()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// Raw client: options, windows, block sizes

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windowed_5mb_with_blksize_8192() {
    let srv = start(|_| {}).await;
    let f = fetch_ok(
        &srv,
        "5m.bin",
        "octet",
        &[("blksize", "8192"), ("windowsize", "16"), ("tsize", "0")],
    )
    .await;
    assert_eq!(oack_value(&f, "blksize"), Some("8192"));
    assert_eq!(oack_value(&f, "windowsize"), Some("16"));
    assert_eq!(oack_value(&f, "tsize"), Some("5000000"));
    assert!(f.data == file("5m.bin"), "5 MB file differs");
    assert_eq!(f.sizes.len(), 5_000_000 / 8192 + 1);
    let served = report_after_client(&srv, "5m.bin").await;
    assert_eq!((served.outcome, served.bytes), (Outcome::Served, 5_000_000));
    srv.shutdown().await;
}

/// Whether this process holds CAP_NET_ADMIN (bit 12 of `CapEff` in /proc/self/status).
fn has_cap_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/self/status");
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 12) != 0
}

/// A boot storm's first burst must fit in the listening socket: the configured receive buffer is granted
/// past `net.core.rmem_max` when the process may (CAP_NET_ADMIN, e.g. root, as in CI), and capped there
/// otherwise; either way the server reports what the kernel granted (twice the size asked) and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listening_socket_gets_its_receive_buffer_past_rmem_max_when_allowed() {
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = rmem_max + (1 << 20);
    let mut config = test_config();
    config.recv_buffer_bytes = want;
    let server = TftpServer::build(config.clone(), MemSource::new(standard_files()))
        .await
        .unwrap();
    let got = server.recv_buffer_bytes();
    drop(server);
    if has_cap_net_admin() {
        assert_eq!(got, 2 * want, "asked {want}, rmem_max {rmem_max}");
    } else {
        assert_eq!(got, 2 * rmem_max, "asked {want} without CAP_NET_ADMIN");
    }
    let srv = start_with(config, standard_files()).await;
    let f = fetch_ok(&srv, "small.bin", "octet", &[("blksize", "1468")]).await;
    assert!(f.data == file("small.bin"));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn block_sizes_and_exact_multiples() {
    let srv = start(|_| {}).await;
    // No options: no OACK, plain 512-byte blocks.
    let f = fetch_ok(&srv, "small.bin", "octet", &[]).await;
    assert!(f.oack.is_none());
    assert_eq!(f.sizes, vec![512, 512, 476]);
    assert!(f.data == file("small.bin"));
    let f = fetch_ok(&srv, "small.bin", "octet", &[("blksize", "1468")]).await;
    assert_eq!(f.sizes, vec![1468, 32]);
    assert!(f.data == file("small.bin"));
    // Exact multiples end with an empty DATA block (RFC 1350 §6).
    let f = fetch_ok(&srv, "1024.bin", "octet", &[("blksize", "512")]).await;
    assert_eq!(f.sizes, vec![512, 512, 0]);
    let f = fetch_ok(&srv, "1024.bin", "octet", &[]).await;
    assert_eq!(f.sizes, vec![512, 512, 0]);
    let f = fetch_ok(
        &srv,
        "2936.bin",
        "octet",
        &[("blksize", "1468"), ("windowsize", "4")],
    )
    .await;
    assert_eq!(f.sizes, vec![1468, 1468, 0]);
    assert!(f.data == file("2936.bin"));
    let f = fetch_ok(&srv, "empty.bin", "octet", &[("tsize", "0")]).await;
    assert_eq!(f.sizes, vec![0]);
    assert_eq!(oack_value(&f, "tsize"), Some("0"));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn option_negotiation_caps_and_invalid_values() {
    let srv = start(|c| {
        c.max_blksize = 1024;
        c.max_windowsize = 4;
    })
    .await;
    // Case-insensitive names; values above the caps are lowered.
    let f = fetch_ok(
        &srv,
        "16384.bin",
        "OCTET",
        &[("BlkSize", "8192"), ("WINDOWSIZE", "64"), ("timeout", "3")],
    )
    .await;
    assert_eq!(oack_value(&f, "blksize"), Some("1024"));
    assert_eq!(oack_value(&f, "windowsize"), Some("4"));
    assert_eq!(oack_value(&f, "timeout"), Some("3"));
    assert_eq!(oack_value(&f, "tsize"), None, "tsize was not requested");
    assert_eq!(f.sizes.len(), 17);
    assert!(f.data == file("16384.bin"));
    // Only invalid values: the options are ignored, so no OACK and 512-byte blocks.
    for (k, v) in [
        ("blksize", "7"),
        ("blksize", "65465"),
        ("windowsize", "0"),
        ("blksize", "x"),
    ] {
        let f = fetch_ok(&srv, "small.bin", "octet", &[(k, v), ("unknownopt", "1")]).await;
        assert!(f.oack.is_none(), "{k}={v} gave {:?}", f.oack);
        assert_eq!(f.sizes, vec![512, 512, 476]);
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn netascii_and_tsize() {
    let srv = start(|_| {}).await;
    let f = fetch_ok(&srv, "text.txt", "netascii", &[("tsize", "0")]).await;
    assert_eq!(f.data, TEXT_NETASCII);
    assert_eq!(
        oack_value(&f, "tsize"),
        Some(TEXT_NETASCII.len().to_string().as_str())
    );
    let f = fetch_ok(&srv, "text.txt", "octet", &[("tsize", "0")]).await;
    assert_eq!(f.data, TEXT);
    assert_eq!(
        oack_value(&f, "tsize"),
        Some(TEXT.len().to_string().as_str())
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn block_numbers_roll_over() {
    let srv = start(|_| {}).await;
    // 600 000 bytes in 8-byte blocks: 75 001 blocks, past 65535.
    let f = fetch_ok(
        &srv,
        "rollover.bin",
        "octet",
        &[("blksize", "8"), ("windowsize", "64")],
    )
    .await;
    assert_eq!(f.sizes.len(), 75_001);
    assert!(f.data == file("rollover.bin"));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ipv6_dual_stack_listener() {
    let mut cfg = test_config();
    cfg.listen = "[::]:0".parse().unwrap();
    let srv = start_with(cfg, standard_files()).await;
    let port = srv.addr.port();
    for (ip, server) in [("127.0.0.1", "127.0.0.1"), ("::1", "::1")] {
        let c = client(ip).await;
        let to = SocketAddr::new(server.parse().unwrap(), port);
        let f = fetch(&c, to, "whoami.cfg", "octet", &[]).await.unwrap();
        // IPv4-mapped peers are handed to the lookup as plain IPv4.
        assert_eq!(f.data, ip.as_bytes());
    }
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// Errors and silence

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_replies() {
    let srv = start(|_| {}).await;
    let c = client("127.0.0.1").await;
    assert_eq!(
        fetch(&c, srv.addr, "missing.cfg", "octet", &[])
            .await
            .unwrap_err(),
        FetchError::Tftp(1, "File not found".into())
    );
    assert_eq!(
        fetch(&c, srv.addr, "refused.cfg", "octet", &[])
            .await
            .unwrap_err(),
        FetchError::Tftp(2, "Access violation".into())
    );
    c.send_to(&rrq(2, "upload.cfg", "octet", &[]), srv.addr)
        .await
        .unwrap();
    let (p, _) = recv(&c, Duration::from_secs(2))
        .await
        .expect("WRQ got no answer");
    assert_eq!(&p[..4], b"\x00\x05\x00\x02");
    let s = srv.stats();
    assert_eq!((s.misses, s.refused), (1, 2));
    assert_eq!(
        srv.src.report_for("missing.cfg").unwrap().outcome,
        Outcome::NotFound
    );
    srv.shutdown().await;
}

/// Asserts that nothing arrives on `c` for a short while (called after the server has provably
/// processed the packet in question, so a reply would already be on its way).
async fn assert_silence(c: &UdpSocket, what: &str) {
    if let Some((p, from)) = recv(c, Duration::from_millis(300)).await {
        panic!("{what}: unexpected reply {p:?} from {from}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_and_garbage_at_listener_get_no_answer() {
    let srv = start(|_| {}).await;
    let c = client("127.0.0.1").await;
    for p in [
        &b"\x00\x03\x00\x01data"[..],
        b"\x00\x04\x00\x01",
        b"\x00\x05\x00\x01File not found\x00",
        b"\x00\x06blksize\x00512\x00",
    ] {
        c.send_to(p, srv.addr).await.unwrap();
    }
    for p in [
        &b"\x00"[..],
        b"\x00\x09zz",
        b"\x00\x01noterminator",
        b"\x00\x01f\x00mail\x00",
    ] {
        c.send_to(p, srv.addr).await.unwrap();
    }
    wait_for(Duration::from_secs(5), "listener to drop 8 packets", || {
        let s = srv.stats();
        s.dropped_response == 4 && s.dropped_malformed == 4
    })
    .await;
    assert_silence(&c, "response/garbage at listener").await;
    assert_eq!(srv.src.lookups.load(Ordering::Relaxed), 0);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_lookup_gets_no_answer_even_to_wrq() {
    let srv = start(|_| {}).await;
    let c = client(SILENT_IP).await;
    c.send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    c.send_to(&rrq(2, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), "two silent drops", || {
        srv.stats().dropped_silent == 2
    })
    .await;
    assert_silence(&c, "silent source").await;
    assert!(srv
        .src
        .reports()
        .iter()
        .all(|r| r.outcome == Outcome::Silent));
    assert_eq!(srv.src.reports().len(), 2);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn miss_budget_silences_source_then_recovers() {
    let cooldown = Duration::from_millis(1500);
    let srv = start(|c| {
        c.miss_budget_per_minute = 3;
        c.cooldown = cooldown;
    })
    .await;
    let bad = client("127.0.0.5").await;
    // Free misses (names every phone asks for) never count.
    for i in 0..10 {
        let name = format!("CTLSEP00000000000{i}.tlv");
        assert_eq!(
            fetch(&bad, srv.addr, &name, "octet", &[])
                .await
                .unwrap_err(),
            FetchError::Tftp(1, "File not found".into())
        );
    }
    for i in 0..3 {
        let name = format!("SEP00000000000{i}.cnf.xml");
        assert!(matches!(
            fetch(&bad, srv.addr, &name, "octet", &[]).await,
            Err(FetchError::Tftp(1, _))
        ));
    }
    // The fourth counting miss exhausts the budget: silence and a security event.
    bad.send_to(&rrq(1, "SEP0000000000FF.cnf.xml", "octet", &[]), srv.addr)
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), "cool-down to start", || {
        srv.stats().cooldowns == 1
    })
    .await;
    let cooldown_started = Instant::now();
    assert_silence(&bad, "over-budget miss").await;
    // Even an existing file is not served during the cool-down.
    bad.send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), "cool-down drop", || {
        srv.stats().dropped_budget == 2
    })
    .await;
    assert_silence(&bad, "source in cool-down").await;
    // Another source is unaffected.
    let good = client("127.0.0.6").await;
    assert!(fetch(&good, srv.addr, "small.bin", "octet", &[])
        .await
        .is_ok());
    // Poll until the source is served again; that must not happen before the cool-down ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "source never recovered");
        let c = client("127.0.0.5").await;
        c.send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
            .await
            .unwrap();
        if let Some((p, tid)) = recv(&c, Duration::from_millis(100)).await {
            assert_eq!(&p[..4], b"\x00\x03\x00\x01");
            // Finish the transfer (3 blocks) so shutdown is quick.
            for block in 1..=3u16 {
                if block > 1 {
                    recv(&c, Duration::from_secs(2)).await.expect("next block");
                }
                c.send_to(&ack(block), tid).await.unwrap();
            }
            break;
        }
    }
    assert!(
        cooldown_started.elapsed() >= cooldown - Duration::from_millis(300),
        "served again after {:?}, cool-down is {cooldown:?}",
        cooldown_started.elapsed()
    );
    assert_eq!(srv.stats().cooldowns, 1, "one security event per cool-down");
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// Transfer behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_source_concurrency_cap_and_client_abort() {
    let srv = start(|c| {
        c.max_transfers_per_source = 2;
        c.timeout = Duration::from_secs(5);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let c = client("127.0.0.8").await;
        c.send_to(&rrq(1, "100k.bin", "octet", &[]), srv.addr)
            .await
            .unwrap();
        let (p, tid) = recv(&c, Duration::from_secs(2)).await.expect("DATA 1");
        assert_eq!(&p[..4], b"\x00\x03\x00\x01");
        held.push((c, tid));
    }
    let third = client("127.0.0.8").await;
    third
        .send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), "concurrency drop", || {
        srv.stats().dropped_concurrency == 1
    })
    .await;
    assert_silence(&third, "over the per-source cap").await;
    // Other sources are not affected.
    let other = client("127.0.0.9").await;
    assert!(fetch(&other, srv.addr, "small.bin", "octet", &[])
        .await
        .is_ok());
    // A client ERROR aborts its transfer and frees a slot.
    let (c, tid) = held.pop().unwrap();
    c.send_to(b"\x00\x05\x00\x00cancelled\x00", tid)
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), "aborted transfer", || {
        srv.stats().aborted == 1
    })
    .await;
    assert_eq!(
        srv.src.report_for("100k.bin").unwrap().outcome,
        Outcome::Aborted
    );
    assert_silence(&c, "after client ERROR").await;
    let f = fetch(&third, srv.addr, "small.bin", "octet", &[]).await;
    assert!(f.is_ok(), "slot not freed: {f:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_rrq_before_first_ack_is_ignored() {
    let srv = start(|c| c.timeout = Duration::from_secs(5)).await;
    let c = client("127.0.0.1").await;
    let req = rrq(1, "small.bin", "octet", &[]);
    c.send_to(&req, srv.addr).await.unwrap();
    c.send_to(&req, srv.addr).await.unwrap();
    wait_for(Duration::from_secs(5), "duplicate counted", || {
        srv.stats().duplicates == 1
    })
    .await;
    let (p, tid) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(&p[..4], b"\x00\x03\x00\x01");
    assert_silence(&c, "second DATA 1 from a duplicate transfer").await;
    assert_eq!(srv.stats().transfers_in_flight, 1);
    // Finish the transfer.
    let mut buf = [0u8; 600];
    c.send_to(&ack(1), tid).await.unwrap();
    for block in 2..=3u16 {
        let (n, _) = c.recv_from(&mut buf).await.unwrap();
        assert_eq!(be16(&buf[2..n]), block);
        c.send_to(&ack(block), tid).await.unwrap();
    }
    wait_for(Duration::from_secs(5), "served", || srv.stats().served == 1).await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stranger_gets_unknown_tid_and_transfer_continues() {
    let srv = start(|c| c.timeout = Duration::from_secs(5)).await;
    let c = client("127.0.0.1").await;
    c.send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    let (p, tid) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(&p[..4], b"\x00\x03\x00\x01");
    let stranger = client("127.0.0.1").await;
    stranger.send_to(&ack(1), tid).await.unwrap();
    let (e, from) = recv(&stranger, Duration::from_secs(2))
        .await
        .expect("no ERROR 5 for the stranger");
    assert_eq!(from, tid);
    assert_eq!(&e[..4], b"\x00\x05\x00\x05");
    // The stranger's ACK did not advance the transfer: the client still gets everything.
    let mut data = p[4..].to_vec();
    c.send_to(&ack(1), tid).await.unwrap();
    for block in 2..=3u16 {
        let (p, _) = recv(&c, Duration::from_secs(2)).await.unwrap();
        assert_eq!(be16(&p[2..]), block);
        data.extend_from_slice(&p[4..]);
        c.send_to(&ack(block), tid).await.unwrap();
    }
    assert!(data == file("small.bin"));
    wait_for(Duration::from_secs(5), "served", || srv.stats().served == 1).await;
    srv.shutdown().await;
}

/// The engine stops reading a transfer socket at the first ACK that moves it on; a duplicate left queued
/// there must not hide the next ACK. With a 5 s retransmission timeout, a stall would show as a missing
/// DATA block within 1 s (no retransmission could stand in for the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ack_queued_behind_a_duplicate_still_moves_the_transfer_on() {
    let srv = start(|c| c.timeout = Duration::from_secs(5)).await;
    let c = client("127.0.0.1").await;
    c.send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    let (p1, tid) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(be16(&p1[2..]), 1);
    let mut data = p1[4..].to_vec();
    // ACK 1 twice back to back: the duplicate stays queued behind the ACK that moves the transfer on.
    c.send_to(&ack(1), tid).await.unwrap();
    c.send_to(&ack(1), tid).await.unwrap();
    for block in 2..=3u16 {
        let (p, _) = recv(&c, Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("DATA {block} did not come within 1 s"));
        assert_eq!(be16(&p[2..]), block, "expected DATA {block}, no resend");
        data.extend_from_slice(&p[4..]);
        c.send_to(&ack(block), tid).await.unwrap();
    }
    assert!(data == file("small.bin"));
    wait_for(Duration::from_secs(5), "served", || srv.stats().served == 1).await;
    assert!(
        recv(&c, Duration::from_millis(200)).await.is_none(),
        "nothing after the last block"
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retransmits_then_gives_up() {
    let srv = start(|c| {
        c.timeout = Duration::from_millis(200);
        c.retries = 2;
    })
    .await;
    let c = client("127.0.0.1").await;
    c.send_to(
        &rrq(1, "100k.bin", "octet", &[("windowsize", "2")]),
        srv.addr,
    )
    .await
    .unwrap();
    let (p, tid) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(p[1], 6, "expected OACK");
    c.send_to(&ack(0), tid).await.unwrap();
    // Never acknowledge: the window (blocks 1 and 2) is sent once plus twice again, then the
    // transfer is abandoned.
    wait_for(Duration::from_secs(5), "timed-out report", || {
        srv.src
            .report_for("100k.bin")
            .is_some_and(|r| r.outcome == Outcome::TimedOut)
    })
    .await;
    let mut blocks = Vec::new();
    while let Some((p, _)) = recv(&c, Duration::from_millis(50)).await {
        blocks.push(be16(&p[2..]));
    }
    assert_eq!(blocks, vec![1, 2, 1, 2, 1, 2]);
    assert_eq!(srv.stats().timed_out, 1);
    assert_eq!(srv.stats().transfers_in_flight, 0);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_ack_is_recovered_by_retransmission() {
    let srv = start(|c| c.timeout = Duration::from_millis(100)).await;
    let c = client("127.0.0.1").await;
    c.send_to(&rrq(1, "small.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    let (p1, tid) = recv(&c, Duration::from_secs(2)).await.unwrap();
    // Drop our ACK of block 1 ("lost"), expect DATA 1 again.
    let (again, _) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(p1, again);
    let mut data = p1[4..].to_vec();
    c.send_to(&ack(1), tid).await.unwrap();
    // A duplicate ACK must not trigger a duplicate send (Sorcerer's Apprentice).
    c.send_to(&ack(1), tid).await.unwrap();
    let (p2, _) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(be16(&p2[2..]), 2);
    data.extend_from_slice(&p2[4..]);
    c.send_to(&ack(2), tid).await.unwrap();
    let (p3, _) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        be16(&p3[2..]),
        3,
        "duplicate ACK caused a resend of block 2"
    );
    data.extend_from_slice(&p3[4..]);
    c.send_to(&ack(3), tid).await.unwrap();
    assert!(data == file("small.bin"));
    wait_for(Duration::from_secs(5), "served", || srv.stats().served == 1).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// Shutdown

/// True once the listening port answers a connected socket with ICMP port unreachable.
async fn listener_closed(addr: SocketAddr) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(addr).await.unwrap();
    let _ = s.send(b"\x00").await;
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_millis(100), s.recv(&mut b)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_transfer() {
    let srv = start(|c| c.timeout = Duration::from_secs(5)).await;
    let c = client("127.0.0.1").await;
    c.send_to(
        &rrq(1, "100k.bin", "octet", &[("blksize", "1024")]),
        srv.addr,
    )
    .await
    .unwrap();
    let (p, tid) = recv(&c, Duration::from_secs(2)).await.unwrap();
    assert_eq!(p[1], 6);
    srv.stop.cancel();
    // New requests are no longer accepted once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !listener_closed(srv.addr).await {
        assert!(
            Instant::now() < deadline,
            "listener still open after cancel"
        );
    }
    assert!(
        !srv.handle.is_finished(),
        "returned before the transfer finished"
    );
    // The transfer in flight completes.
    let mut data = Vec::new();
    c.send_to(&ack(0), tid).await.unwrap();
    loop {
        let (p, _) = recv(&c, Duration::from_secs(2))
            .await
            .expect("transfer stalled");
        data.extend_from_slice(&p[4..]);
        c.send_to(&ack(be16(&p[2..])), tid).await.unwrap();
        if p.len() < 4 + 1024 {
            break;
        }
    }
    assert!(data == file("100k.bin"));
    tokio::time::timeout(Duration::from_secs(5), srv.handle)
        .await
        .expect("run_until_stopped did not return")
        .unwrap()
        .unwrap();
    assert_eq!(
        srv.src.report_for("100k.bin").unwrap().outcome,
        Outcome::Served
    );
    assert_eq!(srv.stats.snapshot().transfers_in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_grace_aborts_stalled_transfers() {
    let srv = start(|c| {
        c.timeout = Duration::from_secs(5);
        c.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let c = client("127.0.0.1").await;
    c.send_to(&rrq(1, "100k.bin", "octet", &[]), srv.addr)
        .await
        .unwrap();
    assert!(recv(&c, Duration::from_secs(2)).await.is_some());
    let t0 = Instant::now();
    srv.stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), srv.handle)
        .await
        .expect("grace period not enforced")
        .unwrap()
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "returned before the grace period"
    );
    let r = srv
        .src
        .report_for("100k.bin")
        .expect("aborted transfer not reported");
    assert_eq!(r.outcome, Outcome::Aborted);
    assert_eq!(srv.stats.snapshot().transfers_in_flight, 0);
}

// ---------------------------------------------------------------------------------------------------
// Throughput (ad hoc): cargo test --release --test tftp_engine -- --ignored --nocapture bench
// TFTP_BENCH_TARGET=127.0.0.1:69 TFTP_BENCH_NAME=small.bin measures another server instead.

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, not a test"]
async fn bench_small_file_64_clients() {
    let own = match std::env::var("TFTP_BENCH_TARGET") {
        Ok(_) => None,
        Err(_) => Some(start(|_| {}).await),
    };
    let target: SocketAddr = match &own {
        Some(s) => s.addr,
        None => std::env::var("TFTP_BENCH_TARGET").unwrap().parse().unwrap(),
    };
    let name = std::env::var("TFTP_BENCH_NAME").unwrap_or_else(|_| "small.bin".into());
    let expected = file("small.bin");
    let run_for = Duration::from_secs(5);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (done, failed, name, expected) =
            (done.clone(), failed.clone(), name.clone(), expected.clone());
        tasks.push(tokio::spawn(async move {
            while t0.elapsed() < run_for {
                let c = client("127.0.0.1").await;
                match fetch(&c, target, &name, "octet", &[]).await {
                    Ok(f) if f.data == expected => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "target {target}: {:.0} transfers/s ({} ok, {} failed, 64 clients, {:.1} s)",
        done.load(Ordering::Relaxed) as f64 / secs,
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        secs
    );
    if let Some(s) = own {
        s.shutdown().await;
    }
}
