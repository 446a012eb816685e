//! The TFTP server: one worker thread per core, each with its own `SO_REUSEPORT` listening socket and a
//! `mio` event loop that owns its transfers (their sockets and retransmission timers); admission rules
//! shared by all workers (miss budget and cool-down, per-source concurrency cap), duplicate requests,
//! write refusal, counters and graceful shutdown.
//!
//! Why threads and not tokio tasks: a small transfer is a handful of datagrams, and a task per transfer
//! on a work-stealing runtime cost more than the transfer itself (wake-ups across threads, the reactor,
//! timers); a worker that renders, sends and receives on one core does none of that. The kernel keeps a
//! client's datagrams on one worker (the `SO_REUSEPORT` hash of the 4-tuple), so a retransmitted request
//! reaches the worker that knows its transfer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::packet::{self, ErrorCode, Packet, Request};
use super::transfer::{Step, Transfer, TransferSpec};
use super::{FileSource, Lookup, Outcome, TftpConfig, TransferReport};

/// Length of the miss-budget window.
const MISS_WINDOW: Duration = Duration::from_secs(60);
/// How often idle per-source entries are swept.
const GC_INTERVAL: Duration = Duration::from_secs(30);
/// Receive buffer of the listening loop; requests are far smaller (a longer datagram is truncated and
/// then fails to decode).
const LISTEN_BUF: usize = 2048;
/// Requests a worker takes from its listening socket before it looks at its transfers again.
const LISTEN_BATCH: usize = 64;
/// Longest sleep of a worker with nothing to do (it also wakes for shutdown).
const IDLE_WAIT: Duration = Duration::from_millis(500);
const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Transfer `i` of a worker is registered as `Token(i + FIRST_TRANSFER)`.
const FIRST_TRANSFER: usize = 2;
/// Transfer sockets a worker keeps open, idle, for the next transfers: creating, binding, registering
/// and closing a socket was a fifth of a small transfer's CPU. Each transfer still has its own port
/// while it runs (RFC 1350 TID); a late packet of an earlier transfer is a stranger's (ERROR 5).
const IDLE_SOCKETS: usize = 256;

/// Counters of the engine, for `/metrics`. All are monotonic except `transfers_in_flight`.
#[derive(Debug, Default)]
pub struct TftpStats {
    /// Decoded read and write requests (before any admission rule).
    pub requests: AtomicU64,
    /// Transfers whose every block was acknowledged.
    pub served: AtomicU64,
    /// Requests answered with ERROR 1 (file not found).
    pub misses: AtomicU64,
    /// Requests answered with ERROR 2 (refused lookups and write requests).
    pub refused: AtomicU64,
    /// Transfers ended by a client ERROR, a socket error or shutdown.
    pub aborted: AtomicU64,
    /// Transfers that ran out of retransmissions or time.
    pub timed_out: AtomicU64,
    /// Repeated RRQs ignored because the first one's transfer had no ACK yet.
    pub duplicates: AtomicU64,
    /// Sources put into cool-down because they spent their miss budget (security events).
    pub cooldowns: AtomicU64,
    /// Dropped without answer: the lookup said `Silent` (source in no tenant network).
    pub dropped_silent: AtomicU64,
    /// Dropped without answer: source over its miss budget or in cool-down.
    pub dropped_budget: AtomicU64,
    /// Dropped without answer: source at its concurrent-transfer cap.
    pub dropped_concurrency: AtomicU64,
    /// Dropped without answer: undecodable datagram.
    pub dropped_malformed: AtomicU64,
    /// Dropped without answer: DATA/ACK/ERROR/OACK sent to the listening port.
    pub dropped_response: AtomicU64,
    /// Transfers currently running.
    pub transfers_in_flight: AtomicU64,
}

/// A plain copy of [`TftpStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TftpStatsSnapshot {
    pub requests: u64,
    pub served: u64,
    pub misses: u64,
    pub refused: u64,
    pub aborted: u64,
    pub timed_out: u64,
    pub duplicates: u64,
    pub cooldowns: u64,
    pub dropped_silent: u64,
    pub dropped_budget: u64,
    pub dropped_concurrency: u64,
    pub dropped_malformed: u64,
    pub dropped_response: u64,
    pub transfers_in_flight: u64,
}

impl TftpStats {
    /// Reads every counter (each individually; the set is not an atomic snapshot).
    pub fn snapshot(&self) -> TftpStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TftpStatsSnapshot {
            requests: g(&self.requests),
            served: g(&self.served),
            misses: g(&self.misses),
            refused: g(&self.refused),
            aborted: g(&self.aborted),
            timed_out: g(&self.timed_out),
            duplicates: g(&self.duplicates),
            cooldowns: g(&self.cooldowns),
            dropped_silent: g(&self.dropped_silent),
            dropped_budget: g(&self.dropped_budget),
            dropped_concurrency: g(&self.dropped_concurrency),
            dropped_malformed: g(&self.dropped_malformed),
            dropped_response: g(&self.dropped_response),
            transfers_in_flight: g(&self.transfers_in_flight),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A bound, not yet running TFTP server.
pub struct TftpServer {
    sockets: Vec<std::net::UdpSocket>,
    local_addr: SocketAddr,
    recv_buffer: usize,
    config: TftpConfig,
    source: Arc<dyn FileSource>,
    stats: Arc<TftpStats>,
}

impl std::fmt::Debug for TftpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TftpServer")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.sockets.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn listening_socket(addr: SocketAddr, config: &TftpConfig) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        sock.set_only_v6(false)?;
    }
    // SO_RCVBUFFORCE goes past net.core.rmem_max (212992 on a stock kernel: a few hundred requests, fewer
    // than a boot storm's first burst) when the process has CAP_NET_ADMIN; without it, SO_RCVBUF, which
    // the kernel caps there ([`TftpServer::build`] warns).
    let want = libc::c_int::try_from(config.recv_buffer_bytes).unwrap_or(libc::c_int::MAX / 2);
    if crate::sockopt::set_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
        if let Err(e) = sock.set_recv_buffer_size(config.recv_buffer_bytes) {
            tracing::warn!(error = %e, "tftp: cannot set SO_RCVBUF");
        }
    }
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Warns when the kernel gave the listening sockets less receive buffer than configured: it reports
/// twice the size it was asked for (half of it is for its own bookkeeping), so `got` below twice `want`
/// means the request was capped.
fn check_recv_buffer(got: usize, want: usize) {
    if got < want.saturating_mul(2) {
        let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        tracing::warn!(
            got = got / 2,
            configured = want,
            rmem_max = %rmem_max,
            "tftp: the listening sockets' receive buffer is smaller than tftp_recv_buffer_bytes: the kernel \
             caps it at net.core.rmem_max, and a boot storm's first requests can overflow it (each lost \
             request costs its phone a retransmission timeout); raise it (sysctl -w \
             net.core.rmem_max={want}) or give dialtone CAP_NET_ADMIN"
        );
    }
}

impl TftpServer {
    /// Creates and binds one listening socket per worker (SO_REUSEPORT, the receive buffer as configured,
    /// dual-stack when the address is `[::]`). Port 0 picks a free port, which every worker then shares.
    pub async fn build(config: TftpConfig, source: Arc<dyn FileSource>) -> io::Result<TftpServer> {
        let workers = match config.workers {
            0 => {
                super::default_workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
            }
            n => n,
        };
        let first = listening_socket(config.listen, &config)?;
        let local_addr = first.local_addr()?;
        let recv_buffer = socket2::SockRef::from(&first).recv_buffer_size()?;
        check_recv_buffer(recv_buffer, config.recv_buffer_bytes);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(listening_socket(local_addr, &config)?);
        }
        Ok(TftpServer {
            sockets,
            local_addr,
            recv_buffer,
            config,
            source,
            stats: Arc::new(TftpStats::default()),
        })
    }

    /// The receive buffer of each listening socket as the kernel reports it (`SO_RCVBUF`: twice the
    /// size granted).
    pub fn recv_buffer_bytes(&self) -> usize {
        self.recv_buffer
    }

    /// The address actually bound (with the real port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine's counters; the `Arc` stays valid after the server stops.
    pub fn stats(&self) -> Arc<TftpStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting requests (the listening sockets are
    /// closed), lets transfers in flight finish for up to `shutdown_grace`, aborts the rest and returns.
    ///
    /// The work happens on the server's own worker threads, one per listening socket; this future only
    /// waits for `shutdown` and then for the workers.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> io::Result<()> {
        let TftpServer {
            sockets,
            local_addr,
            recv_buffer,
            config,
            source,
            stats,
        } = self;
        tracing::info!(
            %local_addr,
            workers = sockets.len(),
            recv_buffer = recv_buffer / 2,
            "tftp: listening"
        );
        let shared = Arc::new(Shared {
            local_ip: local_addr.ip(),
            config,
            source,
            stats,
            sources: Mutex::new(Sources {
                map: HashMap::new(),
                next_gc: Instant::now() + GC_INTERVAL,
            }),
            stopping: AtomicBool::new(false),
        });
        let mut wakers = Vec::new();
        let mut threads = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let mut listener = UdpSocket::from_std(socket);
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("tftp-{i}"))
                .spawn(move || Worker::new(shared, poll, listener).run())?;
            wakers.push(waker);
            threads.push(thread);
        }
        shutdown.cancelled().await;
        shared.stopping.store(true, Ordering::SeqCst);
        for w in &wakers {
            let _ = w.wake();
        }
        tracing::info!(
            in_flight = shared.stats.transfers_in_flight.load(Ordering::Relaxed),
            "tftp: shutting down"
        );
        tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("tftp: a worker thread panicked");
                }
            }
        })
        .await
        .map_err(io::Error::other)
    }
}

/// What every worker shares.
struct Shared {
    local_ip: IpAddr,
    config: TftpConfig,
    source: Arc<dyn FileSource>,
    stats: Arc<TftpStats>,
    sources: Mutex<Sources>,
    stopping: AtomicBool,
}

/// Per-source admission state of all workers (a source's transfers spread over the workers).
struct Sources {
    map: HashMap<IpAddr, SourceState>,
    next_gc: Instant,
}

impl Shared {
    fn sources(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, peer: SocketAddr, name: &str, outcome: Outcome) {
        self.source.report(TransferReport {
            peer,
            name: name.to_owned(),
            outcome,
            bytes: 0,
            duration: Duration::ZERO,
            data: None,
        });
    }

    /// The lookup, with a panic contained to this request (logged; the request gets no answer).
    fn lookup(&self, peer: SocketAddr, name: &str) -> Lookup {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.source.lookup(peer, name)))
            .unwrap_or_else(|_| {
                tracing::error!(%peer, "tftp: the lookup panicked; request dropped");
                Lookup::Silent
            })
    }
}

/// A transfer of a worker, with what its report needs.
struct Slot {
    transfer: Transfer,
    /// The client's address as it arrived (the key of `pending`).
    from: SocketAddr,
    /// Canonical client address (IPv4-mapped given as IPv4).
    peer: SocketAddr,
    name: Box<str>,
    start: Instant,
    /// Distinguishes this transfer from earlier ones in the same slot (timer entries).
    generation: u64,
}

/// One worker: a listening socket, its transfers and their timers.
struct Worker {
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<UdpSocket>,
    slots: Vec<Option<Slot>>,
    /// The socket of slot `i`, registered as its token; kept open while the slot is free (up to
    /// [`IDLE_SOCKETS`]).
    sockets: Vec<Option<UdpSocket>>,
    /// Free slots with an open socket (taken first) and without one.
    free_open: Vec<usize>,
    free_closed: Vec<usize>,
    generation: u64,
    /// (due, slot, generation); an entry whose slot moved on is skipped, one whose transfer's timer was
    /// pushed later by progress is put back with the new time.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Transfers without their first ACK yet, by the client's address: a repeated RRQ is a duplicate.
    pending: HashMap<SocketAddr, usize>,
    /// The send buffer of every packet this worker sends.
    out: Vec<u8>,
    running: usize,
    /// The listening socket may hold more requests (it was not drained to `WouldBlock`).
    listener_ready: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>, poll: Poll, listener: UdpSocket) -> Worker {
        Worker {
            shared,
            poll,
            listener: Some(listener),
            slots: Vec::new(),
            sockets: Vec::new(),
            free_open: Vec::new(),
            free_closed: Vec::new(),
            generation: 0,
            timers: BinaryHeap::new(),
            pending: HashMap::new(),
            out: Vec::with_capacity(4 + usize::from(packet::MAX_BLKSIZE)),
            running: 0,
            listener_ready: false,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut rbuf = vec![0u8; LISTEN_BUF];
        let mut grace_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut wait = self
                .timers
                .peek()
                .map_or(IDLE_WAIT, |Reverse((at, _, _))| {
                    at.saturating_duration_since(now)
                })
                .min(IDLE_WAIT);
            if self.listener_ready {
                wait = Duration::ZERO;
            }
            if let Some(until) = grace_until {
                wait = wait.min(until.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "tftp: poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.listener_ready = true,
                    WAKER => {}
                    Token(t) => self.transfer_readable(t - FIRST_TRANSFER, now),
                }
            }
            if self.listener_ready {
                self.accept(&mut rbuf);
            }
            self.fire_timers(Instant::now());
            if self.shared.stopping.load(Ordering::SeqCst) {
                if let Some(mut l) = self.listener.take() {
                    // Close the port at once: new requests get ICMP "port unreachable" once every
                    // worker has closed its socket; transfers in flight go on.
                    let _ = self.poll.registry().deregister(&mut l);
                    self.listener_ready = false;
                    grace_until = Some(Instant::now() + self.shared.config.shutdown_grace);
                }
                if self.running == 0 {
                    return;
                }
                if grace_until.is_some_and(|u| Instant::now() >= u) {
                    tracing::warn!(
                        remaining = self.running,
                        "tftp: grace period over, aborting transfers"
                    );
                    for i in 0..self.slots.len() {
                        if self.slots[i].is_some() {
                            self.finish(i, Outcome::Aborted);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Takes up to a batch of datagrams from the listening socket.
    fn accept(&mut self, rbuf: &mut [u8]) {
        for _ in 0..LISTEN_BATCH {
            let Some(listener) = &self.listener else {
                self.listener_ready = false;
                return;
            };
            match listener.recv_from(rbuf) {
                Ok((n, from)) => self.handle(&rbuf[..n], from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return;
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    // Keep reading whatever happens; pause briefly so a persistent error cannot spin.
                    tracing::warn!(error = %e, "tftp: receive error on listening socket");
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            }
        }
    }

    fn handle(&mut self, pkt: &[u8], from: SocketAddr) {
        let stats = &self.shared.stats;
        match packet::opcode(pkt) {
            // Never answer a response sent to the listening port (SPEC §5.4).
            Some(packet::OP_DATA | packet::OP_ACK | packet::OP_ERROR | packet::OP_OACK) => {
                bump(&stats.dropped_response);
                return;
            }
            Some(packet::OP_RRQ | packet::OP_WRQ) => {}
            _ => {
                bump(&stats.dropped_malformed);
                return;
            }
        }
        let (req, write) = match packet::decode(pkt) {
            Ok(Packet::Rrq(r)) => (r, false),
            Ok(Packet::Wrq(r)) => (r, true),
            _ => {
                bump(&stats.dropped_malformed);
                return;
            }
        };
        bump(&stats.requests);
        let now = Instant::now();
        let peer = canonical(from);
        let ip = peer.ip();
        if let Some(&i) = self.pending.get(&from) {
            if let Some(s) = &self.slots[i] {
                if *s.name == *req.filename && !s.transfer.first_ack {
                    // A retransmitted RRQ while its transfer is starting: the transfer answers it.
                    bump(&stats.duplicates);
                    return;
                }
            }
        }
        {
            let mut sources = self.shared.sources();
            if now >= sources.next_gc {
                sources.map.retain(|_, s| !s.idle(now));
                sources.next_gc = now + GC_INTERVAL;
            }
            if sources.map.get_mut(&ip).is_some_and(|s| s.in_cooldown(now)) {
                bump(&stats.dropped_budget);
                return;
            }
            if !write {
                let s = sources
                    .map
                    .entry(ip)
                    .or_insert_with(|| SourceState::new(now));
                if s.active >= self.shared.config.max_transfers_per_source {
                    bump(&stats.dropped_concurrency);
                    return;
                }
                // Reserved now, so that workers admitting at once cannot pass the cap together.
                s.active += 1;
            }
        }
        if write {
            self.refuse_write(&req, from, peer);
            return;
        }
        let lookup = self.shared.lookup(peer, req.filename);
        if let Lookup::Serve(data) = lookup {
            self.start(&req, from, peer, data, now);
            return;
        }
        self.release(ip);
        self.settle(from, peer, req.filename, lookup);
    }

    /// Gives back a reserved transfer place of `ip`.
    fn release(&self, ip: IpAddr) {
        if let Some(s) = self.shared.sources().map.get_mut(&ip) {
            s.active = s.active.saturating_sub(1);
        }
    }

    fn start(
        &mut self,
        req: &Request<'_>,
        from: SocketAddr,
        peer: SocketAddr,
        data: bytes::Bytes,
        now: Instant,
    ) {
        let config = &self.shared.config;
        let spec = TransferSpec {
            peer: from,
            data,
            mode: req.mode,
            requested: req.options,
            max_blksize: config.max_blksize,
            max_windowsize: config.max_windowsize,
            timeout: config.timeout,
            retries: config.retries,
        };
        let i = match self.free_open.pop().or_else(|| self.free_closed.pop()) {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.sockets.push(None);
                self.slots.len() - 1
            }
        };
        let started = self.open_socket(i).and_then(|()| match &self.sockets[i] {
            Some(sock) => Transfer::start(spec, sock, now, &mut self.out),
            None => Err(io::Error::other("no transfer socket")),
        });
        let transfer = match started {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "tftp: cannot start transfer");
                self.close_socket(i);
                self.free_closed.push(i);
                self.release(peer.ip());
                bump(&self.shared.stats.aborted);
                self.shared.report(peer, req.filename, Outcome::Aborted);
                return;
            }
        };
        self.generation += 1;
        self.timers
            .push(Reverse((transfer.timer_at, i, self.generation)));
        self.slots[i] = Some(Slot {
            transfer,
            from,
            peer,
            name: req.filename.into(),
            start: now,
            generation: self.generation,
        });
        self.pending.insert(from, i);
        self.running += 1;
        self.shared
            .stats
            .transfers_in_flight
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Gives slot `i` a socket unless it kept one: bound to an ephemeral port, registered as its token.
    fn open_socket(&mut self, i: usize) -> io::Result<()> {
        if self.sockets[i].is_none() {
            let mut sock = super::transfer::bind_ephemeral(self.shared.local_ip)?;
            self.poll.registry().register(
                &mut sock,
                Token(i + FIRST_TRANSFER),
                Interest::READABLE,
            )?;
            self.sockets[i] = Some(sock);
        }
        Ok(())
    }

    fn close_socket(&mut self, i: usize) {
        if let Some(mut sock) = self.sockets[i].take() {
            let _ = self.poll.registry().deregister(&mut sock);
        }
    }

    fn transfer_readable(&mut self, i: usize, now: Instant) {
        let (Some(Some(slot)), Some(Some(sock))) = (self.slots.get_mut(i), self.sockets.get(i))
        else {
            return;
        };
        let step = slot.transfer.on_readable(sock, now);
        if slot.transfer.first_ack && self.pending.get(&slot.from) == Some(&i) {
            self.pending.remove(&slot.from);
        }
        self.settle_step(i, step);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, i, generation))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let (Some(Some(slot)), Some(Some(sock))) = (self.slots.get_mut(i), self.sockets.get(i))
            else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            if slot.transfer.timer_at > now {
                // Progress moved the timer: wait for the new time.
                self.timers
                    .push(Reverse((slot.transfer.timer_at, i, generation)));
                continue;
            }
            let step = slot.transfer.on_timer(sock, now, &mut self.out);
            let timer_at = slot.transfer.timer_at;
            if matches!(step, Ok(Step::Continue)) {
                self.timers.push(Reverse((timer_at, i, generation)));
            }
            self.settle_step(i, step);
        }
    }

    fn settle_step(&mut self, i: usize, step: io::Result<Step>) {
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Done(outcome)) => self.finish(i, outcome),
            Err(e) => {
                tracing::debug!(error = %e, "tftp: transfer socket error");
                self.finish(i, Outcome::Aborted);
            }
        }
    }

    /// Ends transfer `i`: its socket is closed, its place given back, and it is reported once.
    fn finish(&mut self, i: usize, outcome: Outcome) {
        let Some(slot) = self.slots[i].take() else {
            return;
        };
        if self.free_open.len() < IDLE_SOCKETS && !self.shared.stopping.load(Ordering::Relaxed) {
            self.free_open.push(i);
        } else {
            self.close_socket(i);
            self.free_closed.push(i);
        }
        self.running -= 1;
        if self.pending.get(&slot.from) == Some(&i) {
            self.pending.remove(&slot.from);
        }
        self.release(slot.peer.ip());
        let stats = &self.shared.stats;
        stats.transfers_in_flight.fetch_sub(1, Ordering::Relaxed);
        bump(match outcome {
            Outcome::Served => &stats.served,
            Outcome::TimedOut => &stats.timed_out,
            _ => &stats.aborted,
        });
        let bytes = slot.transfer.bytes_acked(outcome);
        self.shared.source.report(TransferReport {
            peer: slot.peer,
            name: slot.name.into(),
            outcome,
            bytes,
            duration: slot.start.elapsed(),
            data: Some(slot.transfer.data),
        });
    }

    /// Settles a request whose lookup found nothing to send: the miss budget, the reply, the report.
    fn settle(&mut self, from: SocketAddr, peer: SocketAddr, name: &str, lookup: Lookup) {
        let now = Instant::now();
        let ip = peer.ip();
        let stats = &self.shared.stats;
        match lookup {
            Lookup::Serve(_) => {}
            Lookup::NotFound { counts_as_miss } => {
                let config = &self.shared.config;
                if counts_as_miss {
                    let mut sources = self.shared.sources();
                    let s = sources
                        .map
                        .entry(ip)
                        .or_insert_with(|| SourceState::new(now));
                    if !s.charge_miss(now, config.miss_budget_per_minute, config.cooldown) {
                        drop(sources);
                        bump(&stats.cooldowns);
                        bump(&stats.dropped_budget);
                        tracing::warn!(
                            target: "dialtone::security",
                            source_ip = %ip,
                            budget_per_minute = config.miss_budget_per_minute,
                            cooldown_secs = config.cooldown.as_secs_f64(),
                            last_name = name,
                            "tftp: miss budget exhausted (possible file name enumeration); ignoring source for the cool-down"
                        );
                        return;
                    }
                }
                bump(&stats.misses);
                self.refuse(from, peer, name, Outcome::NotFound);
            }
            Lookup::Refused => {
                bump(&stats.refused);
                self.refuse(from, peer, name, Outcome::Refused);
            }
            Lookup::Silent => {
                bump(&stats.dropped_silent);
                self.shared.report(peer, name, Outcome::Silent);
            }
        }
    }

    /// Write requests are refused with ERROR 2, but only to a source the provisioning layer knows.
    fn refuse_write(&mut self, req: &Request<'_>, from: SocketAddr, peer: SocketAddr) {
        if let Lookup::Silent = self.shared.lookup(peer, req.filename) {
            bump(&self.shared.stats.dropped_silent);
            self.shared.report(peer, req.filename, Outcome::Silent);
            return;
        }
        bump(&self.shared.stats.refused);
        self.refuse(from, peer, req.filename, Outcome::Refused);
    }

    /// Answers a request with the ERROR its outcome calls for (`NotFound`: 1, else 2), recorded first:
    /// a client that got the answer always finds it on record.
    fn refuse(&mut self, from: SocketAddr, peer: SocketAddr, name: &str, outcome: Outcome) {
        self.shared.report(peer, name, outcome);
        match outcome {
            Outcome::NotFound => self.reply_error(from, ErrorCode::FileNotFound, "File not found"),
            _ => self.reply_error(from, ErrorCode::AccessViolation, "Access violation"),
        }
    }

    fn reply_error(&mut self, to: SocketAddr, code: ErrorCode, msg: &str) {
        packet::encode_error(&mut self.out, code, msg);
        // Never wait on the send path: if the socket buffer is full the client will retransmit.
        if let Some(l) = &self.listener {
            let _ = l.send_to(&self.out, to);
        }
    }
}

/// Per-source-IP admission state.
#[derive(Debug)]
struct SourceState {
    active: usize,
    window_start: Instant,
    misses: u32,
    cooldown_until: Option<Instant>,
}

impl SourceState {
    fn new(now: Instant) -> Self {
        SourceState {
            active: 0,
            window_start: now,
            misses: 0,
            cooldown_until: None,
        }
    }

    /// True while in cool-down; clears an expired cool-down (the budget starts afresh).
    fn in_cooldown(&mut self, now: Instant) -> bool {
        match self.cooldown_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.cooldown_until = None;
                self.window_start = now;
                self.misses = 0;
                false
            }
            None => false,
        }
    }

    /// Charges one miss; returns false (and starts the cool-down) when the budget is already spent.
    fn charge_miss(&mut self, now: Instant, budget: u32, cooldown: Duration) -> bool {
        if now.duration_since(self.window_start) >= MISS_WINDOW {
            self.window_start = now;
            self.misses = 0;
        }
        if self.misses >= budget {
            self.cooldown_until = Some(now + cooldown);
            self.misses = 0;
            return false;
        }
        self.misses += 1;
        true
    }

    fn idle(&self, now: Instant) -> bool {
        self.active == 0
            && self.cooldown_until.is_none_or(|u| now >= u)
            && (self.misses == 0 || now.duration_since(self.window_start) >= MISS_WINDOW)
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4, so that per-source state and
/// the provisioning layer see one form.
fn canonical(a: SocketAddr) -> SocketAddr {
    if let SocketAddr::V6(v6) = a {
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            return SocketAddr::new(v4.into(), v6.port());
        }
    }
    a
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_budget_and_cooldown() {
        let t0 = Instant::now();
        let mut s = SourceState::new(t0);
        let cd = Duration::from_secs(5);
        assert!(s.charge_miss(t0, 2, cd));
        assert!(s.charge_miss(t0, 2, cd));
        assert!(!s.charge_miss(t0, 2, cd));
        assert!(s.in_cooldown(t0 + Duration::from_secs(4)));
        assert!(!s.in_cooldown(t0 + Duration::from_secs(5)));
        // Budget restored after the cool-down.
        let t1 = t0 + Duration::from_secs(5);
        assert!(s.charge_miss(t1, 2, cd));
        // A new minute window restores the budget too.
        assert!(s.charge_miss(t1, 2, cd));
        assert!(s.charge_miss(t1 + MISS_WINDOW, 2, cd));
    }

    #[test]
    fn canonicalises_mapped_addresses() {
        let m: SocketAddr = "[::ffff:10.1.2.3]:1234".parse().unwrap();
        assert_eq!(canonical(m), "10.1.2.3:1234".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:69".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
