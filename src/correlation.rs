//! The correlation id that follows one gateway event through every role.
//!
//! The id is the message's `message_id` (`<session_id>:<seq>`, ARCHITECTURE
//! §3.3): the ingestor sets it, the worker's consumer runs each delivery
//! inside a [`scope`] carrying it (and in a `message` span, so every log
//! line of the handling shows it), the worker's REST client sends it to the
//! proxy as [`HEADER`], and the proxy logs it with the call it made. One
//! grep for the id follows the event end to end.
//!
//! A task-local rather than a parameter threaded through every handler:
//! the id is context for logs and audit lines, never an input to a
//! decision, and it must reach the REST client from any depth.

use std::future::Future;
use std::sync::Arc;

/// Header carrying the correlation id from a worker to the proxy; the
/// proxy drops every `x-arrakis-` header before forwarding to Discord.
pub const HEADER: &str = "x-arrakis-message-id";

/// Longest id accepted from a header.
const MAX_LEN: usize = 128;

/// What is known about the message being handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The message's `message_id`.
    pub message_id: Option<Arc<str>>,
    /// The guild the event belongs to (the `guild_id` header).
    pub guild_id: Option<Arc<str>>,
}

tokio::task_local! {
    static CURRENT: Context;
}

/// Runs `future` with `context` as the current correlation context.
pub async fn scope<F: Future>(context: Context, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The current context; empty outside a [`scope`].
#[must_use]
pub fn current() -> Context {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// `value` if it is usable as a correlation id in a log line: 1 to 128
/// visible ASCII characters, no quotes or backslashes. Anything else is
/// ignored, never logged, since a header is caller input.
#[must_use]
pub fn sanitize(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_is_seen_inside_its_scope_only() {
        assert_eq!(current(), Context::default());
        let context = Context {
            message_id: Some("abc:42".into()),
            guild_id: Some("81384788765712384".into()),
        };
        let seen = scope(context.clone(), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(seen, context);
        assert_eq!(current(), Context::default());
    }

    #[test]
    fn only_plain_ids_are_accepted_from_a_header() {
        assert_eq!(sanitize(b"f3c9a1:1024"), Some("f3c9a1:1024"));
        assert_eq!(sanitize(b""), None);
        assert_eq!(sanitize(b"a b"), None);
        assert_eq!(sanitize(b"a\"b"), None);
        assert_eq!(sanitize(b"line\nbreak"), None);
        assert_eq!(sanitize(&[b'x'; 129]), None);
        assert_eq!(sanitize("é".as_bytes()), None);
    }
}
