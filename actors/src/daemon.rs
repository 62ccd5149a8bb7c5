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
//! | `ServiceRegistry` | service actors | status, handlers, lifecycle |
//!
//! `rest_for_one` in the cloud subtree: a dispatcher restart takes the
//! socket and heartbeat along (they hold its link state); a socket restart
//! takes the heartbeat along; nothing there restarts monitoring or status.
//! Sessions come last: a socket or dispatcher restart ends them, which is
//! right since sessions end when the control socket drops anyway.

use crate::admin::Admin;
use crate::api::{CredentialsCell, Handle, Outbox, Reply, Router, SocketEvent};
use crate::cloud::control_socket::ControlSocket;
use crate::cloud::credentials::UNINSTALLED_MARKER;
use crate::cloud::dispatch::{DispatchSettings, Dispatcher};
use crate::cloud::enrollment::{ENROLL_HTTP_TIMEOUT, Enrollment};
use crate::cloud::heartbeat::Heartbeat;
use crate::cloud::tls;
use crate::config::Settings;
use crate::events::EventBus;
use crate::host::monitoring::{Monitoring, Sample};
use crate::remote::terminal::{Attach, ListSessions, Sessions, TerminalWiring};
use crate::remote::{self, ExtensionRegistry, HandlerContext};
use crate::services::ServiceRegistry;
use crate::status::lifecycle::Lifecycle;
use crate::status::{GetSnapshot, StatusActor, StatusWiring};
use actix::Addr;
use otp::ExitCode;
use otp::supervisor::{
    ChildSpec, Restart, Shutdown, Strategy, Supervisor, SupervisorSpec, spawn_actor,
};
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
    pub root: Handle<Shutdown>,
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
            root: Handle::new("the root supervisor"),
        }
    }
}

/// Builds the supervision tree for `settings`.
pub fn build(settings: Arc<Settings>, w: &Wiring) -> Result<SupervisorSpec, String> {
    tls::install_default_provider();
    let tls = tls::client_config(settings.socket.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let http = tls::http_client(&tls, ENROLL_HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    settings.validate()?;

    let lifecycle = Rc::new(Lifecycle {
        settings: settings.clone(),
        bus: w.bus.clone(),
        outbox: w.outbox.clone(),
        credentials: w.credentials.clone(),
        services: w.services.clone(),
        root: w.root.clone(),
    });
    let handlers = remote::command_handler(Rc::new(HandlerContext {
        settings: settings.clone(),
        bus: w.bus.clone(),
        started: tokio::time::Instant::now(),
        outbox: w.outbox.clone(),
        credentials: w.credentials.clone(),
        services: w.services.clone(),
        status: w.snapshots.clone(),
        terminal: w.attach.clone(),
        lifecycle,
        extensions: w.extensions.clone(),
        host_files: Default::default(),
    }));

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
    Ok(root.child(cloud.into_child(Restart::Permanent)))
}

/// A running daemon (in this process's actix system).
pub struct DaemonHandle {
    pub wiring: Wiring,
    pub bus: EventBus,
    pub root: Addr<Supervisor>,
    exit: oneshot::Receiver<ExitCode>,
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

    /// The managed services' registry (states, clients).
    pub fn services(&self) -> &ServiceRegistry {
        &self.wiring.services
    }

    /// Asks the tree to stop; `wait` then yields `code`.
    pub fn shutdown(&self, code: ExitCode, reason: &'static str) {
        self.root.do_send(Shutdown { code, reason });
    }

    /// Waits for the tree to end and returns the process exit code.
    pub async fn wait(self) -> ExitCode {
        self.exit.await.unwrap_or(ExitCode::Retryable)
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
pub fn start(settings: Settings) -> Result<DaemonHandle, StartError> {
    let marker = settings.state_dir.join(UNINSTALLED_MARKER);
    if marker.exists() {
        return Err(StartError::Uninstalled(format!(
            "this host's cluster was uninstalled ({} exists); remove that file to enroll again",
            marker.display()
        )));
    }
    let bus = EventBus::default();
    let wiring = Wiring::new(bus.clone());
    let spec = build(Arc::new(settings), &wiring).map_err(StartError::Config)?;
    let (root, exit) = spec.start_root(bus.observer());
    wiring.root.bind(root.clone());
    Ok(DaemonHandle {
        wiring,
        bus,
        root,
        exit,
    })
}
