//! The pure status state machine: it folds the typed events of the
//! supervisor log stream into facts (credentials, registration, services,
//! runtime actions, the server's last known status) and derives the status
//! the daemon is in and what to report. No I/O, no actors: every rule is
//! tested here, and the report paths are checked against every transition
//! of the server's table (`volt_protocol::ClusterStatus::allowed_next`).
//!
//! Which status the daemon is in — the first rule that holds:
//!
//! | rule | status |
//! |---|---|
//! | a runtime action is in progress / failed | `deleting`, `delete-failed`, `updating`, `update-failed` |
//! | the host cannot run voltd, or an expected service's server (no artifact for this platform) | `operating-system-not-supported` |
//! | no credentials yet | `waiting-for-connection` |
//! | an expected managed service failed | `dependency-installation-failed` (reason names it) |
//! | the expected services were never all healthy | `preparing-environment` |
//! | registered | `connected` |
//! | was registered before | `disconnected` |
//! | otherwise | `healthcheck-received` |

use crate::api::vocab::{ActionStage, ChildState, RuntimeAction, ServiceKind, ServiceState};
use crate::events::Event;
use otp::SupervisorEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use volt_protocol::ClusterStatus;

/// A runtime action in progress or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Uninstalling,
    UninstallFailed(String),
    Updating,
    UpdateFailed(String),
}

/// One managed service as the status machine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceFact {
    pub state: ServiceState,
    pub reason: Option<String>,
}

/// One supervised child as `voltd status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildView {
    pub state: ChildState,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// The pure state machine (see the module docs).
#[derive(Debug, Clone)]
pub struct StatusMachine {
    credentials: bool,
    registered: bool,
    ever_registered: bool,
    os_supported: Result<(), String>,
    /// Services whose server this host cannot get (`service-unsupported`),
    /// until they reach another state than `failed`.
    unsupported: BTreeMap<ServiceKind, String>,
    expected_services: Vec<ServiceKind>,
    services: BTreeMap<ServiceKind, ServiceFact>,
    environment_ready_once: bool,
    action: Option<Action>,
    server_status: Option<ClusterStatus>,
    children: BTreeMap<String, ChildView>,
    current: ClusterStatus,
}

impl StatusMachine {
    /// `expected_services`: the managed services that must be healthy before
    /// the environment counts as prepared. `os_supported`: `Err(reason)`
    /// when this host cannot run the daemon's duties.
    pub fn new(expected_services: Vec<ServiceKind>, os_supported: Result<(), String>) -> Self {
        let mut m = StatusMachine {
            credentials: false,
            registered: false,
            ever_registered: false,
            os_supported,
            unsupported: BTreeMap::new(),
            environment_ready_once: expected_services.is_empty(),
            expected_services,
            services: BTreeMap::new(),
            action: None,
            server_status: None,
            children: BTreeMap::new(),
            current: ClusterStatus::WaitingForConnection,
        };
        m.current = m.compute().0;
        m
    }

    /// The status the daemon is in, with a reason for failure statuses.
    pub fn status(&self) -> (ClusterStatus, Option<String>) {
        self.compute()
    }

    /// The server's last known status.
    pub fn server_status(&self) -> Option<ClusterStatus> {
        self.server_status
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    pub fn children(&self) -> &BTreeMap<String, ChildView> {
        &self.children
    }

    pub fn services(&self) -> &BTreeMap<ServiceKind, ServiceFact> {
        &self.services
    }

    fn compute(&self) -> (ClusterStatus, Option<String>) {
        use ClusterStatus::*;
        match &self.action {
            Some(Action::Uninstalling) => return (Deleting, None),
            Some(Action::UninstallFailed(r)) => return (DeleteFailed, Some(r.clone())),
            Some(Action::Updating) => return (Updating, None),
            Some(Action::UpdateFailed(r)) => return (UpdateFailed, Some(r.clone())),
            None => {}
        }
        if let Err(reason) = &self.os_supported {
            return (OperatingSystemNotSupported, Some(reason.clone()));
        }
        if let Some((name, reason)) = self.unsupported.iter().next() {
            return (
                OperatingSystemNotSupported,
                Some(format!("{name}: {reason}")),
            );
        }
        if !self.credentials {
            return (WaitingForConnection, None);
        }
        if let Some((name, fact)) = self
            .services
            .iter()
            .find(|(_, f)| f.state == ServiceState::Failed)
        {
            let reason = fact.reason.clone().unwrap_or_else(|| "failed".to_owned());
            return (
                DependencyInstallationFailed,
                Some(format!("{name}: {reason}")),
            );
        }
        if !self.environment_ready_once {
            return (PreparingEnvironment, None);
        }
        if self.registered {
            (Connected, None)
        } else if self.ever_registered {
            (Disconnected, None)
        } else {
            (HealthcheckReceived, None)
        }
    }

    fn all_services_healthy(&self) -> bool {
        self.expected_services
            .iter()
            .all(|s| self.services.get(s).is_some_and(|f| f.state.is_usable()))
    }

    /// Folds one event in. Returns the status change it caused, if any.
    pub fn observe(
        &mut self,
        event: &Event,
    ) -> Option<(ClusterStatus, ClusterStatus, Option<String>)> {
        match event {
            Event::CredentialsReady { .. } => self.credentials = true,
            Event::Registered { .. } => {
                self.registered = true;
                self.ever_registered = true;
                // Registration marks the server `connected` unless locked.
                self.server_status = Some(
                    self.server_status
                        .map_or(ClusterStatus::Connected, ClusterStatus::after_heartbeat),
                );
            }
            Event::SocketDisconnected { .. } => {
                self.registered = false;
                if self.server_status == Some(ClusterStatus::Connected) {
                    self.server_status = Some(ClusterStatus::Disconnected);
                }
            }
            Event::HeartbeatOk { server_status, .. } => {
                if server_status.is_some() {
                    self.server_status = *server_status;
                }
            }
            Event::LifecycleReported { server_status, .. } => {
                if server_status.is_some() {
                    self.server_status = *server_status;
                }
            }
            Event::ServiceState {
                service,
                state,
                reason,
            } => {
                if *state != ServiceState::Failed {
                    self.unsupported.remove(service);
                }
                self.services.insert(
                    *service,
                    ServiceFact {
                        state: *state,
                        reason: reason.clone(),
                    },
                );
                if self.all_services_healthy() {
                    self.environment_ready_once = true;
                }
            }
            Event::ServiceUnsupported { service, reason } => {
                self.unsupported.insert(*service, reason.clone());
            }
            Event::RuntimeAction {
                action,
                stage,
                detail,
            } => {
                let detail = detail.clone().unwrap_or_default();
                self.action = match (action, stage) {
                    (RuntimeAction::Uninstall, ActionStage::Started) => Some(Action::Uninstalling),
                    (RuntimeAction::Uninstall, ActionStage::Failed) => {
                        Some(Action::UninstallFailed(detail))
                    }
                    (RuntimeAction::Update, ActionStage::Started) => Some(Action::Updating),
                    (RuntimeAction::Update, ActionStage::Failed) => {
                        Some(Action::UpdateFailed(detail))
                    }
                    // Completed actions end the process; a restart is not
                    // a status.
                    _ => self.action.clone(),
                };
            }
            Event::Supervisor(SupervisorEvent::ChildStarted {
                child, restarts, ..
            }) => {
                let view = self.children.entry(child.clone()).or_insert(ChildView {
                    state: ChildState::Running,
                    restarts: 0,
                    last_exit: None,
                });
                view.state = ChildState::Running;
                view.restarts = *restarts;
            }
            Event::Supervisor(SupervisorEvent::ChildExited { child, reason, .. }) => {
                if let Some(view) = self.children.get_mut(child) {
                    view.state = if reason.is_abnormal() {
                        ChildState::Failed
                    } else {
                        ChildState::Stopped
                    };
                    view.last_exit = Some(reason.to_string());
                }
            }
            Event::Supervisor(SupervisorEvent::ChildRestarting { child, .. }) => {
                if let Some(view) = self.children.get_mut(child) {
                    view.state = ChildState::Restarting;
                }
            }
            _ => return None,
        }
        let (next, reason) = self.compute();
        if next != self.current {
            let from = self.current;
            self.current = next;
            Some((from, next, reason))
        } else {
            None
        }
    }

    /// The status to report to the server now, if any: a daemon-owned status
    /// the server does not show yet, reported only while registered.
    pub fn report_target(&self) -> Option<(ClusterStatus, Option<String>)> {
        if !self.registered {
            return None;
        }
        let (status, reason) = self.compute();
        // A heartbeat cannot take the server back from a failure status the
        // daemon reported (`dependency-installation-failed → connected` is
        // not a legal transition): once the daemon is fine again, step
        // through `preparing-environment`, which the next heartbeat turns
        // into `connected`.
        if status == ClusterStatus::Connected
            && let Some(server) = self.server_status
            && server != ClusterStatus::Connected
            && !server.is_heartbeat_locked()
            && !server.can_transition(ClusterStatus::Connected)
            && server.can_transition(ClusterStatus::PreparingEnvironment)
        {
            return Some((ClusterStatus::PreparingEnvironment, None));
        }
        let reportable = status.is_daemon_reportable() && status != ClusterStatus::Disconnected;
        if reportable && self.server_status != Some(status) {
            Some((status, reason))
        } else {
            None
        }
    }

    /// Records the server's status after a lifecycle report.
    pub fn set_server_status(&mut self, status: ClusterStatus) {
        self.server_status = Some(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::vocab::CredentialOrigin;
    use crate::api::vocab::heartbeats_allowed;
    use ClusterStatus::*;
    use ServiceKind::{Mongo, Redis};
    use otp::ExitReason;

    fn service(kind: ServiceKind, state: ServiceState) -> Event {
        Event::ServiceState {
            service: kind,
            state,
            reason: (state == ServiceState::Failed)
                .then(|| "redis-server: binary not found".to_owned()),
        }
    }

    fn registered() -> Event {
        Event::Registered {
            cluster_id: "c".into(),
            connection: 1,
            extensions: Default::default(),
        }
    }

    fn creds() -> Event {
        Event::CredentialsReady {
            cluster_id: "c".into(),
            source: CredentialOrigin::Stored,
        }
    }

    #[test]
    fn without_services_registration_means_connected_and_nothing_to_report() {
        let mut m = StatusMachine::new(vec![], Ok(()));
        assert_eq!(m.status().0, WaitingForConnection);
        assert_eq!(
            m.observe(&creds()),
            Some((WaitingForConnection, HealthcheckReceived, None))
        );
        assert_eq!(m.observe(&registered()).map(|c| c.1), Some(Connected));
        assert_eq!(m.server_status(), Some(Connected));
        assert_eq!(m.report_target(), None);
        assert!(heartbeats_allowed(m.status().0));
    }

    #[test]
    fn services_coming_up_mean_preparing_environment_reported_and_heartbeats_held() {
        let mut m = StatusMachine::new(vec![Redis, Mongo], Ok(()));
        m.observe(&creds());
        assert_eq!(m.status().0, PreparingEnvironment);
        assert!(!heartbeats_allowed(m.status().0));
        assert_eq!(m.report_target(), None, "not registered yet");
        m.observe(&registered());
        assert_eq!(m.report_target(), Some((PreparingEnvironment, None)));
        // The path from what registration left the server in is legal.
        assert_eq!(
            ClusterStatus::report_path(m.server_status().unwrap(), PreparingEnvironment),
            Some(vec![Disconnected, PreparingEnvironment])
        );
        m.set_server_status(PreparingEnvironment);
        assert_eq!(m.report_target(), None);
        m.observe(&service(Redis, ServiceState::Healthy));
        assert_eq!(m.status().0, PreparingEnvironment);
        let change = m.observe(&service(Mongo, ServiceState::Healthy));
        assert_eq!(change.map(|c| c.1), Some(Connected));
        assert!(heartbeats_allowed(m.status().0));
    }

    #[test]
    fn a_degraded_service_after_readiness_keeps_connected() {
        let mut m = StatusMachine::new(vec![Redis], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&service(Redis, ServiceState::Healthy));
        assert_eq!(m.status().0, Connected);
        m.observe(&service(Redis, ServiceState::Starting));
        assert_eq!(
            m.status().0,
            Connected,
            "a restart after readiness is not preparation"
        );
    }

    #[test]
    fn a_failed_service_means_dependency_installation_failed_with_reason() {
        let mut m = StatusMachine::new(vec![Redis], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        let (_, to, reason) = m.observe(&service(Redis, ServiceState::Failed)).unwrap();
        assert_eq!(to, DependencyInstallationFailed);
        assert_eq!(
            reason.as_deref(),
            Some("redis: redis-server: binary not found")
        );
        assert_eq!(
            m.report_target().map(|t| t.0),
            Some(DependencyInstallationFailed)
        );
        m.observe(&service(Redis, ServiceState::Starting));
        assert_eq!(m.status().0, PreparingEnvironment);
    }

    #[test]
    fn a_service_this_platform_cannot_get_means_operating_system_not_supported_until_it_runs() {
        let mut m = StatusMachine::new(vec![Mongo], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&Event::ServiceUnsupported {
            service: Mongo,
            reason: "resolve: no mongo server is installed and the catalogue has no artifact for linux/riscv64".into(),
        });
        let (status, reason) = m.status();
        assert_eq!(status, OperatingSystemNotSupported);
        assert!(
            reason
                .unwrap()
                .starts_with("mongo: resolve: no mongo server")
        );
        // Its `failed` state (the retry) does not turn it into a dependency
        // failure; the report path from connected goes through disconnected.
        m.observe(&service(Mongo, ServiceState::Failed));
        assert_eq!(m.status().0, OperatingSystemNotSupported);
        assert_eq!(
            m.report_target().map(|t| t.0),
            Some(OperatingSystemNotSupported)
        );
        // Someone installed mongod: the service starts, the rule is gone.
        m.observe(&service(Mongo, ServiceState::Starting));
        assert_eq!(m.status().0, PreparingEnvironment);
        m.observe(&service(Mongo, ServiceState::Healthy));
        assert_eq!(m.status().0, Connected);
    }

    #[test]
    fn a_healed_service_walks_the_server_back_through_preparing_environment() {
        let mut m = StatusMachine::new(vec![Redis], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&service(Redis, ServiceState::Healthy));
        m.observe(&service(Redis, ServiceState::Failed));
        assert!(!heartbeats_allowed(m.status().0), "held while failed");
        m.set_server_status(DependencyInstallationFailed);
        assert_eq!(m.report_target(), None);
        m.observe(&service(Redis, ServiceState::Healthy));
        assert_eq!(m.status().0, Connected);
        // The server cannot go from dependency-installation-failed to
        // connected on a heartbeat: report preparing-environment first.
        assert_eq!(m.report_target(), Some((PreparingEnvironment, None)));
        m.set_server_status(PreparingEnvironment);
        assert_eq!(m.report_target(), None, "the next heartbeat does the rest");
        assert!(heartbeats_allowed(m.status().0));
    }

    #[test]
    fn disconnect_and_reconnect() {
        let mut m = StatusMachine::new(vec![], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        let change = m.observe(&Event::SocketDisconnected {
            reason: "x".into(),
            connection: 1,
            reconnect_in_ms: 500,
        });
        assert_eq!(change.map(|c| c.1), Some(Disconnected));
        assert_eq!(m.report_target(), None, "never reports disconnected itself");
        assert_eq!(m.observe(&registered()).map(|c| c.1), Some(Connected));
    }

    #[test]
    fn runtime_actions_override() {
        let mut m = StatusMachine::new(vec![], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&Event::RuntimeAction {
            action: RuntimeAction::Uninstall,
            stage: ActionStage::Started,
            detail: None,
        });
        assert_eq!(m.status().0, Deleting);
        m.observe(&Event::RuntimeAction {
            action: RuntimeAction::Uninstall,
            stage: ActionStage::Failed,
            detail: Some("rm failed".into()),
        });
        assert_eq!(m.status(), (DeleteFailed, Some("rm failed".into())));
        assert_eq!(m.report_target().map(|t| t.0), Some(DeleteFailed));
    }

    #[test]
    fn unsupported_os_is_reported_with_its_reason() {
        let mut m = StatusMachine::new(vec![], Err("no /proc".into()));
        m.observe(&creds());
        m.observe(&registered());
        assert_eq!(
            m.status(),
            (OperatingSystemNotSupported, Some("no /proc".into()))
        );
        assert_eq!(
            m.report_target().map(|t| t.0),
            Some(OperatingSystemNotSupported)
        );
    }

    #[test]
    fn heartbeat_answers_update_the_server_status() {
        let mut m = StatusMachine::new(vec![], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&Event::HeartbeatOk {
            latency_ms: 1.0,
            server_status: Some(Updating),
        });
        assert_eq!(m.server_status(), Some(Updating));
    }

    #[test]
    fn children_are_tracked_for_the_snapshot() {
        let mut m = StatusMachine::new(vec![], Ok(()));
        m.observe(&Event::Supervisor(SupervisorEvent::ChildStarted {
            supervisor: "root".into(),
            child: "heartbeat".into(),
            restarts: 0,
        }));
        m.observe(&Event::Supervisor(SupervisorEvent::ChildExited {
            supervisor: "root".into(),
            child: "heartbeat".into(),
            reason: ExitReason::failed("x"),
        }));
        assert_eq!(m.children()["heartbeat"].state, ChildState::Failed);
        m.observe(&Event::Supervisor(SupervisorEvent::ChildStarted {
            supervisor: "root".into(),
            child: "heartbeat".into(),
            restarts: 1,
        }));
        assert_eq!(m.children()["heartbeat"].state, ChildState::Running);
        assert_eq!(m.children()["heartbeat"].restarts, 1);
    }

    #[test]
    fn this_machine_is_supported() {
        assert_eq!(crate::status::os_support(), Ok(()));
    }

    /// Every transition of the server's table, checked against what the
    /// daemon does with it: a reportable target one legal step away is
    /// reported directly; every longer path only takes legal, reportable
    /// steps; an unreachable target is never attempted.
    #[test]
    fn report_paths_follow_every_transition_of_the_server_table() {
        let mut direct = 0;
        for from in ClusterStatus::ALL {
            for to in ClusterStatus::ALL {
                let path = ClusterStatus::report_path(from, to);
                if from == to {
                    assert_eq!(path, Some(vec![]), "{from} → {to}");
                    continue;
                }
                if !to.is_daemon_reportable() {
                    assert_eq!(path, None, "{to} is never reported ({from} → {to})");
                    continue;
                }
                if from.allowed_next().contains(&to) {
                    assert_eq!(path, Some(vec![to]), "{from} → {to} is one legal step");
                    direct += 1;
                    continue;
                }
                if let Some(path) = path {
                    assert!(path.len() >= 2, "{from} → {to}: {path:?}");
                    assert_eq!(path.last(), Some(&to));
                    let mut at = from;
                    for step in path {
                        assert!(at.can_transition(step), "{from} → {to}: {at} → {step}");
                        assert!(step.is_daemon_reportable(), "{from} → {to}: {step}");
                        at = step;
                    }
                }
            }
        }
        // Every listed transition into a reportable status was exercised.
        let listed = ClusterStatus::ALL
            .iter()
            .flat_map(|f| f.allowed_next().iter().filter(|t| t.is_daemon_reportable()))
            .count();
        assert_eq!(direct, listed);
    }

    /// Whatever the server shows, what the machine decides to report is
    /// reachable from there, and never a status only the server sets.
    #[test]
    fn the_machine_only_reports_what_the_table_lets_it_reach() {
        let scenarios: Vec<Vec<Event>> = vec![
            vec![creds(), registered()],
            vec![creds(), registered(), service(Redis, ServiceState::Failed)],
            vec![
                creds(),
                registered(),
                service(Redis, ServiceState::Healthy),
                service(Redis, ServiceState::Failed),
                service(Redis, ServiceState::Healthy),
            ],
            vec![
                creds(),
                registered(),
                Event::RuntimeAction {
                    action: RuntimeAction::Uninstall,
                    stage: ActionStage::Failed,
                    detail: Some("x".into()),
                },
            ],
        ];
        for server in ClusterStatus::ALL {
            for events in &scenarios {
                let mut m = StatusMachine::new(vec![Redis], Ok(()));
                for e in events {
                    m.observe(e);
                }
                m.set_server_status(server);
                if let Some((target, _)) = m.report_target() {
                    assert!(target.is_daemon_reportable(), "{server}: {target}");
                    assert_ne!(target, Connected);
                    assert_ne!(target, WaitingForConnection);
                    if let Some(path) = ClusterStatus::report_path(server, target) {
                        let mut at = server;
                        for step in path {
                            assert!(
                                at.can_transition(step),
                                "{server} → {target}: {at} → {step}"
                            );
                            at = step;
                        }
                    }
                }
            }
        }
    }
}
