//! The jobs actor: runs the job engine (queues and worker pools, see
//! [`super::engine`]) while the cluster's Redis is there, and connects it
//! to the rest of the daemon through handles only:
//!
//! * answers the job commands ([`JobsCall`], bound to `Handle<JobsCall>`;
//!   `remote/jobs.rs` sends them) — 503 until Redis is healthy;
//! * starts one pool per queue that has an executor: `ssh_import` once
//!   MinIO gives its `volt-dumps` bucket, plus the executors registered in
//!   the [`ExecutorRegistry`];
//! * at every registration asks the server `runtime.config.get` for the
//!   queues' concurrency and the cluster's role; a server that does not
//!   know the command (404) leaves voltd on its `[jobs]` configuration;
//! * sends the job status events (§5.2) through the [`Outbox`], which
//!   keeps them while disconnected;
//! * puts jobs starting and ending and the worker availability on the
//!   supervisor log stream (the status actor shows the availability in
//!   `voltd status` and `runtime.status`).
//!
//! The engine outlives Redis restarts (BullMQ's connections reconnect on
//! their own); when the actor stops (shutdown, supervisor restart) the
//! engine closes and its running jobs go back to waiting, so they run
//! again rather than fail.

use super::commands;
use super::engine::{Engine, EngineSettings, ExecutorFactory};
use super::events::JobStatusEvent;
use super::executor::Executor;
use super::names::{ConcurrencyKey, QueueName};
use super::pool::{Availability, JobEvent, PoolSettings};
use super::queue::RedisTarget;
use super::ssh_import::host_keys::TofuStore;
use super::ssh_import::{DUMPS_BUCKET, SshImport, SshImportSettings};
use crate::api::jobs::{ConfigSource, JobsCall, JobsCommand, JobsFailure};
use crate::api::{CommandError, CredentialsCell, Handle, Outbox, SendCommand, ServiceKind};
use crate::config::Settings;
use crate::events::{Delivery, Event, EventBus};
use crate::services::ServiceRegistry;
use actix::prelude::*;
use futures_util::stream;
use otp::supervisor::StopChild;
use otp::{ExitReason, ExitSlot};
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use volt_protocol::Message as WireMessage;
use volt_protocol::envelope::ReportKind;

/// The daemon→server command for the workers' configuration (§2.7).
pub const CONFIG_GET_COMMAND: &str = "runtime.config.get";

/// How often the actor looks again: Redis/MinIO ready, executors
/// registered late, availability (waiting and failed counts change
/// without any job event here, e.g. when the server dispatches).
pub const REFRESH: Duration = Duration::from_secs(5);

/// Availability is read this long after a job event, so a burst of jobs
/// costs one read.
const AVAILABILITY_DEBOUNCE: Duration = Duration::from_millis(200);

/// `runtime.config.get` is retried this often after a failure other than
/// "unknown command" (the socket was not ready yet, a timeout) …
const CONFIG_RETRY: Duration = Duration::from_secs(2);
/// … this many times per registration.
const CONFIG_ATTEMPTS: u32 = 5;

/// How long the pools get to close on shutdown: running jobs are
/// interrupted at once and an executor that ignores it is dropped after
/// `pool::CANCEL_GRACE` (1.5 s).
pub const ENGINE_STOP: Duration = Duration::from_secs(5);

/// The actor's shutdown timeout in the tree: the pools' close plus the
/// engine runtime's own stop (2 s) plus margin.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Job status events kept while the credentials are not known yet.
const PENDING_EVENTS: usize = 1024;

/// The TOFU host-key file of `ssh_import`, in the state directory.
pub const TOFU_FILE: &str = "ssh_known_hosts.json";

/// Executors added by the embedding application (or a test) for queues
/// voltd has none for: `DaemonHandle::register_executor`. Read when the
/// engine starts and at every [`REFRESH`]. One executor per queue; a
/// registered `ssh_import` executor replaces the built-in one.
#[derive(Clone, Default)]
pub struct ExecutorRegistry(Rc<RefCell<BTreeMap<QueueName, Arc<dyn Executor>>>>);

impl ExecutorRegistry {
    pub fn register(&self, queue: QueueName, executor: Arc<dyn Executor>) {
        self.0.borrow_mut().insert(queue, executor);
    }

    fn get(&self, queue: QueueName) -> Option<Arc<dyn Executor>> {
        self.0.borrow().get(&queue).cloned()
    }

    fn queues(&self) -> Vec<QueueName> {
        self.0.borrow().keys().copied().collect()
    }
}

/// What the jobs actor is connected to.
pub struct JobsWiring {
    /// Job status events and `runtime.config.get` go out here.
    pub outbox: Outbox,
    pub credentials: CredentialsCell,
    /// Redis (the queues) and MinIO (where imports land).
    pub services: ServiceRegistry,
    /// Bound to the actor on start (`remote/jobs.rs` sends job commands).
    pub calls: Handle<JobsCall>,
    pub executors: ExecutorRegistry,
    pub bus: EventBus,
}

enum EngineState {
    Idle,
    Starting,
    Running(Engine),
}

/// The jobs actor (see the module docs).
pub struct JobsActor {
    settings: Arc<Settings>,
    w: JobsWiring,
    exit: ExitSlot,
    engine: EngineState,
    /// Queues whose pool started or is starting.
    pools: BTreeSet<QueueName>,
    /// The concurrency in force, by server key (config, then the server).
    concurrency: BTreeMap<ConcurrencyKey, usize>,
    /// Whether the workers take jobs (the role has compute).
    compute: bool,
    events_tx: mpsc::UnboundedSender<JobEvent>,
    events_rx: Option<mpsc::UnboundedReceiver<JobEvent>>,
    pending: VecDeque<JobStatusEvent>,
    last_availability: Option<Vec<Availability>>,
    refreshing: bool,
    refresh_again: bool,
    refresh_scheduled: bool,
    asking_config: bool,
    /// Increases at every registration; an answer to an older ask is
    /// still applied, but its retries stop.
    registration: u64,
    unavailable_reported: bool,
}

impl JobsActor {
    pub fn new(settings: Arc<Settings>, wiring: JobsWiring, exit: ExitSlot) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let j = &settings.jobs;
        let concurrency = BTreeMap::from([
            (ConcurrencyKey::Analysis, j.analysis_concurrency),
            (ConcurrencyKey::Rasterizer, j.rasterizer_concurrency),
            (
                ConcurrencyKey::GlbPreprocessing,
                j.glb_preprocessing_concurrency,
            ),
            (ConcurrencyKey::SshImport, j.ssh_import_concurrency),
        ]);
        JobsActor {
            settings,
            w: wiring,
            exit,
            engine: EngineState::Idle,
            pools: BTreeSet::new(),
            concurrency,
            compute: true,
            events_tx,
            events_rx: Some(events_rx),
            pending: VecDeque::new(),
            last_availability: None,
            refreshing: false,
            refresh_again: false,
            refresh_scheduled: false,
            asking_config: false,
            registration: 0,
            unavailable_reported: false,
        }
    }

    fn engine(&self) -> Option<&Engine> {
        match &self.engine {
            EngineState::Running(e) => Some(e),
            _ => None,
        }
    }

    /// Starts the engine when Redis is usable and none runs.
    fn try_start(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.engine, EngineState::Idle) {
            return;
        }
        let Some(redis) = self
            .w
            .services
            .redis_client()
            .and_then(|c| redis_target(&c))
        else {
            return;
        };
        self.engine = EngineState::Starting;
        let settings = EngineSettings {
            redis,
            pool: PoolSettings {
                lock_duration: self.settings.jobs.lock_duration,
                stalled_interval: self.settings.jobs.stalled_interval,
                ..PoolSettings::default()
            },
            concurrency: self
                .concurrency
                .iter()
                .map(|(k, n)| (k.queue(), *n))
                .collect(),
            paused: !self.compute,
        };
        Engine::start(settings, self.events_tx.clone())
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(engine) => {
                    // What changed while it was opening (a concurrency
                    // applied, the server's answer) holds too.
                    engine
                        .apply_concurrency(act.concurrency.iter().map(|(k, n)| (*k, *n)).collect());
                    engine.set_paused(!act.compute);
                    act.engine = EngineState::Running(engine);
                    act.unavailable_reported = false;
                    act.start_pools(ctx);
                    act.refresh(ctx);
                }
                Err(error) => {
                    act.engine = EngineState::Idle;
                    if !act.unavailable_reported {
                        act.unavailable_reported = true;
                        act.w.bus.emit(Event::JobQueuesUnavailable { error });
                    }
                }
            })
            .spawn(ctx);
    }

    /// Starts the pools that can start now and have not.
    fn start_pools(&mut self, ctx: &mut Context<Self>) {
        let Some(engine) = self.engine() else {
            return;
        };
        let mut starts: Vec<(QueueName, ExecutorFactory)> = Vec::new();
        for queue in self.w.executors.queues() {
            if self.pools.contains(&queue) {
                continue;
            }
            if let Some(executor) = self.w.executors.get(queue) {
                starts.push((queue, Box::new(move |_| executor)));
            }
        }
        let ssh = QueueName::SshImport;
        if !self.pools.contains(&ssh)
            && self.w.executors.get(ssh).is_none()
            && let Some(bucket) = self.w.services.s3_bucket(DUMPS_BUCKET)
        {
            let tofu = TofuStore::new(self.settings.state_dir.join(TOFU_FILE));
            starts.push((
                ssh,
                Box::new(move |queues| {
                    Arc::new(SshImport::new(
                        bucket,
                        tofu,
                        queues.connection().clone(),
                        SshImportSettings::default(),
                    )) as Arc<dyn Executor>
                }),
            ));
        }
        let started: Vec<_> = starts
            .into_iter()
            .map(|(queue, factory)| (queue, engine.start_pool(queue, factory)))
            .collect();
        for (queue, start) in started {
            self.pools.insert(queue);
            start
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(()) => act.refresh(ctx),
                    Err(e) => {
                        tracing::warn!(%queue, error = %e, "Worker pool did not start; retrying.");
                        act.pools.remove(&queue);
                    }
                })
                .spawn(ctx);
        }
    }

    /// Reads the availability and puts it on the log stream when it
    /// changed.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(engine) = self.engine() else {
            return;
        };
        if self.refreshing {
            self.refresh_again = true;
            return;
        }
        let read = engine.availability();
        self.refreshing = true;
        read.into_actor(self)
            .map(|result, act, ctx| {
                act.refreshing = false;
                match result {
                    Ok(list) if act.last_availability.as_ref() != Some(&list) => {
                        act.last_availability = Some(list.clone());
                        act.w.bus.emit(Event::WorkerAvailability { queues: list });
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "Worker availability not read."),
                }
                if std::mem::take(&mut act.refresh_again) {
                    act.refresh_soon(ctx);
                }
            })
            .spawn(ctx);
    }

    fn refresh_soon(&mut self, ctx: &mut Context<Self>) {
        if self.refresh_scheduled {
            return;
        }
        self.refresh_scheduled = true;
        ctx.run_later(AVAILABILITY_DEBOUNCE, |act, ctx| {
            act.refresh_scheduled = false;
            act.refresh(ctx);
        });
    }

    /// Asks the server for the workers' configuration (at registration).
    fn ask_config(&mut self, attempt: u32, ctx: &mut Context<Self>) {
        if self.asking_config {
            return;
        }
        self.asking_config = true;
        let registration = self.registration;
        let outbox = self.w.outbox.clone();
        // §2.7: the payload is `{}`; the server uses the registered
        // socket's cluster id.
        async move {
            outbox
                .command(SendCommand::new(CONFIG_GET_COMMAND, json!({})))
                .await
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            act.asking_config = false;
            match result {
                Ok(config) => act.apply_server_config(&config, ctx),
                Err(CommandError::Rejected { status: 404, .. }) => act.use_own_config(ctx),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "runtime.config.get failed; keeping the current concurrency.");
                    if attempt < CONFIG_ATTEMPTS && act.registration == registration {
                        ctx.run_later(CONFIG_RETRY, move |act, ctx| {
                            if act.registration == registration {
                                act.ask_config(attempt + 1, ctx);
                            }
                        });
                    }
                }
            }
        })
        .spawn(ctx);
    }

    fn apply_server_config(&mut self, config: &Value, ctx: &mut Context<Self>) {
        let parsed = config
            .get("queueConcurrency")
            .map(commands::parse_concurrency);
        match parsed {
            Some(Ok(values)) => {
                for (key, n) in values {
                    self.concurrency.insert(key, n);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "The server's queueConcurrency is invalid; keeping the configured one.")
            }
            None => {}
        }
        let (role, compute) = role_of(config);
        self.settle(ConfigSource::Server, role, compute, ctx);
    }

    /// The server does not know `runtime.config.get`: the `[jobs]`
    /// configuration stays in force, with every capability.
    fn use_own_config(&mut self, ctx: &mut Context<Self>) {
        let j = &self.settings.jobs;
        self.concurrency = BTreeMap::from([
            (ConcurrencyKey::Analysis, j.analysis_concurrency),
            (ConcurrencyKey::Rasterizer, j.rasterizer_concurrency),
            (
                ConcurrencyKey::GlbPreprocessing,
                j.glb_preprocessing_concurrency,
            ),
            (ConcurrencyKey::SshImport, j.ssh_import_concurrency),
        ]);
        self.settle(ConfigSource::Config, None, true, ctx);
    }

    fn settle(
        &mut self,
        source: ConfigSource,
        role: Option<String>,
        compute: bool,
        ctx: &mut Context<Self>,
    ) {
        self.compute = compute;
        if let Some(engine) = self.engine() {
            engine.apply_concurrency(self.concurrency.iter().map(|(k, n)| (*k, *n)).collect());
            engine.set_paused(!compute);
        }
        self.w.bus.emit(Event::JobsConfigured {
            source,
            concurrency: self
                .concurrency
                .iter()
                .map(|(k, n)| (k.as_str().to_owned(), *n))
                .collect(),
            role,
            compute,
        });
        self.refresh_soon(ctx);
    }

    /// Sends a job status event (kept until the credentials are known).
    fn send_wire(&mut self, ev: JobStatusEvent) {
        match self.w.credentials.get() {
            Some(c) => self.w.outbox.emit(report_message(
                &ev,
                &c.team_cluster_id,
                c.daemon_password.expose(),
            )),
            None => {
                if self.pending.len() >= PENDING_EVENTS {
                    self.pending.pop_front();
                }
                self.pending.push_back(ev);
            }
        }
    }

    fn flush_pending(&mut self) {
        if self.w.credentials.get().is_none() {
            return;
        }
        while let Some(ev) = self.pending.pop_front() {
            self.send_wire(ev);
        }
    }

    fn on_bus(&mut self, event: &Event, ctx: &mut Context<Self>) {
        match event {
            Event::ServiceState {
                service: ServiceKind::Redis | ServiceKind::Minio,
                ..
            } => {
                self.try_start(ctx);
                self.start_pools(ctx);
            }
            Event::Registered { .. } => {
                self.registration += 1;
                self.ask_config(1, ctx);
            }
            Event::CredentialsReady { .. } => self.flush_pending(),
            _ => {}
        }
    }
}

/// `{type, teamClusterId, daemonPassword, …fields}` as a report message.
fn report_message(ev: &JobStatusEvent, cluster_id: &str, password: &str) -> WireMessage {
    let kind = match ev {
        JobStatusEvent::SshImport(_) => ReportKind::SshImportJobStatus,
        JobStatusEvent::Analysis(_) => ReportKind::AnalysisJobStatus,
        JobStatusEvent::AnalysisCompletion(_) => ReportKind::AnalysisJobCompletion,
        JobStatusEvent::Raster(_) => ReportKind::TrajectoryRasterJobStatus,
        JobStatusEvent::Glb(_) => ReportKind::TrajectoryGlbJobStatus,
        JobStatusEvent::ArtifactUpload(_) => ReportKind::ArtifactUploadJobStatus,
    };
    let mut fields = match ev.to_message(cluster_id, password) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    fields.remove("type");
    WireMessage::Report { kind, fields }
}

/// The role in a `runtime.config.get` answer and whether it lets the
/// workers take jobs: `effectiveCapabilities.compute` (else every role
/// but `storage-server` computes), and not while `roleConfig.draining.compute`.
fn role_of(config: &Value) -> (Option<String>, bool) {
    let role_config = config.get("roleConfig");
    let role = role_config
        .and_then(|r| r.get("effectiveRole").or_else(|| r.get("desiredRole")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let capable = config
        .pointer("/effectiveCapabilities/compute")
        .and_then(Value::as_bool)
        .unwrap_or(role.as_deref() != Some("storage-server"));
    let draining = role_config
        .and_then(|r| r.pointer("/draining/compute"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (role, capable && !draining)
}

/// Where the registry's Redis client connects, as the queues need it.
fn redis_target(client: &::redis::Client) -> Option<RedisTarget> {
    let info = client.get_connection_info();
    let ::redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        return None;
    };
    let r = info.redis_settings();
    Some(RedisTarget {
        host: host.clone(),
        port: *port,
        username: r.username().map(str::to_owned),
        password: r.password().map(str::to_owned),
        db: u8::try_from(r.db()).unwrap_or(0),
    })
}

impl Actor for JobsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.w.calls.bind(ctx.address());
        ctx.add_stream(self.w.bus.subscribe_control());
        if let Some(rx) = self.events_rx.take() {
            ctx.add_stream(stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|ev| (ev, rx))
            }));
        }
        // Registered before this actor (re)started: ask now.
        let registered = self
            .w
            .bus
            .recent(usize::MAX)
            .iter()
            .rev()
            .find_map(|r| match r.event {
                Event::Registered { .. } => Some(true),
                Event::SocketDisconnected { .. } => Some(false),
                _ => None,
            })
            .unwrap_or(false);
        if registered {
            self.ask_config(1, ctx);
        }
        self.try_start(ctx);
        ctx.run_interval(REFRESH, |act, ctx| {
            act.try_start(ctx);
            act.start_pools(ctx);
            act.flush_pending();
            act.refresh(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Dropping the engine closes it on its own thread (its running
        // jobs go back to waiting); StopChild waits for that instead.
        self.engine = EngineState::Idle;
    }
}

impl StreamHandler<Delivery> for JobsActor {
    fn handle(&mut self, item: Delivery, ctx: &mut Self::Context) {
        if let Delivery::Record(record) = item {
            self.on_bus(&record.event, ctx);
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl StreamHandler<JobEvent> for JobsActor {
    fn handle(&mut self, ev: JobEvent, ctx: &mut Self::Context) {
        match ev {
            JobEvent::Started {
                queue,
                job_id,
                attempt,
            } => {
                self.w.bus.emit(Event::JobStarted {
                    queue,
                    job_id,
                    attempt,
                });
                self.refresh_soon(ctx);
            }
            JobEvent::Finished {
                queue,
                job_id,
                status,
                error,
            } => {
                self.w.bus.emit(Event::JobFinished {
                    queue,
                    job_id,
                    status,
                    error,
                });
                self.refresh_soon(ctx);
            }
            // Progress is in the job's record and BullMQ's job progress;
            // the reference has no wire event for it.
            JobEvent::Progress { .. } => {}
            JobEvent::Wire(ev) => self.send_wire(ev),
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<JobsCall> for JobsActor {
    type Result = ResponseFuture<Result<Value, JobsFailure>>;

    fn handle(&mut self, call: JobsCall, ctx: &mut Self::Context) -> Self::Result {
        if call.command == JobsCommand::ApplyConcurrency {
            // Remembered here too: it holds across an engine restart (and
            // is accepted while Redis is down).
            let answer = match commands::parse_apply(&call.payload) {
                Ok((values, answer)) => {
                    for (key, n) in &values {
                        self.concurrency.insert(*key, *n);
                    }
                    if let Some(engine) = self.engine() {
                        engine.apply_concurrency(values);
                    }
                    self.refresh_soon(ctx);
                    answer
                }
                Err(refusal) => refusal,
            };
            return Box::pin(std::future::ready(Ok(answer)));
        }
        let Some(engine) = self.engine() else {
            let why = match self.engine {
                EngineState::Starting => "the job queues are opening",
                _ => "the job queues are not open: the cluster's Redis is not healthy",
            };
            return Box::pin(std::future::ready(Err(JobsFailure::unavailable(why))));
        };
        let changes_counts = !matches!(
            call.command,
            JobsCommand::List | JobsCommand::QueuesSnapshot
        );
        let answer = engine.command(call.command, call.payload);
        let me = ctx.address();
        Box::pin(async move {
            let result = answer.await;
            if changes_counts {
                me.do_send(RefreshSoon);
            }
            result
        })
    }
}

/// Read the availability again soon (after a command changed counts).
#[derive(Message)]
#[rtype(result = "()")]
struct RefreshSoon;

impl Handler<RefreshSoon> for JobsActor {
    type Result = ();
    fn handle(&mut self, _: RefreshSoon, ctx: &mut Self::Context) {
        self.refresh_soon(ctx);
    }
}

impl Handler<StopChild> for JobsActor {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        match std::mem::replace(&mut self.engine, EngineState::Idle) {
            EngineState::Running(engine) => {
                engine
                    .shutdown(ENGINE_STOP)
                    .into_actor(self)
                    .map(|(), _act, ctx| ctx.stop())
                    .wait(ctx);
            }
            _ => ctx.stop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::status::JobStatus;

    #[test]
    fn role_decides_compute() {
        assert_eq!(role_of(&json!({})), (None, true));
        let storage = json!({"roleConfig": {"effectiveRole": "storage-server"}});
        assert_eq!(role_of(&storage), (Some("storage-server".into()), false));
        let draining = json!({
            "roleConfig": {"effectiveRole": "cluster", "draining": {"compute": true, "storage": false}},
            "effectiveCapabilities": {"compute": true, "storage": true}
        });
        assert_eq!(role_of(&draining), (Some("cluster".into()), false));
        let caps = json!({"roleConfig": {"effectiveRole": "cluster"}, "effectiveCapabilities": {"compute": false}});
        assert!(!role_of(&caps).1);
        let plain = json!({"roleConfig": {"effectiveRole": "compute-node", "draining": {"compute": false}}});
        assert_eq!(role_of(&plain), (Some("compute-node".into()), true));
    }

    #[test]
    fn reports_carry_the_credentials_and_the_reference_type() {
        let ev = JobStatusEvent::for_job(
            QueueName::SshImport,
            "j1",
            &json!({"teamId": "t", "trajectoryId": "tr"}),
            JobStatus::Completed,
            None,
        )
        .remove(0);
        let msg = report_message(&ev, "c1", "pw");
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            v,
            json!({"type": "ssh-import-job-status", "teamClusterId": "c1", "daemonPassword": "pw",
                   "jobId": "j1", "teamId": "t", "trajectoryId": "tr", "status": "completed"})
        );
    }

    #[test]
    fn the_registry_client_becomes_a_queue_target() {
        let client =
            ::redis::Client::open("redis://volt:secret@127.0.0.1:6390/0").expect("a valid URL");
        let t = redis_target(&client).unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 6390);
        assert_eq!(t.username.as_deref(), Some("volt"));
        assert_eq!(t.password.as_deref(), Some("secret"));
        assert_eq!(t.db, 0);
    }
}
