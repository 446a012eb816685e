//! Every family's boot sequence of `tests/fixtures/boot-sequences.json`, replayed over the wire from a
//! tenant network by TFTP and by HTTP :6970, and the 7940/7960 SCCP→SIP conversion end to end with curl.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::clients::{self, FetchError};
use super::{
    http_files, patch_settings, put_global_file, put_phone, put_tenant_file, sha256_hex,
    tenant_with_network, tftp, wait_snapshot, TEST_MAC,
};
use crate::helpers::TestApp;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/boot-sequences.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// (list, entry) of every request of a family, in list order.
fn entries(family: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = Vec::new();
    for list in ["factory_reset", "boot_sequence", "on_demand"] {
        for e in family[list].as_array().into_iter().flatten() {
            out.push((list, e));
        }
    }
    out
}

/// The file and its aliases.
fn names_of(entry: &Value) -> Vec<String> {
    let mut names = vec![entry["file"].as_str().unwrap().to_owned()];
    names.extend(
        entry["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    names
}

/// Strips a leading `/` or `./` (what the server does to every name before looking it up).
fn stored_name(raw: &str) -> &str {
    raw.trim_start_matches("./").trim_start_matches('/')
}

/// Fake content of a stored file: small, binary, different for every name.
fn blob(name: &str) -> Vec<u8> {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut v = format!("fake {name}\n").into_bytes();
    v.extend(super::prng(700 + name.len() * 37, seed));
    v
}

/// Names the fixture marks "render" that dialtone serves from the file store (uploaded as tenant files).
fn stored_not_rendered(name: &str) -> bool {
    dialtone::provisioning::is_stored_not_rendered(stored_name(name))
}

/// Stored names under a directory cannot be uploaded: file names in the API are `[A-Za-z0-9._-]` only.
fn has_directory(name: &str) -> bool {
    stored_name(name).contains('/')
}

/// One family's world: its tenant, network source, phone MAC and configured loads.
struct FamilyWorld {
    id: String,
    family: Value,
    tenant: String,
    source: String,
    mac: String,
    model: String,
    target: String,
    os79xx: String,
}

impl FamilyWorld {
    /// `raw` with the fixture's test MAC replaced by this family's phone.
    fn name(&self, raw: &str) -> String {
        raw.replace(TEST_MAC, &self.mac)
    }
}

/// Sets up one tenant per family (network 127.0.(20+i).0/24, its example phone with its own MAC, the
/// family's target load and OS79XX.TXT image), every static file of the fixture as a global file and the
/// soft-key / feature-policy files as tenant files.
async fn boot_world(app: &TestApp) -> Vec<FamilyWorld> {
    let fixture = fixture();
    let families = fixture["families"].as_array().unwrap();
    assert!(
        families.len() >= 6,
        "the fixture has {} families",
        families.len()
    );
    let mut statics = BTreeSet::new();
    for fam in families {
        for (_, e) in entries(fam) {
            if e["outcome"] == "static" {
                for raw in names_of(e) {
                    if !has_directory(&raw) {
                        statics.insert(stored_name(&raw).to_owned());
                    }
                }
            }
        }
    }
    for name in &statics {
        put_global_file(app, name, blob(name)).await;
    }
    let mut worlds = Vec::new();
    for (i, fam) in families.iter().enumerate() {
        let example = &fam["example"];
        let model = example["model"].as_str().unwrap().to_owned();
        let target = example["target_load"]
            .as_str()
            .or(example["running_load"].as_str())
            .unwrap()
            .to_owned();
        let os79xx = example["ual"].as_str().unwrap_or(&target).to_owned();
        let tenant = format!("boot{i}");
        let net = 20 + i;
        tenant_with_network(app, &tenant, &format!("127.0.{net}.0/24")).await;
        let mut loads = BTreeMap::new();
        loads.insert(model.clone(), target.clone());
        patch_settings(
            app,
            &tenant,
            json!({"firmware": {"os79xx": os79xx, "loads": loads}}),
        )
        .await;
        for (_, e) in entries(fam) {
            for raw in names_of(e) {
                if e["outcome"] == "render" && stored_not_rendered(&raw) && !has_directory(&raw) {
                    put_tenant_file(app, &tenant, stored_name(&raw), blob(stored_name(&raw))).await;
                }
            }
        }
        let mac = format!("0004F2A1B2{:02X}", 0x10 + i);
        put_phone(app, &tenant, &mac, &model, "1001").await;
        worlds.push(FamilyWorld {
            id: fam["id"].as_str().unwrap().to_owned(),
            family: fam.clone(),
            tenant,
            source: format!("127.0.{net}.5"),
            mac,
            model,
            target,
            os79xx,
        });
    }
    // Everything above is in the snapshot once the last phone's file renders with the last family's load.
    let last = worlds.last().unwrap();
    let sep = format!("SEP{}.cnf.xml", last.mac);
    let want = last.target.clone();
    wait_snapshot(app, &last.source, &sep, move |b| {
        String::from_utf8_lossy(b).contains(&want)
    })
    .await;
    let probe = statics.iter().next_back().unwrap();
    wait_snapshot(app, &last.source, probe, |_| true).await;
    worlds
}

/// Replays `family`'s requests (as `world`'s phone, from `world`'s network) over TFTP and HTTP and
/// asserts the fixture's outcome class for each. Returns the number of requests checked per protocol.
async fn replay(app: &TestApp, world: &FamilyWorld, family: &Value) -> usize {
    let fid = family["id"].as_str().unwrap();
    let web = clients::http_from(&world.source);
    let mut count = 0;
    for (list, e) in entries(family) {
        let outcome = e["outcome"].as_str().unwrap();
        for raw in names_of(e) {
            if has_directory(&raw) && stored_not_rendered(&raw) {
                // Background lists under Desktops/: see `background_lists_under_a_directory_are_servable`.
                continue;
            }
            count += 1;
            let name = world.name(&raw);
            let what = format!(
                "{fid} ({} in tenant {} from {}) {list} {name} [{outcome}]",
                world.id, world.tenant, world.source
            );
            let t = clients::tftp_get(tftp(app), &world.source, &name, &[]).await;
            let h = web
                .get(clients::file_url(http_files(app), &name))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: HTTP {e}"));
            let h_status = h.status();
            let h_body = h.bytes().await.unwrap().to_vec();
            match outcome {
                "render" => {
                    let got = t.unwrap_or_else(|e| panic!("{what}: TFTP {e:?}"));
                    assert!(!got.data.is_empty(), "{what}: empty file");
                    assert_eq!(h_status, StatusCode::OK, "{what}: HTTP");
                    assert!(h_body == got.data, "{what}: HTTP and TFTP bytes differ");
                    if stored_not_rendered(&raw) {
                        assert!(
                            got.data == blob(stored_name(&raw)),
                            "{what}: not the stored file"
                        );
                    }
                    if name.contains(&world.mac) {
                        let text = String::from_utf8_lossy(&got.data);
                        assert!(
                            text.contains(&world.target),
                            "{what}: the device file does not name the load {}:\n{text}",
                            world.target
                        );
                    }
                }
                "static" if has_directory(&raw) => {
                    // Cannot be stored through the API (no '/' in file names): absent blob → not found.
                    assert_eq!(
                        t.unwrap_err(),
                        FetchError::Tftp(1, "File not found".into()),
                        "{what}"
                    );
                    assert_eq!(h_status, StatusCode::NOT_FOUND, "{what}: HTTP");
                }
                "static" => {
                    let want = blob(stored_name(&raw));
                    let got = t.unwrap_or_else(|e| panic!("{what}: TFTP {e:?}"));
                    assert_eq!(
                        sha256_hex(&got.data),
                        sha256_hex(&want),
                        "{what}: TFTP bytes"
                    );
                    assert_eq!(h_status, StatusCode::OK, "{what}: HTTP");
                    assert_eq!(sha256_hex(&h_body), sha256_hex(&want), "{what}: HTTP bytes");
                }
                "not_found_ok" => {
                    match t {
                        Err(FetchError::Tftp(1, _)) => {}
                        other => panic!("{what}: expected TFTP error 1, got {other:?}"),
                    }
                    assert_eq!(h_status, StatusCode::NOT_FOUND, "{what}: HTTP");
                }
                other => panic!("{what}: unknown outcome class {other}"),
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_family_boot_sequence_over_tftp_and_http() {
    let app = TestApp::spawn_full().await;
    let worlds = boot_world(&app).await;
    let fixture = fixture();
    let by_id = |id: &str| {
        fixture["families"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()
            .clone()
    };
    let mut total = 0;
    for w in &worlds {
        total += replay(&app, w, &w.family).await;
        // A conversion continues, after the reboot, as another family: same tenant, same phone.
        if let Some(next) = w.family["after_reboot_continues_as"].as_str() {
            total += replay(&app, w, &by_id(next)).await;
        }
    }
    assert!(total > 80, "replayed only {total} requests per protocol");
    println!("boot sequences: {total} requests replayed over TFTP and over HTTP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sccp_to_sip_conversion_end_to_end_with_curl() {
    let app = TestApp::spawn_full().await;
    let worlds = boot_world(&app).await;
    let w = worlds
        .iter()
        .find(|w| w.id == "7940_7960_sccp_dualboot_to_sip")
        .unwrap();
    assert_eq!(
        (w.model.as_str(), w.os79xx.as_str()),
        ("7960", "P003-8-12-00")
    );
    // Real-sized images: multi-block transfers, byte-compared.
    let images: Vec<(&str, Vec<u8>)> = [
        "P003-8-12-00.sbn",
        "P003-8-12-00.bin",
        "P0S3-8-12-00.loads",
        "P0S3-8-12-00.sb2",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| (*n, super::prng(150_000 + i * 7001, 40 + i as u64)))
    .collect();
    for (n, b) in &images {
        put_global_file(&app, n, b.clone()).await;
    }
    let (last, last_bytes) = images.last().unwrap();
    let want = last_bytes.clone();
    wait_snapshot(&app, &w.source, last, move |b| b == &want[..]).await;

    let get = |name: String| {
        let (server, src) = (tftp(&app), w.source.clone());
        async move { clients::curl_tftp(server, &src, &name, &["--tftp-blksize", "1428"]).await }
    };
    // 1. The SCCP dual-boot loader asks for OS79XX.TXT: one token naming the UAL.
    let os = get("OS79XX.TXT".into()).await;
    assert!(os.ok(), "OS79XX.TXT: {:?}", os.out);
    let os_text = String::from_utf8(os.data.clone()).unwrap();
    assert_eq!(os_text.trim_end_matches(['\r', '\n']), "P003-8-12-00");
    assert!(
        !os_text.contains(' '),
        "OS79XX.TXT has a space: {os_text:?}"
    );
    // 2. The UAL images, byte for byte.
    for (n, b) in &images[..2] {
        let f = get(n.to_string()).await;
        assert!(f.ok(), "{n}: {:?}", f.out);
        assert_eq!(sha256_hex(&f.data), sha256_hex(b), "{n}");
    }
    // 3. The UAL: trust list (not found), its loader file naming the SIP load, then the SIP load.
    let ctl = get(format!("CTLSEP{}.tlv", w.mac)).await;
    assert_eq!(ctl.out.status.code(), Some(68), "CTLSEP: {:?}", ctl.out);
    let sep = get(format!("SEP{}.cnf.xml", w.mac)).await;
    assert!(sep.ok(), "SEP: {:?}", sep.out);
    let sep = String::from_utf8(sep.data).unwrap();
    assert!(
        sep.contains("P0S3-8-12-00</loadInformation"),
        "the loader file does not name the SIP load:\n{sep}"
    );
    let xml_default = get("XMLDefault.cnf.xml".into()).await;
    assert!(
        String::from_utf8_lossy(&xml_default.data).contains("P0S3-8-12-00"),
        "XMLDefault.cnf.xml: {:?}",
        xml_default
    );
    for (n, b) in &images[2..] {
        let f = get(n.to_string()).await;
        assert!(f.ok(), "{n}: {:?}", f.out);
        assert_eq!(sha256_hex(&f.data), sha256_hex(b), "{n}");
    }
    // 4. After the reboot, SIP firmware: SIPDefault.cnf, then its own file with its line.
    let default = get("SIPDefault.cnf".into()).await;
    assert!(default.ok(), "SIPDefault.cnf: {:?}", default.out);
    let default = String::from_utf8(default.data).unwrap();
    assert!(
        default.contains("image_version: \"P0S3-8-12-00\""),
        "SIPDefault.cnf:\n{default}"
    );
    assert!(
        !default.contains("pw-1001"),
        "a password in a tenant-wide file"
    );
    let own = get(format!("SIP{}.cnf", w.mac)).await;
    assert!(own.ok(), "SIP<MAC>.cnf: {:?}", own.out);
    let own = String::from_utf8(own.data).unwrap();
    for line in [
        "line1_name: \"1001\"",
        "line1_authname: \"1001\"",
        "line1_password: \"pw-1001\"",
        "line1_displayname: \"Alice\"",
        "proxy1_address: \"sip.acme.example\"",
    ] {
        assert!(own.contains(line), "SIP<MAC>.cnf lacks {line}:\n{own}");
    }
    // The lower-case MAC and the ./ prefix a tftp_cfg_dir gives are the same file.
    let again = get(format!("./SIP{}.cnf", w.mac.to_ascii_lowercase())).await;
    assert_eq!(String::from_utf8(again.data).unwrap(), own);
}

/// The fixture lists `Desktops/<W>x<H>x<D>/List.xml` as served ("render"); dialtone serves it from the
/// file store under its whole path, since every screen size has its own list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_lists_under_a_directory_are_servable() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "bg", "127.0.30.0/24").await;
    put_tenant_file(
        &app,
        "bg",
        "Desktops/320x196x4/List.xml",
        b"<CiscoIPPhoneImageList/>\n".to_vec(),
    )
    .await;
    wait_snapshot(&app, "127.0.30.5", "Desktops/320x196x4/List.xml", |_| true).await;
    let got = clients::tftp_get(tftp(&app), "127.0.30.5", "Desktops/320x196x4/List.xml", &[])
        .await
        .expect("Desktops/320x196x4/List.xml is served");
    assert_eq!(got.data, b"<CiscoIPPhoneImageList/>\n");
    // Another screen size has its own list: not this one.
    assert!(clients::tftp_get(
        tftp(&app),
        "127.0.30.5",
        "Desktops/320x212x16/List.xml",
        &[]
    )
    .await
    .is_err());
    // And the leading slash some phones send is the same name.
    let slash = clients::tftp_get(
        tftp(&app),
        "127.0.30.5",
        "/Desktops/320x196x4/List.xml",
        &[],
    )
    .await
    .expect("served");
    assert_eq!(slash.data, got.data);
}
