//! The provisioning front end: one `Frontend` answers TFTP and HTTP :6970 requests from the in-memory
//! snapshot through the pure provisioning core, records fetch events without waiting on the database,
//! and keeps the counters `/metrics` shows. `http` is the :6970 listener.

pub mod admin;
pub mod events;
pub mod http;

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

pub use events::{EventQueue, FetchOutcome, Protocol, RawEvent};

use crate::provisioning::{self, Miss, Served};
use crate::snapshot::SnapshotHandle;
use crate::tftp::{self, FileSource, Lookup, Outcome, TransferReport};

/// What the front end decided for one request.
#[derive(Debug)]
pub enum Answer {
    /// Send these bytes.
    Serve(Served),
    /// "File not found"; `counts_as_miss` is false for names every phone asks for (CTL/ITL/.sgn).
    NotFound {
        /// Whether it spends the source's miss budget.
        counts_as_miss: bool,
    },
    /// Refused (bad name).
    Refused,
    /// No answer: the source is in no tenant's network.
    Silent,
}

/// How a request ended, as the listener saw it.
#[derive(Debug)]
pub struct Sent {
    /// Outcome.
    pub outcome: FetchOutcome,
    /// Payload bytes sent.
    pub bytes: u64,
    /// From request to last byte.
    pub duration: Duration,
    /// The content, when a transfer started.
    pub data: Option<bytes::Bytes>,
}

const RENDER_BUCKETS_US: [u64; 8] = [5, 10, 25, 50, 100, 250, 1000, 10000];

/// Request-path counters (atomics only).
#[derive(Default)]
pub struct Counters {
    unknown_source: AtomicU64,
    security_events: AtomicU64,
    bytes_tftp: AtomicU64,
    bytes_http: AtomicU64,
    render_count: AtomicU64,
    render_sum_ns: AtomicU64,
    render_buckets: [AtomicU64; RENDER_BUCKETS_US.len()],
}

/// The provisioning front end shared by the TFTP and HTTP listeners.
pub struct Frontend {
    snapshot: SnapshotHandle,
    events: Arc<EventQueue>,
    counters: Counters,
}

impl Frontend {
    /// A front end serving from `snapshot`, recording into `events`.
    pub fn new(snapshot: SnapshotHandle, events: Arc<EventQueue>) -> Self {
        Frontend {
            snapshot,
            events,
            counters: Counters::default(),
        }
    }

    /// The snapshot handle.
    pub fn snapshot(&self) -> &SnapshotHandle {
        &self.snapshot
    }

    /// The event queue.
    pub fn events(&self) -> &Arc<EventQueue> {
        &self.events
    }

    /// Decides what `peer` gets for `name`.
    pub fn answer(&self, peer: SocketAddr, name: &str) -> Answer {
        let snap = self.snapshot.current();
        let start = Instant::now();
        let result = provisioning::provision(&snap, peer.ip(), name);
        self.observe_render(start.elapsed());
        match result {
            Ok(served) => Answer::Serve(served),
            Err(Miss::UnknownSource) => {
                self.counters.unknown_source.fetch_add(1, Ordering::Relaxed);
                Answer::Silent
            }
            Err(Miss::BadName) => Answer::Refused,
            Err(Miss::KnownAbsent) => Answer::NotFound {
                counts_as_miss: false,
            },
            Err(Miss::OtherTenantsDevice(mac)) => {
                self.counters
                    .security_events
                    .fetch_add(1, Ordering::Relaxed);
                let tenant = snap
                    .tenant_for(peer.ip())
                    .map(|t| snap.tenant(t).slug.to_string())
                    .unwrap_or_default();
                tracing::warn!(security = "cross_tenant_mac", %peer, %mac, tenant, "a tenant network asked for another tenant's phone");
                Answer::NotFound {
                    counts_as_miss: true,
                }
            }
            Err(
                Miss::NotFound
                | Miss::UnknownDevice(_)
                | Miss::DeviceDisabled
                | Miss::TenantDisabled,
            ) => Answer::NotFound {
                counts_as_miss: true,
            },
        }
    }

    fn observe_render(&self, d: Duration) {
        let c = &self.counters;
        let us = d.as_micros() as u64;
        c.render_count.fetch_add(1, Ordering::Relaxed);
        c.render_sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        if let Some(i) = RENDER_BUCKETS_US.iter().position(|b| us <= *b) {
            c.render_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a finished request.
    pub fn record(&self, protocol: Protocol, peer: SocketAddr, name: String, sent: Sent) {
        match protocol {
            Protocol::Tftp => self
                .counters
                .bytes_tftp
                .fetch_add(sent.bytes, Ordering::Relaxed),
            Protocol::Http => self
                .counters
                .bytes_http
                .fetch_add(sent.bytes, Ordering::Relaxed),
        };
        let at = OffsetDateTime::now_utc() - sent.duration;
        self.events.push(RawEvent {
            at,
            protocol,
            peer,
            name,
            outcome: sent.outcome,
            bytes: sent.bytes,
            duration: sent.duration,
            data: sent.data,
        });
    }

    /// Appends the front end's metrics in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String, tftp: Option<&tftp::TftpStats>) {
        let c = &self.counters;
        let snap = self.snapshot.current();
        let _ = writeln!(out, "# HELP dialtone_provisioning_requests_total Provisioning requests by tenant, protocol and outcome.");
        let _ = writeln!(out, "# TYPE dialtone_provisioning_requests_total counter");
        if let Ok(counts) = self.events.counts.lock() {
            let mut rows: Vec<_> = counts.iter().collect();
            rows.sort_by(|a, b| {
                (&a.0 .0, a.0 .1.as_str(), a.0 .2.as_str()).cmp(&(
                    &b.0 .0,
                    b.0 .1.as_str(),
                    b.0 .2.as_str(),
                ))
            });
            for ((tenant, proto, outcome), n) in rows {
                let _ = writeln!(
                    out,
                    "dialtone_provisioning_requests_total{{tenant=\"{tenant}\",protocol=\"{}\",outcome=\"{}\"}} {n}",
                    proto.as_str(),
                    outcome.as_str()
                );
            }
        }
        let _ = writeln!(out, "# TYPE dialtone_provisioning_bytes_total counter");
        let _ = writeln!(
            out,
            "dialtone_provisioning_bytes_total{{protocol=\"tftp\"}} {}",
            c.bytes_tftp.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "dialtone_provisioning_bytes_total{{protocol=\"http\"}} {}",
            c.bytes_http.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE dialtone_provisioning_unknown_source_total counter"
        );
        let _ = writeln!(
            out,
            "dialtone_provisioning_unknown_source_total {}",
            c.unknown_source.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE dialtone_provisioning_security_events_total counter"
        );
        let _ = writeln!(
            out,
            "dialtone_provisioning_security_events_total {}",
            c.security_events.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP dialtone_render_seconds Time to decide and render one request."
        );
        let _ = writeln!(out, "# TYPE dialtone_render_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in RENDER_BUCKETS_US.iter().enumerate() {
            cumulative += c.render_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "dialtone_render_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        let count = c.render_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "dialtone_render_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "dialtone_render_seconds_sum {}",
            c.render_sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "dialtone_render_seconds_count {count}");
        let _ = writeln!(out, "# TYPE dialtone_snapshot_sequence gauge");
        let _ = writeln!(out, "dialtone_snapshot_sequence {}", snap.sequence);
        let _ = writeln!(out, "# TYPE dialtone_snapshot_age_seconds gauge");
        let _ = writeln!(
            out,
            "dialtone_snapshot_age_seconds {}",
            self.snapshot.age().map(|a| a.as_secs_f64()).unwrap_or(-1.0)
        );
        let _ = writeln!(out, "# TYPE dialtone_snapshot_phones gauge");
        let _ = writeln!(out, "dialtone_snapshot_phones {}", snap.phone_count());
        let _ = writeln!(out, "# TYPE dialtone_snapshot_load_seconds gauge");
        let _ = writeln!(
            out,
            "dialtone_snapshot_load_seconds {}",
            self.snapshot.last_load_time().as_secs_f64()
        );
        let _ = writeln!(out, "# TYPE dialtone_snapshot_database_connected gauge");
        let _ = writeln!(
            out,
            "dialtone_snapshot_database_connected {}",
            u8::from(self.snapshot.is_connected())
        );
        let _ = writeln!(out, "# TYPE dialtone_fetch_events_dropped_total counter");
        let _ = writeln!(
            out,
            "dialtone_fetch_events_dropped_total {}",
            self.events.dropped()
        );
        let _ = writeln!(out, "# TYPE dialtone_fetch_events_written_total counter");
        let _ = writeln!(
            out,
            "dialtone_fetch_events_written_total {}",
            self.events.written()
        );
        let _ = writeln!(out, "# HELP dialtone_fetch_events_unconfirmed Fetch events of batches given up while the database was away whose COMMIT may have gone through; counted as written or dropped once it answers.");
        let _ = writeln!(out, "# TYPE dialtone_fetch_events_unconfirmed gauge");
        let _ = writeln!(
            out,
            "dialtone_fetch_events_unconfirmed {}",
            self.events.unconfirmed()
        );
        let _ = writeln!(out, "# TYPE dialtone_fetch_events_queued gauge");
        let _ = writeln!(
            out,
            "dialtone_fetch_events_queued {}",
            self.events.len() + self.events.held()
        );
        if let Some(t) = tftp {
            let s = t.snapshot();
            let _ = writeln!(out, "# TYPE dialtone_tftp_transfers_in_flight gauge");
            let _ = writeln!(
                out,
                "dialtone_tftp_transfers_in_flight {}",
                s.transfers_in_flight
            );
            let _ = writeln!(out, "# TYPE dialtone_tftp_dropped_total counter");
            for (reason, n) in [
                ("unknown_source", s.dropped_silent),
                ("miss_budget", s.dropped_budget),
                ("concurrency", s.dropped_concurrency),
                ("malformed", s.dropped_malformed),
                ("response_at_listener", s.dropped_response),
                ("duplicate", s.duplicates),
            ] {
                let _ = writeln!(
                    out,
                    "dialtone_tftp_dropped_total{{reason=\"{reason}\"}} {n}"
                );
            }
            let _ = writeln!(out, "# TYPE dialtone_tftp_transfers_total counter");
            for (outcome, n) in [
                ("served", s.served),
                ("not_found", s.misses),
                ("refused", s.refused),
                ("aborted", s.aborted),
                ("timed_out", s.timed_out),
            ] {
                let _ = writeln!(
                    out,
                    "dialtone_tftp_transfers_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
            let _ = writeln!(out, "# TYPE dialtone_tftp_cooldowns_total counter");
            let _ = writeln!(out, "dialtone_tftp_cooldowns_total {}", s.cooldowns);
        }
    }
}

impl FileSource for Frontend {
    fn lookup(&self, peer: SocketAddr, name: &str) -> Lookup {
        match self.answer(peer, name) {
            Answer::Serve(s) => Lookup::Serve(s.bytes),
            Answer::NotFound { counts_as_miss } => Lookup::NotFound { counts_as_miss },
            Answer::Refused => Lookup::Refused,
            Answer::Silent => Lookup::Silent,
        }
    }

    fn report(&self, r: TransferReport) {
        let outcome = match r.outcome {
            Outcome::Served => FetchOutcome::Served,
            Outcome::NotFound => FetchOutcome::NotFound,
            Outcome::Refused => FetchOutcome::Refused,
            Outcome::Aborted | Outcome::TimedOut => FetchOutcome::Aborted,
            // Unknown sources are counted, not stored.
            Outcome::Silent => return,
        };
        self.record(
            Protocol::Tftp,
            r.peer,
            r.name,
            Sent {
                outcome,
                bytes: r.bytes,
                duration: r.duration,
                data: r.data,
            },
        );
    }
}
