//! 7940/7960 SIP flat files: `OS79XX.TXT`, `SIPDefault.cnf` and `SIP<MAC>.cnf` (reference §1.3-§1.6).
//!
//! Every value is written double-quoted (`name: "value"`), one parameter per line, LF line ends, no
//! comments (the phones have a small TFTP buffer). `SIPDefault.cnf` carries the tenant layer plus `sync`;
//! `SIP<MAC>.cnf` stands alone: it repeats every setting-driven parameter from the phone's effective
//! settings (a phone override must win over `SIPDefault.cnf`) and adds `image_version`, `phone_label`
//! and lines 1..N of the model (unused ones `UNPROVISIONED`). Extra `sip_cnf` parameters come last and
//! replace a rendered parameter of the same name in place.

use crate::domain::settings::{Codec, DateFormat};
use crate::domain::{DstRule, Model};
use crate::provisioning::resolve::Resolved;
use crate::snapshot::PhoneView;

use super::Cnf;

/// `OS79XX.TXT`: the one image token followed by LF; `None` when no image is configured.
pub fn os79xx_txt(r: &Resolved) -> Option<String> {
    r.os79xx.as_ref().map(|image| format!("{image}\n"))
}

fn bool01(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// DST parameters for a rule: (start month, week of month, stop month, week of month, start hour,
/// stop hour). Week 8 means "last week"; day of week is always Sunday. Stop hours are local daylight
/// time, as in Cisco's US sample (02 → 02).
pub(crate) fn dst_params(
    rule: DstRule,
    utc_offset_minutes: i32,
) -> Option<(&'static str, u8, &'static str, u8, i32, i32)> {
    match rule {
        DstRule::None => None,
        // 01:00 UTC both ways: local standard time at the start, local daylight time at the end.
        DstRule::Eu => {
            let h = utc_offset_minutes.div_euclid(60);
            Some(("March", 8, "October", 8, h + 1, h + 2))
        }
        DstRule::Us => Some(("March", 2, "November", 1, 2, 2)),
        DstRule::AuSouth => Some(("October", 1, "April", 1, 2, 3)),
        DstRule::Nz => Some(("September", 8, "April", 1, 2, 3)),
    }
}

pub(crate) fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::G711ulaw => "g711ulaw",
        Codec::G711alaw => "g711alaw",
        Codec::G729a => "g729a",
    }
}

pub(crate) fn date_format(d: DateFormat) -> &'static str {
    match d {
        DateFormat::Mdy => "M/D/Y",
        DateFormat::Dmy => "D/M/Y",
        DateFormat::Ymd => "Y/M/D",
    }
}

/// The setting-driven parameters shared by both files, in a fixed order.
fn common(r: &Resolved, out: &mut Cnf) {
    out.push("proxy_register", "1");
    out.push_num("timer_register_expires", r.register_expires);
    if let Some(backup) = &r.backup_proxy {
        out.push("proxy_backup", backup.as_str());
        out.push_num("proxy_backup_port", r.backup_proxy_port);
    }
    if let Some(outbound) = &r.outbound_proxy {
        out.push("outbound_proxy", outbound.as_str());
        out.push_num("outbound_proxy_port", r.outbound_proxy_port);
    }
    out.push("nat_enable", bool01(r.nat_enabled));
    if let Some(addr) = &r.nat_address {
        out.push("nat_address", addr.as_str());
    }
    out.push_num("start_media_port", r.start_media_port);
    out.push_num("end_media_port", r.end_media_port);
    out.push("preferred_codec", codec_name(r.preferred_codec));
    match &r.ntp_server {
        Some(server) => {
            out.push("sntp_mode", "unicast");
            out.push("sntp_server", server.as_str());
        }
        None => out.push("sntp_mode", "directedbroadcast"),
    }
    out.push("time_zone", r.zone.cisco_cnf);
    let dst = if r.dst_auto_adjust {
        dst_params(r.zone.dst, r.zone.utc_offset_minutes)
    } else {
        None
    };
    match dst {
        Some((start_month, start_week, stop_month, stop_week, start_hour, stop_hour)) => {
            out.push("dst_offset", "1");
            out.push("dst_auto_adjust", "1");
            out.push("dst_start_month", start_month);
            out.push("dst_start_day", "0");
            out.push("dst_start_day_of_week", "Sunday");
            out.push_num("dst_start_week_of_month", start_week);
            out.push_num("dst_start_time", format_args!("{start_hour:02}"));
            out.push("dst_stop_month", stop_month);
            out.push("dst_stop_day", "0");
            out.push("dst_stop_day_of_week", "Sunday");
            out.push_num("dst_stop_week_of_month", stop_week);
            out.push_num("dst_stop_time", format_args!("{stop_hour:02}"));
        }
        None => {
            out.push("dst_offset", "0");
            out.push("dst_auto_adjust", "0");
        }
    }
    out.push("time_format_24hr", bool01(r.time_24h));
    out.push("date_format", date_format(r.date_format));
    if let Some(vm) = &r.voicemail_number {
        out.push("messages_uri", vm.as_str());
    }
    if !r.dial_plan.is_empty() {
        out.push("dial_template", "dialplan");
    }
    for (name, url) in [
        ("services_url", &r.services_url),
        ("directory_url", &r.directory_url),
        ("logo_url", &r.logo_url),
    ] {
        if let Some(url) = url {
            out.push(name, url.as_str());
        }
    }
}

/// The 7940/7960 image for the tenant-wide file: the 7960 load, else the 7940 load.
fn tenant_image(r: &Resolved) -> Option<&str> {
    r.load_for(Model::M7960)
        .or_else(|| r.load_for(Model::M7940))
}

/// `SIPDefault.cnf` without `sync` (the input of the tenant's sync stamp).
pub fn sip_default_body(r: &Resolved) -> Cnf {
    let mut out = Cnf::new();
    if let Some(image) = tenant_image(r) {
        out.push("image_version", image);
    }
    common(r, &mut out);
    for (name, value) in &r.extra_sip_cnf {
        out.set(name, value.as_str());
    }
    out
}

/// `SIPDefault.cnf`: tenant-wide defaults and the tenant's `sync` value (the same value `syncinfo.xml`
/// carries; the caller applies a tenant's extra `sync` parameter before passing it).
pub fn sip_default(r: &Resolved, sync: &str) -> String {
    let mut out = sip_default_body(r);
    out.set("sync", sync);
    out.finish()
}

/// `SIP<MAC>.cnf` for one 7940/7960 (`r` is the phone's effective settings).
pub fn sip_device(r: &Resolved, phone: &PhoneView) -> String {
    let mut out = Cnf::new();
    if let Some(image) = r.load_for(phone.model) {
        out.push("image_version", image);
    }
    let label: String = phone
        .label
        .chars()
        .take(phone.model.max_label_len())
        .collect();
    out.push("phone_label", &label);
    let registrar = r.registrar.as_deref().unwrap_or("");
    for n in 1..=phone.model.line_keys() {
        match phone.lines.get(n - 1) {
            Some(line) => {
                out.push(format_args!("line{n}_name"), line.number.as_str());
                out.push(
                    format_args!("line{n}_shortname"),
                    line.short_label.as_deref().unwrap_or(&line.number),
                );
                out.push(
                    format_args!("line{n}_displayname"),
                    line.display_name.as_deref().unwrap_or(""),
                );
                out.push(format_args!("line{n}_authname"), line.auth_name.as_str());
                out.push(format_args!("line{n}_password"), line.password.as_str());
                out.push(format_args!("proxy{n}_address"), registrar);
                out.push_num(format_args!("proxy{n}_port"), r.sip_port);
            }
            None => {
                out.push(format_args!("line{n}_name"), "");
                out.push(format_args!("line{n}_shortname"), "");
                out.push(format_args!("line{n}_displayname"), "");
                out.push(format_args!("line{n}_authname"), "UNPROVISIONED");
                out.push(format_args!("line{n}_password"), "UNPROVISIONED");
                out.push(format_args!("proxy{n}_address"), "");
            }
        }
    }
    common(r, &mut out);
    for (name, value) in &r.extra_sip_cnf {
        out.set(name, value.as_str());
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Settings;
    use serde_json::json;

    fn resolved(v: serde_json::Value) -> Resolved {
        Resolved::from_settings(&Settings::from_json(v).unwrap())
    }

    #[test]
    fn os79xx_is_one_token_and_lf() {
        let r = resolved(json!({"firmware": {"os79xx": "P003-8-12-00"}}));
        assert_eq!(os79xx_txt(&r).unwrap(), "P003-8-12-00\n");
        assert!(os79xx_txt(&resolved(json!({}))).is_none());
        let r = resolved(json!({"firmware": {"loads": {"7940": "P0S3-8-12-00"}}}));
        assert_eq!(os79xx_txt(&r).unwrap(), "P0S3-8-12-00\n");
    }

    #[test]
    fn dst_rules_map_to_cisco_parameters() {
        let london = resolved(json!({"time": {"time_zone": "Europe/London"}}));
        let body = sip_default(&london, "1");
        assert!(body.contains("dst_start_month: \"March\"\n"));
        assert!(body.contains("dst_start_week_of_month: \"8\"\n"));
        assert!(body.contains("dst_start_time: \"01\"\n"));
        assert!(body.contains("dst_stop_time: \"02\"\n"));
        let berlin = resolved(json!({"time": {"time_zone": "Europe/Berlin"}}));
        let body = sip_default(&berlin, "1");
        assert!(body.contains("time_zone: \"CET\"\n"));
        assert!(body.contains("dst_start_time: \"02\"\n"));
        assert!(body.contains("dst_stop_time: \"03\"\n"));
        let ny = resolved(json!({"time": {"time_zone": "America/New_York"}}));
        let body = sip_default(&ny, "1");
        assert!(body.contains("dst_stop_month: \"November\"\n"));
        assert!(body.contains("dst_start_week_of_month: \"2\"\n"));
        let off =
            resolved(json!({"time": {"time_zone": "America/New_York", "dst_auto_adjust": false}}));
        let body = sip_default(&off, "1");
        assert!(body.contains("dst_auto_adjust: \"0\"\n"));
        assert!(!body.contains("dst_start_month"));
        let utc = resolved(json!({}));
        assert!(sip_default(&utc, "1").contains("dst_offset: \"0\"\n"));
    }

    #[test]
    fn extras_override_in_place_and_append() {
        let r = resolved(json!({"extra": {"sip_cnf": {"nat_enable": "1", "telnet_level": "2"}}}));
        let body = sip_default(&r, "7");
        assert!(body.contains("nat_enable: \"1\"\n"));
        assert!(body.contains("telnet_level: \"2\"\n"));
        assert!(body.ends_with("sync: \"7\"\n"));
        assert_eq!(body.matches("nat_enable").count(), 1);
    }
}
