//! Log output of every role: one JSON object per line in production,
//! readable lines otherwise (`ARRAKIS_LOG_FORMAT`), filtered by
//! `RUST_LOG` (default `info,lapin=warn`).
//!
//! JSON lines carry the fields of the span they were written in, so every
//! line a worker writes while handling a message has that message's
//! `message_id` (see [`crate::correlation`]). Effects are logged under the
//! target `arrakis::audit`: `RUST_LOG=arrakis::audit=info` shows them
//! alone, and a log pipeline can route that target to an audit store.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,lapin=warn";

/// How log lines are written (`ARRAKIS_LOG_FORMAT`). The command line's
/// default is `Pretty`, the format scripts and tests that read a role's
/// stderr have always seen; deployments set `json` (deploy/ecs does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    Auto,
    /// One JSON object per line: timestamp, level, target, fields, span.
    Json,
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("`{other}` is not `json`, `pretty` or `auto`")),
        }
    }
}

impl LogFormat {
    /// `Json` or `Pretty`: `Auto` resolved against stderr.
    #[must_use]
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if std::io::stderr().is_terminal() => Self::Pretty,
            Self::Auto => Self::Json,
            chosen => chosen,
        }
    }
}

/// A subscriber writing `format` lines that pass `filter` to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format.resolve() {
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        _ => Box::new(builder.with_ansi(std::io::stderr().is_terminal()).finish()),
    }
}

/// Installs the process's subscriber: `format` to stderr, filtered by
/// `RUST_LOG` or [`DEFAULT_FILTER`].
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Self;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_the_message_span_and_audit_target() {
        let captured = Captured::default();
        let subscriber = subscriber(LogFormat::Json, EnvFilter::new("info"), captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("message", message_id = "sess:7", queue = "arrakis.events");
            let _entered = span.enter();
            tracing::info!(target: "arrakis::audit", effect = "role_add", "REST effect");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(line["target"], "arrakis::audit");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["effect"], "role_add");
        assert_eq!(line["span"]["message_id"], "sess:7");
        assert_eq!(line["span"]["name"], "message");
    }

    #[test]
    fn formats_are_named_and_others_refused() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("pretty".parse(), Ok(LogFormat::Pretty));
        assert_eq!("auto".parse(), Ok(LogFormat::Auto));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_ne!(LogFormat::Auto.resolve(), LogFormat::Auto);
    }
}
