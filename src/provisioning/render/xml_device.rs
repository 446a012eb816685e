//! Device XML: the full SIP `SEP<MAC>.cnf.xml` of 79x1/79x2/79x5/797x and 89xx/99xx phones (reference
//! §3.3), the loader `SEP<MAC>.cnf.xml` of a 7940/7960 (§1.10, §2.2) and `XMLDefault.cnf.xml` (§2.2,
//! §2.3).
//!
//! The full device file follows Wazo's working generic template: lines use `<proxy>USECALLMANAGER</proxy>`
//! and the registrar (and backup proxy) are the `callManagerGroup` members. Its `<versionStamp>` is the
//! first 8 hex digits of the SHA-256 of the rest of the file, so it changes exactly when the content does.

use crate::domain::settings::{Codec, DateFormat, Transport};
use crate::domain::{Family, Model};
use crate::provisioning::resolve::Resolved;
use crate::snapshot::PhoneView;

use super::{digest, el, escape_xml, stamp_hex, tag};

/// `phoneLabel` limit of the 79xx/89xx/99xx XML firmware.
const PHONE_LABEL_MAX: usize = 12;
/// Limit of `featureLabel`, `name`, `displayName` and `authName`.
const LINE_TEXT_MAX: usize = 30;

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn tf(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// `dateTemplate`: the order, with `A` appended for a 12-hour clock.
pub(crate) fn date_template(r: &Resolved) -> String {
    let order = match r.date_format {
        DateFormat::Dmy => "D/M/Y",
        DateFormat::Mdy => "M/D/Y",
        DateFormat::Ymd => "Y/M/D",
    };
    if r.time_24h {
        order.to_owned()
    } else {
        format!("{order}A")
    }
}

/// `<callManagerGroup>`: the registrar at priority 0 and the backup proxy, if any, at priority 1.
fn call_manager_group(out: &mut String, depth: usize, r: &Resolved) {
    tag(out, depth, "callManagerGroup", false);
    tag(out, depth + 1, "members", false);
    let mut members = vec![(r.registrar.as_deref().unwrap_or(""), r.sip_port)];
    if let Some(backup) = &r.backup_proxy {
        members.push((backup.as_str(), r.backup_proxy_port));
    }
    for (priority, (host, port)) in members.into_iter().enumerate() {
        let pad = "  ".repeat(depth + 2);
        out.push_str(&format!("{pad}<member priority=\"{priority}\">\n"));
        tag(out, depth + 3, "callManager", false);
        tag(out, depth + 4, "ports", false);
        el(out, depth + 5, "ethernetPhonePort", "2000");
        el(out, depth + 5, "sipPort", &port.to_string());
        el(out, depth + 5, "securedSipPort", "5061");
        tag(out, depth + 4, "ports", true);
        el(out, depth + 4, "processNodeName", host);
        tag(out, depth + 3, "callManager", true);
        tag(out, depth + 2, "member", true);
    }
    tag(out, depth + 1, "members", true);
    tag(out, depth, "callManagerGroup", true);
}

/// The `maxNumCalls` used on every line, within every model's ceiling (24 on 8941/8945).
const MAX_NUM_CALLS: &str = "4";
/// The `busyTrigger` used on every line.
const BUSY_TRIGGER: &str = "2";

/// Default `<vendorConfig>` elements; extra `vendor_config` entries replace these by name or are
/// appended. The phone's web server and SSH are off by default (`1` = disabled).
const VENDOR_DEFAULTS: &[(&str, &str)] = &[
    ("disableSpeaker", "false"),
    ("disableSpeakerAndHeadset", "false"),
    ("pcPort", "0"),
    ("settingsAccess", "1"),
    ("garp", "0"),
    ("voiceVlanAccess", "0"),
    ("autoSelectLineEnable", "0"),
    ("webAccess", "1"),
    ("sshAccess", "1"),
    ("spanToPCPort", "1"),
    ("loggingDisplay", "1"),
];

/// The full SIP `SEP<MAC>.cnf.xml` for a 79x1/79x2/79x5/797x or 89xx/99xx phone.
pub fn sep_full(r: &Resolved, phone: &PhoneView) -> String {
    let mut o = String::with_capacity(6 * 1024);
    o.push_str("<device>\n");
    el(&mut o, 1, "fullConfig", "true");
    el(&mut o, 1, "deviceProtocol", "SIP");
    tag(&mut o, 1, "devicePool", false);
    tag(&mut o, 2, "dateTimeSetting", false);
    el(&mut o, 3, "dateTemplate", &date_template(r));
    el(&mut o, 3, "timeZone", r.zone.cisco_xml);
    match &r.ntp_server {
        Some(server) => {
            tag(&mut o, 3, "ntps", false);
            tag(&mut o, 4, "ntp", false);
            el(&mut o, 5, "name", server);
            el(&mut o, 5, "ntpMode", "Unicast");
            tag(&mut o, 4, "ntp", true);
            tag(&mut o, 3, "ntps", true);
        }
        None => o.push_str("      <ntps/>\n"),
    }
    tag(&mut o, 2, "dateTimeSetting", true);
    call_manager_group(&mut o, 2, r);
    tag(&mut o, 1, "devicePool", true);

    tag(&mut o, 1, "sipProfile", false);
    tag(&mut o, 2, "sipProxies", false);
    if let Some(outbound) = &r.outbound_proxy {
        el(&mut o, 3, "outboundProxy", outbound);
        el(
            &mut o,
            3,
            "outboundProxyPort",
            &r.outbound_proxy_port.to_string(),
        );
    }
    el(&mut o, 3, "registerWithProxy", "true");
    tag(&mut o, 2, "sipProxies", true);
    tag(&mut o, 2, "sipCallFeatures", false);
    for (name, value) in [
        ("cnfJoinEnabled", "true"),
        ("callForwardURI", "x-cisco-serviceuri-cfwdall"),
        ("callPickupURI", "x-cisco-serviceuri-pickup"),
        ("callPickupListURI", "x-cisco-serviceuri-opickup"),
        ("callPickupGroupURI", "x-cisco-serviceuri-gpickup"),
        ("meetMeServiceURI", "x-cisco-serviceuri-meetme"),
        ("abbreviatedDialURI", "x-cisco-serviceuri-abbrdial"),
        ("rfc2543Hold", "false"),
        ("callHoldRingback", "2"),
        ("localCfwdEnable", "true"),
        ("semiAttendedTransfer", "true"),
        ("anonymousCallBlock", "2"),
        ("callerIdBlocking", "2"),
        ("dndControl", "0"),
        ("remoteCcEnable", "true"),
    ] {
        el(&mut o, 3, name, value);
    }
    tag(&mut o, 2, "sipCallFeatures", true);
    tag(&mut o, 2, "sipStack", false);
    let expires = r.register_expires.to_string();
    for (name, value) in [
        ("sipInviteRetx", "6"),
        ("sipRetx", "10"),
        ("timerInviteExpires", "180"),
        ("timerRegisterExpires", expires.as_str()),
        ("timerRegisterDelta", "5"),
        ("timerKeepAliveExpires", "120"),
        ("timerSubscribeExpires", "120"),
        ("timerSubscribeDelta", "5"),
        ("timerT1", "500"),
        ("timerT2", "4000"),
        ("maxRedirects", "70"),
        ("remotePartyID", "true"),
        ("userInfo", "None"),
    ] {
        el(&mut o, 3, name, value);
    }
    tag(&mut o, 2, "sipStack", true);
    el(&mut o, 2, "autoAnswerTimer", "1");
    el(&mut o, 2, "autoAnswerAltBehavior", "false");
    el(&mut o, 2, "autoAnswerOverride", "true");
    el(&mut o, 2, "transferOnhookEnabled", "false");
    el(&mut o, 2, "enableVad", "false");
    el(
        &mut o,
        2,
        "preferredCodec",
        match r.preferred_codec {
            Codec::G711ulaw => "g711ulaw",
            Codec::G711alaw => "g711alaw",
            Codec::G729a => "g729a",
        },
    );
    el(&mut o, 2, "dtmfAvtPayload", "101");
    el(&mut o, 2, "dtmfDbLevel", "3");
    el(&mut o, 2, "dtmfOutofBand", "avt");
    el(&mut o, 2, "alwaysUsePrimeLine", "false");
    el(&mut o, 2, "alwaysUsePrimeLineVoiceMail", "false");
    el(&mut o, 2, "kpml", "3");
    el(&mut o, 2, "natEnabled", tf(r.nat_enabled));
    if let Some(addr) = &r.nat_address {
        el(&mut o, 2, "natAddress", addr);
    }
    // The 7900 series shows no spaces in the label.
    let label: String = if phone.model.family() == Family::Sip79x1 {
        phone.label.chars().filter(|c| *c != ' ').collect()
    } else {
        phone.label.clone()
    };
    el(&mut o, 2, "phoneLabel", &cut(&label, PHONE_LABEL_MAX));
    tag(&mut o, 2, "sipLines", false);
    let port = r.sip_port.to_string();
    for (i, line) in phone.lines.iter().enumerate() {
        let n = i + 1;
        o.push_str(&format!("      <line button=\"{n}\" lineIndex=\"{n}\">\n"));
        el(&mut o, 4, "featureID", "9");
        let label = line.short_label.as_deref().unwrap_or(&line.number);
        el(&mut o, 4, "featureLabel", &cut(label, LINE_TEXT_MAX));
        el(&mut o, 4, "proxy", "USECALLMANAGER");
        el(&mut o, 4, "port", &port);
        el(&mut o, 4, "name", &cut(&line.number, LINE_TEXT_MAX));
        if let Some(display) = &line.display_name {
            el(&mut o, 4, "displayName", &cut(display, LINE_TEXT_MAX));
        }
        tag(&mut o, 4, "autoAnswer", false);
        el(&mut o, 5, "autoAnswerEnabled", "2");
        tag(&mut o, 4, "autoAnswer", true);
        el(&mut o, 4, "callWaiting", "3");
        el(&mut o, 4, "authName", &cut(&line.auth_name, LINE_TEXT_MAX));
        el(&mut o, 4, "authPassword", &line.password);
        el(&mut o, 4, "sharedLine", "false");
        el(&mut o, 4, "messageWaitingLampPolicy", "3");
        if let Some(vm) = &r.voicemail_number {
            el(&mut o, 4, "messagesNumber", vm);
        }
        el(&mut o, 4, "ringSettingIdle", "4");
        el(&mut o, 4, "ringSettingActive", "5");
        el(&mut o, 4, "contact", &line.number);
        tag(&mut o, 4, "forwardCallInfoDisplay", false);
        el(&mut o, 5, "callerName", "true");
        el(&mut o, 5, "callerNumber", "false");
        el(&mut o, 5, "redirectedNumber", "false");
        el(&mut o, 5, "dialedNumber", "true");
        tag(&mut o, 4, "forwardCallInfoDisplay", true);
        el(&mut o, 4, "maxNumCalls", MAX_NUM_CALLS);
        el(&mut o, 4, "busyTrigger", BUSY_TRIGGER);
        tag(&mut o, 3, "line", true);
    }
    tag(&mut o, 2, "sipLines", true);
    el(&mut o, 2, "voipControlPort", &port);
    el(&mut o, 2, "startMediaPort", &r.start_media_port.to_string());
    el(&mut o, 2, "stopMediaPort", &r.end_media_port.to_string());
    el(&mut o, 2, "dscpForAudio", "184");
    el(&mut o, 2, "ringSettingBusyStationPolicy", "0");
    if !r.dial_plan.is_empty() {
        el(&mut o, 2, "dialTemplate", "dialplan.xml");
    }
    tag(&mut o, 1, "sipProfile", true);

    tag(&mut o, 1, "commonProfile", false);
    el(&mut o, 2, "backgroundImageAccess", "true");
    el(&mut o, 2, "callLogBlfEnabled", "2");
    tag(&mut o, 1, "commonProfile", true);
    if let Some(load) = r.load_for(phone.model) {
        el(&mut o, 1, "loadInformation", load);
    }
    tag(&mut o, 1, "vendorConfig", false);
    for (name, value) in VENDOR_DEFAULTS {
        let value = r
            .extra_vendor_config
            .get(*name)
            .map_or(*value, String::as_str);
        el(&mut o, 2, name, value);
    }
    for (name, value) in &r.extra_vendor_config {
        if !VENDOR_DEFAULTS.iter().any(|(n, _)| n == name) {
            el(&mut o, 2, name, value);
        }
    }
    tag(&mut o, 1, "vendorConfig", true);
    el(&mut o, 1, "deviceSecurityMode", "1");
    el(
        &mut o,
        1,
        "transportLayerProtocol",
        match r.transport {
            Transport::Tcp => "1",
            Transport::Udp => "2",
            Transport::Tls => "3",
        },
    );
    if let Some(url) = &r.directory_url {
        el(&mut o, 1, "directoryURL", url);
    }
    if let Some(url) = &r.services_url {
        el(&mut o, 1, "servicesURL", url);
    }
    let stamp = stamp_hex(&digest(&[o.as_bytes()]));
    el(&mut o, 1, "versionStamp", &stamp);
    o.push_str("</device>\n");
    o
}

/// The `SEP<MAC>.cnf.xml` a 7940/7960 universal loader reads: protocol and load only, the shape of the
/// observed working file (§1.10). Also what an SCCP 7940/7960 needs to switch to SIP (§2.2 case 2).
pub fn sep_79xx_loader(model: Model, load: &str) -> String {
    format!(
        "<device>\n  <deviceProtocol>SIP</deviceProtocol>\n  <loadInformation model=\"{}\">{}</loadInformation>\n</device>\n",
        escape_xml(model.display_name()),
        escape_xml(load)
    )
}

/// `XMLDefault.cnf.xml`: the registrar as the call-manager group, one `loadInformationNNN` per model
/// with a load (catalogue order; `loadInformation8` = 7940, `loadInformation7` = 7960) and the URLs.
pub fn xml_default(r: &Resolved) -> String {
    let mut o = String::with_capacity(2048);
    o.push_str("<Default>\n");
    call_manager_group(&mut o, 1, r);
    for model in Model::ALL {
        if let Some(load) = r.load_for(*model) {
            let n = model.device_type();
            o.push_str(&format!(
                "  <loadInformation{n} model=\"{}\">{}</loadInformation{n}>\n",
                escape_xml(model.display_name()),
                escape_xml(load)
            ));
        }
    }
    if let Some(url) = &r.directory_url {
        el(&mut o, 1, "directoryURL", url);
    }
    if let Some(url) = &r.services_url {
        el(&mut o, 1, "servicesURL", url);
    }
    o.push_str("</Default>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Settings;
    use serde_json::json;

    #[test]
    fn loader_file_has_the_observed_shape() {
        assert_eq!(
            sep_79xx_loader(Model::M7960, "P0S3-8-12-00"),
            "<device>\n  <deviceProtocol>SIP</deviceProtocol>\n  <loadInformation model=\"IP Phone 7960\">P0S3-8-12-00</loadInformation>\n</device>\n"
        );
    }

    #[test]
    fn xml_default_lists_loads_by_device_type() {
        let r = Resolved::from_settings(
            &Settings::from_json(json!({"sip": {"registrar": "sip.acme.example"},
                "firmware": {"loads": {"7940": "P0S3-8-12-00", "7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}}}))
            .unwrap(),
        );
        let x = xml_default(&r);
        assert!(
            x.contains("<loadInformation8 model=\"IP Phone 7940\">P0S3-8-12-00</loadInformation8>")
        );
        assert!(
            x.contains("<loadInformation7 model=\"IP Phone 7960\">P0S3-8-12-00</loadInformation7>")
        );
        assert!(x.contains(
            "<loadInformation434 model=\"IP Phone 7942\">SIP42.9-4-2SR3-1S</loadInformation434>"
        ));
        assert!(x.contains("<processNodeName>sip.acme.example</processNodeName>"));
        assert!(!x.contains("loadInformation436"));
    }
}
