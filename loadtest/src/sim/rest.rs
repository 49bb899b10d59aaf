//! The REST side of the simulator: a hyper HTTP/1 server with a small router.
//!
//! Discord routes (`GET /api/v10/gateway`, `GET /api/v10/gateway/bot`,
//! PROTOCOL.md §1.1, §1.3) answer as Discord does, including the 401 body for
//! a wrong token and JSON 404s. The router matches a method and a path
//! pattern (`{param}` segments capture ids) to an async handler, so later
//! routes (REST rate-limit buckets, 429 storms, slow responses) are a table
//! entry each. The standalone control routes live in `control.rs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::Inner;
use super::record::RestRecord;

/// Largest request body read.
const MAX_BODY: usize = 8 << 20;

/// A parsed request handed to a handler.
pub(crate) struct RestRequest {
    pub(crate) sim: Arc<Inner>,
    pub(crate) headers: HeaderMap,
    pub(crate) query: HashMap<String, String>,
    /// Values of the pattern's `{param}` segments, in order.
    #[allow(dead_code, reason = "read by the REST rate-limit routes to come")]
    pub(crate) params: Vec<String>,
    /// The request body (at most 8 MiB).
    #[allow(dead_code, reason = "read by the REST rate-limit routes to come")]
    pub(crate) body: Bytes,
}

/// A response under construction.
pub(crate) type RestResponse = Response<Full<Bytes>>;
type BoxFuture = Pin<Box<dyn Future<Output = RestResponse> + Send>>;
type Handler = Arc<dyn Fn(RestRequest) -> BoxFuture + Send + Sync>;

enum Segment {
    Lit(&'static str),
    Param,
}

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

/// Method + path pattern → handler.
#[derive(Default)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

/// The outcome of matching a path.
enum Matched<'a> {
    Found(&'a Handler, Vec<String>),
    WrongMethod,
    NotFound,
}

impl Router {
    /// Add a route; `pattern` like `/api/v10/channels/{channel_id}/messages`.
    pub(crate) fn route<F, Fut>(&mut self, method: Method, pattern: &'static str, handler: F)
    where
        F: Fn(RestRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RestResponse> + Send + 'static,
    {
        let pattern = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    Segment::Param
                } else {
                    Segment::Lit(s)
                }
            })
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            handler: Arc::new(move |req| Box::pin(handler(req))),
        });
    }

    fn find(&self, method: &Method, path: &str) -> Matched<'_> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut wrong_method = false;
        for route in &self.routes {
            if route.pattern.len() != segs.len() {
                continue;
            }
            let mut params = Vec::new();
            let fits = route.pattern.iter().zip(&segs).all(|(p, s)| match p {
                Segment::Lit(l) => l == s,
                Segment::Param => {
                    params.push((*s).to_owned());
                    true
                }
            });
            if !fits {
                continue;
            }
            if route.method == method {
                return Matched::Found(&route.handler, params);
            }
            wrong_method = true;
        }
        if wrong_method {
            Matched::WrongMethod
        } else {
            Matched::NotFound
        }
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> RestResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Discord's error body: `{"message": "...", "code": 0}`.
fn discord_error(status: StatusCode) -> RestResponse {
    let message = format!(
        "{}: {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    json(
        status,
        serde_json::json!({ "message": message, "code": 0 }).to_string(),
    )
}

fn authorized(req: &RestRequest) -> bool {
    let expected = format!("Bot {}", req.sim.cfg.token);
    req.headers
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes())
}

async fn gateway(req: RestRequest) -> RestResponse {
    json(
        StatusCode::OK,
        serde_json::json!({ "url": req.sim.gateway_url }).to_string(),
    )
}

async fn gateway_bot(req: RestRequest) -> RestResponse {
    if !authorized(&req) {
        return discord_error(StatusCode::UNAUTHORIZED);
    }
    let sim = &req.sim;
    let remaining = sim.state().remaining;
    let day = Duration::from_secs(86_400);
    let reset_after = day.saturating_sub(sim.started.elapsed()).as_millis() as u64;
    json(
        StatusCode::OK,
        serde_json::json!({
            "url": sim.gateway_url,
            "shards": sim.cfg.shards,
            "session_start_limit": {
                "total": sim.cfg.session_start_total,
                "remaining": remaining,
                "reset_after": reset_after,
                "max_concurrency": sim.cfg.max_concurrency,
            }
        })
        .to_string(),
    )
}

/// The simulator's routes: Discord's, then the control routes.
fn router() -> Router {
    let mut r = Router::default();
    r.route(Method::GET, "/api/v10/gateway", gateway);
    r.route(Method::GET, "/api/v10/gateway/bot", gateway_bot);
    super::discord_rest::routes(&mut r);
    super::control::routes(&mut r);
    r
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

async fn handle(sim: Arc<Inner>, router: Arc<Router>, req: Request<Incoming>) -> RestResponse {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let resp = match router.find(&parts.method, &path) {
        Matched::NotFound => discord_error(StatusCode::NOT_FOUND),
        Matched::WrongMethod => discord_error(StatusCode::METHOD_NOT_ALLOWED),
        Matched::Found(handler, params) => match Limited::new(body, MAX_BODY).collect().await {
            Err(_) => discord_error(StatusCode::PAYLOAD_TOO_LARGE),
            Ok(collected) => {
                handler(RestRequest {
                    sim: sim.clone(),
                    headers: parts.headers,
                    query: parse_query(parts.uri.query()),
                    params,
                    body: collected.to_bytes(),
                })
                .await
            }
        },
    };
    sim.rec().rest.push(RestRecord {
        method: parts.method.to_string(),
        path,
        status: resp.status().as_u16(),
        at,
    });
    resp
}

/// Serve REST on `listener` until shutdown; owns the connection tasks.
pub(crate) async fn serve(
    sim: Arc<Inner>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = Arc::new(router());
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "REST accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (sim, router) = (sim.clone(), router.clone());
                let service = hyper::service::service_fn(move |req| {
                    let (sim, router) = (sim.clone(), router.clone());
                    async move { Ok::<_, Infallible>(handle(sim, router, req).await) }
                });
                let span = tracing::debug_span!("sim_rest", %peer);
                conns.spawn(
                    async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "REST connection ended");
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }
    conns.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_matches_params_and_methods() {
        let mut r = Router::default();
        r.route(Method::GET, "/api/v10/channels/{id}/messages", |_| async {
            json(StatusCode::OK, "[]")
        });
        match r.find(&Method::GET, "/api/v10/channels/123/messages") {
            Matched::Found(_, params) => assert_eq!(params, ["123"]),
            _ => panic!("should match"),
        }
        assert!(matches!(
            r.find(&Method::POST, "/api/v10/channels/123/messages"),
            Matched::WrongMethod
        ));
        assert!(matches!(
            r.find(&Method::GET, "/api/v10/channels/123"),
            Matched::NotFound
        ));
    }
}
