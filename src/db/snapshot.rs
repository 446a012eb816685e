//! Everything the provisioning snapshot needs, read in one REPEATABLE READ transaction; in full, or as a
//! delta over the previous snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio_postgres::{IsolationLevel, Transaction};
use uuid::Uuid;

use super::DbError;
use crate::domain::{MacAddress, Model, Prefix, Settings, TenantSlug};
use crate::snapshot::{
    CompiledTemplate, LineView, PhoneView, Snapshot, StoredFile, TemplateId, TenantView,
};

/// Blob contents already in memory, by SHA-256, so that a reload fetches only new blobs.
pub type BlobCache = HashMap<[u8; 32], Bytes>;

/// A loaded snapshot and the database snapshot (`pg_current_snapshot()`) it reflects.
pub struct Loaded {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The transaction snapshot of the load, for the next delta.
    pub xsnapshot: String,
    /// Whether only changed phones were read.
    pub delta: bool,
}

/// Rows written by transactions that database snapshot `$1` could not see.
const UNSEEN: &str =
    "txid >= pg_snapshot_xmin($1::text::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::text::pg_snapshot)";

fn settings(v: serde_json::Value) -> Settings {
    // Most rows carry `{}`: skip the parser for them.
    if v.as_object().is_some_and(|o| o.is_empty()) {
        return Settings::default();
    }
    Settings::from_json(v).unwrap_or_default()
}

/// Loads a consistent snapshot. With `previous` (a snapshot and the database snapshot it reflects), only
/// the phones written since are read and the others are shared with it, and only the tenants written
/// since have their settings read and parsed; tenants' names, networks and file names (small) are always
/// read whole, and a change in the set of tenants forces a full load. `blobs` is
/// updated with new contents and pruned of unused ones.
pub async fn load(
    client: &mut tokio_postgres::Client,
    blobs: &mut BlobCache,
    previous: Option<(&Snapshot, &str)>,
) -> Result<Loaded, DbError> {
    load_sharing(client, blobs, previous, previous.map(|(prev, _)| prev)).await
}

/// A full load (the refresher's periodic safety net) that shares with `current` each phone whose row is
/// what `current` holds, under the same tenant index, and when the tenants are the same and few phones
/// changed, builds the snapshot from `current` like a delta. Otherwise each reload allocated a second copy
/// of every phone and freed the first: 1,000,000 phones idle, ~4.7 s of dialtone's CPU a reload and a
/// 747 MB peak; sharing, ~1.6 s and 415 MB (most of it reading the rows).
pub async fn load_full(
    client: &mut tokio_postgres::Client,
    blobs: &mut BlobCache,
    current: &Snapshot,
) -> Result<Loaded, DbError> {
    load_sharing(client, blobs, None, Some(current)).await
}

async fn load_sharing(
    client: &mut tokio_postgres::Client,
    blobs: &mut BlobCache,
    previous: Option<(&Snapshot, &str)>,
    share: Option<&Snapshot>,
) -> Result<Loaded, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let xsnapshot: String = tx
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await?
        .get(0);
    let sequence: i64 = tx
        .query_one(
            "SELECT GREATEST(
                (SELECT coalesce(max(revision), 0) FROM tenants), (SELECT coalesce(max(revision), 0) FROM networks),
                (SELECT coalesce(max(revision), 0) FROM phones), (SELECT coalesce(max(revision), 0) FROM files),
                (SELECT coalesce(max(revision), 0) FROM tombstones),
                (SELECT coalesce(max(revision), 0) FROM tenant_templates))",
            &[],
        )
        .await?
        .get(0);

    // After a load, only the tenants written since send their settings: the others keep the previous
    // snapshot's, already parsed. Parsing every tenant's settings on every delta was most of a delta's
    // cost with many tenants (2,000 tenants: 27 ms a delta, half of it JSON).
    let previous_settings: HashMap<Uuid, &Settings> = previous
        .map(|(prev, _)| prev.tenants().iter().map(|t| (t.id, &t.settings)).collect())
        .unwrap_or_default();
    // Without a previous load, `$1` is NULL and every row carries its settings.
    let rows = tx
        .query(
            &format!(
                "SELECT id, slug, enabled, CASE WHEN $1::text IS NULL OR {UNSEEN} THEN settings END
                 FROM tenants ORDER BY slug"
            ),
            &[&previous.map(|(_, x)| x)],
        )
        .await?;
    let mut tenants = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    // Unchanged tenants the previous snapshot does not have: none when `previous` and the database
    // snapshot given with it belong together, as the refresher's do; read here rather than trusted.
    let mut unknown = Vec::new();
    for r in rows {
        let slug: String = r.get(1);
        let Ok(slug) = slug.parse::<TenantSlug>() else {
            continue;
        };
        let id: Uuid = r.get(0);
        let settings = match r.get::<_, Option<serde_json::Value>>(3) {
            Some(v) => settings(v),
            None => match previous_settings.get(&id) {
                Some(s) => (*s).clone(),
                None => {
                    unknown.push(id);
                    Settings::default()
                }
            },
        };
        index.insert(id, tenants.len());
        tenants.push(TenantView {
            id,
            slug,
            enabled: r.get(2),
            settings,
            files: HashMap::new(),
            templates: Default::default(),
        });
    }
    if !unknown.is_empty() {
        for r in tx
            .query(
                "SELECT id, settings FROM tenants WHERE id = ANY($1)",
                &[&unknown],
            )
            .await?
        {
            if let Some(&i) = index.get(&r.get::<_, Uuid>(0)) {
                tenants[i].settings = settings(r.get(1));
            }
        }
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

    // A delta needs the same tenants at the same indices as the previous snapshot; so does building a
    // full load's snapshot from the one it shares phones with.
    let same_tenants = |prev: &Snapshot| {
        prev.tenants().len() == tenants.len()
            && prev
                .tenants()
                .iter()
                .zip(&tenants)
                .all(|(a, b)| a.id == b.id)
    };
    let previous = previous.filter(|(prev, _)| same_tenants(prev));
    let base = share.filter(|s| same_tenants(s));
    // A full load reads every phone; a delta reads the phones written since and the tombstones.
    let delta = match previous {
        None => None,
        Some((prev, x)) => {
            let changed = read_changed_phones(&tx, &index, x).await?;
            let gone: Vec<MacAddress> = tx
                .query(
                    &format!("SELECT key FROM tombstones WHERE kind = 'phone' AND {UNSEEN}"),
                    &[&x],
                )
                .await?
                .iter()
                .filter_map(|r| MacAddress::from_bare_hex(r.get::<_, &str>(0)))
                .collect();
            Some((prev, changed, gone))
        }
    };
    let full = match delta {
        None => Some(read_all_phones(&tx, &index, share).await?),
        Some(_) => None,
    };
    let global = read_files(&tx, &index, &mut tenants, blobs).await?;
    // Compiled templates are reused from any previous snapshot when the source is unchanged.
    read_templates(&tx, &index, &mut tenants, share).await?;
    tx.commit().await?;
    let snapshot = match (delta, full) {
        (Some((prev, changed, gone)), _) => {
            prev.with_phone_changes(sequence, tenants, networks, changed, &gone, global)
        }
        (None, full) => {
            let AllPhones { phones, fresh } = full.unwrap_or_default();
            match base.zip(fresh) {
                // Mostly shared: built like a delta, in O(changes) (1,000,000 phones: ~0.6 s to build and
                // ~0.12 s to compare every tenant's phones otherwise).
                Some((b, fresh)) => {
                    let gone = gone_from(b, &phones, &fresh);
                    b.with_phone_changes(sequence, tenants, networks, fresh, &gone, global)
                }
                None => Snapshot::build_shared(sequence, tenants, networks, phones, global),
            }
        }
    };
    Ok(Loaded {
        snapshot,
        xsnapshot,
        delta: previous.is_some(),
    })
}

/// The MACs `base` has that a full load's `phones` do not, given the load's phones not shared with `base`
/// (`fresh`): none to look for when every phone of `base` was shared or replaced.
fn gone_from(
    base: &Snapshot,
    phones: &[Arc<PhoneView>],
    fresh: &[Arc<PhoneView>],
) -> Vec<MacAddress> {
    let replaced = fresh
        .iter()
        .filter(|p| base.phone_shared(p.mac).is_some())
        .count();
    if phones.len() - fresh.len() + replaced == base.phone_count() {
        return Vec::new();
    }
    let loaded: HashSet<MacAddress> = phones.iter().map(|p| p.mac).collect();
    base.phones_shared()
        .map(|p| p.mac)
        .filter(|mac| !loaded.contains(mac))
        .collect()
}

/// The phones written since database snapshot `since`, with their lines.
async fn read_changed_phones(
    tx: &Transaction<'_>,
    index: &HashMap<Uuid, usize>,
    since: &str,
) -> Result<Vec<Arc<PhoneView>>, DbError> {
    // The phones written since, then the lines of exactly those by primary key. Selecting the lines with
    // the snapshot condition in a subquery was planned as a hash join over every line of every phone:
    // each delta read the whole table (O(phones) per change; 178,000 rows ~38 times a second under a
    // stream of API creates).
    let phone_rows = tx
        .query(
            &format!(
                "SELECT mac, tenant_id, model, label, enabled, settings FROM phones WHERE {UNSEEN}"
            ),
            &[&since],
        )
        .await?;
    let macs: Vec<&str> = phone_rows.iter().map(|r| r.get(0)).collect();
    let mut lines = if macs.is_empty() {
        HashMap::new()
    } else {
        lines_by_phone(
            tx.query(
                "SELECT phone_mac, number, auth_name, password, display_name, short_label
                 FROM phone_lines WHERE phone_mac = ANY($1) ORDER BY phone_mac, position",
                &[&macs],
            )
            .await?,
        )
    };
    let mut phones = Vec::new();
    for r in phone_rows {
        let mac_text: &str = r.get(0);
        let own = lines.remove(mac_text).unwrap_or_default();
        phones.extend(phone_from_row(&r, index, own).map(|p| Arc::new(finish_phone(p, &[]))));
    }
    Ok(phones)
}

/// A full load's phones.
#[derive(Default)]
struct AllPhones {
    phones: Vec<Arc<PhoneView>>,
    /// Those not shared with the snapshot given to [`read_all_phones`]; None without one, or when more
    /// than a quarter of its phones would be in it (building from that snapshot is no cheaper then).
    fresh: Option<Vec<Arc<PhoneView>>>,
}

/// Every phone with its lines (a cold load: 1,000,000 phones), from one query whose rows are turned into
/// phones as they arrive. PostgreSQL reads and sends on one core while this builds on the other, and no
/// row outlives its phone: collecting the phones' and the lines' rows first and matching them through a
/// map of every line took 2-4 times as long, most of it in memory that the load never needed. A phone
/// that `share` holds unchanged is taken from it (the row's copy is dropped at once, so its memory serves
/// the next row).
async fn read_all_phones(
    tx: &Transaction<'_>,
    index: &HashMap<Uuid, usize>,
    share: Option<&Snapshot>,
) -> Result<AllPhones, DbError> {
    use futures_util::TryStreamExt;
    // Ordered by MAC only: a merge join of the two primary keys, no sort. A phone's lines are put in
    // position order here (its rows are consecutive whatever the plan).
    let rows = tx
        .query_raw(
            "SELECT p.mac, p.tenant_id, p.model, p.label, p.enabled, p.settings,
                    l.position, l.number, l.auth_name, l.password, l.display_name, l.short_label
             FROM phones p LEFT JOIN phone_lines l ON l.phone_mac = p.mac
             ORDER BY p.mac",
            std::iter::empty::<i32>(),
        )
        .await?;
    futures_util::pin_mut!(rows);
    let limit = share.map_or(0, |s| s.phone_count() / 4 + 64);
    let mut all = AllPhones {
        phones: Vec::new(),
        fresh: share.map(|_| Vec::new()),
    };
    // The phone whose rows are arriving (None: its row was unusable) with its tenant's id, and its
    // lines' positions.
    let mut current: Option<(PhoneView, Uuid)> = None;
    let mut positions: Vec<i16> = Vec::new();
    let mut current_mac = String::new();
    let mut finish = |(phone, tenant_id): (PhoneView, Uuid), positions: &[i16]| {
        let phone = finish_phone(phone, positions);
        if let Some(kept) = share.and_then(|s| s.unchanged_phone(&phone, tenant_id)) {
            all.phones.push(Arc::clone(kept));
            return;
        }
        let phone = Arc::new(phone);
        match &mut all.fresh {
            Some(fresh) if fresh.len() < limit => fresh.push(Arc::clone(&phone)),
            _ => all.fresh = None,
        }
        all.phones.push(phone);
    };
    while let Some(r) = rows.try_next().await? {
        let mac_text: &str = r.get(0);
        if mac_text != current_mac {
            if let Some(p) = current.take() {
                finish(p, &positions);
            }
            positions.clear();
            current_mac.clear();
            current_mac.push_str(mac_text);
            current = phone_from_row(&r, index, Vec::new()).map(|p| (p, r.get(1)));
        }
        if let (Some((phone, _)), Some(position)) = (current.as_mut(), r.get::<_, Option<i16>>(6)) {
            positions.push(position);
            // Most phones have one line: room for one first (a `Vec` grows from 0 to 4 at once).
            phone.lines.reserve_exact(1);
            phone.lines.push(line_from_row(&r, 7));
        }
    }
    if let Some(p) = current {
        finish(p, &positions);
    }
    Ok(all)
}

/// A phone whose lines have all arrived (`positions` are theirs, in arrival order, or empty when they
/// are in position order already), its lines put in position order and held without spare room (the
/// snapshot keeps them for as long as the phone is unchanged).
fn finish_phone(mut phone: PhoneView, positions: &[i16]) -> PhoneView {
    if !positions.is_sorted() {
        let mut keyed: Vec<(i16, LineView)> = positions.iter().copied().zip(phone.lines).collect();
        keyed.sort_by_key(|(position, _)| *position);
        phone.lines = keyed.into_iter().map(|(_, line)| line).collect();
    }
    phone.lines.shrink_to_fit();
    phone
}

/// A phone from a row starting (mac, tenant_id, model, label, enabled, settings); None for a row no
/// snapshot can hold (a tenant not in `index`, an unknown MAC or model form).
fn phone_from_row(
    r: &tokio_postgres::Row,
    index: &HashMap<Uuid, usize>,
    lines: Vec<LineView>,
) -> Option<PhoneView> {
    let (Some(mac), Some(&tenant), Ok(model)) = (
        MacAddress::from_bare_hex(r.get(0)),
        index.get(&r.get::<_, Uuid>(1)),
        r.get::<_, &str>(2).parse::<Model>(),
    ) else {
        return None;
    };
    Some(PhoneView {
        tenant,
        mac,
        model,
        label: r.get(3),
        enabled: r.get(4),
        lines,
        settings: crate::snapshot::phone_settings(settings(r.get(5))),
        input_digest: Default::default(),
    })
}

/// A line from the row's columns `at`.. (number, auth_name, password, display_name, short_label).
fn line_from_row(r: &tokio_postgres::Row, at: usize) -> LineView {
    LineView {
        number: r.get(at),
        auth_name: r.get(at + 1),
        password: r.get::<_, Option<String>>(at + 2).unwrap_or_default(),
        display_name: r.get(at + 3),
        short_label: r.get(at + 4),
    }
}

/// Rows of `phone_lines` (phone_mac, number, auth_name, password, display_name, short_label), in key
/// order, by phone.
fn lines_by_phone(rows: Vec<tokio_postgres::Row>) -> HashMap<String, Vec<LineView>> {
    let mut lines: HashMap<String, Vec<LineView>> = HashMap::new();
    for r in rows {
        lines
            .entry(r.get(0))
            .or_default()
            .push(line_from_row(&r, 1));
    }
    lines
}

/// File names of every scope; tenant files go into their tenant, global ones are returned. Blob contents
/// come from the cache, and only missing ones are read.
async fn read_files(
    tx: &Transaction<'_>,
    index: &HashMap<Uuid, usize>,
    tenants: &mut [TenantView],
    blobs: &mut BlobCache,
) -> Result<Vec<(String, StoredFile)>, DbError> {
    let rows = tx
        .query("SELECT tenant_id, name, sha256 FROM files", &[])
        .await?;
    let key_of =
        |r: &tokio_postgres::Row| <[u8; 32]>::try_from(r.get::<_, Vec<u8>>(2).as_slice()).ok();
    let wanted: Vec<Vec<u8>> = rows
        .iter()
        .filter_map(key_of)
        .filter(|k| !blobs.contains_key(k))
        .map(|k| k.to_vec())
        .collect();
    if !wanted.is_empty() {
        for r in tx
            .query(
                "SELECT sha256, content FROM blobs WHERE sha256 = ANY($1)",
                &[&wanted],
            )
            .await?
        {
            let sha: Vec<u8> = r.get(0);
            if let Ok(key) = <[u8; 32]>::try_from(sha.as_slice()) {
                blobs.insert(key, Bytes::from(r.get::<_, Vec<u8>>(1)));
            }
        }
    }
    let mut used = HashSet::new();
    let mut global = Vec::new();
    for r in &rows {
        let Some(key) = key_of(r) else { continue };
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
    Ok(global)
}

/// Template overrides (small: read whole), compiled into their tenants; an unchanged source reuses the
/// previous snapshot's compiled template. One that does not compile (saving validates, so only an edit
/// behind the API's back) is skipped with a warning: the built-in renderer serves that file.
async fn read_templates(
    tx: &Transaction<'_>,
    index: &HashMap<Uuid, usize>,
    tenants: &mut [TenantView],
    previous: Option<&Snapshot>,
) -> Result<(), DbError> {
    let rows = tx
        .query("SELECT tenant_id, file, body FROM tenant_templates", &[])
        .await?;
    for r in &rows {
        let (tenant_id, file, body): (Uuid, String, String) = (r.get(0), r.get(1), r.get(2));
        let (Some(&i), Some(id)) = (index.get(&tenant_id), TemplateId::parse(&file)) else {
            tracing::warn!(tenant = %tenant_id, file, "template override with an unknown id skipped");
            continue;
        };
        let reused = previous
            .and_then(|p| p.tenants().iter().find(|t| t.id == tenant_id))
            .and_then(|t| t.templates.get_shared(id))
            .filter(|c| c.source() == body)
            .cloned();
        let compiled = match reused {
            Some(c) => c,
            None => match CompiledTemplate::compile(id, &body) {
                Ok(c) => Arc::new(c),
                Err(error) => {
                    tracing::warn!(tenant = %tenants[i].slug, file, error, "template override does not compile; skipped");
                    continue;
                }
            },
        };
        tenants[i].templates.insert(compiled);
    }
    Ok(())
}
