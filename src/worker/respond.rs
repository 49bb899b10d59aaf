//! Answering an interaction within Discord's 3-second window, whatever the
//! handler does.
//!
//! The clock starts at `received_at_us`, when the ingestor read the frame,
//! which is within a few milliseconds of Discord creating the interaction.
//! [`Responder::respond`] runs the handler beside a timer:
//!
//! - a handler known to be slow (a chain read) defers at once: callback 5
//!   with the ephemeral flag its answer will need (6 for a component), then
//!   its result goes to `PATCH @original`;
//! - any other handler that has not finished after `defer_after` (or when
//!   the window is about to close) is deferred the same way, so a slow
//!   Postgres never makes Discord show "This interaction failed";
//! - autocomplete cannot be deferred: it gets what the handler found within
//!   the window, or no choices;
//! - an interaction whose window has already closed when it is consumed
//!   (a backlog after an outage) is not answered at all — Discord would
//!   refuse the callback — and is counted as expired;
//! - an error reaches the user as a short ephemeral message, never as
//!   silence.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::time::Instant;

use super::interaction::{EPHEMERAL, Interaction, InteractionKind, Reply, defer_body};
use super::rest::{Priority, ProxyClient, RestError, RestResponse};

/// How long Discord accepts an interaction's first response.
pub const INTERACTION_WINDOW: Duration = Duration::from_secs(3);
/// How long edits and followups may take (the token lives 15 minutes).
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(10);

/// When to defer.
#[derive(Debug, Clone, Copy)]
pub struct RespondConfig {
    /// A handler still running after this long is deferred.
    pub defer_after: Duration,
    /// Time a callback needs to reach Discord: with less left in the
    /// window, the interaction is treated as expired, and a running handler
    /// is deferred this long before the window closes.
    pub callback_margin: Duration,
}

impl Default for RespondConfig {
    fn default() -> Self {
        Self {
            defer_after: Duration::from_secs(1),
            callback_margin: Duration::from_millis(300),
        }
    }
}

/// Why a handler could not produce its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Shown to the user as is (not verified, on cooldown, chain away…).
    #[error("{0}")]
    User(String),
    /// Logged with the interaction's message id; the user sees a generic
    /// apology.
    #[error("internal: {0}")]
    Internal(String),
}

impl HandlerError {
    /// What the user reads.
    #[must_use]
    pub fn user_message(&self) -> &str {
        match self {
            Self::User(m) => m,
            Self::Internal(_) => "Something went wrong on our side. Please try again in a moment.",
        }
    }
}

/// How a handler wants to be answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan {
    /// Defer before running the handler (it is known to be slow).
    pub defer_now: bool,
    /// The reply is ephemeral (the deferral must say so).
    pub ephemeral: bool,
}

/// What happened to an interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Answered by the callback.
    Direct,
    /// Deferred, then completed through the webhook routes.
    Deferred,
    /// The window had closed before the callback: not answered.
    Expired,
    /// Another worker answered it first (Discord said 40060).
    AlreadyAnswered,
    /// The callback or the follow-up failed.
    Failed(String),
}

impl Answered {
    fn label(&self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Deferred => "deferred",
            Self::Expired => "expired",
            Self::AlreadyAnswered => "already_answered",
            Self::Failed(_) => "failed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabel {
    kind: &'static str,
    outcome: &'static str,
}

/// Interaction metrics.
#[derive(Debug)]
pub struct InteractionMetrics {
    answers: Family<AnswerLabel, Counter>,
    /// From `received_at_us` to the callback's response, seconds.
    pub callback_latency: Histogram,
    /// Handlers that failed (the user got an apology).
    pub handler_errors: Counter,
}

impl InteractionMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            answers: Family::default(),
            callback_latency: Histogram::new(exponential_buckets(0.001, 1.5, 22)),
            handler_errors: Counter::default(),
        };
        registry.register(
            "interactions",
            "Interactions by kind and outcome (direct, deferred, expired, already_answered, failed)",
            m.answers.clone(),
        );
        registry.register(
            "interaction_callback_seconds",
            "From the gateway frame to Discord accepting the first response",
            m.callback_latency.clone(),
        );
        registry.register(
            "interaction_handler_errors",
            "Interaction handlers that failed; the user got a short ephemeral apology",
            m.handler_errors.clone(),
        );
        Arc::new(m)
    }

    /// Interactions of `kind` (label) answered with `outcome` so far.
    #[must_use]
    pub fn count(&self, kind: &'static str, outcome: &'static str) -> u64 {
        self.answers
            .get_or_create(&AnswerLabel { kind, outcome })
            .get()
    }
}

/// Sends interaction responses through the REST proxy.
#[derive(Debug, Clone)]
pub struct Responder {
    rest: ProxyClient,
    config: RespondConfig,
    metrics: Arc<InteractionMetrics>,
}

/// Time left in the window of an interaction received at `received_at_us`
/// (`None`: no timestamp, assume the whole window), or `None`
/// if it has closed.
#[must_use]
pub fn time_left(received_at_us: Option<u64>, now: SystemTime) -> Option<Duration> {
    let Some(received) = received_at_us else {
        return Some(INTERACTION_WINDOW);
    };
    let received = UNIX_EPOCH + Duration::from_micros(received);
    let age = now.duration_since(received).unwrap_or(Duration::ZERO);
    INTERACTION_WINDOW
        .checked_sub(age)
        .filter(|left| !left.is_zero())
}

impl Responder {
    /// A responder sending through `rest`.
    #[must_use]
    pub fn new(rest: ProxyClient, config: RespondConfig, metrics: Arc<InteractionMetrics>) -> Self {
        Self {
            rest,
            config,
            metrics,
        }
    }

    /// The REST client (for handlers' own calls).
    #[must_use]
    pub fn rest(&self) -> &ProxyClient {
        &self.rest
    }

    /// Answers `interaction` with what `work` produces, deferring as
    /// needed to stay within the window that began at `received_at_us`.
    pub async fn respond<F>(
        &self,
        interaction: &Interaction,
        received_at_us: Option<u64>,
        plan: Plan,
        work: F,
    ) -> Answered
    where
        F: Future<Output = Result<Reply, HandlerError>>,
    {
        let answered = self.run(interaction, received_at_us, plan, work).await;
        if let Answered::Failed(why) = &answered {
            tracing::warn!(
                interaction = interaction.id,
                kind = interaction.kind.label(),
                "interaction response failed: {why}"
            );
        }
        self.metrics
            .answers
            .get_or_create(&AnswerLabel {
                kind: interaction.kind.label(),
                outcome: answered.label(),
            })
            .inc();
        answered
    }

    async fn run<F>(
        &self,
        interaction: &Interaction,
        received_at_us: Option<u64>,
        plan: Plan,
        work: F,
    ) -> Answered
    where
        F: Future<Output = Result<Reply, HandlerError>>,
    {
        let margin = self.config.callback_margin;
        let Some(left) = time_left(received_at_us, SystemTime::now()).filter(|l| *l > margin)
        else {
            return Answered::Expired;
        };
        let window_end = Instant::now() + left;
        let mut work = std::pin::pin!(work);

        if interaction.kind == InteractionKind::Autocomplete {
            let reply = match tokio::time::timeout(left - margin, &mut work).await {
                Ok(Ok(reply @ Reply::Choices(_))) => reply,
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => Reply::Choices(Vec::new()),
            };
            return self
                .callback(
                    interaction,
                    received_at_us,
                    &reply.callback_body(),
                    window_end,
                )
                .await;
        }

        if !plan.defer_now {
            let defer_at = (Instant::now() + self.config.defer_after).min(window_end - margin);
            tokio::select! {
                result = &mut work => {
                    let reply = result.unwrap_or_else(|err| self.apology(interaction, &err));
                    return self.callback(interaction, received_at_us, &reply.callback_body(), window_end).await;
                }
                () = tokio::time::sleep_until(defer_at) => {}
            }
        }
        let ephemeral = plan.ephemeral;
        match self
            .callback(
                interaction,
                received_at_us,
                &defer_body(interaction.kind, ephemeral),
                window_end,
            )
            .await
        {
            Answered::Direct => {}
            other => return other,
        }
        let result = work.await;
        match self.finish(interaction, ephemeral, result).await {
            Ok(()) => Answered::Deferred,
            Err(why) => Answered::Failed(why),
        }
    }

    fn apology(&self, interaction: &Interaction, err: &HandlerError) -> Reply {
        self.metrics.handler_errors.inc();
        if let HandlerError::Internal(detail) = err {
            tracing::error!(
                interaction = interaction.id,
                "interaction handler failed: {detail}"
            );
        }
        Reply::Message(super::interaction::Message::ephemeral(err.user_message()))
    }

    async fn callback(
        &self,
        interaction: &Interaction,
        received_at_us: Option<u64>,
        body: &serde_json::Value,
        window_end: Instant,
    ) -> Answered {
        let left = window_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Answered::Expired;
        }
        let sent = self
            .rest
            .send(
                Method::POST,
                &interaction.callback_path(),
                Some(body),
                left,
                Priority::Interactive,
                None,
            )
            .await;
        match sent {
            Ok(resp) if resp.status.is_success() => {
                if let Some(left) = time_left(received_at_us, SystemTime::now()) {
                    self.metrics
                        .callback_latency
                        .observe((INTERACTION_WINDOW - left).as_secs_f64());
                }
                Answered::Direct
            }
            Ok(resp) => classify_refusal(&resp),
            Err(RestError::Timeout(_)) => Answered::Expired,
            Err(err) => Answered::Failed(err.to_string()),
        }
    }

    /// Completes a deferred interaction with the handler's result.
    async fn finish(
        &self,
        interaction: &Interaction,
        ephemeral: bool,
        result: Result<Reply, HandlerError>,
    ) -> Result<(), String> {
        let edit = match &result {
            Ok(reply) => reply.edit_body(),
            Err(_) => None,
        };
        // A component deferred with type 6 has no "thinking" message: an
        // error must not overwrite the message the component is on.
        let component = interaction.kind == InteractionKind::Component;
        if let Some(body) = edit {
            return self
                .webhook(Method::PATCH, &interaction.original_path(), Some(&body))
                .await;
        }
        if let Ok(Reply::Acknowledge) = result {
            return Ok(());
        }
        let err = match result {
            Err(err) => err,
            Ok(_) => {
                HandlerError::Internal("a modal or choices cannot follow a deferral".to_owned())
            }
        };
        let apology = self.apology(interaction, &err);
        let Reply::Message(message) = apology else {
            unreachable!("apology is a message")
        };
        if ephemeral && !component {
            let body = Reply::Message(message).edit_body().unwrap_or_default();
            return self
                .webhook(Method::PATCH, &interaction.original_path(), Some(&body))
                .await;
        }
        // The deferral was public (or a component's): say it privately, and
        // take the public "thinking…" message away.
        let mut body = message.to_json();
        body["flags"] = json!(EPHEMERAL);
        self.webhook(Method::POST, &interaction.followup_path(), Some(&body))
            .await?;
        if !component {
            self.webhook(Method::DELETE, &interaction.original_path(), None)
                .await?;
        }
        Ok(())
    }

    async fn webhook(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(), String> {
        let what = format!("{method} webhook");
        match self
            .rest
            .send(
                method,
                path,
                body,
                WEBHOOK_DEADLINE,
                Priority::Interactive,
                None,
            )
            .await
        {
            Ok(resp) if resp.status.is_success() => Ok(()),
            Ok(resp) => Err(format!(
                "{what}: HTTP {} (code {:?})",
                resp.status.as_u16(),
                resp.discord_code()
            )),
            Err(err) => Err(format!("{what}: {err}")),
        }
    }
}

/// What a refused callback means.
fn classify_refusal(resp: &RestResponse) -> Answered {
    match (resp.status.as_u16(), resp.discord_code()) {
        // Unknown interaction: the window closed on the way.
        (404, Some(10062)) => Answered::Expired,
        // Already acknowledged: a redelivery raced another worker.
        (400, Some(40060)) => Answered::AlreadyAnswered,
        // The proxy could not send within the deadline.
        (503, _) => Answered::Expired,
        (status, code) => {
            Answered::Failed(format!("callback refused: HTTP {status} (code {code:?})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::StatusCode;

    #[test]
    fn the_window_runs_from_the_gateway_frame() {
        let us = |t: SystemTime| {
            u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
        };
        // Whole microseconds, as the header carries them.
        let now = UNIX_EPOCH + Duration::from_micros(us(SystemTime::now()));
        assert_eq!(time_left(None, now), Some(INTERACTION_WINDOW));
        let left = time_left(Some(us(now - Duration::from_millis(500))), now).unwrap();
        assert_eq!(left, Duration::from_millis(2_500));
        assert_eq!(time_left(Some(us(now - Duration::from_secs(3))), now), None);
        assert_eq!(
            time_left(Some(us(now - Duration::from_secs(60))), now),
            None
        );
        // A clock a little behind the ingestor's: the whole window.
        assert_eq!(
            time_left(Some(us(now + Duration::from_millis(5))), now),
            Some(INTERACTION_WINDOW)
        );
    }

    fn refusal(status: u16, body: &str) -> Answered {
        classify_refusal(&RestResponse {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from(body.to_owned()),
        })
    }

    #[test]
    fn refused_callbacks_are_told_apart() {
        assert_eq!(
            refusal(404, r#"{"code":10062,"message":"Unknown interaction"}"#),
            Answered::Expired
        );
        assert_eq!(refusal(400, r#"{"code":40060}"#), Answered::AlreadyAnswered);
        assert_eq!(refusal(503, r#"{"error":"deadline"}"#), Answered::Expired);
        assert!(matches!(
            refusal(400, r#"{"code":50035}"#),
            Answered::Failed(_)
        ));
    }

    #[test]
    fn internal_errors_do_not_reach_the_user() {
        let e = HandlerError::Internal("pool timeout on 10.0.0.7".into());
        assert!(!e.user_message().contains("10.0.0.7"));
        assert_eq!(
            HandlerError::User("Not verified".into()).user_message(),
            "Not verified"
        );
    }
}
