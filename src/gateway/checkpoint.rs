//! Session checkpoints in Redis: what lets a restarted ingestor resume.
//!
//! Each shard's [`Checkpoint`] (session id, resume URL, confirm watermark)
//! is one Redis hash, `{prefix}:gateway:checkpoint:{total}:{id}`. The writer
//! saves every changed checkpoint in one pipelined round trip per tick
//! (default 250 ms), so a crash loses at most a tick of checkpoint progress
//! and the event rate never turns into a Redis rate. On start, a shard with
//! a checkpoint resumes it, and Discord replays everything after the
//! watermark — exactly what the broker had not confirmed.
//!
//! Redis being down degrades checkpointing only: the writer logs, counts
//! the failure and keeps the checkpoints dirty, so they catch up on the
//! first tick after Redis returns. Ingestion never waits on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use super::progress::{Checkpoint, ShardProgress};
use super::shard::ShardId;
use crate::metrics::Metrics;

/// How long a checkpoint outlives its last update. Discord keeps a
/// session resumable for minutes; a day keeps Redis tidy without cutting
/// any realistic restart short.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Opens a lazily connecting, self-reconnecting Redis handle with short
/// timeouts, so a Redis outage shows up as fast errors, not stalls.
///
/// # Errors
///
/// A malformed `REDIS_URL`.
pub fn connect_redis(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads and writes checkpoints.
#[derive(Clone)]
pub struct CheckpointStore {
    redis: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl CheckpointStore {
    /// A store under `prefix` (`ARRAKIS_REDIS_PREFIX`).
    #[must_use]
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
        }
    }

    fn key(&self, shard: ShardId) -> String {
        format!(
            "{}:gateway:checkpoint:{}:{}",
            self.prefix, shard.total, shard.number
        )
    }

    /// Loads the checkpoints of `shards`, in order.
    ///
    /// # Errors
    ///
    /// Redis errors.
    pub async fn load(&self, shards: &[ShardId]) -> redis::RedisResult<Vec<Option<Checkpoint>>> {
        let mut pipe = redis::pipe();
        for &shard in shards {
            pipe.hgetall(self.key(shard));
        }
        let mut redis = self.redis.clone();
        let maps: Vec<std::collections::HashMap<String, String>> =
            pipe.query_async(&mut redis).await?;
        Ok(maps.into_iter().map(|m| parse(&m)).collect())
    }

    /// Saves checkpoints in one round trip.
    ///
    /// # Errors
    ///
    /// Redis errors.
    pub async fn save(&self, items: &[(ShardId, Checkpoint)]) -> redis::RedisResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (shard, cp) in items {
            let key = self.key(*shard);
            pipe.hset_multiple(
                &key,
                &[
                    ("session_id", cp.session_id.to_string()),
                    ("resume_url", cp.resume_url.to_string()),
                    ("seq", cp.seq.to_string()),
                    ("started_at_ms", cp.started_at_ms.to_string()),
                ],
            )
            .ignore();
            pipe.pexpire(&key, i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX))
                .ignore();
        }
        let mut redis = self.redis.clone();
        pipe.query_async::<()>(&mut redis).await
    }

    /// Deletes a shard's checkpoint (tests and operators resetting a shard).
    ///
    /// # Errors
    ///
    /// Redis errors.
    pub async fn clear(&self, shard: ShardId) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        redis.del::<_, ()>(self.key(shard)).await
    }
}

fn parse(map: &std::collections::HashMap<String, String>) -> Option<Checkpoint> {
    let session_id = map
        .get("session_id")
        .filter(|s| !s.is_empty() && s.len() <= 128)?;
    let resume_url = map
        .get("resume_url")
        .filter(|u| u.starts_with("ws://") || u.starts_with("wss://"))?;
    Some(Checkpoint {
        session_id: session_id.as_str().into(),
        resume_url: resume_url.as_str().into(),
        seq: map.get("seq")?.parse().ok()?,
        started_at_ms: map
            .get("started_at_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// Saves changed checkpoints on a fixed tick.
#[derive(Debug)]
pub struct CheckpointWriter {
    store: CheckpointStore,
    shards: Vec<(ShardId, Arc<ShardProgress>, u64)>,
    metrics: Metrics,
    failing: bool,
}

impl CheckpointWriter {
    /// A writer for these shards.
    #[must_use]
    pub fn new(
        store: CheckpointStore,
        shards: Vec<(ShardId, Arc<ShardProgress>)>,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            shards: shards.into_iter().map(|(id, p)| (id, p, 0)).collect(),
            metrics,
            failing: false,
        }
    }

    /// Saves every checkpoint that changed since the last successful save.
    ///
    /// # Errors
    ///
    /// Redis errors; the checkpoints stay dirty and go out next time.
    pub async fn flush(&mut self) -> redis::RedisResult<usize> {
        let mut batch = Vec::new();
        let mut versions = Vec::new();
        for (i, (id, progress, saved)) in self.shards.iter().enumerate() {
            if let Some((checkpoint, version)) = progress.checkpoint()
                && version != *saved
            {
                batch.push((*id, checkpoint));
                versions.push((i, version));
            }
        }
        self.store.save(&batch).await?;
        for (i, version) in versions {
            self.shards[i].2 = version;
        }
        Ok(batch.len())
    }

    /// Flushes every `interval`, and at once when `new_session` fires,
    /// until `stop` turns true; then once more.
    pub async fn run(
        mut self,
        interval: Duration,
        new_session: Arc<tokio::sync::Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = new_session.notified() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            self.flush_logged().await;
            if stopping {
                return;
            }
        }
    }

    async fn flush_logged(&mut self) {
        match tokio::time::timeout(Duration::from_secs(2), self.flush()).await {
            Ok(Ok(saved)) => {
                if self.failing {
                    tracing::info!("checkpoints are being saved to Redis again");
                    self.failing = false;
                }
                self.metrics.checkpoint_saved(saved);
            }
            Ok(Err(err)) => self.failed(&err.to_string()),
            Err(_) => self.failed("no answer within 2 s"),
        }
    }

    fn failed(&mut self, why: &str) {
        self.metrics.checkpoint_failed();
        if !self.failing {
            tracing::warn!(
                "cannot save session checkpoints to Redis ({why}); ingestion continues, checkpoints catch up when Redis is back"
            );
            self.failing = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_parse_only_when_complete() {
        let mut m = std::collections::HashMap::new();
        assert!(parse(&m).is_none());
        m.insert("session_id".into(), "abc".into());
        m.insert("resume_url".into(), "wss://r.example".into());
        assert!(parse(&m).is_none());
        m.insert("seq".into(), "42".into());
        let cp = parse(&m).unwrap();
        assert_eq!(cp.seq, 42);
        assert_eq!(&*cp.resume_url, "wss://r.example");
        m.insert("resume_url".into(), "http://nope".into());
        assert!(parse(&m).is_none());
    }
}
