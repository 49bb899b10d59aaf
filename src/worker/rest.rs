//! The worker's REST client: Discord's API through the REST proxy
//! (`ARRAKIS_REST_URL`), never directly. The worker holds no bot token; it
//! presents the proxy secret, if one is set, and tells the proxy how long
//! the caller can wait (`X-Arrakis-Deadline-Ms`), so an interaction
//! callback that cannot make Discord's deadline fails fast instead of
//! arriving late.
//!
//! Paths of interaction and webhook routes carry the interaction token, so
//! errors name the route's method and status only, never the path, and
//! the audit line written for every write (role change, DM, response)
//! shows the path with the token masked. Each call carries the message's
//! correlation id ([`crate::correlation`]) to the proxy.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Secret;
use crate::rest::server::{DEADLINE_HEADER, PRIORITY_HEADER, SECRET_HEADER};

/// Largest response body read.
const MAX_RESPONSE: usize = 1 << 20;

/// Why a REST call failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The proxy could not be reached or the connection broke.
    #[error("REST proxy unreachable: {0}")]
    Unreachable(String),
    /// No response within the deadline.
    #[error("REST proxy did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be built (a bad base URL).
    #[error("bad REST request: {0}")]
    Request(String),
}

/// A response from the proxy (Discord's status and body, or the proxy's
/// own 503 when the deadline could not be met).
#[derive(Debug, Clone)]
pub struct RestResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Body bytes (at most 1 MiB read).
    pub body: Bytes,
}

impl RestResponse {
    /// Discord's JSON error `code`, if the body has one.
    #[must_use]
    pub fn discord_code(&self) -> Option<u64> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .get("code")?
            .as_u64()
    }

    /// The body as JSON, if it is JSON.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Whether a request is part of answering a user now or background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Answering an interaction.
    Interactive,
    /// Syncs, role changes, DMs.
    Background,
}

/// A cheap-to-clone client of the REST proxy.
#[derive(Clone)]
pub struct ProxyClient {
    base: String,
    secret: Option<Secret>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyClient")
            .field("base", &self.base)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl ProxyClient {
    /// A client of the proxy at `base` (e.g. `http://127.0.0.1:8090/api/v10`).
    #[must_use]
    pub fn new(base: &str, secret: Option<Secret>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            base: base.trim_end_matches('/').to_owned(),
            secret,
            http,
        }
    }

    /// Sends `method path` with an optional JSON body; waits at most
    /// `deadline` (also sent to the proxy). `reason` becomes
    /// `X-Audit-Log-Reason` (percent-encoded as Discord requires).
    ///
    /// # Errors
    ///
    /// [`RestError`] when no response arrived; an HTTP error status is a
    /// response, not an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        deadline: Duration,
        priority: Priority,
        reason: Option<&str>,
    ) -> Result<RestResponse, RestError> {
        let uri = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(USER_AGENT, crate::USER_AGENT)
            .header(
                DEADLINE_HEADER,
                deadline.as_millis().clamp(1, 300_000).to_string(),
            );
        if let Some(secret) = &self.secret {
            let value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                RestError::Request("ARRAKIS_PROXY_SECRET is not a valid header value".to_owned())
            })?;
            req = req.header(SECRET_HEADER, value);
        }
        if priority == Priority::Background {
            req = req.header(PRIORITY_HEADER, "background");
        }
        if let Some(reason) = reason {
            req = req.header("x-audit-log-reason", percent_encode(reason));
        }
        let context = crate::correlation::current();
        if let Some(id) = context
            .message_id
            .as_deref()
            .filter(|id| crate::correlation::sanitize(id.as_bytes()).is_some())
        {
            req = req.header(crate::correlation::HEADER, id);
        }
        let audit = (method != Method::GET).then(|| (method.clone(), loggable_path(path)));
        let payload = match body {
            Some(json) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(
                    serde_json::to_vec(json).map_err(|e| RestError::Request(e.to_string()))?,
                )
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| RestError::Request(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| RestError::Unreachable(describe(&e)))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| RestError::Unreachable(format!("reading the response: {e}")))?
                .to_bytes();
            Ok(RestResponse { status, body })
        };
        // A little beyond the deadline: the proxy answers 503 itself when it
        // cannot send in time, and that answer is worth waiting for.
        let result = tokio::time::timeout(deadline + Duration::from_millis(250), exchange)
            .await
            .map_err(|_| RestError::Timeout(deadline))?;
        if let Some((method, path)) = audit {
            let status = result.as_ref().map_or(0, |r| r.status.as_u16());
            tracing::info!(
                target: "arrakis::audit",
                effect = effect_of(&method, &path),
                %method,
                path,
                status,
                guild_id = context.guild_id.as_deref().unwrap_or(""),
                message_id = context.message_id.as_deref().unwrap_or(""),
                "REST effect"
            );
        }
        result
    }
}

/// `path` with interaction and webhook tokens masked: safe for a log
/// line, and it keeps the ids an audit needs (guild, user, role,
/// channel).
fn loggable_path(path: &str) -> String {
    let (path, _query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = String::with_capacity(path.len());
    let mut previous: [&str; 2] = ["", ""];
    for segment in path.split('/').skip(1) {
        out.push('/');
        // /interactions/{id}/{token}/… and /webhooks/{application}/{token}/…
        let is_token =
            matches!(previous[0], "interactions" | "webhooks") && !previous[1].is_empty();
        out.push_str(if is_token { ":token" } else { segment });
        previous = [previous[1], segment];
    }
    out
}

/// What kind of effect a write to `path` is, for the audit line.
fn effect_of(method: &Method, path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (method.as_str(), segments.as_slice()) {
        ("PUT", ["guilds", _, "members", _, "roles", _]) => "role_add",
        ("DELETE", ["guilds", _, "members", _, "roles", _]) => "role_remove",
        ("PATCH", ["guilds", _, "members", _]) => "member_update",
        ("POST", ["users", "@me", "channels"]) => "dm_open",
        ("POST", ["channels", _, "messages"]) => "message_send",
        ("POST", ["interactions", _, _, "callback"]) => "interaction_response",
        (_, ["webhooks", ..]) => "interaction_followup",
        (_, ["applications", ..]) => "application_commands",
        _ => "rest_write",
    }
}

/// A hyper error without the request URI (it may hold a token).
fn describe(err: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut out = if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    if let Some(source) = err.source() {
        out.push_str(": ");
        out.push_str(&source.to_string());
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), as
/// Discord wants `X-Audit-Log-Reason`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes().take(512) {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_paths_mask_tokens_and_keep_ids() {
        assert_eq!(
            loggable_path("/interactions/123/aW50ZXJhY3Rpb24.token/callback"),
            "/interactions/123/:token/callback"
        );
        assert_eq!(
            loggable_path("/webhooks/42/aW50ZXJhY3Rpb24.token/messages/@original?wait=true"),
            "/webhooks/42/:token/messages/@original"
        );
        assert_eq!(
            loggable_path("/guilds/1/members/2/roles/3"),
            "/guilds/1/members/2/roles/3"
        );
        assert_eq!(
            effect_of(&Method::PUT, "/guilds/1/members/2/roles/3"),
            "role_add"
        );
        assert_eq!(
            effect_of(&Method::DELETE, "/guilds/1/members/2/roles/3"),
            "role_remove"
        );
        assert_eq!(effect_of(&Method::POST, "/users/@me/channels"), "dm_open");
        assert_eq!(
            effect_of(&Method::POST, "/channels/9/messages"),
            "message_send"
        );
        assert_eq!(
            effect_of(&Method::POST, "/interactions/123/:token/callback"),
            "interaction_response"
        );
    }

    #[test]
    fn audit_reasons_are_percent_encoded() {
        assert_eq!(percent_encode("tier: usul ✓"), "tier%3A%20usul%20%E2%9C%93");
    }

    #[test]
    fn the_secret_stays_out_of_debug() {
        let c = ProxyClient::new("http://127.0.0.1:1/api/v10/", Some(Secret::new("hunter2")));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("/api/v10\""),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_proxy_is_an_error_without_the_path() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = ProxyClient::new(&format!("http://127.0.0.1:{port}/api/v10"), None);
        let err = c
            .send(
                Method::POST,
                "/interactions/1/secret-token/callback",
                None,
                Duration::from_millis(500),
                Priority::Interactive,
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RestError::Unreachable(_)), "{err}");
        assert!(!err.to_string().contains("secret-token"), "{err}");
    }
}
