//! Postgres layer: migrations, tenant isolation under RLS, fail-closed
//! behaviour and pooling, all tenant traffic through PgBouncer in
//! transaction mode.

mod support;

use std::process::Command;
use std::time::Duration;

use arrakis::worker::db::{Db, DbConfig, DbError, TenantTx, migrate, record_member_join};
use support::db::{TENANT_ROLE, TestDb, client, unique};
use tokio_postgres::types::Type;

const LIMIT: Duration = Duration::from_secs(60);

async fn count(tx: &TenantTx, table: &str) -> i64 {
    tx.query(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()[0]
        .get(0)
}

fn sqlstate(err: &DbError) -> Option<String> {
    match err {
        DbError::Postgres(e) => e.as_db_error().map(|d| d.code().code().to_owned()),
        _ => None,
    }
}

/// Rows for one community in several tenant tables.
async fn seed(db: &Db, community: i64, user: i64) {
    let tx = db.tenant(community).await.unwrap();
    for sql in [
        "INSERT INTO profiles (community_id, user_id, nym) VALUES ($1, $2, 'n' || $2::text)",
        "INSERT INTO badges (community_id, user_id, badge) VALUES ($1, $2, 'og')",
        "INSERT INTO wallets (community_id, user_id, address) VALUES ($1, $2, '0xabc' || $2::text)",
        "INSERT INTO audit_log (community_id, action, subject_id) VALUES ($1, 'seed', $2)",
    ] {
        tx.execute(sql, &[(&community, Type::INT8), (&user, Type::INT8)])
            .await
            .unwrap();
    }
    assert!(tx.mark_processed(&format!("seed-{user}")).await.unwrap());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn migrate_twice_applies_nothing_the_second_time() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        assert!(
            migrate::apply(&t.direct_url(), TENANT_ROLE)
                .await
                .unwrap()
                .is_empty()
        );
        // Through PgBouncer as well: only transaction-scoped state is used.
        assert!(
            migrate::apply(&t.bouncer_url(), TENANT_ROLE)
                .await
                .unwrap()
                .is_empty()
        );
        let rows = t
            .owner()
            .await
            .query("SELECT version, name FROM schema_migrations", &[])
            .await
            .unwrap();
        let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got,
            vec![
                ("0001".into(), "0001_initial".into()),
                ("0002".into(), "0002_sietch".into())
            ]
        );

        let out = Command::new(env!("CARGO_BIN_EXE_arrakis"))
            .arg("migrate")
            .env("DATABASE_URL", t.direct_url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "schema up to date"
        );
        t.drop_db().await;
    })
    .await
    .unwrap();
}

#[test]
fn migrate_names_unreachable_database_url_without_password() {
    let out = Command::new(env!("CARGO_BIN_EXE_arrakis"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://someone:hunter2@127.0.0.1:1/nowhere",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL postgres://127.0.0.1:1/nowhere"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_community_transaction_cannot_touch_another_communitys_rows() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = t.db(4).await;
        let a = db.community_for_guild(1001).await.unwrap();
        let b = db.community_for_guild(1002).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(db.community_for_guild(1001).await.unwrap(), a);
        seed(&db, a, 1).await;
        seed(&db, b, 2).await;
        seed(&db, b, 3).await;

        let tx = db.tenant(a).await.unwrap();
        for table in [
            "profiles",
            "badges",
            "wallets",
            "audit_log",
            "processed_messages",
        ] {
            assert_eq!(count(&tx, table).await, 1, "{table} as A");
            let others = tx
                .query(
                    &format!("SELECT count(*) FROM {table} WHERE community_id <> $1"),
                    &[(&a, Type::INT8)],
                )
                .await
                .unwrap();
            assert_eq!(others[0].get::<_, i64>(0), 0, "{table}");
        }
        let upd = tx
            .execute(
                "UPDATE profiles SET nym = 'stolen' WHERE community_id = $1",
                &[(&b, Type::INT8)],
            )
            .await
            .unwrap();
        assert_eq!(upd, 0);
        let del = tx
            .execute(
                "DELETE FROM badges WHERE community_id = $1",
                &[(&b, Type::INT8)],
            )
            .await
            .unwrap();
        assert_eq!(del, 0);
        let del_all = tx.execute("DELETE FROM audit_log", &[]).await.unwrap();
        assert_eq!(del_all, 1, "only A's own audit row");
        tx.rollback().await.unwrap();

        // Writes that would land in B fail outright (each in its own
        // transaction: the first error aborts a transaction).
        for (sql, params) in [
            (
                "INSERT INTO profiles (community_id, user_id) VALUES ($1, 9)",
                vec![b],
            ),
            (
                "INSERT INTO processed_messages (community_id, message_id) VALUES ($1, 'x')",
                vec![b],
            ),
            (
                "UPDATE profiles SET community_id = $1 WHERE community_id = $2",
                vec![b, a],
            ),
        ] {
            let tx = db.tenant(a).await.unwrap();
            let params: Vec<_> = params
                .iter()
                .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), Type::INT8))
                .collect();
            let err = tx.execute(sql, &params).await.unwrap_err();
            assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
            assert!(!err.is_transient());
            assert!(matches!(tx.commit().await, Err(DbError::Aborted)));
        }

        // The tenant role may read communities but never change them.
        let tx = db.tenant(a).await.unwrap();
        let err = tx
            .execute("UPDATE communities SET active = false", &[])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
        drop(tx);

        let owner = t.owner().await;
        let b_rows: i64 = owner
            .query_one(
                "SELECT count(*) FROM profiles WHERE community_id = $1 AND nym <> 'stolen'",
                &[&b],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(b_rows, 2);
        let b_badges: i64 = owner
            .query_one("SELECT count(*) FROM badges WHERE community_id = $1", &[&b])
            .await
            .unwrap()
            .get(0);
        assert_eq!(b_badges, 2);
        assert_eq!(t.open_transactions().await, 0);
        t.drop_db().await;
    })
    .await
    .unwrap();
}

/// Statements as the tenant role without `app.community_id` must error.
async fn assert_fails_closed(client: &tokio_postgres::Client) {
    for sql in [
        "SELECT count(*) FROM profiles",
        "INSERT INTO profiles (community_id, user_id) VALUES (1, 77)",
        "SELECT app_community_id()",
    ] {
        client
            .batch_execute(&format!("BEGIN; SET LOCAL ROLE {TENANT_ROLE}"))
            .await
            .unwrap();
        let err = client.simple_query(sql).await.unwrap_err();
        let db_err = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert!(
            db_err.message().contains("app.community_id is not set"),
            "{sql}: {db_err}"
        );
        client.batch_execute("ROLLBACK").await.unwrap();
    }
}

#[tokio::test]
async fn tenant_queries_fail_closed_without_a_community() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = t.db(2).await;
        let a = db.community_for_guild(7).await.unwrap();
        seed(&db, a, 1).await;

        // A fresh session: the setting was never defined (NULL).
        let direct = t.owner().await;
        assert_fails_closed(&direct).await;
        // The same session after a transaction set it: it now reads ''.
        direct
            .batch_execute(&format!(
                "BEGIN; SET LOCAL ROLE {TENANT_ROLE}; \
                 SELECT set_config('app.community_id', '{a}', true); \
                 SELECT count(*) FROM profiles; COMMIT"
            ))
            .await
            .unwrap();
        assert_fails_closed(&direct).await;

        // Through PgBouncer, where server connections carry earlier
        // transactions' settings.
        let bounced = client(&t.bouncer_url()).await;
        for _ in 0..3 {
            let tx = db.tenant(a).await.unwrap();
            assert_eq!(count(&tx, "profiles").await, 1);
            tx.commit().await.unwrap();
            assert_fails_closed(&bounced).await;
        }
        t.drop_db().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connect_refuses_a_tenant_role_that_bypasses_rls_or_owns_a_table() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let owner = t.owner().await;
        let bypass = unique("arrakis_bypass");
        let owning = unique("arrakis_owner");
        owner
            .batch_execute(&format!(
                "CREATE ROLE {bypass} NOLOGIN BYPASSRLS; GRANT {bypass} TO postgres; \
                 CREATE ROLE {owning} NOLOGIN; GRANT {owning} TO postgres; \
                 ALTER TABLE badges OWNER TO {owning}"
            ))
            .await
            .unwrap();
        let err = Db::connect(t.config(&bypass, 2)).await.unwrap_err();
        assert!(matches!(&err, DbError::Unsafe(m) if m.contains("BYPASSRLS")), "{err}");
        let err = Db::connect(t.config(&owning, 2)).await.unwrap_err();
        assert!(matches!(&err, DbError::Unsafe(m) if m.contains("owns table badges")), "{err}");
        let err = Db::connect(t.config("postgres", 2)).await.unwrap_err();
        assert!(matches!(&err, DbError::Unsafe(m) if m.contains("superuser")), "{err}");
        let err = Db::connect(t.config(&unique("arrakis_missing"), 2))
            .await
            .unwrap_err();
        assert!(matches!(&err, DbError::Unsafe(m) if m.contains("does not exist")), "{err}");

        owner
            .batch_execute("ALTER TABLE badges OWNER TO postgres; ALTER TABLE badges NO FORCE ROW LEVEL SECURITY")
            .await
            .unwrap();
        let err = Db::connect(t.config(TENANT_ROLE, 2)).await.unwrap_err();
        assert!(matches!(&err, DbError::Unsafe(m) if m.contains("badges")), "{err}");
        drop(owner);
        t.drop_db().await;
        let admin = client("postgres://postgres@127.0.0.1:5432/postgres").await;
        admin
            .batch_execute(&format!("DROP ROLE {bypass}; DROP ROLE {owning}"))
            .await
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn member_join_is_applied_once_and_concurrently_through_pgbouncer() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = t.db(4).await;
        let a = db.community_for_guild(42).await.unwrap();
        let b = db.community_for_guild(43).await.unwrap();

        for expected in [true, false] {
            let tx = db.tenant(a).await.unwrap();
            assert_eq!(record_member_join(&tx, 5, "msg-5").await.unwrap(), expected);
            tx.commit().await.unwrap();
        }
        let tx = db.tenant(a).await.unwrap();
        let audit = tx
            .query(
                "SELECT count(*) FROM audit_log WHERE correlation_id = 'msg-5' AND action = 'member_join'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(audit[0].get::<_, i64>(0), 1);
        tx.commit().await.unwrap();

        let tasks: Vec<_> = (0..50u64)
            .map(|i| {
                let db = db.clone();
                let community = if i % 2 == 0 { a } else { b };
                tokio::spawn(async move {
                    let tx = db.tenant(community).await?;
                    let first = record_member_join(&tx, 100 + i, &format!("join-{i}")).await?;
                    tx.commit().await?;
                    Ok::<bool, DbError>(first)
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap());
        }
        let status = db.pool_status();
        assert!(status.size <= 4 && status.max == 4, "{status:?}");
        let owner = t.owner().await;
        let joins: i64 = owner
            .query_one(
                "SELECT count(*) FROM audit_log WHERE correlation_id LIKE 'join-%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(joins, 50);
        let in_b: i64 = owner
            .query_one("SELECT count(*) FROM profiles WHERE community_id = $1", &[&b])
            .await
            .unwrap()
            .get(0);
        assert_eq!(in_b, 25);
        assert_eq!(t.open_transactions().await, 0);
        t.drop_db().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_dropped_transaction_has_no_effect_and_the_pool_recovers() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = t.db(1).await;
        let a = db.community_for_guild(9).await.unwrap();
        let tx = db.tenant(a).await.unwrap();
        assert!(record_member_join(&tx, 1, "dropped").await.unwrap());
        drop(tx);
        // The single pooled connection must be usable and clean.
        db.ping().await.unwrap();
        let tx = db.tenant(a).await.unwrap();
        assert_eq!(count(&tx, "profiles").await, 0);
        assert!(record_member_join(&tx, 1, "dropped").await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(t.open_transactions().await, 0);

        // With the only connection checked out, a second checkout times out
        // and says a retry may help.
        let short = Db::connect(DbConfig {
            acquire_timeout: Duration::from_millis(300),
            ..t.config(TENANT_ROLE, 1)
        })
        .await
        .unwrap();
        let held = short.tenant(a).await.unwrap();
        let err = short.tenant(a).await.unwrap_err();
        assert!(
            matches!(err, DbError::PoolTimeout) && err.is_transient(),
            "{err}"
        );
        held.rollback().await.unwrap();
        short.tenant(a).await.unwrap().rollback().await.unwrap();
        t.drop_db().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_share_of_the_pool_cannot_take_the_connections_kept_back() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = Db::connect(DbConfig {
            acquire_timeout: Duration::from_millis(300),
            ..t.config(TENANT_ROLE, 2)
        })
        .await
        .unwrap();
        let a = db.community_for_guild(9).await.unwrap();
        let background = db.share(1);
        let held = background.tenant(a).await.unwrap();
        // The share is used up: its next checkout times out (a retry may
        // help) although the pool has a connection left...
        let err = background.tenant(a).await.unwrap_err();
        assert!(
            matches!(err, DbError::PoolTimeout) && err.is_transient(),
            "{err}"
        );
        // ...which the whole pool still hands out.
        db.tenant(a).await.unwrap().rollback().await.unwrap();
        held.rollback().await.unwrap();
        background
            .tenant(a)
            .await
            .unwrap()
            .rollback()
            .await
            .unwrap();
        // The guild's community is remembered: the same id, no new row.
        assert_eq!(background.community_for_guild(9).await.unwrap(), a);
        t.drop_db().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn settings_round_trip_and_prune_spans_communities() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = t.db(2).await;
        let a = db.community_for_guild(11).await.unwrap();
        let b = db.community_for_guild(12).await.unwrap();
        assert_eq!(
            db.community_settings(a).await.unwrap(),
            serde_json::json!({})
        );
        let settings = serde_json::json!({
            "chain_id": 80094, "token": "0x00000000000000000000000000000000000000aa",
            "start_block": 1, "roles": {"naib": "123"}, "thresholds": {"fedaykin": 1.5}
        });
        db.set_community_settings(a, &settings).await.unwrap();
        assert_eq!(db.community_settings(a).await.unwrap(), settings);
        assert!(matches!(
            db.community_settings(b + 100).await,
            Err(DbError::UnknownCommunity(_))
        ));
        assert!(matches!(
            db.set_community_settings(b + 100, &settings).await,
            Err(DbError::UnknownCommunity(_))
        ));

        for (community, id) in [(a, "old-a"), (a, "new-a"), (b, "old-b"), (b, "new-b")] {
            let tx = db.tenant(community).await.unwrap();
            assert!(tx.mark_processed(id).await.unwrap());
            tx.commit().await.unwrap();
        }
        let owner = t.owner().await;
        owner
            .batch_execute(
                "UPDATE processed_messages SET processed_at = now() - interval '2 hours' \
                 WHERE message_id LIKE 'old-%'",
            )
            .await
            .unwrap();
        assert_eq!(
            db.prune_processed(Duration::from_secs(3600)).await.unwrap(),
            2
        );
        assert_eq!(
            db.prune_processed(Duration::from_secs(3600)).await.unwrap(),
            0
        );
        let left: Vec<String> = owner
            .query(
                "SELECT message_id FROM processed_messages ORDER BY message_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(left, vec!["new-a".to_owned(), "new-b".to_owned()]);
        t.drop_db().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn parallel_migrations_create_a_fresh_tenant_role_once() {
    tokio::time::timeout(LIMIT, async {
        let role = unique("arrakis_fresh");
        let names: Vec<String> = (0..4).map(|_| unique("arrakis_t")).collect();
        let urls: Vec<String> = names
            .iter()
            .map(|n| format!("postgres://postgres@127.0.0.1:5432/{n}"))
            .collect();
        // Two migrators per database, all racing for the same new role.
        let tasks: Vec<_> = urls
            .iter()
            .chain(urls.iter())
            .map(|url| {
                let (url, role) = (url.clone(), role.clone());
                tokio::spawn(async move { migrate::apply(&url, &role).await })
            })
            .collect();
        let mut applied = 0;
        for task in tasks {
            applied += task.await.unwrap().unwrap().len();
        }
        // Two migrations (0001, 0002) per database, each applied once.
        assert_eq!(
            applied,
            urls.len() * 2,
            "each database migrated exactly once"
        );
        for url in &urls {
            let db = Db::connect(DbConfig {
                url: url.clone(),
                max_connections: 1,
                acquire_timeout: Duration::from_secs(5),
                tenant_role: role.clone(),
            })
            .await
            .unwrap();
            let c = db.community_for_guild(1).await.unwrap();
            let tx = db.tenant(c).await.unwrap();
            assert!(tx.mark_processed("m").await.unwrap());
            tx.commit().await.unwrap();
        }
        let admin = client("postgres://postgres@127.0.0.1:5432/postgres").await;
        for name in &names {
            admin
                .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .await
                .unwrap();
        }
        admin
            .batch_execute(&format!("DROP ROLE {role}"))
            .await
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_says_what_postgres_said_not_just_db_error() {
    tokio::time::timeout(LIMIT, async {
        let t = TestDb::create().await;
        let db = t.db(2).await;
        let a = db.community_for_guild(1001).await.unwrap();
        let tx = db.tenant(a).await.unwrap();
        let err = tx
            .query("SELECT * FROM no_such_table", &[])
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("42P01") && text.contains("\"no_such_table\" does not exist"),
            "{text}"
        );
        assert!(!err.is_transient());
        tx.rollback().await.unwrap();
        t.drop_db().await;
    })
    .await
    .expect("bounded");
}
