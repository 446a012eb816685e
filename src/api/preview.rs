//! What phones get and got: previews of rendered files (exactly the bytes a phone would be served),
//! fetch history, configuration drift (current / outdated / never fetched), and discovered devices.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{get, web, HttpResponse};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{next_page, PageParams};
use super::files::Binary;
use super::tenants::load_tenant;
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::fetches::{DiscoveredDevice, FetchEvent};
use crate::db::phones::{ConfigState, Phone};
use crate::db::{self};
use crate::domain::MacAddress;
use crate::provisioning::{self, Miss};
use crate::snapshot::Snapshot;

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(preview_phone_file)
        .service(preview_tenant_file)
        .service(phone_fetches)
        .service(discovered_devices);
}

/// A page of fetch events.
#[derive(Debug, Serialize, ToSchema)]
pub struct FetchPage {
    /// Events, newest first.
    pub items: Vec<FetchEvent>,
    /// Cursor of the next (older) page.
    pub next_cursor: Option<String>,
}

/// A page of discovered devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveredPage {
    /// Devices by MAC.
    pub items: Vec<DiscoveredDevice>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

fn miss_error(m: Miss) -> ApiError {
    ApiError::NotFound(
        match m {
            Miss::KnownAbsent => "phones get \"file not found\" for this name (nothing configured, or a trust-list name)",
            Miss::BadName => "not a name phones can request",
            Miss::DeviceDisabled => "the phone is disabled: it gets nothing",
            Miss::TenantDisabled => "the tenant is disabled: its phones get nothing",
            _ => "phones get \"file not found\" for this name",
        }
        .into(),
    )
}

fn served_response(s: provisioning::Served) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(s.content_type)
        .insert_header(("X-Content-SHA256", hex::encode(s.sha256)))
        .body(s.bytes)
}

/// The current snapshot and the tenant's index in it, for a tenant the caller has just found in the
/// database. The snapshot follows the database within milliseconds (notified reloads are at least 20 ms
/// apart), so a tenant created an instant ago may not be in it yet: wait for it up to 2 s, then 409.
pub(super) async fn snapshot_with_tenant(
    state: &AppState,
    slug: &str,
) -> Result<(Arc<Snapshot>, usize), ApiError> {
    state
        .snapshot
        .wait_for(std::time::Duration::from_secs(2), |s| {
            s.tenant_by_slug(slug)
        })
        .await
        .ok_or_else(|| {
            ApiError::Conflict(
                "the provisioning snapshot has not caught up with this tenant yet; retry".into(),
            )
        })
}

/// Exactly what a phone would be served for `file_name` (passwords included: tenant and platform admins only).
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation"), ("file_name" = String, Path, description = "e.g. SIP0004F2A1B2C3.cnf, SEP0004F2A1B2C3.cnf.xml, SIPDefault.cnf")), security(("bearer" = [])), responses(
    (status = 200, description = "the bytes the phone would get, with the content type the phone gets", content((Binary = "text/xml"), (Binary = "text/plain"), (Binary = "application/octet-stream"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "the phone would get \"file not found\"", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid parameter (limit, cursor, MAC, filter)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/phones/{mac}/files/{file_name}")]
pub async fn preview_phone_file(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac, file) = path.into_inner();
    // Previews carry SIP passwords: only those who may write the phone may see them.
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mac: MacAddress = mac
        .parse()
        .map_err(|e: crate::domain::ParseMacError| ApiError::invalid("mac", e.to_string()))?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &slug, Access::Write, false).await?;
    db::phones::find(&client, tenant.id, &mac)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such phone in this tenant".into()))?;
    let (snap, t) = snapshot_with_tenant(&state, &slug).await?;
    let served = provisioning::preview_device(&snap, t, mac, &file).map_err(miss_error)?;
    Ok(served_response(served))
}

/// Exactly what any source in the tenant's networks would be served for a tenant-wide or stored file.
#[utoipa::path(tag = "files", params(("tenant" = String, Path, description = "tenant slug"), ("file_name" = String, Path, description = "e.g. SIPDefault.cnf, OS79XX.TXT, dialplan.xml")), security(("bearer" = [])), responses(
    (status = 200, description = "the bytes phones of this tenant would get, with the content type they get", content((Binary = "text/xml"), (Binary = "text/plain"), (Binary = "application/octet-stream"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "phones would get \"file not found\"", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/files-preview/{file_name}")]
pub async fn preview_tenant_file(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, file) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    load_tenant(&client, &p, &slug, Access::Write, false).await?;
    let (snap, t) = snapshot_with_tenant(&state, &slug).await?;
    let served = provisioning::preview_tenant(&snap, t, &file).map_err(miss_error)?;
    if served.phone.is_some() {
        return Err(ApiError::NotFound(
            "a per-device file: preview it under /phones/{mac}/files/".into(),
        ));
    }
    Ok(served_response(served))
}

/// A phone's fetch history, newest first.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation"), PageParams), security(("bearer" = [])), responses(
    (status = 200, description = "fetch events", body = FetchPage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or phone", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid parameter (limit, cursor, MAC, filter)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/phones/{mac}/fetches")]
pub async fn phone_fetches(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac) = path.into_inner();
    if !p.may(&slug, Access::Read) {
        return Err(ApiError::Forbidden);
    }
    let mac: MacAddress = mac
        .parse()
        .map_err(|e: crate::domain::ParseMacError| ApiError::invalid("mac", e.to_string()))?;
    let limit = q.limit()?;
    let before = match q.after()? {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor returned by this API"))?,
        ),
    };
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &slug, Access::Read, false).await?;
    db::phones::find(&client, tenant.id, &mac)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such phone in this tenant".into()))?;
    let mut items =
        db::fetches::history(&client, tenant.id, &mac.to_string(), before, limit + 1).await?;
    let next_cursor = next_page(&mut items, limit, |e| db::encode_cursor(&e.id.to_string()));
    Ok(HttpResponse::Ok().json(FetchPage { items, next_cursor }))
}

/// MACs that asked for their files from this tenant's networks and have no phone yet.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), PageParams), security(("bearer" = [])), responses(
    (status = 200, description = "discovered devices", body = DiscoveredPage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid parameter (limit, cursor, MAC, filter)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/discovered-devices")]
pub async fn discovered_devices(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit()?;
    let after = q.after()?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &path, Access::Read, false).await?;
    let mut items =
        db::fetches::discovered(&client, tenant.id, after.as_deref(), limit + 1).await?;
    let next_cursor = next_page(&mut items, limit, |d| db::encode_cursor(&d.mac));
    Ok(HttpResponse::Ok().json(DiscoveredPage { items, next_cursor }))
}

/// The configuration state of phone `mac` of tenant `slug` whose last served per-device files had these
/// SHA-256s (none: it never fetched one): each is compared with what the current snapshot renders for it.
pub(super) fn config_state(
    snap: &Snapshot,
    slug: &str,
    mac: MacAddress,
    files: &[(String, Vec<u8>)],
) -> ConfigState {
    if files.is_empty() {
        return ConfigState::NeverFetched;
    }
    let current = snap.tenant_by_slug(slug).is_some_and(|t| {
        files.iter().all(
            |(name, sha)| match provisioning::preview_device(snap, t, mac, name) {
                Ok(s) => s.sha256[..] == sha[..],
                Err(_) => false,
            },
        )
    });
    if current {
        ConfigState::Current
    } else {
        ConfigState::Outdated
    }
}

/// Sets `config_state` on each phone: compares the SHA-256 of each per-device file it last fetched with
/// what the current snapshot renders for it.
pub(super) async fn fill_config_state(
    c: &impl GenericClient,
    snap: &Snapshot,
    tenant_id: Uuid,
    slug: &str,
    phones: &mut [Phone],
) -> Result<(), ApiError> {
    if phones.is_empty() {
        return Ok(());
    }
    let macs: Vec<String> = phones.iter().map(|p| p.mac.to_string()).collect();
    let mut last: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
    for (mac, file, sha, _) in db::fetches::last_served(c, tenant_id, &macs).await? {
        last.entry(mac).or_default().push((file, sha));
    }
    for phone in phones.iter_mut() {
        phone.config_state = config_state(
            snap,
            slug,
            phone.mac,
            last.get(&phone.mac.to_string()).map_or(&[], Vec::as_slice),
        );
    }
    Ok(())
}
