//! One JSON-RPC endpoint's health: a circuit breaker for failures and a
//! skip window for rate limits.
//!
//! - A failure (transport error, timeout, HTTP 5xx) counts toward the
//!   breaker; `breaker_failures` in a row open it for `breaker_open_for`,
//!   then it is half-open: exactly one trial call goes through, and its
//!   outcome closes or re-opens the breaker.
//! - A rate limit (HTTP 429 or a provider's rate-limit error) is not a
//!   failure of the endpoint: it is skipped for `Retry-After` (or
//!   `skip_for`) and then used again.
//!
//! The state is a small mutex-guarded struct, touched twice per call.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// One trial call decides.
    HalfOpen,
}

/// What the client reports about an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    /// `scheme://host:port` only: RPC URLs often carry an API key.
    pub label: String,
    /// The breaker.
    pub breaker: BreakerState,
    /// Left of a rate-limit skip, if one is running.
    pub skipped_for: Option<Duration>,
    /// Failures in a row.
    pub failures: u32,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    opened_at: Option<Instant>,
    trial: bool,
    skipped_until: Option<Instant>,
}

/// Breaker thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) failures: u32,
    pub(crate) open_for: Duration,
}

/// An endpoint and its health.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) label: String,
    health: Mutex<Health>,
}

/// `scheme://host[:port]` of `url`.
pub(crate) fn label(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<endpoint>".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}")
}

impl Endpoint {
    pub(crate) fn new(url: String) -> Self {
        Self {
            label: label(&url),
            url,
            health: Mutex::new(Health::default()),
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go to this endpoint now; a half-open breaker
    /// admits one trial at a time.
    pub(crate) fn admit(&self, now: Instant, policy: Policy) -> bool {
        let mut h = self.health();
        if h.skipped_until.is_some_and(|t| now < t) {
            return false;
        }
        match h.opened_at {
            None => true,
            Some(opened) if now.duration_since(opened) < policy.open_for => false,
            Some(_) if h.trial => false,
            Some(_) => {
                h.trial = true;
                true
            }
        }
    }

    pub(crate) fn succeeded(&self) {
        let mut h = self.health();
        h.failures = 0;
        h.opened_at = None;
        h.trial = false;
    }

    pub(crate) fn failed(&self, now: Instant, policy: Policy) {
        let mut h = self.health();
        h.failures = h.failures.saturating_add(1);
        if h.trial || h.failures >= policy.failures {
            h.opened_at = Some(now);
        }
        h.trial = false;
    }

    /// A rate limit: skip the endpoint for `skip` (not a failure).
    pub(crate) fn rate_limited(&self, now: Instant, skip: Duration) {
        let mut h = self.health();
        h.skipped_until = Some(now + skip);
        // A trial that met a rate limit leaves the breaker as it was.
        h.trial = false;
    }

    pub(crate) fn state(&self, now: Instant, policy: Policy) -> EndpointState {
        let h = self.health();
        let breaker = match h.opened_at {
            None => BreakerState::Closed,
            Some(opened) if now.duration_since(opened) < policy.open_for => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        };
        EndpointState {
            label: self.label.clone(),
            breaker,
            skipped_for: h
                .skipped_until
                .and_then(|t| t.checked_duration_since(now))
                .filter(|d| !d.is_zero()),
            failures: h.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures: 3,
        open_for: Duration::from_secs(10),
    };

    #[test]
    fn labels_hide_keys_in_paths_and_credentials() {
        assert_eq!(
            label("https://user:pw@rpc.example:8545/v2/KEY?x=1"),
            "https://rpc.example:8545"
        );
        assert_eq!(label("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_then_admits_one_trial() {
        let e = Endpoint::new("http://a".into());
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(e.admit(t0, POLICY));
            e.failed(t0, POLICY);
        }
        assert_eq!(e.state(t0, POLICY).breaker, BreakerState::Closed);
        e.failed(t0, POLICY);
        assert_eq!(e.state(t0, POLICY).breaker, BreakerState::Open);
        assert!(!e.admit(t0 + Duration::from_secs(9), POLICY));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(e.state(later, POLICY).breaker, BreakerState::HalfOpen);
        assert!(e.admit(later, POLICY), "one trial");
        assert!(!e.admit(later, POLICY), "only one");
        e.failed(later, POLICY);
        assert_eq!(
            e.state(later, POLICY).breaker,
            BreakerState::Open,
            "a failed trial re-opens"
        );
        let again = later + Duration::from_secs(10);
        assert!(e.admit(again, POLICY));
        e.succeeded();
        assert_eq!(e.state(again, POLICY).breaker, BreakerState::Closed);
        assert!(e.admit(again, POLICY) && e.admit(again, POLICY));
    }

    #[test]
    fn a_success_resets_the_count_and_rate_limits_only_skip() {
        let e = Endpoint::new("http://a".into());
        let t0 = Instant::now();
        e.failed(t0, POLICY);
        e.failed(t0, POLICY);
        e.succeeded();
        e.failed(t0, POLICY);
        assert_eq!(e.state(t0, POLICY).breaker, BreakerState::Closed);
        e.rate_limited(t0, Duration::from_secs(2));
        assert!(!e.admit(t0 + Duration::from_secs(1), POLICY));
        assert!(e.admit(t0 + Duration::from_secs(2), POLICY));
        assert_eq!(e.state(t0, POLICY).failures, 1, "a 429 is not a failure");
    }
}
