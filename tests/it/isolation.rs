//! The auth and isolation matrix: every route of the OpenAPI document x {platform admin, the tenant's
//! admin, another tenant's admin, viewer, no token, expired, wrong audience, bad signature, `alg: none`,
//! HS256 signed with the public key of the asymmetric configuration}; a foreign tenant answers exactly as
//! a missing one, and no body of another tenant is ever returned.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Resp, TestApp, SECRET};

struct Route {
    method: Method,
    path: String,
    body: Body,
    /// Writes, and reads that show secrets or the audit trail: refused to viewers.
    admins_only: bool,
    /// Expected status for the tenant's own admin (and for a platform admin).
    own: StatusCode,
}

impl Route {
    async fn send_as(&self, app: &TestApp, token: Option<&str>) -> Resp {
        send(app, &self.method, &self.path, token, &self.body).await
    }
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Text(&'static str),
}

impl From<Option<Value>> for Body {
    fn from(v: Option<Value>) -> Body {
        v.map_or(Body::None, Body::Json)
    }
}

/// A template the matrix saves and previews (a valid `SIP<MAC>.cnf` template).
const TEMPLATE: &str = "# {{ tenant.slug }}\n";

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: &Body,
) -> Resp {
    let mut req = app
        .http
        .request(method.clone(), format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = match body {
        Body::None => req,
        Body::Json(v) => req.json(v),
        Body::Text(t) => req.header("content-type", "text/plain").body(*t),
    };
    TestApp::read(req.send().await.expect("request")).await
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
            body: body.into(),
            admins_only: write,
            own,
        };
    let text = |method: Method, path: String, own: StatusCode| Route {
        method,
        path,
        body: Body::Text(TEMPLATE),
        admins_only: true,
        own,
    };
    let n = match t {
        "acme" => 0x0A,
        "charlie" => 0x0C,
        _ => 0x0B,
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
            Some(json!({"cidr": format!("10.{}.0.0/16", 0x10 + n)})),
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
                json!({"mac": format!("{n:02X}0000000001"), "model": "7960", "lines": [{"number": "1"}]}),
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
            true,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/dhcp-config"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/firmware-status"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/phone-exports"),
            None,
            false,
            StatusCode::OK,
        ),
        r(
            Method::POST,
            format!("/v1/tenants/{t}/phone-imports"),
            Some(
                json!([{"mac": format!("{n:02X}0000000003"), "model": "7960", "lines": [{"number": "3"}]}]),
            ),
            true,
            StatusCode::OK,
        ),
        r(
            Method::POST,
            format!("/v1/tenants/{t}/phones/{}/resync", mac(t, 1)),
            None,
            true,
            // Past the authorization: the phone has never fetched its files, so it cannot be reached.
            StatusCode::CONFLICT,
        ),
        r(
            Method::POST,
            format!("/v1/tenants/{t}/resync"),
            None,
            true,
            StatusCode::OK,
        ),
        // Templates can print SIP passwords: admins only, reads included.
        r(
            Method::GET,
            format!("/v1/tenants/{t}/templates"),
            None,
            true,
            StatusCode::OK,
        ),
        r(
            Method::GET,
            format!("/v1/tenants/{t}/templates/SIPMAC.cnf"),
            None,
            true,
            StatusCode::OK,
        ),
        text(
            Method::PUT,
            format!("/v1/tenants/{t}/templates/SIPMAC.cnf"),
            StatusCode::OK,
        ),
        text(
            Method::POST,
            format!(
                "/v1/tenants/{t}/templates/SIPMAC.cnf/preview?mac={}",
                mac(t, 1)
            ),
            StatusCode::OK,
        ),
        r(
            Method::DELETE,
            format!("/v1/tenants/{t}/templates/SIPDefault.cnf"),
            None,
            true,
            StatusCode::NO_CONTENT,
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
    let prefix = match t {
        "acme" => "AA",
        "charlie" => "CC",
        _ => "BB",
    };
    format!("{prefix}00000000{n:02X}")
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
    // Template saves (checked against the tenant's phones) and previews read the provisioning snapshot,
    // which follows the database within milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let first = dialtone::domain::MacAddress::from_bare_hex(&mac(t, 2)).unwrap();
    while app.snapshot.current().phone(first).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for f in ["SIPMAC.cnf", "SIPDefault.cnf"] {
        let r = send(
            app,
            &Method::PUT,
            &format!("/v1/tenants/{t}/templates/{f}"),
            Some(&app.admin()),
            &Body::Text(TEMPLATE),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{f}: {}", r.text);
    }
    (net, net_del)
}

/// The asymmetric key the matrix's server trusts besides its HS256 secret.
const RS256_PUBLIC: &str = "tests/fixtures/keys/rs256-public.pem";

/// Routes outside any tenant: (method, path, body, expected for platform admin, tenant admin, viewer).
fn platform_routes() -> Vec<(Method, &'static str, Body, [StatusCode; 3])> {
    use StatusCode as S;
    let file = |b: &'static str| Body::Text(b);
    vec![
        (
            Method::GET,
            "/v1/tenants",
            Body::None,
            [S::OK, S::OK, S::OK],
        ),
        (
            Method::POST,
            "/v1/tenants",
            Body::Json(crate::helpers::tenant_body("new-one")),
            [S::CREATED, S::FORBIDDEN, S::FORBIDDEN],
        ),
        (
            Method::GET,
            "/v1/audit-events",
            Body::None,
            [S::OK, S::OK, S::FORBIDDEN],
        ),
        (Method::GET, "/v1/files", Body::None, [S::OK, S::OK, S::OK]),
        (
            Method::GET,
            "/v1/files/global.pcm",
            Body::None,
            [S::OK, S::OK, S::OK],
        ),
        (
            Method::PUT,
            "/v1/files/new-global.pcm",
            file("tone"),
            [S::CREATED, S::FORBIDDEN, S::FORBIDDEN],
        ),
        (
            Method::DELETE,
            "/v1/files/global-del.pcm",
            Body::None,
            [S::NO_CONTENT, S::FORBIDDEN, S::FORBIDDEN],
        ),
    ]
}

/// `/v1/tenants/{tenant}/phones/{mac}` as a pattern over concrete paths (query strings ignored).
fn matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap();
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b)
}

#[tokio::test]
async fn every_route_answers_each_kind_of_caller_as_specified() {
    let app = TestApp::spawn_with(
        dialtone::app::Parts {
            api: true,
            frontend: false,
        },
        |c| {
            c.jwt_public_keys = vec![dialtone::config::PublicKeyConfig {
                algorithm: "RS256".into(),
                pem_file: RS256_PUBLIC.into(),
                kid: None,
            }];
            c.provisioning_addresses = vec!["192.0.2.10".into()];
        },
    )
    .await;
    let (a_net, a_del) = seed(&app, "acme", "10.1").await;
    let (b_net, b_del) = seed(&app, "bravo", "10.2").await;
    let (c_net, c_del) = seed(&app, "charlie", "10.3").await;
    for f in ["global.pcm", "global-del.pcm"] {
        let r = send(
            &app,
            &Method::PUT,
            &format!("/v1/files/{f}"),
            Some(&app.admin()),
            &Body::Text("g"),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let acme_admin = app.tenant_admin("acme");
    let acme_viewer = app.viewer("acme");
    let bravo_viewer = app.viewer("bravo");
    let claims =
        |aud: &str, exp: u64| json!({"sub": "x", "role": "platform-admin", "aud": aud, "exp": exp});
    let expired = token_with(SECRET, claims("dialtone", now() - 600));
    let forged = token_with(
        "another-secret-another-secret-another",
        claims("dialtone", now() + 600),
    );
    let wrong_aud = token_with(SECRET, claims("someone-else", now() + 600));
    let payload = base64_url(&claims("dialtone", now() + 600).to_string());
    let alg_none = format!("{}.{payload}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#));
    // The key-confusion attack: HMAC keyed with the RS256 public key the server trusts.
    let public_pem = std::fs::read_to_string(RS256_PUBLIC).unwrap();
    let hs256_public = token_with(&public_pem, claims("dialtone", now() + 600));
    let bad_tokens = [
        ("no token", None),
        ("expired", Some(&expired)),
        ("bad signature", Some(&forged)),
        ("wrong audience", Some(&wrong_aud)),
        ("alg none", Some(&alg_none)),
        (
            "HS256 signed with the RS256 public key",
            Some(&hs256_public),
        ),
    ];

    let mut failures = Vec::new();
    let mut check = |what: String, got: StatusCode, want: StatusCode, text: &str| {
        if got != want {
            failures.push(format!("{what}: got {got}, want {want}: {text}"));
        }
    };
    // Nothing of another tenant in a body: its networks (10.2.x / 10.3.x) and MACs (BB… / CC…).
    let leaks = |text: &str, others: &[&str]| {
        others.iter().any(|t| {
            let (net, mac) = match *t {
                "bravo" => ("10.2.", "BB00000000"),
                _ => ("10.3.", "CC00000000"),
            };
            text.contains(net) || text.contains(mac) || text.contains(&format!("\"{t}\""))
        })
    };

    for (route, ghost) in routes("bravo", &b_net, &b_del)
        .into_iter()
        .zip(routes("ghost", &b_net, &b_del))
    {
        let label = format!("{} {}", route.method, route.path);
        // Another tenant's admin: 403, byte-identical to the answer for a tenant that does not exist.
        let r = route.send_as(&app, Some(&acme_admin)).await;
        check(
            format!("{label} as acme admin"),
            r.status,
            StatusCode::FORBIDDEN,
            &r.text,
        );
        let g = ghost.send_as(&app, Some(&acme_admin)).await;
        assert_eq!(
            (r.status, &r.text),
            (g.status, &g.text),
            "{label}: foreign and missing tenants must look alike"
        );
        assert!(
            !leaks(&r.text, &["bravo", "charlie"]),
            "{label}: bravo leaks: {}",
            r.text
        );
        // Another tenant's viewer: the same.
        let r = route.send_as(&app, Some(&acme_viewer)).await;
        check(
            format!("{label} as acme viewer"),
            r.status,
            StatusCode::FORBIDDEN,
            &r.text,
        );
        assert!(
            !leaks(&r.text, &["bravo", "charlie"]),
            "{label}: bravo leaks: {}",
            r.text
        );
        // The tenant's viewer: reads pass, writes (and reads that show passwords) are 403.
        let want = if route.admins_only {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        let r = route.send_as(&app, Some(&bravo_viewer)).await;
        check(format!("{label} as bravo viewer"), r.status, want, &r.text);
        for (who, token) in bad_tokens {
            let r = route.send_as(&app, token.map(|t| t.as_str())).await;
            check(
                format!("{label} with {who}"),
                r.status,
                StatusCode::UNAUTHORIZED,
                &r.text,
            );
            assert_eq!(
                r.headers["content-type"], "application/problem+json",
                "{label} with {who}"
            );
        }
    }
    // The tenant's own admin on acme, and a platform admin on charlie; last, since some rows delete.
    for route in routes("acme", &a_net, &a_del) {
        let r = route.send_as(&app, Some(&acme_admin)).await;
        let label = format!("{} {} as acme admin", route.method, route.path);
        check(label.clone(), r.status, route.own, &r.text);
        assert!(
            !leaks(&r.text, &["bravo", "charlie"]),
            "{label}: leaks: {}",
            r.text
        );
    }
    for route in routes("charlie", &c_net, &c_del) {
        let want = if route.method == Method::DELETE && route.path.ends_with("?cascade=true") {
            StatusCode::NO_CONTENT
        } else {
            route.own
        };
        let r = route.send_as(&app, Some(&app.admin())).await;
        check(
            format!("{} {} as platform admin", route.method, route.path),
            r.status,
            want,
            &r.text,
        );
    }

    // Routes outside any tenant: tenant roles first (nothing they try may change anything), then the
    // platform admin.
    for (method, path, body, [platform, admin, viewer]) in platform_routes() {
        let label = format!("{method} {path}");
        for (who, token, want) in [
            ("acme admin", &acme_admin, admin),
            ("acme viewer", &acme_viewer, viewer),
        ] {
            let r = send(&app, &method, path, Some(token), &body).await;
            check(format!("{label} as {who}"), r.status, want, &r.text);
            assert!(
                !leaks(&r.text, &["bravo"]),
                "{label} as {who}: bravo leaks: {}",
                r.text
            );
        }
        for (who, token) in bad_tokens {
            let r = send(&app, &method, path, token.map(|t| t.as_str()), &body).await;
            check(
                format!("{label} with {who}"),
                r.status,
                StatusCode::UNAUTHORIZED,
                &r.text,
            );
        }
        let r = send(&app, &method, path, Some(&app.admin()), &body).await;
        check(
            format!("{label} as platform admin"),
            r.status,
            platform,
            &r.text,
        );
    }
    assert!(
        failures.is_empty(),
        "auth matrix failures:\n{}",
        failures.join("\n")
    );

    // Every operation of the OpenAPI document is in the matrix (health and metrics are public).
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string("openapi/openapi.json").unwrap()).unwrap();
    let covered: Vec<(Method, String)> = routes("bravo", &b_net, &b_del)
        .into_iter()
        .map(|r| (r.method, r.path))
        .chain(
            platform_routes()
                .into_iter()
                .map(|(m, p, _, _)| (m, p.to_owned())),
        )
        .collect();
    let mut missing = Vec::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        if ["/healthz", "/readyz", "/metrics"].contains(&template.as_str()) {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            if !covered
                .iter()
                .any(|(cm, p)| *cm == m && matches(template, p))
            {
                missing.push(format!("{m} {template}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "operations missing from the matrix: {missing:?}"
    );

    // Nothing of bravo changed through all of that.
    let r = app
        .call(Method::GET, "/v1/tenants/bravo", Some(&app.admin()), None)
        .await;
    assert_eq!(r.body["name"], "Tenant bravo");
    for (what, n) in [("phones", 2), ("networks", 2), ("files", 2)] {
        let r = app
            .call(
                Method::GET,
                &format!("/v1/tenants/bravo/{what}"),
                Some(&app.admin()),
                None,
            )
            .await;
        assert_eq!(
            r.body["items"].as_array().unwrap().len(),
            n,
            "bravo's {what}: {}",
            r.text
        );
    }
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/bravo/templates",
            Some(&app.admin()),
            None,
        )
        .await;
    let overridden = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["overridden"] == true)
        .count();
    assert_eq!(overridden, 2, "bravo's templates: {}", r.text);
    let r = app
        .call(
            Method::GET,
            "/v1/files/global-del.pcm",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "deleted by the platform admin only, last"
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}
