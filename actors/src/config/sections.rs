//! The `[socket]`, `[supervisor]`, `[install]`, `[terminal]`,
//! `[host_files]` and `[commands]` sections: each struct is both what the actors run with
//! and what the config file says (serde reads it; `Default` is the
//! defaults, from the named constants below).

use super::values::{AbsPath, Jitter, ProxyUrl, UserName, bypasses_proxy, ms, secs};
use otp::Intensity;
use otp::backoff::ExponentialBackoff;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use volt_protocol::enrollment::ServicePorts;

/// Reconnect backoff of the reference daemon: 500 ms base …
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(500);
/// … doubling up to 30 s (`reconnectionDelayMax` of the SDK) …
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_millis(30_000);
/// … with socket.io's `randomizationFactor` 0.3.
pub const DEFAULT_RECONNECT_JITTER: f64 = 0.3;
/// A connection that stayed registered this long resets the backoff; a
/// shorter one counts as a failed attempt, so a server that accepts and
/// then drops us at once is not hammered. "A few seconds": long enough to
/// tell an accept-and-drop loop, short enough that a server cutting
/// registered sockets seconds apart (a rolling deploy) gets a sub-second
/// reconnect every time (see `cloud/reconnect.rs`).
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(2);
/// TCP + TLS + WebSocket upgrade must finish within this.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The server answers a register in milliseconds; 15 s is the server's own
/// attach timeout and leaves room for a loaded server.
pub const DEFAULT_REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// Daemon → server command timeout of the Gen B daemon.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Fire-and-forget messages kept while disconnected (the SDK's and Gen C's
/// buffer size).
pub const DEFAULT_EMIT_BUFFER: usize = 8192;
/// Linux install root of the reference installers.
pub const DEFAULT_INSTALL_ROOT: &str = "/opt/volt/team-clusters";
/// Idle terminal sessions (no input and no output) end after this: the
/// VOLT server reaps its own idle sessions after 10 minutes, so a longer
/// daemon timeout would only keep shells nobody can reach any more.
pub const DEFAULT_TERMINAL_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Concurrent terminal sessions. Each holds a PTY, a shell and a waiter
/// thread; 16 is more than a team uses at once and bounds what a runaway
/// client can open.
pub const DEFAULT_TERMINAL_MAX_SESSIONS: usize = 16;
/// Upper bound of `[terminal] max_sessions`: each session holds a PTY (the
/// kernel's default limit is 4096 for the whole host) and three threads.
pub const MAX_TERMINAL_SESSIONS: usize = 1024;

/// `[socket]`: the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSettings {
    /// First reconnect delay; see [`SocketSettings::reconnect`].
    #[serde(rename = "reconnect_base_ms", with = "ms")]
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    #[serde(rename = "reconnect_max_ms", with = "ms")]
    pub reconnect_max: Duration,
    pub reconnect_jitter: Jitter,
    #[serde(rename = "stable_after_ms", with = "ms")]
    pub stable_after: Duration,
    #[serde(rename = "connect_timeout_ms", with = "ms")]
    pub connect_timeout: Duration,
    #[serde(rename = "register_timeout_ms", with = "ms")]
    pub register_timeout: Duration,
    #[serde(rename = "command_timeout_ms", with = "ms")]
    pub command_timeout: Duration,
    #[serde(deserialize_with = "super::values::at_least_one")]
    pub emit_buffer: usize,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// An HTTP CONNECT proxy for the control socket.
    pub proxy: Option<ProxyUrl>,
    /// Hosts (or `.suffix` domains) reached without the proxy.
    pub no_proxy: Vec<String>,
    /// Cut a reconnect wait short when the host's network comes back
    /// (`host/netwatch.rs`). Not a key: always on in the daemon; tests of
    /// the backoff's exact timing turn it off, since another process on
    /// the machine may change its network while they run.
    #[serde(skip, default = "watch_network_default")]
    pub watch_network: bool,
}

fn watch_network_default() -> bool {
    true
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            reconnect_base: DEFAULT_RECONNECT_BASE,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            reconnect_jitter: default_jitter(),
            stable_after: DEFAULT_STABLE_AFTER,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            register_timeout: DEFAULT_REGISTER_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            emit_buffer: DEFAULT_EMIT_BUFFER,
            ca_file: None,
            proxy: None,
            no_proxy: Vec::new(),
            watch_network: true,
        }
    }
}

fn default_jitter() -> Jitter {
    match Jitter::new(DEFAULT_RECONNECT_JITTER) {
        Ok(j) => j,
        Err(e) => unreachable!("0.3 is within 0..=1: {e}"),
    }
}

impl SocketSettings {
    /// The reconnect backoff: `reconnect_base`, doubling up to
    /// `reconnect_max`, spread by `reconnect_jitter`.
    pub fn try_reconnect(&self) -> Result<ExponentialBackoff, String> {
        ExponentialBackoff::try_new(
            self.reconnect_base,
            self.reconnect_max,
            2.0,
            self.reconnect_jitter.get(),
        )
        .map_err(|e| format!("socket.reconnect_base_ms / reconnect_max_ms: {e}"))
    }

    /// [`Self::try_reconnect`]; `Settings::validate` (run at load
    /// and by `daemon::start`) rejects the values for which this falls back
    /// to the reference's backoff.
    pub fn reconnect(&self) -> ExponentialBackoff {
        self.try_reconnect().unwrap_or_else(|_| default_reconnect())
    }

    /// The proxy to reach `host` through, unless `no_proxy` exempts it.
    pub fn proxy_for(&self, host: &str) -> Option<&ProxyUrl> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.proxy
            .as_ref()
            .filter(|_| !bypasses_proxy(&self.no_proxy, host))
    }
}

/// The reference's reconnect backoff (see the constants above).
pub fn default_reconnect() -> ExponentialBackoff {
    match ExponentialBackoff::try_new(
        DEFAULT_RECONNECT_BASE,
        DEFAULT_RECONNECT_MAX,
        2.0,
        DEFAULT_RECONNECT_JITTER,
    ) {
        Ok(b) => b,
        // 500 ms ≤ 30 s, factor 2, jitter 0.3: valid by construction.
        Err(e) => unreachable!("default reconnect backoff is valid: {e}"),
    }
}

/// `[supervisor]`: restart intensity of the actor supervisors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    /// More restarts than this within `window` stop the daemon (exit 2).
    pub max_restarts: u32,
    #[serde(rename = "window_secs", with = "secs")]
    pub window: Duration,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings {
            max_restarts: otp::supervisor::DEFAULT_MAX_RESTARTS,
            window: otp::supervisor::DEFAULT_RESTART_WINDOW,
        }
    }
}

impl SupervisorSettings {
    pub fn try_intensity(&self) -> Result<Intensity, String> {
        Intensity::try_new(self.max_restarts, self.window)
            .map_err(|e| format!("supervisor.window_secs: {e}"))
    }

    /// The supervisors' restart intensity (falls back to otp's default
    /// only for values `Settings::validate` rejects).
    pub fn intensity(&self) -> Intensity {
        self.try_intensity()
            .unwrap_or_else(|_| otp::supervisor::default_intensity())
    }
}

/// `[install]`: what the install manifest step needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallSettings {
    /// Files go to `<install_root>/<cluster id>/`.
    pub install_root: AbsPath,
    /// Whether to request the install manifest after enrollment.
    pub fetch_manifest: bool,
    /// Ports reported in the manifest request.
    #[serde(default, deserialize_with = "valid_ports")]
    pub ports: Option<ServicePorts>,
}

impl Default for InstallSettings {
    fn default() -> Self {
        InstallSettings {
            install_root: match AbsPath::new(DEFAULT_INSTALL_ROOT) {
                Ok(p) => p,
                Err(e) => unreachable!("the default install root is absolute: {e}"),
            },
            fetch_manifest: false,
            ports: None,
        }
    }
}

fn valid_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ServicePorts>, D::Error> {
    let ports = Option::<ServicePorts>::deserialize(d)?;
    if let Some(p) = &ports {
        p.validate().map_err(serde::de::Error::custom)?;
    }
    Ok(ports)
}

/// The login account terminal shells run as: created by install.sh, never
/// the account voltd runs as.
pub const DEFAULT_TERMINAL_USER: &str = "volt-terminal";
/// Where the socket-activated terminal helper listens
/// (`install/voltd-terminal.socket`).
pub const DEFAULT_TERMINAL_HELPER_SOCKET: &str = "/run/voltd-terminal.sock";

/// `[terminal]`: the host terminal (`session.attach` with
/// `terminalTarget: "host"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSettings {
    /// When false every attach is refused with 403.
    pub enabled: bool,
    /// The login account the shell runs as. Never voltd's own account
    /// (unless `allow_daemon_user`) and never root.
    pub user: UserName,
    /// Development only: let the shell run as the account voltd runs as
    /// (it can then read voltd's credentials). Off, that is refused.
    pub allow_daemon_user: bool,
    /// The terminal helper's socket (`voltd-terminal.socket`): how a voltd
    /// that cannot switch accounts itself starts shells.
    pub helper_socket: AbsPath,
    /// Absolute path of the shell; `None` = the user's passwd shell, else
    /// `/bin/bash`.
    pub shell: Option<AbsPath>,
    /// Sessions without input or output for this long are ended.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// Attaches beyond this many open sessions are refused with 429.
    #[serde(deserialize_with = "session_count")]
    pub max_sessions: usize,
}

impl Default for TerminalSettings {
    fn default() -> Self {
        TerminalSettings {
            enabled: true,
            user: UserName::parse(DEFAULT_TERMINAL_USER)
                .unwrap_or_else(|_| unreachable!("the default user name is valid")),
            allow_daemon_user: false,
            helper_socket: AbsPath::new(DEFAULT_TERMINAL_HELPER_SOCKET)
                .unwrap_or_else(|_| unreachable!("the default socket path is absolute")),
            shell: None,
            idle_timeout: DEFAULT_TERMINAL_IDLE_TIMEOUT,
            max_sessions: DEFAULT_TERMINAL_MAX_SESSIONS,
        }
    }
}

impl TerminalSettings {
    pub fn validate(&self) -> Result<(), String> {
        if &*self.user == "root" {
            return Err(
                "terminal.user: must not be root (a terminal reads everything root can; use sudo inside it)"
                    .into(),
            );
        }
        if self.idle_timeout.is_zero() {
            return Err("terminal.idle_timeout_secs: must be greater than 0".into());
        }
        check_sessions(self.max_sessions).map_err(|e| format!("terminal.max_sessions: {e}"))
    }
}

fn check_sessions(n: usize) -> Result<(), String> {
    if !(1..=MAX_TERMINAL_SESSIONS).contains(&n) {
        return Err(format!(
            "must be between 1 and {MAX_TERMINAL_SESSIONS}, got {n}"
        ));
    }
    Ok(())
}

fn session_count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    check_sessions(n).map_err(serde::de::Error::custom)?;
    Ok(n)
}

/// One directory the host file explorer may show, under a short name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRoot {
    /// First path segment in explorer paths.
    pub name: String,
    /// Canonical absolute directory (symlinks resolved at load; every
    /// operation then resolves beneath it with the kernel's help).
    pub path: PathBuf,
    /// No change through the file manager (mkdir, rename, delete, upload):
    /// 403. The default for a root listed without `read_only`, so that an
    /// upgrade makes no root writable silently.
    pub read_only: bool,
}

/// `[host_files]`: the host file explorer's roots; none means the
/// `host-files` target is disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HostFilesFile")]
pub struct HostFilesSettings {
    pub roots: Vec<HostRoot>,
}

/// One `roots` item as written: a path (named after its last component,
/// read-only) or `{ name, path, read_only? }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RootSpec {
    Path(PathBuf),
    Named {
        name: String,
        path: PathBuf,
        #[serde(default)]
        read_only: Option<bool>,
    },
}

/// Whether a root listed without `read_only` is read-only.
pub const DEFAULT_ROOT_READ_ONLY: bool = true;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFilesFile {
    #[serde(deserialize_with = "root_specs")]
    roots: Vec<RootSpec>,
}

fn root_specs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RootSpec>, D::Error> {
    Vec::<RootSpec>::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom("each root must be a path or { name, path }")
    })
}

impl TryFrom<HostFilesFile> for HostFilesSettings {
    type Error = String;
    fn try_from(f: HostFilesFile) -> Result<Self, String> {
        let roots = f
            .roots
            .into_iter()
            .map(|r| match r {
                RootSpec::Named {
                    name,
                    path,
                    read_only,
                } => (name, path, read_only.unwrap_or(DEFAULT_ROOT_READ_ONLY)),
                RootSpec::Path(path) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (name, path, DEFAULT_ROOT_READ_ONLY)
                }
            })
            .collect();
        HostFilesSettings::try_new_with_access(roots)
    }
}

impl HostFilesSettings {
    /// Validating constructor of read-only roots: absolute existing
    /// directories (canonicalised), unique non-empty names without `/`.
    pub fn try_new(roots: Vec<(String, PathBuf)>) -> Result<Self, String> {
        Self::try_new_with_access(
            roots
                .into_iter()
                .map(|(n, p)| (n, p, DEFAULT_ROOT_READ_ONLY))
                .collect(),
        )
    }

    /// [`Self::try_new`] with each root's `read_only`.
    pub fn try_new_with_access(roots: Vec<(String, PathBuf, bool)>) -> Result<Self, String> {
        let mut out: Vec<HostRoot> = Vec::new();
        for (name, path, read_only) in roots {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!(
                    "host_files root name {name:?} must be a plain name"
                ));
            }
            if !path.is_absolute() {
                return Err(format!(
                    "host_files root {} must be an absolute path",
                    path.display()
                ));
            }
            let real = std::fs::canonicalize(&path)
                .map_err(|e| format!("host_files root {}: {e}", path.display()))?;
            if !real.is_dir() {
                return Err(format!(
                    "host_files root {} is not a directory",
                    path.display()
                ));
            }
            if out.iter().any(|r| r.name == name) {
                return Err(format!("host_files root name {name:?} is used twice"));
            }
            out.push(HostRoot {
                name,
                path: real,
                read_only,
            });
        }
        Ok(HostFilesSettings { roots: out })
    }
}

/// Inbound commands that run longer than this get 504: the server gave up
/// after 30 s (60 s for lifecycle commands) anyway, and a handler stuck on
/// a dead store must not hold its resources forever.
pub const DEFAULT_COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// A streamed reply with no progress (no chunk read, none sent) for this
/// long is ended with an error.
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(60);
/// Inbound commands being answered at once (streams included); more get
/// 429. Each may hold a blocking thread, a descriptor or a store
/// connection; the server itself rarely has more than a few dozen out.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;

/// `[commands]`: bounds on answering inbound commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSettings {
    /// Deadline of a command's reply (a stream's first response).
    #[serde(rename = "deadline_secs", with = "secs")]
    pub deadline: Duration,
    /// A stream ends when it made no progress for this long.
    #[serde(rename = "stream_idle_secs", with = "secs")]
    pub stream_idle: Duration,
    /// Commands in flight at once; more are refused with 429.
    pub max_in_flight: usize,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            deadline: DEFAULT_COMMAND_DEADLINE,
            stream_idle: DEFAULT_STREAM_IDLE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl CommandSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_in_flight == 0 {
            return Err("commands.max_in_flight: must be at least 1".into());
        }
        Ok(())
    }
}
