//! One Discord request from start to answer: permit, send, learn, retry.
//!
//! This is the REST client proper, used by the proxy server and usable by
//! any Rust code that holds the token: [`RestClient::execute`] takes a
//! request with a deadline and returns Discord's response (status, headers
//! and a streaming body, untouched), or why it could not be had in time.
//! A 429 is never returned: the limiter learns from it and the request
//! waits its turn again, within its deadline (Discord docs, "Rate Limits"
//! → Exceeding a rate limit).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, USER_AGENT};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::time::Instant;

use super::client::{Failure, HttpClient, SendError, Tries, retry_after_failure};
use super::headers::{RateLimitHeaders, Scope};
use super::limiter::{Class, Denied, Limiter, Outcome};
use super::metrics::ProxyMetrics;
use super::route::{Route, RouteKind};
use crate::config::Secret;

/// Largest 429 body read (they are small JSON objects).
const MAX_429_BODY: usize = 64 * 1024;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path and query relative to the API base (`/channels/1/messages?x`).
    pub path_and_query: String,
    /// Its rate-limit identity.
    pub route: Route,
    /// Headers to forward (no `Authorization`, no hop-by-hop headers).
    pub headers: HeaderMap,
    /// The body, sent as is.
    pub body: Bytes,
    /// When the caller stops caring.
    pub deadline: Instant,
    /// Urgency, for the invalid-request breaker.
    pub class: Class,
}

/// Why a call got no response from Discord.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The limits do not allow sending before the deadline.
    #[error("rate limit ({}): cannot be sent before the request's deadline", .0.reason)]
    Limited(Denied),
    /// Discord kept answering 429 (after the retries, or past the deadline).
    #[error(
        "Discord answered 429 ({scope}) and the request's deadline does not allow waiting {retry_after:?}"
    )]
    RateLimited {
        /// The 429's scope.
        scope: &'static str,
        /// Its wait.
        retry_after: Duration,
    },
    /// No response before the deadline.
    #[error("Discord did not answer before the request's deadline{}", if *.maybe_sent { " (it may have been processed)" } else { "" })]
    Timeout {
        /// Whether the request may have reached Discord.
        maybe_sent: bool,
    },
    /// Discord could not be reached (nothing was sent).
    #[error("cannot reach Discord: {0}")]
    Unreachable(String),
    /// The connection broke after sending; not retried for this method.
    #[error("connection to Discord broke (the request may have been processed): {0}")]
    Broken(String),
}

impl CallError {
    /// When the caller may try again.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        match self {
            CallError::Limited(denied) => denied.retry_after,
            CallError::RateLimited { retry_after, .. } => *retry_after,
            CallError::Timeout { .. } | CallError::Unreachable(_) | CallError::Broken(_) => {
                Duration::from_secs(1)
            }
        }
    }

    /// A short reason for metrics.
    #[must_use]
    pub fn reason(&self) -> String {
        match self {
            CallError::Limited(denied) => denied.reason.clone(),
            CallError::RateLimited { .. } => "discord_429".into(),
            CallError::Timeout { .. } => "timeout".into(),
            CallError::Unreachable(_) => "unreachable".into(),
            CallError::Broken(_) => "broken".into(),
        }
    }
}

/// The REST client: limiter, HTTP and the token.
#[derive(Debug)]
pub struct RestClient {
    http: HttpClient,
    limiter: Arc<Limiter>,
    authorization: HeaderValue,
    api_base: String,
    metrics: Arc<ProxyMetrics>,
}

impl RestClient {
    /// A client for `api_base` (e.g. `https://discord.com/api/v10`). A
    /// token that cannot be a header value (control characters) is
    /// replaced by one Discord refuses with 401, which the limiter then
    /// reports as an invalid token.
    #[must_use]
    pub fn new(
        api_base: &str,
        token: &Secret,
        limiter: Arc<Limiter>,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        let mut authorization = HeaderValue::from_str(&format!("Bot {}", token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bot invalid-token"));
        authorization.set_sensitive(true);
        Self {
            http: HttpClient::new(),
            limiter,
            authorization,
            api_base: api_base.trim_end_matches('/').to_owned(),
            metrics,
        }
    }

    /// The limiter (for readiness and tests).
    #[must_use]
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    fn build(&self, call: &Call) -> Result<Request<Full<Bytes>>, CallError> {
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", self.api_base, call.path_and_query))
            .body(Full::new(call.body.clone()))
            .map_err(|e| CallError::Unreachable(format!("bad upstream request: {e}")))?;
        let headers = request.headers_mut();
        for (name, value) in &call.headers {
            headers.append(name, value.clone());
        }
        headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
        if call.route.kind.bot_auth() {
            headers.insert(AUTHORIZATION, self.authorization.clone());
        }
        Ok(request)
    }

    /// Sends `call` through the limiter, retrying where safe, and returns
    /// Discord's response (never a 429).
    ///
    /// # Errors
    ///
    /// [`CallError`] when no acceptable response could be had before the
    /// deadline.
    pub async fn execute(&self, call: &Call) -> Result<Response<Incoming>, CallError> {
        let arrived = Instant::now();
        let ticket = rand::random::<u64>();
        let mut tries = Tries::default();
        let mut first_permit = true;
        loop {
            let permit = self
                .limiter
                .acquire(&call.route, call.class, ticket, call.deadline)
                .await
                .map_err(CallError::Limited)?;
            if first_permit {
                first_permit = false;
                let waited = arrived.elapsed().as_secs_f64();
                self.metrics.wait.observe(waited);
                if call.route.kind != RouteKind::Bot {
                    self.metrics.interaction_wait.observe(waited);
                }
            }
            let request = self.build(call)?;
            let left = call.deadline.saturating_duration_since(Instant::now());
            let sent_at = Instant::now();
            let result = self.http.send(request, left).await;
            self.metrics
                .upstream
                .observe(sent_at.elapsed().as_secs_f64());
            let failure = match result {
                Ok(response) => {
                    let status = response.status();
                    let headers = RateLimitHeaders::parse(response.headers());
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let (scope, wait) = self.read_429(response, &headers, call).await;
                        self.limiter
                            .release(
                                &call.route,
                                &permit,
                                &Outcome {
                                    status: status.as_u16(),
                                    headers,
                                    limited: Some((scope, wait)),
                                },
                            )
                            .await;
                        if Instant::now() + wait > call.deadline {
                            return Err(CallError::RateLimited {
                                scope: scope.as_str(),
                                retry_after: wait,
                            });
                        }
                        match retry_after_failure(&call.method, Failure::RateLimited, &mut tries) {
                            Some(_) => {
                                self.metrics.on_retry("429");
                                continue;
                            }
                            None => {
                                return Err(CallError::RateLimited {
                                    scope: scope.as_str(),
                                    retry_after: wait,
                                });
                            }
                        }
                    }
                    self.limiter
                        .release(
                            &call.route,
                            &permit,
                            &Outcome {
                                status: status.as_u16(),
                                headers,
                                limited: None,
                            },
                        )
                        .await;
                    let server_error = matches!(status.as_u16(), 502..=504);
                    if !server_error {
                        return Ok(response);
                    }
                    match retry_after_failure(&call.method, Failure::ServerError, &mut tries) {
                        Some(backoff) if Instant::now() + backoff < call.deadline => {
                            self.metrics.on_retry("5xx");
                            tokio::time::sleep(backoff).await;
                            continue;
                        }
                        _ => return Ok(response),
                    }
                }
                Err(e) => {
                    self.limiter
                        .release(&call.route, &permit, &Outcome::default())
                        .await;
                    e
                }
            };
            let (kind, error) = match failure {
                SendError::NotSent(detail) => (Failure::NotSent, CallError::Unreachable(detail)),
                SendError::Failed(detail) => (Failure::Broken, CallError::Broken(detail)),
                SendError::Timeout => (Failure::Timeout, CallError::Timeout { maybe_sent: true }),
            };
            match retry_after_failure(&call.method, kind, &mut tries) {
                Some(backoff) if Instant::now() + backoff < call.deadline => {
                    tracing::debug!(route = %call.route.key, %error, "retrying");
                    self.metrics.on_retry(match kind {
                        Failure::NotSent => "connect",
                        _ => "broken",
                    });
                    tokio::time::sleep(backoff).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Reads a 429's body (bounded) and classifies it.
    async fn read_429(
        &self,
        response: Response<Incoming>,
        headers: &RateLimitHeaders,
        call: &Call,
    ) -> (Scope, Duration) {
        let left = call.deadline.saturating_duration_since(Instant::now());
        let body = tokio::time::timeout(
            left.min(Duration::from_secs(5)),
            Limited::new(response.into_body(), MAX_429_BODY).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
        let (scope, wait) = headers.classify_429(&body);
        self.metrics.on_rate_limited(scope.as_str());
        match scope {
            Scope::Shared => {
                tracing::debug!(route = %call.route.key, ?wait, "shared-scope 429");
            }
            Scope::User => tracing::warn!(
                route = %call.route.key,
                ?wait,
                "429 of scope user: the limiter's bookkeeping was off, or the token is used outside the proxy"
            ),
            Scope::Global => tracing::warn!(?wait, "global 429: every replica pauses"),
            Scope::Cloudflare => tracing::error!(
                ?wait,
                "429 without a JSON body: Cloudflare is refusing this IP (too many invalid requests?)"
            ),
        }
        (scope, wait)
    }
}
