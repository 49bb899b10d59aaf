//! The rate limiter shared by every proxy replica, in Redis (PROTOCOL.md
//! Part 3, improved where noted), with the local fallback of `local.rs`.
//!
//! Discord docs, "Rate Limits": a global limit per bot (50 requests/s by
//! default, interaction endpoints exempt), per-route buckets per top-level
//! resource named by `X-RateLimit-Bucket`, shared-scope limits, and the
//! invalid-request limit (10,000 401/403/429 per 10 minutes per IP).
//!
//! **Model.** Two atomic Lua scripts (`lua/acquire.lua`, `lua/release.lua`)
//! do all the bookkeeping on the Redis server's clock (`TIME`):
//!
//! - *Permits are entries in sliding logs* (ZSETs scored by grant time),
//!   one per bucket (hash + major) and one global. A bucket allows `limit`
//!   grants in any `window + margin`; the global log `N` in any
//!   `1 s + margin`. Part 3 proposed counters with a "remaining" and a
//!   reset time; a sliding log is simpler and is safe under both of
//!   Discord's models (fixed windows, and the sliding windows hikari
//!   reports since 2022): every fixed window is one of the intervals the log
//!   bounds. An entry is scored at its lease end while its request is in
//!   flight and re-scored at the answer's time by release.lua, so a permit
//!   counts from its grant until one window after its answer. Every
//!   arrival at Discord lies between the two, so *N per window by this
//!   count is N per window by arrival*, whatever the network or scheduling
//!   jitter (the burst test first failed on exactly that with plain grant
//!   times: 57 arrivals in one second). Entries age out by themselves, so
//!   a replica that dies holding permits leaks nothing: its entries end
//!   with their lease.
//! - *Unknown buckets* are discovered with one request in flight per
//!   (route, major): a lease (`SET PX`, the request's deadline plus a
//!   second) that the response releases — or that expires if the replica
//!   dies mid-request.
//! - *Responses only ever lower capacity*: the log is topped up with
//!   placeholder entries until it holds `limit − remaining`, and
//!   `Remaining: 0` blocks the bucket for `Reset-After + margin`. The
//!   window is the longest `Reset-After` seen for the route.
//! - *FIFO across replicas*: a request that cannot go takes a ticket
//!   (ZSET by arrival) in the bucket's queue, and in the global queue once
//!   its bucket is ready; it may go when fewer tickets are ahead of it than
//!   there are free slots. Tickets expire 3 s after their last poll, so a
//!   dead waiter drops out. The script answers with how long to wait, and
//!   rejects at once when that is past the caller's deadline (bounded
//!   waits, no thundering herd at reset).
//! - *429s by scope*: global → a global block; shared → the resource
//!   (major) pauses, not counted as invalid; user (should never happen) →
//!   the bucket pauses, a warning and a metric; non-JSON → Cloudflare ban,
//!   a long global block.
//! - *Invalid requests* (401, 403, non-shared 429) are counted in 10 s
//!   slots; a breaker sheds background traffic at 25 % of the limit, all
//!   but interaction traffic at 50 %, everything at 75 % — long before the
//!   ban at 10,000.
//! - *Hash cycling* (api-docs #1295): a route whose bucket changes twice in
//!   10 minutes gets a route-scoped bucket with the smallest limit and the
//!   longest window seen (Part 3 proposed checking every recent hash; one
//!   conservative bucket is simpler and no less safe). A route that answers
//!   three times without headers is marked "no limit" for an hour.
//!
//! **Redis failure policy.** Any Redis error or timeout switches this
//! replica to [`LocalLimiter`] at once and `/readyz` reports not-ready.
//! Replicas heartbeat into a ZSET every second; acquire.lua reserves the
//! local share of every replica not seen for 3 s, and a cut-off replica
//! sends nothing global-counted until those 3 s have passed — so replicas
//! on Redis and replicas on their shares never add up past the limit, even
//! in a partial partition. Back on Redis, a replica first waits until its
//! local windows have drained, replays what its local responses taught,
//! and only then heartbeats (which ends the others' reserve).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::headers::{RateLimitHeaders, Scope};
use super::keys::{BucketId, Keys};
use super::local::{LocalLimiter, LocalOutcome, LocalScope};
use super::metrics::ProxyMetrics;
use super::route::{Route, RouteKind};
use crate::config::redact_url;

/// A replica not seen for this long is stale (acquire.lua's constant).
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// How often a healthy replica heartbeats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Longest single sleep between polls (tickets live 3 s past a poll).
const MAX_POLL: Duration = Duration::from_secs(1);

/// Tickets allowed in one queue before newcomers are rejected.
const QUEUE_CAP: u32 = 4096;

/// Route-map answers that point elsewhere, in a row, before giving up.
const MAX_REMAPS: u32 = 4;

/// Routes cached locally before the cache is cleared.
const MAX_CACHED_ROUTES: usize = 10_000;

/// How the limiter is set up.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Key prefix (inside the hash tag); distinct per deployment or test.
    pub prefix: String,
    /// Global requests allowed per second, all replicas together.
    pub global_limit: u32,
    /// Added to every window and wait learned from Discord, and to the
    /// global 1 s window (Discord counts arrivals; jitter must not squeeze
    /// two windows' sends into one second).
    pub margin: Duration,
    /// Share of the global limit all replicas together may use while cut
    /// off from Redis.
    pub local_fraction: f64,
    /// The invalid-request limit the breaker protects (10,000 per 10 min).
    pub invalid_limit: u32,
    /// Longest wait for one Redis call before falling back to local limits.
    pub redis_timeout: Duration,
}

/// How urgent a request is, for the invalid-request breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Interaction callbacks and follow-ups: shed last.
    Interaction,
    /// Ordinary requests.
    Normal,
    /// Requests the caller marked as background: shed first.
    Background,
}

impl Class {
    fn wire(self) -> &'static str {
        match self {
            Class::Interaction => "0",
            Class::Normal => "1",
            Class::Background => "2",
        }
    }
}

/// acquire.lua's answer, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The permit is taken.
    Granted,
    /// Call again after this long.
    Wait(Duration, String),
    /// Cannot go before the deadline: try again after this long.
    Rejected(Duration, String),
    /// The route uses another bucket than expected.
    Remap(BucketId, Option<u32>, Option<Duration>),
}

impl Reply {
    /// Parses the script's reply (an array of strings and integers).
    ///
    /// # Errors
    ///
    /// A description of an unexpected reply (a script/code mismatch: our
    /// bug).
    pub fn parse(parts: &[String]) -> Result<Reply, String> {
        let ms = |i: usize| -> Result<Duration, String> {
            parts
                .get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_millis)
                .ok_or_else(|| format!("bad acquire reply {parts:?}"))
        };
        let text = |i: usize| parts.get(i).cloned().unwrap_or_default();
        match parts.first().map(String::as_str) {
            Some("1") => Ok(Reply::Granted),
            Some("2") => Ok(Reply::Wait(ms(1)?, text(2))),
            Some("3") => Ok(Reply::Rejected(ms(1)?, text(2))),
            Some("4") => Ok(Reply::Remap(
                BucketId::from_wire(&text(1)),
                parts.get(2).and_then(|s| s.parse().ok()),
                parts
                    .get(3)
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_millis),
            )),
            _ => Err(format!("bad acquire reply {parts:?}")),
        }
    }
}

/// A granted permit; hand it back to [`Limiter::release`] with the outcome.
#[derive(Debug, Clone)]
pub struct Permit {
    /// The request's ticket (stable across its attempts).
    pub ticket: u64,
    /// This grant's id (its entries in the logs).
    pub id: String,
    /// The bucket it was granted in.
    pub bucket: BucketId,
    /// Granted by the local fallback limiter.
    pub local: bool,
}

/// Why no permit: the request cannot be sent before its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// When trying again could succeed.
    pub retry_after: Duration,
    /// What it waits for: `bucket`, `global`, `shared`, `breaker`, ….
    pub reason: String,
}

/// What one attempt ended with.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
    /// The response's rate-limit headers.
    pub headers: RateLimitHeaders,
    /// For a 429: its scope and wait.
    pub limited: Option<(Scope, Duration)>,
}

impl Outcome {
    fn local(&self) -> LocalOutcome {
        LocalOutcome {
            remaining: self.headers.remaining,
            reset_after: self.headers.reset_after,
            limited: self.limited.map(|(scope, wait)| {
                let scope = match scope {
                    Scope::Global | Scope::Cloudflare => LocalScope::Global,
                    Scope::Shared => LocalScope::Shared,
                    Scope::User => LocalScope::Bucket,
                };
                (wait, scope)
            }),
        }
    }
}

/// What a response taught while on local limits, replayed into Redis on
/// recovery: the route, the bucket it was granted in, and the outcome.
type LocalLesson = (Route, BucketId, Outcome);

#[derive(Debug, Clone)]
struct CachedRoute {
    bucket: BucketId,
    limit: Option<(u32, Duration)>,
}

/// The shared limiter: Redis scripts plus the local fallback.
pub struct Limiter {
    conn: ConnectionManager,
    redis_url: String,
    acquire: Script,
    release: Script,
    heartbeat: Script,
    keys: Keys,
    cfg: LimiterConfig,
    replica: String,
    routes: Mutex<HashMap<String, CachedRoute>>,
    degraded: AtomicBool,
    replicas: AtomicU32,
    /// The other replicas' ids at the last heartbeat.
    peers: Mutex<Vec<String>>,
    last_heartbeat: Mutex<Instant>,
    local: Mutex<LocalLimiter>,
    recent_local: Mutex<HashMap<(String, String), LocalLesson>>,
    last_unreachable_log: Mutex<Option<Instant>>,
    metrics: Arc<ProxyMetrics>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("redis", &self.redis_url)
            .field("tag", &self.keys.tag())
            .field("degraded", &self.degraded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why the limiter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("REDIS_URL={url} is not a valid Redis URL: {detail}")]
pub struct LimiterError {
    url: String,
    detail: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

impl Limiter {
    /// A limiter on `redis_url` for the bot holding `token` (only a digest
    /// of it is used, for the key tag). Connects lazily: an unreachable
    /// Redis is reported by the first call, and the replica starts on local
    /// limits.
    ///
    /// # Errors
    ///
    /// [`LimiterError`] when the URL cannot be parsed.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the Redis connection manager spawns its
    /// reconnect task there).
    pub fn new(
        redis_url: &str,
        token: &str,
        cfg: LimiterConfig,
        metrics: Arc<ProxyMetrics>,
    ) -> Result<Self, LimiterError> {
        let shown = redact_url(redis_url);
        let client = redis::Client::open(redis_url).map_err(|e| LimiterError {
            url: shown.clone(),
            detail: e.to_string(),
        })?;
        let manager_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.redis_timeout))
            .set_response_timeout(Some(cfg.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_cfg).map_err(|e| {
            LimiterError {
                url: shown.clone(),
                detail: e.to_string(),
            }
        })?;
        let now = Instant::now();
        let share = LocalLimiter::share_of(cfg.global_limit, cfg.local_fraction, 1);
        Ok(Self {
            conn,
            redis_url: shown,
            acquire: Script::new(include_str!("lua/acquire.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
            keys: Keys::new(&cfg.prefix, token),
            replica: format!("{:016x}", rand::random::<u64>()),
            routes: Mutex::new(HashMap::new()),
            // Until the first heartbeat succeeds, this replica is on local
            // limits and nobody reserves its share: stay closed meanwhile.
            degraded: AtomicBool::new(true),
            replicas: AtomicU32::new(1),
            peers: Mutex::new(Vec::new()),
            last_heartbeat: Mutex::new(now),
            local: Mutex::new(LocalLimiter::new(share, 1, cfg.margin, now + STALE_AFTER)),
            recent_local: Mutex::new(HashMap::new()),
            last_unreachable_log: Mutex::new(None),
            metrics,
            cfg,
        })
    }

    /// The key names (for tests and tools).
    #[must_use]
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether this replica is on local limits (Redis unreachable).
    #[must_use]
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn cached(&self, route: &Route) -> CachedRoute {
        lock(&self.routes)
            .get(&route.key)
            .cloned()
            .unwrap_or(CachedRoute {
                bucket: BucketId::Discovery,
                limit: None,
            })
    }

    fn cache(&self, route: &Route, bucket: BucketId, limit: Option<(u32, Duration)>) {
        let mut routes = lock(&self.routes);
        if routes.len() >= MAX_CACHED_ROUTES && !routes.contains_key(&route.key) {
            routes.clear();
        }
        let entry = routes.entry(route.key.clone()).or_insert(CachedRoute {
            bucket: BucketId::Discovery,
            limit: None,
        });
        entry.bucket = bucket;
        if limit.is_some() {
            entry.limit = limit;
        }
    }

    /// Takes a permit for `route` before `deadline`, waiting in line as
    /// needed. `ticket` identifies the request across its attempts.
    ///
    /// # Errors
    ///
    /// [`Denied`] when the request cannot be sent before `deadline`.
    pub async fn acquire(
        &self,
        route: &Route,
        class: Class,
        ticket: u64,
        deadline: Instant,
    ) -> Result<Permit, Denied> {
        let ticket_id = format!("{ticket:016x}");
        let mut remaps = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Denied {
                    retry_after: Duration::from_millis(100),
                    reason: "deadline".into(),
                });
            }
            if self.degraded() {
                match self.acquire_local(route, ticket, deadline, now)? {
                    Ok(permit) => return Ok(permit),
                    Err(wait) => {
                        // Re-check often: Redis may come back meanwhile.
                        let wake = (now + wait.min(Duration::from_millis(250))).min(deadline);
                        tokio::time::sleep_until(wake).await;
                        continue;
                    }
                }
            }
            let cached = self.cached(route);
            let keys = self.keys.acquire(route, &cached.bucket);
            let budget = deadline - now;
            let lease = budget + Duration::from_secs(1);
            let mut call = self.acquire.prepare_invoke();
            for k in &keys {
                call.key(k);
            }
            let permit_id = format!("{ticket_id}:{:08x}", rand::random::<u32>());
            call.arg(cached.bucket.wire())
                .arg(&permit_id)
                .arg(&ticket_id)
                .arg(if route.kind.counts_globally() {
                    "1"
                } else {
                    "0"
                })
                .arg(if route.kind.bot_auth() { "1" } else { "0" })
                .arg(class.wire())
                .arg(millis(budget))
                .arg(millis(lease))
                .arg(self.cfg.global_limit)
                .arg(millis(Duration::from_secs(1) + self.cfg.margin))
                .arg(millis(self.cfg.margin))
                .arg(self.cfg.invalid_limit)
                .arg(self.cfg.local_fraction)
                .arg(QUEUE_CAP);
            let mut conn = self.conn.clone();
            let started = Instant::now();
            let reply = tokio::time::timeout(
                self.cfg.redis_timeout,
                call.invoke_async::<Vec<String>>(&mut conn),
            )
            .await;
            self.metrics
                .redis_latency
                .observe(started.elapsed().as_secs_f64());
            let parts = match reply {
                Ok(Ok(parts)) => parts,
                Ok(Err(e)) => {
                    self.enter_degraded(&e.to_string());
                    continue;
                }
                Err(_) => {
                    self.enter_degraded(&format!("no answer within {:?}", self.cfg.redis_timeout));
                    continue;
                }
            };
            match Reply::parse(&parts) {
                Ok(Reply::Granted) => {
                    return Ok(Permit {
                        id: permit_id,
                        ticket,
                        bucket: cached.bucket,
                        local: false,
                    });
                }
                Ok(Reply::Wait(wait, _reason)) => {
                    let jitter = wait.mul_f64(rand::random::<f64>() * 0.05);
                    let wake = (Instant::now() + (wait + jitter).min(MAX_POLL)).min(deadline);
                    tokio::time::sleep_until(wake).await;
                }
                Ok(Reply::Rejected(retry_after, reason)) => {
                    return Err(Denied {
                        retry_after,
                        reason,
                    });
                }
                Ok(Reply::Remap(bucket, limit, window)) => {
                    remaps += 1;
                    self.metrics.remaps.inc();
                    let limit = limit.zip(window);
                    self.cache(route, bucket, limit);
                    if remaps > MAX_REMAPS {
                        // The route's bucket keeps moving (hash cycling
                        // in progress): pause briefly instead of spinning.
                        remaps = 0;
                        let wake = (Instant::now() + Duration::from_millis(20)).min(deadline);
                        tokio::time::sleep_until(wake).await;
                    }
                }
                Err(e) => {
                    tracing::error!("limiter script: {e}");
                    self.enter_degraded(&e);
                }
            }
        }
    }

    /// Applies what an attempt taught (the response's headers, a 429, or
    /// no response at all) and frees the permit.
    pub async fn release(&self, route: &Route, permit: &Permit, outcome: &Outcome) {
        if let Some(hash) = &outcome.headers.bucket {
            let known = matches!(&self.cached(route).bucket, BucketId::Hash(h) if h == hash);
            if !known && matches!(self.cached(route).bucket, BucketId::Discovery) {
                let window = outcome
                    .headers
                    .reset_after
                    .unwrap_or(Duration::from_secs(1));
                let limit = outcome.headers.limit.map(|l| (l, window));
                self.cache(route, BucketId::Hash(hash.clone()), limit);
            }
        }
        if permit.local || self.degraded() {
            self.release_local(route, permit, outcome);
            return;
        }
        if let Err(e) = self
            .release_redis(route, permit.ticket, &permit.id, &permit.bucket, outcome)
            .await
        {
            self.enter_degraded(&e);
            self.release_local(route, permit, outcome);
        }
    }

    async fn release_redis(
        &self,
        route: &Route,
        ticket: u64,
        permit: &str,
        acquired: &BucketId,
        outcome: &Outcome,
    ) -> Result<(), String> {
        let h = &outcome.headers;
        let keys = self.keys.release(route, h.bucket.as_deref(), acquired);
        let mut call = self.release.prepare_invoke();
        for k in &keys {
            call.key(k);
        }
        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        let (scope, retry_after) = match outcome.limited {
            Some((scope, wait)) => (scope.as_str(), millis(wait)),
            None => ("", String::new()),
        };
        call.arg(format!("{ticket:016x}"))
            .arg(outcome.status)
            .arg(h.bucket.as_deref().unwrap_or(""))
            .arg(opt(h.limit))
            .arg(opt(h.remaining))
            .arg(h.reset_after.map(millis).unwrap_or_default())
            .arg(retry_after)
            .arg(scope)
            .arg(if route.kind.bot_auth() { "1" } else { "0" })
            .arg(if route.kind == RouteKind::Bot {
                "0"
            } else {
                "1"
            })
            .arg(millis(self.cfg.margin))
            .arg(permit);
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let reply = tokio::time::timeout(
            self.cfg.redis_timeout,
            call.invoke_async::<(i64, String)>(&mut conn),
        )
        .await;
        self.metrics
            .redis_latency
            .observe(started.elapsed().as_secs_f64());
        let (invalid, flags) = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {:?}", self.cfg.redis_timeout)),
        };
        self.metrics.invalid_requests.set(invalid);
        if flags.contains('y') {
            self.metrics.hash_cycles.inc();
            tracing::warn!(route = %route.key, "bucket hash keeps changing; using a route-scoped bucket");
        }
        if flags.contains('n') {
            tracing::info!(route = %route.key, "route sends no rate-limit headers; counting it globally only");
        }
        Ok(())
    }
}

#[path = "failover.rs"]
mod failover;

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
