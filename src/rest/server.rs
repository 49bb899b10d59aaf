//! The proxy's HTTP server (ARCHITECTURE.md §3.4): Discord's paths under
//! `/api/v10`, forwarded through the shared limiter with the bot token.
//!
//! **Callers.** With `ARRAKIS_PROXY_SECRET` set, every request must carry
//! it, as `X-Arrakis-Proxy-Secret: <secret>` or `Authorization: Bearer
//! <secret>`; it is checked in constant time (an HMAC of the presented
//! value under a random per-process key, compared by `ring::hmac::verify`)
//! and never forwarded. Without a secret only loopback callers are served.
//! Any `Authorization` a caller sends is dropped: the proxy adds the bot's
//! own, except on interaction-callback and webhook-token routes whose token
//! is in the path.
//!
//! **Per-request options** (request headers, stripped before forwarding):
//! `X-Arrakis-Deadline-Ms` (how long the caller will wait, 1–300000; the
//! default is `ARRAKIS_REQUEST_DEADLINE`, or `ARRAKIS_INTERACTION_DEADLINE`
//! for interaction callbacks) and `X-Arrakis-Priority: background` (shed
//! first by the invalid-request breaker).
//!
//! **Answers.** Discord's status, headers and body, unchanged (hop-by-hop
//! headers aside). When the request cannot be sent before its deadline:
//! `503` with `{"error": "...", "retry_after": <seconds>}` and a
//! `Retry-After` header; `502` `{"error": "..."}` when the connection broke
//! after a non-idempotent request was sent (it may have been processed, so
//! it is not re-sent). Errors that are the caller's (`401` bad secret,
//! `403` non-loopback without a secret, `404` path outside `/api/v10`,
//! `400` bad path or option, `413` body too large) have the same JSON
//! shape without `retry_after`. All mapping to HTTP happens in
//! [`ProxyError::response`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::forward::{Call, CallError, RestClient};
use super::limiter::Class;
use super::metrics::ProxyMetrics;
use super::route::{Route, RouteError, RouteKind};
use crate::config::Secret;

/// The path prefix the proxy serves, as Discord's.
pub const API_PREFIX: &str = "/api/v10";

/// Header carrying the proxy secret.
pub const SECRET_HEADER: &str = "x-arrakis-proxy-secret";

/// Header carrying the caller's deadline in milliseconds.
pub const DEADLINE_HEADER: &str = "x-arrakis-deadline-ms";

/// Header marking a request as background (`background`).
pub const PRIORITY_HEADER: &str = "x-arrakis-priority";

/// Longest deadline a caller may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(300);

/// The response body type.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Required from callers when set.
    pub secret: Option<Secret>,
    /// Deadline of requests that name none.
    pub default_deadline: Duration,
    /// Deadline of interaction callbacks that name none (Discord gives 3 s
    /// from the event).
    pub interaction_deadline: Duration,
    /// Largest request body accepted.
    pub max_body: usize,
}

/// Constant-time check of the proxy secret.
struct SecretCheck {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl SecretCheck {
    fn new(secret: &Secret) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rand::random::<[u8; 32]>())
        });
        let tag = ring::hmac::sign(&key, secret.expose().as_bytes());
        Self { key, tag }
    }

    fn matches(&self, presented: &[u8]) -> bool {
        ring::hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }
}

/// Why the proxy answered by itself, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The caller: missing or wrong secret.
    #[error(
        "missing or wrong proxy secret (send it as X-Arrakis-Proxy-Secret or Authorization: Bearer)"
    )]
    Unauthorized,
    /// The caller: not on loopback and no secret is configured.
    #[error("this proxy has no ARRAKIS_PROXY_SECRET and serves loopback callers only")]
    NotLoopback,
    /// The caller: a path outside the API.
    #[error("no such route: paths start with {API_PREFIX}/")]
    NotFound,
    /// The caller: a malformed path or option.
    #[error("{0}")]
    BadRequest(String),
    /// The caller: a body over the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Limits or Discord: no response within the deadline.
    #[error("{0}")]
    Call(#[from] CallError),
}

impl ProxyError {
    /// The one place errors become HTTP.
    #[must_use]
    pub fn response(&self) -> Response<ProxyBody> {
        let (status, retry_after) = match self {
            ProxyError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ProxyError::NotLoopback => (StatusCode::FORBIDDEN, None),
            ProxyError::NotFound => (StatusCode::NOT_FOUND, None),
            ProxyError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            ProxyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            // The connection broke after sending, on a method that is not
            // retried: Discord's answer is unknown, not late.
            ProxyError::Call(CallError::Broken(_)) => (StatusCode::BAD_GATEWAY, None),
            ProxyError::Call(e) => (StatusCode::SERVICE_UNAVAILABLE, Some(e.retry_after())),
        };
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let Some(wait) = retry_after {
            // Seconds with millisecond precision, like Discord's retry_after.
            let secs = (wait.as_millis() as f64 / 1000.0).max(0.001);
            body["retry_after"] = serde_json::json!(secs);
        }
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(wait) = retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Headers never forwarded in either direction (RFC 9110 §7.6.1), plus
/// the caller's credentials and our own options.
fn dropped_request_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
            | "authorization"
            | "user-agent"
    ) || name.as_str().starts_with("x-arrakis-")
}

/// Hop-by-hop headers removed from Discord's responses.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Whether a caller at `peer` may be served when no secret is configured.
#[must_use]
pub fn loopback(peer: &SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The proxy server.
pub struct ProxyServer {
    rest: Arc<RestClient>,
    cfg: ServerConfig,
    secret: Option<SecretCheck>,
    metrics: Arc<ProxyMetrics>,
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyServer")
            .field("secret", &self.cfg.secret)
            .finish_non_exhaustive()
    }
}

impl ProxyServer {
    /// A server forwarding through `rest`.
    #[must_use]
    pub fn new(rest: Arc<RestClient>, cfg: ServerConfig, metrics: Arc<ProxyMetrics>) -> Self {
        let secret = cfg.secret.as_ref().map(SecretCheck::new);
        Self {
            rest,
            cfg,
            secret,
            metrics,
        }
    }

    fn check_caller(&self, headers: &HeaderMap, peer: &SocketAddr) -> Result<(), ProxyError> {
        let Some(check) = &self.secret else {
            return if loopback(peer) {
                Ok(())
            } else {
                Err(ProxyError::NotLoopback)
            };
        };
        let presented = headers
            .get(SECRET_HEADER)
            .map(HeaderValue::as_bytes)
            .or_else(|| {
                headers
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            });
        match presented {
            Some(value) if check.matches(value) => Ok(()),
            _ => Err(ProxyError::Unauthorized),
        }
    }

    /// Handles one request; never fails (errors become JSON answers).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        self.metrics.in_flight.inc();
        let arrived = Instant::now();
        let message_id = request
            .headers()
            .get(crate::correlation::HEADER)
            .and_then(|v| crate::correlation::sanitize(v.as_bytes()))
            .map(str::to_owned);
        let (route, response) = match self.forward(request, &peer, arrived).await {
            Ok((route, response)) => (Some(route), response),
            Err((route, error)) => {
                if let ProxyError::Call(e) = &error {
                    self.metrics.on_rejection(&e.reason());
                    tracing::debug!(route = route.as_ref().map(|r| r.key.as_str()), %e, "answered 503");
                }
                (route, error.response())
            }
        };
        let route_key = route.as_ref().map_or("unrouted", |r| r.key.as_str());
        self.metrics
            .on_request(route_key, response.status().as_u16());
        // One line per call: the route template (never the path, which may
        // hold an interaction token) and the caller's correlation id.
        tracing::info!(
            route = route_key,
            status = response.status().as_u16(),
            ms = u64::try_from(arrived.elapsed().as_millis()).unwrap_or(u64::MAX),
            message_id = message_id.as_deref().unwrap_or(""),
            "proxied"
        );
        self.metrics.in_flight.dec();
        response
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        peer: &SocketAddr,
        arrived: Instant,
    ) -> Result<(Route, Response<ProxyBody>), (Option<Route>, ProxyError)> {
        let (parts, body) = request.into_parts();
        self.check_caller(&parts.headers, peer)
            .map_err(|e| (None, e))?;
        let path = parts
            .uri
            .path()
            .strip_prefix(API_PREFIX)
            .filter(|p| p.starts_with('/'))
            .ok_or((None, ProxyError::NotFound))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let route = Route::parse(parts.method.as_str(), path, now_ms)
            .map_err(|e: RouteError| (None, ProxyError::BadRequest(e.to_string())))?;
        let fail = |e: ProxyError| (Some(route.clone()), e);

        let deadline = match parts.headers.get(DEADLINE_HEADER) {
            Some(v) => {
                let ms: u64 = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .filter(|&ms| ms >= 1 && u128::from(ms) <= MAX_DEADLINE.as_millis())
                    .ok_or_else(|| {
                        fail(ProxyError::BadRequest(format!(
                            "{DEADLINE_HEADER} must be milliseconds between 1 and {}",
                            MAX_DEADLINE.as_millis()
                        )))
                    })?;
                Duration::from_millis(ms)
            }
            None if route.kind == RouteKind::InteractionCallback => self.cfg.interaction_deadline,
            None => self.cfg.default_deadline,
        };
        let class = if route.kind != RouteKind::Bot {
            Class::Interaction
        } else if parts
            .headers
            .get(PRIORITY_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"background"))
        {
            Class::Background
        } else {
            Class::Normal
        };

        let body = Limited::new(body, self.cfg.max_body)
            .collect()
            .await
            .map_err(|_| fail(ProxyError::TooLarge(self.cfg.max_body)))?
            .to_bytes();
        let mut headers = HeaderMap::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if !dropped_request_header(name) {
                headers.append(name, value.clone());
            }
        }
        let path_and_query = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let call = Call {
            method: parts.method,
            path_and_query,
            route: route.clone(),
            headers,
            body,
            deadline: arrived + deadline,
            class,
        };
        let upstream = self.rest.execute(&call).await.map_err(|e| fail(e.into()))?;
        let (mut parts, body) = upstream.into_parts();
        for name in HOP_BY_HOP {
            parts.headers.remove(*name);
        }
        Ok((route, Response::from_parts(parts, body.boxed())))
    }

    /// Serves `listener` until `shutdown` turns true, then lets in-flight
    /// requests finish (the caller bounds how long).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "proxy accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.clone();
                    let mut stop = shutdown.clone();
                    let span = tracing::debug_span!("proxy_conn", %peer);
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            let server = server.clone();
                            async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
                        });
                        let conn = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            result = conn.as_mut() => {
                                if let Err(e) = result {
                                    tracing::debug!(error = %e, "proxy connection ended");
                                }
                            }
                            _ = stop.changed() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    }.instrument(span));
                }
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_a_secret() {
        for ok in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(loopback(&ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "10.0.0.1:1",
            "192.168.1.2:1",
            "[2001:db8::1]:1",
            "0.0.0.0:1",
        ] {
            assert!(!loopback(&bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn secrets_compare_by_value() {
        let check = SecretCheck::new(&Secret::new("s3cret"));
        assert!(check.matches(b"s3cret"));
        assert!(!check.matches(b"s3cre"));
        assert!(!check.matches(b"s3cret "));
        assert!(!check.matches(b""));
    }

    #[test]
    fn credentials_and_options_are_never_forwarded() {
        for name in [
            "authorization",
            "x-arrakis-proxy-secret",
            "x-arrakis-deadline-ms",
            "host",
            "connection",
        ] {
            assert!(
                dropped_request_header(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        for name in ["content-type", "x-audit-log-reason"] {
            assert!(
                !dropped_request_header(&HeaderName::from_static(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn deadline_errors_are_503_json_with_retry_after() {
        let e = ProxyError::Call(CallError::Limited(super::super::limiter::Denied {
            retry_after: Duration::from_millis(2_500),
            reason: "bucket".into(),
        }));
        let response = e.response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let e = ProxyError::Unauthorized;
        assert_eq!(e.response().status(), StatusCode::UNAUTHORIZED);
        assert!(!e.to_string().contains("s3cret"));
    }
}
