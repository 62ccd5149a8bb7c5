//! `[jobs]`: the job queues' workers. The server normally decides each
//! queue's concurrency (`runtime.config.get` at registration,
//! `runtime.queue-concurrency.apply` at any time); these values are used
//! until it has, and for good when it does not know `runtime.config.get`.

use super::values::ms;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The reference's defaults (B′ `ANALYSIS_CONCURRENCY` 1, `RASTER_CONCURRENCY`
/// 2, `GLB_CONCURRENCY` 2; one SSH import, which is network-bound).
pub const DEFAULT_ANALYSIS_CONCURRENCY: usize = 1;
pub const DEFAULT_RASTERIZER_CONCURRENCY: usize = 2;
pub const DEFAULT_GLB_CONCURRENCY: usize = 2;
pub const DEFAULT_SSH_IMPORT_CONCURRENCY: usize = 1;
/// Highest concurrency of one queue: the pools' own bound
/// (`jobs::pool::MAX_CONCURRENCY`; a test keeps them equal).
pub const MAX_CONCURRENCY: usize = 64;
/// BullMQ's default job lock: a worker that dies (kill -9, power loss)
/// frees its jobs this long after its last renewal (every half of it).
pub const DEFAULT_LOCK_DURATION: Duration = Duration::from_secs(30);
/// BullMQ's default stalled-job check period: jobs whose lock expired go
/// back to waiting at the next check.
pub const DEFAULT_STALLED_INTERVAL: Duration = Duration::from_secs(30);

/// `[jobs]` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSettings {
    /// `analysis_processing` (the server's `queueConcurrency.analysis`).
    pub analysis_concurrency: usize,
    /// `trajectory_rasterization` (`rasterizer`).
    pub rasterizer_concurrency: usize,
    /// `trajectory_glb_conversion` (`glbPreprocessing`).
    pub glb_preprocessing_concurrency: usize,
    /// `ssh_import` (`sshImport`).
    pub ssh_import_concurrency: usize,
    #[serde(rename = "lock_duration_ms", with = "ms")]
    pub lock_duration: Duration,
    #[serde(rename = "stalled_interval_ms", with = "ms")]
    pub stalled_interval: Duration,
}

impl Default for JobsSettings {
    fn default() -> Self {
        JobsSettings {
            analysis_concurrency: DEFAULT_ANALYSIS_CONCURRENCY,
            rasterizer_concurrency: DEFAULT_RASTERIZER_CONCURRENCY,
            glb_preprocessing_concurrency: DEFAULT_GLB_CONCURRENCY,
            ssh_import_concurrency: DEFAULT_SSH_IMPORT_CONCURRENCY,
            lock_duration: DEFAULT_LOCK_DURATION,
            stalled_interval: DEFAULT_STALLED_INTERVAL,
        }
    }
}

impl JobsSettings {
    /// Each concurrency in 1..=[`MAX_CONCURRENCY`].
    pub fn validate(&self) -> Result<(), String> {
        for (key, n) in [
            ("analysis_concurrency", self.analysis_concurrency),
            ("rasterizer_concurrency", self.rasterizer_concurrency),
            (
                "glb_preprocessing_concurrency",
                self.glb_preprocessing_concurrency,
            ),
            ("ssh_import_concurrency", self.ssh_import_concurrency),
        ] {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return Err(format!("jobs.{key} must be 1..={MAX_CONCURRENCY}, got {n}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_pools_bound() {
        assert_eq!(MAX_CONCURRENCY, crate::jobs::pool::MAX_CONCURRENCY);
    }

    #[test]
    fn concurrency_is_bounded() {
        assert!(JobsSettings::default().validate().is_ok());
        let zero = JobsSettings {
            ssh_import_concurrency: 0,
            ..JobsSettings::default()
        };
        assert_eq!(
            zero.validate().unwrap_err(),
            "jobs.ssh_import_concurrency must be 1..=64, got 0"
        );
        let many = JobsSettings {
            analysis_concurrency: 65,
            ..JobsSettings::default()
        };
        assert!(many.validate().is_err());
    }
}
