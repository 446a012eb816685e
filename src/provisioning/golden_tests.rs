//! Golden files, boot-sequence replays, tenant isolation, determinism and version-stamp tests.
//!
//! Golden files live in `tests/golden/<family>/<model>/<file>` (per-device files of the `acme` tenant),
//! `tests/golden/tenant/<file>` (its tenant-wide files) and `tests/golden/defaults/<file>` (a tenant that
//! set nothing but a registrar). `UPDATE_GOLDEN=1 cargo test` rewrites them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::checks::{check_cnf, check_rendered, parse_xml, Element};
use super::test_support::*;
use super::{
    is_stored_not_rendered, preview_device, preview_tenant, provision, FileKind, Miss, Served,
};
use crate::domain::{Family, MacAddress, Model, Settings};
use crate::snapshot::{PhoneView, Snapshot, StoredFile, TenantView};

/// Tenant-wide names rendered for the golden tenant.
const TENANT_WIDE: &[&str] = &[
    "OS79XX.TXT",
    "SIPDefault.cnf",
    "RINGLIST.DAT",
    "RINGLIST.XML",
    "DistinctiveRingList.xml",
    "dialplan.xml",
    "syncinfo.xml",
    "XMLDefault.cnf.xml",
];

fn device_names(phone: &PhoneView) -> Vec<String> {
    match phone.model.family() {
        Family::Sip79xx => vec![
            format!("SIP{}.cnf", phone.mac),
            format!("SEP{}.cnf.xml", phone.mac),
        ],
        _ => vec![format!("SEP{}.cnf.xml", phone.mac)],
    }
}

fn get(snap: &Snapshot, source: &str, name: &str) -> Served {
    provision(snap, ip(source), name).unwrap_or_else(|m| panic!("{name} from {source}: {m:?}"))
}

fn text(s: &Served) -> &str {
    std::str::from_utf8(&s.bytes).unwrap()
}

fn xml(s: &Served) -> Element {
    parse_xml(text(s)).unwrap()
}

/// Compares (or, with `UPDATE_GOLDEN`, writes) one golden file.
fn golden(rel: &str, bytes: &[u8], failures: &mut Vec<String>) {
    let path = source_root().join("tests/golden").join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    match std::fs::read(&path) {
        Ok(want) if want == bytes => {}
        Ok(want) => failures.push(format!(
            "{rel} differs:\n--- golden\n{}\n--- rendered\n{}",
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(bytes)
        )),
        Err(e) => failures.push(format!("{}: {e}", path.display())),
    }
}

/// Checks the renderer rules of `boot-sequences.json` on a rendered file.
fn check_rules(phone: Option<&PhoneView>, served: &Served, what: &str) {
    check_rendered(served.kind, what, &served.bytes);
    match (served.kind, phone) {
        (FileKind::SipDeviceCnf, Some(p)) => {
            let params = check_cnf(text(served)).unwrap();
            for key in params.keys() {
                for prefix in ["line", "proxy"] {
                    if let Some(rest) = key.strip_prefix(prefix) {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        if let Ok(n) = digits.parse::<usize>() {
                            assert!(n >= 1 && n <= p.model.line_keys(), "{what}: {key}");
                        }
                    }
                }
            }
            assert!(params["phone_label"].chars().count() <= 11, "{what}");
            assert_eq!(params["proxy_register"], "1", "{what}");
        }
        (FileKind::SepDeviceXml, Some(p)) if p.model.family() != Family::Sip79xx => {
            let root = xml(served);
            assert_eq!(root.name, "device", "{what}");
            assert_eq!(root.text_at("deviceProtocol"), Some("SIP"), "{what}");
            assert!(root.path("devicePool").is_some(), "{what}");
            let lines = root.path("sipProfile/sipLines").unwrap().all("line");
            assert_eq!(lines.len(), p.lines.len(), "{what}");
            assert!(lines.len() <= p.model.line_keys(), "{what}");
            for (line, want) in lines.iter().zip(&p.lines) {
                assert_eq!(line.text_at("featureID"), Some("9"), "{what}");
                for path in ["name", "authName", "authPassword", "proxy", "port"] {
                    assert!(line.path(path).is_some(), "{what}: line/{path}");
                }
                assert_eq!(line.text_at("authPassword"), Some(want.password.as_str()));
            }
            assert!(
                root.text_at("sipProfile/phoneLabel")
                    .unwrap()
                    .chars()
                    .count()
                    <= 12,
                "{what}"
            );
            assert!(root.path("loadInformation").is_some(), "{what}");
            assert_eq!(
                root.text_at("versionStamp").map(str::len),
                Some(8),
                "{what}"
            );
        }
        (FileKind::SepDeviceXml, Some(p)) => {
            let root = xml(served);
            assert_eq!(root.text_at("deviceProtocol"), Some("SIP"), "{what}");
            assert_eq!(
                root.path("loadInformation").unwrap().attr("model"),
                Some(p.model.display_name())
            );
        }
        _ => {}
    }
}

#[test]
fn golden_files_match() {
    let snap = golden_snapshot();
    let mut failures = Vec::new();
    for (family, phone) in golden_phones() {
        for name in device_names(&phone) {
            let served = get(&snap, ACME_SOURCE, &name);
            assert_eq!(served.phone, Some(phone.mac));
            check_rules(Some(&phone), &served, &name);
            golden(
                &format!("{family}/{}/{name}", phone.model),
                &served.bytes,
                &mut failures,
            );
        }
    }
    for name in TENANT_WIDE {
        let served = get(&snap, ACME_SOURCE, name);
        check_rules(None, &served, name);
        golden(&format!("tenant/{name}"), &served.bytes, &mut failures);
    }
    for name in [
        "SIPDefault.cnf",
        "XMLDefault.cnf.xml",
        "dialplan.xml",
        "syncinfo.xml",
        "SIP0004F2BBBBBB.cnf",
    ] {
        let served = get(&snap, BETA_SOURCE, name);
        check_rendered(served.kind, name, &served.bytes);
        golden(&format!("defaults/{name}"), &served.bytes, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (run with UPDATE_GOLDEN=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_7960_files_say_what_the_reference_says() {
    let snap = golden_snapshot();
    let cnf = check_cnf(text(&get(&snap, ACME_SOURCE, "SIP0004F2A1B2C3.cnf"))).unwrap();
    assert_eq!(cnf["image_version"], "P0S3-8-12-00");
    assert_eq!(cnf["line1_name"], "1001");
    assert_eq!(cnf["line1_password"], "pw-1001");
    assert_eq!(cnf["proxy1_address"], "sip.acme.example");
    assert_eq!(cnf["line3_authname"], "UNPROVISIONED");
    assert_eq!(cnf["line6_password"], "UNPROVISIONED");
    assert!(!cnf.contains_key("line7_name"));
    assert_eq!(cnf["messages_uri"], "*97");
    assert_eq!(cnf["dial_template"], "dialplan");
    assert_eq!(cnf["time_zone"], "GMT");
    assert_eq!(cnf["phone_label"], "Reception");
    assert_eq!(
        cnf["telnet_level"], "0",
        "extra sip_cnf parameters are appended"
    );
    assert!(
        !cnf.contains_key("sync"),
        "sync lives in SIPDefault.cnf only"
    );
    let lobby = check_cnf(text(&get(&snap, ACME_SOURCE, "SIP0004F2000794.cnf"))).unwrap();
    assert_eq!(
        lobby["line1_shortname"], "Front",
        "a phone's extra overrides in place"
    );
    assert_eq!(lobby["time_zone"], "CST", "phone override of the time zone");
    assert!(!lobby.contains_key("line3_name"));
    let default = check_cnf(text(&get(&snap, ACME_SOURCE, "SIPDefault.cnf"))).unwrap();
    assert_eq!(default["image_version"], "P0S3-8-12-00");
    assert_eq!(default["time_zone"], "GMT");
    let sync = default["sync"].clone();
    let info = xml(&get(&snap, ACME_SOURCE, "syncinfo.xml"));
    assert_eq!(
        info.path("IMAGE").unwrap().attr("SYNC"),
        Some(sync.as_str())
    );
    assert_eq!(
        text(&get(&snap, ACME_SOURCE, "OS79XX.TXT")),
        "P003-8-12-00\n"
    );
    let dat = get(&snap, ACME_SOURCE, "RINGLIST.DAT");
    assert_eq!(
        text(&dat),
        "Old Style\tringer1.pcm\nPiano 1\tPiano1.raw\nChirp & Beep\tChirp1.raw\n"
    );
    assert_eq!(dat.content_type, "text/plain");
}

#[test]
fn the_xml_files_say_what_the_reference_says() {
    let snap = golden_snapshot();
    let d = get(&snap, ACME_SOURCE, "SEP0004F2000765.cnf.xml");
    assert_eq!(d.content_type, "text/xml");
    let root = xml(&d);
    assert_eq!(root.text_at("loadInformation"), Some("SIP45.9-4-2SR3-1S"));
    assert_eq!(
        root.text_at("devicePool/dateTimeSetting/timeZone"),
        Some("Eastern Standard/Daylight Time")
    );
    assert_eq!(
        root.text_at("devicePool/dateTimeSetting/dateTemplate"),
        Some("D/M/YA")
    );
    let member = root
        .path("devicePool/callManagerGroup/members")
        .unwrap()
        .all("member");
    assert_eq!(member.len(), 2);
    assert_eq!(
        member[0].text_at("callManager/processNodeName"),
        Some("sip.acme.example")
    );
    assert_eq!(member[0].text_at("callManager/ports/sipPort"), Some("5080"));
    assert_eq!(
        member[1].text_at("callManager/processNodeName"),
        Some("sip2.acme.example")
    );
    let line = &root.path("sipProfile/sipLines").unwrap().all("line")[0];
    assert_eq!(line.text_at("displayName"), Some("Bob <Sales>"));
    assert_eq!(line.text_at("featureLabel"), Some("Bob"));
    assert_eq!(line.text_at("messagesNumber"), Some("*97"));
    assert_eq!(root.text_at("sipProfile/phoneLabel"), Some("SalesDesk"));
    assert_eq!(
        root.text_at("sipProfile/dialTemplate"),
        Some("dialplan.xml")
    );
    assert_eq!(root.text_at("vendorConfig/pcPort"), Some("1"));
    assert_eq!(root.text_at("vendorConfig/webAccess"), Some("0"));
    assert_eq!(
        root.text_at("vendorConfig/displayIdleTimeout"),
        Some("00:10")
    );
    assert_eq!(
        root.text_at("directoryURL"),
        Some("http://dir.acme.example/xml?a=1&b=2")
    );
    assert_eq!(root.text_at("transportLayerProtocol"), Some("2"));
    let front = xml(&get(&snap, ACME_SOURCE, "SEP001B54000997.cnf.xml"));
    assert_eq!(front.text_at("sipProfile/phoneLabel"), Some("Front & Back"));
    let default = xml(&get(&snap, ACME_SOURCE, "xmlDefault.CNF.XML"));
    assert_eq!(default.name, "Default");
    assert_eq!(default.text_at("loadInformation7"), Some("P0S3-8-12-00"));
    assert_eq!(default.text_at("loadInformation8"), Some("P0S3-8-12-00"));
    assert_eq!(
        default.path("loadInformation8").unwrap().attr("model"),
        Some("IP Phone 7940")
    );
    for model in Model::ALL {
        let el = format!("loadInformation{}", model.device_type());
        let configured = Settings::from_json(acme_settings())
            .unwrap()
            .firmware
            .unwrap()
            .loads
            .unwrap();
        assert_eq!(
            default.path(&el).is_some(),
            configured.contains_key(model),
            "{el}"
        );
    }
    let ring = xml(&get(&snap, ACME_SOURCE, "Ringlist.xml"));
    assert_eq!(ring.name, "CiscoIPPhoneRingList");
    assert_eq!(
        ring.all("Ring")[2].text_at("DisplayName"),
        Some("Chirp & Beep")
    );
    let plan = xml(&get(&snap, ACME_SOURCE, "dialplan.xml"));
    let templates = plan.all("TEMPLATE");
    assert_eq!(templates[1].attr("MATCH"), Some("1..."));
    assert_eq!(templates[0].attr("Timeout"), Some("3"));
}

#[test]
fn secrets_appear_only_in_per_device_files() {
    let snap = golden_snapshot();
    for name in TENANT_WIDE {
        let served = get(&snap, ACME_SOURCE, name);
        assert!(!text(&served).contains("pw-"), "{name} carries a password");
    }
    for (_, phone) in golden_phones() {
        for name in device_names(&phone) {
            let body = get(&snap, ACME_SOURCE, &name);
            let own = text(&body).contains(&format!("pw-{}", phone.lines[0].number));
            // The 7940/7960 loader file carries no credentials.
            assert_eq!(
                own,
                !name.ends_with(".xml") || phone.model.family() != Family::Sip79xx,
                "{name}"
            );
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = golden_snapshot();
    let b = golden_snapshot();
    for (_, phone) in golden_phones() {
        for name in device_names(&phone) {
            assert_eq!(
                get(&a, ACME_SOURCE, &name),
                get(&b, ACME_SOURCE, &name),
                "{name}"
            );
            assert_eq!(
                get(&a, ACME_SOURCE, &name),
                get(&a, ACME_SOURCE, &name),
                "{name}"
            );
        }
    }
    for name in TENANT_WIDE {
        assert_eq!(
            get(&a, ACME_SOURCE, name),
            get(&b, ACME_SOURCE, name),
            "{name}"
        );
    }
}

/// The golden snapshot with one phone changed by `edit`.
fn with_phone_edit(mac_text: &str, edit: impl Fn(&mut PhoneView)) -> Snapshot {
    let base = golden_snapshot();
    let tenants: Vec<TenantView> = base.tenants().to_vec();
    let mut phones: Vec<PhoneView> = Vec::new();
    for t in 0..tenants.len() {
        for m in base.phones_of(t).iter() {
            let mut p = base.phone(*m).unwrap().clone();
            if p.mac == mac(mac_text) {
                edit(&mut p);
            }
            phones.push(p);
        }
    }
    Snapshot::build(
        8,
        tenants,
        vec![
            (net("10.1.0.0/16"), 0),
            (net("2001:db8:1::/48"), 0),
            (net("10.2.0.0/16"), 1),
        ],
        phones,
        vec![],
    )
}

fn stamp(s: &Served) -> String {
    xml(s).text_at("versionStamp").unwrap().to_owned()
}

fn sync_of(snap: &Snapshot, source: &str) -> String {
    check_cnf(text(&get(snap, source, "SIPDefault.cnf"))).unwrap()["sync"].clone()
}

#[test]
fn version_stamps_change_exactly_with_content() {
    let base = golden_snapshot();
    let changed = with_phone_edit("0004F2000765", |p| p.label = "Sales 2".into());
    let before = get(&base, ACME_SOURCE, "SEP0004F2000765.cnf.xml");
    let after = get(&changed, ACME_SOURCE, "SEP0004F2000765.cnf.xml");
    assert_ne!(before.bytes, after.bytes);
    assert_ne!(stamp(&before), stamp(&after));
    // The stamp is the hash of the file without it.
    let body = text(&after);
    let cut = body.find("  <versionStamp>").unwrap();
    let expected = super::render::stamp_hex(&super::render::digest(&[&body.as_bytes()[..cut]]));
    assert_eq!(stamp(&after), expected);
    // Untouched phones keep their bytes.
    for name in ["SEP0004F2000742.cnf.xml", "SIP0004F2A1B2C3.cnf"] {
        assert_eq!(
            get(&base, ACME_SOURCE, name),
            get(&changed, ACME_SOURCE, name),
            "{name}"
        );
    }
    // A 79x1 change does not touch the 7940/7960 sync.
    assert_eq!(sync_of(&base, ACME_SOURCE), sync_of(&changed, ACME_SOURCE));

    // A 7960 change moves the tenant's sync, in SIPDefault.cnf and syncinfo.xml alike, and nothing
    // in the other tenant.
    let moved = with_phone_edit("0004F2A1B2C3", |p| p.lines[0].password = "changed".into());
    assert_ne!(sync_of(&base, ACME_SOURCE), sync_of(&moved, ACME_SOURCE));
    let info = xml(&get(&moved, ACME_SOURCE, "syncinfo.xml"));
    assert_eq!(
        info.path("IMAGE").unwrap().attr("SYNC"),
        Some(sync_of(&moved, ACME_SOURCE).as_str())
    );
    assert_eq!(sync_of(&base, BETA_SOURCE), sync_of(&moved, BETA_SOURCE));
    assert_eq!(
        get(&base, ACME_SOURCE, "SIP0004F2000794.cnf"),
        get(&moved, ACME_SOURCE, "SIP0004F2000794.cnf")
    );
    // Disabling a 7960 is a change too.
    let disabled = with_phone_edit("0004F2000794", |p| p.enabled = false);
    assert_ne!(sync_of(&base, ACME_SOURCE), sync_of(&disabled, ACME_SOURCE));
}

#[test]
fn a_tenant_sync_parameter_fixes_both_files() {
    let t = tenant("fixed", json!({"extra": {"sip_cnf": {"sync": "17"}}}));
    let snap = Snapshot::build(1, vec![t], vec![(net("10.9.0.0/16"), 0)], vec![], vec![]);
    assert!(text(&get(&snap, "10.9.0.1", "SIPDefault.cnf")).contains("sync: \"17\"\n"));
    assert!(text(&get(&snap, "10.9.0.1", "syncinfo.xml")).contains("SYNC=\"17\""));
}

#[test]
fn tenant_isolation_and_misses() {
    let snap = golden_snapshot();
    // A MAC of tenant B (beta) asked for from tenant A's (acme) network.
    for name in [
        "SIP0004F2BBBBBB.cnf",
        "SEP0004F2BBBBBB.cnf.xml",
        "./SIP0004f2bbbbbb.cnf",
    ] {
        assert_eq!(
            provision(&snap, ip(ACME_SOURCE), name),
            Err(Miss::OtherTenantsDevice(mac("0004F2BBBBBB"))),
            "{name}"
        );
    }
    assert_eq!(
        provision(&snap, ip(BETA_SOURCE), "SIP0004F2A1B2C3.cnf"),
        Err(Miss::OtherTenantsDevice(mac("0004F2A1B2C3")))
    );
    // Outside every network: nothing at all, whatever the name.
    for source in ["192.0.2.1", "10.3.0.1", "2001:db8:2::1", "::ffff:192.0.2.1"] {
        for name in [
            "SIP0004F2A1B2C3.cnf",
            "SIPDefault.cnf",
            "CTLSEP0004F2A1B2C3.tlv",
            "../x",
        ] {
            assert_eq!(
                provision(&snap, ip(source), name),
                Err(Miss::UnknownSource),
                "{source} {name}"
            );
        }
    }
    // IPv6 and IPv4-mapped sources find their tenant.
    assert_eq!(
        get(&snap, "2001:db8:1::42", "SIP0004F2A1B2C3.cnf").tenant,
        0
    );
    assert_eq!(
        get(&snap, "::ffff:10.2.0.5", "SIP0004F2BBBBBB.cnf").tenant,
        1
    );
    // Unknown devices, families, names.
    assert_eq!(
        provision(&snap, ip(ACME_SOURCE), "SEP00000000BEEF.cnf.xml"),
        Err(Miss::UnknownDevice(mac("00000000BEEF")))
    );
    assert_eq!(
        provision(&snap, ip(ACME_SOURCE), "SEP00000000BEEF.cnf"),
        Err(Miss::UnknownDevice(mac("00000000BEEF")))
    );
    assert_eq!(
        provision(&snap, ip(ACME_SOURCE), "SIP0004F2000742.cnf"),
        Err(Miss::NotFound)
    );
    assert_eq!(
        provision(&snap, ip(ACME_SOURCE), "SEP0004F2A1B2C3.cnf"),
        Err(Miss::NotFound)
    );
    assert_eq!(
        provision(&snap, ip(ACME_SOURCE), "nothing.bin"),
        Err(Miss::NotFound)
    );
    for name in ["../etc/passwd", "a\\b", "", "x\u{0}"] {
        assert_eq!(
            provision(&snap, ip(ACME_SOURCE), name),
            Err(Miss::BadName),
            "{name:?}"
        );
    }
    for name in [
        "CTLSEP0004F2A1B2C3.tlv",
        "ITLSEP0004F2A1B2C3.tlv",
        "ITLFile.tlv",
        "SEP0004F2A1B2C3.cnf.xml.sgn",
    ] {
        assert_eq!(
            provision(&snap, ip(ACME_SOURCE), name),
            Err(Miss::KnownAbsent),
            "{name}"
        );
    }
    // Files: the tenant's own shadows the global one; other tenants see the global one.
    assert_eq!(
        &get(&snap, ACME_SOURCE, "ringer1.pcm").bytes[..],
        b"acme ring"
    );
    let beta_ring = get(&snap, BETA_SOURCE, "RINGER1.PCM");
    assert_eq!(&beta_ring.bytes[..], b"global ring");
    assert_eq!(beta_ring.content_type, "application/octet-stream");
    assert_eq!(beta_ring.kind, FileKind::Stored);
    // Beta has no ring list and no firmware: those files are deliberately absent.
    for name in [
        "RINGLIST.DAT",
        "Ringlist.xml",
        "OS79XX.TXT",
        "SEP0004F2BBBBBB.cnf.xml",
    ] {
        assert_eq!(
            provision(&snap, ip(BETA_SOURCE), name),
            Err(Miss::KnownAbsent),
            "{name}"
        );
    }
}

fn rebuilt(edit: impl Fn(&mut Vec<TenantView>, &mut Vec<PhoneView>)) -> Snapshot {
    let base = golden_snapshot();
    let mut tenants = base.tenants().to_vec();
    let mut phones: Vec<PhoneView> = (0..tenants.len())
        .flat_map(|t| {
            base.phones_of(t)
                .iter()
                .map(|m| base.phone(*m).unwrap().clone())
                .collect::<Vec<_>>()
        })
        .collect();
    edit(&mut tenants, &mut phones);
    Snapshot::build(
        9,
        tenants,
        vec![(net("10.1.0.0/16"), 0), (net("10.2.0.0/16"), 1)],
        phones,
        vec![(
            "xmldefault.cnf.xml".into(),
            StoredFile::new(&b"stored lower"[..]),
        )],
    )
}

#[test]
fn disabled_tenants_and_phones_get_nothing() {
    let snap = rebuilt(|tenants, phones| {
        tenants[1].enabled = false;
        phones
            .iter_mut()
            .find(|p| p.mac == mac("0004F2000742"))
            .unwrap()
            .enabled = false;
    });
    assert_eq!(
        provision(&snap, ip(BETA_SOURCE), "SIPDefault.cnf"),
        Err(Miss::TenantDisabled)
    );
    assert_eq!(
        provision(&snap, ip(BETA_SOURCE), "SIP0004F2BBBBBB.cnf"),
        Err(Miss::TenantDisabled)
    );
    assert_eq!(
        provision(&snap, ip(BETA_SOURCE), "ITLFile.tlv"),
        Err(Miss::KnownAbsent)
    );
    assert_eq!(
        provision(&snap, ip(ACME_SOURCE), "SEP0004F2000742.cnf.xml"),
        Err(Miss::DeviceDisabled)
    );
    assert!(provision(&snap, ip(ACME_SOURCE), "SEP0004F2000765.cnf.xml").is_ok());
}

#[test]
fn exact_stored_names_beat_case_insensitive_rendered_ones() {
    let snap = rebuilt(|_, _| {});
    let exact = get(&snap, ACME_SOURCE, "XMLDefault.cnf.xml");
    assert_eq!(exact.kind, FileKind::XmlDefault);
    let lower = get(&snap, ACME_SOURCE, "xmldefault.cnf.xml");
    assert_eq!(lower.kind, FileKind::Stored);
    assert_eq!(&lower.bytes[..], b"stored lower");
    let odd = get(&snap, ACME_SOURCE, "xmlDefault.CNF.XML");
    assert_eq!(odd.kind, FileKind::XmlDefault);
}

#[test]
fn previews_equal_what_the_phone_gets() {
    let snap = golden_snapshot();
    for (_, phone) in golden_phones() {
        for name in device_names(&phone) {
            assert_eq!(
                preview_device(&snap, 0, phone.mac, &name),
                provision(&snap, ip(ACME_SOURCE), &name),
                "{name}"
            );
        }
        assert_eq!(
            preview_device(&snap, 0, phone.mac, "dialplan.xml"),
            provision(&snap, ip(ACME_SOURCE), "dialplan.xml")
        );
    }
    assert_eq!(
        preview_device(&snap, 0, mac("0004F2A1B2C3"), "SIP0004F2000794.cnf"),
        Err(Miss::NotFound)
    );
    assert_eq!(
        preview_device(&snap, 0, mac("0004F2BBBBBB"), "SIP0004F2BBBBBB.cnf"),
        Err(Miss::OtherTenantsDevice(mac("0004F2BBBBBB")))
    );
    for name in TENANT_WIDE {
        assert_eq!(
            preview_tenant(&snap, 1, name),
            provision(&snap, ip(BETA_SOURCE), name),
            "{name}"
        );
    }
    assert_eq!(
        preview_tenant(&snap, 99, "SIPDefault.cnf"),
        Err(Miss::NotFound)
    );
}

// ---- boot sequences -------------------------------------------------------------------------------

const SOURCE: &str = "10.50.1.2";

fn entries(family: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for list in ["factory_reset", "boot_sequence", "on_demand"] {
        for e in family[list].as_array().into_iter().flatten() {
            out.push((list.to_owned(), e));
        }
    }
    out
}

fn names_of(entry: &Value) -> Vec<String> {
    let mut names = vec![entry["file"].as_str().unwrap().to_owned()];
    names.extend(
        entry["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    names
}

fn stored_not_rendered(name: &str) -> bool {
    is_stored_not_rendered(name)
}

fn blob(name: &str) -> Vec<u8> {
    format!("blob:{name}").into_bytes()
}

/// The snapshot a family's example needs: its phone, the configured target load, and every static file
/// the fixture names in the store (global), plus the soft-key / feature-policy / background files as
/// tenant files.
fn family_snapshot(family: &Value, with_static: bool) -> (Snapshot, Model, String, String) {
    let example = &family["example"];
    let model: Model = example["model"].as_str().unwrap().parse().unwrap();
    let target = example["target_load"]
        .as_str()
        .or(example["running_load"].as_str())
        .unwrap()
        .to_owned();
    let os79xx = example["ual"].as_str().unwrap_or(&target).to_owned();
    let mut loads = BTreeMap::new();
    loads.insert(model.as_str(), target.clone());
    let mut t = tenant(
        "fam",
        json!({"sip": {"registrar": "sip.example.net"},
               "dial_plan": [{"match": "9.", "timeout": 3}],
               "ring_list": [{"name": "Old Style", "file": "ringer1.pcm"}],
               "firmware": {"os79xx": os79xx, "loads": loads}}),
    );
    let mut global = Vec::new();
    let fixture = boot_sequences();
    for fam in fixture["families"].as_array().unwrap() {
        for (_, e) in entries(fam) {
            for raw in names_of(e) {
                let name = super::name::normalise(&raw).unwrap();
                match e["outcome"].as_str().unwrap() {
                    "static" if with_static => {
                        global.push((name.clone(), StoredFile::new(blob(&name))))
                    }
                    "render" if stored_not_rendered(&name) => {
                        t.files.insert(name.clone(), StoredFile::new(blob(&name)));
                    }
                    _ => {}
                }
            }
        }
    }
    let phone = phone(
        0,
        "0004F2A1B2C3",
        model,
        "Boot",
        vec![line("1001", Some("Boot"), None)],
    );
    let snap = Snapshot::build(
        1,
        vec![t],
        vec![(net("10.50.0.0/16"), 0)],
        vec![phone.clone()],
        global,
    );
    (snap, model, target, os79xx)
}

fn replay(snap: &Snapshot, family: &Value) -> usize {
    let id = family["id"].as_str().unwrap();
    let phone = snap.phone(mac("0004F2A1B2C3")).unwrap().clone();
    let source: IpAddr = ip(SOURCE);
    let mut count = 0;
    for (list, e) in entries(family) {
        let outcome = e["outcome"].as_str().unwrap();
        for raw in names_of(e) {
            count += 1;
            let what = format!("{id} {list} {raw} ({outcome})");
            let got = provision(snap, source, &raw);
            let name = super::name::normalise(&raw).unwrap();
            match outcome {
                "render" => {
                    let served = got.unwrap_or_else(|m| panic!("{what}: {m:?}"));
                    if stored_not_rendered(&name) {
                        assert_eq!(served.kind, FileKind::Stored, "{what}");
                    } else {
                        assert!(served.kind.is_rendered(), "{what}: {:?}", served.kind);
                        let device = served.phone.map(|_| &phone);
                        check_rules(device, &served, &what);
                    }
                }
                "static" => {
                    let served = got.unwrap_or_else(|m| panic!("{what}: {m:?}"));
                    assert_eq!(served.kind, FileKind::Stored, "{what}");
                    assert_eq!(&served.bytes[..], &blob(&name)[..], "{what}");
                }
                "not_found_ok" => {
                    assert!(
                        matches!(got, Err(Miss::KnownAbsent | Miss::NotFound)),
                        "{what}: {got:?}"
                    );
                    let lower = name.to_ascii_lowercase();
                    if lower.ends_with(".tlv") || lower.ends_with(".sgn") {
                        assert_eq!(got, Err(Miss::KnownAbsent), "{what}");
                    }
                }
                other => panic!("{what}: unknown outcome {other}"),
            }
        }
    }
    count
}

/// The image name is the same in OS79XX.TXT, image_version, loadInformation and the stored `.loads`.
fn check_image_consistency(snap: &Snapshot, model: Model, target: &str, os79xx: &str) {
    let source = ip(SOURCE);
    let get = |n: &str| provision(snap, source, n).unwrap_or_else(|m| panic!("{n}: {m:?}"));
    let sep =
        parse_xml(std::str::from_utf8(&get("SEP0004F2A1B2C3.cnf.xml").bytes).unwrap()).unwrap();
    assert_eq!(sep.text_at("loadInformation"), Some(target));
    let xml_default =
        parse_xml(std::str::from_utf8(&get("XMLDefault.cnf.xml").bytes).unwrap()).unwrap();
    assert_eq!(
        xml_default.text_at(&format!("loadInformation{}", model.device_type())),
        Some(target)
    );
    assert_eq!(get(&format!("{target}.loads")).kind, FileKind::Stored);
    if model.family() == Family::Sip79xx {
        assert_eq!(
            std::str::from_utf8(&get("OS79XX.TXT").bytes).unwrap(),
            format!("{os79xx}\n")
        );
        let default =
            check_cnf(std::str::from_utf8(&get("SIPDefault.cnf").bytes).unwrap()).unwrap();
        assert_eq!(default["image_version"], target);
        let own =
            check_cnf(std::str::from_utf8(&get("SIP0004F2A1B2C3.cnf").bytes).unwrap()).unwrap();
        assert_eq!(own["image_version"], target);
    }
}

#[test]
fn every_boot_sequence_replays_as_the_fixture_says() {
    let fixture = boot_sequences();
    let families = fixture["families"].as_array().unwrap();
    assert!(families.len() >= 6);
    let by_id = |id: &str| families.iter().find(|f| f["id"] == id).unwrap();
    let mut total = 0;
    for family in families {
        let (snap, model, target, os79xx) = family_snapshot(family, true);
        assert_eq!(model.as_str(), family["example"]["model"].as_str().unwrap());
        total += replay(&snap, family);
        check_image_consistency(&snap, model, &target, &os79xx);
        // A conversion continues, after the reboot, as another family: same snapshot, same answers.
        if let Some(next) = family["after_reboot_continues_as"].as_str() {
            total += replay(&snap, by_id(next));
        }
    }
    assert!(total > 80, "replayed only {total} requests");
}

#[test]
fn the_sccp_to_sip_conversion_works_end_to_end() {
    let fixture = boot_sequences();
    let family = fixture["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "7940_7960_sccp_dualboot_to_sip")
        .unwrap()
        .clone();
    let (snap, _, _, _) = family_snapshot(&family, true);
    let source = ip(SOURCE);
    // OS79XX.TXT names the UAL, whose images are in the store; then the SIP load; then the SIP files.
    let os = provision(&snap, source, "OS79XX.TXT").unwrap();
    assert_eq!(&os.bytes[..], b"P003-8-12-00\n");
    for image in [
        "P003-8-12-00.sbn",
        "P003-8-12-00.bin",
        "P0S3-8-12-00.loads",
        "P0S3-8-12-00.sb2",
    ] {
        assert_eq!(
            provision(&snap, source, image).unwrap().kind,
            FileKind::Stored,
            "{image}"
        );
    }
    for name in [
        "SEP0004F2A1B2C3.cnf.xml",
        "XMLDefault.cnf.xml",
        "SIPDefault.cnf",
        "./SIP0004F2A1B2C3.cnf",
        "RINGLIST.DAT",
        "dialplan.xml",
    ] {
        let served = provision(&snap, source, name).unwrap_or_else(|m| panic!("{name}: {m:?}"));
        assert!(served.kind.is_rendered(), "{name}");
    }
    // Without the images in the store, the static requests are plain misses.
    let (empty, _, _, _) = family_snapshot(&family, false);
    assert_eq!(
        provision(&empty, source, "P003-8-12-00.sbn"),
        Err(Miss::NotFound)
    );
}

#[test]
fn unknown_macs_are_reported_for_discovery() {
    let snap = Snapshot::build(
        1,
        vec![tenant("d", json!({}))],
        vec![(net("10.60.0.0/16"), 0)],
        vec![],
        vec![],
    );
    let m: MacAddress = mac("0004F2A1B2C3");
    for name in [
        "SEP0004F2A1B2C3.cnf.xml",
        "SIP0004F2A1B2C3.cnf",
        "./SIP0004f2a1b2c3.cnf",
    ] {
        assert_eq!(
            provision(&snap, ip("10.60.0.9"), name),
            Err(Miss::UnknownDevice(m)),
            "{name}"
        );
    }
    assert_eq!(
        provision(&snap, ip("10.60.0.9"), "CTLSEP0004F2A1B2C3.tlv"),
        Err(Miss::KnownAbsent)
    );
}
