//! The story-level harness: the simulator, `arrakis ingest`, and a
//! collector on the queues, with the assertions every test makes.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use arrakis_loadtest::sim::{EventKind, SentDispatch, SimConfig, Simulator};

use super::{Collector, Ingestor, Received, RedisPrefix, Vhost, wait_draining, wait_until};

/// Bound on waiting for delivery.
pub const DELIVERY: Duration = Duration::from_secs(30);

/// A simulator tuned for tests: 1 s heartbeats.
pub fn fast_config(shards: u32) -> SimConfig {
    SimConfig {
        shards,
        max_concurrency: shards.max(1),
        heartbeat_interval: Duration::from_millis(1_000),
        heartbeat_grace: Duration::from_millis(700),
        ..SimConfig::default()
    }
}

pub struct Harness {
    pub sim: Simulator,
    pub ingestor: Ingestor,
    pub collector: Collector,
    /// Environment of the ingestor, reused by [`restart`](Self::restart).
    env: Vec<(String, String)>,
    api_base: String,
    amqp_url: String,
    pub prefix: RedisPrefix,
    _vhost: Option<Vhost>,
}

impl Harness {
    /// Simulator + a private vhost on the shared broker + the ingestor.
    pub async fn start(config: SimConfig, extra: &[(&str, &str)]) -> Self {
        let sim = Simulator::start(config).await.expect("simulator starts");
        let vhost = Vhost::create();
        let url = vhost.url();
        Self::start_with(sim, &url, &url, Some(vhost), extra).await
    }

    /// The ingestor publishes to `ingest_amqp`; the collector reads
    /// `collect_amqp` (the same broker, possibly through a proxy).
    pub async fn start_with(
        sim: Simulator,
        ingest_amqp: &str,
        collect_amqp: &str,
        vhost: Option<Vhost>,
        extra: &[(&str, &str)],
    ) -> Self {
        let prefix = RedisPrefix::new();
        let mut env: Vec<(String, String)> =
            vec![("ARRAKIS_REDIS_PREFIX".into(), prefix.prefix.clone())];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let api_base = sim.api_base();
        let ingestor = spawn(&api_base, ingest_amqp, &env);
        let collector = Collector::start(collect_amqp).await;
        Self {
            sim,
            ingestor,
            collector,
            env,
            api_base,
            amqp_url: ingest_amqp.to_owned(),
            prefix,
            _vhost: vhost,
        }
    }

    /// The AMQP URL the ingestor publishes to.
    pub fn collector_url(&self) -> String {
        self.amqp_url.clone()
    }

    /// Starts a new ingestor with the same environment (after the old one
    /// was killed or stopped).
    pub fn restart(&mut self) {
        self.ingestor = spawn(&self.api_base, &self.amqp_url, &self.env);
    }

    pub async fn ready(&self, shard: u32) {
        wait_until(&format!("shard {shard} ready"), DELIVERY, || {
            self.sim.shard_status(shard).is_some_and(|s| s.ready)
        })
        .await;
    }

    pub fn emit_mix(&self, shard: u32, n: usize) {
        let kinds = [
            EventKind::MessageCreate,
            EventKind::PresenceUpdate,
            EventKind::GuildMemberAdd,
            EventKind::TypingStart,
            EventKind::InteractionCreate,
        ];
        for i in 0..n {
            let kind = kinds[i % kinds.len()].clone();
            self.sim.emit(shard, kind).expect("shard has a session");
        }
    }

    /// Waits until every dispatch the simulator sent is in RabbitMQ, then
    /// checks each one byte for byte.
    pub async fn assert_all_delivered(&self) {
        let expected = self.sim.sent();
        assert!(!expected.is_empty());
        let ids = message_ids(&expected);
        wait_draining("every dispatch in RabbitMQ", DELIVERY, DELIVERY * 4, || {
            self.collector.missing(&ids).len()
        })
        .await;
        let received: HashMap<String, Received> = self
            .collector
            .all()
            .into_iter()
            .map(|r| (r.message_id.clone(), r))
            .collect();
        for sent in &expected {
            let id = format!("{}:{}", sent.session_id, sent.seq);
            let got = &received[&id];
            if !sent.body.is_empty() {
                assert_eq!(got.body, sent.body, "body of {id} differs");
            }
            assert_eq!(got.seq(), sent.seq);
            assert_eq!(got.shard_id(), sent.shard_id);
            assert_eq!(got.kind, sent.event);
            assert_eq!(
                got.guild_id(),
                sent.guild_id,
                "guild_id of {id} ({})",
                sent.event
            );
        }
    }

    /// Sequence numbers per session must have no gap from 1 to the last.
    pub fn assert_no_gaps(&self) {
        let mut by_session: HashMap<String, BTreeSet<u64>> = HashMap::new();
        for r in self.collector.all() {
            let (session, seq) = r.message_id.rsplit_once(':').unwrap();
            by_session
                .entry(session.to_owned())
                .or_default()
                .insert(seq.parse().unwrap());
        }
        for (session, seqs) in by_session {
            let last = *seqs.last().unwrap();
            assert_eq!(
                seqs.len() as u64,
                last,
                "session {session} has gaps: {} of 1..={last}",
                seqs.len()
            );
        }
    }

    /// Messages received more than once (same message_id).
    pub fn duplicates(&self) -> usize {
        self.collector.len() - self.collector.distinct()
    }

    pub fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(
            violations.is_empty(),
            "protocol violations: {violations:#?}"
        );
    }

    pub fn identifies(&self) -> usize {
        self.sim.identifies().len()
    }

    pub fn accepted_resumes_on_resume_url(&self) -> usize {
        self.sim
            .resumes()
            .iter()
            .filter(|r| r.accepted && r.on_resume_url)
            .count()
    }
}

/// The contract's `message_id` (`{session_id}:{seq}`) of each dispatch.
pub fn message_ids(sent: &[SentDispatch]) -> Vec<String> {
    sent.iter()
        .map(|d| format!("{}:{}", d.session_id, d.seq))
        .collect()
}

fn spawn(api_base: &str, amqp: &str, env: &[(String, String)]) -> Ingestor {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ingestor::start(api_base, amqp, &pairs)
}
