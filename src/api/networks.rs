//! `/v1/tenants/{tenant}/networks`: the prefixes whose source addresses belong to a tenant.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{check_if_match, json_body, next_page, PageParams};
use super::tenants::{actor, load_tenant, with_etag};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, networks::Network};
use crate::domain::Prefix;

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_network)
        .service(list_networks)
        .service(get_network)
        .service(delete_network);
}

/// Body of `POST /v1/tenants/{tenant}/networks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    /// IPv4 or IPv6 prefix with host bits zero.
    #[schema(value_type = String, example = "10.20.0.0/16")]
    pub cidr: Prefix,
    /// Free text, at most 200 characters.
    #[serde(default)]
    #[schema(example = "HQ")]
    pub description: Option<String>,
}

/// A page of networks.
#[derive(Debug, Serialize, ToSchema)]
pub struct NetworkPage {
    /// Networks.
    pub items: Vec<Network>,
    /// Cursor of the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// The shortest prefix a tenant admin may claim (a platform admin may claim any).
fn min_tenant_prefix(p: &Prefix) -> u8 {
    if p.first_address().is_ipv4() {
        8
    } else {
        32
    }
}

/// Add a network to a tenant. 409 when it overlaps another tenant's network.
#[utoipa::path(tag = "networks", params(("tenant" = String, Path, description = "tenant slug")), request_body = CreateNetwork, security(("bearer" = [])), responses(
    (status = 201, description = "created", body = Network, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "overlaps another tenant's network, or already exists", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid values", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants/{tenant}/networks")]
pub async fn create_network(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !p.may(&path, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let input: CreateNetwork = json_body(&req, &body)?;
    let description = input.description.unwrap_or_default();
    if description.chars().count() > 200 || description.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "description",
            "at most 200 characters, no control characters",
        ));
    }
    if !p.is_platform_admin() && input.cidr.len() < min_tenant_prefix(&input.cidr) {
        return Err(ApiError::invalid(
            "cidr",
            format!(
                "prefixes shorter than /{} can only be assigned by a platform admin",
                min_tenant_prefix(&input.cidr)
            ),
        ));
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &path, Access::Write, false).await?;
    let network = match db::networks::insert(&tx, tenant.id, &input.cidr, &description).await {
        Ok(n) => n,
        // A deadlock between two overlapping inserts means the other one won: report the overlap.
        Err(e @ (db::DbError::Constraint { .. } | db::DbError::Concurrent)) => {
            drop(tx);
            let constraint = match e {
                db::DbError::Constraint { constraint } => constraint,
                _ => String::new(),
            };
            return Err(overlap_error(&state, &p, tenant.id, &input.cidr, &constraint).await);
        }
        Err(e) => return Err(e.into()),
    };
    db::audit::record(
        &tx,
        &actor(&p),
        Some((tenant.id, tenant.slug.as_str())),
        "network.create",
        &network.id.to_string(),
        json!({ "cidr": network.cidr }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(with_etag(
        HttpResponse::Created().json(&network),
        network.revision,
    ))
}

async fn overlap_error(
    state: &AppState,
    p: &Principal,
    tenant: Uuid,
    cidr: &Prefix,
    constraint: &str,
) -> ApiError {
    if constraint == "networks_tenant_cidr_key" {
        return ApiError::Conflict(format!("this tenant already has network {cidr}"));
    }
    let Ok(client) = state.pool.get().await else {
        return ApiError::Unavailable;
    };
    match db::networks::find_overlap(&client, tenant, cidr).await {
        Ok(Some((other, slug))) if p.is_platform_admin() => ApiError::Conflict(format!(
            "{cidr} overlaps {other}, a network of tenant {slug}"
        )),
        Ok(Some((other, _))) => ApiError::Conflict(format!(
            "{cidr} overlaps {other}, a network of another tenant"
        )),
        _ => ApiError::Conflict(format!("{cidr} overlaps a network of another tenant")),
    }
}

/// List a tenant's networks.
#[utoipa::path(tag = "networks", params(("tenant" = String, Path, description = "tenant slug"), PageParams), security(("bearer" = [])), responses(
    (status = 200, description = "a page of networks", body = NetworkPage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "invalid parameter (limit, cursor, MAC, filter)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/networks")]
pub async fn list_networks(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit()?;
    let after = match q.after()? {
        None => None,
        Some(a) => Some(
            a.parse::<Uuid>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor returned by this API"))?,
        ),
    };
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &path, Access::Read, false).await?;
    let mut items = db::networks::list(&client, tenant.id, after, limit + 1).await?;
    let next_cursor = next_page(&mut items, limit, |n| db::encode_cursor(&n.id.to_string()));
    Ok(HttpResponse::Ok().json(NetworkPage { items, next_cursor }))
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    s.parse()
        .map_err(|_| ApiError::NotFound("no such network".into()))
}

/// Read one network.
#[utoipa::path(tag = "networks", params(("tenant" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "network id")), security(("bearer" = [])), responses(
    (status = 200, description = "the network", body = Network, headers(("ETag" = String, description = "revision of the resource; send it in If-Match"))),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or network", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/networks/{id}")]
pub async fn get_network(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &slug, Access::Read, false).await?;
    let n = db::networks::find(&client, tenant.id, parse_id(&id)?, false)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such network".into()))?;
    Ok(with_etag(HttpResponse::Ok().json(&n), n.revision))
}

/// Remove a network.
#[utoipa::path(tag = "networks", params(("If-Match" = Option<String>, Header, description = "ETag of a previous read; 412 when the resource has changed since"), ("tenant" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "network id")), security(("bearer" = [])), responses(
    (status = 204, description = "deleted"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or network", body = Problem, content_type = "application/problem+json"),
    (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[delete("/tenants/{tenant}/networks/{id}")]
pub async fn delete_network(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &slug, Access::Write, false).await?;
    let n = db::networks::find(&tx, tenant.id, parse_id(&id)?, true)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such network".into()))?;
    check_if_match(&req, Some(n.revision))?;
    db::networks::delete(&tx, n.id).await?;
    db::audit::record(
        &tx,
        &actor(&p),
        Some((tenant.id, tenant.slug.as_str())),
        "network.delete",
        &n.id.to_string(),
        json!({ "cidr": n.cidr }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(HttpResponse::NoContent().finish())
}
