//! The operator CLI's client side: `dialtone phones import FILE` and `dialtone phones export`, talking
//! to a running API, with progress on stderr and a non-zero exit on any refused row.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use futures_util::StreamExt;

/// Where the API is and who we are.
pub struct Target {
    /// Base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// Bearer token.
    pub token: String,
}

/// A one-line progress bar on stderr (only when stderr is a terminal).
struct Progress {
    label: &'static str,
    total: Option<u64>,
    done: AtomicU64,
    tty: bool,
}

impl Progress {
    fn new(label: &'static str, total: Option<u64>) -> Arc<Self> {
        Arc::new(Progress {
            label,
            total,
            done: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal(),
        })
    }

    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if !self.tty {
            return;
        }
        let mb = done as f64 / 1e6;
        let line = match self.total {
            Some(t) if t > 0 => {
                let pct = (done * 100 / t).min(100);
                let filled = (pct / 5) as usize;
                format!(
                    "\r{} [{}{}] {pct:3}% {mb:.1}/{:.1} MB",
                    self.label,
                    "#".repeat(filled),
                    ".".repeat(20 - filled),
                    t as f64 / 1e6
                )
            }
            _ => format!("\r{} {mb:.1} MB", self.label),
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn finish(&self) {
        if self.tty {
            let _ = std::io::stderr().write_all(b"\n");
        }
    }
}

fn content_type(path: &Path) -> anyhow::Result<&'static str> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok("text/csv"),
        Some("json") => Ok("application/json"),
        _ => bail!(
            "{}: name the file .csv or .json so that its format is known",
            path.display()
        ),
    }
}

/// Uploads `file` to the tenant's import endpoint; prints the summary and the refused rows. Returns the
/// number of refused rows (the caller exits non-zero when it is not 0).
pub async fn import(
    target: &Target,
    tenant: &str,
    file: &Path,
    dry_run: bool,
    partial: bool,
) -> anyhow::Result<u64> {
    let ct = content_type(file)?;
    let bytes = tokio::fs::read(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    let progress = Progress::new("uploading", Some(bytes.len() as u64));
    let chunks: Vec<Vec<u8>> = bytes.chunks(256 * 1024).map(<[u8]>::to_vec).collect();
    let p = progress.clone();
    let stream = futures_util::stream::iter(chunks).map(move |c| {
        p.add(c.len() as u64);
        Ok::<_, std::io::Error>(c)
    });
    let url = format!(
        "{}/v1/tenants/{tenant}/phone-imports?dry_run={dry_run}&partial={partial}",
        target.url.trim_end_matches('/')
    );
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&target.token)
        .header("content-type", ct)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .with_context(|| format!("sending to {url}"))?;
    progress.finish();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("reading the API's answer")?;
    let report = if status.is_success() {
        &body
    } else if body.get("report").is_some() {
        &body["report"]
    } else {
        bail!(
            "the API refused the import ({status}): {}",
            body.get("detail")
                .and_then(|d| d.as_str())
                .unwrap_or("no detail")
        );
    };
    let n = |k: &str| report[k].as_u64().unwrap_or(0);
    eprintln!(
        "{}: {} created, {} updated, {} unchanged, {} refused{}",
        if n("errors") > 0 && !report["applied"].as_bool().unwrap_or(false) {
            "nothing applied"
        } else if dry_run {
            "dry run"
        } else {
            "applied"
        },
        n("created"),
        n("updated"),
        n("unchanged"),
        n("errors"),
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    let refused = report["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|r| r["result"] == "error")
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for row in refused.iter().take(50) {
        for e in row["errors"].as_array().into_iter().flatten() {
            eprintln!(
                "row {}: {}: {}",
                row["row"],
                e["path"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    if refused.len() > 50 {
        eprintln!("… and {} more refused rows", refused.len() - 50);
    }
    Ok(n("errors"))
}

/// Downloads the tenant's phones in `format` (csv or json) to `out` (stdout when `None`).
pub async fn export(
    target: &Target,
    tenant: &str,
    format: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/tenants/{tenant}/phone-exports?format={format}",
        target.url.trim_end_matches('/')
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&target.token)
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        bail!(
            "the API refused the export ({status}): {}",
            body.get("detail")
                .and_then(|d| d.as_str())
                .unwrap_or("no detail")
        );
    }
    let progress = Progress::new("downloading", resp.content_length());
    let mut sink: Box<dyn Write> = match out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the export")?;
        progress.add(chunk.len() as u64);
        sink.write_all(&chunk)?;
    }
    sink.flush()?;
    progress.finish();
    Ok(())
}
