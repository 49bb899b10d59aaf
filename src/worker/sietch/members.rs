//! Standing commands: `/check-eligibility`, `/position`, `/threshold`,
//! `/leaderboard`, `/naib`, `/stats`. All but the first read the latest
//! snapshot only, so they answer well within the 3 s window.

use std::fmt::Write as _;

use tokio_postgres::types::Type;

use super::ranking::{ELIGIBLE_RANKS, NAIB_SEATS, Tier, format_amount};
use super::store::{self, Eligibility};
use super::{Ctx, mention, user};
use crate::worker::chain::Address;
use crate::worker::interaction::{Message, Reply};
use crate::worker::respond::HandlerError;

fn amount(ctx: &Ctx<'_>, raw: u128) -> String {
    format_amount(raw, ctx.settings.decimals)
}

fn tier_label(tier: Option<&str>) -> String {
    match tier {
        Some(t) => {
            let mut c = t.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_uppercase().collect::<String>() + c.as_str()
            })
        }
        None => "no tier".to_owned(),
    }
}

/// The tier a would-be `rank` and `balance` give.
fn tier_at(ctx: &Ctx<'_>, rank: u32, balance: u128) -> Option<Tier> {
    if rank <= u32::from(NAIB_SEATS) {
        Some(Tier::Naib)
    } else if rank <= ELIGIBLE_RANKS {
        Some(Tier::Fedaykin)
    } else {
        ctx.settings.thresholds.tier_for(balance)
    }
}

fn grace_note(ctx: &Ctx<'_>) -> &'static str {
    if ctx.in_grace {
        "\n_The chain was unreachable at the last sync: roles are held as they were until it answers again._"
    } else {
        ""
    }
}

/// `/check-eligibility [wallet]`: the balance read live from the chain
/// (2 s is normal, hence the immediate deferral), compared with the
/// current snapshot.
pub async fn check_eligibility(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let token = ctx.token()?;
    let wallet: Address = match ctx.interaction.option_str("wallet") {
        Some(w) => w
            .parse()
            .map_err(|_| user("That is not a wallet address (0x followed by 40 hex digits)."))?,
        None => {
            let tx = ctx.tx().await?;
            let wallets = store::wallets_of(&tx, ctx.user).await?;
            tx.commit().await?;
            wallets.first().and_then(|w| w.parse().ok()).ok_or_else(|| {
                user("You have not verified a wallet yet: run /verify start, or give one (wallet: 0x…).")
            })?
        }
    };
    let chain = ctx
        .services
        .chain_for(ctx.settings.rpc_urls.as_deref())
        .ok_or_else(|| {
            user("The chain is unavailable: no RPC endpoint is configured for this bot.")
        })?;
    let balance = chain.balance_of(token, wallet).await?;
    let address = wallet.to_string();
    let text = balance.to_string();
    let tx = ctx.tx().await?;
    let burned = !tx
        .query(
            "SELECT 1 FROM holders WHERE community_id = $1 AND address = $2 AND burned",
            &[(&ctx.community, Type::INT8), (&address, Type::TEXT)],
        )
        .await?
        .is_empty();
    let above: i64 = tx
        .query(
            "SELECT count(*) FROM eligibility WHERE community_id = $1 AND rank IS NOT NULL \
             AND address <> $2 AND balance > $3::numeric",
            &[
                (&ctx.community, Type::INT8),
                (&address, Type::TEXT),
                (&text, Type::TEXT),
            ],
        )
        .await?
        .first()
        .map_or(0, |r| r.get(0));
    let entry = tx
        .query(
            "SELECT balance::text FROM eligibility WHERE community_id = $1 AND rank IS NOT NULL \
             AND address <> $2 ORDER BY rank LIMIT 1 OFFSET $3",
            &[
                (&ctx.community, Type::INT8),
                (&address, Type::TEXT),
                (&i64::from(ELIGIBLE_RANKS - 1), Type::INT8),
            ],
        )
        .await?
        .first()
        .and_then(|r| r.get::<_, &str>(0).parse::<u128>().ok());
    let snapshot = store::latest_snapshot(&tx).await?;
    tx.commit().await?;

    let mut out = format!(
        "Wallet `{address}` holds **{}** tokens right now.",
        amount(ctx, balance)
    );
    if burned {
        out.push_str("\nThis wallet has burned tokens (sent them to the zero address): it is permanently ineligible.");
        return Ok(Reply::Message(Message::ephemeral(out + grace_note(ctx))));
    }
    if snapshot.is_none() {
        out.push_str("\nNo eligibility snapshot exists yet: the first sync has not completed.");
        return Ok(Reply::Message(Message::ephemeral(out)));
    }
    if balance == 0 {
        out.push_str("\nNot eligible: it holds no tokens.");
        return Ok(Reply::Message(Message::ephemeral(out + grace_note(ctx))));
    }
    let rank = u32::try_from(above).unwrap_or(u32::MAX).saturating_add(1);
    let tier = tier_at(ctx, rank, balance);
    let _ = write!(
        out,
        "\nAgainst the current snapshot it would rank **#{rank}** ({}).",
        tier_label(tier.map(Tier::name))
    );
    match entry {
        Some(entry) if rank > ELIGIBLE_RANKS => {
            let _ = write!(
                out,
                "\nNot eligible yet: entry (rank {ELIGIBLE_RANKS}) needs more than **{}**, {} more.",
                amount(ctx, entry),
                amount(ctx, entry.saturating_sub(balance).saturating_add(1))
            );
        }
        _ if rank <= ELIGIBLE_RANKS => out.push_str("\nEligible."),
        _ => {}
    }
    Ok(Reply::Message(Message::ephemeral(out + grace_note(ctx))))
}

/// The caller's best-ranked wallet in the snapshot.
async fn best_of(ctx: &Ctx<'_>) -> Result<(Vec<String>, Option<Eligibility>), HandlerError> {
    let tx = ctx.tx().await?;
    let wallets = store::wallets_of(&tx, ctx.user).await?;
    let rows = store::eligibility_of(&tx, &wallets).await?;
    tx.commit().await?;
    Ok((wallets, rows.into_iter().next()))
}

/// `/position`: rank, holdings, distance to neighbours and to entry, Naib
/// status, from the snapshot.
pub async fn position(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let (wallets, best) = best_of(ctx).await?;
    if wallets.is_empty() {
        return Err(user(
            "You are not verified yet: run /verify start to link a wallet.",
        ));
    }
    let Some(best) = best.filter(|b| b.rank.is_some()) else {
        return Err(user(
            "Not eligible: none of your verified wallets holds tokens in the current snapshot.",
        ));
    };
    let rank = best.rank.unwrap_or(0);
    let tx = ctx.tx().await?;
    let around = store::ranks(&tx, (rank - 1).max(1), rank + 1).await?;
    let entry = store::ranks(&tx, 69, 69).await?;
    let seat = tx
        .query(
            "SELECT seat FROM naib_seats WHERE community_id = $1 AND user_id = $2",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?
        .first()
        .map(|r| r.get::<_, i32>(0));
    tx.commit().await?;
    let mut out = format!(
        "You rank **#{rank}** with **{}** tokens ({}).",
        amount(ctx, best.balance),
        tier_label(best.tier.as_deref())
    );
    if let Some(up) = around.iter().find(|e| e.rank == Some(rank - 1)) {
        let _ = write!(
            out,
            "\n#{} is {} ahead.",
            rank - 1,
            amount(ctx, up.balance.saturating_sub(best.balance))
        );
    }
    if let Some(down) = around.iter().find(|e| e.rank == Some(rank + 1)) {
        let _ = write!(
            out,
            "\n#{} is {} behind.",
            rank + 1,
            amount(ctx, best.balance.saturating_sub(down.balance))
        );
    }
    if u32::try_from(rank).unwrap_or(u32::MAX) > ELIGIBLE_RANKS {
        if let Some(e) = entry.first() {
            let _ = write!(
                out,
                "\nEntry (rank {ELIGIBLE_RANKS}) is {} away.",
                amount(
                    ctx,
                    e.balance.saturating_sub(best.balance).saturating_add(1)
                )
            );
        }
    } else {
        out.push_str("\nYou are eligible.");
    }
    match seat {
        Some(seat) => {
            let _ = write!(out, "\nYou hold Naib seat {seat}.");
        }
        None => out.push_str("\nYou do not hold a Naib seat."),
    }
    Ok(Reply::Message(Message::ephemeral(out + grace_note(ctx))))
}

/// `/threshold`: entry requirement, eligible count, waitlist 70–100.
pub async fn threshold(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let tx = ctx.tx().await?;
    let entry = store::ranks(&tx, 69, 69).await?;
    let count = store::eligible_count(&tx).await?;
    let waitlist = store::ranks(&tx, 70, 100).await?;
    let snapshot = store::latest_snapshot(&tx).await?;
    tx.commit().await?;
    if snapshot.is_none() {
        return Err(user(
            "No eligibility snapshot exists yet: the first sync has not completed.",
        ));
    }
    let mut out = match entry.first() {
        Some(e) => format!(
            "Entry requirement: **{}** tokens (the holdings of rank {ELIGIBLE_RANKS}).",
            amount(ctx, e.balance)
        ),
        None => format!("Fewer than {ELIGIBLE_RANKS} holders: any holding is enough to enter."),
    };
    let _ = write!(out, "\nEligible members: **{count}**.");
    if waitlist.is_empty() {
        out.push_str("\nThe waitlist (ranks 70–100) is empty.");
    } else {
        out.push_str("\nWaitlist (ranks 70–100):");
        for e in &waitlist {
            let _ = write!(
                out,
                "\n#{} `{}…{}` {}",
                e.rank.unwrap_or(0),
                &e.address[..6],
                &e.address[e.address.len() - 4..],
                amount(ctx, e.balance)
            );
        }
    }
    Ok(Reply::Message(Message::public(out + grace_note(ctx))))
}

/// `/leaderboard badges|tiers`.
pub async fn leaderboard(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let by_badges = ctx.interaction.subcommands().first().copied() != Some("tiers");
    let tx = ctx.tx().await?;
    let mut out = String::new();
    if by_badges {
        let rows = tx
            .query(
                "SELECT b.user_id, p.nym, count(*) FROM badges b \
                 LEFT JOIN profiles p ON p.community_id = b.community_id AND p.user_id = b.user_id \
                 WHERE b.community_id = $1 GROUP BY b.user_id, p.nym \
                 ORDER BY count(*) DESC, b.user_id LIMIT 10",
                &[(&ctx.community, Type::INT8)],
            )
            .await?;
        out.push_str("**Leaderboard: badges**");
        for (i, r) in rows.iter().enumerate() {
            let name = r
                .get::<_, Option<String>>(1)
                .unwrap_or_else(|| mention(r.get(0)));
            let _ = write!(out, "\n{}. {name}: {} badges", i + 1, r.get::<_, i64>(2));
        }
        if rows.is_empty() {
            out.push_str("\nNo badges have been earned yet.");
        }
    } else {
        // Members below Fedaykin, by how little they lack for their next
        // balance tier.
        let rows = tx
            .query(
                "SELECT m.user_id, p.nym, m.tier, coalesce(sum(e.balance), 0)::text \
                 FROM member_roles m \
                 JOIN wallets w ON w.community_id = m.community_id AND w.user_id = m.user_id \
                 LEFT JOIN eligibility e ON e.community_id = w.community_id AND e.address = w.address \
                 LEFT JOIN profiles p ON p.community_id = m.community_id AND p.user_id = m.user_id \
                 WHERE m.community_id = $1 AND coalesce(m.tier, '') NOT IN ('naib', 'fedaykin') \
                 GROUP BY m.user_id, p.nym, m.tier",
                &[(&ctx.community, Type::INT8)],
            )
            .await?;
        let mut gaps: Vec<(u128, String, Tier)> = rows
            .iter()
            .filter_map(|r| {
                let held: u128 = r.get::<_, &str>(3).parse().ok()?;
                let current = r.get::<_, Option<&str>>(2).and_then(Tier::from_name);
                let next = next_tier(ctx, current)?;
                let need = ctx.settings.thresholds.minimum(next)?;
                let name = r
                    .get::<_, Option<String>>(1)
                    .unwrap_or_else(|| mention(r.get(0)));
                Some((need.saturating_sub(held), name, next))
            })
            .collect();
        gaps.sort();
        out.push_str("**Leaderboard: closest to the next tier**");
        for (i, (gap, name, next)) in gaps.iter().take(10).enumerate() {
            let _ = write!(
                out,
                "\n{}. {name}: {} to {}",
                i + 1,
                amount(ctx, *gap),
                tier_label(Some(next.name()))
            );
        }
        if gaps.is_empty() {
            out.push_str("\nNo verified member is below a balance tier.");
        }
    }
    tx.commit().await?;
    Ok(Reply::Message(Message::public(out)))
}

/// The next balance tier above `current` (Usul is the last one reachable
/// by balance; Fedaykin and Naib come from rank).
fn next_tier(ctx: &Ctx<'_>, current: Option<Tier>) -> Option<Tier> {
    let mut tiers: Vec<Tier> = Tier::ALL
        .into_iter()
        .filter(|t| ctx.settings.thresholds.minimum(*t).is_some())
        .collect();
    tiers.sort();
    tiers.into_iter().find(|t| current.is_none_or(|c| *t > c))
}

/// `/naib overview|current|former`.
pub async fn naib(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let view = ctx
        .interaction
        .subcommands()
        .first()
        .copied()
        .unwrap_or("overview");
    let tx = ctx.tx().await?;
    let seats = tx
        .query(
            "SELECT s.seat, s.user_id, p.nym FROM naib_seats s \
             LEFT JOIN profiles p ON p.community_id = s.community_id AND p.user_id = s.user_id \
             WHERE s.community_id = $1 ORDER BY s.seat",
            &[(&ctx.community, Type::INT8)],
        )
        .await?;
    let former = tx
        .query(
            "SELECT user_id, nym FROM profiles WHERE community_id = $1 AND former_naib \
             ORDER BY user_id LIMIT 50",
            &[(&ctx.community, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let name = |user: i64, nym: Option<String>| nym.unwrap_or_else(|| mention(user));
    let mut out = String::new();
    match view {
        "former" => {
            out.push_str("**Former Naib**");
            for r in &former {
                let _ = write!(out, "\n• {}", name(r.get(0), r.get(1)));
            }
            if former.is_empty() {
                out.push_str("\nNo one has lost a Naib seat yet.");
            }
        }
        "current" => {
            out.push_str("**Current Naib**");
            for r in &seats {
                let _ = write!(out, "\n• {}", name(r.get(1), r.get(2)));
            }
            if seats.is_empty() {
                out.push_str("\nNo Naib is seated.");
            }
        }
        _ => {
            out.push_str("**The Naib council: seven seats**");
            for seat in 1..=i32::from(NAIB_SEATS) {
                let holder = seats
                    .iter()
                    .find(|r| r.get::<_, i32>(0) == seat)
                    .map_or_else(|| "_vacant_".to_owned(), |r| name(r.get(1), r.get(2)));
                let _ = write!(out, "\nSeat {seat}: {holder}");
            }
            let _ = write!(out, "\nFormer Naib: {}", former.len());
        }
    }
    Ok(Reply::Message(Message::public(out)))
}

/// `/stats`: the caller's activity.
pub async fn stats(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let tx = ctx.tx().await?;
    let row = tx
        .query(
            "SELECT messages, points, extract(epoch FROM last_active_at)::bigint FROM activity \
             WHERE community_id = $1 AND user_id = $2",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?;
    let badges = store::badges_of(&tx, ctx.user).await?;
    let state = store::member_state(&tx, ctx.user).await?;
    tx.commit().await?;
    let (messages, points, last) = row.first().map_or((0, 0, None), |r| {
        (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            r.get::<_, Option<i64>>(2),
        )
    });
    let mut out = format!(
        "**Your activity**\nMessages: {messages}\nActivity score: {}.{:02}\nBadges: {}",
        points / 100,
        points % 100,
        badges.len()
    );
    if let Some(last) = last {
        let _ = write!(out, "\nLast active: <t:{last}:R>");
    }
    let _ = write!(out, "\nTier: {}", tier_label(state.tier.as_deref()));
    Ok(Reply::Message(Message::ephemeral(out)))
}
