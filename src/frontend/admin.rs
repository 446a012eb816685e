//! The admin listener of `dialtone provision`: `/healthz`, `/readyz` (snapshot loaded; detail says its
//! age and whether the database is connected) and `/metrics`. Kept off the phones' :6970 namespace.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use tokio_util::sync::CancellationToken;

use super::Frontend;
use crate::tftp::TftpStats;

struct State {
    frontend: Arc<Frontend>,
    tftp: Option<Arc<TftpStats>>,
}

/// Binds `listen` and serves until `shutdown`; returns the bound address through `on_bound`.
pub fn start(
    listen: SocketAddr,
    frontend: Arc<Frontend>,
    tftp: Option<Arc<TftpStats>>,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(State { frontend, tftp });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("text/plain").body("ok\n") }),
            )
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .disable_signals()
    .workers(1)
    .listen(listener)?
    .run();
    Ok((addr, server))
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    let snap = state.frontend.snapshot();
    let detail = serde_json::json!({
        "snapshot_loaded": snap.is_loaded(),
        "snapshot_age_seconds": snap.age().map(|a| a.as_secs_f64()),
        "snapshot_sequence": snap.current().sequence,
        "database_connected": snap.is_connected(),
    });
    if snap.is_loaded() {
        HttpResponse::Ok().json(detail)
    } else {
        HttpResponse::ServiceUnavailable().json(detail)
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    let mut out = String::new();
    state
        .frontend
        .render_metrics(&mut out, state.tftp.as_deref());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// Stops `server` when `shutdown` fires, and waits for it.
pub async fn run_until_stopped(
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    server.await
}
