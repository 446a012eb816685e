//! `Settings`: the typed, inherited configuration of a tenant or a phone (defaults < tenant < phone).
//!
//! Every field is optional at every level; a layer only says what it changes. Layers combine by a JSON
//! deep merge (objects merge key by key, arrays and scalars replace), and `PATCH` bodies follow RFC 7396
//! (a `null` removes a key). Whatever is stored has passed `Settings` deserialisation, so renderers
//! never see an invalid value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::text::{
    DialPattern, DialString, FileName, Host, HttpUrl, LoadName, ParamName, ParamValue, ShortText,
};
use super::{FieldError, Model, TimeZone};

macro_rules! ranged_int {
    ($(#[$doc:meta])* $name:ident($int:ty), $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
        pub struct $name(pub $int);

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .minimum(Some($min as i64))
                    .maximum(Some($max as i64))
                    .into()
            }
        }
        impl ToSchema for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = i64::deserialize(d)?;
                if ($min..=$max).contains(&v) {
                    Ok(Self(v as $int))
                } else {
                    Err(serde::de::Error::custom(format!("must be between {} and {}", $min, $max)))
                }
            }
        }
    };
}

ranged_int!(
    /// A TCP/UDP port, 1 to 65535.
    Port(u16), 1, 65535
);
ranged_int!(
    /// SIP registration expiry in seconds, 60 to 3932100 (the 7940/7960 limit).
    RegisterExpires(u32), 60, 3_932_100
);
ranged_int!(
    /// Seconds a phone waits after a dial-plan match, 0 to 60.
    DialTimeout(u8), 0, 60
);
ranged_int!(
    /// Start of the RTP port range, 1024 to 65534.
    MediaPort(u16), 1024, 65534
);

/// SIP transport.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (the default).
    Udp,
    /// TCP.
    Tcp,
    /// TLS (79x1 and later only; 7940/7960 fall back to UDP).
    Tls,
}

/// Preferred voice codec.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// G.711 µ-law.
    G711ulaw,
    /// G.711 A-law.
    G711alaw,
    /// G.729a.
    G729a,
}

/// Date display order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, ToSchema)]
pub enum DateFormat {
    /// Month/day/year.
    #[serde(rename = "M/D/Y")]
    Mdy,
    /// Day/month/year.
    #[serde(rename = "D/M/Y")]
    Dmy,
    /// Year/month/day.
    #[serde(rename = "Y/M/D")]
    Ymd,
}

/// SIP registrar, proxies, transport and NAT.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SipSettings {
    /// Registrar / proxy host for every line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "sip.acme.example")]
    pub registrar: Option<Host>,
    /// Registrar port (default 5060).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Transport (default udp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Backup proxy host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub backup_proxy: Option<Host>,
    /// Backup proxy port (default 5060).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_proxy_port: Option<Port>,
    /// Outbound proxy host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub outbound_proxy: Option<Host>,
    /// Outbound proxy port (default 5060).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_proxy_port: Option<Port>,
    /// Registration expiry in seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_expires: Option<RegisterExpires>,
    /// Whether the phone applies NAT traversal (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_enabled: Option<bool>,
    /// Public (WAN) address for NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub nat_address: Option<Host>,
    /// Preferred codec (default g711ulaw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_codec: Option<Codec>,
    /// First RTP port (default 16384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_media_port: Option<MediaPort>,
    /// Last RTP port (default 32766).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_media_port: Option<MediaPort>,
}

/// Clock, time zone and date display.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeSettings {
    /// NTP (SNTP) server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "ntp.acme.example")]
    pub ntp_server: Option<Host>,
    /// IANA time zone (default UTC); the DST rule follows from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "Europe/London")]
    pub time_zone: Option<TimeZone>,
    /// Whether the phone applies daylight saving time (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_auto_adjust: Option<bool>,
    /// Date display order (default D/M/Y).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<DateFormat>,
    /// 24-hour clock (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format_24h: Option<bool>,
}

/// One dial-plan rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DialRule {
    /// Pattern: digits, `.` any one digit, `*` and `#`, `X`, `T`.
    #[serde(rename = "match")]
    #[schema(value_type = String, example = "9.")]
    pub pattern: DialPattern,
    /// Seconds to wait after the pattern matches.
    pub timeout: DialTimeout,
}

/// One ring tone offered in the phone's ring list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RingTone {
    /// Name shown on the phone.
    #[schema(value_type = String, example = "Old Style")]
    pub name: ShortText,
    /// Stored audio file (`.pcm`/`.raw`).
    #[schema(value_type = String, example = "ringer1.pcm")]
    pub file: FileName,
}

/// Firmware loads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirmwareSettings {
    /// The image named in `OS79XX.TXT` (7940/7960 SIP image, e.g. `P0S3-8-12-00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "P0S3-8-12-00")]
    pub os79xx: Option<LoadName>,
    /// Load per model (`{"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub loads: Option<BTreeMap<Model, LoadName>>,
}

/// Service URLs shown on the phone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlSettings {
    /// Directory URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub directory: Option<HttpUrl>,
    /// Services URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub services: Option<HttpUrl>,
    /// Logo (7940/7960 BMP) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub logo: Option<HttpUrl>,
}

/// Raw parameters added to rendered files, for what the typed settings do not cover.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraParams {
    /// Extra `name: "value"` lines for 7940/7960 `.cnf` files (overrides what dialtone renders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub sip_cnf: Option<BTreeMap<ParamName, ParamValue>>,
    /// Extra `<name>value</name>` elements inside `<vendorConfig>` of `SEP<MAC>.cnf.xml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub vendor_config: Option<BTreeMap<ParamName, ParamValue>>,
}

/// Typed settings of a tenant or a phone. Every field is optional; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// SIP registrar, proxies and NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<SipSettings>,
    /// Time and date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSettings>,
    /// Number dialled by the Messages key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "*97")]
    pub voicemail_number: Option<DialString>,
    /// Dial plan (rendered as `dialplan.xml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_plan: Option<Vec<DialRule>>,
    /// Ring tones (rendered as `RINGLIST.DAT` / `RINGLIST.XML`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_list: Option<Vec<RingTone>>,
    /// Firmware loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareSettings>,
    /// Directory, services and logo URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<UrlSettings>,
    /// Raw extra parameters per file format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<ExtraParams>,
}

impl Settings {
    /// Parses settings from JSON, reporting the path of the first bad value.
    pub fn from_json(value: serde_json::Value) -> Result<Settings, FieldError> {
        serde_path_to_error::deserialize(value).map_err(|e| FieldError {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }

    /// The settings as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// `self` with `over` laid on top (deep merge; `over` wins).
    pub fn layered(&self, over: &Settings) -> Settings {
        let mut base = self.to_json();
        deep_merge(&mut base, &over.to_json());
        // Both sides are valid settings, and merging valid objects key by key keeps them valid.
        Settings::from_json(base).unwrap_or_else(|_| over.clone())
    }

    /// Whether no setting is set at all (a phone without overrides).
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }

    /// Applies an RFC 7396 merge patch and parses the result.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Settings, FieldError> {
        let mut doc = self.to_json();
        merge_patch(&mut doc, patch);
        Settings::from_json(doc)
    }

    /// Checks constraints that span fields or depend on the phone model.
    pub fn check(&self, model: Option<Model>) -> Result<(), FieldError> {
        if let Some(sip) = &self.sip {
            if let (Some(s), Some(e)) = (sip.start_media_port, sip.end_media_port) {
                if s.0 >= e.0 {
                    return Err(FieldError {
                        path: "sip.end_media_port".into(),
                        message: "must be greater than sip.start_media_port".into(),
                    });
                }
            }
        }
        if let (Some(model), Some(loads)) =
            (model, self.firmware.as_ref().and_then(|f| f.loads.as_ref()))
        {
            // A phone's override may only pin a load for its own model.
            if let Some(other) = loads.keys().find(|m| **m != model) {
                return Err(FieldError {
                    path: format!("firmware.loads.{other}"),
                    message: format!("this phone is a {model}; a phone override may pin only its own model's load"),
                });
            }
        }
        if let Some(rules) = &self.dial_plan {
            if rules.len() > 100 {
                return Err(FieldError {
                    path: "dial_plan".into(),
                    message: "at most 100 rules".into(),
                });
            }
        }
        if let Some(rings) = &self.ring_list {
            if rings.len() > 32 {
                return Err(FieldError {
                    path: "ring_list".into(),
                    message: "at most 32 ring tones".into(),
                });
            }
        }
        Ok(())
    }
}

/// Deep merge: objects merge recursively, anything else in `over` replaces `base`. Nulls in `over` are kept
/// out (a layer's absent value never erases a lower layer's).
pub fn deep_merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    use serde_json::Value;
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_example() -> serde_json::Value {
        json!({"sip": {"registrar": "sip.acme.example", "port": 5060, "transport": "udp"},
               "time": {"ntp_server": "ntp.acme.example", "time_zone": "Europe/London"},
               "voicemail_number": "*97",
               "dial_plan": [{"match": "9.", "timeout": 3}],
               "ring_list": [{"name": "Old Style", "file": "ringer1.pcm"}],
               "firmware": {"os79xx": "P0S3-8-12-00",
                            "loads": {"7960": "P0S3-8-12-00", "7942": "SIP42.9-4-2SR3-1S"}}})
    }

    #[test]
    fn the_spec_example_round_trips() {
        let s = Settings::from_json(spec_example()).unwrap();
        assert_eq!(s.to_json(), spec_example());
    }

    #[test]
    fn bad_values_name_their_path() {
        let cases = [
            (json!({"sip": {"port": 0}}), "sip.port"),
            (json!({"sip": {"port": 70000}}), "sip.port"),
            (json!({"sip": {"transport": "sctp"}}), "sip.transport"),
            (json!({"sip": {"registrar": "bad host"}}), "sip.registrar"),
            (json!({"sip": {"regstrar": "x"}}), "sip"),
            (
                json!({"time": {"time_zone": "Mars/Base"}}),
                "time.time_zone",
            ),
            (
                json!({"dial_plan": [{"match": "9.", "timeout": 99}]}),
                "dial_plan[0].timeout",
            ),
            (
                json!({"firmware": {"loads": {"7950": "X"}}}),
                "firmware.loads",
            ),
            (json!({"voicemail_number": "voicemail"}), "voicemail_number"),
        ];
        for (value, path) in cases {
            let err = Settings::from_json(value.clone()).unwrap_err();
            assert!(
                err.path.starts_with(path),
                "{value}: got path {} ({})",
                err.path,
                err.message
            );
        }
    }

    #[test]
    fn patch_merges_deeply_and_null_removes() {
        let s = Settings::from_json(spec_example()).unwrap();
        let p = s
            .patched(&json!({"sip": {"registrar": "sip2.acme.example", "port": null}, "voicemail_number": null}))
            .unwrap();
        let sip = p.sip.as_ref().unwrap();
        assert_eq!(
            sip.registrar.as_ref().unwrap().as_str(),
            "sip2.acme.example"
        );
        assert!(sip.port.is_none());
        assert_eq!(sip.transport, Some(Transport::Udp));
        assert!(p.voicemail_number.is_none());
        assert!(p.time.is_some());
    }

    #[test]
    fn layers_override_key_by_key() {
        let tenant = Settings::from_json(spec_example()).unwrap();
        let phone = Settings::from_json(json!({"sip": {"port": 5080}})).unwrap();
        let eff = tenant.layered(&phone);
        assert_eq!(eff.sip.as_ref().unwrap().port, Some(Port(5080)));
        assert_eq!(
            eff.sip
                .as_ref()
                .unwrap()
                .registrar
                .as_ref()
                .unwrap()
                .as_str(),
            "sip.acme.example"
        );
    }

    #[test]
    fn model_checks() {
        let s = Settings::from_json(json!({"firmware": {"loads": {"7942": "SIP42.9-4-2SR3-1S"}}}))
            .unwrap();
        assert!(s.check(Some(Model::M7942)).is_ok());
        assert_eq!(
            s.check(Some(Model::M7960)).unwrap_err().path,
            "firmware.loads.7942"
        );
        let s = Settings::from_json(
            json!({"sip": {"start_media_port": 20000, "end_media_port": 10000}}),
        )
        .unwrap();
        assert!(s.check(None).is_err());
    }
}
