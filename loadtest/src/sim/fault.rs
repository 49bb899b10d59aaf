//! Faults a test can inject into a shard's gateway connection.
//!
//! Each fault reproduces something Discord (or the network) really does to
//! clients; PROTOCOL.md Part 0 lists the client bugs each one shakes out
//! (zombies, resume loops, compression buffer bugs, ...). The names used by
//! the standalone control endpoint (`POST /_sim/inject?fault=...`) are parsed
//! by [`Fault`]'s `FromStr`.

use std::fmt;
use std::str::FromStr;

/// A fault to inject with `Simulator::inject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Drop the TCP connection without a close frame. The session stays
    /// resumable.
    DropSocket,
    /// Stop answering heartbeats with op 11 on this connection (the client
    /// should see a zombie connection and resume).
    StopAcking,
    /// Send op 1; the client must heartbeat at once.
    RequestHeartbeat,
    /// Send op 7, then drop the socket about 1 s later if the client has not
    /// closed it. The session stays resumable.
    Reconnect,
    /// Send op 9 with `d` = `resumable`. `false` invalidates the session. The
    /// connection stays open: the client may identify or resume on it, or
    /// reconnect.
    InvalidSession {
        /// The op 9 `d`.
        resumable: bool,
    },
    /// Close with this code. 4003, 4005, 4007, 4009 and the fatal codes
    /// (4004, 4010-4014) invalidate the session; others leave it resumable.
    Close(u16),
    /// One binary message of garbage ending in `00 00 FF FF`, not part of the
    /// sequence.
    CorruptZlib,
    /// The next dispatch's compressed bytes go out as `parts` WebSocket
    /// messages; only the last ends with `00 00 FF FF`. No effect without
    /// `compress=zlib-stream`.
    SplitNext {
        /// Number of messages (at least 1; fewer when the data is shorter).
        parts: usize,
    },
    /// The next dispatch is assigned a seq and recorded, but only the first
    /// half of its bytes is sent, then the socket is dropped.
    Truncated,
    /// One correctly compressed message that inflates to invalid JSON, not
    /// part of the sequence.
    InvalidJson,
    /// One correctly compressed message inflating to `bytes` bytes of valid
    /// JSON (`{"op":0,"t":"SIM_OVERSIZED","s":null,"d":{"pad":"..."}}`), not
    /// part of the sequence.
    Oversized {
        /// Uncompressed size.
        bytes: usize,
    },
}

impl Fault {
    /// Whether closing with `code` ends the session (a new identify is
    /// needed) rather than leaving it resumable.
    pub(crate) fn close_invalidates(code: u16) -> bool {
        matches!(code, 4003 | 4004 | 4005 | 4007 | 4009 | 4010..=4014)
    }
}

/// A fault name the control endpoint does not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown fault {0:?}; expected drop, stop-acking, request-heartbeat, reconnect, \
     invalid-session-resumable, invalid-session, close-<code>, corrupt-zlib, split-<parts>, \
     truncated, invalid-json or oversized-<bytes>"
)]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnknownFault(s.to_owned());
        let number = |rest: &str| rest.parse::<usize>().map_err(|_| err());
        Ok(match s {
            "drop" => Self::DropSocket,
            "stop-acking" => Self::StopAcking,
            "request-heartbeat" => Self::RequestHeartbeat,
            "reconnect" => Self::Reconnect,
            "invalid-session-resumable" => Self::InvalidSession { resumable: true },
            "invalid-session" => Self::InvalidSession { resumable: false },
            "corrupt-zlib" => Self::CorruptZlib,
            "truncated" => Self::Truncated,
            "invalid-json" => Self::InvalidJson,
            _ => {
                if let Some(rest) = s.strip_prefix("close-") {
                    Self::Close(rest.parse().map_err(|_| err())?)
                } else if let Some(rest) = s.strip_prefix("split-") {
                    Self::SplitNext {
                        parts: number(rest)?,
                    }
                } else if let Some(rest) = s.strip_prefix("oversized-") {
                    Self::Oversized {
                        bytes: number(rest)?,
                    }
                } else {
                    return Err(err());
                }
            }
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DropSocket => f.write_str("drop"),
            Self::StopAcking => f.write_str("stop-acking"),
            Self::RequestHeartbeat => f.write_str("request-heartbeat"),
            Self::Reconnect => f.write_str("reconnect"),
            Self::InvalidSession { resumable: true } => f.write_str("invalid-session-resumable"),
            Self::InvalidSession { resumable: false } => f.write_str("invalid-session"),
            Self::Close(code) => write!(f, "close-{code}"),
            Self::CorruptZlib => f.write_str("corrupt-zlib"),
            Self::SplitNext { parts } => write!(f, "split-{parts}"),
            Self::Truncated => f.write_str("truncated"),
            Self::InvalidJson => f.write_str("invalid-json"),
            Self::Oversized { bytes } => write!(f, "oversized-{bytes}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_names_round_trip() {
        for name in [
            "drop",
            "stop-acking",
            "request-heartbeat",
            "reconnect",
            "invalid-session-resumable",
            "invalid-session",
            "close-4000",
            "corrupt-zlib",
            "split-3",
            "truncated",
            "invalid-json",
            "oversized-2000000",
        ] {
            let fault: Fault = name.parse().unwrap();
            assert_eq!(fault.to_string(), name);
        }
        assert!("close-x".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
    }

    #[test]
    fn which_closes_end_the_session() {
        for code in [4003, 4004, 4005, 4007, 4009, 4010, 4014] {
            assert!(Fault::close_invalidates(code), "{code}");
        }
        for code in [1000, 4000, 4001, 4002, 4008, 4015] {
            assert!(!Fault::close_invalidates(code), "{code}");
        }
    }
}
