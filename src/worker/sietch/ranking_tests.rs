//! Tests of the ranking rules, one per rule.

use super::*;
use serde_json::json;

const DECIMALS: u32 = 18;

fn addr(n: u8) -> Address {
    let mut address = [0u8; 20];
    address[19] = n;
    address
}

fn tokens(whole: u128) -> u128 {
    whole * 10u128.pow(DECIMALS)
}

fn hold(n: u8, balance: u128, since: u64) -> Holding {
    Holding {
        address: addr(n),
        balance,
        held_since_block: since,
    }
}

fn defaults() -> Thresholds {
    Thresholds::from_settings(None, DECIMALS).unwrap()
}

fn rank_plain(holdings: &[Holding]) -> Vec<Standing> {
    rank(holdings, &HashSet::new(), &[], &defaults())
}

fn addresses(standings: &[Standing]) -> Vec<Address> {
    standings.iter().map(|s| s.address).collect()
}

/// Holders 1..=count with strictly decreasing balances, one wallet each
/// mapped to user id = holder number.
fn ladder(count: u8) -> (Vec<Holding>, Vec<(Address, u64)>) {
    let holdings = (1..=count)
        .map(|n| hold(n, tokens(10_000 - u128::from(n)), 1))
        .collect();
    let wallets = (1..=count).map(|n| (addr(n), u64::from(n))).collect();
    (holdings, wallets)
}

fn member(outcome: &Outcome, user_id: u64) -> &MemberStanding {
    outcome
        .members
        .iter()
        .find(|m| m.user_id == user_id)
        .unwrap()
}

fn events_of(outcome: &Outcome, user_id: u64) -> Vec<MemberEvent> {
    outcome
        .events
        .iter()
        .filter(|event| {
            let id = match event {
                MemberEvent::Promoted { user_id, .. }
                | MemberEvent::Demoted { user_id, .. }
                | MemberEvent::NaibSeated { user_id, .. }
                | MemberEvent::NaibBumped { user_id, .. }
                | MemberEvent::WaitlistEligible { user_id, .. }
                | MemberEvent::AtRisk { user_id, .. } => *user_id,
            };
            id == user_id
        })
        .cloned()
        .collect()
}

#[test]
fn tier_order_name_and_from_name() {
    assert!(Tier::Naib > Tier::Fedaykin);
    assert!(Tier::Fedaykin > Tier::Usul);
    assert!(Tier::Ichwan > Tier::Hajra);
    assert!(Some(Tier::Hajra) > None);
    for pair in Tier::ALL.windows(2) {
        assert!(pair[0] > pair[1]);
    }
    for tier in Tier::ALL {
        assert_eq!(Tier::from_name(tier.name()), Some(tier));
    }
    assert_eq!(Tier::Sayyadina.name(), "sayyadina");
    assert_eq!(Tier::from_name("Naib"), None);
    assert_eq!(Tier::from_name("taqwa"), None);
}

#[test]
fn ranking_orders_by_balance_then_longer_holding_then_address() {
    let standings = rank_plain(&[
        hold(1, tokens(100), 50),
        hold(2, tokens(500), 90),
        hold(3, tokens(100), 10),
        hold(5, tokens(100), 50),
        hold(4, tokens(100), 50),
    ]);
    assert_eq!(
        addresses(&standings),
        vec![addr(2), addr(3), addr(1), addr(4), addr(5)]
    );
    let ranks: Vec<_> = standings.iter().map(|s| s.rank).collect();
    assert_eq!(ranks, vec![Some(1), Some(2), Some(3), Some(4), Some(5)]);
}

#[test]
fn zero_balances_are_dropped() {
    let standings = rank_plain(&[hold(1, 0, 1), hold(2, 1, 1)]);
    assert_eq!(addresses(&standings), vec![addr(2)]);
}

#[test]
fn duplicate_holdings_are_summed_with_earliest_block() {
    let standings = rank_plain(&[
        hold(1, tokens(60), 100),
        hold(2, tokens(100), 20),
        hold(1, tokens(40), 10),
    ]);
    assert_eq!(addresses(&standings), vec![addr(1), addr(2)]);
    assert_eq!(standings[0].balance, tokens(100));
}

#[test]
fn burners_are_excluded() {
    let burners: HashSet<Address> = [addr(1)].into();
    let standings = rank(
        &[hold(1, tokens(900), 1), hold(2, tokens(10), 1)],
        &burners,
        &[],
        &defaults(),
    );
    assert_eq!(addresses(&standings), vec![addr(2)]);
    assert_eq!(standings[0].rank, Some(1));
}

#[test]
fn burner_with_add_override_is_included() {
    let burners: HashSet<Address> = [addr(1)].into();
    let overrides = [Override {
        address: addr(1),
        action: OverrideAction::Add,
    }];
    let standings = rank(
        &[hold(1, tokens(900), 1), hold(2, tokens(10), 1)],
        &burners,
        &overrides,
        &defaults(),
    );
    assert_eq!(addresses(&standings), vec![addr(1), addr(2)]);
    assert_eq!(standings[0].rank, Some(1));
    assert_eq!(standings[0].tier, Some(Tier::Naib));
}

#[test]
fn remove_override_beats_add_override() {
    let overrides = [
        Override {
            address: addr(1),
            action: OverrideAction::Add,
        },
        Override {
            address: addr(1),
            action: OverrideAction::Remove,
        },
        Override {
            address: addr(9),
            action: OverrideAction::Remove,
        },
        Override {
            address: addr(9),
            action: OverrideAction::Add,
        },
    ];
    let standings = rank(
        &[hold(1, tokens(900), 1), hold(2, tokens(10), 1)],
        &HashSet::new(),
        &overrides,
        &defaults(),
    );
    assert_eq!(addresses(&standings), vec![addr(2)]);
}

#[test]
fn add_override_with_zero_balance_gets_fedaykin_and_no_rank() {
    let overrides = [
        Override {
            address: addr(7),
            action: OverrideAction::Add,
        },
        Override {
            address: addr(5),
            action: OverrideAction::Add,
        },
    ];
    let standings = rank(
        &[hold(1, tokens(10), 1), hold(5, 0, 1)],
        &HashSet::new(),
        &overrides,
        &defaults(),
    );
    assert_eq!(addresses(&standings), vec![addr(1), addr(5), addr(7)]);
    for standing in &standings[1..] {
        assert_eq!(standing.rank, None);
        assert_eq!(standing.balance, 0);
        assert_eq!(standing.tier, Some(Tier::Fedaykin));
    }
}

#[test]
fn add_override_ranked_beyond_69_keeps_rank_and_is_fedaykin() {
    let (mut holdings, _) = ladder(70);
    holdings.push(hold(71, tokens(1), 1));
    let overrides = [Override {
        address: addr(71),
        action: OverrideAction::Add,
    }];
    let standings = rank(&holdings, &HashSet::new(), &overrides, &defaults());
    let last = standings.last().unwrap();
    assert_eq!(last.address, addr(71));
    assert_eq!(last.rank, Some(71));
    assert_eq!(last.tier, Some(Tier::Fedaykin));
    assert_eq!(standings[69].tier, Some(Tier::Usul));
}

#[test]
fn tier_boundary_exactly_at_hajra_minimum() {
    let thresholds = defaults();
    let minimum = 6_900_000_000_000_000_000u128;
    assert_eq!(thresholds.hajra, minimum);
    assert_eq!(thresholds.tier_for(minimum), Some(Tier::Hajra));
    assert_eq!(thresholds.tier_for(minimum - 1), None);
    assert_eq!(thresholds.tier_for(tokens(69)), Some(Tier::Ichwan));
    assert_eq!(thresholds.tier_for(tokens(69) - 1), Some(Tier::Hajra));
    assert_eq!(thresholds.tier_for(tokens(1111)), Some(Tier::Usul));
    assert_eq!(thresholds.tier_for(tokens(1111) - 1), Some(Tier::Sayyadina));
    assert_eq!(thresholds.minimum(Tier::Naib), None);
    assert_eq!(thresholds.minimum(Tier::Fedaykin), None);
    assert_eq!(thresholds.minimum(Tier::Qanat), Some(tokens(222)));
}

#[test]
fn rank_boundaries_7_8_69_70() {
    let mut holdings: Vec<Holding> = (1..=70u8)
        .map(|n| hold(n, tokens(2000 - u128::from(n)), 1))
        .collect();
    // Rank 70 gets a balance-based tier only.
    holdings[69].balance = tokens(100);
    let standings = rank_plain(&holdings);
    let tier_at = |rank: usize| standings[rank - 1].tier;
    assert_eq!(tier_at(1), Some(Tier::Naib));
    assert_eq!(tier_at(7), Some(Tier::Naib));
    assert_eq!(tier_at(8), Some(Tier::Fedaykin));
    assert_eq!(tier_at(69), Some(Tier::Fedaykin));
    assert_eq!(tier_at(70), Some(Tier::Ichwan));
    assert_eq!(standings[69].rank, Some(70));
}

#[test]
fn thresholds_from_settings_number() {
    let settings = json!({ "hajra": 6.9, "usul": 2000 });
    let thresholds = Thresholds::from_settings(Some(&settings), DECIMALS).unwrap();
    assert_eq!(thresholds.hajra, 6_900_000_000_000_000_000);
    assert_eq!(thresholds.usul, tokens(2000));
    assert_eq!(thresholds.ichwan, tokens(69));
    let settings = json!({ "qanat": 0.1 });
    let thresholds = Thresholds::from_settings(Some(&settings), 1).unwrap();
    assert_eq!(thresholds.qanat, 1);
}

#[test]
fn thresholds_from_settings_string() {
    let settings = json!({ "sihaya": "420.5", "hajra": "7" });
    let thresholds = Thresholds::from_settings(Some(&settings), DECIMALS).unwrap();
    assert_eq!(thresholds.sihaya, 420_500_000_000_000_000_000);
    assert_eq!(thresholds.hajra, tokens(7));
    assert_eq!(thresholds.usul, tokens(1111));
}

#[test]
fn thresholds_from_settings_bad_key() {
    for key in ["naib", "fedaykin", "taqwa"] {
        let settings = json!({ key: 5 });
        let error = Thresholds::from_settings(Some(&settings), DECIMALS).unwrap_err();
        assert!(error.contains(key), "{error}");
    }
    let error = Thresholds::from_settings(Some(&json!([1])), DECIMALS).unwrap_err();
    assert!(error.contains("object"), "{error}");
    let error = Thresholds::from_settings(Some(&json!({ "qanat": true })), DECIMALS).unwrap_err();
    assert!(error.contains("qanat"), "{error}");
}

#[test]
fn thresholds_from_settings_negative() {
    for value in [json!(-1), json!(-0.5), json!("-3")] {
        let settings = json!({ "ichwan": value });
        let error = Thresholds::from_settings(Some(&settings), DECIMALS).unwrap_err();
        assert!(
            error.contains("ichwan") && error.contains("negative"),
            "{error}"
        );
    }
    let error = Thresholds::from_settings(Some(&json!({ "ichwan": "NaN" })), DECIMALS).unwrap_err();
    assert!(error.contains("ichwan"), "{error}");
}

#[test]
fn thresholds_from_settings_too_many_decimals() {
    let settings = json!({ "hajra": "6.95" });
    let error = Thresholds::from_settings(Some(&settings), 1).unwrap_err();
    assert!(
        error.contains("hajra") && error.contains("decimal"),
        "{error}"
    );
    // The 6.9 default cannot be expressed at 0 decimals unless overridden.
    let error = Thresholds::from_settings(None, 0).unwrap_err();
    assert!(error.contains("hajra"), "{error}");
    let settings = json!({ "hajra": 7 });
    assert_eq!(
        Thresholds::from_settings(Some(&settings), 0).unwrap().hajra,
        7
    );
}

#[test]
fn thresholds_from_settings_overflow() {
    let settings = json!({ "usul": "1000000000000000000000" });
    let error = Thresholds::from_settings(Some(&settings), 18).unwrap_err();
    assert!(error.contains("usul") && error.contains("large"), "{error}");
}

#[test]
fn parse_amount_is_exact_and_strict() {
    assert_eq!(parse_amount("6.9", 18), Some(6_900_000_000_000_000_000));
    assert_eq!(parse_amount("6.90", 1), Some(69));
    assert_eq!(parse_amount("0", 60), Some(0));
    assert_eq!(parse_amount("1", 38), Some(10u128.pow(38)));
    assert_eq!(parse_amount("1", 39), None);
    for bad in ["", ".5", "5.", "1e3", " 1", "+1", "-1", "1.2.3", "NaN"] {
        assert_eq!(parse_amount(bad, 18), None, "{bad:?}");
    }
    assert_eq!(parse_amount("0.001", 2), None);
}

#[test]
fn format_amount_truncates_to_two_decimals() {
    assert_eq!(format_amount(6_899_999_999_999_999_999, 18), "6.89");
    assert_eq!(format_amount(tokens(1111), 18), "1111.00");
    assert_eq!(format_amount(0, 18), "0.00");
    assert_eq!(format_amount(69, 1), "6.90");
    assert_eq!(format_amount(7, 0), "7.00");
    assert_eq!(format_amount(12_345, 2), "123.45");
    assert_eq!(format_amount(u128::MAX, 60), "0.00");
}

#[test]
fn newcomer_with_more_tokens_bumps_the_lowest_seat() {
    let (holdings, mut wallets) = ladder(8);
    // Users 1..=7 hold seats in a scrambled order; user 8 is rank 8.
    let seats: Vec<(u8, u64)> = (1..=7u8).map(|u| ((u + 2) % 7 + 1, u64::from(u))).collect();
    let first = members(
        &rank_plain(&holdings),
        &wallets,
        &PreviousState {
            seats: seats.clone(),
            ..PreviousState::default()
        },
    );
    let mut sorted_seats = seats.clone();
    sorted_seats.sort_unstable();
    assert_eq!(first.seats, sorted_seats);

    let mut holdings = holdings;
    holdings.push(hold(9, tokens(50_000), 5));
    wallets.push((addr(9), 9));
    let second = members(
        &rank_plain(&holdings),
        &wallets,
        &first.to_previous(HashSet::new()),
    );
    let old_seat_of_seven = (7u8 + 2) % 7 + 1;
    let bumped = member(&second, 7);
    assert_eq!(bumped.best_rank, Some(8));
    assert_eq!(bumped.naib_seat, None);
    assert!(bumped.former_naib);
    assert_eq!(
        events_of(&second, 7),
        vec![
            MemberEvent::Demoted {
                user_id: 7,
                from: Tier::Naib,
                to: Some(Tier::Fedaykin)
            },
            MemberEvent::NaibBumped {
                user_id: 7,
                seat: old_seat_of_seven
            },
        ]
    );
    assert_eq!(member(&second, 9).naib_seat, Some(old_seat_of_seven));
    assert_eq!(
        events_of(&second, 9),
        vec![
            MemberEvent::Promoted {
                user_id: 9,
                from: None,
                to: Tier::Naib
            },
            MemberEvent::NaibSeated {
                user_id: 9,
                seat: old_seat_of_seven
            },
        ]
    );
    for user in 1..=6u8 {
        let standing = member(&second, u64::from(user));
        assert_eq!(standing.naib_seat, Some((user + 2) % 7 + 1));
        assert!(!standing.former_naib);
        assert!(events_of(&second, u64::from(user)).is_empty());
    }
    assert_eq!(second.seats.len(), 7);
}

#[test]
fn newcomers_take_lowest_free_seats_in_rank_order() {
    let (holdings, wallets) = ladder(3);
    let outcome = members(
        &rank_plain(&holdings),
        &wallets,
        &PreviousState {
            seats: vec![(1, 2)],
            ..PreviousState::default()
        },
    );
    assert_eq!(outcome.seats, vec![(1, 2), (2, 1), (3, 3)]);
}

#[test]
fn user_with_two_wallets_takes_best_rank_and_max_tier() {
    let holdings: Vec<Holding> = (1..=80u8)
        .map(|n| hold(n, tokens(5000 - u128::from(n)), 1))
        .collect();
    let standings = rank_plain(&holdings);
    // User 500 owns rank 75 (balance tier) and rank 12 (Fedaykin).
    let wallets = vec![(addr(75), 500), (addr(12), 500), (addr(99), 600)];
    let outcome = members(&standings, &wallets, &PreviousState::default());
    let user = member(&outcome, 500);
    assert_eq!(user.best_rank, Some(12));
    assert_eq!(user.tier, Some(Tier::Fedaykin));
    assert_eq!(user.holdings, tokens(5000 - 75) + tokens(5000 - 12));
    let unknown = member(&outcome, 600);
    assert_eq!(
        (unknown.best_rank, unknown.tier, unknown.holdings),
        (None, None, 0)
    );
    assert_eq!(
        outcome
            .members
            .iter()
            .map(|m| m.user_id)
            .collect::<Vec<_>>(),
        vec![500, 600]
    );
    assert!(events_of(&outcome, 600).is_empty());
}

#[test]
fn promotion_and_demotion_events() {
    let thresholds = defaults();
    let wallets = vec![(addr(1), 1), (addr(2), 2), (addr(3), 3)];
    let before: Vec<Holding> = (1..=80u8)
        .map(|n| hold(n, tokens(5000 - u128::from(n)), 1))
        .collect();
    let mut holdings = before.clone();
    // Wallets 1..=3 are ranked 1..=3 (Naib) at first.
    let first = members(
        &rank(&holdings, &HashSet::new(), &[], &thresholds),
        &wallets,
        &PreviousState::default(),
    );
    assert_eq!(
        events_of(&first, 1)[0],
        MemberEvent::Promoted {
            user_id: 1,
            from: None,
            to: Tier::Naib
        }
    );
    // Wallet 1 sells down to Hajra, wallet 2 sells everything.
    holdings[0].balance = tokens(7);
    holdings[1].balance = 0;
    let second = members(
        &rank(&holdings, &HashSet::new(), &[], &thresholds),
        &wallets,
        &first.to_previous(HashSet::new()),
    );
    assert_eq!(
        events_of(&second, 1)[0],
        MemberEvent::Demoted {
            user_id: 1,
            from: Tier::Naib,
            to: Some(Tier::Hajra)
        }
    );
    assert_eq!(
        events_of(&second, 2)[0],
        MemberEvent::Demoted {
            user_id: 2,
            from: Tier::Naib,
            to: None
        }
    );
    // Wallet 1 buys back into the top seven.
    let third = members(
        &rank(&before, &HashSet::new(), &[], &thresholds),
        &wallets,
        &second.to_previous(HashSet::new()),
    );
    assert_eq!(
        events_of(&third, 1)[0],
        MemberEvent::Promoted {
            user_id: 1,
            from: Some(Tier::Hajra),
            to: Tier::Naib
        }
    );
    assert!(!events_of(&third, 3).iter().any(|e| matches!(
        e,
        MemberEvent::Promoted { .. } | MemberEvent::Demoted { .. }
    )));
}

#[test]
fn waitlist_eligible_only_on_crossing_into_eligible_ranks() {
    let mut holdings: Vec<Holding> = (1..=90u8)
        .map(|n| hold(n, tokens(5000 - u128::from(n)), 1))
        .collect();
    let waitlist: HashSet<u64> = [85].into();
    let wallets = vec![(addr(85), 85), (addr(86), 86)];
    let previous = PreviousState {
        waitlist: waitlist.clone(),
        ..PreviousState::default()
    };
    let first = members(&rank_plain(&holdings), &wallets, &previous);
    assert!(member(&first, 85).waitlisted);
    assert!(!member(&first, 86).waitlisted);
    assert!(
        !first
            .events
            .iter()
            .any(|e| matches!(e, MemberEvent::WaitlistEligible { .. }))
    );

    // Both 85 and 86 climb to the top 69; only the registrant is told.
    holdings[84].balance = tokens(4950);
    holdings[85].balance = tokens(4949);
    let second = members(
        &rank_plain(&holdings),
        &wallets,
        &first.to_previous(waitlist.clone()),
    );
    let rank = member(&second, 85).best_rank.unwrap();
    assert!(rank <= ELIGIBLE_RANKS);
    assert!(!member(&second, 85).waitlisted);
    assert!(events_of(&second, 85).contains(&MemberEvent::WaitlistEligible { user_id: 85, rank }));
    assert!(
        !second
            .events
            .iter()
            .any(|e| matches!(e, MemberEvent::WaitlistEligible { user_id: 86, .. }))
    );

    // Staying eligible does not repeat the event.
    let third = members(
        &rank_plain(&holdings),
        &wallets,
        &second.to_previous(waitlist),
    );
    assert!(
        !third
            .events
            .iter()
            .any(|e| matches!(e, MemberEvent::WaitlistEligible { .. }))
    );
}

#[test]
fn waitlisted_requires_rank_70_to_100_or_unranked() {
    let holdings: Vec<Holding> = (1..=110u8)
        .map(|n| hold(n, tokens(5000 - u128::from(n)), 1))
        .collect();
    let waitlist: HashSet<u64> = [69, 70, 100, 101, 200].into();
    let wallets = vec![
        (addr(69), 69),
        (addr(70), 70),
        (addr(100), 100),
        (addr(101), 101),
    ];
    let outcome = members(
        &rank_plain(&holdings),
        &wallets,
        &PreviousState {
            waitlist,
            ..PreviousState::default()
        },
    );
    let flags: Vec<(u64, bool)> = outcome
        .members
        .iter()
        .map(|m| (m.user_id, m.waitlisted))
        .collect();
    assert_eq!(
        flags,
        vec![
            (69, false),
            (70, true),
            (100, true),
            (101, false),
            (200, true)
        ]
    );
}

#[test]
fn at_risk_on_entering_63_to_69_from_above_and_below_not_when_staying() {
    let base: Vec<Holding> = (1..=90u8)
        .map(|n| hold(n, tokens(5000 - u128::from(n)), 1))
        .collect();
    // User 10 starts at rank 10, user 80 at rank 80, user 65 at rank 65.
    let wallets = vec![(addr(10), 10), (addr(80), 80), (addr(65), 65)];
    let first = members(&rank_plain(&base), &wallets, &PreviousState::default());
    assert_eq!(
        events_of(&first, 65),
        vec![
            MemberEvent::Promoted {
                user_id: 65,
                from: None,
                to: Tier::Fedaykin
            },
            MemberEvent::AtRisk {
                user_id: 65,
                rank: 65
            }
        ]
    );

    let mut moved = base.clone();
    // 10 falls to just above 66 (between 66 and 67), 80 climbs between 63 and 64.
    moved[9].balance = tokens(5000 - 66) - 1;
    moved[79].balance = tokens(5000 - 63) - 1;
    let second = members(
        &rank_plain(&moved),
        &wallets,
        &first.to_previous(HashSet::new()),
    );
    let falling = member(&second, 10).best_rank.unwrap();
    let climbing = member(&second, 80).best_rank.unwrap();
    assert!(AT_RISK.contains(&falling) && AT_RISK.contains(&climbing));
    assert!(events_of(&second, 10).contains(&MemberEvent::AtRisk {
        user_id: 10,
        rank: falling
    }));
    assert!(events_of(&second, 80).contains(&MemberEvent::AtRisk {
        user_id: 80,
        rank: climbing
    }));
    // User 65 shifts within the band but never leaves it.
    let staying = member(&second, 65).best_rank.unwrap();
    assert!(AT_RISK.contains(&staying));
    assert!(events_of(&second, 65).is_empty());
}

#[test]
fn role_map_from_settings() {
    let settings = json!({
        "naib": "1001",
        "fedaykin": 1002,
        "hajra": "1009",
        "former_naib": "2000",
        "taqwa": "3000",
        "usul": null
    });
    let roles = RoleMap::from_settings(Some(&settings)).unwrap();
    assert_eq!(roles.tiers.get(&Tier::Naib), Some(&1001));
    assert_eq!(roles.tiers.get(&Tier::Fedaykin), Some(&1002));
    assert_eq!(roles.tiers.get(&Tier::Usul), None);
    assert_eq!(roles.former_naib, Some(2000));
    assert_eq!(roles.taqwa, Some(3000));
    assert_eq!(
        roles.managed(),
        [1001, 1002, 1009, 2000, 3000].into_iter().collect()
    );
    assert_eq!(RoleMap::from_settings(None).unwrap(), RoleMap::default());
    for (key, value) in [
        ("admin", json!("5")),
        ("naib", json!("-5")),
        ("naib", json!("12a")),
        ("taqwa", json!(0)),
        ("fedaykin", json!(1.5)),
    ] {
        let settings = json!({ key: value });
        let error = RoleMap::from_settings(Some(&settings)).unwrap_err();
        assert!(error.contains(key), "{error}");
    }
}

#[test]
fn desired_roles_follow_tier_former_naib_and_waitlist() {
    let roles = RoleMap {
        tiers: [(Tier::Fedaykin, 2), (Tier::Naib, 1)].into(),
        former_naib: Some(8),
        taqwa: Some(9),
    };
    let mut standing = MemberStanding {
        user_id: 1,
        best_rank: Some(20),
        tier: Some(Tier::Fedaykin),
        holdings: 1,
        naib_seat: None,
        former_naib: true,
        waitlisted: false,
    };
    assert_eq!(desired_roles(&standing, &roles), [2, 8].into());
    standing.tier = Some(Tier::Hajra);
    standing.former_naib = false;
    standing.waitlisted = true;
    assert_eq!(desired_roles(&standing, &roles), [9].into());
    standing.tier = Some(Tier::Naib);
    standing.naib_seat = Some(3);
    standing.former_naib = true;
    standing.waitlisted = false;
    assert_eq!(desired_roles(&standing, &roles), [1].into());
}

#[test]
fn role_diff_never_removes_unmanaged_roles() {
    let applied: BTreeSet<u64> = [1, 2, 50, 60].into();
    let desired: BTreeSet<u64> = [3, 2].into();
    let managed: BTreeSet<u64> = [1, 2, 3, 4].into();
    let diff = role_diff(&applied, &desired, &managed);
    assert_eq!(diff.add, vec![3]);
    assert_eq!(diff.remove, vec![1]);
    assert!(!diff.is_empty());
}

#[test]
fn role_diff_is_empty_when_nothing_changed() {
    let applied: BTreeSet<u64> = [2, 50].into();
    let desired: BTreeSet<u64> = [2].into();
    let managed: BTreeSet<u64> = [1, 2, 3].into();
    let diff = role_diff(&applied, &desired, &managed);
    assert!(diff.is_empty());
    assert_eq!(diff, RoleDiff::default());
}

#[test]
fn second_run_with_own_outcome_is_idempotent() {
    let (mut holdings, mut wallets) = ladder(90);
    holdings.push(hold(200, tokens(60_000), 1));
    wallets.push((addr(200), 7));
    wallets.push((addr(5), 3));
    let waitlist: HashSet<u64> = [75, 68, 500].into();
    let previous = PreviousState {
        seats: vec![(1, 7), (2, 1), (4, 88)],
        former_naib: [42].into(),
        waitlist: waitlist.clone(),
        ..PreviousState::default()
    };
    let standings = rank_plain(&holdings);
    let first = members(&standings, &wallets, &previous);
    assert!(!first.events.is_empty());
    let second = members(&standings, &wallets, &first.to_previous(waitlist));
    assert_eq!(second.events, Vec::<MemberEvent>::new());
    assert_eq!(second.seats, first.seats);
    assert_eq!(second.members, first.members);
    assert!(member(&second, 88).former_naib);
    assert!(member(&second, 42).former_naib);
}

#[test]
fn events_are_sorted_by_user_then_kind() {
    let (holdings, wallets) = ladder(70);
    let outcome = members(&rank_plain(&holdings), &wallets, &PreviousState::default());
    let ids: Vec<u64> = outcome
        .events
        .iter()
        .map(|event| match event {
            MemberEvent::Promoted { user_id, .. }
            | MemberEvent::Demoted { user_id, .. }
            | MemberEvent::NaibSeated { user_id, .. }
            | MemberEvent::NaibBumped { user_id, .. }
            | MemberEvent::WaitlistEligible { user_id, .. }
            | MemberEvent::AtRisk { user_id, .. } => *user_id,
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    assert_eq!(
        events_of(&outcome, 1),
        vec![
            MemberEvent::Promoted {
                user_id: 1,
                from: None,
                to: Tier::Naib
            },
            MemberEvent::NaibSeated {
                user_id: 1,
                seat: 1
            }
        ]
    );
}
