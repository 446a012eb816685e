//! `/v1/tenants`: create, list, read, patch (deep merge of settings) and delete tenants.

use actix_web::http::header;
use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{check_if_match, etag, json_body, next_page, PageParams};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, audit::Actor, tenants::Tenant};
use crate::domain::{Settings, TenantSlug};

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_tenant)
        .service(list_tenants)
        .service(get_tenant)
        .service(patch_tenant)
        .service(delete_tenant);
}

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique short name: a-z, 0-9, '-', 1 to 63.
    #[schema(value_type = String, example = "acme")]
    pub slug: TenantSlug,
    /// Display name, 1 to 200 characters.
    #[schema(example = "Acme Ltd")]
    pub name: String,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Tenant-wide settings.
    #[serde(default)]
    pub settings: Option<Settings>,
}

/// Body of `PATCH /v1/tenants/{tenant}`: any subset; `settings` is an RFC 7396 merge patch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Enable or suspend (platform admins only).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Merge patch over the current settings (`null` removes a key).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// Tenants, by slug.
    pub items: Vec<Tenant>,
    /// Cursor of the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `?cascade=true` on delete.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Also delete the tenant's phones and networks.
    pub cascade: Option<bool>,
}

pub(super) fn actor(p: &Principal) -> Actor {
    Actor {
        subject: p.subject.clone(),
        role: p.role.as_str().to_owned(),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > 200 || name.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "name",
            "1 to 200 characters, no control characters",
        ));
    }
    Ok(())
}

/// Checks the caller's scope first (so that a foreign tenant is a 403 whether or not it exists), then
/// loads the tenant.
pub(super) async fn load_tenant(
    c: &impl GenericClient,
    p: &Principal,
    slug: &str,
    access: Access,
    lock: bool,
) -> Result<Tenant, ApiError> {
    if !p.may(slug, access) {
        return Err(ApiError::Forbidden);
    }
    // A string that cannot be a slug names no tenant: no need to ask the database.
    if slug.parse::<TenantSlug>().is_err() {
        return Err(ApiError::NotFound("no such tenant".into()));
    }
    db::tenants::find(c, slug, lock)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))
}

/// [`load_tenant`] on a connection of its own, released at once: for handlers whose real work happens
/// later (reading a body, another transaction).
pub(super) async fn scoped_tenant(
    state: &AppState,
    p: &Principal,
    slug: &str,
    access: Access,
) -> Result<Tenant, ApiError> {
    if !p.may(slug, access) {
        return Err(ApiError::Forbidden);
    }
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    load_tenant(&client, p, slug, access, false).await
}

pub(super) fn with_etag(mut resp: HttpResponse, revision: i64) -> HttpResponse {
    if let Ok(v) = header::HeaderValue::from_str(&etag(revision)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Create a tenant (platform admin).
#[utoipa::path(tag = "tenants", request_body = CreateTenant, security(("bearer" = [])), responses(
    (status = 201, description = "created", body = Tenant, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the slug is taken", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid values", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>,
    p: Principal,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !p.is_platform_admin() {
        return Err(ApiError::Forbidden);
    }
    let input: CreateTenant = json_body(&req, &body)?;
    check_name(&input.name)?;
    let settings = input.settings.unwrap_or_default();
    settings
        .check(None)
        .map_err(|e| ApiError::Invalid(vec![e.under("settings")]))?;
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = match db::tenants::insert(
        &tx,
        &input.slug,
        &input.name,
        input.enabled.unwrap_or(true),
        &settings,
    )
    .await
    {
        Err(db::DbError::Constraint { constraint }) if constraint == "tenants_slug_key" => {
            return Err(ApiError::Conflict(format!(
                "a tenant with slug {} already exists",
                input.slug
            )))
        }
        other => other?,
    };
    db::audit::record(
        &tx,
        &actor(&p),
        Some((tenant.id, tenant.slug.as_str())),
        "tenant.create",
        tenant.slug.as_str(),
        json!({}),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    let mut tenant = tenant;
    tenant.warnings = super::firmware::warnings(
        &state.snapshot.current(),
        tenant.slug.as_str(),
        &tenant.settings,
    );
    let resp = HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{}", tenant.slug)))
        .json(&tenant);
    Ok(with_etag(resp, tenant.revision))
}

/// List tenants: all for a platform admin, its own for a tenant role.
#[utoipa::path(tag = "tenants", params(PageParams), security(("bearer" = [])), responses(
    (status = 200, description = "a page of tenants", body = TenantPage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>,
    p: Principal,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit()?;
    let after = q.after()?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let items = match &p.tenant {
        None => db::tenants::list(&client, after.as_deref(), limit + 1).await?,
        Some(own) => {
            let t = db::tenants::find(&client, own.as_str(), false).await?;
            t.into_iter()
                .filter(|t| after.as_deref().is_none_or(|a| t.slug.as_str() > a))
                .collect()
        }
    };
    Ok(HttpResponse::Ok().json(page(items, limit, |t| t.slug.to_string())))
}

fn page(mut items: Vec<Tenant>, limit: i64, key: impl Fn(&Tenant) -> String) -> TenantPage {
    let next_cursor = next_page(&mut items, limit, |t| db::encode_cursor(&key(t)));
    TenantPage { items, next_cursor }
}

/// Read a tenant.
#[utoipa::path(tag = "tenants", params(("tenant" = String, Path, description = "tenant slug")), security(("bearer" = [])), responses(
    (status = 200, description = "the tenant", body = Tenant, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let t = load_tenant(&client, &p, &path, Access::Read, false).await?;
    Ok(with_etag(HttpResponse::Ok().json(&t), t.revision))
}

/// Change a tenant: name, enabled (platform admin), settings (deep merge, RFC 7396). Honours `If-Match`.
#[utoipa::path(tag = "tenants", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug")), request_body = PatchTenant, security(("bearer" = [])), responses(
    (status = 200, description = "the changed tenant", body = Tenant, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid values", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[patch("/tenants/{tenant}")]
pub async fn patch_tenant(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !p.may(&path, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let input: PatchTenant = json_body(&req, &body)?;
    if input.enabled.is_some() && !p.is_platform_admin() {
        return Err(ApiError::Forbidden);
    }
    if let Some(name) = &input.name {
        check_name(name)?;
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let current = load_tenant(&tx, &p, &path, Access::Write, true).await?;
    check_if_match(&req, Some(current.revision))?;
    let settings = match &input.settings {
        None => current.settings.clone(),
        Some(patch) => {
            let s = current
                .settings
                .patched(patch)
                .map_err(|e| ApiError::Invalid(vec![e.under("settings")]))?;
            s.check(None)
                .map_err(|e| ApiError::Invalid(vec![e.under("settings")]))?;
            s
        }
    };
    let name = input.name.clone().unwrap_or_else(|| current.name.clone());
    let enabled = input.enabled.unwrap_or(current.enabled);
    let t = db::tenants::update(&tx, current.id, &name, enabled, &settings).await?;
    let changed: Vec<&str> = [
        ("name", input.name.is_some()),
        ("enabled", input.enabled.is_some()),
        ("settings", input.settings.is_some()),
    ]
    .iter()
    .filter(|(_, c)| *c)
    .map(|(n, _)| *n)
    .collect();
    db::audit::record(
        &tx,
        &actor(&p),
        Some((t.id, t.slug.as_str())),
        "tenant.update",
        t.slug.as_str(),
        json!({ "fields": changed }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    let mut t = t;
    t.warnings = super::firmware::warnings(&state.snapshot.current(), t.slug.as_str(), &t.settings);
    Ok(with_etag(HttpResponse::Ok().json(&t), t.revision))
}

/// Delete a tenant (platform admin). Refused with 409 while it has phones or networks, unless `cascade=true`.
#[utoipa::path(tag = "tenants", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), DeleteParams), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the tenant still has phones or networks", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[delete("/tenants/{tenant}")]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<DeleteParams>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !p.is_platform_admin() {
        return Err(ApiError::Forbidden);
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let t = load_tenant(&tx, &p, &path, Access::Write, true).await?;
    check_if_match(&req, Some(t.revision))?;
    let (phones, networks) = db::tenants::dependants(&tx, t.id).await?;
    if (phones > 0 || networks > 0) && !q.cascade.unwrap_or(false) {
        return Err(ApiError::Conflict(format!(
            "tenant {} still has {phones} phone(s) and {networks} network(s); delete them first or pass cascade=true",
            t.slug
        )));
    }
    db::tenants::delete(&tx, t.id).await?;
    db::audit::record(
        &tx,
        &actor(&p),
        Some((t.id, t.slug.as_str())),
        "tenant.delete",
        t.slug.as_str(),
        json!({ "phones": phones, "networks": networks }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(HttpResponse::NoContent().finish())
}
