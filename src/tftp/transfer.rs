//! One read transfer: option negotiation (RFC 2347/2348/2349/7440), netascii conversion, and the
//! windowed send / acknowledge / retransmit state machine on its own ephemeral UDP socket. Synchronous:
//! the worker thread that owns the socket calls it on readiness and on its timer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};

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
pub(crate) fn bind_ephemeral(local_ip: IpAddr) -> io::Result<UdpSocket> {
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
    Ok(UdpSocket::from_std(sock.into()))
}

/// What a transfer wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep going; the retransmission timer is at [`Transfer::timer_at`].
    Continue,
    /// Finished this way.
    Done(Outcome),
}

/// State of one read transfer, driven by the worker that owns its socket (passed to each call): [`Transfer::start`], then
/// [`Transfer::on_readable`] for datagrams and [`Transfer::on_timer`] when `timer_at` passes. Blocks are
/// counted from 1 as `u64`; the wire number is the low 16 bits, so files over 65535 blocks roll over to
/// 0 as most clients expect.
pub(crate) struct Transfer {
    pub peer: SocketAddr,
    /// The content as sent (netascii already converted).
    pub data: Bytes,
    blksize: u16,
    windowsize: u16,
    /// The OACK still to be acknowledged (with ACK 0), kept for retransmission.
    oack: Option<TransferOptions>,
    rto: Duration,
    retries: u32,
    tries: u32,
    /// Total number of DATA blocks, including a final short (possibly empty) one.
    blocks: u64,
    /// Blocks 1..=acked are acknowledged.
    acked: u64,
    /// Highest block sent in the current window.
    sent_upto: u64,
    /// Whether the client's first valid ACK arrived (until then a repeated RRQ is a duplicate).
    pub first_ack: bool,
    /// When the next retransmission is due (never after `deadline`).
    pub timer_at: Instant,
    deadline: Instant,
    /// Windows go out with UDP GSO until the kernel refuses it for this transfer (see
    /// [`send_datagrams`]).
    gso: bool,
}

impl Transfer {
    /// Negotiates and sends the first packet (OACK or DATA 1) on `sock`, using `buf`.
    pub(crate) fn start(
        spec: TransferSpec,
        sock: &UdpSocket,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> io::Result<Transfer> {
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
        let blocks = block_count(len, neg.blksize);
        let deadline = overall_deadline(now, blocks);
        let mut t = Transfer {
            peer: spec.peer,
            data,
            blksize: neg.blksize,
            windowsize: neg.windowsize,
            oack: neg.oack,
            rto: neg.timeout,
            retries: spec.retries,
            tries: 0,
            blocks,
            acked: 0,
            sent_upto: 0,
            first_ack: false,
            timer_at: deadline.min(now + neg.timeout),
            deadline,
            gso: true,
        };
        t.send_first(sock, buf)?;
        Ok(t)
    }

    /// Payload bytes the client acknowledged.
    pub(crate) fn bytes_acked(&self, outcome: Outcome) -> u64 {
        let len = self.data.len() as u64;
        if outcome == Outcome::Served {
            len
        } else {
            (self.acked * u64::from(self.blksize)).min(len)
        }
    }

    fn send_first(&mut self, sock: &UdpSocket, buf: &mut Vec<u8>) -> io::Result<()> {
        match &self.oack {
            // RFC 2347: the OACK is acknowledged with ACK 0.
            Some(oack) => {
                packet::encode_oack(buf, oack);
                send(sock, buf, self.peer)
            }
            None => self.send_window(sock, 1),
        }
    }

    /// Reads the datagrams waiting on the transfer socket, up to the first ACK that moves the transfer
    /// on. It stops there without the extra `recvfrom` that would only say "nothing more" (a third of the
    /// system calls per block): whatever still waits arrived before the window just sent, so it can only
    /// be a duplicate or stale, and the next real ACK queues behind it and raises a new readiness event
    /// (the kernel signals every arriving datagram), so the stale one is read and ignored then.
    pub(crate) fn on_readable(&mut self, sock: &UdpSocket, now: Instant) -> io::Result<Step> {
        let mut rbuf = [0u8; 516];
        loop {
            let (n, from) = match sock.recv_from(&mut rbuf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Continue),
                // ICMP-induced errors are transient on UDP; keep reading.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            };
            if from != self.peer {
                // RFC 1350 §4: wrong TID; tell the stranger, carry on.
                let _ = sock.send_to(ERROR_UNKNOWN_TID, from);
                continue;
            }
            match packet::decode(&rbuf[..n]) {
                Ok(Packet::Ack { block }) => {
                    if let Some(step) = self.on_ack(sock, block, now)? {
                        return Ok(step);
                    }
                }
                // RFC 1350 §7: an ERROR from the client ends the transfer, no reply.
                Ok(Packet::Error { .. }) => return Ok(Step::Done(Outcome::Aborted)),
                _ => {}
            }
        }
    }

    /// Handles an ACK from the peer: `None` when it is a duplicate or stale one and changes nothing.
    fn on_ack(&mut self, sock: &UdpSocket, block: u16, now: Instant) -> io::Result<Option<Step>> {
        if self.oack.is_some() {
            if block != 0 {
                return Ok(None);
            }
            self.oack = None;
            self.first_ack = true;
            self.send_window(sock, 1)?;
        } else {
            // Map the 16-bit block number into the outstanding window; anything else (a duplicate or
            // stale ACK) is ignored rather than answered, which avoids the Sorcerer's Apprentice bug
            // (RFC 1123 §4.2.3.1). A lost window is resent by the timer.
            let rel = u64::from(block.wrapping_sub(self.acked as u16));
            if rel == 0 || rel > self.sent_upto - self.acked {
                return Ok(None);
            }
            self.first_ack = true;
            self.acked += rel;
            if self.acked == self.blocks {
                // The final ACK: done (RFC 1350 §6).
                return Ok(Some(Step::Done(Outcome::Served)));
            }
            // RFC 7440 §4: the next window starts after the acknowledged block.
            self.send_window(sock, self.acked + 1)?;
        }
        self.tries = 0;
        self.timer_at = self.deadline.min(now + self.rto);
        Ok(Some(Step::Continue))
    }

    /// The retransmission timer: resend what is unacknowledged, or give up.
    pub(crate) fn on_timer(
        &mut self,
        sock: &UdpSocket,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> io::Result<Step> {
        if now >= self.deadline {
            return Ok(Step::Done(Outcome::TimedOut));
        }
        self.tries += 1;
        if self.tries > self.retries {
            return Ok(Step::Done(Outcome::TimedOut));
        }
        if self.oack.is_some() {
            self.send_first(sock, buf)?;
        } else {
            // Resend the whole unacknowledged part of the window.
            self.send_window(sock, self.acked + 1)?;
        }
        self.timer_at = self.deadline.min(now + self.rto);
        Ok(Step::Continue)
    }

    /// Sends blocks `from..` up to the window size or the last block, each with its header and payload as
    /// two slices (no copy of the payload into a buffer), `WINDOW_BATCH` blocks at a time: one `sendmsg`
    /// for a single block; several as UDP GSO sends, or one `sendmmsg` where GSO is refused.
    fn send_window(&mut self, sock: &UdpSocket, from: u64) -> io::Result<()> {
        let to = (from + u64::from(self.windowsize) - 1).min(self.blocks);
        let bs = u64::from(self.blksize);
        let len = self.data.len() as u64;
        let peer = socket2::SockAddr::from(self.peer);
        let mut next = from;
        while next <= to {
            let last = to.min(next + WINDOW_BATCH as u64 - 1);
            let mut headers = [[0u8; 4]; WINDOW_BATCH];
            let mut payloads: [&[u8]; WINDOW_BATCH] = [&[]; WINDOW_BATCH];
            for (k, b) in (next..=last).enumerate() {
                packet::put_data_header(&mut headers[k], b as u16);
                let off = ((b - 1) * bs).min(len) as usize;
                let end = (b * bs).min(len) as usize;
                payloads[k] = &self.data[off..end];
            }
            let count = (last - next + 1) as usize;
            send_datagrams(
                sock,
                &peer,
                &headers[..count],
                &payloads[..count],
                &mut self.gso,
            )?;
            next = last + 1;
        }
        self.sent_upto = to;
        Ok(())
    }
}

/// Blocks of a window handed to the kernel at once: one GSO send (the kernel's `UDP_MAX_SEGMENTS`), or
/// one `sendmmsg`.
const WINDOW_BATCH: usize = 64;

/// Sends datagram `k` = `headers[k]` followed by `payloads[k]` to `peer`, in order. Every payload but the
/// last has the length of the first (the blocks of a window). A datagram refused for a transient reason
/// (a full socket buffer, an ICMP error reported late) counts as lost: the timer resends it.
///
/// Several datagrams go out as UDP GSO sends while `gso` holds (`UDP_SEGMENT`: the kernel cuts one send
/// into datagrams of one size, so the stack is walked once per send instead of once per datagram), and
/// with `sendmmsg` once the kernel refused GSO for this transfer ([`gso_refused`]): e.g. blksize 8192 on
/// Ethernet, a segment over the MTU that plain datagrams pass as IP fragments.
fn send_datagrams(
    sock: &UdpSocket,
    peer: &socket2::SockAddr,
    headers: &[[u8; 4]],
    payloads: &[&[u8]],
    gso: &mut bool,
) -> io::Result<()> {
    if let ([header], [payload]) = (headers, payloads) {
        let parts = [io::IoSlice::new(header), io::IoSlice::new(payload)];
        return match socket2::SockRef::from(sock).send_to_vectored(&parts, peer) {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Ok(()),
            Err(e) => Err(e),
        };
    }
    let mut sent = 0;
    if *gso {
        let segment = 4 + payloads.first().map_or(0, |p| p.len());
        let per_send = (GSO_MAX_BYTES / segment.max(1)).clamp(1, WINDOW_BATCH);
        while sent < headers.len() {
            let end = headers.len().min(sent + per_send);
            match send_gso(
                sock,
                peer,
                &headers[sent..end],
                &payloads[sent..end],
                segment,
            ) {
                Ok(_) => sent = end,
                // The whole send counts as lost.
                Err(e) if is_transient(&e) => sent = end,
                Err(e) if gso_refused(&e) => {
                    *gso = false;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    while sent < headers.len() {
        match sendmmsg(sock, peer, &headers[sent..], &payloads[sent..]) {
            Ok(0) => return Ok(()),
            Ok(n) => sent += n,
            Err(e) if is_transient(&e) => sent += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Errors by which the kernel refuses a GSO send that plain datagrams may still pass: a segment over the
/// path's MTU (`EINVAL`, or `EMSGSIZE` in some versions), no checksum offload or UDP checksums turned off
/// (`EIO`, `EINVAL`), a kernel without `UDP_SEGMENT` (`ENOPROTOOPT`, `EOPNOTSUPP`).
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::EMSGSIZE | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Bytes in one GSO send, all datagrams together (under IPv4's 65,507).
const GSO_MAX_BYTES: usize = 65_000;
/// `UDP_SEGMENT` of `linux/udp.h` (the `libc` crate has it for other C libraries only).
const UDP_SEGMENT: libc::c_int = 103;

/// One `sendmsg` of `headers.len()` datagrams of `segment` bytes each (the last may be shorter),
/// header and payload slices in turn, with a `UDP_SEGMENT` control message.
fn send_gso(
    sock: &UdpSocket,
    peer: &socket2::SockAddr,
    headers: &[[u8; 4]],
    payloads: &[&[u8]],
    segment: usize,
) -> io::Result<usize> {
    let n = headers.len().min(payloads.len()).min(WINDOW_BATCH);
    let mut parts = [io::IoSlice::new(&[]); 2 * WINDOW_BATCH];
    for k in 0..n {
        parts[2 * k] = io::IoSlice::new(&headers[k]);
        parts[2 * k + 1] = io::IoSlice::new(payloads[k]);
    }
    let control = segment_cmsg(segment as u16);
    let msg = socket2::MsgHdr::new()
        .with_addr(peer)
        .with_buffers(&parts[..2 * n])
        .with_control(&control);
    socket2::SockRef::from(sock).sendmsg(&msg, 0)
}

/// The control message `UDP_SEGMENT = segment`, laid out as `CMSG_SPACE(2)` bytes: a `cmsghdr`
/// (`cmsg_len` = `CMSG_LEN(2)`, level, type), the `u16`, padding to the next 8 bytes.
fn segment_cmsg(segment: u16) -> [u8; CMSG_HDR + 8] {
    let mut c = [0u8; CMSG_HDR + 8];
    let len = CMSG_HDR + 2;
    c[..8].copy_from_slice(&(len as u64).to_ne_bytes()[..8]);
    c[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    c[12..16].copy_from_slice(&UDP_SEGMENT.to_ne_bytes());
    c[16..18].copy_from_slice(&segment.to_ne_bytes());
    c
}

/// `size_of::<cmsghdr>()` on 64-bit Linux: `cmsg_len` (a `size_t`), `cmsg_level`, `cmsg_type`.
const CMSG_HDR: usize = 16;
const _: () = assert!(std::mem::size_of::<libc::cmsghdr>() == CMSG_HDR);

/// One `sendmmsg(2)` of up to `WINDOW_BATCH` datagrams: how many the kernel took.
fn sendmmsg(
    sock: &UdpSocket,
    peer: &socket2::SockAddr,
    headers: &[[u8; 4]],
    payloads: &[&[u8]],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let n = headers.len().min(payloads.len()).min(WINDOW_BATCH);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2 * WINDOW_BATCH];
    for k in 0..n {
        iov[2 * k] = libc::iovec {
            iov_base: headers[k].as_ptr().cast_mut().cast(),
            iov_len: headers[k].len(),
        };
        iov[2 * k + 1] = libc::iovec {
            iov_base: payloads[k].as_ptr().cast_mut().cast(),
            iov_len: payloads[k].len(),
        };
    }
    let iov_base = iov.as_mut_ptr();
    // SAFETY: an all-zero `mmsghdr` is a valid value (null pointers, zero lengths, no flags).
    #[allow(unsafe_code)]
    let mut msgs: [libc::mmsghdr; WINDOW_BATCH] = unsafe { std::mem::zeroed() };
    for (k, m) in msgs.iter_mut().enumerate().take(n) {
        m.msg_hdr.msg_name = peer.as_ptr().cast_mut().cast();
        m.msg_hdr.msg_namelen = peer.len();
        m.msg_hdr.msg_iov = iov_base.wrapping_add(2 * k);
        m.msg_hdr.msg_iovlen = 2;
    }
    // SAFETY: the first `n` headers point at `peer` and at two of `iov`'s entries each, which point at
    // `headers` and `payloads`; all of them outlive the call, and the kernel only reads them (and writes
    // `msg_len` into `msgs`, which is ours). `n <= WINDOW_BATCH`, the length of `msgs`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Sends one datagram. A full socket buffer counts as a lost packet (the timer resends it).
fn send(sock: &UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<()> {
    match sock.send_to(buf, to) {
        Ok(_) => Ok(()),
        Err(e) if is_transient(&e) => Ok(()),
        Err(e) => Err(e),
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

    /// When the kernel refuses GSO (here: a socket without UDP checksums, which GSO needs), the window
    /// still arrives whole, by `sendmmsg`, and the transfer stops trying GSO.
    #[test]
    fn a_refused_gso_send_falls_back_to_sendmmsg() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let peer = socket2::SockAddr::from(rx.local_addr().unwrap());
        let tx = bind_ephemeral("127.0.0.1".parse().unwrap()).unwrap();
        crate::sockopt::set_int(&tx, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let payloads: [&[u8]; 3] = [b"aaaa", b"bbbb", b"cc"];
        let headers = [[0, 3, 0, 1], [0, 3, 0, 2], [0, 3, 0, 3]];
        let mut gso = true;
        send_datagrams(&tx, &peer, &headers, &payloads, &mut gso).unwrap();
        assert!(!gso, "GSO is given up for this transfer");
        let mut buf = [0u8; 64];
        for (k, p) in payloads.iter().enumerate() {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..4], &headers[k]);
            assert_eq!(&buf[4..n], *p);
        }
    }

    /// A window sent with GSO and with `sendmmsg` arrives as the same datagrams, in order, the last one
    /// shorter; more blocks than one GSO send or one `sendmmsg` carries.
    #[test]
    fn a_window_arrives_as_its_datagrams_either_way() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = socket2::SockRef::from(&rx).set_recv_buffer_size(4 << 20);
        let peer = socket2::SockAddr::from(rx.local_addr().unwrap());
        let tx = bind_ephemeral("127.0.0.1".parse().unwrap()).unwrap();
        let blocks = 70usize;
        let data: Vec<u8> = (0..blocks * 100 - 37).map(|i| (i % 251) as u8).collect();
        let headers: Vec<[u8; 4]> = (1..=blocks as u16)
            .map(|b| {
                let mut h = [0u8; 4];
                packet::put_data_header(&mut h, b);
                h
            })
            .collect();
        let payloads: Vec<&[u8]> = data.chunks(100).collect();
        for gso in [true, false] {
            let mut flag = gso;
            // Handed over `WINDOW_BATCH` at a time, as a window is.
            for (h, p) in headers
                .chunks(WINDOW_BATCH)
                .zip(payloads.chunks(WINDOW_BATCH))
            {
                send_datagrams(&tx, &peer, h, p, &mut flag).unwrap();
            }
            assert_eq!(flag, gso, "loopback takes GSO");
            let mut buf = [0u8; 2048];
            for (k, p) in payloads.iter().enumerate() {
                let n = rx.recv(&mut buf).unwrap();
                assert_eq!(&buf[..4], &headers[k], "datagram {k} (gso {gso})");
                assert_eq!(&buf[4..n], *p, "datagram {k} (gso {gso})");
            }
        }
    }

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
