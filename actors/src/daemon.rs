//! Assembling and running the actor tree.
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
//! `rest_for_one` in the cloud subtree: a dispatcher restart takes the
//! socket and heartbeat along (they hold its link state); a socket restart
//! takes the heartbeat along; nothing there restarts monitoring or status.
//! Sessions come last: a socket or dispatcher restart ends them, which is
//! right since sessions end when the control socket drops anyway.

use crate::admin::Admin;
use crate::cloud::control_socket::ControlSocket;
use crate::cloud::credentials::UNINSTALLED_MARKER;
use crate::cloud::dispatch::Dispatcher;
use crate::cloud::enrollment::{ENROLL_HTTP_TIMEOUT, Enrollment};
use crate::cloud::heartbeat::Heartbeat;
use crate::cloud::tls;
use crate::events::EventBus;
use crate::exit::ExitCode;
use crate::host::monitoring::Monitoring;
use crate::peers::Peers;
use crate::remote::terminal::Sessions;
use crate::remote::{HandlerContext, Reply};
use crate::settings::Settings;
use crate::status::StatusActor;
use crate::supervisor::{
    ChildSpec, Restart, Shutdown, Strategy, Supervisor, SupervisorSpec, spawn_actor,
};
use actix::Addr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Builds the supervision tree for `settings`.
pub fn build(
    settings: Arc<Settings>,
    peers: &Peers,
    bus: &EventBus,
) -> Result<SupervisorSpec, String> {
    tls::install_default_provider();
    let tls = tls::client_config(settings.socket.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let http = tls::http_client(&tls, ENROLL_HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    let handlers = Rc::new(HandlerContext {
        settings: settings.clone(),
        peers: peers.clone(),
        bus: bus.clone(),
        started: tokio::time::Instant::now(),
    });

    let cloud = {
        let (s1, p1, h1) = (settings.clone(), peers.clone(), http.clone());
        let (p2, h2) = (peers.clone(), handlers.clone());
        let (s3, p3, t3) = (settings.clone(), peers.clone(), tls.clone());
        let (s4, p4) = (settings.clone(), peers.clone());
        let (s5, p5) = (settings.clone(), peers.clone());
        SupervisorSpec::new("cloud", Strategy::RestForOne)
            .intensity(settings.intensity)
            .child(ChildSpec::new(
                "enrollment",
                Restart::Transient,
                move |env| {
                    let actor = Enrollment::new(
                        s1.clone(),
                        h1.clone(),
                        p1.clone(),
                        env.bus.clone(),
                        env.exit.clone(),
                    );
                    Ok(spawn_actor(actor).1)
                },
            ))
            .child(ChildSpec::new(
                "dispatcher",
                Restart::Permanent,
                move |env| {
                    let (addr, running) = spawn_actor(Dispatcher::new(
                        h2.clone(),
                        env.bus.clone(),
                        env.exit.clone(),
                    ));
                    p2.set_dispatcher(addr);
                    Ok(running)
                },
            ))
            .child(ChildSpec::new(
                "control-socket",
                Restart::Permanent,
                move |env| {
                    let actor = ControlSocket::new(
                        s3.clone(),
                        t3.clone(),
                        p3.clone(),
                        env.bus.clone(),
                        env.exit.clone(),
                    );
                    Ok(spawn_actor(actor).1)
                },
            ))
            .child(ChildSpec::new(
                "heartbeat",
                Restart::Permanent,
                move |env| {
                    let (addr, running) = spawn_actor(Heartbeat::new(
                        s4.clone(),
                        p4.clone(),
                        env.bus.clone(),
                        env.exit.clone(),
                    ));
                    p4.set_heartbeat(addr);
                    Ok(running)
                },
            ))
            .child(ChildSpec::new("sessions", Restart::Permanent, move |env| {
                let (addr, running) = spawn_actor(Sessions::new(
                    s5.terminal.clone(),
                    p5.clone(),
                    env.bus.clone(),
                    env.exit.clone(),
                ));
                p5.set_sessions(addr);
                Ok(running)
            }))
    };

    let (s_admin, p_admin) = (settings.clone(), peers.clone());
    let (s_mon, p_mon) = (settings.clone(), peers.clone());
    let (s_status, p_status) = (settings.clone(), peers.clone());
    settings.services.validate()?;
    let expected_services: Vec<String> = settings
        .services
        .enabled()
        .into_iter()
        .map(|k| k.name().to_owned())
        .collect();
    let service_views = peers.services().clone();
    let root = SupervisorSpec::new("root", Strategy::OneForOne)
        .intensity(settings.intensity)
        .child(ChildSpec::new("admin", Restart::Permanent, move |env| {
            let actor = Admin::new(
                s_admin.admin_socket.clone(),
                p_admin.clone(),
                env.bus.clone(),
                env.exit.clone(),
            );
            Ok(spawn_actor(actor).1)
        }))
        .child(ChildSpec::new(
            "monitoring",
            Restart::Permanent,
            move |env| {
                let (addr, running) =
                    spawn_actor(Monitoring::new(s_mon.disk_path.clone(), env.exit.clone()));
                p_mon.set_monitoring(addr);
                Ok(running)
            },
        ))
        .child(ChildSpec::new("status", Restart::Permanent, move |env| {
            let views = service_views.clone();
            let actor = StatusActor::new(
                s_status.clone(),
                expected_services.clone(),
                Box::new(move || views.details()),
                p_status.clone(),
                env.bus.clone(),
                env.exit.clone(),
            );
            let (addr, running) = spawn_actor(actor);
            p_status.set_status(addr);
            Ok(running)
        }));
    // The services start before the cloud subtree (the server may call
    // them as soon as the daemon registers) and stop after it.
    let root = match crate::services::child_spec(&settings, peers.services()) {
        Some(services) => root.child(services),
        None => root,
    };
    Ok(root.child(cloud.into_child(Restart::Permanent)))
}

/// A running daemon (in this process's actix system).
pub struct DaemonHandle {
    pub peers: Peers,
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
        self.peers.extensions().register(command, handler);
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
    let peers = Peers::new();
    let spec = build(Arc::new(settings), &peers, &bus).map_err(StartError::Config)?;
    let (root, exit) = spec.start_root(bus.clone());
    peers.set_root(root.clone());
    Ok(DaemonHandle {
        peers,
        bus,
        root,
        exit,
    })
}
