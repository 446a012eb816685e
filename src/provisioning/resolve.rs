//! `Resolved`: effective settings with every default filled in (built-in defaults < tenant < phone).
//!
//! Built-in defaults (what a tenant that set nothing gets):
//!
//! | setting | default | why |
//! |---|---|---|
//! | `sip.registrar` | none: proxies are written empty | there is no sensible guess |
//! | `sip.port`, `backup_proxy_port`, `outbound_proxy_port` | 5060 | SIP default port |
//! | `sip.transport` | udp | the only transport every model speaks |
//! | `sip.register_expires` | 3600 s | Cisco sample default |
//! | `sip.nat_enabled` | false | Cisco default (`nat_enable: 0`) |
//! | `sip.preferred_codec` | g711ulaw | Cisco default |
//! | `sip.start_media_port` / `end_media_port` | 16384 / 32766 | Cisco defaults |
//! | `time.ntp_server` | none (`sntp_mode` directedbroadcast, no `<ntp>` entry) | Cisco default mode |
//! | `time.time_zone` | UTC | neutral |
//! | `time.dst_auto_adjust` | true (only matters when the zone has a DST rule) | Cisco default |
//! | `time.date_format` | D/M/Y | the default of `Settings` |
//! | `time.time_format_24h` | true | Cisco default |
//! | `voicemail_number` | none (no `messages_uri` / `messagesNumber`) | |
//! | `dial_plan` | empty (no `dial_template` is named; `dialplan.xml` renders an empty template) | |
//! | `ring_list` | empty (ring lists answer "not found": the phone offers its built-in rings) | |
//! | `firmware.os79xx` | the 7960 load, else the 7940 load | keeps `OS79XX.TXT` and `image_version` equal |
//! | `firmware.loads` | none (no `loadInformation`, no `image_version`) | never force an upgrade nobody asked for |
//! | `urls.*` | none | |
//! | `extra.*` | none | |

use std::collections::BTreeMap;

use crate::domain::settings::{Codec, DateFormat, DialRule, RingTone, Transport};
use crate::domain::{Model, Settings, TimeZone, ZoneInfo};
use crate::snapshot::{PhoneView, TenantView};

/// Effective settings for one file: every field concrete, every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// Registrar / proxy host of every line.
    pub registrar: Option<String>,
    /// Registrar port.
    pub sip_port: u16,
    /// SIP transport.
    pub transport: Transport,
    /// Backup proxy host.
    pub backup_proxy: Option<String>,
    /// Backup proxy port.
    pub backup_proxy_port: u16,
    /// Outbound proxy host.
    pub outbound_proxy: Option<String>,
    /// Outbound proxy port.
    pub outbound_proxy_port: u16,
    /// Registration expiry, seconds.
    pub register_expires: u32,
    /// NAT traversal on.
    pub nat_enabled: bool,
    /// Public address for NAT.
    pub nat_address: Option<String>,
    /// Preferred codec.
    pub preferred_codec: Codec,
    /// First RTP port.
    pub start_media_port: u16,
    /// Last RTP port.
    pub end_media_port: u16,
    /// NTP server.
    pub ntp_server: Option<String>,
    /// Time zone.
    pub zone: &'static ZoneInfo,
    /// Apply the zone's DST rule.
    pub dst_auto_adjust: bool,
    /// Date display order.
    pub date_format: DateFormat,
    /// 24-hour clock.
    pub time_24h: bool,
    /// Messages key number.
    pub voicemail_number: Option<String>,
    /// Dial-plan rules.
    pub dial_plan: Vec<DialRule>,
    /// Ring tones.
    pub ring_list: Vec<RingTone>,
    /// The `OS79XX.TXT` image.
    pub os79xx: Option<String>,
    /// Firmware load per model.
    pub loads: BTreeMap<Model, String>,
    /// Directory URL.
    pub directory_url: Option<String>,
    /// Services URL.
    pub services_url: Option<String>,
    /// Logo URL (7940/7960).
    pub logo_url: Option<String>,
    /// Raw `.cnf` parameters (override rendered ones of the same name).
    pub extra_sip_cnf: BTreeMap<String, String>,
    /// Raw `<vendorConfig>` elements (override rendered ones of the same name).
    pub extra_vendor_config: BTreeMap<String, String>,
}

fn s<T: AsRef<str>>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(|x| x.as_ref().to_owned())
}

impl Resolved {
    /// Applies the built-in defaults to one layer of settings.
    pub fn from_settings(settings: &Settings) -> Resolved {
        let sip = settings.sip.clone().unwrap_or_default();
        let time = settings.time.clone().unwrap_or_default();
        let firmware = settings.firmware.clone().unwrap_or_default();
        let urls = settings.urls.clone().unwrap_or_default();
        let extra = settings.extra.clone().unwrap_or_default();
        let loads: BTreeMap<Model, String> = firmware
            .loads
            .unwrap_or_default()
            .into_iter()
            .map(|(m, l)| (m, l.as_str().to_owned()))
            .collect();
        let os79xx = s(&firmware.os79xx).or_else(|| {
            loads
                .get(&Model::M7960)
                .or_else(|| loads.get(&Model::M7940))
                .cloned()
        });
        let raw = |m: Option<BTreeMap<_, _>>| -> BTreeMap<String, String> {
            m.unwrap_or_default()
                .into_iter()
                .map(
                    |(k, v): (
                        crate::domain::text::ParamName,
                        crate::domain::text::ParamValue,
                    )| { (k.as_str().to_owned(), v.as_str().to_owned()) },
                )
                .collect()
        };
        Resolved {
            registrar: s(&sip.registrar),
            sip_port: sip.port.map_or(5060, |p| p.0),
            transport: sip.transport.unwrap_or(Transport::Udp),
            backup_proxy: s(&sip.backup_proxy),
            backup_proxy_port: sip.backup_proxy_port.map_or(5060, |p| p.0),
            outbound_proxy: s(&sip.outbound_proxy),
            outbound_proxy_port: sip.outbound_proxy_port.map_or(5060, |p| p.0),
            register_expires: sip.register_expires.map_or(3600, |e| e.0),
            nat_enabled: sip.nat_enabled.unwrap_or(false),
            nat_address: s(&sip.nat_address),
            preferred_codec: sip.preferred_codec.unwrap_or(Codec::G711ulaw),
            start_media_port: sip.start_media_port.map_or(16384, |p| p.0),
            end_media_port: sip.end_media_port.map_or(32766, |p| p.0),
            ntp_server: s(&time.ntp_server),
            zone: time.time_zone.unwrap_or_default().info(),
            dst_auto_adjust: time.dst_auto_adjust.unwrap_or(true),
            date_format: time.date_format.unwrap_or(DateFormat::Dmy),
            time_24h: time.time_format_24h.unwrap_or(true),
            voicemail_number: s(&settings.voicemail_number),
            dial_plan: settings.dial_plan.clone().unwrap_or_default(),
            ring_list: settings.ring_list.clone().unwrap_or_default(),
            os79xx,
            loads,
            directory_url: s(&urls.directory),
            services_url: s(&urls.services),
            logo_url: s(&urls.logo),
            extra_sip_cnf: raw(extra.sip_cnf),
            extra_vendor_config: raw(extra.vendor_config),
        }
    }

    /// Settings for a tenant-wide file: defaults < tenant.
    pub fn tenant(tenant: &TenantView) -> Resolved {
        Resolved::from_settings(&tenant.settings)
    }

    /// Settings for a per-device file: defaults < tenant < phone.
    pub fn device(tenant: &TenantView, phone: &PhoneView) -> Resolved {
        if phone.settings.is_empty() {
            Resolved::from_settings(&tenant.settings)
        } else {
            Resolved::from_settings(&tenant.settings.layered(&phone.settings))
        }
    }

    /// The firmware load configured for `model`.
    pub fn load_for(&self, model: Model) -> Option<&str> {
        self.loads.get(&model).map(String::as_str)
    }

    /// The time zone as the domain type (for completeness; renderers use `zone`).
    pub fn time_zone(&self) -> TimeZone {
        TimeZone::all()
            .find(|z| z.info().iana == self.zone.iana)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_an_empty_layer() {
        let r = Resolved::from_settings(&Settings::default());
        assert_eq!(r.sip_port, 5060);
        assert_eq!(r.transport, Transport::Udp);
        assert_eq!(r.register_expires, 3600);
        assert_eq!((r.start_media_port, r.end_media_port), (16384, 32766));
        assert_eq!(r.zone.iana, "UTC");
        assert!(r.dst_auto_adjust && r.time_24h && !r.nat_enabled);
        assert_eq!(r.date_format, DateFormat::Dmy);
        assert!(r.registrar.is_none() && r.os79xx.is_none() && r.loads.is_empty());
        assert!(r.dial_plan.is_empty() && r.ring_list.is_empty());
    }

    #[test]
    fn phone_overrides_tenant_overrides_defaults() {
        let tenant = Settings::from_json(json!({
            "sip": {"registrar": "sip.acme.example", "port": 5070},
            "time": {"time_zone": "Europe/London"},
            "firmware": {"loads": {"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}}
        }))
        .unwrap();
        let phone = Settings::from_json(json!({
            "sip": {"port": 5080},
            "firmware": {"loads": {"7942": "SIP42.9-4-2SR4-3S"}}
        }))
        .unwrap();
        let r = Resolved::from_settings(&tenant.layered(&phone));
        assert_eq!(r.registrar.as_deref(), Some("sip.acme.example"));
        assert_eq!(r.sip_port, 5080);
        assert_eq!(r.zone.iana, "Europe/London");
        assert_eq!(r.load_for(Model::M7942), Some("SIP42.9-4-2SR4-3S"));
        assert_eq!(r.load_for(Model::M7960), Some("P0S3-8-12-00"));
        assert_eq!(r.os79xx.as_deref(), Some("P0S3-8-12-00"));
        assert_eq!(r.time_zone().to_string(), "Europe/London");
    }
}
