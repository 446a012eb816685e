//! TFTP wire format: a pure, allocation-free decoder and a buffer-reusing encoder for RRQ, WRQ, DATA,
//! ACK, ERROR and OACK packets (RFC 1350, option extension RFC 2347, `blksize` RFC 2348, `timeout` and
//! `tsize` RFC 2349, `windowsize` RFC 7440).

use std::io::Write as _;

/// Opcode of a read request (RFC 1350 §5).
pub const OP_RRQ: u16 = 1;
/// Opcode of a write request (RFC 1350 §5).
pub const OP_WRQ: u16 = 2;
/// Opcode of a data packet (RFC 1350 §5).
pub const OP_DATA: u16 = 3;
/// Opcode of an acknowledgement (RFC 1350 §5).
pub const OP_ACK: u16 = 4;
/// Opcode of an error packet (RFC 1350 §5).
pub const OP_ERROR: u16 = 5;
/// Opcode of an option acknowledgement (RFC 2347).
pub const OP_OACK: u16 = 6;

/// Block size used when no `blksize` option is negotiated (RFC 1350 §2).
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Smallest valid `blksize` (RFC 2348).
pub const MIN_BLKSIZE: u16 = 8;
/// Largest valid `blksize` (RFC 2348: 65535 minus IP and UDP headers).
pub const MAX_BLKSIZE: u16 = 65464;
/// Largest valid `windowsize` (RFC 7440 §3: 1 to 65535).
pub const MAX_WINDOWSIZE: u16 = 65535;

/// TFTP error codes (RFC 1350 appendix, RFC 2347 adds 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined = 0,
    /// 1: file not found.
    FileNotFound = 1,
    /// 2: access violation.
    AccessViolation = 2,
    /// 3: disk full or allocation exceeded.
    DiskFull = 3,
    /// 4: illegal TFTP operation.
    IllegalOperation = 4,
    /// 5: unknown transfer ID.
    UnknownTid = 5,
    /// 6: file already exists.
    FileExists = 6,
    /// 7: no such user.
    NoSuchUser = 7,
    /// 8: option negotiation refused (RFC 2347).
    OptionNegotiation = 8,
}

/// Transfer mode of a request (RFC 1350 §1). `mail` is obsolete and decoded as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `netascii`: text, LF sent as CR LF and a bare CR as CR NUL.
    NetAscii,
    /// `octet`: raw bytes.
    Octet,
}

impl Mode {
    /// The mode name as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::NetAscii => "netascii",
            Mode::Octet => "octet",
        }
    }
}

/// The options this implementation understands, as requested (RRQ/WRQ) or acknowledged (OACK).
///
/// Decoding keeps only options whose value is valid: RFC 2347 lets a server ignore options it does not
/// accept, so an out-of-range or non-numeric value is treated as if the option was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransferOptions {
    /// `blksize` (RFC 2348), 8..=65464.
    pub blksize: Option<u16>,
    /// `tsize` (RFC 2349): 0 in a read request, the file size in an OACK.
    pub tsize: Option<u64>,
    /// `timeout` in seconds (RFC 2349), 1..=255.
    pub timeout: Option<u8>,
    /// `windowsize` (RFC 7440), 1..=65535.
    pub windowsize: Option<u16>,
}

impl TransferOptions {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == TransferOptions::default()
    }
}

/// A decoded read or write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The requested file name (non-empty, valid UTF-8).
    pub filename: &'a str,
    /// The transfer mode.
    pub mode: Mode,
    /// The valid, understood options; unknown and invalid ones are dropped.
    pub options: TransferOptions,
}

/// A decoded TFTP packet borrowing from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request.
    Rrq(Request<'a>),
    /// Write request.
    Wrq(Request<'a>),
    /// Data block: `data` is 0..=blksize bytes.
    Data {
        /// Block number (wraps around after 65535).
        block: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Acknowledgement of a block (0 acknowledges an OACK, RFC 2347).
    Ack {
        /// Block number.
        block: u16,
    },
    /// Error packet; ends the transfer (RFC 1350 §7).
    Error {
        /// Error code (any value is accepted on decode).
        code: u16,
        /// Message; the valid UTF-8 prefix if the peer sent something else.
        message: &'a str,
    },
    /// Option acknowledgement (RFC 2347).
    Oack(TransferOptions),
}

/// Why a datagram could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed part of its packet type.
    TooShort,
    /// Opcode not in 1..=6.
    UnknownOpcode(u16),
    /// A string field lacks its terminating NUL.
    Unterminated,
    /// The file name is empty or not UTF-8.
    BadFilename,
    /// Mode other than `netascii` or `octet` (case-insensitive).
    BadMode,
    /// Options are not a sequence of NUL-terminated name/value pairs.
    MalformedOptions,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("packet too short"),
            DecodeError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            DecodeError::Unterminated => f.write_str("string field not NUL-terminated"),
            DecodeError::BadFilename => f.write_str("empty or non-UTF-8 file name"),
            DecodeError::BadMode => f.write_str("unsupported transfer mode"),
            DecodeError::MalformedOptions => f.write_str("malformed options"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The opcode of a datagram, if it has at least two bytes.
pub fn opcode(buf: &[u8]) -> Option<u16> {
    match buf {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Decodes one datagram.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let op = opcode(buf).ok_or(DecodeError::TooShort)?;
    let body = &buf[2..];
    match op {
        OP_RRQ => decode_request(body).map(Packet::Rrq),
        OP_WRQ => decode_request(body).map(Packet::Wrq),
        OP_DATA => {
            let block = read_u16(body)?;
            Ok(Packet::Data {
                block,
                data: &body[2..],
            })
        }
        OP_ACK => Ok(Packet::Ack {
            block: read_u16(body)?,
        }),
        OP_ERROR => {
            let code = read_u16(body)?;
            // Be lenient with a missing terminator: the packet still ends the transfer.
            let raw = &body[2..];
            let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
            let message = match std::str::from_utf8(raw) {
                Ok(s) => s,
                Err(e) => std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or(""),
            };
            Ok(Packet::Error { code, message })
        }
        OP_OACK => parse_options(body).map(Packet::Oack),
        other => Err(DecodeError::UnknownOpcode(other)),
    }
}

fn read_u16(body: &[u8]) -> Result<u16, DecodeError> {
    match body {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(DecodeError::TooShort),
    }
}

/// Splits off one NUL-terminated field.
fn take_cstr(buf: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let nul = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(DecodeError::Unterminated)?;
    Ok((&buf[..nul], &buf[nul + 1..]))
}

fn decode_request(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    // RFC 1350 §5: | filename | 0 | mode | 0 |, then RFC 2347 options | opt | 0 | value | 0 | ...
    let (name, rest) = take_cstr(body)?;
    let (mode, rest) = take_cstr(rest)?;
    let filename = std::str::from_utf8(name).map_err(|_| DecodeError::BadFilename)?;
    if filename.is_empty() {
        return Err(DecodeError::BadFilename);
    }
    let mode = if mode.eq_ignore_ascii_case(b"octet") {
        Mode::Octet
    } else if mode.eq_ignore_ascii_case(b"netascii") {
        Mode::NetAscii
    } else {
        return Err(DecodeError::BadMode);
    };
    Ok(Request {
        filename,
        mode,
        options: parse_options(rest)?,
    })
}

/// Parses RFC 2347 name/value pairs. Names are case-insensitive; for a repeated option the first valid
/// occurrence wins; unknown options and invalid values are ignored. Trailing NUL padding is tolerated.
fn parse_options(mut buf: &[u8]) -> Result<TransferOptions, DecodeError> {
    let mut opts = TransferOptions::default();
    while !buf.is_empty() {
        if buf.iter().all(|&b| b == 0) {
            break;
        }
        let (name, rest) = take_cstr(buf).map_err(|_| DecodeError::MalformedOptions)?;
        let (value, rest) = take_cstr(rest).map_err(|_| DecodeError::MalformedOptions)?;
        buf = rest;
        let Some(n) = parse_decimal(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case(b"blksize") {
            // RFC 2348: valid values range between 8 and 65464 octets, inclusive.
            if opts.blksize.is_none() && (MIN_BLKSIZE as u64..=MAX_BLKSIZE as u64).contains(&n) {
                opts.blksize = Some(n as u16);
            }
        } else if name.eq_ignore_ascii_case(b"tsize") {
            if opts.tsize.is_none() {
                opts.tsize = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"timeout") {
            // RFC 2349: 1 to 255 seconds.
            if opts.timeout.is_none() && (1..=255).contains(&n) {
                opts.timeout = Some(n as u8);
            }
        } else if name.eq_ignore_ascii_case(b"windowsize") {
            // RFC 7440 §3: 1 to 65535 blocks.
            if opts.windowsize.is_none() && (1..=MAX_WINDOWSIZE as u64).contains(&n) {
                opts.windowsize = Some(n as u16);
            }
        }
    }
    Ok(opts)
}

/// ASCII decimal digits only, no sign or blanks, at most 20 digits, no overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

fn put_options(buf: &mut Vec<u8>, opts: &TransferOptions) {
    // Writing into a Vec cannot fail.
    if let Some(v) = opts.blksize {
        let _ = write!(buf, "blksize\0{v}\0");
    }
    if let Some(v) = opts.tsize {
        let _ = write!(buf, "tsize\0{v}\0");
    }
    if let Some(v) = opts.timeout {
        let _ = write!(buf, "timeout\0{v}\0");
    }
    if let Some(v) = opts.windowsize {
        let _ = write!(buf, "windowsize\0{v}\0");
    }
}

fn encode_request(buf: &mut Vec<u8>, op: u16, filename: &str, mode: Mode, opts: &TransferOptions) {
    buf.clear();
    buf.extend_from_slice(&op.to_be_bytes());
    buf.extend_from_slice(filename.as_bytes());
    buf.push(0);
    buf.extend_from_slice(mode.as_str().as_bytes());
    buf.push(0);
    put_options(buf, opts);
}

/// Encodes a read request into `buf` (cleared first).
pub fn encode_rrq(buf: &mut Vec<u8>, filename: &str, mode: Mode, opts: &TransferOptions) {
    encode_request(buf, OP_RRQ, filename, mode, opts);
}

/// Encodes a write request into `buf` (cleared first).
pub fn encode_wrq(buf: &mut Vec<u8>, filename: &str, mode: Mode, opts: &TransferOptions) {
    encode_request(buf, OP_WRQ, filename, mode, opts);
}

/// Writes the 4-byte DATA header into the start of `buf` (which must hold at least 4 bytes); the
/// payload goes at `buf[4..]`. This lets a sender fill one reused buffer in place.
pub fn put_data_header(buf: &mut [u8], block: u16) {
    buf[..2].copy_from_slice(&OP_DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
}

/// Encodes a DATA packet into `buf` (cleared first).
pub fn encode_data(buf: &mut Vec<u8>, block: u16, data: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&OP_DATA.to_be_bytes());
    buf.extend_from_slice(&block.to_be_bytes());
    buf.extend_from_slice(data);
}

/// Encodes an ACK packet.
pub fn encode_ack(block: u16) -> [u8; 4] {
    let [a, b] = OP_ACK.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// Encodes an ERROR packet into `buf` (cleared first).
pub fn encode_error(buf: &mut Vec<u8>, code: ErrorCode, message: &str) {
    buf.clear();
    buf.extend_from_slice(&OP_ERROR.to_be_bytes());
    buf.extend_from_slice(&(code as u16).to_be_bytes());
    buf.extend_from_slice(message.as_bytes());
    buf.push(0);
}

/// Encodes an OACK packet with the set options (in the order blksize, tsize, timeout, windowsize) into
/// `buf` (cleared first).
pub fn encode_oack(buf: &mut Vec<u8>, opts: &TransferOptions) {
    buf.clear();
    buf.extend_from_slice(&OP_OACK.to_be_bytes());
    put_options(buf, opts);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(name: &str, mode: Mode, options: TransferOptions) -> Packet<'_> {
        Packet::Rrq(Request {
            filename: name,
            mode,
            options,
        })
    }

    #[test]
    fn decodes_plain_rrq() {
        let p = decode(b"\x00\x01SEP001122334455.cnf.xml\x00octet\x00").unwrap();
        assert_eq!(
            p,
            rrq(
                "SEP001122334455.cnf.xml",
                Mode::Octet,
                TransferOptions::default()
            )
        );
    }

    #[test]
    fn decodes_wrq_and_mode_case_insensitively() {
        let p = decode(b"\x00\x02f\x00NetASCII\x00").unwrap();
        assert_eq!(
            p,
            Packet::Wrq(Request {
                filename: "f",
                mode: Mode::NetAscii,
                options: TransferOptions::default()
            })
        );
        assert_eq!(
            decode(b"\x00\x01f\x00OCTET\x00"),
            Ok(rrq("f", Mode::Octet, TransferOptions::default()))
        );
    }

    #[test]
    fn decodes_options_case_insensitively() {
        let p = decode(
            b"\x00\x01f\x00octet\x00BLKSIZE\x001468\x00TSize\x000\x00timeout\x003\x00WindowSize\x0016\x00",
        )
        .unwrap();
        assert_eq!(
            p,
            rrq(
                "f",
                Mode::Octet,
                TransferOptions {
                    blksize: Some(1468),
                    tsize: Some(0),
                    timeout: Some(3),
                    windowsize: Some(16)
                }
            )
        );
    }

    #[test]
    fn ignores_unknown_options_and_keeps_first_duplicate() {
        let p =
            decode(b"\x00\x01f\x00octet\x00multicast\x00\x00blksize\x001024\x00blksize\x00512\x00")
                .unwrap();
        let Packet::Rrq(r) = p else { panic!("{p:?}") };
        assert_eq!(r.options.blksize, Some(1024));
        assert_eq!(r.options.tsize, None);
    }

    #[test]
    fn drops_invalid_option_values() {
        for bad in [
            &b"\x00\x01f\x00octet\x00blksize\x000\x00"[..],
            b"\x00\x01f\x00octet\x00blksize\x007\x00",
            b"\x00\x01f\x00octet\x00blksize\x0065465\x00",
            b"\x00\x01f\x00octet\x00blksize\x00abc\x00",
            b"\x00\x01f\x00octet\x00blksize\x00-512\x00",
            b"\x00\x01f\x00octet\x00blksize\x00 512\x00",
            b"\x00\x01f\x00octet\x00blksize\x00\x00",
            b"\x00\x01f\x00octet\x00windowsize\x000\x00",
            b"\x00\x01f\x00octet\x00windowsize\x0065536\x00",
            b"\x00\x01f\x00octet\x00timeout\x000\x00",
            b"\x00\x01f\x00octet\x00timeout\x00256\x00",
            b"\x00\x01f\x00octet\x00tsize\x0099999999999999999999999\x00",
        ] {
            let p = decode(bad).unwrap_or_else(|e| panic!("{bad:?}: {e}"));
            let Packet::Rrq(r) = p else { panic!("{p:?}") };
            assert!(r.options.is_empty(), "{bad:?} gave {:?}", r.options);
        }
        // Boundaries that are valid.
        let Ok(Packet::Rrq(r)) = decode(
            b"\x00\x01f\x00octet\x00blksize\x008\x00windowsize\x0065535\x00timeout\x00255\x00",
        ) else {
            panic!()
        };
        assert_eq!(r.options.blksize, Some(8));
        assert_eq!(r.options.windowsize, Some(65535));
        assert_eq!(r.options.timeout, Some(255));
        let Ok(Packet::Rrq(r)) = decode(b"\x00\x01f\x00octet\x00blksize\x0065464\x00") else {
            panic!()
        };
        assert_eq!(r.options.blksize, Some(65464));
    }

    #[test]
    fn rejects_malformed_requests() {
        assert_eq!(decode(b""), Err(DecodeError::TooShort));
        assert_eq!(decode(b"\x00"), Err(DecodeError::TooShort));
        assert_eq!(decode(b"\x00\x01"), Err(DecodeError::Unterminated));
        assert_eq!(decode(b"\x00\x01file"), Err(DecodeError::Unterminated));
        assert_eq!(
            decode(b"\x00\x01file\x00octet"),
            Err(DecodeError::Unterminated)
        );
        assert_eq!(
            decode(b"\x00\x01\x00octet\x00"),
            Err(DecodeError::BadFilename)
        );
        assert_eq!(
            decode(b"\x00\x01\xff\xfe\x00octet\x00"),
            Err(DecodeError::BadFilename)
        );
        assert_eq!(decode(b"\x00\x01f\x00mail\x00"), Err(DecodeError::BadMode));
        assert_eq!(
            decode(b"\x00\x01f\x00binary\x00"),
            Err(DecodeError::BadMode)
        );
        assert_eq!(
            decode(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(DecodeError::MalformedOptions)
        );
        assert_eq!(
            decode(b"\x00\x01f\x00octet\x00blksize\x00512"),
            Err(DecodeError::MalformedOptions)
        );
        assert_eq!(decode(b"\x00\x07xx"), Err(DecodeError::UnknownOpcode(7)));
        assert_eq!(decode(b"\x00\x00"), Err(DecodeError::UnknownOpcode(0)));
    }

    #[test]
    fn tolerates_trailing_nul_padding() {
        assert_eq!(
            decode(b"\x00\x01f\x00octet\x00\x00\x00"),
            Ok(rrq("f", Mode::Octet, TransferOptions::default()))
        );
    }

    #[test]
    fn decodes_data_ack_error_oack() {
        assert_eq!(
            decode(b"\x00\x03\x00\x01abc"),
            Ok(Packet::Data {
                block: 1,
                data: b"abc"
            })
        );
        assert_eq!(
            decode(b"\x00\x03\xff\xff"),
            Ok(Packet::Data {
                block: 65535,
                data: b""
            })
        );
        assert_eq!(decode(b"\x00\x03\x00"), Err(DecodeError::TooShort));
        assert_eq!(decode(b"\x00\x04\x01\x02"), Ok(Packet::Ack { block: 258 }));
        assert_eq!(decode(b"\x00\x04\x01"), Err(DecodeError::TooShort));
        assert_eq!(
            decode(b"\x00\x05\x00\x01File not found\x00"),
            Ok(Packet::Error {
                code: 1,
                message: "File not found"
            })
        );
        assert_eq!(
            decode(b"\x00\x05\x00\x08no term"),
            Ok(Packet::Error {
                code: 8,
                message: "no term"
            })
        );
        assert_eq!(
            decode(b"\x00\x05\x00\x00ok\xff\x00"),
            Ok(Packet::Error {
                code: 0,
                message: "ok"
            })
        );
        assert_eq!(decode(b"\x00\x05\x00"), Err(DecodeError::TooShort));
        assert_eq!(
            decode(b"\x00\x06blksize\x008192\x00tsize\x00100\x00"),
            Ok(Packet::Oack(TransferOptions {
                blksize: Some(8192),
                tsize: Some(100),
                ..Default::default()
            }))
        );
        assert_eq!(
            decode(b"\x00\x06blksize\x00"),
            Err(DecodeError::MalformedOptions)
        );
    }

    #[test]
    fn encodes_packets() {
        let mut buf = Vec::new();
        encode_rrq(&mut buf, "a.cfg", Mode::Octet, &TransferOptions::default());
        assert_eq!(buf, b"\x00\x01a.cfg\x00octet\x00");
        encode_rrq(
            &mut buf,
            "b",
            Mode::NetAscii,
            &TransferOptions {
                blksize: Some(1468),
                tsize: Some(0),
                timeout: None,
                windowsize: Some(4),
            },
        );
        assert_eq!(
            buf,
            b"\x00\x01b\x00netascii\x00blksize\x001468\x00tsize\x000\x00windowsize\x004\x00"
        );
        encode_wrq(&mut buf, "c", Mode::Octet, &TransferOptions::default());
        assert_eq!(buf, b"\x00\x02c\x00octet\x00");
        encode_data(&mut buf, 0x0102, b"xyz");
        assert_eq!(buf, b"\x00\x03\x01\x02xyz");
        let mut hdr = [0u8; 6];
        put_data_header(&mut hdr, 65535);
        assert_eq!(&hdr[..4], b"\x00\x03\xff\xff");
        assert_eq!(encode_ack(7), *b"\x00\x04\x00\x07");
        encode_error(&mut buf, ErrorCode::AccessViolation, "Access violation");
        assert_eq!(buf, b"\x00\x05\x00\x02Access violation\x00");
        encode_oack(
            &mut buf,
            &TransferOptions {
                blksize: Some(8192),
                tsize: Some(5_000_000),
                timeout: Some(2),
                windowsize: Some(16),
            },
        );
        assert_eq!(
            buf,
            b"\x00\x06blksize\x008192\x00tsize\x005000000\x00timeout\x002\x00windowsize\x0016\x00"
        );
    }

    #[test]
    fn round_trips() {
        let opts = TransferOptions {
            blksize: Some(65464),
            tsize: Some(0),
            timeout: Some(255),
            windowsize: Some(65535),
        };
        let mut buf = Vec::new();
        encode_rrq(&mut buf, "dir/x.bin", Mode::Octet, &opts);
        assert_eq!(decode(&buf), Ok(rrq("dir/x.bin", Mode::Octet, opts)));
        encode_oack(&mut buf, &opts);
        assert_eq!(decode(&buf), Ok(Packet::Oack(opts)));
        assert_eq!(opcode(&buf), Some(OP_OACK));
        assert_eq!(opcode(b"\x00"), None);
    }
}
