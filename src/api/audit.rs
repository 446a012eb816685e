//! `/v1/audit-events`: who changed what. Platform admins see every tenant; tenant admins their own.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::next_page;
use super::{ApiError, AppState, Problem};
use crate::auth::{Principal, Role};
use crate::db::{self, audit::AuditEvent};

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_audit_events);
}

/// Query of `GET /v1/audit-events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this tenant (platform admins; tenant admins always see only their own).
    pub tenant: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// A page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Events.
    pub items: Vec<AuditEvent>,
    /// Cursor of the next (older) page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// List audit events.
#[utoipa::path(tag = "audit", params(AuditQuery), security(("bearer" = [])), responses(
    (status = 200, description = "a page of events", body = AuditPage),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers and other tenants' admins", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json")
))]
#[get("/audit-events")]
pub async fn list_audit_events(
    state: web::Data<AppState>,
    p: Principal,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = super::extract::PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let before = match page.after()? {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor returned by this API"))?,
        ),
    };
    let slug = match (p.role, &p.tenant, &q.tenant) {
        (Role::PlatformAdmin, _, t) => t.clone(),
        (Role::TenantAdmin, Some(own), None) => Some(own.to_string()),
        (Role::TenantAdmin, Some(own), Some(t)) if t == own.as_str() => Some(t.clone()),
        _ => return Err(ApiError::Forbidden),
    };
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant_id = match &slug {
        None => None,
        Some(s) if s.parse::<crate::domain::TenantSlug>().is_err() => {
            return Err(ApiError::NotFound("no such tenant".into()))
        }
        Some(s) => Some(
            db::tenants::find(&client, s, false)
                .await?
                .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?
                .id,
        ),
    };
    let mut items = db::audit::list(&client, tenant_id, before, limit + 1).await?;
    let next_cursor = next_page(&mut items, limit, |e| db::encode_cursor(&e.id.to_string()));
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}
