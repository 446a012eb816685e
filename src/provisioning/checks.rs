//! Test-only checkers applied to every rendered file: a flat `.cnf` syntax checker, an XML
//! well-formedness checker (a small parser returning an element tree), and per-kind checks.

use std::collections::BTreeMap;

use super::FileKind;

/// Checks a 7940/7960 `.cnf` file: LF line ends, each non-empty non-comment line `name: "value"` with
/// `name` of `[A-Za-z0-9_]+`, the value double-quoted (an optional `;` comment may follow), no duplicate
/// names. Returns the parameters.
pub fn check_cnf(text: &str) -> Result<BTreeMap<String, String>, String> {
    if text.contains('\r') {
        return Err("CR in a .cnf file".into());
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
            .ok_or_else(|| format!("line {n}: no ':' in {line:?}"))?;
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("line {n}: bad name {name:?}"));
        }
        let rest = rest.trim_start();
        let body = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("line {n}: value of {name} is not quoted"))?;
        let (value, after) = body
            .split_once('"')
            .ok_or_else(|| format!("line {n}: unterminated quote"))?;
        let after = after.trim();
        if !(after.is_empty() || after.starts_with(';')) {
            return Err(format!("line {n}: text after the value: {after:?}"));
        }
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

/// Runs the checks that apply to a rendered file of `kind`, panicking with `what` on failure.
pub fn check_rendered(kind: FileKind, what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("{what}: not UTF-8"));
    match kind {
        FileKind::SipDefaultCnf | FileKind::SipDeviceCnf => {
            check_cnf(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        }
        FileKind::Os79xxTxt => {
            let token = text
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("{what}: no LF"));
            assert!(
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{what}: not one token: {text:?}"
            );
        }
        FileKind::RingListDat => {
            assert!(text.ends_with('\n') && !text.contains('\r'), "{what}");
            for line in text.lines() {
                let (name, file) = line
                    .rsplit_once('\t')
                    .unwrap_or_else(|| panic!("{what}: no tab in {line:?}"));
                assert!(!name.trim().is_empty(), "{what}: empty name");
                assert!(
                    !file.is_empty() && !file.contains(char::is_whitespace),
                    "{what}: file name {file:?}"
                );
            }
        }
        FileKind::SepDeviceXml
        | FileKind::XmlDefault
        | FileKind::RingListXml
        | FileKind::DistinctiveRingListXml
        | FileKind::DialPlan
        | FileKind::SyncInfo => {
            parse_xml(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        }
        FileKind::Stored => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnf_checker_accepts_and_refuses() {
        let ok = "# comment\n\nproxy1_address: \"10.1.1.1\"\nimage_version : \"P0S3\" ; note\nempty: \"\"\n";
        let p = check_cnf(ok).unwrap();
        assert_eq!(p["image_version"], "P0S3");
        assert_eq!(p["empty"], "");
        for bad in [
            "a: 1\n",
            "a: \"1\"\na: \"2\"\n",
            "bad-name: \"x\"\n",
            "a \"x\"\n",
            "a: \"x\" y\n",
            "a: \"x\"",
            "a: \"x\"\r\n",
            "a: \"x\n",
        ] {
            assert!(check_cnf(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xml_checker_accepts_and_refuses() {
        let root = parse_xml(
            "<?xml version=\"1.0\"?>\n<!-- c --><a x=\"1&amp;2\" y='3'><b>t&lt;&#65;&#x42;</b><c/><![CDATA[<raw>]]></a>\n",
        )
        .unwrap();
        assert_eq!(root.attr("x"), Some("1&2"));
        assert_eq!(root.text_at("b"), Some("t<AB"));
        assert!(root.path("c").is_some());
        assert!(root.text.contains("<raw>"));
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a><b></a></b>",
            "<a>x & y</a>",
            "<a>&nbsp;</a>",
            "<a x=1/>",
            "<a x=\"1\" x=\"2\"/>",
            "<a/><b/>",
            "<a>]]></a>",
            "<a x=\"<\"/>",
            "text<a/>",
            "<a/>trailing",
            "<a><!-- x -- y --></a>",
            "<1a/>",
            "\u{feff}<a/>",
            "<a>\u{1}</a>",
        ] {
            assert!(parse_xml(bad).is_err(), "{bad:?}");
        }
    }
}
