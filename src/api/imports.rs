//! Bulk import and export of a tenant's phones: `POST /v1/tenants/{t}/phone-imports` (JSON array or CSV,
//! create-or-update by MAC, dry run, all-or-nothing in one transaction, one result per row) and
//! `GET /v1/tenants/{t}/phone-exports` (the same format, without passwords, so export → import is a no-op).

use std::collections::{HashMap, HashSet};
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::phones::CreatePhone;
use super::tenants::{actor, load_tenant};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, imports::PhoneWrite, imports::StoredPhone};
use crate::domain::{FieldError, LineInput, MacAddress, PhoneSpec, PhoneSpecInput};

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(import_phones).service(export_phones);
}

/// Most lines a phone has (the 797x), hence the CSV's `line1_…` to `line8_…` columns.
const MAX_LINES: usize = 8;
const LINE_FIELDS: [&str; 5] = [
    "number",
    "auth_name",
    "password",
    "display_name",
    "short_label",
];

/// `?dry_run=true&partial=true`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Check and report without writing anything.
    pub dry_run: Option<bool>,
    /// Apply the good rows even when some rows fail (default: all or nothing).
    pub partial: Option<bool>,
}

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// A new phone.
    Created,
    /// An existing phone of this tenant, changed.
    Updated,
    /// An existing phone of this tenant, already as given.
    Unchanged,
    /// Refused; see `errors`.
    Error,
}

/// The result of one row.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowResult {
    /// 1-based row number (CSV: data rows after the header).
    pub row: usize,
    /// The row's MAC, canonical, when it parsed.
    pub mac: Option<String>,
    /// Outcome.
    pub result: RowOutcome,
    /// Why the row was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The report of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether anything was written.
    pub applied: bool,
    /// Rows that create a phone.
    pub created: usize,
    /// Rows that change a phone.
    pub updated: usize,
    /// Rows equal to the stored phone.
    pub unchanged: usize,
    /// Rows refused.
    pub errors: usize,
    /// One result per row, in input order.
    pub rows: Vec<RowResult>,
}

/// `?format=csv|json` of the export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// One import row, checked: its MAC and phone, or its errors.
pub type Parsed = Result<(MacAddress, PhoneSpec), Vec<FieldError>>;

fn parse_row(row: CreatePhone) -> Parsed {
    let mac = row
        .mac
        .parse::<MacAddress>()
        .map_err(|e| vec![FieldError::new("mac", e.to_string())]);
    let spec = PhoneSpec::parse(PhoneSpecInput {
        model: row.model,
        label: row.label,
        description: row.description,
        enabled: row.enabled,
        lines: row.lines,
        settings: row.settings,
    });
    match (mac, spec) {
        (Ok(m), Ok(s)) => Ok((m, s)),
        (m, s) => Err(m
            .err()
            .unwrap_or_default()
            .into_iter()
            .chain(s.err().unwrap_or_default())
            .collect()),
    }
}

/// Reads a JSON array one element at a time, so that only parsed rows (never the whole document as
/// generic JSON) are held, and a malformed element is an error of that row alone.
struct Rows(Vec<Parsed>);

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON array of phones")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(200_000));
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    rows.push(
                        match serde_path_to_error::deserialize::<_, CreatePhone>(v) {
                            Ok(row) => parse_row(row),
                            Err(e) => {
                                let path = e.path().to_string();
                                let msg = e.into_inner().to_string();
                                let path = match msg
                                    .strip_prefix("missing field `")
                                    .and_then(|m| m.split('`').next())
                                {
                                    Some(f) if path == "." => f.to_owned(),
                                    _ if path == "." => String::new(),
                                    _ => path,
                                };
                                Err(vec![FieldError::new(path, msg)])
                            }
                        },
                    );
                }
                Ok(Rows(rows))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Parses an import CSV (header row, then one phone per row) into checked rows; the header's errors
/// refuse the whole body. Public for the fuzz target.
pub fn parse_import_csv(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    csv_rows(body)
}

fn csv_rows(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?
        .clone();
    let mut columns: HashMap<String, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let known = [
            "mac",
            "model",
            "label",
            "description",
            "enabled",
            "settings",
        ]
        .contains(&h)
            || (1..=MAX_LINES).any(|n| LINE_FIELDS.iter().any(|f| h == format!("line{n}_{f}")));
        if !known {
            return Err(ApiError::invalid(
                "header",
                format!("unknown CSV column {h:?}; see the README for the format"),
            ));
        }
        if columns.insert(h.to_owned(), i).is_some() {
            return Err(ApiError::invalid(
                "header",
                format!("CSV column {h:?} appears twice"),
            ));
        }
    }
    for required in ["mac", "model", "line1_number"] {
        if !columns.contains_key(required) {
            return Err(ApiError::invalid(
                "header",
                format!("the CSV needs a {required} column"),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                rows.push(Err(vec![FieldError::new(
                    "",
                    format!("not a CSV row: {e}"),
                )]));
                continue;
            }
        };
        let cell = |name: &str| {
            columns
                .get(name)
                .and_then(|&i| record.get(i))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mut errors = Vec::new();
        let enabled = match cell("enabled").as_deref() {
            None => None,
            Some("true" | "1" | "yes") => Some(true),
            Some("false" | "0" | "no") => Some(false),
            Some(_) => {
                errors.push(FieldError::new("enabled", "true or false"));
                None
            }
        };
        let settings = match cell("settings") {
            None => None,
            Some(s) => match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(v) => Some(v),
                Err(_) => {
                    errors.push(FieldError::new("settings", "a JSON object"));
                    None
                }
            },
        };
        let mut lines = Vec::new();
        let mut gap = false;
        for n in 1..=MAX_LINES {
            let get = |f: &str| cell(&format!("line{n}_{f}"));
            match get("number") {
                None => {
                    gap = true;
                    if LINE_FIELDS[1..].iter().any(|f| get(f).is_some()) {
                        errors.push(FieldError::new(
                            format!("line{n}_number"),
                            "required when other line fields are given",
                        ));
                    }
                }
                Some(number) => {
                    if gap {
                        errors.push(FieldError::new(
                            format!("line{n}_number"),
                            "lines must be consecutive from line1",
                        ));
                    }
                    lines.push(LineInput {
                        number,
                        auth_name: get("auth_name"),
                        password: get("password"),
                        display_name: get("display_name"),
                        short_label: get("short_label"),
                    });
                }
            }
        }
        let row = CreatePhone {
            mac: cell("mac").unwrap_or_default(),
            model: cell("model").unwrap_or_default(),
            label: cell("label"),
            description: cell("description"),
            enabled,
            lines,
            settings,
        };
        rows.push(if errors.is_empty() {
            parse_row(row)
        } else {
            Err(errors
                .into_iter()
                .chain(parse_row(row).err().unwrap_or_default())
                .collect())
        });
    }
    Ok(rows)
}

/// Whether the stored phone already is what the row says (with the passwords the write would keep).
fn unchanged(stored: &StoredPhone, spec: &PhoneSpec, passwords: &[Option<String>]) -> bool {
    stored.model == spec.model.as_str()
        && stored.label == spec.label
        && stored.description == spec.description
        && stored.enabled == spec.enabled
        && stored.settings == spec.settings.to_json()
        && stored.lines.len() == spec.lines.len()
        && stored
            .lines
            .iter()
            .zip(&spec.lines)
            .zip(passwords)
            .all(|((s, l), pw)| {
                s.number == l.number
                    && s.auth_name == l.auth_name
                    && &s.password == pw
                    && s.display_name == l.display_name
                    && s.short_label == l.short_label
            })
}

/// Import phones: a JSON array of phones (the POST body plus `mac`) or `text/csv` (README: "Bulk import").
/// Create-or-update by MAC, in one transaction; all or nothing unless `partial=true`.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), ImportParams),
    request_body(content = Vec<CreatePhone>, description = "JSON array, or text/csv with columns mac, model, label, description, enabled, settings (JSON), line1_number, line1_auth_name, line1_password, line1_display_name, line1_short_label … line8_*", content_type = "application/json"),
    security(("bearer" = [])), responses(
    (status = 200, description = "applied (or checked, with dry_run)", body = ImportReport),
    (status = 400, description = "malformed body", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "a concurrent change; retry", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "too large", body = Problem, content_type = "application/problem+json"),
    (status = 415, description = "neither JSON nor CSV", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "rows refused; nothing applied (problem+json with a `report` member)", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants/{tenant}/phone-imports")]
pub async fn import_phones(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<ImportParams>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !p.may(&path, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mime = super::extract::media_type(&req);
    let parsed: Vec<Parsed> = if mime == "text/csv" {
        csv_rows(&body)?
    } else if mime == "application/json" {
        let mut de = serde_json::Deserializer::from_slice(&body);
        let rows = Rows::deserialize(&mut de)
            .and_then(|r| de.end().map(|_| r))
            .map_err(|e| ApiError::BadRequest(format!("expected a JSON array of phones: {e}")))?;
        rows.0
    } else {
        return Err(ApiError::UnsupportedMediaType(
            "send application/json (an array of phones) or text/csv".into(),
        ));
    };
    let dry_run = q.dry_run.unwrap_or(false);
    let partial = q.partial.unwrap_or(false);

    let mut client = state.pool.get().await.map_err(db::DbError::from)?;
    let tx = client.transaction().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&tx, &p, &path, Access::Write, false).await?;
    let macs: Vec<String> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(m, _)| m.to_string()))
        .collect();
    let existing = db::imports::lock_existing(&tx, &macs).await?;

    let mut rows = Vec::with_capacity(parsed.len());
    let mut writes = Vec::new();
    let mut seen: HashSet<MacAddress> = HashSet::new();
    for (i, r) in parsed.iter().enumerate() {
        let row = i + 1;
        let (mac, spec) = match r {
            Ok(ok) => ok,
            Err(errors) => {
                rows.push(RowResult {
                    row,
                    mac: None,
                    result: RowOutcome::Error,
                    errors: errors.clone(),
                });
                continue;
            }
        };
        let key = mac.to_string();
        if !seen.insert(*mac) {
            rows.push(RowResult {
                row,
                mac: Some(key),
                result: RowOutcome::Error,
                errors: vec![FieldError::new("mac", "this MAC appears in an earlier row")],
            });
            continue;
        }
        let stored = existing.get(&key);
        if let Some(s) = stored {
            if s.tenant != tenant.id {
                rows.push(RowResult {
                    row,
                    mac: Some(key),
                    result: RowOutcome::Error,
                    errors: vec![FieldError::new(
                        "mac",
                        "this MAC is registered to another tenant",
                    )],
                });
                continue;
            }
        }
        let passwords: Vec<Option<String>> = spec
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.password.clone().or_else(|| {
                    stored
                        .and_then(|s| s.lines.get(i))
                        .and_then(|s| s.password.clone())
                })
            })
            .collect();
        let result = match stored {
            None => RowOutcome::Created,
            Some(s) if unchanged(s, spec, &passwords) => RowOutcome::Unchanged,
            Some(_) => RowOutcome::Updated,
        };
        if result != RowOutcome::Unchanged {
            writes.push(PhoneWrite {
                mac: *mac,
                spec,
                passwords,
            });
        }
        rows.push(RowResult {
            row,
            mac: Some(key),
            result,
            errors: vec![],
        });
    }
    let count = |o: RowOutcome| rows.iter().filter(|r| r.result == o).count();
    let mut report = ImportReport {
        dry_run,
        applied: false,
        created: count(RowOutcome::Created),
        updated: count(RowOutcome::Updated),
        unchanged: count(RowOutcome::Unchanged),
        errors: count(RowOutcome::Error),
        rows,
    };
    if report.errors > 0 && !partial {
        // Nothing is written: the transaction is dropped (rolled back) here.
        return Ok(refused(report));
    }
    if dry_run {
        return Ok(HttpResponse::Ok().json(report));
    }
    let written = db::imports::write_many(&tx, tenant.id, &writes).await?;
    if written != writes.len() as u64 {
        return Err(ApiError::Conflict(
            "another tenant registered one of these MACs meanwhile; nothing was applied, retry"
                .into(),
        ));
    }
    db::audit::record(
        &tx,
        &actor(&p),
        Some((tenant.id, tenant.slug.as_str())),
        "phone.import",
        tenant.slug.as_str(),
        json!({ "created": report.created, "updated": report.updated, "unchanged": report.unchanged, "errors": report.errors }),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    report.applied = true;
    if written >= db::imports::ANALYZE_AFTER {
        // In the background: the import is done whatever becomes of it.
        let pool = state.pool.clone();
        tokio::spawn(async move {
            let result = match pool.get().await {
                Ok(c) => db::imports::analyze(&c).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "import: refreshing the phone tables' statistics failed");
            }
        });
    }
    Ok(HttpResponse::Ok().json(report))
}

fn refused(report: ImportReport) -> HttpResponse {
    let errors: Vec<FieldError> = report
        .rows
        .iter()
        .filter(|r| r.result == RowOutcome::Error)
        .flat_map(|r| {
            r.errors.iter().map(move |e| {
                FieldError::new(
                    format!("rows[{}].{}", r.row, e.path)
                        .trim_end_matches('.')
                        .to_owned(),
                    e.message.clone(),
                )
            })
        })
        .take(100)
        .collect();
    let body = json!({
        "type": "https://dialtone.dev/problems/validation",
        "title": "Validation failed",
        "status": 422,
        "detail": format!("{} of {} rows are refused; nothing was applied (pass partial=true to apply the others)", report.errors, report.rows.len()),
        "errors": errors,
        "report": report,
    });
    HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY)
        .content_type("application/problem+json")
        .body(body.to_string())
}

/// Export a tenant's phones in the import format (JSON array or CSV), without passwords.
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), ExportParams), security(("bearer" = [])), responses(
    (status = 200, description = "the phones, in the import format", body = Vec<CreatePhone>),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "unknown format", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/phone-exports")]
pub async fn export_phones(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    let csv_format = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "json or csv")),
    };
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &path, Access::Read, false).await?;
    let mut phones = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = db::phones::list(
            &client,
            tenant.id,
            &Default::default(),
            after.as_deref(),
            5000,
        )
        .await?;
        let done = batch.len() < 5000;
        after = batch.last().map(|ph| ph.mac.to_string());
        phones.extend(batch);
        if done {
            break;
        }
    }
    if !csv_format {
        let rows: Vec<serde_json::Value> = phones
            .iter()
            .map(|ph| {
                json!({
                    "mac": ph.mac, "model": ph.model, "label": ph.label, "description": ph.description, "enabled": ph.enabled,
                    "lines": ph.lines.iter().map(|l| {
                        let mut o = json!({"number": l.number, "auth_name": l.auth_name});
                        if let Some(d) = &l.display_name { o["display_name"] = json!(d); }
                        if let Some(s) = &l.short_label { o["short_label"] = json!(s); }
                        o
                    }).collect::<Vec<_>>(),
                    "settings": ph.settings,
                })
            })
            .collect();
        return Ok(HttpResponse::Ok().json(rows));
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "mac".to_owned(),
        "model".into(),
        "label".into(),
        "description".into(),
        "enabled".into(),
        "settings".into(),
    ];
    for n in 1..=MAX_LINES {
        for f in LINE_FIELDS {
            if f != "password" {
                header.push(format!("line{n}_{f}"));
            }
        }
    }
    w.write_record(&header)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    for ph in &phones {
        let settings = ph.settings.to_json();
        let mut rec = vec![
            ph.mac.to_string(),
            ph.model.clone(),
            ph.label.clone(),
            ph.description.clone(),
            ph.enabled.to_string(),
            if settings.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                settings.to_string()
            },
        ];
        for n in 0..MAX_LINES {
            match ph.lines.get(n) {
                Some(l) => rec.extend([
                    l.number.clone(),
                    l.auth_name.clone(),
                    l.display_name.clone().unwrap_or_default(),
                    l.short_label.clone().unwrap_or_default(),
                ]),
                None => rec.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        w.write_record(&rec)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type("text/csv").body(bytes))
}
