//! Exchanges, queues and bindings (ARCHITECTURE.md §3.2).
//!
//! Declared by every role that touches the broker, each time it connects:
//! declarations are idempotent, so whichever role starts first creates the
//! topology and the others confirm it. A queue that already exists with
//! other arguments (say, a classic queue where quorum is configured) makes
//! the broker close the channel with PRECONDITION_FAILED; that error is
//! reported as is, since only the operator can decide to migrate it.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// The topic exchange every dispatch is published to.
pub const GATEWAY_EXCHANGE: &str = "arrakis.gateway";
/// The fanout exchange the work queues dead-letter to.
pub const DEAD_EXCHANGE: &str = "arrakis.dead";
/// The queue bound to [`DEAD_EXCHANGE`].
pub const DEAD_LETTER_QUEUE: &str = "arrakis.dlq";
/// The headers exchange workers publish retries to; the header
/// [`RETRY_DELAY_HEADER`] picks the delay queue.
pub const RETRY_EXCHANGE: &str = "arrakis.retry";
/// Header naming a retry's delay tier. Not `x-` prefixed: a headers
/// exchange ignores `x-` headers when matching.
pub const RETRY_DELAY_HEADER: &str = "arrakis-retry-delay";
/// Delay queues: a retried message waits here for the tier's TTL, then the
/// broker dead-letters it through the default exchange with the routing key
/// it was published with, which is its origin work queue's name. So a
/// retry goes back to the one queue it came from, never to every queue
/// bound to the gateway exchange.
pub const RETRY_TIERS: [(&str, &str, u32); 3] = [
    ("1s", "arrakis.retry.1s", 1_000),
    ("10s", "arrakis.retry.10s", 10_000),
    ("60s", "arrakis.retry.60s", 60_000),
];
/// Work queues and their binding keys.
pub const WORK_QUEUES: [(&str, &str); 3] = [
    ("arrakis.interactions", "interaction.#"),
    ("arrakis.events", "event.#"),
    ("arrakis.bulk", "bulk.#"),
];

/// The queue type (`ARRAKIS_QUEUE_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated Raft queues: the default, and faster than classic on the
    /// machines we measured.
    #[default]
    Quorum,
    /// Classic mirrored-less queues, for brokers without quorum support.
    Classic,
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "quorum" => Ok(QueueType::Quorum),
            "classic" => Ok(QueueType::Classic),
            other => Err(format!("`{other}` is not `quorum` or `classic`")),
        }
    }
}

impl QueueType {
    fn name(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// Declares the whole topology on `channel`.
///
/// # Errors
///
/// The broker's error, e.g. PRECONDITION_FAILED when a queue exists with
/// different arguments.
pub async fn declare(channel: &Channel, queue_type: QueueType) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            GATEWAY_EXCHANGE.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            DEAD_EXCHANGE.into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;

    let queue_options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut dlq_args = FieldTable::default();
    dlq_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.name().into()),
    );
    channel
        .queue_declare(DEAD_LETTER_QUEUE.into(), queue_options, dlq_args)
        .await?;
    channel
        .queue_bind(
            DEAD_LETTER_QUEUE.into(),
            DEAD_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for (queue, binding) in WORK_QUEUES {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(queue_type.name().into()),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DEAD_EXCHANGE.into()),
        );
        channel
            .queue_declare(queue.into(), queue_options, args)
            .await?;
        channel
            .queue_bind(
                queue.into(),
                GATEWAY_EXCHANGE.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Declares the retry exchange and its delay queues ([`RETRY_TIERS`]).
/// Quorum delay queues dead-letter at-least-once, so a retry is never lost
/// between the delay queue and its origin queue.
///
/// # Errors
///
/// The broker's error.
pub async fn declare_retry(channel: &Channel, queue_type: QueueType) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            RETRY_EXCHANGE.into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for (tier, queue, ttl_ms) in RETRY_TIERS {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(queue_type.name().into()),
        );
        args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl_ms));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        if queue_type == QueueType::Quorum {
            args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await?;
        let mut binding = FieldTable::default();
        binding.insert("x-match".into(), AMQPValue::LongString("all".into()));
        binding.insert(
            RETRY_DELAY_HEADER.into(),
            AMQPValue::LongString(tier.into()),
        );
        channel
            .queue_bind(
                queue.into(),
                RETRY_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                binding,
            )
            .await?;
    }
    Ok(())
}
