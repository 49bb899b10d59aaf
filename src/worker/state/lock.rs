//! Leases with fencing tokens.
//!
//! A lease is a key holding `owner|fence` with a TTL: whoever set it holds
//! the lock until it expires or is released, so a crashed holder blocks
//! nobody for longer than the TTL. The fence is a counter that grows with
//! every grant of the lock, so work done under a stale lease (a holder that
//! stalled past its TTL) can be recognised and refused.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{State, StateError, ms};

/// How long a lock's fence counter outlives its last grant: long enough
/// that fences never go backwards in practice.
const FENCE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lock's name.
    pub name: String,
    /// Who holds it.
    pub owner: String,
    /// Its fencing token: strictly greater than every earlier grant's.
    pub fence: u64,
}

impl Lease {
    fn value(&self) -> String {
        format!("{}|{}", self.owner, self.fence)
    }
}

static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
return fence
",
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

impl State {
    fn lock_keys(&self, name: &str) -> (String, String) {
        let tag = format!("l:{name}");
        (self.key(&tag, ""), self.key(&tag, ":fence"))
    }

    /// Takes lock `name` for `owner` for `ttl`, if it is free.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StateError> {
        let (key, fence) = self.lock_keys(name);
        let fence: u64 = self
            .script(
                TAKE.key(key)
                    .key(fence)
                    .arg(owner)
                    .arg(ms(ttl))
                    .arg(ms(FENCE_TTL)),
            )
            .await?;
        Ok((fence > 0).then(|| Lease {
            name: name.to_owned(),
            owner: owner.to_owned(),
            fence,
        }))
    }

    /// Extends `lease` to `ttl` from now; `false` if it is no longer held.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        let n: i64 = self
            .script(
                RENEW
                    .key(self.lock_keys(&lease.name).0)
                    .arg(lease.value())
                    .arg(ms(ttl)),
            )
            .await?;
        Ok(n == 1)
    }

    /// Releases `lease`; `false` if it had already expired or passed on.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn unlock(&self, lease: &Lease) -> Result<bool, StateError> {
        let n: i64 = self
            .script(UNLOCK.key(self.lock_keys(&lease.name).0).arg(lease.value()))
            .await?;
        Ok(n == 1)
    }

    /// Whether `lease` is still the lock's current grant.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn fence_valid(&self, lease: &Lease) -> Result<bool, StateError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.lock_keys(&lease.name).0);
        let held: Option<String> = self.run(cmd).await?;
        Ok(held.as_deref() == Some(lease.value().as_str()))
    }
}
