//! voltd's one configuration model.
//!
//! [`Settings`] is at once what every actor runs with and what the TOML
//! file says: its sections derive `Deserialize`/`Serialize` with
//! `deny_unknown_fields`, values that need checking are validating types
//! ([`values`]), durations are `Duration`s read in the unit the key names.
//! Values that span several keys (the reconnect backoff, restart
//! intensities) are methods, checked once by [`Settings::validate`].
//!
//! | piece | file | job |
//! |---|---|---|
//! | the model, state-dir layout | `config/mod.rs` | [`Settings`], `validate`, derived paths |
//! | sections | `config/sections.rs` | `[socket]`, `[supervisor]`, `[install]`, `[terminal]`, `[host_files]` and their default constants |
//! | host upkeep | `config/host.rs` | `[provision]` (where servers come from), `[update]` (where releases come from) |
//! | services | `config/services.rs` | `[services.*]`, production defaults, placeholder check |
//! | value types | `config/values.rs` | `CloudUrl`, `ClusterId`, `ProxyUrl`, `AbsPath`, … and the `*_ms`/`*_secs` serde helpers |
//! | the key table | `config/keys.rs` | every key with its environment variables, flag, default and meaning; renders the README table |
//! | layering | `config/layer.rs` | defaults → file → environment → flags as one TOML document, deserialised once |
//! | `config show` | `config/show.rs` | the effective configuration as TOML, secrets redacted |
//!
//! Adding a key: a field on the section struct (with its default in that
//! struct's `Default`), a row in [`keys::KEYS`], then
//! `UPDATE_README=1 cargo test -p voltd-actors config::keys` to refresh
//! the README table. Environment variables and flags come from the row;
//! nothing else names the key.
//!
//! Depends only on `api::vocab`, `otp` and `volt_protocol`: services,
//! cloud, status and remote read it, never the other way round.

pub mod host;
pub mod jobs;
pub mod keys;
pub mod layer;
pub mod sections;
pub mod services;
pub mod show;
pub mod values;

#[cfg(test)]
mod tests;

pub use host::{ManifestCatalogue, ProvisionSection, UpdateSection};
pub use jobs::JobsSettings;
pub use layer::{ConfigError, Env, Flags, Loaded, default_state_dir, load, locate, process_env};
pub use sections::{
    CommandSettings, HostFilesSettings, HostRoot, InstallSettings, SocketSettings,
    SupervisorSettings, TerminalSettings,
};
pub use services::{ServiceMode, ServiceSettings, ServicesSettings};
pub use show::show;
pub use values::{AbsPath, CloudUrl, ClusterId, InstalledVersion, Jitter, ProxyUrl, UserName};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use values::ms;
use volt_protocol::register::Secret;

/// Heartbeat period of the reference daemon (`TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS`).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10_000);
/// Installed version reported when nothing else is known (what the
/// reference installers send).
pub const DEFAULT_INSTALLED_VERSION: &str = "1.0.0";
/// Where voltd keeps credentials and state when installed system-wide.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/voltd";
/// The file system whose usage is reported as `disk`: the root one, as the
/// reference daemon does.
pub const DEFAULT_DISK_PATH: &str = "/";
/// `info`: one line per notable event, nothing per heartbeat.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The state directory's layout: enrolled credentials …
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// … the install manifest …
pub const MANIFEST_FILE: &str = "install-manifest.json";
/// … the local admin socket (`voltd status`, `voltd logs`) …
pub const ADMIN_SOCKET_FILE: &str = "voltd.sock";
/// … and the managed services' state.
pub use services::SERVICES_DIR;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line (as the reference daemon's pino output).
    Json,
}

/// Everything the daemon's actors need, and the config file's top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub cloud_url: CloudUrl,
    /// Base URL of the control socket; the manifest sets it equal to the
    /// cloud URL, and so does the loader when nothing sets it.
    pub socket_url: CloudUrl,
    pub team_cluster_id: ClusterId,
    /// A password the installer already obtained.
    #[serde(
        default,
        deserialize_with = "values::non_blank_secret",
        serialize_with = "values::redact"
    )]
    pub daemon_password: Option<Secret>,
    /// One-time enrollment token.
    #[serde(
        default,
        deserialize_with = "values::non_blank_secret",
        serialize_with = "values::redact"
    )]
    pub enrollment_token: Option<Secret>,
    /// The config file the token came from, so it can be removed after use
    /// (set by the loader; not a key).
    #[serde(skip)]
    pub token_file: Option<PathBuf>,
    /// The config file these settings were read from (set by the loader;
    /// not a key): a release candidate's self-check reads the same one.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Reported as `installedVersion`.
    pub installed_version: InstalledVersion,
    #[serde(rename = "heartbeat_interval_ms", with = "ms")]
    pub heartbeat_interval: Duration,
    /// Credentials, manifest, admin socket, service state.
    pub state_dir: PathBuf,
    /// Mount point whose usage is reported as `disk`.
    pub disk_path: PathBuf,
    /// Argument vector run for `runtime.update`, with the target version
    /// appended as one more argument (no shell; see `update::hook`);
    /// without one, updates are refused with a reason.
    #[serde(default, deserialize_with = "values::update_command")]
    pub update_command: Option<Vec<String>>,
    /// A level (`info`) or any tracing filter (`voltd_actors=debug,info`).
    pub log_level: String,
    pub log_format: LogFormat,
    pub socket: SocketSettings,
    /// Restart intensity of the actor supervisors.
    pub supervisor: SupervisorSettings,
    pub install: InstallSettings,
    /// The host terminal.
    pub terminal: TerminalSettings,
    /// The managed services (Redis, MongoDB, MinIO). `Settings::new`
    /// manages none; the config file runs all three natively unless told
    /// otherwise.
    pub services: ServicesSettings,
    /// The host file explorer (`host-files` target).
    pub host_files: HostFilesSettings,
    /// Where the managed services' servers come from.
    pub provision: ProvisionSection,
    /// The signed self-update.
    pub update: UpdateSection,
    /// The job queues' workers.
    pub jobs: JobsSettings,
    /// Deadlines and the in-flight cap of inbound commands.
    pub commands: CommandSettings,
}

impl Settings {
    /// Settings with every default, for a cluster and server, managing no
    /// service (tests and embedders; the `voltd` binary uses [`load`]).
    pub fn new(cloud_url: CloudUrl, team_cluster_id: ClusterId, state_dir: PathBuf) -> Self {
        Settings {
            socket_url: cloud_url.clone(),
            cloud_url,
            team_cluster_id,
            daemon_password: None,
            enrollment_token: None,
            token_file: None,
            config_file: None,
            installed_version: default_installed_version(),
            state_dir,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            disk_path: PathBuf::from(DEFAULT_DISK_PATH),
            update_command: None,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            log_format: LogFormat::default(),
            socket: SocketSettings::default(),
            supervisor: SupervisorSettings::default(),
            install: InstallSettings::default(),
            terminal: TerminalSettings::default(),
            services: ServicesSettings::disabled(),
            host_files: HostFilesSettings::default(),
            provision: ProvisionSection::default(),
            update: UpdateSection::default(),
            jobs: JobsSettings::default(),
            commands: CommandSettings::default(),
        }
    }

    /// The checks that span several keys (each value was checked when it
    /// was read): backoffs, restart intensities, the services. The loader
    /// runs it once; `daemon::start` runs it for embedders.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat_interval_ms must be greater than 0".into());
        }
        if let Some(argv) = &self.update_command
            && !std::path::Path::new(&argv[0]).is_absolute()
        {
            return Err(format!(
                "update_command[0] must be an absolute path, got {:?}",
                argv[0]
            ));
        }
        self.socket.try_reconnect()?;
        self.supervisor.try_intensity()?;
        self.terminal.validate()?;
        self.jobs.validate()?;
        self.commands.validate()?;
        self.services.validate()
    }

    /// Where enrolled credentials are stored.
    pub fn credentials_file(&self) -> PathBuf {
        self.state_dir.join(CREDENTIALS_FILE)
    }

    /// Where the install manifest is stored.
    pub fn manifest_file(&self) -> PathBuf {
        self.state_dir.join(MANIFEST_FILE)
    }

    /// The local admin socket (`voltd status`, `voltd logs`).
    pub fn admin_socket(&self) -> PathBuf {
        admin_socket(&self.state_dir)
    }

    /// `<state dir>/services`.
    pub fn services_dir(&self) -> PathBuf {
        services::services_dir(&self.state_dir)
    }

    /// Where provisioned servers live (`[provision] deps_dir`, else
    /// `<install root>/deps`).
    pub fn deps_dir(&self) -> PathBuf {
        self.provision.deps_dir(&self.install.install_root)
    }

    /// The release channel (`[update] channel`, else `<cloud_url>/downloads`).
    pub fn update_channel(&self) -> String {
        self.update.channel(&self.cloud_url)
    }

    /// `<install root>/<cluster id>`.
    pub fn install_dir(&self) -> PathBuf {
        self.install
            .install_root
            .join(self.team_cluster_id.as_str())
    }
}

/// The admin socket of the daemon whose state directory is `state_dir`.
pub fn admin_socket(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join(ADMIN_SOCKET_FILE)
}

fn default_installed_version() -> InstalledVersion {
    match InstalledVersion::parse(DEFAULT_INSTALLED_VERSION) {
        Ok(v) => v,
        Err(e) => unreachable!("\"1.0.0\" is a valid version: {e}"),
    }
}
