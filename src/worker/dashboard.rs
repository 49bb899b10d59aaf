//! The dead-letter dashboard on the worker's HTTP listener: `/dlq`, a
//! small page listing `arrakis.dlq` with Inspect, Replay and Discard, and
//! the JSON API under it. On only when `ARRAKIS_ADMIN_SECRET` is set.
//!
//! - `GET /dlq`: the page (self-contained: inline CSS and JS under a
//!   per-response CSP nonce, no external assets; values are rendered with
//!   `textContent` only);
//! - `GET /dlq/api/messages?limit=N`: the first N entries (default 100,
//!   at most [`MAX_BROWSE`]) and the queue's count;
//! - `GET /dlq/api/messages/{key}`: one entry, body and headers;
//! - `POST /dlq/api/messages/{key}/replay` and `…/discard`.
//!
//! Every request needs the secret: `Authorization: Bearer <secret>`, or
//! HTTP Basic with the secret as the password (any user name, recorded in
//! the audit line as the operator's own claim). The comparison is of
//! SHA-256 digests in constant time. A POST also needs the header
//! `X-Arrakis-Dashboard: 1`: a cross-site form cannot set it, and a
//! cross-site `fetch` that sets it needs a CORS preflight this listener
//! never grants, so a browser holding the Basic credentials cannot be made
//! to replay or discard by another site. Answers carry
//! `Cache-Control: no-store`. The broker side is
//! [`crate::queue::dead_letters`].

use std::sync::Arc;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::config::Secret;
use crate::health::{RouteAnswer, RouteFuture, RouteRequest};
use crate::queue::dead_letters::{DeadLetters, DeadLettersConfig, DlqError, MAX_BROWSE, Summary};

/// The realm the Basic challenge names.
const REALM: &str = r#"Basic realm="arrakis dead letters", charset="UTF-8""#;
/// The header a POST must carry (the CSRF guard).
pub const CSRF_HEADER: &str = "x-arrakis-dashboard";
/// Entries listed when the request does not say.
const DEFAULT_LIMIT: usize = 100;
const PAGE: &str = include_str!("dashboard.html");

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
    outcome: &'static str,
}

/// The dashboard: the secret's digest, the DLQ handle and its metrics.
#[derive(Debug, Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    secret_digest: [u8; 32],
    dlq: DeadLetters,
    actions: Family<ActionLabel, Counter>,
}

/// Whether `path` is the dashboard's.
#[must_use]
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/dlq" || path.starts_with("/dlq/")
}

impl Dashboard {
    /// A dashboard guarded by `secret`, reaching the DLQ as `config` says;
    /// registers `dlq_actions` in `registry`.
    pub fn new(secret: &Secret, config: DeadLettersConfig, registry: &mut Registry) -> Self {
        let actions = Family::<ActionLabel, Counter>::default();
        registry.register(
            "dlq_actions",
            "Dead-letter dashboard actions, by action (replay, discard) and outcome (ok, not_found, failed)",
            actions.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                secret_digest: sha256(secret.expose().as_bytes()),
                dlq: DeadLetters::new(config),
                actions,
            }),
        }
    }

    /// Answers a request to a [`is_dashboard_path`] path.
    #[must_use]
    pub fn route(&self, request: RouteRequest) -> RouteFuture {
        let inner = self.inner.clone();
        Box::pin(async move { no_store(inner.answer(request).await) })
    }
}

impl Inner {
    async fn answer(&self, request: RouteRequest) -> RouteAnswer {
        if !authorized(&self.secret_digest, &request.headers) {
            return error(StatusCode::UNAUTHORIZED, "the admin secret is required")
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
        }
        let path = request.path.trim_end_matches('/');
        let api = path.strip_prefix("/dlq/api/messages");
        match (&request.method, path, api) {
            (&Method::GET, "/dlq", _) => page(),
            (&Method::GET, _, Some("")) => self.list(request.query.as_deref()).await,
            (method, _, Some(rest)) => {
                let mut parts = rest.trim_start_matches('/').splitn(2, '/');
                let key = parts.next().unwrap_or_default();
                let action = parts.next();
                if !is_key(key) {
                    return error(StatusCode::NOT_FOUND, "no such entry key");
                }
                match (method, action) {
                    (&Method::GET, None) => match self.dlq.inspect(key).await {
                        Ok(detail) => ok_json(&json!(detail)),
                        Err(err) => dlq_error(&err),
                    },
                    (&Method::POST, Some(action @ ("replay" | "discard"))) => {
                        let action = if action == "replay" {
                            "replay"
                        } else {
                            "discard"
                        };
                        if !csrf_ok(&request.headers) {
                            return error(
                                StatusCode::FORBIDDEN,
                                "actions need the header X-Arrakis-Dashboard: 1",
                            );
                        }
                        self.act(action, key, operator(&request.headers)).await
                    }
                    (_, None | Some("replay" | "discard")) => {
                        error(StatusCode::METHOD_NOT_ALLOWED, "wrong method")
                    }
                    _ => error(StatusCode::NOT_FOUND, "not found"),
                }
            }
            (_, "/dlq", _) => error(StatusCode::METHOD_NOT_ALLOWED, "GET only"),
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    async fn list(&self, query: Option<&str>) -> RouteAnswer {
        let Some(limit) = limit(query) else {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("limit must be a number from 1 to {MAX_BROWSE}"),
            );
        };
        match self.dlq.browse(limit).await {
            Ok(listing) => ok_json(&json!({
                "total": listing.total,
                "shown": listing.entries.len(),
                "entries": listing.entries,
            })),
            Err(err) => dlq_error(&err),
        }
    }

    async fn act(&self, action: &'static str, key: &str, operator: String) -> RouteAnswer {
        let result = if action == "replay" {
            self.dlq.replay(key).await
        } else {
            self.dlq.discard(key).await
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(DlqError::NotFound) => "not_found",
            Err(_) => "failed",
        };
        self.actions
            .get_or_create(&ActionLabel { action, outcome })
            .inc();
        let summary: Option<&Summary> = result.as_ref().ok().map(|d| &d.summary);
        let field = |f: fn(&Summary) -> Option<&str>| summary.and_then(f).unwrap_or("");
        let error_text = result.as_ref().err().map(ToString::to_string);
        tracing::info!(
            target: "arrakis::audit",
            action = if action == "replay" { "dlq_replay" } else { "dlq_discard" },
            outcome,
            key,
            operator,
            message_id = field(|s| s.message_id.as_deref()),
            routing_key = field(|s| s.routing_key.as_deref()),
            event = field(|s| s.event.as_deref()),
            guild_id = field(|s| s.guild_id.as_deref()),
            error = error_text.as_deref().unwrap_or(""),
            "dead letter {action}: {outcome}"
        );
        match result {
            Ok(done) => ok_json(&json!({ "ok": true, "action": action, "entry": done.summary })),
            Err(err) => dlq_error(&err),
        }
    }
}

/// The page, with a fresh CSP nonce.
fn page() -> RouteAnswer {
    let nonce = format!("{:032x}", rand::random::<u128>());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    RouteAnswer::new(
        StatusCode::OK,
        "text/html; charset=utf-8",
        PAGE.replace("{{nonce}}", &nonce),
    )
    .with_header(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
    )
    .with_header(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"))
    .with_header(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    )
}

fn no_store(answer: RouteAnswer) -> RouteAnswer {
    answer
        .with_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
        .with_header(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )
}

fn ok_json(body: &serde_json::Value) -> RouteAnswer {
    RouteAnswer::new(StatusCode::OK, "application/json", body.to_string())
}

fn error(status: StatusCode, message: &str) -> RouteAnswer {
    RouteAnswer::new(
        status,
        "application/json",
        json!({ "ok": false, "error": message }).to_string(),
    )
}

/// The status of each DLQ failure: the entry is gone (404), the entry
/// cannot be replayed as it is (409), or the broker failed (502).
fn dlq_error(err: &DlqError) -> RouteAnswer {
    let status = match err {
        DlqError::NotFound => StatusCode::NOT_FOUND,
        DlqError::NoRoutingKey | DlqError::Unroutable(_) => StatusCode::CONFLICT,
        DlqError::Nacked | DlqError::Broker(_) => StatusCode::BAD_GATEWAY,
    };
    error(status, &err.to_string())
}

/// `limit=N` of the query, [`DEFAULT_LIMIT`] when absent; `None` when
/// malformed or out of range.
fn limit(query: Option<&str>) -> Option<usize> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("limit="))
    else {
        return Some(DEFAULT_LIMIT);
    };
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_BROWSE).contains(n))
}

/// An entry key: 32 lowercase hex digits.
fn is_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn csrf_ok(headers: &HeaderMap) -> bool {
    headers
        .get(HeaderName::from_static(CSRF_HEADER))
        .is_some_and(|v| v.as_bytes() == b"1")
}

/// Whether the request presents the secret whose digest is `expected`.
fn authorized(expected: &[u8; 32], headers: &HeaderMap) -> bool {
    presented(headers).is_some_and(|secret| {
        let got = sha256(&secret);
        got.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    })
}

/// The secret an `Authorization` header presents: a Bearer token, or a
/// Basic password.
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest)?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

/// The Basic user name, as the operator's own claim for the audit line.
fn operator(headers: &HeaderMap) -> String {
    let basic_user = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| base64_decode(b64.trim()))
        .and_then(|d| {
            let colon = d.iter().position(|&b| b == b':')?;
            Some(String::from_utf8_lossy(&d[..colon]).into_owned())
        });
    match basic_user {
        Some(user) if !user.is_empty() => {
            user.chars().filter(|c| !c.is_control()).take(64).collect()
        }
        _ => "(bearer)".to_owned(),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// Standard base64 (RFC 4648 §4), padding optional; `None` on any other
/// character. (Twenty lines here rather than a crate for one header.)
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xFF).ok()?);
        }
    }
    // A lone sextet cannot end a valid encoding.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn auth(value: &str) -> HeaderMap {
        headers(&[("authorization", value)])
    }

    #[test]
    fn base64_as_rfc_4648_says() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Zm9vY"), None);
    }

    #[test]
    fn the_secret_as_bearer_or_basic_password() {
        let digest = sha256(b"s3cret");
        assert!(authorized(&digest, &auth("Bearer s3cret")));
        assert!(authorized(&digest, &auth("bearer  s3cret ")));
        // "anyone:s3cret" and ":s3cret"
        assert!(authorized(&digest, &auth("Basic YW55b25lOnMzY3JldA==")));
        assert!(authorized(&digest, &auth("BASIC OnMzY3JldA==")));
        // The password may itself hold a colon: "u:s3:x".
        assert!(authorized(&sha256(b"s3:x"), &auth("Basic dTpzMzp4")));
    }

    #[test]
    fn wrong_missing_or_malformed_credentials_are_refused() {
        let digest = sha256(b"s3cret");
        assert!(!authorized(&digest, &HeaderMap::new()));
        assert!(!authorized(&digest, &auth("Bearer wrong")));
        assert!(!authorized(&digest, &auth("Bearer")));
        assert!(!authorized(&digest, &auth("s3cret")));
        assert!(!authorized(&digest, &auth("Token s3cret")));
        // "s3cret" as the user name, no password.
        assert!(!authorized(&digest, &auth("Basic czNjcmV0Og==")));
        // No colon at all.
        assert!(!authorized(&digest, &auth("Basic czNjcmV0")));
        assert!(!authorized(&digest, &auth("Basic %%%notbase64")));
    }

    #[test]
    fn the_operator_is_the_basic_user_name_or_bearer() {
        assert_eq!(operator(&auth("Basic YW55b25lOnMzY3JldA==")), "anyone");
        assert_eq!(operator(&auth("Bearer s3cret")), "(bearer)");
        assert_eq!(operator(&auth("Basic OnMzY3JldA==")), "(bearer)");
    }

    #[test]
    fn actions_need_the_csrf_header() {
        assert!(csrf_ok(&headers(&[("x-arrakis-dashboard", "1")])));
        assert!(!csrf_ok(&headers(&[("x-arrakis-dashboard", "yes")])));
        assert!(!csrf_ok(&HeaderMap::new()));
    }

    #[test]
    fn limits_and_keys() {
        assert_eq!(limit(None), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some("x=1&limit=7")), Some(7));
        assert_eq!(limit(Some("limit=0")), None);
        assert_eq!(limit(Some("limit=501")), None);
        assert_eq!(limit(Some("limit=ten")), None);
        assert!(is_key("0123456789abcdef0123456789abcdef"));
        assert!(!is_key("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_key("0123"));
        assert!(is_dashboard_path("/dlq"));
        assert!(is_dashboard_path("/dlq/api/messages"));
        assert!(!is_dashboard_path("/dlqx"));
    }

    #[test]
    fn the_page_renders_values_as_text_only() {
        assert!(!PAGE.contains("innerHTML"));
        assert!(!PAGE.contains("outerHTML"));
        assert!(!PAGE.contains("insertAdjacentHTML"));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        let a = page();
        assert!(!a.body.contains("{{nonce}}"));
        let csp = a
            .headers
            .iter()
            .find(|(n, _)| n == header::CONTENT_SECURITY_POLICY)
            .unwrap();
        assert!(csp.1.to_str().unwrap().contains("script-src 'nonce-"));
    }
}
