//! The cluster status state machine.
//!
//! [`StatusMachine`] is pure: it folds the events of the supervisor log
//! stream into facts (credentials, registration, services, runtime actions,
//! the server's last known status) and derives the status the daemon is in.
//! [`StatusActor`] feeds it, announces changes (`status-changed`, which also
//! gates heartbeats), reports the statuses the daemon owns through
//! `runtime.lifecycle`, and serves snapshots to `voltd status`.
//!
//! The server's transition table decides how to report: from `connected`
//! (what registration makes the server show) `preparing-environment` is not
//! reachable directly, so the daemon walks the shortest legal path through
//! statuses it may report (`connected → disconnected → preparing-environment`).
//! `connected` and `waiting-for-connection` are never reported; heartbeats
//! make the server show `connected`, so heartbeats are held while the
//! environment is being prepared.

pub mod lifecycle;

use crate::cloud::dispatch::SendCommand;
use crate::events::{Delivery, Event, EventBus, Record, now_rfc3339};
use crate::exit::{ExitReason, ExitSlot};
use crate::peers::Peers;
use crate::settings::Settings;
use crate::supervisor::StopChild;
use actix::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use volt_protocol::ClusterStatus;
use volt_protocol::heartbeat::{LIFECYCLE_COMMAND, LifecyclePayload};

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
    pub state: String,
    pub reason: Option<String>,
}

/// One supervised child as `voltd status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildView {
    /// running, restarting, stopped, failed.
    pub state: String,
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
    expected_services: Vec<String>,
    services: BTreeMap<String, ServiceFact>,
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
    pub fn new(expected_services: Vec<String>, os_supported: Result<(), String>) -> Self {
        let mut m = StatusMachine {
            credentials: false,
            registered: false,
            ever_registered: false,
            os_supported,
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

    pub fn services(&self) -> &BTreeMap<String, ServiceFact> {
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
        if !self.credentials {
            return (WaitingForConnection, None);
        }
        if let Some((name, fact)) = self.services.iter().find(|(_, f)| f.state == "failed") {
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
        self.expected_services.iter().all(|s| {
            self.services
                .get(s)
                .is_some_and(|f| f.state == "healthy" || f.state == "degraded")
        })
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
                self.services.insert(
                    service.clone(),
                    ServiceFact {
                        state: state.clone(),
                        reason: reason.clone(),
                    },
                );
                if self.all_services_healthy() {
                    self.environment_ready_once = true;
                }
            }
            Event::RuntimeAction {
                action,
                stage,
                detail,
            } => {
                let detail = detail.clone().unwrap_or_default();
                self.action = match (action.as_str(), stage.as_str()) {
                    ("uninstall", "started") => Some(Action::Uninstalling),
                    ("uninstall", "failed") => Some(Action::UninstallFailed(detail)),
                    ("update", "started") => Some(Action::Updating),
                    ("update", "failed") => Some(Action::UpdateFailed(detail)),
                    _ => self.action.clone(),
                };
            }
            Event::ChildStarted {
                child, restarts, ..
            } => {
                let view = self.children.entry(child.clone()).or_insert(ChildView {
                    state: "running".into(),
                    restarts: 0,
                    last_exit: None,
                });
                view.state = "running".into();
                view.restarts = *restarts;
            }
            Event::ChildExited { child, reason, .. } => {
                if let Some(view) = self.children.get_mut(child) {
                    view.state = if reason.is_abnormal() {
                        "failed"
                    } else {
                        "stopped"
                    }
                    .into();
                    view.last_exit = Some(reason.to_string());
                }
            }
            Event::ChildRestarting { child, .. } => {
                if let Some(view) = self.children.get_mut(child) {
                    view.state = "restarting".into();
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

    /// Whether heartbeats may flow: not while the environment is prepared
    /// (a heartbeat would make the server show `connected`), nor while a
    /// managed service has failed or the host is unsupported (reporting
    /// those walks the server through `disconnected`, which a heartbeat in
    /// between would turn back into `connected`).
    pub fn heartbeats_allowed(status: ClusterStatus) -> bool {
        !matches!(
            status,
            ClusterStatus::PreparingEnvironment
                | ClusterStatus::DependencyInstallationFailed
                | ClusterStatus::OperatingSystemNotSupported
        )
    }

    /// Records the server's status after a lifecycle report.
    pub fn set_server_status(&mut self, status: ClusterStatus) {
        self.server_status = Some(status);
    }
}

/// Whether this host can run voltd's duties (metrics need `/proc`).
pub fn os_support() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err(format!(
            "{} is not supported; voltd runs on Linux",
            std::env::consts::OS
        ));
    }
    if std::fs::metadata("/proc/stat").is_err() {
        return Err("/proc is not mounted; host metrics are unavailable".into());
    }
    Ok(())
}

/// Everything `voltd status` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusSnapshot {
    pub status: ClusterStatus,
    pub reason: Option<String>,
    pub server_status: Option<ClusterStatus>,
    pub cluster_id: String,
    pub cloud_url: String,
    pub registered: bool,
    pub registered_since: Option<String>,
    pub last_heartbeat: Option<HeartbeatView>,
    pub heartbeats_ok: u64,
    pub heartbeats_failed: u64,
    pub last_heartbeat_error: Option<String>,
    /// Open host terminal sessions.
    pub terminal_sessions: usize,
    pub children: BTreeMap<String, ChildView>,
    pub services: BTreeMap<String, serde_json::Value>,
    pub version: String,
    pub installed_version: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_seconds: u64,
}

/// The last answered heartbeat.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatView {
    pub at: String,
    pub latency_ms: f64,
    pub server_status: Option<ClusterStatus>,
}

/// Ask for a [`StatusSnapshot`].
#[derive(Message)]
#[rtype(result = "StatusSnapshot")]
pub struct GetSnapshot;

/// The status actor (see the module docs).
pub struct StatusActor {
    machine: StatusMachine,
    settings: Arc<Settings>,
    peers: Peers,
    bus: EventBus,
    exit: ExitSlot,
    reporting: bool,
    /// A target whose report failed; not retried until something changes.
    failed_target: Option<ClusterStatus>,
    last_seq: u64,
    registered_since: Option<String>,
    last_heartbeat: Option<HeartbeatView>,
    heartbeats_ok: u64,
    heartbeats_failed: u64,
    last_heartbeat_error: Option<String>,
    /// Open host terminal sessions (from `session-opened`/`-closed`).
    terminal_sessions: BTreeSet<String>,
    started_at: String,
    started: tokio::time::Instant,
    service_details: Box<dyn Fn() -> BTreeMap<String, serde_json::Value>>,
}

impl StatusActor {
    pub fn new(
        settings: Arc<Settings>,
        expected_services: Vec<String>,
        service_details: Box<dyn Fn() -> BTreeMap<String, serde_json::Value>>,
        peers: Peers,
        bus: EventBus,
        exit: ExitSlot,
    ) -> Self {
        StatusActor {
            machine: StatusMachine::new(expected_services, os_support()),
            settings,
            peers,
            bus,
            exit,
            reporting: false,
            failed_target: None,
            last_seq: 0,
            registered_since: None,
            last_heartbeat: None,
            heartbeats_ok: 0,
            heartbeats_failed: 0,
            last_heartbeat_error: None,
            terminal_sessions: BTreeSet::new(),
            started_at: now_rfc3339(),
            started: tokio::time::Instant::now(),
            service_details,
        }
    }

    fn observe(&mut self, record: &Record, ctx: &mut Context<Self>) {
        if record.seq <= self.last_seq {
            return;
        }
        self.last_seq = record.seq;
        match &record.event {
            Event::Registered { .. } => self.registered_since = Some(record.at.clone()),
            Event::SocketDisconnected { .. } => self.registered_since = None,
            Event::HeartbeatOk {
                latency_ms,
                server_status,
            } => {
                self.heartbeats_ok += 1;
                self.last_heartbeat = Some(HeartbeatView {
                    at: record.at.clone(),
                    latency_ms: *latency_ms,
                    server_status: *server_status,
                });
            }
            Event::HeartbeatFailed { code, message } => {
                self.heartbeats_failed += 1;
                self.last_heartbeat_error = Some(format!("{code}: {message}"));
            }
            Event::SessionOpened { session_id, .. } => {
                self.terminal_sessions.insert(session_id.clone());
            }
            Event::SessionClosed { session_id, .. } => {
                self.terminal_sessions.remove(session_id);
            }
            // A sessions actor that died without reporting took its
            // sessions along.
            Event::ChildExited { child, .. } if child == "sessions" => {
                self.terminal_sessions.clear();
            }
            _ => {}
        }
        if let Some((from, to, reason)) = self.machine.observe(&record.event) {
            self.failed_target = None;
            self.bus.emit(Event::StatusChanged { from, to, reason });
        }
        self.maybe_report(ctx);
    }

    fn maybe_report(&mut self, ctx: &mut Context<Self>) {
        if self.reporting {
            return;
        }
        let Some((target, reason)) = self.machine.report_target() else {
            return;
        };
        if self.failed_target == Some(target) {
            return;
        }
        let from = self
            .machine
            .server_status()
            .unwrap_or(ClusterStatus::Connected);
        let Some(path) = ClusterStatus::report_path(from, target) else {
            tracing::debug!(%from, %target, "No legal path to report this status; the server keeps its own.");
            self.failed_target = Some(target);
            return;
        };
        let (Some(dispatcher), Some(creds)) = (self.peers.dispatcher(), self.peers.credentials())
        else {
            return;
        };
        self.reporting = true;
        let installed_version = self.settings.installed_version.clone();
        let bus = self.bus.clone();
        ctx.spawn(
            async move {
                let mut last = None;
                for step in path {
                    let payload = LifecyclePayload {
                        team_cluster_id: creds.team_cluster_id.clone(),
                        daemon_password: creds.daemon_password.clone(),
                        status: step,
                        installed_version: Some(installed_version.clone()),
                        reason: if step == target { reason.clone() } else { None },
                    };
                    let payload = match serde_json::to_value(&payload) {
                        Ok(p) => p,
                        Err(e) => return Err(e.to_string()),
                    };
                    let result = dispatcher
                        .send(SendCommand::new(LIFECYCLE_COMMAND, payload))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    let server_status = result
                        .pointer("/teamCluster/status")
                        .and_then(|s| s.as_str())
                        .and_then(|s| s.parse().ok())
                        .or(Some(step));
                    bus.emit(Event::LifecycleReported {
                        status: step,
                        server_status,
                        reason: if step == target { reason.clone() } else { None },
                    });
                    last = server_status;
                }
                Ok(last)
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.reporting = false;
                match result {
                    Ok(Some(s)) if s == target => {}
                    Ok(_) => act.failed_target = Some(target),
                    Err(e) => {
                        tracing::warn!(%target, error = %e, "Could not report the cluster status.");
                        act.failed_target = Some(target);
                    }
                }
                act.maybe_report(ctx);
            }),
        );
    }

    fn snapshot(&self) -> StatusSnapshot {
        let (status, reason) = self.machine.status();
        StatusSnapshot {
            status,
            reason,
            server_status: self.machine.server_status(),
            cluster_id: self.settings.team_cluster_id.clone(),
            cloud_url: self.settings.cloud_url.to_string(),
            registered: self.machine.registered(),
            registered_since: self.registered_since.clone(),
            last_heartbeat: self.last_heartbeat.clone(),
            heartbeats_ok: self.heartbeats_ok,
            heartbeats_failed: self.heartbeats_failed,
            last_heartbeat_error: self.last_heartbeat_error.clone(),
            terminal_sessions: self.terminal_sessions.len(),
            children: self.machine.children().clone(),
            services: (self.service_details)(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            installed_version: self.settings.installed_version.clone(),
            pid: std::process::id(),
            started_at: self.started_at.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }
}

impl Actor for StatusActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Subscribe first, then catch up from the ring buffer: nothing falls
        // between the two (records already seen are skipped by seq).
        ctx.add_stream(self.bus.subscribe_control());
        for record in self.bus.recent(usize::MAX) {
            self.observe(&record, ctx);
        }
    }
}

impl StreamHandler<Delivery> for StatusActor {
    fn handle(&mut self, item: Delivery, ctx: &mut Self::Context) {
        match item {
            Delivery::Record(record) => self.observe(&record, ctx),
            Delivery::Lagged(n) => {
                tracing::warn!(
                    missed = n,
                    "Status machine fell behind the event stream; catching up."
                );
                for record in self.bus.recent(usize::MAX) {
                    self.observe(&record, ctx);
                }
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<GetSnapshot> for StatusActor {
    type Result = MessageResult<GetSnapshot>;
    fn handle(&mut self, _: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

impl Handler<StopChild> for StatusActor {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterStatus::*;

    fn service(name: &str, state: &str) -> Event {
        Event::ServiceState {
            service: name.into(),
            state: state.into(),
            reason: (state == "failed").then(|| "redis-server: binary not found".to_owned()),
        }
    }

    fn registered() -> Event {
        Event::Registered {
            cluster_id: "c".into(),
            connection: 1,
        }
    }

    fn creds() -> Event {
        Event::CredentialsReady {
            cluster_id: "c".into(),
            source: "stored".into(),
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
        assert!(StatusMachine::heartbeats_allowed(m.status().0));
    }

    #[test]
    fn services_coming_up_mean_preparing_environment_reported_and_heartbeats_held() {
        let mut m = StatusMachine::new(vec!["redis".into(), "mongo".into()], Ok(()));
        m.observe(&creds());
        assert_eq!(m.status().0, PreparingEnvironment);
        assert!(!StatusMachine::heartbeats_allowed(m.status().0));
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
        m.observe(&service("redis", "healthy"));
        assert_eq!(m.status().0, PreparingEnvironment);
        let change = m.observe(&service("mongo", "healthy"));
        assert_eq!(change.map(|c| c.1), Some(Connected));
        assert!(StatusMachine::heartbeats_allowed(m.status().0));
    }

    #[test]
    fn a_degraded_service_after_readiness_keeps_connected() {
        let mut m = StatusMachine::new(vec!["redis".into()], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&service("redis", "healthy"));
        assert_eq!(m.status().0, Connected);
        m.observe(&service("redis", "starting"));
        assert_eq!(
            m.status().0,
            Connected,
            "a restart after readiness is not preparation"
        );
    }

    #[test]
    fn a_failed_service_means_dependency_installation_failed_with_reason() {
        let mut m = StatusMachine::new(vec!["redis".into()], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        let (_, to, reason) = m.observe(&service("redis", "failed")).unwrap();
        assert_eq!(to, DependencyInstallationFailed);
        assert_eq!(
            reason.as_deref(),
            Some("redis: redis-server: binary not found")
        );
        assert_eq!(
            m.report_target().map(|t| t.0),
            Some(DependencyInstallationFailed)
        );
        m.observe(&service("redis", "starting"));
        assert_eq!(m.status().0, PreparingEnvironment);
    }

    #[test]
    fn a_healed_service_walks_the_server_back_through_preparing_environment() {
        let mut m = StatusMachine::new(vec!["redis".into()], Ok(()));
        m.observe(&creds());
        m.observe(&registered());
        m.observe(&service("redis", "healthy"));
        m.observe(&service("redis", "failed"));
        assert!(
            !StatusMachine::heartbeats_allowed(m.status().0),
            "held while failed"
        );
        m.set_server_status(DependencyInstallationFailed);
        assert_eq!(m.report_target(), None);
        m.observe(&service("redis", "healthy"));
        assert_eq!(m.status().0, Connected);
        // The server cannot go from dependency-installation-failed to
        // connected on a heartbeat: report preparing-environment first.
        assert_eq!(m.report_target(), Some((PreparingEnvironment, None)));
        m.set_server_status(PreparingEnvironment);
        assert_eq!(m.report_target(), None, "the next heartbeat does the rest");
        assert!(StatusMachine::heartbeats_allowed(m.status().0));
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
            action: "uninstall".into(),
            stage: "started".into(),
            detail: None,
        });
        assert_eq!(m.status().0, Deleting);
        m.observe(&Event::RuntimeAction {
            action: "uninstall".into(),
            stage: "failed".into(),
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
        m.observe(&Event::ChildStarted {
            supervisor: "root".into(),
            child: "heartbeat".into(),
            restarts: 0,
        });
        m.observe(&Event::ChildExited {
            supervisor: "root".into(),
            child: "heartbeat".into(),
            reason: ExitReason::failed("x"),
        });
        assert_eq!(m.children()["heartbeat"].state, "failed");
        m.observe(&Event::ChildStarted {
            supervisor: "root".into(),
            child: "heartbeat".into(),
            restarts: 1,
        });
        assert_eq!(m.children()["heartbeat"].state, "running");
        assert_eq!(m.children()["heartbeat"].restarts, 1);
    }

    #[test]
    fn this_machine_is_supported() {
        assert_eq!(os_support(), Ok(()));
    }
}
