//! The managed services for tests: voltd's native mode pointed at the real
//! stand-ins on free ports with probe and restart timings suited to tests,
//! and the services subtree run on its own (no daemon, no server).

use crate::standins::{WITHIN, mongo_command, redis_command, s3_command};
use crate::{eventually, free_port};
use actix::Addr;
use otp::ExitCode;
use otp::supervisor::{Shutdown, Supervisor};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::events::{Event, EventBus};
use voltd_actors::services::{
    self, ServiceKind, ServiceRegistry, ServiceState, ServiceView, ServicesSettings,
};

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

/// Settings for a services subtree (or a daemon that talks to no server)
/// whose state lives in `state`.
pub fn settings_with(state: &Path, services: ServicesSettings) -> Settings {
    let mut s = Settings::new(
        CloudUrl::parse("http://127.0.0.1:9").expect("a URL"),
        ClusterId::parse("services-test").expect("a valid cluster id"),
        state.to_path_buf(),
    );
    s.services = services;
    s
}

/// The services subtree running on its own (needs an actix system:
/// `#[actix_rt::test]`).
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

    /// Stops the subtree; its exit code.
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

/// The `service-state` events of `service` on `bus`, oldest first.
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

/// Waits until `service` is in `state` and returns its view.
pub async fn wait_state(
    registry: &ServiceRegistry,
    service: &str,
    state: ServiceState,
) -> ServiceView {
    eventually(WITHIN, format!("{service} {state:?}"), async || {
        registry.view(service).filter(|v| v.state == state)
    })
    .await
}

/// Waits until every service in `names` is healthy.
pub async fn wait_all_healthy(registry: &ServiceRegistry, names: &[&str]) {
    for name in names {
        wait_state(registry, name, ServiceState::Healthy).await;
    }
}
