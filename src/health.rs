//! `/healthz`, `/readyz` and `/metrics` on `ARRAKIS_HTTP_LISTEN`.
//!
//! `/healthz` answers 200 while the process runs (liveness: restart me only
//! if I stop answering); `/readyz` answers 200 only when the role can do its
//! job and 503 with the reason otherwise (readiness: send me traffic,
//! count me as up); `/metrics` is Prometheus text.

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

/// What a role's own route answers: status, content type, body.
pub type RouteAnswer = (StatusCode, &'static str, String);

/// A role's own route in progress.
pub type RouteFuture = Pin<Box<dyn Future<Output = RouteAnswer> + Send>>;

/// Largest request body a role's own route reads.
pub const MAX_BODY: usize = 16 * 1024;

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
    fn route(&self, _method: &Method, _path: &str, _body: Bytes) -> RouteFuture {
        Box::pin(async {
            (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            )
        })
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
    let (code, content_type, text) = status.route(&parts.method, parts.uri.path(), body).await;
    respond(code, content_type, text)
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
            status.metrics_text(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    respond(status, content_type, body)
}
