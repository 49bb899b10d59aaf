//! What each way a connection can end means for the session.
//!
//! Source: Discord docs, "Opcodes and Status Codes" → Gateway Close Event
//! Codes, and "Gateway" → Resuming. Codes Discord documents as not
//! reconnectable are fatal for the shard: reconnecting would only repeat the
//! failure (and for 4004 burn identifies with a bad token), so the shard
//! stops with a log line saying what the operator must fix.

/// How a connection's end affects what the shard does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect to the resume URL and resume the session.
    Resume,
    /// The session is gone: reconnect to the gateway URL and identify.
    NewSession,
    /// Stop this shard for good.
    Fatal(Fatal),
}

/// A close code after which reconnecting cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// 4004.
    #[error(
        "4004 authentication failed: DISCORD_TOKEN is wrong or was reset; set a valid bot token"
    )]
    AuthenticationFailed,
    /// 4010.
    #[error(
        "4010 invalid shard: ARRAKIS_SHARDS names a shard id not below the total; fix the range"
    )]
    InvalidShard,
    /// 4011.
    #[error(
        "4011 sharding required: the bot has too many guilds for this shard count; use ARRAKIS_SHARDS=auto or a larger total"
    )]
    ShardingRequired,
    /// 4012.
    #[error("4012 invalid API version: the gateway refused v=10")]
    InvalidApiVersion,
    /// 4013.
    #[error("4013 invalid intents: ARRAKIS_INTENTS has bits Discord does not know")]
    InvalidIntents,
    /// 4014.
    #[error(
        "4014 disallowed intents: enable the privileged intents in ARRAKIS_INTENTS in the developer portal, or remove them"
    )]
    DisallowedIntents,
}

impl Fatal {
    /// The close code.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Fatal::AuthenticationFailed => 4004,
            Fatal::InvalidShard => 4010,
            Fatal::ShardingRequired => 4011,
            Fatal::InvalidApiVersion => 4012,
            Fatal::InvalidIntents => 4013,
            Fatal::DisallowedIntents => 4014,
        }
    }
}

/// Classifies a close sent by Discord; `None` is a drop without a close frame.
#[must_use]
pub fn classify(code: Option<u16>) -> CloseAction {
    match code {
        Some(4004) => CloseAction::Fatal(Fatal::AuthenticationFailed),
        Some(4010) => CloseAction::Fatal(Fatal::InvalidShard),
        Some(4011) => CloseAction::Fatal(Fatal::ShardingRequired),
        Some(4012) => CloseAction::Fatal(Fatal::InvalidApiVersion),
        Some(4013) => CloseAction::Fatal(Fatal::InvalidIntents),
        Some(4014) => CloseAction::Fatal(Fatal::DisallowedIntents),
        // Not authenticated, already authenticated, invalid seq, session
        // timed out: the session cannot be resumed (4009 included, where
        // discord.js resumes and gets 4007 or op 9 for its trouble).
        Some(4003 | 4005 | 4007 | 4009) => CloseAction::NewSession,
        // 4000-4002, 4008, 1000/1001 from the server, unknown codes and
        // plain drops: the session may well be alive. A failed resume is
        // answered with op 9, after which the shard identifies.
        _ => CloseAction::Resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code() {
        for code in [4000, 4001, 4002, 4008] {
            assert_eq!(classify(Some(code)), CloseAction::Resume, "{code}");
        }
        for code in [4003, 4005, 4007, 4009] {
            assert_eq!(classify(Some(code)), CloseAction::NewSession, "{code}");
        }
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            match classify(Some(code)) {
                CloseAction::Fatal(fatal) => assert_eq!(fatal.code(), code),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn drops_and_unknown_codes_resume() {
        assert_eq!(classify(None), CloseAction::Resume);
        assert_eq!(classify(Some(1006)), CloseAction::Resume);
        assert_eq!(classify(Some(4999)), CloseAction::Resume);
        assert_eq!(classify(Some(1000)), CloseAction::Resume);
    }

    #[test]
    fn fatal_reasons_tell_the_operator_what_to_do() {
        assert!(
            Fatal::DisallowedIntents
                .to_string()
                .contains("developer portal")
        );
        assert!(
            Fatal::AuthenticationFailed
                .to_string()
                .contains("DISCORD_TOKEN")
        );
    }
}
