//! The load generator, `dialtone bench boot-storm` (the release's own binary), against a real server: a
//! fleet's boot sequences and a file mode run to the end with every transfer accounted for, spread over
//! the generator's threads.

use std::process::Command;

use serde_json::{json, Value};

use super::{patch_settings, put_global_file, put_phone, tenant_with_network, tftp, wait_snapshot};
use crate::helpers::TestApp;

const PHONES: u64 = 24;

/// Runs `dialtone bench boot-storm --json` with `args`; returns its report.
fn boot_storm(args: &[String]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["bench", "boot-storm", "--json"])
        .args(args)
        .output()
        .expect("run dialtone bench boot-storm");
    assert!(
        out.status.success(),
        "boot-storm failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[tokio::test]
async fn the_load_generator_boots_a_fleet_against_a_real_server() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "storm", "127.0.61.0/24").await;
    patch_settings(
        &app,
        "storm",
        json!({"firmware": {"os79xx": "P003-8-12-00", "loads": {"7960": "P0S3-8-12-00"}}}),
    )
    .await;
    put_global_file(&app, "P0S3-8-12-00.loads", b"loads manifest".to_vec()).await;
    for i in 0..PHONES {
        put_phone(&app, "storm", &format!("0004F2E100{i:02X}"), "7960", "1001").await;
    }
    let last = format!("SIP0004F2E100{:02X}.cnf", PHONES - 1);
    wait_snapshot(&app, "127.0.61.9", &last, |_| true).await;
    wait_snapshot(&app, "127.0.61.9", "P0S3-8-12-00.loads", |_| true).await;

    let common: Vec<String> = [
        "--target",
        &tftp(&app).to_string(),
        "--source",
        "127.0.61.0/24",
        "--mac-base",
        "0004F2E10000",
        "--phones",
        &PHONES.to_string(),
        "--concurrency",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v = common.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (storm_args, file_args) = (
        with(&["--no-firmware"]),
        with(&["--file", "SIP<MAC>.cnf", "--transfers", "60"]),
    );
    let report =
        tokio::task::spawn_blocking(move || (boot_storm(&storm_args), boot_storm(&file_args)))
            .await
            .unwrap();
    let (storm, file) = report;

    assert_eq!(storm["phones"]["ok"], PHONES, "{storm:#}");
    assert_eq!(storm["transfers"]["failed"], 0, "{storm:#}");
    let steps = storm["steps"].as_array().unwrap();
    assert!(steps.len() >= 5, "{storm:#}");
    for step in steps {
        assert_eq!(
            step["ok"].as_u64().unwrap() + step["not_found_ok"].as_u64().unwrap(),
            PHONES,
            "every phone took step {}",
            step["file"]
        );
    }
    assert_eq!(
        storm["transfers"]["total"].as_u64().unwrap(),
        steps
            .iter()
            .map(|s| s["ok"].as_u64().unwrap() + s["not_found_ok"].as_u64().unwrap())
            .sum::<u64>()
    );

    assert_eq!(file["transfers"]["ok"], 60, "{file:#}");
    assert_eq!(file["transfers"]["failed"], 0, "{file:#}");
    // 60 of the 24 phones' files, each about a kilobyte.
    assert!(file["bytes"].as_u64().unwrap() > 60 * 500, "{file:#}");
}
