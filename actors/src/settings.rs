//! The validated settings the actors run with. The `voltd` binary builds them
//! from the TOML file, the reference daemon's environment variables and
//! flags (see `src/config.rs`); tests build them directly.

use otp::Intensity;
use otp::backoff::ExponentialBackoff;
use std::path::PathBuf;
use std::time::Duration;
use volt_protocol::enrollment::ServicePorts;
use volt_protocol::register::Secret;

/// Heartbeat period of the reference daemon (`TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS`).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10_000);
/// Reconnect backoff of the reference daemon: 500 ms base …
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(500);
/// … doubling up to 30 s (`reconnectionDelayMax` of the SDK) …
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_millis(30_000);
/// … with socket.io's `randomizationFactor` 0.3.
pub const DEFAULT_RECONNECT_JITTER: f64 = 0.3;
/// A connection that stayed registered this long resets the backoff: a
/// server that accepts and then drops us at once must not be hammered.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(30);
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
/// Installed version reported when nothing else is known (what the
/// reference installers send).
pub const DEFAULT_INSTALLED_VERSION: &str = "1.0.0";
/// Linux install root of the reference installers.
pub const DEFAULT_INSTALL_ROOT: &str = "/opt/volt/team-clusters";
/// Where voltd keeps credentials and state when installed system-wide.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/voltd";
/// Idle terminal sessions (no input and no output) end after this: the
/// VOLT server reaps its own idle sessions after 10 minutes, so a longer
/// daemon timeout would only keep shells nobody can reach any more.
pub const DEFAULT_TERMINAL_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Concurrent terminal sessions. Each holds a PTY, a shell and a waiter
/// thread; 16 is more than a team uses at once and bounds what a runaway
/// client can open.
pub const DEFAULT_TERMINAL_MAX_SESSIONS: usize = 16;

/// A validated `http(s)://` base URL without trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudUrl(reqwest::Url);

impl CloudUrl {
    /// Parses and validates: scheme http/https (or ws/wss), a host, no query
    /// or fragment. Trailing slashes are stripped, as the reference does.
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim().trim_end_matches('/');
        let mut url =
            reqwest::Url::parse(trimmed).map_err(|e| format!("invalid URL {trimmed:?}: {e}"))?;
        let scheme = match url.scheme() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            other => return Err(format!("URL {trimmed:?} must be http(s), not {other}")),
        };
        if url.scheme() != scheme {
            // Only the scheme changes; both are "special" schemes, so the
            // url crate accepts the swap.
            let _ = url.set_scheme(scheme);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("URL {trimmed:?} has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("URL {trimmed:?} must not have a query or fragment"));
        }
        Ok(CloudUrl(url))
    }

    /// The URL as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// `base + path` (path starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.as_str(), path)
    }

    /// The WebSocket URL of the socket.io endpoint.
    pub fn socket_io_url(&self) -> String {
        let base = self.as_str();
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        format!(
            "{ws}{}?{}",
            volt_protocol::SOCKET_IO_PATH,
            volt_protocol::SOCKET_IO_QUERY
        )
    }

    pub fn is_tls(&self) -> bool {
        self.0.scheme() == "https"
    }

    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(80)
    }
}

impl std::fmt::Display for CloudUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP CONNECT proxy for the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `host:port` of the proxy.
    pub address: String,
    /// `Proxy-Authorization: Basic …` credentials from `user:pass@` in the URL.
    pub basic_auth: Option<Secret>,
    /// Hosts (or `.suffix` domains) reached directly (`NO_PROXY`).
    pub no_proxy: Vec<String>,
}

impl ProxySettings {
    /// Whether `host` bypasses the proxy.
    pub fn bypass(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.no_proxy.iter().any(|rule| {
            let rule = rule.trim().to_ascii_lowercase();
            rule == "*"
                || host == rule.trim_start_matches('.')
                || (host.ends_with(&rule) && rule.starts_with('.'))
                || host.ends_with(&format!(".{rule}"))
        })
    }
}

/// Control socket tuning.
#[derive(Debug, Clone)]
pub struct SocketSettings {
    pub reconnect: ExponentialBackoff,
    pub stable_after: Duration,
    pub connect_timeout: Duration,
    pub register_timeout: Duration,
    pub command_timeout: Duration,
    pub emit_buffer: usize,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<ProxySettings>,
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            reconnect: default_reconnect(),
            stable_after: DEFAULT_STABLE_AFTER,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            register_timeout: DEFAULT_REGISTER_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            emit_buffer: DEFAULT_EMIT_BUFFER,
            ca_file: None,
            proxy: None,
        }
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

/// The host terminal (`session.attach` with `terminalTarget: "host"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalSettings {
    /// When false every attach is refused with 403.
    pub enabled: bool,
    /// Who the shell runs as; `None` = the user voltd runs as. Another user
    /// needs voltd to run as root (it switches with `setpriv`).
    pub user: Option<String>,
    /// Absolute path of the shell; `None` = the user's passwd shell, else
    /// `/bin/bash`.
    pub shell: Option<PathBuf>,
    /// Sessions without input or output for this long are ended.
    pub idle_timeout: Duration,
    /// Attaches beyond this many open sessions are refused with 429.
    pub max_sessions: usize,
}

impl Default for TerminalSettings {
    fn default() -> Self {
        TerminalSettings {
            enabled: true,
            user: None,
            shell: None,
            idle_timeout: DEFAULT_TERMINAL_IDLE_TIMEOUT,
            max_sessions: DEFAULT_TERMINAL_MAX_SESSIONS,
        }
    }
}

/// What the install manifest step needs.
#[derive(Debug, Clone)]
pub struct InstallSettings {
    /// `TEAM_CLUSTER_INSTALL_ROOT`: files go to `<root>/<cluster id>/`.
    pub install_root: PathBuf,
    /// Whether to request the install manifest after enrollment.
    pub fetch_manifest: bool,
    /// Ports reported in the manifest request.
    pub ports: Option<ServicePorts>,
}

impl Default for InstallSettings {
    fn default() -> Self {
        InstallSettings {
            install_root: PathBuf::from(DEFAULT_INSTALL_ROOT),
            fetch_manifest: false,
            ports: None,
        }
    }
}

/// Everything the daemon's actors need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cloud_url: CloudUrl,
    /// `VOLT_CLOUD_DAEMON_SOCKET_URL`; the manifest sets it equal to the cloud URL.
    pub socket_url: CloudUrl,
    pub team_cluster_id: String,
    /// A password the installer already obtained (`TEAM_CLUSTER_DAEMON_PASSWORD`).
    pub daemon_password: Option<Secret>,
    /// One-time enrollment token (`TEAM_CLUSTER_ENROLLMENT_TOKEN`).
    pub enrollment_token: Option<Secret>,
    /// The TOML file the token came from, so it can be removed after use.
    pub token_file: Option<PathBuf>,
    /// Reported as `installedVersion`.
    pub installed_version: String,
    /// Credentials, manifest, admin socket.
    pub state_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub socket: SocketSettings,
    /// Restart intensity of the supervisors.
    pub intensity: Intensity,
    pub install: InstallSettings,
    /// Mount point whose usage is reported as `disk`.
    pub disk_path: PathBuf,
    /// Argument vector run for `runtime.update`, with the target version
    /// appended as one more argument (no shell; see `update::hook`);
    /// without one, updates are refused with a reason.
    pub update_command: Option<Vec<String>>,
    /// Local admin socket (`voltd status`, `voltd logs`).
    pub admin_socket: PathBuf,
    /// The host terminal.
    pub terminal: TerminalSettings,
    /// The managed services (Redis, MongoDB, MinIO). `Settings::new`
    /// manages none; the `voltd` binary's config runs all three natively
    /// unless told otherwise.
    pub services: crate::services::ServicesSettings,
    /// The host file explorer (`host-files` target).
    pub host_files: HostFilesSettings,
}

/// One directory the host file explorer may show, under a short name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    /// First path segment in explorer paths.
    pub name: String,
    /// Canonical absolute directory (symlinks resolved at start-up, so the
    /// containment check compares like with like).
    pub path: PathBuf,
}

/// The host file explorer's roots; none means the target is disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFilesSettings {
    pub roots: Vec<HostRoot>,
}

impl HostFilesSettings {
    /// Validating constructor: absolute existing directories, unique
    /// non-empty names without `/`.
    pub fn try_new(roots: Vec<(String, PathBuf)>) -> Result<Self, String> {
        let mut out: Vec<HostRoot> = Vec::new();
        for (name, path) in roots {
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
            out.push(HostRoot { name, path: real });
        }
        Ok(HostFilesSettings { roots: out })
    }
}

impl Settings {
    /// Settings with every default, for a cluster and server.
    pub fn new(
        cloud_url: CloudUrl,
        team_cluster_id: impl Into<String>,
        state_dir: PathBuf,
    ) -> Self {
        let admin_socket = state_dir.join("voltd.sock");
        Settings {
            socket_url: cloud_url.clone(),
            cloud_url,
            team_cluster_id: team_cluster_id.into(),
            daemon_password: None,
            enrollment_token: None,
            token_file: None,
            installed_version: DEFAULT_INSTALLED_VERSION.to_owned(),
            state_dir,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            socket: SocketSettings::default(),
            intensity: default_intensity(),
            install: InstallSettings::default(),
            disk_path: PathBuf::from("/"),
            update_command: None,
            admin_socket,
            terminal: TerminalSettings::default(),
            services: crate::services::ServicesSettings::disabled(),
            host_files: HostFilesSettings::default(),
        }
    }

    /// Where enrolled credentials are stored.
    pub fn credentials_file(&self) -> PathBuf {
        self.state_dir
            .join(crate::cloud::credentials::CREDENTIALS_FILE)
    }

    /// Where the install manifest is stored.
    pub fn manifest_file(&self) -> PathBuf {
        self.state_dir
            .join(crate::cloud::credentials::MANIFEST_FILE)
    }

    /// `<install root>/<cluster id>`.
    pub fn install_dir(&self) -> PathBuf {
        self.install.install_root.join(&self.team_cluster_id)
    }
}

/// The supervisors' default restart intensity.
pub fn default_intensity() -> Intensity {
    match Intensity::try_new(
        otp::supervisor::DEFAULT_MAX_RESTARTS,
        otp::supervisor::DEFAULT_RESTART_WINDOW,
    ) {
        Ok(i) => i,
        Err(e) => unreachable!("default intensity has a non-zero window: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_url_strips_slashes_and_builds_socket_url() {
        let u = CloudUrl::parse("https://cloud.voltlabs.io///").unwrap();
        assert_eq!(u.as_str(), "https://cloud.voltlabs.io");
        assert_eq!(
            u.socket_io_url(),
            "wss://cloud.voltlabs.io/socket.io/?EIO=4&transport=websocket"
        );
        assert!(u.is_tls());
        assert_eq!(u.port(), 443);
        let u = CloudUrl::parse("http://127.0.0.1:8080/base/").unwrap();
        assert_eq!(u.join("/api/x"), "http://127.0.0.1:8080/base/api/x");
        assert_eq!(
            u.socket_io_url(),
            "ws://127.0.0.1:8080/base/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(CloudUrl::parse("wss://h").unwrap().as_str(), "https://h");
    }

    #[test]
    fn cloud_url_rejects_nonsense() {
        for bad in [
            "",
            "nope",
            "ftp://h",
            "http://",
            "http://h?x=1",
            "http://h#f",
        ] {
            assert!(CloudUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_proxy_rules() {
        let p = ProxySettings {
            address: "proxy:3128".into(),
            basic_auth: None,
            no_proxy: vec!["localhost".into(), ".internal".into(), "example.com".into()],
        };
        assert!(p.bypass("localhost"));
        assert!(p.bypass("a.internal"));
        assert!(p.bypass("internal"));
        assert!(p.bypass("api.example.com"));
        assert!(p.bypass("EXAMPLE.com"));
        assert!(!p.bypass("cloud.voltlabs.io"));
        assert!(!p.bypass("notexample.com"));
    }
}
