//! `/healthz`, `/readyz` and `/metrics` on `ARRAKIS_HTTP_LISTEN`.
//!
//! `/healthz` answers 200 while the process runs (liveness: restart me only
//! if I stop answering); `/readyz` answers 200 only when the role can do its
//! job and 503 with the reason otherwise (readiness: send me traffic,
//! count me as up); `/metrics` is Prometheus text, the role's own metrics
//! followed by the standard `process_*` ones.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a role's own route answers.
#[derive(Debug)]
pub struct RouteAnswer {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// Further response headers (`WWW-Authenticate`, `Cache-Control`…).
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl RouteAnswer {
    /// An answer with no further headers.
    #[must_use]
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// The same answer with one more header.
    #[must_use]
    pub fn with_header(
        mut self,
        name: hyper::header::HeaderName,
        value: hyper::header::HeaderValue,
    ) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A role's own route in progress.
pub type RouteFuture = Pin<Box<dyn Future<Output = RouteAnswer> + Send>>;

/// Largest request body a role's own route reads.
pub const MAX_BODY: usize = 16 * 1024;

/// A request to a role's own route, its body read.
#[derive(Debug)]
pub struct RouteRequest {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: hyper::HeaderMap,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Bytes,
}

/// What a role reports on its health listener.
pub trait RoleStatus: Send + Sync + 'static {
    /// Why the role is not ready, or `None` when it is.
    fn not_ready_reason(&self) -> Option<String>;
    /// The Prometheus text exposition of the role's metrics.
    fn metrics_text(&self) -> String;
    /// Whether the role serves `path` itself (the worker's `/verify/…`).
    fn serves(&self, _path: &str) -> bool {
        false
    }
    /// Answers a request to a path [`RoleStatus::serves`]; the body has
    /// been read (at most [`MAX_BODY`] bytes).
    fn route(&self, _request: RouteRequest) -> RouteFuture {
        Box::pin(async { RouteAnswer::new(StatusCode::NOT_FOUND, "text/plain", "not found\n") })
    }
}

/// Binds the listener; fails early (before any connection to Discord) if
/// the address is taken.
///
/// # Errors
///
/// The bind error, with the address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on ARRAKIS_HTTP_LISTEN={addr}: {e}"),
        )
    })
}

/// Serves health and metrics until the listener task is aborted.
pub async fn serve<S: RoleStatus>(listener: TcpListener, status: Arc<S>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "health listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        let status = status.clone();
        connections.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let status = status.clone();
                async move {
                    if status.serves(req.uri().path()) {
                        return Ok::<_, Infallible>(own_route(req, &*status).await);
                    }
                    Ok::<_, Infallible>(route(&req, &*status))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

async fn own_route<S: RoleStatus>(req: Request<Incoming>, status: &S) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                format!("the body is limited to {MAX_BODY} bytes\n"),
            );
        }
    };
    let request = RouteRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let answer = status.route(request).await;
    let mut response = respond(answer.status, answer.content_type, answer.body);
    for (name, value) in answer.headers {
        response.headers_mut().append(name, value);
    }
    response
}

fn route<S: RoleStatus>(req: &Request<Incoming>, status: &S) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => match status.not_ready_reason() {
            None => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Some(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::process::with_process_metrics(status.metrics_text()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    respond(status, content_type, body)
}
