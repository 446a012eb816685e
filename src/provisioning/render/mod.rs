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

/// A flat 7940/7960 `.cnf` file under construction: `name: "value"` lines with unique names, written
/// into the output text as they are added. Renderers add each built-in name once, in a fixed order
/// ([`Cnf::push`] and friends: no lookup); [`Cnf::set`] is for names that may already be there (a
/// tenant's extra parameters, `sync`) and replaces the value in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cnf {
    text: String,
    /// Per line: where it starts in `text` and where its name ends.
    lines: Vec<(usize, usize)>,
}

impl Cnf {
    /// An empty file.
    pub fn new() -> Self {
        Cnf {
            text: String::with_capacity(2048),
            lines: Vec::with_capacity(64),
        }
    }

    fn start_line(&mut self, name: impl std::fmt::Display) {
        use std::fmt::Write as _;
        let start = self.text.len();
        let _ = write!(self.text, "{name}");
        self.lines.push((start, self.text.len()));
        self.text.push_str(": \"");
    }

    fn push_value(&mut self, value: &str) {
        // Double quotes and control characters are removed (validated settings contain none).
        if value.bytes().any(|b| b == b'"' || b.is_ascii_control()) || !value.is_ascii() {
            self.text
                .extend(value.chars().filter(|c| *c != '"' && !c.is_control()));
        } else {
            self.text.push_str(value);
        }
        self.text.push_str("\"\n");
    }

    /// Appends `name` (which must not be there yet) with a text value.
    pub fn push(&mut self, name: impl std::fmt::Display, value: &str) {
        self.start_line(name);
        self.push_value(value);
        debug_assert!(self.names_unique(), "duplicate .cnf name");
    }

    /// Appends `name` (which must not be there yet) with a number or another value whose `Display`
    /// form needs no filtering.
    pub fn push_num(&mut self, name: impl std::fmt::Display, value: impl std::fmt::Display) {
        use std::fmt::Write as _;
        self.start_line(name);
        let _ = write!(self.text, "{value}");
        self.text.push_str("\"\n");
        debug_assert!(self.names_unique(), "duplicate .cnf name");
    }

    fn names_unique(&self) -> bool {
        let last = self.lines.len() - 1;
        let name = self.name(last);
        (0..last).all(|i| self.name(i) != name)
    }

    fn name(&self, i: usize) -> &str {
        let (start, end) = self.lines[i];
        &self.text[start..end]
    }

    /// Where line `i`'s value starts and ends (inside the quotes).
    fn value_range(&self, i: usize) -> std::ops::Range<usize> {
        let end = self.lines.get(i + 1).map_or(self.text.len(), |l| l.0);
        self.lines[i].1 + 3..end - 2
    }

    /// Sets `name`: replaces the value in place when the name is already there, else appends.
    pub fn set(&mut self, name: &str, value: &str) {
        let Some(i) = (0..self.lines.len()).find(|&i| self.name(i) == name) else {
            self.push(name, value);
            return;
        };
        let range = self.value_range(i);
        let old_len = range.len();
        let clean: String = value
            .chars()
            .filter(|c| *c != '"' && !c.is_control())
            .collect();
        self.text.replace_range(range, &clean);
        for line in &mut self.lines[i + 1..] {
            line.0 = line.0 + clean.len() - old_len;
            line.1 = line.1 + clean.len() - old_len;
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        (0..self.lines.len())
            .find(|&i| self.name(i) == name)
            .map(|i| &self.text[self.value_range(i)])
    }

    /// The text: one `name: "value"` line each, LF line ends.
    pub fn finish(self) -> String {
        self.text
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
        c.push("b", "x y");
        c.push_num(format_args!("n{}", 7), 42);
        c.set("a", "2");
        c.set("c", "q\"uote");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get("n7"), Some("42"));
        c.set("b", "a longer value\u{1}");
        assert_eq!(c.get("c"), Some("quote"));
        c.set("zz", "Zoë");
        assert_eq!(
            c.finish(),
            "a: \"2\"\nb: \"a longer value\"\nn7: \"42\"\nc: \"quote\"\nzz: \"Zoë\"\n"
        );
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
