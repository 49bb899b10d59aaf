//! `/register-waitlist` (the "cave entrance", ranks 70–100, with the Taqwa
//! role) and `/water-share` (passing the Water Sharer badge on).

use std::fmt::Write as _;

use serde_json::json;
use tokio_postgres::types::Type;

use super::ranking::{ELIGIBLE_RANKS, WAITLIST};
use super::{Ctx, id64, mention, store, sync, user};
use crate::worker::interaction::{Message, Reply};
use crate::worker::respond::HandlerError;

/// The badge `/water-share` passes on.
pub const WATER_SHARER: &str = "water-sharer";

/// `/register-waitlist register wallet|status|unregister`.
pub async fn register_waitlist(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    match ctx.interaction.subcommands().first().copied() {
        Some("register") => register(ctx).await,
        Some("unregister") => {
            let tx = ctx.tx().await?;
            let n = tx
                .execute(
                    "DELETE FROM waitlist WHERE community_id = $1 AND user_id = $2",
                    &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
                )
                .await?;
            tx.commit().await?;
            if n == 0 {
                return Err(user("You are not on the waitlist."));
            }
            refresh(ctx).await?;
            Ok(Reply::Message(Message::ephemeral(
                "You left the waitlist; the Taqwa role is removed.",
            )))
        }
        _ => {
            let tx = ctx.tx().await?;
            let rows = tx
                .query(
                    "SELECT w.address, e.rank FROM waitlist w LEFT JOIN eligibility e \
                     ON e.community_id = w.community_id AND e.address = w.address \
                     WHERE w.community_id = $1 AND w.user_id = $2",
                    &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
                )
                .await?;
            tx.commit().await?;
            let Some(r) = rows.first() else {
                return Ok(Reply::Message(Message::ephemeral(
                    "You are not on the waitlist. Wallets ranked 70–100 can join with /register-waitlist register.",
                )));
            };
            let address: Option<String> = r.get(0);
            let rank: Option<i32> = r.get(1);
            let mut out = format!(
                "You are on the waitlist with `{}`.",
                address.unwrap_or_default()
            );
            match rank {
                Some(rank) => {
                    let _ = write!(out, " It ranks #{rank}.");
                }
                None => out.push_str(" It holds nothing in the current snapshot."),
            }
            Ok(Reply::Message(Message::ephemeral(out)))
        }
    }
}

async fn refresh(ctx: &Ctx<'_>) -> Result<(), HandlerError> {
    sync::refresh_member(
        ctx.services,
        ctx.community,
        ctx.guild_id,
        ctx.interaction.user_id,
        &ctx.settings,
        false,
    )
    .await?;
    Ok(())
}

async fn register(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let wallet = ctx
        .interaction
        .option_str("wallet")
        .ok_or_else(|| user("Give the wallet to register (wallet: 0x…)."))?
        .trim()
        .to_lowercase();
    if wallet.parse::<crate::worker::chain::Address>().is_err() {
        return Err(user(
            "That is not a wallet address (0x followed by 40 hex digits).",
        ));
    }
    let tx = ctx.tx().await?;
    if store::owner_of(&tx, &wallet).await? != Some(ctx.user) {
        tx.rollback().await?;
        return Err(user(
            "You are not verified for that wallet: link it first with /verify start.",
        ));
    }
    let rank = store::eligibility_of(&tx, std::slice::from_ref(&wallet))
        .await?
        .first()
        .and_then(|e| e.rank);
    let Some(rank) = rank.and_then(|r| u32::try_from(r).ok()) else {
        tx.rollback().await?;
        return Err(user(
            "Not eligible for the waitlist: that wallet holds nothing in the current snapshot.",
        ));
    };
    if rank <= ELIGIBLE_RANKS {
        tx.rollback().await?;
        return Err(user(format!(
            "That wallet ranks #{rank}: it is already eligible, no waitlist needed."
        )));
    }
    if !WAITLIST.contains(&rank) {
        tx.rollback().await?;
        return Err(user(format!(
            "Not eligible for the waitlist: it is for ranks 70–100 and that wallet ranks #{rank}."
        )));
    }
    tx.execute(
        "INSERT INTO waitlist (community_id, user_id, address) VALUES ($1, $2, $3) \
         ON CONFLICT (community_id, user_id) DO UPDATE SET address = $3, registered_at = now()",
        &[
            (&ctx.community, Type::INT8),
            (&ctx.user, Type::INT8),
            (&wallet, Type::TEXT),
        ],
    )
    .await?;
    tx.commit().await?;
    refresh(ctx).await?;
    Ok(Reply::Message(Message::ephemeral(format!(
        "You are on the waitlist at rank #{rank} and hold the Taqwa role. \
         You'll get a DM when you become eligible."
    ))))
}

/// `/water-share share member|status`.
pub async fn water_share(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    if ctx.interaction.subcommands().first().copied() == Some("share") {
        return share(ctx).await;
    }
    let tx = ctx.tx().await?;
    let given = tx
        .query(
            "SELECT grantee_id FROM water_shares WHERE community_id = $1 AND granter_id = $2",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?;
    let received = tx
        .query(
            "SELECT granter_id FROM water_shares WHERE community_id = $1 AND grantee_id = $2",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?;
    let badges = store::badges_of(&tx, ctx.user).await?;
    tx.commit().await?;
    let mut out = if badges.iter().any(|b| b == WATER_SHARER) {
        "You hold the Water Sharer badge.".to_owned()
    } else {
        "You do not hold the Water Sharer badge.".to_owned()
    };
    if let Some(r) = received.first() {
        let _ = write!(out, "\n{} shared it with you.", mention(r.get(0)));
    }
    match given.first() {
        Some(r) => {
            let _ = write!(out, "\nYou shared it with {}.", mention(r.get(0)));
        }
        None => out.push_str("\nYou have not shared it yet."),
    }
    Ok(Reply::Message(Message::ephemeral(out)))
}

async fn share(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let member: u64 = ctx
        .interaction
        .option_str("member")
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| user("Choose the member to share with (member: @someone)."))?;
    let member = id64(member)?;
    if member == ctx.user {
        return Err(user("You cannot share water with yourself."));
    }
    let tx = ctx.tx().await?;
    if !store::badges_of(&tx, ctx.user)
        .await?
        .iter()
        .any(|b| b == WATER_SHARER)
    {
        tx.rollback().await?;
        return Err(user("You need the Water Sharer badge to share it."));
    }
    let already = tx
        .query(
            "SELECT 1 FROM water_shares WHERE community_id = $1 AND granter_id = $2",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?;
    if !already.is_empty() {
        tx.rollback().await?;
        return Err(user(
            "You have already shared your water: each Water Sharer shares once.",
        ));
    }
    if store::badges_of(&tx, member)
        .await?
        .iter()
        .any(|b| b == WATER_SHARER)
    {
        tx.rollback().await?;
        return Err(user("That member already holds the Water Sharer badge."));
    }
    let parent: Option<i64> = tx
        .query(
            "SELECT id FROM water_shares WHERE community_id = $1 AND grantee_id = $2 \
             ORDER BY id LIMIT 1",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?
        .first()
        .map(|r| r.get(0));
    store::ensure_profile(&tx, member).await?;
    tx.execute(
        "INSERT INTO water_shares (community_id, granter_id, grantee_id, parent_id) \
         VALUES ($1, $2, $3, $4)",
        &[
            (&ctx.community, Type::INT8),
            (&ctx.user, Type::INT8),
            (&member, Type::INT8),
            (&parent, Type::INT8),
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO badges (community_id, user_id, badge, awarded_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        &[
            (&ctx.community, Type::INT8),
            (&member, Type::INT8),
            (&WATER_SHARER, Type::TEXT),
            (&ctx.user, Type::INT8),
        ],
    )
    .await?;
    store::audit(&tx, "water_share", Some(ctx.user), Some(member), &json!({})).await?;
    tx.commit().await?;
    Ok(Reply::Message(Message::ephemeral(format!(
        "You shared your water with {}: they now hold the Water Sharer badge.",
        mention(member)
    ))))
}
