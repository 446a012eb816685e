//! Checks of rendered output, used by the test suite on every built-in file and by template overrides
//! (a tenant's template is refused unless what it renders passes): a flat `.cnf` syntax checker, an XML
//! well-formedness checker (a small parser returning an element tree) and per-kind checks.

use std::collections::BTreeMap;

use super::FileKind;

/// How strictly [`check_cnf_with`] reads values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CnfValues {
    /// Every value double-quoted (what the built-in renderers write).
    Quoted,
    /// Double-quoted or bare (both are read by the 7940/7960 firmware; what overrides may write).
    QuotedOrBare,
}

/// Checks a 7940/7960 `.cnf` file with quoted values (see [`check_cnf_with`]).
pub fn check_cnf(text: &str) -> Result<BTreeMap<String, String>, String> {
    check_cnf_with(text, CnfValues::Quoted)
}

/// Checks a 7940/7960 `.cnf` file: LF line ends, each non-empty non-comment (`#`) line `name: value` with
/// `name` of `[A-Za-z0-9_]+`; a quoted value may be followed by a `;` comment; no control characters in
/// values, no duplicate names. Returns the parameters.
pub fn check_cnf_with(text: &str, values: CnfValues) -> Result<BTreeMap<String, String>, String> {
    if text.contains('\r') {
        return Err("CR in a .cnf file (use LF line ends)".into());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("last line has no LF".into());
    }
    let mut params = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (name, rest) = trimmed
            .split_once(':')
            .ok_or_else(|| format!("line {n}: not `name: value`: {line:?}"))?;
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("line {n}: bad name {name:?}"));
        }
        let rest = rest.trim_start();
        let value = match (rest.strip_prefix('"'), values) {
            (Some(body), _) => {
                let (value, after) = body
                    .split_once('"')
                    .ok_or_else(|| format!("line {n}: unterminated quote"))?;
                let after = after.trim();
                if !(after.is_empty() || after.starts_with(';')) {
                    return Err(format!("line {n}: text after the value: {after:?}"));
                }
                value
            }
            (None, CnfValues::Quoted) => {
                return Err(format!("line {n}: value of {name} is not quoted"))
            }
            (None, CnfValues::QuotedOrBare) => {
                if rest.contains('"') {
                    return Err(format!("line {n}: stray '\"' in the value of {name}"));
                }
                rest.trim_end()
            }
        };
        if value.chars().any(|c| c.is_control()) {
            return Err(format!("line {n}: control character in value"));
        }
        if params.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(format!("line {n}: duplicate parameter {name}"));
        }
    }
    Ok(params)
}

/// An XML element.
#[derive(Debug, Default, Clone)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Attributes in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements.
    pub children: Vec<Element>,
    /// Concatenated, entity-decoded character data.
    pub text: String,
}

impl Element {
    /// The first descendant along a `/`-separated path of child names.
    pub fn path(&self, path: &str) -> Option<&Element> {
        let mut e = self;
        for part in path.split('/') {
            e = e.children.iter().find(|c| c.name == part)?;
        }
        Some(e)
    }

    /// The text at `path`, if the element exists.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.path(path).map(|e| e.text.as_str())
    }

    /// All children named `name`.
    pub fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    /// An attribute value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

impl<'a> Parser<'a> {
    fn err<T>(&self, msg: &str) -> Result<T, String> {
        Err(format!("{msg} at byte {}", self.pos))
    }

    fn starts(&self, p: &str) -> bool {
        self.s[self.pos..].starts_with(p.as_bytes())
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.pos;
        if self.pos >= self.s.len() || !is_name_start(self.s[self.pos]) {
            return self.err("expected a name");
        }
        while self.pos < self.s.len() && is_name_char(self.s[self.pos]) {
            self.pos += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn until(&mut self, end: &str) -> Result<&'a [u8], String> {
        let start = self.pos;
        while self.pos < self.s.len() {
            if self.starts(end) {
                let out = &self.s[start..self.pos];
                self.pos += end.len();
                return Ok(out);
            }
            self.pos += 1;
        }
        self.err(&format!("missing {end:?}"))
    }

    /// Comments and processing instructions between elements.
    fn misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if self.starts("<!--") {
                self.pos += 4;
                let body = self.until("-->")?;
                if body.windows(2).any(|w| w == b"--") {
                    return self.err("'--' inside a comment");
                }
            } else if self.starts("<?") {
                self.pos += 2;
                let target = self.name()?;
                if target.eq_ignore_ascii_case("xml") {
                    return self.err("XML declaration not at the start");
                }
                self.until("?>")?;
            } else {
                return Ok(());
            }
        }
    }

    fn decode(&self, raw: &[u8], in_attr: bool) -> Result<String, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "invalid UTF-8".to_owned())?;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find(['&', '<']) {
            out.push_str(&rest[..i]);
            if rest[i..].starts_with('<') {
                return Err(format!(
                    "'<' in {}",
                    if in_attr { "an attribute" } else { "text" }
                ));
            }
            let end = rest[i..]
                .find(';')
                .ok_or_else(|| "'&' without ';'".to_owned())?;
            let entity = &rest[i + 1..i + end];
            let c = match entity {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{e};"))?,
                e if e.starts_with('#') => e[1..]
                    .parse::<u32>()
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{e};"))?,
                e => return Err(format!("unknown entity &{e};")),
            };
            out.push(c);
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        if out
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err("control character".into());
        }
        Ok(out)
    }

    fn element(&mut self) -> Result<Element, String> {
        if !self.starts("<") {
            return self.err("expected '<'");
        }
        self.pos += 1;
        let mut e = Element {
            name: self.name()?,
            ..Element::default()
        };
        loop {
            let before = self.pos;
            self.skip_ws();
            if self.starts("/>") {
                self.pos += 2;
                return Ok(e);
            }
            if self.starts(">") {
                self.pos += 1;
                break;
            }
            if self.pos == before {
                return self.err("expected whitespace before an attribute");
            }
            let name = self.name()?;
            self.skip_ws();
            if !self.starts("=") {
                return self.err("expected '='");
            }
            self.pos += 1;
            self.skip_ws();
            let quote = match self.s.get(self.pos) {
                Some(b'"') => "\"",
                Some(b'\'') => "'",
                _ => return self.err("expected a quoted attribute value"),
            };
            self.pos += 1;
            let raw = self.until(quote)?;
            let value = self.decode(raw, true)?;
            if e.attr(&name).is_some() {
                return self.err(&format!("duplicate attribute {name}"));
            }
            e.attrs.push((name, value));
        }
        loop {
            let start = self.pos;
            while self.pos < self.s.len() && self.s[self.pos] != b'<' {
                self.pos += 1;
            }
            let raw = &self.s[start..self.pos];
            if raw.windows(3).any(|w| w == b"]]>") {
                return self.err("']]>' in text");
            }
            e.text.push_str(&self.decode(raw, false)?);
            if self.pos >= self.s.len() {
                return self.err(&format!("unclosed <{}>", e.name));
            }
            if self.starts("</") {
                self.pos += 2;
                let name = self.name()?;
                self.skip_ws();
                if !self.starts(">") {
                    return self.err("expected '>'");
                }
                self.pos += 1;
                if name != e.name {
                    return self.err(&format!("</{name}> closes <{}>", e.name));
                }
                return Ok(e);
            } else if self.starts("<!--") {
                self.misc()?;
            } else if self.starts("<![CDATA[") {
                self.pos += 9;
                let raw = self.until("]]>")?;
                e.text
                    .push_str(std::str::from_utf8(raw).map_err(|_| "invalid UTF-8")?);
            } else if self.starts("<?") {
                self.misc()?;
            } else {
                let child = self.element()?;
                e.children.push(child);
            }
        }
    }
}

/// Parses a complete XML document (optional declaration, one root element, comments and PIs around it)
/// and returns its root. No DTDs, no byte-order mark.
pub fn parse_xml(text: &str) -> Result<Element, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    if p.starts("\u{feff}") {
        return p.err("byte-order mark");
    }
    if p.starts("<?xml") {
        p.until("?>")?;
    }
    p.misc()?;
    if p.starts("<!") {
        return p.err("DTDs are not expected");
    }
    let root = p.element()?;
    p.misc()?;
    if p.pos != p.s.len() {
        return p.err("content after the root element");
    }
    Ok(root)
}

/// Checks `OS79XX.TXT`: one image token (letters, digits, `.`, `_`, `-`) and LF.
pub fn check_os79xx(text: &str) -> Result<(), String> {
    let token = text.strip_suffix('\n').ok_or("no LF at the end")?;
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("not one image token: {text:?}"));
    }
    Ok(())
}

/// Checks `RINGLIST.DAT`: LF line ends, each line `display name<TAB>file name`.
pub fn check_ringlist_dat(text: &str) -> Result<(), String> {
    if text.contains('\r') {
        return Err("CR in RINGLIST.DAT (use LF line ends)".into());
    }
    if !text.ends_with('\n') {
        return Err("last line has no LF".into());
    }
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let (name, file) = line
            .rsplit_once('\t')
            .ok_or_else(|| format!("line {n}: no tab in {line:?}"))?;
        if name.trim().is_empty() {
            return Err(format!("line {n}: empty display name"));
        }
        if file.is_empty() || file.contains(char::is_whitespace) {
            return Err(format!("line {n}: bad file name {file:?}"));
        }
    }
    Ok(())
}

/// Checks a rendered file of `kind`; `values` says how `.cnf` values may be written.
pub fn check_kind(kind: FileKind, text: &str, values: CnfValues) -> Result<(), String> {
    match kind {
        FileKind::SipDefaultCnf | FileKind::SipDeviceCnf => check_cnf_with(text, values).map(drop),
        FileKind::Os79xxTxt => check_os79xx(text),
        FileKind::RingListDat => check_ringlist_dat(text),
        FileKind::SepDeviceXml
        | FileKind::XmlDefault
        | FileKind::RingListXml
        | FileKind::DistinctiveRingListXml
        | FileKind::DialPlan
        | FileKind::SyncInfo => parse_xml(text).map(drop),
        FileKind::Stored => Ok(()),
    }
}
