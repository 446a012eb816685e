//! `/v1/tenants/{tenant}/templates`: per-tenant template overrides of rendered files (MiniJinja). A save
//! compiles the template once and renders it for every phone of the tenant it applies to (tenant-wide
//! files: once) against the current provisioning snapshot, and is refused with 422 and the first errors
//! when a render fails or yields an invalid file. Tenant and platform admins only: templates see SIP
//! passwords (`phone.lines[].password`).

use std::sync::Arc;

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::extract::check_if_match;
use super::preview::snapshot_with_tenant;
use super::tenants::{actor, scoped_tenant, with_etag};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, templates::TemplateMeta};
use crate::domain::{FieldError, MacAddress};
use crate::provisioning::template::{self as tpl, PreviewError, MAX_PROBLEMS};
use crate::snapshot::templates::{TemplateFormat, MAX_SOURCE};
use crate::snapshot::{CompiledTemplate, TemplateId};

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_templates)
        .service(get_template)
        .service(put_template)
        .service(delete_template)
        .service(preview_template);
}

/// One overridable file of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateInfo {
    /// Template id, as used in the URL.
    #[schema(example = "SIPMAC.cnf")]
    pub file: String,
    /// What the file is.
    pub description: String,
    /// Rendered per phone (the template sees `phone` and `load`).
    pub per_device: bool,
    /// `cnf`, `xml` or `text`: how printed values are escaped and how the output is checked.
    pub format: String,
    /// Whether the tenant has an override (else the built-in renderer is used).
    pub overridden: bool,
    /// The override, when there is one.
    pub template: Option<TemplateMeta>,
}

/// Every overridable file of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// In documentation order.
    pub items: Vec<TemplateInfo>,
}

/// `?mac=` of a preview.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewParams {
    /// The phone to render a per-device template for (any usual MAC notation); ignored for tenant-wide ones.
    pub mac: Option<String>,
}

fn parse_id(file: &str) -> Result<TemplateId, ApiError> {
    TemplateId::parse(file).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no template {file:?}; overridable files: {}",
            TemplateId::ALL
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn format_name(f: TemplateFormat) -> &'static str {
    match f {
        TemplateFormat::Cnf => "cnf",
        TemplateFormat::Xml => "xml",
        TemplateFormat::Text => "text",
    }
}

/// The body as a compiled template: 413 over the limit, 422 (`template`) when not UTF-8 or not compiling.
fn compile_body(id: TemplateId, body: &[u8]) -> Result<CompiledTemplate, ApiError> {
    if body.len() > MAX_SOURCE {
        return Err(ApiError::PayloadTooLarge(format!(
            "templates are limited to {} KiB",
            MAX_SOURCE >> 10
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("template", "the template is not UTF-8 text"))?;
    CompiledTemplate::compile(id, text).map_err(|m| ApiError::invalid("template", m))
}

/// List the overridable files of a tenant and which are overridden.
#[utoipa::path(tag = "templates", params(("tenant" = String, Path, description = "tenant slug")), security(("bearer" = [])), responses(
    (status = 200, description = "every overridable file", body = TemplateList),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/templates")]
pub async fn list_templates(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let t = scoped_tenant(&state, &p, &path, Access::Write).await?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let mut saved = db::templates::list(&client, t.id).await?;
    let items = TemplateId::ALL
        .iter()
        .map(|id| {
            let template = saved
                .iter()
                .position(|m| m.file == id.as_str())
                .map(|i| saved.swap_remove(i));
            TemplateInfo {
                file: id.as_str().into(),
                description: id.description().into(),
                per_device: id.per_device(),
                format: format_name(id.format()).into(),
                overridden: template.is_some(),
                template,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(TemplateList { items }))
}

/// The tenant's override of a file (the template source).
#[utoipa::path(tag = "templates", params(("tenant" = String, Path, description = "tenant slug"), ("file" = String, Path, description = "template id, e.g. SIPMAC.cnf")), security(("bearer" = [])), responses(
    (status = 200, description = "the template source", body = String, content_type = "text/plain", headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or template id, or no override (the built-in renderer is used)", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/templates/{file}")]
pub async fn get_template(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, file) = path.into_inner();
    let t = scoped_tenant(&state, &p, &slug, Access::Write).await?;
    let id = parse_id(&file)?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let (meta, body) = db::templates::body(&client, t.id, id.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no override of {id}: the built-in renderer is used (it is code, not a template)"
            ))
        })?;
    let resp = HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body);
    Ok(with_etag(resp, meta.revision))
}

/// Save (create or replace) the tenant's override of a file. The body is the MiniJinja template. It is
/// rendered for every phone of the tenant it applies to (tenant-wide files: once) first; any failure or
/// invalid output refuses the save with 422 and up to 10 errors (`template`, `phones[MAC]`,
/// `sample phone`).
#[utoipa::path(tag = "templates", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("file" = String, Path, description = "template id, e.g. SIPMAC.cnf")), request_body(content = super::files::Binary, description = "the MiniJinja source in UTF-8, sent as text/plain or application/octet-stream", content_type = "application/octet-stream"), security(("bearer" = [])), responses(
    (status = 200, description = "replaced", body = TemplateMeta, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 201, description = "created", body = TemplateMeta, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or template id", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the provisioning snapshot has not caught up with this tenant yet; retry", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "template too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "the template does not compile, fails to render, or renders an invalid file for some phone", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[put("/tenants/{tenant}/templates/{file}")]
pub async fn put_template(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, file) = path.into_inner();
    let t = scoped_tenant(&state, &p, &slug, Access::Write).await?;
    let id = parse_id(&file)?;
    let compiled = Arc::new(compile_body(id, &body)?);
    let (snap, index) = snapshot_with_tenant(&state, &slug).await?;
    let candidate = compiled.clone();
    let problems = tokio::task::spawn_blocking(move || {
        tpl::check_template(&snap, index, &candidate, MAX_PROBLEMS)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("template check: {e}")))?;
    if !problems.is_empty() {
        return Err(ApiError::Invalid(
            problems
                .into_iter()
                .map(|p| FieldError::new(p.path, p.message))
                .collect(),
        ));
    }
    let source = compiled.source();
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let current = db::templates::find(&tx, t.id, id.as_str(), true).await?;
    check_if_match(&req, current.as_ref().map(|m| m.revision))?;
    let (meta, created) = db::templates::upsert(&tx, t.id, id.as_str(), source).await?;
    db::audit::record(
        &tx,
        &actor(&p),
        Some((t.id, t.slug.as_str())),
        if created {
            "template.create"
        } else {
            "template.replace"
        },
        id.as_str(),
        json!({ "sha256": hex::encode(Sha256::digest(source.as_bytes())), "size": source.len() }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    let mut resp = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(with_etag(resp.json(&meta), meta.revision))
}

/// Delete the tenant's override of a file: the built-in renderer is used again.
#[utoipa::path(tag = "templates", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("file" = String, Path, description = "template id, e.g. SIPMAC.cnf")), security(("bearer" = [])), responses(
    (status = 204, description = "deleted: the built-in renderer is used again"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or template id, or no override", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[delete("/tenants/{tenant}/templates/{file}")]
pub async fn delete_template(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (slug, file) = path.into_inner();
    let t = scoped_tenant(&state, &p, &slug, Access::Write).await?;
    let id = parse_id(&file)?;
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let current = db::templates::find(&tx, t.id, id.as_str(), true)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no override of {id}")))?;
    check_if_match(&req, Some(current.revision))?;
    db::templates::delete(&tx, t.id, id.as_str()).await?;
    db::audit::record(
        &tx,
        &actor(&p),
        Some((t.id, t.slug.as_str())),
        "template.delete",
        id.as_str(),
        json!({ "sha256": current.sha256 }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Render an unsaved template (the body) exactly as a phone would get it if it were saved: for phone
/// `mac` (per-device files) or for the tenant (tenant-wide files). `sync` is the current value.
#[utoipa::path(tag = "templates", params(("tenant" = String, Path, description = "tenant slug"), ("file" = String, Path, description = "template id, e.g. SIPMAC.cnf"), PreviewParams), request_body(content = super::files::Binary, description = "the MiniJinja source in UTF-8, sent as text/plain or application/octet-stream", content_type = "application/octet-stream"), security(("bearer" = [])), responses(
    (status = 200, description = "the bytes the phone would get", body = String, content_type = "text/plain"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant, template id or phone; or the output is empty (phones would get \"file not found\")", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the provisioning snapshot has not caught up with this tenant yet; retry", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "template too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "no mac for a per-device file, a phone that does not use this file, or the template fails or renders an invalid file", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants/{tenant}/templates/{file}/preview")]
pub async fn preview_template(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    q: web::Query<PreviewParams>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, file) = path.into_inner();
    scoped_tenant(&state, &p, &slug, Access::Write).await?;
    let id = parse_id(&file)?;
    let mac = match (&q.mac, id.per_device()) {
        (Some(m), true) => Some(
            m.parse::<MacAddress>()
                .map_err(|e| ApiError::invalid("mac", e.to_string()))?,
        ),
        _ => None,
    };
    let compiled = compile_body(id, &body)?;
    let (snap, index) = snapshot_with_tenant(&state, &slug).await?;
    let out = tpl::preview_template(&snap, index, &compiled, mac).map_err(|e| match e {
        PreviewError::MacRequired => {
            ApiError::invalid("mac", "a per-device template needs ?mac= of a phone")
        }
        PreviewError::NoSuchPhone => ApiError::NotFound("no such phone in this tenant".into()),
        PreviewError::NotUsed(m) => ApiError::invalid("mac", m),
        PreviewError::Render(m) => ApiError::invalid("template", m),
    })?;
    let out = out.ok_or_else(|| {
        ApiError::NotFound(
            "the template renders nothing: phones would get \"file not found\"".into(),
        )
    })?;
    let content_type = if id.format() == TemplateFormat::Xml {
        "text/xml"
    } else {
        "text/plain"
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("X-Content-SHA256", hex::encode(Sha256::digest(&out))))
        .body(out))
}
