//! Daemon→server commands (`TeamClusterSocketModule.handleDaemonServerCommand`):
//! a `command` message from a registered socket is answered with
//! `{type:"response", requestId, ok:true, status:200, data:{status:"success", data}}`
//! or `{…, ok:false, status, message}`. Every payload carries
//! `teamClusterId` + `daemonPassword` and is re-authenticated.

use crate::Plane;
use crate::error::PlaneError;
use crate::lifecycle::{CredentialsIn, HeartbeatIn, LifecycleIn};
use crate::reverse_channel::DaemonConn;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use volt_protocol::enrollment::HealthcheckRequest;
use volt_protocol::envelope::{CommandMessage, Message, ResponseMessage};
use volt_protocol::heartbeat::{DELETE_COMPLETED_COMMAND, HEARTBEAT_COMMAND, LIFECYCLE_COMMAND};
use volt_protocol::register::Secret;

/// `runtime.config.get`: the daemon's queue and role configuration.
pub const CONFIG_GET_COMMAND: &str = "runtime.config.get";
/// Enrollment over the socket (present in the reference socket module).
pub const HEALTHCHECK_COMMAND: &str = "runtime.healthcheck";
/// Job and artifact reports the reference processes; a local plane runs no
/// job system, so it authenticates and acknowledges them.
pub const REPORT_COMMANDS: [&str; 6] = [
    "analysis.job-complete",
    "analysis.job-status",
    "trajectory.raster-job-status",
    "trajectory.glb-job-status",
    "trajectory.scene-artifact.upsert",
    "trajectory.import-complete",
];
/// The runtime contract version a Gen B daemon expects.
pub const RUNTIME_CONTRACT_VERSION: u32 = 3;

/// The fixed runtime configuration of a local cluster: the reference's
/// defaults (one analysis worker, two rasterizer and GLB workers, one SSH
/// import), role `cluster`, nothing draining.
pub fn runtime_config() -> Value {
    json!({
        "contractVersion": RUNTIME_CONTRACT_VERSION,
        "queueConcurrency": {"analysis": 1, "rasterizer": 2, "glbPreprocessing": 2, "sshImport": 1},
        "roleConfig": {
            "desiredRole": "cluster",
            "effectiveRole": "cluster",
            "runtimeVersion": 1,
            "draining": {"compute": false, "storage": false}
        },
        "effectiveCapabilities": {"compute": true, "storage": true}
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthcheckIn {
    team_cluster_id: String,
    enrollment_token: String,
    #[serde(default)]
    installed_version: Option<String>,
}

fn parse<T: DeserializeOwned>(command: &str, payload: Value) -> Result<T, PlaneError> {
    serde_json::from_value(payload)
        .map_err(|e| PlaneError::InvalidInput(format!("Invalid {command} payload: {e}")))
}

/// Without the `lifecycle-reason` announcement the plane is a strict
/// reference server: `runtime.lifecycle` takes exactly `{teamClusterId,
/// daemonPassword, status, installedVersion?}` (the reference validates it
/// with a strict schema), so any other key is refused.
fn strict_lifecycle(plane: &Plane, payload: &Value) -> Result<(), PlaneError> {
    if plane.cfg.announce_extensions {
        return Ok(());
    }
    const REFERENCE_KEYS: [&str; 4] = [
        "teamClusterId",
        "daemonPassword",
        "status",
        "installedVersion",
    ];
    let extra: Vec<&str> = payload
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .map(String::as_str)
        .filter(|k| !REFERENCE_KEYS.contains(k))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(PlaneError::InvalidInput(format!(
            "Invalid {LIFECYCLE_COMMAND} payload: unknown key(s) {} (no extension was announced)",
            extra.join(", ")
        )))
    }
}

/// Runs one daemon→server command and emits its response on `conn`.
pub(crate) fn handle(plane: &Plane, conn: &DaemonConn, cmd: CommandMessage) {
    let CommandMessage {
        request_id,
        command,
        payload,
        ..
    } = cmd;
    let payload = payload.unwrap_or_else(|| Value::Object(Map::new()));
    let store = &plane.store;
    let result: Option<Result<Value, PlaneError>> = match command.as_str() {
        HEARTBEAT_COMMAND => Some(
            parse::<HeartbeatIn>(&command, payload)
                .and_then(|hb| store.record_heartbeat(hb))
                .map(|dto| json!({ "teamCluster": dto })),
        ),
        LIFECYCLE_COMMAND => Some(
            strict_lifecycle(plane, &payload)
                .and_then(|()| parse::<LifecycleIn>(&command, payload))
                .and_then(|lc| store.update_lifecycle(lc))
                .map(|dto| json!({ "teamCluster": dto })),
        ),
        DELETE_COMPLETED_COMMAND => Some(
            parse::<CredentialsIn>(&command, payload)
                .and_then(|c| store.complete_deletion(&c.team_cluster_id, &c.daemon_password))
                .map(|()| json!({ "success": true })),
        ),
        CONFIG_GET_COMMAND => plane.cfg.runtime_config.clone().map(|config| {
            if store.contains(&conn.cluster_id) {
                Ok(config)
            } else {
                Err(PlaneError::NotFound)
            }
        }),
        HEALTHCHECK_COMMAND => Some(parse::<HealthcheckIn>(&command, payload).and_then(|h| {
            let req = HealthcheckRequest {
                enrollment_token: Secret::new(h.enrollment_token),
                installed_version: h.installed_version,
            };
            req.validate().map_err(PlaneError::InvalidInput)?;
            let (dto, password) = plane.enroll(&h.team_cluster_id, &req)?;
            Ok(json!({ "teamCluster": dto, "daemonPassword": password }))
        })),
        c if REPORT_COMMANDS.contains(&c) => Some(
            parse::<CredentialsIn>(&command, payload)
                .and_then(|c| store.authenticate(&c.team_cluster_id, &c.daemon_password))
                .map(|()| json!({ "acknowledged": true })),
        ),
        _ => None,
    };
    let response = match result {
        Some(Ok(data)) => ResponseMessage::success(request_id, data),
        Some(Err(e)) => {
            tracing::debug!(cluster_id = %conn.cluster_id, %command, error = %e, "Daemon command failed.");
            ResponseMessage::failure(request_id, e.http_status(), e.to_string())
        }
        None => {
            tracing::debug!(cluster_id = %conn.cluster_id, %command, "Unknown daemon server command.");
            ResponseMessage::failure(
                request_id,
                404,
                format!("Unknown daemon server command: {command}"),
            )
        }
    };
    if let Err(e) = conn.emit(&Message::Response(response)) {
        tracing::debug!(cluster_id = %conn.cluster_id, error = %e, "Cannot answer a daemon command.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_has_the_gen_b_shape() {
        let c = runtime_config();
        assert_eq!(c["contractVersion"], 3);
        assert_eq!(c["queueConcurrency"]["glbPreprocessing"], 2);
        assert_eq!(c["roleConfig"]["draining"]["storage"], false);
        assert_eq!(c["effectiveCapabilities"]["compute"], true);
    }
}
