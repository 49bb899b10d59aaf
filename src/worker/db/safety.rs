//! The check `Db::connect` runs before any tenant query: RLS only isolates
//! communities if the tenant role is subject to it.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::error::DbError;

/// Tables with a `community_id` column are tenant tables, so tables later
/// migrations add are covered without a list to keep in step.
const TABLES: &str = "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, \
        pg_has_role($1::text::name, c.relowner, 'MEMBER'), \
        EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                AND a.attname = 'community_id' AND NOT a.attisdropped) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')";

/// Fails with [`DbError::Unsafe`] naming the first problem: the role is
/// missing, superuser, BYPASSRLS, owns (or is a member of the owner of) a
/// table, a tenant table lacks enabled and forced RLS, or the schema is
/// not migrated.
pub(super) async fn check(client: &Client, role: &str) -> Result<(), DbError> {
    let rows = client
        .query_typed(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1::text::name",
            &[(&role, Type::TEXT)],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Err(DbError::Unsafe(format!(
            "tenant role {role} does not exist (run `arrakis migrate`)"
        )));
    };
    if row.get::<_, bool>(0) {
        return Err(DbError::Unsafe(format!(
            "tenant role {role} is a superuser"
        )));
    }
    if row.get::<_, bool>(1) {
        return Err(DbError::Unsafe(format!("tenant role {role} has BYPASSRLS")));
    }
    let tables = client.query_typed(TABLES, &[(&role, Type::TEXT)]).await?;
    let mut saw_processed = false;
    for table in &tables {
        let name: String = table.get(0);
        let (enabled, forced, owns, tenant): (bool, bool, bool, bool) =
            (table.get(1), table.get(2), table.get(3), table.get(4));
        if owns {
            return Err(DbError::Unsafe(format!(
                "tenant role {role} owns table {name}"
            )));
        }
        if tenant && !(enabled && forced) {
            return Err(DbError::Unsafe(format!(
                "tenant table {name} does not have row-level security enabled and forced"
            )));
        }
        saw_processed |= name == "processed_messages";
    }
    if !saw_processed {
        return Err(DbError::Unsafe(
            "schema is not migrated (no processed_messages table; run `arrakis migrate`)".into(),
        ));
    }
    Ok(())
}
