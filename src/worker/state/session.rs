//! Interactive sessions: short-lived state a multi-step interaction needs
//! (a directory page, a verify nonce and its attempts), always with a TTL,
//! visible to whichever worker gets the user's next click.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{State, StateError, ms};

static INCR_IF_PRESENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return -1 end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ttl)
return n
",
    )
});

impl State {
    fn session_keys(&self, name: &str) -> (String, String) {
        let tag = format!("s:{name}");
        (self.key(&tag, ""), self.key(&tag, ":n"))
    }

    /// Stores session `name` for `ttl` (its attempt counter restarts).
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn session_put(
        &self,
        name: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let (key, counter) = self.session_keys(name);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(ms(ttl))
            .ignore()
            .cmd("DEL")
            .arg(&counter)
            .ignore();
        self.run_pipe(&pipe).await
    }

    /// Session `name`, if it has not expired.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn session_get(&self, name: &str) -> Result<Option<String>, StateError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.session_keys(name).0);
        self.run(cmd).await
    }

    /// Session `name`, removed as it is read (one use).
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn session_take(&self, name: &str) -> Result<Option<String>, StateError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.session_keys(name).0);
        self.run(cmd).await
    }

    /// Removes session `name`; `true` if it existed.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn session_delete(&self, name: &str) -> Result<bool, StateError> {
        let (key, counter) = self.session_keys(name);
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&key).arg(&counter);
        let n: i64 = self.run(cmd).await?;
        Ok(n > 0)
    }

    /// Counts one more attempt on session `name` (the counter expires with
    /// it); `None` once the session is gone.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis is unavailable.
    pub async fn session_incr(&self, name: &str) -> Result<Option<i64>, StateError> {
        let (key, counter) = self.session_keys(name);
        let n: i64 = self.script(INCR_IF_PRESENT.key(key).key(counter)).await?;
        Ok((n >= 0).then_some(n))
    }
}
