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
//! Update (`runtime.update {targetVersion}`; `targetImage` is not used):
//! the signed self-update (`update/`: fetch from the release channel,
//! verify against the pinned key and the SHA-256, self-check, swap keeping
//! the previous release) when voltd runs from its install directory and a
//! key is pinned; or, where `update_command` is configured (a host whose
//! binary a package manager or configuration management owns), that
//! argument vector with the version as one more argument — no shell
//! either way. Success exits with the updating code (3) so the service
//! manager starts the new version; failure leaves the running version as
//! it is and reports `update-failed` with the reason. One update at a time.
//!
//! After start-up ([`after_start`]): readiness goes to systemd once
//! registered, a release on trial commits on its first registration, and a
//! restored release (its successor was rolled back) reports
//! `update-failed` once registered.

use super::actor::Announced;
use crate::api::vocab::{ActionStage, RuntimeAction};
use crate::api::{CredentialsCell, Handle, Outbox, SendCommand};
use crate::cloud::credentials::UNINSTALLED_MARKER;
use crate::config::Settings;
use crate::events::{Delivery, Event, EventBus};
use crate::host::fsutil::{SECRET_FILE_MODE, write_atomic};
use crate::host::keystore::sealed_path;
use crate::host::notify::Notifier;
use crate::services::ServiceRegistry;
use crate::update::install::InstallLayout;
use crate::update::marker::{self, Startup, TrialWatchdog};
use crate::update::{UpdateConfig, UpdateError, selfcheck};
use futures_util::StreamExt;
use otp::supervisor::Shutdown;
use otp::{ExitCode, SupervisorEvent};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use volt_protocol::ClusterStatus;
use volt_protocol::heartbeat::{
    DELETE_COMPLETED_COMMAND, DeleteCompletedPayload, LIFECYCLE_COMMAND, LifecyclePayload,
};
use volt_protocol::register::Extensions;

/// Longest an update command may run before it counts as failed.
pub const UPDATE_COMMAND_TIMEOUT: Duration = crate::update::hook::HOOK_TIMEOUT;
/// How long the final report to the server may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer the start may take, told to systemd while the daemon is
/// not registered yet (the unit's `TimeoutStartSec=` is the same 120 s): a
/// host whose server is offline keeps starting, a daemon wedged before it
/// could say so is killed and restarted. A release on trial never extends —
/// systemd's timeout is the backstop of its registration deadline.
pub const START_EXTENSION: Duration = Duration::from_secs(120);
/// How often the extension is renewed (well inside [`START_EXTENSION`]).
pub const START_EXTENSION_EVERY: Duration = Duration::from_secs(60);

/// What the runtime actions need (built once by `daemon.rs`).
pub struct Lifecycle {
    pub settings: Arc<Settings>,
    pub bus: EventBus,
    pub outbox: Outbox,
    pub credentials: CredentialsCell,
    pub services: ServiceRegistry,
    /// The root supervisor (to end the process with an exit code).
    pub root: Handle<Shutdown>,
    /// What the server announced (lifecycle reports carry only that).
    pub announced: Announced,
    /// An update is under way (a second request is refused).
    pub updating: Cell<bool>,
}

fn emit(ctx: &Lifecycle, action: RuntimeAction, stage: ActionStage, detail: Option<String>) {
    ctx.bus.emit(Event::RuntimeAction {
        action,
        stage,
        detail,
    });
}

async fn report_status(ctx: &Lifecycle, status: ClusterStatus, reason: Option<String>) {
    report_status_to(ctx, status, reason, ctx.announced.get()).await;
}

/// [`report_status`] for a server that announced `extensions`.
async fn report_status_to(
    ctx: &Lifecycle,
    status: ClusterStatus,
    reason: Option<String>,
    extensions: Extensions,
) {
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
    let payload = payload.to_wire(&extensions);
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
/// `<state dir>/services` (pid files, generated passwords), the sealed
/// forms of the state files and the fallback runtime directory.
pub fn uninstall_targets(ctx: &Lifecycle) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let s = &ctx.settings;
    let mut dirs = vec![s.install_dir()];
    dirs.extend(s.services.owned_data_dirs(&s.state_dir));
    dirs.push(s.services_dir());
    // The runtime directory where systemd gives none (systemd removes its own).
    dirs.push(
        s.state_dir
            .join(crate::services::resolve::FALLBACK_RUNTIME_DIR),
    );
    let files = [s.credentials_file(), s.manifest_file()]
        .into_iter()
        .flat_map(|f| [sealed_path(&f), f])
        .collect();
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

/// How `runtime.update` is carried out on this host.
pub enum UpdateMethod {
    /// The operator's `update_command` (argument vector).
    Hook(Vec<String>),
    /// The signed self-update.
    Signed(Box<UpdateConfig>),
}

/// Decides how an update would run here, or why it cannot (the reason of
/// `{accepted: false}`). Reads the pinned key off the actor thread.
pub async fn update_method(ctx: &Lifecycle) -> Result<UpdateMethod, String> {
    if ctx.updating.get() {
        return Err("an update is already in progress".into());
    }
    if let Some(argv) = &ctx.settings.update_command {
        return Ok(UpdateMethod::Hook(argv.clone()));
    }
    let settings = ctx.settings.clone();
    tokio::task::spawn_blocking(move || signed_config(&settings))
        .await
        .map_err(|e| format!("cannot check the update set-up: {e}"))?
        .map(|cfg| UpdateMethod::Signed(Box::new(cfg)))
}

/// The signed update's configuration, if this host can update itself:
/// voltd runs from `<install_dir>/releases/<v>/`, a release key is pinned,
/// the channel is https (or http on loopback). Blocking.
pub fn signed_config(s: &Settings) -> Result<UpdateConfig, String> {
    let layout = InstallLayout::new(s.update.install_dir.to_path_buf(), s.state_dir.clone());
    if layout.running_release().is_none() {
        return Err(format!(
            "updates are not enabled on this host: voltd does not run from {} (install it with install.sh, or configure update_command)",
            layout.releases_dir().display()
        ));
    }
    let key = crate::update::load_pinned_key(&s.update.key_file).map_err(|e| e.to_string())?;
    let channel = s.update_channel();
    crate::provision::catalogue::check_url(&channel).map_err(|e| format!("update channel: {e}"))?;
    let platform = volt_protocol::release::Platform::current().map_err(|e| e.to_string())?;
    Ok(UpdateConfig {
        channel,
        key,
        platform,
        layout,
        config_file: s.config_file.clone(),
        self_check_timeout: selfcheck::SELF_CHECK_TIMEOUT,
    })
}

/// The signed update up to the swap (see [`crate::update`]).
async fn signed_update(
    ctx: &Lifecycle,
    cfg: &UpdateConfig,
    version: &str,
) -> Result<(), UpdateError> {
    let settings = ctx.settings.clone();
    let downloader = tokio::task::spawn_blocking(move || {
        crate::cloud::tls::install_default_provider();
        let opts = crate::host::download::DownloadOptions::default();
        let roots = crate::cloud::tls::client_config(settings.socket.ca_file.as_deref())
            .map_err(|e| UpdateError::NotConfigured(e.to_string()))?;
        let client = crate::cloud::tls::download_client(&roots, opts.connect_timeout)
            .map_err(|e| UpdateError::NotConfigured(e.to_string()))?;
        Ok::<_, UpdateError>(crate::host::download::Downloader::with_client(client, opts))
    })
    .await
    .map_err(|e| UpdateError::Io(e.to_string()))??;
    let staged = crate::update::prepare(cfg, &downloader, version).await?;
    let layout = cfg.layout.clone();
    tokio::task::spawn_blocking(move || crate::update::activate(&layout, &staged))
        .await
        .map_err(|e| UpdateError::Io(e.to_string()))?
}

/// Runs the update (see the module docs).
pub async fn update(ctx: &Lifecycle, method: UpdateMethod, version: &str) {
    if ctx.updating.replace(true) {
        return;
    }
    emit(
        ctx,
        RuntimeAction::Update,
        ActionStage::Started,
        Some(version.to_owned()),
    );
    let outcome = match &method {
        UpdateMethod::Hook(argv) => {
            crate::update::hook::run(argv, version, UPDATE_COMMAND_TIMEOUT).await
        }
        UpdateMethod::Signed(cfg) => signed_update(ctx, cfg, version)
            .await
            .map_err(|e| e.reason()),
    };
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
            ctx.updating.set(false);
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

/// What start-up found about updates, for [`after_start`].
pub struct StartupUpdate {
    pub layout: InstallLayout,
    pub startup: Startup,
    /// Armed while this process is a release on trial; taken by the commit.
    pub trial: Rc<RefCell<Option<TrialWatchdog>>>,
}

/// Follows the log stream from start-up: until the first registration
/// extends systemd's start timeout (not on trial); at the first
/// registration tells systemd the daemon is ready, commits a release on
/// trial, and has a restored release report `update-failed`; at shutdown
/// tells systemd it is stopping and ends.
pub async fn after_start(ctx: Rc<Lifecycle>, update: StartupUpdate, notifier: Notifier) {
    let on_trial = matches!(update.startup, Startup::Trial { .. });
    let extend_start = || {
        if let Err(e) = notifier.extend_timeout(START_EXTENSION) {
            tracing::debug!(error = %e, "Cannot extend the start timeout.");
        }
    };
    if !on_trial {
        extend_start();
    }
    let mut extend = tokio::time::interval_at(
        tokio::time::Instant::now() + START_EXTENSION_EVERY,
        START_EXTENSION_EVERY,
    );
    let mut events = ctx.bus.subscribe_control();
    // Anything already emitted first (subscribed before reading: no gap).
    let mut backlog: Vec<Event> = ctx
        .bus
        .recent(usize::MAX)
        .iter()
        .map(|r| r.event.clone())
        .collect();
    let mut registered = false;
    let mut update = Some(update);
    loop {
        let event = if backlog.is_empty() {
            tokio::select! {
                next = events.next() => match next {
                    Some(Delivery::Record(r)) => r.event.clone(),
                    Some(Delivery::Lagged(_)) => continue,
                    None => return,
                },
                _ = extend.tick(), if !registered && !on_trial => {
                    extend_start();
                    continue;
                }
            }
        } else {
            backlog.remove(0)
        };
        match event {
            Event::Registered {
                cluster_id,
                extensions,
                ..
            } if !registered => {
                registered = true;
                if let Err(e) = notifier.ready(&format!("Registered as cluster {cluster_id}")) {
                    tracing::warn!(error = %e, "Cannot tell systemd the daemon is ready.");
                }
                if let Some(u) = update.take() {
                    // This registration's announcement (the status actor
                    // may not have seen the event yet).
                    settle_update(&ctx, u, extensions).await;
                }
            }
            Event::Supervisor(SupervisorEvent::ShutdownStarted { .. }) => {
                let _ = notifier.stopping();
                // Nothing left to settle: the process is ending.
                return;
            }
            _ => {}
        }
    }
}

/// The first registration of this process settles an update story.
async fn settle_update(ctx: &Lifecycle, u: StartupUpdate, extensions: Extensions) {
    match u.startup {
        Startup::Normal => {}
        Startup::Trial { from, to } => {
            let Some(watchdog) = u.trial.borrow_mut().take() else {
                return;
            };
            let layout = u.layout.clone();
            match tokio::task::spawn_blocking(move || watchdog.commit(&layout)).await {
                Ok(Ok(())) => {
                    tracing::info!(%from, %to, "Update committed: the new release registered.")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "Cannot commit the update."),
                Err(e) => tracing::error!(error = %e, "The commit task failed."),
            }
        }
        Startup::RolledBack { from, to, reason } => {
            tracing::warn!(%from, %to, %reason, "The update was rolled back; reporting update-failed.");
            emit(
                ctx,
                RuntimeAction::Update,
                ActionStage::Failed,
                Some(reason.clone()),
            );
            report_status_to(ctx, ClusterStatus::UpdateFailed, Some(reason), extensions).await;
            let layout = u.layout.clone();
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || marker::acknowledge(&layout)).await
            {
                tracing::warn!(error = %e, "Cannot remove the update marker.");
            }
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
