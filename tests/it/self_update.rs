//! `runtime.update` end to end, with real binaries against a real
//! volt-plane that publishes signed releases: voltd installed the way
//! install.sh lays it out (`releases/<v>/voltd`, `current`, `previous`), run
//! by a small stand-in for systemd that does what the unit says —
//! `ExecStartPre=previous/voltd update-guard`, `ExecStart=current/voltd
//! run`, restart on failure except exit 0, 1 and 4, and a `NOTIFY_SOCKET`
//! (`Type=notify`) on which readiness must arrive.

use crate::voltd_bin;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::daemon::{DAEMON_WAIT, WITHIN, cluster};
use testkit::process::{Signal, signal};
use testkit::{eventually, free_port};
use volt_plane::{ClusterView, CreatedCluster, PlaneConfig, PlaneHandle, ReleaseStore};
use volt_protocol::ClusterStatus;
use volt_protocol::release::Platform;
use voltd_actors::update::install::{BINARY_FILE, InstallLayout};
use voltd_actors::update::marker;

/// Updates download and self-check a ~70 MB debug binary on a loaded
/// 2-core machine: give each step room.
const UPDATE_WITHIN: Duration = Duration::from_secs(120);
/// The trial release's registration deadline in these tests.
const REGISTER_DEADLINE_SECS: u64 = 4;
/// Exit codes systemd does not restart (`RestartPreventExitStatus=1 4`,
/// and a clean 0).
const NO_RESTART: [i32; 3] = [0, 1, 4];

/// One start of the unit as the stand-in systemd saw it.
#[derive(Debug, Clone)]
struct Start {
    version: String,
    exit: Option<i32>,
    /// The sd_notify datagrams of this start, in order.
    notified: Arc<Mutex<Vec<String>>>,
}

impl Start {
    fn notified(&self) -> Vec<String> {
        self.notified.lock().unwrap().clone()
    }

    /// The first line of each datagram (`READY=1`, `EXTEND_TIMEOUT_USEC=…`).
    fn notes(&self) -> Vec<String> {
        self.notified()
            .iter()
            .map(|m| {
                let first = m.lines().next().unwrap_or_default();
                first.split('=').next().unwrap_or_default().to_owned()
            })
            .collect()
    }
}

/// A host with voltd 0.1.0 installed and enrolled for a cluster on a plane
/// that serves releases, and the stand-in systemd running it.
struct Host {
    dir: tempfile::TempDir,
    layout: InstallLayout,
    store: ReleaseStore,
    plane: PlaneHandle,
    created: CreatedCluster,
    starts: Arc<Mutex<Vec<Start>>>,
    stop: tokio::sync::watch::Sender<bool>,
    unit: Option<tokio::task::JoinHandle<()>>,
}

impl Host {
    /// Installs 0.1.0 and starts the unit. `env_for` gives extra
    /// environment for a start of a release version.
    async fn start(env_for: fn(&str) -> Vec<(String, String)>) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let store = ReleaseStore::new(dir.path().join("plane-releases"));
        let key = store.signing_key().unwrap().public_key();
        let plane = volt_plane::start(PlaneConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            releases_dir: Some(store.dir().to_owned()),
            daemon_wait: DAEMON_WAIT,
            ..PlaneConfig::default()
        })
        .await
        .unwrap();
        let created = cluster(&plane).await;
        let layout = InstallLayout::new(dir.path().join("opt/voltd"), dir.path().join("state"));
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        let first = layout.release_dir("0.1.0");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::copy(voltd_bin(), first.join(BINARY_FILE)).unwrap();
        layout.set_current("0.1.0").unwrap();
        layout.set_previous("0.1.0").unwrap();
        let key_file = dir.path().join("etc/release-key.pub");
        std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
        std::fs::write(&key_file, format!("{}\n", key.to_base64())).unwrap();
        let config = dir.path().join("voltd.toml");
        std::fs::write(
            &config,
            format!(
                r#"cloud_url = "{url}"
team_cluster_id = "{id}"
state_dir = "{state}"
enrollment_token = "{token}"
heartbeat_interval_ms = 500
[socket]
reconnect_base_ms = 50
reconnect_max_ms = 400
[update]
install_dir = "{install}"
key_file = "{key}"
register_deadline_secs = {deadline}
"#,
                url = plane.base_url(),
                id = created.team_cluster.id,
                state = layout.state_dir.display(),
                token = created.enrollment_token,
                install = layout.install_dir.display(),
                key = key_file.display(),
                deadline = REGISTER_DEADLINE_SECS,
            ),
        )
        .unwrap();

        let starts = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let unit = tokio::spawn(run_unit(
            layout.clone(),
            config.clone(),
            dir.path().to_owned(),
            starts.clone(),
            stopped,
            env_for,
        ));
        let host = Host {
            dir,
            layout,
            store,
            plane,
            created,
            starts,
            stop,
            unit: Some(unit),
        };
        host.wait_plane("0.1.0 registered", |c| {
            c.connected && c.team_cluster.installed_version.as_deref() == Some("0.1.0")
        })
        .await;
        host
    }

    fn id(&self) -> &str {
        &self.created.team_cluster.id
    }

    fn platform() -> Platform {
        Platform::current().unwrap()
    }

    fn publish(&self, version: &str, file: &Path) {
        self.store
            .publish(version, &Self::platform(), file)
            .unwrap();
    }

    async fn wait_plane(&self, what: &str, pred: impl Fn(&ClusterView) -> bool) -> ClusterView {
        eventually(UPDATE_WITHIN, what, async || {
            self.plane.cluster(self.id()).filter(|c| pred(c))
        })
        .await
    }

    /// Asks for the update as the server's user would; the daemon accepts.
    async fn request_update(&self, version: &str) {
        let dto = self
            .plane
            .request_update(self.id(), version, false)
            .await
            .unwrap_or_else(|e| panic!("update to {version} refused: {e}\n{}", self.logs()));
        assert_eq!(dto.status, ClusterStatus::Updating);
    }

    /// The plane's `update-failed` entry after the latest request.
    async fn update_failed(&self) -> String {
        let view = self
            .wait_plane("update-failed", |c| c.status == ClusterStatus::UpdateFailed)
            .await;
        let last = view.status_history.last().unwrap();
        last.reason
            .clone()
            .unwrap_or_else(|| panic!("no reason: {:?}", view.status_history))
    }

    fn starts(&self) -> Vec<Start> {
        self.starts.lock().unwrap().clone()
    }

    /// Everything the daemons printed (for failure messages).
    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) {
            let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for p in paths {
                out.push_str(&format!("--- {}\n", p.display()));
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
        out
    }

    /// Only 0.1.0 (and nothing staged) is installed, and it is current.
    fn assert_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.layout.releases_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["0.1.0".to_owned()], "{}", self.logs());
        assert_eq!(self.layout.current_version().as_deref(), Some("0.1.0"));
        assert!(marker::read(&self.layout).is_none());
    }

    /// Stops the unit (SIGTERM to the running daemon, which exits 0).
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(unit) = self.unit.take() {
            tokio::time::timeout(WITHIN, unit)
                .await
                .expect("the unit stops")
                .unwrap();
        }
        let last = self.starts().last().cloned().unwrap();
        assert_eq!(last.exit, Some(0), "{}", self.logs());
        self.plane.shutdown().await;
    }
}

/// The stand-in systemd (see the module docs).
async fn run_unit(
    layout: InstallLayout,
    config: PathBuf,
    dir: PathBuf,
    starts: Arc<Mutex<Vec<Start>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    env_for: fn(&str) -> Vec<(String, String)>,
) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    loop {
        // ExecStartPre=-previous/voltd update-guard (failure ignored).
        let _ = tokio::process::Command::new(layout.previous_link().join(BINARY_FILE))
            .arg("--config")
            .arg(&config)
            .arg("update-guard")
            .stdin(Stdio::null())
            .output()
            .await;
        let version = layout.current_version().unwrap_or_default();
        let n = starts.lock().unwrap().len();
        let log = std::fs::File::create(logs.join(format!("{n:02}-{version}.log"))).unwrap();
        // Each start gets its own notification socket, as each invocation
        // of a unit is told apart by systemd.
        let notify = dir.join(format!("notify-{n}.sock"));
        let socket = tokio::net::UnixDatagram::bind(&notify).unwrap();
        let notified = Arc::new(Mutex::new(Vec::new()));
        let sink = notified.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        let mut child = tokio::process::Command::new(layout.current_link().join(BINARY_FILE))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .arg("--services")
            .arg("none")
            .env_remove("VOLTD_CONFIG")
            .env_remove("RUST_LOG")
            .env("NOTIFY_SOCKET", &notify)
            .envs(env_for(&version))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        starts.lock().unwrap().push(Start {
            version,
            exit: None,
            notified,
        });
        let status = tokio::select! {
            status = child.wait() => status.unwrap(),
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                let pid = child.id().unwrap() as i32;
                signal(pid, Signal::SIGTERM);
                tokio::time::timeout(WITHIN, child.wait()).await.expect("voltd stops on SIGTERM").unwrap()
            }
        };
        let code = status.code().unwrap_or(-1);
        if let Some(s) = starts.lock().unwrap().last_mut() {
            s.exit = Some(code);
        }
        if *stop.borrow() || NO_RESTART.contains(&code) {
            return;
        }
    }
}

fn no_env(_: &str) -> Vec<(String, String)> {
    Vec::new()
}

fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("release.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn an_update_restarts_into_the_new_release_which_reports_its_version_and_gets_connected() {
    let h = Host::start(no_env).await;
    // Type=notify: the start is extended while not registered, then ready.
    eventually(WITHIN, "READY=1 once registered", async || {
        h.starts()[0]
            .notes()
            .contains(&"READY".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(h.starts()[0].notes()[0], "EXTEND_TIMEOUT_USEC");
    h.publish("0.2.0", Path::new(voltd_bin()));
    h.request_update("0.2.0").await;

    let view = h
        .wait_plane("connected on 0.2.0", |c| {
            c.status == ClusterStatus::Connected
                && c.team_cluster.installed_version.as_deref() == Some("0.2.0")
        })
        .await;
    let history: Vec<ClusterStatus> = view.status_history.iter().map(|c| c.status).collect();
    let updating = history
        .iter()
        .rposition(|s| *s == ClusterStatus::Updating)
        .unwrap();
    assert_eq!(
        &history[updating..],
        &[ClusterStatus::Updating, ClusterStatus::Connected],
        "{history:?}"
    );
    // The old release exited with the updating code; the new one runs.
    let starts = h.starts();
    assert_eq!(starts[0].version, "0.1.0");
    assert_eq!(starts[0].exit, Some(3), "{}", h.logs());
    assert_eq!(starts.last().unwrap().version, "0.2.0");
    // Committed once registered: the previous release is kept, no marker.
    eventually(WITHIN, "the update committed", async || {
        marker::read(&h.layout).is_none().then_some(())
    })
    .await;
    assert_eq!(h.layout.current_version().as_deref(), Some("0.2.0"));
    assert_eq!(h.layout.previous_version().as_deref(), Some("0.1.0"));
    assert!(h.layout.release_dir("0.1.0").join(BINARY_FILE).is_file());
    // The release on trial does not extend its start: only its own
    // deadline and systemd's timeout bound it. Once registered it is ready.
    let trial = h.starts().last().cloned().unwrap();
    eventually(WITHIN, "READY=1 from the new release", async || {
        trial.notes().contains(&"READY".to_owned()).then_some(())
    })
    .await;
    assert!(
        !trial.notes().contains(&"EXTEND_TIMEOUT_USEC".to_owned()),
        "{:?}",
        trial.notified()
    );
    h.stop().await;
}

#[tokio::test]
async fn refused_releases_leave_the_old_version_running_and_report_update_failed_with_the_reason() {
    let h = Host::start(no_env).await;
    let platform = Host::platform();

    // 1. Signed by another key (copied into the plane's channel).
    let other = tempfile::tempdir().unwrap();
    let stranger = ReleaseStore::new(other.path());
    stranger
        .publish("0.2.0", &platform, Path::new(voltd_bin()))
        .unwrap();
    let to = h.store.release_dir("0.2.0", &platform);
    std::fs::create_dir_all(&to).unwrap();
    for f in ["manifest.json", "voltd"] {
        std::fs::copy(stranger.release_dir("0.2.0", &platform).join(f), to.join(f)).unwrap();
    }
    h.request_update("0.2.0").await;
    let reason = h.update_failed().await;
    assert!(reason.starts_with("bad-signature: "), "{reason}");
    h.assert_untouched();

    // 2. The binary does not match the signed SHA-256.
    h.publish("0.3.0", Path::new(voltd_bin()));
    let served = h.store.binary_path("0.3.0", &platform);
    let mut bytes = std::fs::read(&served).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&served, &bytes).unwrap();
    h.request_update("0.3.0").await;
    let reason = h.update_failed().await;
    assert!(reason.starts_with("checksum-mismatch: "), "{reason}");
    h.assert_untouched();

    // 3. A truncated download.
    h.publish("0.4.0", Path::new(voltd_bin()));
    let served = h.store.binary_path("0.4.0", &platform);
    let full = std::fs::read(&served).unwrap();
    std::fs::write(&served, &full[..full.len() - 4096]).unwrap();
    h.request_update("0.4.0").await;
    let reason = h.update_failed().await;
    assert!(reason.starts_with("truncated: "), "{reason}");
    h.assert_untouched();

    // 4. A release whose self-check fails.
    let bad = script(
        h.dir.path(),
        "echo 'cannot read state: schema 9 unknown' >&2\nexit 1",
    );
    h.publish("0.5.0", &bad);
    h.request_update("0.5.0").await;
    let reason = h.update_failed().await;
    assert!(reason.starts_with("self-check-failed: "), "{reason}");
    assert!(reason.contains("schema 9 unknown"), "{reason}");
    h.assert_untouched();

    // All along the first process served: no restart, still registered.
    let starts = h.starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(starts[0].exit, None);
    assert!(h.plane.cluster(h.id()).unwrap().connected);
    h.stop().await;
}

/// The trial release is started with a socket URL nothing listens on: it
/// runs, serves nothing and never registers — as a release whose control
/// channel is broken would.
fn trial_cannot_register(version: &str) -> Vec<(String, String)> {
    if version == "0.2.0" {
        vec![(
            "VOLT_CLOUD_DAEMON_SOCKET_URL".into(),
            format!("http://127.0.0.1:{}", free_port()),
        )]
    } else {
        Vec::new()
    }
}

#[tokio::test]
async fn a_release_that_cannot_register_is_rolled_back_and_the_old_version_reports_update_failed() {
    let h = Host::start(trial_cannot_register).await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    h.request_update("0.2.0").await;

    let reason = h.update_failed().await;
    assert!(
        reason.contains("0.2.0") && reason.contains("did not register"),
        "{reason}\n{}",
        h.logs()
    );
    let view = h
        .wait_plane("0.1.0 registered again", |c| c.connected)
        .await;
    assert_eq!(
        view.team_cluster.installed_version.as_deref(),
        Some("0.1.0")
    );
    let versions: Vec<(String, Option<i32>)> = h
        .starts()
        .into_iter()
        .map(|s| (s.version, s.exit))
        .collect();
    assert_eq!(
        versions,
        vec![
            ("0.1.0".to_owned(), Some(3)),
            ("0.2.0".to_owned(), Some(3)),
            ("0.1.0".to_owned(), None),
        ],
        "{}",
        h.logs()
    );
    assert_eq!(h.layout.current_version().as_deref(), Some("0.1.0"));
    // The story is over once reported: no marker left.
    eventually(WITHIN, "the marker acknowledged", async || {
        marker::read(&h.layout).is_none().then_some(())
    })
    .await;
    // The trial told systemd neither "ready" nor "extend" (only that it
    // stops); the restored release is ready once registered.
    let starts = h.starts();
    assert_eq!(
        starts[1].notes(),
        ["STOPPING"],
        "{:?}",
        starts[1].notified()
    );
    eventually(WITHIN, "READY=1 from the restored release", async || {
        starts[2]
            .notes()
            .contains(&"READY".to_owned())
            .then_some(())
    })
    .await;
    h.stop().await;
}

/// Where the trial release of the next test registers: a plane that does
/// not know the cluster (set before the trial starts).
static STRANGER_PLANE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn trial_is_rejected(version: &str) -> Vec<(String, String)> {
    match (version, STRANGER_PLANE.get()) {
        ("0.2.0", Some(url)) => vec![("VOLT_CLOUD_DAEMON_SOCKET_URL".into(), url.clone())],
        _ => Vec::new(),
    }
}

/// A release on trial whose registration is refused ends with the
/// credentials-rejected code, which systemd does not restart
/// (`RestartPreventExitStatus=1 4`): it rolls back first and exits with
/// the updating code instead, so the previous release runs again.
#[tokio::test]
async fn a_release_that_stops_with_a_code_systemd_keeps_down_is_rolled_back_first() {
    let stranger = volt_plane::start(PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..PlaneConfig::default()
    })
    .await
    .unwrap();
    STRANGER_PLANE.set(stranger.base_url()).unwrap();
    let h = Host::start(trial_is_rejected).await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    h.request_update("0.2.0").await;

    let reason = h.update_failed().await;
    assert!(
        reason.contains("stopped before registering") && reason.contains("rejected"),
        "{reason}\n{}",
        h.logs()
    );
    let versions: Vec<(String, Option<i32>)> = h
        .starts()
        .into_iter()
        .map(|s| (s.version, s.exit))
        .collect();
    assert_eq!(
        versions,
        vec![
            ("0.1.0".to_owned(), Some(3)),
            ("0.2.0".to_owned(), Some(3)),
            ("0.1.0".to_owned(), None),
        ],
        "{}",
        h.logs()
    );
    assert_eq!(h.layout.current_version().as_deref(), Some("0.1.0"));
    h.stop().await;
    stranger.shutdown().await;
}
