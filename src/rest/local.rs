//! The conservative limiter a replica falls back to while Redis is
//! unreachable (PROTOCOL.md Part 3, "Redis failure policy").
//!
//! Never unlimited, and safe when several replicas are cut off together:
//!
//! - **Global**: this replica may send its *share*, `global limit ×
//!   fraction ÷ replicas` (the replica count as last seen in Redis), per
//!   `1 s + margin` sliding window — but only once `closed_until` has
//!   passed: the moment every other replica's acquire script starts
//!   counting this one as stale and reserving its share (3 s after its
//!   last heartbeat). Before that, global-counted requests wait.
//! - **Buckets**: one request in flight per (bucket, major), and none
//!   while the last response said `Remaining: 0` (until its Reset-After);
//!   at most `max(1, limit ÷ replicas)` per window when the limit is known.
//!   Serialising means every send sees the previous response's headers,
//!   which count what every replica sent.
//! - **429s**: global, shared and per-bucket blocks, as in Redis.
//! - Interaction callbacks and webhook-token routes skip the global share
//!   (Discord exempts them) but keep their per-route serialisation.
//!
//! Pure: every method takes `now`, so the rules are unit-tested with a fake
//! clock; the limiter in `limiter.rs` holds it behind a mutex.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// What the caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalDecision {
    /// Send now; the permit is recorded.
    Go,
    /// Try again after this long.
    Wait(Duration),
}

/// What a response taught, in local terms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LocalOutcome {
    /// `X-RateLimit-Remaining`, when sent.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After`, when sent.
    pub reset_after: Option<Duration>,
    /// A 429's wait and scope.
    pub limited: Option<(Duration, LocalScope)>,
}

/// Which limit a 429 names, for the local limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalScope {
    /// Everything counted globally pauses.
    Global,
    /// The resource (major) pauses.
    Shared,
    /// The bucket pauses.
    Bucket,
}

#[derive(Debug, Default)]
struct LocalBucket {
    in_flight: Option<(u64, Instant)>,
    blocked_until: Option<Instant>,
    log: VecDeque<Instant>,
}

/// The in-process fallback limiter.
#[derive(Debug)]
pub struct LocalLimiter {
    margin: Duration,
    share: u32,
    replicas: u32,
    closed_until: Instant,
    global_log: VecDeque<Instant>,
    global_block: Option<Instant>,
    shared: HashMap<String, Instant>,
    buckets: HashMap<String, LocalBucket>,
}

/// Buckets remembered before the oldest idle ones are forgotten.
const MAX_BUCKETS: usize = 50_000;

impl LocalLimiter {
    /// A limiter that sends nothing global-counted before `closed_until`,
    /// then `share` per `1 s + margin`.
    #[must_use]
    pub fn new(share: u32, replicas: u32, margin: Duration, closed_until: Instant) -> Self {
        Self {
            margin,
            share: share.max(1),
            replicas: replicas.max(1),
            closed_until,
            global_log: VecDeque::new(),
            global_block: None,
            shared: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// This replica's share of `global_limit` when `replicas` replicas may
    /// fall back together and `fraction` of the limit is set aside for all
    /// of them: `max(1, ⌊limit × fraction ÷ replicas⌋)`. acquire.lua
    /// reserves exactly this much for each stale replica.
    #[must_use]
    pub fn share_of(global_limit: u32, fraction: f64, replicas: u32) -> u32 {
        let share = (f64::from(global_limit) * fraction / f64::from(replicas.max(1))).floor();
        // Truncation is the point: the share rounds down.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let share = share.max(1.0).min(f64::from(u32::MAX)) as u32;
        share
    }

    fn window(&self) -> Duration {
        Duration::from_secs(1) + self.margin
    }

    /// Whether nothing sent locally and counted globally is still inside
    /// a window that Redis does not know about: the condition for handing
    /// back to Redis (whose global log lacks these sends).
    #[must_use]
    pub fn drained(&self, now: Instant) -> bool {
        let window = self.window();
        self.global_log.iter().all(|&t| now >= t + window)
    }

    /// Grants nothing global-counted before `until` (extends, never
    /// shortens): used while handing back to Redis, so the local log can
    /// drain under continuous load.
    pub fn close_global(&mut self, until: Instant) {
        self.closed_until = self.closed_until.max(until);
    }

    /// Try to take a permit for `bucket` (the route's bucket id or route
    /// key, plus its major) on behalf of request `ticket`. `limit` is the
    /// bucket's learned limit and window, when known; `lease` bounds how
    /// long an unreleased permit blocks the bucket.
    #[allow(clippy::too_many_arguments)]
    pub fn try_acquire(
        &mut self,
        bucket: &str,
        major: &str,
        counted: bool,
        limit: Option<(u32, Duration)>,
        ticket: u64,
        lease: Duration,
        now: Instant,
    ) -> LocalDecision {
        if let Some(&until) = self.shared.get(major) {
            if now < until {
                return LocalDecision::Wait(until - now);
            }
            self.shared.remove(major);
        }
        if counted {
            if now < self.closed_until {
                return LocalDecision::Wait(self.closed_until - now);
            }
            if let Some(until) = self.global_block.filter(|&u| now < u) {
                return LocalDecision::Wait(until - now);
            }
        }
        let b = self.buckets.entry(bucket.to_owned()).or_default();
        if let Some((_, exp)) = b.in_flight {
            if now < exp {
                // The response will tell when; poll briefly.
                return LocalDecision::Wait(Duration::from_millis(20).min(exp - now));
            }
            b.in_flight = None;
        }
        if let Some(until) = b.blocked_until.filter(|&u| now < u) {
            return LocalDecision::Wait(until - now);
        }
        if let Some((limit, window)) = limit {
            let window = window + self.margin;
            while b.log.front().is_some_and(|&t| now >= t + window) {
                b.log.pop_front();
            }
            let cap = (limit / self.replicas).max(1) as usize;
            if b.log.len() >= cap {
                let oldest = b.log[b.log.len() - cap];
                return LocalDecision::Wait(oldest + window - now);
            }
        }
        if counted {
            let window = self.window();
            while self.global_log.front().is_some_and(|&t| now >= t + window) {
                self.global_log.pop_front();
            }
            if self.global_log.len() >= self.share as usize {
                let oldest = self.global_log[self.global_log.len() - self.share as usize];
                return LocalDecision::Wait(oldest + window - now);
            }
            self.global_log.push_back(now);
        }
        let b = self.buckets.entry(bucket.to_owned()).or_default();
        b.in_flight = Some((ticket, now + lease));
        b.log.push_back(now);
        if self.buckets.len() > MAX_BUCKETS {
            self.buckets
                .retain(|_, b| b.in_flight.is_some() || b.blocked_until.is_some_and(|u| u > now));
        }
        LocalDecision::Go
    }

    /// Applies a response (or `None`: no response) to request `ticket`'s
    /// permit on `bucket`.
    pub fn release(
        &mut self,
        bucket: &str,
        major: &str,
        ticket: u64,
        outcome: Option<&LocalOutcome>,
        now: Instant,
    ) {
        let margin = self.margin;
        let b = self.buckets.entry(bucket.to_owned()).or_default();
        if b.in_flight.is_some_and(|(t, _)| t == ticket) {
            b.in_flight = None;
        }
        let Some(outcome) = outcome else { return };
        if let (Some(0), Some(reset)) = (outcome.remaining, outcome.reset_after) {
            b.blocked_until = Some(now + reset + margin);
        }
        match outcome.limited {
            Some((wait, LocalScope::Bucket)) => b.blocked_until = Some(now + wait + margin),
            Some((wait, LocalScope::Shared)) => {
                self.shared.insert(major.to_owned(), now + wait + margin);
            }
            Some((wait, LocalScope::Global)) => self.global_block = Some(now + wait + margin),
            None => {}
        }
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
