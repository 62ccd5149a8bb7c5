//! Shared by the managed-service tests of both crates (the root package
//! includes this file with `#[path]`): where the real servers are, free
//! ports, service settings that point voltd's native mode at them, and the
//! services subtree run on its own.
#![allow(dead_code)]

use actix::Addr;
use otp::ExitCode;
use otp::supervisor::{Shutdown, Supervisor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::events::{Event, EventBus};
use voltd_actors::services::{
    self, ServiceKind, ServiceRegistry, ServiceState, ServiceView, ServicesSettings,
};

/// Generous: three servers start in parallel with the rest of the suite.
pub const WITHIN: Duration = Duration::from_secs(60);

fn ci_dir() -> PathBuf {
    std::env::var("VOLTD_CI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/voltd-ci")
        })
}

fn located(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = std::env::var(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.is_file(),
        "{what} not found at {} — run .ci/install-services (CI installs it) or set {var}",
        path.display()
    );
    path
}

/// `redis-server` ($VOLTD_REDIS_SERVER, else the Debian package's).
pub fn redis_server() -> PathBuf {
    let default = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    located("VOLTD_REDIS_SERVER", default, "redis-server")
}

/// A MongoDB-wire server ($VOLTD_MONGO_SERVER, else SecantusDB).
pub fn mongo_server() -> PathBuf {
    located(
        "VOLTD_MONGO_SERVER",
        ci_dir().join("venv/bin/secantusd-py"),
        "secantusd-py (SecantusDB)",
    )
}

/// An S3 server ($VOLTD_S3_SERVER, else s3s-fs).
pub fn s3_server() -> PathBuf {
    located(
        "VOLTD_S3_SERVER",
        ci_dir().join("cargo/bin/s3s-fs"),
        "s3s-fs",
    )
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

pub fn redis_command() -> Vec<String> {
    vec![redis_server().display().to_string(), "{config_file}".into()]
}

pub fn mongo_command() -> Vec<String> {
    let mut c = vec![mongo_server().display().to_string()];
    c.extend(s(&[
        "--host",
        "{bind}",
        "--port",
        "{port}",
        "--storage-path",
        "{data_dir}",
        "--log-level",
        "WARNING",
        "--auth",
    ]));
    c
}

pub fn s3_command() -> Vec<String> {
    let mut c = vec![s3_server().display().to_string()];
    c.extend(s(&[
        "--host",
        "{bind}",
        "--port",
        "{port}",
        "--access-key",
        "{user}",
        "--secret-key",
        "{password}",
        "{data_dir}",
    ]));
    c
}

/// Native mode for all three, pointed at the real servers on free ports,
/// with probe and restart timings suited to tests.
pub fn native_services() -> ServicesSettings {
    let mut all = ServicesSettings::native();
    for kind in ServiceKind::ALL {
        let svc = all.get_mut(kind);
        svc.port = Some(free_port());
        svc.probe_interval = Duration::from_millis(300);
        // Loaded CI machines run the whole suite at once: be patient
        // before calling a server unhealthy.
        svc.probe_timeout = Duration::from_secs(10);
        svc.start_timeout = Duration::from_secs(45);
        svc.stop_timeout = Duration::from_secs(10);
        svc.unhealthy_after = 5;
        svc.restart_base = Duration::from_millis(50);
        svc.restart_max = Duration::from_millis(500);
        svc.max_restarts = 5;
        svc.restart_window = Duration::from_secs(60);
        svc.env.clear();
    }
    all.redis.command = redis_command();
    all.mongo.command = mongo_command();
    all.minio.command = s3_command();
    all
}

/// Settings for a daemon or services subtree whose state lives in `state`.
pub fn settings(state: &Path, services: ServicesSettings) -> Settings {
    let mut s = Settings::new(
        CloudUrl::parse("http://127.0.0.1:9").unwrap(),
        ClusterId::parse("services-test").unwrap(),
        state.to_path_buf(),
    );
    s.services = services;
    s
}

/// The services subtree running on its own (no daemon, no server).
pub struct Services {
    pub registry: ServiceRegistry,
    pub bus: EventBus,
    root: Addr<Supervisor>,
    exit: oneshot::Receiver<ExitCode>,
}

impl Services {
    pub fn start(settings: Settings) -> Self {
        let settings = Arc::new(settings);
        let registry = ServiceRegistry::default();
        let bus = EventBus::default();
        let spec =
            services::supervisor_spec(&settings, &registry, &bus).expect("a service is enabled");
        let (root, exit) = spec.start_root(bus.observer());
        Services {
            registry,
            bus,
            root,
            exit,
        }
    }

    pub async fn stop(self) -> ExitCode {
        self.root.do_send(Shutdown {
            code: ExitCode::Stopped,
            reason: "test",
        });
        tokio::time::timeout(WITHIN, self.exit)
            .await
            .expect("services stop in time")
            .unwrap_or(ExitCode::Retryable)
    }

    /// The `service-state` events of `service`, oldest first.
    pub fn states(&self, service: &str) -> Vec<(String, Option<String>)> {
        states(&self.bus, service)
    }
}

pub fn states(bus: &EventBus, service: &str) -> Vec<(String, Option<String>)> {
    bus.recent(usize::MAX)
        .iter()
        .filter_map(|r| match &r.event {
            Event::ServiceState {
                service: s,
                state,
                reason,
            } if s.name() == service => Some((state.as_str().to_owned(), reason.clone())),
            _ => None,
        })
        .collect()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `within`.
pub async fn poll<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `service` is in `state` and returns its view.
pub async fn wait_state(
    registry: &ServiceRegistry,
    service: &str,
    state: ServiceState,
) -> ServiceView {
    poll(WITHIN, &format!("{service} {state:?}"), || {
        registry.view(service).filter(|v| v.state == state)
    })
    .await
}

/// Waits until every service of `registry` is healthy.
pub async fn wait_all_healthy(registry: &ServiceRegistry, names: &[&str]) {
    for name in names {
        wait_state(registry, name, ServiceState::Healthy).await;
    }
}

/// Whether `pid` runs (a zombie does not count).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// `kill -<signal> <pid>`.
pub fn kill(pid: i32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{signal} {pid}");
}
