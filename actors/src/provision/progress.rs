//! What provisioning reports while it works ([`ProvisionEvent`]) and the
//! small vocabulary it shares with its errors ([`Found`], [`Step`]). Kept
//! apart from `provision/mod.rs` so the supervisor log stream (`events.rs`)
//! can carry these events without depending on the provisioner itself.

use super::version::ServiceVersion;
use crate::api::vocab::ServiceKind;
use crate::host::download::DownloadEvent;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// Where a usable binary was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    /// The command line names it (a path or another program).
    Configured,
    /// The standard program on `PATH`.
    Path,
    /// Installed by voltd under `deps/`.
    Provisioned,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Found::Configured => "configured",
            Found::Path => "on PATH",
            Found::Provisioned => "provisioned",
        })
    }
}

/// The step a provisioning failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Finding an installed server or a catalogue artifact.
    Resolve,
    Download,
    /// Size and SHA-256 of the download.
    Verify,
    Unpack,
    /// Running the unpacked binary's `--version`.
    Check,
    /// Switching the install in.
    Install,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Resolve => "resolve",
            Step::Download => "download",
            Step::Verify => "verify",
            Step::Unpack => "unpack",
            Step::Check => "check",
            Step::Install => "install",
        })
    }
}

/// What provisioning is doing, for the supervisor log stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ProvisionEvent {
    /// A usable server is there; nothing to fetch.
    Found {
        service: ServiceKind,
        binary: PathBuf,
        version: Option<ServiceVersion>,
        found: Found,
    },
    /// A host binary was not good enough.
    PassedOver {
        service: ServiceKind,
        binary: PathBuf,
        reason: String,
    },
    /// A download begins (or resumes).
    Fetching {
        service: ServiceKind,
        version: String,
        url: String,
        dest: PathBuf,
    },
    /// Download progress.
    Download {
        service: ServiceKind,
        progress: DownloadEvent,
    },
    Unpacking {
        service: ServiceKind,
        dest: PathBuf,
    },
    /// Switched in: the service can start.
    Installed {
        service: ServiceKind,
        version: String,
        binary: PathBuf,
    },
    /// An attempt failed; the next follows after `delay_ms`.
    Retrying {
        service: ServiceKind,
        attempt: u32,
        delay_ms: u64,
        step: Step,
        reason: String,
    },
}
