//! Test helpers: locating fixtures, loading `boot-sequences.json`, and building snapshots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::domain::{MacAddress, Model, Prefix, Settings};
use crate::snapshot::{LineView, PhoneView, Snapshot, StoredFile, TenantView};

/// The source tree holding `tests/golden` and `tests/fixtures`: the crate's own directory, or, when that
/// has no `tests/fixtures` (a scratch crate compiling these sources), `$DIALTONE_SRC_ROOT`.
pub fn source_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("tests/fixtures").is_dir() {
        return manifest;
    }
    match std::env::var_os("DIALTONE_SRC_ROOT") {
        Some(root) => PathBuf::from(root),
        None => manifest,
    }
}

/// The parsed `tests/fixtures/boot-sequences.json`.
pub fn boot_sequences() -> serde_json::Value {
    let path = source_root().join("tests/fixtures/boot-sequences.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("boot-sequences.json is valid JSON")
}

/// Parses an address.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Parses a MAC.
pub fn mac(s: &str) -> MacAddress {
    s.parse().unwrap()
}

/// A tenant with these settings and no files.
pub fn tenant(slug: &str, settings: serde_json::Value) -> TenantView {
    TenantView {
        id: uuid::Uuid::from_u128(slug.len() as u128),
        slug: slug.parse().unwrap(),
        enabled: true,
        settings: Settings::from_json(settings).unwrap(),
        files: HashMap::new(),
        templates: Default::default(),
    }
}

/// A line whose auth name is its number and whose password is `pw-<number>`.
pub fn line(number: &str, display: Option<&str>, short: Option<&str>) -> LineView {
    LineView {
        number: number.into(),
        auth_name: number.into(),
        password: format!("pw-{number}"),
        display_name: display.map(Into::into),
        short_label: short.map(Into::into),
    }
}

/// A phone of `tenant`.
pub fn phone(
    tenant: usize,
    mac_text: &str,
    model: Model,
    label: &str,
    lines: Vec<LineView>,
) -> PhoneView {
    PhoneView {
        tenant,
        mac: mac(mac_text),
        model,
        label: label.into(),
        enabled: true,
        lines,
        settings: Default::default(),
        input_digest: Default::default(),
    }
}

/// A prefix.
pub fn net(s: &str) -> Prefix {
    s.parse().unwrap()
}

/// The "full settings" tenant used by the golden files.
pub fn acme_settings() -> serde_json::Value {
    serde_json::json!({
        "sip": {"registrar": "sip.acme.example", "port": 5060, "transport": "udp",
                "backup_proxy": "sip2.acme.example", "backup_proxy_port": 5062,
                "outbound_proxy": "sbc.acme.example", "outbound_proxy_port": 5070,
                "register_expires": 1800, "nat_enabled": true, "nat_address": "198.51.100.7",
                "preferred_codec": "g711alaw", "start_media_port": 20000, "end_media_port": 30000},
        "time": {"ntp_server": "ntp.acme.example", "time_zone": "Europe/London", "dst_auto_adjust": true,
                 "date_format": "D/M/Y", "time_format_24h": true},
        "voicemail_number": "*97",
        "dial_plan": [{"match": "9.", "timeout": 3}, {"match": "1XXX", "timeout": 0},
                      {"match": "\\*..", "timeout": 2}, {"match": "*", "timeout": 5}],
        "ring_list": [{"name": "Old Style", "file": "ringer1.pcm"}, {"name": "Piano 1", "file": "Piano1.raw"},
                      {"name": "Chirp & Beep", "file": "Chirp1.raw"}],
        "firmware": {"os79xx": "P003-8-12-00",
                     "loads": {"7940": "P0S3-8-12-00", "7960": "P0S3-8-12-00",
                               "7911": "SIP11.9-4-2SR1-1S", "7941": "SIP41.9-4-2SR3-1S",
                               "7942": "SIP42.9-4-2SR3-1S", "7965": "SIP45.9-4-2SR3-1S",
                               "7975": "SIP75.9-4-2SR3-1S", "8945": "SIP8941_8945.9-3-1-18",
                               "8961": "sip8961.9-4-1-9", "9971": "sip9971.9-4-2SR2-2"}},
        "urls": {"directory": "http://dir.acme.example/xml?a=1&b=2", "services": "http://svc.acme.example/menu",
                 "logo": "http://dir.acme.example/logo.bmp"},
        "extra": {"sip_cnf": {"telnet_level": "0", "phone_prompt": "Acme"},
                  "vendor_config": {"webAccess": "0", "displayIdleTimeout": "00:10"}}
    })
}

/// One phone per golden model: (family directory, phone).
pub fn golden_phones() -> Vec<(&'static str, PhoneView)> {
    let mut p7965 = phone(
        0,
        "0004F2000765",
        Model::M7965,
        "Sales Desk",
        vec![
            line("2001", Some("Bob <Sales>"), Some("Bob")),
            line("2002", None, None),
        ],
    );
    p7965.settings = Settings::from_json(serde_json::json!({
        "sip": {"port": 5080}, "time": {"time_zone": "America/New_York", "time_format_24h": false},
        "extra": {"vendor_config": {"pcPort": "1"}}
    }))
    .unwrap()
    .into();
    let mut p7940 = phone(
        0,
        "0004F2000794",
        Model::M7940,
        "Lobby",
        vec![line("1002", Some("Lobby"), None)],
    );
    p7940.settings = Settings::from_json(serde_json::json!({
        "time": {"time_zone": "America/Chicago"}, "extra": {"sip_cnf": {"line1_shortname": "Front"}}
    }))
    .unwrap()
    .into();
    vec![
        ("sip79xx", p7940),
        (
            "sip79xx",
            phone(
                0,
                "0004F2A1B2C3",
                Model::M7960,
                "Reception",
                vec![
                    line("1001", Some("Alice"), Some("Alice")),
                    line("1099", Some("Reception Q"), None),
                ],
            ),
        ),
        (
            "sip79x1",
            phone(
                0,
                "001B54000791",
                Model::M7911,
                "Hall",
                vec![line("3001", None, None)],
            ),
        ),
        (
            "sip79x1",
            phone(
                0,
                "001B54000741",
                Model::M7941,
                "Ops",
                vec![line("3041", Some("Ops"), None)],
            ),
        ),
        (
            "sip79x1",
            phone(
                0,
                "0004F2000742",
                Model::M7942,
                "Front Desk",
                vec![line("2101", Some("Carol"), None)],
            ),
        ),
        ("sip79x1", p7965),
        (
            "sip79x1",
            phone(
                0,
                "0004F2000797",
                Model::M7975,
                "Boardroom",
                vec![
                    line("2201", Some("Board"), None),
                    line("2202", None, None),
                    line("2203", None, None),
                ],
            ),
        ),
        (
            "sip89xx99xx",
            phone(
                0,
                "001B54000894",
                Model::M8945,
                "Kitchen",
                vec![line("4001", Some("Kitchen"), None)],
            ),
        ),
        (
            "sip89xx99xx",
            phone(
                0,
                "001B54000896",
                Model::M8961,
                "Dana",
                vec![line("4101", Some("Dana"), Some("Dana"))],
            ),
        ),
        (
            "sip89xx99xx",
            phone(
                0,
                "001B54000997",
                Model::M9971,
                "Front & Back",
                vec![
                    line("4201", Some("Eve & Co"), None),
                    line("4202", Some("Eve 2"), None),
                ],
            ),
        ),
    ]
}

/// The golden snapshot: tenant `acme` (full settings, 10.1.0.0/16 and 2001:db8:1::/48) with one phone per
/// golden model, tenant `beta` (defaults only, 10.2.0.0/16) with one 7960, and a few stored files.
pub fn golden_snapshot() -> Snapshot {
    let mut acme = tenant("acme", acme_settings());
    acme.files
        .insert("ringer1.pcm".into(), StoredFile::new(&b"acme ring"[..]));
    let beta = tenant(
        "beta",
        serde_json::json!({"sip": {"registrar": "pbx.beta.example"}}),
    );
    let mut phones: Vec<PhoneView> = golden_phones().into_iter().map(|(_, p)| p).collect();
    phones.push(phone(
        1,
        "0004F2BBBBBB",
        Model::M7960,
        "Beta",
        vec![line("5001", None, None)],
    ));
    Snapshot::build(
        7,
        vec![acme, beta],
        vec![
            (net("10.1.0.0/16"), 0),
            (net("2001:db8:1::/48"), 0),
            (net("10.2.0.0/16"), 1),
        ],
        phones,
        vec![
            ("ringer1.pcm".into(), StoredFile::new(&b"global ring"[..])),
            (
                "P0S3-8-12-00.loads".into(),
                StoredFile::new(&b"\x00\x01loads"[..]),
            ),
            (
                "term42.default.loads".into(),
                StoredFile::new(&b"term42"[..]),
            ),
        ],
    )
}

/// A source address inside `acme`.
pub const ACME_SOURCE: &str = "10.1.2.3";
/// A source address inside `beta`.
pub const BETA_SOURCE: &str = "10.2.9.9";
