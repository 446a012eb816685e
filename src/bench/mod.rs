//! `dialtone bench`: load generators for capacity planning against one's own server. Never run by
//! `cargo test`; nothing here asserts timings.
//!
//! - [`client`]: an async TFTP read client (options, OACK, windows, retransmission, ERROR handling).
//! - [`sequence`]: boot sequences from `boot-sequences.json`, MAC ranges, source address lists (pure).
//! - [`stats`]: counters, HDR-style latency histograms, the table and JSON reports.
//! - [`storm`]: the drivers (`boot-storm` over N phones, or `--file` N times).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

pub mod client;
pub mod sequence;
pub mod stats;
pub mod storm;

/// `dialtone bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchAction {
    /// TFTP boot storm: N phones (MACs from --mac-base) each replay a family's boot sequence, at most
    /// --concurrency phones in flight; or, with --file, one file fetched --transfers times. Prints
    /// throughput, failures by reason and latency percentiles; exits with status 1 if any transfer failed.
    BootStorm(BootStormArgs),
}

/// Options of `dialtone bench boot-storm`.
#[derive(Debug, Clone, Args)]
pub struct BootStormArgs {
    /// The server's TFTP address.
    #[arg(long, default_value = "127.0.0.1:69")]
    pub target: SocketAddr,
    /// Source addresses to bind to, round-robin per phone (or per transfer with --file): a comma
    /// list of addresses and CIDR prefixes. They must be local addresses (all of 127/8 is, on Linux).
    #[arg(long, default_value = "127.0.1.0/24")]
    pub source: String,
    /// Number of simulated phones.
    #[arg(long, default_value_t = 1000)]
    pub phones: u64,
    /// MAC of the first phone; phone i has MAC base + i (12 hex digits, separators allowed).
    #[arg(long, default_value = "0A0000000000")]
    pub mac_base: String,
    /// Family id in boot-sequences.json whose boot_sequence each phone replays.
    #[arg(long, default_value = "7940_7960_sip_ual_8x")]
    pub family: String,
    /// A boot-sequences.json to use instead of the built-in copy.
    #[arg(long, value_name = "PATH")]
    pub sequences: Option<PathBuf>,
    /// Also request the steps whose correct answer is not-found (CTL/ITL files, …).
    #[arg(long)]
    pub all_steps: bool,
    /// Skip the firmware_mismatch steps (image files): a reboot storm with current firmware.
    #[arg(long)]
    pub no_firmware: bool,
    /// Phones (or transfers, with --file) in flight at once.
    #[arg(long, default_value_t = 500)]
    pub concurrency: usize,
    /// Requested blksize (RFC 2348).
    #[arg(long, default_value_t = 1468, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub blksize: u16,
    /// Requested windowsize (RFC 7440).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub windowsize: u16,
    /// Client retransmission timeout in milliseconds (sent as `timeout`, rounded up to seconds).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=255_000))]
    pub timeout_ms: u64,
    /// Retransmissions without progress before a transfer fails.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Send plain RFC 1350 requests without options.
    #[arg(long)]
    pub no_options: bool,
    /// Fetch this one file instead of replaying a boot sequence (`<MAC>` is replaced by the MAC of
    /// transfer i modulo --phones).
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,
    /// With --file: number of transfers.
    #[arg(long, default_value_t = 10_000)]
    pub transfers: u64,
    /// With --file: check that every transfer has the same SHA-256, and print it.
    #[arg(long)]
    pub sha256: bool,
    /// With --file: write the content of the first successful transfer to this path.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Print the report as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `dialtone bench` command.
pub async fn run(action: BenchAction) -> anyhow::Result<()> {
    match action {
        BenchAction::BootStorm(args) => storm::run(args).await,
    }
}
