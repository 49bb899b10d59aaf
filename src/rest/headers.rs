//! Discord's rate-limit response headers and 429 bodies, parsed without I/O.
//!
//! Discord docs, "Rate Limits" → Header format and Exceeding a rate limit:
//! `X-RateLimit-Limit`, `-Remaining`, `-Reset-After` (seconds with
//! millisecond decimals), `-Bucket`, and on 429s `-Scope` (`user`,
//! `global`, `shared`), `-Global`, `Retry-After` (seconds) and a JSON body
//! with `retry_after` (float seconds) and `global`. `X-RateLimit-Reset`
//! (absolute epoch) is deliberately ignored: it would tie us to the
//! callers' clocks (PROTOCOL.md Part 3).
//!
//! A 429 that is not JSON comes from Cloudflare, not the API (a ban after
//! too many invalid requests, api-docs #1771); it is treated as a long
//! global stop.

use std::time::Duration;

use hyper::HeaderMap;

/// Longest bucket hash accepted; longer or oddly shaped values are ignored
/// (they become part of Redis keys).
const MAX_HASH: usize = 64;

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitHeaders {
    /// `X-RateLimit-Bucket`.
    pub bucket: Option<String>,
    /// `X-RateLimit-Limit`.
    pub limit: Option<u32>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After`.
    pub reset_after: Option<Duration>,
    /// `Retry-After`.
    pub retry_after: Option<Duration>,
    /// `X-RateLimit-Scope`.
    pub scope: Option<Scope>,
    /// `X-RateLimit-Global: true`.
    pub global: bool,
}

/// Which limit a 429 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The bot's global limit: everything counted globally pauses.
    Global,
    /// A per-resource limit shared by every app: that resource pauses; not
    /// an invalid request.
    Shared,
    /// The bot's own per-route limit: our bookkeeping was wrong or
    /// something else uses the token. Should never happen.
    User,
    /// Not from the API (HTML or empty body): a Cloudflare ban.
    Cloudflare,
}

impl Scope {
    /// The name used in metrics and in the release script.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Shared => "shared",
            Scope::User => "user",
            Scope::Cloudflare => "cloudflare",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Parses decimal seconds (`"1.234"`, `"5"`) into a duration, rounding up
/// to the millisecond.
#[must_use]
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    // Bounded to a day: anything longer is nonsense, and the cast is safe.
    let ms = (secs * 1000.0).ceil().min(86_400_000.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(Duration::from_millis(ms as u64))
}

impl RateLimitHeaders {
    /// Reads the rate-limit headers of a response.
    #[must_use]
    pub fn parse(headers: &HeaderMap) -> Self {
        let bucket = header(headers, "x-ratelimit-bucket")
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= MAX_HASH
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_owned);
        let scope = header(headers, "x-ratelimit-scope").and_then(|s| match s {
            "global" => Some(Scope::Global),
            "shared" => Some(Scope::Shared),
            "user" => Some(Scope::User),
            _ => None,
        });
        Self {
            bucket,
            limit: header(headers, "x-ratelimit-limit").and_then(|v| v.parse().ok()),
            remaining: header(headers, "x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset_after: header(headers, "x-ratelimit-reset-after").and_then(parse_seconds),
            retry_after: header(headers, "retry-after").and_then(parse_seconds),
            scope,
            global: header(headers, "x-ratelimit-global")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// For a 429: which limit it names and how long to wait, from the
    /// headers and the JSON body (the longer of `Retry-After` and
    /// `retry_after` wins; a missing one means 1 s).
    #[must_use]
    pub fn classify_429(&self, body: &[u8]) -> (Scope, Duration) {
        #[derive(serde::Deserialize)]
        struct Body {
            retry_after: Option<f64>,
            #[serde(default)]
            global: bool,
        }
        let parsed: Option<Body> = serde_json::from_slice(body).ok();
        let Some(parsed) = parsed else {
            let wait = self.retry_after.unwrap_or(Duration::from_secs(60));
            return (Scope::Cloudflare, wait);
        };
        let from_body = parsed
            .retry_after
            .and_then(|s| parse_seconds(&s.to_string()));
        let wait = match (self.retry_after, from_body) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Duration::from_secs(1),
        };
        let scope = if self.global || parsed.global || self.scope == Some(Scope::Global) {
            Scope::Global
        } else {
            self.scope.unwrap_or(Scope::User)
        };
        (scope, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_the_documented_headers() {
        let h = RateLimitHeaders::parse(&headers(&[
            ("x-ratelimit-limit", "5"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1470173023.123"),
            ("x-ratelimit-reset-after", "64.57"),
            ("x-ratelimit-bucket", "abcd1234"),
        ]));
        assert_eq!(h.limit, Some(5));
        assert_eq!(h.remaining, Some(0));
        assert_eq!(h.reset_after, Some(Duration::from_millis(64_570)));
        assert_eq!(h.bucket.as_deref(), Some("abcd1234"));
        assert_eq!(h.scope, None);
        assert!(!h.global);
    }

    #[test]
    fn odd_values_are_ignored() {
        let h = RateLimitHeaders::parse(&headers(&[
            ("x-ratelimit-limit", "-1"),
            ("x-ratelimit-reset-after", "NaN"),
            ("x-ratelimit-bucket", "has spaces{}"),
            ("x-ratelimit-scope", "weird"),
        ]));
        assert_eq!(h, RateLimitHeaders::default());
        assert_eq!(parse_seconds("0.0005"), Some(Duration::from_millis(1)));
        assert_eq!(parse_seconds("-3"), None);
    }

    #[test]
    fn classifies_429s() {
        let shared = RateLimitHeaders::parse(&headers(&[
            ("x-ratelimit-scope", "shared"),
            ("retry-after", "3"),
        ]));
        assert_eq!(
            shared.classify_429(br#"{"message":"x","retry_after":2.5,"global":false}"#),
            (Scope::Shared, Duration::from_secs(3))
        );
        let global = RateLimitHeaders::parse(&headers(&[
            ("x-ratelimit-global", "true"),
            ("retry-after", "1"),
        ]));
        assert_eq!(
            global.classify_429(br#"{"message":"x","retry_after":1.5,"global":true}"#),
            (Scope::Global, Duration::from_millis(1_500))
        );
        // The body alone can say global.
        assert_eq!(
            RateLimitHeaders::default().classify_429(br#"{"retry_after":0.25,"global":true}"#),
            (Scope::Global, Duration::from_millis(250))
        );
        // No scope: the bot's own bucket.
        assert_eq!(
            RateLimitHeaders::default()
                .classify_429(br#"{"retry_after":0.25}"#)
                .0,
            Scope::User
        );
        // HTML: Cloudflare.
        assert_eq!(
            RateLimitHeaders::default().classify_429(b"<html>banned</html>"),
            (Scope::Cloudflare, Duration::from_secs(60))
        );
    }
}
