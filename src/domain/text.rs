//! Constrained strings used in settings and phones: host names, dial strings, file and load names, URLs.
//!
//! Every type here is a `String` that passed its check once, at the edge; renderers can write it into a
//! quoted `.cnf` value or an XML text node (after XML escaping) without further checks.

use std::fmt;

macro_rules! constrained_string {
    ($(#[$doc:meta])* $name:ident, $expect:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps `s`.
            pub fn parse(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> bool = $check;
                if check(s) { Ok(Self(s.to_owned())) } else { Err(format!("{}: {}", $expect, shorten(s))) }
            }
            /// The text.
            pub fn as_str(&self) -> &str { &self.0 }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str { &self.0 }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(&self.0) }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Quotes a rejected value for an error message, cut to 40 characters (never echo whole inputs).
fn shorten(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn is_hostname(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// True for printable text without control characters or double quotes (safe in a quoted `.cnf` value).
fn is_plain_text(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c == '"')
}

constrained_string!(
    /// A DNS name or an IP address (`sip.acme.example`, `192.0.2.10`).
    Host, "expected a host name or IP address", is_hostname
);

constrained_string!(
    /// Something a phone dials: digits, `*`, `#` and `+`, 1 to 32 characters (`*97`).
    DialString, "expected 1 to 32 of 0-9 * # +",
    |s| (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || b"*#+".contains(&b))
);

constrained_string!(
    /// A dial-plan pattern: digits, `*`, `#`, `+`, `.` (one character), `X`, `T` and `\` escapes, 1 to 64.
    DialPattern, "expected a dial pattern of 0-9 * # + . X T \\ (1 to 64 characters)",
    |s| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || b"*#+.XT\\".contains(&b))
);

constrained_string!(
    /// A firmware load name without extension (`P0S3-8-12-00`, `SIP42.9-4-2SR3-1S`).
    LoadName, "expected a load name of letters, digits, '.', '-' and '_' (1 to 64 characters)",
    |s| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        && !s.starts_with('.')
);

constrained_string!(
    /// A stored file's name, flat (no directories): letters, digits, `.`, `-`, `_`, 1 to 128 characters.
    FileName, "expected a file name of letters, digits, '.', '-' and '_', optionally in directories \
        ('Desktops/320x196x4/List.xml'); at most 255 characters, no segment empty or starting with '.'",
    |s| s.len() <= 255 && s.split('/').all(|seg| (1..=128).contains(&seg.len())
        && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b)) && !seg.starts_with('.'))
);

constrained_string!(
    /// An `http://` or `https://` URL without spaces or quotes, at most 255 characters.
    HttpUrl, "expected an http:// or https:// URL of at most 255 characters without spaces or quotes",
    |s| s.len() <= 255
        && (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > 8
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
);

constrained_string!(
    /// A short display text (names, labels): printable, no double quotes, 1 to 64 characters.
    ShortText, "expected 1 to 64 printable characters without double quotes",
    |s| (1..=64).contains(&s.chars().count()) && is_plain_text(s)
);

constrained_string!(
    /// A parameter name for the raw-parameter escape hatch: lower/upper letters, digits, `_`, 1 to 64.
    ParamName, "expected a parameter name of letters, digits and '_' (1 to 64 characters)",
    |s| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.as_bytes()[0].is_ascii_alphabetic()
);

constrained_string!(
    /// A raw parameter value: printable, no double quotes, at most 255 characters.
    ParamValue, "expected at most 255 printable characters without double quotes",
    |s| s.chars().count() <= 255 && is_plain_text(s)
);

/// True for printable text without control characters or double quotes, of `1..=max` characters.
pub fn is_short_plain_text(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count()) && is_plain_text(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "sip.acme.example",
            "192.0.2.1",
            "2001:db8::1",
            "pbx",
            "a-b.c_d.example",
        ] {
            assert!(Host::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "sip acme",
            "-a.example",
            "a..b",
            "sip\"x",
            "a.example/x",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dial_strings_patterns_and_names() {
        assert!(DialString::parse("*97").is_ok());
        assert!(DialString::parse("97a").is_err());
        assert!(DialPattern::parse("9.").is_ok());
        assert!(DialPattern::parse("9.<").is_err());
        assert!(LoadName::parse("SIP42.9-4-2SR3-1S").is_ok());
        assert!(LoadName::parse("../x").is_err());
        assert!(FileName::parse("ringer1.pcm").is_ok());
        assert!(FileName::parse("Desktops/320x196x4/List.xml").is_ok());
        for bad in [
            "/a.pcm",
            "a//b",
            "a/../b",
            "../b",
            "a/.hidden",
            "a\\b",
            "a/b/",
            "",
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad}");
        }
        assert!(HttpUrl::parse("http://dir.example/x?a=1&b=2").is_ok());
        assert!(HttpUrl::parse("ftp://x").is_err());
        assert!(ShortText::parse("Reception").is_ok());
        assert!(ShortText::parse("a\"b").is_err());
        assert!(ParamName::parse("1abc").is_err());
    }

    #[test]
    fn error_messages_do_not_echo_long_inputs() {
        let err = ShortText::parse(&"x".repeat(500)).unwrap_err();
        assert!(err.len() < 150, "{err}");
    }
}
