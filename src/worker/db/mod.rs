//! Postgres for the worker (SIETCH.md §Data): a bounded pool, the owner
//! connection for community bookkeeping, and [`TenantTx`] for everything
//! that touches one community's rows under row-level security.
//!
//! Every statement is an unnamed statement (`query_typed`) or a simple
//! query, and all session changes are `SET LOCAL`, so the pool works
//! through PgBouncer in transaction mode.

mod community;
mod error;
pub mod migrate;
mod safety;
mod tenant;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

pub use community::{Community, SyncRecord};
pub use error::DbError;
pub use tenant::{TenantTx, record_member_join};

/// Where and how the worker reaches Postgres.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://` URL; one URL serves both the owner and tenant work.
    pub url: String,
    /// Upper bound of pooled connections (16 is the usual choice).
    pub max_connections: usize,
    /// How long a checkout (and a new connection) may take (2 s usual).
    pub acquire_timeout: Duration,
    /// The non-owner role without BYPASSRLS tenant transactions switch to.
    pub tenant_role: String,
}

/// Occupancy of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections currently open (idle or checked out).
    pub size: usize,
    /// Open connections idle in the pool.
    pub available: usize,
    /// Upper bound of open connections.
    pub max: usize,
}

/// Most guild → community ids remembered; beyond it the map starts over.
const MAX_CACHED_GUILDS: usize = 100_000;

/// The worker's database handle; cheap to clone, all clones share the pool.
///
/// A handle made by [`Db::share`] may hold only part of the pool at once,
/// so one kind of work (gateway events) cannot take every connection from
/// another (interactions, which have a 3 s deadline).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    quoted_role: String,
    share: Option<Arc<Semaphore>>,
    acquire_timeout: Duration,
    /// Guild → community ids. A community is never deleted and its guild
    /// never changes, so a remembered id cannot go stale and no worker can
    /// disagree with another about it.
    communities: Arc<Mutex<HashMap<i64, i64>>>,
}

/// A pooled connection, with the permit of its [`Db::share`] if it has one.
pub(crate) struct Conn {
    object: Object,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Conn {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.object
    }
}

impl Conn {
    /// Closes the connection instead of returning it to the pool.
    pub(crate) fn discard(self) {
        drop(Object::take(self.object));
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("tenant_role", &self.quoted_role)
            .field("pool", &self.pool_status())
            .field(
                "share_free",
                &self.share.as_ref().map(|s| s.available_permits()),
            )
            .finish()
    }
}

/// `"name"` with embedded quotes doubled, for the one identifier that
/// cannot be a bound parameter (`SET LOCAL ROLE`).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Db {
    /// Builds the pool and refuses to return unless tenant transactions
    /// would really be isolated (see [`DbError::Unsafe`]) and the current
    /// user can switch to the tenant role.
    ///
    /// # Errors
    ///
    /// [`DbError::Invalid`] for a malformed URL or empty role, connection
    /// errors, [`DbError::Unsafe`].
    pub async fn connect(config: DbConfig) -> Result<Self, DbError> {
        if config.tenant_role.is_empty() || config.max_connections == 0 {
            return Err(DbError::Invalid(
                "tenant role must be non-empty and max_connections positive".into(),
            ));
        }
        let mut pg = tokio_postgres::Config::from_str(&config.url).map_err(|e| {
            DbError::Invalid(format!(
                "DATABASE_URL {}: {e}",
                crate::config::redact_url(&config.url)
            ))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.acquire_timeout);
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .wait_timeout(Some(config.acquire_timeout))
            .create_timeout(Some(config.acquire_timeout))
            .recycle_timeout(Some(config.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Invalid(e.to_string()))?;
        let db = Self {
            pool,
            quoted_role: quote_ident(&config.tenant_role),
            share: None,
            acquire_timeout: config.acquire_timeout,
            communities: Arc::default(),
        };
        let conn = db.conn().await?;
        safety::check(&conn, &config.tenant_role).await?;
        drop(conn);
        // Proves SET ROLE is permitted before the first real message needs it.
        db.tenant(0).await?.rollback().await?;
        Ok(db)
    }

    /// A handle on the same pool that holds at most `connections` of it at
    /// once (at least one); waiting for its turn counts against the
    /// acquire timeout like waiting for the pool does.
    #[must_use]
    pub fn share(&self, connections: usize) -> Self {
        Self {
            share: Some(Arc::new(Semaphore::new(connections.max(1)))),
            ..self.clone()
        }
    }

    async fn conn(&self) -> Result<Conn, DbError> {
        let permit = match &self.share {
            None => None,
            Some(share) => Some(
                tokio::time::timeout(self.acquire_timeout, share.clone().acquire_owned())
                    .await
                    .map_err(|_| DbError::PoolTimeout)?
                    .map_err(|_| DbError::PoolClosed)?,
            ),
        };
        Ok(Conn {
            object: self.pool.get().await?,
            _permit: permit,
        })
    }

    /// The community id of a guild, creating the community on first sight.
    ///
    /// # Errors
    ///
    /// [`DbError::Invalid`] for a guild id beyond `i64`, else Postgres or
    /// pool errors.
    pub async fn community_for_guild(&self, guild_id: u64) -> Result<i64, DbError> {
        let guild_id = i64::try_from(guild_id)
            .map_err(|_| DbError::Invalid(format!("guild id {guild_id} exceeds i64")))?;
        if let Some(id) = self.cached_community(guild_id) {
            return Ok(id);
        }
        let id = self.find_or_create_community(guild_id).await?;
        let mut cache = self
            .communities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_GUILDS {
            cache.clear();
        }
        cache.insert(guild_id, id);
        Ok(id)
    }

    fn cached_community(&self, guild_id: i64) -> Option<i64> {
        self.communities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&guild_id)
            .copied()
    }

    async fn find_or_create_community(&self, guild_id: i64) -> Result<i64, DbError> {
        // Read first: every event of a guild asks, and an upsert would lock
        // and rewrite the community's row each time, serialising them.
        let conn = self.conn().await?;
        let rows = conn
            .query_typed(
                "WITH found AS (SELECT id FROM communities WHERE guild_id = $1), \
                 created AS (INSERT INTO communities (guild_id) \
                   SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM found) \
                   ON CONFLICT (guild_id) DO NOTHING RETURNING id) \
                 SELECT id FROM found UNION ALL SELECT id FROM created",
                &[(&guild_id, Type::INT8)],
            )
            .await?;
        if let Some(row) = rows.first() {
            return Ok(row.get(0));
        }
        // A concurrent insert won the race: its row is there now.
        let rows = conn
            .query_typed(
                "SELECT id FROM communities WHERE guild_id = $1",
                &[(&guild_id, Type::INT8)],
            )
            .await?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| DbError::Invalid(format!("community of guild {guild_id} vanished")))
    }

    /// Opens a transaction confined to `community_id` (see [`TenantTx`]).
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn tenant(&self, community_id: i64) -> Result<TenantTx, DbError> {
        TenantTx::begin(self.conn().await?, &self.quoted_role, community_id).await
    }

    /// The community's `settings` document (keys in
    /// migrations/0001_initial.sql).
    ///
    /// # Errors
    ///
    /// [`DbError::UnknownCommunity`], pool or Postgres errors.
    pub async fn community_settings(
        &self,
        community_id: i64,
    ) -> Result<serde_json::Value, DbError> {
        let rows = self
            .conn()
            .await?
            .query_typed(
                "SELECT settings::text FROM communities WHERE id = $1",
                &[(&community_id, Type::INT8)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(DbError::UnknownCommunity(community_id));
        };
        let text: &str = row.get(0);
        serde_json::from_str(text).map_err(|e| DbError::Invalid(format!("settings: {e}")))
    }

    /// Replaces the community's `settings` document.
    ///
    /// # Errors
    ///
    /// [`DbError::UnknownCommunity`], pool or Postgres errors.
    pub async fn set_community_settings(
        &self,
        community_id: i64,
        settings: &serde_json::Value,
    ) -> Result<(), DbError> {
        let text = settings.to_string();
        let updated = self
            .conn()
            .await?
            .execute_typed(
                "UPDATE communities SET settings = $1::jsonb, updated_at = now() WHERE id = $2",
                &[(&text, Type::TEXT), (&community_id, Type::INT8)],
            )
            .await?;
        if updated == 0 {
            return Err(DbError::UnknownCommunity(community_id));
        }
        Ok(())
    }

    /// Deletes idempotency records of every community processed more than
    /// `older_than` ago and returns how many. Runs as the connecting
    /// (owner) user without SET ROLE, so that user must bypass RLS
    /// (superuser or BYPASSRLS): forced RLS would otherwise fail closed.
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn prune_processed(&self, older_than: Duration) -> Result<u64, DbError> {
        let seconds = older_than.as_secs_f64();
        Ok(self
            .conn()
            .await?
            .execute_typed(
                "DELETE FROM processed_messages \
                 WHERE processed_at < now() - make_interval(secs => $1)",
                &[(&seconds, Type::FLOAT8)],
            )
            .await?)
    }

    /// Current pool occupancy.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            size: status.size,
            available: status.available,
            max: status.max_size,
        }
    }

    /// Time to check out a connection and run `SELECT 1`.
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn ping(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        self.conn().await?.simple_query("SELECT 1").await?;
        Ok(started.elapsed())
    }
}
