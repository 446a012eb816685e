//! `/v1/tenants/{t}/dhcp-config`: ISC dhcpd, dnsmasq and Kea snippets, checked by the real daemons'
//! syntax checkers (`dhcpd -t`, `dnsmasq --test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use dialtone::app::Parts;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Resp, TestApp};

const SERVERS: [&str; 2] = ["192.0.2.10", "192.0.2.11"];

/// A checker binary, or a failure that says how to install it.
fn checker(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("`{name}` is missing: install it with `apt-get install -y {package}` (.ci/run does)");
}

/// Writes `text` to a fresh temporary file.
fn temp_file(text: &str, ext: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "dialtone-dhcp-{}-{}.{ext}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// `dhcpd -t -cf FILE`: (success, output).
fn dhcpd_check(text: &str) -> (bool, String) {
    let file = temp_file(text, "conf");
    let out = Command::new(checker("dhcpd", "isc-dhcp-server"))
        .arg("-t")
        .arg("-cf")
        .arg(&file)
        .output()
        .expect("run dhcpd");
    let _ = std::fs::remove_file(&file);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `dnsmasq --test --conf-file=FILE`: (said "syntax check OK", output).
fn dnsmasq_check(text: &str) -> (bool, String) {
    let file = temp_file(text, "conf");
    let out = Command::new(checker("dnsmasq", "dnsmasq-base"))
        .arg("--test")
        .arg(format!("--conf-file={}", file.display()))
        .output()
        .expect("run dnsmasq");
    let _ = std::fs::remove_file(&file);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success() && text.contains("syntax check OK"),
        text,
    )
}

async fn fetch(app: &TestApp, tenant: &str, format: Option<&str>, token: &str) -> Resp {
    let path = match format {
        Some(f) => format!("/v1/tenants/{tenant}/dhcp-config?format={f}"),
        None => format!("/v1/tenants/{tenant}/dhcp-config"),
    };
    app.call(Method::GET, &path, Some(token), None).await
}

fn content_type(r: &Resp) -> &str {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn app_with_networks() -> TestApp {
    let app = TestApp::spawn_with(
        Parts {
            api: true,
            frontend: false,
        },
        |c| c.provisioning_addresses = SERVERS.iter().map(|s| s.to_string()).collect(),
    )
    .await;
    app.create_tenant("acme").await;
    app.create_tenant("bravo").await;
    for cidr in ["198.51.100.0/24", "10.20.0.0/16", "2001:db8::/48"] {
        let r = app.add_network("acme", cidr).await;
        assert_eq!(r.status, StatusCode::CREATED, "{cidr}: {}", r.text);
    }
    app
}

#[tokio::test]
async fn isc_snippet_passes_dhcpd_and_a_broken_one_does_not() {
    let app = app_with_networks().await;
    let r = fetch(&app, "acme", None, &app.viewer("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        content_type(&r).starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let isc = r.text;
    assert_eq!(
        fetch(&app, "acme", Some("isc"), &app.admin()).await.text,
        isc,
        "isc is the default"
    );
    assert_eq!(
        isc.matches("option cisco-tftp-servers code 150 = array of ip-address;")
            .count(),
        1,
        "{isc}"
    );
    for (net, mask) in [
        ("10.20.0.0", "255.255.0.0"),
        ("198.51.100.0", "255.255.255.0"),
    ] {
        assert!(
            isc.contains(&format!("subnet {net} netmask {mask} {{\n  option tftp-server-name \"192.0.2.10\";\n  option cisco-tftp-servers 192.0.2.10, 192.0.2.11;\n}}")),
            "{isc}"
        );
    }
    assert_eq!(isc.matches("subnet ").count(), 2, "{isc}");
    assert!(
        isc.contains("# IPv6 network 2001:db8::/48 skipped"),
        "{isc}"
    );
    let (ok, out) = dhcpd_check(&isc);
    assert!(ok, "dhcpd -t refused:\n{isc}\n{out}");

    // The checker really checks: without the option 150 declaration dhcpd refuses the file.
    let broken = isc.replace(
        "option cisco-tftp-servers code 150 = array of ip-address;",
        "",
    );
    let (ok, out) = dhcpd_check(&broken);
    assert!(!ok, "dhcpd -t accepted a broken file:\n{broken}\n{out}");
    let (ok, _) = dhcpd_check(&isc.replacen("netmask 255.255.0.0 {", "netmask 255.255.0.0", 1));
    assert!(!ok, "dhcpd -t accepted a missing brace");
}

#[tokio::test]
async fn dnsmasq_snippet_passes_dnsmasq_test_and_a_broken_one_does_not() {
    let app = app_with_networks().await;
    let r = fetch(&app, "acme", Some("dnsmasq"), &app.tenant_admin("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        content_type(&r).starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let conf = r.text;
    for line in [
        "dhcp-range=set:dialtone-acme-1,10.20.0.0,static,255.255.0.0",
        "dhcp-option=tag:dialtone-acme-1,66,\"192.0.2.10\"",
        "dhcp-option=tag:dialtone-acme-1,150,192.0.2.10,192.0.2.11",
        "dhcp-range=set:dialtone-acme-2,198.51.100.0,static,255.255.255.0",
        "dhcp-option=tag:dialtone-acme-2,66,\"192.0.2.10\"",
        "dhcp-option=tag:dialtone-acme-2,150,192.0.2.10,192.0.2.11",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} in\n{conf}");
    }
    assert_eq!(conf.matches("dhcp-range=").count(), 2, "{conf}");
    assert!(
        conf.contains("# IPv6 network 2001:db8::/48 skipped"),
        "{conf}"
    );
    let (ok, out) = dnsmasq_check(&conf);
    assert!(ok, "dnsmasq --test refused:\n{conf}\n{out}");

    // The checker really checks.
    let broken = conf.replacen("dhcp-range=", "dhcp-rnage=", 1);
    let (ok, out) = dnsmasq_check(&broken);
    assert!(
        !ok,
        "dnsmasq --test accepted a broken file:\n{broken}\n{out}"
    );
    let broken = conf.replacen(",66,\"192.0.2.10\"", ",66,\"192.0.2.10", 1);
    assert!(!dnsmasq_check(&broken).0, "unterminated quote accepted");
}

#[tokio::test]
async fn kea_snippet_is_json_with_the_documented_structure() {
    let app = app_with_networks().await;
    let r = fetch(&app, "acme", Some("kea"), &app.viewer("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        content_type(&r).starts_with("application/json"),
        "{:?}",
        r.headers
    );
    let v: serde_json::Value = serde_json::from_str(&r.text).expect("valid JSON");
    let options = json!([
        {"name": "tftp-server-name", "data": "192.0.2.10"},
        {"name": "cisco-tftp-servers", "data": "192.0.2.10, 192.0.2.11"}
    ]);
    assert_eq!(
        v,
        json!({"Dhcp4": {
            "option-def": [{"name": "cisco-tftp-servers", "code": 150, "type": "ipv4-address", "array": true, "space": "dhcp4"}],
            "subnet4": [
                {"id": 1, "subnet": "10.20.0.0/16", "option-data": options},
                {"id": 2, "subnet": "198.51.100.0/24", "option-data": options}
            ]
        }}),
        "{}",
        r.text
    );
    // Where Kea is installed (not required: CI installs only dhcpd and dnsmasq), it accepts the fragment.
    if Path::new("/usr/sbin/kea-dhcp4").is_file() {
        let file = temp_file(&r.text, "json");
        let out = Command::new("/usr/sbin/kea-dhcp4")
            .arg("-t")
            .arg(&file)
            .output()
            .expect("run kea-dhcp4");
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "kea-dhcp4 -t refused:\n{}\n{}",
            r.text,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[tokio::test]
async fn refusals_403_404_409_422() {
    let app = app_with_networks().await;
    // Another tenant's token: 403, whatever the format.
    for format in [None, Some("kea"), Some("bogus")] {
        let r = fetch(&app, "acme", format, &app.tenant_admin("bravo")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{format:?}: {}", r.text);
    }
    let r = app
        .call(Method::GET, "/v1/tenants/acme/dhcp-config", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = fetch(&app, "nosuch", None, &app.admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for bad in ["bogus", "ISC", ""] {
        let r = fetch(&app, "acme", Some(bad), &app.admin()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["path"], "format");
        assert!(content_type(&r).starts_with("application/problem+json"));
    }
    // A tenant without networks gets a valid, empty snippet.
    let r = fetch(&app, "bravo", None, &app.viewer("bravo")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(dhcpd_check(&r.text).0, "{}", r.text);
    let r = fetch(&app, "bravo", Some("dnsmasq"), &app.viewer("bravo")).await;
    assert!(dnsmasq_check(&r.text).0, "{}", r.text);
    let r = fetch(&app, "bravo", Some("kea"), &app.viewer("bravo")).await;
    assert_eq!(r.body["Dhcp4"]["subnet4"], json!([]));

    // Without provisioning addresses: 409 naming the setting.
    let bare = TestApp::spawn().await;
    bare.create_tenant("acme").await;
    bare.add_network("acme", "10.20.0.0/16").await;
    for format in ["isc", "kea", "dnsmasq"] {
        let r = fetch(&bare, "acme", Some(format), &bare.admin()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{format}: {}", r.text);
        assert!(content_type(&r).starts_with("application/problem+json"));
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("provisioning_addresses"),
            "{}",
            r.text
        );
    }
}

#[test]
fn a_bad_provisioning_address_stops_the_start_up() {
    let config = dialtone::config::Config {
        provisioning_addresses: vec!["192.0.2.10".into(), "tftp.example".into()],
        ..Default::default()
    };
    let err = dialtone::app::provisioning_addresses(&config).unwrap_err();
    assert!(err.to_string().contains("tftp.example"), "{err}");
}
