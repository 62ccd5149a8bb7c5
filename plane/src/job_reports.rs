//! Job status events a daemon sends (volt-protocol.md §5.2:
//! `ssh-import-job-status`, `analysis-job-status`, `analysis-job-completion`,
//! `trajectory-raster-job-status`, `trajectory-glb-job-status`,
//! `artifact-upload-job-status`). The reference forwards them to its job
//! system; a local plane has none, so it authenticates them and keeps the
//! last [`KEPT_JOB_EVENTS`] per cluster in memory for people and tests:
//! `GET /api/clusters/{id}/job-events`, [`crate::PlaneHandle::job_events`].
//!
//! Like the newest server, an event whose `teamClusterId` is not the
//! socket's cluster is ignored; so is one with a wrong `daemonPassword`
//! (the password is never kept).

use crate::Plane;
use crate::clock::Timestamp;
use crate::error::PlaneError;
use crate::http::{ApiResult, success};
use crate::store::Store;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use volt_protocol::envelope::ReportKind;

/// Job events kept per cluster (oldest dropped first).
pub const KEPT_JOB_EVENTS: usize = 1000;

/// One job status event as received (without the daemon password).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEventView {
    /// The message `type` (`ssh-import-job-status`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub received_at: Timestamp,
    /// Every other field of the message (`jobId`, `status`, …).
    pub fields: Map<String, Value>,
}

/// Whether a report kind is a job status event.
pub(crate) fn is_job_event(kind: ReportKind) -> bool {
    matches!(
        kind,
        ReportKind::SshImportJobStatus
            | ReportKind::AnalysisJobStatus
            | ReportKind::AnalysisJobCompletion
            | ReportKind::TrajectoryRasterJobStatus
            | ReportKind::TrajectoryGlbJobStatus
            | ReportKind::ArtifactUploadJobStatus
    )
}

impl Store {
    /// Records a job event the daemon of `socket_cluster` sent.
    pub(crate) fn record_job_event(
        &self,
        socket_cluster: &str,
        kind: ReportKind,
        mut fields: Map<String, Value>,
    ) -> Result<(), PlaneError> {
        let claimed = fields.get("teamClusterId").and_then(Value::as_str);
        if claimed != Some(socket_cluster) {
            return Err(PlaneError::InvalidInput(
                "teamClusterId is not the registered cluster".into(),
            ));
        }
        let password = match fields.remove("daemonPassword") {
            Some(Value::String(p)) => p,
            _ => return Err(PlaneError::DaemonUnauthorized),
        };
        self.authenticate(socket_cluster, &password)?;
        let mut map = self.lock();
        let c = map.get_mut(socket_cluster).ok_or(PlaneError::NotFound)?;
        if c.rt.job_events.len() >= KEPT_JOB_EVENTS {
            c.rt.job_events.pop_front();
        }
        c.rt.job_events.push_back(JobEventView {
            kind: kind.as_str().to_owned(),
            received_at: Timestamp::now(),
            fields,
        });
        Ok(())
    }
}

impl Plane {
    /// The job events of cluster `id`, oldest first.
    pub fn job_events(&self, id: &str) -> Option<Vec<JobEventView>> {
        self.store
            .read(id, |c| c.rt.job_events.iter().cloned().collect())
    }
}

pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new().route("/api/clusters/{id}/job-events", get(list))
}

async fn list(State(plane): State<Arc<Plane>>, Path(id): Path<String>) -> ApiResult {
    success(
        StatusCode::OK,
        plane.job_events(&id).ok_or(PlaneError::NotFound)?,
    )
}
