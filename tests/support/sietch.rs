//! A Sietch community under test: the Discord simulator (REST side), the
//! chain simulator, `arrakis proxy`, one `arrakis work`, Redis, Postgres
//! behind PgBouncer, and a private vhost. Interactions and events are
//! published to RabbitMQ exactly as the ingestor would (ARCHITECTURE.md
//! §3.3), so the worker is driven through the contract alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrakis::worker::db::Db;
use arrakis_loadtest::chain::{ChainSim, ChainSimConfig};
use arrakis_loadtest::sim::{
    InteractionResponse, InteractionSpec, ResponseKind, SimConfig, Simulator,
};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};

use super::db::TestDb;
use super::rest::ProxyProcess;
use super::worker::WorkerProcess;
use super::{RedisPrefix, SHARED_REDIS, Vhost, unique};

/// The token the chain simulator serves (its default contract).
pub const TOKEN: &str = "0x1111111111111111111111111111111111111111";
/// ADMINISTRATOR.
pub const ADMIN: u64 = 8;

/// The Sietch roles of the test communities.
pub const NAIB_ROLE: u64 = 7001;
pub const FEDAYKIN_ROLE: u64 = 7002;
pub const HAJRA_ROLE: u64 = 7009;
pub const FORMER_NAIB_ROLE: u64 = 7010;
pub const TAQWA_ROLE: u64 = 7011;

/// A community's settings: the chain simulator's token and the roles above.
pub fn settings() -> Value {
    json!({
        "token": TOKEN,
        "decimals": 18,
        "start_block": 999_000,
        "roles": {
            "naib": NAIB_ROLE.to_string(),
            "fedaykin": FEDAYKIN_ROLE.to_string(),
            "hajra": HAJRA_ROLE.to_string(),
            "former_naib": FORMER_NAIB_ROLE.to_string(),
            "taqwa": TAQWA_ROLE.to_string(),
        },
    })
}

/// Everything one test needs.
pub struct Sietch {
    /// Discord's stand-in.
    pub sim: Simulator,
    /// The chain's stand-in.
    pub chain: ChainSim,
    /// This test's vhost.
    pub vhost: Vhost,
    /// This test's Redis prefix.
    pub redis: RedisPrefix,
    /// This test's database.
    pub db: TestDb,
    /// The REST proxy.
    pub proxy: ProxyProcess,
    /// The worker.
    pub worker: WorkerProcess,
    /// A pool for setup, as the worker sees the database.
    pub handle: Db,
    amqp: Connection,
    channel: Channel,
    seq: AtomicU64,
    session: String,
}

/// An interaction's responses as the simulator received them.
#[derive(Debug)]
pub struct Answer {
    /// Every response, in arrival order.
    pub responses: Vec<InteractionResponse>,
}

impl Answer {
    /// The response that carries the final content (the callback, or the
    /// edit after a deferral).
    pub fn last(&self) -> &InteractionResponse {
        self.responses.last().expect("at least one response")
    }

    /// The first callback's type.
    pub fn callback_type(&self) -> u8 {
        match self.responses.first().map(|r| r.kind) {
            Some(ResponseKind::Callback { type_ }) => type_,
            other => panic!("first response is not a callback: {other:?}"),
        }
    }

    /// The final content.
    pub fn content(&self) -> String {
        let last = self.last();
        last.content
            .clone()
            .or_else(|| last.body["data"]["content"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Whether the reply was ephemeral (the flag of the first callback,
    /// which a deferral fixes).
    pub fn ephemeral(&self) -> bool {
        self.responses
            .first()
            .and_then(|r| r.flags)
            .is_some_and(|f| f & 64 != 0)
    }

    /// The final message's components.
    pub fn components(&self) -> Value {
        let last = self.last();
        if last.body["data"].is_object() {
            last.body["data"]["components"].clone()
        } else {
            last.body["components"].clone()
        }
    }
}

fn is_final(r: &InteractionResponse) -> bool {
    matches!(
        r.kind,
        ResponseKind::Callback {
            type_: 4 | 7 | 8 | 9
        } | ResponseKind::EditOriginal
    )
}

impl Sietch {
    /// Starts everything; the worker is ready when this returns.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let sim = Simulator::start(SimConfig::default())
            .await
            .expect("simulator starts");
        let chain = ChainSim::start(ChainSimConfig::default())
            .await
            .expect("chain simulator starts");
        let vhost = Vhost::create();
        let redis = RedisPrefix::new();
        let db = TestDb::create().await;
        let proxy = ProxyProcess::start(&sim.api_base(), SHARED_REDIS, &redis.prefix, &[]).await;
        let mut env: Vec<(&str, String)> = vec![
            ("AMQP_URL", vhost.url()),
            ("REDIS_URL", SHARED_REDIS.to_owned()),
            ("ARRAKIS_REDIS_PREFIX", redis.prefix.clone()),
            ("DATABASE_URL", db.bouncer_url()),
            ("ARRAKIS_REST_URL", format!("{}/api/v10", proxy.base)),
            ("ARRAKIS_CHAIN_RPC_URLS", chain.urls().join(",")),
            // The limiter has its own tests; these drive many commands.
            ("ARRAKIS_USER_COMMANDS_PER_SEC", "1000".to_owned()),
            ("ARRAKIS_GUILD_COMMANDS_PER_SEC", "10000".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let worker = WorkerProcess::start(&env).await;
        worker.wait_ready(Duration::from_secs(30)).await;
        let handle = db.db(4).await;
        let amqp = Connection::connect(&vhost.url(), ConnectionProperties::default())
            .await
            .expect("AMQP");
        let channel = amqp.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        Self {
            sim,
            chain,
            vhost,
            redis,
            db,
            proxy,
            worker,
            handle,
            amqp,
            channel,
            seq: AtomicU64::new(1),
            session: unique("session"),
        }
    }

    /// The gateway session id the published messages carry.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Creates (or finds) the community of `guild` with `settings`.
    pub async fn community(&self, guild: u64, settings: Value) -> i64 {
        let id = self.handle.community_for_guild(guild).await.unwrap();
        self.handle
            .set_community_settings(id, &settings)
            .await
            .unwrap();
        id
    }

    /// Runs SQL as the owner (bypasses RLS: for setup and inspection).
    /// A `SELECT` returns its rows; anything else may be several
    /// statements and returns none.
    pub async fn sql(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let client = self.db.owner().await;
        if sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        } else {
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            Vec::new()
        }
    }

    /// Publishes a dispatch as the ingestor would; returns its message id.
    pub async fn publish(&self, event: &str, d: Value, guild: Option<u64>) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let message_id = format!("{}:{seq}", self.session);
        let class = if event == "INTERACTION_CREATE" {
            "interaction"
        } else {
            "event"
        };
        let body = json!({ "op": 0, "t": event, "s": seq, "d": d }).to_string();
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let mut headers = FieldTable::default();
        headers.insert("shard_id".into(), AMQPValue::LongInt(0));
        headers.insert("shard_count".into(), AMQPValue::LongInt(1));
        headers.insert(
            "seq".into(),
            AMQPValue::LongLongInt(i64::try_from(seq).unwrap()),
        );
        headers.insert(
            "received_at_us".into(),
            AMQPValue::LongLongInt(i64::try_from(now_us).unwrap()),
        );
        if let Some(g) = guild {
            headers.insert(
                "guild_id".into(),
                AMQPValue::LongString(g.to_string().into()),
            );
        }
        self.channel
            .basic_publish(
                "arrakis.gateway".into(),
                format!("{class}.{event}").as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(message_id.as_str().into())
                    .with_type(event.into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        message_id
    }

    /// Sends an interaction and waits (bounded) for its final response.
    pub async fn interact(&self, spec: InteractionSpec) -> Answer {
        let guild = spec.guild_id;
        let (emitted, d) = self.sim.prepare_interaction(spec);
        self.publish("INTERACTION_CREATE", d, guild).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let responses: Vec<InteractionResponse> = self
                .sim
                .interaction_responses()
                .into_iter()
                .filter(|r| r.interaction_id == emitted.id)
                .collect();
            if responses.iter().any(is_final) {
                // A deferral may still be followed by its edit.
                return Answer { responses };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no final response to interaction {}; got {responses:?}; worker log:\n{}",
                emitted.id,
                self.worker.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until `sql` returns `want` as its first column of
    /// its first row (as text).
    pub async fn wait_sql(&self, sql: &str, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rows = self.sql(sql).await;
            let got: Option<String> = rows.first().map(|r| r.get(0));
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sql}: {got:?}, want {want}; worker log:\n{}",
                self.worker.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the simulators and drops the database.
    pub async fn finish(self) {
        let Self {
            sim,
            chain,
            db,
            worker,
            amqp,
            handle,
            ..
        } = self;
        drop(worker);
        drop(handle);
        let _ = amqp.close(200, "done".into()).await;
        chain.shutdown().await;
        sim.shutdown().await;
        db.drop_db().await;
    }
}

/// `[u8; 20]` of a `0x…` address.
pub fn address(hex: &str) -> [u8; 20] {
    arrakis_loadtest::chain::address(hex).expect("an address")
}

/// A distinct test address from a number.
pub fn wallet(n: u64) -> String {
    format!("0x{:040x}", 0x00ab_0000_0000_0000_u64 + n)
}

/// `n` whole tokens in raw units (18 decimals).
pub fn tokens(n: u128) -> u128 {
    n * 1_000_000_000_000_000_000
}

/// A user option value.
pub fn user_option(name: &str, user: u64) -> Value {
    json!({ "name": name, "type": 6, "value": user.to_string() })
}

/// A string option value.
pub fn string_option(name: &str, value: &str) -> Value {
    json!({ "name": name, "type": 3, "value": value })
}

/// A subcommand with options.
pub fn sub(name: &str, options: Value) -> Value {
    json!([{ "name": name, "type": 1, "options": options }])
}
