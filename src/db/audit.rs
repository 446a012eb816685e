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

const COLUMNS: &str = "id, at, subject, role, tenant_slug, action, target, detail";

/// Lists events newest first, optionally of one tenant, after the cursor id.
pub async fn list(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    // Both read only the page: the cursor is an index condition, and a tenant's events are ordered by
    // `-id`, an order only its index `(tenant_id, (-id))` has (sql/V12). With `ORDER BY id DESC` a
    // generic plan read the primary key backwards past every other tenant's events whenever the
    // statistics had seen one tenant only.
    let rows = match tenant {
        Some(tenant) => {
            c.query(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM audit_events WHERE tenant_id = $1 AND {}
                     ORDER BY -id LIMIT $3",
                    super::newest_first_before("$2", "id")
                ))
                .await?,
                &[&tenant, &before_id, &limit],
            )
            .await?
        }
        None => {
            c.query(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM audit_events WHERE id < coalesce($1::bigint, {})
                     ORDER BY id DESC LIMIT $2",
                    i64::MAX
                ))
                .await?,
                &[&before_id, &limit],
            )
            .await?
        }
    };
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
