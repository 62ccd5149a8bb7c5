//! The self-check: a candidate release proves it can run on this host and
//! read this host's configuration and state before anything switches to it.
//!
//! The updater runs `<candidate> self-check --config <the daemon's config>`
//! ([`run_candidate`]); the candidate's `voltd self-check` subcommand calls
//! [`check`] and exits 0 (fit) or 1 (with the problem on stderr). Nothing
//! here writes outside a probe file in the state directory, connects to
//! the server or starts a service.

use super::UpdateError;
use crate::config::Settings;
use serde::Serialize;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a candidate may take to check itself: it reads two small
/// files; 30 s covers a cold disk and a loaded 2-core host.
pub const SELF_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Output of the candidate kept for the failure reason.
const MAX_OUTPUT: usize = 4096;

/// What `voltd self-check` found (printed as JSON on success).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub version: String,
    pub cluster_id: String,
    pub state_dir: String,
    pub enrolled: bool,
    pub manifest: bool,
}

/// The checks of `voltd self-check` on already loaded settings: the state
/// directory exists and is writable, and the stored credentials and install
/// manifest (when present) parse. Blocking.
pub fn check(settings: &Settings) -> Result<Report, String> {
    let dir = &settings.state_dir;
    let meta =
        std::fs::metadata(dir).map_err(|e| format!("state directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "state directory {} is not a directory",
            dir.display()
        ));
    }
    let probe = dir.join(format!(".self-check-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("state directory {} is not writable: {e}", dir.display()))?;
    let creds = crate::cloud::credentials::CredentialStore::detect()
        .peek(&settings.credentials_file())
        .map_err(|e| format!("stored credentials: {e}"))?;
    let manifest = crate::cloud::credentials::load_manifest(&settings.manifest_file())
        .map_err(|e| format!("stored install manifest: {e}"))?;
    Ok(Report {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        cluster_id: settings.team_cluster_id.to_string(),
        state_dir: dir.display().to_string(),
        enrolled: creds.is_some(),
        manifest: manifest.is_some(),
    })
}

/// Runs `binary self-check [--config file]` (an argument vector, no shell)
/// and succeeds only on exit status 0 within `timeout`.
pub async fn run_candidate(
    binary: &Path,
    config_file: Option<&Path>,
    timeout: Duration,
) -> Result<(), UpdateError> {
    let mut cmd = tokio::process::Command::new(binary);
    if let Some(c) = config_file {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("self-check")
        // The candidate must not talk to systemd on the daemon's behalf.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_PID")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = crate::host::spawn::spawn(&mut cmd).await.map_err(|e| {
        UpdateError::SelfCheckFailed(format!("cannot run {}: {e}", binary.display()))
    })?;
    let mut stderr = child.stderr.take();
    let run = async {
        let mut out = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(MAX_OUTPUT as u64).read_to_end(&mut out).await;
        }
        let status = child.wait().await;
        (status, out)
    };
    let (status, out) = tokio::time::timeout(timeout, run).await.map_err(|_| {
        UpdateError::SelfCheckFailed(format!("no answer within {} s", timeout.as_secs()))
    })?;
    let status = status.map_err(|e| UpdateError::SelfCheckFailed(e.to_string()))?;
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out);
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
    Err(UpdateError::SelfCheckFailed(if tail.is_empty() {
        format!("{status}")
    } else {
        format!("{status}: {tail}")
    }))
}
