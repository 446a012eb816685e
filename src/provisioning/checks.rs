//! Test-only checks applied to every rendered file. The checkers themselves live in
//! [`super::validate`] (template overrides use them too); this module adds the panicking wrapper.

pub use super::validate::{check_cnf, parse_xml, Element};
use super::validate::{check_kind, CnfValues};
use super::FileKind;

/// Runs the checks that apply to a rendered file of `kind`, panicking with `what` on failure.
pub fn check_rendered(kind: FileKind, what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("{what}: not UTF-8"));
    check_kind(kind, text, CnfValues::Quoted).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
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
