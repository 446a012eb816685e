//! `TenantSlug`: the URL-safe, unique short name of a tenant.

use std::fmt;
use std::str::FromStr;

/// Lower-case a-z, 0-9 and '-', 1 to 63 characters, not starting or ending with '-'.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TenantSlug(String);

/// Why a string is not a tenant slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a slug is 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
pub struct ParseSlugError;

impl TenantSlug {
    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantSlug {
    type Err = ParseSlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseSlugError)
        }
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TenantSlug {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_rule() {
        for ok in ["a", "acme", "acme-2", "0", &"x".repeat(63)] {
            assert!(ok.parse::<TenantSlug>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "acme_1",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(bad.parse::<TenantSlug>().is_err(), "{bad}");
        }
    }
}
