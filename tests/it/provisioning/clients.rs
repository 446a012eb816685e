//! Clients of the provisioning front end: the suite's own raw-UDP TFTP client (options, windowsize,
//! source address of our choosing), wrappers around real clients (`curl tftp://`, tftp-hpa `tftp`,
//! `atftp`), and an HTTP :6970 client bound to a chosen source address.
//!
//! A missing client binary fails the test with an install hint: CI installs them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The install hint printed when a client binary is missing.
pub const INSTALL_HINT: &str = "apt-get install -y curl tftp-hpa atftp";

// ---------------------------------------------------------------------------------------------------
// Raw TFTP client

#[path = "../../support/tftp_wire.rs"]
mod wire;
pub use wire::udp_from;
use wire::{ack, be16, parse_pairs};

/// An RRQ packet.
pub fn rrq(name: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    wire::request(1, name, mode, opts)
}

/// A completed read.
#[derive(Debug)]
pub struct Fetched {
    /// The file.
    pub data: Vec<u8>,
    /// The OACK's options, if the server sent one.
    pub oack: Option<Vec<(String, String)>>,
    /// Payload size of every in-order DATA block.
    pub sizes: Vec<usize>,
}

impl Fetched {
    /// An option the server acknowledged.
    pub fn oack_value(&self, k: &str) -> Option<&str> {
        self.oack
            .as_ref()?
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a read failed.
#[derive(Debug, PartialEq)]
pub enum FetchError {
    /// An ERROR packet: code and message.
    Tftp(u16, String),
    /// Nothing (more) arrived.
    Timeout,
}

/// A complete octet-mode read of `name` from `server`, sent from `src`, with options `opts`
/// (RFC 7440 client side: ACK the last in-order block when the window is full, on the final block, or on
/// a gap). Gives up after `tries` silent periods of 1 s.
pub async fn tftp_get_with(
    server: SocketAddr,
    src: &str,
    name: &str,
    opts: &[(&str, &str)],
    tries: u32,
) -> Result<Fetched, FetchError> {
    let c = udp_from(src).await;
    let req = rrq(name, "octet", opts);
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
            match tokio::time::timeout(Duration::from_secs(1), c.recv_from(&mut buf)).await {
                Ok(r) => r.unwrap(),
                Err(_) => {
                    timeouts += 1;
                    if timeouts >= tries {
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
        if p.len() < 4 {
            continue;
        }
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
                let a = ack(0);
                c.send_to(&a, from).await.unwrap();
                last_ack = Some(a);
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
                        c.send_to(&ack(block), from).await.unwrap();
                        return Ok(f);
                    }
                    if in_window >= window {
                        let a = ack(block);
                        c.send_to(&a, from).await.unwrap();
                        last_ack = Some(a);
                        in_window = 0;
                    }
                } else {
                    let a = ack(expected.wrapping_sub(1));
                    c.send_to(&a, from).await.unwrap();
                    last_ack = Some(a);
                    in_window = 0;
                }
            }
            _ => {}
        }
    }
}

/// [`tftp_get_with`] with up to 5 retransmissions.
pub async fn tftp_get(
    server: SocketAddr,
    src: &str,
    name: &str,
    opts: &[(&str, &str)],
) -> Result<Fetched, FetchError> {
    tftp_get_with(server, src, name, opts, 5).await
}

/// Sends one RRQ (no options) from `src` and returns the first datagram that comes back within
/// `within`, or `None`. No ACK is sent: the server's transfer (if any) times out on its own.
pub async fn first_reply(
    server: SocketAddr,
    src: &str,
    name: &str,
    within: Duration,
) -> Option<Vec<u8>> {
    let c = udp_from(src).await;
    c.send_to(&rrq(name, "octet", &[]), server).await.unwrap();
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(within, c.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => {
            buf.truncate(n);
            Some(buf)
        }
        Ok(Err(e)) => panic!("recv: {e}"),
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------------
// Real clients

/// A fresh scratch directory.
pub fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "dialtone-prov-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a client binary; a missing binary fails the test with the install hint.
pub async fn run_tool(bin: &str, args: &[&str]) -> std::process::Output {
    let fut = tokio::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{bin}` is not installed; these tests need it ({INSTALL_HINT})")
        }
        Ok(Err(e)) => panic!("cannot run {bin}: {e}"),
        Err(_) => panic!("{bin} {args:?} did not finish within 30 s"),
    }
}

/// What a real client got: its exit status and output, and the file it wrote (empty if none).
#[derive(Debug)]
pub struct ToolFetch {
    /// The process's output.
    pub out: std::process::Output,
    /// The content of the local file.
    pub data: Vec<u8>,
}

impl ToolFetch {
    /// Whether the client reported success.
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
}

/// `curl tftp://SERVER/NAME` from source `src` (`--interface`), with extra curl arguments.
pub async fn curl_tftp(server: SocketAddr, src: &str, name: &str, extra: &[&str]) -> ToolFetch {
    let dir = tmpdir("curl");
    let out = dir.join("out");
    let out_s = out.to_str().unwrap();
    let url = format!("tftp://{server}/{name}");
    let mut args = vec![
        "-sS",
        "--max-time",
        "20",
        "--interface",
        src,
        "-o",
        out_s,
        &url,
    ];
    args.extend_from_slice(extra);
    let o = run_tool("curl", &args).await;
    let data = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    ToolFetch { out: o, data }
}

/// tftp-hpa `tftp HOST PORT -m binary -c get NAME LOCAL` (source address: 127.0.0.1 only).
pub async fn tftp_hpa_get(server: SocketAddr, name: &str) -> ToolFetch {
    let dir = tmpdir("hpa");
    let out = dir.join("out");
    let out_s = out.to_str().unwrap();
    let host = server.ip().to_string();
    let port = server.port().to_string();
    let o = run_tool(
        "tftp",
        &[&host, &port, "-m", "binary", "-c", "get", name, out_s],
    )
    .await;
    let data = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    ToolFetch { out: o, data }
}

/// `atftp -g -r NAME -l LOCAL --option "k v"... HOST PORT` (source address: 127.0.0.1 only).
pub async fn atftp_get(server: SocketAddr, name: &str, options: &[&str]) -> ToolFetch {
    let dir = tmpdir("atftp");
    let out = dir.join("out");
    let out_s = out.to_str().unwrap().to_owned();
    let host = server.ip().to_string();
    let port = server.port().to_string();
    let mut args: Vec<&str> = vec!["-g", "-r", name, "-l", &out_s];
    for o in options {
        args.extend(["--option", o]);
    }
    args.extend([host.as_str(), port.as_str()]);
    let o = run_tool("atftp", &args).await;
    let data = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    ToolFetch { out: o, data }
}

// ---------------------------------------------------------------------------------------------------
// HTTP :6970

/// An HTTP client whose connections come from `src`, that never follows redirects.
pub fn http_from(src: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(src.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `http://ADDR/NAME` (the name is put into the path as is; a leading `/` or `./` stays).
pub fn file_url(addr: SocketAddr, name: &str) -> String {
    format!("http://{addr}/{name}")
}
