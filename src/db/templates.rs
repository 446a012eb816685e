//! Per-tenant template overrides (`tenant_templates`): one row per tenant and template id.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

/// A stored override, without its body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TemplateMeta {
    /// Template id (`SIPMAC.cnf`, …).
    pub file: String,
    /// SHA-256 of the body, hex.
    pub sha256: String,
    /// Size of the body in bytes.
    pub size: i64,
    /// First save.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Change sequence (ETag).
    #[serde(skip)]
    pub revision: i64,
}

const COLUMNS: &str = "file, encode(sha256(convert_to(body, 'UTF8')), 'hex'), octet_length(body)::bigint, created_at, updated_at, revision";

fn from_row(r: &Row) -> TemplateMeta {
    TemplateMeta {
        file: r.get(0),
        sha256: r.get(1),
        size: r.get(2),
        created_at: r.get(3),
        updated_at: r.get(4),
        revision: r.get(5),
    }
}

/// The override `file` of `tenant`; with `lock`, its row is locked until the transaction ends.
pub async fn find(
    c: &impl GenericClient,
    tenant: Uuid,
    file: &str,
    lock: bool,
) -> Result<Option<TemplateMeta>, DbError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(c.query_opt(
        &c.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tenant_templates WHERE tenant_id = $1 AND file = $2{lock}"
        ))
        .await?,
        &[&tenant, &file],
    )
    .await?
    .as_ref()
    .map(from_row))
}

/// The override `file` of `tenant` with its body.
pub async fn body(
    c: &impl GenericClient,
    tenant: Uuid,
    file: &str,
) -> Result<Option<(TemplateMeta, String)>, DbError> {
    Ok(c.query_opt(
        &c.prepare_cached(&format!(
            "SELECT {COLUMNS}, body FROM tenant_templates WHERE tenant_id = $1 AND file = $2"
        ))
        .await?,
        &[&tenant, &file],
    )
    .await?
    .map(|r| (from_row(&r), r.get(6))))
}

/// Every override of `tenant`, by id.
pub async fn list(c: &impl GenericClient, tenant: Uuid) -> Result<Vec<TemplateMeta>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tenant_templates WHERE tenant_id = $1 ORDER BY file"
            ))
            .await?,
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Saves an override; returns it and whether it is new. Saving the same body again changes nothing.
pub async fn upsert(
    c: &impl GenericClient,
    tenant: Uuid,
    file: &str,
    body: &str,
) -> Result<(TemplateMeta, bool), DbError> {
    let created = c
        .query_opt(
            &c.prepare_cached("SELECT 1 FROM tenant_templates WHERE tenant_id = $1 AND file = $2")
                .await?,
            &[&tenant, &file],
        )
        .await?
        .is_none();
    c.execute(
        &c.prepare_cached(
            "INSERT INTO tenant_templates (tenant_id, file, body) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, file) DO UPDATE SET body = EXCLUDED.body, updated_at = now()
         WHERE tenant_templates.body IS DISTINCT FROM EXCLUDED.body",
        )
        .await?,
        &[&tenant, &file, &body],
    )
    .await?;
    let meta = find(c, tenant, file, false)
        .await?
        .ok_or_else(|| DbError::Other("template vanished after upsert".into()))?;
    Ok((meta, created))
}

/// Deletes an override; false when there was none.
pub async fn delete(c: &impl GenericClient, tenant: Uuid, file: &str) -> Result<bool, DbError> {
    Ok(c.execute(
        &c.prepare_cached("DELETE FROM tenant_templates WHERE tenant_id = $1 AND file = $2")
            .await?,
        &[&tenant, &file],
    )
    .await?
        > 0)
}
