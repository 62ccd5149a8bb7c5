//! Job status events to the server, with the reference's event names and
//! fields (volt-protocol.md §5.2), as typed structs.
//!
//! They travel as `team-cluster-daemon:message` payloads
//! `{type, teamClusterId, daemonPassword, …fields}`; the credentials are
//! added by whoever sends ([`JobStatusEvent::to_message`]), so these structs
//! hold no secret and can be logged and buffered freely. Like the reference
//! (`emitBufferedWithAuth`), events are buffered while disconnected and
//! de-duplicated by [`JobStatusEvent::dedupe_key`].
//!
//! Which event a queue's job produces:
//!
//! | queue | events |
//! |---|---|
//! | `ssh_import` | `ssh-import-job-status` |
//! | `analysis_processing` | `analysis-job-status`, and `analysis-job-completion` when finished |
//! | `trajectory_rasterization` | `trajectory-raster-job-status` |
//! | `trajectory_glb_conversion` | `trajectory-glb-job-status` |
//! | `artifact_upload` | `artifact-upload-job-status` |
//! | `plugin_warmup`, `trajectory_frame_processing` | none (the reference has no event for them) |
//!
//! An event whose required ids are missing from the job's payload is not
//! produced (the server would reject it).

use super::names::QueueName;
use super::status::{JobStatus, cap_error};
use serde::Serialize;
use serde_json::Value;

/// `status` of the running/completed/failed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

/// `status` of `artifact-upload-job-status`, which also knows `queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

/// `ssh-import-job-status {jobId, teamId, trajectoryId, trajectoryName?, status, error?}`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshImportJobStatus {
    pub job_id: String,
    pub team_id: String,
    pub trajectory_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_name: Option<String>,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `trajectory-raster-job-status` and `trajectory-glb-job-status`
/// `{jobId, teamId, trajectoryId, trajectoryName?, timestep?, status, error?}`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrajectoryJobStatus {
    pub job_id: String,
    pub team_id: String,
    pub trajectory_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep: Option<i64>,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `analysis-job-status {jobId, name, analysisId, teamId, trajectoryId?, trajectoryName?, timestep?, status, error?}`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisJobStatus {
    pub job_id: String,
    pub name: String,
    pub analysis_id: String,
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep: Option<i64>,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `analysis-job-completion {jobId, name, analysisId, teamId, trajectoryId?, trajectoryName?, timestep?, success, error?}`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisJobCompletion {
    pub job_id: String,
    pub name: String,
    pub analysis_id: String,
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep: Option<i64>,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `artifact-upload-job-status {jobId, analysisId, teamId, trajectoryId, …, status, error?}`
/// (the protocol doc elides further fields; voltd sends the ones it lists).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactUploadJobStatus {
    pub job_id: String,
    pub analysis_id: String,
    pub team_id: String,
    pub trajectory_id: String,
    pub status: UploadStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every job event voltd sends.
#[derive(Debug, Clone, PartialEq)]
pub enum JobStatusEvent {
    SshImport(SshImportJobStatus),
    Analysis(AnalysisJobStatus),
    AnalysisCompletion(AnalysisJobCompletion),
    Raster(TrajectoryJobStatus),
    Glb(TrajectoryJobStatus),
    ArtifactUpload(ArtifactUploadJobStatus),
}

fn s(payload: &Value, key: &str) -> Option<String> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn timestep(payload: &Value) -> Option<i64> {
    payload.get("timestep").and_then(Value::as_i64)
}

impl JobStatusEvent {
    /// The `type` of the message.
    pub fn message_type(&self) -> &'static str {
        match self {
            JobStatusEvent::SshImport(_) => "ssh-import-job-status",
            JobStatusEvent::Analysis(_) => "analysis-job-status",
            JobStatusEvent::AnalysisCompletion(_) => "analysis-job-completion",
            JobStatusEvent::Raster(_) => "trajectory-raster-job-status",
            JobStatusEvent::Glb(_) => "trajectory-glb-job-status",
            JobStatusEvent::ArtifactUpload(_) => "artifact-upload-job-status",
        }
    }

    /// The event's own fields (no `type`, no credentials).
    pub fn fields(&self) -> Value {
        let v = match self {
            JobStatusEvent::SshImport(e) => serde_json::to_value(e),
            JobStatusEvent::Analysis(e) => serde_json::to_value(e),
            JobStatusEvent::AnalysisCompletion(e) => serde_json::to_value(e),
            JobStatusEvent::Raster(e) | JobStatusEvent::Glb(e) => serde_json::to_value(e),
            JobStatusEvent::ArtifactUpload(e) => serde_json::to_value(e),
        };
        // Plain structs of strings, numbers and enums always serialise.
        v.unwrap_or(Value::Null)
    }

    /// The full `team-cluster-daemon:message` payload.
    pub fn to_message(&self, team_cluster_id: &str, daemon_password: &str) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), self.message_type().into());
        m.insert("teamClusterId".into(), team_cluster_id.into());
        m.insert("daemonPassword".into(), daemon_password.into());
        if let Value::Object(f) = self.fields() {
            m.extend(f);
        }
        Value::Object(m)
    }

    /// The reference's de-duplication key for buffered delivery
    /// (`ssh-import.job-status:<jobId>:<status>`, …): a buffered event
    /// replaces an older one with the same key.
    pub fn dedupe_key(&self) -> String {
        fn st<T: Serialize>(s: &T) -> String {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        }
        fn ts(t: Option<i64>) -> String {
            t.map_or_else(|| "none".into(), |t| t.to_string())
        }
        match self {
            JobStatusEvent::SshImport(e) => {
                format!("ssh-import.job-status:{}:{}", e.job_id, st(&e.status))
            }
            JobStatusEvent::Analysis(e) => format!(
                "analysis.job-status:{}:{}:{}",
                e.job_id,
                st(&e.status),
                ts(e.timestep)
            ),
            JobStatusEvent::AnalysisCompletion(e) => {
                format!("analysis.job-completion:{}", e.job_id)
            }
            JobStatusEvent::Raster(e) => format!(
                "trajectory.raster-job-status:{}:{}:{}",
                e.job_id,
                st(&e.status),
                ts(e.timestep)
            ),
            JobStatusEvent::Glb(e) => format!(
                "trajectory.glb-job-status:{}:{}:{}",
                e.job_id,
                st(&e.status),
                ts(e.timestep)
            ),
            JobStatusEvent::ArtifactUpload(e) => {
                format!("artifact-upload.job-status:{}:{}", e.job_id, st(&e.status))
            }
        }
    }

    /// The events a job of `queue` with `payload` produces on entering
    /// `status` (see the module table). `error` only accompanies `failed`.
    pub fn for_job(
        queue: QueueName,
        job_id: &str,
        payload: &Value,
        status: JobStatus,
        error: Option<&str>,
    ) -> Vec<JobStatusEvent> {
        let error = error.map(cap_error);
        let run = match status {
            JobStatus::Queued => None,
            JobStatus::Running => Some(RunStatus::Running),
            JobStatus::Completed => Some(RunStatus::Completed),
            JobStatus::Failed => Some(RunStatus::Failed),
        };
        let job_id = job_id.to_owned();
        let team = s(payload, "teamId");
        let trajectory = s(payload, "trajectoryId");
        let mut out = Vec::new();
        match queue {
            QueueName::SshImport => {
                if let (Some(run), Some(team_id), Some(trajectory_id)) = (run, team, trajectory) {
                    out.push(JobStatusEvent::SshImport(SshImportJobStatus {
                        job_id,
                        team_id,
                        trajectory_id,
                        trajectory_name: s(payload, "trajectoryName"),
                        status: run,
                        error,
                    }));
                }
            }
            QueueName::TrajectoryRasterization | QueueName::TrajectoryGlbConversion => {
                if let (Some(run), Some(team_id), Some(trajectory_id)) = (run, team, trajectory) {
                    let e = TrajectoryJobStatus {
                        job_id,
                        team_id,
                        trajectory_id,
                        trajectory_name: s(payload, "trajectoryName"),
                        timestep: timestep(payload),
                        status: run,
                        error,
                    };
                    out.push(if queue == QueueName::TrajectoryRasterization {
                        JobStatusEvent::Raster(e)
                    } else {
                        JobStatusEvent::Glb(e)
                    });
                }
            }
            QueueName::AnalysisProcessing => {
                if let (Some(run), Some(team_id), Some(analysis_id)) =
                    (run, team, s(payload, "analysisId"))
                {
                    let name = s(payload, "name").unwrap_or_else(|| queue.as_str().to_owned());
                    out.push(JobStatusEvent::Analysis(AnalysisJobStatus {
                        job_id: job_id.clone(),
                        name: name.clone(),
                        analysis_id: analysis_id.clone(),
                        team_id: team_id.clone(),
                        trajectory_id: trajectory.clone(),
                        trajectory_name: s(payload, "trajectoryName"),
                        timestep: timestep(payload),
                        status: run,
                        error: error.clone(),
                    }));
                    if status.is_finished() {
                        out.push(JobStatusEvent::AnalysisCompletion(AnalysisJobCompletion {
                            job_id,
                            name,
                            analysis_id,
                            team_id,
                            trajectory_id: trajectory,
                            trajectory_name: s(payload, "trajectoryName"),
                            timestep: timestep(payload),
                            success: status == JobStatus::Completed,
                            error,
                        }));
                    }
                }
            }
            QueueName::ArtifactUpload => {
                if let (Some(team_id), Some(trajectory_id), Some(analysis_id)) =
                    (team, trajectory, s(payload, "analysisId"))
                {
                    out.push(JobStatusEvent::ArtifactUpload(ArtifactUploadJobStatus {
                        job_id,
                        analysis_id,
                        team_id,
                        trajectory_id,
                        status: match status {
                            JobStatus::Queued => UploadStatus::Queued,
                            JobStatus::Running => UploadStatus::Running,
                            JobStatus::Completed => UploadStatus::Completed,
                            JobStatus::Failed => UploadStatus::Failed,
                        },
                        error,
                    }));
                }
            }
            QueueName::PluginWarmup | QueueName::TrajectoryFrameProcessing => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ssh_import_event_has_the_reference_shape() {
        let ev = JobStatusEvent::for_job(
            QueueName::SshImport,
            "j1",
            &json!({"teamId": "t", "trajectoryId": "tr", "trajectoryName": "Run 1"}),
            JobStatus::Failed,
            Some("boom"),
        );
        assert_eq!(ev.len(), 1);
        let m = ev[0].to_message("c1", "pw");
        assert_eq!(
            m,
            json!({"type": "ssh-import-job-status", "teamClusterId": "c1", "daemonPassword": "pw",
                   "jobId": "j1", "teamId": "t", "trajectoryId": "tr", "trajectoryName": "Run 1",
                   "status": "failed", "error": "boom"})
        );
        assert_eq!(ev[0].dedupe_key(), "ssh-import.job-status:j1:failed");
    }

    #[test]
    fn optional_fields_are_absent_not_null() {
        let ev = JobStatusEvent::for_job(
            QueueName::TrajectoryGlbConversion,
            "j",
            &json!({"teamId": "t", "trajectoryId": "tr"}),
            JobStatus::Running,
            None,
        );
        let f = ev[0].fields();
        assert_eq!(ev[0].message_type(), "trajectory-glb-job-status");
        assert!(f.get("trajectoryName").is_none());
        assert!(f.get("timestep").is_none());
        assert!(f.get("error").is_none());
        assert_eq!(
            ev[0].dedupe_key(),
            "trajectory.glb-job-status:j:running:none"
        );
    }

    #[test]
    fn analysis_completion_accompanies_the_final_status() {
        let p = json!({"teamId": "t", "analysisId": "a", "name": "cna", "timestep": 5});
        let running = JobStatusEvent::for_job(
            QueueName::AnalysisProcessing,
            "j",
            &p,
            JobStatus::Running,
            None,
        );
        assert_eq!(running.len(), 1);
        let done = JobStatusEvent::for_job(
            QueueName::AnalysisProcessing,
            "j",
            &p,
            JobStatus::Completed,
            None,
        );
        assert_eq!(done.len(), 2);
        assert_eq!(done[1].message_type(), "analysis-job-completion");
        assert_eq!(done[1].fields()["success"], true);
        assert_eq!(done[0].fields()["timestep"], 5);
    }

    #[test]
    fn missing_ids_produce_no_event() {
        assert!(
            JobStatusEvent::for_job(
                QueueName::SshImport,
                "j",
                &json!({"teamId": "t"}),
                JobStatus::Running,
                None
            )
            .is_empty()
        );
        assert!(
            JobStatusEvent::for_job(
                QueueName::PluginWarmup,
                "j",
                &json!({"teamId": "t"}),
                JobStatus::Running,
                None
            )
            .is_empty()
        );
        // Queued only exists for artifact uploads.
        let p = json!({"teamId": "t", "trajectoryId": "tr", "analysisId": "a"});
        assert!(
            JobStatusEvent::for_job(QueueName::SshImport, "j", &p, JobStatus::Queued, None)
                .is_empty()
        );
        let q =
            JobStatusEvent::for_job(QueueName::ArtifactUpload, "j", &p, JobStatus::Queued, None);
        assert_eq!(q[0].fields()["status"], "queued");
    }
}
