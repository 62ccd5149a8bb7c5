//! `[services.redis]`, `[services.mongo]`, `[services.minio]`: how each
//! managed service is run and watched.
//!
//! [`ServicesSettings::native`] holds the production defaults (the config
//! file's starting point), [`ServicesSettings::disabled`] manages nothing
//! (what `Settings::new` starts from, so an embedder opts in explicitly).

use super::values::{AbsPath, Jitter, ms, secs};
use crate::api::vocab::ServiceKind;
use otp::Intensity;
use otp::backoff::ExponentialBackoff;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use volt_protocol::register::Secret;

/// "Every few seconds": 5 s notices a dead service well within one 10 s
/// heartbeat period and costs one loopback round trip per service.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Loopback servers answer in milliseconds; 3 s still tolerates one busy
/// with a checkpoint or an AOF rewrite without calling it dead.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// mongod replays its journal after a crash before it accepts connections;
/// on a large data set that takes tens of seconds.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM → SIGKILL: mongod and Redis flush to disk on SIGTERM, which
/// takes seconds on a busy server; 20 s covers that and stays well inside
/// systemd's default stop timeout of 90 s for voltd itself.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Consecutive failed probes before a running service counts as unhealthy
/// and is restarted: one slow probe is no reason to restart a database.
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
/// First restart delay after a crash: long enough not to hot-loop, short
/// enough that a one-off crash costs about a second of downtime.
pub const DEFAULT_RESTART_BASE: Duration = Duration::from_millis(500);
/// Longest delay between two restarts before the intensity limit applies.
pub const DEFAULT_RESTART_MAX: Duration = Duration::from_secs(30);
/// Spread of restart delays (±20 %).
pub const DEFAULT_RESTART_JITTER: f64 = 0.2;
/// A database that crashed five times within five minutes will not be
/// fixed by a sixth restart: it is reported `failed` instead.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// See [`DEFAULT_MAX_RESTARTS`].
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(300);
/// A `failed` service (missing binary, restart intensity exceeded) is tried
/// again this often, so installing the binary or fixing the disk heals it
/// without a voltd restart, and a broken one does not hot-loop.
pub const DEFAULT_FAILED_RETRY: Duration = Duration::from_secs(300);
/// The services listen on loopback unless configured otherwise: the VOLT
/// server reaches them through the ports the installer published.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The argument that turns on MongoDB authentication (dropped while voltd
/// provisions the root user, see `services::mongo`).
pub const DEFAULT_MONGO_AUTH_FLAG: &str = "--auth";

/// The managed services' pid files, configs, secrets and data, inside the
/// state directory.
pub const SERVICES_DIR: &str = "services";

/// The placeholders a command line or environment value may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "port",
    "bind",
    "host",
    "data_dir",
    "user",
    "password",
    "config_file",
];

/// Who runs a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// voltd spawns and supervises the server process.
    Native,
    /// Something else runs it (a systemd unit, docker compose); voltd only
    /// probes, bootstraps and reports it.
    External,
    /// Not managed: not started, not probed, not expected by the status
    /// machine.
    Disabled,
}

impl ServiceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Native => "native",
            ServiceMode::External => "external",
            ServiceMode::Disabled => "disabled",
        }
    }
}

impl fmt::Display for ServiceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one service is run and watched (`[services.<name>]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    pub mode: ServiceMode,
    /// The command line (native mode), one argument per element, with
    /// `{port}`, `{bind}`, `{host}`, `{data_dir}`, `{user}`, `{password}`
    /// and `{config_file}` replaced at every start. The first element is the
    /// binary, looked up in `PATH` unless it contains a `/`. The file may
    /// give one string (split on whitespace) or an array.
    #[serde(deserialize_with = "command_line")]
    pub command: Vec<String>,
    /// Extra environment of the child (same placeholders). Values may hold
    /// secrets, so `Debug` shows the keys only and serialising (`config
    /// show`) masks secret-looking ones.
    #[serde(serialize_with = "redact_env")]
    pub env: BTreeMap<String, String>,
    /// Port; `None` = the install manifest's, else `[install] ports`, else
    /// the service's well-known port.
    pub port: Option<u16>,
    /// Address the server listens on (native mode).
    #[serde(deserialize_with = "ip_address")]
    pub bind: IpAddr,
    /// Host voltd connects to; `None` = loopback (or the bind address when
    /// it is a specific one). Mostly for external mode.
    #[serde(default, deserialize_with = "trimmed")]
    pub host: Option<String>,
    /// Data directory; `None` = `<state dir>/services/<name>`.
    pub data_dir: Option<AbsPath>,
    /// User name; the install manifest's wins (the VOLT server uses it).
    #[serde(default, deserialize_with = "trimmed")]
    pub user: Option<String>,
    /// Password; the install manifest's wins. Without either, voltd
    /// generates one and stores it under the state directory.
    #[serde(default, serialize_with = "super::values::redact")]
    pub password: Option<Secret>,
    #[serde(rename = "probe_interval_ms", with = "ms")]
    pub probe_interval: Duration,
    #[serde(rename = "probe_timeout_ms", with = "ms")]
    pub probe_timeout: Duration,
    /// How long a started server may take to answer its first probe.
    #[serde(rename = "start_timeout_ms", with = "ms")]
    pub start_timeout: Duration,
    /// SIGTERM → SIGKILL grace period.
    #[serde(rename = "stop_timeout_ms", with = "ms")]
    pub stop_timeout: Duration,
    /// Consecutive failed probes before the service counts as unhealthy.
    #[serde(deserialize_with = "super::values::at_least_one")]
    pub unhealthy_after: u32,
    /// First restart delay; see [`ServiceSettings::restart_backoff`].
    #[serde(rename = "restart_base_ms", with = "ms")]
    pub restart_base: Duration,
    /// Longest restart delay.
    #[serde(rename = "restart_max_ms", with = "ms")]
    pub restart_max: Duration,
    /// Spread of the restart delay: not a config key (always ±20 %);
    /// tests set 0 to see exact delays.
    #[serde(skip, default = "default_restart_jitter")]
    pub restart_jitter: Jitter,
    /// More restarts than this within `restart_window` → `failed`.
    pub max_restarts: u32,
    #[serde(rename = "restart_window_secs", with = "secs")]
    pub restart_window: Duration,
    /// How often a `failed` service is tried again.
    #[serde(rename = "failed_retry_secs", with = "secs")]
    pub failed_retry: Duration,
    /// MongoDB only: the argument dropped from the command line while the
    /// root user is provisioned (`None`, or `""` in the file = the command
    /// has no auth switch).
    #[serde(default, deserialize_with = "super::values::non_blank")]
    pub auth_flag: Option<String>,
}

impl fmt::Debug for ServiceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSettings")
            .field("mode", &self.mode)
            .field("command", &self.masked_command())
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("host", &self.host)
            .field("data_dir", &self.data_dir)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("probe_interval", &self.probe_interval)
            .field("probe_timeout", &self.probe_timeout)
            .field("start_timeout", &self.start_timeout)
            .field("stop_timeout", &self.stop_timeout)
            .field("unhealthy_after", &self.unhealthy_after)
            .field("restart_base", &self.restart_base)
            .field("restart_max", &self.restart_max)
            .field("restart_jitter", &self.restart_jitter)
            .field("max_restarts", &self.max_restarts)
            .field("restart_window", &self.restart_window)
            .field("failed_retry", &self.failed_retry)
            .field("auth_flag", &self.auth_flag)
            .finish()
    }
}

/// A command line: one string split on whitespace, or one argument per
/// element (for arguments with spaces).
fn command_line<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CommandLine {
        Line(String),
        Args(Vec<String>),
    }
    let line = CommandLine::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom("must be a string or an array of strings")
    })?;
    Ok(match line {
        CommandLine::Line(l) => l.split_whitespace().map(str::to_owned).collect(),
        CommandLine::Args(a) => a,
    })
}

fn ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("must be an IP address, got {text:?}")))
}

fn trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| s.trim().to_owned()))
}

/// Whether an environment variable name suggests a secret value.
pub fn secret_env_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| n.contains(w))
}

/// Secret-looking values (not placeholders like `{password}`) as `***`.
fn redact_env<S: Serializer>(env: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = env
        .iter()
        .map(|(k, v)| {
            let v = if secret_env_name(k) && !v.starts_with('{') {
                "***"
            } else {
                v.as_str()
            };
            (k.as_str(), v)
        })
        .collect();
    shown.serialize(s)
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

impl ServiceSettings {
    /// The production defaults of `kind` in `mode`.
    pub fn defaults(kind: ServiceKind, mode: ServiceMode) -> Self {
        let (command, env, auth_flag) = match kind {
            ServiceKind::Mongo => (
                args(&[
                    "mongod",
                    "--dbpath",
                    "{data_dir}",
                    "--port",
                    "{port}",
                    "--bind_ip",
                    "{bind}",
                    DEFAULT_MONGO_AUTH_FLAG,
                ]),
                BTreeMap::new(),
                Some(DEFAULT_MONGO_AUTH_FLAG.to_owned()),
            ),
            ServiceKind::Minio => (
                args(&[
                    "minio",
                    "server",
                    "{data_dir}",
                    "--address",
                    "{bind}:{port}",
                ]),
                BTreeMap::from([
                    ("MINIO_ROOT_USER".to_owned(), "{user}".to_owned()),
                    ("MINIO_ROOT_PASSWORD".to_owned(), "{password}".to_owned()),
                ]),
                None,
            ),
            ServiceKind::Redis => (
                args(&["redis-server", "{config_file}"]),
                BTreeMap::new(),
                None,
            ),
        };
        ServiceSettings {
            mode,
            command,
            env,
            port: None,
            bind: DEFAULT_BIND,
            host: None,
            data_dir: None,
            user: None,
            password: None,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            start_timeout: DEFAULT_START_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
            restart_base: DEFAULT_RESTART_BASE,
            restart_max: DEFAULT_RESTART_MAX,
            restart_jitter: default_restart_jitter(),
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_window: DEFAULT_RESTART_WINDOW,
            failed_retry: DEFAULT_FAILED_RETRY,
            auth_flag,
        }
    }

    /// The data directory: configured, else `<state dir>/services/<name>`.
    pub fn data_dir(&self, kind: ServiceKind, state_dir: &Path) -> PathBuf {
        match &self.data_dir {
            Some(d) => d.to_path_buf(),
            None => services_dir(state_dir).join(kind.name()),
        }
    }

    /// The command line with a literal password replaced by `***` (a test
    /// or stand-in command line may hold it).
    pub fn masked_command(&self) -> Vec<String> {
        let password = self
            .password
            .as_ref()
            .map(Secret::expose)
            .filter(|p| !p.is_empty());
        self.command
            .iter()
            .map(|a| match password {
                Some(p) => a.replace(p, "***"),
                None => a.clone(),
            })
            .collect()
    }

    /// The delay before each restart after a crash or an unhealthy spell:
    /// `restart_base` doubling up to `restart_max`, ±`restart_jitter`.
    pub fn try_restart_backoff(&self) -> Result<ExponentialBackoff, String> {
        ExponentialBackoff::try_new(
            self.restart_base,
            self.restart_max,
            2.0,
            self.restart_jitter.get(),
        )
        .map_err(|e| e.to_string())
    }

    /// [`Self::try_restart_backoff`], falling back to the defaults only for
    /// values [`Self::validate`] rejects.
    pub fn restart_backoff(&self) -> ExponentialBackoff {
        self.try_restart_backoff()
            .unwrap_or_else(|_| default_restart_backoff())
    }

    /// More than `max_restarts` restarts within `restart_window` → `failed`.
    pub fn try_intensity(&self) -> Result<Intensity, String> {
        Intensity::try_new(self.max_restarts, self.restart_window)
    }

    /// [`Self::try_intensity`], falling back to the defaults only for
    /// values [`Self::validate`] rejects.
    pub fn intensity(&self) -> Intensity {
        self.try_intensity().unwrap_or_else(|_| default_intensity())
    }

    /// Checks what can be checked without the manifest: the clear error an
    /// operator gets from `voltd run` instead of a service that never starts.
    /// A disabled service is not checked.
    pub fn validate(&self, kind: ServiceKind) -> Result<(), String> {
        let key = |k: &str| format!("services.{}.{k}", kind.name());
        if self.mode == ServiceMode::Disabled {
            return Ok(());
        }
        if self.mode == ServiceMode::Native {
            match self.command.first() {
                None => return Err(format!("{} must not be empty", key("command"))),
                Some(b) if b.trim().is_empty() => {
                    return Err(format!("{} must start with a binary", key("command")));
                }
                Some(_) => {}
            }
        }
        for arg in &self.command {
            check_placeholders(arg).map_err(|e| format!("{}: {e}", key("command")))?;
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(format!("{}: invalid variable name {k:?}", key("env")));
            }
            check_placeholders(v).map_err(|e| format!("{}.{k}: {e}", key("env")))?;
        }
        if self.port == Some(0) {
            return Err(format!("{} must be between 1 and 65535", key("port")));
        }
        if let Some(h) = &self.host
            && (h.trim().is_empty() || h.contains(['/', ' ']))
        {
            return Err(format!("{} must be a host name or address", key("host")));
        }
        for (what, value) in [
            ("user", self.user.as_deref()),
            ("password", self.password.as_ref().map(Secret::expose)),
        ] {
            if let Some(v) = value {
                // Redis ACL lines and env files are whitespace-separated.
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "{} must be non-empty and contain no spaces or control characters",
                        key(what)
                    ));
                }
            }
        }
        for (what, d) in [
            ("probe_interval_ms", self.probe_interval),
            ("probe_timeout_ms", self.probe_timeout),
            ("start_timeout_ms", self.start_timeout),
            ("stop_timeout_ms", self.stop_timeout),
            ("failed_retry_secs", self.failed_retry),
        ] {
            if d.is_zero() {
                return Err(format!("{} must be greater than 0", key(what)));
            }
        }
        if self.unhealthy_after == 0 {
            return Err(format!("{} must be at least 1", key("unhealthy_after")));
        }
        self.try_restart_backoff()
            .map_err(|e| format!("services.{} restart delay: {e}", kind.name()))?;
        self.try_intensity()
            .map_err(|e| format!("services.{}: {e}", kind.name()))?;
        if self.auth_flag.is_some() && kind != ServiceKind::Mongo {
            return Err(format!(
                "{} only applies to services.mongo",
                key("auth_flag")
            ));
        }
        Ok(())
    }
}

fn default_restart_jitter() -> Jitter {
    match Jitter::new(DEFAULT_RESTART_JITTER) {
        Ok(j) => j,
        Err(e) => unreachable!("0.2 is within 0..=1: {e}"),
    }
}

/// The default restart backoff (see the constants).
pub fn default_restart_backoff() -> ExponentialBackoff {
    match ExponentialBackoff::try_new(
        DEFAULT_RESTART_BASE,
        DEFAULT_RESTART_MAX,
        2.0,
        DEFAULT_RESTART_JITTER,
    ) {
        Ok(b) => b,
        // 500 ms ≤ 30 s, factor 2, jitter 0.2: valid by construction.
        Err(e) => unreachable!("default service restart backoff is valid: {e}"),
    }
}

/// The default restart intensity (see the constants).
pub fn default_intensity() -> Intensity {
    match Intensity::try_new(DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW) {
        Ok(i) => i,
        Err(e) => unreachable!("default service intensity has a non-zero window: {e}"),
    }
}

/// Rejects `{name}` tokens that are not placeholders (a typo would reach
/// the server's command line verbatim).
pub fn check_placeholders(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = &after[..close];
        let looks_like_placeholder =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if looks_like_placeholder && !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `<state dir>/services`: pid files, generated configs and secrets, and
/// the default data directories.
pub fn services_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(SERVICES_DIR)
}

/// `[services]`: all three services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesSettings {
    pub redis: ServiceSettings,
    pub mongo: ServiceSettings,
    pub minio: ServiceSettings,
}

impl ServicesSettings {
    /// Every service native with the production command lines.
    pub fn native() -> Self {
        Self::all(ServiceMode::Native)
    }

    /// Nothing managed (what `Settings::new` starts from).
    pub fn disabled() -> Self {
        Self::all(ServiceMode::Disabled)
    }

    fn all(mode: ServiceMode) -> Self {
        ServicesSettings {
            redis: ServiceSettings::defaults(ServiceKind::Redis, mode),
            mongo: ServiceSettings::defaults(ServiceKind::Mongo, mode),
            minio: ServiceSettings::defaults(ServiceKind::Minio, mode),
        }
    }

    pub fn get(&self, kind: ServiceKind) -> &ServiceSettings {
        match kind {
            ServiceKind::Redis => &self.redis,
            ServiceKind::Mongo => &self.mongo,
            ServiceKind::Minio => &self.minio,
        }
    }

    pub fn get_mut(&mut self, kind: ServiceKind) -> &mut ServiceSettings {
        match kind {
            ServiceKind::Redis => &mut self.redis,
            ServiceKind::Mongo => &mut self.mongo,
            ServiceKind::Minio => &mut self.minio,
        }
    }

    /// The managed (native or external) services, in start order.
    pub fn enabled(&self) -> Vec<ServiceKind> {
        ServiceKind::ALL
            .into_iter()
            .filter(|k| self.get(*k).mode != ServiceMode::Disabled)
            .collect()
    }

    /// The data directories voltd owns (native services), for uninstall.
    pub fn owned_data_dirs(&self, state_dir: &Path) -> Vec<PathBuf> {
        ServiceKind::ALL
            .into_iter()
            .filter(|k| self.get(*k).mode == ServiceMode::Native)
            .map(|k| self.get(k).data_dir(k, state_dir))
            .collect()
    }

    /// Validates every service and that explicit ports do not collide.
    pub fn validate(&self) -> Result<(), String> {
        let mut ports: Vec<(u16, ServiceKind)> = Vec::new();
        for kind in ServiceKind::ALL {
            let s = self.get(kind);
            s.validate(kind)?;
            if s.mode == ServiceMode::Native
                && let Some(p) = s.port
            {
                if let Some((_, other)) = ports.iter().find(|(q, _)| *q == p) {
                    return Err(format!(
                        "services.{}.port and services.{}.port are both {p}",
                        other.name(),
                        kind.name()
                    ));
                }
                ports.push((p, kind));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_defaults_are_the_documented_command_lines() {
        let s = ServicesSettings::native();
        assert_eq!(
            s.mongo.command.join(" "),
            "mongod --dbpath {data_dir} --port {port} --bind_ip {bind} --auth"
        );
        assert_eq!(
            s.minio.command.join(" "),
            "minio server {data_dir} --address {bind}:{port}"
        );
        assert_eq!(s.minio.env["MINIO_ROOT_PASSWORD"], "{password}");
        assert_eq!(s.redis.command.join(" "), "redis-server {config_file}");
        assert_eq!(s.redis.bind.to_string(), "127.0.0.1");
        assert_eq!(
            s.enabled(),
            [ServiceKind::Redis, ServiceKind::Mongo, ServiceKind::Minio]
        );
        assert!(ServicesSettings::disabled().enabled().is_empty());
        assert!(s.validate().is_ok());
        assert_eq!(s.redis.restart_backoff(), default_restart_backoff());
        assert_eq!(s.redis.intensity(), default_intensity());
    }

    #[test]
    fn default_data_dirs_live_under_the_state_dir() {
        let s = ServicesSettings::native();
        let dirs = s.owned_data_dirs(Path::new("/var/lib/voltd"));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/var/lib/voltd/services/redis"),
                PathBuf::from("/var/lib/voltd/services/mongo"),
                PathBuf::from("/var/lib/voltd/services/minio"),
            ]
        );
    }

    #[test]
    fn placeholder_typos_are_rejected() {
        assert!(check_placeholders("--dbpath {data_dir}").is_ok());
        assert!(
            check_placeholders("{\"json\": 1}").is_ok(),
            "not a placeholder"
        );
        let err = check_placeholders("--dbpath {datadir}").unwrap_err();
        assert!(err.contains("{datadir}"), "{err}");
    }

    #[test]
    fn validation_names_the_offending_key() {
        let mut s = ServicesSettings::native();
        s.redis.command.clear();
        assert!(s.validate().unwrap_err().contains("services.redis.command"));

        let mut s = ServicesSettings::native();
        s.mongo.password = Some(Secret::new("has space"));
        let err = s.validate().unwrap_err();
        assert!(err.contains("services.mongo.password"), "{err}");
        assert!(!err.contains("has space"), "no secret in errors: {err}");

        let mut s = ServicesSettings::native();
        s.redis.port = Some(7000);
        s.minio.port = Some(7000);
        assert!(s.validate().unwrap_err().contains("both 7000"));

        let mut s = ServicesSettings::native();
        s.minio.auth_flag = Some("--auth".into());
        assert!(s.validate().unwrap_err().contains("auth_flag"));

        let mut s = ServicesSettings::native();
        s.mongo.unhealthy_after = 0;
        assert!(s.validate().unwrap_err().contains("unhealthy_after"));

        let mut s = ServicesSettings::native();
        s.minio.restart_base = Duration::from_millis(500);
        s.minio.restart_max = Duration::from_millis(100);
        let err = s.validate().unwrap_err();
        assert!(err.contains("services.minio restart delay"), "{err}");
        assert_eq!(s.minio.restart_backoff(), default_restart_backoff());

        let mut s = ServicesSettings::native();
        s.redis.restart_window = Duration::ZERO;
        assert!(s.validate().unwrap_err().contains("services.redis"));

        // A disabled service is not checked at all.
        let mut s = ServicesSettings::native();
        s.redis.mode = ServiceMode::Disabled;
        s.redis.command.clear();
        assert!(s.validate().is_ok());
    }

    #[test]
    fn debug_hides_env_values_and_passwords() {
        let mut s = ServiceSettings::defaults(ServiceKind::Minio, ServiceMode::Native);
        s.env
            .insert("EXTRA_SECRET".into(), "env-secret-value".into());
        s.password = Some(Secret::new("pw-secret-value"));
        s.command.push("--key=pw-secret-value".into());
        let d = format!("{s:?}");
        assert!(!d.contains("env-secret-value"), "{d}");
        assert!(!d.contains("pw-secret-value"), "{d}");
        assert!(d.contains("EXTRA_SECRET"), "{d}");
    }
}
