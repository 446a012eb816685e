//! A TFTP read client on tokio (RFC 1350 with options: RFC 2347 OACK, `blksize` RFC 2348, `tsize` and
//! `timeout` RFC 2349, `windowsize` RFC 7440), built for load generation: it discards the payload but
//! counts it, optionally hashes or keeps it, and reports a failure reason instead of an error chain.
//!
//! Each transfer binds a fresh UDP socket to the chosen source address (port 0), so every transfer has its
//! own transfer ID, as a phone's would. The generator shares the machine with the server it measures, so
//! it spends as little as it can per datagram: in lock-step it does not read again only to hear
//! `EAGAIN`, and a transfer has one timer, moved lazily, not one per datagram; its socket is created
//! non-blocking. (The generator's own CPU in a firmware-change storm against dialtone: 7.9-8.1 s against
//! 8.1-10.8 s before, three alternating runs each; within the noise of `bench/run`'s storm rows.)

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

use crate::tftp::packet::{self, Mode, Packet, TransferOptions, DEFAULT_BLKSIZE};

/// How the client talks to the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// The server's request port.
    pub target: SocketAddr,
    /// Requested `blksize` (ignored without `options`).
    pub blksize: u16,
    /// Requested `windowsize` (ignored without `options`).
    pub windowsize: u16,
    /// Retransmission timeout of the client (also sent, rounded up to whole seconds, as `timeout`).
    pub timeout: Duration,
    /// Retransmissions without progress before the transfer is abandoned.
    pub retries: u32,
    /// Send RFC 2347 options (`blksize`, `tsize`, `timeout`, `windowsize`); false sends a plain RRQ.
    pub options: bool,
}

impl ClientConfig {
    /// The options put in the RRQ.
    pub fn request_options(&self) -> TransferOptions {
        if !self.options {
            return TransferOptions::default();
        }
        let secs = self.timeout.as_millis().div_ceil(1000).clamp(1, 255) as u8;
        TransferOptions {
            blksize: Some(self.blksize),
            tsize: Some(0),
            timeout: Some(secs),
            windowsize: Some(self.windowsize),
        }
    }

    /// The largest DATA payload this client accepts.
    fn max_payload(&self) -> u16 {
        if self.options {
            self.blksize
        } else {
            DEFAULT_BLKSIZE
        }
    }
}

/// What to do with the payload besides counting it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// Compute the SHA-256 of the payload.
    pub sha256: bool,
    /// Return the payload itself.
    pub data: bool,
}

/// A completed transfer.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Payload bytes received.
    pub bytes: u64,
    /// DATA blocks received in order (including the final short one).
    pub blocks: u64,
    /// RRQ or ACK retransmissions after a timeout.
    pub retransmits: u32,
    /// Out-of-order or duplicate DATA blocks seen (answered with one ACK of the last in-order block).
    pub out_of_order: u32,
    /// The negotiated block size.
    pub blksize: u16,
    /// The negotiated window size.
    pub windowsize: u16,
    /// SHA-256 of the payload, if asked for.
    pub sha256: Option<[u8; 32]>,
    /// The payload, if asked for.
    pub data: Option<Vec<u8>>,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing came back for the RRQ after all retransmissions (e.g. a server that drops the request).
    NoAnswer,
    /// The transfer started but stalled: retransmissions of the last ACK ran out.
    Timeout,
    /// The server sent ERROR with this code.
    Error {
        /// TFTP error code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// A datagram that is not valid at this point of the transfer.
    BadPacket(&'static str),
    /// The OACK announced a `tsize` that differs from the bytes received.
    SizeMismatch {
        /// `tsize` from the OACK.
        announced: u64,
        /// Bytes received.
        received: u64,
    },
    /// A local socket error (bind, send, receive).
    Io(io::ErrorKind),
}

impl Failure {
    /// A short key to group failures by (no per-file detail, so that counts add up).
    pub fn reason(&self) -> String {
        match self {
            Failure::NoAnswer => "timeout: no answer to RRQ".into(),
            Failure::Timeout => "timeout: transfer stalled".into(),
            Failure::Error { code, .. } => format!("error {code} ({})", error_name(*code)),
            Failure::BadPacket(what) => format!("bad packet: {what}"),
            Failure::SizeMismatch { .. } => "tsize mismatch".into(),
            Failure::Io(kind) => format!("socket: {kind}"),
        }
    }

    /// True for ERROR 1 (file not found).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Failure::Error { code: 1, .. })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error { code, message } => {
                write!(f, "error {code} ({}): {message}", error_name(*code))
            }
            Failure::SizeMismatch {
                announced,
                received,
            } => write!(f, "tsize {announced} announced, {received} bytes received"),
            other => f.write_str(&other.reason()),
        }
    }
}

/// The RFC 1350 / RFC 2347 name of an error code.
pub fn error_name(code: u16) -> &'static str {
    match code {
        0 => "not defined",
        1 => "file not found",
        2 => "access violation",
        3 => "disk full",
        4 => "illegal operation",
        5 => "unknown transfer ID",
        6 => "file exists",
        7 => "no such user",
        8 => "option negotiation refused",
        _ => "unknown code",
    }
}

fn io_failure(e: io::Error) -> Failure {
    Failure::Io(e.kind())
}

/// A transfer's socket, registered with the runtime through `AsyncFd` rather than `tokio::net::UdpSocket`,
/// so that the client can forget a readiness it knows is used up (see [`recv`]).
type Socket = AsyncFd<std::net::UdpSocket>;

/// Binds a non-blocking UDP socket to `source`, port 0, with a 4 MiB receive buffer when `windowed`.
pub fn bind(source: IpAddr, windowed: bool) -> io::Result<Socket> {
    let addr = SocketAddr::new(source, 0);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM.nonblocking(),
        Some(socket2::Protocol::UDP),
    )?;
    // A window of 16 × 8 KiB blocks overflows the kernel's default receive buffer (~208 KiB): without a
    // larger one the client, not the server, would drop blocks and wait for retransmissions. Lock-step
    // transfers have one block in flight and skip the system call.
    if windowed {
        let _ = socket.set_recv_buffer_size(4 << 20);
    }
    socket.bind(&addr.into())?;
    let socket: std::net::UdpSocket = socket.into();
    // SAFETY: a `std::net::UdpSocket` owns its open descriptor until it is dropped, and `as_raw_fd`
    // always returns that descriptor; the `AsyncFd` owns the socket for its whole life.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
    registered.map_err(io::Error::from)
}

/// Sends one datagram. A UDP send does not wait for the peer; a full send buffer is waited out.
async fn send(sock: &Socket, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    loop {
        match sock.get_ref().send_to(buf, to) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Receives one datagram once the socket is readable. With `lock_step`, the caller knows the peer sends
/// nothing more until it answers (lock-step: one block or OACK in flight), so the readiness is cleared
/// after the datagram instead of being used up by a `recvfrom` that only hears `EAGAIN`: readiness is
/// edge-triggered, the answer's arrival raises a new edge. A datagram already queued behind this one (a
/// retransmission) is read at that edge, or by the timer's drain ([`drain`]).
async fn recv(sock: &Socket, buf: &mut [u8], lock_step: bool) -> io::Result<(usize, SocketAddr)> {
    loop {
        let mut ready = sock.readable().await?;
        match ready.try_io(|s| s.get_ref().recv_from(buf)) {
            Ok(Ok(got)) => {
                if lock_step {
                    ready.clear_ready();
                }
                return Ok(got);
            }
            Ok(Err(e)) => return Err(e),
            // `try_io` cleared the readiness: wait for the next edge.
            Err(_would_block) => continue,
        }
    }
}

/// Reads a datagram that is already queued, without waiting: at a timeout, before retransmitting.
fn drain(sock: &Socket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    sock.get_ref().recv_from(buf).ok()
}

/// Reads `name` from the server with an RRQ sent from `source` (mode octet). `rbuf` is a receive buffer
/// reused between transfers.
pub async fn fetch(
    cfg: &ClientConfig,
    source: IpAddr,
    name: &str,
    keep: Keep,
    rbuf: &mut Vec<u8>,
) -> Result<Fetched, Failure> {
    let windowed = cfg.options && cfg.windowsize > 1;
    let sock = bind(source, windowed).map_err(io_failure)?;
    let opts = cfg.request_options();
    let mut rrq = Vec::with_capacity(name.len() + 64);
    packet::encode_rrq(&mut rrq, name, Mode::Octet, &opts);
    send(&sock, &rrq, cfg.target).await.map_err(io_failure)?;

    // One spare byte detects a DATA payload larger than any block size we accept.
    let cap = usize::from(cfg.max_payload().max(DEFAULT_BLKSIZE)) + 5;
    if rbuf.len() < cap {
        rbuf.resize(cap, 0);
    }

    let mut out = Fetched {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        ..Fetched::default()
    };
    let mut hasher = keep.sha256.then(Sha256::new);
    let mut data = keep.data.then(Vec::new);
    let mut peer: Option<SocketAddr> = None;
    let mut tsize: Option<u64> = None;
    // Whether an OACK or the first DATA arrived.
    let mut started = false;
    // The last block received in order (wrapping); 0 before block 1.
    let mut last: u16 = 0;
    // Blocks received in order since the last ACK we sent.
    let mut in_window: u16 = 0;
    // An ACK of `last` was already sent for the current gap (one per gap, RFC 7440 §4).
    let mut gap_acked = false;
    let mut tries = 0u32;
    let mut deadline = Instant::now() + cfg.timeout;
    // One timer for the whole transfer: progress only moves `deadline`, and the timer, when it fires
    // early, is set to it then (no timer registered and cancelled per datagram).
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);

    loop {
        // Lock-step: before the first answer, and with a window of one block.
        let lock_step = !started || out.windowsize == 1;
        let received = tokio::select! {
            biased;
            r = recv(&sock, &mut rbuf[..cap], lock_step) => Some(r),
            () = &mut timer => None,
        };
        // `None`: the transfer timed out with nothing queued.
        let received = match received {
            Some(r) => Some(r),
            None if Instant::now() < deadline => {
                timer.as_mut().reset(deadline);
                continue;
            }
            None => drain(&sock, &mut rbuf[..cap]).map(Ok),
        };
        let (n, from) = match received {
            None => {
                tries += 1;
                if tries > cfg.retries {
                    return Err(if started {
                        Failure::Timeout
                    } else {
                        Failure::NoAnswer
                    });
                }
                out.retransmits += 1;
                match peer {
                    // RFC 1350 §2 / RFC 7440 §4: on timeout the receiver re-acknowledges the last block.
                    Some(p) if started => {
                        in_window = 0;
                        send(&sock, &packet::encode_ack(last), p)
                            .await
                            .map_err(io_failure)?;
                    }
                    _ => {
                        send(&sock, &rrq, cfg.target).await.map_err(io_failure)?;
                    }
                }
                deadline = Instant::now() + cfg.timeout;
                timer.as_mut().reset(deadline);
                continue;
            }
            // An ICMP error reported on the socket; keep waiting for the timer.
            Some(Err(e)) if is_transient(&e) => continue,
            Some(Err(e)) => return Err(io_failure(e)),
            Some(Ok(x)) => x,
        };
        match peer {
            None => peer = Some(from),
            Some(p) if p != from => {
                // RFC 1350 §4: a packet from a stranger gets ERROR 5; the transfer carries on.
                let mut e = Vec::with_capacity(32);
                packet::encode_error(&mut e, packet::ErrorCode::UnknownTid, "unknown transfer ID");
                let _ = sock.get_ref().send_to(&e, from);
                continue;
            }
            Some(_) => {}
        }
        let p = peer.unwrap_or(from);
        let pkt = match packet::decode(&rbuf[..n]) {
            Ok(pkt) => pkt,
            Err(_) => return Err(Failure::BadPacket("undecodable datagram")),
        };
        match pkt {
            Packet::Oack(o) => {
                if started {
                    // A retransmitted OACK: our ACK 0 was lost. Re-acknowledge while no DATA came.
                    if out.blocks == 0 {
                        let _ = send(&sock, &packet::encode_ack(0), p).await;
                    }
                    continue;
                }
                if !cfg.options {
                    return Err(Failure::BadPacket("OACK to a request without options"));
                }
                // RFC 2348 / RFC 7440: the server may only lower what was asked for.
                if let Some(b) = o.blksize {
                    if b > cfg.blksize {
                        return Err(Failure::BadPacket("OACK blksize larger than requested"));
                    }
                }
                if let Some(w) = o.windowsize {
                    if w > cfg.windowsize {
                        return Err(Failure::BadPacket("OACK windowsize larger than requested"));
                    }
                }
                out.blksize = o.blksize.unwrap_or(DEFAULT_BLKSIZE);
                out.windowsize = o.windowsize.unwrap_or(1);
                tsize = o.tsize;
                started = true;
                tries = 0;
                send(&sock, &packet::encode_ack(0), p)
                    .await
                    .map_err(io_failure)?;
                deadline = Instant::now() + cfg.timeout;
            }
            Packet::Data {
                block,
                data: payload,
            } => {
                if !started {
                    // No OACK: the server ignored the options (RFC 2347), so RFC 1350 defaults apply.
                    started = true;
                }
                if payload.len() > usize::from(out.blksize) {
                    return Err(Failure::BadPacket("DATA larger than the block size"));
                }
                if block == last.wrapping_add(1) {
                    out.bytes += payload.len() as u64;
                    out.blocks += 1;
                    if let Some(h) = hasher.as_mut() {
                        h.update(payload);
                    }
                    if let Some(d) = data.as_mut() {
                        d.extend_from_slice(payload);
                    }
                    last = block;
                    tries = 0;
                    gap_acked = false;
                    deadline = Instant::now() + cfg.timeout;
                    let done = payload.len() < usize::from(out.blksize);
                    in_window += 1;
                    if done || in_window >= out.windowsize {
                        in_window = 0;
                        send(&sock, &packet::encode_ack(block), p)
                            .await
                            .map_err(io_failure)?;
                    }
                    if done {
                        break;
                    }
                } else {
                    // Out of order, or a duplicate because our ACK was lost: acknowledge the last block
                    // received in order, once per gap, so the sender restarts from there.
                    out.out_of_order += 1;
                    if !gap_acked {
                        gap_acked = true;
                        in_window = 0;
                        send(&sock, &packet::encode_ack(last), p)
                            .await
                            .map_err(io_failure)?;
                    }
                }
            }
            Packet::Error { code, message } => {
                return Err(Failure::Error {
                    code,
                    message: message.to_owned(),
                });
            }
            Packet::Ack { .. } => return Err(Failure::BadPacket("ACK sent to a reader")),
            Packet::Rrq(_) | Packet::Wrq(_) => {
                return Err(Failure::BadPacket("request sent to a client"))
            }
        }
    }

    if let Some(announced) = tsize {
        if announced != out.bytes {
            return Err(Failure::SizeMismatch {
                announced,
                received: out.bytes,
            });
        }
    }
    out.sha256 = hasher.map(|h| h.finalize().into());
    out.data = data;
    Ok(out)
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
    use tokio::net::UdpSocket;

    fn cfg(options: bool) -> ClientConfig {
        ClientConfig {
            target: "127.0.0.1:69".parse().unwrap(),
            blksize: 1468,
            windowsize: 4,
            timeout: Duration::from_millis(1500),
            retries: 5,
            options,
        }
    }

    #[test]
    fn request_options() {
        let o = cfg(true).request_options();
        assert_eq!(o.blksize, Some(1468));
        assert_eq!(o.tsize, Some(0));
        assert_eq!(o.timeout, Some(2), "rounded up to whole seconds");
        assert_eq!(o.windowsize, Some(4));
        assert!(cfg(false).request_options().is_empty());
    }

    #[test]
    fn failure_reasons_group_by_code() {
        let a = Failure::Error {
            code: 1,
            message: "a".into(),
        };
        let b = Failure::Error {
            code: 1,
            message: "b".into(),
        };
        assert_eq!(a.reason(), b.reason());
        assert_eq!(a.reason(), "error 1 (file not found)");
        assert!(a.is_not_found());
        assert_eq!(Failure::NoAnswer.reason(), "timeout: no answer to RRQ");
    }

    /// A scripted server on loopback: OACK with a lowered block size, then two windows, one duplicate.
    #[tokio::test]
    async fn reads_with_oack_and_window() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = server.local_addr().unwrap();
        let mut c = cfg(true);
        c.target = target;
        c.blksize = 16;
        c.windowsize = 2;
        c.timeout = Duration::from_millis(200);
        let content: Vec<u8> = (0..40u8).collect(); // blocks of 8: 5 full + 1 empty
        let srv_content = content.clone();
        let srv = tokio::spawn(async move {
            let mut buf = [0u8; 600];
            let (n, client) = server.recv_from(&mut buf).await.unwrap();
            match packet::decode(&buf[..n]).unwrap() {
                Packet::Rrq(r) => {
                    assert_eq!(r.filename, "SEP0A0000000001.cnf.xml");
                    assert_eq!(r.options.windowsize, Some(2));
                }
                other => panic!("{other:?}"),
            }
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut out = Vec::new();
            let oack = TransferOptions {
                blksize: Some(8),
                tsize: Some(40),
                windowsize: Some(2),
                ..Default::default()
            };
            packet::encode_oack(&mut out, &oack);
            sock.send_to(&out, client).await.unwrap();
            let (n, _) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!(packet::decode(&buf[..n]).unwrap(), Packet::Ack { block: 0 });
            let blocks: Vec<&[u8]> = srv_content.chunks(8).chain([&[][..]]).collect();
            let mut b = 0usize;
            while b < blocks.len() {
                let end = (b + 2).min(blocks.len());
                for (i, chunk) in blocks[b..end].iter().enumerate() {
                    packet::encode_data(&mut out, (b + i + 1) as u16, chunk);
                    sock.send_to(&out, client).await.unwrap();
                }
                if b == 0 {
                    // A duplicate of block 1 after the window: the client must ignore it (one ACK).
                    packet::encode_data(&mut out, 1, blocks[0]);
                    sock.send_to(&out, client).await.unwrap();
                }
                let (n, _) = sock.recv_from(&mut buf).await.unwrap();
                let Packet::Ack { block } = packet::decode(&buf[..n]).unwrap() else {
                    panic!("expected ACK");
                };
                assert_eq!(usize::from(block), end);
                if b == 0 {
                    // the re-ACK of block 2 for the duplicate
                    let (n, _) = sock.recv_from(&mut buf).await.unwrap();
                    assert_eq!(packet::decode(&buf[..n]).unwrap(), Packet::Ack { block: 2 });
                }
                b = end;
            }
        });
        let mut rbuf = Vec::new();
        let keep = Keep {
            sha256: true,
            data: true,
        };
        let got = fetch(
            &c,
            "127.0.0.1".parse().unwrap(),
            "SEP0A0000000001.cnf.xml",
            keep,
            &mut rbuf,
        )
        .await
        .unwrap();
        srv.await.unwrap();
        assert_eq!(got.bytes, 40);
        assert_eq!(got.blocks, 6);
        assert_eq!((got.blksize, got.windowsize), (8, 2));
        assert_eq!(got.data.as_deref(), Some(&content[..]));
        assert_eq!(got.sha256, Some(Sha256::digest(&content).into()));
        assert_eq!(got.out_of_order, 1);
    }

    #[tokio::test]
    async fn error_and_no_answer() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut c = cfg(false);
        c.target = server.local_addr().unwrap();
        c.timeout = Duration::from_millis(30);
        c.retries = 2;
        let srv = tokio::spawn(async move {
            let mut buf = [0u8; 600];
            let (_, client) = server.recv_from(&mut buf).await.unwrap();
            let mut out = Vec::new();
            packet::encode_error(&mut out, packet::ErrorCode::FileNotFound, "nope");
            server.send_to(&out, client).await.unwrap();
            server
        });
        let mut rbuf = Vec::new();
        let src: IpAddr = "127.0.0.1".parse().unwrap();
        let e = fetch(&c, src, "x", Keep::default(), &mut rbuf)
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let server = srv.await.unwrap();
        // Now the server stays silent: 1 RRQ + 2 retransmissions, then NoAnswer.
        let e = fetch(&c, src, "y", Keep::default(), &mut rbuf)
            .await
            .unwrap_err();
        assert_eq!(e, Failure::NoAnswer);
        let mut buf = [0u8; 600];
        for _ in 0..3 {
            let (n, _) = server.try_recv_from(&mut buf).unwrap();
            assert!(matches!(packet::decode(&buf[..n]), Ok(Packet::Rrq(_))));
        }
    }

    /// Lock-step (plain RRQ, 512-byte blocks): the readiness is cleared after each block, so a duplicate
    /// of block 1 queued behind it is read at the next block's arrival, and nothing waits for a timer.
    /// Then a transfer whose ERROR is queued behind its first block: the timer reads it before
    /// retransmitting, so the server's error is what the transfer reports.
    #[tokio::test]
    async fn lock_step_reads_what_is_queued_behind_a_block() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut c = cfg(false);
        c.target = server.local_addr().unwrap();
        c.timeout = Duration::from_millis(300);
        c.retries = 3;
        let content: Vec<u8> = (0..700u32).map(|i| (i % 251) as u8).collect();
        let srv_content = content.clone();
        let srv = tokio::spawn(async move {
            let mut buf = [0u8; 600];
            let mut out = Vec::new();
            let (_, client) = server.recv_from(&mut buf).await.unwrap();
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            packet::encode_data(&mut out, 1, &srv_content[..512]);
            // Block 1 twice, back to back: the second is queued behind the first.
            sock.send_to(&out, client).await.unwrap();
            sock.send_to(&out, client).await.unwrap();
            let (n, _) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!(packet::decode(&buf[..n]).unwrap(), Packet::Ack { block: 1 });
            packet::encode_data(&mut out, 2, &srv_content[512..]);
            sock.send_to(&out, client).await.unwrap();
            // The re-ACK of block 1 for the duplicate, then the final ACK.
            for want in [1, 2] {
                let (n, _) = sock.recv_from(&mut buf).await.unwrap();
                assert_eq!(
                    packet::decode(&buf[..n]).unwrap(),
                    Packet::Ack { block: want }
                );
            }

            // The second transfer: block 1 and an ERROR right behind it.
            let (_, client) = server.recv_from(&mut buf).await.unwrap();
            packet::encode_data(&mut out, 1, &srv_content[..512]);
            sock.send_to(&out, client).await.unwrap();
            let mut error = Vec::new();
            packet::encode_error(&mut error, packet::ErrorCode::AccessViolation, "gone");
            sock.send_to(&error, client).await.unwrap();
        });
        let mut rbuf = Vec::new();
        let src: IpAddr = "127.0.0.1".parse().unwrap();
        let keep = Keep {
            sha256: false,
            data: true,
        };
        let got = fetch(&c, src, "a", keep, &mut rbuf).await.unwrap();
        assert_eq!(got.data.as_deref(), Some(&content[..]));
        assert_eq!((got.blocks, got.out_of_order), (2, 1));
        assert_eq!(got.retransmits, 0, "a queued datagram waited for the timer");
        let e = fetch(&c, src, "b", Keep::default(), &mut rbuf)
            .await
            .unwrap_err();
        assert!(matches!(e, Failure::Error { code: 2, .. }), "{e}");
        srv.await.unwrap();
    }
}
