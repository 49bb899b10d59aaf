//! Rosters: a Redis copy of a set of user ids whose truth is in Postgres,
//! so the hottest events (every message, every reaction) can ask "is this
//! user one of them?" in one round trip instead of a transaction.
//!
//! A roster is loaded whole from Postgres when it is missing, marked as
//! loaded by a sentinel member, and expires after a TTL so a change that
//! never reached Redis heals by itself. Members are only ever added, by
//! the load and by the writer that commits a new member; a load racing
//! that writer cannot lose the member, because both only add.
//!
//! A roster is a filter in front of Postgres, not its replacement: callers
//! still check Postgres inside the transaction that writes.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{State, StateError, ms};

/// The member that marks a roster as completely loaded.
const LOADED: &str = "loaded";
/// Ids per SADD when loading, so no single command grows without bound.
const LOAD_CHUNK: usize = 10_000;

/// Adds a member; a key that did not exist gets the TTL (without the
/// sentinel, so the next reader still loads it whole).
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
",
    )
});

impl State {
    fn roster_key(&self, name: &str) -> String {
        self.key(&format!("r:{name}"), "")
    }

    /// Whether each of `ids` is in roster `name`; `None` when the roster is
    /// not loaded (the caller loads it with [`State::roster_load`]).
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn roster_contains(
        &self,
        name: &str,
        ids: &[u64],
    ) -> Result<Option<Vec<bool>>, StateError> {
        let mut cmd = redis::cmd("SMISMEMBER");
        cmd.arg(self.roster_key(name)).arg(LOADED);
        for id in ids {
            cmd.arg(*id);
        }
        let found: Vec<bool> = self.run(cmd).await?;
        match found.split_first() {
            Some((true, members)) if members.len() == ids.len() => Ok(Some(members.to_vec())),
            Some((false, _)) => Ok(None),
            _ => Err(StateError::Reply(format!(
                "SMISMEMBER returned {} answers for {} members",
                found.len(),
                ids.len() + 1
            ))),
        }
    }

    /// Loads roster `name` with `ids` (everyone Postgres holds) for `ttl`,
    /// atomically, so no reader sees it half loaded.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn roster_load(
        &self,
        name: &str,
        ids: &[u64],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = self.roster_key(name);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in ids.chunks(LOAD_CHUNK) {
            pipe.cmd("SADD").arg(&key).arg(chunk).ignore();
        }
        pipe.cmd("SADD")
            .arg(&key)
            .arg(LOADED)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms(ttl))
            .ignore();
        self.run_pipe(&pipe).await
    }

    /// Adds `id` to roster `name` after Postgres committed it.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable; the roster then lacks the
    /// member until it expires and is loaded again.
    pub async fn roster_add(&self, name: &str, id: u64, ttl: Duration) -> Result<(), StateError> {
        let key = self.roster_key(name);
        let mut invocation = ADD.prepare_invoke();
        invocation.key(key).arg(id).arg(ms(ttl));
        let _: i64 = self.script(&invocation).await?;
        Ok(())
    }
}
