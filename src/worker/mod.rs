//! The `arrakis work` role's layers (ARCHITECTURE.md §1, §4): stateless
//! consumers of the work queues that can scale from 2 to 20 replicas with
//! no coordination beyond RabbitMQ, Redis and Postgres.
//!
//! From the wire inwards:
//!
//! - [`envelope`]: a consumed message decoded (headers + gateway payload),
//!   or the poison reason that sends it to the DLQ;
//! - [`dispatch`]: the consumer's handler — dedupe claim, routing to
//!   [`events`] or to interactions, and the message's disposition (ack,
//!   retry, dead letter);
//! - [`interaction`] and [`respond`]: the `INTERACTION_CREATE` payload and
//!   answering it within Discord's 3 s window (deferring when needed);
//!   [`commands`] routes each to its handler in [`sietch`], the community
//!   logic (commands, components, the eligibility sync, roles);
//! - [`services`]: the clients handlers share: [`state`] (Redis: dedupe,
//!   limits, cooldowns, sessions, locks and the scheduler), [`db`]
//!   (Postgres with row-level security per community), [`chain`]
//!   (JSON-RPC with rotation and breakers) and [`rest`] (Discord through
//!   the REST proxy; the worker holds no token).
//!
//! - [`dashboard`]: the dead-letter page and API on the worker's HTTP
//!   listener (`/dlq`, behind `ARRAKIS_ADMIN_SECRET`).
//!
//! The queue mechanics (lanes, retries, dead letters) are in
//! [`crate::queue::consumer`]; the role's phases in [`crate::work`].

pub mod chain;
pub mod commands;
pub mod dashboard;
pub mod db;
pub mod dispatch;
pub mod envelope;
pub mod events;
pub mod interaction;
pub mod respond;
pub mod rest;
pub mod services;
pub mod sietch;
pub mod state;
