//! The status actor: feeds the [`StatusMachine`] from the supervisor log
//! stream, announces changes (`status-changed`, which also gates
//! heartbeats), reports the statuses the daemon owns through
//! `runtime.lifecycle` along legal paths of the server's table, and serves
//! snapshots to `voltd status` and `runtime.status`.

use super::machine::{ChildView, StatusMachine};
use crate::api::{ConfigSource, CredentialsCell, Handle, Outbox, SendCommand, ServiceKind};
use crate::config::Settings;
use crate::events::{Delivery, Event, EventBus, Record};
use crate::host::clock::now_iso;
use actix::prelude::*;
use otp::supervisor::StopChild;
use otp::{ExitReason, ExitSlot, SupervisorEvent};
use serde::Serialize;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use volt_protocol::ClusterStatus;
use volt_protocol::heartbeat::{LIFECYCLE_COMMAND, LifecyclePayload};
use volt_protocol::register::Extensions;

/// The extensions the server announced at the registration the daemon is
/// on (none for the VOLT server). The status actor sets it from the
/// `registered` event; lifecycle reports read it, so a reference server
/// only ever gets reference shapes. Cheap to clone (one thread).
#[derive(Debug, Clone, Default)]
pub struct Announced(Rc<Cell<Extensions>>);

impl Announced {
    pub fn get(&self) -> Extensions {
        self.0.get()
    }

    fn set(&self, e: Extensions) {
        self.0.set(e);
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
    /// The job workers, once the job queues are open.
    pub jobs: Option<JobsView>,
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

/// The job workers as `voltd status` and `runtime.status` show them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobsView {
    /// Where the concurrency came from (`None` until registration).
    pub source: Option<ConfigSource>,
    pub role: Option<String>,
    /// Worker availability per queue (`worker` is `"no worker"` for a
    /// queue without an executor here).
    pub queues: Vec<crate::jobs::Availability>,
}

/// Ask for a [`StatusSnapshot`].
#[derive(Message)]
#[rtype(result = "StatusSnapshot")]
pub struct GetSnapshot;

/// The status actor (see the module docs).
pub struct StatusActor {
    machine: StatusMachine,
    settings: Arc<Settings>,
    outbox: Outbox,
    credentials: CredentialsCell,
    handle: Handle<GetSnapshot>,
    bus: EventBus,
    exit: ExitSlot,
    announced: Announced,
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
    /// From `jobs-configured` and `worker-availability`.
    jobs: Option<JobsView>,
    started_at: String,
    started: tokio::time::Instant,
    service_details: Box<dyn Fn() -> BTreeMap<String, serde_json::Value>>,
}

/// What the status actor is connected to.
pub struct StatusWiring {
    /// Lifecycle reports go out here.
    pub outbox: Outbox,
    pub credentials: CredentialsCell,
    /// Bound to the actor on start (snapshots for `voltd status`).
    pub snapshots: Handle<GetSnapshot>,
    pub bus: EventBus,
    /// Set from each registration's announcement.
    pub announced: Announced,
}

impl StatusActor {
    /// `expected_services` must be healthy before the environment counts as
    /// prepared; `service_details` renders them for snapshots.
    pub fn new(
        settings: Arc<Settings>,
        expected_services: Vec<ServiceKind>,
        service_details: Box<dyn Fn() -> BTreeMap<String, serde_json::Value>>,
        wiring: StatusWiring,
        exit: ExitSlot,
    ) -> Self {
        StatusActor {
            machine: StatusMachine::new(expected_services, os_support()),
            settings,
            outbox: wiring.outbox,
            credentials: wiring.credentials,
            handle: wiring.snapshots,
            bus: wiring.bus,
            exit,
            announced: wiring.announced,
            reporting: false,
            failed_target: None,
            last_seq: 0,
            registered_since: None,
            last_heartbeat: None,
            heartbeats_ok: 0,
            heartbeats_failed: 0,
            last_heartbeat_error: None,
            terminal_sessions: BTreeSet::new(),
            jobs: None,
            started_at: now_iso(),
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
            Event::Registered { extensions, .. } => {
                self.registered_since = Some(record.at.clone());
                self.announced.set(*extensions);
            }
            Event::SocketDisconnected { .. } => {
                self.registered_since = None;
                self.announced.set(Extensions::none());
            }
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
            Event::JobsConfigured { source, role, .. } => {
                let view = self.jobs.get_or_insert_with(JobsView::default);
                view.source = Some(*source);
                view.role = role.clone();
            }
            Event::WorkerAvailability { queues } => {
                self.jobs.get_or_insert_with(JobsView::default).queues = queues.clone();
            }
            // A sessions actor that died without reporting took its
            // sessions along.
            Event::Supervisor(SupervisorEvent::ChildExited { child, .. })
                if child == "sessions" =>
            {
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
        let Some(creds) = self.credentials.get() else {
            return;
        };
        let outbox = self.outbox.clone();
        self.reporting = true;
        let installed_version = self.settings.installed_version.to_string();
        let bus = self.bus.clone();
        let extensions = self.announced.get();
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
                    let payload = payload.to_wire(&extensions);
                    let result = outbox
                        .command(SendCommand::new(LIFECYCLE_COMMAND, payload))
                        .await
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
                Ok::<_, String>(last)
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
            cluster_id: self.settings.team_cluster_id.to_string(),
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
            jobs: self.jobs.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            installed_version: self.settings.installed_version.to_string(),
            pid: std::process::id(),
            started_at: self.started_at.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }
}

impl Actor for StatusActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handle.bind(ctx.address());
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
