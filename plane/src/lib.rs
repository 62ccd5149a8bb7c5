//! volt-plane: a light, real, persistent VOLT control plane.
//!
//! It implements the server side of the reference VOLT server's daemon
//! protocol ("Gen B": enrollment and install manifest over HTTP, one
//! socket.io control channel with `team-cluster-daemon:*` events) so that a
//! daemon that works against it works against the real server, plus a small
//! person-facing HTTP API under `/api/clusters`.
//!
//! Run it with `volt-plane serve`, or in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), volt_plane::PlaneError> {
//! let plane = volt_plane::start(volt_plane::PlaneConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..Default::default()
//! })
//! .await?;
//! let created = plane.create_cluster(Default::default()).await?;
//! println!("{}", created.voltd_command);
//! plane.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Module map: `store` records and DTO, `lifecycle` status
//! rules, `persist` data file, `reverse_channel` server→daemon requests,
//! `socket` socket.io wiring, `daemon_commands` daemon→server commands,
//! `http` routes, `manifest` install files, `listener` cuttable TCP.
#![forbid(unsafe_code)]

mod clock;
mod credentials;
mod daemon_commands;
mod error;
mod http;
mod lifecycle;
mod listener;
mod manifest;
mod persist;
mod plane;
mod reverse_channel;
mod socket;
mod store;

pub use clock::Timestamp;
pub use credentials::{ServiceAccount, ServiceCredentials};
pub use error::PlaneError;
pub use plane::{
    ClusterListEntry, ClusterView, CreateClusterRequest, CreatedCluster, DeleteOutcome,
    RegeneratedToken,
};
pub use reverse_channel::{DaemonReply, SessionSubscription};
pub use store::{ServiceDto, ServicesDto, StatusChange, StatusSource, TeamClusterDto};
pub use volt_protocol::envelope::{Message, ResponseMessage, ResponseType};

pub(crate) use plane::Plane;

use listener::{ConnInfo, ConnRegistry, TrackedListener};
use persist::PersistSignal;
use reverse_channel::Channels;
use socketioxide::SocketIo;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where `volt-plane serve` listens by default: loopback only, since the
/// HTTP API is unauthenticated and the data file holds passwords.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// The reference's `TEAM_CLUSTER_HEARTBEAT_TIMEOUT_MS`: six missed 10 s
/// heartbeats before a cluster counts as disconnected.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// The reference's `TEAM_CLUSTER_HEARTBEAT_SWEEP_INTERVAL_MS`.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(15);
/// The reference's server→daemon command timeout.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The reference's wait for a daemon to (re)register before a command
/// fails with `TeamCluster::DaemonUnavailable`.
pub const DEFAULT_DAEMON_WAIT: Duration = Duration::from_secs(30);
/// The reference's `TEAM_CLUSTER_DELETE_TIMEOUT_MS`.
pub const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(120);
/// The reference's `TEAM_CLUSTER_UPDATE_TIMEOUT_MS`.
pub const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long shutdown waits for cut daemon sockets to be processed.
const DISCONNECT_SETTLE: Duration = Duration::from_secs(1);
/// How long shutdown waits for in-flight HTTP requests before it aborts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Configuration of a plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// JSON file the cluster records persist to; `None` keeps them in memory.
    pub data_file: Option<PathBuf>,
    /// URL daemons and installers reach the plane at (`VOLT_CLOUD_URL`);
    /// `http://<bound address>` when `None`.
    pub public_url: Option<String>,
    /// No heartbeat for this long → `disconnected`.
    pub heartbeat_timeout: Duration,
    /// How often heartbeat/delete/update timeouts are checked.
    pub sweep_interval: Duration,
    /// Default wait for a daemon's reply to a command.
    pub command_timeout: Duration,
    /// How long a command waits for a daemon to register before
    /// `TeamCluster::DaemonUnavailable` (409).
    pub daemon_wait: Duration,
    /// `deleting` for longer than this → `delete-failed`.
    pub delete_timeout: Duration,
    /// `updating` for longer than this → `update-failed`.
    pub update_timeout: Duration,
}

impl Default for PlaneConfig {
    fn default() -> Self {
        PlaneConfig {
            listen: DEFAULT_LISTEN,
            data_file: None,
            public_url: None,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            daemon_wait: DEFAULT_DAEMON_WAIT,
            delete_timeout: DEFAULT_DELETE_TIMEOUT,
            update_timeout: DEFAULT_UPDATE_TIMEOUT,
        }
    }
}

impl PlaneConfig {
    fn validate(&self) -> Result<(), PlaneError> {
        for (name, d) in [
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("sweep_interval", self.sweep_interval),
            ("command_timeout", self.command_timeout),
            ("delete_timeout", self.delete_timeout),
            ("update_timeout", self.update_timeout),
        ] {
            if d.is_zero() {
                return Err(PlaneError::InvalidInput(format!(
                    "{name} must be greater than zero"
                )));
            }
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(PlaneError::InvalidInput(format!(
                "public URL must start with http:// or https://: {url}"
            )));
        }
        Ok(())
    }
}

/// A running plane. Dropping it without [`PlaneHandle::shutdown`] stops the
/// tasks too, but only `shutdown` waits for the port to be free and the
/// data file to be flushed.
pub struct PlaneHandle {
    plane: Arc<Plane>,
    addr: SocketAddr,
    io: SocketIo,
    conns: Arc<ConnRegistry>,
    stop: watch::Sender<bool>,
    stop_persister: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
    persister: Option<JoinHandle<()>>,
}

/// Starts a plane: loads the data file, binds, serves HTTP + socket.io,
/// runs the heartbeat sweeper and the persister.
pub async fn start(cfg: PlaneConfig) -> Result<PlaneHandle, PlaneError> {
    cfg.validate()?;
    let records = match &cfg.data_file {
        Some(p) => persist::load(p)?,
        None => Vec::new(),
    };
    let loaded = records.len();
    let signal = Arc::new(PersistSignal::new(cfg.data_file.is_some()));
    let store = Arc::new(Store::new(records, signal.clone()));
    let restarted = store.disconnect_all_after_restart();

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| PlaneError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| PlaneError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let public_url = cfg
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{addr}"));

    // Write once now: a data file that cannot be written is a startup
    // error, not a surprise at the first change.
    if let Some(path) = &cfg.data_file {
        let bytes = store
            .snapshot_json()
            .map_err(|e| PlaneError::Internal(e.to_string()))?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || persist::write_atomic(&target, &bytes))
            .await
            .map_err(|e| PlaneError::Internal(e.to_string()))?
            .map_err(|source| PlaneError::DataFile {
                path: path.clone(),
                source,
            })?;
    }

    let data_file = cfg.data_file.clone();
    let plane = Arc::new(Plane {
        cfg,
        public_url,
        store: store.clone(),
        channels: Arc::new(Channels::default()),
    });
    let (sio_layer, io) = socket::layer(plane.clone());
    let app = http::router(plane.clone()).layer(sio_layer);

    let conns = Arc::new(ConnRegistry::default());
    let (stop, stop_rx) = watch::channel(false);
    let (stop_persister, stop_persister_rx) = watch::channel(false);

    let mut server_stop = stop_rx.clone();
    let tracked = TrackedListener::new(listener, conns.clone());
    let server = tokio::spawn(async move {
        let res = axum::serve(
            tracked,
            app.into_make_service_with_connect_info::<ConnInfo>(),
        )
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|v| *v).await;
        })
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "HTTP server failed.");
        }
    });
    let sweeper = tokio::spawn(run_sweeper(plane.clone(), stop_rx));
    let persister = data_file.map(|path| {
        tokio::spawn(persist::run(
            store.clone(),
            signal.clone(),
            path,
            stop_persister_rx,
        ))
    });

    tracing::info!(%addr, public_url = %plane.public_url, clusters = loaded, marked_disconnected = restarted, "Control plane listening.");
    Ok(PlaneHandle {
        plane,
        addr,
        io,
        conns,
        stop,
        stop_persister,
        server: Some(server),
        sweeper: Some(sweeper),
        persister,
    })
}

async fn run_sweeper(plane: Arc<Plane>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(plane.cfg.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let cfg = &plane.cfg;
                plane.store.sweep(cfg.heartbeat_timeout, cfg.delete_timeout, cfg.update_timeout);
            }
            _ = stop.wait_for(|v| *v) => break,
        }
    }
}

impl PlaneHandle {
    /// The bound address (the real port when `listen` used port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<bound address>`: where local clients and tests connect.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL put in install commands and manifests (`VOLT_CLOUD_URL`).
    pub fn public_url(&self) -> &str {
        &self.plane.public_url
    }

    /// Creates a cluster, exactly as `POST /api/clusters`.
    pub async fn create_cluster(
        &self,
        req: CreateClusterRequest,
    ) -> Result<CreatedCluster, PlaneError> {
        self.plane.create_cluster(req)
    }

    /// Sends a server→daemon command (waiting up to `daemon_wait` for a
    /// daemon) and returns its reply. `timeout` defaults to
    /// `command_timeout`; for streams it bounds each silence.
    pub async fn send_command(
        &self,
        cluster_id: &str,
        command: &str,
        payload: serde_json::Value,
        response_type: ResponseType,
        timeout: Option<Duration>,
    ) -> Result<DaemonReply, PlaneError> {
        self.plane
            .send_command(cluster_id, command, &payload, response_type, timeout)
            .await
    }

    /// A snapshot of one cluster.
    pub fn cluster(&self, id: &str) -> Option<ClusterView> {
        self.plane.view(id)
    }

    /// Every cluster, oldest first.
    pub fn clusters(&self) -> Vec<ClusterListEntry> {
        self.plane.list()
    }

    /// Cuts the registered daemon's connection like a network failure
    /// would; returns once the plane has processed the disconnect. False if
    /// no daemon was registered.
    pub async fn disconnect_daemon(&self, id: &str) -> bool {
        self.plane.disconnect_daemon(id).await
    }

    /// Emits one envelope (e.g. `session-input`) to the cluster's daemon.
    pub fn send_message(&self, cluster_id: &str, message: &Message) -> Result<(), PlaneError> {
        self.plane.send_message(cluster_id, message)
    }

    /// Receives the `session-*` / `tunnel-*` messages of one session (the
    /// hook a terminal relay plugs into).
    pub fn subscribe_session(&self, session_id: &str) -> SessionSubscription {
        self.plane.subscribe_session(session_id)
    }

    /// A new enrollment token, as `POST …/enrollment-token/regenerate`.
    pub fn regenerate_enrollment_token(&self, id: &str) -> Result<RegeneratedToken, PlaneError> {
        self.plane.regenerate_token(id)
    }

    /// As `POST /api/clusters/{id}/delete-requests`.
    pub async fn request_delete(&self, id: &str) -> Result<DeleteOutcome, PlaneError> {
        self.plane.request_delete(id).await
    }

    /// As `POST /api/clusters/{id}/update-requests`.
    pub async fn request_update(
        &self,
        id: &str,
        target_version: &str,
        is_edge: bool,
    ) -> Result<TeamClusterDto, PlaneError> {
        self.plane.request_update(id, target_version, is_edge).await
    }

    /// Stops the listener and the sweeper, cuts every connection (daemons
    /// see a network failure and will reconnect to whatever listens next),
    /// and flushes the data file. The port is free when this returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.conns.kill_all();
        for conn in self.plane.channels.all() {
            conn.cut();
        }
        // Let the disconnect handlers record `socket-close` so the final
        // flush below has it.
        let settle = tokio::time::Instant::now() + DISCONNECT_SETTLE;
        while !self.plane.channels.all().is_empty() && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Engine.IO sessions on the polling transport have no TCP
        // connection to cut; close whatever is left.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.close()).await;
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
        if let Some(sweeper) = self.sweeper.take() {
            let _ = sweeper.await;
        }
        let _ = self.stop_persister.send(true);
        if let Some(persister) = self.persister.take() {
            let _ = persister.await;
        }
        tracing::info!(addr = %self.addr, "Control plane stopped.");
    }
}

impl Drop for PlaneHandle {
    fn drop(&mut self) {
        if self.server.is_none() {
            return;
        }
        let _ = self.stop.send(true);
        let _ = self.stop_persister.send(true);
        self.conns.kill_all();
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}
