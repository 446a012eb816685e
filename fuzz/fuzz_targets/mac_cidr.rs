//! MAC and CIDR parsers (`MacAddress::from_str`, `MacAddress::from_bare_hex`, `Prefix::from_str`): never
//! panic; whatever parses displays canonically and re-parses to itself.

#![no_main]

use std::str::FromStr;

use dialtone::domain::{MacAddress, ParsePrefixError, Prefix};
use libfuzzer_sys::fuzz_target;

fn check_mac(m: MacAddress) {
    let shown = m.to_string();
    assert_eq!(shown.len(), 12, "{shown:?}");
    assert!(
        shown
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "{shown:?}"
    );
    assert_eq!(MacAddress::from_str(&shown), Ok(m));
    assert_eq!(MacAddress::from_bare_hex(&shown), Some(m));
    assert_eq!(
        MacAddress::from_bare_hex(&shown.to_ascii_lowercase()),
        Some(m)
    );
    let o = m.octets();
    assert_eq!(MacAddress::from_octets(o), m);
    let colons = o.map(|b| format!("{b:02x}")).join(":");
    assert_eq!(MacAddress::from_str(&colons), Ok(m), "{colons}");
    let dotted = format!("{}.{}.{}", &shown[..4], &shown[4..8], &shown[8..]);
    assert_eq!(MacAddress::from_str(&dotted), Ok(m), "{dotted}");
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<MacAddress>(&json).unwrap(), m);
}

fn check_prefix(p: Prefix) {
    let shown = p.to_string();
    assert_eq!(Prefix::from_str(&shown), Ok(p), "{shown}");
    // Every prefix that parses matches its own first address (an IPv4-mapped IPv6 prefix, which could
    // never match, is refused: regressions/mac_cidr/ipv4-mapped-prefix).
    assert!(p.contains(p.first_address()), "{shown}");
    let max = if p.first_address().is_ipv4() { 32 } else { 128 };
    assert!(p.len() <= max, "{shown}");
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Prefix>(&json).unwrap(), p);
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match MacAddress::from_str(s) {
        Ok(m) => check_mac(m),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(m) = MacAddress::from_bare_hex(s) {
        assert_eq!(s.len(), 12);
        assert!(m.to_string().eq_ignore_ascii_case(s), "{s:?}");
        assert_eq!(MacAddress::from_str(s), Ok(m));
        check_mac(m);
    }
    match Prefix::from_str(s) {
        Ok(p) => check_prefix(p),
        Err(ParsePrefixError::HostBits(suggestion) | ParsePrefixError::Mapped(suggestion)) => {
            // The suggestion offered to the operator is itself a valid prefix.
            let p = Prefix::from_str(&suggestion)
                .unwrap_or_else(|e| panic!("{s:?}: suggestion {suggestion:?} refused: {e}"));
            check_prefix(p);
        }
        Err(ParsePrefixError::Syntax) => {}
    }
});
