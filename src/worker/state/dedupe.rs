//! One effect per message id across every worker.
//!
//! A claim is a lease (`SET NX PX`): the worker handling a message holds it
//! while the effect runs, then marks the id done for `keep`. A worker that
//! dies mid-effect holds nothing after the lease; a redelivery then finds
//! the id free (or done, if the effect finished before the crash).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{State, StateError, ms, pttl};

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours: run the effect.
    Acquired,
    /// The effect was done already: skip it.
    AlreadyDone,
    /// Another worker is on it; its lease ends within `remaining`.
    HeldByOther {
        /// Time left on the other worker's lease.
        remaining: Duration,
    },
}

const DONE: &str = "done";

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ok = redis.call('SET', KEYS[1], 'o:' .. ARGV[1], 'NX', 'PX', ARGV[2])
if ok then return {0, 0} end
local v = redis.call('GET', KEYS[1])
if v == 'done' then return {1, 0} end
if v == 'o:' .. ARGV[1] then return {0, 0} end
return {2, redis.call('PTTL', KEYS[1])}
",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == 'o:' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

impl State {
    fn dedupe_key(&self, message_id: &str) -> String {
        self.key("d", &format!(":{message_id}"))
    }

    /// Claims `message_id` for `owner` for `lease`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn claim(
        &self,
        message_id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Claim, StateError> {
        let key = self.dedupe_key(message_id);
        let (state, remaining): (i64, i64) = self
            .script(CLAIM.key(key).arg(owner).arg(ms(lease)))
            .await?;
        match state {
            0 => Ok(Claim::Acquired),
            1 => Ok(Claim::AlreadyDone),
            2 => Ok(Claim::HeldByOther {
                remaining: pttl(remaining),
            }),
            other => Err(StateError::Reply(format!("claim returned {other}"))),
        }
    }

    /// Marks `message_id` done, remembered for `keep`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn finish(
        &self,
        message_id: &str,
        _owner: &str,
        keep: Duration,
    ) -> Result<(), StateError> {
        // Unconditional: the effect happened, whoever's lease it ran under.
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.dedupe_key(message_id))
            .arg(DONE)
            .arg("PX")
            .arg(ms(keep));
        let _: () = self.run(cmd).await?;
        Ok(())
    }

    /// Gives up `owner`'s claim so a retry can take it; `false` if it was
    /// not (or no longer) ours.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn release(&self, message_id: &str, owner: &str) -> Result<bool, StateError> {
        let n: i64 = self
            .script(RELEASE.key(self.dedupe_key(message_id)).arg(owner))
            .await?;
        Ok(n == 1)
    }
}
