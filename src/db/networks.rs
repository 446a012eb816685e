//! Networks: the prefixes that map a request's source address to its tenant.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use crate::domain::Prefix;

/// A stored network.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Network {
    /// Identifier.
    pub id: Uuid,
    /// The prefix (`10.20.0.0/16`).
    #[schema(value_type = String, example = "10.20.0.0/16")]
    pub cidr: Prefix,
    /// Free text.
    pub description: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Change sequence number (the ETag).
    #[serde(skip)]
    pub revision: i64,
}

const COLUMNS: &str = "id, cidr, description, created_at, revision";

fn from_row(r: &Row) -> Network {
    Network {
        id: r.get(0),
        cidr: Prefix::from_inner(r.get(1)),
        description: r.get(2),
        created_at: r.get(3),
        revision: r.get(4),
    }
}

/// Inserts a network for a tenant.
pub async fn insert(
    c: &impl GenericClient,
    tenant: Uuid,
    cidr: &Prefix,
    description: &str,
) -> Result<Network, DbError> {
    let row = c
        .query_one(
            &c.prepare_cached(&format!("INSERT INTO networks (id, tenant_id, cidr, description) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}")).await?,
            &[&Uuid::new_v4(), &tenant, &cidr.inner(), &description],
        )
        .await?;
    Ok(from_row(&row))
}

/// A network of another tenant that overlaps `cidr`: its prefix and the owner's slug.
pub async fn find_overlap(
    c: &impl GenericClient,
    tenant: Uuid,
    cidr: &Prefix,
) -> Result<Option<(Prefix, String)>, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached(
                "SELECT n.cidr, t.slug FROM networks n JOIN tenants t ON t.id = n.tenant_id
             WHERE n.cidr && $2::cidr AND n.tenant_id <> $1 ORDER BY masklen(n.cidr) LIMIT 1",
            )
            .await?,
            &[&tenant, &cidr.inner()],
        )
        .await?;
    Ok(row.map(|r| (Prefix::from_inner(r.get(0)), r.get(1))))
}

/// Lists a tenant's networks by id after `after`.
pub async fn list(
    c: &impl GenericClient,
    tenant: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Network>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM networks WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
            )).await?,
            &[&tenant, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Finds one network of a tenant; with `lock`, locks it.
pub async fn find(
    c: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
    lock: bool,
) -> Result<Option<Network>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM networks WHERE tenant_id = $1 AND id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(c.query_opt(&c.prepare_cached(&sql).await?, &[&tenant, &id])
        .await?
        .as_ref()
        .map(from_row))
}

/// Deletes one network.
pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached("DELETE FROM networks WHERE id = $1")
            .await?,
        &[&id],
    )
    .await?;
    Ok(())
}
