//! Discord's REST rate limits, as the simulator enforces and counts them
//! (PROTOCOL.md Part 2; Discord docs, "Rate Limits").
//!
//! - **Buckets** per (bucket hash, top-level resource), fixed windows (the
//!   window starts with the first request after the previous one ended) or
//!   sliding windows (hikari's reading of Discord since 2022-11), with the
//!   real headers: `X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket`,
//!   and on 429s `Retry-After`, `X-RateLimit-Scope` and, for the global
//!   limit, `X-RateLimit-Global`.
//! - **The global limit** per bot token, counted by arrival time in any
//!   1 s window; the largest count ever seen in such a window is recorded.
//! - **Injected 429s**: a global one (everything counted pauses for its
//!   Retry-After) and a shared one (the resource pauses; not an invalid
//!   request). Requests arriving during such a pause, later than
//!   `violation_grace` after it began (the client could not know sooner),
//!   are violations.
//! - **Invalid requests**: every 401, 403 and non-shared 429 answered.
//!
//! The state is plain data driven with `now`; `discord_rest.rs` holds it
//! behind a mutex and maps HTTP onto it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// How a bucket's window moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Starts with the first request after the previous window ended.
    Fixed,
    /// The last `window` of accepted requests.
    Sliding,
}

/// A 429 the simulator answers in place of the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestFault {
    /// The next request counted toward the global limit gets a global 429;
    /// all of them pause for `retry_after`.
    Global429 {
        /// The 429's `Retry-After`.
        retry_after: Duration,
    },
    /// The next request whose path (under `/api/v10`) starts with `path`
    /// gets a shared-scope 429; its top-level resource pauses for
    /// `retry_after`.
    Shared429 {
        /// Path prefix, e.g. `/channels/1`.
        path: String,
        /// The 429's `Retry-After`.
        retry_after: Duration,
    },
    /// The next `count` requests whose path starts with `path` get
    /// `status` (e.g. 503) without reaching the route.
    Status {
        /// Path prefix.
        path: String,
        /// Status answered.
        status: u16,
        /// How many requests get it.
        count: u32,
    },
}

/// Counters of everything a client did wrong on REST, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestStats {
    /// Requests that reached the rate-limited Discord routes.
    pub requests: u64,
    /// 429s answered, by scope (`global`, `shared`, `user`).
    pub rate_limited: BTreeMap<String, u64>,
    /// The most requests counted toward the global limit that arrived in
    /// any 1 s window.
    pub max_global_window: u32,
    /// Arrivals beyond the global limit (each got a global 429).
    pub global_overage: u64,
    /// Requests beyond a bucket's limit, by `hash major` (each got a 429 of
    /// scope user).
    pub bucket_overage: BTreeMap<String, u64>,
    /// Requests that hit a hidden sublimit (429 of scope user).
    pub sublimit_hits: u64,
    /// Requests that arrived during a global pause after the grace.
    pub global_block_violations: u64,
    /// Requests that arrived during a shared-resource pause after the grace.
    pub shared_block_violations: u64,
    /// 401, 403 and non-shared 429 responses.
    pub invalid: u64,
    /// Interaction callbacks sent after the 3 s window.
    pub late_callbacks: u64,
    /// Second callbacks for one interaction (answered 40060).
    pub duplicate_callbacks: u64,
    /// Bot routes called without the right `Authorization`.
    pub unauthorized: u64,
}

/// One request as the rate limiter saw it.
#[derive(Debug, Clone)]
pub struct RestArrival {
    /// Route template, e.g. `POST /channels/{}/messages`.
    pub route: &'static str,
    /// Top-level resource id (channel, guild, webhook, interaction).
    pub major: String,
    /// When it arrived.
    pub at: Instant,
    /// Whether it carried the bot's `Authorization`.
    pub bot_auth: bool,
    /// Whether it counted toward the global limit.
    pub counted: bool,
    /// Status answered.
    pub status: u16,
    /// The 429's scope, when one was answered.
    pub scope: Option<&'static str>,
}

/// A rate-limit bucket definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketDef {
    /// Hash sent in `X-RateLimit-Bucket`.
    pub(crate) hash: &'static str,
    pub(crate) limit: u32,
    pub(crate) window: Duration,
    pub(crate) kind: WindowKind,
    /// A second hash the bucket header alternates with (hash cycling,
    /// api-docs #1295); the limit is one counter.
    pub(crate) alternate: Option<&'static str>,
}

#[derive(Debug, Default)]
struct BucketState {
    window_end: Option<Instant>,
    used: u32,
    log: VecDeque<Instant>,
    flip: bool,
}

/// The headers a response carries, as name/value pairs.
pub(crate) type Headers = Vec<(&'static str, String)>;

/// The decision for one request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Serve it, adding these headers.
    Pass(Headers),
    /// Answer a 429 with this scope, wait and headers.
    Limited {
        scope: &'static str,
        retry_after: Duration,
        headers: Headers,
        global: bool,
    },
    /// Answer this status (injected).
    Status(u16),
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn reset_epoch(after: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    secs(now + after)
}

/// The simulator's REST rate-limit state.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    buckets: HashMap<(&'static str, String), BucketState>,
    sublimits: HashMap<String, VecDeque<Instant>>,
    global_log: VecDeque<Instant>,
    global_block: Option<(Instant, Instant)>,
    shared_blocks: HashMap<String, (Instant, Instant)>,
    faults: Vec<RestFault>,
    pub(crate) stats: RestStats,
    pub(crate) arrivals: Vec<RestArrival>,
}

/// What the request is, for [`Limits::check`].
pub(crate) struct Request<'a> {
    pub(crate) route: &'static str,
    pub(crate) path: &'a str,
    pub(crate) major: &'a str,
    pub(crate) bucket: Option<BucketDef>,
    pub(crate) counted: bool,
    pub(crate) bot_auth: bool,
    /// A hidden sublimit hit by this request: (key, limit, window).
    pub(crate) sublimit: Option<(String, u32, Duration)>,
}

impl Limits {
    pub(crate) fn inject(&mut self, fault: RestFault) {
        self.faults.push(fault);
    }

    fn take_fault(&mut self, path: &str, counted: bool) -> Option<RestFault> {
        let i = self.faults.iter().position(|f| match f {
            RestFault::Global429 { .. } => counted,
            RestFault::Shared429 { path: p, .. } | RestFault::Status { path: p, .. } => {
                path.starts_with(p.as_str())
            }
        })?;
        match &mut self.faults[i] {
            RestFault::Status {
                count,
                status,
                path,
            } if *count > 1 => {
                *count -= 1;
                Some(RestFault::Status {
                    path: path.clone(),
                    status: *status,
                    count: 1,
                })
            }
            _ => Some(self.faults.remove(i)),
        }
    }

    /// Decides one request arriving at `now`; also returns the index of
    /// its [`RestArrival`] record (whose status the caller may correct).
    pub(crate) fn check(
        &mut self,
        req: &Request<'_>,
        now: Instant,
        global_limit: u32,
        grace: Duration,
    ) -> (Verdict, usize) {
        self.stats.requests += 1;
        let verdict = self.decide(req, now, global_limit, grace);
        let (status, scope) = match &verdict {
            Verdict::Pass(_) => (200, None),
            Verdict::Limited { scope, .. } => (429, Some(*scope)),
            Verdict::Status(s) => (*s, None),
        };
        if let Some(scope) = scope {
            *self.stats.rate_limited.entry(scope.to_owned()).or_default() += 1;
            if scope != "shared" {
                self.stats.invalid += 1;
            }
        }
        self.arrivals.push(RestArrival {
            route: req.route,
            major: req.major.to_owned(),
            at: now,
            bot_auth: req.bot_auth,
            counted: req.counted,
            status,
            scope,
        });
        (verdict, self.arrivals.len() - 1)
    }

    fn decide(
        &mut self,
        req: &Request<'_>,
        now: Instant,
        global_limit: u32,
        grace: Duration,
    ) -> Verdict {
        // Global pause (an earlier global 429).
        if req.counted
            && let Some((since, until)) = self.global_block.filter(|&(_, until)| now < until)
        {
            if now > since + grace {
                self.stats.global_block_violations += 1;
            }
            return global_429(until - now);
        }
        // The global limit, by arrival.
        if req.counted {
            while self
                .global_log
                .front()
                .is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.global_log.pop_front();
            }
            self.global_log.push_back(now);
            let count = u32::try_from(self.global_log.len()).unwrap_or(u32::MAX);
            self.stats.max_global_window = self.stats.max_global_window.max(count);
            if count > global_limit {
                self.stats.global_overage += 1;
                let oldest = self.global_log[0];
                return global_429(
                    (oldest + Duration::from_secs(1)).saturating_duration_since(now),
                );
            }
        }
        // Shared-resource pause.
        if let Some(&(since, until)) = self.shared_blocks.get(req.major)
            && now < until
        {
            if now > since + grace {
                self.stats.shared_block_violations += 1;
            }
            return shared_429(until - now);
        }
        match self.take_fault(req.path, req.counted) {
            Some(RestFault::Global429 { retry_after }) => {
                self.global_block = Some((now, now + retry_after));
                return global_429(retry_after);
            }
            Some(RestFault::Shared429 { retry_after, .. }) => {
                self.shared_blocks
                    .insert(req.major.to_owned(), (now, now + retry_after));
                return shared_429(retry_after);
            }
            Some(RestFault::Status { status, .. }) => return Verdict::Status(status),
            None => {}
        }
        let Some(def) = req.bucket else {
            return Verdict::Pass(Vec::new());
        };
        let state = self
            .buckets
            .entry((def.hash, req.major.to_owned()))
            .or_default();
        let (allowed, remaining, reset_after) = match def.kind {
            WindowKind::Fixed => {
                if state.window_end.is_none_or(|end| now >= end) {
                    state.window_end = Some(now + def.window);
                    state.used = 0;
                }
                let end = state.window_end.unwrap_or(now);
                let allowed = state.used < def.limit;
                if allowed {
                    state.used += 1;
                }
                (allowed, def.limit - state.used, end - now)
            }
            WindowKind::Sliding => {
                while state
                    .log
                    .front()
                    .is_some_and(|&t| now.duration_since(t) >= def.window)
                {
                    state.log.pop_front();
                }
                let allowed = (state.log.len() as u64) < u64::from(def.limit);
                if allowed {
                    state.log.push_back(now);
                }
                let used = u32::try_from(state.log.len()).unwrap_or(u32::MAX);
                let reset = state.log.front().map_or(def.window, |&t| {
                    (t + def.window).saturating_duration_since(now)
                });
                (allowed, def.limit.saturating_sub(used), reset)
            }
        };
        let hash = match def.alternate {
            Some(other) => {
                state.flip = !state.flip;
                if state.flip { def.hash } else { other }
            }
            None => def.hash,
        };
        let headers: Headers = vec![
            ("x-ratelimit-bucket", hash.to_owned()),
            ("x-ratelimit-limit", def.limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset_epoch(reset_after)),
            ("x-ratelimit-reset-after", secs(reset_after)),
        ];
        if !allowed {
            *self
                .stats
                .bucket_overage
                .entry(format!("{} {}", def.hash, req.major))
                .or_default() += 1;
            let mut headers = headers;
            headers.push(("x-ratelimit-scope", "user".to_owned()));
            return Verdict::Limited {
                scope: "user",
                retry_after: reset_after,
                headers,
                global: false,
            };
        }
        if let Some((key, limit, window)) = &req.sublimit {
            let log = self.sublimits.entry(key.clone()).or_default();
            while log
                .front()
                .is_some_and(|&t| now.duration_since(t) >= *window)
            {
                log.pop_front();
            }
            if log.len() as u64 >= u64::from(*limit) {
                self.stats.sublimit_hits += 1;
                let retry = (log[0] + *window).saturating_duration_since(now);
                let mut headers = headers;
                headers.push(("x-ratelimit-scope", "user".to_owned()));
                return Verdict::Limited {
                    scope: "user",
                    retry_after: retry,
                    headers,
                    global: false,
                };
            }
            log.push_back(now);
        }
        Verdict::Pass(headers)
    }
}

fn global_429(retry_after: Duration) -> Verdict {
    Verdict::Limited {
        scope: "global",
        retry_after,
        headers: vec![
            ("x-ratelimit-global", "true".to_owned()),
            ("x-ratelimit-scope", "global".to_owned()),
        ],
        global: true,
    }
}

fn shared_429(retry_after: Duration) -> Verdict {
    Verdict::Limited {
        scope: "shared",
        retry_after,
        headers: vec![("x-ratelimit-scope", "shared".to_owned())],
        global: false,
    }
}

/// The `Retry-After` header value: whole seconds, rounded up.
pub(crate) fn retry_after_header(wait: Duration) -> String {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1).to_string()
}

/// The 429 body: `{"message", "retry_after", "global"}` (+ `code` 40062
/// for shared limits).
pub(crate) fn body_429(scope: &str, wait: Duration, global: bool) -> String {
    let mut body = serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": (wait.as_secs_f64() * 1000.0).ceil() / 1000.0,
        "global": global,
    });
    if scope == "shared" {
        body["code"] = serde_json::json!(40062);
        body["message"] = serde_json::json!("Service resource is being rate limited.");
    }
    body.to_string()
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
