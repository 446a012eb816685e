//! HTTP :6970: `GET`/`HEAD /<name>` from the same namespace and tenant rule as TFTP (SPEC §5.5).
//! 404 on any miss, no redirects, `Content-Length` always, `X-Forwarded-For` only from trusted proxies.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::{header, Method};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio_util::sync::CancellationToken;

use super::{Answer, FetchOutcome, Frontend, Protocol, Sent};
use crate::domain::Prefix;

/// Settings of the :6970 listener.
#[derive(Clone, Debug)]
pub struct HttpFilesSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Prefix>,
    /// Worker threads (0 = one per core).
    pub workers: usize,
}

/// The bound :6970 listener.
pub struct HttpFilesServer {
    listener: TcpListener,
    settings: HttpFilesSettings,
    frontend: Arc<Frontend>,
}

impl HttpFilesServer {
    /// Binds the listener.
    pub fn build(settings: HttpFilesSettings, frontend: Arc<Frontend>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen)?;
        Ok(HttpFilesServer {
            listener,
            settings,
            frontend,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// Serves until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let server = self.start()?;
        let handle = server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        server.await
    }

    fn start(self) -> std::io::Result<actix_web::dev::Server> {
        let frontend = web::Data::from(self.frontend);
        let trusted = web::Data::new(self.settings.trusted_proxies.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(frontend.clone())
                .app_data(trusted.clone())
                .default_service(web::to(serve_file))
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(self.listener)?;
        if self.settings.workers > 0 {
            server = server.workers(self.settings.workers);
        }
        Ok(server.run())
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body("not found\n")
}

async fn serve_file(
    req: HttpRequest,
    frontend: web::Data<Frontend>,
    trusted: web::Data<Vec<Prefix>>,
) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .content_type("text/plain")
            .body("method not allowed\n");
    }
    let Some(peer) = req.peer_addr() else {
        return not_found();
    };
    let peer = client_address(
        peer,
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok()),
        &trusted,
    );
    let Some(name) = percent_decode(req.uri().path().trim_start_matches('/')) else {
        return not_found();
    };
    let start = Instant::now();
    let answer = frontend.answer(peer, &name);
    // HEAD asks about a file without fetching it: answer, but record no fetch (it would count as one in the
    // phone's history and drift state).
    if req.method() == Method::HEAD {
        return match answer {
            Answer::Serve(s) => HttpResponse::Ok()
                .content_type(s.content_type)
                .body(s.bytes),
            _ => not_found(),
        };
    }
    match answer {
        Answer::Serve(s) => {
            let len = s.bytes.len() as u64;
            let data = s.bytes.clone();
            frontend.record(
                Protocol::Http,
                peer,
                name,
                Sent {
                    outcome: FetchOutcome::Served,
                    bytes: len,
                    duration: start.elapsed(),
                    data: Some(data),
                },
            );
            HttpResponse::Ok()
                .content_type(s.content_type)
                .body(s.bytes)
        }
        Answer::NotFound { .. } => {
            frontend.record(
                Protocol::Http,
                peer,
                name,
                Sent {
                    outcome: FetchOutcome::NotFound,
                    bytes: 0,
                    duration: start.elapsed(),
                    data: None,
                },
            );
            not_found()
        }
        Answer::Refused => {
            frontend.record(
                Protocol::Http,
                peer,
                name,
                Sent {
                    outcome: FetchOutcome::Refused,
                    bytes: 0,
                    duration: start.elapsed(),
                    data: None,
                },
            );
            not_found()
        }
        Answer::Silent => not_found(),
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_address(peer: SocketAddr, forwarded: Option<&str>, trusted: &[Prefix]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|p| p.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let Some(list) = forwarded else { return peer };
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return SocketAddr::new(ip, 0),
            Err(_) => return peer,
        }
    }
    peer
}

/// Decodes `%XX` escapes; `None` for bad escapes or non-UTF-8 results.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Prefix> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: SocketAddr = "10.1.1.1:5555".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:5555".parse().unwrap();
        assert_eq!(
            client_address(stranger, Some("127.0.1.5"), &trusted),
            stranger
        );
        assert_eq!(
            client_address(proxy, Some("127.0.1.5"), &trusted)
                .ip()
                .to_string(),
            "127.0.1.5"
        );
        assert_eq!(
            client_address(proxy, Some("6.6.6.6, 127.0.1.5, 10.2.2.2"), &trusted)
                .ip()
                .to_string(),
            "127.0.1.5"
        );
        assert_eq!(client_address(proxy, Some("garbage"), &trusted), proxy);
        assert_eq!(client_address(proxy, None, &trusted), proxy);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("SEP0004F2A1B2C3.cnf.xml").unwrap(),
            "SEP0004F2A1B2C3.cnf.xml"
        );
        assert_eq!(percent_decode("a%2Fb").unwrap(), "a/b");
        assert!(percent_decode("a%2").is_none());
        assert!(percent_decode("%ff").is_none());
    }
}
