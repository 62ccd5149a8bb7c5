//! Provisioning (the `preparing-environment` phase): before a managed
//! service runs natively, make sure its server binary exists.
//!
//! | piece | file | job |
//! |---|---|---|
//! | resolution, install, retry, plan | `provision/mod.rs` | [`Provisioner`]: decide, ensure, plan |
//! | catalogue | `provision/catalogue.rs` | the pinned artifacts, overlays, mirrors |
//! | versions | `provision/version.rs` | `<binary> --version`, minimums |
//! | unpacking | `provision/unpack.rs` | tar.gz / single binary, traversal-safe, capped |
//! | install layout | `provision/install.rs` | `deps/<service>/<version>/`, atomic switch, lock |
//! | progress events | `provision/progress.rs` | [`ProvisionEvent`] for the log stream, [`Step`], [`Found`] |
//! | from the configuration | `provision/source.rs` | [`source::load`] (daemon and `voltd provision`), [`ProvisionSource`] (rebuilt when the install manifest changes) |
//! | plan / report | `provision/plan.rs` | what `voltd provision [--dry-run]` prints |
//! | downloads | `host/download.rs` | HTTP(S) with resume, progress, SHA-256, caps |
//!
//! Resolution order for one service ([`Provisioner::decide`]):
//! 1. The command names another program than the service's standard one
//!    (`secantusd-py` instead of `mongod`): used as configured; the catalogue
//!    cannot supply it.
//! 2. A configured path (`/opt/mongo/bin/mongod`): used if it runs and is
//!    at least the minimum version; otherwise an error — voltd does not
//!    override an explicit choice.
//! 3. The standard program on `PATH`: used if `--version` shows at least
//!    the minimum (Redis ≥ 7, MongoDB ≥ 7, MinIO ≥ RELEASE.2022-06-02…);
//!    an older or unrunnable one is passed over (and named in the plan).
//! 4. A complete install of the catalogue's artifact under
//!    `deps/<service>/<version>/` (no network, no re-download).
//! 5. The catalogue's artifact for this OS and architecture: downloaded
//!    (resumable), verified, unpacked, checked (`--version` must report the
//!    catalogue's version), switched in atomically ([`Provisioner::ensure`]).
//!    No artifact: MongoDB and MinIO → `operating-system-not-supported`;
//!    Redis (no official binary) → install it with the OS package manager.
//!
//! Every failure is a [`ProvisionError`] naming the service and the step;
//! [`ProvisionError::status`] maps it to `dependency-installation-failed` or
//! `operating-system-not-supported`. [`Provisioner::ensure_retrying`] retries
//! with backoff, so fixing the cause (a mirror, free space) heals the
//! service without a restart.

pub mod catalogue;
pub mod install;
pub mod plan;
pub mod progress;
pub mod source;
pub mod unpack;
pub mod version;

pub use catalogue::{Artifact, Catalogue, CatalogueError, Layout, ManifestPolicy, Platform};
pub use plan::{Plan, PlanItem, PlanOutcome};
pub use progress::{Found, ProvisionEvent, Step};
pub use source::ProvisionSource;
pub use version::ServiceVersion;

use crate::api::vocab::ServiceKind;
use crate::config::ServiceSettings;
use crate::host::download::{
    DEFAULT_MAX_SIZE, DownloadError, DownloadErrorKind, DownloadOptions, DownloadRequest,
    Downloader,
};
use crate::host::which;
use install::{DepsDir, Marker};
use otp::ExponentialBackoff;
use serde::Serialize;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use unpack::{UnpackError, UnpackLimits};
use version::VersionError;
use volt_protocol::ClusterStatus;
use volt_protocol::enrollment::InstallManifest;

/// The directory under the install root that holds provisioned servers.
pub const DEPS_DIR_NAME: &str = crate::config::host::DEPS_DIR_NAME;
/// First retry of a failed provisioning: long enough not to hammer a
/// mirror, short enough that a fixed mirror heals within a minute.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(15);
/// Longest pause between provisioning attempts: a host left with a broken
/// mirror over a weekend still tries a few times an hour.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(600);
/// Spread of provisioning retries (±20 %), so a fleet behind one mirror
/// does not retry in lockstep.
pub const DEFAULT_RETRY_JITTER: f64 = 0.2;
/// Where a program is looked for when the request has no `PATH`: the
/// directories package managers install servers into.
const DEFAULT_SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The standard program of each service: what the catalogue provides and
/// what the production command lines start.
pub fn standard_program(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Redis => "redis-server",
        ServiceKind::Mongo => "mongod",
        ServiceKind::Minio => "minio",
    }
}

/// `<install root>/deps`.
pub fn default_deps_dir(install_root: &Path) -> PathBuf {
    install_root.join(DEPS_DIR_NAME)
}

/// The default retry backoff of [`Provisioner::ensure_retrying`].
pub fn default_retry_backoff() -> ExponentialBackoff {
    match ExponentialBackoff::try_new(
        DEFAULT_RETRY_BASE,
        DEFAULT_RETRY_MAX,
        2.0,
        DEFAULT_RETRY_JITTER,
    ) {
        Ok(b) => b,
        // 15 s ≤ 600 s, factor 2, jitter 0.2: valid by construction.
        Err(e) => unreachable!("default provisioning backoff is valid: {e}"),
    }
}

/// How provisioning runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionSettings {
    /// `deps/` (default `<install root>/deps`).
    pub deps_dir: PathBuf,
    /// The platform artifacts are chosen for (default: this host).
    pub platform: Platform,
    /// Cap on one download.
    pub max_download: u64,
    pub unpack_limits: UnpackLimits,
    pub version_timeout: Duration,
    pub download: DownloadOptions,
}

impl ProvisionSettings {
    /// The defaults, installing under `deps_dir`.
    pub fn new(deps_dir: impl Into<PathBuf>) -> Self {
        ProvisionSettings {
            deps_dir: deps_dir.into(),
            platform: Platform::current(),
            max_download: DEFAULT_MAX_SIZE,
            unpack_limits: UnpackLimits::default(),
            version_timeout: version::VERSION_TIMEOUT,
            download: DownloadOptions::default(),
        }
    }
}

/// Which binary a service's command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    pub kind: ServiceKind,
    /// The command's first element (a name looked up in `path`, or a path).
    pub program: String,
    /// The search path (`PATH` of the service's environment, else voltd's).
    pub path: Option<String>,
}

impl ServiceRequest {
    /// The service's standard program, looked up in voltd's `PATH`.
    pub fn standard(kind: ServiceKind) -> Self {
        ServiceRequest {
            kind,
            program: standard_program(kind).to_owned(),
            path: std::env::var("PATH").ok(),
        }
    }

    /// What `svc`'s command line runs.
    pub fn from_settings(kind: ServiceKind, svc: &ServiceSettings) -> Self {
        ServiceRequest {
            kind,
            program: svc
                .command
                .first()
                .cloned()
                .unwrap_or_else(|| standard_program(kind).to_owned()),
            path: svc
                .env
                .get("PATH")
                .cloned()
                .or_else(|| std::env::var("PATH").ok()),
        }
    }

    fn is_standard(&self) -> bool {
        Path::new(&self.program)
            .file_name()
            .is_some_and(|n| n == standard_program(self.kind))
    }
}

/// A server binary ready to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ready {
    pub service: ServiceKind,
    pub binary: PathBuf,
    /// `None` when not checked (a custom program).
    pub version: Option<ServiceVersion>,
    pub found: Found,
    /// This call downloaded and installed it.
    pub fetched: bool,
}

/// A binary on the host that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedOver {
    pub path: PathBuf,
    pub reason: String,
}

/// What resolution decided (before anything is downloaded).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Use(Ready),
    Fetch(Box<Fetch>),
}

/// A download-and-install to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub artifact: Artifact,
    /// Where it is fetched from (the mirror's URL when one is set).
    pub url: String,
    /// `deps/<service>/<version>`.
    pub dest: PathBuf,
    /// The binary it will provide.
    pub binary: PathBuf,
    /// A host binary that was not good enough.
    pub passed_over: Option<PassedOver>,
}

/// What went wrong.
#[derive(Debug, Error)]
pub enum Failure {
    #[error("no {service} server is installed and the catalogue has no artifact for {platform}")]
    Unsupported {
        service: ServiceKind,
        platform: Platform,
    },
    #[error("{program} not found; {hint}")]
    NotInstalled { program: String, hint: String },
    #[error("{} is version {found}, older than the minimum {minimum}", path.display())]
    TooOld {
        path: PathBuf,
        found: ServiceVersion,
        minimum: ServiceVersion,
    },
    #[error("{0}")]
    Binary(#[from] VersionError),
    #[error("{} reports version {found}, but the catalogue says {expected}", binary.display())]
    WrongVersion {
        binary: PathBuf,
        expected: String,
        found: ServiceVersion,
    },
    #[error("{0}")]
    Download(#[from] DownloadError),
    #[error("{0}")]
    Unpack(#[from] UnpackError),
    #[error("the artifact has no {} (its catalogue entry)", entry.display())]
    MissingEntry { entry: PathBuf },
    #[error("no space left on the device holding {}", path.display())]
    NoSpace { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// A failure of one service's provisioning (see the module docs).
#[derive(Debug, Error)]
#[error("{service}: {step}: {failure}")]
pub struct ProvisionError {
    pub service: ServiceKind,
    pub step: Step,
    pub failure: Failure,
}

/// [`ProvisionError`] without details: what status and tests branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    Unsupported,
    NotInstalled,
    TooOld,
    Binary,
    WrongVersion,
    Download(DownloadErrorKind),
    Unpack,
    MissingEntry,
    NoSpace,
    Io,
}

impl ProvisionError {
    fn new(service: ServiceKind, step: Step, failure: impl Into<Failure>) -> Self {
        ProvisionError {
            service,
            step,
            failure: failure.into(),
        }
    }

    fn io(service: ServiceKind, step: Step, path: &Path, e: std::io::Error) -> Self {
        let failure = if crate::host::download::is_no_space(&e) {
            Failure::NoSpace {
                path: path.to_path_buf(),
            }
        } else {
            Failure::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        };
        ProvisionError::new(service, step, failure)
    }

    pub fn kind(&self) -> FailureKind {
        match &self.failure {
            Failure::Unsupported { .. } => FailureKind::Unsupported,
            Failure::NotInstalled { .. } => FailureKind::NotInstalled,
            Failure::TooOld { .. } => FailureKind::TooOld,
            Failure::Binary(_) => FailureKind::Binary,
            Failure::WrongVersion { .. } => FailureKind::WrongVersion,
            Failure::Download(DownloadError::NoSpace { .. }) => FailureKind::NoSpace,
            Failure::Download(d) => FailureKind::Download(d.kind()),
            Failure::Unpack(UnpackError::NoSpace { .. }) => FailureKind::NoSpace,
            Failure::Unpack(_) => FailureKind::Unpack,
            Failure::MissingEntry { .. } => FailureKind::MissingEntry,
            Failure::NoSpace { .. } => FailureKind::NoSpace,
            Failure::Io { .. } => FailureKind::Io,
        }
    }

    /// The cluster status this failure is reported as.
    pub fn status(&self) -> ClusterStatus {
        match self.failure {
            Failure::Unsupported { .. } => ClusterStatus::OperatingSystemNotSupported,
            _ => ClusterStatus::DependencyInstallationFailed,
        }
    }

    /// `<step>: <what>` — the reason without the service's name (the status
    /// machine prefixes `<service>: `).
    pub fn reason(&self) -> String {
        format!("{}: {}", self.step, self.failure)
    }
}

/// Resolves, installs and plans server binaries (see the module docs).
#[derive(Debug, Clone)]
pub struct Provisioner {
    settings: ProvisionSettings,
    catalogue: Catalogue,
    deps: DepsDir,
    downloader: Downloader,
}

impl Provisioner {
    pub fn new(settings: ProvisionSettings, catalogue: Catalogue) -> Result<Self, DownloadError> {
        let downloader = Downloader::new(settings.download)?;
        Ok(Self::with_downloader(settings, catalogue, downloader))
    }

    /// With a downloader the caller built (custom CA, proxy).
    pub fn with_downloader(
        settings: ProvisionSettings,
        catalogue: Catalogue,
        downloader: Downloader,
    ) -> Self {
        let deps = DepsDir::new(&settings.deps_dir);
        Provisioner {
            settings,
            catalogue,
            deps,
            downloader,
        }
    }

    pub fn settings(&self) -> &ProvisionSettings {
        &self.settings
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn deps(&self) -> &DepsDir {
        &self.deps
    }

    /// Decides what to use or fetch for `req`; runs `--version` of host
    /// binaries but changes nothing.
    pub async fn decide(&self, req: &ServiceRequest) -> Result<Decision, ProvisionError> {
        let kind = req.kind;
        let resolve_err = |f: Failure| ProvisionError::new(kind, Step::Resolve, f);
        let min = ServiceVersion::minimum(kind);
        let located = {
            let (program, path) = (
                req.program.clone(),
                req.path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SEARCH_PATH.to_owned()),
            );
            blocking(move || Ok(which::find_binary(&program, Some(&path))))
                .await
                .ok()
                .flatten()
        };

        if !req.is_standard() {
            return match located {
                Some(binary) => Ok(Decision::Use(Ready {
                    service: kind,
                    binary,
                    version: None,
                    found: Found::Configured,
                    fetched: false,
                })),
                None => Err(resolve_err(Failure::NotInstalled {
                    program: req.program.clone(),
                    hint: format!(
                        "services.{}.command names it; install it or change the command",
                        kind.name()
                    ),
                })),
            };
        }

        if req.program.contains('/') {
            let Some(binary) = located else {
                return Err(resolve_err(Failure::NotInstalled {
                    program: req.program.clone(),
                    hint: format!(
                        "services.{}.command names this path; install the server there, or name just {:?} to let voltd provision it",
                        kind.name(),
                        standard_program(kind)
                    ),
                }));
            };
            let version = version::probe_version(kind, &binary, self.settings.version_timeout)
                .await
                .map_err(|e| resolve_err(Failure::Binary(e)))?;
            if !version.at_least(&min) {
                return Err(resolve_err(Failure::TooOld {
                    path: binary,
                    found: version,
                    minimum: min,
                }));
            }
            return Ok(Decision::Use(Ready {
                service: kind,
                binary,
                version: Some(version),
                found: Found::Configured,
                fetched: false,
            }));
        }

        let mut passed_over = None;
        if let Some(binary) = located {
            match version::probe_version(kind, &binary, self.settings.version_timeout).await {
                Ok(v) if v.at_least(&min) => {
                    return Ok(Decision::Use(Ready {
                        service: kind,
                        binary,
                        version: Some(v),
                        found: Found::Path,
                        fetched: false,
                    }));
                }
                Ok(v) => {
                    passed_over = Some(PassedOver {
                        path: binary,
                        reason: format!("version {v} is older than the minimum {min}"),
                    });
                }
                Err(e) => {
                    passed_over = Some(PassedOver {
                        path: binary,
                        reason: e.to_string(),
                    });
                }
            }
        }

        let Some(artifact) = self.catalogue.find(kind, &self.settings.platform) else {
            let failure = if kind == ServiceKind::Redis {
                Failure::NotInstalled {
                    program: standard_program(kind).to_owned(),
                    hint: format!(
                        "{}install Redis 7 or later with the OS package manager (apt-get install redis-server, dnf install redis, brew install redis) or add a redis artifact to the catalogue",
                        passed_over
                            .as_ref()
                            .map(|p| format!(
                                "{} was passed over ({}); ",
                                p.path.display(),
                                p.reason
                            ))
                            .unwrap_or_default()
                    ),
                }
            } else {
                Failure::Unsupported {
                    service: kind,
                    platform: self.settings.platform.clone(),
                }
            };
            return Err(resolve_err(failure));
        };

        if let Some(binary) = self.installed(artifact).await {
            return Ok(Decision::Use(Ready {
                service: kind,
                binary,
                version: artifact.service_version(),
                found: Found::Provisioned,
                fetched: false,
            }));
        }
        Ok(Decision::Fetch(Box::new(Fetch {
            artifact: artifact.clone(),
            url: self.catalogue.fetch_url(artifact),
            dest: self.deps.version_dir(artifact),
            binary: self.deps.binary(artifact),
            passed_over,
        })))
    }

    /// [`DepsDir::installed`] off the async thread.
    async fn installed(&self, a: &Artifact) -> Option<PathBuf> {
        let (deps, a) = (self.deps.clone(), a.clone());
        blocking(move || Ok(deps.installed(&a)))
            .await
            .ok()
            .flatten()
    }

    /// Makes sure `req`'s server exists, installing it if needed; events go
    /// to `on_event`. Idempotent: a verified install is not fetched again.
    pub async fn ensure<F>(
        &self,
        req: &ServiceRequest,
        mut on_event: F,
    ) -> Result<Ready, ProvisionError>
    where
        F: FnMut(ProvisionEvent),
    {
        let fetch = match self.decide(req).await? {
            Decision::Use(ready) => {
                on_event(ProvisionEvent::Found {
                    service: ready.service,
                    binary: ready.binary.clone(),
                    version: ready.version,
                    found: ready.found,
                });
                return Ok(ready);
            }
            Decision::Fetch(f) => f,
        };
        if let Some(p) = &fetch.passed_over {
            on_event(ProvisionEvent::PassedOver {
                service: req.kind,
                binary: p.path.clone(),
                reason: p.reason.clone(),
            });
        }
        self.install(*fetch, &mut on_event).await
    }

    async fn install<F>(&self, fetch: Fetch, on_event: &mut F) -> Result<Ready, ProvisionError>
    where
        F: FnMut(ProvisionEvent),
    {
        let a = &fetch.artifact;
        let kind = a.service;
        let service_dir = self.deps.service_dir(kind);
        let deps = self.deps.clone();
        let _lock = blocking(move || {
            let lock = deps.lock(kind)?;
            deps.sweep(kind)?;
            Ok(lock)
        })
        .await
        .map_err(|e| ProvisionError::io(kind, Step::Install, &service_dir, e))?;

        // Another process may have installed it while we waited.
        if let Some(binary) = self.installed(a).await {
            on_event(ProvisionEvent::Found {
                service: kind,
                binary: binary.clone(),
                version: a.service_version(),
                found: Found::Provisioned,
            });
            return Ok(Ready {
                service: kind,
                binary,
                version: a.service_version(),
                found: Found::Provisioned,
                fetched: false,
            });
        }

        on_event(ProvisionEvent::Fetching {
            service: kind,
            version: a.version.clone(),
            url: crate::host::download::redact_url(&fetch.url),
            dest: fetch.dest.clone(),
        });
        let download_path = self.deps.downloads_dir(kind).join(a.file_name());
        let request = DownloadRequest {
            url: fetch.url.clone(),
            sha256: a.sha256,
            expected_size: a.size,
            dest: download_path.clone(),
            max_size: self.settings.max_download,
            resume: true,
        };
        let downloaded = self
            .downloader
            .fetch(&request, |event| {
                on_event(ProvisionEvent::Download {
                    service: kind,
                    progress: event,
                })
            })
            .await
            .map_err(|e| {
                let step = match e.kind() {
                    DownloadErrorKind::ChecksumMismatch | DownloadErrorKind::SizeMismatch => {
                        Step::Verify
                    }
                    _ => Step::Download,
                };
                ProvisionError::new(kind, step, e)
            })?;

        let deps = self.deps.clone();
        let staging = {
            let a = a.clone();
            blocking(move || deps.staging(&a))
                .await
                .map_err(|e| ProvisionError::io(kind, Step::Unpack, &service_dir, e))?
        };
        on_event(ProvisionEvent::Unpacking {
            service: kind,
            dest: fetch.dest.clone(),
        });
        let result = self
            .unpack_check_commit(a, &fetch.url, &downloaded.path, &staging)
            .await;
        if result.is_err() {
            let s = staging.clone();
            let _ = blocking(move || match std::fs::remove_dir_all(&s) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await;
        }
        let binary = result?;
        // The archive is no longer needed (a binary layout moved it).
        let _ = tokio::fs::remove_file(&downloaded.path).await;
        on_event(ProvisionEvent::Installed {
            service: kind,
            version: a.version.clone(),
            binary: binary.clone(),
        });
        Ok(Ready {
            service: kind,
            binary,
            version: a.service_version(),
            found: Found::Provisioned,
            fetched: true,
        })
    }

    async fn unpack_check_commit(
        &self,
        a: &Artifact,
        url: &str,
        download: &Path,
        staging: &Path,
    ) -> Result<PathBuf, ProvisionError> {
        let kind = a.service;
        {
            let (art, file, dir) = (a.clone(), download.to_path_buf(), staging.to_path_buf());
            let limits = self.settings.unpack_limits;
            tokio::task::spawn_blocking(move || match art.layout {
                Layout::Binary => unpack::place_binary(&file, &dir, &art.entry),
                Layout::TarGz { strip_components } => {
                    unpack::unpack_tar_gz(&file, &dir, strip_components, limits).map(|_| ())
                }
            })
            .await
            .map_err(|e| {
                ProvisionError::new(
                    kind,
                    Step::Unpack,
                    Failure::Io {
                        path: staging.to_path_buf(),
                        reason: format!("unpacking task failed: {e}"),
                    },
                )
            })?
            .map_err(|e| ProvisionError::new(kind, Step::Unpack, e))?;
        }
        let staged = staging.join(&a.entry);
        if !install::is_executable(&staged) {
            return Err(ProvisionError::new(
                kind,
                Step::Check,
                Failure::MissingEntry {
                    entry: a.entry.clone(),
                },
            ));
        }
        let found = version::probe_version(kind, &staged, self.settings.version_timeout)
            .await
            .map_err(|e| ProvisionError::new(kind, Step::Check, e))?;
        if a.service_version() != Some(found) {
            return Err(ProvisionError::new(
                kind,
                Step::Check,
                Failure::WrongVersion {
                    binary: a.entry.clone(),
                    expected: a.version.clone(),
                    found,
                },
            ));
        }
        let (deps, a2, staging) = (self.deps.clone(), a.clone(), staging.to_path_buf());
        let marker = Marker::for_artifact(a, &crate::host::download::redact_url(url));
        let final_dir = self.deps.version_dir(a);
        blocking(move || deps.commit(&staging, &a2, &marker))
            .await
            .map_err(|e| ProvisionError::io(kind, Step::Install, &final_dir, e))
    }

    /// [`Provisioner::ensure`] until it succeeds: after a failure,
    /// `on_failure` sees the error and the delay before the next attempt and
    /// may stop (`ControlFlow::Break`), e.g. for a shutdown. Returns the
    /// last error when stopped.
    pub async fn ensure_retrying<F, G>(
        &self,
        req: &ServiceRequest,
        backoff: &ExponentialBackoff,
        mut on_event: F,
        mut on_failure: G,
    ) -> Result<Ready, ProvisionError>
    where
        F: FnMut(ProvisionEvent),
        G: FnMut(&ProvisionError, Duration) -> ControlFlow<()>,
    {
        let mut attempt = 0u32;
        loop {
            match self.ensure(req, &mut on_event).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let delay = backoff.delay(attempt);
                    if on_failure(&e, delay).is_break() {
                        return Err(e);
                    }
                    on_event(ProvisionEvent::Retrying {
                        service: req.kind,
                        attempt: attempt + 1,
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        step: e.step,
                        reason: e.reason(),
                    });
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// What `voltd provision --dry-run` prints: per service, the binary in
    /// use or the artifact that would be fetched, or why neither works.
    pub async fn plan(&self, reqs: &[ServiceRequest]) -> Plan {
        let mut items = Vec::with_capacity(reqs.len());
        for req in reqs {
            let outcome = match self.decide(req).await {
                Ok(Decision::Use(r)) => PlanOutcome::Installed {
                    binary: r.binary,
                    version: r.version.map(|v| v.to_string()),
                    found: r.found,
                },
                Ok(Decision::Fetch(f)) => PlanOutcome::Fetch {
                    version: f.artifact.version.clone(),
                    url: crate::host::download::redact_url(&f.url),
                    sha256: f.artifact.sha256.to_string(),
                    size: f.artifact.size,
                    dest: f.dest,
                    binary: f.binary,
                    passed_over: f.passed_over,
                },
                Err(e) => PlanOutcome::Failed {
                    status: e.status().as_str().to_owned(),
                    step: e.step,
                    reason: e.failure.to_string(),
                },
            };
            items.push(PlanItem {
                service: req.kind,
                outcome,
            });
        }
        Plan {
            platform: self.settings.platform.clone(),
            deps_dir: self.settings.deps_dir.clone(),
            mirror: self.catalogue.mirror().map(str::to_owned),
            items,
        }
    }
}

/// Assembles the effective catalogue: the built-in one, then the install
/// manifest's (as `policy` allows), then the operator's file, then an
/// explicit mirror. Returns it with warnings worth logging. Blocking (it
/// reads `file`): call it off the actor thread.
pub fn load_catalogue(
    file: Option<&Path>,
    manifest: Option<&InstallManifest>,
    policy: ManifestPolicy,
    mirror: Option<&str>,
) -> Result<(Catalogue, Vec<String>), CatalogueError> {
    let mut c = Catalogue::builtin()?;
    let mut warnings = Vec::new();
    if let Some(m) = manifest {
        let ignored = c.apply_manifest(m, policy)?;
        if ignored > 0 {
            warnings.push(format!(
                "ignored {ignored} artifact(s) of the install manifest's {} (only its mirror is trusted; set the manifest catalogue policy to \"full\" to accept them)",
                catalogue::MANIFEST_FILE
            ));
        }
    }
    if let Some(path) = file {
        let origin = catalogue::Origin::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| CatalogueError {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        c.apply(catalogue::Overlay::parse(&text, &origin)?);
    }
    if let Some(m) = mirror {
        c.set_mirror(Some(m))?;
    }
    Ok((c, warnings))
}

async fn blocking<T, F>(f: F) -> std::io::Result<T>
where
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_the_reference_statuses() {
        let unsupported = ProvisionError::new(
            ServiceKind::Mongo,
            Step::Resolve,
            Failure::Unsupported {
                service: ServiceKind::Mongo,
                platform: Platform::new("linux", "riscv64"),
            },
        );
        assert_eq!(
            unsupported.status(),
            ClusterStatus::OperatingSystemNotSupported
        );
        assert!(unsupported.to_string().starts_with("mongo: resolve: "));
        let checksum = ProvisionError::new(
            ServiceKind::Minio,
            Step::Verify,
            DownloadError::ChecksumMismatch {
                url: "https://x/y".into(),
                expected: crate::host::download::Sha256Digest::of(b"a"),
                actual: crate::host::download::Sha256Digest::of(b"b"),
            },
        );
        assert_eq!(
            checksum.status(),
            ClusterStatus::DependencyInstallationFailed
        );
        assert_eq!(
            checksum.kind(),
            FailureKind::Download(DownloadErrorKind::ChecksumMismatch)
        );
        assert!(checksum.reason().starts_with("verify: checksum mismatch"));
        let full = ProvisionError::new(
            ServiceKind::Minio,
            Step::Download,
            DownloadError::NoSpace { path: "/d".into() },
        );
        assert_eq!(full.kind(), FailureKind::NoSpace);
    }

    #[test]
    fn requests_follow_the_command_line() {
        let svc = ServiceSettings::defaults(ServiceKind::Mongo, crate::config::ServiceMode::Native);
        let r = ServiceRequest::from_settings(ServiceKind::Mongo, &svc);
        assert_eq!(r.program, "mongod");
        assert!(r.is_standard());
        let custom = ServiceRequest {
            program: "/opt/x/secantusd-py".into(),
            ..r.clone()
        };
        assert!(!custom.is_standard());
        let path = ServiceRequest {
            program: "/opt/mongo/bin/mongod".into(),
            ..r
        };
        assert!(path.is_standard());
    }

    #[test]
    fn the_default_backoff_is_valid() {
        let b = default_retry_backoff();
        assert_eq!(b.base(), DEFAULT_RETRY_BASE);
        assert_eq!(b.max(), DEFAULT_RETRY_MAX);
    }
}
