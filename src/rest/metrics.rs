//! Prometheus metrics of the `arrakis proxy` role, and the readiness it
//! reports through [`RoleStatus`](crate::health::RoleStatus).
//!
//! The metrics PROTOCOL.md Part 3 asks for: requests, limiter waits (and
//! interaction waits apart: any wait there is a problem), 429s by scope
//! (`user` and `global` should stay 0), the invalid-request count of the
//! last 10 minutes, rejections by reason, retries, Redis latency and
//! errors, and whether the replica is on local limits. Labels are route
//! templates (never ids or tokens; capped in number), statuses, scopes and
//! reasons from fixed sets.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Distinct route templates tracked before the rest are counted as `other`.
const MAX_ROUTE_LABELS: usize = 512;

/// Label: a route template and the status answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    /// Route template, e.g. `POST /channels/:id/messages`.
    pub route: String,
    /// HTTP status answered to the caller.
    pub status: u16,
}

/// Label: a reason or scope from a fixed set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason.
    pub reason: String,
}

/// Label: a 429's scope.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// `global`, `shared`, `user` or `cloudflare`.
    pub scope: &'static str,
}

/// Every metric of the proxy role, plus its readiness.
#[derive(Debug)]
pub struct ProxyMetrics {
    registry: Registry,
    requests: Family<RequestLabel, Counter>,
    route_names: Mutex<HashSet<String>>,
    /// Time from a request's arrival to its permit (all attempts), seconds.
    pub wait: Histogram,
    /// The same for interaction callbacks and follow-ups only.
    pub interaction_wait: Histogram,
    /// Discord's response time per attempt, seconds.
    pub upstream: Histogram,
    rejections: Family<ReasonLabel, Counter>,
    rate_limited: Family<ScopeLabel, Counter>,
    retries: Family<ReasonLabel, Counter>,
    /// Invalid requests (401/403/non-shared 429) in the last 10 minutes,
    /// all replicas, as last reported by Redis.
    pub invalid_requests: Gauge,
    /// Limiter script round trips, seconds.
    pub redis_latency: Histogram,
    /// Redis calls that failed or timed out.
    pub redis_errors: Counter,
    /// Route-map answers that moved a route to another bucket.
    pub remaps: Counter,
    /// Routes switched to a route-scoped bucket because their hash cycles.
    pub hash_cycles: Counter,
    /// Requests being handled.
    pub in_flight: Gauge,
    redis_up: AtomicBool,
    redis_gauge: Gauge,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyMetrics {
    /// Registers every metric under the `arrakis_` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("arrakis");
        let m = Self {
            registry: Registry::default(),
            requests: Family::default(),
            route_names: Mutex::new(HashSet::new()),
            wait: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            interaction_wait: Histogram::new(exponential_buckets(0.000_5, 2.0, 12)),
            upstream: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            rejections: Family::default(),
            rate_limited: Family::default(),
            retries: Family::default(),
            invalid_requests: Gauge::default(),
            redis_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            redis_errors: Counter::default(),
            remaps: Counter::default(),
            hash_cycles: Counter::default(),
            in_flight: Gauge::default(),
            redis_up: AtomicBool::new(false),
            redis_gauge: Gauge::default(),
        };
        registry.register(
            "proxy_requests",
            "Requests answered, by route template and status",
            m.requests.clone(),
        );
        registry.register(
            "proxy_wait_seconds",
            "Time from arrival to permit, all attempts",
            m.wait.clone(),
        );
        registry.register(
            "proxy_interaction_wait_seconds",
            "Time from arrival to permit for interaction callbacks and follow-ups",
            m.interaction_wait.clone(),
        );
        registry.register(
            "proxy_upstream_seconds",
            "Discord response time per attempt",
            m.upstream.clone(),
        );
        registry.register(
            "proxy_rejections",
            "Requests answered 503 without reaching Discord, by reason",
            m.rejections.clone(),
        );
        registry.register(
            "discord_rate_limited",
            "429s received from Discord, by scope (user and global should stay 0)",
            m.rate_limited.clone(),
        );
        registry.register(
            "proxy_retries",
            "Attempts retried, by reason",
            m.retries.clone(),
        );
        registry.register(
            "discord_invalid_requests",
            "401/403/429 (not shared) in the last 10 minutes, all replicas",
            m.invalid_requests.clone(),
        );
        registry.register(
            "redis_latency_seconds",
            "Limiter script round trips",
            m.redis_latency.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis calls that failed or timed out",
            m.redis_errors.clone(),
        );
        registry.register(
            "limiter_remaps",
            "Routes found mapped to another bucket",
            m.remaps.clone(),
        );
        registry.register(
            "limiter_hash_cycles",
            "Routes given a route-scoped bucket because their hash cycles",
            m.hash_cycles.clone(),
        );
        registry.register(
            "proxy_in_flight",
            "Requests being handled",
            m.in_flight.clone(),
        );
        registry.register(
            "redis_up",
            "1 when the shared limiter in Redis is in use, 0 on local limits",
            m.redis_gauge.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one answered request.
    pub fn on_request(&self, route: &str, status: u16) {
        let route = {
            let mut names = self
                .route_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if names.contains(route) {
                route
            } else if names.len() < MAX_ROUTE_LABELS {
                names.insert(route.to_owned());
                route
            } else {
                "other"
            }
        };
        self.requests
            .get_or_create(&RequestLabel {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts one request answered 503 by the proxy itself.
    pub fn on_rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one 429 from Discord.
    pub fn on_rate_limited(&self, scope: &'static str) {
        self.rate_limited.get_or_create(&ScopeLabel { scope }).inc();
    }

    /// Counts one retried attempt.
    pub fn on_retry(&self, reason: &str) {
        self.retries
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The shared limiter became (un)reachable.
    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
        self.redis_gauge.set(i64::from(up));
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl crate::health::RoleStatus for ProxyMetrics {
    fn not_ready_reason(&self) -> Option<String> {
        (!self.redis_up.load(Ordering::Relaxed))
            .then(|| "Redis unreachable: on conservative local rate limits".to_owned())
    }

    fn metrics_text(&self) -> String {
        self.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::RoleStatus;

    #[test]
    fn ready_only_on_redis() {
        let m = ProxyMetrics::new();
        assert!(m.not_ready_reason().unwrap().contains("Redis"));
        m.set_redis_up(true);
        assert_eq!(m.not_ready_reason(), None);
    }

    #[test]
    fn route_labels_are_capped() {
        let m = ProxyMetrics::new();
        for i in 0..MAX_ROUTE_LABELS + 3 {
            m.on_request(&format!("GET /r{i}"), 200);
        }
        m.on_rate_limited("user");
        let text = m.encode();
        assert!(
            text.contains(r#"arrakis_proxy_requests_total{route="other",status="200"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"arrakis_discord_rate_limited_total{scope="user"} 1"#));
    }
}
