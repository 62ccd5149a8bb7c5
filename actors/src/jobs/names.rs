//! The seven queues of the reference and the four concurrency keys the
//! server's `runtime.queue-concurrency.apply` / `runtime.config.get` use.
//!
//! Queue names are the reference's (`src/core/queues/contracts/queue-names.ts`,
//! volt-protocol.md §7.3); they are also the BullMQ queue names, so the keys in
//! Redis are `bull:<name>:…` exactly as a Node `bullmq` producer writes them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the reference's BullMQ queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    AnalysisProcessing,
    ArtifactUpload,
    PluginWarmup,
    SshImport,
    TrajectoryRasterization,
    TrajectoryGlbConversion,
    TrajectoryFrameProcessing,
}

impl QueueName {
    /// Every queue, in the reference's order.
    pub const ALL: [QueueName; 7] = [
        QueueName::AnalysisProcessing,
        QueueName::ArtifactUpload,
        QueueName::PluginWarmup,
        QueueName::SshImport,
        QueueName::TrajectoryRasterization,
        QueueName::TrajectoryGlbConversion,
        QueueName::TrajectoryFrameProcessing,
    ];

    /// The wire / Redis name.
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueName::AnalysisProcessing => "analysis_processing",
            QueueName::ArtifactUpload => "artifact_upload",
            QueueName::PluginWarmup => "plugin_warmup",
            QueueName::SshImport => "ssh_import",
            QueueName::TrajectoryRasterization => "trajectory_rasterization",
            QueueName::TrajectoryGlbConversion => "trajectory_glb_conversion",
            QueueName::TrajectoryFrameProcessing => "trajectory_frame_processing",
        }
    }

    /// Parses a wire name; `None` for anything that is not one of the seven.
    pub fn parse(name: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| q.as_str() == name)
    }

    /// The concurrency key that governs this queue, if the server has one
    /// for it (see [`ConcurrencyKey`]).
    pub const fn concurrency_key(self) -> Option<ConcurrencyKey> {
        match self {
            QueueName::AnalysisProcessing => Some(ConcurrencyKey::Analysis),
            QueueName::TrajectoryRasterization => Some(ConcurrencyKey::Rasterizer),
            QueueName::TrajectoryGlbConversion => Some(ConcurrencyKey::GlbPreprocessing),
            QueueName::SshImport => Some(ConcurrencyKey::SshImport),
            QueueName::ArtifactUpload
            | QueueName::PluginWarmup
            | QueueName::TrajectoryFrameProcessing => None,
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key of the server's `queueConcurrency` object
/// (`{analysis, rasterizer, glbPreprocessing, sshImport}`, §4.1).
///
/// Which queue each key governs is voltd's reading of the names (the
/// protocol doc lists the keys, not the mapping): `analysis` →
/// `analysis_processing`, `rasterizer` → `trajectory_rasterization`,
/// `glbPreprocessing` → `trajectory_glb_conversion`, `sshImport` →
/// `ssh_import`. The other three queues keep their configured concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConcurrencyKey {
    Analysis,
    Rasterizer,
    GlbPreprocessing,
    SshImport,
}

impl ConcurrencyKey {
    pub const ALL: [ConcurrencyKey; 4] = [
        ConcurrencyKey::Analysis,
        ConcurrencyKey::Rasterizer,
        ConcurrencyKey::GlbPreprocessing,
        ConcurrencyKey::SshImport,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ConcurrencyKey::Analysis => "analysis",
            ConcurrencyKey::Rasterizer => "rasterizer",
            ConcurrencyKey::GlbPreprocessing => "glbPreprocessing",
            ConcurrencyKey::SshImport => "sshImport",
        }
    }

    pub const fn queue(self) -> QueueName {
        match self {
            ConcurrencyKey::Analysis => QueueName::AnalysisProcessing,
            ConcurrencyKey::Rasterizer => QueueName::TrajectoryRasterization,
            ConcurrencyKey::GlbPreprocessing => QueueName::TrajectoryGlbConversion,
            ConcurrencyKey::SshImport => QueueName::SshImport,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_reference() {
        let wire: Vec<&str> = QueueName::ALL.iter().map(|q| q.as_str()).collect();
        assert_eq!(
            wire,
            [
                "analysis_processing",
                "artifact_upload",
                "plugin_warmup",
                "ssh_import",
                "trajectory_rasterization",
                "trajectory_glb_conversion",
                "trajectory_frame_processing"
            ]
        );
        for q in QueueName::ALL {
            assert_eq!(QueueName::parse(q.as_str()), Some(q));
            assert_eq!(serde_json::to_value(q).unwrap(), q.as_str());
        }
        assert_eq!(QueueName::parse("ssh-import"), None);
        assert_eq!(QueueName::parse(""), None);
    }

    #[test]
    fn concurrency_keys_map_both_ways() {
        for k in ConcurrencyKey::ALL {
            assert_eq!(k.queue().concurrency_key(), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(QueueName::PluginWarmup.concurrency_key(), None);
    }
}
