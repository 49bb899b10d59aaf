//! `GET /gateway/bot`: the gateway URL, shard count and identify allowance.
//!
//! Discord says to cache the URL and refetch it only when connecting fails,
//! and not to cache `shards` and `session_start_limit` for long (docs,
//! "Gateway" → Connecting). The ingestor fetches once at start-up and
//! retries with back-off while Discord (or the simulator) is unreachable.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::identify::SessionStartLimit;
use crate::config::Secret;

/// Largest `/gateway/bot` response we read.
const MAX_BODY: usize = 64 * 1024;

/// What `/gateway/bot` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// The gateway URL, without query.
    pub url: String,
    /// Recommended shard count.
    pub shards: u32,
    /// Identify allowance.
    pub limit: SessionStartLimit,
}

/// Why `/gateway/bot` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The token was refused (401): retrying cannot help.
    #[error("Discord refused DISCORD_TOKEN at {url} (401 Unauthorized); set a valid bot token")]
    Unauthorized {
        /// The URL asked.
        url: String,
    },
    /// Any other failure; worth retrying.
    #[error("cannot reach Discord at {url}: {detail}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

/// An HTTP(S) client for the few REST calls the gateway needs.
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Builds a client that speaks HTTPS (webpki roots) and plain HTTP.
#[must_use]
pub fn https_client() -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Fetches `{api_base}/gateway/bot` once.
///
/// # Errors
///
/// [`DiscoveryError::Unauthorized`] for a refused token,
/// [`DiscoveryError::Unreachable`] for anything else.
pub async fn fetch(
    client: &HttpsClient,
    api_base: &str,
    token: &Secret,
) -> Result<GatewayInfo, DiscoveryError> {
    #[derive(Deserialize)]
    struct Body {
        url: String,
        shards: u32,
        session_start_limit: Limit,
    }
    #[derive(Deserialize)]
    struct Limit {
        total: u32,
        remaining: u32,
        reset_after: u64,
        max_concurrency: u32,
    }

    let url = format!("{}/gateway/bot", api_base.trim_end_matches('/'));
    let unreachable = |detail: String| DiscoveryError::Unreachable {
        url: url.clone(),
        detail,
    };
    let request = hyper::Request::get(&url)
        .header("authorization", format!("Bot {}", token.expose()))
        .header("user-agent", crate::USER_AGENT)
        .body(Empty::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(15), client.request(request))
        .await
        .map_err(|_| unreachable("no answer within 15 s".into()))?
        .map_err(|e| unreachable(error_chain(&e)))?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        return Err(DiscoveryError::Unauthorized { url });
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(unreachable(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )));
    }
    let body: Body = serde_json::from_slice(&body)
        .map_err(|e| unreachable(format!("unexpected /gateway/bot body: {e}")))?;
    if !(body.url.starts_with("wss://") || body.url.starts_with("ws://")) {
        return Err(unreachable(format!(
            "gateway url `{}` is not ws(s)://",
            body.url
        )));
    }
    Ok(GatewayInfo {
        url: body.url,
        shards: body.shards,
        limit: SessionStartLimit {
            total: body.session_start_limit.total,
            remaining: body.session_start_limit.remaining,
            reset_after: Duration::from_millis(body.session_start_limit.reset_after),
            max_concurrency: body.session_start_limit.max_concurrency.max(1),
        },
    })
}

/// Formats an error with its sources, which is where hyper keeps the
/// useful part ("connection refused").
#[must_use]
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
