//! `Snapshot`: an immutable, indexed copy of everything the provisioning path needs (no I/O here).
//!
//! Built once per database change by the refresher, then shared read-only (`Arc<Snapshot>`) by every
//! request. Lookups are hash probes: tenant by source address (longest prefix match), phone by MAC,
//! stored file by name (tenant first, then global; exact name first, then case-insensitive).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::domain::{canonical_ip, Family, MacAddress, Model, Prefix, Settings, TenantSlug};

/// Same names with the same content (by SHA-256).
fn same_files(a: &HashMap<String, StoredFile>, b: &HashMap<String, StoredFile>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| w.sha256 == v.sha256))
}

/// Same phone for rendering purposes (the tenant index may differ between snapshots).
fn same_phone(a: &PhoneView, b: &PhoneView) -> bool {
    a.mac == b.mac
        && a.model == b.model
        && a.label == b.label
        && a.enabled == b.enabled
        && a.lines == b.lines
        && a.settings == b.settings
}

/// Cache slots per tenant for tenant-wide rendered files (see [`Snapshot::tenant_rendered`]).
pub const TENANT_CACHE_SLOTS: usize = 12;

/// At most this many bytes of per-device files are kept per snapshot (see [`Snapshot::device_rendered`]);
/// beyond it, files are rendered per request and not kept.
pub const DEVICE_CACHE_BYTES: usize = 32 << 20;

const DEVICE_CACHE_SHARDS: usize = 16;

/// One shard of [`DeviceCache`]: (MAC, slot) to the file rendered for it.
type DeviceShard = HashMap<(MacAddress, u8), StoredFile, foldhash::fast::RandomState>;

/// Per-device files rendered for one snapshot, keyed by MAC and slot, sharded to keep the TFTP/HTTP
/// workers off each other's lock. A snapshot from a delta starts empty; one from a full load starts with
/// the files of the phones that did not change (see [`Snapshot::inherit_device_files`]).
#[derive(Default)]
struct DeviceCache {
    shards: [Mutex<DeviceShard>; DEVICE_CACHE_SHARDS],
    bytes: AtomicUsize,
}

impl DeviceCache {
    fn shard(&self, mac: MacAddress) -> std::sync::MutexGuard<'_, DeviceShard> {
        let o = mac.octets();
        let i = usize::from(o[5] ^ o[4]) % DEVICE_CACHE_SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stored blob (firmware image, ring audio, locale file), served byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// SHA-256 of `bytes`.
    pub sha256: [u8; 32],
    /// The content.
    pub bytes: Bytes,
}

impl StoredFile {
    /// Wraps `bytes`, computing its SHA-256.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let sha256 = Sha256::digest(&bytes).into();
        Self { sha256, bytes }
    }
}

impl fmt::Debug for StoredFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StoredFile({} bytes, sha256 {})",
            self.bytes.len(),
            hex::encode(self.sha256)
        )
    }
}

/// A tenant as the provisioning path sees it.
#[derive(Clone, Debug)]
pub struct TenantView {
    /// Database id.
    pub id: uuid::Uuid,
    /// Unique short name.
    pub slug: TenantSlug,
    /// A disabled tenant's phones get nothing.
    pub enabled: bool,
    /// The tenant layer of the settings (built-in defaults are applied by the renderer).
    pub settings: Settings,
    /// Tenant files by name; they shadow global files of the same name.
    pub files: HashMap<String, StoredFile>,
    /// The tenant's template overrides, compiled (the built-in renderer is used for the others).
    pub templates: super::Templates,
}

/// One line of a phone.
#[derive(Clone, PartialEq, Eq)]
pub struct LineView {
    /// SIP user / extension.
    pub number: String,
    /// Digest user name.
    pub auth_name: String,
    /// Digest password ("" when none is set).
    pub password: String,
    /// Caller name sent in SIP.
    pub display_name: Option<String>,
    /// Text beside the line key.
    pub short_label: Option<String>,
}

impl fmt::Debug for LineView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineView")
            .field("number", &self.number)
            .field("auth_name", &self.auth_name)
            .field("password", &"<redacted>")
            .field("display_name", &self.display_name)
            .field("short_label", &self.short_label)
            .finish()
    }
}

/// One shard of [`PhoneIndex`]. MACs are short keys looked up on every request: a fast hasher, randomly
/// seeded per process (SipHash cost a third of a delta load).
type PhoneMap = HashMap<MacAddress, Arc<PhoneView>, foldhash::fast::RandomState>;

/// Phones per shard of [`PhoneIndex`] a full load aims at: a delta clones every shard it touches, so
/// the shards must stay small. With 1,024 shards for every size, a 75-phone delta cost 8.1 ms at 1,000,000
/// phones (≈1,000 a shard); with ~64 a shard 0.9 ms. More shards cost every delta a copy of their
/// pointers, hence a floor.
const PHONES_PER_SHARD: usize = 64;
/// The fewest and the most shards.
const SHARDS: std::ops::RangeInclusive<usize> = 1024..=65_536;

/// Every phone by MAC, in shards shared between snapshots: the next snapshot copies the shard pointers
/// and clones only the shards a delta writes to (copy on write), so a change costs O(changes), not
/// O(phones). The number of shards (a power of two) is chosen for the phones of a full load and kept
/// by the deltas that follow it.
#[derive(Clone)]
struct PhoneIndex {
    shards: Vec<Arc<PhoneMap>>,
    /// log2 of the number of shards.
    bits: u32,
    len: usize,
}

impl PhoneIndex {
    fn with_capacity(n: usize) -> Self {
        let count = (n / PHONES_PER_SHARD)
            .next_power_of_two()
            .clamp(*SHARDS.start(), *SHARDS.end());
        let each = n / count + n / count / 8;
        PhoneIndex {
            shards: (0..count)
                .map(|_| Arc::new(PhoneMap::with_capacity_and_hasher(each, Default::default())))
                .collect(),
            bits: count.trailing_zeros(),
            len: 0,
        }
    }

    fn shard_of(&self, mac: MacAddress) -> usize {
        let o = mac.octets();
        let v = u64::from_be_bytes([0, 0, o[0], o[1], o[2], o[3], o[4], o[5]]);
        // Fibonacci hashing: consecutive MACs (a fleet bought together) spread over every shard.
        (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    fn get(&self, mac: &MacAddress) -> Option<&Arc<PhoneView>> {
        self.shards[self.shard_of(*mac)].get(mac)
    }

    fn contains_key(&self, mac: &MacAddress) -> bool {
        self.get(mac).is_some()
    }

    /// Inserts or replaces; returns the phone it replaced.
    fn insert(&mut self, phone: Arc<PhoneView>) -> Option<Arc<PhoneView>> {
        let i = self.shard_of(phone.mac);
        let shard = Arc::make_mut(&mut self.shards[i]);
        let old = shard.insert(phone.mac, phone);
        self.len += usize::from(old.is_none());
        old
    }

    fn remove(&mut self, mac: &MacAddress) -> Option<Arc<PhoneView>> {
        let i = self.shard_of(*mac);
        if !self.shards[i].contains_key(mac) {
            return None;
        }
        let old = Arc::make_mut(&mut self.shards[i]).remove(mac);
        self.len -= usize::from(old.is_some());
        old
    }

    fn values(&self) -> impl Iterator<Item = &Arc<PhoneView>> {
        self.shards.iter().flat_map(|s| s.values())
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// What the [`Snapshot::digest_sum`] of a tenant and family adds up.
const FAMILIES: usize = 3;

fn family_slot(f: Family) -> usize {
    match f {
        Family::Sip79xx => 0,
        Family::Sip79x1 => 1,
        Family::Sip89xx99xx => 2,
    }
}

/// The content digests of a set of phones added up (first 16 bytes, little endian, mod 2^128) and their
/// number: a value that changes whenever a phone of the set changes, joins or leaves, and that can be
/// kept up to date by adding and subtracting the phones a delta changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DigestSum {
    /// Sum of the phones' digests.
    pub sum: u128,
    /// Number of phones.
    pub count: u64,
}

impl DigestSum {
    fn part(phone: &PhoneView) -> u128 {
        let d = phone.content_digest();
        u128::from_le_bytes(d[..16].try_into().unwrap_or_default())
    }

    fn add(&mut self, phone: &PhoneView) {
        self.sum = self.sum.wrapping_add(Self::part(phone));
        self.count += 1;
    }

    fn sub(&mut self, phone: &PhoneView) {
        self.sum = self.sum.wrapping_sub(Self::part(phone));
        self.count = self.count.saturating_sub(1);
    }
}

/// A fresh value for [`Snapshot`]'s per-tenant phone generations (unique in the process).
fn fresh_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A tenant's MACs, sorted, in chunks shared between snapshots: a delta copies the chunk pointers and
/// clones only the chunks it changes, so a change costs O(chunk), not O(the tenant's phones) (a copy of
/// one sorted vector was ~10% of the API's CPU under a stream of creates into a 130,000-phone tenant).
#[derive(Clone, Default)]
pub struct MacList {
    chunks: Vec<Arc<Vec<MacAddress>>>,
    len: usize,
}

impl MacList {
    /// Length a chunk is cut to; a chunk is split when it doubles and dropped when it empties.
    const CHUNK: usize = 512;
    /// Beyond this many MACs leaving or joining, a delta rebuilds the list in one pass instead.
    const REBUILD_AFTER: usize = 1024;

    fn from_sorted(macs: &[MacAddress]) -> MacList {
        MacList {
            chunks: macs
                .chunks(Self::CHUNK)
                .map(|c| Arc::new(c.to_vec()))
                .collect(),
            len: macs.len(),
        }
    }

    /// In order.
    pub fn iter(&self) -> impl Iterator<Item = &MacAddress> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The chunk `mac` is in or belongs in: the first whose last MAC is not below it, else the last.
    fn chunk_for(&self, mac: &MacAddress) -> usize {
        self.chunks
            .partition_point(|c| c.last().is_some_and(|last| last < mac))
            .min(self.chunks.len().saturating_sub(1))
    }

    fn insert(&mut self, mac: MacAddress) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![mac]));
            self.len = 1;
            return;
        }
        let i = self.chunk_for(&mac);
        let Err(at) = self.chunks[i].binary_search(&mac) else {
            return;
        };
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        chunk.insert(at, mac);
        self.len += 1;
        if chunk.len() >= 2 * Self::CHUNK {
            let tail = chunk.split_off(Self::CHUNK);
            self.chunks.insert(i + 1, Arc::new(tail));
        }
    }

    fn remove(&mut self, mac: &MacAddress) {
        if self.chunks.is_empty() {
            return;
        }
        let i = self.chunk_for(mac);
        let Ok(at) = self.chunks[i].binary_search(mac) else {
            return;
        };
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        chunk.remove(at);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(i);
        }
    }

    /// This list without `out`, then with `into` (a MAC in both stays: deleted and created again).
    fn apply(&mut self, mut out: Vec<MacAddress>, mut into: Vec<MacAddress>) {
        if out.len() + into.len() <= Self::REBUILD_AFTER {
            for mac in &out {
                self.remove(mac);
            }
            for mac in into {
                self.insert(mac);
            }
            return;
        }
        out.sort_unstable();
        into.sort_unstable();
        into.dedup();
        let mut merged = Vec::with_capacity(self.len + into.len());
        let mut add = into.into_iter().peekable();
        for &mac in self.iter() {
            while let Some(a) = add.next_if(|&a| a < mac) {
                merged.push(a);
            }
            if add.next_if_eq(&mac).is_some() || out.binary_search(&mac).is_err() {
                merged.push(mac);
            }
        }
        merged.extend(add);
        *self = MacList::from_sorted(&merged);
    }
}

impl PartialEq for MacList {
    fn eq(&self, other: &MacList) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for MacList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A phone as the provisioning path sees it.
#[derive(Clone, Debug)]
pub struct PhoneView {
    /// Index of the owning tenant in the snapshot.
    pub tenant: usize,
    /// Hardware address (unique across all tenants).
    pub mac: MacAddress,
    /// Model.
    pub model: Model,
    /// Label shown on the phone ("" when none).
    pub label: String,
    /// A disabled phone gets nothing.
    pub enabled: bool,
    /// Lines in key order.
    pub lines: Vec<LineView>,
    /// The phone's settings overrides (most phones have none: they share one empty value, see
    /// [`phone_settings`]; inline, `Settings` would cost ~430 bytes per phone).
    pub settings: Arc<Settings>,
    /// Its [`PhoneView::content_digest`], computed on first use. A changed phone is a new `PhoneView`,
    /// so it never goes stale.
    pub input_digest: DigestCell,
}

impl PhoneView {
    /// SHA-256 of what decides this phone's files: MAC, model, label, lines and settings (the tenant and
    /// `enabled` are not part of it). Computed once per phone version.
    pub fn content_digest(&self) -> &[u8; 32] {
        self.input_digest.get_or_init(|| {
            let mut h = Sha256::new();
            h.update(self.mac.octets());
            h.update(self.model.as_str());
            h.update([0]);
            h.update(&self.label);
            h.update([0]);
            for l in &self.lines {
                for field in [
                    Some(l.number.as_str()),
                    Some(l.auth_name.as_str()),
                    Some(l.password.as_str()),
                    l.display_name.as_deref(),
                    l.short_label.as_deref(),
                ] {
                    h.update(field.unwrap_or("\u{1}"));
                    h.update([0]);
                }
            }
            if !self.settings.is_empty() {
                h.update(serde_json::to_vec(&self.settings.to_json()).unwrap_or_default());
            }
            h.finalize().into()
        })
    }
}

/// A phone's settings as the snapshot holds them: empty settings are one shared value.
pub fn phone_settings(settings: Settings) -> Arc<Settings> {
    static EMPTY: std::sync::LazyLock<Arc<Settings>> = std::sync::LazyLock::new(Arc::default);
    if settings.is_empty() {
        EMPTY.clone()
    } else {
        Arc::new(settings)
    }
}

/// A digest computed on first use. A clone starts empty: a cloned phone may be edited afterwards.
#[derive(Debug, Default)]
pub struct DigestCell(std::sync::OnceLock<[u8; 32]>);

impl Clone for DigestCell {
    fn clone(&self) -> Self {
        DigestCell::default()
    }
}

impl DigestCell {
    /// The digest, computed by `f` the first time.
    pub fn get_or_init(&self, f: impl FnOnce() -> [u8; 32]) -> &[u8; 32] {
        self.0.get_or_init(f)
    }
}

/// Longest-prefix-match table: one hash map per prefix length, probed from the longest length down.
#[derive(Default)]
struct PrefixTable {
    v4: Vec<(u8, HashMap<u32, usize>)>,
    v6: Vec<(u8, HashMap<u128, usize>)>,
}

fn mask_v4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask_v6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl PrefixTable {
    /// Builds the table; the first entry for a prefix wins (the database forbids duplicates anyway).
    fn build(networks: &[(Prefix, usize)]) -> Self {
        let mut v4: HashMap<u8, HashMap<u32, usize>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, usize>> = HashMap::new();
        for (prefix, tenant) in networks {
            let len = prefix.len();
            match prefix.first_address() {
                IpAddr::V4(a) => {
                    let key = u32::from(a) & mask_v4(len);
                    v4.entry(len).or_default().entry(key).or_insert(*tenant);
                }
                IpAddr::V6(a) => {
                    let key = u128::from(a) & mask_v6(len);
                    v6.entry(len).or_default().entry(key).or_insert(*tenant);
                }
            }
        }
        let mut v4: Vec<_> = v4.into_iter().collect();
        let mut v6: Vec<_> = v6.into_iter().collect();
        v4.sort_by_key(|e| std::cmp::Reverse(e.0));
        v6.sort_by_key(|e| std::cmp::Reverse(e.0));
        Self { v4, v6 }
    }

    fn lookup(&self, addr: IpAddr) -> Option<usize> {
        match canonical_ip(addr) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&(a & mask_v4(*len))).copied())
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&(a & mask_v6(*len))).copied())
            }
        }
    }
}

/// Lower-cased name → the actual name; on a clash the lexicographically smallest actual name wins.
fn case_index<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, String> {
    let mut index: HashMap<String, String> = HashMap::new();
    for name in names {
        let key = name.to_ascii_lowercase();
        match index.get(&key) {
            Some(existing) if existing <= name => {}
            _ => {
                index.insert(key, name.clone());
            }
        }
    }
    index
}

/// Everything the provisioning path serves from, at one database sequence number.
pub struct Snapshot {
    /// The database change sequence this snapshot reflects (0 for the empty snapshot).
    pub sequence: i64,
    tenants: Vec<TenantView>,
    tenant_files_ci: Vec<HashMap<String, String>>,
    /// Per tenant, its phones' MACs, sorted; shared with the previous snapshot when unchanged.
    tenant_phones: Vec<MacList>,
    /// Per tenant, a value that changes (and is unique in the process) whenever one of its phones
    /// changes, joins or leaves; a delta keeps it for the tenants it does not touch.
    phones_gen: Vec<u64>,
    /// Built by [`Snapshot::with_phone_changes`] (so a generation that differs means changed phones).
    from_delta: bool,
    networks: PrefixTable,
    phones: PhoneIndex,
    global_files: HashMap<String, StoredFile>,
    global_files_ci: HashMap<String, String>,
    memo: Vec<OnceLock<u32>>,
    digest_sums: Vec<[OnceLock<DigestSum>; FAMILIES]>,
    rendered: Vec<[OnceLock<Option<StoredFile>>; TENANT_CACHE_SLOTS]>,
    devices: DeviceCache,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("sequence", &self.sequence)
            .field("tenants", &self.tenants.len())
            .field("phones", &self.phones.len())
            .field("global_files", &self.global_files.len())
            .finish()
    }
}

impl Snapshot {
    /// Indexes the given rows. Networks and phones that name a tenant index out of range are dropped;
    /// for a MAC listed twice the first phone wins (the database makes MACs unique).
    pub fn build(
        sequence: i64,
        tenants: Vec<TenantView>,
        networks: Vec<(Prefix, usize)>,
        phones: Vec<PhoneView>,
        global_files: Vec<(String, StoredFile)>,
    ) -> Snapshot {
        let phones = phones.into_iter().map(Arc::new).collect();
        Snapshot::build_shared(sequence, tenants, networks, phones, global_files)
    }

    /// Like [`Snapshot::build`], with phones shared with an earlier snapshot (delta updates).
    pub fn build_shared(
        sequence: i64,
        tenants: Vec<TenantView>,
        networks: Vec<(Prefix, usize)>,
        phones: Vec<Arc<PhoneView>>,
        global_files: Vec<(String, StoredFile)>,
    ) -> Snapshot {
        let n = tenants.len();
        let mut phone_map = PhoneIndex::with_capacity(phones.len());
        let mut tenant_phones: Vec<Vec<MacAddress>> = vec![Vec::new(); n];
        for phone in phones {
            if phone.tenant >= n || phone_map.contains_key(&phone.mac) {
                continue;
            }
            tenant_phones[phone.tenant].push(phone.mac);
            phone_map.insert(phone);
        }
        for macs in &mut tenant_phones {
            macs.sort_unstable();
        }
        let mut snap = Snapshot::assemble(
            sequence,
            tenants,
            networks,
            phone_map,
            tenant_phones
                .iter()
                .map(|m| MacList::from_sorted(m))
                .collect(),
            global_files,
        );
        snap.phones_gen = (0..n).map(|_| fresh_generation()).collect();
        snap
    }

    /// The next snapshot from this one after a delta: `changed` phones replace or join, `gone` MACs
    /// leave. `tenants` must be this snapshot's tenants at the same indices (the caller checks). Costs
    /// a copy of the indexes plus work for what changed, not a rebuild (no rehash, no sort of every
    /// tenant's phones).
    pub fn with_phone_changes(
        &self,
        sequence: i64,
        tenants: Vec<TenantView>,
        networks: Vec<(Prefix, usize)>,
        changed: Vec<Arc<PhoneView>>,
        gone: &[MacAddress],
        global_files: Vec<(String, StoredFile)>,
    ) -> Snapshot {
        let n = tenants.len();
        let mut phones = self.phones.clone();
        let mut tenant_phones = self.tenant_phones.clone();
        tenant_phones.resize_with(n, Default::default);
        let mut phones_gen = self.phones_gen.clone();
        phones_gen.resize_with(n, fresh_generation);
        // The digest sums computed for this snapshot, kept up to date phone by phone.
        let mut sums: Vec<[Option<DigestSum>; FAMILIES]> = (0..n)
            .map(|t| match self.digest_sums.get(t) {
                Some(cells) => std::array::from_fn(|f| cells[f].get().copied()),
                None => [None; FAMILIES],
            })
            .collect();
        let mut touched = std::collections::BTreeSet::new();
        let mut leave = |old: &PhoneView, touched: &mut std::collections::BTreeSet<usize>| {
            touched.insert(old.tenant);
            if let Some(sum) = sums
                .get_mut(old.tenant)
                .and_then(|s| s[family_slot(old.model.family())].as_mut())
            {
                if old.enabled {
                    sum.sub(old);
                }
            }
        };
        // Per tenant: MACs that leave its list and MACs that join it.
        let mut removed: HashMap<usize, Vec<MacAddress>> = HashMap::new();
        let mut added: HashMap<usize, Vec<MacAddress>> = HashMap::new();
        for mac in gone {
            if let Some(old) = phones.remove(mac) {
                leave(&old, &mut touched);
                removed.entry(old.tenant).or_default().push(*mac);
            }
        }
        let mut joined = Vec::new();
        for phone in changed {
            let (mac, tenant) = (phone.mac, phone.tenant);
            if tenant >= n {
                if let Some(old) = phones.remove(&mac) {
                    leave(&old, &mut touched);
                    removed.entry(old.tenant).or_default().push(mac);
                }
                continue;
            }
            let old = phones.insert(phone.clone());
            if let Some(old) = &old {
                leave(old, &mut touched);
            }
            let old_tenant = old.map(|p| p.tenant);
            if old_tenant != Some(tenant) {
                if let Some(t) = old_tenant {
                    removed.entry(t).or_default().push(mac);
                }
                added.entry(tenant).or_default().push(mac);
            }
            touched.insert(tenant);
            joined.push(phone);
        }
        for phone in &joined {
            if let Some(sum) = sums[phone.tenant][family_slot(phone.model.family())].as_mut() {
                if phone.enabled {
                    sum.add(phone);
                }
            }
        }
        for &t in &touched {
            if let Some(g) = phones_gen.get_mut(t) {
                *g = fresh_generation();
            }
            let Some(list) = tenant_phones.get_mut(t) else {
                continue;
            };
            let out = removed.remove(&t).unwrap_or_default();
            let into = added.remove(&t).unwrap_or_default();
            if out.is_empty() && into.is_empty() {
                continue;
            }
            list.apply(out, into);
        }
        let mut snap = Snapshot::assemble(
            sequence,
            tenants,
            networks,
            phones,
            tenant_phones,
            global_files,
        );
        snap.phones_gen = phones_gen;
        snap.from_delta = true;
        for (cells, sums) in snap.digest_sums.iter().zip(sums) {
            for (cell, sum) in cells.iter().zip(sums) {
                if let Some(sum) = sum {
                    let _ = cell.set(sum);
                }
            }
        }
        snap
    }

    fn assemble(
        sequence: i64,
        tenants: Vec<TenantView>,
        networks: Vec<(Prefix, usize)>,
        phones: PhoneIndex,
        tenant_phones: Vec<MacList>,
        global_files: Vec<(String, StoredFile)>,
    ) -> Snapshot {
        let n = tenants.len();
        // Networks of a tenant index out of range are dropped.
        let networks: Vec<(Prefix, usize)> = networks.into_iter().filter(|(_, t)| *t < n).collect();
        let global_files: HashMap<String, StoredFile> = global_files.into_iter().collect();
        Snapshot {
            sequence,
            tenant_files_ci: tenants.iter().map(|t| case_index(t.files.keys())).collect(),
            tenant_phones,
            phones_gen: vec![0; n],
            from_delta: false,
            networks: PrefixTable::build(&networks),
            phones,
            global_files_ci: case_index(global_files.keys()),
            global_files,
            memo: (0..n).map(|_| OnceLock::new()).collect(),
            digest_sums: (0..n).map(|_| Default::default()).collect(),
            rendered: (0..n)
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
            devices: DeviceCache::default(),
            tenants,
        }
    }

    /// A snapshot with nothing in it (before the first load): every source is unknown.
    pub fn empty() -> Snapshot {
        Snapshot::build(0, Vec::new(), Vec::new(), Vec::new(), Vec::new())
    }

    /// The tenant whose longest matching network contains `addr` (IPv4-mapped IPv6 counts as IPv4).
    pub fn tenant_for(&self, addr: IpAddr) -> Option<usize> {
        self.networks.lookup(addr)
    }

    /// The tenant at `idx`. Panics when `idx` is out of range (indexes come from this snapshot).
    pub fn tenant(&self, idx: usize) -> &TenantView {
        &self.tenants[idx]
    }

    /// Every tenant, in index order.
    pub fn tenants(&self) -> &[TenantView] {
        &self.tenants
    }

    /// The index of the tenant with this slug.
    pub fn tenant_by_slug(&self, slug: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.slug.as_str() == slug)
    }

    /// The phone with this MAC, whatever its tenant.
    pub fn phone(&self, mac: MacAddress) -> Option<&PhoneView> {
        self.phone_shared(mac).map(|p| p.as_ref())
    }

    /// This snapshot's phone with `phone`'s MAC when it is the same phone: same content (MAC, model,
    /// label, enabled, lines, settings) and the same tenant, at the same index here (`tenant_id` is the id
    /// of `phone.tenant` in the snapshot being built). A full reload shares it instead of a second copy.
    pub fn unchanged_phone(
        &self,
        phone: &PhoneView,
        tenant_id: uuid::Uuid,
    ) -> Option<&Arc<PhoneView>> {
        let kept = self.phone_shared(phone.mac)?;
        let same_tenant =
            kept.tenant == phone.tenant && self.tenants.get(kept.tenant)?.id == tenant_id;
        (same_tenant && same_phone(kept, phone)).then_some(kept)
    }

    /// The phone with this MAC as this snapshot holds it (shared).
    pub fn phone_shared(&self, mac: MacAddress) -> Option<&Arc<PhoneView>> {
        self.phones.get(&mac)
    }

    /// Every phone, shared (for building the next snapshot from this one).
    pub fn phones_shared(&self) -> impl Iterator<Item = &Arc<PhoneView>> {
        self.phones.values()
    }

    /// The MACs of a tenant's phones, sorted.
    pub fn phones_of(&self, tenant: usize) -> &MacList {
        static NONE: MacList = MacList {
            chunks: Vec::new(),
            len: 0,
        };
        self.tenant_phones.get(tenant).unwrap_or(&NONE)
    }

    /// The [`DigestSum`] of the tenant's enabled phones of `family`: computed once per snapshot from
    /// every such phone, and carried through deltas by adding and subtracting the phones they change.
    pub fn digest_sum(&self, tenant: usize, family: Family) -> DigestSum {
        let compute = || {
            let mut sum = DigestSum::default();
            for phone in self.phones_of(tenant).iter().filter_map(|m| self.phone(*m)) {
                if phone.enabled && phone.model.family() == family {
                    sum.add(phone);
                }
            }
            sum
        };
        match self.digest_sums.get(tenant) {
            Some(cells) => *cells[family_slot(family)].get_or_init(compute),
            None => compute(),
        }
    }

    /// Number of phones in the snapshot.
    pub fn phone_count(&self) -> usize {
        self.phones.len()
    }

    /// A stored file as `tenant` sees it: exact name in the tenant's files, then in the global files,
    /// then the same two case-insensitively (so a tenant file shadows a global file of the same name).
    pub fn file(&self, tenant: usize, name: &str) -> Option<&StoredFile> {
        let own = self.tenants.get(tenant).map(|t| &t.files);
        if let Some(f) = own.and_then(|files| files.get(name)) {
            return Some(f);
        }
        if let Some(f) = self.global_files.get(name) {
            return Some(f);
        }
        let lower = name.to_ascii_lowercase();
        if let (Some(files), Some(index)) = (own, self.tenant_files_ci.get(tenant)) {
            if let Some(f) = index.get(&lower).and_then(|actual| files.get(actual)) {
                return Some(f);
            }
        }
        self.global_files_ci
            .get(&lower)
            .and_then(|actual| self.global_files.get(actual))
    }

    /// A stored file by its exact name only (tenant first, then global).
    pub fn file_exact(&self, tenant: usize, name: &str) -> Option<&StoredFile> {
        self.tenants
            .get(tenant)
            .and_then(|t| t.files.get(name))
            .or_else(|| self.global_files.get(name))
    }

    /// A tenant-wide file rendered (and hashed) at most once for this snapshot, in cache slot `slot` (the
    /// provisioning module numbers its tenant-wide kinds). Every phone of a tenant asks for the same
    /// files at boot.
    pub fn tenant_rendered(
        &self,
        tenant: usize,
        slot: usize,
        render: impl FnOnce() -> Option<Bytes>,
    ) -> Option<StoredFile> {
        match self.rendered_cell(tenant, slot) {
            Some(cell) => cell.get_or_init(|| render().map(StoredFile::new)).clone(),
            None => render().map(StoredFile::new),
        }
    }

    /// A per-device file of phone `mac` (slot `slot`, numbered by the provisioning module), rendered and
    /// hashed at most once for this snapshot while the kept files stay under [`DEVICE_CACHE_BYTES`].
    /// Everything a device file depends on (phone, tenant, templates) is fixed within one snapshot.
    /// Two requests racing on a miss may both render; the first one kept is what both later serve.
    pub fn device_rendered(
        &self,
        mac: MacAddress,
        slot: u8,
        render: impl FnOnce() -> Option<Bytes>,
    ) -> Option<StoredFile> {
        if let Some(f) = self.devices.shard(mac).get(&(mac, slot)) {
            return Some(f.clone());
        }
        let file = StoredFile::new(render()?);
        let size = file.bytes.len();
        if self.devices.bytes.fetch_add(size, Ordering::Relaxed) + size > DEVICE_CACHE_BYTES {
            self.devices.bytes.fetch_sub(size, Ordering::Relaxed);
            return Some(file);
        }
        match self.devices.shard(mac).entry((mac, slot)) {
            std::collections::hash_map::Entry::Occupied(kept) => {
                self.devices.bytes.fetch_sub(size, Ordering::Relaxed);
                Some(kept.get().clone())
            }
            std::collections::hash_map::Entry::Vacant(place) => Some(place.insert(file).clone()),
        }
    }

    /// The per-device file kept for `mac` in `slot`, if one was rendered for this snapshot.
    pub fn device_kept(&self, mac: MacAddress, slot: u8) -> Option<StoredFile> {
        self.devices.shard(mac).get(&(mac, slot)).cloned()
    }

    /// The tenant-wide file kept for `tenant` in `slot`, if one was rendered for this snapshot.
    pub fn tenant_kept(&self, tenant: usize, slot: usize) -> Option<StoredFile> {
        self.rendered_cell(tenant, slot)?.get().cloned().flatten()
    }

    fn rendered_cell(&self, tenant: usize, slot: usize) -> Option<&OnceLock<Option<StoredFile>>> {
        self.rendered.get(tenant)?.get(slot)
    }

    /// Per tenant here, its index in `prev` when its own inputs are the same there: settings, flags, files
    /// and template overrides (not its phones), and the same global files. All `None` when the global
    /// files changed.
    fn same_tenant_inputs(&self, prev: &Snapshot) -> Vec<Option<usize>> {
        let mut same = vec![None; self.tenants.len()];
        if !same_files(&self.global_files, &prev.global_files) {
            return same;
        }
        let prev_index: HashMap<uuid::Uuid, usize> = prev
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        for (i, t) in self.tenants.iter().enumerate() {
            let Some(&pi) = prev_index.get(&t.id) else {
                continue;
            };
            let p = &prev.tenants[pi];
            if p.enabled == t.enabled
                && p.settings == t.settings
                && same_files(&p.files, &t.files)
                && t.templates.same_as(&p.templates)
            {
                same[i] = Some(pi);
            }
        }
        same
    }

    /// Copies the tenant-wide values already computed for `prev` (the 7940/7960 `sync` stamp and the
    /// rendered tenant-wide files) to every tenant whose inputs did not change: same settings, flags,
    /// files, template overrides and phones, and the same global files. Only changed tenants are computed
    /// anew, so a change in one tenant costs nothing for the others. Returns how many tenants inherited.
    pub fn inherit_tenant_caches(&self, prev: &Snapshot) -> usize {
        let mut inherited = 0;
        for (i, pi) in self.same_tenant_inputs(prev).into_iter().enumerate() {
            let Some(pi) = pi else { continue };
            if !self.same_phones(i, prev, pi) {
                continue;
            }
            if let Some(v) = prev.memo[pi].get() {
                let _ = self.memo[i].set(*v);
            }
            for (cell, old) in self.rendered[i].iter().zip(&prev.rendered[pi]) {
                if let Some(v) = old.get() {
                    let _ = cell.set(v.clone());
                }
            }
            inherited += 1;
        }
        inherited
    }

    /// Copies `prev`'s rendered per-device files of every phone that is the same here, in a tenant whose
    /// own inputs are the same (see [`Snapshot::same_tenant_inputs`]; a device file depends on nothing
    /// else, see `provisioning::serve_device`), so that a full reload that changed nothing (the periodic
    /// safety net) does not send every phone's next request to the renderer. The refresher calls it after
    /// full loads only: it costs in proportion to the files kept, and paid for every API change (a delta)
    /// it cost more than rendering them again (an API create went from ~190,000 to 265,000 instructions
    /// with 2,000 files kept; `bench/run --only cost`). Returns how many files were kept.
    pub fn inherit_device_files(&self, prev: &Snapshot) -> usize {
        let same_inputs = self.same_tenant_inputs(prev);
        let (mut kept, mut bytes) = (0, 0);
        // A MAC's shard is the same in both caches, and this snapshot is not serving yet.
        for (old, new) in prev.devices.shards.iter().zip(&self.devices.shards) {
            let old = old.lock().unwrap_or_else(|e| e.into_inner());
            let mut new = new.lock().unwrap_or_else(|e| e.into_inner());
            for (&(mac, slot), file) in old.iter() {
                let (Some(now), Some(before)) = (self.phones.get(&mac), prev.phones.get(&mac))
                else {
                    continue;
                };
                let same = same_inputs.get(now.tenant).copied().flatten() == Some(before.tenant)
                    && (Arc::ptr_eq(now, before) || same_phone(now, before));
                if same && new.insert((mac, slot), file.clone()).is_none() {
                    kept += 1;
                    bytes += file.bytes.len();
                }
            }
        }
        self.devices.bytes.fetch_add(bytes, Ordering::Relaxed);
        kept
    }

    /// Whether tenant `i` has the same phones here as tenant `pi` in `prev`. A generation kept by a delta
    /// says so at once; after a delta a new one says they changed; after a full load, compare.
    fn same_phones(&self, i: usize, prev: &Snapshot, pi: usize) -> bool {
        if self.phones_gen[i] == prev.phones_gen[pi] {
            return true;
        }
        if self.from_delta {
            return false;
        }
        self.tenant_phones[i] == prev.tenant_phones[pi]
            && self.tenant_phones[i].iter().all(|mac| {
                match (self.phones.get(mac), prev.phones.get(mac)) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || same_phone(a, b),
                    _ => false,
                }
            })
    }

    /// A per-tenant value computed at most once for this snapshot (the provisioning module keeps the
    /// 7940/7960 `sync` stamp here, which depends on every such phone of the tenant).
    pub fn tenant_memo(&self, tenant: usize, compute: impl FnOnce() -> u32) -> u32 {
        match self.memo.get(tenant) {
            Some(cell) => *cell.get_or_init(compute),
            None => compute(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible pseudo-random source: each call gives a number below its argument.
    fn xorshift(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |below| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        }
    }

    /// The chunked list against a sorted set, through chunk splits (one MAC at a time into one region),
    /// emptied chunks, a MAC that leaves and joins in one delta, and both ways of applying a delta.
    #[test]
    fn mac_list_edits_match_a_sorted_set() {
        let m = |n: u64| MacAddress::from_octets(n.to_be_bytes()[2..].try_into().unwrap());
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut list = MacList::from_sorted(&(0..1500).map(|n| m(n * 4)).collect::<Vec<_>>());
        let (mut splits, mut emptied) = (0, 0);
        let mut model: std::collections::BTreeSet<MacAddress> = list.iter().copied().collect();
        let before = list.clone();
        for round in 0..200 {
            let rebuild = round % 50 == 49;
            let size = if rebuild { 1500 } else { 1 + next(100) };
            // Mostly into 0..2,048, the first chunk's range, which fills up and splits; rounds 3, 4 and 5
            // of every 7 take 4,000..6,400 out, 800 at a time, which empties the chunks in that range.
            let (mut out, mut into) = (Vec::new(), Vec::new());
            if (3..6).contains(&(round % 7)) {
                let from = 4000 + (round % 7 - 3) * 800;
                out.extend((from..from + 800).map(m));
            }
            for _ in 0..size {
                let n = if rebuild { next(8000) } else { next(2048) };
                if next(4) == 0 {
                    out.push(m(n));
                } else {
                    into.push(m(n));
                }
            }
            if let Some(&again) = into.first() {
                out.push(again);
            }
            for mac in &out {
                model.remove(mac);
            }
            model.extend(into.iter().copied());
            let chunks = list.chunks.len();
            let first = list.chunks[0].len();
            list.apply(out, into);
            if !rebuild {
                splits += usize::from(list.chunks[0].len() < first && list.chunks.len() > chunks);
                emptied += usize::from(list.chunks.len() < chunks);
            }
            assert_eq!(list.len, model.len(), "round {round}");
            assert!(list.iter().eq(model.iter()), "round {round}");
            assert!(list
                .chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() < 2 * MacList::CHUNK));
        }
        assert!(
            splits > 0 && emptied > 0,
            "splits {splits}, chunks emptied {emptied}"
        );
        // Edits cloned the chunks they changed; the list they started from is as it was.
        assert_eq!(
            before,
            MacList::from_sorted(&(0..1500).map(|n| m(n * 4)).collect::<Vec<_>>())
        );
        assert_ne!(before, list);
    }

    fn tenant(slug: &str) -> TenantView {
        TenantView {
            id: uuid::Uuid::nil(),
            slug: slug.parse().unwrap(),
            enabled: true,
            settings: Settings::default(),
            files: HashMap::new(),
            templates: Default::default(),
        }
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_for_v4_and_v6() {
        let snap = Snapshot::build(
            1,
            vec![tenant("a"), tenant("b"), tenant("c")],
            vec![
                (p("10.0.0.0/8"), 0),
                (p("10.20.0.0/16"), 1),
                (p("10.20.30.40/32"), 2),
                (p("2001:db8::/32"), 0),
                (p("2001:db8:1::/48"), 1),
                (p("0.0.0.0/0"), 2),
            ],
            vec![],
            vec![],
        );
        assert_eq!(snap.tenant_for(ip("10.1.2.3")), Some(0));
        assert_eq!(snap.tenant_for(ip("10.20.1.1")), Some(1));
        assert_eq!(snap.tenant_for(ip("10.20.30.40")), Some(2));
        assert_eq!(snap.tenant_for(ip("::ffff:10.20.1.1")), Some(1));
        assert_eq!(snap.tenant_for(ip("192.0.2.1")), Some(2));
        assert_eq!(snap.tenant_for(ip("2001:db8:1::5")), Some(1));
        assert_eq!(snap.tenant_for(ip("2001:db8:2::5")), Some(0));
        assert_eq!(snap.tenant_for(ip("2001:db9::1")), None);
    }

    #[test]
    fn longest_prefix_match_agrees_with_brute_force() {
        // A small deterministic generator (no dependency needed).
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 32) as u32
        };
        let mut networks: Vec<(Prefix, usize)> = Vec::new();
        for i in 0..400 {
            let len = (8 + next() % 25) as u8;
            let addr =
                std::net::Ipv4Addr::from(0x0a00_0000 | (next() & 0x00ff_ffff) & mask_v4(len));
            let prefix: Prefix = format!("{addr}/{len}").parse().unwrap();
            if networks.iter().all(|(p, _)| *p != prefix) {
                networks.push((prefix, i % 3));
            }
            let v6 = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(next()) << 64));
            let len6 = (32 + next() % 33) as u8;
            let masked = std::net::Ipv6Addr::from(u128::from(v6) & mask_v6(len6));
            let prefix: Prefix = format!("{masked}/{len6}").parse().unwrap();
            if networks.iter().all(|(p, _)| *p != prefix) {
                networks.push((prefix, i % 3));
            }
        }
        let snap = Snapshot::build(
            1,
            vec![tenant("a"), tenant("b"), tenant("c")],
            networks.clone(),
            vec![],
            vec![],
        );
        for _ in 0..5000 {
            let v4 = IpAddr::from(std::net::Ipv4Addr::from(
                0x0a00_0000 | (next() & 0x00ff_ffff),
            ));
            let v6 = IpAddr::from(std::net::Ipv6Addr::from(
                (0x2001_0db8u128 << 96) | (u128::from(next()) << 64) | u128::from(next()),
            ));
            for addr in [v4, v6] {
                let want = networks
                    .iter()
                    .filter(|(p, _)| p.contains(addr))
                    .max_by_key(|(p, _)| p.len())
                    .map(|(_, t)| *t);
                assert_eq!(snap.tenant_for(addr), want, "{addr}");
            }
        }
    }

    #[test]
    fn empty_snapshot_knows_no_source() {
        let snap = Snapshot::empty();
        assert_eq!(snap.tenant_for(ip("10.0.0.1")), None);
        assert_eq!(snap.tenant_for(ip("::1")), None);
        assert!(snap.phone(MacAddress::from_octets([0; 6])).is_none());
    }

    #[test]
    fn tenant_files_shadow_global_and_case_folds_last() {
        let mut t = tenant("a");
        t.files
            .insert("ringer1.pcm".into(), StoredFile::new(&b"tenant"[..]));
        t.files
            .insert("Only-Tenant.raw".into(), StoredFile::new(&b"t2"[..]));
        let snap = Snapshot::build(
            1,
            vec![t, tenant("b")],
            vec![],
            vec![],
            vec![
                ("ringer1.pcm".into(), StoredFile::new(&b"global"[..])),
                ("P0S3-8-12-00.loads".into(), StoredFile::new(&b"loads"[..])),
                ("RINGER1.PCM".into(), StoredFile::new(&b"upper"[..])),
            ],
        );
        let get = |t, n| snap.file(t, n).map(|f| f.bytes.clone());
        assert_eq!(get(0, "ringer1.pcm").as_deref(), Some(&b"tenant"[..]));
        assert_eq!(get(1, "ringer1.pcm").as_deref(), Some(&b"global"[..]));
        assert_eq!(get(0, "RINGER1.PCM").as_deref(), Some(&b"upper"[..]));
        assert_eq!(get(0, "Ringer1.Pcm").as_deref(), Some(&b"tenant"[..]));
        assert_eq!(get(1, "Ringer1.Pcm").as_deref(), Some(&b"upper"[..]));
        assert_eq!(get(0, "only-tenant.RAW").as_deref(), Some(&b"t2"[..]));
        assert_eq!(get(1, "only-tenant.raw"), None);
        assert_eq!(get(1, "p0s3-8-12-00.LOADS").as_deref(), Some(&b"loads"[..]));
        assert!(snap.file_exact(1, "p0s3-8-12-00.LOADS").is_none());
        assert_eq!(
            snap.file(0, "ringer1.pcm").unwrap().sha256,
            <[u8; 32]>::from(Sha256::digest(b"tenant"))
        );
    }

    #[test]
    fn a_delta_gives_the_same_indexes_as_a_rebuild() {
        let families = [Family::Sip79xx, Family::Sip79x1, Family::Sip89xx99xx];
        let phone = |t: usize, n: u32, label: &str| {
            let b = n.to_be_bytes();
            Arc::new(PhoneView {
                tenant: t,
                mac: MacAddress::from_octets([0, 4, b[0], b[1], b[2], b[3]]),
                // Models of every family, some phones disabled, and a phone's model or flag may change.
                model: [Model::M7960, Model::M7941, Model::M8961][(n as usize + label.len()) % 3],
                label: label.into(),
                enabled: !(n + label.len() as u32).is_multiple_of(5),
                lines: vec![],
                settings: Default::default(),
                input_digest: Default::default(),
            })
        };
        let tenants = || vec![tenant("a"), tenant("b"), tenant("c")];
        // Small deltas (binary-search edits) and one large one (sort) on tenants of 0..2,000 phones.
        let mut state: HashMap<MacAddress, Arc<PhoneView>> = (0..2000)
            .map(|n| phone((n % 3) as usize, n * 7, "v0"))
            .map(|p| (p.mac, p))
            .collect();
        let mut snap = Snapshot::build_shared(
            1,
            tenants(),
            vec![],
            state.values().cloned().collect(),
            vec![],
        );
        // Sums computed on the first snapshot are carried through the deltas (tenant 2's 89xx sum is
        // left to be computed on demand).
        for t in 0..3 {
            for f in families {
                if (t, f) != (2, Family::Sip89xx99xx) {
                    snap.digest_sum(t, f);
                }
            }
        }
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..30u32 {
            let size = if round == 17 { 3000 } else { 1 + next(40) };
            let (mut changed, mut gone) = (Vec::new(), Vec::new());
            for _ in 0..size {
                let n = next(4000) as u32 * 7;
                match next(4) {
                    0 => gone.push(phone(0, n, "").mac),
                    // Tenant 5 does not exist: such a row is dropped (and the MAC leaves its tenant).
                    1 if round % 5 == 0 => changed.push(phone(5, n, "x")),
                    _ => changed.push(phone(next(3) as usize, n, &format!("v{round}"))),
                }
            }
            let mut seen = std::collections::HashSet::new();
            changed.retain(|p| seen.insert(p.mac));
            for mac in &gone {
                state.remove(mac);
            }
            for p in &changed {
                if p.tenant < 3 {
                    state.insert(p.mac, p.clone());
                } else {
                    state.remove(&p.mac);
                }
            }
            let prev = snap;
            snap = prev.with_phone_changes(
                round.into(),
                tenants(),
                vec![],
                changed.clone(),
                &gone,
                vec![],
            );
            let rebuilt = Snapshot::build_shared(
                0,
                tenants(),
                vec![],
                state.values().cloned().collect(),
                vec![],
            );
            assert_eq!(snap.phone_count(), rebuilt.phone_count(), "round {round}");
            for t in 0..3 {
                assert_eq!(
                    snap.phones_of(t),
                    rebuilt.phones_of(t),
                    "round {round}, tenant {t}"
                );
                for f in families {
                    assert_eq!(
                        snap.digest_sum(t, f),
                        rebuilt.digest_sum(t, f),
                        "round {round}, tenant {t}, {f:?}"
                    );
                }
                // A tenant no change reached keeps its generation (its caches are inherited); one that
                // a change reached gets a new one.
                let reached = gone
                    .iter()
                    .any(|m| prev.phone(*m).is_some_and(|p| p.tenant == t))
                    || changed.iter().any(|p| {
                        p.tenant == t || prev.phone(p.mac).is_some_and(|old| old.tenant == t)
                    });
                assert_eq!(
                    snap.same_phones(t, &prev, t),
                    !reached,
                    "round {round}, tenant {t}"
                );
            }
            assert_eq!(
                snap.phones_shared().count(),
                snap.phone_count(),
                "round {round}"
            );
            for (mac, p) in &state {
                assert_eq!(
                    snap.phone(*mac).map(|q| &q.label),
                    Some(&p.label),
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn a_cloned_digest_cell_starts_empty() {
        let cell = DigestCell::default();
        assert_eq!(cell.get_or_init(|| [1; 32]), &[1; 32]);
        assert_eq!(cell.get_or_init(|| [2; 32]), &[1; 32], "computed once");
        assert_eq!(cell.clone().get_or_init(|| [2; 32]), &[2; 32]);
    }

    #[test]
    fn phones_are_indexed_per_tenant_and_out_of_range_rows_dropped() {
        let phone = |t, last| PhoneView {
            tenant: t,
            mac: MacAddress::from_octets([0, 4, 0xf2, 0, 0, last]),
            model: Model::M7960,
            label: String::new(),
            enabled: true,
            lines: vec![],
            settings: Default::default(),
            input_digest: Default::default(),
        };
        let snap = Snapshot::build(
            3,
            vec![tenant("a")],
            vec![(p("10.0.0.0/8"), 5)],
            vec![phone(0, 2), phone(0, 1), phone(7, 3)],
            vec![],
        );
        assert_eq!(snap.phone_count(), 2);
        assert_eq!(
            snap.phones_of(0).iter().next().unwrap().to_string(),
            "0004F2000001"
        );
        assert_eq!(snap.phones_of(1).iter().count(), 0);
        assert_eq!(snap.tenant_for(ip("10.0.0.1")), None);
        assert_eq!(snap.tenant_by_slug("a"), Some(0));
        assert_eq!(snap.tenant_memo(0, || 7), 7);
        assert_eq!(snap.tenant_memo(0, || 9), 7, "computed once per snapshot");
    }
}
