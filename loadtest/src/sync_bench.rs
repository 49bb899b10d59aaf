//! `loadtest sync-bench`: how long the eligibility sync of one community
//! takes against the chain simulator.
//!
//! Mints `--holders` holders (1 % of them burners) on the chain simulator,
//! sets up a community whose first `--members` holders are verified
//! members of the guild, starts `arrakis proxy` (against the Discord
//! simulator) and one `arrakis work`, then runs the sync `--runs` times
//! through `/admin-eligibility sync`, as an admin would. The first run
//! scans every log and assigns every role; later runs read the balances
//! again and change nothing. Each run prints the worker's own report
//! (holders, eligible, role changes, DMs, seconds) and the wall time from
//! the interaction to its answer.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrakis_loadtest::chain::{ChainSim, ChainSimConfig, hex};
use arrakis_loadtest::sim::{InteractionSpec, ResponseKind, SimConfig, Simulator};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::time::Instant;

use crate::pipeline::{Role, ready, spawn};

const VHOST: &str = "arrakis-sync-bench";
const REDIS_PREFIX: &str = "arrakis-sync-bench";
const GUILD: u64 = 900_000_000_000_000_999;
const ADMIN: u64 = 8;
/// The first member's user id; member `i` is `FIRST_USER + i`.
const FIRST_USER: u64 = 500_000_000_000_000_000;
const FEDAYKIN_ROLE: u64 = 8_200;
const NAIB_ROLE: u64 = 8_100;

/// Options of `loadtest sync-bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Token holders on the chain simulator.
    #[arg(long, default_value_t = 10_000)]
    holders: u32,
    /// Verified members among them (the top holders).
    #[arg(long, default_value_t = 200)]
    members: u32,
    /// Syncs to run one after another.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// The `arrakis` binary.
    #[arg(long, default_value = "target/release/arrakis")]
    arrakis: PathBuf,
    /// RabbitMQ host:port (the bench uses its own vhost there).
    #[arg(long, default_value = "127.0.0.1:5672")]
    rabbitmq: String,
    /// The bench database through PgBouncer (the worker's).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:6432/arrakis_sync_bench"
    )]
    database_url: String,
    /// The same database, direct, for `arrakis migrate` and set-up.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/arrakis_sync_bench"
    )]
    migrate_url: String,
}

/// Why the bench failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BenchError(String);

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BenchError + '_ {
    move |e| BenchError(format!("{what}: {e}"))
}

fn holder(i: u32) -> [u8; 20] {
    let mut a = [0x42u8; 20];
    a[16..].copy_from_slice(&i.to_be_bytes());
    a
}

async fn psql(url: &str, sql: &str) -> Result<(), BenchError> {
    let status = tokio::process::Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(setup("psql"))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError(format!("psql failed: {sql}")))
    }
}

/// Runs the bench.
pub(crate) async fn run(args: Args) -> Result<(), BenchError> {
    crate::ops::ensure_vhost(VHOST);
    crate::ops::clear_redis_keys(REDIS_PREFIX);
    let status = tokio::process::Command::new(&args.arrakis)
        .arg("migrate")
        .env("DATABASE_URL", &args.migrate_url)
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(setup("running arrakis migrate"))?;
    if !status.success() {
        return Err(BenchError(format!("arrakis migrate failed: {status}")));
    }

    let chain = ChainSim::start(ChainSimConfig::default())
        .await
        .map_err(setup("chain simulator"))?;
    let start_block = chain.head();
    let minted = Instant::now();
    for i in 0..args.holders {
        // Distinct balances, largest first; every hundredth holder burns.
        let balance = u128::from(args.holders - i) * 1_000_000_000_000_000_000;
        chain.mint(holder(i), balance);
        if i % 100 == 99 {
            chain.burn(holder(i), 1);
        }
    }
    eprintln!(
        "minted {} holders over {} blocks in {:.1} s",
        args.holders,
        chain.head() - start_block,
        minted.elapsed().as_secs_f64()
    );
    let token = hex(&ChainSimConfig::default().token);
    let settings = format!(
        "{{\"token\":\"{token}\",\"decimals\":18,\"start_block\":{start_block},\
          \"roles\":{{\"naib\":\"{NAIB_ROLE}\",\"fedaykin\":\"{FEDAYKIN_ROLE}\"}}}}"
    );
    psql(
        &args.migrate_url,
        &format!(
            "DELETE FROM communities WHERE guild_id = {GUILD}; \
             INSERT INTO communities (guild_id, settings) VALUES ({GUILD}, '{settings}'); \
             INSERT INTO wallets (community_id, address, user_id) \
               SELECT c.id, '0x' || repeat('42', 16) || lpad(to_hex(i), 8, '0'), {FIRST_USER} + i \
               FROM communities c, generate_series(0, {} - 1) AS i WHERE c.guild_id = {GUILD};",
            args.members
        ),
    )
    .await?;

    let sim = Simulator::start(SimConfig::default())
        .await
        .map_err(setup("Discord simulator"))?;
    for i in 0..args.members {
        sim.add_member(GUILD, FIRST_USER + u64::from(i), &[]);
    }
    let proxy_listen = crate::ops::free_addr();
    let proxy: Role = spawn(
        &args.arrakis,
        "proxy",
        &[
            ("DISCORD_TOKEN", sim.config().token.clone()),
            ("DISCORD_API_BASE", sim.api_base()),
            ("ARRAKIS_PROXY_LISTEN", proxy_listen.clone()),
            ("ARRAKIS_REDIS_PREFIX", REDIS_PREFIX.to_owned()),
        ],
    )
    .map_err(BenchError)?;
    ready(&proxy, "the proxy").await.map_err(BenchError)?;
    let amqp_url = format!("amqp://guest:guest@{}/{VHOST}", args.rabbitmq);
    let worker: Role = spawn(
        &args.arrakis,
        "work",
        &[
            ("AMQP_URL", amqp_url.clone()),
            ("DATABASE_URL", args.database_url.clone()),
            ("ARRAKIS_REDIS_PREFIX", REDIS_PREFIX.to_owned()),
            ("ARRAKIS_REST_URL", format!("http://{proxy_listen}/api/v10")),
            ("ARRAKIS_CHAIN_RPC_URLS", chain.urls().join(",")),
        ],
    )
    .map_err(BenchError)?;
    ready(&worker, "the worker").await.map_err(BenchError)?;

    let connection = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .map_err(setup("connecting to RabbitMQ"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(setup("opening a channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(setup("confirms"))?;
    println!(
        "sync-bench: {} holders ({} burners), {} verified members",
        args.holders,
        args.holders / 100,
        args.members
    );
    for run in 1..=args.runs {
        let spec = InteractionSpec::command(
            "admin-eligibility",
            serde_json::json!([{ "name": "sync", "type": 1, "options": [] }]),
        )
        .guild(GUILD)
        .permissions(ADMIN);
        let (emitted, d) = sim.prepare_interaction(spec);
        let sent = Instant::now();
        publish(&channel, run, &d).await?;
        let deadline = sent + Duration::from_secs(600);
        let answer = loop {
            // Within the defer threshold the callback itself answers;
            // a longer sync edits the deferred response.
            if let Some(r) = sim.interaction_responses().into_iter().find(|r| {
                r.interaction_id == emitted.id
                    && matches!(
                        r.kind,
                        ResponseKind::EditOriginal | ResponseKind::Callback { type_: 4 }
                    )
            }) {
                break r;
            }
            if Instant::now() > deadline {
                return Err(BenchError(format!(
                    "run {run}: no answer within {} s",
                    (deadline - sent).as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "run {run}: {:.2} s to the answer — {}",
            sent.elapsed().as_secs_f64(),
            answer.content.unwrap_or_default()
        );
    }
    let roles = sim.role_changes().len();
    let dms = sim.messages_sent().len();
    println!("Discord received {roles} role changes and {dms} DMs in all");
    let _ = connection.close(200, "done".into()).await;
    drop(worker);
    drop(proxy);
    chain.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

async fn publish(
    channel: &lapin::Channel,
    seq: u32,
    d: &serde_json::Value,
) -> Result<(), BenchError> {
    let body =
        serde_json::json!({ "op": 0, "t": "INTERACTION_CREATE", "s": seq, "d": d }).to_string();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut headers = FieldTable::default();
    headers.insert(
        "received_at_us".into(),
        AMQPValue::LongLongInt(i64::try_from(now_us).unwrap_or(i64::MAX)),
    );
    headers.insert(
        "guild_id".into(),
        AMQPValue::LongString(GUILD.to_string().into()),
    );
    channel
        .basic_publish(
            "arrakis.gateway".into(),
            "interaction.INTERACTION_CREATE".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default()
                .with_message_id(
                    format!("syncbench{:08x}:{seq}", rand::random::<u32>())
                        .as_str()
                        .into(),
                )
                .with_type("INTERACTION_CREATE".into())
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .map_err(setup("publish"))?
        .await
        .map_err(setup("publish confirm"))?;
    Ok(())
}
