//! The identify queue: who may send Identify, and when.
//!
//! Discord allows `max_concurrency` identifies per 5 s, counted per bucket
//! `shard_id % max_concurrency`, and a daily number of session starts
//! (`session_start_limit`); going over the daily limit resets the bot's
//! token. A bucket is held from the moment a shard may identify until its
//! READY (or the connection's failure), because a second identify in the
//! same bucket before READY is answered with op 9 (Kord PR #693).
//!
//! This queue works inside one process: one FIFO lock per bucket, so shards
//! identify in the order they asked. Coordination across processes through
//! Redis builds on the same interface in a later change.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Minimum spacing between two identifies of the same bucket.
pub const IDENTIFY_SPACING: Duration = Duration::from_secs(5);

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

/// Hands out identify permits, one bucket at a time.
#[derive(Debug, Clone)]
pub struct IdentifyQueue {
    buckets: Arc<[Arc<Mutex<Instant>>]>,
    daily: Arc<std::sync::Mutex<Daily>>,
    spacing: Duration,
}

#[derive(Debug)]
struct Daily {
    total: u32,
    remaining: u32,
    resets_at: Instant,
}

/// Permission to identify one shard; hold it until READY or failure.
#[derive(Debug)]
pub struct IdentifyPermit {
    _bucket: OwnedMutexGuard<Instant>,
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
        }
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
        let mut next_allowed = bucket.lock_owned().await;
        tokio::time::sleep_until(*next_allowed).await;
        self.take_session_start(shard_id).await;
        *next_allowed = Instant::now() + self.spacing;
        IdentifyPermit {
            _bucket: next_allowed,
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
        assert_eq!(
            granted,
            [Duration::ZERO, IDENTIFY_SPACING, IDENTIFY_SPACING * 2]
        );
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
        assert_eq!(Instant::now() - start, IDENTIFY_SPACING);
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
