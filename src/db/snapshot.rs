//! Everything the provisioning snapshot needs, read in one REPEATABLE READ transaction.

use std::collections::HashMap;

use bytes::Bytes;
use tokio_postgres::{Client, IsolationLevel};
use uuid::Uuid;

use super::DbError;
use crate::domain::{MacAddress, Model, Prefix, Settings, TenantSlug};
use crate::snapshot::{LineView, PhoneView, Snapshot, StoredFile, TenantView};

/// Blob contents already in memory, by SHA-256, so that a reload fetches only new blobs.
pub type BlobCache = HashMap<[u8; 32], Bytes>;

fn settings(v: serde_json::Value) -> Settings {
    // Most rows carry `{}`: skip the parser for them.
    if v.as_object().is_some_and(|o| o.is_empty()) {
        return Settings::default();
    }
    Settings::from_json(v).unwrap_or_default()
}

/// Loads a consistent snapshot. `blobs` is updated with new contents and pruned of unused ones.
pub async fn load(client: &mut Client, blobs: &mut BlobCache) -> Result<Snapshot, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let sequence: i64 = tx
        .query_one(
            "SELECT GREATEST(
                (SELECT coalesce(max(revision), 0) FROM tenants), (SELECT coalesce(max(revision), 0) FROM networks),
                (SELECT coalesce(max(revision), 0) FROM phones), (SELECT coalesce(max(revision), 0) FROM files),
                (SELECT coalesce(max(revision), 0) FROM tombstones))",
            &[],
        )
        .await?
        .get(0);

    let mut tenants = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for r in tx
        .query(
            "SELECT id, slug, enabled, settings FROM tenants ORDER BY slug",
            &[],
        )
        .await?
    {
        let slug: String = r.get(1);
        let Ok(slug) = slug.parse::<TenantSlug>() else {
            continue;
        };
        index.insert(r.get(0), tenants.len());
        tenants.push(TenantView {
            id: r.get(0),
            slug,
            enabled: r.get(2),
            settings: settings(r.get(3)),
            files: HashMap::new(),
        });
    }

    let networks: Vec<(Prefix, usize)> = tx
        .query("SELECT tenant_id, cidr FROM networks", &[])
        .await?
        .iter()
        .filter_map(|r| {
            Some((
                Prefix::from_inner(r.get(1)),
                *index.get(&r.get::<_, Uuid>(0))?,
            ))
        })
        .collect();

    let mut lines: HashMap<String, Vec<LineView>> = HashMap::new();
    for r in tx
        .query("SELECT phone_mac, number, auth_name, password, display_name, short_label FROM phone_lines ORDER BY phone_mac, position", &[])
        .await?
    {
        lines.entry(r.get(0)).or_default().push(LineView {
            number: r.get(1),
            auth_name: r.get(2),
            password: r.get::<_, Option<String>>(3).unwrap_or_default(),
            display_name: r.get(4),
            short_label: r.get(5),
        });
    }
    let mut phones = Vec::new();
    for r in tx
        .query(
            "SELECT mac, tenant_id, model, label, enabled, settings FROM phones",
            &[],
        )
        .await?
    {
        let mac_text: String = r.get(0);
        let (Some(mac), Some(&tenant), Ok(model)) = (
            MacAddress::from_bare_hex(&mac_text),
            index.get(&r.get::<_, Uuid>(1)),
            r.get::<_, String>(2).parse::<Model>(),
        ) else {
            continue;
        };
        phones.push(PhoneView {
            tenant,
            mac,
            model,
            label: r.get(3),
            enabled: r.get(4),
            lines: lines.remove(&mac_text).unwrap_or_default(),
            settings: settings(r.get(5)),
        });
    }

    let file_rows = tx
        .query("SELECT tenant_id, name, sha256 FROM files", &[])
        .await?;
    let mut wanted: Vec<Vec<u8>> = Vec::new();
    for r in &file_rows {
        let sha: Vec<u8> = r.get(2);
        if let Ok(key) = <[u8; 32]>::try_from(sha.as_slice()) {
            if !blobs.contains_key(&key) {
                wanted.push(sha);
            }
        }
    }
    if !wanted.is_empty() {
        for r in tx
            .query(
                "SELECT sha256, content FROM blobs WHERE sha256 = ANY($1)",
                &[&wanted],
            )
            .await?
        {
            let sha: Vec<u8> = r.get(0);
            let content: Vec<u8> = r.get(1);
            if let Ok(key) = <[u8; 32]>::try_from(sha.as_slice()) {
                blobs.insert(key, Bytes::from(content));
            }
        }
    }
    tx.commit().await?;

    let mut used = std::collections::HashSet::new();
    let mut global = Vec::new();
    for r in &file_rows {
        let sha: Vec<u8> = r.get(2);
        let Ok(key) = <[u8; 32]>::try_from(sha.as_slice()) else {
            continue;
        };
        let Some(bytes) = blobs.get(&key) else {
            continue;
        };
        used.insert(key);
        let file = StoredFile {
            sha256: key,
            bytes: bytes.clone(),
        };
        match r.get::<_, Option<Uuid>>(0) {
            None => global.push((r.get::<_, String>(1), file)),
            Some(t) => {
                if let Some(&i) = index.get(&t) {
                    tenants[i].files.insert(r.get(1), file);
                }
            }
        }
    }
    blobs.retain(|k, _| used.contains(k));
    Ok(Snapshot::build(sequence, tenants, networks, phones, global))
}
