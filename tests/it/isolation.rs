//! The tenant-isolation matrix: every tenant-scoped route x {own admin, other tenant's admin, viewer,
//! no token, expired, bad signature, alg none}; a foreign tenant answers exactly as a missing one.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{TestApp, SECRET};

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    write: bool,
    /// Expected status for the tenant's own admin.
    own: StatusCode,
}

fn token_with(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Routes of tenant `t`. Destructive rows use their own resources so that rows stay independent.
fn routes(t: &str, net: &str, net_del: &str) -> Vec<Route> {
    let r =
        |method: Method, path: String, body: Option<Value>, write: bool, own: StatusCode| Route {
            method,
            path,
            body,
            write,
            own,
        };
    let phone = json!({"model": "7960", "lines": [{"number": "1001", "password": "pw-12345"}]});
    vec![
        r(
            Method::GET,
            format!("/v1/tenants/{t}"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::PATCH,
            format!("/v1/tenants/{t}"),
            Some(json!({"name": "Renamed"})),
            true,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/networks"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::POST,
            format!("/v1/tenants/{t}/networks"),
            Some(json!({"cidr": if t == "acme" { "10.9.0.0/16" } else { "10.8.0.0/16" }})),
            true,
            StatusCode::CREATED,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/networks/{net}"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::DELETE,
            format!("/v1/tenants/{t}/networks/{net_del}"),
            None,
            true,
            StatusCode::NO_CONTENT,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/phones"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::POST,
            format!("/v1/tenants/{t}/phones"),
            Some(
                json!({"mac": if t == "acme" { "0A0000000001" } else { "0B0000000001" }, "model": "7960", "lines": [{"number": "1"}]}),
            ),
            true,
            StatusCode::CREATED,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/phones/{}", mac(t, 1)),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::PUT,
            format!("/v1/tenants/{t}/phones/{}", mac(t, 1)),
            Some(phone.clone()),
            true,
            StatusCode::OK,
        ),
        r(
            Method::PATCH,
            format!("/v1/tenants/{t}/phones/{}", mac(t, 1)),
            Some(json!({"label": "x"})),
            true,
            StatusCode::OK,
        ),
        r(
            Method::DELETE,
            format!("/v1/tenants/{t}/phones/{}", mac(t, 2)),
            None,
            true,
            StatusCode::NO_CONTENT,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/files"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::PUT,
            format!("/v1/tenants/{t}/files/new.pcm"),
            Some(json!("tone")),
            true,
            StatusCode::CREATED,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/files/seed.pcm"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::DELETE,
            format!("/v1/tenants/{t}/files/del.pcm"),
            None,
            true,
            StatusCode::NO_CONTENT,
        ),
        // Previews contain SIP passwords: admins only (a viewer is refused like a writer).
        r(
            Method::GET,
            format!(
                "/v1/tenants/{t}/phones/{}/files/SEP{}.cnf.xml",
                mac(t, 1),
                mac(t, 1)
            ),
            None,
            true,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/files-preview/SIPDefault.cnf"),
            None,
            true,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/phones/{}/fetches", mac(t, 1)),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/discovered-devices"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/audit-events?tenant={t}"),
            None,
            false,
            StatusCode::OK,
        ),
        // Platform-admin only, even for the tenant's own admin.
        r(
            Method::DELETE,
            format!("/v1/tenants/{t}?cascade=true"),
            None,
            true,
            StatusCode::FORBIDDEN,
        ),
    ]
}

fn mac(t: &str, n: u8) -> String {
    format!("{}00000000{n:02X}", if t == "acme" { "AA" } else { "BB" })
}

async fn seed(app: &TestApp, t: &str, base: &str) -> (String, String) {
    app.create_tenant(t).await;
    let net = app.add_network(t, &format!("{base}.0.0/16")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let net_del = app.add_network(t, &format!("{base}.200.0/24")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in [1, 2] {
        assert_eq!(
            app.put_phone(t, &mac(t, n)).await.status,
            StatusCode::CREATED
        );
    }
    for f in ["seed.pcm", "del.pcm"] {
        let r = app
            .call(
                Method::PUT,
                &format!("/v1/tenants/{t}/files/{f}"),
                Some(&app.admin()),
                Some(json!("x")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Previews read the provisioning snapshot, which follows the database within milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let first = dialtone::domain::MacAddress::from_bare_hex(&mac(t, 2)).unwrap();
    while app.snapshot.current().phone(first).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (net, net_del)
}

#[tokio::test]
async fn every_tenant_route_answers_each_kind_of_caller_as_specified() {
    let app = TestApp::spawn().await;
    let (a_net, a_del) = seed(&app, "acme", "10.1").await;
    let (b_net, b_del) = seed(&app, "bravo", "10.2").await;
    let acme_admin = app.tenant_admin("acme");
    let bravo_viewer = app.viewer("bravo");
    let expired = token_with(
        SECRET,
        json!({"sub": "x", "role": "platform-admin", "aud": "dialtone", "exp": now() - 600}),
    );
    let forged = token_with(
        "another-secret-another-secret-another",
        json!({"sub": "x", "role": "platform-admin", "aud": "dialtone", "exp": now() + 600}),
    );
    let wrong_aud = token_with(
        SECRET,
        json!({"sub": "x", "role": "platform-admin", "aud": "someone-else", "exp": now() + 600}),
    );
    let payload = base64_url(
        &json!({"sub": "x", "role": "platform-admin", "aud": "dialtone", "exp": now() + 600})
            .to_string(),
    );
    let alg_none = format!("{}.{payload}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#));

    let mut failures = Vec::new();
    let mut check = |what: String, got: StatusCode, want: StatusCode, text: &str| {
        if got != want {
            failures.push(format!("{what}: got {got}, want {want}: {text}"));
        }
    };

    for (route, ghost) in routes("bravo", &b_net, &b_del)
        .into_iter()
        .zip(routes("ghost", &b_net, &b_del))
    {
        let label = format!("{} {}", route.method, route.path);
        // Another tenant's admin: 403, byte-identical to the answer for a tenant that does not exist.
        let r = app
            .call(
                route.method.clone(),
                &route.path,
                Some(&acme_admin),
                route.body.clone(),
            )
            .await;
        check(
            format!("{label} as acme admin"),
            r.status,
            StatusCode::FORBIDDEN,
            &r.text,
        );
        let g = app
            .call(
                ghost.method.clone(),
                &ghost.path,
                Some(&acme_admin),
                ghost.body.clone(),
            )
            .await;
        assert_eq!(
            (r.status, &r.text),
            (g.status, &g.text),
            "{label}: foreign and missing tenants must look alike"
        );
        assert!(
            !r.text.contains("10.2.") && !r.text.contains("BB00"),
            "no data of bravo leaks: {}",
            r.text
        );
        // Viewer of the tenant: reads pass, writes are 403.
        if route.write {
            let r = app
                .call(
                    route.method.clone(),
                    &route.path,
                    Some(&bravo_viewer),
                    route.body.clone(),
                )
                .await;
            check(
                format!("{label} as bravo viewer"),
                r.status,
                StatusCode::FORBIDDEN,
                &r.text,
            );
        } else if !route.path.starts_with("/v1/audit-events") {
            let r = app
                .call(route.method.clone(), &route.path, Some(&bravo_viewer), None)
                .await;
            check(
                format!("{label} as bravo viewer"),
                r.status,
                StatusCode::OK,
                &r.text,
            );
        }
        for (who, token) in [
            ("no token", None),
            ("expired", Some(&expired)),
            ("forged", Some(&forged)),
            ("wrong audience", Some(&wrong_aud)),
            ("alg none", Some(&alg_none)),
        ] {
            let r = app
                .call(
                    route.method.clone(),
                    &route.path,
                    token.map(|t| t.as_str()),
                    route.body.clone(),
                )
                .await;
            check(
                format!("{label} with {who}"),
                r.status,
                StatusCode::UNAUTHORIZED,
                &r.text,
            );
            assert_eq!(r.headers["content-type"], "application/problem+json");
        }
    }
    // The tenant's own admin, last, since some rows delete.
    for route in routes("acme", &a_net, &a_del) {
        let r = app
            .call(
                route.method.clone(),
                &route.path,
                Some(&acme_admin),
                route.body.clone(),
            )
            .await;
        check(
            format!("{} {} as acme admin", route.method, route.path),
            r.status,
            route.own,
            &r.text,
        );
    }
    assert!(
        failures.is_empty(),
        "isolation matrix failures:\n{}",
        failures.join("\n")
    );

    // Nothing of bravo changed through all of that.
    let r = app
        .call(Method::GET, "/v1/tenants/bravo", Some(&app.admin()), None)
        .await;
    assert_eq!(r.body["name"], "Tenant bravo");
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/bravo/phones",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/bravo/networks",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

#[tokio::test]
async fn platform_only_routes_refuse_tenant_roles() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.tenant_admin("acme")),
            Some(crate::helpers::tenant_body("new")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .call(
            Method::GET,
            "/v1/audit-events",
            Some(&app.viewer("acme")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
