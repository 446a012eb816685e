//! Remote resync: `POST /v1/tenants/{tenant}/phones/{mac}/resync` and `POST /v1/tenants/{tenant}/resync`
//! send a SIP `NOTIFY` with `Event: check-sync` (see [`crate::resync`]) over UDP to each phone's
//! last-seen address (the source of its latest fetch), port 5060 unless `?port=` says otherwise.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actix_web::{post, web, HttpResponse};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::tenants::{actor, load_tenant};
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db;
use crate::domain::MacAddress;
use crate::resync::{send_check_sync, SIP_PORT};

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(resync_phone).service(resync_tenant);
}

/// How long to wait for each phone's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// Upper bound of a tenant-wide resync; phones whose turn would come later are skipped.
const TENANT_BUDGET: Duration = Duration::from_secs(120);
/// Most results listed by a tenant-wide resync (the counts cover all phones).
const MAX_RESULTS: usize = 1000;
/// Bounds of the configured rate.
const MAX_RATE: u32 = 1000;

/// Query of the resync endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResyncQuery {
    /// UDP port to send to, 1 to 65535 (default 5060, the phones' SIP port). For phones listening on
    /// another port, and for tests.
    pub port: Option<i64>,
}

impl ResyncQuery {
    fn port(&self) -> Result<u16, ApiError> {
        match self.port {
            None => Ok(SIP_PORT),
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::invalid("port", "must be 1 to 65535")),
        }
    }
}

/// What happened to one phone's `NOTIFY`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ResyncResult {
    /// MAC, upper-case without separators.
    #[schema(example = "0004F2A1B2C3")]
    pub mac: String,
    /// Where the `NOTIFY` went (`ip:port`); null when the phone was never seen.
    #[schema(example = "192.0.2.10:5060")]
    pub target: Option<String>,
    /// Whether the datagram left.
    pub sent: bool,
    /// The phone's SIP response (`200 OK`, `401 Unauthorized`, …); null when none came within 1 s.
    #[schema(example = "200 OK")]
    pub response: Option<String>,
    /// Explanation when there is something to explain: the phone asked for authentication (401/407:
    /// it got the request; dialtone does not retry with credentials), nothing listens at the target,
    /// no answer, never seen, sending failed, skipped.
    pub note: Option<String>,
}

/// Summary of a tenant-wide resync.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ResyncSummary {
    /// `NOTIFY`s sent.
    pub sent: usize,
    /// Phones that never fetched their configuration (nothing sent).
    pub never_seen: usize,
    /// Phones that answered (any SIP status).
    pub answered: usize,
    /// Phones not sent to because the resync would have taken longer than its 120 s bound.
    pub skipped: usize,
    /// One entry per phone, by MAC (at most 1000).
    pub results: Vec<ResyncResult>,
    /// Whether `results` was cut at 1000 entries.
    pub truncated: bool,
}

fn never_seen_note() -> String {
    "never fetched its configuration: its address is unknown".into()
}

/// Sends one `NOTIFY` and describes what happened.
async fn resync_one(mac: String, user: Option<String>, target: SocketAddr) -> ResyncResult {
    let mut r = ResyncResult {
        mac,
        target: Some(target.to_string()),
        sent: false,
        response: None,
        note: None,
    };
    match send_check_sync(target, user.as_deref(), ANSWER_WAIT).await {
        Err(e) => r.note = Some(format!("sending failed: {e}")),
        Ok(d) => {
            r.sent = true;
            r.note = match &d.answer {
                Some(a) if a.wants_auth() => Some(
                    "sent; the phone asked for authentication (it received the request; no retry with credentials)"
                        .into(),
                ),
                Some(a) if !a.is_final() => Some("only a provisional response came".into()),
                Some(_) => None,
                None if d.refused => {
                    Some("sent; the host answered \"port unreachable\": nothing listens there".into())
                }
                None => Some("sent; no answer within 1 s".into()),
            };
            r.response = d.answer.map(|a| a.to_string());
        }
    }
    r
}

fn target_of(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

/// Remote resync of one phone: it re-checks its configuration now.
///
/// A SIP `NOTIFY` with `Event: check-sync` goes over UDP to the phone's last-seen address (the source of
/// its latest fetch), port 5060 unless `port` is given. Waits up to 1 s for the phone's SIP response and
/// reports it; a `401`/`407` means the phone received the request and wants digest authentication, which
/// dialtone does not provide (configure the phone not to challenge).
#[utoipa::path(tag = "phones", params(("tenant" = String, Path, description = "tenant slug"), ("mac" = String, Path, description = "MAC in any usual notation"), ResyncQuery), security(("bearer" = [])), responses(
    (status = 200, description = "the NOTIFY was sent (or sending failed: `sent` false); `response` is the phone's answer", body = ResyncResult),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant or phone", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "the phone never fetched its configuration: its address is unknown", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad MAC or port", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants/{tenant}/phones/{mac}/resync")]
pub async fn resync_phone(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<(String, String)>,
    q: web::Query<ResyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let (slug, mac) = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let mac: MacAddress = mac
        .parse()
        .map_err(|e: crate::domain::ParseMacError| ApiError::invalid("mac", e.to_string()))?;
    let port = q.port()?;
    // The database connection goes back to the pool before the network wait.
    let (target, user) = {
        let client = state.pool.get().await.map_err(db::DbError::from)?;
        let tenant = load_tenant(&client, &p, &slug, Access::Write, false).await?;
        let phone = db::phones::find(&client, tenant.id, &mac)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such phone in this tenant".into()))?;
        let (ip, _) = db::fetches::last_seen(&client, tenant.id, &mac.to_string())
            .await?
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "phone {mac} has never fetched its configuration; it cannot be reached"
                ))
            })?;
        let target = target_of(ip, port);
        db::audit::record(
            &client,
            &actor(&p),
            Some((tenant.id, tenant.slug.as_str())),
            "phone.resync",
            &mac.to_string(),
            json!({ "target": target.to_string() }),
        )
        .await?;
        let user = phone
            .lines
            .iter()
            .min_by_key(|l| l.position)
            .map(|l| l.number.clone());
        (target, user)
    };
    Ok(HttpResponse::Ok().json(resync_one(mac.to_string(), user, target).await))
}

/// Remote resync of every phone of the tenant.
///
/// A check-sync `NOTIFY` goes to each phone's last-seen address (port 5060 unless `port` is given), paced
/// at the configured rate (`resync_rate_per_second`, default 20/s), each answer awaited up to 1 s. Phones
/// that never fetched are counted in `never_seen`. The whole call is bounded at about 120 s: phones whose
/// turn would come later are counted in `skipped` (raise the rate for very large tenants).
#[utoipa::path(tag = "tenants", params(("tenant" = String, Path, description = "tenant slug"), ResyncQuery), security(("bearer" = [])), responses(
    (status = 200, description = "what was sent and answered", body = ResyncSummary),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "viewers, other tenants", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "bad port", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[post("/tenants/{tenant}/resync")]
pub async fn resync_tenant(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<ResyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let slug = path.into_inner();
    if !p.may(&slug, Access::Write) {
        return Err(ApiError::Forbidden);
    }
    let port = q.port()?;
    let (phones, seen) = {
        let client = state.pool.get().await.map_err(db::DbError::from)?;
        let tenant = load_tenant(&client, &p, &slug, Access::Write, false).await?;
        let phones = db::phones::first_line_numbers(&client, tenant.id).await?;
        let seen: std::collections::HashMap<String, IpAddr> =
            db::fetches::last_seen_all(&client, tenant.id)
                .await?
                .into_iter()
                .collect();
        db::audit::record(
            &client,
            &actor(&p),
            Some((tenant.id, tenant.slug.as_str())),
            "tenant.resync",
            tenant.slug.as_str(),
            json!({ "phones": phones.len(), "reachable": seen.len(), "port": port }),
        )
        .await?;
        (phones, seen)
    };

    let rate = state.resync_rate_per_second.clamp(1, MAX_RATE);
    let interval = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let mut results: Vec<ResyncResult> = Vec::with_capacity(phones.len());
    let mut pending = FuturesUnordered::new();
    let mut slot = 0u32;
    let (mut never_seen, mut skipped) = (0, 0);
    for (mac, user) in phones {
        let Some(ip) = seen.get(&mac) else {
            never_seen += 1;
            results.push(ResyncResult {
                mac,
                target: None,
                sent: false,
                response: None,
                note: Some(never_seen_note()),
            });
            continue;
        };
        let target = target_of(*ip, port);
        let at = interval * slot;
        if at + ANSWER_WAIT > TENANT_BUDGET {
            skipped += 1;
            results.push(ResyncResult {
                mac,
                target: Some(target.to_string()),
                sent: false,
                response: None,
                note: Some("skipped: over the 120 s bound of one resync call".into()),
            });
            continue;
        }
        slot += 1;
        pending.push(async move {
            tokio::time::sleep_until(start + at).await;
            resync_one(mac, user, target).await
        });
    }
    while let Some(r) = pending.next().await {
        results.push(r);
    }
    tracing::info!(tenant = %slug, sent = slot, elapsed_ms = start.elapsed().as_millis() as u64, "tenant resync");
    results.sort_by(|a, b| a.mac.cmp(&b.mac));
    let sent = results.iter().filter(|r| r.sent).count();
    let answered = results.iter().filter(|r| r.response.is_some()).count();
    let truncated = results.len() > MAX_RESULTS;
    results.truncate(MAX_RESULTS);
    Ok(HttpResponse::Ok().json(ResyncSummary {
        sent,
        never_seen,
        answered,
        skipped,
        results,
        truncated,
    }))
}
