//! Errors of the database layer and which of them a retry can cure.

use deadpool_postgres::PoolError;

/// A failure of the database layer.
///
/// Messages carry Postgres' own text and never the connection URL, so
/// they are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No pooled connection became free within the acquire timeout.
    #[error("database pool: no connection available within the acquire timeout")]
    PoolTimeout,
    /// The pool was closed.
    #[error("database pool is closed")]
    PoolClosed,
    /// Postgres (or the connection to it) reported an error.
    #[error("database: {}", describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The tenant role could read or write across communities; the worker
    /// refuses to run tenant queries.
    #[error("unsafe database setup: {0}")]
    Unsafe(String),
    /// A configuration value or argument the database layer cannot use.
    #[error("invalid database input: {0}")]
    Invalid(String),
    /// No community has this id.
    #[error("community {0} does not exist")]
    UnknownCommunity(i64),
    /// A statement of this transaction failed earlier, so Postgres rolled
    /// it back instead of committing (a bare COMMIT would report success).
    #[error("transaction aborted by an earlier error and rolled back")]
    Aborted,
}

impl DbError {
    /// Whether retrying the whole unit of work may succeed: pool timeouts,
    /// lost connections, serialization failures and deadlocks, server
    /// shutdown and too many connections. Constraint, syntax and RLS errors
    /// are permanent.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::PoolTimeout => true,
            Self::Postgres(err) => postgres_is_transient(err),
            Self::PoolClosed
            | Self::Unsafe(_)
            | Self::Invalid(_)
            | Self::UnknownCommunity(_)
            | Self::Aborted => false,
        }
    }
}

/// The server's own words: tokio-postgres displays every server error as
/// a bare "db error", which says nothing in a log line or a dead letter's
/// reason. The SQLSTATE, the message and the table or constraint it names
/// identify the failure; the detail line is left out (it may quote row
/// values).
fn describe_postgres(err: &tokio_postgres::Error) -> String {
    let Some(db) = err.as_db_error() else {
        return match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        };
    };
    let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(table) = db.table() {
        out.push_str(&format!(" (table {table})"));
    }
    if let Some(constraint) = db.constraint() {
        out.push_str(&format!(" (constraint {constraint})"));
    }
    out
}

fn postgres_is_transient(err: &tokio_postgres::Error) -> bool {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08")
            || matches!(
                code,
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
            );
    }
    // Without a server error code, only a broken link is worth a retry;
    // type conversion errors would fail the same way again.
    err.is_closed() || std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>())
}

impl From<PoolError> for DbError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Timeout(_) => Self::PoolTimeout,
            PoolError::Backend(e) => Self::Postgres(e),
            PoolError::Closed => Self::PoolClosed,
            other => Self::Invalid(other.to_string()),
        }
    }
}
