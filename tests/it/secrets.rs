//! SIP passwords never appear in an API response, an error, a metric or a log line: a real `dialtone
//! serve` logs at debug level through a full scenario, and every byte it wrote or answered is searched
//! for every password set. Only the phone's own files and the admin preview may carry them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::provisioning::clients;

struct Server {
    child: std::process::Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn addr_from(log: &std::path::Path, what: &str) -> Option<std::net::SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(what))?;
    let rest = &line[line.find(what)? + what.len()..];
    let rest = rest.trim_start_matches("http://");
    rest.split_whitespace()
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_leak_into_logs_responses_errors_or_metrics() {
    let dir = std::env::temp_dir().join(format!(
        "dialtone-secrets-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&dir).unwrap().permissions(),
        0o755,
    );
    let _ = Command::new("chmod")
        .args(["755", dir.to_str().unwrap()])
        .status();
    let log = dir.join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .arg("serve")
        .env_remove("DIALTONE_DATABASE_URL")
        .env("DIALTONE_DATA_DIR", dir.join("data"))
        .env("DIALTONE_API_LISTEN", "127.0.0.1:0")
        .env("DIALTONE_TFTP_LISTEN", "127.0.0.1:0")
        .env("DIALTONE_HTTP_LISTEN", "127.0.0.1:0")
        .env("DIALTONE_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (api, tftp, http_files) = loop {
        if let (Some(a), Some(t), Some(h)) = (
            addr_from(&log, "API listening on "),
            addr_from(&log, "TFTP listening on "),
            addr_from(&log, "HTTP files listening on "),
        ) {
            break (a, t, h);
        }
        assert!(
            Instant::now() < deadline,
            "dialtone did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token = {
        let out = Command::new(env!("CARGO_BIN_EXE_dialtone"))
            .args(["token", "issue", "--role", "platform-admin"])
            .env("DIALTONE_DATA_DIR", dir.join("data"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let base = format!("http://{api}");
    let http = reqwest::Client::new();
    let mut answers = String::new();
    let passwords = [
        "Pw-Alpha-7431",
        "Pw-Bravo-9917",
        "Pw-Import-5521",
        "Pw-Csv-8810",
        "Pw-Patch-3307",
    ];
    let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let mut run = Vec::new();
    run.push(call(reqwest::Method::POST, "/v1/tenants".into(), Some(json!({"slug": "acme", "name": "Acme", "settings": {"sip": {"registrar": "sip.acme.example"}, "firmware": {"loads": {"7960": "P0S3-8-12-00"}}}}))).await);
    run.push(
        call(
            reqwest::Method::POST,
            "/v1/tenants/acme/networks".into(),
            Some(json!({"cidr": "127.0.77.0/24"})),
        )
        .await,
    );
    run.push(call(reqwest::Method::PUT, "/v1/tenants/acme/phones/0004F2000001".into(), Some(json!({"model": "7960", "lines": [{"number": "1001", "password": passwords[0]}, {"number": "1002", "password": passwords[1]}]}))).await);
    run.push(call(reqwest::Method::POST, "/v1/tenants/acme/phone-imports".into(), Some(json!([{"mac": "0004F2000002", "model": "7942", "lines": [{"number": "2001", "password": passwords[2]}]}]))).await);
    run.push(
        call(
            reqwest::Method::PATCH,
            "/v1/tenants/acme/phones/0004F2000001".into(),
            Some(json!({"lines": [{"number": "1001", "password": passwords[4]}]})),
        )
        .await,
    );
    // Errors that involve a password: too long, a space, an unknown field next to it, a bad MAC beside it.
    run.push(call(reqwest::Method::PUT, "/v1/tenants/acme/phones/0004F2000003".into(), Some(json!({"model": "7960", "lines": [{"number": "1", "password": format!("{} {}", passwords[3], passwords[3])}]}))).await);
    run.push(
        call(
            reqwest::Method::PUT,
            "/v1/tenants/acme/phones/nope".into(),
            Some(json!({"model": "7960", "lines": [{"number": "1", "password": passwords[3]}]})),
        )
        .await,
    );
    run.push(call(reqwest::Method::POST, "/v1/tenants/acme/phone-imports".into(), Some(json!([{"mac": "zz", "model": "7960", "lines": [{"number": "1", "password": passwords[3], "colour": "red"}]}]))).await);
    // Reads.
    run.push(call(reqwest::Method::GET, "/v1/tenants/acme/phones".into(), None).await);
    run.push(
        call(
            reqwest::Method::GET,
            "/v1/tenants/acme/phones/0004F2000001".into(),
            None,
        )
        .await,
    );
    run.push(
        call(
            reqwest::Method::GET,
            "/v1/tenants/acme/phone-exports?format=csv".into(),
            None,
        )
        .await,
    );
    run.push(
        call(
            reqwest::Method::GET,
            "/v1/tenants/acme/phone-exports?format=json".into(),
            None,
        )
        .await,
    );
    run.push(call(reqwest::Method::GET, "/v1/audit-events".into(), None).await);
    // The phones fetch their files (these must carry the passwords), over TFTP and HTTP.
    let snap_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(f) = clients::tftp_get(tftp, "127.0.77.5", "SIP0004F2000001.cnf", &[]).await {
            if String::from_utf8_lossy(&f.data).contains(passwords[4]) {
                break;
            }
        }
        assert!(
            Instant::now() < snap_deadline,
            "the phone never got its file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sep = clients::tftp_get(tftp, "127.0.77.5", "SEP0004F2000002.cnf.xml", &[])
        .await
        .expect("79x1 file");
    assert!(
        String::from_utf8_lossy(&sep.data).contains(passwords[2]),
        "the phone's own file carries its password"
    );
    let _ = reqwest::Client::builder()
        .local_address("127.0.77.5".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("http://{http_files}/SIP0004F2000001.cnf"))
        .send()
        .await;
    // Requests that miss, from inside and outside the network.
    let _ = clients::tftp_get(tftp, "127.0.77.5", "SIP0004F2000099.cnf", &[]).await;
    let _ = clients::tftp_get(tftp, "127.0.78.5", "SIP0004F2000001.cnf", &[]).await;
    // Let the fetch-event writer run, then read metrics and the fetch history.
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.push(call(reqwest::Method::GET, "/metrics".into(), None).await);
    run.push(
        call(
            reqwest::Method::GET,
            "/v1/tenants/acme/phones/0004F2000001/fetches".into(),
            None,
        )
        .await,
    );
    for (status, text) in &run {
        answers.push_str(&format!("{status} {text}\n"));
    }
    assert!(answers.contains("422"), "the error cases ran");
    assert!(
        answers.contains("dialtone_provisioning_requests_total"),
        "metrics were read"
    );
    drop(server);
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(logs.lines().count() > 10, "the server logged: {logs}");
    for pw in passwords {
        for (what, text) in [("an API answer", &answers), ("the log", &logs)] {
            let found = BufReader::new(text.as_bytes())
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains(pw));
            assert!(
                found.is_none(),
                "password {pw} appears in {what}: {}",
                found.unwrap_or_default()
            );
        }
    }
}
