//! What handlers share: one of each client, built once by the role and
//! handed around by `Arc`. Nothing here is a per-process cache of state
//! that must agree across workers: that lives in Redis or Postgres (the
//! caches here hold clients, and [`Db`] remembers only guild → community
//! ids, which never change).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::chain::{ChainClient, ChainConfig};
use super::db::Db;
use super::respond::Responder;
use super::state::{CommandLimits, State};

/// Effect and dedupe counters.
#[derive(Debug, Default)]
pub struct EffectMetrics {
    /// Messages whose effect had already been done (redelivery, replay).
    pub duplicates: Counter,
    /// Members recorded as joined.
    pub member_joins: Counter,
    /// Guilds the bot joined (not the GUILD_CREATE burst after READY).
    pub guild_joins: Counter,
}

impl EffectMetrics {
    /// Creates the counters and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self::default();
        registry.register(
            "worker_duplicates",
            "Messages whose effect was already done (redelivery or resume replay)",
            m.duplicates.clone(),
        );
        registry.register(
            "worker_member_joins",
            "GUILD_MEMBER_ADD effects written",
            m.member_joins.clone(),
        );
        registry.register(
            "worker_guild_joins",
            "GUILD_CREATEs that were the bot joining a guild",
            m.guild_joins.clone(),
        );
        Arc::new(m)
    }
}

/// The clients and settings every handler uses. Clones share every client;
/// the role gives each kind of work its own clone when they should differ
/// (a [`Db::share`] for background work).
#[derive(Debug, Clone)]
pub struct Services {
    /// This process's id in dedupe claims and locks.
    pub worker_id: String,
    /// Redis state.
    pub state: State,
    /// Postgres.
    pub db: Db,
    /// The chain client from `ARRAKIS_CHAIN_RPC_URLS`, if set.
    pub chain: Option<ChainClient>,
    /// Interaction responses (and the REST proxy client).
    pub responder: Responder,
    /// Per-user and per-guild command rates.
    pub limits: CommandLimits,
    /// How long a dedupe claim holds without being finished.
    pub dedupe_lease: Duration,
    /// How long a finished message id is remembered.
    pub dedupe_keep: Duration,
    /// Counters.
    pub metrics: Arc<EffectMetrics>,
    /// Chain clients of communities with their own `rpc_urls`.
    pub community_chains: ChainCache,
    /// Public base URL of the verification endpoint (`…/verify`), linked
    /// by `/verify start`.
    pub verify_url: String,
}

/// Most distinct per-community endpoint lists kept; beyond it the cache
/// starts over (clients are cheap to rebuild, breakers relearn).
const MAX_CHAINS: usize = 1_024;

/// Chain clients keyed by their endpoint list, shared by every community
/// that names the same list (so their breakers and rotation are shared).
#[derive(Debug, Default, Clone)]
pub struct ChainCache {
    clients: Arc<Mutex<HashMap<String, ChainClient>>>,
}

impl Services {
    /// The chain client for a community: its own `rpc_urls` if it set any,
    /// else the worker's `ARRAKIS_CHAIN_RPC_URLS`.
    #[must_use]
    pub fn chain_for(&self, rpc_urls: Option<&str>) -> Option<ChainClient> {
        let Some(urls) = rpc_urls.map(str::trim).filter(|u| !u.is_empty()) else {
            return self.chain.clone();
        };
        let mut clients = self
            .community_chains
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(urls) {
            return Some(client.clone());
        }
        let client = ChainConfig::from_urls(urls)
            .ok()
            .and_then(|config| ChainClient::new(config).ok())?;
        if clients.len() >= MAX_CHAINS {
            clients.clear();
        }
        clients.insert(urls.to_owned(), client.clone());
        Some(client)
    }
}
