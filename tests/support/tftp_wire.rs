//! Raw TFTP bytes for the test clients: their own byte handling, independent of the engine's codec.
//! Shared by `tests/tftp_engine.rs` and `tests/it` through `#[path]` (it is not a test target itself).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// A UDP socket bound to `ip`:0 (any 127.0.0.0/8 address is local on Linux), with a 4 MiB receive
/// buffer so that windows of large blocks are not dropped by the kernel.
pub async fn udp_from(ip: &str) -> UdpSocket {
    let addr = SocketAddr::new(ip.parse().unwrap(), 0);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let _ = s.set_recv_buffer_size(4 << 20);
    s.set_nonblocking(true).unwrap();
    s.bind(&addr.into())
        .unwrap_or_else(|e| panic!("bind a UDP socket to {addr}: {e}"));
    UdpSocket::from_std(s.into()).unwrap()
}

/// A request packet: opcode (1 RRQ, 2 WRQ), name, mode, then option pairs.
pub fn request(opcode: u8, name: &str, mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut v = vec![0, opcode];
    for s in [name, mode] {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    for (k, val) in opts {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// An ACK of `block`.
pub fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, 4, b[0], b[1]]
}

/// A big-endian u16 from the first two bytes.
pub fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// NUL-terminated key/value pairs (an OACK's body).
pub fn parse_pairs(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut it = b.splitn(3, |&c| c == 0);
        let k = String::from_utf8_lossy(it.next().unwrap()).into_owned();
        let v = String::from_utf8_lossy(it.next().unwrap_or(&[])).into_owned();
        out.push((k, v));
        b = it.next().unwrap_or(&[]);
    }
    out
}
