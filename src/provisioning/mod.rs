//! The pure provisioning core: (snapshot, source address, requested name) → bytes or a miss.
//!
//! No I/O, no clock, no async: the TFTP and HTTP :6970 front ends call [`provision`] on every request,
//! the REST API calls [`preview_device`] / [`preview_tenant`] to show exactly what a phone would get.
//!
//! # Pipeline (SPEC §5.1)
//!
//! 1. Source address → tenant by longest prefix match ([`Snapshot::tenant_for`]); none → [`Miss::UnknownSource`]
//!    (the wire stays silent).
//! 2. Name normalisation ([`name::normalise`]); refused → [`Miss::BadName`].
//! 3. Classification ([`name::classify`]). `CTLSEP<MAC>.tlv`, `ITLSEP<MAC>.tlv`, `ITLFile.tlv`, `*.sgn` →
//!    [`Miss::KnownAbsent`] at once (before the tenant's `enabled` flag is even looked at). A disabled tenant
//!    then gets [`Miss::TenantDisabled`] for everything.
//! 4. Per-device names (`SIP<MAC>.cnf`, `SEP<MAC>.cnf.xml`, `SEP<MAC>.cnf`): no such phone →
//!    [`Miss::UnknownDevice`] (feeds "discovered devices"); the phone belongs to another tenant →
//!    [`Miss::OtherTenantsDevice`] (the front end must answer exactly as for [`Miss::NotFound`] and log a
//!    security event); disabled → [`Miss::DeviceDisabled`]; a name its family does not use (`SIP<MAC>.cnf`
//!    for a 7942, `SEP<MAC>.cnf`) → [`Miss::NotFound`].
//! 5. Tenant-wide names: the canonical spelling is rendered; otherwise a stored file with exactly that name
//!    wins over the case-insensitive rendered match, which wins over a case-insensitive stored file. When a
//!    rendered file has nothing to say (no ring list, no `OS79XX.TXT` image), a stored file of that name is
//!    served instead if there is one, else [`Miss::KnownAbsent`] (a configuration choice, never a miss).
//! 6. Anything else is a stored file ([`Snapshot::file`]: tenant then global, exact then case-insensitive),
//!    served byte for byte, or [`Miss::NotFound`].
//!
//! # Determinism and version stamps
//!
//! Rendering depends only on the snapshot, so the same snapshot gives the same bytes.
//!
//! * `versionStamp` in a full `SEP<MAC>.cnf.xml` is the first 8 hex digits of the SHA-256 of the file
//!   without the stamp: it changes exactly when the file's content does.
//! * `sync` (7940/7960) pairs `SIPDefault.cnf` with `syncinfo.xml`: a phone that gets `NOTIFY check-sync`
//!   fetches `syncinfo.xml` and reboots when its `SYNC` differs from the `sync` it loaded at boot.
//!   `syncinfo.xml` is requested without a MAC, so `SYNC` can only be tenant-wide; for the pair to mean
//!   "this phone's configuration is outdated", `sync` must be tenant-wide too. dialtone therefore derives
//!   one number per tenant: the first 31 bits (decimal) of a SHA-256 over what decides everything a
//!   7940/7960 of the tenant reads at boot: the rendered `SIPDefault.cnf` without `sync`, `OS79XX.TXT`,
//!   `dialplan.xml` and `RINGLIST.DAT`; the tenant's settings and template overrides; and, for every enabled
//!   7940/7960 phone of the tenant in MAC order, the phone's own data (model, label, lines, overrides), from
//!   which its `SIP<MAC>.cnf` and loader `SEP<MAC>.cnf.xml` are rendered. Hashing the phones' inputs rather
//!   than their rendered files keeps the stamp cheap for tenants with 100,000 phones (a rendered-file hash
//!   took 1.3 s there); the price is that a tenant setting that no 7940/7960 file uses still changes it.
//!   It is written as `sync` in `SIPDefault.cnf` only (not in `SIP<MAC>.cnf`, so a
//!   phone's own file changes only when that phone's configuration does) and as `SYNC` in `syncinfo.xml`.
//!   Consequence: after any 7940/7960-relevant change in a tenant, every 7940/7960 of that tenant that is
//!   sent a check-sync reboots once. A tenant's extra `sip_cnf.sync` parameter replaces the computed value
//!   in both files. The number is computed by the refresher before a snapshot is published, and only for
//!   tenants that changed (the others inherit it).
//!
//! # Content types
//!
//! `text/xml` for `.xml` names, `text/plain` for `.cnf`, `.txt`, `.dat` names, `application/octet-stream`
//! for everything else (stored blobs).
//!
//! # Secrets
//!
//! SIP passwords appear only in the per-device files (`SIP<MAC>.cnf`, full `SEP<MAC>.cnf.xml`), never in a
//! tenant-wide file.
//!
//! # Template overrides
//!
//! A tenant may replace the renderer of any rendered file by a MiniJinja template ([`template`]). The
//! override is used when the tenant has one for the file and it renders a valid file; otherwise (none,
//! or it fails on data changed since it was saved) the built-in renderer is. The `sync` stamp is computed
//! over what is actually served (overrides included; `SIPDefault.cnf` rendered with an empty `sync`).

pub mod firmware;
pub mod name;
pub mod render;
pub mod resolve;
pub mod template;
pub mod validate;

#[cfg(test)]
mod checks;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod test_support;

use std::net::IpAddr;

use bytes::Bytes;

use crate::domain::{Family, MacAddress};
use crate::snapshot::{
    CompiledTemplate, DigestSum, PhoneView, Snapshot, StoredFile, TemplateId, TenantView,
};

pub use name::{BadName, Class, FileKind};
pub use resolve::Resolved;

use render::{dialplan, ringlist, sip79xx, syncinfo, xml_device};

/// Names that phones ask for and that `boot-sequences.json` lists as rendered, which dialtone serves
/// from the file store instead (upload them as tenant or global files): soft keys, feature policy and
/// background image lists (`Desktops/<W>x<H>x<D>/List.xml`). The last path component says a name is one
/// of them; the file store is searched with the whole path, since each screen size has its own `List.xml`.
pub const STORED_NOT_RENDERED: &[&str] = &["SoftKeys.xml", "FeaturePolicy.xml", "List.xml"];

/// Whether a normalised name is one of [`STORED_NOT_RENDERED`].
pub fn is_stored_not_rendered(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    STORED_NOT_RENDERED.contains(&last)
}

/// A file to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The content.
    pub bytes: Bytes,
    /// SHA-256 of `bytes` (computed once per snapshot for every kept file).
    pub sha256: [u8; 32],
    /// `text/xml`, `text/plain` or `application/octet-stream`.
    pub content_type: &'static str,
    /// The tenant the request was served for.
    pub tenant: usize,
    /// The phone, for per-device files.
    pub phone: Option<MacAddress>,
    /// What was served.
    pub kind: FileKind,
}

/// Why nothing is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// The source address is in no tenant's network: send nothing (TFTP) or 404 (HTTP).
    UnknownSource,
    /// The name is refused (`..`, backslash, control bytes, empty, too long).
    BadName,
    /// Not found, and expected: CTL/ITL trust lists, `.sgn`, or a rendered file with nothing configured.
    /// Never counts as a miss.
    KnownAbsent,
    /// No such file.
    NotFound,
    /// A per-device name whose MAC has no phone (a candidate for "discovered devices").
    UnknownDevice(MacAddress),
    /// A per-device name whose MAC belongs to another tenant: answer exactly as `NotFound`, log a
    /// security event.
    OtherTenantsDevice(MacAddress),
    /// The phone is disabled.
    DeviceDisabled,
    /// The tenant is disabled.
    TenantDisabled,
}

/// Serves `raw_name` to a request from `source`.
pub fn provision(snap: &Snapshot, source: IpAddr, raw_name: &str) -> Result<Served, Miss> {
    let tenant = snap.tenant_for(source).ok_or(Miss::UnknownSource)?;
    serve(snap, tenant, raw_name, None)
}

/// What phone `mac` of `tenant` would get for `name`: the same bytes as [`provision`] from a source in
/// the tenant's network. A per-device name must carry this phone's MAC (else `NotFound`).
pub fn preview_device(
    snap: &Snapshot,
    tenant: usize,
    mac: MacAddress,
    name: &str,
) -> Result<Served, Miss> {
    serve(snap, tenant, name, Some(mac))
}

/// What any source in `tenant`'s networks would get for `name`.
pub fn preview_tenant(snap: &Snapshot, tenant: usize, name: &str) -> Result<Served, Miss> {
    serve(snap, tenant, name, None)
}

fn content_type(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".xml") {
        "text/xml"
    } else if lower.ends_with(".cnf") || lower.ends_with(".txt") || lower.ends_with(".dat") {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

fn serve(
    snap: &Snapshot,
    tenant: usize,
    raw_name: &str,
    only_mac: Option<MacAddress>,
) -> Result<Served, Miss> {
    let name = name::normalise(raw_name).map_err(|_| Miss::BadName)?;
    let class = name::classify(&name);
    if class == Class::KnownAbsent {
        return Err(Miss::KnownAbsent);
    }
    let t = snap.tenants().get(tenant).ok_or(Miss::NotFound)?;
    if !t.enabled {
        return Err(Miss::TenantDisabled);
    }
    match class {
        Class::Device { kind, mac } => {
            if only_mac.is_some_and(|m| m != mac) {
                return Err(Miss::NotFound);
            }
            serve_device(snap, tenant, kind, mac)
        }
        Class::TenantWide { kind, exact } => {
            if !exact {
                if let Some(f) = snap.file_exact(tenant, &name) {
                    return Ok(stored(f, &name, tenant));
                }
            }
            let cached = snap.tenant_rendered(tenant, cache_slot(kind), || {
                render_tenant_wide(snap, tenant, kind).map(Bytes::from)
            });
            match cached {
                Some(file) => Ok(Served {
                    bytes: file.bytes,
                    sha256: file.sha256,
                    content_type: content_type(&name),
                    tenant,
                    phone: None,
                    kind,
                }),
                None => snap
                    .file(tenant, &name)
                    .map(|f| stored(f, &name, tenant))
                    .ok_or(Miss::KnownAbsent),
            }
        }
        Class::Other => snap
            .file(tenant, &name)
            .map(|f| stored(f, &name, tenant))
            .ok_or(Miss::NotFound),
        Class::KnownAbsent => Err(Miss::KnownAbsent),
    }
}

fn stored(f: &StoredFile, name: &str, tenant: usize) -> Served {
    Served {
        bytes: f.bytes.clone(),
        sha256: f.sha256,
        content_type: content_type(name),
        tenant,
        phone: None,
        kind: FileKind::Stored,
    }
}

fn serve_device(
    snap: &Snapshot,
    tenant: usize,
    kind: Option<FileKind>,
    mac: MacAddress,
) -> Result<Served, Miss> {
    let phone = snap.phone(mac).ok_or(Miss::UnknownDevice(mac))?;
    if phone.tenant != tenant {
        return Err(Miss::OtherTenantsDevice(mac));
    }
    if !phone.enabled {
        return Err(Miss::DeviceDisabled);
    }
    let kind = kind.ok_or(Miss::NotFound)?;
    let id = template::device_id(kind, phone.model).ok_or(Miss::NotFound)?;
    let t = snap.tenant(tenant);
    let content_type = if kind == FileKind::SipDeviceCnf {
        "text/plain"
    } else {
        "text/xml"
    };
    let file = snap
        .device_rendered(mac, device_slot(kind), || {
            device_file(t, phone, &Resolved::device(t, phone), id, None).map(Bytes::from)
        })
        .ok_or(Miss::KnownAbsent)?;
    Ok(Served {
        bytes: file.bytes,
        sha256: file.sha256,
        content_type,
        tenant,
        phone: Some(mac),
        kind,
    })
}

/// A per-device file for `phone` (effective settings `r`): the tenant's override when it has one and it
/// renders a valid file, else the built-in renderer; `None` when there is nothing to serve. `cx` is the
/// tenant's template context when the caller already has one.
fn device_file(
    t: &TenantView,
    phone: &PhoneView,
    r: &Resolved,
    id: TemplateId,
    cx: Option<&template::TenantContext>,
) -> Option<String> {
    // Without a load the loader file would only produce "No Load Specified": let the loader's hunt go
    // on to SIP<MAC>.cnf instead (with or without an override).
    if id == TemplateId::SepLoaderXml && r.load_for(phone.model).is_none() {
        return None;
    }
    if let Some(tpl) = t.templates.get(id) {
        let owned;
        let cx = match cx {
            Some(cx) => cx,
            None => {
                owned = template::TenantContext::new(t, &Resolved::tenant(t));
                &owned
            }
        };
        if let Ok(out) = template::render_device(tpl, cx, phone, r) {
            return out;
        }
    }
    match id {
        TemplateId::SipDeviceCnf => Some(sip79xx::sip_device(r, phone)),
        TemplateId::SepLoaderXml => r
            .load_for(phone.model)
            .map(|load| xml_device::sep_79xx_loader(phone.model, load)),
        TemplateId::SepDeviceXml => Some(xml_device::sep_full(r, phone)),
        _ => None,
    }
}

/// A tenant-wide override's output, when the tenant has an override for `kind` and it renders a valid
/// file (`Some(None)`: it renders nothing to serve).
fn tenant_override(
    t: &TenantView,
    r: &Resolved,
    tpl: &CompiledTemplate,
    sync: Option<&str>,
) -> Option<Option<String>> {
    let cx = template::TenantContext::new(t, r);
    template::render_tenant(tpl, &cx, sync).ok()
}

/// The snapshot cache slot of a tenant-wide kind.
fn cache_slot(kind: FileKind) -> usize {
    match kind {
        FileKind::Os79xxTxt => 0,
        FileKind::SipDefaultCnf => 1,
        FileKind::SyncInfo => 2,
        FileKind::XmlDefault => 3,
        FileKind::DialPlan => 4,
        FileKind::RingListDat => 5,
        FileKind::RingListXml => 6,
        FileKind::DistinctiveRingListXml => 7,
        FileKind::SipDeviceCnf | FileKind::SepDeviceXml | FileKind::Stored => 8,
    }
}

/// The snapshot cache slot of a per-device kind.
fn device_slot(kind: FileKind) -> u8 {
    match kind {
        FileKind::SipDeviceCnf => 0,
        _ => 1,
    }
}

/// The SHA-256 of `bytes` served for the normalised `name` (of class `class`) to a source of `tenant`,
/// when they are the very bytes this snapshot keeps for that name (a stored file, or a tenant-wide or
/// per-device file rendered for this snapshot): the fetch-event writer then need not hash them again.
/// `None` means "hash it yourself".
pub fn known_sha256(
    snap: &Snapshot,
    tenant: usize,
    name: &str,
    class: Class,
    bytes: &Bytes,
) -> Option<[u8; 32]> {
    let same = |f: &StoredFile| f.bytes.as_ptr() == bytes.as_ptr() && f.bytes.len() == bytes.len();
    let rendered = match class {
        Class::Device {
            kind: Some(kind),
            mac,
        } => snap.device_kept(mac, device_slot(kind)),
        Class::TenantWide { kind, .. } => snap.tenant_kept(tenant, cache_slot(kind)),
        _ => None,
    };
    if let Some(f) = rendered.filter(|f| same(f)) {
        return Some(f.sha256);
    }
    snap.file(tenant, name)
        .filter(|f| same(f))
        .map(|f| f.sha256)
}

/// Renders a tenant-wide file; `None` when the configuration gives it nothing to say.
fn render_tenant_wide(snap: &Snapshot, tenant: usize, kind: FileKind) -> Option<String> {
    let t = snap.tenant(tenant);
    let r = Resolved::tenant(t);
    if let Some(tpl) = template::tenant_wide_id(kind).and_then(|id| t.templates.get(id)) {
        let sync = template::needs_sync(tpl.id()).then(|| sync_value(snap, tenant, &r));
        if let Some(out) = tenant_override(t, &r, tpl, sync.as_deref()) {
            return out;
        }
    }
    match kind {
        FileKind::Os79xxTxt => sip79xx::os79xx_txt(&r),
        FileKind::SipDefaultCnf => Some(sip79xx::sip_default(&r, &sync_value(snap, tenant, &r))),
        FileKind::SyncInfo => Some(syncinfo::syncinfo(&sync_value(snap, tenant, &r))),
        FileKind::XmlDefault => Some(xml_device::xml_default(&r)),
        FileKind::DialPlan => Some(dialplan::dialplan(&r)),
        FileKind::RingListDat => ringlist::ringlist_dat(&r),
        FileKind::RingListXml | FileKind::DistinctiveRingListXml => ringlist::ringlist_xml(&r),
        FileKind::SipDeviceCnf | FileKind::SepDeviceXml | FileKind::Stored => None,
    }
}

/// The tenant's 7940/7960 `sync` / `SYNC` value (see the module documentation).
fn sync_value(snap: &Snapshot, tenant: usize, r: &Resolved) -> String {
    if let Some(fixed) = r.extra_sip_cnf.get("sync") {
        return fixed.clone();
    }
    snap.tenant_memo(tenant, || sync_stamp(snap, tenant, r))
        .to_string()
}

fn sync_stamp(snap: &Snapshot, tenant: usize, r: &Resolved) -> u32 {
    let t = snap.tenant(tenant);
    // Overrides count as served: each part is the override's output when there is a working one.
    let cx = (!t.templates.is_empty()).then(|| template::TenantContext::new(t, r));
    let tenant_part = |id: TemplateId, builtin: &dyn Fn() -> Option<String>| -> Vec<u8> {
        let sync = template::needs_sync(id).then_some("");
        let over = t
            .templates
            .get(id)
            .zip(cx.as_ref())
            .and_then(|(tpl, cx)| template::render_tenant(tpl, cx, sync).ok());
        over.unwrap_or_else(builtin)
            .unwrap_or_default()
            .into_bytes()
    };
    let mut parts: Vec<Vec<u8>> = vec![
        tenant_part(TemplateId::SipDefaultCnf, &|| {
            Some(sip79xx::sip_default_body(r).finish())
        }),
        tenant_part(TemplateId::Os79xxTxt, &|| sip79xx::os79xx_txt(r)),
        tenant_part(TemplateId::DialPlan, &|| Some(dialplan::dialplan(r))),
        tenant_part(TemplateId::RingListDat, &|| ringlist::ringlist_dat(r)),
    ];
    // What decides every 7940/7960 file of the tenant beyond the tenant-wide files above: the tenant's
    // settings and overrides, and each such phone's own data. Hashing these inputs (not the rendered
    // per-phone files) keeps the stamp cheap for tenants with tens of thousands of phones; it changes
    // whenever one of those files can change.
    let mut inputs = serde_json::to_vec(&t.settings.to_json()).unwrap_or_default();
    for tpl in t.templates.iter() {
        inputs.extend_from_slice(format!("{:?}", tpl.id()).as_bytes());
        inputs.extend_from_slice(tpl.source().as_bytes());
    }
    parts.push(inputs);
    // Each phone's digest is computed once per phone version, and the snapshot adds them up per tenant
    // once and then carries the sum through deltas, so that a change costs the changed phones' digests,
    // not a pass over the tenant.
    let DigestSum { sum, count } = snap.digest_sum(tenant, Family::Sip79xx);
    parts.push(sum.to_le_bytes().to_vec());
    parts.push(count.to_le_bytes().to_vec());
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    render::stamp_u31(&render::digest(&refs))
}

/// Computes, once per snapshot, the values that depend on a whole tenant (the 7940/7960 `sync` stamp,
/// which hashes every such phone of the tenant), so that no request pays for them. The refresher calls
/// this before it publishes a snapshot.
pub fn warm(snap: &Snapshot) {
    for t in 0..snap.tenants().len() {
        if snap.digest_sum(t, Family::Sip79xx).count > 0 {
            let _ = preview_tenant(snap, t, "syncinfo.xml");
        }
    }
}

#[cfg(test)]
mod cache_tests {
    use crate::provisioning::test_support::{acme_settings, ip, net, tenant};
    use crate::provisioning::{provision, warm};
    use crate::snapshot::Snapshot;

    #[test]
    fn tenant_wide_files_are_rendered_once_per_snapshot() {
        let snap = Snapshot::build(
            1,
            vec![tenant("acme", acme_settings())],
            vec![(net("127.0.1.0/24"), 0)],
            vec![],
            vec![],
        );
        warm(&snap);
        let a = provision(&snap, ip("127.0.1.5"), "dialplan.xml").unwrap();
        let b = provision(&snap, ip("127.0.1.6"), "dialplan.xml").unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(
            a.bytes.as_ptr(),
            b.bytes.as_ptr(),
            "the second request shares the first one's bytes"
        );
        // A new snapshot renders anew.
        let next = Snapshot::build(
            2,
            vec![tenant("acme", acme_settings())],
            vec![(net("127.0.1.0/24"), 0)],
            vec![],
            vec![],
        );
        let c = provision(&next, ip("127.0.1.5"), "dialplan.xml").unwrap();
        assert_eq!(c.bytes, a.bytes);
        assert_ne!(c.bytes.as_ptr(), a.bytes.as_ptr());
    }

    #[test]
    fn unchanged_tenants_inherit_their_stamps_and_files_changed_ones_do_not() {
        use crate::domain::Model;
        use crate::provisioning::test_support::{line, phone};
        let build = |label_b: &str| {
            Snapshot::build(
                1,
                vec![
                    tenant("acme", acme_settings()),
                    tenant("bravo", acme_settings()),
                ],
                vec![(net("127.0.1.0/24"), 0), (net("127.0.2.0/24"), 1)],
                vec![
                    phone(
                        0,
                        "0004F2000001",
                        Model::M7960,
                        "A",
                        vec![line("1001", None, None)],
                    ),
                    phone(
                        1,
                        "0004F2000002",
                        Model::M7960,
                        label_b,
                        vec![line("2001", None, None)],
                    ),
                ],
                vec![],
            )
        };
        let first = build("B");
        warm(&first);
        provision(&first, ip("127.0.1.5"), "dialplan.xml").unwrap();
        let second = build("B changed");
        assert_eq!(
            second.inherit_tenant_caches(&first),
            1,
            "only acme is unchanged"
        );
        // acme: nothing left to compute; bravo: its stamp is computed again (its phone changed).
        let acme = second.tenant_by_slug("acme").unwrap();
        let bravo = second.tenant_by_slug("bravo").unwrap();
        assert_eq!(
            second.tenant_memo(acme, || panic!("acme was recomputed")),
            first.tenant_memo(acme, || 0)
        );
        let mut recomputed = false;
        second.tenant_memo(bravo, || {
            recomputed = true;
            1
        });
        assert!(recomputed, "bravo changed and must be computed anew");
        let a = provision(&first, ip("127.0.1.5"), "dialplan.xml").unwrap();
        let b = provision(&second, ip("127.0.1.5"), "dialplan.xml").unwrap();
        assert_eq!(
            a.bytes.as_ptr(),
            b.bytes.as_ptr(),
            "acme's tenant-wide files are shared, not rendered again"
        );
    }

    #[test]
    fn device_files_are_rendered_and_hashed_once_per_snapshot_and_stay_the_phones_own() {
        use crate::domain::Model;
        use crate::provisioning::test_support::{line, mac, phone};
        use crate::provisioning::{known_sha256, Miss};
        use sha2::{Digest, Sha256};
        let build = |sequence: i64, label: &str| {
            Snapshot::build(
                sequence,
                vec![
                    tenant("acme", acme_settings()),
                    tenant("bravo", acme_settings()),
                ],
                vec![(net("127.0.1.0/24"), 0), (net("127.0.2.0/24"), 1)],
                vec![phone(
                    0,
                    "0004F2000001",
                    Model::M7960,
                    label,
                    vec![line("1001", None, None)],
                )],
                vec![],
            )
        };
        let name = "SIP0004F2000001.cnf";
        let snap = build(1, "Front desk");
        let a = provision(&snap, ip("127.0.1.5"), name).unwrap();
        let b = provision(&snap, ip("127.0.1.6"), name).unwrap();
        assert_eq!(
            a.bytes.as_ptr(),
            b.bytes.as_ptr(),
            "the second request shares the first one's bytes"
        );
        assert_eq!(a.sha256[..], Sha256::digest(&a.bytes)[..]);
        let class = crate::provisioning::name::classify(name);
        assert_eq!(
            known_sha256(&snap, 0, name, class, &a.bytes),
            Some(a.sha256)
        );
        let copy = bytes::Bytes::copy_from_slice(&a.bytes);
        assert_eq!(
            known_sha256(&snap, 0, name, class, &copy),
            None,
            "bytes the snapshot does not hold are hashed by the caller"
        );
        // Another tenant's network still gets nothing, however warm the cache is.
        assert_eq!(
            provision(&snap, ip("127.0.2.5"), name),
            Err(Miss::OtherTenantsDevice(mac("0004F2000001")))
        );
        // The SEP file of the same phone is kept apart from its SIP file.
        let sep = provision(&snap, ip("127.0.1.5"), "SEP0004F2000001.cnf.xml").unwrap();
        assert_ne!(sep.bytes, a.bytes);
        // A changed phone in a new snapshot gets freshly rendered bytes.
        let next = build(2, "Back office");
        let c = provision(&next, ip("127.0.1.5"), name).unwrap();
        assert_ne!(c.bytes, a.bytes);
        assert!(String::from_utf8_lossy(&c.bytes).contains("Back office"));
        assert_eq!(c.sha256[..], Sha256::digest(&c.bytes)[..]);
    }

    #[test]
    fn unchanged_phones_keep_their_device_files_in_the_next_snapshot_changed_ones_are_rendered_anew(
    ) {
        use crate::domain::Model;
        use crate::provisioning::test_support::{line, phone};
        use crate::snapshot::StoredFile;
        // acme: phones 1 and 2; bravo: phone 3. `bravo_vm` is bravo's voicemail number.
        let build =
            |sequence: i64, label_2: &str, bravo_vm: &str, globals: Vec<(String, StoredFile)>| {
                let mut bravo = acme_settings();
                bravo["voicemail_number"] = bravo_vm.into();
                Snapshot::build(
                    sequence,
                    vec![tenant("acme", acme_settings()), tenant("bravo", bravo)],
                    vec![(net("127.0.1.0/24"), 0), (net("127.0.2.0/24"), 1)],
                    vec![
                        phone(
                            0,
                            "0004F2000001",
                            Model::M7960,
                            "One",
                            vec![line("1001", None, None)],
                        ),
                        phone(
                            0,
                            "0004F2000002",
                            Model::M7960,
                            label_2,
                            vec![line("1002", None, None)],
                        ),
                        phone(
                            1,
                            "0004F2000003",
                            Model::M7960,
                            "Three",
                            vec![line("2001", None, None)],
                        ),
                    ],
                    globals,
                )
            };
        let fetch = |snap: &Snapshot, net: &str, n: u8| {
            provision(snap, ip(net), &format!("SIP0004F200000{n}.cnf")).unwrap()
        };
        let first = build(1, "Two", "*97", vec![]);
        let one = fetch(&first, "127.0.1.5", 1);
        let two = fetch(&first, "127.0.1.5", 2);
        let three = fetch(&first, "127.0.2.5", 3);

        // Phone 2 is relabelled and bravo's settings change.
        let second = build(2, "Second", "*98", vec![]);
        assert_eq!(second.inherit_device_files(&first), 1, "phone 1's file");
        assert_eq!(
            fetch(&second, "127.0.1.5", 1).bytes.as_ptr(),
            one.bytes.as_ptr(),
            "phone 1 did not change: its file is kept, not rendered again"
        );
        let two_now = fetch(&second, "127.0.1.5", 2);
        assert!(String::from_utf8_lossy(&two_now.bytes).contains("Second"));
        let three_now = fetch(&second, "127.0.2.5", 3);
        assert_ne!(
            three_now.bytes.as_ptr(),
            three.bytes.as_ptr(),
            "bravo's settings changed: its phones are rendered anew"
        );
        assert!(String::from_utf8_lossy(&three_now.bytes).contains("*98"));
        assert!(!String::from_utf8_lossy(&three.bytes).contains("*98"));
        assert_ne!(two_now.bytes, two.bytes);

        // A kept file is kept again by the snapshot after, and nothing is kept across a change of the
        // global files.
        let third = build(3, "Second", "*98", vec![]);
        third.inherit_device_files(&second);
        assert_eq!(
            fetch(&third, "127.0.1.5", 1).bytes.as_ptr(),
            one.bytes.as_ptr()
        );
        assert_eq!(
            fetch(&third, "127.0.2.5", 3).bytes.as_ptr(),
            three_now.bytes.as_ptr()
        );
        let fourth = build(
            4,
            "Second",
            "*98",
            vec![("ringer1.pcm".to_string(), StoredFile::new(&b"ring"[..]))],
        );
        assert_eq!(fourth.inherit_device_files(&third), 0);
        assert_ne!(
            fetch(&fourth, "127.0.1.5", 1).bytes.as_ptr(),
            one.bytes.as_ptr()
        );
    }

    /// Cost of the tenant-wide `sync` stamp for one tenant with 100,000 7940/7960 phones (prints the time;
    /// run with `cargo test --release --lib -- --ignored sync_stamp_cost --nocapture`).
    #[test]
    #[ignore = "measurement, not a test"]
    fn sync_stamp_cost() {
        use crate::domain::Model;
        use crate::provisioning::test_support::{line, phone};
        let phones = (0..100_000u64)
            .map(|i| {
                phone(
                    0,
                    &format!("{:012X}", 0x0A00_0000_0000u64 + i),
                    Model::M7960,
                    "Desk",
                    vec![line(&format!("{}", 10_000 + i), None, None)],
                )
            })
            .collect();
        let snap = Snapshot::build(
            1,
            vec![tenant("acme", acme_settings())],
            vec![(net("127.0.1.0/24"), 0)],
            phones,
            vec![],
        );
        let start = std::time::Instant::now();
        warm(&snap);
        println!(
            "sync stamp of a tenant with 100,000 7960 phones: {:?}",
            start.elapsed()
        );
    }

    /// Cost of publishing a small change on a large fleet: 20 deltas of 50 changed phones each on a
    /// snapshot of 1,000,000 7960 phones in 10 tenants, each followed by what the refresher does before
    /// it publishes (inherit the unchanged tenants' caches, warm). Prints the time per delta; run with
    /// `cargo test --release --lib -- --ignored delta_cost --nocapture`.
    #[test]
    #[ignore = "measurement, not a test"]
    fn delta_cost() {
        use crate::domain::Model;
        use crate::provisioning::test_support::{line, phone};
        use std::sync::Arc;
        let n = 1_000_000u64;
        let tenants: Vec<_> = (0..10)
            .map(|i| tenant(&format!("t{i}"), acme_settings()))
            .collect();
        let mk = |i: u64, label: &str| {
            Arc::new(phone(
                (i % 10) as usize,
                &format!("{:012X}", 0x0A00_0000_0000u64 + i),
                Model::M7960,
                label,
                vec![line(&format!("{}", 10_000 + i), None, None)],
            ))
        };
        let mut snap = Snapshot::build_shared(
            1,
            tenants.clone(),
            vec![],
            (0..n).map(|i| mk(i, "Desk")).collect(),
            vec![],
        );
        warm(&snap);
        let start = std::time::Instant::now();
        for round in 0..20u64 {
            let changed: Vec<_> = (0..50u64)
                .map(|k| mk((round * 7919 + k * 104_729) % n, &format!("r{round}")))
                .collect();
            let next = snap.with_phone_changes(
                round as i64 + 2,
                tenants.clone(),
                vec![],
                changed,
                &[],
                vec![],
            );
            next.inherit_tenant_caches(&snap);
            warm(&next);
            snap = next;
        }
        println!(
            "delta of 50 phones on 1,000,000 (10 tenants), published: {:?} each",
            start.elapsed() / 20
        );
    }
}
