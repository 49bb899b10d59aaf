//! Community bookkeeping on the owner connection: activity, the sync's
//! schedule and outcome. `communities` has no RLS (it is the tenant
//! registry) and the tenant role may only read it.

use std::time::Duration;

use tokio_postgres::types::Type;

use super::{Db, DbError};

/// A community's registry row.
#[derive(Debug, Clone)]
pub struct Community {
    /// Its id (the tenant key).
    pub id: i64,
    /// Its Discord guild.
    pub guild_id: i64,
    /// False once the bot was removed from the guild.
    pub active: bool,
    /// Its settings document.
    pub settings: serde_json::Value,
    /// The last sync could not read the chain: nothing was revoked.
    pub in_grace: bool,
    /// When a sync last completed, as Unix seconds.
    pub last_synced_at: Option<i64>,
}

/// How a sync ended, for [`Db::record_sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRecord {
    /// Completed: grace ends.
    Completed,
    /// The chain was unavailable: the community is in grace.
    Grace(String),
    /// Failed for another reason (settings, Postgres…).
    Failed(String),
}

const COLUMNS: &str = "id, guild_id, active, settings::text, in_grace, \
     extract(epoch FROM last_synced_at)::bigint";

fn community(row: &tokio_postgres::Row) -> Result<Community, DbError> {
    let text: &str = row.get(3);
    Ok(Community {
        id: row.get(0),
        guild_id: row.get(1),
        active: row.get(2),
        settings: serde_json::from_str(text)
            .map_err(|e| DbError::Invalid(format!("settings: {e}")))?,
        in_grace: row.get(4),
        last_synced_at: row.get(5),
    })
}

impl Db {
    /// The community with id `id`.
    ///
    /// # Errors
    ///
    /// [`DbError::UnknownCommunity`], pool or Postgres errors.
    pub async fn community(&self, id: i64) -> Result<Community, DbError> {
        let rows = self
            .conn()
            .await?
            .query_typed(
                &format!("SELECT {COLUMNS} FROM communities WHERE id = $1"),
                &[(&id, Type::INT8)],
            )
            .await?;
        community(rows.first().ok_or(DbError::UnknownCommunity(id))?)
    }

    /// Marks the community of `guild_id` active (the bot is in the guild)
    /// or inactive (it was removed); returns whether anything changed.
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn set_guild_active(&self, guild_id: u64, active: bool) -> Result<bool, DbError> {
        let guild = i64::try_from(guild_id)
            .map_err(|_| DbError::Invalid(format!("guild id {guild_id} exceeds i64")))?;
        let n = self
            .conn()
            .await?
            .execute_typed(
                "UPDATE communities SET active = $2, updated_at = now() \
                 WHERE guild_id = $1 AND active IS DISTINCT FROM $2",
                &[(&guild, Type::INT8), (&active, Type::BOOL)],
            )
            .await?;
        Ok(n > 0)
    }

    /// Active communities with a token whose last sync is older than
    /// `every`, and whose last attempt is older than `retry` (so a
    /// community in grace is retried, but not in a tight loop).
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn communities_due(
        &self,
        every: Duration,
        retry: Duration,
    ) -> Result<Vec<i64>, DbError> {
        let every = every.as_secs_f64();
        let retry = retry.as_secs_f64();
        let rows = self
            .conn()
            .await?
            .query_typed(
                "SELECT id FROM communities WHERE active AND settings ? 'token' \
                 AND coalesce(last_synced_at, 'epoch') < now() - make_interval(secs => $1) \
                 AND coalesce(last_sync_attempt_at, 'epoch') < now() - make_interval(secs => $2) \
                 ORDER BY coalesce(last_synced_at, 'epoch') LIMIT 1000",
                &[(&every, Type::FLOAT8), (&retry, Type::FLOAT8)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every active community.
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn active_communities(&self) -> Result<Vec<i64>, DbError> {
        let rows = self
            .conn()
            .await?
            .query_typed("SELECT id FROM communities WHERE active ORDER BY id", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Records a sync's start (so concurrent sweeps skip it).
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn record_sync_attempt(&self, id: i64) -> Result<(), DbError> {
        self.conn()
            .await?
            .execute_typed(
                "UPDATE communities SET last_sync_attempt_at = now() WHERE id = $1",
                &[(&id, Type::INT8)],
            )
            .await?;
        Ok(())
    }

    /// Records how a sync ended.
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn record_sync(&self, id: i64, outcome: &SyncRecord) -> Result<(), DbError> {
        let conn = self.conn().await?;
        match outcome {
            SyncRecord::Completed => {
                conn.execute_typed(
                    "UPDATE communities SET last_synced_at = now(), in_grace = false, \
                     grace_until = NULL, last_sync_error = NULL WHERE id = $1",
                    &[(&id, Type::INT8)],
                )
                .await?
            }
            SyncRecord::Grace(why) => {
                conn.execute_typed(
                    "UPDATE communities SET in_grace = true, \
                     grace_until = coalesce(grace_until, now()), last_sync_error = $2 \
                     WHERE id = $1",
                    &[(&id, Type::INT8), (why, Type::TEXT)],
                )
                .await?
            }
            SyncRecord::Failed(why) => {
                conn.execute_typed(
                    "UPDATE communities SET last_sync_error = $2 WHERE id = $1",
                    &[(&id, Type::INT8), (why, Type::TEXT)],
                )
                .await?
            }
        };
        Ok(())
    }
}
