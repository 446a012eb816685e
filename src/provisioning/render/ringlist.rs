//! Ring menus: `RINGLIST.DAT` for 7940/7960 (reference §1.7) and the XML `<CiscoIPPhoneRingList>` for
//! the XML phones (§3.4), also served as `DistinctiveRingList.xml`.
//!
//! Both answer "nothing to render" for an empty ring list, so that the phone offers its built-in rings
//! (or a stored file of the same name is served instead).

use crate::provisioning::resolve::Resolved;

use super::{el, tag};

/// Longest display name the XML ring list accepts.
const XML_NAME_MAX: usize = 25;
/// Most entries the XML ring list accepts.
const XML_ENTRIES_MAX: usize = 50;

/// `RINGLIST.DAT`: `display name<TAB>file name` per line (the file name is the last token).
pub fn ringlist_dat(r: &Resolved) -> Option<String> {
    if r.ring_list.is_empty() {
        return None;
    }
    let mut o = String::new();
    for ring in &r.ring_list {
        o.push_str(ring.name.as_str().trim());
        o.push('\t');
        o.push_str(ring.file.as_str());
        o.push('\n');
    }
    Some(o)
}

/// `RINGLIST.XML` / `Ringlist.xml` / `DistinctiveRingList.xml`.
pub fn ringlist_xml(r: &Resolved) -> Option<String> {
    if r.ring_list.is_empty() {
        return None;
    }
    let mut o = String::from("<CiscoIPPhoneRingList>\n");
    for ring in r.ring_list.iter().take(XML_ENTRIES_MAX) {
        tag(&mut o, 1, "Ring", false);
        let name: String = ring
            .name
            .as_str()
            .trim()
            .chars()
            .take(XML_NAME_MAX)
            .collect();
        el(&mut o, 2, "DisplayName", &name);
        el(&mut o, 2, "FileName", ring.file.as_str());
        tag(&mut o, 1, "Ring", true);
    }
    o.push_str("</CiscoIPPhoneRingList>\n");
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Settings;
    use serde_json::json;

    #[test]
    fn ring_lists() {
        let r = Resolved::from_settings(
            &Settings::from_json(json!({"ring_list": [
                {"name": "Old Style", "file": "ringer1.pcm"}, {"name": "Bells & <Whistles>", "file": "Bells.raw"}]}))
            .unwrap(),
        );
        assert_eq!(
            ringlist_dat(&r).unwrap(),
            "Old Style\tringer1.pcm\nBells & <Whistles>\tBells.raw\n"
        );
        let x = ringlist_xml(&r).unwrap();
        assert!(x.contains("<DisplayName>Bells &amp; &lt;Whistles&gt;</DisplayName>"));
        let empty = Resolved::from_settings(&Settings::default());
        assert!(ringlist_dat(&empty).is_none() && ringlist_xml(&empty).is_none());
    }
}
