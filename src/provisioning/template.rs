//! Per-tenant template overrides: the variables a template is given, how its output is finished
//! (`version_stamp`, "nothing to serve", validity) and the checks run before an override is saved.
//!
//! A tenant's override for a [`TemplateId`] replaces the built-in renderer of that file for every phone of
//! the tenant. The variables (see the README, "Template overrides"):
//!
//! * `tenant`: `slug`.
//! * `settings`: the effective settings with every default applied (per-device files: the phone's own
//!   settings layered over the tenant's): `sip`, `time`, `voicemail_number`, `dial_plan`, `ring_list`,
//!   `firmware`, `urls`, `extra` (see [`SettingsCtx`]).
//! * `models`: every supported model in catalogue order with its `load` for this tenant.
//! * per-device files: `phone` (`mac`, `model`, `model_name`, `device_type`, `family`, `line_keys`,
//!   `max_label_len`, `label`, `enabled`, `lines` with `position`, `number`, `auth_name`, `password`,
//!   `display_name`, `short_label`) and `load` (this model's load, or none).
//! * `SIPDefault.cnf` and `syncinfo.xml`: `sync`, the tenant's 7940/7960 sync value.
//! * every file: `version_stamp`, replaced after rendering by the first 8 hex digits of the SHA-256 of the
//!   rendered file without it (so it changes exactly when the file's content does).
//!
//! The output must be a valid file of its kind (`.cnf`: `name: value` lines; XML: well-formed; `OS79XX.TXT`:
//! one token; `RINGLIST.DAT`: `name<TAB>file` lines). For `SEPMAC-loader.cnf.xml`, `RINGLIST.DAT`,
//! `RINGLIST.XML` and `OS79XX.TXT` an output of only whitespace means "nothing to serve", as the built-in
//! renderer answers when nothing is configured. When an override fails at serve time (data changed since
//! it was saved so that it no longer renders a valid file), the phone gets the built-in file instead:
//! a phone never gets a broken file.

use std::collections::BTreeMap;

use minijinja::value::Serde;
use minijinja::Value;
use serde::Serialize;

use crate::domain::settings::Transport;
use crate::domain::{Family, MacAddress, Model};
use crate::snapshot::{CompiledTemplate, LineView, PhoneView, Snapshot, TemplateId, TenantView};

use super::render::{dialplan, digest, sip79xx, stamp_hex, xml_device};
use super::resolve::Resolved;
use super::validate::{check_kind, CnfValues};
use super::FileKind;

/// What `{{ version_stamp }}` prints while rendering; replaced by the stamp afterwards.
const VERSION_STAMP_MARK: &str = "dialtoneVersionStampMark7f3a9c";

/// The most problems [`check_template`] reports.
pub const MAX_PROBLEMS: usize = 10;

/// `settings.sip`.
#[derive(Serialize)]
struct SipCtx<'a> {
    registrar: Option<&'a str>,
    port: u16,
    transport: &'static str,
    /// `transportLayerProtocol` of the XML device file: 1 TCP, 2 UDP, 3 TLS.
    transport_code: &'static str,
    backup_proxy: Option<&'a str>,
    backup_proxy_port: u16,
    outbound_proxy: Option<&'a str>,
    outbound_proxy_port: u16,
    register_expires: u32,
    nat_enabled: bool,
    nat_address: Option<&'a str>,
    preferred_codec: &'static str,
    start_media_port: u16,
    end_media_port: u16,
}

#[derive(Serialize)]
struct ZoneCtx {
    iana: &'static str,
    cisco_xml: &'static str,
    cisco_cnf: &'static str,
    utc_offset_minutes: i32,
}

/// The 7940/7960 `dst_*` values of the zone's rule (none without DST or with `dst_auto_adjust` off).
#[derive(Serialize)]
struct DstCtx {
    start_month: &'static str,
    start_week_of_month: u8,
    start_day_of_week: &'static str,
    start_time: String,
    stop_month: &'static str,
    stop_week_of_month: u8,
    stop_day_of_week: &'static str,
    stop_time: String,
}

#[derive(Serialize)]
struct TimeCtx<'a> {
    ntp_server: Option<&'a str>,
    time_zone: ZoneCtx,
    dst_auto_adjust: bool,
    dst: Option<DstCtx>,
    /// `D/M/Y`, `M/D/Y` or `Y/M/D`.
    date_format: &'static str,
    time_24h: bool,
    /// `dateTemplate` of the XML device file (`D/M/Y`, with `A` appended for a 12-hour clock).
    date_template: String,
}

#[derive(Serialize)]
struct RuleCtx<'a> {
    /// As configured (`9.`, `1XXXT`).
    pattern: &'a str,
    /// In Cisco dial-template syntax (`X` → `.`, `T` dropped).
    cisco_pattern: String,
    timeout: u8,
}

#[derive(Serialize)]
struct RingCtx<'a> {
    name: &'a str,
    file: &'a str,
}

#[derive(Serialize)]
struct FirmwareCtx<'a> {
    os79xx: Option<&'a str>,
    loads: BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
struct UrlsCtx<'a> {
    directory: Option<&'a str>,
    services: Option<&'a str>,
    logo: Option<&'a str>,
}

#[derive(Serialize)]
struct ExtraCtx<'a> {
    sip_cnf: &'a BTreeMap<String, String>,
    vendor_config: &'a BTreeMap<String, String>,
}

/// `settings`: the resolved settings.
#[derive(Serialize)]
pub struct SettingsCtx<'a> {
    sip: SipCtx<'a>,
    time: TimeCtx<'a>,
    voicemail_number: Option<&'a str>,
    dial_plan: Vec<RuleCtx<'a>>,
    ring_list: Vec<RingCtx<'a>>,
    firmware: FirmwareCtx<'a>,
    urls: UrlsCtx<'a>,
    extra: ExtraCtx<'a>,
}

impl<'a> SettingsCtx<'a> {
    /// The template view of resolved settings.
    pub fn new(r: &'a Resolved) -> SettingsCtx<'a> {
        let dst = if r.dst_auto_adjust {
            sip79xx::dst_params(r.zone.dst, r.zone.utc_offset_minutes)
        } else {
            None
        };
        SettingsCtx {
            sip: SipCtx {
                registrar: r.registrar.as_deref(),
                port: r.sip_port,
                transport: match r.transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                    Transport::Tls => "tls",
                },
                transport_code: match r.transport {
                    Transport::Tcp => "1",
                    Transport::Udp => "2",
                    Transport::Tls => "3",
                },
                backup_proxy: r.backup_proxy.as_deref(),
                backup_proxy_port: r.backup_proxy_port,
                outbound_proxy: r.outbound_proxy.as_deref(),
                outbound_proxy_port: r.outbound_proxy_port,
                register_expires: r.register_expires,
                nat_enabled: r.nat_enabled,
                nat_address: r.nat_address.as_deref(),
                preferred_codec: sip79xx::codec_name(r.preferred_codec),
                start_media_port: r.start_media_port,
                end_media_port: r.end_media_port,
            },
            time: TimeCtx {
                ntp_server: r.ntp_server.as_deref(),
                time_zone: ZoneCtx {
                    iana: r.zone.iana,
                    cisco_xml: r.zone.cisco_xml,
                    cisco_cnf: r.zone.cisco_cnf,
                    utc_offset_minutes: r.zone.utc_offset_minutes,
                },
                dst_auto_adjust: r.dst_auto_adjust,
                dst: dst.map(
                    |(start_month, start_week, stop_month, stop_week, start_h, stop_h)| DstCtx {
                        start_month,
                        start_week_of_month: start_week,
                        start_day_of_week: "Sunday",
                        start_time: format!("{start_h:02}"),
                        stop_month,
                        stop_week_of_month: stop_week,
                        stop_day_of_week: "Sunday",
                        stop_time: format!("{stop_h:02}"),
                    },
                ),
                date_format: sip79xx::date_format(r.date_format),
                time_24h: r.time_24h,
                date_template: xml_device::date_template(r),
            },
            voicemail_number: r.voicemail_number.as_deref(),
            dial_plan: r
                .dial_plan
                .iter()
                .map(|rule| RuleCtx {
                    pattern: rule.pattern.as_str(),
                    cisco_pattern: dialplan::cisco_pattern(rule.pattern.as_str()),
                    timeout: rule.timeout.0,
                })
                .collect(),
            ring_list: r
                .ring_list
                .iter()
                .map(|ring| RingCtx {
                    name: ring.name.as_str().trim(),
                    file: ring.file.as_str(),
                })
                .collect(),
            firmware: FirmwareCtx {
                os79xx: r.os79xx.as_deref(),
                loads: r
                    .loads
                    .iter()
                    .map(|(m, l)| (m.as_str(), l.as_str()))
                    .collect(),
            },
            urls: UrlsCtx {
                directory: r.directory_url.as_deref(),
                services: r.services_url.as_deref(),
                logo: r.logo_url.as_deref(),
            },
            extra: ExtraCtx {
                sip_cnf: &r.extra_sip_cnf,
                vendor_config: &r.extra_vendor_config,
            },
        }
    }
}

#[derive(Serialize)]
struct ModelCtx<'a> {
    model: &'static str,
    name: &'static str,
    device_type: u32,
    family: &'static str,
    line_keys: usize,
    load: Option<&'a str>,
}

#[derive(Serialize)]
struct LineCtx<'a> {
    position: usize,
    number: &'a str,
    auth_name: &'a str,
    password: &'a str,
    display_name: Option<&'a str>,
    short_label: Option<&'a str>,
}

#[derive(Serialize)]
struct PhoneCtx<'a> {
    mac: String,
    model: &'static str,
    model_name: &'static str,
    device_type: u32,
    family: &'static str,
    line_keys: usize,
    max_label_len: usize,
    label: &'a str,
    enabled: bool,
    lines: Vec<LineCtx<'a>>,
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Sip79xx => "7940/7960",
        Family::Sip79x1 => "79x1",
        Family::Sip89xx99xx => "89xx/99xx",
    }
}

fn models_value(r: &Resolved) -> Value {
    let models: Vec<ModelCtx> = Model::ALL
        .iter()
        .map(|m| ModelCtx {
            model: m.as_str(),
            name: m.display_name(),
            device_type: m.device_type(),
            family: family_name(m.family()),
            line_keys: m.line_keys(),
            load: r.load_for(*m),
        })
        .collect();
    Value::from(Serde(&models))
}

/// The part of the variables shared by every file of one tenant, built once (a save renders thousands
/// of phones with it).
pub struct TenantContext {
    tenant: Value,
    settings: Value,
    models: Value,
}

impl TenantContext {
    /// The shared variables of tenant `t` whose tenant-level settings are `r`.
    pub fn new(t: &TenantView, r: &Resolved) -> TenantContext {
        TenantContext {
            tenant: minijinja::context! { slug => t.slug.as_str() },
            settings: Value::from(Serde(SettingsCtx::new(r))),
            models: models_value(r),
        }
    }
}

/// The `FileKind` whose validity rules apply to a template's output.
pub fn file_kind(id: TemplateId) -> FileKind {
    match id {
        TemplateId::SipDefaultCnf => FileKind::SipDefaultCnf,
        TemplateId::SipDeviceCnf => FileKind::SipDeviceCnf,
        TemplateId::SepDeviceXml | TemplateId::SepLoaderXml => FileKind::SepDeviceXml,
        TemplateId::XmlDefault => FileKind::XmlDefault,
        TemplateId::DialPlan => FileKind::DialPlan,
        TemplateId::RingListDat => FileKind::RingListDat,
        TemplateId::RingListXml => FileKind::RingListXml,
        TemplateId::SyncInfo => FileKind::SyncInfo,
        TemplateId::Os79xxTxt => FileKind::Os79xxTxt,
    }
}

/// The template id of a tenant-wide kind.
pub fn tenant_wide_id(kind: FileKind) -> Option<TemplateId> {
    Some(match kind {
        FileKind::SipDefaultCnf => TemplateId::SipDefaultCnf,
        FileKind::XmlDefault => TemplateId::XmlDefault,
        FileKind::DialPlan => TemplateId::DialPlan,
        FileKind::RingListDat => TemplateId::RingListDat,
        FileKind::RingListXml | FileKind::DistinctiveRingListXml => TemplateId::RingListXml,
        FileKind::SyncInfo => TemplateId::SyncInfo,
        FileKind::Os79xxTxt => TemplateId::Os79xxTxt,
        FileKind::SipDeviceCnf | FileKind::SepDeviceXml | FileKind::Stored => return None,
    })
}

/// The per-device template a phone of `model` uses for `kind` (`None`: the family has no such file).
pub fn device_id(kind: FileKind, model: Model) -> Option<TemplateId> {
    match (kind, model.family()) {
        (FileKind::SipDeviceCnf, Family::Sip79xx) => Some(TemplateId::SipDeviceCnf),
        (FileKind::SepDeviceXml, Family::Sip79xx) => Some(TemplateId::SepLoaderXml),
        (FileKind::SepDeviceXml, _) => Some(TemplateId::SepDeviceXml),
        _ => None,
    }
}

/// Whether a phone of `model` is served the per-device template `id`.
pub fn applies_to(id: TemplateId, model: Model) -> bool {
    match id {
        TemplateId::SipDeviceCnf | TemplateId::SepLoaderXml => model.family() == Family::Sip79xx,
        TemplateId::SepDeviceXml => model.family() != Family::Sip79xx,
        _ => false,
    }
}

/// Stamps, decides "nothing to serve", and checks the output.
fn finish(id: TemplateId, mut out: String) -> Result<Option<String>, String> {
    if out.contains(VERSION_STAMP_MARK) {
        let without = out.replace(VERSION_STAMP_MARK, "");
        let stamp = stamp_hex(&digest(&[without.as_bytes()]));
        out = out.replace(VERSION_STAMP_MARK, &stamp);
    }
    if id.may_be_absent() && out.trim().is_empty() {
        return Ok(None);
    }
    check_kind(file_kind(id), &out, CnfValues::QuotedOrBare)?;
    Ok(Some(out))
}

/// Renders a tenant-wide override; `Ok(None)`: nothing to serve.
pub fn render_tenant(
    tpl: &CompiledTemplate,
    cx: &TenantContext,
    sync: Option<&str>,
) -> Result<Option<String>, String> {
    let ctx = minijinja::context! {
        tenant => cx.tenant.clone(),
        settings => cx.settings.clone(),
        models => cx.models.clone(),
        sync => sync,
        version_stamp => VERSION_STAMP_MARK,
    };
    finish(tpl.id(), tpl.render(ctx)?)
}

/// Renders a per-device override for `phone`, whose effective settings are `r`; `Ok(None)`: nothing to
/// serve.
pub fn render_device(
    tpl: &CompiledTemplate,
    cx: &TenantContext,
    phone: &PhoneView,
    r: &Resolved,
) -> Result<Option<String>, String> {
    let settings = if phone.settings.is_empty() {
        cx.settings.clone()
    } else {
        Value::from(Serde(SettingsCtx::new(r)))
    };
    let phone_ctx = PhoneCtx {
        mac: phone.mac.to_string(),
        model: phone.model.as_str(),
        model_name: phone.model.display_name(),
        device_type: phone.model.device_type(),
        family: family_name(phone.model.family()),
        line_keys: phone.model.line_keys(),
        max_label_len: phone.model.max_label_len(),
        label: &phone.label,
        enabled: phone.enabled,
        lines: phone
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| LineCtx {
                position: i + 1,
                number: &l.number,
                auth_name: &l.auth_name,
                password: &l.password,
                display_name: l.display_name.as_deref(),
                short_label: l.short_label.as_deref(),
            })
            .collect(),
    };
    let ctx = minijinja::context! {
        tenant => cx.tenant.clone(),
        settings => settings,
        models => cx.models.clone(),
        phone => Value::from(Serde(&phone_ctx)),
        load => r.load_for(phone.model),
        version_stamp => VERSION_STAMP_MARK,
    };
    finish(tpl.id(), tpl.render(ctx)?)
}

/// One reason an override cannot be saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateProblem {
    /// `template` (the template itself or a tenant-wide render), `phones[MAC]`, or `sample phone`.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// A phone used to try a per-device template on a tenant that has no phone it applies to.
fn sample_phone(tenant: usize, id: TemplateId) -> PhoneView {
    PhoneView {
        tenant,
        mac: MacAddress::from_octets([0x00, 0x04, 0xf2, 0x00, 0x00, 0x01]),
        model: if id == TemplateId::SepDeviceXml {
            Model::M7942
        } else {
            Model::M7960
        },
        label: "Sample".into(),
        enabled: true,
        lines: vec![LineView {
            number: "1001".into(),
            auth_name: "1001".into(),
            password: "sample-password".into(),
            display_name: Some("Sample".into()),
            short_label: None,
        }],
        settings: Default::default(),
        input_digest: Default::default(),
    }
}

/// Renders candidate override `tpl` for everything of `tenant` it would be used for: once for a
/// tenant-wide file, for every phone (enabled or not) it applies to for a per-device file (a sample
/// phone when there is none). Returns at most `limit` problems, in MAC order; empty means it may be
/// saved. Pure and CPU-bound: the tenant context is built once, the template is compiled once.
pub fn check_template(
    snap: &Snapshot,
    tenant: usize,
    tpl: &CompiledTemplate,
    limit: usize,
) -> Vec<TemplateProblem> {
    let t = snap.tenant(tenant);
    let tr = Resolved::tenant(t);
    let cx = TenantContext::new(t, &tr);
    let id = tpl.id();
    let mut problems = Vec::new();
    if !id.per_device() {
        let sync = needs_sync(id).then(|| super::sync_value(snap, tenant, &tr));
        if let Err(message) = render_tenant(tpl, &cx, sync.as_deref()) {
            problems.push(TemplateProblem {
                path: "template".into(),
                message,
            });
        }
        return problems;
    }
    let mut rendered = 0usize;
    for mac in snap.phones_of(tenant).iter() {
        let Some(phone) = snap.phone(*mac) else {
            continue;
        };
        if !applies_to(id, phone.model) {
            continue;
        }
        let r = Resolved::device(t, phone);
        if id == TemplateId::SepLoaderXml && r.load_for(phone.model).is_none() {
            continue;
        }
        rendered += 1;
        if let Err(message) = render_device(tpl, &cx, phone, &r) {
            problems.push(TemplateProblem {
                path: format!("phones[{mac}]"),
                message,
            });
            if problems.len() >= limit {
                break;
            }
        }
    }
    if rendered == 0 {
        let phone = sample_phone(tenant, id);
        let r = Resolved::device(t, &phone);
        if id != TemplateId::SepLoaderXml || r.load_for(phone.model).is_some() {
            if let Err(message) = render_device(tpl, &cx, &phone, &r) {
                problems.push(TemplateProblem {
                    path: "sample phone".into(),
                    message,
                });
            }
        }
    }
    problems
}

/// Whether a tenant-wide template is given `sync`.
pub fn needs_sync(id: TemplateId) -> bool {
    matches!(id, TemplateId::SipDefaultCnf | TemplateId::SyncInfo)
}

/// Why a candidate override cannot be previewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviewError {
    /// A per-device template needs `mac`.
    MacRequired,
    /// No such phone in the tenant.
    NoSuchPhone,
    /// The phone's model does not use this file (or, for the loader, its model has no load).
    NotUsed(&'static str),
    /// The template fails or renders an invalid file.
    Render(String),
}

/// What phone `mac` (per-device templates) or any phone of `tenant` (tenant-wide) would get if candidate
/// `tpl` were saved; `Ok(None)`: it renders nothing to serve. `sync` is the current value.
pub fn preview_template(
    snap: &Snapshot,
    tenant: usize,
    tpl: &CompiledTemplate,
    mac: Option<MacAddress>,
) -> Result<Option<String>, PreviewError> {
    let t = snap.tenant(tenant);
    let tr = Resolved::tenant(t);
    let cx = TenantContext::new(t, &tr);
    let id = tpl.id();
    if !id.per_device() {
        let sync = needs_sync(id).then(|| super::sync_value(snap, tenant, &tr));
        return render_tenant(tpl, &cx, sync.as_deref()).map_err(PreviewError::Render);
    }
    let mac = mac.ok_or(PreviewError::MacRequired)?;
    let phone = snap
        .phone(mac)
        .filter(|p| p.tenant == tenant)
        .ok_or(PreviewError::NoSuchPhone)?;
    if !applies_to(id, phone.model) {
        return Err(PreviewError::NotUsed(
            "this phone's model does not use this file",
        ));
    }
    let r = Resolved::device(t, phone);
    if id == TemplateId::SepLoaderXml && r.load_for(phone.model).is_none() {
        return Err(PreviewError::NotUsed(
            "this phone's model has no load: it gets no loader file",
        ));
    }
    render_device(tpl, &cx, phone, &r).map_err(PreviewError::Render)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::provisioning::test_support::{
        acme_settings, line, mac, net, phone, tenant, ACME_SOURCE,
    };
    use crate::provisioning::{provision, Miss};
    use crate::snapshot::Templates;

    const M1: &str = "0004F2000001";
    const M2: &str = "0004F2000002";
    const M3: &str = "0004F2000003";

    fn compile(id: TemplateId, src: &str) -> Arc<CompiledTemplate> {
        Arc::new(CompiledTemplate::compile(id, src).unwrap())
    }

    /// Tenant `acme` (two 7960s, one 7942) with `templates`, tenant `beta` (one 7960) without.
    fn snap(templates: &[(TemplateId, &str)]) -> Snapshot {
        let mut acme = tenant("acme", acme_settings());
        let mut set = Templates::default();
        for (id, src) in templates {
            set.insert(compile(*id, src));
        }
        acme.templates = set;
        let beta = tenant("beta", serde_json::json!({}));
        Snapshot::build(
            1,
            vec![acme, beta],
            vec![(net("10.1.0.0/16"), 0), (net("10.2.0.0/16"), 1)],
            vec![
                phone(
                    0,
                    M1,
                    Model::M7960,
                    "Desk \"1\"",
                    vec![line("1001", Some("Alice"), None)],
                ),
                phone(
                    0,
                    M2,
                    Model::M7960,
                    "Desk 2",
                    vec![line("1002", None, None)],
                ),
                phone(
                    0,
                    M3,
                    Model::M7942,
                    "Desk 3",
                    vec![line("1003", Some("Bob <b>"), None)],
                ),
                phone(
                    1,
                    "0004F2BBBBBB",
                    Model::M7960,
                    "Beta",
                    vec![line("5001", None, None)],
                ),
            ],
            vec![],
        )
    }

    fn get(s: &Snapshot, src: &str, name: &str) -> Result<String, Miss> {
        provision(s, src.parse().unwrap(), name)
            .map(|f| String::from_utf8(f.bytes.to_vec()).unwrap())
    }

    const CNF: &str = "phone_label: \"{{ phone.label }}\"\n{% for l in phone.lines %}\nline{{ l.position }}_name: \"{{ l.number }}\"\nline{{ l.position }}_password: \"{{ l.password }}\"\n{% endfor %}\nproxy1_address: {{ settings.sip.registrar }}\nimage_version: \"{{ load }}\"\n";

    #[test]
    fn an_override_replaces_the_built_in_for_its_tenant_only() {
        let plain = snap(&[]);
        let with = snap(&[(TemplateId::SipDeviceCnf, CNF)]);
        let name = format!("SIP{M1}.cnf");
        assert_eq!(
            get(&with, ACME_SOURCE, &name).unwrap(),
            "phone_label: \"Desk 1\"\nline1_name: \"1001\"\nline1_password: \"pw-1001\"\nproxy1_address: sip.acme.example\nimage_version: \"P0S3-8-12-00\"\n"
        );
        assert_ne!(
            get(&plain, ACME_SOURCE, &name),
            get(&with, ACME_SOURCE, &name)
        );
        // Other files and other tenants keep the built-in renderer.
        for (src, n) in [
            (ACME_SOURCE, format!("SEP{M3}.cnf.xml")),
            (ACME_SOURCE, "SIPDefault.cnf".to_owned()),
            ("10.2.0.1", "SIP0004F2BBBBBB.cnf".to_owned()),
        ] {
            if n == "SIPDefault.cnf" {
                // `sync` covers what 7940/7960 phones are served, overrides included.
                assert_ne!(get(&plain, src, &n), get(&with, src, &n));
            } else {
                assert_eq!(get(&plain, src, &n), get(&with, src, &n), "{n}");
            }
        }
    }

    #[test]
    fn version_stamp_is_the_hash_of_the_file_without_it() {
        let tpl = "<device>\n  <label>{{ phone.lines[0].display_name }}</label>\n  <versionStamp>{{ version_stamp }}</versionStamp>\n</device>\n";
        let s = snap(&[(TemplateId::SepDeviceXml, tpl)]);
        let out = get(&s, ACME_SOURCE, &format!("SEP{M3}.cnf.xml")).unwrap();
        let without = "<device>\n  <label>Bob &lt;b&gt;</label>\n  <versionStamp></versionStamp>\n</device>\n";
        let stamp = stamp_hex(&digest(&[without.as_bytes()]));
        assert_eq!(
            out,
            without.replace("<versionStamp></", &format!("<versionStamp>{stamp}</"))
        );
        assert!(out.contains(&format!("<versionStamp>{stamp}</versionStamp>")));
    }

    #[test]
    fn tenant_wide_overrides_and_nothing_to_serve() {
        let s = snap(&[
            (TemplateId::DialPlan, "<DIALTEMPLATE>\n{% for r in settings.dial_plan %}\n  <TEMPLATE MATCH=\"{{ r.cisco_pattern }}\" Timeout=\"{{ r.timeout }}\"/>\n{% endfor %}\n</DIALTEMPLATE>\n"),
            (TemplateId::RingListDat, "  \n"),
            (TemplateId::SyncInfo, "<SYNCINFO><IMAGE VERSION=\"*\" SYNC=\"{{ sync }}\"/></SYNCINFO>\n"),
            (TemplateId::XmlDefault, "<Default>\n{% for m in models if m.load %}\n<loadInformation{{ m.device_type }} model=\"{{ m.name }}\">{{ m.load }}</loadInformation{{ m.device_type }}>\n{% endfor %}\n</Default>\n"),
        ]);
        let plain = snap(&[]);
        assert_eq!(
            get(&s, ACME_SOURCE, "dialplan.xml"),
            get(&plain, ACME_SOURCE, "dialplan.xml"),
            "this override reproduces the built-in dial plan"
        );
        assert_eq!(get(&s, ACME_SOURCE, "RINGLIST.DAT"), Err(Miss::KnownAbsent));
        let sync = get(&s, ACME_SOURCE, "SIPDefault.cnf").unwrap();
        let sync = sync
            .lines()
            .find_map(|l| l.strip_prefix("sync: "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        assert_eq!(
            get(&s, ACME_SOURCE, "syncinfo.xml").unwrap(),
            format!("<SYNCINFO><IMAGE VERSION=\"*\" SYNC=\"{sync}\"/></SYNCINFO>\n")
        );
        let x = get(&s, ACME_SOURCE, "XMLDefault.cnf.xml").unwrap();
        assert!(
            x.contains(
                "<loadInformation7 model=\"IP Phone 7960\">P0S3-8-12-00</loadInformation7>\n"
            ),
            "{x}"
        );
    }

    #[test]
    fn a_broken_override_falls_back_to_the_built_in_at_serve_time() {
        // Fine for phones with lines; an undefined attribute for a line-less one would fail.
        let s = snap(&[(
            TemplateId::SipDeviceCnf,
            "a: \"{{ phone.lines[0].nmber }}\"\n",
        )]);
        let plain = snap(&[]);
        let name = format!("SIP{M2}.cnf");
        assert_eq!(get(&s, ACME_SOURCE, &name), get(&plain, ACME_SOURCE, &name));
    }

    #[test]
    fn check_names_failing_phones_and_stops_at_the_limit() {
        let s = snap(&[]);
        let acme = s.tenant_by_slug("acme").unwrap();
        let ok = compile(TemplateId::SipDeviceCnf, CNF);
        assert!(check_template(&s, acme, &ok, MAX_PROBLEMS).is_empty());
        let bad = compile(TemplateId::SipDeviceCnf, "{{ phone.label }}\n");
        let problems = check_template(&s, acme, &bad, MAX_PROBLEMS);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, format!("phones[{M1}]"));
        assert!(
            problems[0].message.contains("not `name: value`"),
            "{problems:?}"
        );
        assert_eq!(check_template(&s, acme, &bad, 1).len(), 1);
        let xml = compile(TemplateId::SepDeviceXml, "<device><a></device>\n");
        let problems = check_template(&s, acme, &xml, MAX_PROBLEMS);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, format!("phones[{M3}]"));
        let tenant_wide = compile(TemplateId::DialPlan, "<a>{{ nothing }}</a>\n");
        let problems = check_template(&s, acme, &tenant_wide, MAX_PROBLEMS);
        assert_eq!(problems[0].path, "template");
        // beta has no 7942: a sample phone stands in.
        let beta = s.tenant_by_slug("beta").unwrap();
        assert_eq!(
            check_template(&s, beta, &xml, MAX_PROBLEMS)[0].path,
            "sample phone"
        );
    }

    #[test]
    fn the_readme_example_renders() {
        let readme = std::fs::read_to_string(
            crate::provisioning::test_support::source_root().join("README.md"),
        )
        .unwrap();
        let start = readme.find("cat > SIPMAC.cnf.j2 <<'TPL'\n").unwrap();
        let body = &readme[start..];
        let body = &body[body.find('\n').unwrap() + 1..body.find("TPL\n").unwrap()];
        let s = snap(&[(TemplateId::SipDeviceCnf, body)]);
        let out = get(&s, ACME_SOURCE, &format!("SIP{M1}.cnf")).unwrap();
        assert!(
            out.starts_with(
                "image_version: \"P0S3-8-12-00\"\nphone_label: \"Desk 1\"\nline1_name: \"1001\"\n"
            ),
            "{out}"
        );
        assert!(out.contains("line1_displayname: \"Alice\"\nproxy1_address: \"sip.acme.example\"\nproxy1_port: \"5060\"\n"), "{out}");
        let acme = s.tenant_by_slug("acme").unwrap();
        let tpl = compile(TemplateId::SipDeviceCnf, body);
        assert!(check_template(&s, acme, &tpl, MAX_PROBLEMS).is_empty());
    }

    #[test]
    fn preview_renders_an_unsaved_override() {
        let s = snap(&[]);
        let acme = s.tenant_by_slug("acme").unwrap();
        let tpl = compile(TemplateId::SipDeviceCnf, CNF);
        let out = preview_template(&s, acme, &tpl, Some(mac(M2)))
            .unwrap()
            .unwrap();
        assert!(out.starts_with("phone_label: \"Desk 2\"\n"));
        assert_eq!(
            preview_template(&s, acme, &tpl, None),
            Err(PreviewError::MacRequired)
        );
        assert!(matches!(
            preview_template(&s, acme, &tpl, Some(mac(M3))),
            Err(PreviewError::NotUsed(_))
        ));
        assert_eq!(
            preview_template(&s, acme, &tpl, Some(mac("0004F2BBBBBB"))),
            Err(PreviewError::NoSuchPhone)
        );
    }
}
