//! Integration tests of the simulator, driven through its public API and a
//! small real client (`client.rs`): each test states one Discord rule the
//! simulator must follow or enforce.

mod client;
mod faults;
mod gateway;
mod load;
mod rest;
mod resume;
mod rules;

use std::time::Duration;

use arrakis_loadtest::{SimConfig, Simulator};

/// A config for tests: identify spacing off and a heartbeat interval long
/// enough that short tests need not heartbeat.
pub(crate) fn config() -> SimConfig {
    SimConfig {
        token: "test-token".into(),
        heartbeat_interval: Duration::from_secs(20),
        identify_spacing: Duration::ZERO,
        ..SimConfig::default()
    }
}

/// Start a simulator with `config`.
pub(crate) async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}
