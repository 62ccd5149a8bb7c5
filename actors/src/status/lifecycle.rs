//! Runtime actions the server asks for: uninstall and update.
//!
//! Uninstall (`runtime.uninstall`), the native-host version of the
//! reference's "remove the compose project and the install directory":
//! stop the managed services, delete `<install root>/<cluster id>` and the
//! daemon's state (credentials, manifest, service data), tell the server
//! with `runtime.delete-completed`, leave an `uninstalled` marker so a reboot
//! does not bring the daemon back, and exit 0. On failure the daemon reports
//! `delete-failed` with the reason and exits with the retryable code.
//!
//! Update (`runtime.update`): run the configured update command, an
//! argument vector that receives the target version as its last argument
//! (no shell, the image is not passed: `update::hook`); success exits with
//! the updating code so the service manager starts the new version,
//! failure reports `update-failed`. The signed self-update (`update/`)
//! replaces this in phase 2 where no hook is configured.

use crate::api::vocab::{ActionStage, RuntimeAction};
use crate::api::{CredentialsCell, Handle, Outbox, SendCommand};
use crate::cloud::credentials::UNINSTALLED_MARKER;
use crate::config::Settings;
use crate::events::{Event, EventBus};
use crate::host::fsutil::{SECRET_FILE_MODE, write_atomic};
use crate::services::ServiceRegistry;
use otp::ExitCode;
use otp::supervisor::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use volt_protocol::ClusterStatus;
use volt_protocol::heartbeat::{
    DELETE_COMPLETED_COMMAND, DeleteCompletedPayload, LIFECYCLE_COMMAND, LifecyclePayload,
};

/// Longest an update command may run before it counts as failed.
pub const UPDATE_COMMAND_TIMEOUT: Duration = crate::update::hook::HOOK_TIMEOUT;
/// How long the final report to the server may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the runtime actions need (built once by `daemon.rs`).
pub struct Lifecycle {
    pub settings: Arc<Settings>,
    pub bus: EventBus,
    pub outbox: Outbox,
    pub credentials: CredentialsCell,
    pub services: ServiceRegistry,
    /// The root supervisor (to end the process with an exit code).
    pub root: Handle<Shutdown>,
}

fn emit(ctx: &Lifecycle, action: RuntimeAction, stage: ActionStage, detail: Option<String>) {
    ctx.bus.emit(Event::RuntimeAction {
        action,
        stage,
        detail,
    });
}

async fn report_status(ctx: &Lifecycle, status: ClusterStatus, reason: Option<String>) {
    let Some(creds) = ctx.credentials.get() else {
        return;
    };
    let payload = LifecyclePayload {
        team_cluster_id: creds.team_cluster_id,
        daemon_password: creds.daemon_password,
        status,
        installed_version: Some(ctx.settings.installed_version.to_string()),
        reason: reason.clone(),
    };
    let Ok(payload) = serde_json::to_value(payload) else {
        return;
    };
    match ctx
        .outbox
        .command(SendCommand::new(LIFECYCLE_COMMAND, payload).timeout(REPORT_TIMEOUT))
        .await
    {
        Ok(v) => {
            let server_status = v
                .pointer("/teamCluster/status")
                .and_then(|s| s.as_str())
                .and_then(|s| s.parse().ok());
            ctx.bus.emit(Event::LifecycleReported {
                status,
                server_status,
                reason,
            });
        }
        Err(e) => tracing::warn!(%status, error = %e, "Could not report the status."),
    }
}

fn shutdown(ctx: &Lifecycle, code: ExitCode, reason: &'static str) {
    ctx.root.do_send(Shutdown { code, reason });
}

/// A directory voltd may delete: absolute, not `/`, not a parent of itself.
fn removable(dir: &Path) -> bool {
    dir.is_absolute()
        && dir.components().count() >= 3
        && !dir
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    if !removable(dir) {
        return Err(format!("refusing to delete {}", dir.display()));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot delete {}: {e}", dir.display())),
    }
}

fn remove_file(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot delete {}: {e}", path.display())),
    }
}

/// What uninstall deletes: the install directory, the state files and the
/// managed services' data directories (of the services voltd runs) plus
/// `<state dir>/services` (pid files, generated configs and passwords).
pub fn uninstall_targets(ctx: &Lifecycle) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let s = &ctx.settings;
    let mut dirs = vec![s.install_dir()];
    dirs.extend(s.services.owned_data_dirs(&s.state_dir));
    dirs.push(s.services_dir());
    let files = vec![s.credentials_file(), s.manifest_file()];
    (dirs, files)
}

/// Deletes the directories, then (only if that worked) the files, then
/// leaves the uninstalled marker. Blocking; returns the errors.
fn remove_all(dirs: &[PathBuf], files: &[PathBuf], marker: &Path, note: &str) -> Vec<String> {
    let mut errors: Vec<String> = dirs.iter().filter_map(|d| remove_dir(d).err()).collect();
    if errors.is_empty() {
        errors.extend(files.iter().filter_map(|f| remove_file(f).err()));
    }
    if errors.is_empty()
        && let Err(e) = write_atomic(marker, note.as_bytes(), SECRET_FILE_MODE)
    {
        tracing::warn!(error = %e, "Could not write the uninstalled marker.");
    }
    errors
}

/// Runs the uninstall (see the module docs).
pub async fn uninstall(ctx: &Lifecycle, reason: Option<String>) {
    emit(
        ctx,
        RuntimeAction::Uninstall,
        ActionStage::Started,
        reason.clone(),
    );
    // Report `deleting` now: the server already moved there when it got our
    // `{accepted:true}`; the report records why.
    report_status(ctx, ClusterStatus::Deleting, reason).await;

    // The servers must be down before their data directories go.
    ctx.services.stop_all().await;
    let (dirs, files) = uninstall_targets(ctx);
    // Credentials go last among the files but are read first: the
    // completion report needs them.
    let creds = ctx.credentials.get();
    let marker = ctx.settings.state_dir.join(UNINSTALLED_MARKER);
    let note = format!(
        "cluster {} was uninstalled at {}; remove this file to enroll again\n",
        ctx.settings.team_cluster_id,
        crate::host::clock::now_iso()
    );
    // Deleting data directories can take long: off the actor thread.
    let errors = tokio::task::spawn_blocking(move || remove_all(&dirs, &files, &marker, &note))
        .await
        .unwrap_or_else(|e| vec![format!("the removal task failed: {e}")]);
    if !errors.is_empty() {
        let detail = errors.join("; ");
        emit(
            ctx,
            RuntimeAction::Uninstall,
            ActionStage::Failed,
            Some(detail.clone()),
        );
        report_status(ctx, ClusterStatus::DeleteFailed, Some(detail)).await;
        shutdown(ctx, ExitCode::Retryable, "uninstall failed");
        return;
    }
    if let Some(creds) = creds {
        let payload = DeleteCompletedPayload {
            team_cluster_id: creds.team_cluster_id,
            daemon_password: creds.daemon_password,
        };
        if let Ok(payload) = serde_json::to_value(payload)
            && let Err(e) = ctx
                .outbox
                .command(
                    SendCommand::new(DELETE_COMPLETED_COMMAND, payload).timeout(REPORT_TIMEOUT),
                )
                .await
        {
            tracing::warn!(error = %e, "Could not confirm the deletion to the server.")
        }
    }
    emit(ctx, RuntimeAction::Uninstall, ActionStage::Completed, None);
    shutdown(ctx, ExitCode::Stopped, "uninstalled");
}

/// Runs the update (see the module docs).
pub async fn update(ctx: &Lifecycle, version: &str, _image: Option<&str>) {
    let Some(argv) = ctx.settings.update_command.clone() else {
        return;
    };
    emit(
        ctx,
        RuntimeAction::Update,
        ActionStage::Started,
        Some(version.to_owned()),
    );
    let outcome = crate::update::hook::run(&argv, version, UPDATE_COMMAND_TIMEOUT).await;
    match outcome {
        Ok(()) => {
            emit(
                ctx,
                RuntimeAction::Update,
                ActionStage::Completed,
                Some(version.to_owned()),
            );
            shutdown(
                ctx,
                ExitCode::Updating,
                "updated; restarting into the new version",
            );
        }
        Err(detail) => {
            emit(
                ctx,
                RuntimeAction::Update,
                ActionStage::Failed,
                Some(detail.clone()),
            );
            report_status(ctx, ClusterStatus::UpdateFailed, Some(detail)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deep_absolute_paths_are_removable() {
        assert!(removable(Path::new("/opt/volt/team-clusters/c1")));
        assert!(removable(Path::new("/var/lib")));
        assert!(!removable(Path::new("/")));
        assert!(!removable(Path::new("/opt")));
        assert!(!removable(Path::new("relative/dir/x")));
        assert!(!removable(Path::new("/opt/volt/../../etc")));
    }

    #[test]
    fn removing_missing_things_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(remove_dir(&dir.path().join("gone")).is_ok());
        assert!(remove_file(&dir.path().join("gone.txt")).is_ok());
        let sub = dir.path().join("sub/deeper");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), b"x").unwrap();
        remove_dir(&dir.path().join("sub")).unwrap();
        assert!(!dir.path().join("sub").exists());
    }
}
