//! Renderers, one file per output format, plus the helpers they share: XML escaping, the flat `.cnf`
//! writer and content stamps. Renderers are pure functions of `Resolved` settings and phone data.

pub mod dialplan;
pub mod ringlist;
pub mod sip79xx;
pub mod syncinfo;
pub mod xml_device;

use sha2::{Digest, Sha256};

/// Escapes text for an XML text node or a double-quoted attribute value. Control characters that XML 1.0
/// cannot carry are dropped (validated settings never contain them; this is defence in depth).
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `<name>escaped value</name>` on its own line, indented by `depth` levels of two spaces.
pub(crate) fn el(out: &mut String, depth: usize, name: &str, value: &str) {
    indent(out, depth);
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape_xml(value));
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Appends an opening (`close == false`) or closing tag on its own line.
pub(crate) fn tag(out: &mut String, depth: usize, name: &str, close: bool) {
    indent(out, depth);
    out.push_str(if close { "</" } else { "<" });
    out.push_str(name);
    out.push_str(">\n");
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// A flat 7940/7960 `.cnf` file under construction: ordered `name: "value"` pairs with unique names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cnf {
    entries: Vec<(String, String)>,
}

impl Cnf {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name`: replaces the value in place when the name is already there, else appends.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text: one `name: "value"` line each, LF line ends. Double quotes and control characters are
    /// removed from values (validated settings contain none).
    pub fn finish(&self) -> String {
        let mut out = String::with_capacity(self.entries.len() * 32);
        for (name, value) in &self.entries {
            out.push_str(name);
            out.push_str(": \"");
            out.extend(value.chars().filter(|c| *c != '"' && !c.is_control()));
            out.push_str("\"\n");
        }
        out
    }
}

/// Length-prefixed SHA-256 over several parts (so that part boundaries matter).
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The `versionStamp` form of a digest: its first 8 hex digits.
pub(crate) fn stamp_hex(d: &[u8; 32]) -> String {
    hex::encode(&d[..4])
}

/// The `sync` form of a digest: its first 31 bits as a decimal number (fits any integer parser).
pub(crate) fn stamp_u31(d: &[u8; 32]) -> u32 {
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping() {
        assert_eq!(
            escape_xml(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape_xml("x\u{1}y\u{7}z"), "xyz");
        assert_eq!(escape_xml("Zoë"), "Zoë");
    }

    #[test]
    fn cnf_keys_are_unique_and_replaced_in_place() {
        let mut c = Cnf::new();
        c.set("a", "1");
        c.set("b", "x y");
        c.set("a", "2");
        c.set("c", "q\"uote");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.finish(), "a: \"2\"\nb: \"x y\"\nc: \"quote\"\n");
    }

    #[test]
    fn stamps_are_stable_and_part_sensitive() {
        let a = digest(&[b"ab", b"c"]);
        let b = digest(&[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(stamp_hex(&a).len(), 8);
        assert!(stamp_u31(&a) <= i32::MAX as u32);
        assert_eq!(a, digest(&[b"ab", b"c"]));
    }
}
