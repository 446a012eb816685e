//! The drivers: `boot-storm` (N phones replaying a boot sequence, at most C in flight) and `--file`
//! (one file N times). Workers pull the next phone/transfer from a shared counter, so the load stays at
//! exactly C in flight until the end, and record into a few mutex-protected shards (short critical
//! sections; merged once at the end). The workers run on one thread per core, each with a current-thread
//! runtime of its own, so a transfer's packets, timers and wake-ups stay on one thread: on tokio's
//! multi-thread runtime, waking tasks across its threads cost the generator as much CPU as the server
//! it measured (see BENCHMARKS.md).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::task::JoinSet;

use super::client::{self, ClientConfig, Failure, Fetched, Keep};
use super::sequence::{self, Expect, Selection, Step, When};
use super::stats::{self, RunInfo, Stats};
use super::BootStormArgs;

struct Shared {
    cfg: ClientConfig,
    sources: Vec<IpAddr>,
    mac_base: u64,
    phones: u64,
    next: AtomicU64,
    shards: Vec<Mutex<Stats>>,
}

impl Shared {
    fn shard(&self, worker: usize) -> std::sync::MutexGuard<'_, Stats> {
        // A poisoned shard only means a worker panicked mid-update; the counters are still usable.
        self.shards[worker % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn merged(&self, steps: usize) -> Stats {
        let mut all = Stats::new(steps);
        for s in &self.shards {
            all.merge(&s.lock().unwrap_or_else(|e| e.into_inner()));
        }
        all
    }
}

/// Runs `dialtone bench boot-storm`.
pub async fn run(args: BootStormArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let sources = sequence::parse_sources(&args.source).context("--source")?;
    check_sources(&sources)?;
    let mac_base = sequence::parse_mac(&args.mac_base).context("--mac-base")?;
    let phones = args.phones.max(1);
    sequence::check_mac_range(mac_base, phones).context("--phones/--mac-base")?;
    let cfg = ClientConfig {
        target: args.target,
        blksize: args.blksize,
        windowsize: args.windowsize,
        timeout: Duration::from_millis(args.timeout_ms),
        retries: args.retries,
        options: !args.no_options,
    };
    let nshards = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(4)
        * 4;

    let (mode, subject, units, steps) = match &args.file {
        Some(name) => ("file", name.clone(), args.transfers, Vec::new()),
        None => {
            let json = match &args.sequences {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => sequence::EMBEDDED.to_owned(),
            };
            let sel = Selection {
                all_steps: args.all_steps,
                firmware: !args.no_firmware,
            };
            let steps = sequence::load_family(&json, &args.family, sel)?;
            if steps.is_empty() {
                bail!("family {} has no steps with this selection", args.family);
            }
            ("boot-storm", args.family.clone(), phones, steps)
        }
    };
    let nsteps = steps.len().max(1);
    let shared = Arc::new(Shared {
        cfg,
        sources,
        mac_base,
        phones,
        next: AtomicU64::new(0),
        shards: (0..nshards)
            .map(|_| Mutex::new(Stats::new(nsteps)))
            .collect(),
    });
    let workers = args
        .concurrency
        .min(usize::try_from(units).unwrap_or(usize::MAX));
    let steps = Arc::new(steps);
    let file = Arc::new(FileMode {
        template: args.file.clone().unwrap_or_default(),
        transfers: args.transfers,
        sha256: args.sha256,
        digest: OnceLock::new(),
        output: args.output.clone(),
        saved: AtomicBool::new(false),
        save_error: Mutex::new(None),
    });

    let start = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(workers);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (shared, steps, file) = (shared.clone(), steps.clone(), file.clone());
        let thread = std::thread::Builder::new()
            .name(format!("storm-{t}"))
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let mut set = JoinSet::new();
                    for w in (t..workers).step_by(threads) {
                        let shared = shared.clone();
                        if mode == "file" {
                            let file = file.clone();
                            set.spawn(async move { file_worker(&shared, &file, w).await });
                        } else {
                            let steps = steps.clone();
                            set.spawn(async move { storm_worker(&shared, &steps, w).await });
                        }
                    }
                    while let Some(r) = set.join_next().await {
                        r.context("a worker task failed")?;
                    }
                    Ok(())
                })
            })
            .context("starting a load thread")?;
        handles.push(thread);
    }
    tokio::task::spawn_blocking(move || {
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))?
        })
    })
    .await
    .context("waiting for the load threads")??;
    let wall = start.elapsed();

    let stats = shared.merged(nsteps);
    if let Some(e) = file
        .save_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        bail!(e);
    }
    let s = &shared.sources;
    let info = RunInfo {
        mode,
        subject,
        target: args.target.to_string(),
        units,
        concurrency: workers,
        sources: (s.len(), s[0].to_string(), s[s.len() - 1].to_string()),
        blksize: args.blksize,
        windowsize: args.windowsize,
        timeout_ms: args.timeout_ms,
        retries: args.retries,
        options: !args.no_options,
        steps: if mode == "file" {
            vec![file.template.clone()]
        } else {
            steps.iter().map(|s| s.template.clone()).collect()
        },
        sha256: file.digest.get().map(hex::encode),
    };
    if args.json {
        println!("{}", stats::to_json(&info, &stats, wall));
    } else {
        print!("{}", stats::to_table(&info, &stats, wall));
    }
    if mode == "file" && args.output.is_some() && !file.saved.load(Ordering::Relaxed) {
        bail!("--output: no transfer succeeded, nothing written");
    }
    if stats.transfers_failed > 0 {
        bail!(
            "{} of {} transfers failed",
            stats.transfers_failed,
            stats.transfers_failed + stats.transfers_ok
        );
    }
    Ok(())
}

/// Fails early, with a clear message, on a source address this host does not have.
fn check_sources(sources: &[IpAddr]) -> anyhow::Result<()> {
    for ip in sources {
        std::net::UdpSocket::bind((*ip, 0)).with_context(|| {
            format!("cannot bind to source address {ip} (source addresses must be local addresses)")
        })?;
    }
    Ok(())
}

fn record_ok(s: &mut Stats, step: usize, f: &Fetched, took: Duration) {
    s.transfers_ok += 1;
    s.bytes += f.bytes;
    s.retransmits += u64::from(f.retransmits);
    s.out_of_order += u64::from(f.out_of_order);
    s.transfer_latency.record_duration(took);
    let st = &mut s.steps[step];
    st.ok += 1;
    st.bytes += f.bytes;
    st.latency.record_duration(took);
}

async fn storm_worker(sh: &Shared, steps: &[Step], worker: usize) {
    let mut rbuf = Vec::new();
    loop {
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if i >= sh.phones {
            return;
        }
        let mac = sequence::mac_at(sh.mac_base, i);
        let src = sequence::source_for(&sh.sources, i);
        let t0 = Instant::now();
        let mut phone_ok = true;
        let mut prev_not_found = false;
        for (k, step) in steps.iter().enumerate() {
            // A fallback is requested only after a not-found for the step before it.
            if step.when == When::Fallback && !prev_not_found {
                continue;
            }
            let name = step.name(mac);
            let ts = Instant::now();
            let r = client::fetch(&sh.cfg, src, &name, Keep::default(), &mut rbuf).await;
            let took = ts.elapsed();
            prev_not_found = matches!(&r, Err(f) if f.is_not_found());
            let mut s = sh.shard(worker);
            match r {
                Ok(f) => record_ok(&mut s, k, &f, took),
                Err(e) if e.is_not_found() && step.expect == Expect::NotFoundOk => {
                    s.transfers_ok += 1;
                    s.not_found_ok += 1;
                    s.transfer_latency.record_duration(took);
                    s.steps[k].not_found_ok += 1;
                    s.steps[k].latency.record_duration(took);
                }
                Err(e) => {
                    phone_ok = false;
                    s.fail(k, e.reason(), || format!("{name} from {src}: {e}"));
                }
            }
        }
        let mut s = sh.shard(worker);
        if phone_ok {
            s.phones_ok += 1;
            s.phone_latency.record_duration(t0.elapsed());
        } else {
            s.phones_failed += 1;
        }
    }
}

struct FileMode {
    template: String,
    transfers: u64,
    sha256: bool,
    digest: OnceLock<[u8; 32]>,
    output: Option<PathBuf>,
    saved: AtomicBool,
    save_error: Mutex<Option<String>>,
}

async fn file_worker(sh: &Shared, fm: &FileMode, worker: usize) {
    let mut rbuf = Vec::new();
    loop {
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if i >= fm.transfers {
            return;
        }
        let name = sequence::substitute(&fm.template, sequence::mac_at(sh.mac_base, i % sh.phones));
        let src = sequence::source_for(&sh.sources, i);
        let keep = Keep {
            sha256: fm.sha256,
            data: fm.output.is_some() && !fm.saved.load(Ordering::Relaxed),
        };
        let ts = Instant::now();
        let r = client::fetch(&sh.cfg, src, &name, keep, &mut rbuf).await;
        let took = ts.elapsed();
        let r = r.and_then(|f| match (f.sha256, fm.sha256) {
            (Some(d), true) if *fm.digest.get_or_init(|| d) != d => {
                Err(Failure::BadPacket("content differs (sha256)"))
            }
            _ => Ok(f),
        });
        match r {
            Ok(mut f) => {
                if let (Some(data), Some(path)) = (f.data.take(), &fm.output) {
                    if fm
                        .saved
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        if let Err(e) = tokio::fs::write(path, &data).await {
                            *fm.save_error.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(format!("--output {}: {e}", path.display()));
                        }
                    }
                }
                record_ok(&mut sh.shard(worker), 0, &f, took);
            }
            Err(e) => {
                sh.shard(worker)
                    .fail(0, e.reason(), || format!("{name} from {src}: {e}"));
            }
        }
    }
}
