//! The committed OpenAPI document equals the one generated from the handlers (`UPDATE_OPENAPI=1`
//! rewrites it), and the running server serves the same.

use reqwest::Method;

use crate::helpers::TestApp;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");

#[tokio::test]
async fn committed_document_matches_the_code_and_the_server() {
    let generated = dialtone::api::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(committed == generated, "openapi/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test --test it openapi` and commit it");
    let app = TestApp::spawn().await;
    let served = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(served, committed);
    // Every documented path answers something other than "no route" on the running server.
    for (path, item) in committed["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{tenant}", "acme")
                .replace("{mac}", "0004F2A1B2C3")
                .replace("{id}", "x");
            let r = app
                .call(
                    method.to_uppercase().parse().unwrap(),
                    &concrete,
                    None,
                    None,
                )
                .await;
            assert!(
                !(r.status == 404 && r.text.contains("no route")) && r.status != 405,
                "{method} {path}: {} {}",
                r.status,
                r.text
            );
        }
    }
}
