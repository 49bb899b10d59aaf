//! The eligibility sync of one community (SIETCH.md, eligibility and
//! tiers): scan new `Transfer` logs (windows of ≤ 10,000 blocks), read
//! every holder's balance (multicall, 100 per call), rank with burners and
//! overrides applied, store the snapshot and the new standings, then send
//! only the role changes that differ from what was applied, and the DMs.
//!
//! Exactly one worker syncs a community at a time (a fenced Redis lock).
//! When the chain cannot be read, nothing is written and nothing revoked:
//! the community is marked in grace and keeps its last snapshot.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::profile::alert_enabled;
use super::ranking::{
    self, Holding, MemberEvent, MemberStanding, Outcome, Override, OverrideAction, PreviousState,
    Standing, Tier,
};
use super::roles::{self, Applied};
use super::settings::Settings;
use super::store::{self, MemberState};
use crate::worker::chain::{Address, ChainClient, ChainError};
use crate::worker::db::{DbError, SyncRecord, TenantTx};
use crate::worker::services::Services;
use crate::worker::state::{Lease, StateError};

/// How often each community is synced.
pub const SYNC_EVERY: Duration = Duration::from_secs(6 * 3600);
/// How soon a community whose sync failed (or is in grace) is retried.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);
/// The per-community lock's TTL; renewed between phases.
const LOCK_TTL: Duration = Duration::from_secs(300);
/// The last blocks are scanned again at every sync: a reorg may replace
/// them, and the head block itself may still gain logs on some nodes.
/// Upserting a holder twice changes nothing.
const RESCAN_BLOCKS: u64 = 64;
/// At most this many DMs per sync; the rest are logged, not queued, so a
/// first sync of a large community cannot flood Discord.
const MAX_DMS: usize = 1_000;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The head block the balances were read at.
    pub block: u64,
    /// Addresses that ever received the token.
    pub holders: usize,
    /// Addresses ranked (holding, not burned, not excluded).
    pub ranked: usize,
    /// Naib and Fedaykin addresses.
    pub eligible: usize,
    /// Role additions and removals sent.
    pub role_changes: usize,
    /// DMs delivered.
    pub dms: usize,
    /// Member events (promotions, demotions, seats, waitlist, at-risk).
    pub events: usize,
    /// Wall time of the whole sync.
    pub elapsed: Duration,
}

/// How a sync ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Completed.
    Synced(SyncReport),
    /// Another worker is syncing this community.
    Busy,
    /// The chain could not be read: nothing changed, grace.
    Grace(String),
}

/// Why a sync failed (other than the chain).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The community cannot be synced as configured.
    #[error("{0}")]
    NotConfigured(String),
    /// Postgres failed.
    #[error("Postgres: {0}")]
    Db(#[from] DbError),
    /// Redis failed (the lock).
    #[error("Redis: {0}")]
    State(#[from] StateError),
    /// The lock was lost mid-run: another worker may be syncing.
    #[error("the sync lock was lost; not writing")]
    LockLost,
}

fn hex(a: &Address) -> String {
    a.to_string()
}

fn parse(a: &str) -> Option<Address> {
    a.parse().ok()
}

/// Syncs `community` unless another worker is at it.
///
/// # Errors
///
/// [`SyncError`] for configuration, Postgres and Redis failures; a chain
/// outage is [`SyncOutcome::Grace`], not an error.
pub async fn run(services: &Services, community: i64) -> Result<SyncOutcome, SyncError> {
    let lock = format!("sync:{community}");
    let Some(lease) = services
        .state
        .try_lock(&lock, &services.worker_id, LOCK_TTL)
        .await?
    else {
        return Ok(SyncOutcome::Busy);
    };
    let result = locked(services, community, &lease).await;
    let _ = services.state.unlock(&lease).await;
    let record = match &result {
        Ok(SyncOutcome::Synced(_)) => Some(SyncRecord::Completed),
        Ok(SyncOutcome::Grace(why)) => Some(SyncRecord::Grace(why.clone())),
        Ok(SyncOutcome::Busy) => None,
        Err(e) => Some(SyncRecord::Failed(e.to_string())),
    };
    if let Some(record) = record {
        services.db.record_sync(community, &record).await?;
    }
    match &result {
        Ok(SyncOutcome::Synced(r)) => tracing::info!(
            community,
            block = r.block,
            holders = r.holders,
            eligible = r.eligible,
            role_changes = r.role_changes,
            dms = r.dms,
            elapsed_ms = r.elapsed.as_millis() as u64,
            "eligibility synced"
        ),
        Ok(SyncOutcome::Grace(why)) => {
            tracing::warn!(community, "chain unavailable, community in grace: {why}");
        }
        Ok(SyncOutcome::Busy) => {}
        Err(e) => tracing::error!(community, "eligibility sync failed: {e}"),
    }
    result
}

async fn locked(
    services: &Services,
    community: i64,
    lease: &Lease,
) -> Result<SyncOutcome, SyncError> {
    let started = Instant::now();
    services.db.record_sync_attempt(community).await?;
    let row = services.db.community(community).await?;
    let settings = Settings::parse(&row.settings).map_err(SyncError::NotConfigured)?;
    let token = settings
        .token
        .ok_or_else(|| SyncError::NotConfigured("no token set (/setup)".to_owned()))?;
    let chain = services
        .chain_for(settings.rpc_urls.as_deref())
        .ok_or_else(|| {
            SyncError::NotConfigured("no chain RPC endpoint (ARRAKIS_CHAIN_RPC_URLS)".to_owned())
        })?;
    let guild = u64::try_from(row.guild_id).unwrap_or(0);

    // Chain phase: nothing is written until every read succeeded.
    let scan = match read_chain(services, &chain, community, token, &settings).await {
        Ok(scan) => scan,
        Err(ReadError::Chain(e)) => return Ok(SyncOutcome::Grace(e.to_string())),
        Err(ReadError::Db(e)) => return Err(e.into()),
    };
    if !services.state.renew(lease, LOCK_TTL).await? {
        return Err(SyncError::LockLost);
    }

    let tx = services.db.tenant(community).await?;
    let inputs = load_inputs(&tx).await?;
    let standings = ranking::rank(
        &scan.holdings,
        &scan.burners,
        &inputs.overrides,
        &settings.thresholds,
    );
    let outcome = ranking::members(&standings, &inputs.wallets, &inputs.previous);
    if !services.state.fence_valid(lease).await? {
        return Err(SyncError::LockLost);
    }
    write_standings(&tx, scan.head, &standings, &outcome).await?;
    tx.commit().await?;

    let mut report = SyncReport {
        block: scan.head,
        holders: scan.holdings.len(),
        ranked: standings.iter().filter(|s| s.rank.is_some()).count(),
        eligible: standings
            .iter()
            .filter(|s| matches!(s.tier, Some(Tier::Naib | Tier::Fedaykin)))
            .count(),
        events: outcome.events.len(),
        ..SyncReport::default()
    };
    report.role_changes =
        apply_roles(services, community, guild, &settings, &inputs, &outcome).await?;
    report.dms = send_dms(services, community, &outcome).await?;
    report.elapsed = started.elapsed();
    Ok(SyncOutcome::Synced(report))
}

/// What the chain says now.
struct Scan {
    head: u64,
    holdings: Vec<Holding>,
    burners: HashSet<ranking::Address>,
}

enum ReadError {
    Chain(ChainError),
    Db(DbError),
}

impl From<ChainError> for ReadError {
    fn from(e: ChainError) -> Self {
        Self::Chain(e)
    }
}

impl From<DbError> for ReadError {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

/// Scans the logs since the cursor into `holders`, then reads every
/// holder's balance.
async fn read_chain(
    services: &Services,
    chain: &ChainClient,
    community: i64,
    token: Address,
    settings: &Settings,
) -> Result<Scan, ReadError> {
    let head = chain.block_number().await?;
    let token_hex = hex(&token);
    let tx = services.db.tenant(community).await?;
    let cursor = tx
        .query(
            "SELECT token, next_block FROM chain_cursors WHERE community_id = $1",
            &[(&community, Type::INT8)],
        )
        .await?;
    let from = match cursor.first() {
        Some(r) if r.get::<_, &str>(0) == token_hex => {
            u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)
        }
        // A new token (or the first sync): start over from start_block.
        _ => {
            tx.execute(
                "DELETE FROM holders WHERE community_id = $1",
                &[(&community, Type::INT8)],
            )
            .await?;
            settings.start_block
        }
    };
    tx.commit().await?;

    if from <= head {
        let logs = chain.transfer_logs(token, from, head).await?;
        let mut first: HashMap<Address, u64> = HashMap::new();
        let mut burned: HashSet<Address> = HashSet::new();
        for log in &logs {
            if log.to == Address::ZERO {
                burned.insert(log.from);
            } else {
                first
                    .entry(log.to)
                    .and_modify(|b| *b = (*b).min(log.block))
                    .or_insert(log.block);
            }
        }
        let mut addresses: Vec<String> = first.keys().map(hex).collect();
        let mut blocks: Vec<i64> = first
            .values()
            .map(|b| i64::try_from(*b).unwrap_or(i64::MAX))
            .collect();
        let mut burns: Vec<bool> = first.keys().map(|a| burned.contains(a)).collect();
        // Burners that never received in this range are still recorded.
        for b in burned.iter().filter(|b| !first.contains_key(*b)) {
            addresses.push(hex(b));
            blocks.push(i64::try_from(head).unwrap_or(i64::MAX));
            burns.push(true);
        }
        let next = i64::try_from(head.saturating_sub(RESCAN_BLOCKS).max(from)).unwrap_or(i64::MAX);
        let tx = services.db.tenant(community).await?;
        tx.execute(
            "INSERT INTO holders (community_id, address, first_block, burned) \
             SELECT $1, a, b, x FROM unnest($2::text[], $3::int8[], $4::bool[]) AS t(a, b, x) \
             ON CONFLICT (community_id, address) DO UPDATE SET \
               first_block = least(holders.first_block, excluded.first_block), \
               burned = holders.burned OR excluded.burned",
            &[
                (&community, Type::INT8),
                (&addresses, Type::TEXT_ARRAY),
                (&blocks, Type::INT8_ARRAY),
                (&burns, Type::BOOL_ARRAY),
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO chain_cursors (community_id, token, next_block) VALUES ($1, $2, $3) \
             ON CONFLICT (community_id) DO UPDATE SET token = $2, next_block = $3, updated_at = now()",
            &[
                (&community, Type::INT8),
                (&token_hex, Type::TEXT),
                (&next, Type::INT8),
            ],
        )
        .await?;
        tx.commit().await?;
    }

    let tx = services.db.tenant(community).await?;
    let rows = tx
        .query(
            "SELECT address, first_block, burned FROM holders WHERE community_id = $1 \
             ORDER BY address",
            &[(&community, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let mut holders = Vec::with_capacity(rows.len());
    let mut burners = HashSet::new();
    for r in &rows {
        let Some(address) = parse(r.get(0)) else {
            continue;
        };
        if r.get::<_, bool>(2) {
            burners.insert(address);
        }
        holders.push((address, u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)));
    }
    let addresses: Vec<Address> = holders.iter().map(|(a, _)| *a).collect();
    let balances = chain.balances_of(token, &addresses).await?;
    let holdings = holders
        .iter()
        .zip(balances)
        .map(|((address, since), balance)| Holding {
            address: address.0,
            balance,
            held_since_block: *since,
        })
        .collect();
    Ok(Scan {
        head,
        holdings,
        burners: burners.into_iter().map(|a: Address| a.0).collect(),
    })
}

/// What the ranking needs from Postgres.
struct Inputs {
    overrides: Vec<Override>,
    wallets: Vec<(ranking::Address, u64)>,
    previous: PreviousState,
    applied: HashMap<u64, BTreeSet<u64>>,
}

fn uid(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

async fn load_inputs(tx: &TenantTx) -> Result<Inputs, DbError> {
    let c = tx.community_id();
    let overrides = tx
        .query(
            "SELECT address, kind FROM overrides WHERE community_id = $1 AND address IS NOT NULL \
             AND (expires_at IS NULL OR expires_at > now())",
            &[(&c, Type::INT8)],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let address = parse(r.get(0))?.0;
            let action = match r.get::<_, &str>(1) {
                "include" => OverrideAction::Add,
                "exclude" => OverrideAction::Remove,
                _ => return None,
            };
            Some(Override { address, action })
        })
        .collect();
    let wallets = tx
        .query(
            "SELECT address, user_id FROM wallets WHERE community_id = $1",
            &[(&c, Type::INT8)],
        )
        .await?
        .iter()
        .filter_map(|r| Some((parse(r.get(0))?.0, uid(r.get(1)))))
        .collect();
    let seats = tx
        .query(
            "SELECT seat, user_id FROM naib_seats WHERE community_id = $1 ORDER BY seat",
            &[(&c, Type::INT8)],
        )
        .await?
        .iter()
        .map(|r| (u8::try_from(r.get::<_, i32>(0)).unwrap_or(0), uid(r.get(1))))
        .collect::<Vec<_>>();
    let former_naib = tx
        .query(
            "SELECT user_id FROM profiles WHERE community_id = $1 AND former_naib",
            &[(&c, Type::INT8)],
        )
        .await?
        .iter()
        .map(|r| uid(r.get(0)))
        .collect();
    let waitlist = tx
        .query(
            "SELECT user_id FROM waitlist WHERE community_id = $1",
            &[(&c, Type::INT8)],
        )
        .await?
        .iter()
        .map(|r| uid(r.get(0)))
        .collect::<HashSet<u64>>();
    let mut members = HashMap::new();
    let mut applied = HashMap::new();
    for r in tx
        .query(
            "SELECT user_id, roles, tier, best_rank FROM member_roles WHERE community_id = $1",
            &[(&c, Type::INT8)],
        )
        .await?
    {
        let user = uid(r.get(0));
        let roles: Vec<i64> = r.get(1);
        applied.insert(user, roles.into_iter().map(uid).collect::<BTreeSet<u64>>());
        let best_rank = r
            .get::<_, Option<i32>>(3)
            .and_then(|x| u32::try_from(x).ok());
        members.insert(
            user,
            MemberStanding {
                user_id: user,
                best_rank,
                tier: r.get::<_, Option<&str>>(2).and_then(Tier::from_name),
                holdings: 0,
                naib_seat: seats.iter().find(|(_, u)| *u == user).map(|(s, _)| *s),
                former_naib: false,
                waitlisted: waitlist.contains(&user),
            },
        );
    }
    Ok(Inputs {
        overrides,
        wallets,
        previous: PreviousState {
            seats,
            former_naib,
            members,
            waitlist,
        },
        applied,
    })
}

/// Rewrites the snapshot, current eligibility, seats and titles.
async fn write_standings(
    tx: &TenantTx,
    head: u64,
    standings: &[Standing],
    outcome: &Outcome,
) -> Result<(), DbError> {
    let c = tx.community_id();
    // The snapshot keeps everything with a rank up to the waitlist's end
    // or a tier: what a later audit needs, without every dust holder.
    let entries: Vec<Value> = standings
        .iter()
        .filter(|s| s.tier.is_some() || s.rank.is_some_and(|r| r <= 100))
        .map(|s| {
            json!([
                hex(&Address(s.address)),
                s.balance.to_string(),
                s.rank,
                s.tier.map(Tier::name)
            ])
        })
        .collect();
    let entries = Value::Array(entries).to_string();
    let block = i64::try_from(head).unwrap_or(i64::MAX);
    let holders = i32::try_from(standings.len()).unwrap_or(i32::MAX);
    let snapshot: i64 = tx
        .query(
            "INSERT INTO eligibility_snapshots (community_id, block_number, holders, entries) \
             VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
            &[
                (&c, Type::INT8),
                (&block, Type::INT8),
                (&holders, Type::INT4),
                (&entries, Type::TEXT),
            ],
        )
        .await?
        .first()
        .map_or(0, |r| r.get(0));
    tx.execute(
        "DELETE FROM eligibility WHERE community_id = $1",
        &[(&c, Type::INT8)],
    )
    .await?;
    let addresses: Vec<String> = standings.iter().map(|s| hex(&Address(s.address))).collect();
    let balances: Vec<String> = standings.iter().map(|s| s.balance.to_string()).collect();
    let ranks: Vec<Option<i32>> = standings
        .iter()
        .map(|s| s.rank.and_then(|r| i32::try_from(r).ok()))
        .collect();
    let tiers: Vec<Option<String>> = standings
        .iter()
        .map(|s| s.tier.map(|t| t.name().to_owned()))
        .collect();
    tx.execute(
        "INSERT INTO eligibility (community_id, address, balance, rank, tier, snapshot_id) \
         SELECT $1, a, b::numeric, r, t, $6 \
         FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[]) AS u(a, b, r, t)",
        &[
            (&c, Type::INT8),
            (&addresses, Type::TEXT_ARRAY),
            (&balances, Type::TEXT_ARRAY),
            (&ranks, Type::INT4_ARRAY),
            (&tiers, Type::TEXT_ARRAY),
            (&snapshot, Type::INT8),
        ],
    )
    .await?;
    // Old snapshots beyond the last 28 (a week at 6 h) are dropped.
    tx.execute(
        "DELETE FROM eligibility_snapshots WHERE community_id = $1 AND id < ( \
           SELECT min(id) FROM (SELECT id FROM eligibility_snapshots WHERE community_id = $1 \
           ORDER BY id DESC LIMIT 28) AS keep)",
        &[(&c, Type::INT8)],
    )
    .await?;
    tx.execute(
        "DELETE FROM naib_seats WHERE community_id = $1",
        &[(&c, Type::INT8)],
    )
    .await?;
    for (seat, user) in &outcome.seats {
        let user = i64::try_from(*user).unwrap_or(0);
        store::ensure_profile(tx, user).await?;
        tx.execute(
            "INSERT INTO naib_seats (community_id, seat, user_id) VALUES ($1, $2, $3)",
            &[
                (&c, Type::INT8),
                (&i32::from(*seat), Type::INT4),
                (&user, Type::INT8),
            ],
        )
        .await?;
    }
    let former: Vec<i64> = outcome
        .members
        .iter()
        .filter(|m| m.former_naib)
        .map(|m| i64::try_from(m.user_id).unwrap_or(0))
        .collect();
    tx.execute(
        "UPDATE profiles SET former_naib = (user_id = ANY($2)) \
         WHERE community_id = $1 AND former_naib IS DISTINCT FROM (user_id = ANY($2))",
        &[(&c, Type::INT8), (&former, Type::INT8_ARRAY)],
    )
    .await?;
    for event in &outcome.events {
        let (action, user, details) = match event {
            MemberEvent::Promoted { user_id, from, to } => (
                "promotion",
                *user_id,
                json!({ "from": from.map(Tier::name), "to": to.name() }),
            ),
            MemberEvent::Demoted { user_id, from, to } => (
                "demotion",
                *user_id,
                json!({ "from": from.name(), "to": to.map(Tier::name) }),
            ),
            MemberEvent::NaibSeated { user_id, seat } => {
                ("naib_seated", *user_id, json!({ "seat": seat }))
            }
            MemberEvent::NaibBumped { user_id, seat } => {
                ("naib_bumped", *user_id, json!({ "seat": seat }))
            }
            MemberEvent::WaitlistEligible { user_id, rank } => {
                ("waitlist_eligible", *user_id, json!({ "rank": rank }))
            }
            MemberEvent::AtRisk { user_id, rank } => ("at_risk", *user_id, json!({ "rank": rank })),
        };
        store::audit(tx, action, None, i64::try_from(user).ok(), &details).await?;
    }
    Ok(())
}

/// Sends the role differences; records per member what was applied and
/// the standing (so events are not repeated even if roles must be
/// retried). Returns the number of changes sent.
async fn apply_roles(
    services: &Services,
    community: i64,
    guild: u64,
    settings: &Settings,
    inputs: &Inputs,
    outcome: &Outcome,
) -> Result<usize, SyncError> {
    let managed = settings.roles.managed();
    let rest = services.responder.rest();
    let mut states: Vec<(i64, MemberState)> = Vec::new();
    let mut sent = 0;
    let mut halted = None;
    let empty = BTreeSet::new();
    for member in &outcome.members {
        let user = i64::try_from(member.user_id).unwrap_or(0);
        let applied = inputs.applied.get(&member.user_id).unwrap_or(&empty);
        let desired = ranking::desired_roles(member, &settings.roles);
        let diff = ranking::role_diff(applied, &desired, &managed);
        let mut roles = applied.clone();
        if !diff.is_empty() && halted.is_none() {
            match roles::apply(
                rest,
                guild,
                member.user_id,
                applied,
                &diff,
                "Sietch eligibility sync",
            )
            .await
            {
                Ok(Applied::Done(now) | Applied::MemberGone(now)) => {
                    sent += diff.add.len() + diff.remove.len();
                    roles = now;
                }
                Err(e) => halted = Some(e),
            }
        }
        let state = MemberState {
            roles: roles
                .iter()
                .map(|r| i64::try_from(*r).unwrap_or(0))
                .collect(),
            tier: member.tier.map(|t| t.name().to_owned()),
            best_rank: member.best_rank.and_then(|r| i32::try_from(r).ok()),
        };
        let previous = inputs.previous.members.get(&member.user_id);
        let unchanged = previous
            .is_some_and(|p| p.tier == member.tier && p.best_rank == member.best_rank)
            && roles == *applied;
        if !unchanged {
            states.push((user, state));
        }
    }
    if !states.is_empty() {
        let tx = services.db.tenant(community).await?;
        for (user, state) in &states {
            store::set_member_state(&tx, *user, state).await?;
        }
        tx.commit().await?;
    }
    if let Some(e) = halted {
        tracing::warn!(community, "role changes paused until the next sync: {e}");
    }
    Ok(sent)
}

/// The DM text of `event`, and the alert kind that may silence it.
fn dm_text(event: &MemberEvent) -> (u64, &'static str, String) {
    match event {
        MemberEvent::Promoted { user_id, to, .. } => (
            *user_id,
            "position",
            format!("You were promoted to **{}** in the Sietch.", to.name()),
        ),
        MemberEvent::Demoted { user_id, to, .. } => (
            *user_id,
            "position",
            match to {
                Some(t) => format!("Your Sietch tier dropped to **{}**.", t.name()),
                None => "You no longer hold a Sietch tier.".to_owned(),
            },
        ),
        MemberEvent::NaibSeated { user_id, seat } => (
            *user_id,
            "naib",
            format!("You took Naib seat {seat}. Welcome to the council."),
        ),
        MemberEvent::NaibBumped { user_id, seat } => (
            *user_id,
            "naib",
            format!("A holder with more tokens took Naib seat {seat}: you are now Former Naib."),
        ),
        MemberEvent::WaitlistEligible { user_id, rank } => (
            *user_id,
            "waitlist",
            format!("Good news from the cave entrance: you now rank #{rank} and are eligible."),
        ),
        MemberEvent::AtRisk { user_id, rank } => (
            *user_id,
            "at_risk",
            format!("Heads up: you rank #{rank}. Below rank 69 you lose eligibility."),
        ),
    }
}

async fn send_dms(
    services: &Services,
    community: i64,
    outcome: &Outcome,
) -> Result<usize, SyncError> {
    if outcome.events.is_empty() {
        return Ok(0);
    }
    let tx = services.db.tenant(community).await?;
    let mut prefs: HashMap<u64, Value> = HashMap::new();
    for event in &outcome.events {
        let (user, _, _) = dm_text(event);
        if let std::collections::hash_map::Entry::Vacant(v) = prefs.entry(user) {
            v.insert(store::notification_settings(&tx, i64::try_from(user).unwrap_or(0)).await?);
        }
    }
    tx.commit().await?;
    let mut sent = 0;
    for (i, event) in outcome.events.iter().enumerate() {
        if i >= MAX_DMS {
            tracing::warn!(
                community,
                skipped = outcome.events.len() - MAX_DMS,
                "DM cap reached for this sync"
            );
            break;
        }
        let (user, kind, text) = dm_text(event);
        if !prefs.get(&user).is_none_or(|p| alert_enabled(p, kind)) {
            continue;
        }
        match roles::direct_message(services.responder.rest(), user, &text).await {
            Ok(true) => sent += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(community, "DMs paused: {e}");
                break;
            }
        }
    }
    Ok(sent)
}

/// Applies the member's current standing to their roles now (after
/// verification, a join, or a waitlist change), without waiting for the
/// next sync.
///
/// # Errors
///
/// Postgres errors; REST failures are logged and left to the next sync.
pub async fn refresh_member(
    services: &Services,
    community: i64,
    guild: u64,
    user: u64,
    settings: &Settings,
    forget_applied: bool,
) -> Result<usize, DbError> {
    let uid64 = i64::try_from(user).unwrap_or(0);
    let tx = services.db.tenant(community).await?;
    let wallets = store::wallets_of(&tx, uid64).await?;
    let rows = store::eligibility_of(&tx, &wallets).await?;
    let state = store::member_state(&tx, uid64).await?;
    let seat = tx
        .query(
            "SELECT seat FROM naib_seats WHERE community_id = $1 AND user_id = $2",
            &[(&community, Type::INT8), (&uid64, Type::INT8)],
        )
        .await?
        .first()
        .map(|r| u8::try_from(r.get::<_, i32>(0)).unwrap_or(0));
    let profile = store::profile_of(&tx, uid64).await?;
    let waitlisted = !tx
        .query(
            "SELECT 1 FROM waitlist WHERE community_id = $1 AND user_id = $2",
            &[(&community, Type::INT8), (&uid64, Type::INT8)],
        )
        .await?
        .is_empty();
    tx.commit().await?;
    let best_rank = rows
        .iter()
        .filter_map(|r| r.rank)
        .min()
        .and_then(|r| u32::try_from(r).ok());
    let tier = rows
        .iter()
        .filter_map(|r| r.tier.as_deref().and_then(Tier::from_name))
        .max();
    let member = MemberStanding {
        user_id: user,
        best_rank,
        tier,
        holdings: rows.iter().map(|r| r.balance).sum(),
        naib_seat: seat,
        former_naib: profile.is_some_and(|p| p.former_naib) && seat.is_none(),
        waitlisted: waitlisted && best_rank.is_none_or(|r| ranking::WAITLIST.contains(&r)),
    };
    let applied: BTreeSet<u64> = if forget_applied {
        BTreeSet::new()
    } else {
        state.roles.iter().map(|r| uid(*r)).collect()
    };
    let desired = ranking::desired_roles(&member, &settings.roles);
    let diff = ranking::role_diff(&applied, &desired, &settings.roles.managed());
    let mut roles_now = applied.clone();
    let mut sent = 0;
    if !diff.is_empty() {
        match roles::apply(
            services.responder.rest(),
            guild,
            user,
            &applied,
            &diff,
            "Sietch",
        )
        .await
        {
            Ok(Applied::Done(now) | Applied::MemberGone(now)) => {
                sent = diff.add.len() + diff.remove.len();
                roles_now = now;
            }
            Err(e) => tracing::warn!(community, user, "roles left to the next sync: {e}"),
        }
    }
    let tx = services.db.tenant(community).await?;
    store::set_member_state(
        &tx,
        uid64,
        &MemberState {
            roles: roles_now
                .iter()
                .map(|r| i64::try_from(*r).unwrap_or(0))
                .collect(),
            tier: tier.map(|t| t.name().to_owned()),
            best_rank: best_rank.and_then(|r| i32::try_from(r).ok()),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(sent)
}
