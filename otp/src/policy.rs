//! The one restart policy: how long to wait before a restart, and when to
//! stop restarting.
//!
//! Restart intensity is OTP's: more than `max_restarts` restarts within
//! `window` means the thing is broken and restarting it again will not help.
//! The delay before each restart grows exponentially with the number of
//! restarts still inside the window, so a piece that crashes once after a
//! long healthy run is back at the base delay, and one that keeps crashing
//! backs off until the intensity limit gives up.
//!
//! Used by the supervisors (one policy per supervisor, shared by its
//! children, as in OTP) and by the managed-service core (one per service).
//! Pure: times are passed in, so it is tested without clocks.

use crate::backoff::ExponentialBackoff;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Restart intensity: at most `max_restarts` within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    max_restarts: u32,
    window: Duration,
}

impl Intensity {
    /// Validating constructor: the window must be non-zero.
    pub fn try_new(max_restarts: u32, window: Duration) -> Result<Self, String> {
        if window.is_zero() {
            return Err("restart intensity window must be greater than zero".into());
        }
        Ok(Intensity {
            max_restarts,
            window,
        })
    }

    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this delay (`attempt` counts restarts in the window,
    /// this one included).
    RestartAfter { delay: Duration, attempt: u32 },
    /// Too many restarts within the window: give up.
    GiveUp { restarts: u32, window: Duration },
}

/// Intensity plus backoff, with the restart history (see the module docs).
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    intensity: Intensity,
    backoff: ExponentialBackoff,
    restarts: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(intensity: Intensity, backoff: ExponentialBackoff) -> Self {
        RestartPolicy {
            intensity,
            backoff,
            restarts: VecDeque::new(),
        }
    }

    pub fn intensity(&self) -> Intensity {
        self.intensity
    }

    /// A failure at `now` that would be answered with a restart.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        self.on_failure_with(now, rand::random::<f64>)
    }

    /// [`on_failure`](Self::on_failure) with the jitter drawn from `unit`.
    pub fn on_failure_with(&mut self, now: Instant, unit: impl FnOnce() -> f64) -> Decision {
        let window = self.intensity.window;
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.restarts.pop_front();
        }
        let in_window = self.restarts.len() as u32;
        if in_window >= self.intensity.max_restarts {
            return Decision::GiveUp {
                restarts: in_window,
                window,
            };
        }
        self.restarts.push_back(now);
        Decision::RestartAfter {
            delay: self.backoff.delay_with(in_window, unit()),
            attempt: in_window + 1,
        }
    }

    /// Forget the history (an operator's restart, a slow retry after giving up).
    pub fn reset(&mut self) {
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(max: u32, window: Duration) -> RestartPolicy {
        RestartPolicy::new(
            Intensity::try_new(max, window).unwrap(),
            ExponentialBackoff::try_new(ms(500), ms(30_000), 2.0, 0.0).unwrap(),
        )
    }

    #[test]
    fn a_zero_window_is_refused() {
        assert!(Intensity::try_new(5, Duration::ZERO).is_err());
    }

    #[test]
    fn delays_grow_until_the_intensity_limit_then_give_up() {
        let mut p = policy(3, Duration::from_secs(60));
        let t = Instant::now();
        let d: Vec<Decision> = (0..4).map(|i| p.on_failure(t + ms(i))).collect();
        assert_eq!(
            d,
            [
                Decision::RestartAfter {
                    delay: ms(500),
                    attempt: 1
                },
                Decision::RestartAfter {
                    delay: ms(1000),
                    attempt: 2
                },
                Decision::RestartAfter {
                    delay: ms(2000),
                    attempt: 3
                },
                Decision::GiveUp {
                    restarts: 3,
                    window: Duration::from_secs(60)
                },
            ]
        );
    }

    #[test]
    fn restarts_that_left_the_window_no_longer_count() {
        let mut p = policy(2, Duration::from_secs(10));
        let t = Instant::now();
        p.on_failure(t);
        p.on_failure(t + ms(1));
        assert!(matches!(p.on_failure(t + ms(2)), Decision::GiveUp { .. }));
        // Both earlier restarts are more than 10 s old: back at the base.
        assert_eq!(
            p.on_failure(t + Duration::from_secs(11)),
            Decision::RestartAfter {
                delay: ms(500),
                attempt: 1
            }
        );
    }

    #[test]
    fn reset_forgets_the_history() {
        let mut p = policy(1, Duration::from_secs(60));
        let t = Instant::now();
        p.on_failure(t);
        assert!(matches!(p.on_failure(t), Decision::GiveUp { .. }));
        p.reset();
        assert!(matches!(
            p.on_failure(t),
            Decision::RestartAfter { attempt: 1, .. }
        ));
    }

    #[test]
    fn jitter_comes_from_the_backoff() {
        let mut p = RestartPolicy::new(
            Intensity::try_new(5, Duration::from_secs(60)).unwrap(),
            ExponentialBackoff::try_new(ms(1000), ms(30_000), 2.0, 0.3).unwrap(),
        );
        let t = Instant::now();
        assert_eq!(
            p.on_failure_with(t, || 0.0),
            Decision::RestartAfter {
                delay: ms(700),
                attempt: 1
            }
        );
    }
}
