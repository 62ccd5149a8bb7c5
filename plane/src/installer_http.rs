//! What an installer fetches or calls before any daemon runs:
//!
//! * `GET /install.sh` — the Linux installer (it embeds the systemd unit),
//! * `GET /install.ps1` — the Windows stub (reports
//!   `operating-system-not-supported`),
//! * `GET /voltd.service` — the unit alone, byte for byte the one inside
//!   `install.sh`,
//! * `POST /api/team-clusters/{id}/lifecycle` — the reference's HTTP status
//!   report. It exists in the reference server's Gen A route file and was
//!   removed in Gen B, where status reports travel only as
//!   `runtime.lifecycle` on the control socket; an installer that runs
//!   before any daemon has no socket, so volt-plane keeps the Gen A route
//!   (strict body `{daemonPassword, status, installedVersion?}`, status one
//!   of the six public ones). Against a Gen B server it answers 404 and the
//!   installers say the status could not be recorded.

use crate::Plane;
use crate::error::PlaneError;
use crate::http::{ApiResult, success};
use crate::lifecycle::LifecycleIn;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use volt_protocol::ClusterStatus;

/// The Linux installer.
pub const INSTALL_SH: &str = include_str!("../../install/install.sh");
/// The Windows stub.
pub const INSTALL_PS1: &str = include_str!("../../install/install.ps1");
/// The systemd unit (also embedded in [`INSTALL_SH`]).
pub const VOLTD_SERVICE: &str = include_str!("../../install/voltd.service");

/// Statuses the reference's HTTP lifecycle schema (`publicStatusSchema`)
/// accepts.
pub const PUBLIC_STATUSES: [ClusterStatus; 6] = [
    ClusterStatus::PreparingEnvironment,
    ClusterStatus::DependencyInstallationFailed,
    ClusterStatus::OperatingSystemNotSupported,
    ClusterStatus::Deleting,
    ClusterStatus::DeleteFailed,
    ClusterStatus::Disconnected,
];

pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/install.sh", get(install_sh))
        .route("/install.ps1", get(install_ps1))
        .route("/voltd.service", get(voltd_service))
        .route("/api/team-clusters/{id}/lifecycle", post(lifecycle))
}

fn script(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /install.sh`.
///
/// ```text
/// curl -fsSL http://127.0.0.1:8080/install.sh | sudo bash -s -- \
///   --url http://127.0.0.1:8080 --cluster $ID --release-key $KEY
/// ```
async fn install_sh() -> Response {
    script("text/x-shellscript; charset=utf-8", INSTALL_SH)
}

/// `GET /install.ps1`.
async fn install_ps1() -> Response {
    script("text/plain; charset=utf-8", INSTALL_PS1)
}

/// `GET /voltd.service`.
async fn voltd_service() -> Response {
    script("text/plain; charset=utf-8", VOLTD_SERVICE)
}

/// The Gen A body: strict, like the reference's zod schema.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpLifecycle {
    daemon_password: String,
    status: String,
    #[serde(default)]
    installed_version: Option<String>,
}

/// `POST /api/team-clusters/{id}/lifecycle` (see the module docs).
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/team-clusters/$ID/lifecycle \
///   -H 'content-type: application/json' \
///   -d '{"daemonPassword":"'$PW'","status":"operating-system-not-supported"}'
/// ```
async fn lifecycle(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: HttpLifecycle = serde_json::from_slice(&body)
        .map_err(|e| PlaneError::InvalidInput(format!("Invalid request body: {e}")))?;
    if req.daemon_password.trim().is_empty() {
        return Err(PlaneError::InvalidInput("daemonPassword is required".into()).into());
    }
    let public = req
        .status
        .parse::<ClusterStatus>()
        .ok()
        .filter(|s| PUBLIC_STATUSES.contains(s));
    if public.is_none() {
        return Err(PlaneError::InvalidInput(format!(
            "status must be one of {}",
            PUBLIC_STATUSES.map(ClusterStatus::as_str).join(", ")
        ))
        .into());
    }
    if let Some(v) = &req.installed_version
        && (v.trim().is_empty()
            || v.trim().len() > volt_protocol::enrollment::MAX_INSTALLED_VERSION_LEN)
    {
        return Err(
            PlaneError::InvalidInput("installedVersion must be 1..64 characters".into()).into(),
        );
    }
    let dto = plane.store.update_lifecycle(LifecycleIn {
        team_cluster_id: id.clone(),
        daemon_password: req.daemon_password,
        status: req.status,
        installed_version: req.installed_version,
        reason: None,
    })?;
    tracing::info!(cluster_id = %id, status = %dto.status, "Status reported over HTTP.");
    success(StatusCode::OK, json!({ "teamCluster": dto }))
}
