//! How far each shard's session is safely in the broker.
//!
//! The resume checkpoint may only cover dispatches RabbitMQ has confirmed:
//! resuming from it after a crash makes Discord replay everything after
//! it, so nothing unconfirmed is lost. The shard task records each dispatch
//! it hands to the publisher (or drops by configuration) in sequence order;
//! the publisher records confirms, which arrive in any order. The
//! *watermark* is the highest sequence number such that every dispatch up
//! to it is confirmed: the oldest unconfirmed one minus one, or the newest
//! handed over when none is outstanding.
//!
//! Sequence numbers handed over within one session only grow (an in-process
//! resume continues from the last received number; a restart resumes from
//! the checkpoint), so the outstanding set is a sorted deque, not a tree.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// A resume point: the session, where to resume it, and the last sequence
/// number safely in the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `session_id` from READY.
    pub session_id: Arc<str>,
    /// `resume_gateway_url` from READY.
    pub resume_url: Arc<str>,
    /// Every dispatch of the session up to this one is confirmed.
    pub seq: u64,
    /// When READY was received, ms since the Unix epoch.
    pub started_at_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    session: Option<Checkpoint>,
    /// Handed over, in order; `true` once confirmed.
    outstanding: VecDeque<(u64, bool)>,
    handed_max: u64,
    /// Bumped on every change, so the writer knows what to save.
    version: u64,
}

/// One shard's confirm watermark; shared by its task, the publisher and
/// the checkpoint writer.
#[derive(Debug, Default)]
pub struct ShardProgress {
    state: Mutex<State>,
    new_session: Option<Arc<Notify>>,
}

impl ShardProgress {
    /// Progress that wakes the checkpoint writer on every new session, so
    /// a fresh session is saved at once rather than on the next tick.
    #[must_use]
    pub fn notifying(new_session: Arc<Notify>) -> Self {
        Self {
            state: Mutex::default(),
            new_session: Some(new_session),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new session (READY) or a restored one (from a checkpoint). What
    /// is outstanding for an older session no longer moves the watermark.
    pub fn start_session(&self, checkpoint: Checkpoint) {
        let mut state = self.lock();
        state.handed_max = checkpoint.seq;
        state.outstanding.clear();
        state.session = Some(checkpoint);
        state.version += 1;
        drop(state);
        if let Some(notify) = &self.new_session {
            notify.notify_one();
        }
    }

    /// The shard handed dispatch `seq` of `session` to the publisher
    /// (`published`) or dropped it by configuration (not `published`).
    pub fn handed(&self, session: &Arc<str>, seq: u64, published: bool) {
        let mut state = self.lock();
        if !state
            .session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.session_id, session))
        {
            return;
        }
        if seq <= state.handed_max {
            // A replay of something already handed over: its first copy
            // decides the watermark.
            return;
        }
        state.handed_max = seq;
        if published {
            state.outstanding.push_back((seq, false));
        }
        state.version += 1;
    }

    /// The broker confirmed dispatch `seq` of `session`.
    pub fn confirmed(&self, session: &Arc<str>, seq: u64) {
        let mut state = self.lock();
        if !state
            .session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.session_id, session))
        {
            return;
        }
        if let Ok(i) = state.outstanding.binary_search_by_key(&seq, |&(s, _)| s) {
            state.outstanding[i].1 = true;
        }
        let mut advanced = false;
        while state.outstanding.front().is_some_and(|&(_, done)| done) {
            state.outstanding.pop_front();
            advanced = true;
        }
        if advanced {
            state.version += 1;
        }
    }

    /// The current checkpoint and its version, if there is a session.
    #[must_use]
    pub fn checkpoint(&self) -> Option<(Checkpoint, u64)> {
        let state = self.lock();
        let mut checkpoint = state.session.clone()?;
        checkpoint.seq = match state.outstanding.front() {
            Some(&(oldest, _)) => oldest - 1,
            None => state.handed_max,
        };
        Some((checkpoint, state.version))
    }

    /// Dispatches handed over and not yet confirmed.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        self.lock().outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(progress: &ShardProgress, seq: u64) -> Arc<str> {
        let id: Arc<str> = Arc::from("s1");
        progress.start_session(Checkpoint {
            session_id: id.clone(),
            resume_url: "wss://r".into(),
            seq,
            started_at_ms: 1,
        });
        id
    }

    fn seq(progress: &ShardProgress) -> u64 {
        progress.checkpoint().unwrap().0.seq
    }

    #[test]
    fn watermark_stops_at_the_oldest_unconfirmed() {
        let p = ShardProgress::default();
        let s = session(&p, 1);
        for n in 2..=6 {
            p.handed(&s, n, true);
        }
        assert_eq!(seq(&p), 1);
        p.confirmed(&s, 3);
        p.confirmed(&s, 5);
        assert_eq!(seq(&p), 1, "2 is not confirmed yet");
        p.confirmed(&s, 2);
        assert_eq!(seq(&p), 3);
        p.confirmed(&s, 4);
        p.confirmed(&s, 6);
        assert_eq!(seq(&p), 6);
        assert_eq!(p.outstanding(), 0);
    }

    #[test]
    fn dropped_events_do_not_hold_the_watermark() {
        let p = ShardProgress::default();
        let s = session(&p, 1);
        p.handed(&s, 2, false);
        p.handed(&s, 3, true);
        p.handed(&s, 4, false);
        assert_eq!(seq(&p), 2);
        p.confirmed(&s, 3);
        assert_eq!(seq(&p), 4);
    }

    #[test]
    fn confirms_of_an_old_session_are_ignored() {
        let p = ShardProgress::default();
        let old = session(&p, 1);
        p.handed(&old, 2, true);
        let new: Arc<str> = Arc::from("s2");
        p.start_session(Checkpoint {
            session_id: new.clone(),
            resume_url: "wss://r".into(),
            seq: 1,
            started_at_ms: 2,
        });
        p.confirmed(&old, 2);
        p.handed(&new, 2, true);
        assert_eq!(seq(&p), 1);
        assert_eq!(&*p.checkpoint().unwrap().0.session_id, "s2");
    }

    #[test]
    fn restored_session_continues_from_the_checkpoint() {
        let p = ShardProgress::default();
        let s = session(&p, 500);
        p.handed(&s, 420, true); // a replay from before the checkpoint
        assert_eq!(seq(&p), 500);
        p.handed(&s, 501, true);
        assert_eq!(seq(&p), 500);
        p.confirmed(&s, 501);
        assert_eq!(seq(&p), 501);
    }

    #[test]
    fn version_changes_only_when_something_changed() {
        let p = ShardProgress::default();
        let s = session(&p, 1);
        let (_, v1) = p.checkpoint().unwrap();
        p.confirmed(&s, 99);
        assert_eq!(p.checkpoint().unwrap().1, v1);
        p.handed(&s, 2, true);
        assert!(p.checkpoint().unwrap().1 > v1);
    }

    #[test]
    fn no_session_no_checkpoint() {
        assert!(ShardProgress::default().checkpoint().is_none());
    }
}
