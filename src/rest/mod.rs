//! The Discord REST side: a hyper client with rate limits shared by every
//! replica through Redis, served as the token-holding proxy of `arrakis
//! proxy` (ARCHITECTURE.md §3.4; PROTOCOL.md Parts 2 and 3).
//!
//! - [`route`]: request → route template and top-level resource (pure).
//! - [`headers`]: Discord's rate-limit headers and 429 bodies (pure).
//! - [`keys`]: Redis key names under one Cluster hash tag (pure).
//! - [`limiter`]: the shared limiter (Lua scripts in `lua/`) and its
//!   Redis failure policy; [`local`] is the conservative fallback (pure).
//! - [`client`]: hyper over rustls, and the retry policy (pure).
//! - [`forward`]: one request from permit to answer.
//! - [`server`]: the proxy's HTTP server; [`metrics`]: its metrics and
//!   readiness.

pub mod client;
pub mod forward;
pub mod headers;
pub mod keys;
pub mod limiter;
pub mod local;
pub mod metrics;
pub mod route;
pub mod server;
