//! Arrakis: a Discord gateway proxy.
//!
//! One binary, one role per subcommand (ARCHITECTURE.md §3.1). This crate is
//! its library: [`gateway`] is the hand-rolled Discord gateway client,
//! [`queue`] the RabbitMQ side, [`ingest`] wires them into the
//! `arrakis ingest` role, and [`health`] serves `/healthz`, `/readyz` and
//! `/metrics`. [`rest`] is the Discord REST client with rate limits shared
//! through Redis, and [`proxy`] serves it as the `arrakis proxy` role.
//! [`worker`] holds the worker's layers (envelope decoding, interaction
//! responses, Redis state, Postgres, the chain client) and [`work`] wires
//! them into the `arrakis work` role. Every role runs on the same small
//! [`runner`].

pub mod config;
pub mod correlation;
pub mod gateway;
pub mod health;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod queue;
pub mod register;
pub mod rest;
pub mod runner;
pub mod signal;
pub mod work;
pub mod worker;

/// The `User-Agent` Discord requires on REST calls:
/// `DiscordBot ($url, $versionNumber)`.
pub const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/arrakis-gateway/arrakis, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);
