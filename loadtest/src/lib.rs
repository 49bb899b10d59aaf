//! `arrakis-loadtest`: a Discord gateway + REST simulator with fault
//! injection and load generation, for arrakis' integration tests, the demo,
//! and anyone testing their own bot.
//!
//! The simulator follows Discord's documented rules (`PROTOCOL.md` Part 1 in
//! the design docs), not the habits of any one client: it checks what a
//! client sends (heartbeat timing, identify concurrency, send rate, payload
//! size, resume URL, close codes) and records every rule broken as a
//! [`Violation`]. Start one with [`Simulator::start`]; see `loadtest sim
//! --help` for the standalone binary.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use arrakis_loadtest::{EventKind, Fault, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default()).await?;
//! // point a bot at sim.api_base(), then:
//! sim.emit(0, EventKind::MessageCreate);
//! sim.inject(0, Fault::DropSocket);
//! assert!(sim.violations().is_empty());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod chain;
pub mod sim;

pub use chain::{ChainSim, ChainSimConfig, EndpointMode};
pub use sim::{
    CloseRecord, ConnectionRecord, EmittedInteraction, EventKind, Fault, GatewayPort,
    HeartbeatRecord, IdentifyRecord, InteractionResponse, InteractionSpec, LoadHandle,
    ResponseKind, RestRecord, ResumeRecord, SentDispatch, ServerCloseRecord, ShardStatus,
    SimConfig, Simulator, UNKNOWN_SHARD, UnknownFault, Violation, ZLIB_SUFFIX,
};
