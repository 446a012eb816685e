//! The API's change notification: one coalesced `NOTIFY dialtone_changes` after write requests, instead of
//! one per writing transaction.
//!
//! A `NOTIFY` makes its transaction take a cluster-wide lock at commit, so notifying writers commit one at
//! a time (sql/V8). The API's worker pools set `dialtone.defer_notify`, which turns the tables' notify
//! triggers off for their sessions; after every request that may have written (any method but GET, HEAD
//! and OPTIONS, once its handler has committed and answered), the middleware calls [`ChangeNotifier::signal`].
//! One task sends the `NOTIFY` in a transaction of its own, at most one per [`NOTIFY_GAP`]; signals that
//! arrive while one is in flight or within the gap fold into the next, so a burst of writes costs one
//! notification per gap, and a write is announced no later than the gap plus one round trip after it
//! committed (the first write after a quiet spell at once).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::{self, Pool};

/// The shortest time between two notifications. Each costs a commit that takes PostgreSQL's cluster-wide
/// notify lock and wakes every listening refresher, which reloads at most every 20 ms anyway
/// (`snapshot::refresher`); one per write request was close to one per API create under load.
pub const NOTIFY_GAP: Duration = Duration::from_millis(10);

/// Hands write requests' "something changed" to the notifying task. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ChangeNotifier {
    pending: Arc<Notify>,
}

impl ChangeNotifier {
    /// Something may have changed: make sure a `NOTIFY` is sent after now.
    pub fn signal(&self) {
        self.pending.notify_one();
    }

    /// Sends a `NOTIFY` on `pool` (a pool whose sessions do not defer) after each signal, until `shutdown`,
    /// at most one per [`NOTIFY_GAP`]: the first signal after a quiet spell at once, later ones folded
    /// into one at the end of the gap. A failed send (database away) is retried every 500 ms; the
    /// snapshot's periodic reload covers the gap.
    pub async fn run(self, pool: Pool, shutdown: CancellationToken) {
        let mut last_sent: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.pending.notified() => {}
            }
            if let Some(at) = last_sent {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(at + NOTIFY_GAP) => {}
                }
            }
            while let Err(e) = db::notify_changes(&pool).await {
                tracing::debug!(error = %e, "change notification not sent; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            last_sent = Some(tokio::time::Instant::now());
        }
    }
}
