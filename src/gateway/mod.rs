//! The hand-rolled Discord gateway client.
//!
//! Layers, bottom up:
//! - [`inflate`]: zlib-stream transport decompression, one context per connection;
//! - [`scan`]: reads `op`, `t`, `s` and the guild id without building a DOM;
//! - [`heartbeat`], [`send_limit`], [`close`]: the protocol's small rules;
//! - [`shard`]: the sans-IO state machine that applies them;
//!
//! Nothing here keeps a cache: a shard's memory does not grow with the
//! number of guilds or events.

pub mod close;
pub mod connection;
pub mod discovery;
pub mod heartbeat;
pub mod identify;
pub mod inflate;
pub mod scan;
pub mod send_limit;
pub mod shard;
