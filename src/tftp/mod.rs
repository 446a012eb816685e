//! TFTP server engine (SPEC §5.4): configuration, the `FileSource` seam to the provisioning layer, and
//! re-exports of the server, its counters and the wire codec.
//!
//! Layout: [`packet`] is the pure codec; `transfer` is one read transfer's state machine on its own
//! ephemeral socket; `server` runs one worker thread per core, each with a `SO_REUSEPORT` listening
//! socket and the transfers it started (admission rules, per-source limits, shutdown).

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

pub mod packet;
mod server;
mod transfer;

pub use server::{TftpServer, TftpStats, TftpStatsSnapshot};

/// What the provisioning layer decides for one read request. Must be cheap and synchronous (no I/O): it is
/// called on the receive path.
pub trait FileSource: Send + Sync + 'static {
    /// Decides how to answer a request for `name` from `peer` (IPv4-mapped IPv6 peers are given as IPv4).
    fn lookup(&self, peer: SocketAddr, name: &str) -> Lookup;
    /// Called once when a transfer ends (served, aborted, timed out) or a request is refused, for fetch history/metrics.
    fn report(&self, report: TransferReport);
}

/// The provisioning layer's answer to one request.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Serve these bytes (converted on the fly for `netascii`).
    Serve(bytes::Bytes),
    /// File not found (ERROR 1). `counts_as_miss: false` for names every phone asks for (CTL/ITL/.sgn).
    NotFound {
        /// Whether the miss is charged to the source's per-minute miss budget.
        counts_as_miss: bool,
    },
    /// Refused: ERROR 2 access violation (e.g. bad file name).
    Refused,
    /// No answer at all (source in no tenant network).
    Silent,
}

/// One finished (or refused) request, handed to [`FileSource::report`].
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// The client (IPv4-mapped addresses given as IPv4).
    pub peer: SocketAddr,
    /// The requested file name.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Payload bytes acknowledged by the client (after netascii conversion).
    pub bytes: u64,
    /// The content that was (being) sent, for transfers that started: lets the receiver hash it off the
    /// request path.
    pub data: Option<bytes::Bytes>,
    /// From the request's arrival to the end of the transfer.
    pub duration: Duration,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every block was acknowledged.
    Served,
    /// Answered with ERROR 1.
    NotFound,
    /// Answered with ERROR 2 (refused lookup, or a write request).
    Refused,
    /// The client sent an ERROR, a socket error occurred, or the server shut down before it finished.
    Aborted,
    /// Retransmissions ran out, or the overall transfer deadline passed.
    TimedOut,
    /// The lookup said `Silent`; nothing was sent.
    Silent,
}

/// TFTP engine settings. Defaults are generous because many phones often share one source address.
#[derive(Clone, Debug)]
pub struct TftpConfig {
    /// Listening address; port 0 picks a free port (see [`TftpServer::local_addr`]). `[::]` listens
    /// dual-stack (IPv4 and IPv6).
    pub listen: SocketAddr,
    /// Cap on the negotiated `blksize` (RFC 2348); clamped to 8..=65464. Default 65464.
    pub max_blksize: u16,
    /// Cap on the negotiated `windowsize` (RFC 7440); at least 1. Default 64.
    pub max_windowsize: u16,
    /// Retransmission timeout unless the client negotiates `timeout` (RFC 2349). Default 1 s.
    pub timeout: Duration,
    /// Retransmissions without progress before a transfer is abandoned. Default 5.
    pub retries: u32,
    /// Concurrent transfers per source IP; excess requests are silently dropped. Default 512.
    pub max_transfers_per_source: usize,
    /// Counting misses (ERROR 1) per source IP per minute before the source is ignored. Default 600.
    pub miss_budget_per_minute: u32,
    /// How long a source that spent its miss budget is ignored. Default 60 s.
    pub cooldown: Duration,
    /// Receive buffer requested for each listening socket: `SO_RCVBUFFORCE` with CAP_NET_ADMIN, else
    /// `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max` (a warning says so). Default 8 MiB.
    pub recv_buffer_bytes: usize,
    /// On shutdown, how long transfers in flight may take to finish before they are aborted. Default 10 s.
    pub shutdown_grace: Duration,
    /// Worker threads, each with its own listening socket (SO_REUSEPORT); 0 = [`default_workers`].
    /// Default 0.
    pub workers: usize,
}

/// Worker threads when none are configured, on a machine of `cores` cores: one per core but one, and at
/// least one. The core left over is for what else serves the same requests: the kernel's share of each
/// datagram, the fetch-event writer and its PostgreSQL, the HTTP and API workers. Measured on 2 cores
/// (BENCHMARKS.md, 2026-12-06): one worker instead of two served the 10,000-phone current-firmware storm
/// in 1.59 s instead of 2.00 s (transfer p99 28 against 79 ms) and small files at 35,700 against 29,800
/// transfers/s: the second worker halves what each finds per wake-up, and the wake-ups (64,800 context
/// switches against 7,800 in a storm) cost more than the second core gives.
pub fn default_workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            listen: SocketAddr::from((Ipv6Addr::UNSPECIFIED, 69)),
            max_blksize: packet::MAX_BLKSIZE,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            retries: 5,
            max_transfers_per_source: 512,
            miss_budget_per_minute: 600,
            cooldown: Duration::from_secs(60),
            recv_buffer_bytes: 8 << 20,
            shutdown_grace: Duration::from_secs(10),
            workers: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_core_is_left_to_the_rest_of_the_server_and_there_is_always_a_worker() {
        assert_eq!(super::default_workers(0), 1);
        assert_eq!(super::default_workers(1), 1);
        assert_eq!(super::default_workers(2), 1);
        assert_eq!(super::default_workers(8), 7);
    }
}
