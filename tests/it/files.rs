//! `/v1/files` and `/v1/tenants/{t}/files`: uploads, byte-exact downloads, deduplication, shadowing
//! rules at the API level, names, and who may write.

use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::helpers::{Resp, TestApp};

async fn put(app: &TestApp, path: &str, token: &str, body: Vec<u8>) -> Resp {
    let r = app
        .http
        .put(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    TestApp::read(r).await
}

async fn get_bytes(app: &TestApp, path: &str, token: &str) -> (StatusCode, Vec<u8>) {
    let r = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn uploads_are_stored_once_served_byte_for_byte_and_collected_when_unused() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let sha = hex::encode(Sha256::digest(&content));

    let r = put(&app, "/v1/files/P0S3-8-12-00.sb2", &admin, content.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["sha256"], sha);
    assert_eq!(r.body["size"], content.len());
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    let again = put(&app, "/v1/files/P0S3-8-12-00.sb2", &admin, content.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.headers["etag"].to_str().unwrap(),
        etag,
        "the same content again changes nothing"
    );

    // The same content under another name is stored once.
    assert_eq!(
        put(&app, "/v1/files/copy.sb2", &admin, content.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(app.count("SELECT count(*) FROM blobs", &[]).await, 1);

    let (status, bytes) = get_bytes(&app, "/v1/files/P0S3-8-12-00.sb2", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == content, "downloaded bytes differ");

    // Replacing one name keeps the blob for the other; deleting both removes it.
    let r = put(&app, "/v1/files/copy.sb2", &admin, b"other".to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.count("SELECT count(*) FROM blobs", &[]).await, 2);
    for name in ["P0S3-8-12-00.sb2", "copy.sb2"] {
        let r = app
            .call(
                Method::DELETE,
                &format!("/v1/files/{name}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(app.count("SELECT count(*) FROM blobs", &[]).await, 0);
    let r = app
        .call(Method::GET, "/v1/files/copy.sb2", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn names_directories_and_permissions() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let admin = app.admin();
    let r = put(
        &app,
        "/v1/files/Desktops/320x196x4/List.xml",
        &admin,
        b"<CiscoIPPhoneImageList/>".to_vec(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "directories are allowed: {}",
        r.text
    );
    assert_eq!(r.body["name"], "Desktops/320x196x4/List.xml");
    let (status, bytes) = get_bytes(&app, "/v1/files/Desktops/320x196x4/List.xml", &admin).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, b"<CiscoIPPhoneImageList/>".as_slice())
    );
    for bad in ["a/.hidden", ".profile", "a%5Cb", "a%20b", "x/%00y"] {
        let r = put(&app, &format!("/v1/files/{bad}"), &admin, b"x".to_vec()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["path"], "name");
    }
    // Tenant roles: no global writes; their own tenant's files yes (viewers read only).
    let r = put(
        &app,
        "/v1/files/ring.pcm",
        &app.tenant_admin("acme"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = put(
        &app,
        "/v1/tenants/acme/files/ring.pcm",
        &app.tenant_admin("acme"),
        b"acme ring".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["scope"], "tenant");
    let r = put(
        &app,
        "/v1/tenants/acme/files/ring.pcm",
        &app.viewer("acme"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (status, bytes) =
        get_bytes(&app, "/v1/tenants/acme/files/ring.pcm", &app.viewer("acme")).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, b"acme ring".as_slice())
    );
    let r = app
        .call(Method::GET, "/v1/files", Some(&app.viewer("acme")), None)
        .await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        1,
        "global files are listed to every tenant: {}",
        r.text
    );
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/files",
            Some(&app.viewer("acme")),
            None,
        )
        .await;
    assert_eq!(r.body["items"][0]["name"], "ring.pcm");
    // Audit: uploads are recorded without content.
    let r = app
        .call(
            Method::GET,
            "/v1/audit-events?tenant=acme",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.body["items"][0]["action"], "file.create");
}
