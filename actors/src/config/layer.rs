//! Layering: defaults → config file → environment → flags, in one place.
//!
//! 1. The defaults become a TOML document (the model's `Default`s,
//!    serialised; the state directory depends on who runs voltd).
//! 2. The file's document is deep-merged over it (tables merge key by key,
//!    so `[services.minio] env` adds to the default variables; any other
//!    value replaces).
//! 3. Environment variables, then flags, are written at their key's path,
//!    as the [`keys::KEYS`] row says.
//! 4. A few defaults that depend on other keys are filled in
//!    (`derive`: `socket_url`, the proxy from the environment, a
//!    service's `restart_max_ms`).
//! 5. The document is deserialised once into [`Settings`]; an error names
//!    the key (`services.redis.bind: …`) and, when it came from one, the
//!    environment variable or flag. [`Settings::validate`] checks what spans
//!    several keys.

use super::keys::{self, DefaultIs, EnvVars, KEYS, Kind};
use super::{CloudUrl, ClusterId, DEFAULT_STATE_DIR, ServicesSettings, Settings};
use crate::api::vocab::ServiceKind;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::{Table, Value};

/// Where `voltd` looks for its config file when neither `--config` nor
/// `VOLTD_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/voltd/voltd.toml";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "VOLTD_CONFIG";

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
    #[error("missing `{key}` ({meaning}): set it in the config file, {env}, or --{flag}")]
    Missing {
        key: &'static str,
        meaning: &'static str,
        env: &'static str,
        flag: &'static str,
    },
}

/// Environment lookup (injectable for tests; `std::env::set_var` is unsafe
/// in multi-threaded tests).
pub type Env = HashMap<String, String>;

/// The process environment.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// Flag values by flag name (`cloud-url`), as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(BTreeMap<String, String>);

impl Flags {
    pub fn new() -> Self {
        Flags::default()
    }

    /// Sets `--name value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    /// [`Flags::set`], chained.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// A loaded configuration and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub file: Option<PathBuf>,
}

/// Who set a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    File,
    Env(&'static str),
    Flag(&'static str),
    Derived,
}

/// The value of the first of `names` that is set, trimmed; set but blank
/// counts as not set (and stops the search).
fn env_value(env: &Env, names: &[&'static str]) -> Option<(&'static str, String)> {
    let (name, value) = names
        .iter()
        .find_map(|n| env.get(*n).map(|v| (*n, v.trim())))?;
    (!value.is_empty()).then(|| (name, value.to_owned()))
}

/// The default state directory: system-wide for root, per-user otherwise.
pub fn default_state_dir(env: &Env) -> PathBuf {
    if is_root() {
        return PathBuf::from(DEFAULT_STATE_DIR);
    }
    if let Some((_, x)) = env_value(env, &["XDG_STATE_HOME"]) {
        return PathBuf::from(x).join("voltd");
    }
    match env_value(env, &["HOME"]) {
        Some((_, h)) => PathBuf::from(h).join(".local/state/voltd"),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Which config file to read: `--config`/`VOLTD_CONFIG` (must exist), else
/// the default path if it exists.
pub fn locate(explicit: Option<&Path>, env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| env_value(env, &[CONFIG_ENV]).map(|(_, p)| PathBuf::from(p)));
    match chosen {
        Some(p) if p.exists() => Ok(Some(p)),
        Some(p) => Err(ConfigError::Read {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            path: p,
        }),
        None => {
            let d = PathBuf::from(DEFAULT_CONFIG_PATH);
            Ok(d.exists().then_some(d))
        }
    }
}

/// Reads and parses a config file into a TOML document.
pub fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Loads the file (if any) and layers everything.
pub fn load(explicit: Option<&Path>, env: &Env, flags: &Flags) -> Result<Loaded, ConfigError> {
    let file = locate(explicit, env)?;
    let doc = match &file {
        Some(p) => Some(read_file(p)?),
        None => None,
    };
    let settings = resolve(doc, file.as_deref(), env, flags)?;
    Ok(Loaded { settings, file })
}

/// The state directory for client commands (`voltd status`, `voltd
/// logs`): the environment, else the config file's (even a file that
/// would not load), else the default.
pub fn state_dir_hint(explicit: Option<&Path>, env: &Env) -> PathBuf {
    let vars = keys::find("state_dir").map_or(&[][..], |k| k.env_vars());
    if let Some((_, d)) = env_value(env, vars) {
        return PathBuf::from(d);
    }
    if let Ok(Some(p)) = locate(explicit, env)
        && let Ok(doc) = read_file(&p)
        && let Some(d) = doc.get("state_dir").and_then(Value::as_str)
    {
        return PathBuf::from(d);
    }
    default_state_dir(env)
}

/// The defaults as a TOML document (step 1). Required keys are absent;
/// `socket_url` too (it follows `cloud_url`).
pub fn defaults(env: &Env) -> Result<Table, ConfigError> {
    let invalid = |e: String| ConfigError::Invalid(format!("cannot build the defaults: {e}"));
    // Stand-ins for the required keys, removed again below.
    let mut s = Settings::new(
        CloudUrl::parse("http://required.invalid").map_err(invalid)?,
        ClusterId::parse("required").map_err(invalid)?,
        default_state_dir(env),
    );
    s.services = ServicesSettings::native();
    let mut doc = Table::try_from(&s).map_err(|e| invalid(e.to_string()))?;
    for k in KEYS {
        if k.default == DefaultIs::Required {
            remove(&mut doc, k.path);
        }
    }
    remove(&mut doc, "socket_url");
    Ok(doc)
}

/// The effective settings from a file's document (if any), the
/// environment and the flags.
pub fn resolve(
    file: Option<Table>,
    file_path: Option<&Path>,
    env: &Env,
    flags: &Flags,
) -> Result<Settings, ConfigError> {
    let mut doc = defaults(env)?;
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    if let Some(file) = file {
        let mut given = Vec::new();
        paths(&file, "", &mut given);
        origins.extend(given.into_iter().map(|p| (p, Origin::File)));
        merge(&mut doc, file);
    }
    for k in KEYS {
        if let Some((var, text)) = env_value(env, k.env_vars()) {
            for (path, value) in convert(k, &text, var)? {
                set(&mut doc, &path, value);
                origins.insert(path, Origin::Env(var));
            }
        }
    }
    for name in flags.0.keys() {
        if keys::by_flag(name).is_none() {
            return Err(ConfigError::Invalid(format!("unknown flag --{name}")));
        }
    }
    for k in KEYS {
        let Some(flag) = k.flag else { continue };
        if let Some(text) = flags.get(flag.name) {
            for (path, value) in convert(k, text, &format!("--{}", flag.name))? {
                set(&mut doc, &path, value);
                origins.insert(path, Origin::Flag(flag.name));
            }
        }
    }
    derive(&mut doc, &mut origins, env);
    for k in KEYS {
        if k.default == DefaultIs::Required && keys::lookup(&doc, k.path).is_none() {
            return Err(ConfigError::Missing {
                key: k.path,
                meaning: k.meaning,
                env: k.env_vars().first().copied().unwrap_or("-"),
                flag: k.flag.map_or("-", |f| f.name),
            });
        }
    }
    let mut settings: Settings =
        serde_path_to_error::deserialize(Value::Table(doc)).map_err(|e| {
            let path = e.path().to_string();
            let origin = match origins.get(&path) {
                Some(Origin::Env(var)) => format!(" (from {var})"),
                Some(Origin::Flag(flag)) => format!(" (from --{flag})"),
                _ => String::new(),
            };
            let message = e.into_inner().message().trim().to_owned();
            ConfigError::Invalid(if path == "." {
                format!("{message}{origin}")
            } else {
                format!("{path}: {message}{origin}")
            })
        })?;
    if origins.get("enrollment_token") == Some(&Origin::File) && settings.enrollment_token.is_some()
    {
        settings.token_file = file_path.map(Path::to_path_buf);
    }
    settings.config_file = file_path.map(Path::to_path_buf);
    settings.validate().map_err(ConfigError::Invalid)?;
    Ok(settings)
}

/// Step 4: defaults that depend on other keys.
fn derive(doc: &mut Table, origins: &mut BTreeMap<String, Origin>, env: &Env) {
    // The control socket lives on the server unless told otherwise.
    if keys::lookup(doc, "socket_url").is_none()
        && let Some(url) = keys::lookup(doc, "cloud_url").cloned()
    {
        set(doc, "socket_url", url);
        origins.insert("socket_url".into(), Origin::Derived);
    }
    // The proxy variable follows the socket URL's scheme; a proxy in the
    // file wins.
    if keys::find("socket.proxy").is_some_and(|k| k.env == EnvVars::Proxy)
        && origins.get("socket.proxy") != Some(&Origin::File)
    {
        let tls = keys::lookup(doc, "socket_url")
            .and_then(Value::as_str)
            .and_then(|u| CloudUrl::parse(u).ok())
            .is_some_and(|u| u.is_tls());
        let names = if tls {
            keys::HTTPS_PROXY_VARS
        } else {
            keys::HTTP_PROXY_VARS
        };
        if let Some((var, url)) = env_value(env, names) {
            set(doc, "socket.proxy", Value::String(url));
            origins.insert("socket.proxy".into(), Origin::Env(var));
        }
    }
    // A restart delay raised above the default maximum raises the maximum
    // with it, unless the maximum was given too.
    for kind in ServiceKind::ALL {
        let base_key = format!("services.{}.restart_base_ms", kind.name());
        let max_key = format!("services.{}.restart_max_ms", kind.name());
        if origins.contains_key(&base_key)
            && !origins.contains_key(&max_key)
            && let (Some(base), Some(max)) = (
                keys::lookup(doc, &base_key).and_then(Value::as_integer),
                keys::lookup(doc, &max_key).and_then(Value::as_integer),
            )
            && base > max
        {
            set(doc, &max_key, Value::Integer(base));
            origins.insert(max_key, Origin::Derived);
        }
    }
}

/// The TOML values an environment variable or flag sets (`source` names
/// it in errors).
fn convert(k: &keys::Key, text: &str, source: &str) -> Result<Vec<(String, Value)>, ConfigError> {
    let one = |v: Value| Ok(vec![(k.path.to_owned(), v)]);
    match k.kind {
        Kind::Text => one(Value::String(text.to_owned())),
        Kind::WholeNumber => match text.trim().parse::<i64>() {
            Ok(n) if n >= 0 => one(Value::Integer(n)),
            _ => Err(ConfigError::Invalid(format!(
                "{source} must be a whole number, got {text:?}"
            ))),
        },
        Kind::List => one(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        Kind::Choice(words) => {
            if words.contains(&text.trim()) {
                one(Value::String(text.trim().to_owned()))
            } else {
                Err(ConfigError::Invalid(format!(
                    "{source} must be one of {}, got {text:?}",
                    words.join(", ")
                )))
            }
        }
        Kind::ServiceSelection => service_selection(k, text, source),
    }
}

/// `all` keeps the configuration, `none` disables every service, a comma
/// list disables the services it does not name.
fn service_selection(
    k: &keys::Key,
    text: &str,
    source: &str,
) -> Result<Vec<(String, Value)>, ConfigError> {
    let list = text.trim();
    if list == "all" {
        return Ok(Vec::new());
    }
    let mut keep = Vec::new();
    if list != "none" {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = ServiceKind::from_name(name).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{source}: unknown service {name:?} (known: all, none, redis, mongo, minio)"
                ))
            })?;
            keep.push(kind);
        }
        if keep.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{source} needs all, none, or a comma list of services"
            )));
        }
    }
    Ok(ServiceKind::ALL
        .into_iter()
        .filter(|kind| !keep.contains(kind))
        .map(|kind| {
            (
                k.path.replace('*', kind.name()),
                Value::String(super::ServiceMode::Disabled.as_str().to_owned()),
            )
        })
        .collect())
}

/// Deep merge: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Every dotted path of `doc` (tables and values).
fn paths(doc: &Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in doc {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let Value::Table(t) = v {
            paths(t, &path, out);
        }
        out.push(path);
    }
}

/// Writes `value` at a dotted path, creating tables on the way. A non-table
/// in the way (`socket = 5`) is left alone for the deserialiser to report.
pub(super) fn set(doc: &mut Table, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut t = doc;
    for p in parts {
        let entry = t
            .entry(p.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(next) => t = next,
            _ => return,
        }
    }
    t.insert(last.to_owned(), value);
}

pub(super) fn remove(doc: &mut Table, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut t = doc;
    for p in parts {
        match t.get_mut(p) {
            Some(Value::Table(next)) => t = next,
            _ => return,
        }
    }
    t.remove(last);
}
