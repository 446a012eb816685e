//! `/healthz`, `/readyz` and `/metrics`.

use actix_web::{get, web, HttpResponse};

use super::{ApiError, AppState};

/// Process alive.
#[utoipa::path(tag = "health", responses((status = 200, description = "alive", body = String)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready: the database answers.
#[utoipa::path(tag = "health", responses(
    (status = 200, description = "ready", body = String),
    (status = 503, description = "the database is unreachable", body = super::Problem, content_type = "application/problem+json")
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::db::ping(&state.pool).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .body("ready\n"))
}

/// Prometheus metrics.
#[utoipa::path(tag = "health", responses((status = 200, description = "Prometheus text format", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = String::new();
    state.metrics.render(&mut out);
    // The API's pools: one per worker thread when they have their own, else the shared one.
    let statuses: Vec<_> = match state.worker_pools.lock() {
        Ok(all) if !all.is_empty() => all.iter().map(|p| p.status()).collect(),
        _ => vec![state.pool.status()],
    };
    let sum = |f: fn(&deadpool_postgres::Status) -> usize| statuses.iter().map(f).sum::<usize>();
    let (size, idle, max, waiting) = (
        sum(|s| s.size),
        sum(|s| s.available),
        sum(|s| s.max_size),
        sum(|s| s.waiting),
    );
    out.push_str("# HELP dialtone_db_pool_connections Database pool connections by state.\n");
    out.push_str("# TYPE dialtone_db_pool_connections gauge\n");
    out.push_str(&format!(
        "dialtone_db_pool_connections{{state=\"in_use\"}} {}\n",
        size.saturating_sub(idle)
    ));
    out.push_str(&format!(
        "dialtone_db_pool_connections{{state=\"idle\"}} {idle}\n"
    ));
    out.push_str(&format!(
        "dialtone_db_pool_connections{{state=\"max\"}} {max}\n"
    ));
    out.push_str(&format!("dialtone_db_pool_waiting {waiting}\n"));
    if let Some(fe) = &state.frontend {
        fe.render_metrics(&mut out, state.tftp_stats.as_deref());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
