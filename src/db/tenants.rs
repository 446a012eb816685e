//! Tenants: insert, find, list, update, delete.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use crate::domain::{Settings, TenantSlug};

/// A stored tenant.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Tenant {
    /// Identifier.
    pub id: Uuid,
    /// Unique short name, used in URLs.
    #[schema(value_type = String, example = "acme")]
    pub slug: TenantSlug,
    /// Display name.
    pub name: String,
    /// Whether its phones are provisioned.
    pub enabled: bool,
    /// Tenant-wide settings (inherited by its phones).
    pub settings: Settings,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Change sequence number of the last write (the ETag).
    #[serde(skip)]
    pub revision: i64,
    /// Problems worth knowing that did not stop the write (e.g. a pinned firmware load not uploaded yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

const COLUMNS: &str = "id, slug, name, enabled, settings, created_at, updated_at, revision";

fn from_row(r: &Row) -> Tenant {
    let slug: String = r.get(1);
    Tenant {
        id: r.get(0),
        // Rows are input too: the CHECK constraint guarantees the form, and a bad one is shown as-is.
        slug: slug
            .parse()
            .unwrap_or_else(|_| "invalid".parse().expect("valid slug")),
        name: r.get(2),
        enabled: r.get(3),
        settings: Settings::from_json(r.get(4)).unwrap_or_default(),
        created_at: r.get(5),
        updated_at: r.get(6),
        revision: r.get(7),
        warnings: Vec::new(),
    }
}

/// Inserts a tenant.
pub async fn insert(
    c: &impl GenericClient,
    slug: &TenantSlug,
    name: &str,
    enabled: bool,
    settings: &Settings,
) -> Result<Tenant, DbError> {
    let row = c
        .query_one(
            &c.prepare_cached(&format!(
                "INSERT INTO tenants (id, slug, name, enabled, settings) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            )).await?,
            &[&Uuid::new_v4(), &slug.as_str(), &name, &enabled, &settings.to_json()],
        )
        .await?;
    Ok(from_row(&row))
}

/// Finds a tenant by slug; with `lock`, also locks its row until the transaction ends.
pub async fn find(
    c: &impl GenericClient,
    slug: &str,
    lock: bool,
) -> Result<Option<Tenant>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tenants WHERE slug = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(c.query_opt(&c.prepare_cached(&sql).await?, &[&slug])
        .await?
        .as_ref()
        .map(from_row))
}

/// Lists tenants by slug, after `after`, at most `limit`.
pub async fn list(
    c: &impl GenericClient,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Tenant>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(&format!("SELECT {COLUMNS} FROM tenants WHERE slug > coalesce($1::text, '') ORDER BY slug LIMIT $2")).await?,
            &[&after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Overwrites name, enabled and settings.
pub async fn update(
    c: &impl GenericClient,
    id: Uuid,
    name: &str,
    enabled: bool,
    settings: &Settings,
) -> Result<Tenant, DbError> {
    let row = c
        .query_one(
            &c.prepare_cached(&format!(
                "UPDATE tenants SET name = $2, enabled = $3, settings = $4, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
            )).await?,
            &[&id, &name, &enabled, &settings.to_json()],
        )
        .await?;
    Ok(from_row(&row))
}

/// How many phones and networks a tenant has.
pub async fn dependants(c: &impl GenericClient, id: Uuid) -> Result<(i64, i64), DbError> {
    let row = c
        .query_one(
            &c.prepare_cached("SELECT (SELECT count(*) FROM phones WHERE tenant_id = $1), (SELECT count(*) FROM networks WHERE tenant_id = $1)").await?,
            &[&id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Deletes a tenant (its networks and phones go with it).
pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached("DELETE FROM tenants WHERE id = $1")
            .await?,
        &[&id],
    )
    .await?;
    Ok(())
}
