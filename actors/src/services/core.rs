//! The one service-supervision core every service actor runs.
//!
//! A [`Driver`] says what is specific to a service (files its command line
//! needs, how to build a client, probe, bootstrap, provision users); the
//! [`Core`] does the rest, identically for all three:
//!
//! * **native**: resolve port and credentials → make sure the server
//!   binary exists (`provision/`: on `PATH`, configured, installed under
//!   `deps/`, or fetched from the catalogue now — while a stop or hold
//!   still interrupts it; a failure is `failed` naming the step, retried on
//!   the provisioning backoff, capped at `failed_retry`, and a platform the
//!   catalogue cannot serve is `service-unsupported`) → replace a server a
//!   crashed voltd left behind (pid file) → wait for the port → provision
//!   users if the driver needs it → spawn → probe every 200 ms until the
//!   first success or the start timeout → bootstrap → probe every
//!   `probe_interval`. A crash, a start timeout or `unhealthy_after` failed
//!   probes in a row restart the server after an exponential, jittered
//!   delay; more than `intensity` restarts within its window → `failed`,
//!   tried again every `failed_retry`.
//! * **external**: resolve → probe (bootstrap once healthy) every
//!   `probe_interval`; `unhealthy_after` failures in a row → `failed` until
//!   a probe succeeds again. voltd never starts or stops the server.
//!
//! The install manifest is watched: when it changes the port or the
//! credentials, the server is restarted with the new ones.

use super::process::{self, ManagedChild, SpawnSpec};
use super::resolve::{self, Resolved, substitute};
use super::{Control, ServiceClient, ServiceKind, ServiceRegistry, ServiceState};
use crate::config::Settings;
use crate::config::{ServiceMode, ServiceSettings};
use crate::events::{Event, EventBus};
use crate::host::download::DownloadEvent;
use crate::host::fsutil::{PRIVATE_DIR_MODE, SECRET_FILE_MODE, ensure_dir, write_atomic};
use crate::provision::{
    ProvisionEvent, ProvisionSource, ServiceRequest, Step, default_retry_backoff,
};
use actix::prelude::*;
use otp::supervisor::{ChildSpec, Restart, StopChild, spawn_actor};
use otp::{Decision, ExponentialBackoff, RestartPolicy};
use otp::{ExitReason, ExitSlot};
use serde_json::Value;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use volt_protocol::ClusterStatus;

/// Probe period while a started server is not answering yet: servers come
/// up in 0.1–3 s, so 200 ms finds them promptly at negligible cost.
pub const START_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The reason of the `starting` state after an operator's restart.
const RESTART_REQUESTED: &str = "restart requested";
/// Added to a service's stop timeout for its actor's shutdown timeout: the
/// actor may be replacing a leftover server when the stop arrives.
const ACTOR_STOP_MARGIN: Duration = Duration::from_secs(5);

/// How a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeErrorKind {
    /// The server refused the credentials.
    Auth,
    /// No answer in time.
    Timeout,
    /// Nothing listening, connection reset, …
    Unreachable,
    /// Anything else (an error reply, a failed bootstrap step).
    Other,
}

/// A failed probe, bootstrap or provisioning step (never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub kind: ProbeErrorKind,
    pub message: String,
}

impl ProbeError {
    pub fn new(kind: ProbeErrorKind, message: impl Into<String>) -> Self {
        ProbeError {
            kind,
            message: message.into(),
        }
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ProbeErrorKind::Auth, message)
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ProbeErrorKind::Unreachable, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ProbeErrorKind::Other, message)
    }

    pub fn timeout(after: Duration) -> Self {
        Self::new(
            ProbeErrorKind::Timeout,
            format!("no answer within {} ms", after.as_millis()),
        )
    }

    /// The same error with what was being done in front.
    pub fn context(self, what: impl fmt::Display) -> Self {
        ProbeError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProbeErrorKind::Auth => write!(f, "auth rejected: {}", self.message),
            ProbeErrorKind::Timeout => write!(f, "probe timeout: {}", self.message),
            ProbeErrorKind::Unreachable => write!(f, "unreachable: {}", self.message),
            ProbeErrorKind::Other => f.write_str(&self.message),
        }
    }
}

/// A successful probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Round trip of the liveness command alone.
    pub latency: Duration,
    /// The service's performance figures, when it reports them.
    pub stats: Option<Value>,
}

/// A "start without authentication, create the users, restart with it"
/// phase, done again whenever `fingerprint` differs from what `marker`
/// holds (first start, changed credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    pub marker: PathBuf,
    pub fingerprint: String,
    /// Removed from the command line for the provisioning run.
    pub drop_arg: Option<String>,
}

impl Provisioning {
    fn done(&self) -> bool {
        std::fs::read_to_string(&self.marker).is_ok_and(|m| m.trim() == self.fingerprint)
    }
}

/// What is specific to one service (see the module docs). Futures run on
/// the daemon's single actix thread.
pub(crate) trait Driver: Clone + Unpin + 'static {
    type Client: Clone + 'static;
    const KIND: ServiceKind;

    /// Writes the files the command line needs before each start; returns
    /// what `{config_file}` stands for.
    fn prepare(&self, _r: &Resolved) -> Result<Option<PathBuf>, String> {
        Ok(None)
    }

    /// Builds the client probes and handlers use (no I/O).
    fn client(&self, r: &Resolved, timeout: Duration) -> Result<Self::Client, String>;

    /// The client as the registry hands it out.
    fn share(client: &Self::Client) -> ServiceClient;

    /// One liveness round trip plus the service's figures.
    async fn probe(&self, client: &Self::Client, timeout: Duration) -> Result<Probe, ProbeError>;

    /// Idempotent set-up once the server answers (buckets, database, user).
    async fn bootstrap(&self, client: &Self::Client, r: &Resolved) -> Result<(), ProbeError>;

    /// Whether users must be provisioned before the authenticated start.
    fn provisioning(&self, _svc: &ServiceSettings, _r: &Resolved) -> Option<Provisioning> {
        None
    }

    /// Creates or updates the users on a server started without
    /// authentication and listening on `host`; waits for it up to `within`.
    async fn provision(
        &self,
        _r: &Resolved,
        _host: &str,
        _within: Duration,
    ) -> Result<(), ProbeError> {
        Ok(())
    }
}

/// How one incarnation of a service ended.
enum End {
    /// Stop for good (the supervisor stops the actor).
    Stop,
    /// Stopped for uninstall; park until told otherwise.
    Hold(tokio::sync::oneshot::Sender<()>),
    /// Start again now (operator restart, changed credentials): why.
    Restart(&'static str),
    /// Crashed or unhealthy: counts against the restart intensity.
    Crashed(String),
    /// Cannot start at all (bad credentials source, data dir): slow retry.
    Broken(String),
    /// The server binary could not be provided: retried on the
    /// provisioning backoff. `unsupported`: this platform has no artifact.
    Unprovisioned {
        reason: String,
        step: Step,
        unsupported: bool,
    },
}

/// What ended a wait.
enum Wake {
    Go,
    Stop,
}

/// The supervision loop of one service (see the module docs).
pub(crate) struct Core<D: Driver> {
    driver: D,
    svc: ServiceSettings,
    settings: Arc<Settings>,
    registry: ServiceRegistry,
    bus: EventBus,
    policy: RestartPolicy,
    announced: Option<(ServiceState, Option<String>)>,
    /// Where the server binary comes from.
    servers: ProvisionSource,
    /// Pauses between provisioning attempts ([`default_retry_backoff`],
    /// capped at the service's `failed_retry`).
    provision_backoff: ExponentialBackoff,
    /// Provisioning attempts that failed in a row.
    provision_failures: u32,
    /// The last provisioning failure said "unsupported platform".
    unsupported: bool,
    /// The version being fetched, for the `starting` reason.
    fetching: Option<String>,
}

impl<D: Driver> Core<D> {
    pub fn new(
        driver: D,
        settings: Arc<Settings>,
        registry: ServiceRegistry,
        bus: EventBus,
        servers: ProvisionSource,
    ) -> Self {
        let svc = settings.services.get(D::KIND).clone();
        Core {
            driver,
            policy: RestartPolicy::new(svc.intensity(), svc.restart_backoff()),
            svc,
            settings,
            registry,
            bus,
            announced: None,
            servers,
            provision_backoff: default_retry_backoff(),
            provision_failures: 0,
            unsupported: false,
            fetching: None,
        }
    }

    fn name(&self) -> &'static str {
        D::KIND.name()
    }

    /// Publishes a state; emits an event only when state or reason changed.
    fn set_state(&mut self, state: ServiceState, reason: Option<String>) {
        let changed = self.announced.as_ref() != Some(&(state, reason.clone()));
        let state_changed = self.announced.as_ref().map(|a| a.0) != Some(state);
        self.registry.with(D::KIND, |e| {
            let v = e.view();
            v.state = state;
            if state_changed {
                v.since = crate::host::clock::now_iso();
            }
        });
        if changed {
            self.announced = Some((state, reason.clone()));
            self.bus.emit(Event::ServiceState {
                service: D::KIND,
                state,
                reason,
            });
        }
    }

    fn record_error(&self, error: &str) {
        self.registry
            .with(D::KIND, |e| e.view().last_error = Some(error.to_owned()));
    }

    fn publish_endpoint(&self, r: &Resolved) {
        self.registry.with(D::KIND, |e| {
            let v = e.view();
            v.host = Some(r.host.clone());
            v.port = Some(r.port);
            v.credentials = Some(r.source);
        });
    }

    fn forget_runtime(&self) {
        self.registry.with(D::KIND, |e| {
            e.set_client(None);
            e.set_process(None, None);
        });
    }

    /// Runs until told to stop.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Control>) -> ExitReason {
        if self.svc.mode == ServiceMode::Disabled {
            return ExitReason::Normal;
        }
        self.set_state(ServiceState::Starting, None);
        loop {
            let end = match self.svc.mode {
                ServiceMode::External => self.external_once(&mut rx).await,
                _ => self.native_once(&mut rx).await,
            };
            self.forget_runtime();
            let wake = match end {
                End::Stop => Wake::Stop,
                End::Restart(why) => {
                    self.policy.reset();
                    self.set_state(ServiceState::Starting, Some(why.into()));
                    Wake::Go
                }
                End::Hold(ack) => self.hold(ack, &mut rx).await,
                End::Unprovisioned {
                    reason,
                    step,
                    unsupported,
                } => {
                    self.record_error(&reason);
                    let delay = self
                        .provision_backoff
                        .delay(self.provision_failures)
                        .min(self.svc.failed_retry);
                    self.provision_failures = self.provision_failures.saturating_add(1);
                    self.bus.emit(Event::Provision {
                        progress: ProvisionEvent::Retrying {
                            service: D::KIND,
                            attempt: self.provision_failures,
                            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            step,
                            reason: reason.clone(),
                        },
                    });
                    if unsupported {
                        self.bus.emit(Event::ServiceUnsupported {
                            service: D::KIND,
                            reason: reason.clone(),
                        });
                    } else if self.unsupported {
                        // Another failure now: leave the unsupported state
                        // before reporting this one.
                        self.set_state(ServiceState::Starting, Some("provisioning".into()));
                    }
                    self.unsupported = unsupported;
                    self.set_state(
                        ServiceState::Failed,
                        Some(format!("{reason}; next attempt in {}", human(delay))),
                    );
                    self.pause(delay, &mut rx).await
                }
                End::Broken(reason) => {
                    self.record_error(&reason);
                    let retry = self.svc.failed_retry;
                    self.set_state(
                        ServiceState::Failed,
                        Some(format!("{reason}; next attempt in {}", human(retry))),
                    );
                    self.pause(retry, &mut rx).await
                }
                End::Crashed(reason) => {
                    self.record_error(&reason);
                    match self.policy.on_failure(Instant::now()) {
                        Decision::RestartAfter { delay, .. } => {
                            self.set_state(
                                ServiceState::Starting,
                                Some(format!("{reason}; restarting in {} ms", delay.as_millis())),
                            );
                            self.pause(delay, &mut rx).await
                        }
                        Decision::GiveUp { restarts, window } => {
                            let retry = self.svc.failed_retry;
                            self.set_state(
                                ServiceState::Failed,
                                Some(format!(
                                    "{reason}; restarted {restarts} times within {}, next attempt in {}",
                                    human(window),
                                    human(retry)
                                )),
                            );
                            let wake = self.pause(retry, &mut rx).await;
                            self.policy.reset();
                            wake
                        }
                    }
                }
            };
            if let Wake::Stop = wake {
                self.set_state(ServiceState::Stopped, None);
                return ExitReason::Shutdown;
            }
        }
    }

    /// Waits `delay` unless a control message comes first.
    async fn pause(&mut self, delay: Duration, rx: &mut mpsc::UnboundedReceiver<Control>) -> Wake {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Wake::Go,
            msg = rx.recv() => match msg {
                None | Some(Control::Stop) => Wake::Stop,
                Some(Control::Restart) => {
                    self.policy.reset();
                    self.set_state(ServiceState::Starting, Some(RESTART_REQUESTED.into()));
                    Wake::Go
                }
                Some(Control::Hold(ack)) => self.hold(ack, rx).await,
            },
        }
    }

    /// Stays stopped (uninstall) until a restart or the end.
    async fn hold(
        &mut self,
        ack: tokio::sync::oneshot::Sender<()>,
        rx: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Wake {
        self.set_state(ServiceState::Stopped, Some("stopped on request".into()));
        let _ = ack.send(());
        loop {
            match rx.recv().await {
                None | Some(Control::Stop) => return Wake::Stop,
                Some(Control::Hold(ack)) => {
                    let _ = ack.send(());
                }
                Some(Control::Restart) => {
                    self.policy.reset();
                    self.set_state(ServiceState::Starting, Some(RESTART_REQUESTED.into()));
                    return Wake::Go;
                }
            }
        }
    }

    /// The argument list (after the binary) and environment for `r`.
    fn command_line(
        &self,
        r: &Resolved,
        bind: IpAddr,
        config_file: Option<&Path>,
    ) -> (Vec<String>, Vec<(String, String)>) {
        let values = r.placeholders(bind, config_file);
        let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args = self
            .svc
            .command
            .iter()
            .skip(1)
            .map(|a| substitute(a, &pairs))
            .collect();
        let env = self
            .svc
            .env
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &pairs)))
            .collect();
        (args, env)
    }

    /// What the command line asks to run, placeholders filled in, and
    /// where it is looked for.
    fn server_request(&self, r: &Resolved) -> ServiceRequest {
        let mut req = ServiceRequest::from_settings(D::KIND, &self.svc);
        let values = r.placeholders(r.bind, None);
        let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        req.program = substitute(&req.program, &pairs);
        req
    }

    /// Makes sure the server binary exists (see the module docs) and
    /// returns it. A control message ends the wait: dropping a download
    /// keeps its `.part` for the next attempt, a half-unpacked staging
    /// directory is swept by the next install.
    async fn server_binary(
        &mut self,
        r: &Resolved,
        rx: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Result<PathBuf, End> {
        let provisioner = self.servers.get().await.map_err(|e| End::Unprovisioned {
            reason: format!("resolve: {e}"),
            step: Step::Resolve,
            unsupported: false,
        })?;
        let req = self.server_request(r);
        let (tx, mut progress) = mpsc::unbounded_channel();
        let ensure = provisioner.ensure(&req, move |e| {
            let _ = tx.send(e);
        });
        tokio::pin!(ensure);
        let outcome = loop {
            tokio::select! {
                outcome = &mut ensure => break outcome,
                Some(event) = progress.recv() => self.on_provision(event),
                msg = rx.recv() => match msg {
                    None | Some(Control::Stop) => return Err(End::Stop),
                    Some(Control::Hold(ack)) => return Err(End::Hold(ack)),
                    Some(Control::Restart) => return Err(End::Restart(RESTART_REQUESTED)),
                },
            }
        };
        while let Ok(event) = progress.try_recv() {
            self.on_provision(event);
        }
        self.fetching = None;
        match outcome {
            Ok(ready) => {
                self.provision_failures = 0;
                Ok(ready.binary)
            }
            Err(e) => Err(End::Unprovisioned {
                reason: e.reason(),
                step: e.step,
                unsupported: e.status() == ClusterStatus::OperatingSystemNotSupported,
            }),
        }
    }

    /// Puts provisioning progress on the log stream and, while the service
    /// is coming up (not while a failed one retries: no flapping status),
    /// in its `starting` reason.
    fn on_provision(&mut self, event: ProvisionEvent) {
        let reason = match &event {
            ProvisionEvent::Fetching { version, .. } => {
                self.fetching = Some(version.clone());
                Some(format!("provisioning: fetching {version}"))
            }
            ProvisionEvent::Download {
                progress:
                    DownloadEvent::Progress {
                        received,
                        total: Some(total),
                    },
                ..
            } if *total > 0 => self.fetching.as_ref().map(|v| {
                format!(
                    "provisioning: downloading {v} ({}%)",
                    received.saturating_mul(100) / total
                )
            }),
            ProvisionEvent::Unpacking { .. } => self
                .fetching
                .as_ref()
                .map(|v| format!("provisioning: installing {v}")),
            _ => None,
        };
        self.bus.emit(Event::Provision { progress: event });
        let failed = self
            .announced
            .as_ref()
            .is_some_and(|a| a.0 == ServiceState::Failed);
        if let Some(reason) = reason
            && !failed
        {
            self.set_state(ServiceState::Starting, Some(reason));
        }
    }

    /// [`resolve::resolve`] off the actix thread: it reads files and may run
    /// `systemd-creds` (sealed credentials, the key store's detection).
    async fn resolve(&self) -> Result<Resolved, String> {
        let (svc, settings) = (self.svc.clone(), self.settings.clone());
        tokio::task::spawn_blocking(move || resolve::resolve(D::KIND, &svc, &settings))
            .await
            .map_err(|e| format!("resolving the service's credentials failed: {e}"))?
    }

    fn spawn(
        &self,
        r: &Resolved,
        binary: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<ManagedChild, String> {
        ManagedChild::spawn(
            SpawnSpec {
                kind: D::KIND,
                binary,
                args,
                env,
                cwd: &r.data_dir,
                pid_file: r.pid_file(),
                secrets: vec![r.password.expose().to_owned()],
            },
            &self.bus,
        )
    }

    async fn native_once(&mut self, rx: &mut mpsc::UnboundedReceiver<Control>) -> End {
        // Taken before resolving: a manifest stored in between is noticed.
        let stamp = resolve::manifest_stamp(&self.settings).await;
        let r = match self.resolve().await {
            Ok(r) => r,
            Err(e) => return End::Broken(e),
        };
        self.publish_endpoint(&r);
        let binary = match self.server_binary(&r, rx).await {
            Ok(b) => b,
            Err(end) => return end,
        };
        if let Err(e) = ensure_dir(&r.services_dir, PRIVATE_DIR_MODE) {
            return End::Broken(format!("cannot create {}: {e}", r.services_dir.display()));
        }
        if !r.data_dir.exists()
            && let Err(e) = ensure_dir(&r.data_dir, PRIVATE_DIR_MODE)
        {
            return End::Broken(format!(
                "cannot create data directory {}: {e}",
                r.data_dir.display()
            ));
        }
        if let Some(other) = process::owned_by_other_voltd(&r.pid_file()) {
            return End::Broken(format!(
                "its server was started by another running voltd (pid {other}) on the same state directory"
            ));
        }
        match process::replace_leftover(&r.pid_file(), self.svc.stop_timeout).await {
            Ok(Some(pid)) => tracing::info!(
                service = %self.name(),
                pid,
                "Replaced a server left by a previous voltd."
            ),
            Ok(None) => {}
            Err(e) => return End::Crashed(e),
        }
        if let Err(e) = process::wait_port_free(r.bind, r.port, process::PORT_FREE_TIMEOUT).await {
            return End::Crashed(e);
        }
        if let Some(plan) = self.driver.provisioning(&self.svc, &r)
            && !plan.done()
            && let Err(e) = self.provision(&r, &binary, &plan).await
        {
            return End::Crashed(format!("provisioning failed: {e}"));
        }
        // The provisioning server may still hold the port for a moment.
        if let Err(e) = process::wait_port_free(r.bind, r.port, process::PORT_FREE_TIMEOUT).await {
            return End::Crashed(e);
        }
        let config_file = match self.driver.prepare(&r) {
            Ok(c) => c,
            Err(e) => return End::Broken(e),
        };
        let (args, env) = self.command_line(&r, r.bind, config_file.as_deref());
        let child = match self.spawn(&r, &binary, &args, &env) {
            Ok(c) => c,
            Err(e) => return End::Crashed(e),
        };
        tracing::info!(
            service = %self.name(),
            pid = child.pid(),
            port = r.port,
            "Service process started."
        );
        self.registry.with(D::KIND, |e| {
            e.set_process(Some(child.pid()), Some(child.started()))
        });
        self.set_state(ServiceState::Starting, None);
        let client = match self.driver.client(&r, self.svc.probe_timeout) {
            Ok(c) => c,
            Err(e) => {
                child.stop(self.svc.stop_timeout).await;
                return End::Broken(e);
            }
        };
        self.watch(rx, Some(child), client, &r, stamp).await
    }

    async fn external_once(&mut self, rx: &mut mpsc::UnboundedReceiver<Control>) -> End {
        let stamp = resolve::manifest_stamp(&self.settings).await;
        let r = match self.resolve().await {
            Ok(r) => r,
            Err(e) => return End::Broken(e),
        };
        self.publish_endpoint(&r);
        let client = match self.driver.client(&r, self.svc.probe_timeout) {
            Ok(c) => c,
            Err(e) => return End::Broken(e),
        };
        self.watch(rx, None, client, &r, stamp).await
    }

    /// Stops the server (if voltd runs it) and says how it ended.
    async fn stop_child(&self, child: Option<ManagedChild>) {
        if let Some(child) = child {
            let pid = child.pid();
            let how = child.stop(self.svc.stop_timeout).await;
            tracing::info!(service = %self.name(), pid, ended = %how, "Service process stopped.");
        }
    }

    /// One liveness probe, and the bootstrap until it succeeded once.
    async fn check(
        &self,
        client: &D::Client,
        r: &Resolved,
        bootstrap: bool,
    ) -> Result<Probe, ProbeError> {
        let timeout = self.svc.probe_timeout;
        let probe = tokio::time::timeout(timeout, self.driver.probe(client, timeout))
            .await
            .map_err(|_| ProbeError::timeout(timeout))??;
        if bootstrap {
            tokio::time::timeout(self.svc.start_timeout, self.driver.bootstrap(client, r))
                .await
                .map_err(|_| ProbeError::timeout(self.svc.start_timeout))?
                .map_err(|e| e.context("bootstrap failed"))?;
            tracing::info!(service = %self.name(), "Service bootstrapped.");
        }
        Ok(probe)
    }

    /// Watches a running service until something ends this incarnation.
    async fn watch(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Control>,
        mut child: Option<ManagedChild>,
        client: D::Client,
        r: &Resolved,
        mut stamp: Option<std::time::SystemTime>,
    ) -> End {
        let native = child.is_some();
        let started = Instant::now();
        let mut bootstrapped = false;
        let mut failures = 0u32;
        let mut next_probe = if native {
            Instant::now() + START_PROBE_INTERVAL
        } else {
            Instant::now()
        };
        loop {
            tokio::select! {
                how = exited(&mut child) => return End::Crashed(how),
                msg = rx.recv() => match msg {
                    None | Some(Control::Stop) => {
                        self.stop_child(child.take()).await;
                        return End::Stop;
                    }
                    Some(Control::Hold(ack)) => {
                        if native {
                            self.stop_child(child.take()).await;
                            return End::Hold(ack);
                        }
                        let _ = ack.send(());
                        continue;
                    }
                    Some(Control::Restart) => {
                        tracing::info!(service = %self.name(), "Restart requested.");
                        self.stop_child(child.take()).await;
                        return End::Restart(RESTART_REQUESTED);
                    }
                },
                _ = tokio::time::sleep_until(next_probe) => {}
            }

            let now_stamp = resolve::manifest_stamp(&self.settings).await;
            if now_stamp != stamp {
                stamp = now_stamp;
                if let Ok(fresh) = self.resolve().await
                    && fresh != *r
                {
                    tracing::info!(
                        service = %self.name(),
                        "Service port or credentials changed in the install manifest; restarting."
                    );
                    self.stop_child(child.take()).await;
                    return End::Restart("the install manifest changed the port or credentials");
                }
            }

            let outcome = tokio::select! {
                how = exited(&mut child) => return End::Crashed(how),
                outcome = self.check(&client, r, !bootstrapped) => outcome,
            };
            let ready = bootstrapped;
            match outcome {
                Ok(probe) => {
                    bootstrapped = true;
                    failures = 0;
                    self.registry.with(D::KIND, |e| {
                        let v = e.view();
                        v.probe_latency_ms = Some(round_ms(probe.latency));
                        if probe.stats.is_some() {
                            v.stats = probe.stats;
                        }
                        e.set_client(Some(D::share(&client)));
                    });
                    self.set_state(ServiceState::Healthy, None);
                }
                Err(e) => {
                    failures += 1;
                    let reason = e.to_string();
                    // A server that is still coming up refuses connections:
                    // that is no error worth keeping, a refused login is.
                    if ready || !native || e.kind == ProbeErrorKind::Auth {
                        self.record_error(&reason);
                    }
                    if !ready {
                        if native && started.elapsed() >= self.svc.start_timeout {
                            self.stop_child(child.take()).await;
                            return End::Crashed(format!(
                                "not ready within {}: {reason}",
                                human(self.svc.start_timeout)
                            ));
                        }
                        if !native && failures >= self.svc.unhealthy_after {
                            self.set_state(ServiceState::Failed, Some(reason));
                        } else if e.kind == ProbeErrorKind::Auth || !native {
                            self.set_state(ServiceState::Starting, Some(reason));
                        }
                    } else if failures >= self.svc.unhealthy_after {
                        if native {
                            self.stop_child(child.take()).await;
                            return End::Crashed(format!("unhealthy: {reason}"));
                        }
                        self.set_state(ServiceState::Failed, Some(reason));
                    } else {
                        self.set_state(ServiceState::Degraded, Some(reason));
                    }
                }
            }
            let interval = if bootstrapped || !native {
                self.svc.probe_interval
            } else {
                START_PROBE_INTERVAL
            };
            next_probe = Instant::now() + interval;
        }
    }

    /// Starts the server without authentication on loopback, lets the
    /// driver create or update the users, stops it and records the marker.
    async fn provision(
        &mut self,
        r: &Resolved,
        binary: &Path,
        plan: &Provisioning,
    ) -> Result<(), String> {
        self.set_state(ServiceState::Starting, Some("provisioning users".into()));
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (mut args, env) = self.command_line(r, loopback, None);
        if let Some(flag) = &plan.drop_arg {
            args.retain(|a| a != flag);
        }
        let mut child = self.spawn(r, binary, &args, &env)?;
        tracing::info!(
            service = %self.name(),
            pid = child.pid(),
            "Provisioning users on a server started without authentication."
        );
        let within = self.svc.start_timeout;
        let host = loopback.to_string();
        let result = tokio::select! {
            how = child.wait() => Err(format!("the server {how} during provisioning")),
            res = self.driver.provision(r, &host, within) => res.map_err(|e| e.to_string()),
        };
        let how = child.stop(self.svc.stop_timeout).await;
        tracing::debug!(service = %self.name(), ended = %how, "Provisioning server stopped.");
        result?;
        write_atomic(
            &plan.marker,
            format!("{}\n", plan.fingerprint).as_bytes(),
            SECRET_FILE_MODE,
        )
        .map_err(|e| format!("cannot write {}: {e}", plan.marker.display()))?;
        tracing::info!(service = %self.name(), user = %r.user, "Users provisioned.");
        Ok(())
    }
}

/// Resolves when the child exits (never without a child).
async fn exited(child: &mut Option<ManagedChild>) -> String {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// "300 s", "5 min", "250 ms" — for reasons an operator reads.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} s", d.as_secs())
    }
}

/// The actor a service runs in: a shell around [`Core::run`] that the
/// supervisor can stop.
pub(crate) struct ServiceActor<D: Driver> {
    core: Option<(Core<D>, mpsc::UnboundedReceiver<Control>)>,
    control: mpsc::UnboundedSender<Control>,
    exit: ExitSlot,
}

impl<D: Driver> Actor for ServiceActor<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some((core, rx)) = self.core.take() else {
            ctx.stop();
            return;
        };
        ctx.spawn(core.run(rx).into_actor(self).map(|reason, act, ctx| {
            act.exit.set(reason);
            ctx.stop();
        }));
    }
}

impl<D: Driver> Handler<StopChild> for ServiceActor<D> {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        if self.control.send(Control::Stop).is_err() {
            self.exit.set(ExitReason::Shutdown);
            ctx.stop();
        }
    }
}

/// The supervised child for service `D`.
pub(crate) fn child_spec<D: Driver>(
    driver: D,
    settings: Arc<Settings>,
    registry: ServiceRegistry,
    bus: EventBus,
    servers: ProvisionSource,
) -> ChildSpec {
    let svc = settings.services.get(D::KIND);
    let timeout = svc.stop_timeout * 2 + ACTOR_STOP_MARGIN;
    let mode = svc.mode;
    ChildSpec::new(D::KIND.name(), Restart::Permanent, move |env| {
        let (tx, rx) = mpsc::unbounded_channel();
        registry.attach(D::KIND, mode, tx.clone());
        let core = Core::new(
            driver.clone(),
            settings.clone(),
            registry.clone(),
            bus.clone(),
            servers.clone(),
        );
        let actor = ServiceActor {
            core: Some((core, rx)),
            control: tx,
            exit: env.exit.clone(),
        };
        Ok(spawn_actor(actor).1)
    })
    .shutdown_timeout(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_errors_read_well() {
        assert_eq!(
            ProbeError::auth("WRONGPASS invalid username-password pair").to_string(),
            "auth rejected: WRONGPASS invalid username-password pair"
        );
        assert_eq!(
            ProbeError::timeout(Duration::from_secs(3)).to_string(),
            "probe timeout: no answer within 3000 ms"
        );
        assert_eq!(
            ProbeError::unreachable("connection refused")
                .context("bootstrap failed")
                .to_string(),
            "unreachable: bootstrap failed: connection refused"
        );
        assert_eq!(human(Duration::from_secs(300)), "5 min");
        assert_eq!(human(Duration::from_secs(45)), "45 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
        assert_eq!(round_ms(Duration::from_micros(1234)), 1.234);
    }
}
