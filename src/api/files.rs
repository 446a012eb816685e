//! `/v1/files` (global, platform admins write) and `/v1/tenants/{tenant}/files` (a tenant's files, which
//! shadow global files of the same name): raw uploads served to phones byte for byte.

use actix_web::http::header;
use actix_web::{delete, get, put, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{check_if_match, next_page, PageParams};
use super::tenants::{actor, scoped_tenant};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, files::FileMeta};
use crate::domain::text::FileName;

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_global)
        .service(put_global)
        .service(get_global)
        .service(delete_global)
        .service(list_tenant_files)
        .service(put_tenant_file)
        .service(get_tenant_file)
        .service(delete_tenant_file);
}

/// Raw file content.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}
impl ToSchema for Binary {}

/// A page of file metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilePage {
    /// Files by name.
    pub items: Vec<FileMeta>,
    /// Cursor of the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// The largest upload (bytes).
pub const MAX_FILE_BYTES: usize = 256 * 1024 * 1024;

fn parse_name(name: &str) -> Result<FileName, ApiError> {
    FileName::parse(name).map_err(|m| ApiError::invalid("name", m))
}

async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > MAX_FILE_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "files are limited to {} MiB",
                MAX_FILE_BYTES >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn store(
    state: &AppState,
    p: &Principal,
    req: &HttpRequest,
    tenant: Option<(Uuid, String)>,
    name: &FileName,
    body: Vec<u8>,
) -> Result<HttpResponse, ApiError> {
    let sha: [u8; 32] = Sha256::digest(&body).into();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut client = state.pool.get().await.map_err(db::DbError::from)?;
        let tx = client.transaction().await.map_err(db::DbError::from)?;
        let tenant_id = tenant.as_ref().map(|t| t.0);
        let current = db::files::find(&tx, tenant_id, name.as_str()).await?;
        check_if_match(req, current.as_ref().map(|f| f.revision))?;
        db::files::put_blob(&tx, &sha, &body).await?;
        let (meta, created) =
            match db::files::upsert(&tx, tenant_id, name.as_str(), &sha, body.len() as i64).await {
                // Two uploads of a new name raced; the second one replaces the first.
                Err(db::DbError::Constraint { .. }) if attempt == 1 => continue,
                other => other?,
            };
        let scope = tenant.as_ref().map(|(id, slug)| (*id, slug.as_str()));
        db::audit::record(
            &tx,
            &actor(p),
            scope,
            if created {
                "file.create"
            } else {
                "file.replace"
            },
            name.as_str(),
            json!({ "sha256": meta.sha256, "size": meta.size }),
        )
        .await?;
        tx.commit().await.map_err(db::DbError::from)?;
        let mut resp = if created {
            HttpResponse::Created()
        } else {
            HttpResponse::Ok()
        };
        return Ok(super::tenants::with_etag(resp.json(&meta), meta.revision));
    }
}

async fn fetch(
    state: &AppState,
    tenant: Option<Uuid>,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    // A name that could never have been stored is simply not there.
    FileName::parse(name).map_err(|_| ApiError::NotFound("no such file".into()))?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let (meta, content) = db::files::content(&client, tenant, name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such file".into()))?;
    let resp = HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("X-Content-SHA256", meta.sha256.clone()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", meta.name),
        ))
        .body(content);
    Ok(super::tenants::with_etag(resp, meta.revision))
}

async fn remove(
    state: &AppState,
    p: &Principal,
    req: &HttpRequest,
    tenant: Option<(Uuid, String)>,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    FileName::parse(name).map_err(|_| ApiError::NotFound("no such file".into()))?;
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant_id = tenant.as_ref().map(|t| t.0);
    let current = db::files::find(&tx, tenant_id, name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such file".into()))?;
    check_if_match(req, Some(current.revision))?;
    db::files::delete(&tx, tenant_id, name).await?;
    let scope = tenant.as_ref().map(|(id, slug)| (*id, slug.as_str()));
    db::audit::record(
        &tx,
        &actor(p),
        scope,
        "file.delete",
        name,
        json!({ "sha256": current.sha256 }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn page(
    state: &AppState,
    tenant: Option<Uuid>,
    q: &PageParams,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit()?;
    let after = q.after()?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let mut items = db::files::list(&client, tenant, after.as_deref(), limit + 1).await?;
    let next_cursor = next_page(&mut items, limit, |f| db::encode_cursor(&f.name));
    Ok(HttpResponse::Ok().json(FilePage { items, next_cursor }))
}

/// List global files (any authenticated caller: every tenant's phones see them).
#[utoipa::path(tag = "files", params(PageParams), security(("bearer" = [])), responses(
    (status = 200, description = "a page of global files", body = FilePage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid parameter (limit, cursor, MAC, filter)", body = Problem, content_type = "application/problem+json")
))]
#[get("/files")]
pub async fn list_global(
    state: web::Data<AppState>,
    _p: Principal,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    page(&state, None, &q).await
}

/// Upload or replace a global file (platform admin). The body is the raw content.
#[utoipa::path(tag = "files", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("name" = String, Path, description = "file name")), request_body(content = Binary, content_type = "application/octet-stream"), security(("bearer" = [])), responses(
    (status = 200, description = "replaced", body = FileMeta, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 201, description = "created", body = FileMeta, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad name", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[put("/files/{name:.+}")]
pub async fn put_global(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if !p.is_platform_admin() {
        return Err(ApiError::Forbidden);
    }
    let name = parse_name(&path)?;
    let body = read_body(payload).await?;
    store(&state, &p, &req, None, &name, body).await
}

/// Download a global file.
#[utoipa::path(tag = "files", params(("name" = String, Path, description = "file name")), security(("bearer" = [])), responses(
    (status = 200, description = "the content", body = Binary, content_type = "application/octet-stream"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such file", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/files/{name:.+}")]
pub async fn get_global(
    state: web::Data<AppState>,
    _p: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    fetch(&state, None, &path).await
}

/// Delete a global file (platform admin).
#[utoipa::path(tag = "files", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("name" = String, Path, description = "file name")), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "not a platform admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such file", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[delete("/files/{name:.+}")]
pub async fn delete_global(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !p.is_platform_admin() {
        return Err(ApiError::Forbidden);
    }
    remove(&state, &p, &req, None, &path).await
}

/// List a tenant's own files.
#[utoipa::path(tag = "files", params(("tenant" = String, Path, description = "tenant slug"), PageParams), security(("bearer" = [])), responses(
    (status = 200, description = "a page of the tenant's files", body = FilePage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid parameter (limit, cursor, MAC, filter)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/files")]
pub async fn list_tenant_files(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let t = scoped_tenant(&state, &p, &path, Access::Read).await?;
    page(&state, Some(t.id), &q).await
}

/// Upload or replace a tenant file; it shadows a global file of the same name for this tenant.
#[utoipa::path(tag = "files", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("name" = String, Path, description = "file name")), request_body(content = Binary, content_type = "application/octet-stream"), security(("bearer" = [])), responses(
    (status = 200, description = "replaced", body = FileMeta, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 201, description = "created", body = FileMeta, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad name", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[put("/tenants/{tenant}/files/{name:.+}")]
pub async fn put_tenant_file(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (slug, name) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let name = parse_name(&name)?;
    let t = scoped_tenant(&state, &p, &slug, Access::Write).await?;
    let body = read_body(payload).await?;
    store(
        &state,
        &p,
        &req,
        Some((t.id, t.slug.to_string())),
        &name,
        body,
    )
    .await
}

/// Download a tenant file.
#[utoipa::path(tag = "files", params(("tenant" = String, Path, description = "tenant slug"), ("name" = String, Path, description = "file name")), security(("bearer" = [])), responses(
    (status = 200, description = "the content", body = Binary, content_type = "application/octet-stream"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or file", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/files/{name:.+}")]
pub async fn get_tenant_file(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, name) = path.into_inner();
    let t = scoped_tenant(&state, &p, &slug, Access::Read).await?;
    fetch(&state, Some(t.id), &name).await
}

/// Delete a tenant file.
#[utoipa::path(tag = "files", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("name" = String, Path, description = "file name")), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or file", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[delete("/tenants/{tenant}/files/{name:.+}")]
pub async fn delete_tenant_file(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (slug, name) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let t = scoped_tenant(&state, &p, &slug, Access::Write).await?;
    remove(&state, &p, &req, Some((t.id, t.slug.to_string())), &name).await
}
