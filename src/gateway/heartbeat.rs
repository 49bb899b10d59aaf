//! Heartbeat schedule and zombie detection for one connection.
//!
//! Discord's rules (docs, "Sending Heartbeats"): the first heartbeat goes
//! `heartbeat_interval × jitter` after Hello, with jitter uniform in [0, 1),
//! then one every interval; every heartbeat is answered by op 11. If no ACK
//! arrived between two heartbeats the connection is a zombie: close it with
//! a code other than 1000/1001 and resume.
//!
//! Two refinements keep the zombie rule from firing falsely:
//! - heartbeats Discord asks for with op 1 are answered at once but do not
//!   move the reference point, so an ACK still in flight for such an extra
//!   heartbeat cannot make the next scheduled one look unanswered
//!   (discord.js PR #3993 fixed exactly this);
//! - while the shard has paused reading because the publish buffer is full,
//!   ACKs sit unread in the socket. A period in which reading was paused
//!   never counts as "no ACK".

use std::time::Duration;
use tokio::time::Instant;

/// What to do when a heartbeat falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Send a heartbeat now.
    Send,
    /// The previous heartbeat was never acknowledged: the connection is dead.
    Zombie,
}

/// Heartbeat state of one connection, created on Hello.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    interval: Duration,
    due: Instant,
    acked: bool,
    paused: bool,
    sent_at: Option<Instant>,
}

impl Heartbeat {
    /// Starts the schedule at Hello; `jitter` is uniform in [0, 1).
    #[must_use]
    pub fn on_hello(now: Instant, interval: Duration, jitter: f64) -> Self {
        Self {
            interval,
            due: now + interval.mul_f64(jitter.clamp(0.0, 1.0)),
            acked: true,
            paused: false,
            sent_at: None,
        }
    }

    /// The interval Discord gave in Hello.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the next scheduled heartbeat is due.
    #[must_use]
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Called at or after [`due`](Self::due). `reading_paused` says whether
    /// the shard is paused right now.
    pub fn on_due(&mut self, now: Instant, reading_paused: bool) -> Beat {
        if !self.acked && !self.paused {
            return Beat::Zombie;
        }
        self.acked = false;
        self.paused = reading_paused;
        self.sent_at = Some(now);
        self.due += self.interval;
        if self.due <= now {
            // We were starved (a stalled runtime); do not fire a burst.
            self.due = now + self.interval;
        }
        Beat::Send
    }

    /// Discord asked for a heartbeat with op 1; it is sent right away.
    pub fn on_requested(&mut self, now: Instant) {
        self.sent_at = Some(now);
    }

    /// Records that reading was paused at some point in this period.
    pub fn on_paused(&mut self) {
        self.paused = true;
    }

    /// An op 11 arrived; returns the round trip since the last heartbeat sent.
    pub fn on_ack(&mut self, now: Instant) -> Option<Duration> {
        self.acked = true;
        self.sent_at.take().map(|sent| now - sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(41_250);

    #[test]
    fn first_heartbeat_is_jittered() {
        let now = Instant::now();
        assert_eq!(Heartbeat::on_hello(now, INTERVAL, 0.0).due(), now);
        assert_eq!(
            Heartbeat::on_hello(now, INTERVAL, 0.5).due(),
            now + INTERVAL / 2
        );
    }

    #[test]
    fn no_ack_between_heartbeats_is_zombie() {
        let now = Instant::now();
        let mut hb = Heartbeat::on_hello(now, INTERVAL, 0.1);
        assert_eq!(hb.on_due(hb.due(), false), Beat::Send);
        assert_eq!(hb.on_due(hb.due(), false), Beat::Zombie);
    }

    #[test]
    fn acked_heartbeats_continue_on_schedule() {
        let now = Instant::now();
        let mut hb = Heartbeat::on_hello(now, INTERVAL, 0.25);
        let first = hb.due();
        for i in 0..5 {
            let due = hb.due();
            assert_eq!(due, first + INTERVAL * i);
            assert_eq!(hb.on_due(due, false), Beat::Send);
            assert_eq!(
                hb.on_ack(due + Duration::from_millis(40)),
                Some(Duration::from_millis(40))
            );
        }
    }

    #[test]
    fn requested_heartbeat_does_not_cause_false_zombie() {
        let now = Instant::now();
        let mut hb = Heartbeat::on_hello(now, INTERVAL, 0.0);
        assert_eq!(hb.on_due(now, false), Beat::Send);
        hb.on_ack(now + Duration::from_millis(50));
        // Discord asks for one just before ours falls due; its ACK is in flight.
        hb.on_requested(hb.due() - Duration::from_millis(10));
        assert_eq!(hb.on_due(hb.due(), false), Beat::Send);
    }

    #[test]
    fn paused_reading_is_not_a_zombie() {
        let now = Instant::now();
        let mut hb = Heartbeat::on_hello(now, INTERVAL, 0.0);
        assert_eq!(hb.on_due(now, false), Beat::Send);
        hb.on_paused();
        assert_eq!(hb.on_due(hb.due(), true), Beat::Send);
        // Still paused through the next period: the ACK cannot have been read.
        assert_eq!(hb.on_due(hb.due(), true), Beat::Send);
        // Reading resumed and a whole period passed without an ACK.
        assert_eq!(hb.on_due(hb.due(), false), Beat::Send);
        assert_eq!(hb.on_due(hb.due(), false), Beat::Zombie);
    }

    #[test]
    fn starved_schedule_does_not_burst() {
        let now = Instant::now();
        let mut hb = Heartbeat::on_hello(now, INTERVAL, 0.0);
        let late = now + INTERVAL * 3;
        assert_eq!(hb.on_due(late, false), Beat::Send);
        assert_eq!(hb.due(), late + INTERVAL);
    }
}
