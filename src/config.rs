//! voltd's configuration: one TOML file, overridden by the reference
//! daemon's environment variables, overridden by command-line flags.
//!
//! | TOML key | environment | default |
//! |---|---|---|
//! | `cloud_url` | `VOLT_CLOUD_URL` | required |
//! | `socket_url` | `VOLT_CLOUD_DAEMON_SOCKET_URL` | `cloud_url` |
//! | `team_cluster_id` | `TEAM_CLUSTER_ID` | required |
//! | `daemon_password` | `TEAM_CLUSTER_DAEMON_PASSWORD` | – |
//! | `enrollment_token` | `TEAM_CLUSTER_ENROLLMENT_TOKEN` | – (removed from the file after use) |
//! | `installed_version` | `VOLT_CLUSTER_INSTALL_MANIFEST_VERSION` | `1.0.0` |
//! | `heartbeat_interval_ms` | `TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS` | 10000 |
//! | `state_dir` | `VOLTD_STATE_DIR` | `/var/lib/voltd` (root), `~/.local/state/voltd` |
//! | `disk_path` | – | `/` |
//! | `update_command` | – | – (updates refused); an argument vector, the version is appended |
//! | `log_level` | `LOG_LEVEL` (or `RUST_LOG`) | `info` |
//! | `log_format` | – | `human` |
//! | `[socket] ca_file` | `VOLTD_CA_FILE` | – |
//! | `[socket] proxy` / `no_proxy` | `HTTPS_PROXY` / `NO_PROXY` (any case) | – |
//! | `[socket] reconnect_base_ms`, `reconnect_max_ms`, `reconnect_jitter` | – | 500, 30000, 0.3 |
//! | `[socket] stable_after_ms`, `connect_timeout_ms`, `register_timeout_ms`, `command_timeout_ms`, `emit_buffer` | – | 30000, 15000, 15000, 30000, 8192 |
//! | `[supervisor] max_restarts`, `window_secs` | – | 5, 60 |
//! | `[install] install_root` | `TEAM_CLUSTER_INSTALL_ROOT` | `/opt/volt/team-clusters` |
//! | `[install] fetch_manifest`, `ports = {minio, redis, mongodb, daemon}` | – | false, – |
//! | `[terminal] enabled` | – | `true` (false: every `session.attach` gets 403) |
//! | `[terminal] user` | – | the user voltd runs as (another user needs voltd to run as root) |
//! | `[terminal] shell` | – | the user's passwd shell, else `/bin/bash` |
//! | `[terminal] idle_timeout_secs`, `max_sessions` | – | 600, 16 |
//! | `[services.redis]`, `[services.mongo]`, `[services.minio]` `mode` | – | `native` (`external`, `disabled`) |
//! | `[services.*] command`, `env` | – | `redis-server {config_file}`, `mongod --dbpath {data_dir} --port {port} --bind_ip {bind} --auth`, `minio server {data_dir} --address {bind}:{port}` (+ `MINIO_ROOT_USER/PASSWORD`) |
//! | `[services.*] port`, `bind`, `host`, `data_dir` | – | manifest / `[install] ports` / 6379, 27017, 9000; `127.0.0.1`; loopback; `<state_dir>/services/<name>` |
//! | `[services.*] user`, `password` | – | install manifest, else generated (stored 0600) |
//! | `[services.*] probe_interval_ms`, `probe_timeout_ms`, `start_timeout_ms`, `stop_timeout_ms`, `unhealthy_after` | – | 5000, 3000, 60000, 20000, 3 |
//! | `[services.*] restart_base_ms`, `restart_max_ms`, `max_restarts`, `restart_window_secs`, `failed_retry_secs` | – | 500, 30000, 5, 300, 300 |
//! | `[services.mongo] auth_flag` | – | `--auth` (dropped while provisioning the root user) |
//! | `[host_files] roots` | – | none (file explorer off); items are paths or `{name, path}` |
//!
//! Every `[services.*]` key is described in `src/service_config.rs`. The
//! `--services all|none|redis,mongo,…` flag disables the services it does
//! not name.
//!
//! `TEAM_CLUSTER_METRICS_INTERVAL_MS` is accepted and ignored: voltd samples
//! metrics per heartbeat and measures the cloud latency on the heartbeat
//! itself. Legacy `TEAM_CLUSTER_*_PATH` variables are ignored likewise.

use otp::Intensity;
use otp::backoff::ExponentialBackoff;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use volt_protocol::enrollment::ServicePorts;
use volt_protocol::register::Secret;
use voltd_actors::settings::{
    self, CloudUrl, InstallSettings, ProxySettings, Settings, SocketSettings, TerminalSettings,
};

/// Where `voltd` looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/voltd/voltd.toml";

/// Configuration errors (exit code 1).
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("missing {what}: set `{key}` in the config file, {env}, or {flag}")]
    Missing {
        what: &'static str,
        key: &'static str,
        env: &'static str,
        flag: &'static str,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `[socket]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketFile {
    pub reconnect_base_ms: Option<u64>,
    pub reconnect_max_ms: Option<u64>,
    pub reconnect_jitter: Option<f64>,
    pub stable_after_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub register_timeout_ms: Option<u64>,
    pub command_timeout_ms: Option<u64>,
    pub emit_buffer: Option<usize>,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
    pub no_proxy: Option<Vec<String>>,
}

/// `[supervisor]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorFile {
    pub max_restarts: Option<u32>,
    pub window_secs: Option<u64>,
}

/// `[install]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallFile {
    pub install_root: Option<PathBuf>,
    pub fetch_manifest: Option<bool>,
    pub ports: Option<ServicePorts>,
}

/// `[terminal]`: the host terminal (`session.attach`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalFile {
    pub enabled: Option<bool>,
    pub user: Option<String>,
    pub shell: Option<PathBuf>,
    pub idle_timeout_secs: Option<u64>,
    pub max_sessions: Option<usize>,
}

/// Upper bound of `[terminal] max_sessions`: each session holds a PTY (the
/// kernel's default limit is 4096 for the whole host) and three threads.
pub const MAX_TERMINAL_SESSIONS: usize = 1024;
/// Longest `[terminal] user` (the useradd limit).
const MAX_USER_NAME_LEN: usize = 32;

/// The TOML file. Unknown keys are errors: a typo must not silently fall
/// back to a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub cloud_url: Option<String>,
    pub socket_url: Option<String>,
    pub team_cluster_id: Option<String>,
    pub daemon_password: Option<String>,
    pub enrollment_token: Option<String>,
    pub installed_version: Option<String>,
    pub heartbeat_interval_ms: Option<u64>,
    pub state_dir: Option<PathBuf>,
    pub disk_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "update_command")]
    pub update_command: Option<Vec<String>>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub socket: SocketFile,
    #[serde(default)]
    pub supervisor: SupervisorFile,
    #[serde(default)]
    pub install: InstallFile,
    #[serde(default)]
    pub terminal: TerminalFile,
    #[serde(default)]
    pub services: crate::service_config::ServicesFile,
    #[serde(default)]
    pub host_files: HostFilesFile,
}

/// `update_command` is an argument vector. The old string form (a shell
/// command with `{version}`/`{image}` pasted in) is refused with a message
/// saying so: a server-provided string must never reach a shell.
fn update_command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Argv(Vec<String>),
        Shell(#[allow(dead_code)] String),
    }
    match Option::<Form>::deserialize(d)? {
        None => Ok(None),
        Some(Form::Argv(v)) => Ok(Some(v)),
        Some(Form::Shell(_)) => Err(serde::de::Error::custom(
            "update_command is an argument vector now, e.g. [\"/usr/local/sbin/upgrade-voltd\", \"--quiet\"]; the target version is appended as the last argument (no shell, no {version}/{image} placeholders)",
        )),
    }
}

/// One `[host_files] roots` item: a path (named after its last component)
/// or `{name, path}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RootSpec {
    Path(PathBuf),
    Named { name: String, path: PathBuf },
}

/// `[host_files]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFilesFile {
    pub roots: Option<Vec<RootSpec>>,
}

fn host_files_settings(
    f: &HostFilesFile,
) -> Result<voltd_actors::settings::HostFilesSettings, ConfigError> {
    let roots = f
        .roots
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|r| match r {
            RootSpec::Named { name, path } => (name, path),
            RootSpec::Path(path) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, path)
            }
        })
        .collect();
    voltd_actors::settings::HostFilesSettings::try_new(roots).map_err(ConfigError::Invalid)
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// VOLT server URL (e.g. https://cloud.voltlabs.io).
    #[arg(long, value_name = "URL")]
    pub cloud_url: Option<String>,
    /// Team cluster id.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// Directory for credentials, manifest and the admin socket.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Heartbeat period in milliseconds.
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Log level filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Managed services to run: `all` (as configured, the default), `none`,
    /// or a comma list such as `redis,mongo` (the others are disabled).
    #[arg(long, value_name = "LIST")]
    pub services: Option<String>,
}

/// The effective configuration: settings plus logging.
#[derive(Debug, Clone)]
pub struct Effective {
    pub settings: Settings,
    pub log_level: String,
    pub log_format: LogFormat,
    pub config_file: Option<PathBuf>,
}

/// Environment lookup (injectable for tests; `std::env::set_var` is unsafe
/// in multi-threaded tests).
pub type Env = HashMap<String, String>;

/// The process environment.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

fn env_get<'a>(env: &'a Env, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| env.get(*n).map(String::as_str))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn env_u64(env: &Env, name: &str) -> Result<Option<u64>, ConfigError> {
    env_get(env, &[name])
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ConfigError::Invalid(format!("{name} must be a whole number, got {v:?}"))
            })
        })
        .transpose()
}

/// The default state directory: system-wide for root, per-user otherwise.
pub fn default_state_dir(env: &Env) -> PathBuf {
    if nix_is_root() {
        return PathBuf::from(settings::DEFAULT_STATE_DIR);
    }
    if let Some(x) = env_get(env, &["XDG_STATE_HOME"]) {
        return PathBuf::from(x).join("voltd");
    }
    match env_get(env, &["HOME"]) {
        Some(h) => PathBuf::from(h).join(".local/state/voltd"),
        None => PathBuf::from(settings::DEFAULT_STATE_DIR),
    }
}

fn nix_is_root() -> bool {
    // SAFETY-free: geteuid cannot fail. Read via /proc to avoid a libc dep.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Which config file to read: `--config`/`VOLTD_CONFIG` (must exist), else
/// the default path if it exists.
pub fn config_path(explicit: Option<&Path>, env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| env_get(env, &["VOLTD_CONFIG"]).map(PathBuf::from));
    match chosen {
        Some(p) => {
            if p.exists() {
                Ok(Some(p))
            } else {
                Err(ConfigError::Read {
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                    path: p,
                })
            }
        }
        None => {
            let d = PathBuf::from(DEFAULT_CONFIG_PATH);
            Ok(d.exists().then_some(d))
        }
    }
}

fn ms(v: u64, what: &str) -> Result<Duration, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid(format!(
            "{what} must be greater than 0"
        )));
    }
    Ok(Duration::from_millis(v))
}

fn parse_proxy(url: &str, no_proxy: Vec<String>) -> Result<ProxySettings, ConfigError> {
    let bad = || {
        ConfigError::Invalid(format!(
            "invalid proxy URL {url:?}: expected http://[user:pass@]host:port"
        ))
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(Secret::new(a)), h),
        None => (None, rest),
    };
    if hostport.is_empty() || hostport.contains('/') {
        return Err(bad());
    }
    let address = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    Ok(ProxySettings {
        address,
        basic_auth: auth,
        no_proxy,
    })
}

/// Builds the effective configuration.
pub fn resolve(
    file: FileConfig,
    config_file: Option<PathBuf>,
    env: &Env,
    flags: &Overrides,
) -> Result<Effective, ConfigError> {
    let cloud_url = flags
        .cloud_url
        .clone()
        .or_else(|| env_get(env, &["VOLT_CLOUD_URL", "VOLT_CLOUD_SERVER_URL"]).map(str::to_owned))
        .or(file.cloud_url.clone())
        .ok_or(ConfigError::Missing {
            what: "the VOLT server URL",
            key: "cloud_url",
            env: "VOLT_CLOUD_URL",
            flag: "--cloud-url",
        })?;
    let cloud_url = CloudUrl::parse(&cloud_url).map_err(ConfigError::Invalid)?;
    let socket_url = match env_get(env, &["VOLT_CLOUD_DAEMON_SOCKET_URL"])
        .map(str::to_owned)
        .or(file.socket_url.clone())
    {
        Some(u) => CloudUrl::parse(&u).map_err(ConfigError::Invalid)?,
        None => cloud_url.clone(),
    };
    let team_cluster_id = flags
        .cluster_id
        .clone()
        .or_else(|| env_get(env, &["TEAM_CLUSTER_ID"]).map(str::to_owned))
        .or(file.team_cluster_id.clone())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or(ConfigError::Missing {
            what: "the team cluster id",
            key: "team_cluster_id",
            env: "TEAM_CLUSTER_ID",
            flag: "--cluster-id",
        })?;
    if !team_cluster_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(ConfigError::Invalid(format!(
            "team cluster id {team_cluster_id:?} may only contain letters, digits, '-' and '_'"
        )));
    }
    let state_dir = flags
        .state_dir
        .clone()
        .or_else(|| env_get(env, &["VOLTD_STATE_DIR"]).map(PathBuf::from))
        .or(file.state_dir.clone())
        .unwrap_or_else(|| default_state_dir(env));
    let mut s = Settings::new(cloud_url, team_cluster_id, state_dir);
    s.socket_url = socket_url;

    let env_password = env_get(env, &["TEAM_CLUSTER_DAEMON_PASSWORD"]);
    s.daemon_password = env_password
        .map(Secret::from)
        .or(file.daemon_password.clone().map(Secret::from))
        .filter(|p| !p.is_empty());
    let env_token = env_get(env, &["TEAM_CLUSTER_ENROLLMENT_TOKEN"]);
    s.enrollment_token = match env_token {
        Some(t) => Some(Secret::from(t)),
        None => {
            let t = file
                .enrollment_token
                .clone()
                .map(Secret::from)
                .filter(|t| !t.is_empty());
            if t.is_some() {
                s.token_file = config_file.clone();
            }
            t
        }
    };
    if let Some(v) = env_get(env, &["VOLT_CLUSTER_INSTALL_MANIFEST_VERSION"])
        .map(str::to_owned)
        .or(file.installed_version.clone())
    {
        let v = v.trim().to_owned();
        if v.is_empty() || v.len() > volt_protocol::enrollment::MAX_INSTALLED_VERSION_LEN {
            return Err(ConfigError::Invalid(
                "installed_version must be 1..64 characters".into(),
            ));
        }
        s.installed_version = v;
    }
    if let Some(v) = flags
        .heartbeat_interval_ms
        .or(env_u64(env, "TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS")?)
        .or(file.heartbeat_interval_ms)
    {
        s.heartbeat_interval = ms(v, "heartbeat_interval_ms")?;
    }
    if let Some(d) = file.disk_path.clone() {
        s.disk_path = d;
    }
    s.update_command = match file.update_command.clone() {
        Some(argv) if argv.is_empty() => None,
        Some(argv) => {
            if !Path::new(&argv[0]).is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "update_command[0] must be an absolute path, got {:?}",
                    argv[0]
                )));
            }
            Some(argv)
        }
        None => None,
    };
    s.admin_socket = s.state_dir.join("voltd.sock");

    // [socket]
    let f = &file.socket;
    let defaults = SocketSettings::default();
    let base = f
        .reconnect_base_ms
        .map(|v| ms(v, "socket.reconnect_base_ms"))
        .transpose()?
        .unwrap_or(defaults.reconnect.base());
    let max = f
        .reconnect_max_ms
        .map(|v| ms(v, "socket.reconnect_max_ms"))
        .transpose()?
        .unwrap_or(defaults.reconnect.max());
    let jitter = f
        .reconnect_jitter
        .unwrap_or(settings::DEFAULT_RECONNECT_JITTER);
    s.socket.reconnect = ExponentialBackoff::try_new(base, max, 2.0, jitter)
        .map_err(|e| ConfigError::Invalid(format!("[socket] reconnect: {e}")))?;
    if let Some(v) = f.stable_after_ms {
        s.socket.stable_after = ms(v, "socket.stable_after_ms")?;
    }
    if let Some(v) = f.connect_timeout_ms {
        s.socket.connect_timeout = ms(v, "socket.connect_timeout_ms")?;
    }
    if let Some(v) = f.register_timeout_ms {
        s.socket.register_timeout = ms(v, "socket.register_timeout_ms")?;
    }
    if let Some(v) = f.command_timeout_ms {
        s.socket.command_timeout = ms(v, "socket.command_timeout_ms")?;
    }
    if let Some(v) = f.emit_buffer {
        if v == 0 {
            return Err(ConfigError::Invalid(
                "socket.emit_buffer must be greater than 0".into(),
            ));
        }
        s.socket.emit_buffer = v;
    }
    s.socket.ca_file = env_get(env, &["VOLTD_CA_FILE"])
        .map(PathBuf::from)
        .or(f.ca_file.clone());
    let no_proxy: Vec<String> = match env_get(env, &["NO_PROXY", "no_proxy"]) {
        Some(v) => v
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        None => f.no_proxy.clone().unwrap_or_default(),
    };
    let proxy = f.proxy.clone().or_else(|| {
        let names: &[&str] = if s.socket_url.is_tls() {
            &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        } else {
            &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        };
        env_get(env, names).map(str::to_owned)
    });
    s.socket.proxy = proxy.map(|p| parse_proxy(&p, no_proxy)).transpose()?;

    // [supervisor]
    let max_restarts = file
        .supervisor
        .max_restarts
        .unwrap_or(otp::supervisor::DEFAULT_MAX_RESTARTS);
    let window = file
        .supervisor
        .window_secs
        .map(Duration::from_secs)
        .unwrap_or(otp::supervisor::DEFAULT_RESTART_WINDOW);
    s.intensity = Intensity::try_new(max_restarts, window).map_err(ConfigError::Invalid)?;

    // [install]
    let mut install = InstallSettings::default();
    if let Some(root) = env_get(env, &["TEAM_CLUSTER_INSTALL_ROOT"])
        .map(PathBuf::from)
        .or(file.install.install_root.clone())
    {
        if !root.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "install_root must be an absolute path, got {}",
                root.display()
            )));
        }
        install.install_root = root;
    }
    install.fetch_manifest = file.install.fetch_manifest.unwrap_or(false);
    if let Some(ports) = file.install.ports {
        ports
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[install] ports: {e}")))?;
        install.ports = Some(ports);
    }
    s.install = install;
    s.terminal = terminal_settings(&file.terminal)?;
    s.host_files = host_files_settings(&file.host_files)?;
    s.services = crate::service_config::resolve(&file.services).map_err(ConfigError::Invalid)?;
    if let Some(list) = &flags.services {
        crate::service_config::restrict(&mut s.services, list).map_err(ConfigError::Invalid)?;
    }

    let log_level = flags
        .log_level
        .clone()
        .or_else(|| env_get(env, &["LOG_LEVEL"]).map(str::to_owned))
        .or(file.log_level.clone())
        .unwrap_or_else(|| "info".into());
    let log_format = flags.log_format.or(file.log_format).unwrap_or_default();
    Ok(Effective {
        settings: s,
        log_level,
        log_format,
        config_file,
    })
}

/// `[terminal]`, validated.
fn terminal_settings(f: &TerminalFile) -> Result<TerminalSettings, ConfigError> {
    let mut t = TerminalSettings::default();
    if let Some(enabled) = f.enabled {
        t.enabled = enabled;
    }
    if let Some(user) = &f.user {
        let user = user.trim();
        let valid = (1..=MAX_USER_NAME_LEN).contains(&user.len())
            && !user.starts_with('-')
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(ConfigError::Invalid(format!(
                "[terminal] user {user:?} is not a valid user name (1..{MAX_USER_NAME_LEN} characters of [A-Za-z0-9._-], not starting with '-')"
            )));
        }
        t.user = Some(user.to_owned());
    }
    if let Some(shell) = &f.shell {
        if !shell.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "[terminal] shell must be an absolute path, got {}",
                shell.display()
            )));
        }
        t.shell = Some(shell.clone());
    }
    if let Some(secs) = f.idle_timeout_secs {
        if secs == 0 {
            return Err(ConfigError::Invalid(
                "[terminal] idle_timeout_secs must be greater than 0".into(),
            ));
        }
        t.idle_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = f.max_sessions {
        if !(1..=MAX_TERMINAL_SESSIONS).contains(&n) {
            return Err(ConfigError::Invalid(format!(
                "[terminal] max_sessions must be between 1 and {MAX_TERMINAL_SESSIONS}, got {n}"
            )));
        }
        t.max_sessions = n;
    }
    Ok(t)
}

/// Loads the file (if any) and resolves everything.
pub fn load(
    explicit: Option<&Path>,
    env: &Env,
    flags: &Overrides,
) -> Result<Effective, ConfigError> {
    let path = config_path(explicit, env)?;
    let file = match &path {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    resolve(file, path, env, flags)
}

fn redact(s: &Option<Secret>) -> Option<&'static str> {
    s.as_ref().map(|_| "***")
}

/// The effective configuration as TOML, secrets replaced by `***`.
pub fn show(e: &Effective) -> String {
    let s = &e.settings;
    let value = serde_json::json!({
        "config_file": e.config_file.as_ref().map(|p| p.display().to_string()),
        "cloud_url": s.cloud_url.to_string(),
        "socket_url": s.socket_url.to_string(),
        "team_cluster_id": s.team_cluster_id,
        "daemon_password": redact(&s.daemon_password),
        "enrollment_token": redact(&s.enrollment_token),
        "installed_version": s.installed_version,
        "heartbeat_interval_ms": s.heartbeat_interval.as_millis() as u64,
        "state_dir": s.state_dir.display().to_string(),
        "admin_socket": s.admin_socket.display().to_string(),
        "disk_path": s.disk_path.display().to_string(),
        "update_command": s.update_command,
        "log_level": e.log_level,
        "log_format": e.log_format,
        "socket": {
            "reconnect_base_ms": s.socket.reconnect.base().as_millis() as u64,
            "reconnect_max_ms": s.socket.reconnect.max().as_millis() as u64,
            "stable_after_ms": s.socket.stable_after.as_millis() as u64,
            "connect_timeout_ms": s.socket.connect_timeout.as_millis() as u64,
            "register_timeout_ms": s.socket.register_timeout.as_millis() as u64,
            "command_timeout_ms": s.socket.command_timeout.as_millis() as u64,
            "emit_buffer": s.socket.emit_buffer,
            "ca_file": s.socket.ca_file.as_ref().map(|p| p.display().to_string()),
            "proxy": s.socket.proxy.as_ref().map(|p| {
                let auth = if p.basic_auth.is_some() { "***@" } else { "" };
                format!("http://{auth}{}", p.address)
            }),
            "no_proxy": s.socket.proxy.as_ref().map(|p| p.no_proxy.clone()),
        },
        "supervisor": {
            "max_restarts": s.intensity.max_restarts(),
            "window_secs": s.intensity.window().as_secs(),
        },
        "install": {
            "install_root": s.install.install_root.display().to_string(),
            "fetch_manifest": s.install.fetch_manifest,
            "ports": s.install.ports,
        },
        "terminal": {
            "enabled": s.terminal.enabled,
            "user": s.terminal.user,
            "shell": s.terminal.shell.as_ref().map(|p| p.display().to_string()),
            "idle_timeout_secs": s.terminal.idle_timeout.as_secs(),
            "max_sessions": s.terminal.max_sessions,
        },
        "services": crate::service_config::show(&s.services),
        "host_files": {
            "roots": s.host_files.roots.iter().map(|r| serde_json::json!({
                "name": r.name,
                "path": r.path.display().to_string(),
            })).collect::<Vec<_>>(),
        },
    });
    // JSON → TOML: nulls are dropped (TOML has none).
    fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, strip_nulls(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    toml::to_string(&strip_nulls(value)).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base_file() -> FileConfig {
        toml::from_str(
            r#"
            cloud_url = "http://file.example:8080/"
            team_cluster_id = "file-id"
            daemon_password = "file-pw"
            heartbeat_interval_ms = 5000
            state_dir = "/tmp/voltd-test-state"
            [socket]
            command_timeout_ms = 1000
            [install]
            ports = { minio = 9100, redis = 6390, mongodb = 27018, daemon = 8090 }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn update_command_is_an_argument_vector_never_a_shell_string() {
        let parse = |t: &str| toml::from_str::<FileConfig>(t);
        let e = parse(r#"update_command = "echo {image} > f""#).unwrap_err();
        assert!(e.to_string().contains("argument vector"), "{e}");
        let mut f = base_file();
        f.update_command = parse(r#"update_command = ["/usr/local/sbin/up", "--quiet"]"#)
            .unwrap()
            .update_command;
        let s = resolve(f.clone(), None, &env(&[]), &Overrides::default())
            .unwrap()
            .settings;
        assert_eq!(
            s.update_command,
            Some(vec!["/usr/local/sbin/up".to_owned(), "--quiet".to_owned()])
        );
        f.update_command = Some(vec!["up".into()]);
        assert!(resolve(f.clone(), None, &env(&[]), &Overrides::default()).is_err());
        f.update_command = Some(vec![]);
        let s = resolve(f, None, &env(&[]), &Overrides::default())
            .unwrap()
            .settings;
        assert_eq!(s.update_command, None);
    }

    #[test]
    fn file_values_apply() {
        let e = resolve(base_file(), None, &env(&[]), &Overrides::default()).unwrap();
        let s = &e.settings;
        assert_eq!(s.cloud_url.as_str(), "http://file.example:8080");
        assert_eq!(s.team_cluster_id, "file-id");
        assert_eq!(s.daemon_password.as_ref().unwrap().expose(), "file-pw");
        assert_eq!(s.heartbeat_interval, Duration::from_millis(5000));
        assert_eq!(s.socket.command_timeout, Duration::from_millis(1000));
        assert_eq!(s.install.ports.unwrap().redis, 6390);
        assert_eq!(
            s.admin_socket,
            PathBuf::from("/tmp/voltd-test-state/voltd.sock")
        );
        assert_eq!(e.log_level, "info");
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let env = env(&[
            ("VOLT_CLOUD_URL", "https://env.example"),
            ("TEAM_CLUSTER_ID", "env-id"),
            ("TEAM_CLUSTER_DAEMON_PASSWORD", "env-pw"),
            ("TEAM_CLUSTER_ENROLLMENT_TOKEN", "env-token"),
            ("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS", "2500"),
            ("VOLT_CLUSTER_INSTALL_MANIFEST_VERSION", "2.0.0"),
            ("VOLT_CLOUD_DAEMON_SOCKET_URL", "https://socket.example"),
            ("LOG_LEVEL", "debug"),
        ]);
        let e = resolve(base_file(), None, &env, &Overrides::default()).unwrap();
        let s = &e.settings;
        assert_eq!(s.cloud_url.as_str(), "https://env.example");
        assert_eq!(s.socket_url.as_str(), "https://socket.example");
        assert_eq!(s.team_cluster_id, "env-id");
        assert_eq!(s.daemon_password.as_ref().unwrap().expose(), "env-pw");
        assert_eq!(s.enrollment_token.as_ref().unwrap().expose(), "env-token");
        assert!(
            s.token_file.is_none(),
            "a token from the environment is not in a file"
        );
        assert_eq!(s.heartbeat_interval, Duration::from_millis(2500));
        assert_eq!(s.installed_version, "2.0.0");
        assert_eq!(e.log_level, "debug");

        let flags = Overrides {
            cloud_url: Some("http://flag.example".into()),
            cluster_id: Some("flag-id".into()),
            heartbeat_interval_ms: Some(100),
            log_format: Some(LogFormat::Json),
            ..Overrides::default()
        };
        let e = resolve(base_file(), None, &env, &flags).unwrap();
        assert_eq!(e.settings.cloud_url.as_str(), "http://flag.example");
        assert_eq!(e.settings.team_cluster_id, "flag-id");
        assert_eq!(e.settings.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(e.log_format, LogFormat::Json);
    }

    #[test]
    fn token_from_the_file_remembers_the_file() {
        let mut f = base_file();
        f.enrollment_token = Some("tok".into());
        let e = resolve(
            f,
            Some(PathBuf::from("/etc/voltd/voltd.toml")),
            &env(&[]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            e.settings.token_file,
            Some(PathBuf::from("/etc/voltd/voltd.toml"))
        );
    }

    #[test]
    fn missing_and_invalid_values_are_clear_errors() {
        let err = resolve(
            FileConfig::default(),
            None,
            &env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("VOLT_CLOUD_URL"), "{err}");
        let mut f = base_file();
        f.team_cluster_id = None;
        let err = resolve(f, None, &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("TEAM_CLUSTER_ID"), "{err}");
        let mut f = base_file();
        f.team_cluster_id = Some("../etc".into());
        assert!(resolve(f, None, &env(&[]), &Overrides::default()).is_err());
        let err = resolve(
            base_file(),
            None,
            &env(&[("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS", "soon")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS"),
            "{err}"
        );
        let mut f = base_file();
        f.heartbeat_interval_ms = Some(0);
        assert!(resolve(f, None, &env(&[]), &Overrides::default()).is_err());
        let mut f = base_file();
        f.socket.reconnect_jitter = Some(2.0);
        assert!(resolve(f, None, &env(&[]), &Overrides::default()).is_err());
        let mut f = base_file();
        f.install.ports = Some(ServicePorts {
            minio: 1,
            redis: 1,
            mongodb: 2,
            daemon: 3,
        });
        assert!(resolve(f, None, &env(&[]), &Overrides::default()).is_err());
    }

    #[test]
    fn services_sections_apply_are_validated_and_shown_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "cloud_url = \"http://x\"\nteam_cluster_id = \"c\"\n[services.redis]\nmode = \"external\"\nuser = \"u\"\npassword = \"svc-secret-7\"\n[services.minio]\nmode = \"disabled\"\n",
        )
        .unwrap();
        let f = FileConfig::load(&p).unwrap();
        let e = resolve(f, None, &env(&[]), &Overrides::default()).unwrap();
        let s = &e.settings.services;
        assert_eq!(s.redis.mode, voltd_actors::services::ServiceMode::External);
        assert_eq!(s.mongo.mode, voltd_actors::services::ServiceMode::Native);
        assert_eq!(s.minio.mode, voltd_actors::services::ServiceMode::Disabled);
        let out = show(&e);
        assert!(!out.contains("svc-secret-7"), "{out}");
        assert!(out.contains("[services.redis]"), "{out}");
        assert!(!format!("{e:?}").contains("svc-secret-7"));

        std::fs::write(&p, "[services.redis]\nprobe_intervall_ms = 5\n").unwrap();
        let err = FileConfig::load(&p).unwrap_err();
        assert!(err.to_string().contains("probe_intervall_ms"), "{err}");
        let mut f = base_file();
        f.services.redis = Some(crate::service_config::ServiceFile {
            bind: Some("not-an-ip".into()),
            ..Default::default()
        });
        let err = resolve(f, None, &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("services.redis.bind"), "{err}");
    }

    #[test]
    fn terminal_section_applies_and_is_shown() {
        let mut f = base_file();
        f.terminal = toml::from_str(
            r#"
            enabled = false
            user = "volt"
            shell = "/bin/zsh"
            idle_timeout_secs = 60
            max_sessions = 4
            "#,
        )
        .unwrap();
        let e = resolve(f, None, &env(&[]), &Overrides::default()).unwrap();
        let t = &e.settings.terminal;
        assert!(!t.enabled);
        assert_eq!(t.user.as_deref(), Some("volt"));
        assert_eq!(t.shell, Some(PathBuf::from("/bin/zsh")));
        assert_eq!(t.idle_timeout, Duration::from_secs(60));
        assert_eq!(t.max_sessions, 4);
        let out = show(&e);
        assert!(out.contains("[terminal]"), "{out}");
        assert!(out.contains("max_sessions = 4"), "{out}");
        assert!(out.contains("user = \"volt\""), "{out}");

        let defaults = resolve(base_file(), None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(defaults.settings.terminal, TerminalSettings::default());
        assert!(defaults.settings.terminal.enabled);
        assert!(show(&defaults).contains("idle_timeout_secs = 600"));
    }

    #[test]
    fn terminal_section_is_validated() {
        for (toml_text, needle) in [
            ("user = \"-rf\"", "[terminal] user"),
            ("user = \"a b\"", "[terminal] user"),
            ("user = \"\"", "[terminal] user"),
            ("shell = \"bash\"", "absolute path"),
            ("idle_timeout_secs = 0", "idle_timeout_secs"),
            ("max_sessions = 0", "max_sessions"),
            ("max_sessions = 100000", "max_sessions"),
        ] {
            let mut f = base_file();
            f.terminal = toml::from_str(toml_text).unwrap();
            let err = resolve(f, None, &env(&[]), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(needle), "{toml_text}: {err}");
        }
        assert!(toml::from_str::<TerminalFile>("idle_timeout = 5").is_err());
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "cloud_url = \"http://x\"\nheartbeat_intervall_ms = 5\n").unwrap();
        let err = FileConfig::load(&p).unwrap_err();
        assert!(err.to_string().contains("heartbeat_intervall_ms"), "{err}");
    }

    #[test]
    fn explicit_config_file_must_exist() {
        let err = config_path(Some(Path::new("/nonexistent/voltd.toml")), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/voltd.toml"));
    }

    #[test]
    fn proxy_from_environment_with_auth_and_no_proxy() {
        let env = env(&[
            ("HTTPS_PROXY", "http://user:secret@proxy.lan:3128"),
            ("NO_PROXY", "localhost, .internal"),
        ]);
        let mut f = base_file();
        f.cloud_url = Some("https://cloud.example".into());
        let e = resolve(f, None, &env, &Overrides::default()).unwrap();
        let p = e.settings.socket.proxy.as_ref().unwrap();
        assert_eq!(p.address, "proxy.lan:3128");
        assert_eq!(p.basic_auth.as_ref().unwrap().expose(), "user:secret");
        assert_eq!(p.no_proxy, vec!["localhost", ".internal"]);
        // http URLs look at HTTP_PROXY instead.
        let e = resolve(base_file(), None, &env, &Overrides::default()).unwrap();
        assert!(e.settings.socket.proxy.is_none());
    }

    #[test]
    fn show_redacts_every_secret() {
        let env = env(&[
            ("TEAM_CLUSTER_ENROLLMENT_TOKEN", "tok-secret-1"),
            ("HTTPS_PROXY", "http://u:proxy-secret@p:1"),
        ]);
        let mut f = base_file();
        f.cloud_url = Some("https://cloud.example".into());
        let e = resolve(f, None, &env, &Overrides::default()).unwrap();
        let out = show(&e);
        for secret in ["file-pw", "tok-secret-1", "proxy-secret"] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(out.contains("daemon_password = \"***\""), "{out}");
        assert!(out.contains("team_cluster_id = \"file-id\""), "{out}");
        assert!(!format!("{e:?}").contains("file-pw"));
    }
}

#[cfg(test)]
mod host_files_tests {
    use super::*;

    fn file(roots: &str) -> FileConfig {
        toml::from_str(&format!(
            "cloud_url = \"http://x\"\nteam_cluster_id = \"c\"\nstate_dir = \"/tmp/s\"\n[host_files]\nroots = {roots}\n"
        ))
        .unwrap()
    }

    #[test]
    fn roots_by_path_or_name() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let f = file(&format!(
            "[\"{}\", {{ name = \"lab\", path = \"{}\" }}]",
            a.path().display(),
            b.path().display()
        ));
        let e = resolve(f, None, &Env::new(), &Overrides::default()).unwrap();
        let roots = &e.settings.host_files.roots;
        assert_eq!(roots.len(), 2);
        assert_eq!(
            roots[0].name,
            a.path().file_name().unwrap().to_string_lossy()
        );
        assert_eq!(roots[1].name, "lab");
        assert!(show(&e).contains("name = \"lab\""));
    }

    #[test]
    fn bad_roots_are_config_errors() {
        let a = tempfile::tempdir().unwrap();
        let p = a.path().display();
        for roots in [
            "[\"relative/dir\"]".to_owned(),
            "[\"/nonexistent/dir/x\"]".to_owned(),
            format!("[{{ name = \"x\", path = \"{p}\" }}, {{ name = \"x\", path = \"{p}\" }}]"),
            format!("[{{ name = \"a/b\", path = \"{p}\" }}]"),
        ] {
            assert!(
                resolve(file(&roots), None, &Env::new(), &Overrides::default()).is_err(),
                "{roots}"
            );
        }
    }
}
