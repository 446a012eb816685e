//! The whole provisioning core (`dialtone::provisioning::provision`) over a fixed three-tenant snapshot,
//! with arbitrary source addresses and requested names. Never panics, is deterministic, and never leaks
//! across tenants: a request answered for tenant T never returns another tenant's SIP password or
//! stored file, a tenant-wide rendered file carries no password at all, and a per-device file carries
//! only its own phone's passwords.
//!
//! Input: byte 0 picks the source address (a fixed list inside/outside the tenants' networks, or, for
//! 0xE0..=0xEF / 0xF0..=0xFF, the next 16 / 4 bytes as a raw IPv6 / IPv4 address); the rest is the name
//! (lossy UTF-8, as a front end would pass it).

#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use dialtone::domain::{MacAddress, Prefix, Settings};
use dialtone::provisioning::{provision, Miss};
use dialtone::snapshot::{
    CompiledTemplate, LineView, PhoneView, Snapshot, StoredFile, TemplateId, TenantView,
};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const SLUGS: [&str; 3] = ["acme", "beta", "gamma"];

/// Every password is `PW-SECRET-<slug>-<MAC>-<n>`; every tenant file holds `FILE-SECRET-<slug>-`.
fn password(slug: &str, mac: &str, n: usize) -> String {
    format!("PW-SECRET-{slug}-{mac}-{n}")
}

fn phone(tenant: usize, mac: &str, model: &str, lines: usize, enabled: bool) -> PhoneView {
    PhoneView {
        tenant,
        mac: mac.parse().unwrap(),
        model: model.parse().unwrap(),
        label: format!("L{model}"),
        enabled,
        lines: (1..=lines)
            .map(|n| LineView {
                number: format!("{tenant}{n}0{}", &mac[10..]),
                auth_name: format!("auth{n}"),
                password: password(SLUGS[tenant], mac, n),
                display_name: Some(format!("User & <{n}>")),
                short_label: (n == 1).then(|| "Me".to_owned()),
            })
            .collect(),
        settings: Default::default(),
        input_digest: Default::default(),
    }
}

fn tenant(slug: &str, enabled: bool, settings: serde_json::Value, files: &[&str]) -> TenantView {
    TenantView {
        id: Default::default(),
        slug: slug.parse().unwrap(),
        enabled,
        settings: Settings::from_json(settings).unwrap(),
        files: files
            .iter()
            .map(|name| {
                let body = format!("FILE-SECRET-{slug}-{name}");
                (name.to_string(), StoredFile::new(body.into_bytes()))
            })
            .collect::<HashMap<_, _>>(),
        templates: Default::default(),
    }
}

fn net(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn build() -> Snapshot {
    let acme = tenant(
        "acme",
        true,
        json!({
            "sip": {"registrar": "sip.acme.example", "port": 5060, "transport": "udp",
                    "backup_proxy": "sip2.acme.example", "outbound_proxy": "sbc.acme.example",
                    "register_expires": 1800, "nat_enabled": true, "nat_address": "198.51.100.7",
                    "preferred_codec": "g711alaw", "start_media_port": 20000, "end_media_port": 30000},
            "time": {"ntp_server": "ntp.acme.example", "time_zone": "Europe/London",
                     "dst_auto_adjust": true, "date_format": "D/M/Y", "time_format_24h": true},
            "voicemail_number": "*97",
            "dial_plan": [{"match": "9.", "timeout": 3}, {"match": "1XXX", "timeout": 0}],
            "ring_list": [{"name": "Old Style", "file": "ringer1.pcm"}, {"name": "Chirp & Beep", "file": "Chirp1.raw"}],
            "firmware": {"os79xx": "P003-8-12-00",
                         "loads": {"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S",
                                   "8945": "SIP8941_8945.9-3-1-18", "9971": "sip9971.9-4-2SR2-2"}},
            "urls": {"directory": "http://dir.acme.example/xml?a=1&b=2"},
            "extra": {"sip_cnf": {"telnet_level": "0"}, "vendor_config": {"webAccess": "0"}}
        }),
        &[
            "ringer1.pcm",
            "shared.txt",
            "SoftKeys.xml",
            "Desktops/320x212x12/List.xml",
            "Dialplan.xml",
        ],
    );
    let mut beta = tenant(
        "beta",
        true,
        json!({"sip": {"registrar": "pbx.beta.example"}, "time": {"time_zone": "America/New_York"}}),
        &["shared.txt", "beta-only.cfg", "RINGLIST.DAT", "OS79XX.TXT"],
    );
    // Overrides that print the phone's own secrets (legitimate for its own file) and a constant one.
    let cnf = "image_version: \"{{ load }}\"\nproxy1_address: \"{{ settings.sip.registrar }}\"\n\
{% for l in phone.lines %}line{{ l.position }}_name: \"{{ l.number }}\"\n\
line{{ l.position }}_authname: \"{{ l.auth_name }}\"\nline{{ l.position }}_password: \"{{ l.password }}\"\n{% endfor %}";
    let xml =
        "<DIALTEMPLATE>\n  <TEMPLATE MATCH=\"*\" Timeout=\"5\" User=\"Phone\"/>\n</DIALTEMPLATE>\n";
    for (id, src) in [(TemplateId::SipDeviceCnf, cnf), (TemplateId::DialPlan, xml)] {
        let t = CompiledTemplate::compile(id, src).unwrap_or_else(|e| panic!("{id:?}: {e}"));
        beta.templates.insert(Arc::new(t));
    }
    let gamma = tenant("gamma", false, json!({}), &["shared.txt"]);
    Snapshot::build(
        1,
        vec![acme, beta, gamma],
        vec![
            (net("10.1.0.0/16"), 0),
            (net("2001:db8:1::/48"), 0),
            (net("10.2.0.0/16"), 1),
            // A beta network nested inside acme's: longest prefix wins.
            (net("10.1.5.0/24"), 1),
            (net("2001:db8:1:5::/64"), 1),
            (net("10.3.0.0/16"), 2),
        ],
        vec![
            phone(0, "0004F2A1B2C3", "7960", 2, true),
            phone(0, "0004F2000794", "7940", 1, true),
            phone(0, "0004F2000742", "7942", 2, true),
            phone(0, "001B54000894", "8945", 1, true),
            phone(0, "001B54000997", "9971", 3, true),
            phone(0, "0004F2DEAD00", "7960", 1, false),
            phone(1, "0004F2BBBBBB", "7960", 2, true),
            phone(1, "0004F2BBB965", "7965", 2, true),
            phone(1, "001B54BBB961", "8961", 1, true),
            phone(2, "0004F2CCCCCC", "7960", 1, true),
        ],
        vec![
            ("ringer1.pcm".into(), StoredFile::new(&b"global ring"[..])),
            ("shared.txt".into(), StoredFile::new(&b"global shared"[..])),
            (
                "P0S3-8-12-00.loads".into(),
                StoredFile::new(&b"\x00\x01loads"[..]),
            ),
            (
                "United_Kingdom/g3-tones.xml".into(),
                StoredFile::new(&b"<tones/>"[..]),
            ),
        ],
    )
}

/// The snapshot, checked once: the files the invariants are about really carry their secrets, so a change
/// that stops the fixture from exercising them fails here instead of passing silently.
fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let snap = build();
        let has = |src: &str, name: &str, needle: &str| {
            let served = provision(&snap, src.parse().unwrap(), name)
                .unwrap_or_else(|m| panic!("self-check: {src} {name}: {m:?}"));
            assert!(
                served
                    .bytes
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes()),
                "self-check: {src} {name} lacks {needle}"
            );
        };
        has(
            "10.1.2.3",
            "SIP0004F2A1B2C3.cnf",
            "PW-SECRET-acme-0004F2A1B2C3-2",
        );
        has(
            "10.1.2.3",
            "SEP001B54000997.cnf.xml",
            "PW-SECRET-acme-001B54000997-3",
        );
        has(
            "10.1.5.9",
            "SIP0004F2BBBBBB.cnf",
            "PW-SECRET-beta-0004F2BBBBBB-1",
        );
        has(
            "10.2.9.9",
            "SEP0004F2BBB965.cnf.xml",
            "PW-SECRET-beta-0004F2BBB965-2",
        );
        has("10.2.9.9", "shared.txt", "FILE-SECRET-beta-");
        has("10.1.2.3", "shared.txt", "FILE-SECRET-acme-");
        let miss = |src: &str, name: &str| provision(&snap, src.parse().unwrap(), name).err();
        assert_eq!(
            miss("10.3.0.1", "SIP0004F2CCCCCC.cnf"),
            Some(Miss::TenantDisabled)
        );
        let beta_mac = "0004F2BBBBBB".parse().unwrap();
        assert_eq!(
            miss("10.1.2.3", "SIP0004F2BBBBBB.cnf"),
            Some(Miss::OtherTenantsDevice(beta_mac))
        );
        snap
    })
}

const SOURCES: &[&str] = &[
    "10.1.2.3",
    "10.1.5.9",
    "10.2.9.9",
    "2001:db8:1::5",
    "2001:db8:1:5::9",
    "::ffff:10.2.0.1",
    "::ffff:10.1.0.1",
    "10.3.0.1",
    "192.0.2.1",
    "2001:db8:2::1",
];

fn source(data: &[u8]) -> (IpAddr, &[u8]) {
    match data.split_first() {
        None => (SOURCES[0].parse().unwrap(), data),
        Some((&sel, rest)) if sel >= 0xF0 && rest.len() >= 4 => {
            let (a, rest) = rest.split_at(4);
            (IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), rest)
        }
        Some((&sel, rest)) if (0xE0..0xF0).contains(&sel) && rest.len() >= 16 => {
            let (a, rest) = rest.split_at(16);
            (
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).unwrap())),
                rest,
            )
        }
        Some((&sel, rest)) => (SOURCES[sel as usize % SOURCES.len()].parse().unwrap(), rest),
    }
}

/// Every `PW-SECRET-` in `bytes` is followed by `<slug>-<mac>-` of the allowed owner.
fn passwords_only_of(bytes: &[u8], slug: &str, mac: Option<MacAddress>, what: &str) {
    const MARK: &[u8] = b"PW-SECRET-";
    let allowed = mac.map(|m| format!("{slug}-{m}-"));
    let mut at = 0;
    while let Some(i) = bytes[at..].windows(MARK.len()).position(|w| w == MARK) {
        let after = &bytes[at + i + MARK.len()..];
        match &allowed {
            Some(a) => assert!(
                after.starts_with(a.as_bytes()),
                "{what}: a password not of {a} in {:?}",
                String::from_utf8_lossy(bytes)
            ),
            None => panic!(
                "{what}: a password in a tenant-wide file: {:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
        at += i + MARK.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    let (addr, name) = source(data);
    let name = String::from_utf8_lossy(name);
    let result = provision(snap, addr, &name);
    assert_eq!(result, provision(snap, addr, &name), "deterministic");
    let owner = snap.tenant_for(addr);
    let what = format!("{addr} {name:?}");
    match result {
        Ok(served) => {
            assert_eq!(
                Some(served.tenant),
                owner,
                "{what}: served for another tenant"
            );
            let t = snap.tenant(served.tenant);
            assert!(t.enabled, "{what}: a disabled tenant got a file");
            let slug = t.slug.to_string();
            for other in SLUGS.iter().filter(|s| **s != slug) {
                let file_mark = format!("FILE-SECRET-{other}-");
                assert!(
                    !served
                        .bytes
                        .windows(file_mark.len())
                        .any(|w| w == file_mark.as_bytes()),
                    "{what}: tenant {slug} got a file of {other}"
                );
            }
            if let Some(mac) = served.phone {
                let p = snap.phone(mac).expect("served for a known phone");
                assert_eq!(p.tenant, served.tenant, "{what}: another tenant's phone");
                assert!(p.enabled, "{what}: a disabled phone got its file");
            }
            if served.kind.is_rendered() {
                passwords_only_of(&served.bytes, &slug, served.phone, &what);
            } else {
                assert!(served.phone.is_none());
                // A stored file holds no password (none was stored).
                passwords_only_of(&served.bytes, &slug, None, &what);
            }
        }
        Err(Miss::UnknownSource) => assert_eq!(owner, None, "{what}"),
        Err(miss) => {
            let t = owner.unwrap_or_else(|| panic!("{what}: {miss:?} for an unknown source"));
            match miss {
                Miss::TenantDisabled => assert!(!snap.tenant(t).enabled, "{what}"),
                Miss::OtherTenantsDevice(mac) => {
                    assert_ne!(snap.phone(mac).map(|p| p.tenant), Some(t), "{what}")
                }
                Miss::UnknownDevice(mac) => assert!(snap.phone(mac).is_none(), "{what}"),
                Miss::DeviceDisabled
                | Miss::BadName
                | Miss::KnownAbsent
                | Miss::NotFound
                | Miss::UnknownSource => {}
            }
        }
    }
});
