//! The binary: `migrate` twice is a no-op; `token issue` prints a token the API accepts.

use std::process::Command;

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, SECRET};

fn dialtone() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dialtone"))
}

#[tokio::test]
async fn migrate_twice_applies_nothing_the_second_time() {
    let url = crate::helpers::database::fresh().await;
    // The template is migrated already; a second run must find nothing to do.
    let out = dialtone()
        .arg("migrate")
        .env("DIALTONE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "applied 0 migration(s)"
    );
}

#[tokio::test]
async fn token_issue_output_is_accepted_and_scoped() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let issue = |args: &[&str]| {
        let out = dialtone()
            .args(["token", "issue"])
            .args(args)
            .env("DIALTONE_JWT_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let admin = issue(&["--role", "platform-admin"]);
    assert_eq!(
        app.call(Method::GET, "/v1/tenants", Some(&admin), None)
            .await
            .status,
        StatusCode::OK
    );
    let viewer = issue(&["--role", "tenant-viewer", "--tenant", "acme", "--ttl", "5m"]);
    assert_eq!(
        app.call(Method::GET, "/v1/tenants/acme", Some(&viewer), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&viewer),
            Some(serde_json::json!({"name": "x"}))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let bad = dialtone()
        .args(["token", "issue", "--role", "tenant-admin"])
        .env("DIALTONE_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "a tenant role without --tenant is refused"
    );
    let bad = dialtone()
        .args(["token", "issue", "--role", "root"])
        .env("DIALTONE_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn a_second_start_on_the_same_data_dir_reuses_the_running_cluster() {
    let dir = std::env::temp_dir().join(format!("dialtone-reuse-{}", std::process::id()));
    let first = dialtone::db::cluster::LocalCluster::start_ephemeral(&dir).expect("first start");
    let pid_file = dir.join("data/postmaster.pid");
    let pid_before = std::fs::read_to_string(&pid_file).unwrap();
    let second = dialtone::db::cluster::LocalCluster::start(&dir).expect("second start reuses");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        pid_before,
        "the same server, not a new one"
    );
    // Stopping the second handle leaves the server it did not start running.
    second.stop();
    assert!(
        pid_file.exists(),
        "only the process that started the server stops it"
    );
    first.stop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pid_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first handle stops the server"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_import_and_export_from_the_command_line() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let dir = std::env::temp_dir().join(format!("dialtone-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("phones.csv");
    std::fs::write(&good, "mac,model,line1_number,line1_password\n0004f2000001,7960,101,pw1\n0004.f200.0002,7940,102,pw2\n").unwrap();
    let token = app.tenant_admin("acme");
    let run = |args: Vec<String>| {
        let mut cmd = dialtone();
        cmd.args(["phones"])
            .args(&args)
            .args(["--url", &app.base, "--token", &token]);
        cmd.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| {
        run(vec![
            "import".into(),
            good.display().to_string(),
            "--tenant".into(),
            "acme".into(),
        ])
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 created"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"mac": "0004f2000003", "model": "7960", "lines": [{"number": "1"}]}, {"mac": "nope", "model": "7960", "lines": [{"number": "1"}]}]"#).unwrap();
    let out = tokio::task::block_in_place(|| {
        run(vec![
            "import".into(),
            bad.display().to_string(),
            "--tenant".into(),
            "acme".into(),
            "--dry-run".into(),
        ])
    });
    assert!(
        !out.status.success(),
        "a refused row makes the command fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row 2: mac"), "{err}");

    let out = tokio::task::block_in_place(|| {
        run(vec!["export".into(), "--tenant".into(), "acme".into()])
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("mac,model,"), "{csv}");
    assert!(
        csv.contains("0004F2000001,7960") && csv.contains("0004F2000002,7940"),
        "{csv}"
    );
    assert!(!csv.contains("pw1"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `dialtone serve` on `data`, logging to `log`; returns the child and its API address.
#[allow(clippy::zombie_processes)] // the caller stops and waits for the returned child
fn serve_on(data: &std::path::Path, log: &std::path::Path) -> (std::process::Child, String) {
    let mut child = dialtone()
        .arg("serve")
        .env_remove("DIALTONE_DATABASE_URL")
        .env("DIALTONE_DATA_DIR", data)
        .env("DIALTONE_API_LISTEN", "127.0.0.1:0")
        .env("DIALTONE_TFTP_LISTEN", "127.0.0.1:0")
        .env("DIALTONE_HTTP_LISTEN", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("API listening on http://") {
            let rest = &text[at + "API listening on ".len()..];
            return (child, rest.split_whitespace().next().unwrap().to_owned());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dialtone did not start: {text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_restart_keeps_its_own_private_postgresql() {
    // The first process's watchdog outlives it by up to half a second; it must not stop the server
    // the next process started in the same data dir (it did: the restarted API lost its database).
    let dir = std::env::temp_dir().join(format!(
        "dialtone-restart-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = Command::new("chmod")
        .args(["755", dir.to_str().unwrap()])
        .status();
    let data = dir.join("data");
    let (mut first, _) = serve_on(&data, &dir.join("first.log"));
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    assert!(first.wait().unwrap().success());
    let (mut second, url) = serve_on(&data, &dir.join("second.log"));
    // Longer than the watchdog's polling interval.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let ready = reqwest::get(format!("{url}/readyz"))
        .await
        .unwrap()
        .status();
    // Transparent huge pages are off for the server and for the PostgreSQL it started (src/main.rs).
    let postmaster = std::fs::read_to_string(data.join("postgres/data/postmaster.pid")).unwrap();
    let thp = |pid: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_owned()))
    };
    for pid in [
        second.id().to_string(),
        postmaster.lines().next().unwrap().trim().to_owned(),
    ] {
        // Kernels before 5.0 do not say; every kernel that says must say 0.
        if let Some(v) = thp(&pid) {
            assert_eq!(v, "0", "THP_enabled of process {pid}");
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let clean = second.wait().unwrap().success();
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert_eq!(
        ready,
        StatusCode::OK,
        "the restarted server lost its database: {log}"
    );
    assert!(clean, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
