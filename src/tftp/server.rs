//! The TFTP listening loop: socket setup, admission rules (silence, miss budget and cool-down,
//! per-source concurrency cap, duplicate requests, write refusal), one task per transfer, counters and
//! graceful shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::{Id as TaskId, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::packet::{self, ErrorCode, Packet, Request};
use super::transfer::{self, TransferResult, TransferSpec};
use super::{FileSource, Lookup, Outcome, TftpConfig, TransferReport};

/// Length of the miss-budget window.
const MISS_WINDOW: Duration = Duration::from_secs(60);
/// How often idle per-source entries are swept.
const GC_INTERVAL: Duration = Duration::from_secs(30);
/// Receive buffer of the listening loop; requests are far smaller (a longer datagram is truncated and
/// then fails to decode).
const LISTEN_BUF: usize = 2048;

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
    socket: UdpSocket,
    local_addr: SocketAddr,
    config: TftpConfig,
    source: Arc<dyn FileSource>,
    stats: Arc<TftpStats>,
}

impl std::fmt::Debug for TftpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TftpServer")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TftpServer {
    /// Creates and binds the listening socket (SO_REUSEADDR, SO_RCVBUF as configured, dual-stack when
    /// the address is `[::]`). Port 0 picks a free port.
    pub async fn build(config: TftpConfig, source: Arc<dyn FileSource>) -> io::Result<TftpServer> {
        let listen = config.listen;
        let sock = Socket::new(
            Domain::for_address(listen),
            Type::DGRAM.nonblocking(),
            Some(Protocol::UDP),
        )?;
        sock.set_reuse_address(true)?;
        if listen.is_ipv6() && listen.ip().is_unspecified() {
            sock.set_only_v6(false)?;
        }
        if let Err(e) = sock.set_recv_buffer_size(config.recv_buffer_bytes) {
            tracing::warn!(error = %e, "tftp: cannot set SO_RCVBUF");
        }
        sock.bind(&listen.into())?;
        let socket = UdpSocket::from_std(sock.into())?;
        let local_addr = socket.local_addr()?;
        Ok(TftpServer {
            socket,
            local_addr,
            config,
            source,
            stats: Arc::new(TftpStats::default()),
        })
    }

    /// The address actually bound (with the real port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine's counters; the `Arc` stays valid after the server stops.
    pub fn stats(&self) -> Arc<TftpStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting requests (the listening socket is
    /// closed), lets transfers in flight finish for up to `shutdown_grace`, aborts the rest and returns.
    ///
    /// The loop only decodes, applies the admission rules, calls the synchronous lookup and spawns a
    /// task per transfer; it never waits on a transfer. Transfers run on whatever runtime this is
    /// awaited in, so a multi-thread runtime spreads them over every core.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> io::Result<()> {
        let TftpServer {
            socket,
            local_addr,
            config,
            source,
            stats,
        } = self;
        tracing::info!(%local_addr, "tftp: listening");
        let mut l = Listener {
            local_ip: local_addr.ip(),
            config,
            source,
            stats,
            sources: HashMap::new(),
            pending: HashMap::new(),
            tasks: HashMap::new(),
            out: Vec::with_capacity(64),
            next_gc: Instant::now() + GC_INTERVAL,
        };
        let mut set: JoinSet<Verdict> = JoinSet::new();
        let mut buf = vec![0u8; LISTEN_BUF];
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            while let Some(r) = set.try_join_next_with_id() {
                l.finished(r, Some(&socket));
            }
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => l.handle(&socket, &buf[..n], from, &mut set),
                    Err(e) if is_transient(&e) => {}
                    Err(e) => {
                        // Keep reading whatever happens; pause briefly so a persistent error cannot spin.
                        tracing::warn!(error = %e, "tftp: receive error on listening socket");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(r) = set.join_next_with_id(), if !set.is_empty() => l.finished(r, Some(&socket)),
            }
        }
        // Close the port at once: new requests get ICMP "port unreachable", and requests whose lookup is
        // still running get no reply (their clients retry elsewhere); transfers in flight go on.
        drop(socket);
        let in_flight = set.len();
        tracing::info!(in_flight, "tftp: shutting down");
        let deadline = tokio::time::Instant::now() + l.config.shutdown_grace;
        loop {
            match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
                Ok(Some(r)) => l.finished(r, None),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        remaining = set.len(),
                        "tftp: grace period over, aborting transfers"
                    );
                    set.abort_all();
                    while let Some(r) = set.join_next_with_id().await {
                        l.finished(r, None);
                    }
                    break;
                }
            }
        }
        Ok(())
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

/// How a request task ended, for the listening loop to settle.
#[derive(Debug)]
enum Verdict {
    /// The file was (being) sent; the transfer reported itself.
    Transferred,
    /// Nothing to send: "file not found", charged to the miss budget when it counts.
    NotFound {
        /// Whether it spends the source's miss budget.
        counts_as_miss: bool,
    },
    /// Refused: ERROR 2.
    Refused,
    /// No answer at all.
    Silent,
}

/// A transfer that has not yet received its first ACK, keyed by the client's address and port.
struct Pending {
    task: TaskId,
    name: Box<str>,
    first_ack: Arc<AtomicBool>,
}

/// State owned by the listening loop (no locks: transfers report back through the `JoinSet`).
struct Listener {
    local_ip: IpAddr,
    config: TftpConfig,
    source: Arc<dyn FileSource>,
    stats: Arc<TftpStats>,
    sources: HashMap<IpAddr, SourceState>,
    pending: HashMap<SocketAddr, Pending>,
    /// Running request tasks (lookup, then the transfer): raw peer address, canonical peer, file name.
    tasks: HashMap<TaskId, (SocketAddr, SocketAddr, Box<str>)>,
    /// Reused buffer for ERROR replies.
    out: Vec<u8>,
    next_gc: Instant,
}

impl Listener {
    fn handle(
        &mut self,
        socket: &UdpSocket,
        pkt: &[u8],
        from: SocketAddr,
        set: &mut JoinSet<Verdict>,
    ) {
        match packet::opcode(pkt) {
            // Never answer a response sent to the listening port (SPEC §5.4).
            Some(packet::OP_DATA | packet::OP_ACK | packet::OP_ERROR | packet::OP_OACK) => {
                bump(&self.stats.dropped_response);
                return;
            }
            Some(packet::OP_RRQ | packet::OP_WRQ) => {}
            _ => {
                bump(&self.stats.dropped_malformed);
                return;
            }
        }
        let (req, write) = match packet::decode(pkt) {
            Ok(Packet::Rrq(r)) => (r, false),
            Ok(Packet::Wrq(r)) => (r, true),
            _ => {
                bump(&self.stats.dropped_malformed);
                return;
            }
        };
        bump(&self.stats.requests);
        let now = Instant::now();
        if now >= self.next_gc {
            self.sources.retain(|_, s| !s.idle(now));
            self.next_gc = now + GC_INTERVAL;
        }
        let peer = canonical(from);
        let ip = peer.ip();
        if self
            .sources
            .get_mut(&ip)
            .is_some_and(|s| s.in_cooldown(now))
        {
            bump(&self.stats.dropped_budget);
            return;
        }
        if write {
            self.refuse_write(socket, &req, from, peer);
            return;
        }
        if let Some(p) = self.pending.get(&from) {
            if *p.name == *req.filename && !p.first_ack.load(Ordering::Relaxed) {
                // A retransmitted RRQ while its transfer is starting: the transfer answers it.
                bump(&self.stats.duplicates);
                return;
            }
        }
        let active = self.sources.get(&ip).map_or(0, |s| s.active);
        if active >= self.config.max_transfers_per_source {
            bump(&self.stats.dropped_concurrency);
            return;
        }
        // The lookup (which may render a file) runs in the request's own task, on any core: the
        // listening loop only admits, and settles misses when the task reports back (`finished`).
        self.spawn(&req, from, peer, now, set);
    }

    /// Settles a request whose lookup found nothing to send: the miss budget, the reply, the report.
    fn settle(
        &mut self,
        socket: Option<&UdpSocket>,
        from: SocketAddr,
        peer: SocketAddr,
        name: &str,
        verdict: Verdict,
    ) {
        let now = Instant::now();
        let ip = peer.ip();
        match verdict {
            Verdict::Transferred => {}
            Verdict::NotFound { counts_as_miss } => {
                if counts_as_miss {
                    let s = self
                        .sources
                        .entry(ip)
                        .or_insert_with(|| SourceState::new(now));
                    if !s.charge_miss(
                        now,
                        self.config.miss_budget_per_minute,
                        self.config.cooldown,
                    ) {
                        bump(&self.stats.cooldowns);
                        bump(&self.stats.dropped_budget);
                        tracing::warn!(
                            target: "dialtone::security",
                            source_ip = %ip,
                            budget_per_minute = self.config.miss_budget_per_minute,
                            cooldown_secs = self.config.cooldown.as_secs_f64(),
                            last_name = name,
                            "tftp: miss budget exhausted (possible file name enumeration); ignoring source for the cool-down"
                        );
                        return;
                    }
                }
                if self
                    .sources
                    .get_mut(&ip)
                    .is_some_and(|s| s.in_cooldown(now))
                {
                    // Another miss of this source started the cool-down while this lookup ran.
                    bump(&self.stats.dropped_budget);
                    return;
                }
                bump(&self.stats.misses);
                if let Some(socket) = socket {
                    self.reply_error(socket, from, ErrorCode::FileNotFound, "File not found");
                }
                self.report(peer, name, Outcome::NotFound);
            }
            Verdict::Refused => {
                bump(&self.stats.refused);
                if let Some(socket) = socket {
                    self.reply_error(socket, from, ErrorCode::AccessViolation, "Access violation");
                }
                self.report(peer, name, Outcome::Refused);
            }
            Verdict::Silent => {
                bump(&self.stats.dropped_silent);
                self.report(peer, name, Outcome::Silent);
            }
        }
    }

    /// Write requests are refused with ERROR 2, but only to a source the provisioning layer knows.
    fn refuse_write(
        &mut self,
        socket: &UdpSocket,
        req: &Request<'_>,
        from: SocketAddr,
        peer: SocketAddr,
    ) {
        if let Lookup::Silent = self.source.lookup(peer, req.filename) {
            bump(&self.stats.dropped_silent);
            self.report(peer, req.filename, Outcome::Silent);
            return;
        }
        bump(&self.stats.refused);
        self.reply_error(socket, from, ErrorCode::AccessViolation, "Access violation");
        self.report(peer, req.filename, Outcome::Refused);
    }

    fn spawn(
        &mut self,
        req: &Request<'_>,
        from: SocketAddr,
        peer: SocketAddr,
        now: Instant,
        set: &mut JoinSet<Verdict>,
    ) {
        let first_ack = Arc::new(AtomicBool::new(false));
        let source = self.source.clone();
        let stats = self.stats.clone();
        let name: Box<str> = req.filename.into();
        let task_name = name.clone();
        let (mode, requested) = (req.mode, req.options);
        let (local_ip, config) = (self.local_ip, self.config.clone());
        let flag = first_ack.clone();
        let handle = set.spawn(async move {
            let data = match source.lookup(peer, &task_name) {
                Lookup::Serve(data) => data,
                Lookup::NotFound { counts_as_miss } => return Verdict::NotFound { counts_as_miss },
                Lookup::Refused => return Verdict::Refused,
                Lookup::Silent => return Verdict::Silent,
            };
            let spec = TransferSpec {
                peer: from,
                local_ip,
                data,
                mode,
                requested,
                max_blksize: config.max_blksize,
                max_windowsize: config.max_windowsize,
                timeout: config.timeout,
                retries: config.retries,
            };
            stats.transfers_in_flight.fetch_add(1, Ordering::Relaxed);
            // The guard reports the transfer exactly once, also when the task is aborted at shutdown.
            let mut guard = ReportGuard {
                source,
                stats,
                peer,
                name: task_name.into(),
                start: now,
                data: spec.data.clone(),
                result: None,
            };
            guard.result = Some(transfer::run(spec, flag).await);
            Verdict::Transferred
        });
        self.tasks.insert(handle.id(), (from, peer, name.clone()));
        self.pending.insert(
            from,
            Pending {
                task: handle.id(),
                name,
                first_ack,
            },
        );
        self.sources
            .entry(peer.ip())
            .or_insert_with(|| SourceState::new(now))
            .active += 1;
    }

    /// Bookkeeping when a request task ends (normally, aborted or panicked), then its verdict settled.
    fn finished(&mut self, r: Result<(TaskId, Verdict), JoinError>, socket: Option<&UdpSocket>) {
        let (id, verdict) = match r {
            Ok((id, v)) => (id, Some(v)),
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(error = %e, "tftp: request task panicked");
                }
                (e.id(), None)
            }
        };
        let Some((from, peer, name)) = self.tasks.remove(&id) else {
            return;
        };
        if self.pending.get(&from).is_some_and(|p| p.task == id) {
            self.pending.remove(&from);
        }
        if let Some(s) = self.sources.get_mut(&peer.ip()) {
            s.active = s.active.saturating_sub(1);
        }
        if let Some(v) = verdict {
            self.settle(socket, from, peer, &name, v);
        }
    }

    fn reply_error(&mut self, socket: &UdpSocket, to: SocketAddr, code: ErrorCode, msg: &str) {
        packet::encode_error(&mut self.out, code, msg);
        // Never wait on the send path: if the socket buffer is full the client will retransmit.
        let _ = socket.try_send_to(&self.out, to);
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
}

/// Reports a transfer's end exactly once, even if its task is aborted at shutdown or panics.
struct ReportGuard {
    source: Arc<dyn FileSource>,
    stats: Arc<TftpStats>,
    peer: SocketAddr,
    name: String,
    start: Instant,
    data: bytes::Bytes,
    result: Option<TransferResult>,
}

impl Drop for ReportGuard {
    fn drop(&mut self) {
        let TransferResult { outcome, bytes } = self.result.unwrap_or(TransferResult {
            outcome: Outcome::Aborted,
            bytes: 0,
        });
        self.stats
            .transfers_in_flight
            .fetch_sub(1, Ordering::Relaxed);
        bump(match outcome {
            Outcome::Served => &self.stats.served,
            Outcome::TimedOut => &self.stats.timed_out,
            _ => &self.stats.aborted,
        });
        self.source.report(TransferReport {
            peer: self.peer,
            name: std::mem::take(&mut self.name),
            outcome,
            bytes,
            duration: self.start.elapsed(),
            data: Some(self.data.clone()),
        });
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
