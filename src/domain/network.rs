//! `Prefix`: a tenant network (IPv4 or IPv6 CIDR with host bits zero) and address matching.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation whose host bits are zero (`10.20.0.0/16`, `2001:db8::/32`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Prefix(cidr::IpCidr);

/// Why a string is not a network prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePrefixError {
    /// Not `address/length`.
    #[error("expected a network in CIDR notation, e.g. 10.20.0.0/16 or 2001:db8::/48")]
    Syntax,
    /// An IPv4-mapped IPv6 prefix (`::ffff:10.0.0.0/104`): sources are matched in their IPv4 form, so it
    /// could never match; the IPv4 form is suggested.
    #[error("an IPv4-mapped IPv6 prefix never matches (sources are compared as IPv4): use {0}")]
    Mapped(String),
    /// Host bits set, e.g. `10.20.1.0/16`.
    #[error("host bits are set: did you mean {0}?")]
    HostBits(String),
}

impl Prefix {
    /// The underlying `cidr` value (for the database layer).
    pub fn inner(&self) -> cidr::IpCidr {
        self.0
    }

    /// Wraps a value read from the database (where the `cidr` type already forbids host bits).
    pub fn from_inner(c: cidr::IpCidr) -> Self {
        Self(c)
    }

    /// Whether `addr` lies in this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical_ip(addr);
        self.0.contains(&addr)
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.0.network_length()
    }

    /// Always false: a prefix always has a length (present for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first address of the network.
    pub fn first_address(&self) -> IpAddr {
        self.0.first_address()
    }
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to its IPv4 form; other addresses unchanged.
pub fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => addr,
        },
        v4 => v4,
    }
}

impl FromStr for Prefix {
    type Err = ParsePrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, len) = s.split_once('/').ok_or(ParsePrefixError::Syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| ParsePrefixError::Syntax)?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParsePrefixError::Syntax);
        }
        let len: u8 = len.parse().map_err(|_| ParsePrefixError::Syntax)?;
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), len >= 96) {
                let network = cidr::IpInet::new(IpAddr::V4(v4), len - 96)
                    .map(|i| format!("{}/{}", i.network().first_address(), len - 96));
                return Err(ParsePrefixError::Mapped(
                    network.unwrap_or_else(|_| format!("{v4}/{}", len - 96)),
                ));
            }
        }
        match cidr::IpCidr::new(addr, len) {
            Ok(c) => Ok(Self(c)),
            Err(_) => match cidr::IpInet::new(addr, len) {
                Ok(inet) => Err(ParsePrefixError::HostBits(inet.network().to_string())),
                Err(_) => Err(ParsePrefixError::Syntax),
            },
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always show the length, also for host routes (cidr's Display omits "/32").
        write!(f, "{}/{}", self.0.first_address(), self.0.network_length())
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_and_refuses_host_bits() {
        assert_eq!(
            "10.20.0.0/16".parse::<Prefix>().unwrap().to_string(),
            "10.20.0.0/16"
        );
        assert_eq!(
            "2001:db8::/32".parse::<Prefix>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            "10.0.0.1/32".parse::<Prefix>().unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(
            "10.20.1.0/16".parse::<Prefix>(),
            Err(ParsePrefixError::HostBits("10.20.0.0/16".into()))
        );
        for bad in [
            "10.20.0.0",
            "10.20.0.0/33",
            "10.20.0/16",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
            "::/129",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4_mapped_prefixes_are_refused_with_the_ipv4_form() {
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<Prefix>(),
            Err(ParsePrefixError::Mapped("10.0.0.0/8".into()))
        );
        assert_eq!(
            "::ffff:10.1.2.3/104".parse::<Prefix>(),
            Err(ParsePrefixError::Mapped("10.0.0.0/8".into()))
        );
        assert_eq!(
            "::ffff:10.1.2.3/128".parse::<Prefix>(),
            Err(ParsePrefixError::Mapped("10.1.2.3/32".into()))
        );
        assert!(
            "::/0".parse::<Prefix>().is_ok(),
            "the whole IPv6 space is not a mapped prefix"
        );
        // Every prefix that parses contains its own first address (the fuzzing invariant).
        for ok in [
            "10.0.0.0/8",
            "2001:db8::/32",
            "::/0",
            "0.0.0.0/0",
            "::fffe:0:0/95",
        ] {
            let p: Prefix = ok.parse().unwrap();
            assert!(p.contains(p.first_address()), "{ok}");
        }
    }

    #[test]
    fn containment_handles_mapped_addresses() {
        let p: Prefix = "127.0.1.0/24".parse().unwrap();
        assert!(p.contains("127.0.1.9".parse().unwrap()));
        assert!(p.contains("::ffff:127.0.1.9".parse().unwrap()));
        assert!(!p.contains("127.0.2.9".parse().unwrap()));
    }
}
