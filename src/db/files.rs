//! Stored files: names (global or per tenant) pointing at content-addressed, deduplicated blobs.

use deadpool_postgres::GenericClient;
use serde::Serialize;
use time::OffsetDateTime;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

/// A stored file's metadata.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FileMeta {
    /// File name as phones request it.
    pub name: String,
    /// `global` or `tenant`.
    pub scope: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// First upload.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change of the content.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Change sequence (ETag).
    #[serde(skip)]
    pub revision: i64,
}

const COLUMNS: &str = "name, tenant_id, sha256, size, created_at, updated_at, revision";

fn from_row(r: &Row) -> FileMeta {
    FileMeta {
        name: r.get(0),
        scope: if r.get::<_, Option<Uuid>>(1).is_some() {
            "tenant"
        } else {
            "global"
        }
        .into(),
        sha256: hex::encode(r.get::<_, Vec<u8>>(2)),
        size: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
        revision: r.get(6),
    }
}

/// Stores a blob unless the same content is already stored.
pub async fn put_blob(
    c: &impl GenericClient,
    sha256: &[u8; 32],
    content: &[u8],
) -> Result<(), DbError> {
    c.execute(
        &c.prepare_cached("INSERT INTO blobs (sha256, size, content) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING").await?,
        &[&sha256.as_slice(), &(content.len() as i64), &content],
    )
    .await?;
    Ok(())
}

/// Points `name` at a blob; returns the metadata and whether the name is new. Unreferenced blobs are removed.
pub async fn upsert(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    name: &str,
    sha256: &[u8; 32],
    size: i64,
) -> Result<(FileMeta, bool), DbError> {
    let previous: Option<Vec<u8>> = c
        .query_opt(&c.prepare_cached("SELECT sha256 FROM files WHERE tenant_id IS NOT DISTINCT FROM $1 AND name = $2 FOR UPDATE").await?, &[&tenant, &name])
        .await?
        .map(|r| r.get(0));
    let row = match &previous {
        None => {
            c.query_one(
                &c.prepare_cached(&format!("INSERT INTO files (id, tenant_id, name, sha256, size) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}")).await?,
                &[&Uuid::new_v4(), &tenant, &name, &sha256.as_slice(), &size],
            )
            .await?
        }
        Some(old) if old.as_slice() == sha256.as_slice() => {
            // Same content again: nothing changes (no new revision, no notification).
            c.query_one(&c.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE tenant_id IS NOT DISTINCT FROM $1 AND name = $2")).await?, &[&tenant, &name])
                .await?
        }
        Some(_) => {
            c.query_one(
                &c.prepare_cached(&format!(
                    "UPDATE files SET sha256 = $3, size = $4, updated_at = now() WHERE tenant_id IS NOT DISTINCT FROM $1 AND name = $2
                     RETURNING {COLUMNS}"
                )).await?,
                &[&tenant, &name, &sha256.as_slice(), &size],
            )
            .await?
        }
    };
    let created = previous.is_none();
    if let Some(old) = previous {
        if old.as_slice() != sha256.as_slice() {
            collect_blob(c, &old).await?;
        }
    }
    Ok((from_row(&row), created))
}

/// Removes a blob that no file names any more.
async fn collect_blob(c: &impl GenericClient, sha256: &[u8]) -> Result<(), DbError> {
    c.execute(&c.prepare_cached("DELETE FROM blobs WHERE sha256 = $1 AND NOT EXISTS (SELECT 1 FROM files WHERE sha256 = $1)").await?, &[&sha256]).await?;
    Ok(())
}

/// A file's metadata.
pub async fn find(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    name: &str,
) -> Result<Option<FileMeta>, DbError> {
    Ok(c.query_opt(
        &c.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE tenant_id IS NOT DISTINCT FROM $1 AND name = $2"
        ))
        .await?,
        &[&tenant, &name],
    )
    .await?
    .as_ref()
    .map(from_row))
}

/// A file's content.
pub async fn content(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    name: &str,
) -> Result<Option<(FileMeta, Vec<u8>)>, DbError> {
    let row = c
        .query_opt(
            &c.prepare_cached(&format!(
                "SELECT {}, b.content FROM files f JOIN blobs b ON b.sha256 = f.sha256
                 WHERE f.tenant_id IS NOT DISTINCT FROM $1 AND f.name = $2",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("f.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .await?,
            &[&tenant, &name],
        )
        .await?;
    Ok(row.map(|r| (from_row(&r), r.get(7))))
}

/// Lists files of one scope by name after `after`.
pub async fn list(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<FileMeta>, DbError> {
    let rows = c
        .query(
            &c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM files WHERE tenant_id IS NOT DISTINCT FROM $1 AND ($2::text IS NULL OR name > $2)
                 ORDER BY name LIMIT $3"
            )).await?,
            &[&tenant, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Deletes a file (and its blob when nothing else uses it); false when there was none.
pub async fn delete(
    c: &impl GenericClient,
    tenant: Option<Uuid>,
    name: &str,
) -> Result<bool, DbError> {
    let row = c
        .query_opt(&c.prepare_cached("DELETE FROM files WHERE tenant_id IS NOT DISTINCT FROM $1 AND name = $2 RETURNING sha256").await?, &[&tenant, &name])
        .await?;
    match row {
        None => Ok(false),
        Some(r) => {
            let sha: Vec<u8> = r.get(0);
            collect_blob(c, &sha).await?;
            Ok(true)
        }
    }
}
