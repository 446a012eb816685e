//! Group commit of phone creates: the creates of one tenant that wait at the same time go to PostgreSQL as
//! one statement and one commit ([`db::phones::try_create_many`]) instead of one each.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use deadpool_postgres::Object;
use tokio::sync::{oneshot, OnceCell};

use crate::db::{self, phones::NewPhone, phones::Phone, DbError, Pool};

/// At most this many creates share a statement.
pub const MAX_BATCH: usize = 64;

/// Statements of one lane in flight at once, pipelined on the lane's connection.
pub const PIPELINE: usize = 2;

type Reply = oneshot::Sender<Result<Option<Phone>, DbError>>;

/// Phone creates, in one lane per tenant. A create that finds fewer than [`PIPELINE`] statements of its
/// tenant in flight starts one at once; the creates arriving meanwhile share the next one. No timer, so a
/// lone create waits for nothing, and a busy tenant's creates commit together.
///
/// A lane runs its statements on one connection, one after the other (pipelined): measured with `wrk -c8`
/// on one tenant, 4,719 creates/s as one statement each, 5,568-5,904 with one statement in flight,
/// 5,846-6,497 with two pipelined on one connection, and 4,581-5,142 with two to four on connections of
/// their own (smaller batches, more PostgreSQL CPU per create: 0.11 ms with one in flight, 0.16-0.20 ms).
/// A lane per tenant, not one for all: a create waiting on a lock (its tenant being deleted, its MAC being
/// imported elsewhere) holds up only its own tenant's creates. A busy lane keeps its connection only while
/// nobody else waits for one of the pool. Cheap to clone; one per process.
#[derive(Clone, Default)]
pub struct CreateBatcher {
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
}

/// One tenant's creates: those waiting, the statements in flight, and their connection.
#[derive(Default)]
struct Lane {
    waiting: Vec<(NewPhone, Reply)>,
    running: usize,
    conn: Arc<OnceCell<Arc<Object>>>,
}

impl CreateBatcher {
    /// [`db::phones::try_create_many`] for one create, sharing its statement with the creates of the same
    /// tenant waiting at the same time. Answered after the commit. A lane that opens here takes its
    /// connection from `pool` (the calling worker's, whose connections live on this thread).
    pub async fn create(&self, pool: &Pool, phone: NewPhone) -> Result<Option<Phone>, DbError> {
        let (tx, rx) = oneshot::channel();
        let slug = phone.slug.clone();
        let start = {
            let mut lanes = self.lock();
            let lane = lanes.entry(slug.clone()).or_default();
            if lane.running < PIPELINE {
                lane.running += 1;
                Some((phone, tx))
            } else {
                lane.waiting.push((phone, tx));
                None
            }
        };
        if let Some(first) = start {
            tokio::spawn(self.clone().drain(pool.clone(), slug, first));
        }
        rx.await
            .unwrap_or_else(|_| Err(DbError::Other("the create was dropped unanswered".into())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lane's connection: the one its statements share, or a new one when there is none or it broke.
    async fn connection(&self, pool: &Pool, slug: &str) -> Result<Arc<Object>, DbError> {
        let cell = {
            let mut lanes = self.lock();
            let lane = lanes.entry(slug.to_owned()).or_default();
            if lane.conn.get().is_some_and(|c| c.is_closed()) {
                lane.conn = Arc::default();
            }
            lane.conn.clone()
        };
        cell.get_or_try_init(|| async { Ok(Arc::new(pool.get().await?)) })
            .await
            .cloned()
    }

    /// Runs `first`, then the creates that waited, until none waits; the lane closes with its last
    /// statement.
    async fn drain(self, pool: Pool, slug: String, first: (NewPhone, Reply)) {
        let _unwinding = Unwinding(&self, &slug);
        let mut batch = vec![first];
        loop {
            run(self.connection(&pool, &slug).await, batch).await;
            let mut lanes = self.lock();
            let Some(lane) = lanes.get_mut(&slug) else {
                return;
            };
            if lane.waiting.is_empty() {
                // In the same critical section as the look at `waiting`: a create arriving after it sees
                // a free place in the lane and starts its own statement.
                lane.running -= 1;
                if lane.running == 0 {
                    lanes.remove(&slug);
                }
                return;
            }
            if pool.status().waiting > 0 {
                // Others wait for a connection of this pool: the lane's goes back once its statements
                // in flight end, and its next statement queues for one like everybody else.
                lane.conn = Arc::default();
            }
            let n = lane.waiting.len().min(MAX_BATCH);
            batch = lane.waiting.drain(..n).collect();
        }
    }
}

/// Counts a drain out of its lane should it unwind (the lane's last one closes it: the creates waiting
/// there are answered with an error as their replies drop), so that the tenant's creates go on.
struct Unwinding<'a>(&'a CreateBatcher, &'a str);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut lanes = self.0.lock();
        if let Some(lane) = lanes.get_mut(self.1) {
            lane.running -= 1;
            if lane.running == 0 {
                lanes.remove(self.1);
            }
        }
    }
}

/// One statement for `batch` on `conn`. A MAC given twice goes to the general path (`None`) after the
/// first one's commit. When the statement fails as a whole, each create is tried alone, so each gets its
/// own answer (a NUL byte in one label fails only that one).
async fn run(conn: Result<Arc<Object>, DbError>, batch: Vec<(NewPhone, Reply)>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let (batch, repeated): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|(p, _)| seen.insert(p.mac));
    let (creates, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let results = match conn {
        Err(e) => vec![Err(e); creates.len()],
        Ok(client) => match db::phones::try_create_many(&*client, &creates).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if creates.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut each = Vec::with_capacity(creates.len());
                for p in &creates {
                    let one = db::phones::try_create_many(&*client, std::slice::from_ref(p)).await;
                    each.push(one.map(|mut v| v.pop().flatten()));
                }
                each
            }
        },
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
    for (_, reply) in repeated {
        let _ = reply.send(Ok(None));
    }
}
