//! The worker's consumer against a real RabbitMQ (a private vhost per
//! test): acks after the effect, retries through the delay queues back to
//! the origin queue, dead letters with reason and attempts, panics and
//! graceful drain.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrakis::queue::consumer::{
    ATTEMPTS_HEADER, Consumer, ConsumerConfig, ConsumerMetrics, Delivered, Disposition, Handler,
    Lane, QUEUE_HEADER, REASON_HEADER, ROUTING_KEY_HEADER,
};
use arrakis::queue::topology::{self, GATEWAY_EXCHANGE, QueueType};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use support::{Vhost, wait_until};

/// Behaviour chosen by the body: `ok`, `flaky:N` (fails N times),
/// `poison`, `panic`, `slow:MS`, `later:N` (someone else holds it N times).
#[derive(Default)]
struct Scripted {
    seen: Mutex<HashMap<String, Vec<u32>>>,
    done: Mutex<Vec<String>>,
}

impl Handler for Scripted {
    async fn handle(&self, d: &Delivered) -> Disposition {
        let body = String::from_utf8_lossy(&d.body).into_owned();
        let tries = {
            let mut seen = self.seen.lock().unwrap();
            let entry = seen.entry(body.clone()).or_default();
            entry.push(d.attempts);
            entry.len()
        };
        let (kind, n) = body.split_once(':').unwrap_or((&body, "0"));
        let n: usize = n.parse().unwrap_or(0);
        let disposition = match kind {
            "ok" => Disposition::Ack,
            "flaky" if tries <= n => Disposition::Retry {
                reason: format!("flaky failure {tries}"),
            },
            "flaky" => Disposition::Ack,
            "later" if tries <= n => Disposition::Later,
            "later" => Disposition::Ack,
            "poison" => Disposition::DeadLetter {
                reason: "unknown shape: test poison".to_owned(),
            },
            "panic" => panic!("scripted panic"),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(n as u64)).await;
                Disposition::Ack
            }
            _ => Disposition::DeadLetter {
                reason: "unscripted".to_owned(),
            },
        };
        if disposition == Disposition::Ack {
            self.done.lock().unwrap().push(body);
        }
        disposition
    }
}

struct Rig {
    vhost: Vhost,
    handler: Arc<Scripted>,
    metrics: Arc<ConsumerMetrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start(max_attempts: u32) -> Self {
        let vhost = Vhost::create();
        let handler = Arc::new(Scripted::default());
        let mut registry = Registry::default();
        let metrics = ConsumerMetrics::register(&mut registry);
        let consumer = Consumer::new(
            ConsumerConfig {
                amqp_url: vhost.url(),
                queue_type: QueueType::Quorum,
                connection_name: "consumer-test".to_owned(),
                lanes: vec![
                    Lane {
                        queue: "arrakis.events",
                        prefetch: 16,
                    },
                    Lane {
                        queue: "arrakis.bulk",
                        prefetch: 16,
                    },
                ],
                max_attempts,
            },
            handler.clone(),
            metrics.clone(),
        );
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consumer.run(stopped, Duration::from_secs(5)));
        let rig = Self {
            vhost,
            handler,
            metrics,
            stop,
            task,
        };
        let m = rig.metrics.clone();
        wait_until("the consumer connects", Duration::from_secs(20), || {
            m.not_ready_reason().is_none()
        })
        .await;
        rig
    }

    async fn publish(&self, routing_key: &str, bodies: &[&str]) {
        let conn = Connection::connect(&self.vhost.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        topology::declare(&ch, QueueType::Quorum).await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        for (i, body) in bodies.iter().enumerate() {
            let mut headers = FieldTable::default();
            headers.insert("seq".into(), AMQPValue::LongLongInt(i as i64));
            ch.basic_publish(
                GATEWAY_EXCHANGE.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(format!("s:{i}").into())
                    .with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let _ = conn.close(200, "done".into()).await;
    }

    /// Takes `n` messages off the DLQ (bounded wait): body, routing key,
    /// headers.
    async fn dead_letters(&self, n: usize) -> Vec<(String, String, FieldTable)> {
        support::take_dead_letters(&self.vhost.url(), n)
            .await
            .into_iter()
            .map(|d| {
                (
                    String::from_utf8_lossy(&d.data).into_owned(),
                    d.routing_key.to_string(),
                    d.properties.headers().clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn done(&self) -> Vec<String> {
        self.handler.done.lock().unwrap().clone()
    }

    fn attempts_seen(&self, body: &str) -> Vec<u32> {
        self.handler
            .seen
            .lock()
            .unwrap()
            .get(body)
            .cloned()
            .unwrap_or_default()
    }

    /// Stops the consumer; the vhost lives on with the caller.
    async fn stop(self) -> Vhost {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("consumer stops within its drain bound")
            .unwrap();
        self.vhost
    }
}

fn header_str(h: &FieldTable, name: &str) -> Option<String> {
    match h.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

fn header_int(h: &FieldTable, name: &str) -> Option<i64> {
    h.inner()
        .get(name)
        .and_then(arrakis::queue::consumer::amqp_i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_through_the_delay_queue_then_succeeds() {
    let rig = Rig::start(4).await;
    rig.publish("event.GUILD_MEMBER_ADD", &["ok", "flaky:1"])
        .await;
    wait_until("both handled", Duration::from_secs(20), || {
        rig.done().len() == 2
    })
    .await;
    // First delivery saw no failed attempts, the retry saw one; it came back
    // to arrakis.events (the only place this handler listens for it).
    assert_eq!(rig.attempts_seen("flaky:1"), vec![0, 1]);
    assert_eq!(rig.metrics.outcome_count("arrakis.events", "retry"), 1);
    assert_eq!(rig.metrics.outcome_count("arrakis.events", "ack"), 2);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_exhausted_retries_land_in_the_dlq_with_reason_and_attempts() {
    let rig = Rig::start(2).await;
    rig.publish("event.MESSAGE_CREATE", &["poison", "flaky:5", "panic"])
        .await;
    let mut dead = rig.dead_letters(3).await;
    dead.sort_by(|a, b| a.0.cmp(&b.0));
    let (body, key, h) = &dead[0];
    assert_eq!(body, "flaky:5");
    assert_eq!(
        key, "event.MESSAGE_CREATE",
        "the original routing key, for replay"
    );
    assert_eq!(header_int(h, ATTEMPTS_HEADER), Some(2));
    assert!(
        header_str(h, REASON_HEADER)
            .unwrap()
            .starts_with("gave up after 2 attempts: flaky failure 2")
    );
    assert_eq!(
        header_str(h, QUEUE_HEADER).as_deref(),
        Some("arrakis.events")
    );
    assert_eq!(
        header_str(h, ROUTING_KEY_HEADER).as_deref(),
        Some("event.MESSAGE_CREATE")
    );
    assert_eq!(header_int(h, "seq"), Some(1), "original headers are kept");

    let (body, _, h) = &dead[1];
    assert_eq!(body, "panic");
    assert_eq!(
        header_str(h, REASON_HEADER).as_deref(),
        Some("the handler panicked")
    );

    let (body, _, h) = &dead[2];
    assert_eq!(body, "poison");
    assert_eq!(
        header_str(h, REASON_HEADER).as_deref(),
        Some("unknown shape: test poison")
    );
    assert_eq!(
        header_int(h, ATTEMPTS_HEADER),
        Some(0),
        "poison goes at once"
    );
    assert_eq!(rig.attempts_seen("poison"), vec![0]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_does_not_count_an_attempt() {
    let rig = Rig::start(2).await;
    rig.publish("bulk.PRESENCE_UPDATE", &["later:3"]).await;
    wait_until(
        "handled after three deferrals",
        Duration::from_secs(30),
        || rig.done().len() == 1,
    )
    .await;
    assert_eq!(rig.attempts_seen("later:3"), vec![0, 0, 0, 0]);
    assert_eq!(rig.metrics.outcome_count("arrakis.bulk", "later"), 3);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_in_flight_messages_finish_and_acks_them() {
    let rig = Rig::start(3).await;
    rig.publish("event.GUILD_MEMBER_ADD", &["slow:1500"]).await;
    let handler = rig.handler.clone();
    wait_until("the slow message started", Duration::from_secs(10), || {
        !handler.seen.lock().unwrap().is_empty()
    })
    .await;
    let done = rig.handler.clone();
    let vhost = rig.stop().await;
    let vhost_url = vhost.url();
    assert_eq!(
        done.done.lock().unwrap().len(),
        1,
        "finished within the drain bound"
    );
    // And it was acked: nothing is left in the queue.
    let conn = Connection::connect(&vhost_url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "arrakis.events".into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_and_consumers_are_polled_from_the_broker() {
    use arrakis::queue::depth::{self, DepthMetrics};
    use arrakis::queue::topology::DEAD_LETTER_QUEUE;

    let rig = Rig::start(1).await;
    // Three poison messages end in the DLQ, where nobody consumes them.
    rig.publish("event.MESSAGE_CREATE", &["poison", "poison", "poison"])
        .await;
    let mut registry = Registry::default();
    let metrics = DepthMetrics::register(&mut registry);
    let (stop, stopped) = watch::channel(false);
    let poller = tokio::spawn(depth::poll(
        rig.vhost.url(),
        "depth-test".to_owned(),
        vec!["arrakis.events", DEAD_LETTER_QUEUE, "arrakis.missing"],
        Duration::from_millis(100),
        metrics.clone(),
        stopped,
    ));
    let m = metrics.clone();
    wait_until("the DLQ depth reaches 3", Duration::from_secs(20), || {
        m.messages(DEAD_LETTER_QUEUE) == Some(3)
    })
    .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("queue_consumers{queue=\"arrakis.events\"} 1"),
        "the rig's consumer is counted:\n{text}"
    );
    assert!(text.contains("queue_consumers{queue=\"arrakis.dlq\"} 0"));
    assert_eq!(
        metrics.messages("arrakis.missing"),
        None,
        "a queue that does not exist reports nothing"
    );
    let failures: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("queue_poll_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        failures >= 1.0,
        "a missing queue counts as a failed poll:\n{text}"
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), poller)
        .await
        .expect("the poller stops when told")
        .unwrap();
    rig.stop().await;
}
