//! Signed self-update with automatic rollback.
//!
//! `runtime.update {targetVersion}` (`status/lifecycle.rs`) runs, in order:
//!
//! 1. **fetch** `<channel>/voltd/<version>/<os>/<arch>/manifest.json` (the
//!    channel defaults to the server's `/downloads`), capped at
//!    [`volt_protocol::release::MAX_MANIFEST_BYTES`];
//! 2. **verify** its ed25519 signature against the key pinned at install
//!    time ([`DEFAULT_KEY_FILE`], root-owned, read-only to the daemon under
//!    the unit's `ProtectSystem=strict`), and that it names exactly the
//!    requested version and this platform;
//! 3. **download** `…/voltd` into a staging directory beside the releases
//!    (same filesystem, so the final rename is atomic) with the shared
//!    downloader (`host/download.rs`: resume, idle timeout, SHA-256): a
//!    `Content-Length` other than the signed size is refused at once, more
//!    bytes than signed are refused, fewer are a truncated download, a
//!    different SHA-256 is refused, and nothing unverified is ever at the
//!    binary's path;
//! 4. **self-check**: run `<new binary> self-check --config <config>`
//!    (argument vector, no shell) with a timeout: it must start, read this
//!    host's config and state and exit 0 ([`selfcheck`]);
//! 5. **swap** ([`install`], [`marker`]): write the pending-update marker,
//!    point `previous` at the running release and `current` at the new one
//!    (each an atomic symlink rename), exit with code 3 so systemd restarts
//!    the unit into `current`.
//!
//! A failure in 1–4 leaves everything as it was (the staging directory is
//! removed) and is reported as `update-failed` with [`UpdateError::reason`].
//!
//! # Rollback, with no person involved
//!
//! The marker (`<state dir>/update.json`, see [`marker`]) says "release V
//! is on trial, replacing U, started N times". Three parties read it:
//!
//! * **the guard** — `ExecStartPre=-/opt/voltd/previous/voltd update-guard`
//!   in the unit. It runs before *every* start, from the *previous* binary
//!   (the one that ran well enough to perform the update), so a new binary
//!   that crashes at once, cannot even be executed, or panics before it
//!   reads anything is still counted: each start increments the marker's
//!   boot counter, and the start after [`marker::MAX_TRIAL_STARTS`] failed
//!   ones swaps `current` back and marks the marker rolled back;
//! * **the new binary** — at start it sees itself on trial and arms a
//!   [`marker::TrialWatchdog`] on its own OS thread (so a wedged async
//!   runtime cannot stop it): registration within
//!   [`marker::REGISTER_DEADLINE`] commits the update (marker removed,
//!   `installedVersion` is the new version, the server sees `connected`);
//!   otherwise it rolls back itself and exits 3;
//! * **the restored binary** — at start it finds a rolled-back marker and,
//!   once registered, reports `update-failed` with the reason, then removes
//!   the marker.
//!
//! The previous release stays installed after a commit (one older release
//! is kept for a manual `ln -sfn`), older ones are removed.
//!
//! Without systemd, another supervisor must run `voltd update-guard` before
//! each start to get crash counting; the in-process watchdog works anyway.

pub mod hook;
pub mod install;
pub mod marker;
pub mod selfcheck;

use crate::host::download::{DownloadError, DownloadRequest, Downloader, Sha256Digest, redact_url};
use install::InstallLayout;
use std::path::{Path, PathBuf};
use std::time::Duration;
use volt_protocol::release::{
    MAX_MANIFEST_BYTES, Platform, PublicKey, ReleaseManifest, VerifiedRelease, validate_version,
};

/// Where the installer pins the release key (base64 of the raw ed25519
/// key, one line). Root-owned: the daemon can read it, never change it.
/// The `[update] key_file` default.
pub const DEFAULT_KEY_FILE: &str = crate::config::host::DEFAULT_RELEASE_KEY_FILE;
/// The path below the cloud URL that is the default release channel.
pub const DEFAULT_CHANNEL_PATH: &str = crate::config::host::DEFAULT_CHANNEL_PATH;
/// Mode of an installed release binary.
const BINARY_MODE: u32 = 0o755;

/// Why an update did not happen. [`UpdateError::code`] is stable; the
/// `update-failed` reason is [`UpdateError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("updates are not set up on this host: {0}")]
    NotConfigured(String),
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("cannot download {url}: {detail}")]
    Network { url: String, detail: String },
    #[error("{0}")]
    InvalidManifest(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    WrongRelease(String),
    #[error("the download is larger than the signed size of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the download ended after {got} of {expected} bytes")]
    Truncated { expected: u64, got: u64 },
    #[error("SHA-256 mismatch: expected {expected}, got {got}")]
    ChecksumMismatch { expected: String, got: String },
    #[error("the new version's self-check failed: {0}")]
    SelfCheckFailed(String),
    #[error("{0}")]
    Io(String),
}

impl UpdateError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::NotConfigured(_) => "not-configured",
            UpdateError::HttpStatus { .. } => "http-status",
            UpdateError::Network { .. } => "network",
            UpdateError::InvalidManifest(_) => "invalid-manifest",
            UpdateError::BadSignature(_) => "bad-signature",
            UpdateError::WrongRelease(_) => "wrong-release",
            UpdateError::TooLarge { .. } => "too-large",
            UpdateError::Truncated { .. } => "truncated",
            UpdateError::ChecksumMismatch { .. } => "checksum-mismatch",
            UpdateError::SelfCheckFailed(_) => "self-check-failed",
            UpdateError::Io(_) => "io",
        }
    }

    /// `<code>: <message>`: the `update-failed` reason.
    pub fn reason(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

impl From<DownloadError> for UpdateError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::HttpStatus { url, status } => UpdateError::HttpStatus { url, status },
            DownloadError::ChecksumMismatch {
                expected, actual, ..
            } => UpdateError::ChecksumMismatch {
                expected: expected.to_string(),
                got: actual.to_string(),
            },
            // The server announced another size than the signed one.
            DownloadError::SizeMismatch {
                expected, actual, ..
            } if actual < expected => UpdateError::Truncated {
                expected,
                got: actual,
            },
            DownloadError::SizeMismatch { expected, .. } => {
                UpdateError::TooLarge { limit: expected }
            }
            DownloadError::Truncated {
                received, expected, ..
            } => UpdateError::Truncated {
                expected: expected.unwrap_or(received),
                got: received,
            },
            DownloadError::TooLarge { limit, .. } => UpdateError::TooLarge { limit },
            DownloadError::BadUrl { url, reason } | DownloadError::Network { url, reason } => {
                UpdateError::Network {
                    url,
                    detail: reason,
                }
            }
            DownloadError::Timeout { url, after } => UpdateError::Network {
                url,
                detail: format!("no data for {} s", after.as_secs()),
            },
            e @ (DownloadError::NoSpace { .. } | DownloadError::Io { .. }) => {
                UpdateError::Io(e.to_string())
            }
        }
    }
}

/// Reads the pinned release key.
pub fn load_pinned_key(path: &Path) -> Result<PublicKey, UpdateError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UpdateError::NotConfigured(format!(
            "no pinned release key at {} ({e}); reinstall with install.sh --release-key",
            path.display()
        ))
    })?;
    PublicKey::parse(&text)
        .map_err(|e| UpdateError::NotConfigured(format!("{}: {e}", path.display())))
}

/// Everything an update needs.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Base URL of the release channel, no trailing slash
    /// (`<cloud url>/downloads` by default).
    pub channel: String,
    /// The pinned key every manifest must verify against.
    pub key: PublicKey,
    /// This host's platform.
    pub platform: Platform,
    pub layout: InstallLayout,
    /// The config file the self-check reads (the daemon's own).
    pub config_file: Option<PathBuf>,
    pub self_check_timeout: Duration,
}

impl UpdateConfig {
    /// The default channel of a server: `<cloud url>/downloads`.
    pub fn default_channel(cloud_url: &str) -> String {
        format!("{}{DEFAULT_CHANNEL_PATH}", cloud_url.trim_end_matches('/'))
    }

    fn release_url(&self, version: &str, file: &str) -> String {
        format!(
            "{}/voltd/{version}/{}/{}/{file}",
            self.channel.trim_end_matches('/'),
            self.platform.os,
            self.platform.arch
        )
    }
}

/// A verified, self-checked release in `releases/<version>`, not yet live.
#[derive(Debug, Clone)]
pub struct Staged {
    pub release: VerifiedRelease,
    /// `releases/<version>`.
    pub dir: PathBuf,
}

impl Staged {
    pub fn version(&self) -> &str {
        self.release.info().version()
    }
}

/// Fetches and verifies the manifest of `version` (steps 1–2).
pub async fn fetch_manifest(
    cfg: &UpdateConfig,
    downloader: &Downloader,
    version: &str,
) -> Result<(VerifiedRelease, Vec<u8>), UpdateError> {
    validate_version(version).map_err(|e| UpdateError::WrongRelease(e.to_string()))?;
    let url = cfg.release_url(version, "manifest.json");
    let bytes = downloader
        .get_small(&url, MAX_MANIFEST_BYTES as u64)
        .await?;
    let manifest =
        ReleaseManifest::parse(&bytes).map_err(|e| UpdateError::InvalidManifest(e.to_string()))?;
    let verified = manifest.verify(&cfg.key).map_err(|e| match e {
        volt_protocol::release::ReleaseError::BadSignature { .. } => {
            UpdateError::BadSignature(e.to_string())
        }
        other => UpdateError::InvalidManifest(other.to_string()),
    })?;
    let info = verified.info();
    if info.version() != version {
        return Err(UpdateError::WrongRelease(format!(
            "asked for version {version}, the signed manifest is for {}",
            info.version()
        )));
    }
    if info.platform() != &cfg.platform {
        return Err(UpdateError::WrongRelease(format!(
            "this host is {}, the signed manifest is for {}",
            cfg.platform,
            info.platform()
        )));
    }
    Ok((verified, bytes))
}

/// Steps 1–4: everything up to (not including) the swap. Nothing the
/// running daemon uses is touched; on error the staging directory is gone.
pub async fn prepare(
    cfg: &UpdateConfig,
    downloader: &Downloader,
    version: &str,
) -> Result<Staged, UpdateError> {
    let (release, manifest_bytes) = fetch_manifest(cfg, downloader, version).await?;
    let layout = cfg.layout.clone();
    let staging = tokio::task::spawn_blocking(move || layout.new_staging_dir())
        .await
        .map_err(|e| UpdateError::Io(e.to_string()))??;
    let result = async {
        let binary = staging.join(install::BINARY_FILE);
        let url = cfg.release_url(version, install::BINARY_FILE);
        let sha256: Sha256Digest = release.info().sha256().parse().map_err(|e| {
            UpdateError::InvalidManifest(format!("signed sha256 of {}: {e}", redact_url(&url)))
        })?;
        let size = release.info().size();
        let request = DownloadRequest {
            url,
            sha256,
            expected_size: Some(size),
            dest: binary.clone(),
            max_size: size,
            // A fresh staging directory: nothing to resume from.
            resume: false,
        };
        downloader.fetch(&request, |_| {}).await?;
        let b = binary.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&b, std::fs::Permissions::from_mode(BINARY_MODE))
                .map_err(|e| UpdateError::Io(format!("cannot chmod {}: {e}", b.display())))
        })
        .await
        .map_err(|e| UpdateError::Io(e.to_string()))??;
        let m = staging.join(install::MANIFEST_FILE);
        let bytes = manifest_bytes.clone();
        tokio::task::spawn_blocking(move || {
            crate::host::fsutil::write_atomic(&m, &bytes, 0o644)
                .map_err(|e| UpdateError::Io(format!("cannot write {}: {e}", m.display())))
        })
        .await
        .map_err(|e| UpdateError::Io(e.to_string()))??;
        selfcheck::run_candidate(&binary, cfg.config_file.as_deref(), cfg.self_check_timeout)
            .await?;
        let layout = cfg.layout.clone();
        let staging = staging.clone();
        let v = version.to_owned();
        tokio::task::spawn_blocking(move || layout.adopt_staging(&staging, &v))
            .await
            .map_err(|e| UpdateError::Io(e.to_string()))?
    }
    .await;
    match result {
        Ok(dir) => Ok(Staged { release, dir }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Step 5 (blocking: call from `spawn_blocking`): marker, `previous`,
/// `current`. The caller then exits with [`otp::ExitCode::Updating`].
pub fn activate(layout: &InstallLayout, staged: &Staged) -> Result<(), UpdateError> {
    let from = layout.current_version().ok_or_else(|| {
        UpdateError::NotConfigured(format!(
            "{} is not a symlink into {}",
            layout.current_link().display(),
            layout.releases_dir().display()
        ))
    })?;
    marker::begin(layout, &from, staged.version())?;
    let swapped = layout
        .set_previous(&from)
        .and_then(|()| layout.set_current(staged.version()));
    if let Err(e) = swapped {
        // Undo: the running release stays current; the marker goes.
        let _ = layout.set_current(&from);
        let _ = marker::clear(layout);
        return Err(e);
    }
    tracing::info!(from = %from, to = %staged.version(), "Update staged; restarting into the new version.");
    Ok(())
}
