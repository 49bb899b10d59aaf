//! The HTTP side of the REST client: hyper 1 over rustls, and the retry
//! policy.
//!
//! Discord docs, "API Reference" → User Agent and HTTP: every request
//! carries `User-Agent: DiscordBot ($url, $version)` ([`crate::USER_AGENT`]);
//! HTTPS only. One pooled client per process reuses connections and speaks
//! HTTP/2 when Discord's TLS endpoint offers it (ALPN), HTTP/1.1 otherwise;
//! plain `http://` is accepted for the simulator. Bodies are `Bytes` passed
//! through as received, never re-serialised.
//!
//! **Retries** ([`retry_after_failure`]) are decided here, purely, so the
//! rules are unit-tested:
//! - a 429, after the wait it names and through the limiter again, at most
//!   [`MAX_429_RETRIES`] times (the limiter decides when);
//! - a connection that failed before any byte was sent, for every method
//!   (nothing reached Discord);
//! - 502/503/504 and broken connections, for idempotent methods only
//!   (GET, HEAD, OPTIONS, PUT, DELETE). POST and PATCH are never re-sent:
//!   an interaction callback that may have landed must not be sent twice
//!   (Discord answers 40060 to a second one), nor a message created twice
//!   (discord.js #2655).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::gateway::discovery::error_chain;

/// 429s retried per request before giving up.
pub const MAX_429_RETRIES: u32 = 3;

/// Connection failures (nothing sent) retried per request.
pub const MAX_CONNECT_RETRIES: u32 = 3;

/// 5xx / broken-connection retries per request (idempotent methods only).
pub const MAX_SERVER_RETRIES: u32 = 2;

/// Why an attempt produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection could not be made: nothing was sent.
    #[error("cannot connect to Discord: {0}")]
    NotSent(String),
    /// No response before the request's deadline (it may have been
    /// processed).
    #[error("Discord did not answer before the request's deadline")]
    Timeout,
    /// The connection broke after the request was (maybe) sent.
    #[error("connection to Discord failed: {0}")]
    Failed(String),
}

/// The pooled HTTPS client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client that speaks HTTPS (webpki roots; HTTP/2 or HTTP/1.1 by
    /// ALPN) and plain HTTP/1.1.
    #[must_use]
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { inner }
    }

    /// Sends one request, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendError`], saying whether anything may have reached Discord.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        match tokio::time::timeout(timeout, self.inner.request(request)).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(SendError::NotSent(error_chain(&e))),
            Ok(Err(e)) => Err(SendError::Failed(error_chain(&e))),
        }
    }
}

/// Whether re-sending `method` cannot cause a second effect.
#[must_use]
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// What ended an attempt, for the retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A 429 (scope and wait are the limiter's business).
    RateLimited,
    /// Discord answered 502, 503 or 504.
    ServerError,
    /// Nothing was sent (connect error).
    NotSent,
    /// The connection broke after sending.
    Broken,
    /// No answer before the deadline.
    Timeout,
}

/// Retries already made, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tries {
    /// After 429s.
    pub rate_limited: u32,
    /// After connect errors.
    pub not_sent: u32,
    /// After 5xx or broken connections.
    pub server: u32,
}

/// Whether to try again after `failure`, and after how long (before going
/// through the limiter again). Counts the retry in `tries`.
#[must_use]
pub fn retry_after_failure(
    method: &Method,
    failure: Failure,
    tries: &mut Tries,
) -> Option<Duration> {
    match failure {
        Failure::RateLimited if tries.rate_limited < MAX_429_RETRIES => {
            tries.rate_limited += 1;
            Some(Duration::ZERO)
        }
        Failure::NotSent if tries.not_sent < MAX_CONNECT_RETRIES => {
            tries.not_sent += 1;
            Some(Duration::from_millis(100 << tries.not_sent))
        }
        Failure::ServerError | Failure::Broken
            if idempotent(method) && tries.server < MAX_SERVER_RETRIES =>
        {
            tries.server += 1;
            Some(Duration::from_millis(250 << tries.server))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_and_patch_are_never_resent_after_they_may_have_landed() {
        for method in [Method::POST, Method::PATCH] {
            for failure in [Failure::ServerError, Failure::Broken, Failure::Timeout] {
                assert_eq!(
                    retry_after_failure(&method, failure, &mut Tries::default()),
                    None,
                    "{method} {failure:?}"
                );
            }
        }
    }

    #[test]
    fn idempotent_methods_retry_5xx_a_bounded_number_of_times() {
        let mut tries = Tries::default();
        assert!(retry_after_failure(&Method::GET, Failure::ServerError, &mut tries).is_some());
        assert!(retry_after_failure(&Method::DELETE, Failure::Broken, &mut tries).is_some());
        assert_eq!(
            retry_after_failure(&Method::PUT, Failure::ServerError, &mut tries),
            None
        );
        assert_eq!(tries.server, MAX_SERVER_RETRIES);
    }

    #[test]
    fn nothing_sent_is_always_safe_to_retry() {
        let mut tries = Tries::default();
        for _ in 0..MAX_CONNECT_RETRIES {
            assert!(retry_after_failure(&Method::POST, Failure::NotSent, &mut tries).is_some());
        }
        assert_eq!(
            retry_after_failure(&Method::POST, Failure::NotSent, &mut tries),
            None
        );
    }

    #[test]
    fn rate_limits_retry_through_the_limiter_three_times() {
        let mut tries = Tries::default();
        for _ in 0..MAX_429_RETRIES {
            assert_eq!(
                retry_after_failure(&Method::POST, Failure::RateLimited, &mut tries),
                Some(Duration::ZERO)
            );
        }
        assert_eq!(
            retry_after_failure(&Method::POST, Failure::RateLimited, &mut tries),
            None
        );
        // A timeout is never retried: the deadline is gone.
        assert_eq!(
            retry_after_failure(&Method::GET, Failure::Timeout, &mut Tries::default()),
            None
        );
    }
}
