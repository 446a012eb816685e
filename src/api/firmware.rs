//! `/v1/tenants/{tenant}/firmware-status`, and the firmware warnings attached to tenant and phone writes:
//! which loads are pinned, for how many phones, and which files phones will fail to fetch.

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::tenants::scoped_tenant;
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::domain::{Model, Settings};
use crate::provisioning::firmware::{check_load, LoadStatus};
use crate::snapshot::Snapshot;

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(firmware_status);
}

/// One model of the tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelFirmware {
    /// Model number.
    pub model: String,
    /// Phones of this model in the tenant.
    pub phones: usize,
    /// The load pinned for the model at tenant level (`null`: none; phones keep what they run).
    pub tenant_load: Option<LoadStatus>,
    /// Loads pinned by individual phones of this model, with how many phones pin each.
    pub phone_loads: Vec<PhonePinned>,
}

/// A load pinned by phone overrides.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhonePinned {
    /// Phones pinning it.
    pub phones: usize,
    /// Its state.
    pub status: LoadStatus,
}

/// The firmware picture of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct FirmwareStatus {
    /// The image named in `OS79XX.TXT` (7940/7960 dual boot), when configured.
    pub os79xx: Option<LoadStatus>,
    /// Every model that has phones or a pinned load.
    pub models: Vec<ModelFirmware>,
    /// All files phones will ask for and not find, deduplicated and sorted.
    pub missing_files: Vec<String>,
}

/// The pinned loads of a settings layer (tenant or phone) with their state.
pub(super) fn check_settings(snap: &Snapshot, slug: &str, settings: &Settings) -> Vec<LoadStatus> {
    let tenant = snap.tenant_by_slug(slug).unwrap_or(usize::MAX);
    let Some(fw) = &settings.firmware else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(image) = &fw.os79xx {
        out.push(check_load(snap, tenant, None, image.as_str()));
    }
    for (model, load) in fw.loads.iter().flatten() {
        out.push(check_load(snap, tenant, Some(*model), load.as_str()));
    }
    out
}

/// Warning sentences for the pinned loads of `settings`.
pub(super) fn warnings(snap: &Snapshot, slug: &str, settings: &Settings) -> Vec<String> {
    check_settings(snap, slug, settings)
        .iter()
        .filter_map(LoadStatus::warning)
        .collect()
}

/// Firmware status of a tenant: models, pinned loads (tenant and phone level), and missing files.
#[utoipa::path(tag = "files", params(("tenant" = String, Path, description = "tenant slug")), security(("bearer" = [])), responses(
    (status = 200, description = "the tenant's firmware picture", body = FirmwareStatus),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the snapshot has not caught up with a new tenant yet", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/firmware-status")]
pub async fn firmware_status(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    scoped_tenant(&state, &p, &path, Access::Read).await?;
    let (snap, t) = super::preview::snapshot_with_tenant(&state, &path).await?;
    let tenant_settings = &snap.tenant(t).settings;
    let os79xx = tenant_settings
        .firmware
        .as_ref()
        .and_then(|f| f.os79xx.as_ref())
        .map(|i| check_load(&snap, t, None, i.as_str()));
    let tenant_loads = tenant_settings
        .firmware
        .as_ref()
        .and_then(|f| f.loads.clone())
        .unwrap_or_default();
    let mut per_model: BTreeMap<Model, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for model in tenant_loads.keys() {
        per_model.entry(*model).or_default();
    }
    for mac in snap.phones_of(t).iter() {
        let Some(phone) = snap.phone(*mac) else {
            continue;
        };
        let entry = per_model.entry(phone.model).or_default();
        entry.0 += 1;
        if let Some(load) = phone
            .settings
            .firmware
            .as_ref()
            .and_then(|f| f.loads.as_ref())
            .and_then(|l| l.get(&phone.model))
        {
            *entry.1.entry(load.to_string()).or_default() += 1;
        }
    }
    let mut missing: Vec<String> = Vec::new();
    let mut note = |s: &LoadStatus| {
        for m in &s.missing {
            if !missing.contains(m) {
                missing.push(m.clone());
            }
        }
    };
    if let Some(s) = &os79xx {
        note(s);
    }
    let models = per_model
        .into_iter()
        .map(|(model, (phones, pinned))| {
            let tenant_load = tenant_loads
                .get(&model)
                .map(|l| check_load(&snap, t, Some(model), l.as_str()));
            if let Some(s) = &tenant_load {
                note(s);
            }
            let phone_loads = pinned
                .into_iter()
                .map(|(load, phones)| {
                    let status = check_load(&snap, t, Some(model), &load);
                    note(&status);
                    PhonePinned { phones, status }
                })
                .collect();
            ModelFirmware {
                model: model.to_string(),
                phones,
                tenant_load,
                phone_loads,
            }
        })
        .collect();
    missing.sort();
    Ok(HttpResponse::Ok().json(FirmwareStatus {
        os79xx,
        models,
        missing_files: missing,
    }))
}
