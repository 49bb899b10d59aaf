//! `arrakis migrate`: creates the database if needed, applies the embedded
//! migrations once each, and sets up the tenant role and its grants.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};

use super::quote_ident;
use crate::config::redact_url;

/// The migrations in order, compiled into the binary.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial",
        include_str!("../../../migrations/0001_initial.sql"),
    ),
    (
        "0002_sietch",
        include_str!("../../../migrations/0002_sietch.sql"),
    ),
];

/// Serialises migrators of one database; transaction-scoped so it holds
/// through PgBouncer in transaction mode.
const LOCK_KEY: i64 = 0x4152_5241_4b49_5301;

/// Options of `arrakis migrate`; each is also an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// Postgres URL of the owner role (the database is created if missing).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/arrakis",
        hide_env_values = true
    )]
    pub database_url: String,
    /// The role tenant transactions switch to (created if missing).
    #[arg(
        long,
        env = "ARRAKIS_DB_TENANT_ROLE",
        value_name = "ARRAKIS_DB_TENANT_ROLE",
        default_value = "arrakis_tenant"
    )]
    pub tenant_role: String,
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// DATABASE_URL does not parse.
    #[error("DATABASE_URL {url} is invalid: {source}")]
    InvalidUrl {
        /// The URL without credentials.
        url: String,
        /// The parse error.
        source: tokio_postgres::Error,
    },
    /// The server behind DATABASE_URL could not be reached.
    #[error("cannot connect to DATABASE_URL {url}: {source}")]
    Connect {
        /// The URL without credentials.
        url: String,
        /// The connection error.
        source: tokio_postgres::Error,
    },
    /// The tenant role name is not a plain lower-case identifier.
    #[error("tenant role {0:?} must match [a-z_][a-z0-9_]{{0,62}}")]
    InvalidRole(String),
    /// A statement failed.
    #[error("migration {step}: {source}")]
    Postgres {
        /// The migration or setup step that failed.
        step: String,
        /// The Postgres error.
        source: tokio_postgres::Error,
    },
}

/// Runs `arrakis migrate`, printing each migration it applied.
///
/// # Errors
///
/// As [`apply`].
pub async fn run(args: MigrateArgs) -> Result<ExitCode, MigrateError> {
    let applied = apply(&args.database_url, &args.tenant_role).await?;
    if applied.is_empty() {
        println!("schema up to date");
    }
    for name in &applied {
        println!("applied {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates the database if missing, applies the pending migrations (each
/// in its own transaction under an advisory lock), then creates the tenant
/// role if missing and grants it what tenant transactions need. Safe to run
/// concurrently and repeatedly; returns the names of the migrations it
/// applied.
///
/// # Errors
///
/// [`MigrateError`] naming the redacted URL or the failing step.
pub async fn apply(url: &str, tenant_role: &str) -> Result<Vec<String>, MigrateError> {
    if !valid_role(tenant_role) {
        return Err(MigrateError::InvalidRole(tenant_role.to_owned()));
    }
    let mut config = Config::from_str(url).map_err(|source| MigrateError::InvalidUrl {
        url: redact_url(url),
        source,
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    ensure_database(url, &config).await?;
    let client = connect(url, &config).await?;
    let mut applied = Vec::new();
    for (name, sql) in MIGRATIONS {
        if apply_one(&client, name, sql).await? {
            applied.push((*name).to_owned());
        }
    }
    ensure_role(&client, tenant_role).await?;
    Ok(applied)
}

fn valid_role(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

async fn connect(url: &str, config: &Config) -> Result<Client, MigrateError> {
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| MigrateError::Connect {
                url: redact_url(url),
                source,
            })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!("migrate connection ended: {err}");
        }
    });
    Ok(client)
}

fn step(step: &str) -> impl FnOnce(tokio_postgres::Error) -> MigrateError + '_ {
    move |source| MigrateError::Postgres {
        step: step.to_owned(),
        source,
    }
}

async fn ensure_database(url: &str, config: &Config) -> Result<(), MigrateError> {
    let Some(name) = config
        .get_dbname()
        .or_else(|| config.get_user())
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let client = connect(url, &maintenance).await?;
    let exists = client
        .query_typed(
            "SELECT 1 FROM pg_database WHERE datname = $1::text::name",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(step("create database"))?;
    if !exists.is_empty() {
        return Ok(());
    }
    match client
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
    {
        Ok(()) => Ok(()),
        // Another migrator created it between the check and here.
        Err(err) if is_code(&err, &["42P04", "23505"]) => Ok(()),
        Err(err) => Err(step("create database")(err)),
    }
}

fn is_code(err: &tokio_postgres::Error, codes: &[&str]) -> bool {
    err.as_db_error()
        .is_some_and(|db| codes.contains(&db.code().code()))
}

async fn apply_one(client: &Client, name: &str, sql: &str) -> Result<bool, MigrateError> {
    let on_err = || step(name);
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY}); \
             CREATE TABLE IF NOT EXISTS schema_migrations ( \
                 version text PRIMARY KEY, name text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(on_err())?;
    let result = async {
        let version = name.split('_').next().unwrap_or(name);
        let done = client
            .query_typed(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[(&version, Type::TEXT)],
            )
            .await?;
        if !done.is_empty() {
            return Ok(false);
        }
        client.batch_execute(sql).await?;
        client
            .execute_typed(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[(&version, Type::TEXT), (&name, Type::TEXT)],
            )
            .await?;
        Ok(true)
    }
    .await;
    match result {
        Ok(applied) => {
            client.batch_execute("COMMIT").await.map_err(on_err())?;
            Ok(applied)
        }
        Err(err) => {
            // The server aborted the transaction; ending it keeps the error
            // that matters.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(on_err()(err))
        }
    }
}

/// Roles are cluster-wide while advisory locks are per database, so
/// migrators of different databases can race here; the losers retry.
async fn ensure_role(client: &Client, role: &str) -> Result<(), MigrateError> {
    let quoted = quote_ident(role);
    let sql = format!(
        "DO $$ BEGIN \
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                 CREATE ROLE {quoted} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT; \
             END IF; \
             IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN \
                 EXECUTE format('GRANT %I TO %I', '{role}', current_user); \
             END IF; \
         END $$; \
         REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}; \
         GRANT USAGE ON SCHEMA public TO {quoted}; \
         GRANT SELECT ON communities TO {quoted}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}; \
         DO $$ DECLARE t text; BEGIN \
             FOR t IN SELECT c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid \
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
                   AND a.attname = 'community_id' AND NOT a.attisdropped LOOP \
                 EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, '{role}'); \
             END LOOP; \
         END $$;"
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            // duplicate role, pg_authid unique race, "tuple concurrently updated"
            Err(err) if attempt < 5 && is_code(&err, &["42710", "23505", "XX000", "40001"]) => {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(err) => return Err(step("tenant role")(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_role;

    #[test]
    fn role_names() {
        assert!(valid_role("arrakis_tenant"));
        assert!(valid_role("_t1"));
        assert!(!valid_role(""));
        assert!(!valid_role("1abc"));
        assert!(!valid_role("Tenant"));
        assert!(!valid_role("a\"; DROP"));
        assert!(!valid_role(&"a".repeat(64)));
    }
}
