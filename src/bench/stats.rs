//! Counters and latency histograms of a run, and their rendering as a table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

/// Sub-bucket bits: each power of two is split into 64 buckets, so a reported value is within 1/64
/// (1.6 %) above the true one; values below 128 are exact.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

/// A log-bucketed (HDR-style) histogram of microsecond values. Memory grows with the largest value
/// recorded (about 1,000 buckets up to one second).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let shift = e - SUB_BITS;
    let mantissa = v >> shift; // in SUB..2*SUB
    (2 * SUB + u64::from(e - SUB_BITS - 1) * SUB + (mantissa - SUB)) as usize
}

/// The largest value that falls into bucket `i`.
fn bucket_max(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let k = i - 2 * SUB;
    let shift = k / SUB + 1;
    let mantissa = SUB + k % SUB;
    (mantissa << shift) + ((1u64 << shift) - 1)
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        let b = bucket_of(v);
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += u128::from(v);
    }

    /// Records a duration in microseconds.
    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest value (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean (exact).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at percentile `p` (0..=100): the smallest recorded bucket holding at least `p` % of
    /// the values, reported as that bucket's upper bound (never above the exact maximum).
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_max(i).min(self.max).max(self.min);
            }
        }
        self.max
    }
}

/// Counters of one step of the boot sequence (or of the single file in `--file` mode).
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    /// Served.
    pub ok: u64,
    /// ERROR 1 on a step where not-found is correct.
    pub not_found_ok: u64,
    /// Failed.
    pub failed: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Latency of successful transfers (µs).
    pub latency: Histogram,
}

impl StepStats {
    fn merge(&mut self, o: &StepStats) {
        self.ok += o.ok;
        self.not_found_ok += o.not_found_ok;
        self.failed += o.failed;
        self.bytes += o.bytes;
        self.latency.merge(&o.latency);
    }
}

/// Everything counted during a run. Workers record into a few shards that are merged at the end.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Successful transfers (served, or an accepted not-found).
    pub transfers_ok: u64,
    /// Failed transfers.
    pub transfers_failed: u64,
    /// Accepted not-found answers (included in `transfers_ok`).
    pub not_found_ok: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// RRQ/ACK retransmissions after a timeout.
    pub retransmits: u64,
    /// Out-of-order or duplicate DATA blocks.
    pub out_of_order: u64,
    /// Phones whose every transfer succeeded.
    pub phones_ok: u64,
    /// Phones with at least one failed transfer.
    pub phones_failed: u64,
    /// Failed transfers by reason.
    pub failures: BTreeMap<String, u64>,
    /// One example message per reason (e.g. the server's ERROR text with the file name).
    pub failure_examples: BTreeMap<String, String>,
    /// Latency of successful transfers (µs).
    pub transfer_latency: Histogram,
    /// Boot time of phones without failures, first request to last answer (µs).
    pub phone_latency: Histogram,
    /// Per step, in sequence order.
    pub steps: Vec<StepStats>,
}

impl Stats {
    /// Empty counters for `steps` steps.
    pub fn new(steps: usize) -> Stats {
        Stats {
            steps: vec![StepStats::default(); steps],
            ..Stats::default()
        }
    }

    /// Adds another shard.
    pub fn merge(&mut self, o: &Stats) {
        self.transfers_ok += o.transfers_ok;
        self.transfers_failed += o.transfers_failed;
        self.not_found_ok += o.not_found_ok;
        self.bytes += o.bytes;
        self.retransmits += o.retransmits;
        self.out_of_order += o.out_of_order;
        self.phones_ok += o.phones_ok;
        self.phones_failed += o.phones_failed;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.failure_examples {
            self.failure_examples
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self.transfer_latency.merge(&o.transfer_latency);
        self.phone_latency.merge(&o.phone_latency);
        if self.steps.len() < o.steps.len() {
            self.steps.resize(o.steps.len(), StepStats::default());
        }
        for (a, b) in self.steps.iter_mut().zip(&o.steps) {
            a.merge(b);
        }
    }

    /// Counts a failed transfer of `step`.
    pub fn fail(&mut self, step: usize, reason: String, example: impl FnOnce() -> String) {
        self.transfers_failed += 1;
        self.steps[step].failed += 1;
        if !self.failure_examples.contains_key(&reason) {
            self.failure_examples.insert(reason.clone(), example());
        }
        *self.failures.entry(reason).or_default() += 1;
    }
}

/// What was run, for the report header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `boot-storm` or `file`.
    pub mode: &'static str,
    /// Family id (boot-storm) or file name template (file mode).
    pub subject: String,
    /// Server address.
    pub target: String,
    /// Phones (boot-storm) or transfers (file mode) requested.
    pub units: u64,
    /// Tasks in flight.
    pub concurrency: usize,
    /// Number of source addresses, and the first and last.
    pub sources: (usize, String, String),
    /// Requested blksize, windowsize, timeout (ms), retries, whether options were sent.
    pub blksize: u16,
    /// Requested window size.
    pub windowsize: u16,
    /// Client timeout.
    pub timeout_ms: u64,
    /// Client retries.
    pub retries: u32,
    /// Whether options were sent.
    pub options: bool,
    /// The step name templates, in order.
    pub steps: Vec<String>,
    /// SHA-256 of the content (file mode with `--sha256`).
    pub sha256: Option<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_json(h: &Histogram) -> Value {
    json!({
        "count": h.count(),
        "p50": ms(h.percentile(50.0)),
        "p90": ms(h.percentile(90.0)),
        "p99": ms(h.percentile(99.0)),
        "max": ms(h.max()),
        "mean": (h.mean() / 10.0).round() / 100.0,
    })
}

fn per_sec(n: u64, wall: Duration) -> f64 {
    let s = wall.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// The report as one JSON object.
pub fn to_json(info: &RunInfo, stats: &Stats, wall: Duration) -> Value {
    let transfers = stats.transfers_ok + stats.transfers_failed;
    let steps: Vec<Value> = info
        .steps
        .iter()
        .zip(&stats.steps)
        .map(|(name, s)| {
            json!({
                "file": name,
                "ok": s.ok,
                "not_found_ok": s.not_found_ok,
                "failed": s.failed,
                "bytes": s.bytes,
                "latency_ms": latency_json(&s.latency),
            })
        })
        .collect();
    let mut v = json!({
        "mode": info.mode,
        "subject": info.subject,
        "target": info.target,
        "concurrency": info.concurrency,
        "sources": info.sources.0,
        "options": {
            "sent": info.options,
            "blksize": info.blksize,
            "windowsize": info.windowsize,
            "timeout_ms": info.timeout_ms,
            "retries": info.retries,
        },
        "wall_s": wall.as_secs_f64(),
        "transfers": {
            "total": transfers,
            "ok": stats.transfers_ok,
            "failed": stats.transfers_failed,
            "not_found_ok": stats.not_found_ok,
            "per_s": per_sec(transfers, wall),
            "retransmits": stats.retransmits,
            "out_of_order": stats.out_of_order,
        },
        "bytes": stats.bytes,
        "mb_per_s": per_sec(stats.bytes, wall) / 1e6,
        "failures": stats.failures,
        "latency_ms": {
            "transfer": latency_json(&stats.transfer_latency),
        },
        "steps": steps,
    });
    if info.mode == "boot-storm" {
        let phones = stats.phones_ok + stats.phones_failed;
        v["phones"] = json!({
            "total": phones,
            "ok": stats.phones_ok,
            "failed": stats.phones_failed,
            "per_s": per_sec(phones, wall),
        });
        v["latency_ms"]["phone"] = latency_json(&stats.phone_latency);
    }
    if let Some(h) = &info.sha256 {
        v["sha256"] = json!(h);
    }
    v
}

fn latency_row(out: &mut String, label: &str, h: &Histogram) {
    if h.count() == 0 {
        let _ = writeln!(
            out,
            "  {label:<28} {:>9}        -        -        -        -",
            0
        );
        return;
    }
    let _ = writeln!(
        out,
        "  {label:<28} {:>9} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        h.count(),
        ms(h.percentile(50.0)),
        ms(h.percentile(90.0)),
        ms(h.percentile(99.0)),
        ms(h.max())
    );
}

/// The report as a readable table.
pub fn to_table(info: &RunInfo, stats: &Stats, wall: Duration) -> String {
    let mut o = String::new();
    let transfers = stats.transfers_ok + stats.transfers_failed;
    let unit = if info.mode == "boot-storm" {
        "phones"
    } else {
        "transfers"
    };
    let _ = writeln!(
        o,
        "dialtone bench {}: {} ({} {unit}) -> {}",
        info.mode, info.subject, info.units, info.target
    );
    let (n, first, last) = &info.sources;
    let opts = if info.options {
        format!(
            "blksize {}, windowsize {}, tsize, timeout {} s",
            info.blksize,
            info.windowsize,
            info.timeout_ms.div_ceil(1000).clamp(1, 255)
        )
    } else {
        "no options".to_owned()
    };
    let _ = writeln!(
        o,
        "  concurrency {}, {n} source address(es) {first}..{last}, {opts}; client timeout {} ms x {} retries",
        info.concurrency, info.timeout_ms, info.retries
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "  wall time        {:>12.3} s", wall.as_secs_f64());
    let _ = writeln!(
        o,
        "  transfers        {:>12} ok {:>8} failed   {:>10.1} /s{}",
        stats.transfers_ok,
        stats.transfers_failed,
        per_sec(transfers, wall),
        if stats.not_found_ok > 0 {
            format!("   ({} expected not-found)", stats.not_found_ok)
        } else {
            String::new()
        }
    );
    if info.mode == "boot-storm" {
        let phones = stats.phones_ok + stats.phones_failed;
        let _ = writeln!(
            o,
            "  phones           {:>12} ok {:>8} failed   {:>10.1} /s",
            stats.phones_ok,
            stats.phones_failed,
            per_sec(phones, wall)
        );
    }
    let _ = writeln!(
        o,
        "  data             {:>12.3} MB                   {:>10.3} MB/s",
        stats.bytes as f64 / 1e6,
        per_sec(stats.bytes, wall) / 1e6
    );
    let _ = writeln!(
        o,
        "  retransmissions  {:>12}    out-of-order blocks {}",
        stats.retransmits, stats.out_of_order
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  latency (ms, successful)         count      p50      p90      p99      max"
    );
    latency_row(&mut o, "per transfer", &stats.transfer_latency);
    if info.mode == "boot-storm" {
        latency_row(&mut o, "per phone (whole boot)", &stats.phone_latency);
    }
    if info.steps.len() > 1 {
        for (i, (name, s)) in info.steps.iter().zip(&stats.steps).enumerate() {
            let mut label = format!("{}. {name}", i + 1);
            if label.len() > 28 {
                label.truncate(27);
                label.push('~');
            }
            latency_row(&mut o, &label, &s.latency);
        }
    }
    let _ = writeln!(o);
    if stats.failures.is_empty() {
        let _ = writeln!(o, "  failures: none");
    } else {
        let _ = writeln!(o, "  failures by reason:");
        let mut v: Vec<_> = stats.failures.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, n) in v {
            let ex = stats
                .failure_examples
                .get(reason)
                .map(String::as_str)
                .unwrap_or("");
            let _ = writeln!(o, "  {n:>10}  {reason}   e.g. {ex}");
        }
        if info.steps.len() > 1 {
            let _ = writeln!(o, "  failed transfers by step:");
            for (name, s) in info.steps.iter().zip(&stats.steps) {
                if s.failed > 0 {
                    let _ = writeln!(o, "  {:>10}  {name}", s.failed);
                }
            }
        }
    }
    if let Some(h) = &info.sha256 {
        let _ = writeln!(o, "  sha256: {h}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= prev, "bucket order at {v}");
            prev = b;
            let hi = bucket_max(b);
            assert!(hi >= v, "{v} above its bucket max {hi}");
            // relative error bound 1/64
            assert!(
                (hi - v) as f64 <= v as f64 / SUB as f64 + 1.0,
                "{v} -> {hi}"
            );
            if b > 0 {
                assert!(bucket_max(b - 1) < v, "{v} also fits bucket {}", b - 1);
            }
        }
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), 0);
        for v in 1..=100u64 {
            h.record(v);
        }
        // below 128 values are exact
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(90.0), 90);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);

        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (p, exact) in [(50.0, 5_000_000u64), (90.0, 9_000_000), (99.0, 9_900_000)] {
            let got = h.percentile(p);
            assert!(
                got >= exact && got as f64 <= exact as f64 * 1.016,
                "p{p}: {got}"
            );
        }
        assert_eq!(h.percentile(100.0), 10_000_000);

        // merge equals recording everything in one
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..5000u64 {
            let x = v * v % 100_003;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a, all);
        // one outlier does not move p99 but is the max
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(500);
        }
        h.record(3_000_000);
        assert_eq!(
            h.percentile(99.0),
            503,
            "500 reported as its bucket's upper bound"
        );
        assert_eq!(h.max(), 3_000_000);
    }

    #[test]
    fn stats_merge_and_report() {
        let mut a = Stats::new(2);
        a.transfers_ok = 3;
        a.steps[0].ok = 3;
        a.transfer_latency.record(1000);
        a.fail(1, "timeout: no answer to RRQ".into(), || "SEP1".into());
        let mut b = Stats::new(2);
        b.fail(1, "timeout: no answer to RRQ".into(), || "SEP2".into());
        b.phones_ok = 1;
        a.merge(&b);
        assert_eq!(a.failures["timeout: no answer to RRQ"], 2);
        assert_eq!(a.failure_examples["timeout: no answer to RRQ"], "SEP1");
        assert_eq!(a.steps[1].failed, 2);
        let info = RunInfo {
            mode: "boot-storm",
            subject: "fam".into(),
            target: "127.0.0.1:69".into(),
            units: 1,
            concurrency: 1,
            sources: (1, "127.0.0.1".into(), "127.0.0.1".into()),
            blksize: 1468,
            windowsize: 1,
            timeout_ms: 1000,
            retries: 5,
            options: true,
            steps: vec!["a".into(), "b".into()],
            sha256: None,
        };
        let j = to_json(&info, &a, Duration::from_secs(2));
        assert_eq!(j["transfers"]["failed"], 2);
        assert_eq!(j["transfers"]["per_s"], 2.5);
        assert_eq!(j["phones"]["ok"], 1);
        assert_eq!(j["failures"]["timeout: no answer to RRQ"], 2);
        assert_eq!(j["latency_ms"]["transfer"]["p50"], 1.0);
        let t = to_table(&info, &a, Duration::from_secs(2));
        assert!(t.contains("failures by reason"), "{t}");
    }
}
