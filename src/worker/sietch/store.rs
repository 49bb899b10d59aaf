//! The Sietch queries every handler shares, inside one community's
//! [`TenantTx`]. Balances are `numeric(78,0)` in Postgres and cross the
//! wire as text, so nothing is rounded.

use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use crate::worker::db::{DbError, TenantTx};

/// One address's current eligibility (the latest snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    /// Lower-case `0x…` address.
    pub address: String,
    /// Raw balance.
    pub balance: u128,
    /// Its rank, if it holds.
    pub rank: Option<i32>,
    /// Its tier name.
    pub tier: Option<String>,
}

/// A member's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The member.
    pub user_id: i64,
    /// Their chosen name.
    pub nym: Option<String>,
    /// Their bio.
    pub bio: Option<String>,
    /// Left the guild (data kept).
    pub left: bool,
    /// Completed onboarding (verified a wallet).
    pub onboarded: bool,
    /// Holds the Former Naib title.
    pub former_naib: bool,
}

/// What the last sync decided for a member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberState {
    /// Managed roles last applied.
    pub roles: Vec<i64>,
    /// Their tier name.
    pub tier: Option<String>,
    /// Their best rank.
    pub best_rank: Option<i32>,
}

fn balance(row: &Row, i: usize) -> Result<u128, DbError> {
    let text: &str = row.get(i);
    text.parse()
        .map_err(|_| DbError::Invalid(format!("balance {text} is not a u128")))
}

fn eligibility(rows: &[Row]) -> Result<Vec<Eligibility>, DbError> {
    rows.iter()
        .map(|r| {
            Ok(Eligibility {
                address: r.get(0),
                balance: balance(r, 1)?,
                rank: r.get(2),
                tier: r.get(3),
            })
        })
        .collect()
}

const ELIGIBILITY: &str = "SELECT address, balance::text, rank, tier FROM eligibility";

/// The member's verified wallets.
///
/// # Errors
///
/// Postgres errors.
pub async fn wallets_of(tx: &TenantTx, user: i64) -> Result<Vec<String>, DbError> {
    let rows = tx
        .query(
            "SELECT address FROM wallets WHERE community_id = $1 AND user_id = $2 ORDER BY address",
            &[(&tx.community_id(), Type::INT8), (&user, Type::INT8)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Who verified `address`, if anyone.
///
/// # Errors
///
/// Postgres errors.
pub async fn owner_of(tx: &TenantTx, address: &str) -> Result<Option<i64>, DbError> {
    let rows = tx
        .query(
            "SELECT user_id FROM wallets WHERE community_id = $1 AND address = $2",
            &[(&tx.community_id(), Type::INT8), (&address, Type::TEXT)],
        )
        .await?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// Current eligibility of `addresses` (those the snapshot has).
///
/// # Errors
///
/// Postgres errors.
pub async fn eligibility_of(
    tx: &TenantTx,
    addresses: &[String],
) -> Result<Vec<Eligibility>, DbError> {
    let addresses = addresses.to_vec();
    let rows = tx
        .query(
            &format!(
                "{ELIGIBILITY} WHERE community_id = $1 AND address = ANY($2) \
                 ORDER BY rank NULLS LAST"
            ),
            &[
                (&tx.community_id(), Type::INT8),
                (&addresses, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    eligibility(&rows)
}

/// Ranks `from..=to` of the current snapshot, in rank order.
///
/// # Errors
///
/// Postgres errors.
pub async fn ranks(tx: &TenantTx, from: i32, to: i32) -> Result<Vec<Eligibility>, DbError> {
    let rows = tx
        .query(
            &format!(
                "{ELIGIBILITY} WHERE community_id = $1 AND rank BETWEEN $2 AND $3 ORDER BY rank"
            ),
            &[
                (&tx.community_id(), Type::INT8),
                (&from, Type::INT4),
                (&to, Type::INT4),
            ],
        )
        .await?;
    eligibility(&rows)
}

/// How many addresses are eligible (Naib or Fedaykin) now.
///
/// # Errors
///
/// Postgres errors.
pub async fn eligible_count(tx: &TenantTx) -> Result<i64, DbError> {
    let rows = tx
        .query(
            "SELECT count(*) FROM eligibility WHERE community_id = $1 \
             AND tier IN ('naib', 'fedaykin')",
            &[(&tx.community_id(), Type::INT8)],
        )
        .await?;
    Ok(rows.first().map_or(0, |r| r.get(0)))
}

/// The latest snapshot: id, block and Unix time, if a sync ever completed.
///
/// # Errors
///
/// Postgres errors.
pub async fn latest_snapshot(tx: &TenantTx) -> Result<Option<(i64, i64, i64)>, DbError> {
    let rows = tx
        .query(
            "SELECT id, block_number, extract(epoch FROM taken_at)::bigint \
             FROM eligibility_snapshots WHERE community_id = $1 ORDER BY id DESC LIMIT 1",
            &[(&tx.community_id(), Type::INT8)],
        )
        .await?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1), r.get(2))))
}

const PROFILE: &str = "SELECT user_id, nym, bio, left_at IS NOT NULL, onboarded_at IS NOT NULL, \
     former_naib FROM profiles";

fn profile(row: &Row) -> Profile {
    Profile {
        user_id: row.get(0),
        nym: row.get(1),
        bio: row.get(2),
        left: row.get(3),
        onboarded: row.get(4),
        former_naib: row.get(5),
    }
}

/// The member's profile, if they have one.
///
/// # Errors
///
/// Postgres errors.
pub async fn profile_of(tx: &TenantTx, user: i64) -> Result<Option<Profile>, DbError> {
    let rows = tx
        .query(
            &format!("{PROFILE} WHERE community_id = $1 AND user_id = $2"),
            &[(&tx.community_id(), Type::INT8), (&user, Type::INT8)],
        )
        .await?;
    Ok(rows.first().map(profile))
}

/// The profile whose nym is `nym` (case-insensitive).
///
/// # Errors
///
/// Postgres errors.
pub async fn profile_by_nym(tx: &TenantTx, nym: &str) -> Result<Option<Profile>, DbError> {
    let rows = tx
        .query(
            &format!("{PROFILE} WHERE community_id = $1 AND lower(nym) = lower($2)"),
            &[(&tx.community_id(), Type::INT8), (&nym, Type::TEXT)],
        )
        .await?;
    Ok(rows.first().map(profile))
}

/// Ensures the member has a profile row (commands may come before any
/// `GUILD_MEMBER_ADD` was seen).
///
/// # Errors
///
/// Postgres errors.
pub async fn ensure_profile(tx: &TenantTx, user: i64) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO profiles (community_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[(&tx.community_id(), Type::INT8), (&user, Type::INT8)],
    )
    .await?;
    Ok(())
}

/// What the last sync decided for the member.
///
/// # Errors
///
/// Postgres errors.
pub async fn member_state(tx: &TenantTx, user: i64) -> Result<MemberState, DbError> {
    let rows = tx
        .query(
            "SELECT roles, tier, best_rank FROM member_roles \
             WHERE community_id = $1 AND user_id = $2",
            &[(&tx.community_id(), Type::INT8), (&user, Type::INT8)],
        )
        .await?;
    Ok(rows
        .first()
        .map_or_else(MemberState::default, |r| MemberState {
            roles: r.get(0),
            tier: r.get(1),
            best_rank: r.get(2),
        }))
}

/// Records the managed roles now applied to the member, with the standing
/// they came from.
///
/// # Errors
///
/// Postgres errors.
pub async fn set_member_state(
    tx: &TenantTx,
    user: i64,
    state: &MemberState,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO member_roles (community_id, user_id, roles, tier, best_rank) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (community_id, user_id) DO UPDATE \
         SET roles = $3, tier = $4, best_rank = $5, updated_at = now()",
        &[
            (&tx.community_id(), Type::INT8),
            (&user, Type::INT8),
            (&state.roles, Type::INT8_ARRAY),
            (&state.tier, Type::TEXT),
            (&state.best_rank, Type::INT4),
        ],
    )
    .await?;
    Ok(())
}

/// The member's badges, oldest first.
///
/// # Errors
///
/// Postgres errors.
pub async fn badges_of(tx: &TenantTx, user: i64) -> Result<Vec<String>, DbError> {
    let rows = tx
        .query(
            "SELECT badge FROM badges WHERE community_id = $1 AND user_id = $2 \
             ORDER BY awarded_at, badge",
            &[(&tx.community_id(), Type::INT8), (&user, Type::INT8)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Appends an audit row.
///
/// # Errors
///
/// Postgres errors.
pub async fn audit(
    tx: &TenantTx,
    action: &str,
    actor: Option<i64>,
    subject: Option<i64>,
    details: &Value,
) -> Result<(), DbError> {
    let details = details.to_string();
    tx.execute(
        "INSERT INTO audit_log (community_id, action, actor_id, subject_id, details) \
         VALUES ($1, $2, $3, $4, $5::jsonb)",
        &[
            (&tx.community_id(), Type::INT8),
            (&action, Type::TEXT),
            (&actor, Type::INT8),
            (&subject, Type::INT8),
            (&details, Type::TEXT),
        ],
    )
    .await?;
    Ok(())
}

/// The member's notification settings (`{}` when never set).
///
/// # Errors
///
/// Postgres errors.
pub async fn notification_settings(tx: &TenantTx, user: i64) -> Result<Value, DbError> {
    let rows = tx
        .query(
            "SELECT settings::text FROM notification_settings \
             WHERE community_id = $1 AND user_id = $2",
            &[(&tx.community_id(), Type::INT8), (&user, Type::INT8)],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
        .unwrap_or_else(|| Value::Object(serde_json::Map::new())))
}
