//! The RabbitMQ side of the ingestor.
//!
//! - [`topology`]: exchanges and queues of ARCHITECTURE.md §3.2, declared
//!   idempotently at start-up;
//! - [`message`]: one dispatch as published (§3.3): body, routing key,
//!   properties and headers;
//! - [`publisher`]: the task that owns the broker connection, publishes
//!   with confirms, and retries until every dispatch is confirmed, fed by a
//!   bounded buffer so the gateway read loop never waits on the broker;
//! - [`consumer`]: the workers' side: prefetch, lanes, acks, retries,
//!   dead-lettering;
//! - [`dead_letters`]: `arrakis.dlq` for an operator: browse, inspect,
//!   replay, discard;
//! - [`depth`]: queue depth and consumer counts polled from the broker.

pub mod consumer;
pub mod dead_letters;
pub mod depth;
pub mod message;
pub mod publisher;
pub mod topology;
