//! Configuration shared by the roles: secrets, shard ranges, event lists.
//!
//! Every option is a command-line flag with an environment variable behind
//! it (ARCHITECTURE.md §3.1); clap reads both. Values are validated here,
//! before anything connects, and a bad value is reported with the name of
//! the variable that holds it.

use std::fmt;
use std::str::FromStr;

/// A secret (bot token, proxy secret) that never prints.
///
/// `Debug` and `Display` show `[redacted]`; the value is reachable only
/// through [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Self(s.strip_prefix("Bot ").unwrap_or(s).to_owned()))
    }
}

/// Which shards this process runs (`ARRAKIS_SHARDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    /// All shards, with the count Discord recommends in `/gateway/bot`.
    Auto,
    /// Shards `first..=last` of `total`.
    Range {
        /// First shard id run here.
        first: u32,
        /// Last shard id run here (inclusive).
        last: u32,
        /// Total shard count of the bot.
        total: u32,
    },
}

impl ShardSpec {
    /// The shard ids and total, given Discord's recommended count.
    #[must_use]
    pub fn resolve(self, recommended: u32) -> (std::ops::RangeInclusive<u32>, u32) {
        match self {
            ShardSpec::Auto => {
                let total = recommended.max(1);
                (0..=total - 1, total)
            }
            ShardSpec::Range { first, last, total } => (first..=last, total),
        }
    }
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ShardSpec::Auto);
        }
        let bad = || format!("`{s}` is neither `auto` nor FIRST-LAST/TOTAL (e.g. 0-15/64)");
        let (range, total) = s.split_once('/').ok_or_else(bad)?;
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
        let (first, last, total) = (parse(first)?, parse(last)?, parse(total)?);
        if total == 0 {
            return Err(format!("`{s}`: the total shard count must be at least 1"));
        }
        if first > last || last >= total {
            return Err(format!(
                "`{s}`: need FIRST <= LAST < TOTAL (shard ids run from 0 to TOTAL-1)"
            ));
        }
        Ok(ShardSpec::Range { first, last, total })
    }
}

/// A comma-separated list of gateway event names (`ARRAKIS_BULK_EVENTS`,
/// `ARRAKIS_DROP_EVENTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventList(pub Vec<String>);

impl EventList {
    /// Whether `name` is in the list.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

impl FromStr for EventList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut names = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_event_name(name) {
                return Err(format!(
                    "`{name}` is not a gateway event name (upper case, digits and `_`, like GUILD_MEMBER_ADD)"
                ));
            }
            names.push(name.to_owned());
        }
        Ok(Self(names))
    }
}

/// Whether `name` looks like a Discord dispatch name. Names go into AMQP
/// routing keys and metric labels, so anything else is refused.
#[must_use]
pub fn is_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A URL with any `user:password@` removed, for logs and errors.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Parses a byte size with an optional `KiB`/`MiB`/`GiB` suffix.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}`: use B, KiB, MiB or GiB")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 65536, 64KiB or 32MiB"))?;
    n.checked_mul(multiplier)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("`{s}` must be between 1 byte and usize::MAX"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s: Secret = "Bot abc.def.ghi".parse().unwrap();
        assert_eq!(s.expose(), "abc.def.ghi");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert!("  ".parse::<Secret>().is_err());
    }

    #[test]
    fn shard_specs() {
        assert_eq!("auto".parse(), Ok(ShardSpec::Auto));
        assert_eq!(
            "0-15/64".parse(),
            Ok(ShardSpec::Range {
                first: 0,
                last: 15,
                total: 64
            })
        );
        assert_eq!(
            "3/4".parse(),
            Ok(ShardSpec::Range {
                first: 3,
                last: 3,
                total: 4
            })
        );
        for bad in ["", "0-4", "4-2/8", "0-8/8", "0-1/0", "a-b/c", "-1-2/4"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        assert_eq!(ShardSpec::Auto.resolve(3), (0..=2, 3));
        assert_eq!(ShardSpec::Auto.resolve(0), (0..=0, 1));
    }

    #[test]
    fn event_lists() {
        let list: EventList = " GUILD_MEMBER_UPDATE, ,MESSAGE_REACTION_ADD"
            .parse()
            .unwrap();
        assert!(list.contains("MESSAGE_REACTION_ADD"));
        assert!(!list.contains("READY"));
        assert!("message_create".parse::<EventList>().is_err());
        assert!("A.B".parse::<EventList>().is_err());
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("32MiB"), Ok(32 << 20));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
    }
}
