//! `[services.redis]`, `[services.mongo]` and `[services.minio]` of the
//! config file: how voltd runs each managed service. Every key is optional;
//! without a section the service runs natively with the production command
//! line. Keys (durations in the unit their name says):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `mode` | `native` | `native` (voltd runs it), `external` (voltd only probes it), `disabled` |
//! | `command` | see below | command line, a string (split on spaces) or an array; placeholders `{port}`, `{bind}`, `{host}`, `{data_dir}`, `{user}`, `{password}`, `{config_file}` |
//! | `env` | minio: `MINIO_ROOT_USER/PASSWORD` | extra environment of the server, same placeholders |
//! | `port` | install manifest, `[install] ports`, else 6379 / 27017 / 9000 | |
//! | `bind` | `127.0.0.1` | address the server listens on (an IP address) |
//! | `host` | loopback | where voltd connects (external mode) |
//! | `data_dir` | `<state_dir>/services/<name>` | absolute path |
//! | `user`, `password` | install manifest, else generated and stored 0600 | required in external mode without a manifest |
//! | `probe_interval_ms`, `probe_timeout_ms` | 5000, 3000 | health probes |
//! | `start_timeout_ms`, `stop_timeout_ms` | 60000, 20000 | first answer after start; SIGTERM → SIGKILL |
//! | `unhealthy_after` | 3 | failed probes in a row before a restart |
//! | `restart_base_ms`, `restart_max_ms` | 500, 30000 | restart delay, doubling, ±20 % jitter |
//! | `max_restarts`, `restart_window_secs` | 5, 300 | more restarts within the window → `failed` |
//! | `failed_retry_secs` | 300 | how often a `failed` service is tried again |
//! | `auth_flag` (mongo) | `--auth` | dropped while the root user is provisioned; `""` = none |
//!
//! Default command lines: `mongod --dbpath {data_dir} --port {port}
//! --bind_ip {bind} --auth`, `minio server {data_dir} --address
//! {bind}:{port}`, `redis-server {config_file}` (voltd writes that config
//! and the ACL file).

use otp::Intensity;
use otp::backoff::ExponentialBackoff;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use volt_protocol::register::Secret;
use voltd_actors::services::settings::DEFAULT_RESTART_JITTER;
use voltd_actors::services::{ServiceKind, ServiceMode, ServiceSettings, ServicesSettings};

/// A command line: one string split on whitespace, or one argument per
/// element (for arguments with spaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    Line(String),
    Args(Vec<String>),
}

impl CommandLine {
    fn args(&self) -> Vec<String> {
        match self {
            CommandLine::Line(l) => l.split_whitespace().map(str::to_owned).collect(),
            CommandLine::Args(a) => a.clone(),
        }
    }
}

/// `[services.<name>]`. Values that may be secret (`password`, `env`) are
/// [`Secret`]s, and `Debug` masks the password inside the command line too.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    pub mode: Option<ServiceMode>,
    pub command: Option<CommandLine>,
    pub env: Option<BTreeMap<String, Secret>>,
    pub port: Option<u16>,
    pub bind: Option<String>,
    pub host: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub probe_interval_ms: Option<u64>,
    pub probe_timeout_ms: Option<u64>,
    pub start_timeout_ms: Option<u64>,
    pub stop_timeout_ms: Option<u64>,
    pub unhealthy_after: Option<u32>,
    pub restart_base_ms: Option<u64>,
    pub restart_max_ms: Option<u64>,
    pub max_restarts: Option<u32>,
    pub restart_window_secs: Option<u64>,
    pub failed_retry_secs: Option<u64>,
    pub auth_flag: Option<String>,
}

impl std::fmt::Debug for ServiceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = self
            .password
            .as_ref()
            .map(|p| p.expose())
            .filter(|p| !p.is_empty());
        let command = self.command.as_ref().map(|c| {
            c.args()
                .into_iter()
                .map(|a| match password {
                    Some(p) => a.replace(p, "***"),
                    None => a,
                })
                .collect::<Vec<_>>()
        });
        f.debug_struct("ServiceFile")
            .field("mode", &self.mode)
            .field("command", &command)
            .field("env", &self.env)
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("host", &self.host)
            .field("data_dir", &self.data_dir)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// `[services]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    pub redis: Option<ServiceFile>,
    pub mongo: Option<ServiceFile>,
    pub minio: Option<ServiceFile>,
}

impl ServicesFile {
    fn get(&self, kind: ServiceKind) -> Option<&ServiceFile> {
        match kind {
            ServiceKind::Redis => self.redis.as_ref(),
            ServiceKind::Mongo => self.mongo.as_ref(),
            ServiceKind::Minio => self.minio.as_ref(),
        }
    }
}

fn positive(v: u64, key: &str, unit: fn(u64) -> Duration) -> Result<Duration, String> {
    if v == 0 {
        return Err(format!("{key} must be greater than 0"));
    }
    Ok(unit(v))
}

fn apply_one(kind: ServiceKind, f: &ServiceFile, s: &mut ServiceSettings) -> Result<(), String> {
    let key = |k: &str| format!("services.{}.{k}", kind.name());
    if let Some(m) = f.mode {
        s.mode = m;
    }
    if let Some(c) = &f.command {
        s.command = c.args();
    }
    if let Some(env) = &f.env {
        s.env
            .extend(env.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())));
    }
    if f.port.is_some() {
        s.port = f.port;
    }
    if let Some(b) = &f.bind {
        s.bind = b
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("{} must be an IP address, got {b:?}", key("bind")))?;
    }
    if let Some(h) = &f.host {
        s.host = Some(h.trim().to_owned());
    }
    if let Some(d) = &f.data_dir {
        s.data_dir = Some(d.clone());
    }
    if let Some(u) = &f.user {
        s.user = Some(u.trim().to_owned());
    }
    if let Some(p) = &f.password {
        s.password = Some(p.clone());
    }
    let ms = |v: u64, k: &str| positive(v, &key(k), Duration::from_millis);
    let secs = |v: u64, k: &str| positive(v, &key(k), Duration::from_secs);
    if let Some(v) = f.probe_interval_ms {
        s.probe_interval = ms(v, "probe_interval_ms")?;
    }
    if let Some(v) = f.probe_timeout_ms {
        s.probe_timeout = ms(v, "probe_timeout_ms")?;
    }
    if let Some(v) = f.start_timeout_ms {
        s.start_timeout = ms(v, "start_timeout_ms")?;
    }
    if let Some(v) = f.stop_timeout_ms {
        s.stop_timeout = ms(v, "stop_timeout_ms")?;
    }
    if let Some(v) = f.unhealthy_after {
        s.unhealthy_after = v;
    }
    if f.restart_base_ms.is_some() || f.restart_max_ms.is_some() {
        let base = f
            .restart_base_ms
            .map(|v| ms(v, "restart_base_ms"))
            .transpose()?
            .unwrap_or(s.restart_backoff.base());
        let max = f
            .restart_max_ms
            .map(|v| ms(v, "restart_max_ms"))
            .transpose()?
            .unwrap_or(s.restart_backoff.max().max(base));
        s.restart_backoff = ExponentialBackoff::try_new(base, max, 2.0, DEFAULT_RESTART_JITTER)
            .map_err(|e| format!("services.{} restart delay: {e}", kind.name()))?;
    }
    if f.max_restarts.is_some() || f.restart_window_secs.is_some() {
        let window = f
            .restart_window_secs
            .map(|v| secs(v, "restart_window_secs"))
            .transpose()?
            .unwrap_or(s.intensity.window());
        s.intensity =
            Intensity::try_new(f.max_restarts.unwrap_or(s.intensity.max_restarts()), window)
                .map_err(|e| format!("services.{}: {e}", kind.name()))?;
    }
    if let Some(v) = f.failed_retry_secs {
        s.failed_retry = secs(v, "failed_retry_secs")?;
    }
    if let Some(flag) = &f.auth_flag {
        let flag = flag.trim();
        s.auth_flag = (!flag.is_empty()).then(|| flag.to_owned());
    }
    Ok(())
}

/// The effective service settings: the production defaults (every service
/// native) with the file's values on top, validated.
pub fn resolve(file: &ServicesFile) -> Result<ServicesSettings, String> {
    let mut all = ServicesSettings::native();
    for kind in ServiceKind::ALL {
        if let Some(f) = file.get(kind) {
            apply_one(kind, f, all.get_mut(kind))?;
        }
    }
    all.validate()?;
    Ok(all)
}

/// Applies `--services`: `all` keeps the configuration, `none` disables
/// every service, a comma list disables the services it does not name.
pub fn restrict(s: &mut ServicesSettings, list: &str) -> Result<(), String> {
    let list = list.trim();
    if list == "all" {
        return Ok(());
    }
    let mut keep = Vec::new();
    if list != "none" {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = ServiceKind::from_name(name).ok_or_else(|| {
                format!(
                    "--services: unknown service {name:?} (known: all, none, redis, mongo, minio)"
                )
            })?;
            keep.push(kind);
        }
        if keep.is_empty() {
            return Err("--services needs all, none, or a comma list of services".into());
        }
    }
    for kind in ServiceKind::ALL {
        if !keep.contains(&kind) {
            s.get_mut(kind).mode = ServiceMode::Disabled;
        }
    }
    Ok(())
}

/// Whether an environment variable name suggests a secret value.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| n.contains(w))
}

/// `[services]` for `voltd config show`: configured passwords, secret-looking
/// environment values and any literal password in a command line are `***`.
pub fn show(s: &ServicesSettings) -> Value {
    let mut out = serde_json::Map::new();
    for kind in ServiceKind::ALL {
        let svc = s.get(kind);
        let literal: Vec<String> = svc
            .password
            .iter()
            .map(|p| p.expose().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let mask = |text: &str| {
            literal
                .iter()
                .fold(text.to_owned(), |t, p| t.replace(p.as_str(), "***"))
        };
        let env: BTreeMap<String, String> = svc
            .env
            .iter()
            .map(|(k, v)| {
                let shown = if secret_name(k) && !v.starts_with('{') {
                    "***".to_owned()
                } else {
                    mask(v)
                };
                (k.clone(), shown)
            })
            .collect();
        out.insert(
            kind.name().to_owned(),
            json!({
                "mode": svc.mode,
                "command": svc.command.iter().map(|a| mask(a)).collect::<Vec<_>>(),
                "env": env,
                "port": svc.port,
                "bind": svc.bind.to_string(),
                "host": svc.host,
                "data_dir": svc.data_dir.as_ref().map(|p| p.display().to_string()),
                "user": svc.user,
                "password": svc.password.as_ref().map(|_| "***"),
                "probe_interval_ms": svc.probe_interval.as_millis() as u64,
                "probe_timeout_ms": svc.probe_timeout.as_millis() as u64,
                "start_timeout_ms": svc.start_timeout.as_millis() as u64,
                "stop_timeout_ms": svc.stop_timeout.as_millis() as u64,
                "unhealthy_after": svc.unhealthy_after,
                "restart_base_ms": svc.restart_backoff.base().as_millis() as u64,
                "restart_max_ms": svc.restart_backoff.max().as_millis() as u64,
                "max_restarts": svc.intensity.max_restarts(),
                "restart_window_secs": svc.intensity.window().as_secs(),
                "failed_retry_secs": svc.failed_retry.as_secs(),
                "auth_flag": svc.auth_flag,
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServicesFile, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn without_sections_every_service_runs_natively_with_the_production_commands() {
        let s = resolve(&ServicesFile::default()).unwrap();
        assert_eq!(s.enabled().len(), 3);
        assert_eq!(s.redis.command, ["redis-server", "{config_file}"]);
        assert_eq!(s.mongo.auth_flag.as_deref(), Some("--auth"));
    }

    #[test]
    fn every_key_applies() {
        let f = parse(
            r#"
            [redis]
            mode = "external"
            host = "10.0.0.7"
            port = 6390
            user = "volt"
            password = "pw-1"
            probe_interval_ms = 1000
            probe_timeout_ms = 500
            unhealthy_after = 2
            [mongo]
            command = ["/opt/secantus/bin/secantusd-py", "--port", "{port}", "--storage-path", "{data_dir}", "--auth"]
            data_dir = "/srv/mongo data"
            start_timeout_ms = 9000
            stop_timeout_ms = 7000
            restart_base_ms = 10
            restart_max_ms = 40
            max_restarts = 2
            restart_window_secs = 30
            failed_retry_secs = 60
            auth_flag = "--auth"
            [minio]
            command = "s3s-fs --host {bind} --port {port} --access-key {user} --secret-key {password} {data_dir}"
            bind = "0.0.0.0"
            env = { RUST_LOG = "info" }
            "#,
        )
        .unwrap();
        let s = resolve(&f).unwrap();
        assert_eq!(s.redis.mode, ServiceMode::External);
        assert_eq!(s.redis.host.as_deref(), Some("10.0.0.7"));
        assert_eq!(s.redis.port, Some(6390));
        assert_eq!(s.redis.password.as_ref().unwrap().expose(), "pw-1");
        assert_eq!(s.redis.probe_interval, Duration::from_secs(1));
        assert_eq!(s.redis.unhealthy_after, 2);
        assert_eq!(s.mongo.command[0], "/opt/secantus/bin/secantusd-py");
        assert_eq!(s.mongo.data_dir, Some(PathBuf::from("/srv/mongo data")));
        assert_eq!(s.mongo.restart_backoff.base(), Duration::from_millis(10));
        assert_eq!(s.mongo.intensity.max_restarts(), 2);
        assert_eq!(s.mongo.failed_retry, Duration::from_secs(60));
        assert_eq!(s.minio.command.len(), 10);
        assert_eq!(s.minio.bind.to_string(), "0.0.0.0");
        assert_eq!(s.minio.env["RUST_LOG"], "info");
        assert_eq!(s.minio.env["MINIO_ROOT_USER"], "{user}", "defaults kept");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let err = parse("[redis]\nprobe_intervall_ms = 5\n").unwrap_err();
        assert!(err.to_string().contains("probe_intervall_ms"), "{err}");
        assert!(parse("[postgres]\nmode = \"native\"\n").is_err());
        assert!(parse("[redis]\nmode = \"docker\"\n").is_err());
        for (text, needle) in [
            ("[redis]\nbind = \"localhost\"\n", "services.redis.bind"),
            (
                "[redis]\nprobe_timeout_ms = 0\n",
                "services.redis.probe_timeout_ms",
            ),
            ("[mongo]\ncommand = \"\"\n", "services.mongo.command"),
            (
                "[mongo]\ncommand = \"mongod --dbpath {dbpath}\"\n",
                "{dbpath}",
            ),
            (
                "[minio]\nrestart_base_ms = 500\nrestart_max_ms = 100\n",
                "services.minio restart delay",
            ),
            ("[redis]\nport = 7000\n[minio]\nport = 7000\n", "both 7000"),
            ("[redis]\nauth_flag = \"--auth\"\n", "auth_flag"),
            (
                "[mongo]\ndata_dir = \"relative\"\n",
                "services.mongo.data_dir",
            ),
        ] {
            let err = resolve(&parse(text).unwrap()).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn the_services_flag_disables_what_it_does_not_name() {
        let mut s = resolve(&ServicesFile::default()).unwrap();
        restrict(&mut s, "all").unwrap();
        assert_eq!(s.enabled().len(), 3);
        restrict(&mut s, "redis, minio").unwrap();
        assert_eq!(s.enabled(), [ServiceKind::Redis, ServiceKind::Minio]);
        restrict(&mut s, "none").unwrap();
        assert!(s.enabled().is_empty());
        assert!(
            restrict(&mut s, "postgres")
                .unwrap_err()
                .contains("postgres")
        );
        assert!(restrict(&mut s, ",").is_err());
    }

    #[test]
    fn an_empty_auth_flag_means_none() {
        let s = resolve(&parse("[mongo]\nauth_flag = \"\"\n").unwrap()).unwrap();
        assert_eq!(s.mongo.auth_flag, None);
    }

    #[test]
    fn show_redacts_passwords_env_secrets_and_literal_passwords_in_commands() {
        let f = parse(
            r#"
            [minio]
            command = "s3s-fs --secret-key lit-secret-9 {data_dir}"
            password = "lit-secret-9"
            env = { API_TOKEN = "tok-secret-3", MINIO_ROOT_PASSWORD = "{password}", MODE = "fast" }
            "#,
        )
        .unwrap();
        assert!(!format!("{f:?}").contains("lit-secret-9"));
        assert!(!format!("{f:?}").contains("tok-secret-3"));
        let shown = show(&resolve(&f).unwrap()).to_string();
        for secret in ["lit-secret-9", "tok-secret-3"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        let v = show(&resolve(&f).unwrap());
        assert_eq!(v["minio"]["password"], "***");
        assert_eq!(v["minio"]["env"]["MINIO_ROOT_PASSWORD"], "{password}");
        assert_eq!(v["minio"]["env"]["MODE"], "fast");
        assert_eq!(v["redis"]["mode"], "native");
    }
}
