//! The fetch-event queue: the request path pushes a raw event and returns; a writer task resolves
//! tenant, phone and SHA-256 from the snapshot and stores batches. Bounded: when the database is away
//! and the queue is full, the oldest events are dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::{self, fetches::NewFetch, fetches::Sighting, Pool};
use crate::domain::{Family, MacAddress};
use crate::provisioning;
use crate::provisioning::name::{self, Class};
use crate::snapshot::SnapshotHandle;

/// Transport of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TFTP (udp/69).
    Tftp,
    /// HTTP (tcp/6970).
    Http,
}

impl Protocol {
    /// `tftp` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tftp => "tftp",
            Protocol::Http => "http",
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FetchOutcome {
    /// Sent completely.
    Served,
    /// No such file (or known absent).
    NotFound,
    /// Refused (bad name, write request).
    Refused,
    /// Started but not finished.
    Aborted,
}

impl FetchOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::Served => "served",
            FetchOutcome::NotFound => "not_found",
            FetchOutcome::Refused => "refused",
            FetchOutcome::Aborted => "aborted",
        }
    }
}

/// What the request path records: cheap to build, no lookups.
#[derive(Clone, Debug)]
pub struct RawEvent {
    /// When.
    pub at: OffsetDateTime,
    /// Transport.
    pub protocol: Protocol,
    /// Client.
    pub peer: SocketAddr,
    /// Requested name, as sent.
    pub name: String,
    /// Outcome.
    pub outcome: FetchOutcome,
    /// Bytes sent.
    pub bytes: u64,
    /// Duration.
    pub duration: Duration,
    /// The content, for served/aborted transfers (hashed by the writer).
    pub data: Option<Bytes>,
}

/// Events waiting that wake the writer before its interval has passed.
///
/// Larger batches cost PostgreSQL less CPU per event, but each batch is one burst of PostgreSQL CPU beside
/// the TFTP workers, and the storm's tail latency pays for it. Measured (2 cores): HTTP :6970
/// `Connection: close` under `wrk -c64` (~45,000 requests/s), PostgreSQL 5.0 µs an event with batches of
/// 1,024 to 5,000 events, 3.8 µs with 8,192 to 20,000, 3.5 µs with 16,384 to 32,768; `bench/run --only
/// small,storm`, the same binary both ways, 10,000 phones, current firmware, 500 at once: 1,024 to 5,000
/// wall 1.24 s, transfer p99 35.3 ms; 8,192 to 16,384 wall 1.11 s, p99 67.6 ms (target < 50 ms). The
/// storm's p99 decides.
const BATCH_EARLY: usize = 1_024;
/// Most events stored in one batch (one `COPY`, one transaction).
const BATCH_MAX: usize = 5_000;

/// How long the writer holds a phone's events before storing them (see [`Hold`]).
const HOLD: Duration = Duration::from_secs(1);
/// Held events beyond which (or beyond the queue's capacity) the writer stores all it holds at once.
const HOLD_MAX: usize = 50_000;

/// The bounded queue between the request path and the writer.
pub struct EventQueue {
    queue: Mutex<VecDeque<RawEvent>>,
    capacity: usize,
    notify: Notify,
    dropped: AtomicU64,
    written: AtomicU64,
    /// Events of batches given up while their COMMIT's outcome was unknown: written or dropped, decided
    /// once the database answers again.
    unconfirmed: AtomicU64,
    /// Events the writer holds before storing them (see [`Hold`]).
    held: AtomicUsize,
    /// Requests per (tenant slug or "none", protocol, outcome), counted by the writer.
    pub counts: Mutex<HashMap<(String, Protocol, FetchOutcome), u64>>,
}

impl EventQueue {
    /// A queue holding at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(65536))),
            capacity,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Adds an event; never blocks on the database. When full, the oldest event is dropped.
    pub fn push(&self, event: RawEvent) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(event);
        let len = q.len();
        drop(q);
        if len >= BATCH_EARLY {
            self.notify.notify_one();
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events stored.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Events of batches whose storing is not known yet (see the writer).
    pub fn unconfirmed(&self) -> u64 {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    /// Events taken from the queue that the writer holds before storing them.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, max: usize) -> Vec<RawEvent> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

/// Stores queued events every `interval` (or sooner when many wait) until `shutdown`, then flushes once.
pub async fn run_writer(
    queue: std::sync::Arc<EventQueue>,
    snapshot: SnapshotHandle,
    pool: Pool,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // Each batch has an id stored with it, so that retrying a batch whose commit was lost with the
    // connection cannot store it twice, and so that such a batch, if given up, can be looked up later.
    let mut pending: Vec<Batch> = Vec::new();
    let mut stored = ServedCache::default();
    // Batches given up after a failed attempt (their COMMIT may have gone through): (id, events).
    let mut unconfirmed: Vec<(uuid::Uuid, u64)> = Vec::new();
    let mut drops = DropWarning::default();
    let mut hold = Hold::default();
    loop {
        let total = queue.dropped();
        if let Some(n) = drops.due(Instant::now(), total) {
            tracing::warn!(
                dropped = n,
                total,
                "fetch events dropped: the queue was full (the database is away or stores them slower than they arrive; see dialtone_fetch_events_dropped_total)"
            );
        }
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(interval) => false,
            _ = queue.notify.notified() => false,
        };
        let now = Instant::now();
        let mut sightings = Vec::new();
        loop {
            let raw = queue.take(BATCH_MAX);
            if raw.is_empty() {
                break;
            }
            let (mut fetches, seen) = resolve(&queue, &snapshot, raw);
            stored.mark_known(&mut fetches);
            hold.add(now, fetches);
            sightings.extend(seen);
        }
        // At shutdown, or when too many wait, everything held goes now.
        let flush_all = stop || hold.len() > HOLD_MAX.min(queue.capacity);
        let due = hold.take_due(now, if flush_all { Duration::ZERO } else { HOLD });
        queue.held.store(hold.len(), Ordering::Relaxed);
        let mut due = due.into_iter().peekable();
        while due.peek().is_some() || !sightings.is_empty() {
            pending.push(Batch {
                id: uuid::Uuid::new_v4(),
                fetches: due.by_ref().take(BATCH_MAX).collect(),
                sightings: std::mem::take(&mut sightings),
                tried: false,
            });
        }
        // Keep at most ~queue-capacity events waiting for the database, those held included; older
        // batches go first.
        let mut held: usize = pending.iter().map(|b| b.fetches.len()).sum::<usize>() + hold.len();
        while held > queue.capacity && !pending.is_empty() {
            let b = pending.remove(0);
            held -= b.fetches.len();
            let n = b.fetches.len() as u64;
            if b.tried && unconfirmed.len() < MAX_UNCONFIRMED {
                unconfirmed.push((b.id, n));
                queue.unconfirmed.fetch_add(n, Ordering::Relaxed);
            } else {
                queue.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
        while let Some(b) = pending.first_mut() {
            match store(&pool, b.id, &b.fetches, &b.sightings).await {
                Ok(()) => {
                    queue
                        .written
                        .fetch_add(b.fetches.len() as u64, Ordering::Relaxed);
                    stored.remember(&b.fetches);
                    pending.remove(0);
                }
                Err(e) => {
                    b.tried = true;
                    tracing::debug!(error = %e, waiting = held, "fetch events not stored yet");
                    break;
                }
            }
        }
        if !unconfirmed.is_empty() && pending.iter().all(|b| !b.tried) {
            // The database answers again: were the given-up batches stored after all?
            if let Ok(stored) = stored_batches(&pool, &unconfirmed).await {
                for (id, n) in unconfirmed.drain(..) {
                    let counter = if stored.contains(&id) {
                        &queue.written
                    } else {
                        &queue.dropped
                    };
                    counter.fetch_add(n, Ordering::Relaxed);
                    queue.unconfirmed.fetch_sub(n, Ordering::Relaxed);
                }
            }
        }
        if stop {
            return;
        }
    }
}

/// Key of the events held together: tenant and phone (`None`: the tenant's events that name no phone).
type HoldKey = (uuid::Uuid, Option<String>);

/// Events the writer holds for [`HOLD`] after the first of their tenant and phone, then stores together.
///
/// A page (sql/V14) holds a phone's events of one batch and costs PostgreSQL about as much for one event
/// as for many (~7 µs). A phone asks for its files within a second or two of booting, but a batch is only a
/// quarter of a second (or 1,024 events) of requests, so without holding most of a boot storm's pages held
/// one event. Held, a phone's boot is one page. Keys come due in the order they were first held, so each
/// batch stays the size it was: what is stored per second does not change, only how many pages it takes.
/// The price: the API shows a fetch up to [`HOLD`] later.
#[derive(Default)]
struct Hold {
    by_key: HashMap<HoldKey, Vec<NewFetch>, foldhash::fast::RandomState>,
    /// Keys in the order their first held event came, with when it came.
    order: VecDeque<(Instant, HoldKey)>,
    len: usize,
}

impl Hold {
    /// Holds `fetches`, taken from the queue at `now`.
    fn add(&mut self, now: Instant, fetches: Vec<NewFetch>) {
        self.len += fetches.len();
        for e in fetches {
            match self.by_key.entry((e.tenant, e.phone.clone())) {
                std::collections::hash_map::Entry::Occupied(mut held) => held.get_mut().push(e),
                std::collections::hash_map::Entry::Vacant(place) => {
                    self.order.push_back((now, place.key().clone()));
                    place.insert(vec![e]);
                }
            }
        }
    }

    /// The events of every key first held `hold` or longer before `now` (every key when `hold` is zero),
    /// key by key in the order they were first held, each key's events in the order they came.
    fn take_due(&mut self, now: Instant, hold: Duration) -> Vec<NewFetch> {
        let mut due = Vec::new();
        while let Some((since, key)) = self.order.pop_front() {
            if now.saturating_duration_since(since) < hold {
                self.order.push_front((since, key));
                break;
            }
            due.extend(self.by_key.remove(&key).unwrap_or_default());
        }
        self.len -= due.len();
        due
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// When to log that events were dropped: at once for the first drops, then at most every
/// [`DROP_WARNING_EVERY`], with the number dropped since the last warning.
#[derive(Default)]
struct DropWarning {
    reported: u64,
    last: Option<Instant>,
}

/// Least time between two warnings of dropped events.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);

impl DropWarning {
    /// Events dropped since the last warning, when one is due now; `total` is the dropped count so far.
    fn due(&mut self, now: Instant, total: u64) -> Option<u64> {
        if total <= self.reported
            || self
                .last
                .is_some_and(|at| now.duration_since(at) < DROP_WARNING_EVERY)
        {
            return None;
        }
        let n = total - self.reported;
        self.reported = total;
        self.last = Some(now);
        Some(n)
    }
}

/// What this writer stored in `phone_files_served` lately, so that a phone fetching a file it already got
/// (every reboot and resync) costs that table nothing: the upsert was ~2.5 µs of PostgreSQL time per
/// per-device fetch. A hash of (tenant, phone, file name) to the first 8 bytes of the content's SHA-256.
/// Forgotten every [`SERVED_CACHE_AGE`] and beyond [`SERVED_CACHE_KEYS`] keys, so a row removed behind the
/// writer's back (its tenant deleted, pruned) is written again by a later fetch.
struct ServedCache {
    keys: HashMap<u64, u64, foldhash::fast::RandomState>,
    since: Instant,
}

/// How long [`ServedCache`] trusts what it remembers.
const SERVED_CACHE_AGE: Duration = Duration::from_secs(600);
/// Most keys [`ServedCache`] holds (~24 MB).
const SERVED_CACHE_KEYS: usize = 1 << 20;

impl Default for ServedCache {
    fn default() -> Self {
        ServedCache {
            keys: HashMap::default(),
            since: Instant::now(),
        }
    }
}

impl ServedCache {
    fn key(&self, tenant: uuid::Uuid, phone: &str, file: &str) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hasher().hash_one((tenant, phone, file))
    }

    fn content(sha: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(sha.get(..8)?.try_into().ok()?))
    }

    /// Marks the served per-device files whose phone, file and content this writer stored lately.
    fn mark_known(&mut self, fetches: &mut [NewFetch]) {
        if self.since.elapsed() > SERVED_CACHE_AGE || self.keys.len() > SERVED_CACHE_KEYS {
            self.keys.clear();
            self.since = Instant::now();
        }
        for e in fetches.iter_mut() {
            let (Some(phone), Some(sha), "served") = (&e.phone, &e.sha256, e.outcome) else {
                continue;
            };
            let stored = self
                .keys
                .get(&self.key(e.tenant, phone, &e.file_name))
                .copied();
            e.served_known = stored.is_some() && stored == Self::content(sha);
        }
    }

    /// Remembers what a committed batch stored: the copies `db::fetches` chose to write.
    fn remember(&mut self, fetches: &[NewFetch]) {
        for ((tenant, phone, file), (sha, _)) in db::fetches::newest_served(fetches) {
            if let Some(content) = Self::content(sha) {
                let key = self.key(tenant, phone, file);
                self.keys.insert(key, content);
            }
        }
    }
}

/// Batches given up while their outcome was unknown; beyond this many, they count as dropped at once.
const MAX_UNCONFIRMED: usize = 10_000;

/// Fetch events on their way to the database.
struct Batch {
    id: uuid::Uuid,
    fetches: Vec<NewFetch>,
    sightings: Vec<Sighting>,
    /// A store was attempted and failed: its COMMIT may have gone through.
    tried: bool,
}

async fn stored_batches(
    pool: &Pool,
    batches: &[(uuid::Uuid, u64)],
) -> Result<std::collections::HashSet<uuid::Uuid>, db::DbError> {
    let client = pool.get().await?;
    let ids: Vec<uuid::Uuid> = batches.iter().map(|(id, _)| *id).collect();
    db::fetches::stored_batches(&client, &ids).await
}

async fn store(
    pool: &Pool,
    id: uuid::Uuid,
    fetches: &[NewFetch],
    sightings: &[Sighting],
) -> Result<(), db::DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if db::fetches::claim_batch(&tx, id).await? {
        db::fetches::insert_batch(&tx, fetches).await?;
        db::fetches::upsert_sightings(&tx, sightings).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Resolves tenant, phone and hash for raw events (off the request path).
fn resolve(
    queue: &EventQueue,
    snapshot: &SnapshotHandle,
    raw: Vec<RawEvent>,
) -> (Vec<NewFetch>, Vec<Sighting>) {
    let snap = snapshot.current();
    let mut fetches = Vec::with_capacity(raw.len());
    let mut sightings = Vec::new();
    // Counted per batch by tenant index, then added to the named counters once per key.
    let mut batch_counts: HashMap<(Option<usize>, Protocol, FetchOutcome), u64> = HashMap::new();
    for e in raw {
        let tenant = snap.tenant_for(e.peer.ip());
        *batch_counts
            .entry((tenant, e.protocol, e.outcome))
            .or_default() += 1;
        let Some(tenant) = tenant else { continue };
        let tenant_id = snap.tenant(tenant).id;
        let mut phone = None;
        // Bytes the snapshot still keeps (stored files, files rendered for it) have a known SHA-256:
        // hashing megabytes of firmware again for every transfer would cost a core during a boot storm.
        let mut known_sha = None;
        if let Ok(normal) = name::normalise(&e.name) {
            let class = name::classify(&normal);
            if let Class::Device { mac, .. } = class {
                match snap.phone(mac) {
                    Some(p) if p.tenant == tenant => phone = Some(mac.to_string()),
                    Some(_) => {}
                    None => sightings.push(sighting(tenant_id, mac, &e, &normal)),
                }
            }
            if let (FetchOutcome::Served, Some(d)) = (e.outcome, &e.data) {
                known_sha = provisioning::known_sha256(&snap, tenant, &normal, class, d);
            }
        }
        let sha256 = match (e.outcome, &e.data) {
            (FetchOutcome::Served, Some(d)) => {
                Some(known_sha.map_or_else(|| Sha256::digest(d).to_vec(), |sha| sha.to_vec()))
            }
            _ => None,
        };
        fetches.push(NewFetch {
            at: e.at,
            tenant: tenant_id,
            protocol: e.protocol.as_str(),
            source: crate::domain::canonical_ip(e.peer.ip()),
            source_port: e.peer.port(),
            file_name: e.name.chars().take(255).collect(),
            phone,
            outcome: e.outcome.as_str(),
            bytes: e.bytes as i64,
            duration_us: e.duration.as_micros() as i64,
            sha256,
            served_known: false,
        });
    }
    let mut counts = queue.counts.lock().unwrap_or_else(|e| e.into_inner());
    for ((tenant, protocol, outcome), n) in batch_counts {
        let slug = tenant.map_or_else(|| "none".into(), |t| snap.tenant(t).slug.to_string());
        *counts.entry((slug, protocol, outcome)).or_default() += n;
    }
    (fetches, sightings)
}

fn sighting(tenant: uuid::Uuid, mac: MacAddress, e: &RawEvent, normal: &str) -> Sighting {
    let last = normal.rsplit('/').next().unwrap_or(normal);
    // SIP<MAC>.cnf is asked for only by 7940/7960 SIP firmware.
    let model_guess = last
        .to_ascii_uppercase()
        .starts_with("SIP")
        .then_some(family_name(Family::Sip79xx));
    Sighting {
        tenant,
        mac: mac.to_string(),
        at: e.at,
        source: crate::domain::canonical_ip(e.peer.ip()),
        file_name: last.to_owned(),
        model_guess,
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Sip79xx => "7940/7960",
        Family::Sip79x1 => "79x1",
        Family::Sip89xx99xx => "89xx/99xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> RawEvent {
        RawEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            protocol: Protocol::Tftp,
            peer: "127.0.0.1:1000".parse().unwrap(),
            name: format!("f{n}"),
            outcome: FetchOutcome::Served,
            bytes: n,
            duration: Duration::ZERO,
            data: None,
        }
    }

    fn fetch(phone: Option<&str>, port: u16) -> NewFetch {
        db::fetches::tests::event(0, phone, port)
    }

    #[test]
    fn held_events_come_due_by_the_time_their_phones_first_event_was_held() {
        let ports =
            |events: Vec<NewFetch>| events.iter().map(|e| e.source_port).collect::<Vec<_>>();
        let t0 = Instant::now();
        let mut hold = Hold::default();
        hold.add(
            t0,
            vec![
                fetch(Some("A"), 1),
                fetch(Some("B"), 2),
                fetch(Some("A"), 3),
                fetch(None, 4),
            ],
        );
        hold.add(
            t0 + Duration::from_millis(500),
            vec![fetch(Some("B"), 5), fetch(Some("C"), 6)],
        );
        assert_eq!(hold.len(), 6);
        assert!(hold
            .take_due(t0 + Duration::from_millis(999), HOLD)
            .is_empty());
        // A, B and the tenant's shared events were first held at t0: all of theirs come due, B's later one
        // too; C waits for its own second.
        assert_eq!(ports(hold.take_due(t0 + HOLD, HOLD)), [1, 3, 2, 5, 4]);
        assert_eq!(hold.len(), 1);
        hold.add(t0 + HOLD, vec![fetch(Some("A"), 7)]);
        assert_eq!(
            ports(hold.take_due(t0 + Duration::from_millis(1500), HOLD)),
            [6]
        );
        // At shutdown everything goes.
        assert_eq!(ports(hold.take_due(t0 + HOLD, Duration::ZERO)), [7]);
        assert_eq!(hold.len(), 0);
    }

    #[test]
    fn a_stored_file_served_as_is_reuses_its_known_hash() {
        use crate::snapshot::{Snapshot, StoredFile, TenantView};
        let tenant = TenantView {
            id: uuid::Uuid::nil(),
            slug: "acme".parse().unwrap(),
            enabled: true,
            settings: Default::default(),
            files: Default::default(),
            templates: Default::default(),
        };
        // A deliberately wrong stored hash shows which path the writer took.
        let firmware = StoredFile {
            sha256: [7; 32],
            bytes: Bytes::from_static(b"firmware image"),
        };
        let snap = Snapshot::build(
            1,
            vec![tenant],
            vec![("127.0.1.0/24".parse().unwrap(), 0)],
            vec![],
            vec![("fw.sbn".into(), firmware.clone())],
        );
        let handle = SnapshotHandle::new(snap);
        let q = EventQueue::new(10);
        let event = |name: &str, data: Bytes| RawEvent {
            peer: "127.0.1.5:1000".parse().unwrap(),
            name: name.into(),
            data: Some(data),
            ..ev(0)
        };
        let (same, _) = resolve(&q, &handle, vec![event("fw.sbn", firmware.bytes.clone())]);
        assert_eq!(
            same[0].sha256.as_deref(),
            Some(&[7u8; 32][..]),
            "the snapshot's hash, not a new one"
        );
        // The same content in another buffer (e.g. a rendered file) is hashed.
        let (copy, _) = resolve(
            &q,
            &handle,
            vec![event("fw.sbn", Bytes::from(b"firmware image".to_vec()))],
        );
        assert_eq!(
            copy[0].sha256.as_deref(),
            Some(&Sha256::digest(b"firmware image")[..])
        );
    }

    #[test]
    fn a_phone_file_stored_lately_with_the_same_content_is_known_and_nothing_else_is() {
        let fetch = |mac: &str, file: &str, sha: u8, secs: i64| NewFetch {
            at: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(secs as u64),
            tenant: uuid::Uuid::nil(),
            protocol: "tftp",
            source: "127.0.1.5".parse().unwrap(),
            source_port: 1000,
            file_name: file.into(),
            phone: Some(mac.into()),
            outcome: "served",
            bytes: 1,
            duration_us: 1,
            sha256: Some(vec![sha; 32]),
            served_known: false,
        };
        let mut cache = ServedCache::default();
        // Two copies of one file in a batch: the newer one is what the table holds.
        cache.remember(&[
            fetch("0A0000000001", "SIP0A0000000001.cnf", 2, 2),
            fetch("0A0000000001", "SIP0A0000000001.cnf", 1, 1),
        ]);
        let mut next = vec![
            fetch("0A0000000001", "SIP0A0000000001.cnf", 2, 3),
            fetch("0A0000000001", "SIP0A0000000001.cnf", 1, 3),
            fetch("0A0000000002", "SIP0A0000000001.cnf", 2, 3),
            fetch("0A0000000001", "SEP0A0000000001.cnf.xml", 2, 3),
            NewFetch {
                tenant: uuid::Uuid::from_u128(1),
                ..fetch("0A0000000001", "SIP0A0000000001.cnf", 2, 3)
            },
            NewFetch {
                outcome: "aborted",
                ..fetch("0A0000000001", "SIP0A0000000001.cnf", 2, 3)
            },
        ];
        cache.mark_known(&mut next);
        let known: Vec<bool> = next.iter().map(|e| e.served_known).collect();
        assert_eq!(known, [true, false, false, false, false, false]);
        // It remembers what was written: a copy already known is not written again, so a new copy of
        // the same file in the batch is what the table holds, even when the known one is newer.
        let mut batch = vec![
            NewFetch {
                served_known: true,
                ..fetch("0A0000000003", "SIP0A0000000003.cnf", 5, 9)
            },
            fetch("0A0000000003", "SIP0A0000000003.cnf", 6, 8),
        ];
        cache.remember(&batch);
        batch[0].served_known = false;
        cache.mark_known(&mut batch);
        assert_eq!(
            (batch[0].served_known, batch[1].served_known),
            (false, true)
        );
        // Past its age it trusts nothing.
        cache.since -= SERVED_CACHE_AGE + Duration::from_secs(1);
        let mut again = vec![fetch("0A0000000001", "SIP0A0000000001.cnf", 2, 4)];
        cache.mark_known(&mut again);
        assert!(!again[0].served_known);
    }

    #[test]
    fn dropped_events_are_reported_at_once_then_at_most_once_a_minute_with_the_count_since() {
        let t0 = Instant::now();
        let mut w = DropWarning::default();
        assert_eq!(w.due(t0, 0), None, "nothing dropped");
        assert_eq!(w.due(t0, 5), Some(5), "the first drops at once");
        assert_eq!(w.due(t0 + Duration::from_secs(30), 9), None);
        assert_eq!(
            w.due(t0 + DROP_WARNING_EVERY, 12),
            Some(7),
            "a minute later, all since the last warning"
        );
        let t1 = t0 + DROP_WARNING_EVERY * 3;
        assert_eq!(w.due(t1, 12), None, "no new drops, no warning");
        assert_eq!(w.due(t1, 13), Some(1));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let q = EventQueue::new(3);
        for n in 0..5 {
            q.push(ev(n));
        }
        assert_eq!(q.dropped(), 2);
        let names: Vec<String> = q.take(10).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["f2", "f3", "f4"]);
    }
}
