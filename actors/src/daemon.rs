//! Assembling and running the actor tree — the only file that names every
//! actor. It creates the shared handles, gives each actor the ones it needs
//! through its constructor, and each serving actor binds itself to its
//! handle when it (re)starts. There is no directory of actors.
//!
//! ```text
//! root (one_for_one)
//! ├── admin           local Unix socket: voltd status / voltd logs
//! ├── monitoring      host metrics sampler
//! ├── status          status state machine, lifecycle reports
//! ├── services (one_for_one; only the enabled ones)
//! │   ├── redis           redis-server: run, probe, bootstrap, restart
//! │   ├── mongo           mongod: provision, run, probe, bootstrap, restart
//! │   └── minio           minio server: run, probe, buckets, restart
//! ├── jobs            job queues and worker pools (once Redis is healthy)
//! └── cloud (rest_for_one)
//!     ├── enrollment      credentials (transient: ends when done)
//!     ├── dispatcher      reverse-channel dispatch, outbound commands
//!     ├── control-socket  socket.io connection, register, reconnect
//!     ├── heartbeat       runtime.heartbeat every interval
//!     └── sessions        host terminal sessions (PTY + shell each)
//! ```
//!
//! Who uses which handle:
//!
//! | handle | served by | used by |
//! |---|---|---|
//! | `Outbox` | dispatcher | heartbeat, status, lifecycle, sessions, handlers |
//! | `Handle<SocketEvent>` | dispatcher | control socket |
//! | `Router` (`session-*`) | sessions | dispatcher |
//! | `CredentialsCell` | enrollment (publishes) | control socket, heartbeat, status, lifecycle |
//! | `Handle<Sample>` | monitoring | heartbeat |
//! | `Handle<GetSnapshot>` | status | admin, `runtime.status` |
//! | `Handle<Attach>`, `Handle<ListSessions>` | sessions | `session.attach`; tests |
//! | `Handle<Shutdown>` | root supervisor | lifecycle (`runtime.uninstall/update/restart`) |
//! | `ServiceRegistry` | service actors | status, handlers, lifecycle, jobs |
//! | `Handle<JobsCall>` | jobs | `queue.dispatch`, `jobs.*` handlers |
//! | `ExecutorRegistry` | embedder (`register_executor`) | jobs |
//! | `Announced` | status (from `registered`) | status and lifecycle reports |
//!
//! Start-up ([`start`]) also settles updates: the running release's version
//! is the `installedVersion`; a release on trial arms its rollback
//! watchdog; readiness goes to systemd at the first registration
//! (`status::lifecycle::after_start`).
//!
//! `rest_for_one` in the cloud subtree: a dispatcher restart takes the
//! socket and heartbeat along (they hold its link state); a socket restart
//! takes the heartbeat along; nothing there restarts monitoring or status.
//! Sessions come last: a socket or dispatcher restart ends them, which is
//! right since sessions end when the control socket drops anyway.
//!
//! `jobs` starts after the services and stops before them (its running
//! jobs go back to waiting in Redis before Redis stops), and after the
//! cloud subtree has stopped (no new commands).

use crate::admin::Admin;
use crate::api::{CredentialsCell, Handle, JobsCall, Outbox, Reply, Router, SocketEvent};
use crate::cloud::control_socket::ControlSocket;
use crate::cloud::credentials::UNINSTALLED_MARKER;
use crate::cloud::dispatch::{DispatchSettings, Dispatcher};
use crate::cloud::enrollment::{ENROLL_HTTP_TIMEOUT, Enrollment};
use crate::cloud::heartbeat::Heartbeat;
use crate::cloud::tls;
use crate::config::InstalledVersion;
use crate::config::Settings;
use crate::events::EventBus;
use crate::host::monitoring::{Monitoring, Sample};
use crate::host::notify::Notifier;
use crate::jobs::{Executor, ExecutorRegistry, JobsActor, JobsWiring, QueueName};
use crate::remote::terminal::{Attach, ListSessions, Sessions, TerminalWiring};
use crate::remote::{self, ExtensionRegistry, HandlerContext};
use crate::services::ServiceRegistry;
use crate::status::lifecycle::{Lifecycle, StartupUpdate, after_start};
use crate::status::{Announced, GetSnapshot, StatusActor, StatusWiring};
use crate::update::install::InstallLayout;
use crate::update::marker::{self, Startup, TrialWatchdog};
use actix::Addr;
use otp::ExitCode;
use otp::supervisor::{
    ChildSpec, Restart, Shutdown, Strategy, Supervisor, SupervisorSpec, spawn_actor,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Every handle of one daemon (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Wiring {
    pub bus: EventBus,
    pub outbox: Outbox,
    pub router: Router,
    pub credentials: CredentialsCell,
    pub services: ServiceRegistry,
    pub extensions: ExtensionRegistry,
    pub socket_events: Handle<SocketEvent>,
    pub samples: Handle<Sample>,
    pub snapshots: Handle<GetSnapshot>,
    pub attach: Handle<Attach>,
    pub sessions: Handle<ListSessions>,
    pub jobs: Handle<JobsCall>,
    pub executors: ExecutorRegistry,
    pub root: Handle<Shutdown>,
    pub announced: Announced,
}

impl Wiring {
    pub fn new(bus: EventBus) -> Self {
        Wiring {
            bus,
            outbox: Outbox::default(),
            router: Router::default(),
            credentials: CredentialsCell::default(),
            services: ServiceRegistry::default(),
            extensions: ExtensionRegistry::default(),
            socket_events: Handle::new("the dispatcher"),
            samples: Handle::new("monitoring"),
            snapshots: Handle::new("the status machine"),
            attach: Handle::new("terminal sessions"),
            sessions: Handle::new("terminal sessions"),
            jobs: Handle::new("the job queues"),
            executors: ExecutorRegistry::default(),
            root: Handle::new("the root supervisor"),
            announced: Announced::default(),
        }
    }
}

/// The runtime actions' context (uninstall, update, start-up reports).
pub fn lifecycle(settings: Arc<Settings>, w: &Wiring) -> Rc<Lifecycle> {
    Rc::new(Lifecycle {
        settings,
        bus: w.bus.clone(),
        outbox: w.outbox.clone(),
        credentials: w.credentials.clone(),
        services: w.services.clone(),
        root: w.root.clone(),
        announced: w.announced.clone(),
        updating: Cell::new(false),
    })
}

/// The command families' context: what every handler may reach (one
/// place, so the daemon and the dispatcher fuzz target wire it alike).
pub fn handler_context(
    settings: Arc<Settings>,
    w: &Wiring,
    lifecycle: Rc<Lifecycle>,
) -> Rc<HandlerContext> {
    Rc::new(HandlerContext {
        settings,
        bus: w.bus.clone(),
        started: tokio::time::Instant::now(),
        outbox: w.outbox.clone(),
        credentials: w.credentials.clone(),
        services: w.services.clone(),
        status: w.snapshots.clone(),
        terminal: w.attach.clone(),
        jobs: w.jobs.clone(),
        lifecycle,
        extensions: w.extensions.clone(),
        host_files: Default::default(),
    })
}

/// Builds the supervision tree for `settings`.
pub fn build(
    settings: Arc<Settings>,
    w: &Wiring,
    lifecycle: Rc<Lifecycle>,
) -> Result<SupervisorSpec, String> {
    tls::install_default_provider();
    let tls = tls::client_config(settings.socket.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let http = tls::http_client(&tls, ENROLL_HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    settings.validate()?;
    let native = settings
        .services
        .enabled()
        .into_iter()
        .any(|k| settings.services.get(k).mode == crate::config::ServiceMode::Native);
    if native {
        // A bad catalogue file or mirror is a configuration error (exit 1),
        // not a service failure found minutes later.
        crate::provision::source::catalogue(&settings)?;
    }

    let handlers = remote::command_handler(handler_context(settings.clone(), w, lifecycle));

    let cloud = {
        let (s, w0) = (settings.clone(), w.clone());
        let enrollment = ChildSpec::new("enrollment", Restart::Transient, move |env| {
            let actor = Enrollment::new(
                s.clone(),
                http.clone(),
                w0.credentials.clone(),
                w0.bus.clone(),
                env.exit.clone(),
            );
            Ok(spawn_actor(actor).1)
        });
        let (s, w2) = (settings.clone(), w.clone());
        let dispatcher = ChildSpec::new("dispatcher", Restart::Permanent, move |env| {
            let actor = Dispatcher::new(
                handlers.clone(),
                w2.router.clone(),
                w2.outbox.clone(),
                DispatchSettings {
                    emit_buffer: s.socket.emit_buffer,
                    command_timeout: s.socket.command_timeout,
                },
                w2.bus.clone(),
                env.exit.clone(),
            )
            .with_limits((&s.commands).into());
            let (addr, running) = spawn_actor(actor);
            w2.socket_events.bind(addr);
            Ok(running)
        });
        let (s, w3, t) = (settings.clone(), w.clone(), tls.clone());
        let socket = ChildSpec::new("control-socket", Restart::Permanent, move |env| {
            let actor = ControlSocket::new(
                s.clone(),
                t.clone(),
                w3.credentials.clone(),
                w3.socket_events.clone(),
                w3.bus.clone(),
                env.exit.clone(),
            );
            Ok(spawn_actor(actor).1)
        });
        let (s, w4) = (settings.clone(), w.clone());
        let heartbeat = ChildSpec::new("heartbeat", Restart::Permanent, move |env| {
            let actor = Heartbeat::new(
                s.clone(),
                w4.outbox.clone(),
                w4.credentials.clone(),
                w4.samples.clone(),
                w4.bus.clone(),
                env.exit.clone(),
            );
            Ok(spawn_actor(actor).1)
        });
        let (s, w5) = (settings.clone(), w.clone());
        let sessions = ChildSpec::new("sessions", Restart::Permanent, move |env| {
            let wiring = TerminalWiring {
                outbox: w5.outbox.clone(),
                router: w5.router.clone(),
                attach: w5.attach.clone(),
                list: w5.sessions.clone(),
                bus: w5.bus.clone(),
            };
            let actor = Sessions::new(s.terminal.clone(), wiring, env.exit.clone());
            Ok(spawn_actor(actor).1)
        });
        SupervisorSpec::new("cloud", Strategy::RestForOne)
            .intensity(settings.supervisor.intensity())
            .child(enrollment)
            .child(dispatcher)
            .child(socket)
            .child(heartbeat)
            .child(sessions)
    };

    let (s, w1) = (settings.clone(), w.clone());
    let admin = ChildSpec::new("admin", Restart::Permanent, move |env| {
        let actor = Admin::new(
            s.admin_socket(),
            w1.snapshots.clone(),
            w1.bus.clone(),
            env.exit.clone(),
        );
        Ok(spawn_actor(actor).1)
    });
    let (s, w2) = (settings.clone(), w.clone());
    let monitoring = ChildSpec::new("monitoring", Restart::Permanent, move |env| {
        let actor = Monitoring::new(s.disk_path.clone(), w2.samples.clone(), env.exit.clone());
        Ok(spawn_actor(actor).1)
    });
    let expected_services = settings.services.enabled();
    let (s, w3) = (settings.clone(), w.clone());
    let status = ChildSpec::new("status", Restart::Permanent, move |env| {
        let views = w3.services.clone();
        let actor = StatusActor::new(
            s.clone(),
            expected_services.clone(),
            Box::new(move || views.details()),
            StatusWiring {
                outbox: w3.outbox.clone(),
                credentials: w3.credentials.clone(),
                snapshots: w3.snapshots.clone(),
                bus: w3.bus.clone(),
                announced: w3.announced.clone(),
            },
            env.exit.clone(),
        );
        Ok(spawn_actor(actor).1)
    });
    let root = SupervisorSpec::new("root", Strategy::OneForOne)
        .intensity(settings.supervisor.intensity())
        .child(admin)
        .child(monitoring)
        .child(status);
    // The services start before the cloud subtree (the server may call
    // them as soon as the daemon registers) and stop after it.
    let root = match crate::services::child_spec(&settings, &w.services, &w.bus) {
        Some(services) => root.child(services),
        None => root,
    };
    let (s, w4) = (settings.clone(), w.clone());
    let jobs = ChildSpec::new("jobs", Restart::Permanent, move |env| {
        let wiring = JobsWiring {
            outbox: w4.outbox.clone(),
            credentials: w4.credentials.clone(),
            services: w4.services.clone(),
            calls: w4.jobs.clone(),
            executors: w4.executors.clone(),
            bus: w4.bus.clone(),
        };
        Ok(spawn_actor(JobsActor::new(s.clone(), wiring, env.exit.clone())).1)
    })
    .shutdown_timeout(crate::jobs::actor::SHUTDOWN_TIMEOUT);
    Ok(root.child(jobs).child(cloud.into_child(Restart::Permanent)))
}

/// A running daemon (in this process's actix system).
pub struct DaemonHandle {
    pub wiring: Wiring,
    pub bus: EventBus,
    pub root: Addr<Supervisor>,
    exit: oneshot::Receiver<ExitCode>,
    layout: InstallLayout,
    /// Armed while this process is a release on trial.
    trial: Rc<RefCell<Option<TrialWatchdog>>>,
}

impl DaemonHandle {
    /// Registers a command handler at run time (checked after the built-in
    /// families; survives reconnects and dispatcher restarts).
    pub fn register_handler<F, Fut>(&self, command: &str, handler: F)
    where
        F: Fn(serde_json::Value) -> Fut + 'static,
        Fut: std::future::Future<Output = Reply> + 'static,
    {
        self.wiring.extensions.register(command, handler);
    }

    /// Runs `executor` for the jobs of `queue` (one per queue; for a queue
    /// voltd has no executor for, or to replace the built-in one). Takes
    /// effect when the job queues open, or within `jobs::actor::REFRESH`
    /// if they are open already.
    pub fn register_executor(&self, queue: QueueName, executor: std::sync::Arc<dyn Executor>) {
        self.wiring.executors.register(queue, executor);
    }

    /// The managed services' registry (states, clients).
    pub fn services(&self) -> &ServiceRegistry {
        &self.wiring.services
    }

    /// Asks the tree to stop; `wait` then yields `code`.
    pub fn shutdown(&self, code: ExitCode, reason: &'static str) {
        self.root.do_send(Shutdown { code, reason });
    }

    /// Waits for the tree to end and returns the process exit code. A
    /// release on trial that ends with a code systemd would not restart
    /// (bad configuration, credentials rejected) rolls back first and
    /// exits with the updating code instead, so the previous release runs.
    pub async fn wait(self) -> ExitCode {
        let code = self.exit.await.unwrap_or(ExitCode::Retryable);
        let on_trial = self.trial.borrow_mut().take();
        if on_trial.is_none() || !matches!(code, ExitCode::Config | ExitCode::CredentialsRejected) {
            return code;
        }
        let layout = self.layout.clone();
        let reason = format!(
            "the new release stopped before registering: {}",
            code.describe()
        );
        match tokio::task::spawn_blocking(move || marker::rollback(&layout, &reason)).await {
            Ok(Ok(_)) => ExitCode::Updating,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Rollback failed.");
                code
            }
            Err(e) => {
                tracing::error!(error = %e, "The rollback task failed.");
                code
            }
        }
    }
}

/// Why the daemon did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The cluster was uninstalled from this host (exit 0, do not restart).
    Uninstalled(String),
    /// Bad configuration (exit 1).
    Config(String),
}

/// Starts the daemon in the current actix system.
pub fn start(mut settings: Settings) -> Result<DaemonHandle, StartError> {
    let uninstalled = settings.state_dir.join(UNINSTALLED_MARKER);
    if uninstalled.exists() {
        return Err(StartError::Uninstalled(format!(
            "this host's cluster was uninstalled ({} exists); remove that file to enroll again",
            uninstalled.display()
        )));
    }
    // The release this binary is (`<install_dir>/releases/<v>/voltd`) is
    // what the server compares with `targetVersion`, whatever version was
    // compiled in. Small blocking reads, before any actor runs.
    let layout = InstallLayout::new(
        settings.update.install_dir.to_path_buf(),
        settings.state_dir.clone(),
    );
    let running = layout.running_release();
    if let Some(v) = &running {
        tracing::info!(release = %v, install_dir = %layout.install_dir.display(), "Running an installed release.");
        match InstalledVersion::parse(v) {
            Ok(v) => settings.installed_version = v,
            Err(e) => {
                tracing::warn!(release = %v, error = %e, "Release name is not a valid installedVersion.")
            }
        }
    }
    let startup = marker::startup(&layout, running.as_deref());
    let register_deadline = settings.update.register_deadline;

    let bus = EventBus::default();
    let wiring = Wiring::new(bus.clone());
    let settings = Arc::new(settings);
    let lifecycle = lifecycle(settings.clone(), &wiring);
    let spec = build(settings, &wiring, lifecycle.clone()).map_err(StartError::Config)?;
    let (root, exit) = spec.start_root(bus.observer());
    wiring.root.bind(root.clone());

    let trial = Rc::new(RefCell::new(None));
    if let Startup::Trial { from, to } = &startup {
        tracing::info!(%from, %to, deadline_secs = register_deadline.as_secs(), "Running a new release on trial.");
        let addr = root.clone();
        match TrialWatchdog::spawn(
            layout.clone(),
            register_deadline,
            marker::ROLLBACK_EXIT_GRACE,
            move |_reason| {
                addr.do_send(Shutdown {
                    code: ExitCode::Updating,
                    reason: "the new release did not register in time; rolled back",
                })
            },
        ) {
            Ok(w) => *trial.borrow_mut() = Some(w),
            Err(e) => tracing::error!(error = %e, "Cannot arm the update watchdog."),
        }
    }
    actix_rt::spawn(after_start(
        lifecycle,
        StartupUpdate {
            layout: layout.clone(),
            startup,
            trial: trial.clone(),
        },
        Notifier::from_env(),
    ));
    Ok(DaemonHandle {
        wiring,
        bus,
        root,
        exit,
        layout,
        trial,
    })
}
