//! Pure ranking rules for the Sietch token-gated community.
//!
//! Everything here is deterministic and free of I/O so that the same chain
//! snapshot, overrides and previous state always yield the same standings,
//! seats, events and role changes; the caller owns fetching and persisting.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::ops::RangeInclusive;

use serde_json::Value;

/// A 20-byte EVM account address.
pub type Address = [u8; 20];

/// Number of Naib seats; ranks `1..=NAIB_SEATS` are Naib.
pub const NAIB_SEATS: u8 = 7;

/// Highest rank that is still eligible (ranks 1–7 Naib, 8–69 Fedaykin).
pub const ELIGIBLE_RANKS: u32 = 69;

/// Ranks that count as "next in line" for users registered on the waitlist.
pub const WAITLIST: RangeInclusive<u32> = 70..=100;

/// Eligible ranks close enough to the cut-off that the holder gets warned.
pub const AT_RISK: RangeInclusive<u32> = 63..=69;

/// A community tier.
///
/// `Naib` and `Fedaykin` are earned by rank; the others are earned by
/// balance. Ordering follows prestige: `Naib` compares greatest and `Hajra`
/// least, so `max` over a user's wallets picks their best tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Ranks 1–7: the council seats.
    Naib,
    /// Ranks 8–69.
    Fedaykin,
    /// Highest balance tier (default 1111 tokens).
    Usul,
    /// Balance tier (default 888 tokens).
    Sayyadina,
    /// Balance tier (default 690 tokens).
    Mushtamal,
    /// Balance tier (default 420 tokens).
    Sihaya,
    /// Balance tier (default 222 tokens).
    Qanat,
    /// Balance tier (default 69 tokens).
    Ichwan,
    /// Lowest balance tier (default 6.9 tokens).
    Hajra,
}

impl Tier {
    /// Every tier, from greatest (`Naib`) to least (`Hajra`).
    pub const ALL: [Tier; 9] = [
        Tier::Naib,
        Tier::Fedaykin,
        Tier::Usul,
        Tier::Sayyadina,
        Tier::Mushtamal,
        Tier::Sihaya,
        Tier::Qanat,
        Tier::Ichwan,
        Tier::Hajra,
    ];

    /// Balance tiers from greatest to least; the order `tier_for` probes them.
    const BALANCE: [Tier; 7] = [
        Tier::Usul,
        Tier::Sayyadina,
        Tier::Mushtamal,
        Tier::Sihaya,
        Tier::Qanat,
        Tier::Ichwan,
        Tier::Hajra,
    ];

    /// The lowercase name used in settings keys (`"naib"`, `"fedaykin"`,
    /// `"usul"`, `"sayyadina"`, `"mushtamal"`, `"sihaya"`, `"qanat"`,
    /// `"ichwan"`, `"hajra"`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Tier::Naib => "naib",
            Tier::Fedaykin => "fedaykin",
            Tier::Usul => "usul",
            Tier::Sayyadina => "sayyadina",
            Tier::Mushtamal => "mushtamal",
            Tier::Sihaya => "sihaya",
            Tier::Qanat => "qanat",
            Tier::Ichwan => "ichwan",
            Tier::Hajra => "hajra",
        }
    }

    /// The tier whose [`Tier::name`] is exactly `name` (case-sensitive, so
    /// settings keys stay canonical), or `None`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|tier| tier.name() == name)
    }

    /// Prestige level; kept separate from declaration order so the enum can
    /// be listed top-down while still comparing greatest-first.
    fn level(self) -> u8 {
        match self {
            Tier::Naib => 8,
            Tier::Fedaykin => 7,
            Tier::Usul => 6,
            Tier::Sayyadina => 5,
            Tier::Mushtamal => 4,
            Tier::Sihaya => 3,
            Tier::Qanat => 2,
            Tier::Ichwan => 1,
            Tier::Hajra => 0,
        }
    }
}

impl Ord for Tier {
    fn cmp(&self, other: &Self) -> Ordering {
        self.level().cmp(&other.level())
    }
}

impl PartialOrd for Tier {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Default minimums in whole tokens, as decimal text so they convert exactly
/// at any token precision.
const DEFAULT_THRESHOLDS: [(Tier, &str); 7] = [
    (Tier::Usul, "1111"),
    (Tier::Sayyadina, "888"),
    (Tier::Mushtamal, "690"),
    (Tier::Sihaya, "420"),
    (Tier::Qanat, "222"),
    (Tier::Ichwan, "69"),
    (Tier::Hajra, "6.9"),
];

/// Minimum raw balance (in the token's smallest unit) of each balance tier.
///
/// The values are not required to increase with the tier; [`Thresholds::tier_for`]
/// simply picks the greatest tier whose minimum is met, so a misordered
/// configuration makes some tier unreachable rather than failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Minimum raw balance for [`Tier::Usul`].
    pub usul: u128,
    /// Minimum raw balance for [`Tier::Sayyadina`].
    pub sayyadina: u128,
    /// Minimum raw balance for [`Tier::Mushtamal`].
    pub mushtamal: u128,
    /// Minimum raw balance for [`Tier::Sihaya`].
    pub sihaya: u128,
    /// Minimum raw balance for [`Tier::Qanat`].
    pub qanat: u128,
    /// Minimum raw balance for [`Tier::Ichwan`].
    pub ichwan: u128,
    /// Minimum raw balance for [`Tier::Hajra`].
    pub hajra: u128,
}

impl Thresholds {
    /// Builds thresholds for a token with `decimals` decimals.
    ///
    /// `settings`, when present, must be a JSON object mapping balance-tier
    /// names (`"usul"` … `"hajra"`) to a minimum in whole tokens, given as a
    /// JSON number (`6.9`) or a decimal string (`"6.9"`); `null` keeps the
    /// default. Absent keys keep the defaults (hajra 6.9, ichwan 69,
    /// qanat 222, sihaya 420, mushtamal 690, sayyadina 888, usul 1111).
    /// Numbers are converted through their shortest decimal rendering, never
    /// by float multiplication, so `6.9` becomes exactly `69 × 10^(decimals-1)`.
    ///
    /// # Errors
    ///
    /// Returns a message naming the offending key when `settings` is not an
    /// object, a key is not a balance tier (including `"naib"` and
    /// `"fedaykin"`, which are rank-based), or a value is not a non-negative
    /// decimal, is negative, has more significant decimals than `decimals`,
    /// or overflows `u128`. A default that cannot be represented with
    /// `decimals` (e.g. 6.9 at 0 decimals) is also an error unless overridden.
    pub fn from_settings(settings: Option<&Value>, decimals: u32) -> Result<Thresholds, String> {
        let mut chosen: HashMap<Tier, u128> = HashMap::new();
        match settings {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    let tier = Tier::from_name(key)
                        .filter(|tier| Tier::BALANCE.contains(tier))
                        .ok_or_else(|| {
                            format!(
                                "threshold {key:?}: not a balance tier (expected one of usul, \
                                 sayyadina, mushtamal, sihaya, qanat, ichwan, hajra)"
                            )
                        })?;
                    let text = match value {
                        Value::Null => continue,
                        Value::String(text) => text.clone(),
                        Value::Number(number) => number_text(number),
                        other => {
                            return Err(format!(
                                "threshold {key:?}: expected a number or decimal string, got {other}"
                            ));
                        }
                    };
                    let raw = parse_amount_detailed(&text, decimals)
                        .map_err(|error| format!("threshold {key:?}: {error} ({text:?})"))?;
                    chosen.insert(tier, raw);
                }
            }
            Some(other) => {
                return Err(format!("thresholds: expected a JSON object, got {other}"));
            }
        }
        for (tier, text) in DEFAULT_THRESHOLDS {
            if let Entry::Vacant(slot) = chosen.entry(tier) {
                let raw = parse_amount_detailed(text, decimals).map_err(|error| {
                    format!(
                        "threshold {:?}: default {text} tokens: {error} at {decimals} decimals",
                        tier.name()
                    )
                })?;
                slot.insert(raw);
            }
        }
        let get = |tier: Tier| chosen.get(&tier).copied().unwrap_or_default();
        Ok(Thresholds {
            usul: get(Tier::Usul),
            sayyadina: get(Tier::Sayyadina),
            mushtamal: get(Tier::Mushtamal),
            sihaya: get(Tier::Sihaya),
            qanat: get(Tier::Qanat),
            ichwan: get(Tier::Ichwan),
            hajra: get(Tier::Hajra),
        })
    }

    /// The minimum raw balance of a balance tier; `None` for `Naib` and
    /// `Fedaykin`, which are earned by rank rather than balance.
    #[must_use]
    pub fn minimum(&self, tier: Tier) -> Option<u128> {
        match tier {
            Tier::Naib | Tier::Fedaykin => None,
            Tier::Usul => Some(self.usul),
            Tier::Sayyadina => Some(self.sayyadina),
            Tier::Mushtamal => Some(self.mushtamal),
            Tier::Sihaya => Some(self.sihaya),
            Tier::Qanat => Some(self.qanat),
            Tier::Ichwan => Some(self.ichwan),
            Tier::Hajra => Some(self.hajra),
        }
    }

    /// The greatest balance tier whose minimum is at most `balance`
    /// (a minimum is inclusive), or `None` below every minimum.
    /// Never returns `Naib` or `Fedaykin`.
    #[must_use]
    pub fn tier_for(&self, balance: u128) -> Option<Tier> {
        Tier::BALANCE
            .into_iter()
            .find(|&tier| self.minimum(tier).is_some_and(|minimum| balance >= minimum))
    }
}

/// Decimal text of a JSON number. Integers are printed directly so large
/// `u64` values keep every digit; floats use `{}`, which in Rust is the
/// shortest round-tripping rendering and never uses exponent notation.
fn number_text(number: &serde_json::Number) -> String {
    if let Some(unsigned) = number.as_u64() {
        unsigned.to_string()
    } else if let Some(signed) = number.as_i64() {
        signed.to_string()
    } else {
        match number.as_f64() {
            Some(float) if float.is_finite() => format!("{float}"),
            _ => "NaN".to_owned(),
        }
    }
}

/// `10^exponent`, or `None` when it does not fit in `u128` (exponent > 38).
fn pow10(exponent: u32) -> Option<u128> {
    10u128.checked_pow(exponent)
}

/// Converts whole-token decimal text into raw units, saying why it failed so
/// settings errors can be specific.
fn parse_amount_detailed(text: &str, decimals: u32) -> Result<u128, &'static str> {
    if text.starts_with('-') {
        return Err("must not be negative");
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (text.contains('.') && fraction.is_empty())
    {
        return Err("not a non-negative decimal number");
    }
    // Trailing zeros carry no value, so "6.90" is accepted at 1 decimal.
    let fraction = fraction.trim_end_matches('0');
    if u32::try_from(fraction.len()).map_or(true, |len| len > decimals) {
        return Err("too many decimal places for the token");
    }
    let mut raw: u128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        raw = raw
            .checked_mul(10)
            .and_then(|value| value.checked_add(u128::from(byte - b'0')))
            .ok_or("too large")?;
    }
    if raw == 0 {
        // Scaling zero cannot overflow, and skipping it avoids a pointless
        // power computation for absurd `decimals`.
        return Ok(0);
    }
    // The fraction length was checked against `decimals` above.
    let padding = decimals - u32::try_from(fraction.len()).unwrap_or(0);
    pow10(padding)
        .and_then(|scale| raw.checked_mul(scale))
        .ok_or("too large")
}

/// Parses a whole-token decimal such as `"6.9"` or `"1111"` into raw units
/// for a token with `decimals` decimals, exactly.
///
/// Accepts ASCII digits with an optional `.` followed by at least one digit;
/// trailing zeros beyond `decimals` are allowed since they lose nothing.
/// Returns `None` for signs, whitespace, exponents, empty parts, more
/// significant decimals than `decimals`, or values that overflow `u128`.
#[must_use]
pub fn parse_amount(text: &str, decimals: u32) -> Option<u128> {
    parse_amount_detailed(text, decimals).ok()
}

/// Renders `raw` units of a token with `decimals` decimals as whole tokens
/// with exactly two decimals, truncating (never rounding up, so a display
/// never claims a holder has reached an amount they have not).
/// Example: `format_amount(6_899_999_999_999_999_999, 18)` is `"6.89"`.
#[must_use]
pub fn format_amount(raw: u128, decimals: u32) -> String {
    // Above 38 decimals 10^decimals exceeds every u128, so the whole part is 0.
    let whole = pow10(decimals).map_or(0, |scale| raw / scale);
    let cents = if decimals >= 2 {
        pow10(decimals - 2).map_or(0, |scale| (raw / scale) % 100)
    } else {
        let scale = pow10(decimals).unwrap_or(1);
        (raw % scale) * pow10(2 - decimals).unwrap_or(1)
    };
    format!("{whole}.{cents:02}")
}

/// One address's token position from the chain snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The holder.
    pub address: Address,
    /// Balance in raw token units.
    pub balance: u128,
    /// Block since which the address has held; earlier wins ties.
    pub held_since_block: u64,
}

/// What an admin override does to an address's eligibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideAction {
    /// Make the address eligible (at least Fedaykin) regardless of balance
    /// or burner status.
    Add,
    /// Exclude the address from ranking entirely; beats `Add`.
    Remove,
}

/// An active admin override (expired ones are filtered out by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The address the override applies to.
    pub address: Address,
    /// What the override does.
    pub action: OverrideAction,
}

/// An address's computed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The holder.
    pub address: Address,
    /// Balance in raw token units (summed over duplicate holdings).
    pub balance: u128,
    /// 1-based rank among ranked holders; `None` for an `Add`-override
    /// address that holds nothing rankable.
    pub rank: Option<u32>,
    /// The address's tier, or `None` below every balance threshold.
    pub tier: Option<Tier>,
}

/// The rank-based tier, if the rank earns one.
fn rank_tier(rank: u32) -> Option<Tier> {
    if (1..=u32::from(NAIB_SEATS)).contains(&rank) {
        Some(Tier::Naib)
    } else if (1..=ELIGIBLE_RANKS).contains(&rank) {
        Some(Tier::Fedaykin)
    } else {
        None
    }
}

/// Ranks holders and assigns each a tier.
///
/// Duplicate addresses in `holdings` are merged first (balances summed,
/// saturating; earliest `held_since_block` kept). Then zero balances are
/// dropped, `burners` (addresses that ever sent tokens to the zero address)
/// are dropped unless an `Add` override names them, and every address with a
/// `Remove` override is dropped (even if it also has an `Add`). The rest are
/// sorted by balance descending, then `held_since_block` ascending, then
/// address ascending, and ranked from 1. Ranks 1–7 are Naib, 8–69 Fedaykin,
/// later ranks get `thresholds.tier_for(balance)`; an `Add`-override address
/// is raised to at least Fedaykin.
///
/// Output: ranked standings in rank order, then `Add`-override addresses
/// that were not ranked (rank `None`, tier Fedaykin), by address ascending.
#[must_use]
pub fn rank<S: BuildHasher>(
    holdings: &[Holding],
    burners: &HashSet<Address, S>,
    overrides: &[Override],
    thresholds: &Thresholds,
) -> Vec<Standing> {
    let mut added: BTreeSet<Address> = BTreeSet::new();
    let mut removed: HashSet<Address> = HashSet::new();
    for entry in overrides {
        match entry.action {
            OverrideAction::Add => added.insert(entry.address),
            OverrideAction::Remove => removed.insert(entry.address),
        };
    }

    let mut merged: HashMap<Address, (u128, u64)> = HashMap::new();
    for holding in holdings {
        let slot = merged
            .entry(holding.address)
            .or_insert((0, holding.held_since_block));
        slot.0 = slot.0.saturating_add(holding.balance);
        slot.1 = slot.1.min(holding.held_since_block);
    }

    let mut ranked: Vec<(Address, u128, u64)> = merged
        .iter()
        .filter(|(address, (balance, _))| {
            *balance > 0
                && !removed.contains(*address)
                && (!burners.contains(*address) || added.contains(*address))
        })
        .map(|(address, &(balance, since))| (*address, balance, since))
        .collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));

    let mut standings = Vec::with_capacity(ranked.len() + added.len());
    for (index, &(address, balance, _)) in ranked.iter().enumerate() {
        let rank = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let mut tier = rank_tier(rank).or_else(|| thresholds.tier_for(balance));
        if added.contains(&address) {
            tier = tier.max(Some(Tier::Fedaykin));
        }
        standings.push(Standing {
            address,
            balance,
            rank: Some(rank),
            tier,
        });
    }

    let ranked_addresses: HashSet<Address> = ranked.iter().map(|entry| entry.0).collect();
    for address in added {
        if removed.contains(&address) || ranked_addresses.contains(&address) {
            continue;
        }
        standings.push(Standing {
            address,
            balance: merged.get(&address).map_or(0, |slot| slot.0),
            rank: None,
            tier: Some(Tier::Fedaykin),
        });
    }
    standings
}

/// A Discord user's standing aggregated over their verified wallets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStanding {
    /// Discord user id.
    pub user_id: u64,
    /// Best (lowest) rank over the user's wallets.
    pub best_rank: Option<u32>,
    /// Greatest tier over the user's wallets.
    pub tier: Option<Tier>,
    /// Sum of the user's wallet balances in raw units (saturating).
    pub holdings: u128,
    /// The Naib seat (1–7) the user holds, if any.
    pub naib_seat: Option<u8>,
    /// The user once held a seat and does not hold one now.
    pub former_naib: bool,
    /// The user is registered on the waitlist and is not yet eligible
    /// (best rank in 70–100 or unranked).
    pub waitlisted: bool,
}

/// What the previous sync left behind; feed back the last [`Outcome`]
/// (see [`Outcome::to_previous`]) so seats and events stay stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviousState {
    /// Occupied seats as `(seat number 1..=7, user id)`.
    pub seats: Vec<(u8, u64)>,
    /// Users known to have lost a seat at some point.
    pub former_naib: HashSet<u64>,
    /// Last sync's member standings, by user id.
    pub members: HashMap<u64, MemberStanding>,
    /// Users registered on the waitlist.
    pub waitlist: HashSet<u64>,
}

/// A change worth announcing or acting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// The user's tier rose (`from` is `None` for a newcomer).
    Promoted {
        /// The user.
        user_id: u64,
        /// Previous tier.
        from: Option<Tier>,
        /// New tier.
        to: Tier,
    },
    /// The user's tier fell (`to` is `None` when no tier is left).
    Demoted {
        /// The user.
        user_id: u64,
        /// Previous tier.
        from: Tier,
        /// New tier.
        to: Option<Tier>,
    },
    /// The user took a Naib seat they did not hold before.
    NaibSeated {
        /// The user.
        user_id: u64,
        /// The seat taken.
        seat: u8,
    },
    /// The user lost their seat and is now a Former Naib.
    NaibBumped {
        /// The user.
        user_id: u64,
        /// The seat they held.
        seat: u8,
    },
    /// A waitlist registrant now ranks within the eligible ranks.
    WaitlistEligible {
        /// The user.
        user_id: u64,
        /// Their new best rank.
        rank: u32,
    },
    /// The user entered ranks 63–69 from a better rank or from outside.
    AtRisk {
        /// The user.
        user_id: u64,
        /// Their new best rank.
        rank: u32,
    },
}

/// The result of one members sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every known user's standing, sorted by user id.
    pub members: Vec<MemberStanding>,
    /// Occupied seats as `(seat, user id)`, sorted by seat.
    pub seats: Vec<(u8, u64)>,
    /// Events sorted by user id, then in [`MemberEvent`] declaration order.
    pub events: Vec<MemberEvent>,
}

impl Outcome {
    /// The state the next [`members`] call should receive: these seats and
    /// members, the users currently flagged Former Naib, and the caller's
    /// current `waitlist` registrations (which this module does not own).
    #[must_use]
    pub fn to_previous(&self, waitlist: HashSet<u64>) -> PreviousState {
        PreviousState {
            seats: self.seats.clone(),
            former_naib: self
                .members
                .iter()
                .filter(|member| member.former_naib)
                .map(|member| member.user_id)
                .collect(),
            members: self
                .members
                .iter()
                .map(|member| (member.user_id, member.clone()))
                .collect(),
            waitlist,
        }
    }
}

/// Aggregates standings per user, assigns Naib seats and derives events.
///
/// `wallets` lists verified `(address, user id)` pairs; repeated pairs count
/// once. Each user gets the minimum rank and maximum tier over their
/// wallets and the sum of their balances; wallets absent from `standings`
/// contribute nothing. Users are listed if they have a wallet or appear
/// anywhere in `previous` (members, seats, waitlist, Former Naib), so a user
/// who unlinked everything still gets demoted and has roles reconciled;
/// drop departed users from `previous` to forget them.
///
/// Seats: users with best rank ≤ 7 are Naib (if wallets are shared between
/// users and more than seven qualify, the seven best by rank then user id
/// are seated). A continuing holder keeps their seat number; newcomers take
/// the lowest free numbers in rank order. A previous holder without a seat
/// now gets `NaibBumped` with their old seat and becomes Former Naib, a flag
/// that persists (from `previous.former_naib` or the previous member flag)
/// but reads false while the user is seated. Malformed previous seats
/// (numbers outside 1–7, repeated seats or users) are ignored past the first.
///
/// Events compare against `previous.members` (absent means no tier and no
/// rank): `Promoted`/`Demoted` when the tier changed; `WaitlistEligible` for
/// a waitlist registrant whose best rank is now ≤ 69 but previously was not;
/// `AtRisk` when the best rank is now in 63–69 and previously was not.
#[must_use]
pub fn members(
    standings: &[Standing],
    wallets: &[(Address, u64)],
    previous: &PreviousState,
) -> Outcome {
    let aggregate = aggregate_users(standings, wallets, previous);
    let previous_seat_of = previous_seats(&previous.seats);
    let seat_of = assign_seats(&aggregate, &previous_seat_of);

    let mut outcome = Outcome {
        members: Vec::with_capacity(aggregate.len()),
        seats: seat_of
            .iter()
            .map(|(&user_id, &seat)| (seat, user_id))
            .collect(),
        events: Vec::new(),
    };
    outcome.seats.sort_unstable();

    for (&user_id, &(best_rank, tier, holdings)) in &aggregate {
        let before = previous.members.get(&user_id);
        let naib_seat = seat_of.get(&user_id).copied();
        let old_seat = previous_seat_of.get(&user_id).copied();
        let former_naib = naib_seat.is_none()
            && (old_seat.is_some()
                || previous.former_naib.contains(&user_id)
                || before.is_some_and(|member| member.former_naib));
        let waitlisted = previous.waitlist.contains(&user_id)
            && best_rank.is_none_or(|rank| WAITLIST.contains(&rank));
        let now = MemberStanding {
            user_id,
            best_rank,
            tier,
            holdings,
            naib_seat,
            former_naib,
            waitlisted,
        };
        push_events(&mut outcome.events, &now, before, old_seat, previous);
        outcome.members.push(now);
    }
    outcome
}

/// `(best_rank, tier, holdings)` per user, keyed in user order so the
/// output and events come out sorted without a separate pass.
type Aggregate = BTreeMap<u64, (Option<u32>, Option<Tier>, u128)>;

/// Folds wallet standings per user over every user this sync knows about.
fn aggregate_users(
    standings: &[Standing],
    wallets: &[(Address, u64)],
    previous: &PreviousState,
) -> Aggregate {
    let by_address: HashMap<Address, &Standing> = standings
        .iter()
        .map(|standing| (standing.address, standing))
        .collect();
    // A set per user so a wallet listed twice is not counted twice.
    let mut wallets_of: BTreeMap<u64, BTreeSet<Address>> = BTreeMap::new();
    for &(address, user_id) in wallets {
        wallets_of.entry(user_id).or_default().insert(address);
    }
    let mut users: BTreeSet<u64> = wallets_of.keys().copied().collect();
    users.extend(previous.members.keys().copied());
    users.extend(previous.seats.iter().map(|&(_, user_id)| user_id));
    users.extend(previous.waitlist.iter().copied());
    users.extend(previous.former_naib.iter().copied());

    let mut aggregate = Aggregate::new();
    for user_id in users {
        let mut best_rank: Option<u32> = None;
        let mut tier: Option<Tier> = None;
        let mut holdings: u128 = 0;
        for address in wallets_of.get(&user_id).into_iter().flatten() {
            if let Some(standing) = by_address.get(address) {
                // `Option::min` would treat `None` as best, so combine by hand.
                best_rank = match (best_rank, standing.rank) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                tier = tier.max(standing.tier);
                holdings = holdings.saturating_add(standing.balance);
            }
        }
        aggregate.insert(user_id, (best_rank, tier, holdings));
    }
    aggregate
}

/// Previous seat per user, keeping only the first valid claim on each seat
/// and each user so corrupt stored state cannot seat two people together.
fn previous_seats(seats: &[(u8, u64)]) -> HashMap<u64, u8> {
    let mut sorted = seats.to_vec();
    sorted.sort_unstable();
    let mut seat_of: HashMap<u64, u8> = HashMap::new();
    let mut seen: HashSet<u8> = HashSet::new();
    for (seat, user_id) in sorted {
        if (1..=NAIB_SEATS).contains(&seat) && !seat_of.contains_key(&user_id) && seen.insert(seat)
        {
            seat_of.insert(user_id, seat);
        }
    }
    seat_of
}

/// Seats for this sync: continuing Naibs keep their number so seat-based
/// announcements and channels stay stable; newcomers fill the lowest free
/// numbers in rank order.
fn assign_seats(aggregate: &Aggregate, previous_seat_of: &HashMap<u64, u8>) -> HashMap<u64, u8> {
    let mut naibs: Vec<(u32, u64)> = aggregate
        .iter()
        .filter_map(|(&user_id, &(best_rank, _, _))| {
            best_rank
                .filter(|&rank| rank <= u32::from(NAIB_SEATS))
                .map(|rank| (rank, user_id))
        })
        .collect();
    naibs.sort_unstable();
    naibs.truncate(usize::from(NAIB_SEATS));

    let mut seat_of: HashMap<u64, u8> = naibs
        .iter()
        .filter_map(|&(_, user_id)| previous_seat_of.get(&user_id).map(|&seat| (user_id, seat)))
        .collect();
    let taken: HashSet<u8> = seat_of.values().copied().collect();
    let mut free = (1..=NAIB_SEATS).filter(|seat| !taken.contains(seat));
    for &(_, user_id) in &naibs {
        if let Entry::Vacant(slot) = seat_of.entry(user_id) {
            // At most seven Naibs hold unique seats, so one is always free.
            if let Some(seat) = free.next() {
                slot.insert(seat);
            }
        }
    }
    seat_of
}

/// Appends `now`'s events in `MemberEvent` declaration order.
fn push_events(
    events: &mut Vec<MemberEvent>,
    now: &MemberStanding,
    before: Option<&MemberStanding>,
    old_seat: Option<u8>,
    previous: &PreviousState,
) {
    let user_id = now.user_id;
    let previous_tier = before.and_then(|member| member.tier);
    let previous_rank = before.and_then(|member| member.best_rank);
    match now.tier.cmp(&previous_tier) {
        Ordering::Greater => {
            if let Some(to) = now.tier {
                events.push(MemberEvent::Promoted {
                    user_id,
                    from: previous_tier,
                    to,
                });
            }
        }
        Ordering::Less => {
            if let Some(from) = previous_tier {
                events.push(MemberEvent::Demoted {
                    user_id,
                    from,
                    to: now.tier,
                });
            }
        }
        Ordering::Equal => {}
    }
    if let Some(seat) = now.naib_seat
        && old_seat.is_none()
    {
        events.push(MemberEvent::NaibSeated { user_id, seat });
    }
    if let Some(seat) = old_seat
        && now.naib_seat.is_none()
    {
        events.push(MemberEvent::NaibBumped { user_id, seat });
    }
    if let Some(rank) = now.best_rank
        && previous.waitlist.contains(&user_id)
        && rank <= ELIGIBLE_RANKS
        && previous_rank.is_none_or(|old| old > ELIGIBLE_RANKS)
    {
        events.push(MemberEvent::WaitlistEligible { user_id, rank });
    }
    if let Some(rank) = now.best_rank
        && AT_RISK.contains(&rank)
        && !previous_rank.is_some_and(|old| AT_RISK.contains(&old))
    {
        events.push(MemberEvent::AtRisk { user_id, rank });
    }
}

/// Discord role ids the bot manages, by purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMap {
    /// Role granted for each mapped tier.
    pub tiers: HashMap<Tier, u64>,
    /// Role for users who lost a Naib seat and do not hold one now.
    pub former_naib: Option<u64>,
    /// Role for waitlisted users (Taqwa).
    pub taqwa: Option<u64>,
}

impl RoleMap {
    /// Reads role ids from settings.
    ///
    /// `roles`, when present, must be a JSON object whose keys are tier
    /// names (`"naib"`, `"fedaykin"`, `"usul"` … `"hajra"`), `"former_naib"`
    /// or `"taqwa"`, and whose values are positive Discord role ids given as
    /// a decimal string (the usual form, since snowflakes exceed the exact
    /// range of JSON numbers in many clients) or an integer; `null` leaves a
    /// role unmapped. `None` or `null` yields an empty map.
    ///
    /// # Errors
    ///
    /// Returns a message naming the key when `roles` is not an object, a key
    /// is unknown, or a value is not a positive integer fitting `u64`.
    pub fn from_settings(roles: Option<&Value>) -> Result<RoleMap, String> {
        let mut map = RoleMap::default();
        let object = match roles {
            None | Some(Value::Null) => return Ok(map),
            Some(Value::Object(object)) => object,
            Some(other) => return Err(format!("roles: expected a JSON object, got {other}")),
        };
        for (key, value) in object {
            // Resolve the key first so an unknown key is reported as such
            // even when its value is also malformed.
            let slot = match key.as_str() {
                "former_naib" => &mut map.former_naib,
                "taqwa" => &mut map.taqwa,
                name => {
                    let tier = Tier::from_name(name).ok_or_else(|| {
                        format!(
                            "role {key:?}: unknown role key (expected a tier name, \
                             \"former_naib\" or \"taqwa\")"
                        )
                    })?;
                    if value.is_null() {
                        continue;
                    }
                    map.tiers.insert(tier, role_id(key, value)?);
                    continue;
                }
            };
            if !value.is_null() {
                *slot = Some(role_id(key, value)?);
            }
        }
        Ok(map)
    }

    /// Every role id the bot manages: the tier roles, Former Naib and Taqwa.
    /// Roles outside this set belong to someone else and are never removed.
    #[must_use]
    pub fn managed(&self) -> BTreeSet<u64> {
        self.tiers
            .values()
            .copied()
            .chain(self.former_naib)
            .chain(self.taqwa)
            .collect()
    }
}

/// Parses one role id, rejecting 0 because Discord never issues it and a
/// zero usually means a placeholder was left in the settings.
fn role_id(key: &str, value: &Value) -> Result<u64, String> {
    let id = match value {
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().ok()
        }
        Value::Number(number) => number.as_u64(),
        _ => None,
    };
    id.filter(|&id| id != 0)
        .ok_or_else(|| format!("role {key:?}: not a positive 64-bit role id: {value}"))
}

/// The managed roles `member` should hold: their tier's role (if mapped),
/// Former Naib if flagged and not seated, and Taqwa if waitlisted.
#[must_use]
pub fn desired_roles(member: &MemberStanding, roles: &RoleMap) -> BTreeSet<u64> {
    let mut desired = BTreeSet::new();
    if let Some(role) = member.tier.and_then(|tier| roles.tiers.get(&tier)) {
        desired.insert(*role);
    }
    if member.former_naib
        && member.naib_seat.is_none()
        && let Some(role) = roles.former_naib
    {
        desired.insert(role);
    }
    if member.waitlisted
        && let Some(role) = roles.taqwa
    {
        desired.insert(role);
    }
    desired
}

/// Role changes to apply to one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleDiff {
    /// Roles to grant, ascending.
    pub add: Vec<u64>,
    /// Managed roles to revoke, ascending.
    pub remove: Vec<u64>,
}

impl RoleDiff {
    /// True when nothing needs to change, so the caller can skip the API call.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Computes `add = desired − applied` and
/// `remove = (applied − desired) ∩ managed`, both ascending; roles the bot
/// does not manage are never removed, whoever granted them.
#[must_use]
pub fn role_diff(
    applied: &BTreeSet<u64>,
    desired: &BTreeSet<u64>,
    managed: &BTreeSet<u64>,
) -> RoleDiff {
    RoleDiff {
        add: desired.difference(applied).copied().collect(),
        remove: applied
            .difference(desired)
            .filter(|role| managed.contains(role))
            .copied()
            .collect(),
    }
}

#[cfg(test)]
#[path = "ranking_tests.rs"]
mod tests;
