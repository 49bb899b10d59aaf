//! A private, migrated Postgres database per test, reached directly (for
//! owner-side setup and inspection) and through PgBouncer (for the code
//! under test).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrakis::worker::db::{Db, DbConfig, migrate};
use tokio_postgres::{Client, NoTls};

/// The tenant role every test database shares (roles are cluster-wide).
pub const TENANT_ROLE: &str = "arrakis_tenant";

const DIRECT: &str = "127.0.0.1:5432";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh database `arrakis_t_<pid>_<n>_<nanos>`, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    /// The database name.
    pub name: String,
    bouncer: String,
}

/// A name unique across parallel tests and test binaries.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects a plain client (its connection task spawned), bounded in time.
pub async fn client(url: &str) -> Client {
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, NoTls))
            .await
            .expect("connecting to postgres timed out")
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl TestDb {
    /// Creates and migrates the database.
    pub async fn create() -> Self {
        let bouncer =
            std::env::var("ARRAKIS_TEST_PGBOUNCER").unwrap_or_else(|_| "127.0.0.1:6432".into());
        let db = Self {
            name: unique("arrakis_t"),
            bouncer,
        };
        let applied = migrate::apply(&db.direct_url(), TENANT_ROLE)
            .await
            .expect("migrate a fresh test database");
        assert_eq!(
            applied,
            vec!["0001_initial".to_owned(), "0002_sietch".to_owned()]
        );
        db
    }

    /// The database on Postgres itself, as the owner.
    pub fn direct_url(&self) -> String {
        format!("postgres://postgres@{DIRECT}/{}", self.name)
    }

    /// The same database through PgBouncer (transaction pooling).
    pub fn bouncer_url(&self) -> String {
        format!("postgres://postgres@{}/{}", self.bouncer, self.name)
    }

    /// A direct owner connection for setup and inspection.
    pub async fn owner(&self) -> Client {
        client(&self.direct_url()).await
    }

    /// A [`Db`] through PgBouncer.
    pub async fn db(&self, max_connections: usize) -> Db {
        Db::connect(self.config(TENANT_ROLE, max_connections))
            .await
            .expect("Db::connect through PgBouncer")
    }

    /// The config [`TestDb::db`] uses, with another tenant role.
    pub fn config(&self, tenant_role: &str, max_connections: usize) -> DbConfig {
        DbConfig {
            url: self.bouncer_url(),
            max_connections,
            acquire_timeout: Duration::from_secs(5),
            tenant_role: tenant_role.to_owned(),
        }
    }

    /// Transactions left open on the server ("idle in transaction").
    pub async fn open_transactions(&self) -> i64 {
        let admin = client(&format!("postgres://postgres@{DIRECT}/postgres")).await;
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND state LIKE 'idle in transaction%'",
                &[&self.name],
            )
            .await
            .expect("pg_stat_activity")
            .get(0)
    }

    /// Drops the database, terminating PgBouncer's server connections to it.
    pub async fn drop_db(self) {
        let admin = client(&format!("postgres://postgres@{DIRECT}/postgres")).await;
        admin
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .await
            .expect("drop test database");
    }
}
