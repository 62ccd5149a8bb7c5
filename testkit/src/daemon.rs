//! Plane + daemon fixtures: a real volt-plane and voltd's actor system in
//! the same process (same actix system; `#[actix_rt::test]`), talking over
//! real loopback sockets.

use crate::eventually;
use crate::plane::config;
use otp::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use volt_plane::{CreatedCluster, PlaneConfig, PlaneHandle};
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::daemon::{self, DaemonHandle};
use voltd_actors::events::{Event, Record};

pub use crate::plane::{cluster, start as start_plane};

/// How long a plane command waits for a real daemon to be registered: a
/// daemon may be reconnecting (with backoff) when the test sends it.
pub const DAEMON_WAIT: Duration = Duration::from_secs(5);

/// How long a test waits for the daemon to register, to heartbeat, to
/// report an event.
pub const WITHIN: Duration = Duration::from_secs(10);

/// The kit's plane configuration ([`config`]) for a real daemon.
pub fn plane_config() -> PlaneConfig {
    PlaneConfig {
        daemon_wait: DAEMON_WAIT,
        ..config()
    }
}

/// A plane for a real daemon ([`plane_config`]).
pub async fn plane() -> PlaneHandle {
    crate::plane::start(plane_config()).await
}

/// Settings for a daemon of `created` on `base_url`: fast reconnects, a
/// private state directory, the enrollment token configured.
pub fn settings(base_url: &str, created: &CreatedCluster, state: &std::path::Path) -> Settings {
    let mut s = Settings::new(
        CloudUrl::parse(base_url).expect("the plane's URL"),
        ClusterId::parse(&created.team_cluster.id).expect("a valid cluster id"),
        state.to_path_buf(),
    );
    s.enrollment_token = Some(created.enrollment_token.as_str().into());
    s.heartbeat_interval = Duration::from_secs(1);
    s.socket.reconnect_base = Duration::from_millis(50);
    s.socket.reconnect_max = Duration::from_millis(400);
    s.socket.command_timeout = Duration::from_secs(5);
    s.socket.register_timeout = Duration::from_secs(5);
    s
}

/// Starts an in-process daemon.
pub fn start_daemon(s: Settings) -> DaemonHandle {
    daemon::start(s).expect("the daemon starts")
}

/// The first record matching `pred` once the daemon has emitted it.
pub async fn wait_event(
    handle: &DaemonHandle,
    within: Duration,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Arc<Record> {
    eventually(within, what, async || {
        handle
            .bus
            .recent(usize::MAX)
            .into_iter()
            .find(|r| pred(&r.event))
    })
    .await
}

/// How many records of the daemon match `pred` so far.
pub fn count_events(handle: &DaemonHandle, pred: impl Fn(&Event) -> bool) -> usize {
    handle
        .bus
        .recent(usize::MAX)
        .iter()
        .filter(|r| pred(&r.event))
        .count()
}

/// Waits until the plane shows a registered daemon for `id`.
pub async fn wait_connected(plane: &PlaneHandle, id: &str) {
    eventually(WITHIN, "the daemon registered on the plane", async || {
        plane.cluster(id).filter(|c| c.connected).map(|_| ())
    })
    .await;
}

/// The usual end-to-end set-up: a plane, a cluster, an in-process daemon
/// with its own state directory, registered.
pub struct Fixture {
    pub plane: PlaneHandle,
    pub created: CreatedCluster,
    pub id: String,
    pub daemon: DaemonHandle,
    pub state: tempfile::TempDir,
}

impl Fixture {
    /// Starts everything with the default test settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts everything, letting `tweak` adjust the daemon's settings.
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_on(plane().await, tweak).await
    }

    /// Creates a cluster on `plane` and starts its daemon (`tweak` adjusts
    /// the settings); returns once it is registered.
    pub async fn start_on(plane: PlaneHandle, tweak: impl FnOnce(&mut Settings)) -> Self {
        let created = cluster(&plane).await;
        let id = created.team_cluster.id.clone();
        let state = tempfile::tempdir().expect("a state directory");
        let mut s = settings(&plane.base_url(), &created, state.path());
        tweak(&mut s);
        let daemon = start_daemon(s);
        wait_connected(&plane, &id).await;
        // The plane counts the registration before the daemon's dispatcher
        // has the link: a command sent in between would be SOCKET_NOT_READY.
        let outbox = daemon.wiring.outbox.clone();
        eventually(WITHIN, "the daemon's dispatcher has the link", async || {
            outbox.link().await.map(|_| ())
        })
        .await;
        Fixture {
            plane,
            created,
            id,
            daemon,
            state,
        }
    }

    /// Stops the daemon (asserting a clean exit) and the plane.
    pub async fn stop(self) {
        self.daemon.shutdown(ExitCode::Stopped, "test");
        assert_eq!(self.daemon.wait().await, ExitCode::Stopped);
        self.plane.shutdown().await;
    }
}

/// The login account terminal tests run shells as when the tests run as
/// root (a terminal never runs as root nor as voltd's account).
pub const TEST_TERMINAL_USER: &str = "volt-term-test";

/// Creates [`TEST_TERMINAL_USER`] (with a home) once; root only.
pub fn ensure_test_terminal_account() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if nix::unistd::User::from_name(TEST_TERMINAL_USER)
            .ok()
            .flatten()
            .is_some()
        {
            return;
        }
        let out = std::process::Command::new("useradd")
            .args(["--create-home", "--user-group", "--shell", "/bin/sh"])
            .arg(TEST_TERMINAL_USER)
            .output()
            .expect("useradd runs");
        assert!(
            out.status.success()
                || nix::unistd::User::from_name(TEST_TERMINAL_USER)
                    .ok()
                    .flatten()
                    .is_some(),
            "useradd {TEST_TERMINAL_USER}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Terminal settings for tests with `shell`, in direct mode (no helper
/// socket): as root, shells run as [`TEST_TERMINAL_USER`]; otherwise as
/// the account running the tests (`allow_daemon_user`, development mode).
pub fn test_terminal(shell: &str) -> voltd_actors::config::TerminalSettings {
    use voltd_actors::config::{AbsPath, TerminalSettings, UserName};
    let euid = nix::unistd::Uid::effective();
    let user = if euid.is_root() {
        ensure_test_terminal_account();
        TEST_TERMINAL_USER.to_owned()
    } else {
        nix::unistd::User::from_uid(euid)
            .ok()
            .flatten()
            .expect("the test user has a passwd entry")
            .name
    };
    TerminalSettings {
        shell: Some(AbsPath::new(shell).expect("an absolute shell")),
        user: UserName::parse(&user).expect("a valid user name"),
        allow_daemon_user: !euid.is_root(),
        helper_socket: AbsPath::new("/nonexistent/voltd-terminal.sock").expect("absolute"),
        ..TerminalSettings::default()
    }
}
