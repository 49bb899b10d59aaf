//! The hand-rolled Discord gateway client.
//!
//! Layers, bottom up:
//! - [`inflate`]: zlib-stream transport decompression, one context per connection;
//! - [`scan`]: reads `op`, `t`, `s` and the guild id without building a DOM;
//! - [`heartbeat`], [`send_limit`], [`close`]: the protocol's small rules;
//! - [`shard`]: the sans-IO state machine that applies them;
//! - [`connection`]: the async driver of one shard (socket, timers, buffer);
//! - [`identify`]: the identify queue, in-process and across processes;
//! - [`progress`], [`checkpoint`]: the confirm watermark and the resume
//!   checkpoints it feeds in Redis;
//! - [`guilds`]: startup GUILD_CREATE versus a real join;
//! - [`discovery`]: `GET /gateway/bot`.
//!
//! Nothing here keeps a cache: a shard's memory does not grow with the
//! number of guilds or events.

pub mod checkpoint;
pub mod close;
pub mod connection;
pub mod discovery;
pub mod guilds;
pub mod heartbeat;
pub mod identify;
pub mod inflate;
pub mod progress;
pub mod scan;
pub mod send_limit;
pub mod shard;
