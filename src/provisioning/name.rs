//! Request names (SPEC §5.2): normalisation and classification into what the server does with them.
//!
//! Normalisation strips leading `/` and `./`, collapses `//` and drops `.` components; it refuses `..`
//! components, backslashes, control bytes, the empty name and names over 255 bytes. Classification looks at
//! the normalised name:
//!
//! * per-device names, matched on the last path component (a `tftp_cfg_dir` such as `./sip_phone/` is
//!   ignored) with the whole name in any letter case: `SIP<MAC>.cnf`, `SEP<MAC>.cnf.xml`, and `SEP<MAC>.cnf`
//!   (legacy SCCP, never rendered, but still a device request);
//! * known-absent names, answered "not found" at once: `CTLSEP<MAC>.tlv`, `ITLSEP<MAC>.tlv`, `ITLFile.tlv`,
//!   `SEP<MAC>.cnf.xml.enc` and anything ending in `.sgn`;
//! * tenant-wide rendered names (no directory part), exact spelling first, then case-insensitively;
//! * anything else is a stored-file lookup.

use crate::domain::MacAddress;

/// What a served file is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FileKind {
    /// `OS79XX.TXT`: the 7940/7960 dual-boot image name.
    Os79xxTxt,
    /// `SIPDefault.cnf`: 7940/7960 tenant-wide defaults.
    SipDefaultCnf,
    /// `SIP<MAC>.cnf`: 7940/7960 phone file.
    SipDeviceCnf,
    /// `SEP<MAC>.cnf.xml`: device XML (full SIP config, or the loader file of a 7940/7960).
    SepDeviceXml,
    /// `XMLDefault.cnf.xml`: the default XML with `loadInformationNNN` per model.
    XmlDefault,
    /// `RINGLIST.DAT`: 7940/7960 ring menu.
    RingListDat,
    /// `RINGLIST.XML` / `Ringlist.xml`: the XML ring menu.
    RingListXml,
    /// `DistinctiveRingList.xml`: the distinctive-ring menu (same list, same format).
    DistinctiveRingListXml,
    /// `dialplan.xml`: the dial template.
    DialPlan,
    /// `syncinfo.xml`: the 7940/7960 resync check.
    SyncInfo,
    /// A stored blob, byte for byte.
    Stored,
}

impl FileKind {
    /// Whether the server renders this kind (everything except stored files).
    pub fn is_rendered(self) -> bool {
        self != FileKind::Stored
    }
}

/// Why a name is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BadName {
    /// Empty after normalisation.
    Empty,
    /// Longer than 255 bytes.
    TooLong,
    /// Contains a control byte.
    ControlByte,
    /// Contains a backslash.
    Backslash,
    /// Has a `..` component.
    ParentDir,
    /// Ends with `/` (a directory).
    Directory,
}

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Normalises a requested name (see the module documentation).
pub fn normalise(raw: &str) -> Result<String, BadName> {
    if raw.len() > MAX_NAME_LEN {
        return Err(BadName::TooLong);
    }
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(BadName::ControlByte);
    }
    if raw.contains('\\') {
        return Err(BadName::Backslash);
    }
    if raw.ends_with('/') && !raw.is_empty() {
        return Err(BadName::Directory);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(BadName::ParentDir),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(BadName::Empty);
    }
    Ok(parts.join("/"))
}

/// What to do with a normalised name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// A per-device name: render for the phone with this MAC (`kind` is `SipDeviceCnf` or
    /// `SepDeviceXml`), or `None` for a device name that is never rendered (`SEP<MAC>.cnf`).
    Device {
        /// What to render, if anything.
        kind: Option<FileKind>,
        /// The MAC in the name.
        mac: MacAddress,
    },
    /// A tenant-wide rendered file; `exact` when the name is the canonical spelling.
    TenantWide {
        /// What to render.
        kind: FileKind,
        /// Spelled exactly as listed (else matched case-insensitively).
        exact: bool,
    },
    /// Answered "not found" at once, never counted as a miss.
    KnownAbsent,
    /// Anything else: a stored-file lookup.
    Other,
}

/// Canonical spellings of the tenant-wide rendered files. `RINGLIST.XML`, `Ringlist.xml` and
/// `ringlist.xml` are all seen in the field and all count as exact.
const TENANT_WIDE: &[(&str, FileKind)] = &[
    ("OS79XX.TXT", FileKind::Os79xxTxt),
    ("SIPDefault.cnf", FileKind::SipDefaultCnf),
    ("RINGLIST.DAT", FileKind::RingListDat),
    ("RINGLIST.XML", FileKind::RingListXml),
    ("Ringlist.xml", FileKind::RingListXml),
    ("ringlist.xml", FileKind::RingListXml),
    ("DistinctiveRingList.xml", FileKind::DistinctiveRingListXml),
    ("dialplan.xml", FileKind::DialPlan),
    ("syncinfo.xml", FileKind::SyncInfo),
    ("XMLDefault.cnf.xml", FileKind::XmlDefault),
];

/// Strips `prefix` and `suffix` (ASCII, any case) and parses the 12 hex digits between them.
fn mac_between(name: &str, prefix: &str, suffix: &str) -> Option<MacAddress> {
    let n = name.as_bytes();
    if n.len() != prefix.len() + 12 + suffix.len() {
        return None;
    }
    let (head, rest) = n.split_at(prefix.len());
    let (mac, tail) = rest.split_at(12);
    if !head.eq_ignore_ascii_case(prefix.as_bytes())
        || !tail.eq_ignore_ascii_case(suffix.as_bytes())
    {
        return None;
    }
    MacAddress::from_bare_hex(std::str::from_utf8(mac).ok()?)
}

/// Classifies a normalised name (see the module documentation).
pub fn classify(name: &str) -> Class {
    let last = name.rsplit('/').next().unwrap_or(name);
    let lower_last = last.to_ascii_lowercase();
    if lower_last.ends_with(".sgn")
        || lower_last == "itlfile.tlv"
        || mac_between(last, "CTLSEP", ".tlv").is_some()
        || mac_between(last, "ITLSEP", ".tlv").is_some()
        || mac_between(last, "SEP", ".cnf.xml.enc").is_some()
    {
        return Class::KnownAbsent;
    }
    if let Some(mac) = mac_between(last, "SIP", ".cnf") {
        return Class::Device {
            kind: Some(FileKind::SipDeviceCnf),
            mac,
        };
    }
    if let Some(mac) = mac_between(last, "SEP", ".cnf.xml") {
        return Class::Device {
            kind: Some(FileKind::SepDeviceXml),
            mac,
        };
    }
    if let Some(mac) = mac_between(last, "SEP", ".cnf") {
        return Class::Device { kind: None, mac };
    }
    if let Some((_, kind)) = TENANT_WIDE.iter().find(|(n, _)| *n == name) {
        return Class::TenantWide {
            kind: *kind,
            exact: true,
        };
    }
    if let Some((_, kind)) = TENANT_WIDE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Class::TenantWide {
            kind: *kind,
            exact: false,
        };
    }
    Class::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "0004F2A1B2C3";

    fn mac() -> MacAddress {
        MacAddress::from_bare_hex(MAC).unwrap()
    }

    #[test]
    fn normalisation_table() {
        let ok = [
            ("SIPDefault.cnf", "SIPDefault.cnf"),
            ("/SIPDefault.cnf", "SIPDefault.cnf"),
            ("./SIP0004F2A1B2C3.cnf", "SIP0004F2A1B2C3.cnf"),
            (".//SIP0004F2A1B2C3.cnf", "SIP0004F2A1B2C3.cnf"),
            ("//mk-sip.jar", "mk-sip.jar"),
            ("/mk-sip.jar", "mk-sip.jar"),
            (
                "United_Kingdom//g3-tones.xml",
                "United_Kingdom/g3-tones.xml",
            ),
            (
                "Desktops/./320x196x4/List.xml",
                "Desktops/320x196x4/List.xml",
            ),
            (
                "./sip_phone/SIP0004F2A1B2C3.cnf",
                "sip_phone/SIP0004F2A1B2C3.cnf",
            ),
            ("a..b.loads", "a..b.loads"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw:?}");
        }
        let long = "a".repeat(256);
        let bad = [
            ("", BadName::Empty),
            ("/", BadName::Directory),
            ("./", BadName::Directory),
            (".", BadName::Empty),
            ("//", BadName::Directory),
            ("../etc/passwd", BadName::ParentDir),
            ("a/../../b", BadName::ParentDir),
            ("/..", BadName::ParentDir),
            ("..\\boot.ini", BadName::Backslash),
            ("a\\b", BadName::Backslash),
            ("SIP\u{0}.cnf", BadName::ControlByte),
            ("SIP\n.cnf", BadName::ControlByte),
            ("x\u{7f}", BadName::ControlByte),
            ("dir/", BadName::Directory),
            (long.as_str(), BadName::TooLong),
        ];
        for (raw, want) in bad {
            assert_eq!(normalise(raw), Err(want), "{raw:?}");
        }
        assert!(normalise(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn classification_table() {
        use Class::*;
        use FileKind::*;
        let dev = |kind| Device {
            kind: Some(kind),
            mac: mac(),
        };
        let cases: Vec<(&str, Class)> = vec![
            ("SIP0004F2A1B2C3.cnf", dev(SipDeviceCnf)),
            ("SIP0004f2a1b2c3.cnf", dev(SipDeviceCnf)),
            ("sip0004F2A1B2C3.CNF", dev(SipDeviceCnf)),
            ("sip_phone/SIP0004F2A1B2C3.cnf", dev(SipDeviceCnf)),
            ("SEP0004F2A1B2C3.cnf.xml", dev(SepDeviceXml)),
            ("SEP0004f2a1b2c3.cnf.xml", dev(SepDeviceXml)),
            ("SEP0004F2A1B2C3.CNF.XML", dev(SepDeviceXml)),
            (
                "SEP0004F2A1B2C3.cnf",
                Device {
                    kind: None,
                    mac: mac(),
                },
            ),
            ("CTLSEP0004F2A1B2C3.tlv", KnownAbsent),
            ("ctlsep0004f2a1b2c3.TLV", KnownAbsent),
            ("ITLSEP0004F2A1B2C3.tlv", KnownAbsent),
            ("ITLFile.tlv", KnownAbsent),
            ("itlfile.tlv", KnownAbsent),
            ("SEP0004F2A1B2C3.cnf.xml.sgn", KnownAbsent),
            ("SEP0004F2A1B2C3.cnf.xml.enc.sgn", KnownAbsent),
            ("SEP0004F2A1B2C3.cnf.xml.enc", KnownAbsent),
            ("dialplan.xml.sgn", KnownAbsent),
            ("P0S3-8-12-00.loads.SGN", KnownAbsent),
            (
                "OS79XX.TXT",
                TenantWide {
                    kind: Os79xxTxt,
                    exact: true,
                },
            ),
            (
                "os79xx.txt",
                TenantWide {
                    kind: Os79xxTxt,
                    exact: false,
                },
            ),
            (
                "SIPDefault.cnf",
                TenantWide {
                    kind: SipDefaultCnf,
                    exact: true,
                },
            ),
            (
                "sipdefault.cnf",
                TenantWide {
                    kind: SipDefaultCnf,
                    exact: false,
                },
            ),
            (
                "RINGLIST.DAT",
                TenantWide {
                    kind: RingListDat,
                    exact: true,
                },
            ),
            (
                "RINGLIST.XML",
                TenantWide {
                    kind: RingListXml,
                    exact: true,
                },
            ),
            (
                "Ringlist.xml",
                TenantWide {
                    kind: RingListXml,
                    exact: true,
                },
            ),
            (
                "ringlist.xml",
                TenantWide {
                    kind: RingListXml,
                    exact: true,
                },
            ),
            (
                "RingList.Xml",
                TenantWide {
                    kind: RingListXml,
                    exact: false,
                },
            ),
            (
                "DistinctiveRingList.xml",
                TenantWide {
                    kind: DistinctiveRingListXml,
                    exact: true,
                },
            ),
            (
                "DISTINCTIVERINGLIST.XML",
                TenantWide {
                    kind: DistinctiveRingListXml,
                    exact: false,
                },
            ),
            (
                "dialplan.xml",
                TenantWide {
                    kind: DialPlan,
                    exact: true,
                },
            ),
            (
                "syncinfo.xml",
                TenantWide {
                    kind: SyncInfo,
                    exact: true,
                },
            ),
            (
                "XMLDefault.cnf.xml",
                TenantWide {
                    kind: XmlDefault,
                    exact: true,
                },
            ),
            (
                "xmlDefault.CNF.XML",
                TenantWide {
                    kind: XmlDefault,
                    exact: false,
                },
            ),
            (
                "XmlDefault.cnf.xml",
                TenantWide {
                    kind: XmlDefault,
                    exact: false,
                },
            ),
            ("dir/SIPDefault.cnf", Other),
            ("P0S3-8-12-00.loads", Other),
            ("mk-sip.jar", Other),
            ("United_Kingdom/g3-tones.xml", Other),
            ("SIP0004F2A1B2C.cnf", Other),
            ("SIP0004F2A1B2CG.cnf", Other),
            ("SIP0004F2A1B2C3.cnf.bak", Other),
            ("SEP0004F2A1B2C3.xml", Other),
            ("term42.default.loads", Other),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
        }
    }

    /// Every request of every family in `boot-sequences.json`, and its aliases, normalises and classifies
    /// as the fixture's outcome says.
    #[test]
    fn every_boot_request_classifies_as_the_fixture_says() {
        let fixture = super::super::test_support::boot_sequences();
        let mut seen = 0;
        for family in fixture["families"].as_array().unwrap() {
            for list in ["factory_reset", "boot_sequence", "on_demand"] {
                let Some(entries) = family[list].as_array() else {
                    continue;
                };
                for entry in entries {
                    let outcome = entry["outcome"].as_str().unwrap();
                    let mut names = vec![entry["file"].as_str().unwrap().to_owned()];
                    if let Some(aliases) = entry["aliases"].as_array() {
                        names.extend(aliases.iter().map(|a| a.as_str().unwrap().to_owned()));
                    }
                    for raw in names {
                        seen += 1;
                        let name = normalise(&raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
                        let class = classify(&name);
                        let ok = match outcome {
                            "render" => {
                                matches!(
                                    class,
                                    Class::Device { kind: Some(_), .. } | Class::TenantWide { .. }
                                ) || super::super::is_stored_not_rendered(&name)
                            }
                            "static" => class == Class::Other,
                            "not_found_ok" => {
                                matches!(class, Class::KnownAbsent | Class::Other)
                            }
                            other => panic!("unknown outcome {other}"),
                        };
                        assert!(ok, "{raw} ({outcome}) classified as {class:?}");
                        if raw.contains(MAC) {
                            if let Class::Device { mac: m, .. } = class {
                                assert_eq!(m, mac());
                            }
                        }
                    }
                }
            }
        }
        assert!(seen > 60, "only {seen} requests in the fixture");
    }
}
