//! Pure inputs of the load generator: the boot sequences of `boot-sequences.json`, MAC ranges and their
//! substitution into file names, and source address lists.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

/// The boot sequences shipped with the binary (a copy of `tests/fixtures/boot-sequences.json`, kept
/// identical by a unit test), so that operators need no extra file.
pub const EMBEDDED: &str = include_str!("boot-sequences.json");

/// The placeholder for the phone's MAC in a name template.
pub const MAC_PLACEHOLDER: &str = "<MAC>";

/// Largest 48-bit MAC.
const MAX_MAC: u64 = 0xFFFF_FFFF_FFFF;

/// At most this many source addresses are expanded from the `--source` list.
const MAX_SOURCES: usize = 65_536;

#[derive(Deserialize)]
struct FixtureJson {
    test_mac: String,
    families: Vec<FamilyJson>,
}

#[derive(Deserialize)]
struct FamilyJson {
    id: String,
    boot_sequence: Vec<StepJson>,
}

#[derive(Deserialize)]
struct StepJson {
    file: String,
    when: String,
    outcome: String,
}

/// When a phone makes a request (`when_values` of the fixture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every boot.
    EveryBoot,
    /// Only when the configured load differs from the running one.
    FirmwareMismatch,
    /// Only when the preceding request got not-found.
    Fallback,
    /// Only when the configuration names the file.
    IfConfigured,
    /// Only with a trust list.
    TrustList,
    /// Only without a usable load.
    NoUsableLoad,
    /// Not part of a boot.
    OnDemand,
}

impl When {
    fn parse(s: &str) -> Option<When> {
        Some(match s {
            "every_boot" => When::EveryBoot,
            "firmware_mismatch" => When::FirmwareMismatch,
            "fallback" => When::Fallback,
            "if_configured" => When::IfConfigured,
            "trust_list" => When::TrustList,
            "no_usable_load" => When::NoUsableLoad,
            "on_demand" => When::OnDemand,
            _ => return None,
        })
    }
}

/// What the server is expected to answer (`outcome_classes` of the fixture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `render` or `static`: the file must be served.
    Served,
    /// `not_found_ok`: ERROR 1 is a correct answer (a served file is fine too).
    NotFoundOk,
}

/// One request of a boot, with the MAC as [`MAC_PLACEHOLDER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The requested name with `<MAC>` for the phone's MAC.
    pub template: String,
    /// When the phone makes the request.
    pub when: When,
    /// What the server should answer.
    pub expect: Expect,
}

impl Step {
    /// The name a phone with this MAC requests.
    pub fn name(&self, mac: u64) -> String {
        substitute(&self.template, mac)
    }
}

/// Which steps of a family's boot sequence a simulated phone requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Also the steps whose correct answer is not-found (CTL/ITL files, optional jars).
    pub all_steps: bool,
    /// Also the `firmware_mismatch` steps (image files), as in a storm after a firmware change.
    pub firmware: bool,
}

/// Names of the families in a fixture.
pub fn family_ids(json: &str) -> anyhow::Result<Vec<String>> {
    let f: FixtureJson = serde_json::from_str(json).context("reading the boot sequences")?;
    Ok(f.families.into_iter().map(|f| f.id).collect())
}

/// The selected steps of `family`'s boot sequence. `fallback` steps are kept: the driver requests them
/// only when the step before got not-found.
pub fn load_family(json: &str, family: &str, sel: Selection) -> anyhow::Result<Vec<Step>> {
    let f: FixtureJson = serde_json::from_str(json).context("reading the boot sequences")?;
    let known: Vec<&str> = f.families.iter().map(|f| f.id.as_str()).collect();
    let fam = f
        .families
        .iter()
        .find(|x| x.id == family)
        .ok_or_else(|| anyhow!("unknown family {family:?}; known: {}", known.join(", ")))?;
    let mut steps = Vec::new();
    // Whether the step before (in the fixture's order) is requested: a fallback follows only that one.
    let mut prev_included = false;
    for s in &fam.boot_sequence {
        let when = When::parse(&s.when)
            .ok_or_else(|| anyhow!("{}: unknown `when` value {:?}", s.file, s.when))?;
        let expect = match s.outcome.as_str() {
            "render" | "static" => Expect::Served,
            "not_found_ok" => Expect::NotFoundOk,
            other => bail!("{}: unknown `outcome` value {other:?}", s.file),
        };
        let include = match (expect, when) {
            (Expect::NotFoundOk, _) if !sel.all_steps => false,
            (_, When::FirmwareMismatch) => sel.firmware,
            (_, When::OnDemand | When::NoUsableLoad) => false,
            (_, When::Fallback) => prev_included,
            _ => true,
        };
        prev_included = include;
        if include {
            steps.push(Step {
                template: templatize(&s.file, &f.test_mac),
                when,
                expect,
            });
        }
    }
    Ok(steps)
}

/// Replaces the fixture's test MAC (any case) by [`MAC_PLACEHOLDER`].
pub fn templatize(file: &str, test_mac: &str) -> String {
    if test_mac.is_empty() {
        return file.to_owned();
    }
    let upper = file.to_ascii_uppercase();
    let needle = test_mac.to_ascii_uppercase();
    let mut out = String::with_capacity(file.len());
    let mut pos = 0;
    while let Some(i) = upper[pos..].find(&needle) {
        out.push_str(&file[pos..pos + i]);
        out.push_str(MAC_PLACEHOLDER);
        pos += i + needle.len();
    }
    out.push_str(&file[pos..]);
    out
}

/// Replaces every [`MAC_PLACEHOLDER`] in `template` by `mac` in upper-case hex (12 digits).
pub fn substitute(template: &str, mac: u64) -> String {
    if template.contains(MAC_PLACEHOLDER) {
        template.replace(MAC_PLACEHOLDER, &mac_hex(mac))
    } else {
        template.to_owned()
    }
}

/// A MAC in the upper-case, separator-free form phones use in file names.
pub fn mac_hex(mac: u64) -> String {
    format!("{mac:012X}")
}

/// Parses a MAC: 12 hex digits, optionally separated by `:`, `-` or `.`.
pub fn parse_mac(s: &str) -> anyhow::Result<u64> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if digits.len() != 12 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{s:?} is not a MAC address (12 hex digits)");
    }
    Ok(u64::from_str_radix(&digits, 16)?)
}

/// Checks that `count` MACs starting at `base` stay within 48 bits.
pub fn check_mac_range(base: u64, count: u64) -> anyhow::Result<()> {
    if count > 0
        && base
            .checked_add(count - 1)
            .is_none_or(|last| last > MAX_MAC)
    {
        bail!("{count} MACs from {} run past FFFFFFFFFFFF", mac_hex(base));
    }
    Ok(())
}

/// The MAC of phone `i` (base + i).
pub fn mac_at(base: u64, i: u64) -> u64 {
    (base + i) & MAX_MAC
}

/// Expands a comma-separated list of addresses and CIDR prefixes. In IPv4 prefixes up to /30 the
/// network and broadcast addresses are left out; IPv6 prefixes are expanded whole (so keep them long).
pub fn parse_sources(list: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !item.contains('/') {
            out.push(
                item.parse::<IpAddr>()
                    .with_context(|| format!("{item:?} is not an IP address"))?,
            );
            continue;
        }
        let net: cidr::IpCidr = item
            .parse()
            .map_err(|e| anyhow!("{item:?} is not a CIDR prefix: {e}"))?;
        let host_bits = u32::from(net.family().len() - net.network_length());
        if host_bits > 16 || out.len() + (1usize << host_bits) > MAX_SOURCES + 2 {
            bail!("{item}: too many addresses (at most {MAX_SOURCES} source addresses in all)");
        }
        let skip_ends = net.is_ipv4() && host_bits >= 2;
        let all: Vec<IpAddr> = net.iter().map(|i| i.address()).collect();
        let n = all.len();
        for (k, a) in all.into_iter().enumerate() {
            if skip_ends && (k == 0 || k == n - 1) {
                continue;
            }
            out.push(a);
        }
    }
    if out.is_empty() {
        bail!("no source addresses in {list:?}");
    }
    if out.len() > MAX_SOURCES {
        bail!(
            "too many source addresses ({}; at most {MAX_SOURCES})",
            out.len()
        );
    }
    Ok(out)
}

/// The source address of phone (or transfer) `i`: round-robin, so consecutive phones use different
/// addresses and each address carries `ceil(n / len)` phones at most.
pub fn source_for(sources: &[IpAddr], i: u64) -> IpAddr {
    sources[(i % sources.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Selection = Selection {
        all_steps: true,
        firmware: true,
    };
    const SERVED: Selection = Selection {
        all_steps: false,
        firmware: true,
    };

    #[test]
    fn embedded_copy_matches_the_fixture() {
        let fixture = include_str!("../../tests/fixtures/boot-sequences.json");
        assert_eq!(
            EMBEDDED, fixture,
            "src/bench/boot-sequences.json must be a copy of tests/fixtures/boot-sequences.json"
        );
    }

    #[test]
    fn mac_substitution() {
        assert_eq!(
            templatize("CTLSEP0004F2A1B2C3.tlv", "0004F2A1B2C3"),
            "CTLSEP<MAC>.tlv"
        );
        assert_eq!(
            templatize("./sip0004f2a1b2c3.cnf", "0004F2A1B2C3"),
            "./sip<MAC>.cnf"
        );
        assert_eq!(templatize("RINGLIST.DAT", "0004F2A1B2C3"), "RINGLIST.DAT");
        let mac = parse_mac("0a:00:00:00:00:ff").unwrap();
        assert_eq!(mac, 0x0A00_0000_00FF);
        assert_eq!(
            substitute("SEP<MAC>.cnf.xml", mac_at(mac, 1)),
            "SEP0A0000000100.cnf.xml"
        );
        assert_eq!(substitute("<MAC>-<MAC>", 1), "000000000001-000000000001");
        assert_eq!(substitute("SIPDefault.cnf", 1), "SIPDefault.cnf");
        assert!(parse_mac("0A000000000").is_err());
        assert!(parse_mac("0A000000000G").is_err());
        assert!(check_mac_range(0xFFFF_FFFF_FFF0, 16).is_ok());
        assert!(check_mac_range(0xFFFF_FFFF_FFF0, 17).is_err());
    }

    #[test]
    fn families_and_selection() {
        let ids = family_ids(EMBEDDED).unwrap();
        assert!(ids.contains(&"7940_7960_sip_ual_8x".to_owned()));
        let steps = load_family(EMBEDDED, "7940_7960_sip_ual_8x", SERVED).unwrap();
        let names: Vec<String> = steps.iter().map(|s| s.name(0x0A00_0000_0001)).collect();
        assert_eq!(
            names,
            [
                "SEP0A0000000001.cnf.xml",
                "P0S3-8-12-00.loads",
                "P003-8-12-00.sbn",
                "P0S3-8-12-00.sb2",
                "SIPDefault.cnf",
                "./SIP0A0000000001.cnf",
                "RINGLIST.DAT",
                "dialplan.xml"
            ]
        );
        let no_fw = Selection {
            firmware: false,
            ..SERVED
        };
        assert_eq!(
            load_family(EMBEDDED, "7940_7960_sip_ual_8x", no_fw)
                .unwrap()
                .len(),
            6
        );
        let all = load_family(EMBEDDED, "7940_7960_sip_ual_8x", ALL).unwrap();
        assert_eq!(all[0].template, "CTLSEP<MAC>.tlv");
        assert_eq!(all[0].expect, Expect::NotFoundOk);
        assert_eq!(all.len(), 9);
        assert!(load_family(EMBEDDED, "nope", ALL).is_err());
    }

    #[test]
    fn fallback_steps_follow_their_predecessor() {
        // 79x1: SEP...cnf.xml.sgn (not_found_ok, excluded by default), SEP...cnf.xml, XMLDefault (fallback).
        let steps = load_family(EMBEDDED, "79x1_79x2_79x5_797x_sip_9x", SERVED).unwrap();
        let i = steps
            .iter()
            .position(|s| s.template == "XMLDefault.cnf.xml")
            .unwrap();
        assert_eq!(steps[i].when, When::Fallback);
        assert_eq!(steps[i - 1].template, "SEP<MAC>.cnf.xml");
        // A fallback whose predecessor is not requested is never requested either.
        let json = r#"{"test_mac":"0004F2A1B2C3","families":[{"id":"f","boot_sequence":[
            {"file":"CTLSEP0004F2A1B2C3.tlv","when":"every_boot","outcome":"not_found_ok"},
            {"file":"XMLDefault.cnf.xml","when":"fallback","outcome":"render"},
            {"file":"a","when":"every_boot","outcome":"render"}]}]}"#;
        let steps = load_family(json, "f", SERVED).unwrap();
        assert_eq!(
            steps.len(),
            1,
            "a fallback after an excluded step is dropped: {steps:?}"
        );
        let steps = load_family(json, "f", ALL).unwrap();
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn source_spreading() {
        let s = parse_sources("127.0.1.0/24").unwrap();
        assert_eq!(s.len(), 254);
        assert_eq!(s[0], "127.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(s[253], "127.0.1.254".parse::<IpAddr>().unwrap());
        let s = parse_sources("10.0.0.7, 10.0.1.0/31,::1").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[1], "10.0.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(s[3], "::1".parse::<IpAddr>().unwrap());
        assert!(parse_sources("10.0.0.0/8").is_err());
        assert!(parse_sources("").is_err());
        assert!(parse_sources("nope").is_err());
        let s = parse_sources("127.0.1.0/30").unwrap();
        assert_eq!(s.len(), 2);
        let picks: Vec<IpAddr> = (0..5).map(|i| source_for(&s, i)).collect();
        assert_eq!(picks[0], picks[2]);
        assert_eq!(picks[1], picks[3]);
        assert_ne!(picks[0], picks[1]);
        // Even spread: each address carries ceil(n / len) phones at most.
        let mut counts = std::collections::HashMap::new();
        for i in 0..1000 {
            *counts.entry(source_for(&s, i)).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&c| c == 500));
    }
}
