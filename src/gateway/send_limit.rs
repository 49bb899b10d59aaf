//! The gateway's outgoing rate limit: 120 payloads per 60 s per connection.
//!
//! Heartbeats, Identify and Resume all count (discord-api-docs #315), the
//! counter starts afresh with each connection (PR #5844), and going over
//! closes the connection with 4008. This limiter keeps a sliding log of send
//! times, which is stricter than any fixed window Discord may use, and
//! keeps a reserve that only heartbeats may spend, so a burst of commands
//! can never delay a heartbeat into a zombie disconnect.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Payloads allowed per window.
pub const SENDS_PER_WINDOW: usize = 120;
/// Length of the window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sends kept back for heartbeats: three intervals' worth at the shortest
/// interval Discord has used, plus replies to op 1.
pub const HEARTBEAT_RESERVE: usize = 5;

/// Priority of an outgoing payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// A heartbeat (op 1): may use the reserve.
    Heartbeat,
    /// Anything else (identify, resume, commands).
    Command,
}

/// Sliding-log send limiter for one connection.
#[derive(Debug, Default, Clone)]
pub struct SendLimiter {
    sent: VecDeque<Instant>,
}

impl SendLimiter {
    /// Records a send if one is allowed now; otherwise returns how long to wait.
    ///
    /// # Errors
    ///
    /// `Err(wait)` when the budget for `kind` is spent for another `wait`.
    pub fn try_send(&mut self, now: Instant, kind: SendKind) -> Result<(), Duration> {
        while self.sent.front().is_some_and(|&t| now - t >= WINDOW) {
            self.sent.pop_front();
        }
        let budget = match kind {
            SendKind::Heartbeat => SENDS_PER_WINDOW,
            SendKind::Command => SENDS_PER_WINDOW - HEARTBEAT_RESERVE,
        };
        if self.sent.len() < budget {
            self.sent.push_back(now);
            return Ok(());
        }
        // The send that would free a slot is the (len - budget)th oldest.
        let oldest = self.sent[self.sent.len() - budget];
        Err(oldest + WINDOW - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_leave_room_for_heartbeats() {
        let now = Instant::now();
        let mut limiter = SendLimiter::default();
        for _ in 0..SENDS_PER_WINDOW - HEARTBEAT_RESERVE {
            limiter.try_send(now, SendKind::Command).unwrap();
        }
        assert_eq!(limiter.try_send(now, SendKind::Command), Err(WINDOW));
        for _ in 0..HEARTBEAT_RESERVE {
            limiter.try_send(now, SendKind::Heartbeat).unwrap();
        }
        assert!(limiter.try_send(now, SendKind::Heartbeat).is_err());
    }

    #[test]
    fn window_slides() {
        let start = Instant::now();
        let mut limiter = SendLimiter::default();
        for i in 0..SENDS_PER_WINDOW {
            let at = start + Duration::from_millis(100 * i as u64);
            limiter.try_send(at, SendKind::Heartbeat).unwrap();
        }
        let at = start + Duration::from_secs(30);
        assert_eq!(
            limiter.try_send(at, SendKind::Heartbeat),
            Err(Duration::from_secs(30))
        );
        limiter
            .try_send(start + WINDOW, SendKind::Heartbeat)
            .unwrap();
    }

    #[test]
    fn never_more_than_120_in_any_60_seconds() {
        let start = Instant::now();
        let mut limiter = SendLimiter::default();
        let mut log = Vec::new();
        let mut now = start;
        for _ in 0..2_000 {
            if limiter.try_send(now, SendKind::Heartbeat).is_ok() {
                log.push(now);
            }
            now += Duration::from_millis(97);
        }
        for (i, &t) in log.iter().enumerate() {
            let in_window = log[i..].iter().take_while(|&&u| u - t < WINDOW).count();
            assert!(in_window <= SENDS_PER_WINDOW);
        }
    }
}
