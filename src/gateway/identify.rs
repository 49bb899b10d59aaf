//! The identify queue: who may send Identify, and when.
//!
//! Discord allows `max_concurrency` identifies per 5 s, counted per bucket
//! `shard_id % max_concurrency`, and a daily number of session starts
//! (`session_start_limit`); going over the daily limit resets the bot's
//! token. A bucket is held from the moment a shard may identify until its
//! READY (or the connection's failure), because a second identify in the
//! same bucket before READY is answered with op 9 (Kord PR #693).
//!
//! Inside one process each bucket is a FIFO lock, so shards identify in the
//! order they asked. With Redis (the default when several processes share
//! a bot), the head of each local bucket then takes the bucket in Redis:
//! a lease held until READY or failure and closed for 5 s after the
//! identify, granted to the lowest waiting shard id first (start-up in
//! bucket order), with the daily session-start count shared too. A crashed
//! holder's lease expires (30 s), and a dead waiter drops out after 2 s.
//! If Redis cannot be reached the queue falls back to the in-process rules
//! and says so: a second process may then identify in the same bucket, and
//! Discord answers that with op 9 (a retry), never with a token reset.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Minimum spacing between two identifies of the same bucket.
pub const IDENTIFY_SPACING: Duration = Duration::from_secs(5);
/// Added to the spacing: Discord counts identifies as they arrive, and two
/// sends exactly 5 s apart can arrive closer than that.
pub const SPACING_MARGIN: Duration = Duration::from_millis(250);

/// The identify allowance from `GET /gateway/bot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStartLimit {
    /// Session starts allowed per period.
    pub total: u32,
    /// Session starts left in this period.
    pub remaining: u32,
    /// Until the period resets.
    pub reset_after: Duration,
    /// Identify buckets per 5 s.
    pub max_concurrency: u32,
}

/// How long a process may hold a bucket in Redis before it is presumed dead.
const REDIS_LEASE: Duration = Duration::from_secs(30);
/// How long a waiting shard counts as alive without polling again.
const WAITER_TTL: Duration = Duration::from_secs(2);
/// Longest pause between two polls of a busy bucket.
const MAX_POLL: Duration = Duration::from_millis(250);

/// Hands out identify permits, one bucket at a time.
#[derive(Debug, Clone)]
pub struct IdentifyQueue {
    buckets: Arc<[Arc<Mutex<Instant>>]>,
    daily: Arc<std::sync::Mutex<Daily>>,
    spacing: Duration,
    redis: Option<RedisCoordinator>,
}

/// Identify coordination through Redis.
#[derive(Clone)]
struct RedisCoordinator {
    redis: ConnectionManager,
    prefix: Arc<str>,
    max_concurrency: u32,
    limit: SessionStartLimit,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    acquire: redis::Script,
    release: redis::Script,
    take_start: redis::Script,
}

#[derive(Debug)]
struct Daily {
    total: u32,
    remaining: u32,
    resets_at: Instant,
}

/// Permission to identify one shard; hold it until READY or failure.
///
/// The bucket stays closed until the spacing has passed since the identify
/// was sent ([`mark_sent`](Self::mark_sent)), counted when the permit drops.
#[derive(Debug)]
pub struct IdentifyPermit {
    bucket: OwnedMutexGuard<Instant>,
    lease: Option<RedisLease>,
    granted_at: Instant,
    sent_at: Option<Instant>,
    spacing: Duration,
}

#[derive(Debug)]
struct RedisLease {
    coordinator: RedisCoordinator,
    key: String,
    token: String,
}

impl IdentifyPermit {
    /// Records when the identify went out (the first call counts); the
    /// spacing counts from here.
    pub fn mark_sent(&mut self, at: Instant) {
        self.sent_at.get_or_insert(at);
    }
}

/// Gives a Redis bucket back, closed for `closed_for`. Runs in the
/// background; if it never runs (the runtime is going away), the lease
/// expires on its own.
fn release_lease(lease: RedisLease, closed_for: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut redis = lease.coordinator.redis.clone();
        let released: redis::RedisResult<i64> = lease
            .coordinator
            .scripts
            .release
            .key(&lease.key)
            .arg(&lease.token)
            .arg(ms(closed_for))
            .invoke_async(&mut redis)
            .await;
        if let Err(err) = released {
            tracing::warn!(%err, "cannot release the identify bucket in Redis; it expires in {REDIS_LEASE:?}");
        }
    });
}

impl Drop for IdentifyPermit {
    fn drop(&mut self) {
        let sent = self.sent_at.unwrap_or(self.granted_at);
        let reopen_at = sent + self.spacing + SPACING_MARGIN;
        *self.bucket = reopen_at;
        let Some(lease) = self.lease.take() else {
            return;
        };
        release_lease(lease, reopen_at.saturating_duration_since(Instant::now()));
    }
}

impl IdentifyQueue {
    /// A queue for the allowance Discord reported at `now`.
    #[must_use]
    pub fn new(limit: SessionStartLimit, now: Instant) -> Self {
        Self::with_spacing(limit, now, IDENTIFY_SPACING)
    }

    /// As [`new`](Self::new) with a custom bucket spacing (tests).
    #[must_use]
    pub fn with_spacing(limit: SessionStartLimit, now: Instant, spacing: Duration) -> Self {
        let buckets = (0..limit.max_concurrency.max(1))
            .map(|_| Arc::new(Mutex::new(now)))
            .collect();
        Self {
            buckets,
            daily: Arc::new(std::sync::Mutex::new(Daily {
                total: limit.total,
                remaining: limit.remaining,
                resets_at: now + limit.reset_after,
            })),
            spacing,
            redis: None,
        }
    }

    /// Coordinates identifies with every other process sharing `redis`
    /// and `prefix` (`ARRAKIS_REDIS_PREFIX`).
    #[must_use]
    pub fn with_redis(
        mut self,
        redis: ConnectionManager,
        prefix: &str,
        limit: SessionStartLimit,
    ) -> Self {
        self.redis = Some(RedisCoordinator {
            redis,
            prefix: prefix.into(),
            max_concurrency: limit.max_concurrency.max(1),
            limit,
            scripts: Arc::new(Scripts {
                acquire: redis::Script::new(include_str!("lua/identify_acquire.lua")),
                release: redis::Script::new(include_str!("lua/identify_release.lua")),
                take_start: redis::Script::new(include_str!("lua/identify_take_start.lua")),
            }),
        });
        self
    }

    /// The bucket a shard identifies in.
    #[must_use]
    pub fn bucket_of(&self, shard_id: u32) -> usize {
        shard_id as usize % self.buckets.len()
    }

    /// Waits for this shard's turn, then for a session start to be left.
    ///
    /// The wait is cancel-safe: dropping the future gives up the place.
    pub async fn acquire(&self, shard_id: u32) -> IdentifyPermit {
        let bucket = self.buckets[self.bucket_of(shard_id)].clone();
        let next_allowed = bucket.lock_owned().await;
        tokio::time::sleep_until(*next_allowed).await;
        let lease = match &self.redis {
            Some(coordinator) => self.acquire_redis(coordinator, shard_id).await,
            None => None,
        };
        if lease.is_none() {
            self.take_session_start(shard_id).await;
        }
        IdentifyPermit {
            bucket: next_allowed,
            lease,
            granted_at: Instant::now(),
            sent_at: None,
            spacing: self.spacing,
        }
    }

    /// Takes the bucket and a session start in Redis; `None` when Redis
    /// failed and the in-process rules must do.
    async fn acquire_redis(&self, c: &RedisCoordinator, shard_id: u32) -> Option<RedisLease> {
        let bucket = shard_id % c.max_concurrency;
        let tag = format!(
            "{{{}:gateway:identify:{}:{bucket}}}",
            c.prefix, c.max_concurrency
        );
        let key = format!("{tag}:lease");
        let waiters = format!("{tag}:waiters");
        let token = format!("{shard_id}-{:016x}", rand::random::<u64>());
        let mut redis = c.redis.clone();
        loop {
            let reply: redis::RedisResult<(i64, i64)> = c
                .scripts
                .acquire
                .key(&key)
                .key(&waiters)
                .arg(shard_id)
                .arg(&token)
                .arg(ms(REDIS_LEASE))
                .arg(ms(WAITER_TTL))
                .invoke_async(&mut redis)
                .await;
            match reply {
                Ok((1, _)) => break,
                Ok((_, wait_ms)) => {
                    let wait = Duration::from_millis(u64::try_from(wait_ms.max(10)).unwrap_or(100))
                        .min(MAX_POLL);
                    tokio::time::sleep(wait.mul_f64(0.8 + rand::random::<f64>() * 0.4)).await;
                }
                Err(err) => {
                    tracing::warn!(shard = shard_id, %err, "cannot coordinate identify through Redis; using this process's queue only");
                    return None;
                }
            }
        }
        let lease = RedisLease {
            coordinator: c.clone(),
            key,
            token,
        };
        let starts_key = format!("{{{}:gateway:identify}}:session_starts", c.prefix);
        let reply: redis::RedisResult<(i64, i64)> = c
            .scripts
            .take_start
            .key(&starts_key)
            .arg(c.limit.remaining)
            .arg(ms(c.limit.reset_after))
            .invoke_async(&mut redis)
            .await;
        match reply {
            Ok((1, _)) => Some(lease),
            Ok((_, reset_ms)) => {
                let wait = Duration::from_millis(u64::try_from(reset_ms.max(1000)).unwrap_or(1000));
                tracing::error!(
                    shard = shard_id,
                    resets_in = ?wait,
                    "no session starts left today (session_start_limit, shared through Redis); refusing to identify until the reset, since going over resets the bot token"
                );
                // Let the bucket's other waiters see it free meanwhile.
                release_lease(lease, Duration::ZERO);
                tokio::time::sleep(wait).await;
                Box::pin(self.acquire_redis(c, shard_id)).await
            }
            Err(err) => {
                tracing::warn!(shard = shard_id, %err, "cannot count session starts in Redis; counting in this process");
                self.take_session_start(shard_id).await;
                Some(lease)
            }
        }
    }

    /// Session starts left today, as far as this process knows.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        self.daily.lock().map_or(0, |d| d.remaining)
    }

    async fn take_session_start(&self, shard_id: u32) {
        loop {
            let wait_until = {
                let mut daily = self
                    .daily
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                if now >= daily.resets_at && daily.remaining == 0 {
                    daily.remaining = daily.total;
                    daily.resets_at = now + Duration::from_secs(24 * 3600);
                }
                if daily.remaining > 0 {
                    daily.remaining -= 1;
                    return;
                }
                daily.resets_at
            };
            tracing::error!(
                shard = shard_id,
                resets_in = ?wait_until.saturating_duration_since(Instant::now()),
                "no session starts left today (session_start_limit); waiting for the reset instead of identifying, which would reset the bot token"
            );
            tokio::time::sleep_until(wait_until).await;
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_concurrency: u32, remaining: u32) -> SessionStartLimit {
        SessionStartLimit {
            total: 1000,
            remaining,
            reset_after: Duration::from_secs(3600),
            max_concurrency,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn same_bucket_identifies_are_five_seconds_apart() {
        let start = Instant::now();
        let queue = IdentifyQueue::new(limit(1, 1000), start);
        let mut granted = Vec::new();
        for shard in 0..3 {
            let permit = queue.acquire(shard).await;
            granted.push(Instant::now() - start);
            drop(permit);
        }
        let step = IDENTIFY_SPACING + SPACING_MARGIN;
        assert_eq!(granted, [Duration::ZERO, step, step * 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_identify_in_parallel() {
        let start = Instant::now();
        let queue = IdentifyQueue::new(limit(4, 1000), start);
        let permits: Vec<_> =
            futures_util::future::join_all((0..4).map(|s| queue.acquire(s))).await;
        assert_eq!(Instant::now(), start);
        drop(permits);
        queue.acquire(4).await;
        assert_eq!(Instant::now() - start, IDENTIFY_SPACING + SPACING_MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_is_held_until_the_permit_is_dropped() {
        let start = Instant::now();
        let queue = IdentifyQueue::new(limit(1, 1000), start);
        let permit = queue.acquire(0).await;
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move {
                queue.acquire(1).await;
                Instant::now()
            }
        });
        // READY takes 20 s: the next identify waits for it, not just 5 s.
        tokio::time::sleep(Duration::from_secs(20)).await;
        drop(permit);
        assert_eq!(waiter.await.unwrap() - start, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_identifies_than_remaining() {
        let start = Instant::now();
        let queue = IdentifyQueue::with_spacing(limit(16, 2), start, Duration::ZERO);
        queue.acquire(0).await;
        queue.acquire(1).await;
        assert_eq!(queue.remaining(), 0);
        let third = tokio::time::timeout(Duration::from_secs(3000), queue.acquire(2)).await;
        assert!(third.is_err(), "identified with no session starts left");
        // After the reset the allowance is back.
        queue.acquire(3).await;
        assert!(Instant::now() - start >= Duration::from_secs(3600));
    }
}
