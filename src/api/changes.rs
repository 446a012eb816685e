//! The API's change notification: one coalesced `NOTIFY dialtone_changes` after write requests, instead of
//! one per writing transaction.
//!
//! A `NOTIFY` makes its transaction take a cluster-wide lock at commit, so notifying writers commit one at
//! a time (sql/V8). The API's worker pools set `dialtone.defer_notify`, which turns the tables' notify
//! triggers off for their sessions; after every request that may have written (any method but GET, HEAD
//! and OPTIONS, once its handler has committed and answered), the middleware calls [`ChangeNotifier::signal`].
//! One task sends the `NOTIFY` in a transaction of its own; signals that arrive while one is in flight fold
//! into the next, so a burst of writes costs one or two notifications, and a write is announced no later
//! than one round trip after it committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::{self, Pool};

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

    /// Sends a `NOTIFY` on `pool` (a pool whose sessions do not defer) after each signal, until `shutdown`.
    /// A failed send (database away) is retried every 500 ms; the snapshot's periodic reload covers the gap.
    pub async fn run(self, pool: Pool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.pending.notified() => {}
            }
            while let Err(e) = db::notify_changes(&pool).await {
                tracing::debug!(error = %e, "change notification not sent; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}
