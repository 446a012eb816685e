//! `LocalCluster`: a private PostgreSQL server under the data dir, for `serve` without a database URL
//! and for the test suite.
//!
//! It runs the installed server binaries (found on `PATH` or under `/usr/lib/postgresql/*/bin`), listens
//! only on a Unix socket inside its directory, trusts local connections (the socket directory is private
//! to the server's user), and is stopped by `stop()` or, should this process die first, by a small
//! watchdog that notices the parent's exit. PostgreSQL refuses to run as root, so as root the server runs
//! as the `postgres` system user (created as `dialtone-pg` when absent).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const PORT: u16 = 5432;

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    started_here: bool,
    ephemeral: bool,
}

impl LocalCluster {
    /// Initialises `dir` if needed and starts the server, or reuses one already running there.
    pub fn start(dir: &Path) -> anyhow::Result<LocalCluster> {
        Self::start_with(dir, false)
    }

    /// Like [`LocalCluster::start`], and the directory is removed once the server stops (tests).
    pub fn start_ephemeral(dir: &Path) -> anyhow::Result<LocalCluster> {
        Self::start_with(dir, true)
    }

    fn start_with(dir: &Path, remove_on_exit: bool) -> anyhow::Result<LocalCluster> {
        let dir = absolute(dir)?;
        let bin = find_server_binaries().context(
            "no PostgreSQL server binaries found (looked for initdb on PATH and in /usr/lib/postgresql/*/bin); \
             install them (Debian: apt-get install postgresql) or set DIALTONE_DATABASE_URL",
        )?;
        let owner = if is_root() {
            Some(server_user()?)
        } else {
            None
        };
        let mut cluster = LocalCluster {
            dir,
            bin,
            owner,
            started_here: false,
            ephemeral: remove_on_exit,
        };
        fs::create_dir_all(cluster.run_dir())
            .with_context(|| format!("creating {}", cluster.dir.display()))?;
        fs::set_permissions(&cluster.dir, fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = owner {
            for p in [cluster.dir.clone(), cluster.run_dir()] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
            }
        }
        if !cluster.data_dir().join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        if cluster.is_running() {
            tracing::info!(dir = %cluster.dir.display(), "reusing the local PostgreSQL already running");
            cluster.wait_ready(Duration::from_secs(30))?;
        } else {
            cluster.start_server()?;
            cluster.started_here = true;
            // Ready first, so that the watchdog knows the postmaster's PID (it still starts on failure).
            let ready = cluster.wait_ready(Duration::from_secs(30));
            cluster.spawn_watchdog(remove_on_exit)?;
            ready?;
        }
        Ok(cluster)
    }

    /// A libpq-style connection string for database `dbname`.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={PORT} user=postgres dbname={dbname}",
            self.run_dir().display()
        )
    }

    /// Stops the server if this process started it.
    pub fn stop(&self) {
        if self.started_here {
            let _ = self
                .pg_ctl(&["stop", "-m", "fast", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C").env_remove("PGDATA");
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).args(args);
        cmd
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed in {} (the server's user must be able to reach that directory): {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn start_server(&self) -> anyhow::Result<()> {
        // Throw-away test clusters trade durability for speed; a persistent one keeps PostgreSQL's defaults.
        let durability = if self.ephemeral {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        } else {
            ""
        };
        let opts = format!(
            "-c listen_addresses='' -k {} -p {PORT} -c max_connections=200{durability}",
            self.run_dir().display()
        );
        let log = self.dir.join("server.log");
        if let Some((uid, gid)) = self.owner {
            // The log file must be writable by the server's user.
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            std::os::unix::fs::chown(&log, Some(uid), Some(gid))?;
        }
        let out = self
            .pg_ctl(&["start", "-w", "-t", "60", "-o", &opts, "-l"])
            .arg(&log)
            .stdout(Stdio::null())
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "PostgreSQL did not start: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.join(" | ")
            );
        }
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.pg_ctl(&["status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let socket = self.run_dir().join(format!(".s.PGSQL.{PORT}"));
        while Instant::now() < deadline {
            if socket.exists() && self.is_running() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("PostgreSQL in {} did not become ready", self.dir.display())
    }

    /// Stops the server once this process is gone, however it ends (a crash or SIGKILL included), but
    /// only the very postmaster started here: after a clean stop and a quick restart, the data dir may
    /// already hold the next process's server, which must be left alone.
    fn spawn_watchdog(&self, remove_on_exit: bool) -> anyhow::Result<()> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let postmaster = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        let same_server = match &postmaster {
            Some(pm) => format!(
                "[ \"$(head -n 1 '{}' 2>/dev/null)\" = '{pm}' ] && ",
                pid_file.display()
            ),
            None => String::new(),
        };
        let mut script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; {same_server}{pg_ctl} -D '{data}' -m {mode} -w stop",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
            mode = if remove_on_exit { "immediate" } else { "fast" },
        );
        if remove_on_exit {
            script.push_str(&format!("; rm -rf '{}'", self.dir.display()));
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        // Its own process group, so that a Ctrl-C in the terminal does not kill the watchdog first.
        cmd.process_group(0);
        cmd.spawn().context("starting the PostgreSQL watchdog")?;
        Ok(())
    }
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        Ok(dir.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(dir))
    }
}

fn is_root() -> bool {
    // /proc/self belongs to this process's effective uid.
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// The uid/gid of `postgres`, or of `dialtone-pg` (created if needed).
fn server_user() -> anyhow::Result<(u32, u32)> {
    for name in ["postgres", "dialtone-pg"] {
        if let Some(ids) = lookup_user(name) {
            return Ok(ids);
        }
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "dialtone-pg",
        ])
        .status()
        .context("running useradd to create the dialtone-pg user")?;
    if !status.success() {
        bail!("could not create the dialtone-pg system user for PostgreSQL");
    }
    lookup_user("dialtone-pg").context("dialtone-pg was created but cannot be found")
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: PATH first, then the newest Debian layout.
fn find_server_binaries() -> Option<PathBuf> {
    let usable = |d: &Path| {
        d.join("pg_ctl").is_file() && d.join("initdb").is_file() && d.join("postgres").is_file()
    };
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if usable(&d) {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| usable(p))
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}
