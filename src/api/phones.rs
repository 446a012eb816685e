//! `/v1/tenants/{tenant}/phones`: create (POST), create-or-replace (PUT), read, merge (PATCH), delete, list.

use actix_web::http::header;
use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{check_if_match, json_body, next_page, PageParams};
use super::preview::{config_state, fill_config_state};
use super::tenants::{actor, load_tenant, with_etag};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, phones::ConfigState, phones::Lookup, phones::Phone, phones::PhoneFilter};
use crate::domain::settings::merge_patch;
use crate::domain::{
    FieldError, LineInput, MacAddress, Model, PhoneSpec, PhoneSpecInput, Settings, TenantSlug,
};

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_phone)
        .service(put_phone)
        .service(create_phone)
        .service(list_phones)
        .service(patch_phone)
        .service(delete_phone);
}

/// A page of phones.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhonePage {
    /// Phones, by MAC.
    pub items: Vec<Phone>,
    /// Cursor of the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/tenants/{tenant}/phones`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PhoneQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Only this model (`7960`).
    pub model: Option<String>,
    /// Only enabled (true) or disabled (false) phones.
    pub enabled: Option<bool>,
    /// Case-insensitive text in the label or a line number.
    pub q: Option<String>,
    /// Only phones in this configuration state.
    pub config_state: Option<ConfigState>,
}

/// Body of `POST /v1/tenants/{tenant}/phones`: the PUT body plus the MAC.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhone {
    /// MAC in any usual notation.
    #[schema(example = "00:04:f2:a1:b2:c3")]
    pub mac: String,
    /// Model number (`7960`).
    #[schema(example = "7960")]
    pub model: String,
    /// Top-right label on the phone.
    #[serde(default)]
    pub label: Option<String>,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the phone is provisioned (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Lines, 1 to the model's line-key count.
    pub lines: Vec<LineInput>,
    /// Per-phone settings overrides.
    #[serde(default)]
    #[schema(value_type = Option<Settings>)]
    pub settings: Option<serde_json::Value>,
}

fn parse_mac(s: &str) -> Result<MacAddress, ApiError> {
    s.parse()
        .map_err(|e: crate::domain::ParseMacError| ApiError::invalid("mac", e.to_string()))
}

fn parse_spec(input: PhoneSpecInput) -> Result<PhoneSpec, ApiError> {
    PhoneSpec::parse(input).map_err(ApiError::Invalid)
}

async fn read_back(
    c: &impl GenericClient,
    tenant: Uuid,
    mac: &MacAddress,
) -> Result<Phone, ApiError> {
    db::phones::find(c, tenant, mac)
        .await?
        .ok_or_else(|| ApiError::Internal("phone vanished inside its transaction".into()))
}

/// The end of every phone write: the audit event, the phone as stored, commit, firmware warnings, and the
/// response with its ETag (201 with `Location` for `phone.create`, else 200).
async fn finish_write(
    tx: deadpool_postgres::Transaction<'_>,
    state: &AppState,
    p: &Principal,
    tenant: &crate::db::tenants::Tenant,
    mac: &MacAddress,
    action: &str,
    detail: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let status = if action == "phone.create" {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    db::audit::record(
        &tx,
        &actor(p),
        Some((tenant.id, tenant.slug.as_str())),
        action,
        &mac.to_string(),
        detail,
    )
    .await?;
    let phone = read_back(&tx, tenant.id, mac).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(written(state, tenant.slug.as_str(), status, phone))
}

/// The response to a committed phone write: the phone as stored with its firmware warnings and ETag, and
/// for 201 its `Location`.
fn written(
    state: &AppState,
    slug: &str,
    status: actix_web::http::StatusCode,
    mut phone: Phone,
) -> HttpResponse {
    phone.warnings = super::firmware::warnings(&state.snapshot.current(), slug, &phone.settings);
    let mut resp = HttpResponse::build(status);
    if status == actix_web::http::StatusCode::CREATED {
        resp.insert_header((
            header::LOCATION,
            format!("/v1/tenants/{slug}/phones/{}", phone.mac),
        ));
    }
    with_etag(resp.json(&phone), phone.revision)
}

/// The common case of a create, a new MAC in an existing tenant, as one statement shared with the
/// tenant's other creates waiting at the same time ([`super::CreateBatcher`]). `None`: nothing written,
/// take the general path (it tells a missing tenant, a MAC of this tenant and one of another apart). A
/// conditional request (`If-Match`) always takes it.
async fn try_create(
    state: &AppState,
    p: &Principal,
    req: &HttpRequest,
    slug: &str,
    mac: &MacAddress,
    spec: &PhoneSpec,
) -> Result<Option<HttpResponse>, ApiError> {
    if req.headers().contains_key(header::IF_MATCH) || slug.parse::<TenantSlug>().is_err() {
        return Ok(None);
    }
    let create = db::phones::NewPhone {
        slug: slug.to_owned(),
        mac: *mac,
        spec: spec.clone(),
        actor: actor(p),
        detail: json!({ "model": spec.model }),
    };
    Ok(state
        .creates
        .create(&state.pool, create)
        .await?
        .map(|phone| written(state, slug, actix_web::http::StatusCode::CREATED, phone)))
}

fn other_tenant() -> ApiError {
    ApiError::Conflict("this MAC is registered to another tenant".into())
}

/// Create a phone; 409 if the MAC exists in this or any other tenant.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug")), request_body = CreatePhone, security(("bearer" = [])), responses(
    (status = 201, description = "created", body = Phone, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the MAC exists", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid values", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants/{tenant}/phones")]
pub async fn create_phone(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !p.may(&path, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let input: CreatePhone = json_body(&req, &body)?;
    let mac = parse_mac(&input.mac)?;
    let input = PhoneSpecInput {
        model: input.model,
        label: input.label,
        description: input.description,
        enabled: input.enabled,
        lines: input.lines,
        settings: input.settings,
    };
    let spec = parse_spec(input)?;
    if let Some(resp) = try_create(&state, &p, &req, &path, &mac, &spec).await? {
        return Ok(resp);
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &path, Access::Write, false).await?;
    if !db::phones::insert(&tx, tenant.id, &mac, &spec).await? {
        return Err(match db::phones::lock_owner(&tx, &mac).await? {
            Some((owner, _)) if owner == tenant.id => {
                ApiError::Conflict(format!("phone {mac} already exists; use PUT to replace it"))
            }
            _ => other_tenant(),
        });
    }
    finish_write(
        tx,
        &state,
        &p,
        &tenant,
        &mac,
        "phone.create",
        json!({ "model": spec.model }),
    )
    .await
}

/// Create or replace a phone (idempotent). 201 when created, 200 when replaced; 409 if another tenant owns
/// the MAC. A line sent without `password` keeps the password stored for that line position.
#[utoipa::path(tag = "phones", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation")), request_body = PhoneSpecInput, security(("bearer" = [])), responses(
    (status = 200, description = "replaced", body = Phone, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 201, description = "created", body = Phone, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "another tenant owns the MAC", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid values", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[put("/tenants/{tenant}/phones/{mac}")]
pub async fn put_phone(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mac = parse_mac(&mac)?;
    let spec = parse_spec(json_body(&req, &body)?)?;
    if let Some(resp) = try_create(&state, &p, &req, &slug, &mac, &spec).await? {
        return Ok(resp);
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &slug, Access::Write, false).await?;
    let mut owner = db::phones::lock_owner(&tx, &mac).await?;
    if owner.is_none() {
        check_if_match(&req, None)?;
        if db::phones::insert(&tx, tenant.id, &mac, &spec).await? {
            return finish_write(
                tx,
                &state,
                &p,
                &tenant,
                &mac,
                "phone.create",
                json!({ "model": spec.model }),
            )
            .await;
        }
        // Another request inserted the MAC between our look and our insert: decide on its row.
        owner = db::phones::lock_owner(&tx, &mac).await?;
    }
    let Some((owner_id, revision)) = owner else {
        return Err(ApiError::Conflict(
            "the phone changed concurrently; retry".into(),
        ));
    };
    if owner_id != tenant.id {
        return Err(other_tenant());
    }
    check_if_match(&req, Some(revision))?;
    db::phones::replace(&tx, &mac, &spec).await?;
    finish_write(
        tx,
        &state,
        &p,
        &tenant,
        &mac,
        "phone.replace",
        json!({ "model": spec.model }),
    )
    .await
}

/// Read a phone.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation")), security(("bearer" = [])), responses(
    (status = 200, description = "the phone", body = Phone, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or phone", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "not a MAC address", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/phones/{mac}")]
pub async fn get_phone(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac) = path.into_inner();
    if !p.may(&slug, Access::Read) {
        return Err(ApiError::Forbidden);
    }
    let mac = parse_mac(&mac)?;
    // A string that cannot be a slug names no tenant: no need to ask the database.
    if slug.parse::<TenantSlug>().is_err() {
        return Err(ApiError::NotFound("no such tenant".into()));
    }
    let client = state.shared.get().await?;
    let (mut phone, served) = match db::phones::lookup(&*client, &slug, &mac).await? {
        Lookup::NoTenant => return Err(ApiError::NotFound("no such tenant".into())),
        Lookup::NoPhone => return Err(ApiError::NotFound("no such phone in this tenant".into())),
        Lookup::Found(phone, served) => (phone, served),
    };
    drop(client);
    phone.config_state = config_state(&state.snapshot.current(), &slug, mac, &served);
    Ok(with_etag(HttpResponse::Ok().json(&phone), phone.revision))
}

/// Change part of a phone: an RFC 7396 merge patch over its PUT representation (`lines` replaces the whole
/// list; `settings` merges key by key).
#[utoipa::path(tag = "phones", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation")), request_body(content = Object, description = "merge patch over the phone's PUT body"), security(("bearer" = [])), responses(
    (status = 200, description = "the changed phone", body = Phone, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or phone", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid values", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[patch("/tenants/{tenant}/phones/{mac}")]
pub async fn patch_phone(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mac = parse_mac(&mac)?;
    let patch: serde_json::Value = json_body(&req, &body)?;
    if !patch.is_object() {
        return Err(ApiError::invalid("", "a merge patch must be a JSON object"));
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &slug, Access::Write, false).await?;
    match db::phones::lock_owner(&tx, &mac).await? {
        Some((owner, _)) if owner == tenant.id => {}
        _ => return Err(ApiError::NotFound("no such phone in this tenant".into())),
    }
    let current = read_back(&tx, tenant.id, &mac).await?;
    check_if_match(&req, Some(current.revision))?;
    let mut doc = json!({
        "model": current.model,
        "label": current.label,
        "description": current.description,
        "enabled": current.enabled,
        "lines": current.lines.iter().map(|l| json!({
            "number": l.number, "auth_name": l.auth_name, "display_name": l.display_name, "short_label": l.short_label,
        })).collect::<Vec<_>>(),
        "settings": current.settings.to_json(),
    });
    // Stored lines have no `null` members to keep: drop them so they read as absent.
    if let Some(lines) = doc["lines"].as_array_mut() {
        for l in lines {
            if let Some(o) = l.as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
        }
    }
    merge_patch(&mut doc, &patch);
    let input: PhoneSpecInput = serde_path_to_error::deserialize(doc).map_err(|e| {
        ApiError::Invalid(vec![FieldError::new(
            e.path().to_string(),
            e.into_inner().to_string(),
        )])
    })?;
    let spec = parse_spec(input)?;
    db::phones::replace(&tx, &mac, &spec).await?;
    let fields: Vec<String> = patch
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    finish_write(
        tx,
        &state,
        &p,
        &tenant,
        &mac,
        "phone.update",
        json!({ "fields": fields }),
    )
    .await
}

/// Delete a phone.
#[utoipa::path(tag = "phones", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation")), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or phone", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "not a MAC address", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[delete("/tenants/{tenant}/phones/{mac}")]
pub async fn delete_phone(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mac = parse_mac(&mac)?;
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &slug, Access::Write, false).await?;
    let revision = match db::phones::lock_owner(&tx, &mac).await? {
        Some((owner, revision)) if owner == tenant.id => revision,
        _ => return Err(ApiError::NotFound("no such phone in this tenant".into())),
    };
    check_if_match(&req, Some(revision))?;
    db::phones::delete(&tx, &mac).await?;
    db::audit::record(
        &tx,
        &actor(&p),
        Some((tenant.id, tenant.slug.as_str())),
        "phone.delete",
        &mac.to_string(),
        json!({}),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a tenant's phones, filtered by model, enabled and text.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), PhoneQuery), security(("bearer" = [])), responses(
    (status = 200, description = "a page of phones", body = PhonePage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/phones")]
pub async fn list_phones(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<PhoneQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after = page.after()?;
    let model = match &q.model {
        None => None,
        Some(m) => Some(
            m.parse::<Model>()
                .map_err(|e| ApiError::invalid("model", e.to_string()))?
                .as_str()
                .to_owned(),
        ),
    };
    if q.q
        .as_ref()
        .is_some_and(|s| s.chars().count() > 64 || s.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "q",
            "at most 64 characters, no control characters",
        ));
    }
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &path, Access::Read, false).await?;
    let filter = PhoneFilter {
        model,
        enabled: q.enabled,
        search: q.q,
    };
    let snap = state.snapshot.current();
    let mut items = Vec::new();
    let mut cursor = after;
    // Without a state filter one query fills the page; with one, scan forward in batches.
    loop {
        let batch_size = if q.config_state.is_some() {
            500
        } else {
            limit + 1
        };
        let mut batch =
            db::phones::list(&client, tenant.id, &filter, cursor.as_deref(), batch_size).await?;
        let exhausted = (batch.len() as i64) < batch_size;
        cursor = batch.last().map(|ph| ph.mac.to_string());
        fill_config_state(&client, &snap, tenant.id, tenant.slug.as_str(), &mut batch).await?;
        items.extend(
            batch
                .into_iter()
                .filter(|ph| q.config_state.is_none_or(|s| ph.config_state == s)),
        );
        if exhausted || items.len() as i64 > limit {
            break;
        }
    }
    let next_cursor = next_page(&mut items, limit, |ph| {
        db::encode_cursor(&ph.mac.to_string())
    });
    Ok(HttpResponse::Ok().json(PhonePage { items, next_cursor }))
}
