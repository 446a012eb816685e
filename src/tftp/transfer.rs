//! One read transfer: option negotiation (RFC 2347/2348/2349/7440), netascii conversion, and the
//! windowed send / acknowledge / retransmit state machine, driven on its own ephemeral UDP socket.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::packet::{
    self, Mode, Packet, TransferOptions, DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE,
};
use super::Outcome;

/// Sent to a stranger that talks to a transfer's port (RFC 1350 §4: "an error packet should be sent to
/// the source of the incorrect packet, while not disturbing the transfer").
const ERROR_UNKNOWN_TID: &[u8] = b"\x00\x05\x00\x05Unknown transfer ID\x00";

/// Base of the overall deadline; see [`overall_deadline`].
const DEADLINE_BASE: Duration = Duration::from_secs(60);
/// Per-block allowance of the overall deadline: enough for one round trip of 100 ms per block even
/// without `windowsize`, so only a client that drips acknowledgements runs into it.
const DEADLINE_PER_BLOCK: Duration = Duration::from_millis(100);

/// Everything one transfer needs; built by the listener, consumed by [`run`].
pub(crate) struct TransferSpec {
    /// The client's address exactly as the request arrived (IPv4-mapped on a dual-stack socket).
    pub peer: SocketAddr,
    /// Local IP of the listening socket; the transfer socket binds to it with port 0.
    pub local_ip: IpAddr,
    /// File content (octet form).
    pub data: Bytes,
    /// Requested mode.
    pub mode: Mode,
    /// Options the client asked for (already validated by the decoder).
    pub requested: TransferOptions,
    /// Cap on `blksize`.
    pub max_blksize: u16,
    /// Cap on `windowsize`.
    pub max_windowsize: u16,
    /// Retransmission timeout unless negotiated.
    pub timeout: Duration,
    /// Retransmissions without progress before giving up.
    pub retries: u32,
}

/// How a transfer ended and how many payload bytes the client acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransferResult {
    pub outcome: Outcome,
    pub bytes: u64,
}

/// Negotiated transfer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    /// The OACK to send, or `None` to start with DATA 1 (no option accepted, RFC 2347).
    pub oack: Option<TransferOptions>,
}

/// Decides which requested options to accept.
///
/// - `blksize` (RFC 2348): accepted, lowered to the configured cap if larger.
/// - `tsize` (RFC 2349): answered with the size that will be transferred.
/// - `timeout` (RFC 2349): accepted as is (the server must not change it) and used as the
///   retransmission timeout.
/// - `windowsize` (RFC 7440): accepted, lowered to the configured cap if larger.
pub(crate) fn negotiate(
    req: &TransferOptions,
    size: u64,
    max_blksize: u16,
    max_windowsize: u16,
    default_timeout: Duration,
) -> Negotiated {
    let cap_blk = max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
    let cap_win = max_windowsize.max(1);
    let mut oack = TransferOptions::default();
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: default_timeout,
        oack: None,
    };
    if let Some(b) = req.blksize {
        n.blksize = b.min(cap_blk);
        oack.blksize = Some(n.blksize);
    }
    if req.tsize.is_some() {
        oack.tsize = Some(size);
    }
    if let Some(t) = req.timeout {
        n.timeout = Duration::from_secs(u64::from(t));
        oack.timeout = Some(t);
    }
    if let Some(w) = req.windowsize {
        n.windowsize = w.min(cap_win);
        oack.windowsize = Some(n.windowsize);
    }
    if !oack.is_empty() {
        n.oack = Some(oack);
    }
    n
}

/// Converts to netascii (RFC 764 as used by RFC 1350): LF becomes CR LF and a bare CR becomes CR NUL.
pub(crate) fn to_netascii(data: &[u8]) -> Bytes {
    let extra = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    if extra == 0 {
        return Bytes::copy_from_slice(data);
    }
    let mut out = Vec::with_capacity(data.len() + extra);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    out.into()
}

/// Number of DATA blocks for `len` bytes: always one more than the full blocks, so a size that is an
/// exact multiple of the block size ends with an empty block (RFC 1350 §6).
pub(crate) fn block_count(len: u64, blksize: u16) -> u64 {
    len / u64::from(blksize) + 1
}

/// The transfer's overall deadline: generous, but finite even for a client that keeps acknowledging
/// just before each retransmission timeout.
fn overall_deadline(start: Instant, blocks: u64) -> Instant {
    let per_block = DEADLINE_PER_BLOCK.saturating_mul(u32::try_from(blocks).unwrap_or(u32::MAX));
    start + DEADLINE_BASE.saturating_add(per_block)
}

/// Binds the transfer's socket to `local_ip` and an ephemeral port (the server's transfer ID, RFC
/// 1350 §4). On a dual-stack wildcard listener the socket is dual-stack too.
fn bind_ephemeral(local_ip: IpAddr) -> io::Result<UdpSocket> {
    let domain = if local_ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM.nonblocking(), Some(Protocol::UDP))?;
    if domain == Domain::IPV6 && local_ip.is_unspecified() {
        sock.set_only_v6(false)?;
    }
    sock.bind(&SocketAddr::new(local_ip, 0).into())?;
    UdpSocket::from_std(sock.into())
}

/// Runs one read transfer to its end. `first_ack` is set when the client's first valid ACK arrives (the
/// listener stops treating a repeated RRQ from the same port as a duplicate from then on).
pub(crate) async fn run(spec: TransferSpec, first_ack: Arc<AtomicBool>) -> TransferResult {
    let start = Instant::now();
    let data = match spec.mode {
        Mode::Octet => spec.data,
        Mode::NetAscii => to_netascii(&spec.data),
    };
    let len = data.len() as u64;
    let neg = negotiate(
        &spec.requested,
        len,
        spec.max_blksize,
        spec.max_windowsize,
        spec.timeout,
    );
    let sock = match bind_ephemeral(spec.local_ip) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(peer = %spec.peer, error = %e, "tftp: cannot bind transfer socket");
            return TransferResult {
                outcome: Outcome::Aborted,
                bytes: 0,
            };
        }
    };
    let mut t = Transfer {
        sock,
        peer: spec.peer,
        data,
        blksize: neg.blksize,
        windowsize: neg.windowsize,
        blocks: block_count(len, neg.blksize),
        acked: 0,
        sent_upto: 0,
        buf: Vec::with_capacity(4 + usize::from(neg.blksize)),
    };
    let outcome = match t
        .drive(
            &neg,
            spec.retries,
            overall_deadline(start, t.blocks),
            &first_ack,
        )
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(peer = %spec.peer, error = %e, "tftp: transfer socket error");
            Outcome::Aborted
        }
    };
    let bytes = if outcome == Outcome::Served {
        len
    } else {
        (t.acked * u64::from(t.blksize)).min(len)
    };
    TransferResult { outcome, bytes }
}

/// State of one transfer. Blocks are counted from 1 as `u64`; the wire number is the low 16 bits, so
/// files over 65535 blocks roll over to 0 as most clients expect.
struct Transfer {
    sock: UdpSocket,
    peer: SocketAddr,
    data: Bytes,
    blksize: u16,
    windowsize: u16,
    /// Total number of DATA blocks, including a final short (possibly empty) one.
    blocks: u64,
    /// Blocks 1..=acked are acknowledged.
    acked: u64,
    /// Highest block sent in the current window.
    sent_upto: u64,
    /// The one send buffer of the transfer: OACK first, then header + payload of each block.
    buf: Vec<u8>,
}

impl Transfer {
    async fn drive(
        &mut self,
        neg: &Negotiated,
        retries: u32,
        deadline: Instant,
        first_ack: &AtomicBool,
    ) -> io::Result<Outcome> {
        let mut rbuf = [0u8; 516];
        let mut awaiting_oack = false;
        if let Some(oack) = &neg.oack {
            // RFC 2347: the OACK is acknowledged with ACK 0; the buffer keeps it for retransmission.
            packet::encode_oack(&mut self.buf, oack);
            self.sock.send_to(&self.buf, self.peer).await?;
            awaiting_oack = true;
        } else {
            self.send_window(1).await?;
        }
        let rto = neg.timeout;
        let sleep = tokio::time::sleep_until(deadline.min(Instant::now() + rto));
        tokio::pin!(sleep);
        let mut tries = 0u32;
        loop {
            tokio::select! {
                biased;
                r = self.sock.recv_from(&mut rbuf) => {
                    let (n, from) = match r {
                        Ok(x) => x,
                        // ICMP-induced errors are transient on UDP; keep waiting.
                        Err(e) if is_transient(&e) => continue,
                        Err(e) => return Err(e),
                    };
                    if from != self.peer {
                        // RFC 1350 §4: wrong TID; tell the stranger, carry on.
                        let _ = self.sock.try_send_to(ERROR_UNKNOWN_TID, from);
                        continue;
                    }
                    match packet::decode(&rbuf[..n]) {
                        Ok(Packet::Ack { block }) => {
                            if awaiting_oack {
                                if block != 0 {
                                    continue;
                                }
                                awaiting_oack = false;
                                first_ack.store(true, Ordering::Relaxed);
                                self.buf.clear();
                                self.buf.resize(4 + usize::from(self.blksize), 0);
                                self.send_window(1).await?;
                            } else {
                                // Map the 16-bit block number into the outstanding window; anything else
                                // (a duplicate or stale ACK) is ignored rather than answered, which
                                // avoids the Sorcerer's Apprentice bug (RFC 1123 §4.2.3.1). A lost
                                // window is resent by the timer.
                                let rel = u64::from(block.wrapping_sub(self.acked as u16));
                                if rel == 0 || rel > self.sent_upto - self.acked {
                                    continue;
                                }
                                first_ack.store(true, Ordering::Relaxed);
                                self.acked += rel;
                                if self.acked == self.blocks {
                                    // The final ACK: done (RFC 1350 §6).
                                    return Ok(Outcome::Served);
                                }
                                // RFC 7440 §4: the next window starts after the acknowledged block.
                                self.send_window(self.acked + 1).await?;
                            }
                            tries = 0;
                            sleep.as_mut().reset(deadline.min(Instant::now() + rto));
                        }
                        // RFC 1350 §7: an ERROR from the client ends the transfer, no reply.
                        Ok(Packet::Error { .. }) => return Ok(Outcome::Aborted),
                        _ => {}
                    }
                }
                () = &mut sleep => {
                    if Instant::now() >= deadline {
                        return Ok(Outcome::TimedOut);
                    }
                    tries += 1;
                    if tries > retries {
                        return Ok(Outcome::TimedOut);
                    }
                    if awaiting_oack {
                        self.sock.send_to(&self.buf, self.peer).await?;
                    } else {
                        // Resend the whole unacknowledged part of the window.
                        self.send_window(self.acked + 1).await?;
                    }
                    sleep.as_mut().reset(deadline.min(Instant::now() + rto));
                }
            }
        }
    }

    /// Sends blocks `from..` up to the window size or the last block, with one `send_to` each, reusing
    /// the transfer's buffer.
    async fn send_window(&mut self, from: u64) -> io::Result<()> {
        if self.buf.len() < 4 + usize::from(self.blksize) {
            self.buf.resize(4 + usize::from(self.blksize), 0);
        }
        let to = (from + u64::from(self.windowsize) - 1).min(self.blocks);
        let bs = u64::from(self.blksize);
        let len = self.data.len() as u64;
        for b in from..=to {
            let off = ((b - 1) * bs).min(len) as usize;
            let end = (b * bs).min(len) as usize;
            let n = end - off;
            packet::put_data_header(&mut self.buf, b as u16);
            self.buf[4..4 + n].copy_from_slice(&self.data[off..end]);
            self.sock.send_to(&self.buf[..4 + n], self.peer).await?;
        }
        self.sent_upto = to;
        Ok(())
    }
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
    fn netascii_conversion() {
        assert_eq!(&to_netascii(b"a\nb\rc\r\n")[..], b"a\r\nb\r\0c\r\0\r\n");
        assert_eq!(&to_netascii(b"plain")[..], b"plain");
        assert_eq!(&to_netascii(b"")[..], b"");
    }

    #[test]
    fn block_counts_include_final_short_block() {
        assert_eq!(block_count(0, 512), 1);
        assert_eq!(block_count(511, 512), 1);
        assert_eq!(block_count(512, 512), 2);
        assert_eq!(block_count(1500, 512), 3);
        assert_eq!(block_count(1536, 512), 4);
    }

    #[test]
    fn negotiation() {
        let t = Duration::from_secs(1);
        let none = negotiate(&TransferOptions::default(), 10, 65464, 64, t);
        assert_eq!(
            none,
            Negotiated {
                blksize: 512,
                windowsize: 1,
                timeout: t,
                oack: None
            }
        );
        let req = TransferOptions {
            blksize: Some(65464),
            tsize: Some(0),
            timeout: Some(3),
            windowsize: Some(200),
        };
        let n = negotiate(&req, 1234, 1468, 16, t);
        assert_eq!(n.blksize, 1468);
        assert_eq!(n.windowsize, 16);
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(
            n.oack,
            Some(TransferOptions {
                blksize: Some(1468),
                tsize: Some(1234),
                timeout: Some(3),
                windowsize: Some(16)
            })
        );
        // Nonsense caps are clamped into the valid ranges.
        let n = negotiate(&req, 0, 0, 0, t);
        assert_eq!((n.blksize, n.windowsize), (8, 1));
    }
}
