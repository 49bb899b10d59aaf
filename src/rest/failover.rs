//! The limiter's Redis failure policy (PROTOCOL.md Part 3, "Redis failure
//! policy"): falling back to the local limiter, heartbeats, and handing
//! back to Redis. A child module of `limiter.rs`, split out to keep each
//! file to one concern.
//!
//! - Any Redis error or timeout puts the replica on [`LocalLimiter`] at
//!   once: its share of the global limit, opening only once the other
//!   replicas count it as stale (3 s after its last heartbeat), so the two
//!   kinds of replicas never add up past the limit; `/readyz` turns false.
//! - While degraded, Redis is pinged every 250 ms. When it answers, new
//!   global-counted local grants stop, the local log drains (one window),
//!   what local responses taught is replayed into Redis, and the
//!   heartbeat resumes — which ends the others' reserve for this replica.
//!   That first heartbeat also puts back, as stale, the peers this replica
//!   saw before if Redis lost them (a restart without persistence): they
//!   may still be on their local shares, and only a stale entry reserves
//!   those.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Denied, HEARTBEAT_EVERY, Limiter, Outcome, Permit, STALE_AFTER, lock};
use crate::rest::keys::BucketId;
use crate::rest::local::{LocalDecision, LocalLimiter};
use crate::rest::route::Route;

/// The local limiter's name for a route's bucket.
fn local_key(route: &Route, bucket: &BucketId) -> String {
    match bucket {
        BucketId::Hash(h) => format!("h:{h}:{}", route.major),
        _ => format!("r:{}:{}", route.key, route.major),
    }
}

impl Limiter {
    /// Switches this replica to local limits (once) and logs why.
    pub(super) fn enter_degraded(&self, why: &str) {
        self.metrics.redis_errors.inc();
        if self.degraded.swap(true, Ordering::Relaxed) {
            return;
        }
        let replicas = self.replicas.load(Ordering::Relaxed).max(1);
        let share =
            LocalLimiter::share_of(self.cfg.global_limit, self.cfg.local_fraction, replicas);
        let closed_until = *lock(&self.last_heartbeat) + STALE_AFTER + self.cfg.margin;
        *lock(&self.local) = LocalLimiter::new(share, replicas, self.cfg.margin, closed_until);
        self.metrics.set_redis_up(false);
        tracing::error!(
            "cannot reach Redis at {}: {why}; using local limits ({share} global requests/s on this replica) until it is back",
            self.redis_url
        );
    }

    /// One try on the local limiter: a permit, or how long to wait.
    ///
    /// # Errors
    ///
    /// [`Denied`] when the wait is past the deadline.
    pub(super) fn acquire_local(
        &self,
        route: &Route,
        ticket: u64,
        deadline: Instant,
        now: Instant,
    ) -> Result<Result<Permit, Duration>, Denied> {
        let cached = self.cached(route);
        let decision = lock(&self.local).try_acquire(
            &local_key(route, &cached.bucket),
            &route.major,
            route.kind.counts_globally(),
            cached.limit,
            ticket,
            deadline - now + Duration::from_secs(1),
            now,
        );
        match decision {
            LocalDecision::Go => Ok(Ok(Permit {
                id: String::new(),
                ticket,
                bucket: cached.bucket,
                local: true,
            })),
            LocalDecision::Wait(wait) if now + wait > deadline => Err(Denied {
                retry_after: wait,
                reason: "local_limit".into(),
            }),
            LocalDecision::Wait(wait) => Ok(Err(wait)),
        }
    }

    pub(super) fn release_local(&self, route: &Route, permit: &Permit, outcome: &Outcome) {
        let bucket_key = local_key(route, &permit.bucket);
        let local_outcome = (outcome.status != 0).then(|| outcome.local());
        lock(&self.local).release(
            &bucket_key,
            &route.major,
            permit.ticket,
            local_outcome.as_ref(),
            Instant::now(),
        );
        if outcome.status != 0 {
            lock(&self.recent_local).insert(
                (route.key.clone(), route.major.clone()),
                (route.clone(), permit.bucket.clone(), outcome.clone()),
            );
        }
    }

    /// Keeps the replica's heartbeat fresh while Redis answers, and brings
    /// it back from local limits when Redis returns. Runs until aborted.
    pub async fn maintain(self: Arc<Self>) {
        loop {
            if self.degraded() {
                self.try_recover().await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            } else {
                if let Err(e) = self.beat(false).await {
                    self.enter_degraded(&e);
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        }
    }

    /// Logs that Redis is still unreachable, at most every 30 s.
    fn log_unreachable(&self, why: &str) {
        let mut last = lock(&self.last_unreachable_log);
        let now = Instant::now();
        if last.is_none_or(|at| now >= at + Duration::from_secs(30)) {
            *last = Some(now);
            tracing::error!(
                "cannot reach Redis at {}: {why}; on local limits, retrying",
                self.redis_url
            );
        }
    }

    /// Refreshes this replica's heartbeat; learns which replicas exist.
    /// With `restore_peers`, the peers seen before are put back as stale
    /// if Redis has lost them (see `lua/heartbeat.lua`).
    pub(super) async fn beat(&self, restore_peers: bool) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut call = self.heartbeat.prepare_invoke();
        call.key(self.keys.replicas()).arg(&self.replica);
        if restore_peers {
            for peer in lock(&self.peers).iter() {
                call.arg(peer);
            }
        }
        let reply = tokio::time::timeout(
            self.cfg.redis_timeout,
            call.invoke_async::<(u32, u32, Vec<String>)>(&mut conn),
        )
        .await;
        match reply {
            Ok(Ok((total, _live, ids))) => {
                self.replicas.store(total.max(1), Ordering::Relaxed);
                *lock(&self.peers) = ids.into_iter().filter(|id| *id != self.replica).collect();
                *lock(&self.last_heartbeat) = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.cfg.redis_timeout)),
        }
    }

    /// One attempt to hand back to Redis (see the module docs).
    pub(super) async fn try_recover(&self) {
        let mut conn = self.conn.clone();
        let ping = tokio::time::timeout(
            self.cfg.redis_timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return self.log_unreachable(&e.to_string()),
            Err(_) => {
                return self
                    .log_unreachable(&format!("no answer within {:?}", self.cfg.redis_timeout));
            }
        }
        // Stop granting global-counted permits locally, and wait until
        // the ones granted have left the window (Redis does not know them).
        let now = Instant::now();
        let drained = {
            let mut local = lock(&self.local);
            local.close_global(now + Duration::from_secs(5));
            local.drained(now)
        };
        if !drained {
            return;
        }
        let recent: Vec<_> = lock(&self.recent_local).drain().map(|(_, v)| v).collect();
        for (route, bucket, outcome) in recent {
            if self
                .release_redis(&route, 0, "", &bucket, &outcome)
                .await
                .is_err()
            {
                return;
            }
        }
        // Peers may still be on their local shares; if Redis lost their
        // heartbeats (restarted empty), put them back so they stay reserved.
        if self.beat(true).await.is_err() {
            return;
        }
        self.degraded.store(false, Ordering::Relaxed);
        self.metrics.set_redis_up(true);
        tracing::info!("Redis at {} answers; shared limits in use", self.redis_url);
    }
}
