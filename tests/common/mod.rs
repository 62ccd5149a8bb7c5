//! Shared helpers of the end-to-end tests: a real volt-plane in-process and
//! voltd either in-process (same actix system) or as the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use volt_plane::{CreateClusterRequest, CreatedCluster, PlaneConfig, PlaneHandle};
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::daemon::{self, DaemonHandle};
use voltd_actors::events::{Event, Record};

/// Polls `f` every 20 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plane on a free loopback port, with short timeouts for tests.
pub async fn plane() -> PlaneHandle {
    plane_with(PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        daemon_wait: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .await
}

pub async fn plane_with(cfg: PlaneConfig) -> PlaneHandle {
    volt_plane::start(cfg).await.expect("plane starts")
}

pub async fn cluster(plane: &PlaneHandle) -> CreatedCluster {
    plane
        .create_cluster(CreateClusterRequest::default())
        .await
        .expect("cluster created")
}

/// Settings for a daemon of `cluster` on `plane`: fast reconnects, a
/// private state directory, the enrollment token configured.
pub fn settings(base_url: &str, created: &CreatedCluster, state: &Path) -> Settings {
    let mut s = Settings::new(
        CloudUrl::parse(base_url).unwrap(),
        ClusterId::parse(&created.team_cluster.id).unwrap(),
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

/// Starts an in-process daemon (needs an actix system: `#[actix_rt::test]`).
pub fn start_daemon(s: Settings) -> DaemonHandle {
    daemon::start(s).expect("daemon starts")
}

/// The first record matching `pred` once it has been emitted.
pub async fn wait_event(
    handle: &DaemonHandle,
    within: Duration,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> std::sync::Arc<Record> {
    eventually(within, what, || {
        handle
            .bus
            .recent(usize::MAX)
            .into_iter()
            .find(|r| pred(&r.event))
    })
    .await
}

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
    eventually(
        Duration::from_secs(10),
        "daemon registered on the plane",
        || plane.cluster(id).filter(|c| c.connected).map(|_| ()),
    )
    .await;
}

/// The voltd binary built for these tests.
pub fn voltd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_voltd"))
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
        let plane = plane().await;
        let created = cluster(&plane).await;
        let id = created.team_cluster.id.clone();
        let state = tempfile::tempdir().expect("state dir");
        let mut s = settings(&plane.base_url(), &created, state.path());
        tweak(&mut s);
        let daemon = start_daemon(s);
        wait_connected(&plane, &id).await;
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
        self.daemon.shutdown(otp::ExitCode::Stopped, "test");
        assert_eq!(self.daemon.wait().await, otp::ExitCode::Stopped);
        self.plane.shutdown().await;
    }
}
