//! HTTP :6970: `GET`/`HEAD /<name>` from the same namespace and tenant rule as TFTP (SPEC §5.5).
//! 404 on any miss, no redirects, `Content-Length` always, `X-Forwarded-For` only from trusted proxies.
//!
//! A small HTTP/1.1 server of its own (request heads parsed by `httparse`, keep-alive, pipelining, no
//! request bodies): one thread per core, each with a `SO_REUSEPORT` listener and a single-threaded
//! runtime, so a connection is accepted, read, answered and closed on one core. Phones send a GET with
//! a few headers; a general-purpose framework's per-connection machinery (an accept thread handing
//! connections to workers) cost more than rendering the file.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Answer, FetchOutcome, Frontend, Protocol as FetchProtocol, Sent};
use crate::domain::Prefix;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed per request; a request with more is refused (431).
const MAX_HEADERS: usize = 48;
/// How long a connection may take to send a whole request head, and stay idle between requests.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in flight may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bodies up to this size are copied behind the head and sent with one write.
const INLINE_BODY: usize = 16 * 1024;

/// Settings of the :6970 listener.
#[derive(Clone, Debug)]
pub struct HttpFilesSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Prefix>,
    /// Worker threads (0 = one per core).
    pub workers: usize,
}

/// The bound :6970 listener.
pub struct HttpFilesServer {
    listeners: Vec<TcpListener>,
    local_addr: SocketAddr,
    settings: HttpFilesSettings,
    frontend: Arc<Frontend>,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    // Accepted connections inherit it (Linux): no setsockopt per connection.
    sock.set_tcp_nodelay(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        sock.set_only_v6(false)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

impl HttpFilesServer {
    /// Binds one listener per worker (SO_REUSEPORT; port 0 picks a free port all of them share).
    pub fn build(settings: HttpFilesSettings, frontend: Arc<Frontend>) -> std::io::Result<Self> {
        let workers = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let first = bind(settings.listen)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind(local_addr)?);
        }
        Ok(HttpFilesServer {
            listeners,
            local_addr,
            settings,
            frontend,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`: then the listeners close, requests in flight are answered (for up to
    /// 10 s) and idle connections are closed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let shared = Arc::new(Shared {
            frontend: self.frontend,
            trusted: self.settings.trusted_proxies,
        });
        let mut threads = Vec::new();
        for (i, listener) in self.listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || runtime.block_on(worker(listener, shared, shutdown)))?,
            );
        }
        shutdown.cancelled().await;
        tokio::task::spawn_blocking(move || {
            for t in threads {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "http: worker failed"),
                    Err(_) => tracing::error!("http: a worker thread panicked"),
                }
            }
        })
        .await
        .map_err(std::io::Error::other)
    }
}

struct Shared {
    frontend: Arc<Frontend>,
    trusted: Vec<Prefix>,
}

async fn worker(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "http: grace period over, closing connections"
        );
    }
    Ok(())
}

/// What a request head says, copied out of the read buffer.
struct Head {
    method: Method,
    /// The decoded name (path without the leading `/`, query or fragment); `None` when undecodable.
    name: Option<String>,
    forwarded_for: Option<String>,
    /// The connection ends after the response (HTTP/1.0, `Connection: close`, or a request body that
    /// is not read).
    close: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Other,
}

enum Parsed {
    Request(Head, usize),
    Partial,
    /// A status to answer with, then close.
    Bad(u16),
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Parsed::Bad(431),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431),
        Err(_) => return Parsed::Bad(400),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let mut close = req.version != Some(1);
    let mut forwarded_for = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = std::str::from_utf8(h.value).ok().map(str::to_owned);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
        {
            // Request bodies are never read: answer, then close rather than parse the body as a head.
            close = true;
        }
    }
    let target = req.path.unwrap_or("/");
    // Absolute form (`GET http://host/name`): keep the path.
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = percent_decode(path.trim_start_matches('/'));
    Parsed::Request(
        Head {
            method,
            name,
            forwarded_for,
            close,
        },
        n,
    )
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(2048);
    let mut out: Vec<u8> = Vec::with_capacity(2048);
    loop {
        let (head, used) = loop {
            match parse(&buf) {
                Parsed::Request(head, used) => break (head, used),
                Parsed::Bad(status) => {
                    respond_plain(&mut out, status, true, true);
                    let _ = stream.write_all(&out).await;
                    return;
                }
                Parsed::Partial => {}
            }
            let read = tokio::select! {
                // Idle or mid-head at shutdown: the connection ends.
                () = shutdown.cancelled() => return,
                r = tokio::time::timeout(READ_TIMEOUT, stream.read_buf(&mut buf)) => r,
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        };
        buf.advance(used);
        let close = head.close || shutdown.is_cancelled();
        let body = answer(&shared, peer, head, close, &mut out);
        let written = match body {
            Some(body) => match stream.write_all(&out).await {
                Ok(()) => stream.write_all(&body).await,
                Err(e) => Err(e),
            },
            None => stream.write_all(&out).await,
        };
        if written.is_err() || close {
            return;
        }
    }
}

/// Writes the response to `head` into `out` (the head, and the body unless it is large); returns a
/// large body to send after it.
fn answer(
    shared: &Shared,
    peer: SocketAddr,
    head: Head,
    close: bool,
    out: &mut Vec<u8>,
) -> Option<bytes::Bytes> {
    if head.method == Method::Other {
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n");
        finish_plain(out, b"method not allowed\n", close, true);
        return None;
    }
    let peer = client_address(peer, head.forwarded_for.as_deref(), &shared.trusted);
    let Some(name) = head.name else {
        respond_plain(out, 404, close, head.method == Method::Get);
        return None;
    };
    let frontend = &shared.frontend;
    let start = Instant::now();
    let answer = frontend.answer(peer, &name);
    let outcome = match &answer {
        Answer::Serve(_) => FetchOutcome::Served,
        Answer::NotFound { .. } => FetchOutcome::NotFound,
        Answer::Refused => FetchOutcome::Refused,
        Answer::Silent => {
            respond_plain(out, 404, close, head.method == Method::Get);
            return None;
        }
    };
    let served = match answer {
        Answer::Serve(s) => Some(s),
        _ => None,
    };
    // HEAD asks about a file without fetching it: answer, but record no fetch (it would count as one in
    // the phone's history and drift state).
    if head.method == Method::Get {
        let data = served.as_ref().map(|s| s.bytes.clone());
        frontend.record(
            FetchProtocol::Http,
            peer,
            name,
            Sent {
                outcome,
                bytes: data.as_ref().map_or(0, |d| d.len() as u64),
                duration: start.elapsed(),
                data,
            },
        );
    }
    let Some(s) = served else {
        respond_plain(out, 404, close, head.method == Method::Get);
        return None;
    };
    use std::io::Write as _;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
        s.content_type,
        s.bytes.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    if head.method == Method::Head {
        return None;
    }
    if s.bytes.len() <= INLINE_BODY {
        out.extend_from_slice(&s.bytes);
        return None;
    }
    Some(s.bytes)
}

/// A short `text/plain` answer: 404, 400 or 431 (without its body when it answers a HEAD).
fn respond_plain(out: &mut Vec<u8>, status: u16, close: bool, with_body: bool) {
    out.clear();
    let (line, body): (&[u8], &[u8]) = match status {
        400 => (b"HTTP/1.1 400 Bad Request\r\n", b"bad request\n"),
        431 => (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"request head too large\n",
        ),
        _ => (b"HTTP/1.1 404 Not Found\r\n", b"not found\n"),
    };
    out.extend_from_slice(line);
    finish_plain(out, body, close || status != 404, with_body);
}

fn finish_plain(out: &mut Vec<u8>, body: &[u8], close: bool, with_body: bool) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "Content-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    if with_body {
        out.extend_from_slice(body);
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_address(peer: SocketAddr, forwarded: Option<&str>, trusted: &[Prefix]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|p| p.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let Some(list) = forwarded else { return peer };
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return SocketAddr::new(ip, 0),
            Err(_) => return peer,
        }
    }
    peer
}

/// Decodes `%XX` escapes; `None` for bad escapes or non-UTF-8 results.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Prefix> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: SocketAddr = "10.1.1.1:5555".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:5555".parse().unwrap();
        assert_eq!(
            client_address(stranger, Some("127.0.1.5"), &trusted),
            stranger
        );
        assert_eq!(
            client_address(proxy, Some("127.0.1.5"), &trusted)
                .ip()
                .to_string(),
            "127.0.1.5"
        );
        assert_eq!(
            client_address(proxy, Some("6.6.6.6, 127.0.1.5, 10.2.2.2"), &trusted)
                .ip()
                .to_string(),
            "127.0.1.5"
        );
        assert_eq!(client_address(proxy, Some("garbage"), &trusted), proxy);
        assert_eq!(client_address(proxy, None, &trusted), proxy);
    }

    fn head(raw: &[u8]) -> Head {
        match parse(raw) {
            Parsed::Request(h, n) => {
                assert_eq!(n, raw.len(), "the whole head is consumed");
                h
            }
            Parsed::Partial => panic!("partial"),
            Parsed::Bad(s) => panic!("bad {s}"),
        }
    }

    #[test]
    fn request_heads() {
        let h = head(b"GET /SEP0004F2A1B2C3.cnf.xml HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(h.method == Method::Get && !h.close);
        assert_eq!(h.name.as_deref(), Some("SEP0004F2A1B2C3.cnf.xml"));
        let h = head(b"HEAD http://tftp.example:6970/a%2Fb?x=1#f HTTP/1.1\r\nConnection: Close\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
        assert!(h.method == Method::Head && h.close);
        assert_eq!(h.name.as_deref(), Some("a/b"));
        assert_eq!(h.forwarded_for.as_deref(), Some("10.0.0.1"));
        // HTTP/1.0 and requests with a body end the connection after the answer.
        assert!(head(b"GET / HTTP/1.0\r\n\r\n").close);
        let h = head(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert!(h.method == Method::Other && h.close);
        assert!(!head(b"GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").close);
        assert!(head(b"GET /%zz HTTP/1.1\r\n\r\n").name.is_none());
        assert!(matches!(
            parse(b"GET /x HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Parsed::Bad(400)
        ));
        let mut long = b"GET /x HTTP/1.1\r\nX-Pad: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert!(matches!(parse(&long), Parsed::Bad(431)));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let raw = format!("GET /x HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(raw.as_bytes()), Parsed::Bad(431)));
    }

    #[test]
    fn plain_answers_to_head_requests_have_no_body() {
        let mut out = Vec::new();
        respond_plain(&mut out, 404, false, false);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"
        );
        respond_plain(&mut out, 400, false, true);
        assert!(out.ends_with(b"Connection: close\r\n\r\nbad request\n"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("SEP0004F2A1B2C3.cnf.xml").unwrap(),
            "SEP0004F2A1B2C3.cnf.xml"
        );
        assert_eq!(percent_decode("a%2Fb").unwrap(), "a/b");
        assert!(percent_decode("a%2").is_none());
        assert!(percent_decode("%ff").is_none());
    }
}
