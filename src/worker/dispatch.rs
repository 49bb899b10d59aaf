//! From a consumed message to its disposition: decode, deduplicate, route
//! to the event or interaction handlers, and say what the consumer should
//! do with the message.
//!
//! Deduplication: a message's effect runs under a Redis claim on its
//! `message_id` (`<session_id>:<seq>`, stable across redeliveries and
//! resume replays). The claim is a lease: a worker killed mid-effect loses
//! it after `dedupe_lease`, and the redelivered message is then processed
//! by whoever claims it next. Effects in Postgres are additionally recorded
//! in the same transaction (`processed_messages`), so even a lease that
//! expired under a slow worker cannot write twice. Events without a handler
//! are acked without touching Redis.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::commands;
use super::envelope::{Envelope, Meta};
use super::events::{self, EventError};
use super::interaction::{Interaction, InteractionKind, Message, Reply};
use super::respond::{Plan, time_left};
use super::services::Services;
use super::state::{Claim, LimitVerdict};
use crate::queue::consumer::{Delivered, Disposition, Handler};

/// The queue interactions arrive on.
pub const INTERACTIONS_QUEUE: &str = "arrakis.interactions";

/// The worker's [`Handler`].
#[derive(Debug, Clone)]
pub struct WorkerHandler {
    services: Arc<Services>,
}

impl WorkerHandler {
    /// A handler using `services`.
    #[must_use]
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    fn owner(&self) -> String {
        format!("{}:{:08x}", self.services.worker_id, rand::random::<u32>())
    }

    async fn event(&self, envelope: &Envelope<'_>) -> Disposition {
        let s = &self.services;
        match events::worth_claiming(s, envelope).await {
            Ok(true) => {}
            Ok(false) => return Disposition::Ack,
            Err(err) => return disposition_of(err),
        }
        let owner = self.owner();
        match s
            .state
            .claim(envelope.message_id, &owner, s.dedupe_lease)
            .await
        {
            Ok(Claim::Acquired) => {}
            Ok(Claim::AlreadyDone) => {
                s.metrics.duplicates.inc();
                return Disposition::Ack;
            }
            Ok(Claim::HeldByOther { .. }) => return Disposition::Later,
            Err(err) => {
                return Disposition::Retry {
                    reason: format!("Redis (dedupe claim): {err}"),
                };
            }
        }
        match events::handle(s, envelope).await {
            Ok(()) => {
                if let Err(err) = s
                    .state
                    .finish(envelope.message_id, &owner, s.dedupe_keep)
                    .await
                {
                    // The effect is recorded in Postgres too; a redelivery
                    // finds it there.
                    tracing::warn!(
                        message_id = envelope.message_id,
                        "cannot mark done in Redis: {err}"
                    );
                }
                Disposition::Ack
            }
            Err(err) => {
                let _ = s.state.release(envelope.message_id, &owner).await;
                disposition_of(err)
            }
        }
    }

    async fn interaction(&self, envelope: &Envelope<'_>) -> Disposition {
        let s = &self.services;
        let interaction = match Interaction::parse(envelope.data.get()) {
            Ok(i) => i,
            Err(why) => {
                return Disposition::DeadLetter {
                    reason: format!("INTERACTION_CREATE payload has an unknown shape: {why}"),
                };
            }
        };
        if interaction.kind == InteractionKind::Ping {
            return Disposition::Ack;
        }
        let received = envelope.received_at_us;
        if time_left(received, SystemTime::now()).is_none() {
            // Discord refuses callbacks after 3 s: answering would only add
            // a failed request. Counted, logged, acked.
            tracing::info!(
                message_id = envelope.message_id,
                interaction = interaction.id,
                "interaction consumed after its 3 s window; not answered"
            );
            s.responder
                .respond(&interaction, received, Plan::default(), async {
                    Ok(Reply::Acknowledge)
                })
                .await;
            return Disposition::Ack;
        }
        let owner = self.owner();
        // Interactions cannot wait for Redis: without it they are answered
        // anyway (a second callback would only get Discord's 40060).
        let claimed = match s
            .state
            .claim(envelope.message_id, &owner, s.dedupe_lease)
            .await
        {
            Ok(Claim::Acquired) => true,
            Ok(Claim::AlreadyDone | Claim::HeldByOther { .. }) => {
                s.metrics.duplicates.inc();
                return Disposition::Ack;
            }
            Err(err) => {
                tracing::warn!(
                    message_id = envelope.message_id,
                    "Redis unavailable for the dedupe claim, answering anyway: {err}"
                );
                false
            }
        };

        let plan = commands::plan_for(&interaction);
        let limited = if interaction.kind == InteractionKind::Autocomplete {
            None
        } else {
            self.limited(&interaction).await
        };
        match limited {
            Some(message) => {
                s.responder
                    .respond(&interaction, received, Plan::default(), async move {
                        Ok(Reply::Message(Message::ephemeral(message)))
                    })
                    .await;
            }
            None => {
                let work = commands::run(s, &interaction, envelope.message_id);
                s.responder
                    .respond(&interaction, received, plan, work)
                    .await;
            }
        }
        if claimed
            && let Err(err) = s
                .state
                .finish(envelope.message_id, &owner, s.dedupe_keep)
                .await
        {
            tracing::warn!(
                message_id = envelope.message_id,
                "cannot mark interaction done: {err}"
            );
        }
        Disposition::Ack
    }

    /// The polite refusal, when the user or guild is over its command rate.
    async fn limited(&self, interaction: &Interaction) -> Option<String> {
        let s = &self.services;
        let guild = interaction.guild_id.unwrap_or(0);
        match s
            .state
            .command_allowed(guild, interaction.user_id, s.limits)
            .await
        {
            Ok(LimitVerdict::Allowed) => None,
            Ok(LimitVerdict::UserLimited { retry_after }) => Some(format!(
                "You're sending commands a little fast. Try again in {}.",
                seconds(retry_after)
            )),
            Ok(LimitVerdict::GuildLimited { retry_after }) => Some(format!(
                "This server is very busy right now. Try again in {}.",
                seconds(retry_after)
            )),
            Err(err) => {
                tracing::warn!("command limits unavailable (Redis), allowing: {err}");
                None
            }
        }
    }
}

/// What the consumer does with a message whose event failed.
fn disposition_of(err: EventError) -> Disposition {
    match err {
        EventError::Transient(reason) => Disposition::Retry { reason },
        EventError::Poison(p) => Disposition::DeadLetter {
            reason: p.to_string(),
        },
        EventError::Permanent(reason) => Disposition::DeadLetter { reason },
    }
}

/// `1 second`, `3 seconds`: rounded up.
fn seconds(d: Duration) -> String {
    let n = d.as_millis().div_ceil(1000).max(1);
    if n == 1 {
        "1 second".to_owned()
    } else {
        format!("{n} seconds")
    }
}

impl Handler for WorkerHandler {
    async fn handle(&self, delivered: &Delivered) -> Disposition {
        let envelope = match Envelope::decode(Meta::of(delivered), &delivered.body) {
            Ok(envelope) => envelope,
            Err(poison) => {
                return Disposition::DeadLetter {
                    reason: poison.to_string(),
                };
            }
        };
        if delivered.queue == INTERACTIONS_QUEUE || envelope.event == "INTERACTION_CREATE" {
            self.interaction(&envelope).await
        } else {
            self.event(&envelope).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_whole_seconds() {
        assert_eq!(seconds(Duration::from_millis(200)), "1 second");
        assert_eq!(seconds(Duration::from_millis(1_200)), "2 seconds");
    }
}
