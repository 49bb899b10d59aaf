//! Telling a real guild join from the GUILD_CREATE burst after READY.
//!
//! Discord sends GUILD_CREATE for three reasons: lazy loading after READY
//! (every guild READY listed as unavailable), a guild coming back after an
//! outage, and the bot joining a guild. Only the last is a "join" a worker
//! should greet; the message header `guild_create` says which
//! (`startup` for the first two, `join` for the last).
//!
//! Two signals, the exact one first:
//! - the guild ids READY listed, held only until their GUILD_CREATE
//!   arrives (empty once the startup burst is over, so a shard's memory
//!   does not grow with its guild count at rest);
//! - `d.joined_at` against the session's start, for what READY's list
//!   cannot cover: a restarted ingestor that resumed a session, whose
//!   replayed startup GUILD_CREATEs joined before the session began.

use std::collections::HashSet;

use serde::Deserialize;

/// Most READY guild ids held; READY lists at most 2,500 (the per-shard
/// guild limit) in practice.
const MAX_EXPECTED: usize = 10_000;

/// What a GUILD_CREATE means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuildCreateKind {
    /// READY's lazy loading, a guild back from an outage, or a replay of those.
    Startup,
    /// The bot joined this guild during the session.
    Join,
}

impl GuildCreateKind {
    /// The header value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            GuildCreateKind::Startup => "startup",
            GuildCreateKind::Join => "join",
        }
    }
}

/// Per-shard classifier.
#[derive(Debug, Default)]
pub struct GuildCreates {
    expected: HashSet<u64>,
    session_started_ms: u64,
}

impl GuildCreates {
    /// READY arrived at `started_ms`; `ready_data` is its `d`.
    pub fn on_ready(&mut self, ready_data: &[u8], started_ms: u64) {
        #[derive(Deserialize)]
        struct Ready {
            #[serde(default)]
            guilds: Vec<Guild>,
        }
        #[derive(Deserialize)]
        struct Guild {
            id: serde_json::Value,
        }
        self.session_started_ms = started_ms;
        self.expected.clear();
        if let Ok(ready) = serde_json::from_slice::<Ready>(ready_data) {
            self.expected.extend(
                ready
                    .guilds
                    .iter()
                    .take(MAX_EXPECTED)
                    .filter_map(|g| snowflake(&g.id)),
            );
        }
        self.expected.shrink_to_fit();
    }

    /// The session was restored from a checkpoint that started at `started_ms`.
    pub fn on_restored(&mut self, started_ms: u64) {
        self.session_started_ms = started_ms;
        self.expected = HashSet::new();
    }

    /// Classifies a GUILD_CREATE by its `d.id` and `d.joined_at`.
    pub fn classify(&mut self, guild_id: Option<&str>, joined_at: Option<&str>) -> GuildCreateKind {
        if let Some(id) = guild_id.and_then(|g| g.parse::<u64>().ok())
            && self.expected.remove(&id)
        {
            if self.expected.is_empty() {
                self.expected = HashSet::new();
            }
            return GuildCreateKind::Startup;
        }
        match joined_at.and_then(parse_rfc3339_ms) {
            Some(joined) if joined < self.session_started_ms => GuildCreateKind::Startup,
            _ => GuildCreateKind::Join,
        }
    }

    /// READY guild ids whose GUILD_CREATE has not arrived yet.
    #[must_use]
    pub fn expected(&self) -> usize {
        self.expected.len()
    }
}

fn snowflake(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Parses Discord's ISO 8601 timestamps (`2024-03-01T12:34:56.789000+00:00`
/// or `…Z`) to ms since the Unix epoch.
#[must_use]
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let ms_digits = &frac[..digits.min(3)];
        millis =
            ms_digits.parse::<i64>().ok()? * 10i64.pow(3 - u32::try_from(ms_digits.len()).ok()?);
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 60 + om)
        }
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-03-01T12:34:56.789000+00:00"),
            Some(1_709_296_496_789)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-03-01T12:34:56Z"),
            Some(1_709_296_496_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-03-01T14:34:56.5+02:00"),
            Some(1_709_296_496_500)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn ready_guilds_are_startup_then_the_rest_are_joins() {
        let mut g = GuildCreates::default();
        let now = 1_709_296_496_789;
        g.on_ready(
            br#"{"v":10,"guilds":[{"id":"11","unavailable":true},{"id":"22","unavailable":true}]}"#,
            now,
        );
        assert_eq!(g.expected(), 2);
        assert_eq!(
            g.classify(Some("22"), Some("2020-01-01T00:00:00+00:00")),
            GuildCreateKind::Startup
        );
        assert_eq!(g.classify(Some("11"), None), GuildCreateKind::Startup);
        assert_eq!(g.expected(), 0);
        assert_eq!(
            g.classify(Some("33"), Some("2024-03-01T12:40:00.000000+00:00")),
            GuildCreateKind::Join
        );
        // Back from an outage: joined long before this session.
        assert_eq!(
            g.classify(Some("11"), Some("2020-01-01T00:00:00+00:00")),
            GuildCreateKind::Startup
        );
    }

    #[test]
    fn restored_session_uses_joined_at() {
        let mut g = GuildCreates::default();
        g.on_restored(1_709_296_496_789);
        assert_eq!(
            g.classify(Some("5"), Some("2023-01-01T00:00:00Z")),
            GuildCreateKind::Startup
        );
        assert_eq!(
            g.classify(Some("6"), Some("2024-03-02T00:00:00Z")),
            GuildCreateKind::Join
        );
        assert_eq!(g.classify(Some("7"), None), GuildCreateKind::Join);
    }
}
