//! One community's transaction, run as the tenant role under RLS.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::Conn;
use super::error::DbError;

/// A transaction scoped to one community: it runs as the tenant role with
/// `app.community_id` set, both transaction-local, so nothing outlives it
/// on a PgBouncer (transaction mode) server connection.
///
/// Dropping it without [`TenantTx::commit`] discards the connection
/// instead of returning it to the pool, which ends the open transaction
/// (rolled back by the server) and keeps it out of later checkouts.
pub struct TenantTx {
    conn: Option<Conn>,
    community_id: i64,
    failed: AtomicBool,
    writes: Mutex<Writes>,
}

/// What the transaction wrote, for its audit line.
#[derive(Debug, Default)]
struct Writes {
    rows: u64,
    tables: Vec<String>,
}

impl Writes {
    fn add(&mut self, table: &str, rows: u64) {
        self.rows = self.rows.saturating_add(rows);
        if !self.tables.iter().any(|t| t == table) {
            self.tables.push(table.to_owned());
        }
    }
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("community_id", &self.community_id)
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TenantTx {
    /// Starts the transaction on `conn` in one round trip. `role` must
    /// already be a quoted identifier; `community_id` is an integer, so
    /// formatting it into the batch cannot inject SQL.
    pub(super) async fn begin(
        conn: Conn,
        quoted_role: &str,
        community_id: i64,
    ) -> Result<Self, DbError> {
        let tx = Self {
            conn: Some(conn),
            community_id,
            failed: AtomicBool::new(false),
            writes: Mutex::new(Writes::default()),
        };
        tx.client()
            .batch_execute(&format!(
                "BEGIN; SET LOCAL ROLE {quoted_role}; \
                 SELECT set_config('app.community_id', '{community_id}', true)"
            ))
            .await?;
        Ok(tx)
    }

    fn client(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a TenantTx holds its connection until commit or rollback")
    }

    fn note<T>(&self, result: Result<T, tokio_postgres::Error>) -> Result<T, DbError> {
        result.map_err(|e| {
            self.failed.store(true, Ordering::Relaxed);
            DbError::Postgres(e)
        })
    }

    /// The community every statement of this transaction is confined to.
    #[must_use]
    pub fn community_id(&self) -> i64 {
        self.community_id
    }

    /// Runs a query as an unnamed statement (one round trip, nothing
    /// prepared survives the transaction) and returns its rows.
    ///
    /// # Errors
    ///
    /// Postgres errors, including RLS violations; after one, the
    /// transaction can only be rolled back.
    pub async fn query(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, DbError> {
        let result = self.client().query_typed(sql, params).await;
        let rows = self.note(result)?;
        self.record(sql, rows.len() as u64);
        Ok(rows)
    }

    /// Runs a statement as an unnamed statement and returns the number of
    /// rows it affected.
    ///
    /// # Errors
    ///
    /// As [`TenantTx::query`].
    pub async fn execute(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, DbError> {
        let result = self.client().execute_typed(sql, params).await;
        let rows = self.note(result)?;
        self.record(sql, rows);
        Ok(rows)
    }

    /// Counts the rows a write statement touched (reads are not recorded).
    fn record(&self, sql: &str, rows: u64) {
        if let Some(table) = written_table(sql) {
            self.writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .add(table, rows);
        }
    }

    /// Records that `message_id` took effect in this community; `true` the
    /// first time, `false` if an earlier (committed) transaction recorded
    /// it, in which case the caller must skip the effect. A concurrent
    /// transaction with the same id blocks this one until it ends.
    ///
    /// # Errors
    ///
    /// As [`TenantTx::query`].
    pub async fn mark_processed(&self, message_id: &str) -> Result<bool, DbError> {
        let inserted = self
            .execute(
                "INSERT INTO processed_messages (community_id, message_id) VALUES ($1, $2) \
                 ON CONFLICT (community_id, message_id) DO NOTHING",
                &[(&self.community_id, Type::INT8), (&message_id, Type::TEXT)],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Commits and returns the connection to the pool.
    ///
    /// # Errors
    ///
    /// [`DbError::Aborted`] if a statement failed earlier (Postgres rolled
    /// back instead), or the COMMIT's own error; the connection is then
    /// discarded.
    pub async fn commit(mut self) -> Result<(), DbError> {
        if self.failed.load(Ordering::Relaxed) {
            self.finish("ROLLBACK").await?;
            return Err(DbError::Aborted);
        }
        self.finish("COMMIT").await?;
        let writes = std::mem::take(
            &mut *self
                .writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if writes.rows > 0 {
            let context = crate::correlation::current();
            tracing::info!(
                target: "arrakis::audit",
                effect = "db_write",
                community = self.community_id,
                tables = %writes.tables.join(","),
                rows = writes.rows,
                message_id = context.message_id.as_deref().unwrap_or(""),
                "committed"
            );
        }
        Ok(())
    }

    /// Rolls back and returns the connection to the pool.
    ///
    /// # Errors
    ///
    /// The ROLLBACK's error; the connection is then discarded.
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.finish("ROLLBACK").await
    }

    async fn finish(&mut self, statement: &str) -> Result<(), DbError> {
        let conn = self
            .conn
            .take()
            .expect("a TenantTx holds its connection until commit or rollback");
        match conn.batch_execute(statement).await {
            Ok(()) => Ok(()),
            Err(err) => {
                // Its transaction state is unknown: never hand it out again.
                conn.discard();
                Err(err.into())
            }
        }
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}

/// Applies a member joining the guild, once per `message_id`: upserts the
/// profile (joined now, not left) and appends one `member_join` audit row
/// whose correlation id is the message id. `false` means the message was
/// already processed and nothing changed.
///
/// # Errors
///
/// [`DbError::Invalid`] for a user id beyond `i64`, else as
/// [`TenantTx::query`].
pub async fn record_member_join(
    tx: &TenantTx,
    user_id: u64,
    message_id: &str,
) -> Result<bool, DbError> {
    let user_id = i64::try_from(user_id)
        .map_err(|_| DbError::Invalid(format!("user id {user_id} exceeds i64")))?;
    if !tx.mark_processed(message_id).await? {
        return Ok(false);
    }
    let community_id = tx.community_id();
    tx.execute(
        "INSERT INTO profiles (community_id, user_id, joined_at, left_at) \
         VALUES ($1, $2, now(), NULL) \
         ON CONFLICT (community_id, user_id) \
         DO UPDATE SET joined_at = now(), left_at = NULL, updated_at = now()",
        &[(&community_id, Type::INT8), (&user_id, Type::INT8)],
    )
    .await?;
    tx.execute(
        "INSERT INTO audit_log (community_id, action, subject_id, correlation_id) \
         VALUES ($1, 'member_join', $2, $3)",
        &[
            (&community_id, Type::INT8),
            (&user_id, Type::INT8),
            (&message_id, Type::TEXT),
        ],
    )
    .await?;
    Ok(true)
}

/// The table a write statement (`INSERT INTO t`, `UPDATE t`, `DELETE FROM
/// t`, also after a `WITH`) writes to; `None` for a read. `FOR UPDATE` and
/// `DO UPDATE SET` are not writes of their own.
fn written_table(sql: &str) -> Option<&str> {
    let tokens: Vec<&str> = sql.split_whitespace().collect();
    let is = |i: usize, word: &str| tokens.get(i).is_some_and(|t| t.eq_ignore_ascii_case(word));
    let name = |i: usize| -> Option<&str> {
        let token = *tokens.get(i)?;
        let end = token
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(token.len());
        (end > 0).then(|| &token[..end])
    };
    (0..tokens.len()).find_map(|i| {
        if (is(i, "insert") && is(i + 1, "into")) || (is(i, "delete") && is(i + 1, "from")) {
            name(i + 2)
        } else if is(i, "update")
            && !(i > 0 && (is(i - 1, "for") || is(i - 1, "do")))
            && !is(i + 1, "set")
        {
            name(i + 1)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::written_table;

    #[test]
    fn write_statements_name_their_table_and_reads_do_not() {
        assert_eq!(
            written_table(
                "INSERT INTO processed_messages (community_id, message_id) VALUES ($1, $2)"
            ),
            Some("processed_messages")
        );
        assert_eq!(
            written_table("update members SET nym = $1 WHERE id = $2"),
            Some("members")
        );
        assert_eq!(
            written_table("DELETE FROM water_shares WHERE id = $1"),
            Some("water_shares")
        );
        assert_eq!(
            written_table("WITH moved AS (SELECT 1) INSERT INTO activity(member_id) SELECT 1"),
            Some("activity")
        );
        assert_eq!(
            written_table(
                "INSERT INTO badges (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a"
            ),
            Some("badges")
        );
        assert_eq!(
            written_table("SELECT * FROM members WHERE id = $1 FOR UPDATE"),
            None
        );
        assert_eq!(written_table("SELECT 1"), None);
    }
}
