//! Command rates per user and per guild, and per-command cooldowns, for all
//! workers together.
//!
//! Rates are sliding windows (a sorted set of grant times per user and per
//! guild, on Redis' clock): "5 per second" never lets 10 through across a
//! window boundary, as a fixed window would. One script checks both and
//! records the grant only if both allow it, so a refused command costs
//! nothing.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{State, StateError, ms, pttl};

/// The limits `/command` calls are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLimits {
    /// Commands per user per window.
    pub per_user: u32,
    /// Commands per guild per window.
    pub per_guild: u32,
    /// The window.
    pub window: Duration,
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self {
            per_user: 5,
            per_guild: 100,
            window: Duration::from_secs(1),
        }
    }
}

/// Whether a command may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    /// Yes (and it has been counted).
    Allowed,
    /// The user is over their rate.
    UserLimited {
        /// When the user may try again.
        retry_after: Duration,
    },
    /// The guild is over its rate.
    GuildLimited {
        /// When anyone in the guild may try again.
        retry_after: Duration,
    },
}

static COMMAND_RATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limits = { tonumber(ARGV[2]), tonumber(ARGV[3]) }
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limits[i] then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return { i, tonumber(oldest[2]) + window - now }
  end
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[i], window)
end
return { 0, 0 }
",
    )
});

impl State {
    /// Counts a command by `user_id` in `guild_id` if both are within
    /// `limits`.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn command_allowed(
        &self,
        guild_id: u64,
        user_id: u64,
        limits: CommandLimits,
    ) -> Result<LimitVerdict, StateError> {
        let tag = format!("g:{guild_id}");
        let grant: u64 = rand::random();
        let (which, wait): (i64, i64) = self
            .script(
                COMMAND_RATE
                    .key(self.key(&tag, &format!(":rate:u:{user_id}")))
                    .key(self.key(&tag, ":rate:g"))
                    .arg(ms(limits.window))
                    .arg(limits.per_user)
                    .arg(limits.per_guild)
                    .arg(format!("{user_id}:{grant:016x}")),
            )
            .await?;
        let retry_after = pttl(wait.max(1));
        match which {
            0 => Ok(LimitVerdict::Allowed),
            1 => Ok(LimitVerdict::UserLimited { retry_after }),
            2 => Ok(LimitVerdict::GuildLimited { retry_after }),
            other => Err(StateError::Reply(format!("command rate returned {other}"))),
        }
    }

    /// Starts `user_id`'s cooldown of `command` in `guild_id` for `period`,
    /// or says how much of a running one is left.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn cooldown(
        &self,
        guild_id: u64,
        command: &str,
        user_id: u64,
        period: Duration,
    ) -> Result<Option<Duration>, StateError> {
        let key = self.key(
            &format!("g:{guild_id}"),
            &format!(":cd:{command}:{user_id}"),
        );
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(1).arg("NX").arg("PX").arg(ms(period));
        let started: Option<String> = self.run(set).await?;
        if started.is_some() {
            return Ok(None);
        }
        let mut left = redis::cmd("PTTL");
        left.arg(&key);
        let left: i64 = self.run(left).await?;
        Ok(Some(pttl(left.max(1))))
    }
}
