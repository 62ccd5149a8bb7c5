//! The key table: every configuration key with the environment variables
//! and the flag that set it, its default and its meaning.
//!
//! The loader overlays environment variables and flags from this table
//! (`layer.rs`), the `voltd` command line builds its flags from it, and
//! the README's configuration table is rendered from it
//! ([`readme_table`]); tests fail when the README differs, when a key of
//! `Settings` is missing here, or when a row names a key the
//! model lacks.

use std::fmt::Write as _;

/// Where a key's environment variables come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvVars {
    None,
    /// The first of these that is set decides; set but blank counts as not
    /// set. Overrides the file.
    Vars(&'static [&'static str]),
    /// `socket.proxy`: `HTTPS_PROXY` for an `https` socket URL, else
    /// `HTTP_PROXY`, then `ALL_PROXY`, each in upper then lower case; only
    /// when the file sets no proxy (the file wins here, as with curl's
    /// `--proxy`).
    Proxy,
}

/// Names tried for [`EnvVars::Proxy`] with an `https` socket URL …
pub const HTTPS_PROXY_VARS: &[&str] = &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
/// … and with an `http` one.
pub const HTTP_PROXY_VARS: &[&str] = &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// How the text of an environment variable or flag becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A non-negative integer.
    WholeNumber,
    /// A comma-separated list of strings (`NO_PROXY`).
    List,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// `--services all|none|redis,mongo,…`: disables every service the
    /// list does not name.
    ServiceSelection,
}

/// A command-line flag: `--name VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub value_name: &'static str,
    /// `--help` text when the key's meaning does not fit the flag.
    pub help: Option<&'static str>,
}

/// What a key is when nothing sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultIs {
    /// No default: loading fails with an error naming the key, its first
    /// environment variable and its flag.
    Required,
    /// What the model's defaults say (`Default` impls and named
    /// constants); the README shows it as rendered from them.
    Value,
    /// Worked out at load; the text says how.
    Computed(&'static str),
}

/// One configuration key. `path` is dotted (`socket.proxy`); `*` stands
/// for each service (`services.*.port`).
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub path: &'static str,
    pub env: EnvVars,
    pub flag: Option<Flag>,
    pub kind: Kind,
    pub default: DefaultIs,
    pub meaning: &'static str,
}

impl Key {
    const fn new(path: &'static str, meaning: &'static str) -> Key {
        Key {
            path,
            env: EnvVars::None,
            flag: None,
            kind: Kind::Text,
            default: DefaultIs::Value,
            meaning,
        }
    }
    const fn env(mut self, vars: &'static [&'static str]) -> Key {
        self.env = EnvVars::Vars(vars);
        self
    }
    const fn flag(mut self, name: &'static str, value_name: &'static str) -> Key {
        self.flag = Some(Flag {
            name,
            value_name,
            help: None,
        });
        self
    }
    const fn flag_help(mut self, help: &'static str) -> Key {
        if let Some(f) = &mut self.flag {
            f.help = Some(help);
        }
        self
    }
    const fn proxy_env(mut self) -> Key {
        self.env = EnvVars::Proxy;
        self
    }
    const fn kind(mut self, kind: Kind) -> Key {
        self.kind = kind;
        self
    }
    const fn required(mut self) -> Key {
        self.default = DefaultIs::Required;
        self
    }
    const fn computed(mut self, how: &'static str) -> Key {
        self.default = DefaultIs::Computed(how);
        self
    }

    /// The environment variables of [`EnvVars::Vars`] (none otherwise).
    pub fn env_vars(&self) -> &'static [&'static str] {
        match self.env {
            EnvVars::Vars(v) => v,
            EnvVars::None | EnvVars::Proxy => &[],
        }
    }

    /// Whether this row describes `path` (`services.*.x` describes
    /// `services.redis.x`).
    pub fn covers(&self, path: &str) -> bool {
        let mut want = self.path.split('.');
        let mut have = path.split('.');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w == "*" || w == h => {}
                _ => return false,
            }
        }
    }
}

/// Every key, in README order.
pub const KEYS: &[Key] = &[
    Key::new("cloud_url", "VOLT server URL, e.g. https://cloud.voltlabs.io")
        .env(&["VOLT_CLOUD_URL", "VOLT_CLOUD_SERVER_URL"])
        .flag("cloud-url", "URL")
        .required(),
    Key::new("socket_url", "base URL of the control socket (socket.io)")
        .env(&["VOLT_CLOUD_DAEMON_SOCKET_URL"])
        .computed("`cloud_url`"),
    Key::new(
        "team_cluster_id",
        "team cluster id (letters, digits, `-`, `_`)",
    )
    .env(&["TEAM_CLUSTER_ID"])
    .flag("cluster-id", "ID")
    .required(),
    Key::new(
        "daemon_password",
        "daemon password the installer already obtained (secret)",
    )
    .env(&["TEAM_CLUSTER_DAEMON_PASSWORD"]),
    Key::new(
        "enrollment_token",
        "one-time enrollment token (secret); removed from the config file after use",
    )
    .env(&["TEAM_CLUSTER_ENROLLMENT_TOKEN"]),
    Key::new("installed_version", "reported as `installedVersion` (1..64 characters)")
        .env(&["VOLT_CLUSTER_INSTALL_MANIFEST_VERSION"]),
    Key::new("heartbeat_interval_ms", "heartbeat period in milliseconds")
        .env(&["TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS"])
        .flag("heartbeat-interval-ms", "MS")
        .kind(Kind::WholeNumber),
    Key::new(
        "state_dir",
        "directory for credentials, manifest, admin socket and service state",
    )
    .env(&["VOLTD_STATE_DIR"])
    .flag("state-dir", "DIR")
    .computed(
        "`/var/lib/voltd` as root, else `$XDG_STATE_HOME/voltd`, else `~/.local/state/voltd`",
    ),
    Key::new("disk_path", "mount point whose usage heartbeats report as `disk`"),
    Key::new(
        "update_command",
        "argument vector run for `runtime.update`, the target version appended as its last argument (no shell); without one updates are refused with a reason",
    ),
    Key::new(
        "log_level",
        "log level (error, warn, info, debug, trace) or a tracing filter (`voltd_actors=debug,info`)",
    )
    .env(&["LOG_LEVEL", "RUST_LOG"])
    .flag("log-level", "LEVEL"),
    Key::new("log_format", "log format: human-readable lines or one JSON object per line")
        .flag("log-format", "FORMAT")
        .kind(Kind::Choice(&["human", "json"])),
    Key::new("socket.reconnect_base_ms", "first reconnect delay (doubling)"),
    Key::new("socket.reconnect_max_ms", "longest reconnect delay"),
    Key::new("socket.reconnect_jitter", "reconnect delay spread, 0..=1"),
    Key::new(
        "socket.stable_after_ms",
        "a connection registered this long resets the backoff",
    ),
    Key::new("socket.connect_timeout_ms", "TCP + TLS + WebSocket upgrade"),
    Key::new("socket.register_timeout_ms", "answer to the register message"),
    Key::new("socket.command_timeout_ms", "daemon → server command answer"),
    Key::new(
        "socket.emit_buffer",
        "fire-and-forget messages kept while disconnected",
    ),
    Key::new(
        "socket.ca_file",
        "extra CA certificates (PEM) trusted besides the system roots",
    )
    .env(&["VOLTD_CA_FILE"]),
    Key::new(
        "socket.proxy",
        "HTTP CONNECT proxy `http://[user:pass@]host:port` (credentials secret); the file wins over the environment here",
    )
    .proxy_env(),
    Key::new(
        "socket.no_proxy",
        "hosts and `.domains` reached without the proxy (environment: comma-separated)",
    )
    .env(&["NO_PROXY", "no_proxy"])
    .kind(Kind::List),
    Key::new(
        "supervisor.max_restarts",
        "actor restarts tolerated within the window before voltd exits (2)",
    ),
    Key::new("supervisor.window_secs", "the restart intensity window"),
    Key::new(
        "install.install_root",
        "install manifest files go to `<install_root>/<cluster id>/` (absolute)",
    )
    .env(&["TEAM_CLUSTER_INSTALL_ROOT"]),
    Key::new(
        "install.fetch_manifest",
        "request the install manifest after enrollment",
    ),
    Key::new(
        "install.ports",
        "`{ minio, redis, mongodb, daemon }` reported in the manifest request (distinct, 1..65535)",
    ),
    Key::new(
        "terminal.enabled",
        "host terminal on; `false`: every `session.attach` gets 403",
    ),
    Key::new(
        "terminal.user",
        "login account the shell runs as (install.sh creates it); never voltd's own account, never root",
    ),
    Key::new(
        "terminal.allow_daemon_user",
        "development only: let the shell run as voltd's own account (it can then read voltd's credentials)",
    ),
    Key::new(
        "terminal.helper_socket",
        "socket of the terminal helper (`voltd-terminal.socket`), used when voltd cannot switch accounts itself",
    ),
    Key::new("terminal.shell", "absolute path of the shell")
        .computed("the user's passwd shell, else `/bin/bash`"),
    Key::new(
        "terminal.idle_timeout_secs",
        "sessions without input or output end after this",
    ),
    Key::new(
        "terminal.max_sessions",
        "open sessions (1..1024); more attaches get 429",
    ),
    Key::new(
        "services.*.mode",
        "`native` (voltd runs it), `external` (voltd only probes it) or `disabled`; the flag disables every service it does not name",
    )
    .flag("services", "all|none|LIST")
    .flag_help(
        "managed services to run: all (as configured), none, or a comma list such as redis,mongo (the others are disabled)",
    )
    .kind(Kind::ServiceSelection),
    Key::new(
        "services.*.command",
        "command line, a string (split on spaces) or an array; placeholders `{port}` `{bind}` `{host}` `{data_dir}` `{user}` `{password}` `{config_file}`",
    ),
    Key::new(
        "services.*.env",
        "extra environment of the server (same placeholders); merged over the defaults",
    ),
    Key::new("services.*.port", "port the server listens on")
        .computed("install manifest, else `[install] ports`, else 6379 / 27017 / 9000"),
    Key::new("services.*.bind", "IP address the server listens on"),
    Key::new("services.*.host", "where voltd connects (external mode)")
        .computed("loopback (or `bind` when specific)"),
    Key::new("services.*.data_dir", "data directory (absolute)")
        .computed("`<state_dir>/services/<name>`"),
    Key::new(
        "services.*.user",
        "service user (required in external mode without a manifest)",
    )
    .computed("install manifest, else generated (stored 0600)"),
    Key::new("services.*.password", "service password (secret)")
        .computed("install manifest, else generated (stored 0600)"),
    Key::new("services.*.probe_interval_ms", "health probe period"),
    Key::new("services.*.probe_timeout_ms", "one health probe"),
    Key::new(
        "services.*.start_timeout_ms",
        "first answer after a start",
    ),
    Key::new("services.*.stop_timeout_ms", "SIGTERM → SIGKILL"),
    Key::new(
        "services.*.unhealthy_after",
        "failed probes in a row before a restart",
    ),
    Key::new(
        "services.*.restart_base_ms",
        "first restart delay (doubling, ±20 %)",
    ),
    Key::new(
        "services.*.restart_max_ms",
        "longest restart delay (raised to `restart_base_ms` when only that is set)",
    ),
    Key::new(
        "services.*.max_restarts",
        "more restarts within the window → `failed`",
    ),
    Key::new("services.*.restart_window_secs", "the restart window"),
    Key::new(
        "services.*.failed_retry_secs",
        "how often a `failed` service is tried again",
    ),
    Key::new(
        "services.mongo.auth_flag",
        "argument dropped while the root user is provisioned; `\"\"` = none",
    ),
    Key::new(
        "provision.deps_dir",
        "where voltd installs the servers it provisions (`deps/<service>/<version>/`); the unit must be able to write it",
    )
    .env(&["VOLTD_DEPS_DIR"])
    .flag("deps-dir", "DIR")
    .computed("`<install_root>/deps`"),
    Key::new(
        "provision.catalogue",
        "a catalogue file overlaying the built-in one (README \"Provisioning\")",
    )
    .env(&["VOLTD_CATALOGUE"])
    .flag("catalogue", "PATH"),
    Key::new(
        "provision.mirror",
        "fetch every artifact from this mirror (`<mirror>/<publisher host>/<path>`; https, or http on loopback)",
    )
    .env(&["VOLTD_MIRROR"])
    .flag("mirror", "URL"),
    Key::new(
        "provision.manifest_catalogue",
        "how far the install manifest's catalogue is trusted: its mirror only, its artifacts too, or not at all",
    )
    .flag("manifest-catalogue", "POLICY")
    .kind(Kind::Choice(&["mirror-only", "full", "ignore"])),
    Key::new(
        "update.channel",
        "release channel `runtime.update` downloads from (`<channel>/voltd/<version>/<os>/<arch>/`)",
    )
    .env(&["VOLTD_UPDATE_CHANNEL"])
    .flag("update-channel", "URL")
    .computed("`<cloud_url>/downloads`"),
    Key::new(
        "update.install_dir",
        "releases (`releases/<version>/`) and the `current` / `previous` links",
    ),
    Key::new(
        "update.key_file",
        "the release key pinned at install time (root-owned); releases must be signed with it",
    ),
    Key::new(
        "update.register_deadline_secs",
        "a new release that has not registered after this is rolled back",
    ),
    Key::new(
        "jobs.analysis_concurrency",
        "`analysis_processing` jobs at once (1..64) until the server's `runtime.config.get` answers, and when it does not know it",
    )
    .env(&["ANALYSIS_CONCURRENCY"])
    .kind(Kind::WholeNumber),
    Key::new(
        "jobs.rasterizer_concurrency",
        "`trajectory_rasterization` jobs at once (same rule)",
    )
    .env(&["RASTER_CONCURRENCY"])
    .kind(Kind::WholeNumber),
    Key::new(
        "jobs.glb_preprocessing_concurrency",
        "`trajectory_glb_conversion` jobs at once (same rule)",
    )
    .env(&["GLB_CONCURRENCY"])
    .kind(Kind::WholeNumber),
    Key::new(
        "jobs.ssh_import_concurrency",
        "`ssh_import` jobs at once (same rule)",
    ),
    Key::new(
        "jobs.lock_duration_ms",
        "job lock (BullMQ `lockDuration`): a job of a worker that died runs again after this, at the next stalled check",
    ),
    Key::new(
        "jobs.stalled_interval_ms",
        "stalled-job check period (BullMQ `stalledInterval`)",
    ),
    Key::new(
        "commands.deadline_secs",
        "an inbound command not answered within this gets 504",
    ),
    Key::new(
        "commands.stream_idle_secs",
        "a streamed reply with no progress for this long ends with an error",
    ),
    Key::new(
        "commands.max_in_flight",
        "inbound commands answered at once (streams included); more get 429",
    ),
    Key::new(
        "host_files.roots",
        "directories the `host-files` explorer and file manager show (none: it is off); paths (named after their last component, read-only) or `{ name, path, read_only }` (`read_only` defaults to `true`)",
    ),
];

/// The row of `path` (an exact row path, `*` included).
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The row that has flag `--name`.
pub fn by_flag(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.flag.is_some_and(|f| f.name == name))
}

/// Where the README's generated table starts and ends.
pub const README_BEGIN: &str = "<!-- config-table: generated from actors/src/config/keys.rs; refresh with UPDATE_README=1 cargo test -p voltd-actors config::keys -->";
pub const README_END: &str = "<!-- /config-table -->";

/// The README's configuration table (markdown, one row per key).
pub fn readme_table(defaults: &toml::Table) -> String {
    let mut out =
        String::from("| key | environment | flag | default | meaning |\n|---|---|---|---|---|\n");
    for k in KEYS {
        let env = match k.env {
            EnvVars::None => "–".to_owned(),
            EnvVars::Vars(v) => v
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            EnvVars::Proxy => proxy_env_text(),
        };
        let flag = match k.flag {
            Some(f) => format!("`--{} {}`", f.name, f.value_name),
            None => "–".to_owned(),
        };
        let flag = match k.kind {
            Kind::Choice(words) if k.flag.is_some() => {
                format!("`--{} {}`", k.flag.map_or("", |f| f.name), words.join("|"))
            }
            _ => flag,
        };
        let default = match k.default {
            DefaultIs::Required => "required".to_owned(),
            DefaultIs::Computed(how) => how.to_owned(),
            DefaultIs::Value => render_default(k, defaults),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            k.path,
            cell(&env),
            cell(&flag),
            cell(&default),
            cell(k.meaning)
        );
    }
    out
}

/// The environment cell of the [`EnvVars::Proxy`] row.
fn proxy_env_text() -> String {
    "`HTTPS_PROXY` (https socket URL) or `HTTP_PROXY`, then `ALL_PROXY`; upper or lower case"
        .to_owned()
}

/// A table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The default of a [`DefaultIs::Value`] row as the defaults document
/// holds it; a `*` row shows one value, or one per service when they
/// differ.
fn render_default(k: &Key, defaults: &toml::Table) -> String {
    if !k.path.contains('*') {
        return render_value(lookup(defaults, k.path));
    }
    let per: Vec<(&str, String)> = crate::api::vocab::ServiceKind::ALL
        .iter()
        .map(|kind| {
            let path = k.path.replace('*', kind.name());
            (kind.name(), render_value(lookup(defaults, &path)))
        })
        .collect();
    if per.iter().all(|(_, v)| *v == per[0].1) {
        return per[0].1.clone();
    }
    per.iter()
        .map(|(name, v)| format!("{name}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn render_value(v: Option<&toml::Value>) -> String {
    use toml::Value;
    match v {
        None => "–".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "`\"\"`".to_owned(),
        Some(Value::String(s)) => format!("`{s}`"),
        Some(Value::Array(a)) if a.is_empty() => "none".to_owned(),
        Some(Value::Array(a)) if a.iter().all(Value::is_str) => {
            let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            format!("`{}`", words.join(" "))
        }
        Some(Value::Table(t)) if t.is_empty() => "none".to_owned(),
        Some(Value::Table(t)) => t
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("`{k}={s}`"),
                other => format!("`{k}={other}`"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// The value at a dotted path.
pub fn lookup<'a>(doc: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut v = doc.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

/// The README text with its generated table replaced by `table`; `None`
/// when the markers are missing.
pub fn splice_readme(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(README_BEGIN)? + README_BEGIN.len();
    let end = readme[start..].find(README_END)? + start;
    Some(format!(
        "{}\n\n{table}\n{}",
        &readme[..start],
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    /// Every key of the model with a value: struct literals without `..`,
    /// so a new field does not compile until it is set here — and then
    /// `every_key_of_the_model_is_in_the_table` wants its row.
    fn every_key_set() -> Settings {
        let url = CloudUrl::parse("https://cloud.example").unwrap();
        let service = |kind: crate::api::vocab::ServiceKind| ServiceSettings {
            mode: ServiceMode::External,
            command: vec!["server".into(), "{port}".into()],
            env: BTreeMap::from([("MODE".into(), "fast".into())]),
            port: Some(7000),
            bind: IpAddr::from([0, 0, 0, 0]),
            host: Some("db.lan".into()),
            data_dir: Some(AbsPath::new("/srv/data").unwrap()),
            user: Some("volt".into()),
            password: Some("pw".into()),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            start_timeout: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            restart_base: Duration::from_secs(1),
            restart_max: Duration::from_secs(2),
            restart_jitter: Jitter::new(0.0).unwrap(),
            max_restarts: 3,
            restart_window: Duration::from_secs(60),
            failed_retry: Duration::from_secs(60),
            auth_flag: (kind == crate::api::vocab::ServiceKind::Mongo).then(|| "--auth".into()),
        };
        Settings {
            cloud_url: url.clone(),
            socket_url: url,
            team_cluster_id: ClusterId::parse("c1").unwrap(),
            daemon_password: Some("pw".into()),
            enrollment_token: Some("tok".into()),
            token_file: None,
            config_file: None,
            installed_version: InstalledVersion::parse("2.0.0").unwrap(),
            heartbeat_interval: Duration::from_secs(1),
            state_dir: "/var/lib/voltd".into(),
            disk_path: "/".into(),
            update_command: Some(vec!["/bin/true".into()]),
            log_level: "info".into(),
            log_format: LogFormat::Json,
            socket: SocketSettings {
                reconnect_base: Duration::from_secs(1),
                reconnect_max: Duration::from_secs(2),
                reconnect_jitter: Jitter::new(0.1).unwrap(),
                stable_after: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                register_timeout: Duration::from_secs(1),
                command_timeout: Duration::from_secs(1),
                emit_buffer: 1,
                ca_file: Some("/etc/ca.pem".into()),
                proxy: Some(ProxyUrl::parse("http://proxy:3128").unwrap()),
                no_proxy: vec!["localhost".into()],
                watch_network: true,
            },
            supervisor: SupervisorSettings {
                max_restarts: 1,
                window: Duration::from_secs(1),
            },
            install: InstallSettings {
                install_root: AbsPath::new("/opt/volt").unwrap(),
                fetch_manifest: true,
                ports: Some(volt_protocol::enrollment::ServicePorts {
                    minio: 1,
                    redis: 2,
                    mongodb: 3,
                    daemon: 4,
                }),
            },
            terminal: TerminalSettings {
                enabled: false,
                user: UserName::parse("volt").unwrap(),
                allow_daemon_user: true,
                helper_socket: AbsPath::new("/run/x.sock").unwrap(),
                shell: Some(AbsPath::new("/bin/sh").unwrap()),
                idle_timeout: Duration::from_secs(1),
                max_sessions: 1,
            },
            services: ServicesSettings {
                redis: service(crate::api::vocab::ServiceKind::Redis),
                mongo: service(crate::api::vocab::ServiceKind::Mongo),
                minio: service(crate::api::vocab::ServiceKind::Minio),
            },
            host_files: HostFilesSettings {
                roots: vec![HostRoot {
                    name: "tmp".into(),
                    path: "/tmp".into(),
                    read_only: false,
                }],
            },
            provision: ProvisionSection {
                deps_dir: Some(AbsPath::new("/srv/deps").unwrap()),
                catalogue: Some(AbsPath::new("/etc/voltd/catalogue.toml").unwrap()),
                mirror: Some("https://mirror.lab".into()),
                manifest_catalogue: ManifestCatalogue::Full,
            },
            update: UpdateSection {
                channel: Some(CloudUrl::parse("https://mirror.lab/voltd").unwrap()),
                install_dir: AbsPath::new("/opt/voltd").unwrap(),
                key_file: AbsPath::new("/etc/voltd/release-key.pub").unwrap(),
                register_deadline: Duration::from_secs(30),
            },
            jobs: crate::config::JobsSettings {
                analysis_concurrency: 3,
                rasterizer_concurrency: 3,
                glb_preprocessing_concurrency: 3,
                ssh_import_concurrency: 3,
                lock_duration: Duration::from_secs(1),
                stalled_interval: Duration::from_secs(1),
            },
            commands: CommandSettings {
                deadline: Duration::from_secs(1),
                stream_idle: Duration::from_secs(1),
                max_in_flight: 1,
            },
        }
    }

    /// The dotted paths of `doc`, stopping at a row's key (`install.ports`
    /// and `services.*.env` are tables but one key each).
    fn key_paths(doc: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in doc {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) if !KEYS.iter().any(|row| row.covers(&path)) => {
                    key_paths(t, &path, out)
                }
                _ => out.push(path),
            }
        }
    }

    fn model_paths() -> Vec<String> {
        let doc = toml::Table::try_from(every_key_set()).unwrap();
        let mut paths = Vec::new();
        key_paths(&doc, "", &mut paths);
        paths
    }

    #[test]
    fn every_key_of_the_model_is_in_the_table() {
        for path in model_paths() {
            assert!(
                KEYS.iter().any(|k| k.covers(&path)),
                "`{path}` is a key of Settings but has no row in config::keys::KEYS"
            );
        }
    }

    #[test]
    fn the_table_names_only_keys_of_the_model() {
        let paths = model_paths();
        for k in KEYS {
            assert!(
                paths.iter().any(|p| k.covers(p)),
                "config::keys::KEYS names `{}`, which Settings does not have",
                k.path
            );
        }
    }

    #[test]
    fn flags_and_environment_variables_are_unique() {
        let mut flags: Vec<&str> = KEYS.iter().filter_map(|k| k.flag.map(|f| f.name)).collect();
        let n = flags.len();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), n, "a flag is used twice");
        let mut vars: Vec<&str> = KEYS
            .iter()
            .flat_map(|k| k.env_vars().iter().copied())
            .collect();
        vars.extend(HTTPS_PROXY_VARS.iter().chain(HTTP_PROXY_VARS));
        let n = vars.len();
        vars.sort_unstable();
        vars.dedup();
        // ALL_PROXY/all_proxy are tried for both schemes.
        assert_eq!(vars.len(), n - 2, "an environment variable is used twice");
        for k in KEYS {
            if let DefaultIs::Required = k.default {
                assert!(k.flag.is_some() && !k.env_vars().is_empty(), "{}", k.path);
            }
        }
    }

    #[test]
    fn rows_cover_paths_with_wildcards() {
        let row = find("services.*.port").unwrap();
        assert!(row.covers("services.redis.port"));
        assert!(!row.covers("services.redis"));
        assert!(!row.covers("services.redis.port.x"));
        assert_eq!(by_flag("cloud-url").unwrap().path, "cloud_url");
    }

    #[test]
    fn the_readme_table_is_generated_from_the_key_table() {
        let defaults = layer::defaults(&Env::new()).unwrap();
        let table = readme_table(&defaults);
        assert!(table.contains("| `heartbeat_interval_ms` | `TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS` | `--heartbeat-interval-ms MS` | 10000 |"), "{table}");
        assert!(
            table.contains("| `services.*.probe_interval_ms` | – | – | 5000 |"),
            "{table}"
        );
        assert!(table.contains("redis: `redis-server {config_file}`; mongo: `mongod --dbpath {data_dir} --port {port} --bind_ip {bind} --auth`"), "{table}");
        assert!(
            table.contains("| `log_level` | `LOG_LEVEL`, `RUST_LOG` |"),
            "{table}"
        );

        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let expected =
            splice_readme(&readme, &table).expect("README.md lacks the config-table markers");
        if readme != expected {
            if std::env::var_os("UPDATE_README").is_some() {
                std::fs::write(path, expected).unwrap();
                return;
            }
            panic!(
                "README.md's configuration table differs from config::keys; run\n  UPDATE_README=1 cargo test -p voltd-actors config::keys\nand commit README.md"
            );
        }
    }
}
