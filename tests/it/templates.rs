//! Per-tenant template overrides: saved overrides are served over TFTP, invalid ones are refused with the
//! failing phone, previews render unsaved templates byte for byte, deleting returns to the built-in
//! renderer; access rules; and the time a save takes for a tenant with 10,000 phones.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::helpers::{Resp, TestApp};
use crate::provisioning::clients;
use crate::provisioning::{eventually, put_phone, tenant_with_network, tftp};

const MAC: &str = "0004F2A70001";
const MAC_XML: &str = "0004F2A70002";
const SRC: &str = "127.0.9.5";

const CNF_TEMPLATE: &str = "# {{ tenant.slug }}\nphone_label: \"{{ phone.label }}\"\n{% for l in phone.lines %}\nline{{ l.position }}_name: \"{{ l.number }}\"\nline{{ l.position }}_authname: \"{{ l.auth_name }}\"\nline{{ l.position }}_password: \"{{ l.password }}\"\nproxy{{ l.position }}_address: \"{{ settings.sip.registrar }}\"\n{% endfor %}\nimage_version: \"{{ load }}\"\ntime_zone: \"{{ settings.time.time_zone.cisco_cnf }}\"\n";

fn expected_cnf() -> String {
    "# tpl\nphone_label: \"Desk\"\nline1_name: \"1001\"\nline1_authname: \"1001\"\nline1_password: \"pw-1001\"\nproxy1_address: \"sip.acme.example\"\nimage_version: \"P0S3-8-12-00\"\ntime_zone: \"GMT\"\n".to_owned()
}

async fn send_text(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
    if_match: Option<&str>,
) -> Resp {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(body.to_owned());
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    TestApp::read(req.send().await.expect("request")).await
}

async fn fetch(app: &TestApp, name: &str) -> Option<Vec<u8>> {
    clients::tftp_get(tftp(app), SRC, name, &[])
        .await
        .ok()
        .map(|f| f.data)
}

/// Waits until the phone is served `want` (or, with `None`, anything) over TFTP.
async fn served(app: &TestApp, name: &str, want: Option<&[u8]>) -> Vec<u8> {
    eventually(Duration::from_secs(10), &format!("TFTP {name}"), || async {
        fetch(app, name)
            .await
            .filter(|got| want.is_none_or(|w| got == w))
    })
    .await
}

async fn phone_count(app: &TestApp, want: usize) {
    eventually(
        Duration::from_secs(30),
        &format!("{want} phones in the snapshot"),
        || async { (app.snapshot.current().phone_count() >= want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_saved_override_is_served_and_deleting_it_restores_the_built_in_bytes() {
    let app = TestApp::spawn_full().await;
    tenant_with_network(&app, "tpl", "127.0.9.0/24").await;
    put_phone(&app, "tpl", MAC, "7960", "1001").await;
    let admin = app.tenant_admin("tpl");
    let name = format!("SIP{MAC}.cnf");
    let builtin = served(&app, &name, None).await;
    assert!(String::from_utf8_lossy(&builtin).contains("line1_password: \"pw-1001\""));

    // Nothing is overridden yet.
    let r = app
        .call(Method::GET, "/v1/tenants/tpl/templates", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    assert!(items.iter().all(|i| i["overridden"] == false));
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/tpl/templates/SIPMAC.cnf",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["detail"].as_str().unwrap().contains("built-in"));

    // A preview of the unsaved template gives exactly what the phone will get.
    let r = send_text(
        &app,
        Method::POST,
        &format!("/v1/tenants/tpl/templates/SIPMAC.cnf/preview?mac={MAC}"),
        &admin,
        CNF_TEMPLATE,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.text, expected_cnf());
    assert_eq!(fetch(&app, &name).await.unwrap(), builtin, "not saved yet");

    // Save it: the phone gets the override.
    let r = send_text(
        &app,
        Method::PUT,
        "/v1/tenants/tpl/templates/SIPMAC.cnf",
        &admin,
        CNF_TEMPLATE,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["file"], "SIPMAC.cnf");
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    served(&app, &name, Some(expected_cnf().as_bytes())).await;

    let r = app
        .call(
            Method::GET,
            "/v1/tenants/tpl/templates/SIPMAC.cnf",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, CNF_TEMPLATE);
    let r = app
        .call(Method::GET, "/v1/tenants/tpl/templates", Some(&admin), None)
        .await;
    let item = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file"] == "SIPMAC.cnf")
        .unwrap()
        .clone();
    assert_eq!(item["overridden"], true);

    // If-Match guards replacing.
    let changed = CNF_TEMPLATE.replace("# {{", "#  {{");
    let path = "/v1/tenants/tpl/templates/SIPMAC.cnf";
    let r = send_text(&app, Method::PUT, path, &admin, &changed, Some("\"1\"")).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = send_text(&app, Method::PUT, path, &admin, &changed, Some(&etag)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    served(
        &app,
        &name,
        Some(expected_cnf().replace("# tpl", "#  tpl").as_bytes()),
    )
    .await;

    // The audit trail names the template.
    let r = app
        .call(Method::GET, "/v1/audit-events", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "SIPMAC.cnf")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["template.replace", "template.create"]);

    // Delete: back to the built-in bytes.
    let r = app.call(Method::DELETE, path, Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    served(&app, &name, Some(&builtin)).await;
    let r = app.call(Method::DELETE, path, Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_templates_are_refused_with_the_failing_phone() {
    let app = TestApp::spawn().await;
    app.create_tenant("tpl").await;
    app.create_tenant("other").await;
    put_phone(&app, "tpl", MAC, "7960", "1001").await;
    put_phone(&app, "tpl", MAC_XML, "7942", "1002").await;
    phone_count(&app, 2).await;
    let admin = app.tenant_admin("tpl");
    let put = |file: &'static str, body: &'static str| {
        let admin = admin.clone();
        let app = &app;
        async move {
            send_text(
                app,
                Method::PUT,
                &format!("/v1/tenants/tpl/templates/{file}"),
                &admin,
                body,
                None,
            )
            .await
        }
    };

    // A syntax error.
    let r = put("SIPMAC.cnf", "a: \"{{ phone.label \"\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["path"], "template");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));

    // A line that is not `key: value`, named by phone.
    let r = put("SIPMAC.cnf", "{{ phone.label }}\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["path"], format!("phones[{MAC}]"));
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("name: value"),
        "{}",
        r.text
    );

    // A typo in a variable name.
    let r = put("SIPMAC.cnf", "label: \"{{ phone.lable }}\"\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["path"], format!("phones[{MAC}]"));

    // Malformed XML.
    let r = put("SEPMAC.cnf.xml", "<device><a>{{ phone.mac }}</device>\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["path"], format!("phones[{MAC_XML}]"));
    let r = put("dialplan.xml", "<DIALTEMPLATE>\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["path"], "template");

    // The same failures in a preview.
    let r = send_text(
        &app,
        Method::POST,
        &format!("/v1/tenants/tpl/templates/SEPMAC.cnf.xml/preview?mac={MAC_XML}"),
        &admin,
        "<device><a></device>\n",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = send_text(
        &app,
        Method::POST,
        "/v1/tenants/tpl/templates/SIPMAC.cnf/preview",
        &admin,
        "a: b\n",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["errors"][0]["path"], "mac");

    // Nothing was saved.
    let r = app
        .call(Method::GET, "/v1/tenants/tpl/templates", Some(&admin), None)
        .await;
    assert!(r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["overridden"] == false));

    // Unknown ids.
    let r = put("SIP0004F2A70001.cnf", "a: b\n").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Viewers (templates see passwords) and other tenants are refused.
    for token in [app.viewer("tpl"), app.tenant_admin("other")] {
        let r = send_text(
            &app,
            Method::PUT,
            "/v1/tenants/tpl/templates/SIPMAC.cnf",
            &token,
            "a: b\n",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = send_text(
            &app,
            Method::POST,
            &format!("/v1/tenants/tpl/templates/SIPMAC.cnf/preview?mac={MAC}"),
            &token,
            "a: b\n",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app
            .call(Method::GET, "/v1/tenants/tpl/templates", Some(&token), None)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    // A platform admin may.
    let r = send_text(
        &app,
        Method::PUT,
        "/v1/tenants/tpl/templates/OS79XX.TXT",
        &app.admin(),
        "{{ settings.firmware.os79xx }}\n",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// Measurement, no assertion on time: saving a `SIPMAC.cnf` override for a tenant with 10,000 7960s
/// (compile once, render and check 10,000 files from the in-memory snapshot, one transaction).
#[tokio::test]
async fn save_time_for_a_tenant_with_10000_phones() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("big").await;
    let c = app.sql().await;
    let id: uuid::Uuid = t["id"].as_str().unwrap().parse().unwrap();
    c.batch_execute(&format!(
        "INSERT INTO phones (mac, id, tenant_id, model, label)
           SELECT upper(lpad(to_hex(i), 12, '0')), gen_random_uuid(), '{id}', '7960', 'Desk ' || i
           FROM generate_series(1, 10000) i;
         INSERT INTO phone_lines (phone_mac, position, number, auth_name, password, display_name)
           SELECT upper(lpad(to_hex(i), 12, '0')), 1, (10000 + i)::text, (10000 + i)::text, 'pw-' || i, 'User ' || i
           FROM generate_series(1, 10000) i;"
    ))
    .await
    .unwrap();
    phone_count(&app, 10_000).await;
    let admin = app.tenant_admin("big");
    let mut times = Vec::new();
    for round in 0..3 {
        let body = CNF_TEMPLATE.replace("# {{", &format!("# round {round} {{{{"));
        let start = Instant::now();
        let r = send_text(
            &app,
            Method::PUT,
            "/v1/tenants/big/templates/SIPMAC.cnf",
            &admin,
            &body,
            None,
        )
        .await;
        let took = start.elapsed();
        assert!(r.status.is_success(), "{}", r.text);
        times.push(took);
    }
    println!("template override save, tenant with 10,000 phones: {times:?}");
}

#[tokio::test]
async fn a_template_saved_right_after_its_tenant_is_created_waits_for_the_snapshot_instead_of_409()
{
    let app = TestApp::spawn().await;
    let admin = app.admin();
    for n in 0..5 {
        let slug = format!("fresh{n}");
        app.create_tenant(&slug).await;
        let r = send_text(
            &app,
            Method::PUT,
            &format!("/v1/tenants/{slug}/templates/RINGLIST.DAT"),
            &admin,
            "Ring\tring1.pcm\n",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{slug}: {}", r.text);
    }
}
