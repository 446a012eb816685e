//! The refresher: keeps the in-memory snapshot equal to the database.
//!
//! Ordering invariants:
//! 1. `LISTEN` comes before the load, so a change committed between the two is never lost.
//! 2. After any reconnect the snapshot is reloaded in full: notifications sent while disconnected are gone.
//! 3. Notifications arrive on the connection's message stream, so the refresher owns one plain
//!    (non-pooled) connection.
//!
//! A burst of notifications is coalesced into one reload. A periodic full reload is the safety net. When
//! the database is away, the last snapshot keeps serving and its age grows (see [`SnapshotHandle::age`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::Snapshot;
use crate::db::{self, snapshot::BlobCache};

/// The channel every write notifies.
pub const CHANNEL: &str = "dialtone_changes";

/// Least time between the starts of two reloads on notifications. The first change after a quiet spell
/// reloads at once; under a stream of writes the deltas are batched (each costs a pass over the changed
/// tenants, not over the changes: at 2,000 API creates/s, one reload per ~25 writes was a fifth of the
/// machine), and a change waits at most this much longer to be served.
const RELOAD_MIN_GAP: Duration = Duration::from_millis(20);

/// Shared access to the current snapshot: a lock-free load per request.
#[derive(Clone)]
pub struct SnapshotHandle {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Snapshot>,
    loaded_at_ms: AtomicU64,
    loaded: AtomicBool,
    connected: AtomicBool,
    reloads: AtomicU64,
    last_load_us: AtomicU64,
    /// Woken by every [`SnapshotHandle::store`], for [`SnapshotHandle::wait_for`].
    stored: Notify,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new(Snapshot::empty())
    }
}

impl SnapshotHandle {
    /// A handle serving `snapshot` (marked loaded only by [`SnapshotHandle::store`]).
    pub fn new(snapshot: Snapshot) -> Self {
        SnapshotHandle {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(snapshot),
                loaded_at_ms: AtomicU64::new(0),
                loaded: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                reloads: AtomicU64::new(0),
                last_load_us: AtomicU64::new(0),
                stored: Notify::new(),
            }),
        }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// Replaces the snapshot.
    pub fn store(&self, snapshot: Snapshot, load_time: Duration) {
        self.inner.current.store(Arc::new(snapshot));
        self.inner.loaded_at_ms.store(now_ms(), Ordering::Relaxed);
        self.inner.loaded.store(true, Ordering::Release);
        self.inner.reloads.fetch_add(1, Ordering::Relaxed);
        self.inner
            .last_load_us
            .store(load_time.as_micros() as u64, Ordering::Relaxed);
        self.inner.stored.notify_waiters();
    }

    /// The current snapshot and what `find` answers for it, or for the first snapshot stored within
    /// `timeout` for which it answers; `None` when none did (for the API's reads of something the database
    /// already has and the snapshot may not have caught up with yet).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut find: impl FnMut(&Snapshot) -> Option<T>,
    ) -> Option<(Arc<Snapshot>, T)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Created before the look, so that a store between the look and the wait is not missed.
            let stored = self.inner.stored.notified();
            let snap = self.current();
            if let Some(found) = find(&snap) {
                return Some((snap, found));
            }
            tokio::time::timeout_at(deadline, stored).await.ok()?;
        }
    }

    /// Whether a snapshot has been loaded from the database at least once.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire)
    }

    /// Whether the refresher's database connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Time since the last successful load (`None` before the first).
    pub fn age(&self) -> Option<Duration> {
        self.is_loaded().then(|| {
            Duration::from_millis(
                now_ms().saturating_sub(self.inner.loaded_at_ms.load(Ordering::Relaxed)),
            )
        })
    }

    /// Number of loads so far.
    pub fn reloads(&self) -> u64 {
        self.inner.reloads.load(Ordering::Relaxed)
    }

    /// Duration of the last load.
    pub fn last_load_time(&self) -> Duration {
        Duration::from_micros(self.inner.last_load_us.load(Ordering::Relaxed))
    }
}

/// How the refresher behaves.
#[derive(Clone, Debug)]
pub struct RefresherSettings {
    /// Database URL.
    pub url: String,
    /// Full reload even without notifications.
    pub full_reload_every: Duration,
    /// Pause between reconnection attempts.
    pub retry_every: Duration,
    /// Poll for changes at this period instead of listening for notifications (a read replica, where
    /// `LISTEN` is impossible). `None`: LISTEN/NOTIFY, falling back to polling every second when the
    /// server refuses `LISTEN`.
    pub poll_every: Option<Duration>,
    /// Work done on each new snapshot before it is published (off the request path), e.g. computing
    /// tenant-wide stamps.
    pub prepare: Option<fn(&Snapshot)>,
}

/// Follows the database until `shutdown`.
pub async fn run(settings: RefresherSettings, handle: SnapshotHandle, shutdown: CancellationToken) {
    let mut blobs = BlobCache::new();
    while !shutdown.is_cancelled() {
        match follow(&settings, &handle, &shutdown, &mut blobs).await {
            Ok(()) => return,
            Err(e) => {
                handle.inner.connected.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, age_s = handle.age().map(|a| a.as_secs()), "snapshot refresher lost the database; serving the last snapshot");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.retry_every) => {}
        }
    }
}

async fn follow(
    settings: &RefresherSettings,
    handle: &SnapshotHandle,
    shutdown: &CancellationToken,
    blobs: &mut BlobCache,
) -> Result<(), db::DbError> {
    let (mut client, mut connection) = db::parse_config(&settings.url)?
        .connect(tokio_postgres::NoTls)
        .await?;
    let (tx, mut notes) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let result = async {
        let mut poll_every = settings.poll_every;
        if poll_every.is_none() {
            if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                if e.as_db_error().is_none() {
                    return Err(e.into());
                }
                // A hot standby refuses LISTEN ("cannot execute LISTEN during recovery"): poll instead.
                tracing::warn!(error = %e, "the database refuses LISTEN; polling for changes every second");
                poll_every = Some(Duration::from_secs(1));
            }
        }
        let mut poll = tokio::time::interval(poll_every.unwrap_or(Duration::from_secs(3600)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        handle.inner.connected.store(true, Ordering::Relaxed);
        // After (re)connecting, always a full load: notifications sent meanwhile are lost.
        let mut xsnapshot = reload(&mut client, handle, blobs, None, settings.prepare).await?;
        let mut tick = tokio::time::interval(settings.full_reload_every);
        tick.tick().await;
        let mut last_notified_reload = Instant::now()
            .checked_sub(RELOAD_MIN_GAP)
            .unwrap_or_else(Instant::now);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                note = notes.recv() => {
                    if note.is_none() {
                        return Err(db::DbError::Unavailable("notification stream ended".into()));
                    }
                    let since_last = last_notified_reload.elapsed();
                    if since_last < RELOAD_MIN_GAP {
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(RELOAD_MIN_GAP - since_last) => {}
                        }
                    }
                    // Coalesce a burst: everything already queued is covered by one reload.
                    while notes.try_recv().is_ok() {}
                    last_notified_reload = Instant::now();
                    xsnapshot = reload(&mut client, handle, blobs, Some(&xsnapshot), settings.prepare).await?;
                }
                _ = tick.tick() => xsnapshot = reload(&mut client, handle, blobs, None, settings.prepare).await?,
                _ = poll.tick(), if poll_every.is_some() => {
                    xsnapshot = reload(&mut client, handle, blobs, Some(&xsnapshot), settings.prepare).await?;
                }
            }
        }
    }
    .await;
    pump.abort();
    result
}

/// Loads (a delta over the current snapshot when `since` is given) and swaps it in; returns the database
/// snapshot the load reflects.
async fn reload(
    client: &mut tokio_postgres::Client,
    handle: &SnapshotHandle,
    blobs: &mut BlobCache,
    since: Option<&str>,
    settings_prepare: Option<fn(&Snapshot)>,
) -> Result<String, db::DbError> {
    let start = Instant::now();
    let current = handle.current();
    let loaded = match since {
        Some(x) => db::snapshot::load(client, blobs, Some((current.as_ref(), x))).await?,
        None => db::snapshot::load_full(client, blobs, current.as_ref()).await?,
    };
    let elapsed = start.elapsed();
    let (sequence, phones, ms) = (
        loaded.snapshot.sequence,
        loaded.snapshot.phone_count(),
        elapsed.as_millis() as u64,
    );
    if loaded.delta {
        tracing::debug!(sequence, phones, ms, "snapshot delta loaded");
    } else {
        tracing::info!(sequence, phones, ms, "snapshot loaded");
    }
    let full_load = !loaded.delta;
    let mut snapshot = loaded.snapshot;
    // Unchanged tenants keep what was computed for them; only what changed is computed again.
    snapshot.inherit_tenant_caches(&current);
    if full_load {
        snapshot.inherit_device_files(&current);
    }
    if let Some(prepare) = settings_prepare {
        // CPU-bound (it renders every 7940/7960 phone of a tenant after a change): a blocking thread.
        snapshot = tokio::task::spawn_blocking(move || {
            prepare(&snapshot);
            snapshot
        })
        .await
        .map_err(|e| db::DbError::Other(e.to_string()))?;
    }
    handle.store(snapshot, start.elapsed());
    Ok(loaded.xsnapshot)
}
