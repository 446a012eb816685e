//! The REST API front end (actix-web): server lifecycle, route table, and framework-level error handling.
//! Handlers are adapters only: they parse, authorise, call `db`, and shape responses.

mod audit;
mod changes;
mod creates;
mod dhcp;
mod error;
mod extract;
mod files;
mod firmware;
mod health;
mod imports;
mod networks;
mod openapi;
mod phones;
mod preview;
mod resync;
mod templates;
mod tenants;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

pub use changes::{ChangeNotifier, NOTIFY_GAP};
pub use creates::CreateBatcher;
pub use error::{ApiError, Problem};
pub use extract::etag;
pub use imports::parse_import_csv;

use crate::auth::Keys;
use crate::db::Pool;
use crate::metrics::HttpMetrics;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Database pool.
    pub pool: Pool,
    /// A connection of `pool` shared by quick single-statement reads (GET of a phone): see
    /// [`crate::db::SharedConnection`].
    pub shared: crate::db::SharedConnection,
    /// Token keys.
    pub keys: Arc<Keys>,
    /// Request metrics.
    pub metrics: Arc<HttpMetrics>,
    /// The current provisioning snapshot (previews and config drift).
    pub snapshot: crate::snapshot::SnapshotHandle,
    /// The provisioning front end in the same process (`serve`), for readiness and metrics.
    pub frontend: Option<Arc<crate::frontend::Frontend>>,
    /// Its TFTP counters.
    pub tftp_stats: Option<Arc<crate::tftp::TftpStats>>,
    /// Remote resync `NOTIFY`s per second of a tenant-wide resync.
    pub resync_rate_per_second: u32,
    /// Public addresses phones should use as TFTP server (the `dhcp-config` snippets).
    pub provisioning_addresses: Vec<std::net::IpAddr>,
    /// The pools of the API worker threads, when each has its own (for the pool metrics).
    pub worker_pools: Arc<Mutex<Vec<Pool>>>,
    /// Told after every request that may have written (see [`ChangeNotifier`]).
    pub changes: ChangeNotifier,
    /// Phone creates, a tenant's committed together (see [`CreateBatcher`]); shared by the workers.
    pub creates: CreateBatcher,
}

/// Settings of the API listener.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Largest accepted body.
    pub max_body: usize,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// When set, each worker thread opens its own pool to this database, of `max_size / workers`
    /// connections (rounded up), instead of sharing `AppState::pool`. A pooled connection's I/O runs on
    /// the thread that opened it; with one shared pool, a request on one worker waits for another
    /// worker's thread to be woken for each statement (GET of a phone: 7.7k req/s shared, ~11k per worker).
    /// Their sessions defer change notifications to [`ChangeNotifier`], which sends them on
    /// `AppState::pool`.
    pub worker_pools: Option<crate::db::PoolSpec>,
}

/// The bound, not yet running, REST API.
pub struct ApiServer {
    listener: TcpListener,
    state: web::Data<AppState>,
    settings: ApiSettings,
}

impl ApiServer {
    /// Binds the listener.
    pub fn build(settings: ApiSettings, state: AppState) -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(settings.listen)?;
        Ok(ApiServer {
            listener,
            state: web::Data::new(state),
            settings,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then finishes requests in flight.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        if self.settings.worker_pools.is_some() {
            tokio::spawn(
                self.state
                    .changes
                    .clone()
                    .run(self.state.pool.clone(), shutdown.clone()),
            );
        }
        let server = self.start()?;
        let handle = server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        server.await
    }

    fn start(self) -> std::io::Result<actix_web::dev::Server> {
        let state = self.state.clone();
        let max_body = self.settings.max_body;
        let workers = match self.settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let spec = self.settings.worker_pools.clone().map(|spec| {
            let per_worker = spec.max_size.div_ceil(workers).max(1);
            spec.with_max_size(per_worker).deferring_notify()
        });
        let server = HttpServer::new(move || {
            // Called once on each worker thread: its pool's connections live on that thread.
            let state = match spec.as_ref().map(crate::db::PoolSpec::build) {
                Some(Ok(pool)) => {
                    let mut own = AppState::clone(&state);
                    if let Ok(mut all) = own.worker_pools.lock() {
                        all.push(pool.clone());
                    }
                    own.shared = crate::db::SharedConnection::new(pool.clone());
                    own.pool = pool;
                    web::Data::new(own)
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "worker pool not built; sharing the process pool");
                    state.clone()
                }
                None => state.clone(),
            };
            build_app(state, max_body)
        })
        .disable_signals()
        .shutdown_timeout(10)
        .workers(workers)
        .listen(self.listener)?;
        Ok(server.run())
    }
}

/// The OpenAPI document of the routes exactly as registered.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(openapi::ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    doc
}

fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(
            // actix tries a scope's routes in this order, one pattern match each: the busiest first.
            utoipa_actix_web::scope("/v1")
                .configure(phones::routes)
                .configure(tenants::routes)
                .configure(networks::routes)
                .configure(imports::routes)
                .configure(files::routes)
                .configure(firmware::routes)
                .configure(preview::routes)
                .configure(templates::routes)
                .configure(resync::routes)
                .configure(dhcp::routes)
                .configure(audit::routes),
        );
}

fn build_app(
    state: web::Data<AppState>,
    max_body: usize,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, doc) =
        App::new()
            .into_utoipa_app()
            .openapi(openapi::ApiDoc::openapi())
            .app_data(state)
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ApiError::BadRequest(format!("bad query string: {e}")).into()
            }))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(format!("bad path: {e}")).into()),
            )
            .configure(routes)
            .split_for_parts();
    let doc_json = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let known = Arc::new(openapi::RouteTable::new(&doc));
    app.service(web::resource("/openapi.json").route(web::get().to({
        let doc_json = doc_json.clone();
        move || {
            let body = doc_json.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body.as_str().to_owned())
            }
        }
    })))
    .service(web::redirect("/docs", "/docs/"))
    .service(
        SwaggerUi::new("/docs/{_:.*}")
            .url("/openapi.json", doc)
            .config(utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none")),
    )
    .default_service(web::to(move |req: HttpRequest| {
        let known = known.clone();
        async move { not_routed(&req, &known) }
    }))
    .wrap(ErrorHandlers::new().default_handler(problem_for_framework_errors))
    .wrap(actix_web::middleware::from_fn(record_metrics))
    .wrap(actix_web::middleware::from_fn(signal_changes))
}

/// After a request that may have written, once its handler has committed and answered: tell the
/// [`ChangeNotifier`] (the worker pools' sessions do not notify themselves).
async fn signal_changes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use actix_web::http::Method;
    let changes = match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => None,
        _ => req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.changes.clone()),
    };
    let res = next.call(req).await;
    if let Some(c) = changes {
        c.signal();
    }
    res
}

/// 404 for unknown paths, 405 (with `Allow`) for known paths with another method.
fn not_routed(req: &HttpRequest, known: &openapi::RouteTable) -> HttpResponse {
    let allowed = known.methods_for(req.path());
    if allowed.is_empty() {
        ApiError::NotFound(format!("no route {}", truncate(req.path(), 100))).error_response_owned()
    } else {
        let mut resp = error::problem_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!(
                "{} is not allowed here; allowed: {}",
                req.method(),
                allowed.join(", ")
            ),
            vec![],
        );
        if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        resp
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl ApiError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// Turns any error response the framework made itself (payload too large, bad JSON config, …) into
/// problem+json, so that no client ever sees text/plain or HTML.
fn problem_for_framework_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem || res.request().path().starts_with("/docs") {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (type_, title, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            "Payload too large",
            "the request body exceeds the size limit".to_owned(),
        ),
        StatusCode::NOT_FOUND => ("not-found", "Not found", "no such resource".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "Method not allowed",
            "method not allowed".to_owned(),
        ),
        s if s.is_client_error() => (
            "bad-request",
            "Bad request",
            s.canonical_reason().unwrap_or("bad request").to_owned(),
        ),
        s => (
            "internal",
            "Internal error",
            s.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let (req, _) = res.into_parts();
    let resp = error::problem_response(status, type_, title, detail, vec![]);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, resp).map_into_right_body(),
    ))
}

async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let method = req.method().to_string();
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        m.observe(&method, &route, res.status().as_u16(), start.elapsed());
    }
    Ok(res)
}
