//! Per-tenant template overrides, compiled once per snapshot load: the ids a tenant may override, and a
//! compiled MiniJinja template per override. What the templates are given and how their output is used
//! lives in `provisioning::template`; this module only knows ids, syntax, escaping and limits.
//!
//! Every template is compiled in an environment of its own with:
//!
//! * `trim_blocks`, `lstrip_blocks` and `keep_trailing_newline`: a `{% … %}` tag on a line of its own
//!   leaves no blank line, and the file's last LF is kept;
//! * semi-strict undefined values: printing or iterating an undefined variable (a typo) is an error,
//!   `{% if x %}` on one is false;
//! * escaping by format: in XML templates every printed value is XML-escaped (`& < > " '`), in `.cnf`
//!   templates `"` and control characters are dropped from printed values (as the built-in writer does),
//!   in text templates control characters are dropped; `none` prints as nothing; `|safe` prints as is;
//! * a fuel limit per render ([`FUEL`]) and an output limit ([`MAX_OUTPUT`]), so that no template can
//!   stall the request path; no `include`/`import` (there is no loader).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// Work budget of one render (MiniJinja fuel: about one unit per instruction).
pub const FUEL: u64 = 1_000_000;
/// The largest output a template may produce, bytes.
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// The largest template source accepted, bytes.
pub const MAX_SOURCE: usize = 256 * 1024;

/// A file a tenant may replace the built-in renderer of. The URL form is [`TemplateId::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateId {
    /// `SIPDefault.cnf` (7940/7960 tenant-wide defaults).
    SipDefaultCnf,
    /// `SIP<MAC>.cnf` (7940/7960 phone file).
    SipDeviceCnf,
    /// The full `SEP<MAC>.cnf.xml` of every model except 7940/7960.
    SepDeviceXml,
    /// The loader `SEP<MAC>.cnf.xml` of a 7940/7960 (protocol and load).
    SepLoaderXml,
    /// `XMLDefault.cnf.xml`.
    XmlDefault,
    /// `dialplan.xml`.
    DialPlan,
    /// `RINGLIST.DAT`.
    RingListDat,
    /// `RINGLIST.XML` (also served as `Ringlist.xml` and `DistinctiveRingList.xml`).
    RingListXml,
    /// `syncinfo.xml`.
    SyncInfo,
    /// `OS79XX.TXT`.
    Os79xxTxt,
}

/// How a template's printed values are escaped (and how its output is checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateFormat {
    /// Flat 7940/7960 `name: "value"` lines.
    Cnf,
    /// An XML document.
    Xml,
    /// Plain text lines.
    Text,
}

impl TemplateId {
    /// Every id, in documentation order.
    pub const ALL: &'static [TemplateId] = &[
        TemplateId::SipDefaultCnf,
        TemplateId::SipDeviceCnf,
        TemplateId::SepDeviceXml,
        TemplateId::SepLoaderXml,
        TemplateId::XmlDefault,
        TemplateId::DialPlan,
        TemplateId::RingListDat,
        TemplateId::RingListXml,
        TemplateId::SyncInfo,
        TemplateId::Os79xxTxt,
    ];

    /// The stable, URL-safe name (`SIPMAC.cnf`, `SEPMAC.cnf.xml`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateId::SipDefaultCnf => "SIPDefault.cnf",
            TemplateId::SipDeviceCnf => "SIPMAC.cnf",
            TemplateId::SepDeviceXml => "SEPMAC.cnf.xml",
            TemplateId::SepLoaderXml => "SEPMAC-loader.cnf.xml",
            TemplateId::XmlDefault => "XMLDefault.cnf.xml",
            TemplateId::DialPlan => "dialplan.xml",
            TemplateId::RingListDat => "RINGLIST.DAT",
            TemplateId::RingListXml => "RINGLIST.XML",
            TemplateId::SyncInfo => "syncinfo.xml",
            TemplateId::Os79xxTxt => "OS79XX.TXT",
        }
    }

    /// Parses the URL form (exact spelling).
    pub fn parse(s: &str) -> Option<TemplateId> {
        TemplateId::ALL.iter().copied().find(|id| id.as_str() == s)
    }

    /// How printed values are escaped.
    pub fn format(self) -> TemplateFormat {
        match self {
            TemplateId::SipDefaultCnf | TemplateId::SipDeviceCnf => TemplateFormat::Cnf,
            TemplateId::RingListDat | TemplateId::Os79xxTxt => TemplateFormat::Text,
            _ => TemplateFormat::Xml,
        }
    }

    /// Whether the file is rendered per phone (the template sees `phone`).
    pub fn per_device(self) -> bool {
        matches!(
            self,
            TemplateId::SipDeviceCnf | TemplateId::SepDeviceXml | TemplateId::SepLoaderXml
        )
    }

    /// Whether an output of only whitespace means "nothing to serve" (phones get "file not found", or a
    /// stored file of that name), as the built-in renderer answers when nothing is configured.
    pub fn may_be_absent(self) -> bool {
        matches!(
            self,
            TemplateId::SepLoaderXml
                | TemplateId::RingListDat
                | TemplateId::RingListXml
                | TemplateId::Os79xxTxt
        )
    }

    /// One line on what the file is.
    pub fn description(self) -> &'static str {
        match self {
            TemplateId::SipDefaultCnf => "7940/7960 tenant-wide defaults",
            TemplateId::SipDeviceCnf => "7940/7960 per-phone file SIP<MAC>.cnf",
            TemplateId::SepDeviceXml => {
                "full per-phone SEP<MAC>.cnf.xml of every model except 7940/7960"
            }
            TemplateId::SepLoaderXml => {
                "loader SEP<MAC>.cnf.xml of a 7940/7960 (served only when its model has a load)"
            }
            TemplateId::XmlDefault => "XMLDefault.cnf.xml",
            TemplateId::DialPlan => "dial template dialplan.xml",
            TemplateId::RingListDat => "7940/7960 ring menu RINGLIST.DAT",
            TemplateId::RingListXml => {
                "XML ring menu (RINGLIST.XML, Ringlist.xml, DistinctiveRingList.xml)"
            }
            TemplateId::SyncInfo => "7940/7960 resync check syncinfo.xml",
            TemplateId::Os79xxTxt => "7940/7960 dual-boot image name OS79XX.TXT",
        }
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Escapes for XML text and attributes; control characters XML cannot carry are dropped.
fn xml_escape(s: &str, out: &mut String) {
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
}

/// One compiled override.
pub struct CompiledTemplate {
    id: TemplateId,
    source: Arc<str>,
    env: Environment<'static>,
}

impl fmt::Debug for CompiledTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CompiledTemplate({}, {} bytes)",
            self.id,
            self.source.len()
        )
    }
}

impl CompiledTemplate {
    /// Compiles `source` for `id`; the error is MiniJinja's message with the line.
    pub fn compile(id: TemplateId, source: &str) -> Result<CompiledTemplate, String> {
        if source.len() > MAX_SOURCE {
            return Err(format!(
                "the template is larger than {} KiB",
                MAX_SOURCE >> 10
            ));
        }
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .map_err(|e| e.to_string())?,
        );
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let format = id.format();
        env.set_formatter(move |out, _state, value| {
            if value.is_none() || value.is_undefined() {
                return Ok(());
            }
            let text = value.to_string();
            if value.is_safe() {
                return out.write_str(&text).map_err(minijinja::Error::from);
            }
            let mut escaped = String::with_capacity(text.len() + 8);
            match format {
                TemplateFormat::Xml => xml_escape(&text, &mut escaped),
                TemplateFormat::Cnf => {
                    escaped.extend(text.chars().filter(|c| *c != '"' && !c.is_control()))
                }
                TemplateFormat::Text => escaped.extend(text.chars().filter(|c| !c.is_control())),
            }
            out.write_str(&escaped).map_err(minijinja::Error::from)
        });
        env.add_template_owned(id.as_str(), source.to_owned())
            .map_err(|e| describe(&e))?;
        Ok(CompiledTemplate {
            id,
            source: Arc::from(source),
            env,
        })
    }

    /// The id.
    pub fn id(&self) -> TemplateId {
        self.id
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `ctx`; errors (undefined values, fuel, output limit) are described with the line.
    pub fn render(&self, ctx: Value) -> Result<String, String> {
        let tpl = self
            .env
            .get_template(self.id.as_str())
            .map_err(|e| describe(&e))?;
        let out = tpl.render(ctx).map_err(|e| describe(&e))?;
        if out.len() > MAX_OUTPUT {
            return Err(format!("output larger than {} KiB", MAX_OUTPUT >> 10));
        }
        Ok(out)
    }
}

/// MiniJinja's message with its cause chain, on one line.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// A tenant's compiled overrides by id (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Templates(BTreeMap<TemplateId, Arc<CompiledTemplate>>);

impl Templates {
    /// The override for `id`, if the tenant has one.
    pub fn get(&self, id: TemplateId) -> Option<&CompiledTemplate> {
        self.0.get(&id).map(Arc::as_ref)
    }

    /// The shared override for `id` (to reuse it in the next snapshot).
    pub fn get_shared(&self, id: TemplateId) -> Option<&Arc<CompiledTemplate>> {
        self.0.get(&id)
    }

    /// Whether both hold the very same compiled overrides (an unchanged source is reused across loads).
    pub fn same_as(&self, other: &Templates) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }

    /// Adds or replaces an override.
    pub fn insert(&mut self, template: Arc<CompiledTemplate>) {
        self.0.insert(template.id(), template);
    }

    /// Whether there is no override.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every override, by id.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledTemplate> {
        self.0.values().map(Arc::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn ids_round_trip_and_are_url_safe() {
        for id in TemplateId::ALL {
            assert_eq!(TemplateId::parse(id.as_str()), Some(*id));
            assert!(id
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        }
        assert_eq!(TemplateId::parse("sipmac.cnf"), None);
    }

    #[test]
    fn escaping_follows_the_format() {
        let ctx = || context! { v => "a\"<b>&'c\u{1}", n => Value::from(()) };
        let xml = CompiledTemplate::compile(TemplateId::DialPlan, "<x a=\"{{ v }}\">{{ n }}</x>\n")
            .unwrap();
        assert_eq!(
            xml.render(ctx()).unwrap(),
            "<x a=\"a&quot;&lt;b&gt;&amp;&apos;c\"></x>\n"
        );
        let cnf = CompiledTemplate::compile(TemplateId::SipDeviceCnf, "a: \"{{ v }}\"\n").unwrap();
        assert_eq!(cnf.render(ctx()).unwrap(), "a: \"a<b>&'c\"\n");
        let safe = CompiledTemplate::compile(TemplateId::DialPlan, "{{ '<y/>'|safe }}").unwrap();
        assert_eq!(safe.render(ctx()).unwrap(), "<y/>");
    }

    #[test]
    fn blocks_are_trimmed_and_the_last_newline_kept() {
        let t = CompiledTemplate::compile(
            TemplateId::SipDeviceCnf,
            "{% for x in xs %}\n  {% if x %}\nk{{ x }}: \"{{ x }}\"\n  {% endif %}\n{% endfor %}\n",
        )
        .unwrap();
        assert_eq!(
            t.render(context! { xs => vec![1, 0, 2] }).unwrap(),
            "k1: \"1\"\nk2: \"2\"\n"
        );
    }

    #[test]
    fn typos_and_runaway_templates_fail() {
        let t = CompiledTemplate::compile(TemplateId::SipDeviceCnf, "{{ phone.mca }}").unwrap();
        assert!(t
            .render(context! { phone => context! { mac => "x" } })
            .is_err());
        let err = CompiledTemplate::compile(TemplateId::SipDeviceCnf, "a\n{% if %}\n").unwrap_err();
        assert!(err.contains("SIPMAC.cnf:2"), "{err}");
        let t = CompiledTemplate::compile(
            TemplateId::SipDeviceCnf,
            "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(t.render(context! {}).is_err());
    }
}
