//! `dialplan.xml`: the dial template named by `dial_template` (7940/7960) and `<dialTemplate>` (XML
//! phones), reference §1.8 and §3.4.
//!
//! One file serves every family, so it uses the upper-case 7940 form (`<DIALTEMPLATE>`, `MATCH`,
//! `Timeout`), which 79x1 and 89xx phones also accept in working deployments. Patterns use Cisco
//! syntax (`.` one character, `*` any characters, `\*` a literal star); dialtone's `X` (any digit)
//! becomes `.`, and `T` is dropped (the rule's timeout does its job). With no rules the file is an
//! empty template, which silences the phone's "file not found" without changing its behaviour.

use crate::provisioning::resolve::Resolved;

use super::escape_xml;

/// Translates a dialtone pattern into Cisco dial-template syntax.
pub(crate) fn cisco_pattern(p: &str) -> String {
    p.chars()
        .filter(|c| *c != 'T')
        .map(|c| if c == 'X' { '.' } else { c })
        .collect()
}

/// Renders `dialplan.xml`.
pub fn dialplan(r: &Resolved) -> String {
    let mut o = String::from("<DIALTEMPLATE>\n");
    for rule in &r.dial_plan {
        o.push_str(&format!(
            "  <TEMPLATE MATCH=\"{}\" Timeout=\"{}\"/>\n",
            escape_xml(&cisco_pattern(rule.pattern.as_str())),
            rule.timeout.0
        ));
    }
    o.push_str("</DIALTEMPLATE>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Settings;
    use serde_json::json;

    #[test]
    fn rules_become_templates() {
        let r = Resolved::from_settings(
            &Settings::from_json(json!({"dial_plan": [
                {"match": "9.", "timeout": 3}, {"match": "1XXXT", "timeout": 0}, {"match": "\\*97", "timeout": 0}]}))
            .unwrap(),
        );
        assert_eq!(
            dialplan(&r),
            "<DIALTEMPLATE>\n  <TEMPLATE MATCH=\"9.\" Timeout=\"3\"/>\n  <TEMPLATE MATCH=\"1...\" Timeout=\"0\"/>\n  <TEMPLATE MATCH=\"\\*97\" Timeout=\"0\"/>\n</DIALTEMPLATE>\n"
        );
        let empty = Resolved::from_settings(&Settings::default());
        assert_eq!(dialplan(&empty), "<DIALTEMPLATE>\n</DIALTEMPLATE>\n");
    }
}
