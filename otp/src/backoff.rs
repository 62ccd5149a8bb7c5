//! Exponential backoff with jitter, used for socket reconnects, supervisor
//! restart delays and enrollment retries.

use std::time::Duration;
use thiserror::Error;

/// Why a backoff cannot be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BackoffError {
    #[error("backoff base must be greater than zero")]
    ZeroBase,
    #[error("backoff maximum ({max:?}) must be at least the base ({base:?})")]
    MaxBelowBase { base: Duration, max: Duration },
    #[error("backoff factor must be at least 1, got {0}")]
    BadFactor(f64),
    #[error("backoff jitter must be within 0..=1, got {0}")]
    BadJitter(f64),
}

/// `base × factor^attempt`, capped at `max`, then spread by ±`jitter`
/// (socket.io's `randomizationFactor`) and capped again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    base: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
}

impl ExponentialBackoff {
    /// Validating constructor.
    pub fn try_new(
        base: Duration,
        max: Duration,
        factor: f64,
        jitter: f64,
    ) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(BackoffError::BadFactor(factor));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::BadJitter(jitter));
        }
        Ok(ExponentialBackoff {
            base,
            max,
            factor,
            jitter,
        })
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry number `attempt` (0-based), with fresh jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }

    /// The delay for `attempt` with the jitter drawn from `unit` ∈ [0, 1):
    /// 0 gives the lowest spread, 0.5 none, values near 1 the highest.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let max = self.max.as_secs_f64();
        let exp = self.factor.powi(attempt.min(64) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(max);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let spread = raw * self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((raw + spread).clamp(0.0, max))
    }

    /// The un-jittered delay for `attempt` (what logs and docs quote).
    pub fn nominal(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rejects_invalid_parameters() {
        assert_eq!(
            ExponentialBackoff::try_new(Duration::ZERO, ms(1), 2.0, 0.0),
            Err(BackoffError::ZeroBase)
        );
        assert!(matches!(
            ExponentialBackoff::try_new(ms(10), ms(5), 2.0, 0.0),
            Err(BackoffError::MaxBelowBase { .. })
        ));
        assert_eq!(
            ExponentialBackoff::try_new(ms(1), ms(5), 0.5, 0.0),
            Err(BackoffError::BadFactor(0.5))
        );
        assert!(ExponentialBackoff::try_new(ms(1), ms(5), f64::NAN, 0.0).is_err());
        assert_eq!(
            ExponentialBackoff::try_new(ms(1), ms(5), 2.0, 1.5),
            Err(BackoffError::BadJitter(1.5))
        );
    }

    #[test]
    fn doubles_from_500ms_and_caps_at_30s() {
        let b = ExponentialBackoff::try_new(ms(500), ms(30_000), 2.0, 0.3).unwrap();
        let nominal: Vec<u64> = (0..9).map(|a| b.nominal(a).as_millis() as u64).collect();
        assert_eq!(
            nominal,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.nominal(1_000_000), ms(30_000));
    }

    #[test]
    fn jitter_spreads_by_the_randomization_factor() {
        let b = ExponentialBackoff::try_new(ms(1000), ms(30_000), 2.0, 0.3).unwrap();
        assert_eq!(b.delay_with(0, 0.0), ms(700));
        assert_eq!(b.delay_with(0, 1.0), ms(1300));
        for _ in 0..200 {
            let d = b.delay(0);
            assert!(d >= ms(700) && d <= ms(1300), "{d:?}");
        }
        // Jitter never pushes past the cap.
        assert_eq!(b.delay_with(10, 1.0), ms(30_000));
    }
}
