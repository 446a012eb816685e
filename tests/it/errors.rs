//! Bad input at the HTTP level: every error is problem+json, never a 500, and changes nothing.

use reqwest::{Method, StatusCode};

use crate::helpers::TestApp;

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> crate::helpers::Resp {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(app.admin())
        .body(body);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    TestApp::read(req.send().await.unwrap()).await
}

/// Method, path, content type, body, expected status.
type Case = (
    Method,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
);

#[tokio::test]
async fn malformed_bodies_wrong_types_and_unknown_routes_are_problems() {
    let app = TestApp::spawn_with(
        dialtone::app::Parts {
            api: true,
            frontend: false,
        },
        |c| c.max_json_body = 64 * 1024,
    )
    .await;
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            b"{\"slug\": ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            b"{\"slug\": \"a\", \"name\": \"A\"} trailing".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            b"[1,2,3]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            b"{\"slug\": 5, \"name\": \"A\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            b"{\"slug\": \"a\", \"name\": \"A\", \"extra\": 1}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("text/plain"),
            b"{\"slug\": \"a\", \"name\": \"A\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/tenants",
            None,
            b"{\"slug\": \"a\", \"name\": \"A\"}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            vec![0xff, 0xfe, 0x00],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants",
            Some("application/json"),
            vec![b' '; 100 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::GET,
            "/v1/no-such-thing",
            None,
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/", None, vec![], StatusCode::NOT_FOUND),
        (
            Method::DELETE,
            "/v1/tenants",
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PUT,
            "/v1/tenants/acme",
            Some("application/json"),
            b"{}".to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, ct, body, want) in cases {
        let label = format!(
            "{method} {path} {ct:?} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
        let r = raw(&app, method, path, ct, body).await;
        assert_eq!(r.status, want, "{label}: {}", r.text);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{label}"
        );
        assert_eq!(r.body["status"], want.as_u16(), "{label}: {}", r.text);
        assert!(
            r.body["title"].is_string()
                && r.body["type"].is_string()
                && r.body["detail"].is_string(),
            "{label}"
        );
    }
    let r = app
        .call(Method::GET, "/v1/tenants", Some(&app.admin()), None)
        .await;
    assert!(
        r.body["items"].as_array().unwrap().is_empty(),
        "no bad request wrote anything"
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_docs_answer() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    app.call(Method::GET, "/v1/tenants", Some(&app.admin()), None)
        .await;
    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert!(
        r.text.contains(
            "dialtone_http_requests_total{method=\"GET\",route=\"/v1/tenants\",status=\"200\"} 1"
        ),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("dialtone_db_pool_connections{state=\"max\"} 8"),
        "{}",
        r.text
    );
    let r = app.call(Method::GET, "/docs/", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains("swagger-ui"),
        "Swagger UI is served from the binary"
    );
    let r = app
        .call(Method::GET, "/docs/swagger-initializer.js", None, None)
        .await;
    assert!(r.text.contains("/openapi.json"), "{}", r.text);
    let r = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.body["openapi"], "3.1.0");
}

#[tokio::test]
async fn readiness_fails_with_503_when_the_database_is_gone() {
    // A database URL where nothing listens.
    let app = TestApp::spawn_unreachable().await;
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = app
        .call(Method::GET, "/v1/tenants", Some(&app.admin()), None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(
        !r.text.contains("nobody"),
        "no connection details leak: {}",
        r.text
    );
}

#[tokio::test]
async fn nul_characters_and_foreign_cursors_are_client_errors_never_500() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let cases: Vec<(Method, &str, StatusCode)> = vec![
        (Method::GET, "/v1/tenants/a%00b", StatusCode::NOT_FOUND),
        (Method::PATCH, "/v1/tenants/acme%00", StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/v1/tenants/a%00b/networks",
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/v1/files/x%00y", StatusCode::NOT_FOUND),
        (Method::DELETE, "/v1/files/x%00y", StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/v1/tenants/acme/files/x%00y",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/audit-events?tenant=a%00b",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/tenants/acme/phones?q=a%00b",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/files?cursor=ACME",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/tenants?cursor=AA",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/tenants/acme/phones?cursor=ACME",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/tenants/acme/discovered-devices?cursor=AA",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (method, path, want) in cases {
        let body = (method == Method::PATCH).then(|| serde_json::json!({"name": "x"}));
        let r = app
            .call(method.clone(), path, Some(&app.admin()), body)
            .await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{method} {path}"
        );
    }
    // A NUL inside a JSON string that reaches the database is refused as bad input, not a 500.
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.admin()),
            Some(serde_json::json!({"name": "a\u{0}b"})),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
}
