//! `MacAddress`: a phone's hardware address, parsed from any usual notation, shown upper-case bare.

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address. Displays as 12 upper-case hex digits without separators (`0004F2A1B2C3`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address: expected 12 hex digits, optionally grouped as aa:bb:cc:dd:ee:ff, aa-bb-…, aabb.ccdd.eeff or aabb-ccdd-eeff")]
pub struct ParseMacError;

impl MacAddress {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Builds an address from six octets.
    pub fn from_octets(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// Parses exactly 12 hex digits with no separators, any letter case (the form inside file names).
    pub fn from_bare_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 12 {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(Self(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for MacAddress {
    type Err = ParseMacError;

    /// Accepts `00:04:f2:a1:b2:c3`, `00-04-F2-A1-B2-C3`, `0004.F2A1.B2C3`, `0004-f2a1-b2c3` and `0004F2A1B2C3`.
    /// Separators must be consistent and sit at group boundaries.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let groups: Vec<&str> = match s.len() {
            12 => vec![s],
            17 => {
                let sep = s.as_bytes()[2];
                if sep != b':' && sep != b'-' {
                    return Err(ParseMacError);
                }
                s.split(sep as char).collect()
            }
            14 => {
                let sep = s.as_bytes()[4];
                if sep != b'.' && sep != b'-' {
                    return Err(ParseMacError);
                }
                s.split(sep as char).collect()
            }
            _ => return Err(ParseMacError),
        };
        let expected_len = match groups.len() {
            1 => 12,
            3 => 4,
            6 => 2,
            _ => return Err(ParseMacError),
        };
        if groups.iter().any(|g| g.len() != expected_len) {
            return Err(ParseMacError);
        }
        Self::from_bare_hex(&groups.concat()).ok_or(ParseMacError)
    }
}

impl MacAddress {
    /// The 12 upper-case hex digits, without the formatting machinery (a MAC is shown several times per
    /// API request: SQL parameters, headers, JSON, audit).
    fn hex(&self) -> [u8; 12] {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [0u8; 12];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xF)];
        }
        out
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // Only ASCII hex digits: always UTF-8.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddress({self})")
    }
}

impl serde::Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_octet_displays_as_two_upper_case_hex_digits() {
        for b in 0..=255u8 {
            let mac = MacAddress::from_octets([b, 0, 0x0F, 0xF0, b.wrapping_mul(7), b]);
            let expected = format!("{b:02X}000FF0{:02X}{b:02X}", b.wrapping_mul(7));
            assert_eq!(mac.to_string(), expected);
        }
    }

    #[test]
    fn every_usual_notation_parses_to_the_same_canonical_form() {
        for s in [
            "00:04:f2:a1:b2:c3",
            "00-04-F2-A1-B2-C3",
            "0004.F2A1.B2C3",
            "0004-f2a1-b2c3",
            "0004F2A1B2C3",
            "0004f2a1b2c3",
        ] {
            let mac: MacAddress = s.parse().unwrap_or_else(|_| panic!("{s} should parse"));
            assert_eq!(mac.to_string(), "0004F2A1B2C3", "{s}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for s in [
            "",
            "0004F2A1B2C",
            "0004F2A1B2C3D",
            "00:04:f2:a1:b2:cg",
            "00:04-f2:a1:b2:c3",
            "0004.F2A1-B2C3",
            "00:04:f2:a1:b2c3:",
            "000:4f:2a:1b:2c:3x",
            "zz04F2A1B2C3",
        ] {
            assert!(s.parse::<MacAddress>().is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn bare_hex_is_case_insensitive() {
        assert_eq!(
            MacAddress::from_bare_hex("0004f2A1b2C3")
                .unwrap()
                .to_string(),
            "0004F2A1B2C3"
        );
        assert!(MacAddress::from_bare_hex("0004f2A1b2C").is_none());
    }
}
