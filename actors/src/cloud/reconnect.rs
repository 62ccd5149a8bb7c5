//! When the control socket tries again: the reconnect rule, as a pure
//! state machine the control socket feeds with how each connection ended.
//!
//! The rule (README "Wire behaviour worth knowing"):
//!
//! * A connection that **registered** and stayed registered at least
//!   `stable_after` (default 2 s) was a success: the failure streak resets
//!   and the next attempt starts after the *first* delay of the backoff
//!   (500 ms ± 30 %, so within 650 ms — always under a second). A server
//!   restart, a rolling deploy or a network blip costs one short wait, however
//!   often it happens. This is what socket.io's own client does (it resets
//!   its backoff on every successful reconnection).
//! * An attempt that **failed** — no TCP/TLS/WebSocket, no Engine.IO open,
//!   namespace refused, registration refused or unanswered — backs off:
//!   500 ms × 2ⁿ for the n-th failure in a row, at most 30 s, ± 30 %.
//! * A registration that lasted **less than `stable_after`** counts as a
//!   failure: a server (or a proxy) that accepts, registers and drops at
//!   once is not hammered in a tight loop; consecutive short registrations
//!   walk up the same backoff as failed connects.
//! * The host's network coming back (a link up, an address or a route
//!   added; see `host::netwatch`) cuts a pending wait short: the next
//!   attempt starts at once, the streak is kept (if it fails, the backoff
//!   continues where it was).
//!
//! Why `stable_after` is 2 s and not the 30 s it used to be: with 30 s,
//! a server that cut registered sockets a few seconds apart doubled the
//! delay at every cut although every reconnection succeeded (measured: up
//! to 30.3 s to come back). A registration already proved the path to
//! the server (it authenticated the daemon and recorded the connection); one
//! that also survives 2 s is a working server, not an accept-and-drop loop.

use otp::backoff::ExponentialBackoff;
use std::time::Duration;

/// How a connection attempt ended, as far as the backoff cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It never registered (connect, handshake or registration failed).
    Failed,
    /// It registered and was lost after `lasted`.
    Registered { lasted: Duration },
}

/// What the policy decided for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Wait this long before the next attempt.
    pub delay: Duration,
    /// Whether the ended attempt counted as a failure.
    pub failure: bool,
    /// Failures in a row, including this one (0 after a success).
    pub streak: u32,
}

/// The reconnect rule (see the module docs).
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    backoff: ExponentialBackoff,
    stable_after: Duration,
    streak: u32,
}

impl ReconnectPolicy {
    pub fn new(backoff: ExponentialBackoff, stable_after: Duration) -> Self {
        ReconnectPolicy {
            backoff,
            stable_after,
            streak: 0,
        }
    }

    /// Failures in a row so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Records how an attempt ended and returns the delay before the next
    /// one, with fresh jitter.
    pub fn ended(&mut self, how: Ended) -> Next {
        self.ended_with(how, rand::random::<f64>())
    }

    /// [`Self::ended`] with the jitter drawn from `unit` ∈ [0, 1) (see
    /// [`ExponentialBackoff::delay_with`]).
    pub fn ended_with(&mut self, how: Ended, unit: f64) -> Next {
        let failure = match how {
            Ended::Failed => true,
            Ended::Registered { lasted } => lasted < self.stable_after,
        };
        // The delay index is the number of failures before this one: a
        // success and a first failure both wait the base delay.
        let index = if failure { self.streak } else { 0 };
        self.streak = if failure {
            self.streak.saturating_add(1)
        } else {
            0
        };
        Next {
            delay: self.backoff.delay_with(index, unit),
            failure,
            streak: self.streak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy::new(
            ExponentialBackoff::try_new(ms(500), ms(30_000), 2.0, 0.3).unwrap(),
            ms(2_000),
        )
    }

    const STABLE: Ended = Ended::Registered { lasted: ms(2_000) };
    const SHORT: Ended = Ended::Registered { lasted: ms(1_999) };

    #[test]
    fn failures_double_from_500_ms_up_to_30_s() {
        let mut p = policy();
        let nominal: Vec<u64> = (0..9)
            .map(|_| p.ended_with(Ended::Failed, 0.5).delay.as_millis() as u64)
            .collect();
        assert_eq!(
            nominal,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(p.streak(), 9);
    }

    #[test]
    fn a_stable_registration_resets_and_retries_within_a_second_with_any_jitter() {
        for unit in [0.0, 0.5, 0.999_999] {
            let mut p = policy();
            for _ in 0..20 {
                p.ended_with(Ended::Failed, unit);
            }
            let next = p.ended_with(STABLE, unit);
            assert!(!next.failure);
            assert_eq!(next.streak, 0);
            assert!(next.delay <= ms(650), "{next:?}");
            assert!(next.delay < Duration::from_secs(1));
            // And the next failure starts the streak from the bottom.
            assert_eq!(p.ended_with(Ended::Failed, 0.5).delay, ms(500));
        }
    }

    #[test]
    fn every_stable_registration_resets_however_often_it_is_cut() {
        let mut p = policy();
        for _ in 0..25 {
            let next = p.ended_with(STABLE, 0.999_999);
            assert!(next.delay < Duration::from_secs(1), "{next:?}");
        }
    }

    #[test]
    fn short_registrations_back_off_like_failures() {
        let mut p = policy();
        let delays: Vec<u64> = (0..5)
            .map(|_| p.ended_with(SHORT, 0.5).delay.as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000]);
        // Mixed with failed connects they are one streak.
        assert_eq!(p.ended_with(Ended::Failed, 0.5).delay, ms(16_000));
        assert!(p.ended_with(SHORT, 0.5).failure);
    }
}
