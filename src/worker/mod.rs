//! The `arrakis work` role: stateless consumers of the work queues
//! (ARCHITECTURE.md §1, §4).
//!
//! Layers, each in its own module: the chain JSON-RPC client ([`chain`]),
//! Postgres with row-level security per community ([`db`]) and the Redis
//! state every replica shares ([`state`]).

pub mod chain;
pub mod db;
pub mod envelope;
pub mod interaction;
pub mod respond;
pub mod rest;
pub mod state;
