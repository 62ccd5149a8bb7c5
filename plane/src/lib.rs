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
//! # Remote access (explorers, objects, host terminal)
//!
//! Each route is one daemon command; `$ID` is the cluster id. JSON replies
//! are `{"status":"success","data":…}`; a daemon failure keeps the daemon's
//! status and becomes `{"status":"error","code":…,"message":…}` (`code` is
//! the daemon's `data.code`, else `TeamCluster::DaemonRequestFailed`).
//!
//! Explorers (`{target}` = `mongo-documents`, `redis-data`, `minio`,
//! `host-files`; `path` defaults to the root):
//!
//! ```text
//! # entries under a path (remote.explorer.list)
//! curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/redis-data/entries?path=db/0"
//! # one node: documents, a value, a file's head (remote.explorer.node)
//! curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/mongo-documents/node?path=analyses"
//! # the whole thing, streamed, saved under the daemon's file name (remote.explorer.download)
//! curl -fsS -J -O "http://127.0.0.1:8080/api/clusters/$ID/explorer/minio/download?path=volt-dumps/a.bin"
//! ```
//!
//! Objects (the key is everything after the bucket, slashes included;
//! percent-encode spaces and the like):
//!
//! ```text
//! # keys of a bucket (object.list) → {"keys":[…]}
//! curl -s "http://127.0.0.1:8080/api/clusters/$ID/objects/volt-dumps?prefix=2024/"
//! # upload any bytes (object.upload, base64 on the wire) → {"uploaded":true}
//! curl -s -X PUT --data-binary @report.pdf \
//!   "http://127.0.0.1:8080/api/clusters/$ID/objects/volt-dumps/2024/my%20report.pdf"
//! # download, streamed (object.get); a missing object is 404
//! curl -fsS -o report.pdf "http://127.0.0.1:8080/api/clusters/$ID/objects/volt-dumps/2024/my%20report.pdf"
//! ```
//!
//! Uploads are limited to [`MAX_OBJECT_UPLOAD_BYTES`] (720 000 bytes): the
//! base64 body must fit in one socket.io packet ([`MAX_PAYLOAD`], 1 MB);
//! larger bodies get 413 with a message naming the limit.
//!
//! Downloads are streamed as the daemon's chunks arrive, with its status,
//! `content-type`, `content-disposition` and `content-length`. If the
//! daemon's stream fails (`stream-end` with a message), the daemon drops,
//! or the client reads so slowly that more than
//! [`PlaneConfig::stream_buffer_limit`] bytes wait for it, the body is cut
//! off and curl fails (exit 18, or 52 when nothing was sent yet) instead of
//! leaving a silently short file.
//!
//! Host terminal — a WebSocket (`session.attach` with `kind:"terminal",
//! terminalTarget:"host"`; optional query `rows` + `cols`, `sessionId`):
//!
//! ```text
//! # interactive: raw local tty, binary frames
//! stty raw -echo; websocat -b "ws://127.0.0.1:8080/api/clusters/$ID/terminal?rows=$(tput lines)&cols=$(tput cols)"; stty sane
//! # scripted
//! echo 'uname -a; exit' | websocat -b ws://127.0.0.1:8080/api/clusters/$ID/terminal
//! ```
//!
//! * client → plane: binary and text frames are keystrokes
//!   (`session-input`, `isBinary` per frame type); a text frame that is
//!   exactly `{"type":"resize","rows":R,"cols":C}` resizes the PTY
//!   (`session-resize`); closing the WebSocket detaches (`session-detach`,
//!   the daemon kills the shell).
//! * plane → client: output as binary frames; the shell's exit closes with
//!   `1000` and reason `exit <code>` (or the error text); a refused attach,
//!   no daemon, or a dropped daemon socket closes with `1011` and the
//!   reason; a client too slow for [`PlaneConfig::session_buffer_limit`]
//!   bytes of pending output is closed with `1013` and the session
//!   detached.
//!
//! The same operations are in the library API: [`PlaneHandle::request`],
//! [`PlaneHandle::open_stream`], [`PlaneHandle::attach_session`] /
//! [`PlaneHandle::attach_host_terminal`].
//!
//! Releases (`/downloads/`) and the installer routes are documented in
//! `releases` and `installer_http`; `volt-plane release publish --version V
//! FILE` signs a binary with the plane's key.
//!
//! Module map: `store` records and DTO, `lifecycle` status
//! rules, `persist` data file, `reverse_channel` server→daemon requests and
//! streams, `budget` bounded queues toward slow consumers, `session`
//! attached sessions, `socket` socket.io wiring, `daemon_commands`
//! daemon→server commands, `http` routes, `remote_http` explorer/object
//! routes, `terminal` the terminal WebSocket, `manifest` install files,
//! `listener` cuttable TCP.
#![forbid(unsafe_code)]

mod auth;
mod budget;
mod clock;
mod console;
mod credentials;
mod daemon_commands;
mod error;
mod events;
mod history;
mod http;
mod installer_http;
mod job_reports;
mod lifecycle;
mod listener;
mod manifest;
mod persist;
mod plane;
mod releases;
mod remote_http;
mod reverse_channel;
mod session;
mod socket;
mod store;
mod terminal;

pub use auth::{AdminToken, SESSION_COOKIE, SESSION_LIFETIME};
pub use clock::Timestamp;
pub use console::{XTERM_BUNDLED, XTERM_VERSION};
pub use credentials::{ServiceAccount, ServiceCredentials};
pub use daemon_commands::runtime_config;
pub use error::{DAEMON_REQUEST_FAILED, PlaneError};
pub use events::{EventKind, PlaneEvent};
pub use history::Series;
pub use installer_http::{INSTALL_PS1, INSTALL_SH, VOLTD_SERVICE};
pub use job_reports::{JobEventView, KEPT_JOB_EVENTS};
pub use plane::{
    ClusterListEntry, ClusterPage, ClusterView, CreateClusterRequest, CreatedCluster,
    DeleteOutcome, ListQuery, MAX_PAGE_SIZE, RegeneratedToken,
};
pub use releases::ReleaseStore;
pub use remote_http::MAX_OBJECT_UPLOAD_BYTES;
pub use reverse_channel::{DaemonReply, DaemonStream, SessionSubscription};
pub use session::{
    AttachedSession, SESSION_ATTACH_TIMEOUT, SESSION_INPUT_CHUNK, SessionEvent, describe_end,
};
pub use socket::MAX_PAYLOAD;
pub use store::{ServiceDto, ServicesDto, StatusChange, StatusSource, TeamClusterDto};
pub use terminal::{CLOSE_REASON_MAX, MAX_TERMINAL_FRAME};
pub use volt_protocol::envelope::{
    Message, ResponseMessage, ResponseType, SessionAttach, SessionEnd, SessionKind, TerminalTarget,
};

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
/// data file holds passwords and the daemon routes are open by design.
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
/// Bytes (base64 text) the plane queues for one streamed transfer (an HTTP
/// download) whose client reads slower than the daemon sends. About sixteen
/// maximal 1 MB chunks: rides out a client that pauses for a moment while
/// bounding memory per transfer; beyond it the transfer is aborted (see
/// [`PlaneError::BufferFull`]), since socketioxide cannot pause the daemon
/// socket's reader for one consumer.
pub const DEFAULT_STREAM_BUFFER_LIMIT: usize = 16 << 20;
/// Bytes (base64 text) of terminal output the plane queues for one
/// WebSocket client that reads slower than the shell writes. A few screens
/// of a fast flood; beyond it the terminal is closed (1013) and detached.
pub const DEFAULT_SESSION_BUFFER_LIMIT: usize = 4 << 20;
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
    /// Byte limit of what is queued for one streamed transfer.
    pub stream_buffer_limit: usize,
    /// Byte limit of what is queued for one attached session (the terminal
    /// relay); `subscribe_session` queues are unbounded.
    pub session_buffer_limit: usize,
    /// Directory of signed voltd releases served under `/downloads/`
    /// (see `releases`); `None` serves none.
    pub releases_dir: Option<PathBuf>,
    /// Announce `voltdExtensions` at registration (volt-plane's extensions,
    /// e.g. `reason` on lifecycle reports). Off, the plane behaves like a
    /// strict reference server: a `reason` key is refused.
    pub announce_extensions: bool,
    /// The admin token people log in with (kept in memory only). `None`:
    /// the one stored (hashed) in the data file, or a new one generated,
    /// stored and returned once by [`PlaneHandle::admin_token`].
    pub admin_token: Option<AdminToken>,
    /// Host names the console and person API answer to besides loopback,
    /// the listen address and the public URL's host (DNS-rebinding
    /// protection).
    pub allowed_hosts: Vec<String>,
    /// What `runtime.config.get` answers (queue concurrency, role);
    /// `None` plays a server that does not know the command (404
    /// `Unknown daemon server command`). Default: [`runtime_config`].
    pub runtime_config: Option<serde_json::Value>,
    /// Engine.IO `pingInterval` (the reference server's 25 s by default;
    /// tests of slow links shorten it to make a late pong visible).
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout`: a pong later than this drops the socket.
    pub ping_timeout: Duration,
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
            stream_buffer_limit: DEFAULT_STREAM_BUFFER_LIMIT,
            session_buffer_limit: DEFAULT_SESSION_BUFFER_LIMIT,
            releases_dir: None,
            announce_extensions: true,
            admin_token: None,
            allowed_hosts: Vec::new(),
            runtime_config: Some(runtime_config()),
            ping_interval: socket::PING_INTERVAL,
            ping_timeout: socket::PING_TIMEOUT,
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
            ("ping_interval", self.ping_interval),
            ("ping_timeout", self.ping_timeout),
        ] {
            if d.is_zero() {
                return Err(PlaneError::InvalidInput(format!(
                    "{name} must be greater than zero"
                )));
            }
        }
        for (name, limit) in [
            ("stream_buffer_limit", self.stream_buffer_limit),
            ("session_buffer_limit", self.session_buffer_limit),
        ] {
            if limit == 0 {
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
    /// The admin token when this process knows it (configured, or
    /// generated at this start).
    admin_token: Option<String>,
    /// The token was generated at this start (print it once).
    admin_token_generated: bool,
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
    let file = match &cfg.data_file {
        Some(p) => persist::load(p)?,
        None => persist::DataFile::default(),
    };
    let loaded = file.clusters.len();
    let signal = Arc::new(PersistSignal::new(cfg.data_file.is_some()));
    let events = Arc::new(events::EventLog::new());
    let store = Arc::new(Store::new(file.clusters, signal.clone(), events.clone()));
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

    let setup = auth::Auth::setup(
        cfg.admin_token.as_ref(),
        file.admin.as_ref(),
        addr,
        &public_url,
        &cfg.allowed_hosts,
    )?;
    let admin_token_generated = setup.new_record.is_some();
    store.set_admin(setup.new_record.or(file.admin));

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
    let cfg_session_buffer_limit = cfg.session_buffer_limit;
    let plane = Arc::new(Plane {
        cfg,
        public_url,
        store: store.clone(),
        channels: Arc::new(Channels::new(cfg_session_buffer_limit)),
        auth: setup.auth,
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
    events.emit(None, events::EventKind::PlaneStarted { clusters: loaded });
    Ok(PlaneHandle {
        plane,
        admin_token: setup.token,
        admin_token_generated,
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

    /// The admin token, when this process knows it: given in
    /// [`PlaneConfig::admin_token`], or generated at this start (a plane
    /// whose data file already holds a hashed token does not know it).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// True when this start generated the admin token (first start): show
    /// it to the operator once.
    pub fn admin_token_generated(&self) -> bool {
        self.admin_token_generated
    }

    /// An HTTP client for the person API: it sends the admin token as a
    /// bearer token when [`PlaneHandle::admin_token`] knows it. The one way
    /// tests, the journey and benchmarks authenticate.
    pub fn client(&self) -> reqwest::Client {
        auth::client(self.admin_token())
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

    /// Sends a JSON command and unwraps the reply to `(status, data.data)`;
    /// a daemon failure is [`PlaneError::DaemonRequestFailed`] with the
    /// daemon's status, code and message. The command frame must fit in one
    /// socket.io packet ([`MAX_PAYLOAD`]).
    pub async fn request(
        &self,
        cluster_id: &str,
        command: &str,
        payload: serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<(u16, serde_json::Value), PlaneError> {
        self.plane
            .request(cluster_id, command, &payload, timeout)
            .await
    }

    /// Sends a stream command (e.g. `object.get`) and returns once the
    /// daemon opened the stream; read the body chunk by chunk from the
    /// [`DaemonStream`]. `timeout` bounds every silence.
    pub async fn open_stream(
        &self,
        cluster_id: &str,
        command: &str,
        payload: serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<DaemonStream, PlaneError> {
        self.plane
            .open_stream(cluster_id, command, &payload, timeout)
            .await
    }

    /// Attaches a session with `session.attach` (`requestId` = the session
    /// id) and returns it once the daemon answered `{attached:true}`.
    pub async fn attach_session(
        &self,
        cluster_id: &str,
        attach: SessionAttach,
    ) -> Result<AttachedSession, PlaneError> {
        self.plane.attach_session(cluster_id, &attach).await
    }

    /// Attaches a host terminal under a new session id (UUID v4).
    pub async fn attach_host_terminal(
        &self,
        cluster_id: &str,
    ) -> Result<AttachedSession, PlaneError> {
        self.plane
            .attach_session(cluster_id, &terminal::host_terminal(None))
            .await
    }

    /// The job status events cluster `id`'s daemon sent, oldest first
    /// (the last [`KEPT_JOB_EVENTS`]).
    pub fn job_events(&self, id: &str) -> Option<Vec<JobEventView>> {
        self.plane.job_events(id)
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

    /// Receives the `session-*` / `tunnel-*` messages of one session of
    /// `cluster_id`'s daemon (the low-level hook; its queue is unbounded,
    /// so read it promptly). Messages for that session id from any other
    /// cluster's daemon are dropped. [`PlaneHandle::attach_session`] does
    /// the attach too, with a bounded queue, and accepts messages from the
    /// attaching daemon socket only.
    pub fn subscribe_session(&self, cluster_id: &str, session_id: &str) -> SessionSubscription {
        self.plane.subscribe_session(cluster_id, session_id)
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
