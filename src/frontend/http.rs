//! HTTP :6970: `GET`/`HEAD /<name>` from the same namespace and tenant rule as TFTP (SPEC §5.5).
//! 404 on any miss, no redirects, `Content-Length` always, `X-Forwarded-For` only from trusted proxies.
//!
//! A small HTTP/1.1 server of its own (request heads parsed by `httparse`, keep-alive, pipelining, no
//! request bodies): one thread per core, each with a `SO_REUSEPORT` listener and a `mio` poll loop, so a
//! connection is accepted, read, answered and closed on one core, by default the worker of the core it
//! arrived on. Phones send a GET with a few headers; a general-purpose framework's per-connection
//! machinery (an accept thread handing connections to workers) cost more than rendering the file, and
//! so did a task per connection on a single-threaded tokio runtime (a timer and a cancellation waiter
//! per read, and a read that only heard `EAGAIN`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::{Answer, FetchOutcome, Frontend, Protocol as FetchProtocol, Sent};
use crate::domain::Prefix;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed per request; a request with more is refused (431).
const MAX_HEADERS: usize = 48;
/// How long a connection may go without a byte read or written: idle between requests, stalled in the
/// middle of a head, or not reading its answer. Checked once a second, so it closes within 10-11 s.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in flight may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the kernel holds a new connection that has sent nothing before handing it over.
const DEFER_ACCEPT_SECS: libc::c_int = 5;
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
    /// Give each connection to the worker numbered after the core it arrived on
    /// ([`crate::sockopt::steer_reuseport_by_cpu`]) instead of a hash's pick.
    pub steer_by_cpu: bool,
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
    defer_accept(&sock);
    sock.listen(1024)?;
    Ok(sock.into())
}

/// Asks Linux to hand over a connection only once its first bytes arrived (`TCP_DEFER_ACCEPT`, up to
/// `DEFER_ACCEPT_SECS`; a client still silent then is handed over anyway). A phone's GET is then read
/// right after `accept`, answered, and, with `Connection: close`, closed without ever being registered
/// with the poll. Best effort: without it a connection waits for its first readable event.
fn defer_accept(sock: &Socket) {
    let set = crate::sockopt::set_int(
        sock,
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        DEFER_ACCEPT_SECS,
    );
    if let Err(e) = set {
        tracing::debug!(error = %e, "http: TCP_DEFER_ACCEPT not set");
    }
}

/// Connections go to worker `core % workers`, `core` being where the kernel took the connection in (on
/// loopback, the client's core; from a NIC, the core of its receive queue): the worker it wakes then
/// tends to run where the connection's state already is, and the wake-up needs no other core. Measured
/// with `wrk -c64` on 2 cores, alternating (BENCHMARKS.md): `Connection: close` 22.5 µs of CPU a request
/// instead of 22.9-24.8 (+7% requests/s), keep-alive 8.0-8.5 µs instead of 9.9-10.3 (+21%). With one
/// receive queue and no RPS every connection lands on one worker; `http_steer_by_cpu = false` brings
/// back the hash. Best effort: a kernel that refuses keeps the hash.
fn steer_by_cpu(sock: &TcpListener, workers: usize) {
    let groups = u32::try_from(workers).unwrap_or(u32::MAX);
    if let Err(e) = crate::sockopt::steer_reuseport_by_cpu(sock, groups) {
        tracing::debug!(error = %e, "http: connections not steered by core");
    }
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
        if settings.steer_by_cpu && workers > 1 {
            steer_by_cpu(&listeners[0], workers);
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

    /// Serves until `shutdown`: then the listeners close, idle connections and connections in the
    /// middle of a request head are closed, and answers being written may finish for up to 10 s.
    ///
    /// The work happens on the server's own worker threads, one per listener; this future only waits
    /// for `shutdown` and then for the workers.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> io::Result<()> {
        let shared = Arc::new(Shared {
            frontend: self.frontend,
            trusted: self.settings.trusted_proxies,
            stopping: AtomicBool::new(false),
        });
        let mut wakers = Vec::new();
        let mut threads = Vec::new();
        for (i, listener) in self.listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let mut listener = mio::net::TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || Worker::new(shared, poll, listener).run())?,
            );
            wakers.push(waker);
        }
        shutdown.cancelled().await;
        shared.stopping.store(true, Ordering::SeqCst);
        for w in &wakers {
            let _ = w.wake();
        }
        tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("http: a worker thread panicked");
                }
            }
        })
        .await
        .map_err(io::Error::other)
    }
}

struct Shared {
    frontend: Arc<Frontend>,
    trusted: Vec<Prefix>,
    stopping: AtomicBool,
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `i` is registered as token `FIRST_CONNECTION + i`.
const FIRST_CONNECTION: usize = 2;
/// How often a worker closes connections past their deadline (and retries a failed accept).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A connection's read buffer to begin with; it doubles while a head is longer, up to `2 * MAX_HEAD`.
const READ_BUF: usize = 2048;
/// Answers to pipelined requests queued before they are written.
const OUT_HIGH: usize = 64 * 1024;
/// Buffers of closed connections a worker keeps for the next ones.
const SPARE_BUFFERS: usize = 64;

/// One worker thread: a `mio` poll loop that owns its listener's connections, each a small state
/// machine (read a head, answer into a buffer, write it). Readiness is edge-triggered: a read shorter
/// than the buffer emptied the socket, so the next bytes raise a new event and the connection waits for
/// it instead of reading again only to hear `EAGAIN`. A keep-alive request costs one `read` and one
/// `write`; no timer or task is created per request (deadlines are checked once a second).
struct Worker {
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<mio::net::TcpListener>,
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    open: usize,
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    now: Instant,
}

/// What a connection wants after it was driven.
#[derive(PartialEq, Eq)]
enum Next {
    /// Wait for its next event.
    Wait,
    /// Its answer did not fit in the socket's send buffer: wait until it is writable.
    WaitWritable,
    /// Close it.
    Close,
}

struct Connection {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    /// Bytes read and not yet parsed: `input[start..filled]`.
    input: Vec<u8>,
    start: usize,
    filled: usize,
    /// Answer bytes not yet written: `out[sent..]`, then `body[body_sent..]`.
    out: Vec<u8>,
    sent: usize,
    body: Option<bytes::Bytes>,
    body_sent: usize,
    /// The connection ends once its answers are written.
    close: bool,
    /// Registered with the poll (after its first answer when that did not end it).
    registered: bool,
    /// Registered for writable events as well (after a write that would have blocked).
    writable: bool,
    /// Closed at this time unless it reads or writes something before.
    deadline: Instant,
}

impl Worker {
    fn new(shared: Arc<Shared>, poll: Poll, listener: mio::net::TcpListener) -> Worker {
        Worker {
            shared,
            poll,
            listener: Some(listener),
            connections: Vec::new(),
            free: Vec::new(),
            open: 0,
            spare: Vec::new(),
            now: Instant::now(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut grace_until: Option<Instant> = None;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "http: poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            self.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => self.drive(t - FIRST_CONNECTION),
                }
            }
            if self.now >= next_sweep {
                self.sweep();
                next_sweep = self.now + SWEEP_EVERY;
            }
            if !self.shared.stopping.load(Ordering::Relaxed) {
                continue;
            }
            let until = match grace_until {
                Some(until) => until,
                None => {
                    // Stop accepting; idle connections and heads not yet complete end now, answers
                    // being written may finish, then their connections close.
                    if let Some(mut l) = self.listener.take() {
                        let _ = self.poll.registry().deregister(&mut l);
                    }
                    for i in 0..self.connections.len() {
                        if let Some(c) = &mut self.connections[i] {
                            if c.pending_output() {
                                c.close = true;
                            } else {
                                self.close(i);
                            }
                        }
                    }
                    *grace_until.insert(self.now + SHUTDOWN_GRACE)
                }
            };
            if self.open == 0 {
                return;
            }
            if self.now >= until {
                tracing::warn!(
                    remaining = self.open,
                    "http: grace period over, closing connections"
                );
                return;
            }
        }
    }

    /// Accepts every connection waiting on the listener.
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of file descriptors and the like: the sweep tries again within a second.
                    tracing::warn!(error = %e, "http: accept failed");
                    return;
                }
            };
            let i = self.free.pop().unwrap_or_else(|| {
                self.connections.push(None);
                self.connections.len() - 1
            });
            let (input, out) = self
                .spare
                .pop()
                .unwrap_or_else(|| (vec![0; READ_BUF], Vec::with_capacity(READ_BUF)));
            self.connections[i] = Some(Connection {
                stream,
                peer,
                input,
                start: 0,
                filled: 0,
                out,
                sent: 0,
                body: None,
                body_sent: 0,
                close: false,
                registered: false,
                writable: false,
                deadline: self.now + READ_TIMEOUT,
            });
            self.open += 1;
            // Its request is usually there already (deferred accept): answer it before registering.
            self.drive(i);
        }
    }

    fn drive(&mut self, i: usize) {
        let stopping = self.shared.stopping.load(Ordering::Relaxed);
        let Some(Some(c)) = self.connections.get_mut(i) else {
            return;
        };
        let next = c.drive(&self.shared, self.now, stopping);
        if next == Next::Close {
            self.close(i);
            return;
        }
        let writable = next == Next::WaitWritable;
        if c.registered && (c.writable || !writable) {
            return;
        }
        let token = Token(i + FIRST_CONNECTION);
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let registry = self.poll.registry();
        let done = if c.registered {
            registry.reregister(&mut c.stream, token, interest)
        } else {
            registry.register(&mut c.stream, token, interest)
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "http: cannot register a connection");
            self.close(i);
            return;
        }
        c.registered = true;
        c.writable = writable;
    }

    /// Closes connection `i` (closing the socket removes it from the poll) and keeps its buffers.
    fn close(&mut self, i: usize) {
        let Some(c) = self.connections[i].take() else {
            return;
        };
        self.free.push(i);
        self.open -= 1;
        if self.spare.len() < SPARE_BUFFERS && c.input.len() == READ_BUF {
            let mut out = c.out;
            out.clear();
            if out.capacity() <= 4 * READ_BUF {
                self.spare.push((c.input, out));
            }
        }
    }

    /// Closes the connections past their deadline, and retries accepting.
    fn sweep(&mut self) {
        for i in 0..self.connections.len() {
            if self.connections[i]
                .as_ref()
                .is_some_and(|c| self.now >= c.deadline)
            {
                self.close(i);
            }
        }
        self.accept();
    }
}

impl Connection {
    fn pending_output(&self) -> bool {
        self.sent < self.out.len() || self.body.is_some()
    }

    /// Writes what is pending, answers the complete requests read, reads more; until it would block.
    fn drive(&mut self, shared: &Shared, now: Instant, stopping: bool) -> Next {
        // A read shorter than the buffer emptied the socket: the next bytes raise a new event.
        let mut drained = false;
        loop {
            match self.flush(now) {
                Ok(true) => {}
                Ok(false) => return Next::WaitWritable,
                Err(_) => return Next::Close,
            }
            if self.close {
                return Next::Close;
            }
            let mut answered = false;
            while self.body.is_none() && !self.close && self.out.len() < OUT_HIGH {
                match parse(&self.input[self.start..self.filled]) {
                    Parsed::Request(head, used) => {
                        self.start += used;
                        let close = head.close || stopping;
                        self.body = answer(shared, self.peer, head, close, &mut self.out);
                        self.close = close;
                    }
                    Parsed::Bad(status) => {
                        respond_plain(&mut self.out, status, true, true);
                        self.close = true;
                    }
                    Parsed::Partial => break,
                }
                answered = true;
            }
            if answered {
                continue;
            }
            if stopping {
                // Idle, or in the middle of a head, at shutdown: the connection ends.
                return Next::Close;
            }
            if drained {
                return Next::Wait;
            }
            self.make_room();
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    drained = self.filled + n < self.input.len();
                    self.filled += n;
                    self.deadline = now + READ_TIMEOUT;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }

    /// Moves unparsed bytes to the front, and doubles the buffer when they fill it. A head that does
    /// not end within `MAX_HEAD` bytes is refused by `parse`, so the buffer stays under `2 * MAX_HEAD`.
    fn make_room(&mut self) {
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        } else if self.filled == self.input.len() && self.start > 0 {
            self.input.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        if self.filled == self.input.len() {
            let len = (2 * self.input.len()).min(2 * MAX_HEAD);
            self.input.resize(len, 0);
        }
    }

    /// Writes pending answer bytes: `true` when all are written, `false` when the socket is full.
    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        loop {
            let head = &self.out[self.sent..];
            let body = self
                .body
                .as_deref()
                .map_or(&[][..], |b| &b[self.body_sent..]);
            if head.is_empty() && body.is_empty() {
                self.out.clear();
                self.sent = 0;
                self.body = None;
                self.body_sent = 0;
                return Ok(true);
            }
            let written = if self.close {
                // The connection's last answer: its tail is held back (`MSG_MORE`) for the close that
                // follows, so the FIN leaves in the same segment as the answer's end (as nginx's corked
                // writes do), and the server, not the phone, keeps the connection's TIME_WAIT.
                socket2::SockRef::from(&self.stream).send_vectored_with_flags(
                    &[IoSlice::new(head), IoSlice::new(body)],
                    libc::MSG_MORE,
                )
            } else if body.is_empty() {
                self.stream.write(head)
            } else {
                self.stream
                    .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let from_head = n.min(head.len());
                    self.sent += from_head;
                    self.body_sent += n - from_head;
                    self.deadline = now + READ_TIMEOUT;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
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

/// Appends the response to `head` to `out` (the head, and the body unless it is large); returns a
/// large body to send after it.
fn answer(
    shared: &Shared,
    peer: SocketAddr,
    head: Head,
    close: bool,
    out: &mut Vec<u8>,
) -> Option<bytes::Bytes> {
    if head.method == Method::Other {
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

    /// The cores the calling thread may run on (a container may allow fewer than the machine has).
    #[allow(unsafe_code)]
    fn allowed_cores() -> Vec<usize> {
        // SAFETY: `cpu_set_t` is plain bits; the call gets a live set and its size, and 0 names the
        // calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    /// Runs `f` with the calling thread allowed on core `cpu` only, then on `all` again.
    #[allow(unsafe_code)]
    fn on_core<T>(cpu: usize, all: &[usize], f: impl FnOnce() -> T) -> T {
        // SAFETY: as in `allowed_cores`.
        unsafe {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            let mut only: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut only);
            assert_eq!(libc::sched_setaffinity(0, size, &only), 0);
            let out = f();
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            for &c in all {
                libc::CPU_SET(c, &mut before);
            }
            assert_eq!(libc::sched_setaffinity(0, size, &before), 0);
            out
        }
    }

    #[test]
    fn connections_go_to_the_listener_numbered_after_the_core_they_arrive_on() {
        let cores = allowed_cores();
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let listeners = [first, bind(addr).unwrap()];
        steer_by_cpu(&listeners[0], listeners.len());
        // Which listener accepts each of 10 connections made from each core (on loopback the kernel
        // takes a connection in on the connecting thread's core). A hash would split them ~evenly.
        for &cpu in cores.iter().take(4) {
            let mut got = [0usize; 2];
            for _ in 0..10 {
                let mut client = on_core(cpu, &cores, || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
                    c
                });
                let deadline = Instant::now() + Duration::from_secs(5);
                'accept: loop {
                    for (i, l) in listeners.iter().enumerate() {
                        if l.accept().is_ok() {
                            got[i] += 1;
                            break 'accept;
                        }
                    }
                    assert!(
                        Instant::now() < deadline,
                        "no listener accepted the connection"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                client.flush().unwrap();
            }
            // Softirq work the kernel defers to another core may stray now and then.
            assert!(
                got[cpu % 2] >= 8,
                "connections from core {cpu} went to listeners {got:?}"
            );
        }
    }

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
