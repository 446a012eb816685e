//! Audit events: every mutation made through the API, with who made it.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

/// Who is acting: the token's subject and role.
#[derive(Clone, Debug)]
pub struct Actor {
    /// Token subject (`sub`).
    pub subject: String,
    /// Role name.
    pub role: String,
}

/// One recorded mutation.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Sequential id.
    pub id: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Token subject.
    pub subject: String,
    /// Token role.
    pub role: String,
    /// Tenant slug, when the change concerns one.
    pub tenant: Option<String>,
    /// What was done (`tenant.create`, `phone.replace`, …).
    pub action: String,
    /// What it was done to (a slug, a MAC, a network id).
    pub target: String,
    /// Extra detail (never a secret).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Records one event, inside the caller's transaction.
pub async fn record(
    c: &impl GenericClient,
    actor: &Actor,
    tenant: Option<(Uuid, &str)>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached("INSERT INTO audit_events (subject, role, tenant_id, tenant_slug, action, target, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)").await?,
        &[
            &actor.subject,
            &actor.role,
            &tenant.map(|t| t.0),
            &tenant.map(|t| t.1),
            &action,
            &target,
            &detail,
        ],
    )
    .await?;
    Ok(())
}

/// Lists events newest first, optionally of one tenant, after the cursor id.
pub async fn list(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached("SELECT id, at, subject, role, tenant_slug, action, target, detail FROM audit_events
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3").await?,
            &[&tenant, &before_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditEvent {
            id: r.get(0),
            at: r.get(1),
            subject: r.get(2),
            role: r.get(3),
            tenant: r.get(4),
            action: r.get(5),
            target: r.get(6),
            detail: r.get(7),
        })
        .collect())
}
