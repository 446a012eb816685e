//! TFTP packet decoder (`dialtone::tftp::packet::decode`): never panics on any datagram, and every packet
//! it accepts encodes back to something that decodes to the same packet (for DATA and ACK, to the very
//! same bytes).

#![no_main]

use dialtone::tftp::packet::{
    decode, encode_ack, encode_data, encode_error, encode_oack, encode_rrq, encode_wrq, opcode,
    DecodeError, ErrorCode, Packet, TransferOptions, MAX_BLKSIZE, MIN_BLKSIZE, OP_ERROR,
};
use libfuzzer_sys::fuzz_target;

fn check_options(o: &TransferOptions) {
    if let Some(b) = o.blksize {
        assert!((MIN_BLKSIZE..=MAX_BLKSIZE).contains(&b), "blksize {b}");
    }
    if let Some(t) = o.timeout {
        assert!(t >= 1, "timeout {t}");
    }
    if let Some(w) = o.windowsize {
        assert!(w >= 1, "windowsize {w}");
    }
}

fn error_code(code: u16) -> Option<ErrorCode> {
    Some(match code {
        0 => ErrorCode::NotDefined,
        1 => ErrorCode::FileNotFound,
        2 => ErrorCode::AccessViolation,
        3 => ErrorCode::DiskFull,
        4 => ErrorCode::IllegalOperation,
        5 => ErrorCode::UnknownTid,
        6 => ErrorCode::FileExists,
        7 => ErrorCode::NoSuchUser,
        8 => ErrorCode::OptionNegotiation,
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let packet = match decode(data) {
        Ok(p) => p,
        Err(e) => {
            // The message of every error is printable, and the error agrees with the opcode.
            let _ = e.to_string();
            match e {
                DecodeError::TooShort => {}
                DecodeError::UnknownOpcode(op) => {
                    assert_eq!(opcode(data), Some(op));
                    assert!(!(1..=6).contains(&op));
                }
                _ => assert!(matches!(opcode(data), Some(1 | 2 | 6))),
            }
            return;
        }
    };
    let mut buf = Vec::new();
    match packet {
        Packet::Rrq(r) | Packet::Wrq(r) => {
            assert!(!r.filename.is_empty());
            assert!(!r.filename.contains('\0'));
            check_options(&r.options);
            if matches!(packet, Packet::Rrq(_)) {
                encode_rrq(&mut buf, r.filename, r.mode, &r.options);
            } else {
                encode_wrq(&mut buf, r.filename, r.mode, &r.options);
            }
            assert_eq!(decode(&buf), Ok(packet), "request round trip");
        }
        Packet::Data {
            block,
            data: payload,
        } => {
            encode_data(&mut buf, block, payload);
            assert_eq!(buf, data, "DATA re-encodes to the same bytes");
        }
        Packet::Ack { block } => {
            let enc = encode_ack(block);
            assert_eq!(&enc[..], &data[..4], "ACK re-encodes to its first 4 bytes");
            assert_eq!(decode(&enc), Ok(packet));
        }
        Packet::Error { code, message } => {
            assert!(!message.contains('\0'));
            match error_code(code) {
                Some(c) => encode_error(&mut buf, c, message),
                None => {
                    // encode_error only takes the defined codes; build the same wire form by hand.
                    buf.extend_from_slice(&OP_ERROR.to_be_bytes());
                    buf.extend_from_slice(&code.to_be_bytes());
                    buf.extend_from_slice(message.as_bytes());
                    buf.push(0);
                }
            }
            assert_eq!(decode(&buf), Ok(packet), "ERROR round trip");
        }
        Packet::Oack(o) => {
            check_options(&o);
            encode_oack(&mut buf, &o);
            assert_eq!(decode(&buf), Ok(packet), "OACK round trip");
        }
    }
});
