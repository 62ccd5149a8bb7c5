//! The control socket actor: one outbound socket.io connection to the VOLT
//! server, spoken with our own codec on tokio-tungstenite (the Rust socket.io
//! clients cannot acknowledge server events).
//!
//! Per connection: WebSocket to `/socket.io/?EIO=4&transport=websocket`
//! (directly or through an HTTP CONNECT proxy, TLS via rustls) → Engine.IO
//! open packet → explicit CONNECT of the default namespace →
//! `team-cluster-daemon:register {teamClusterId, daemonPassword}` with an ack
//! id → usable once `team-cluster-daemon:registered` arrives. Then the reader
//! answers pings, acknowledges events that ask for it and forwards every
//! envelope to the dispatcher; the writer sends the link's two lanes,
//! control frames first (`api/link.rs`). Silence longer than pingInterval +
//! pingTimeout means the link is dead; so does data the server has not
//! acknowledged for [`TCP_USER_TIMEOUT`] (a partition, a dead peer).
//!
//! **Reconnecting** (`cloud/reconnect.rs`): a connection that registered and
//! lasted [`stable_after`](crate::config::SocketSettings::stable_after)
//! (2 s) resets the backoff, so the next attempt starts within 650 ms;
//! failed attempts, and registrations shorter than that, back off 500 ms ×
//! 2ⁿ up to 30 s, ± 30 %; the host's network coming back
//! (`host/netwatch.rs`) cuts a wait short. A registration refused for bad
//! credentials ends the daemon with the credentials-rejected exit code.
//!
//! **Caps** on what the server controls: one frame ≤ [`MAX_INBOUND_FRAME`];
//! the attachments of one binary packet ≤ [`MAX_PENDING_ATTACHMENT_BYTES`];
//! messages that arrive before `registered` ≤ [`MAX_EARLY_MESSAGES`] and
//! [`MAX_EARLY_BYTES`]; the announced `maxPayload` is clamped to
//! [`MAX_PAYLOAD_CEILING`] (every size voltd derives from it — chunks,
//! `buffer` replies — follows); the silence deadline to
//! [`MIN_SILENCE`]..=[`MAX_SILENCE`]. A tripped cap is logged
//! (`Event::WireLimitExceeded`), the connection dropped and a new one made.

use crate::api::link::{Lane, Lanes, Link};
use crate::api::{Credentials, CredentialsCell, Handle, SocketEvent, WireLimit};
use crate::cloud::reconnect::{Ended, ReconnectPolicy};
use crate::config::{CloudUrl, ProxyUrl, Settings};
use crate::events::{Event, EventBus};
use crate::host::netwatch::NetWatch;
use actix::prelude::*;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use otp::supervisor::StopChild;
use otp::{ExitCode, ExitReason, ExitSlot};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use volt_protocol::engineio::{self, OpenPayload};
use volt_protocol::register::{Extensions, RegisterPayload, RegisteredPayload};
use volt_protocol::socketio::{self, AssembleError, BinaryAssembler, PacketKind};
use volt_protocol::{MESSAGE_EVENT, Message, REGISTER_EVENT, REGISTERED_EVENT};

/// Largest frame accepted from the server. The server's own limit for what
/// it *accepts* is maxPayload; what it sends is bounded by its handlers.
/// 64 MiB covers any sane command payload and stops a broken peer from
/// making the daemon allocate without bound.
pub const MAX_INBOUND_FRAME: usize = 64 << 20;
/// Bytes tungstenite reads per syscall. Its default (128 KiB) is zeroed
/// before every read; commands are a few hundred bytes, so a small buffer
/// saves a 128 KiB memset per wake-up (measurable per command) and large
/// frames simply take several reads.
pub const READ_BUFFER: usize = 64 * 1024;
/// Ceiling on the server's announced `maxPayload`: 16 MiB, sixteen times
/// socket.io's default (the reference server keeps the default). A larger
/// announcement (10¹⁸ has been seen from a broken server) is treated as
/// this; it bounds what voltd builds in one message, e.g. a
/// `responseType:"buffer"` reply.
pub const MAX_PAYLOAD_CEILING: usize = 16 << 20;
/// Bytes of binary attachments one socket.io packet may carry (see
/// `socketio::DEFAULT_MAX_ATTACHMENT_BYTES`).
pub const MAX_PENDING_ATTACHMENT_BYTES: usize = socketio::DEFAULT_MAX_ATTACHMENT_BYTES;
/// Messages kept between our register and the server's `registered`
/// (commands the server had queued for this cluster may overtake its
/// `registered`). A server legitimately sends a handful.
pub const MAX_EARLY_MESSAGES: usize = 256;
/// Bytes of those messages.
pub const MAX_EARLY_BYTES: usize = 16 << 20;
/// Bounds of the silence deadline (pingInterval + pingTimeout, both the
/// server's): under 1 s every scheduling hiccup would drop the link; over
/// 10 min a dead link would go unnoticed for as long (the reference server
/// announces 25 s + 20..60 s).
pub const MIN_SILENCE: Duration = Duration::from_secs(1);
pub const MAX_SILENCE: Duration = Duration::from_secs(600);
/// `TCP_NOTSENT_LOWAT` of the control connection: the kernel holds at most
/// this much not-yet-sent data, the rest waits in the link's lanes where
/// control frames can overtake it. 16 KiB is what HTTP/2 servers use for
/// the same purpose; on a fast link the writer refills long before the
/// kernel runs dry.
pub const TCP_NOTSENT_LOWAT: u32 = 16 * 1024;
/// `TCP_USER_TIMEOUT`: data the server has not acknowledged for this long
/// means the path is gone (a partition, a dead server host). Without it a
/// half-open connection lingers until Engine.IO's silence deadline and TCP
/// retransmissions back off to minutes.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalive: an idle connection is probed after 15 s, every 5 s, so
/// [`TCP_USER_TIMEOUT`] also applies when nothing is being sent.
pub const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
pub const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// After the host's network comes back, wait this long for the burst of
/// link/address/route changes to settle, then try at once.
pub const NETWORK_SETTLE: Duration = Duration::from_millis(250);
/// How long a graceful stop waits for the close frames to leave.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Ack id of the register event (the first and only ack we ask for).
const REGISTER_ACK_ID: u64 = 0;

/// The installers wait for this exact line (printed once per process).
static STARTED_LINE_PRINTED: AtomicBool = AtomicBool::new(false);

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// Network/protocol failure or a close; reconnect.
    Lost(String),
    /// The server sent more than a cap allows; reconnect.
    Limit {
        limit: WireLimit,
        size: usize,
        max: usize,
    },
    /// The server refused the registration; `credentials` when it named the
    /// credentials (a retry cannot succeed).
    Rejected { credentials: bool, message: String },
    /// We closed it (graceful stop).
    ClosedByUs,
}

struct Outcome {
    end: End,
    registered_at: Option<Instant>,
}

/// Everything one connection attempt needs.
struct ConnParams {
    url: CloudUrl,
    tls: Arc<rustls::ClientConfig>,
    /// The proxy for `url` (`no_proxy` already applied).
    proxy: Option<ProxyUrl>,
    connect_timeout: Duration,
    register_timeout: Duration,
    creds: Credentials,
    connection: u64,
    dispatcher: Handle<SocketEvent>,
    me: Addr<ControlSocket>,
    /// Set once the TCP connection stands (through the proxy, if any).
    connected: Rc<Cell<bool>>,
}

/// The connection task under way.
struct Attempt {
    handle: SpawnHandle,
    connection: u64,
    started: Instant,
    /// Its TCP connection stands: the network path works (see
    /// `NetworkUp`).
    connected: Rc<Cell<bool>>,
}

/// The control socket actor (see the module docs).
pub struct ControlSocket {
    settings: Arc<Settings>,
    tls: Arc<rustls::ClientConfig>,
    credentials: CredentialsCell,
    dispatcher: Handle<SocketEvent>,
    bus: EventBus,
    exit: ExitSlot,
    creds: Option<Credentials>,
    policy: ReconnectPolicy,
    connections: u64,
    /// The connection task.
    current: Option<Attempt>,
    /// The scheduled next attempt and when it is due.
    retry: Option<(SpawnHandle, Instant)>,
    link: Rc<RefCell<Option<Link>>>,
    /// A failing streak has been logged; stay quiet until it recovers.
    failing_logged: bool,
    stopping: bool,
}

impl ControlSocket {
    /// Connects once `credentials` are published; inbound envelopes and
    /// link changes go to `dispatcher`.
    pub fn new(
        settings: Arc<Settings>,
        tls: Arc<rustls::ClientConfig>,
        credentials: CredentialsCell,
        dispatcher: Handle<SocketEvent>,
        bus: EventBus,
        exit: ExitSlot,
    ) -> Self {
        let policy =
            ReconnectPolicy::new(settings.socket.reconnect(), settings.socket.stable_after);
        ControlSocket {
            settings,
            tls,
            credentials,
            dispatcher,
            bus,
            exit,
            policy,
            creds: None,
            connections: 0,
            current: None,
            retry: None,
            link: Rc::default(),
            failing_logged: false,
            stopping: false,
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let Some(creds) = self.creds.clone() else {
            return;
        };
        if self.stopping {
            return;
        }
        self.connections += 1;
        let connection = self.connections;
        self.bus.emit(Event::SocketConnecting {
            url: self.settings.socket_url.to_string(),
            attempt: self.policy.streak(),
        });
        let params = ConnParams {
            url: self.settings.socket_url.clone(),
            tls: self.tls.clone(),
            proxy: self
                .settings
                .socket
                .proxy_for(self.settings.socket_url.host())
                .cloned(),
            connect_timeout: self.settings.socket.connect_timeout,
            register_timeout: self.settings.socket.register_timeout,
            creds,
            connection,
            dispatcher: self.dispatcher.clone(),
            me: ctx.address(),
            connected: Rc::new(Cell::new(false)),
        };
        let connected = params.connected.clone();
        let handle = ctx.spawn(
            run_connection(params)
                .into_actor(self)
                .map(move |outcome, act, ctx| act.connection_ended(connection, outcome, ctx)),
        );
        self.current = Some(Attempt {
            handle,
            connection,
            started: Instant::now(),
            connected,
        });
    }

    fn connection_ended(&mut self, connection: u64, outcome: Outcome, ctx: &mut Context<Self>) {
        self.current = None;
        self.link.borrow_mut().take();
        self.dispatcher.do_send(SocketEvent::Down { connection });
        let was_registered = outcome.registered_at.is_some();
        let reason = match outcome.end {
            End::ClosedByUs => {
                if was_registered {
                    self.bus.emit(Event::SocketDisconnected {
                        reason: "closed by voltd".into(),
                        connection,
                        reconnect_in_ms: 0,
                    });
                }
                return;
            }
            End::Rejected {
                credentials: true,
                message,
            } => {
                self.bus.emit(Event::RegistrationRejected {
                    message: message.clone(),
                });
                self.exit.set(ExitReason::fatal(
                    ExitCode::CredentialsRejected,
                    format!("the server rejected the daemon credentials: {message}"),
                ));
                ctx.stop();
                return;
            }
            End::Rejected {
                credentials: false,
                message,
            } => {
                self.bus.emit(Event::RegistrationRejected {
                    message: message.clone(),
                });
                format!("registration rejected: {message}")
            }
            End::Limit { limit, size, max } => {
                self.bus.emit(Event::WireLimitExceeded {
                    limit,
                    size: size as u64,
                    max: max as u64,
                });
                format!("{limit} limit exceeded: {size} > {max}")
            }
            End::Lost(reason) => reason,
        };
        if self.stopping {
            return;
        }
        let ended = match outcome.registered_at {
            Some(at) => Ended::Registered {
                lasted: at.elapsed(),
            },
            None => Ended::Failed,
        };
        let next = self.policy.ended(ended);
        let delay = next.delay;
        if was_registered {
            self.failing_logged = true;
            self.bus.emit(Event::SocketDisconnected {
                reason,
                connection,
                reconnect_in_ms: delay.as_millis() as u64,
            });
        } else if !self.failing_logged {
            self.failing_logged = true;
            tracing::warn!(url = %self.settings.socket_url, %reason, "Cannot reach the control plane; retrying in the background.");
        } else {
            tracing::debug!(streak = next.streak, %reason, delay_ms = delay.as_millis() as u64, "Control socket attempt failed.");
        }
        self.schedule_connect(delay, ctx);
    }

    fn schedule_connect(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if let Some((handle, _)) = self.retry.take() {
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(delay, |act, ctx| {
            act.retry = None;
            act.connect(ctx);
        });
        self.retry = Some((handle, Instant::now() + delay));
    }

    fn watch_network(&mut self, ctx: &mut Context<Self>) {
        if !self.settings.socket.watch_network {
            return;
        }
        match NetWatch::open() {
            Ok(watch) => {
                let changes = futures_util::stream::unfold(watch, |mut w| async move {
                    match w.next_up().await {
                        Ok(()) => Some((NetworkUp, w)),
                        Err(e) => {
                            tracing::debug!(error = %e, "Network watch ended.");
                            None
                        }
                    }
                });
                ctx.add_stream(changes);
            }
            Err(e) => {
                tracing::debug!(error = %e, "Cannot watch the host's network; reconnects follow the backoff only.");
            }
        }
    }
}

/// The host's network may be back (`host/netwatch.rs`).
#[derive(Message)]
#[rtype(result = "()")]
struct NetworkUp;

impl StreamHandler<NetworkUp> for ControlSocket {
    fn handle(&mut self, _: NetworkUp, ctx: &mut Self::Context) {
        // A registered connection is left alone: if the outage killed it,
        // TCP_USER_TIMEOUT or the silence deadline ends it and the reconnect
        // follows at once.
        if self.link.borrow().is_some() || self.stopping {
            return;
        }
        let now = Instant::now();
        if let Some(attempt) = &self.current {
            // An attempt under way may be stuck in SYN retransmissions or
            // behind a dead route from the outage; one that just started
            // already uses the network as it is now, and one whose TCP
            // connection stands has a working path (cancelling it could
            // leave the server a registration voltd never hears of; its
            // handshake and registration deadlines still bound it).
            if attempt.connected.get() {
                tracing::info!(
                    connection = attempt.connection,
                    "The host's network changed; the connection attempt under way goes on (it is connected)."
                );
                return;
            }
            if now.duration_since(attempt.started) < NETWORK_SETTLE {
                return;
            }
            let (handle, connection) = (attempt.handle, attempt.connection);
            ctx.cancel_future(handle);
            self.current = None;
            self.dispatcher.do_send(SocketEvent::Down { connection });
            tracing::info!(
                streak = self.policy.streak(),
                "The host's network changed; starting a fresh connection attempt."
            );
            self.schedule_connect(NETWORK_SETTLE, ctx);
            return;
        }
        // A wait for the next attempt is cut short, if it has longer to
        // run than the settle time.
        let Some((_, due)) = self.retry else {
            return;
        };
        if due <= now + NETWORK_SETTLE {
            return;
        }
        tracing::info!(
            streak = self.policy.streak(),
            "The host's network changed; reconnecting now."
        );
        self.schedule_connect(NETWORK_SETTLE, ctx);
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {
        // The default would stop the actor; the backoff still works.
    }
}

/// Sent by the connection task once the server confirmed the registration.
#[derive(Message)]
#[rtype(result = "()")]
struct Registered {
    link: Link,
    /// What the server announced in its `registered` payload.
    extensions: Extensions,
}

impl Handler<Registered> for ControlSocket {
    type Result = ();

    fn handle(&mut self, msg: Registered, _ctx: &mut Self::Context) {
        // A connection cancelled meanwhile (see `NetworkUp`) is not ours.
        if self.current.as_ref().map(|a| a.connection) != Some(msg.link.connection()) {
            return;
        }
        let cluster_id = self
            .creds
            .as_ref()
            .map(|c| c.team_cluster_id.clone())
            .unwrap_or_default();
        self.failing_logged = false;
        self.bus.emit(Event::Registered {
            cluster_id: cluster_id.clone(),
            connection: msg.link.connection(),
            extensions: msg.extensions,
        });
        *self.link.borrow_mut() = Some(msg.link);
        if !STARTED_LINE_PRINTED.swap(true, Ordering::Relaxed) {
            tracing::info!("cluster-daemon started for team cluster {cluster_id}");
        }
    }
}

impl Actor for ControlSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let mut rx = self.credentials.watch();
        ctx.spawn(
            async move {
                rx.wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|c| c.clone())
            }
            .into_actor(self)
            .map(|creds, act, ctx| {
                act.creds = creds;
                act.connect(ctx);
            }),
        );
        self.watch_network(ctx);
    }
}

impl Handler<StopChild> for ControlSocket {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        self.stopping = true;
        let link = self.link.borrow_mut().take();
        match link {
            Some(link) => {
                // Leave the namespace and close the WebSocket politely; the
                // writer ends after sending the close frame.
                let _ =
                    link.try_send_frame(engineio::message_frame(&socketio::encode_disconnect("/")));
                let tx_link = link.clone();
                ctx.spawn(
                    async move {
                        let _ = timeout(CLOSE_GRACE, tx_link.send_close()).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    .into_actor(self)
                    .map(|(), _act, ctx| ctx.stop()),
                );
                ctx.run_later(CLOSE_GRACE * 2, |_, ctx| ctx.stop());
            }
            None => ctx.stop(),
        }
    }
}

/// Whether a registration error names the credentials (retrying cannot help).
pub fn is_credentials_rejection(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("credential") || m.contains("unauthorized") || m.contains("not found")
}

async fn open_stream(p: &ConnParams) -> Result<TcpStream, String> {
    let host = p
        .url
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = p.url.port();
    let stream = match &p.proxy {
        None => TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?,
        Some(px) => {
            let mut s = TcpStream::connect(px.address.as_str())
                .await
                .map_err(|e| format!("connect proxy {}: {e}", px.address))?;
            let target = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
            if let Some(auth) = &px.basic_auth {
                let b64 = base64::engine::general_purpose::STANDARD.encode(auth.expose());
                req.push_str(&format!("Proxy-Authorization: Basic {b64}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("proxy write: {e}"))?;
            let mut head = Vec::with_capacity(256);
            let mut byte = [0u8; 1];
            // Read byte by byte up to the blank line so no tunnelled byte is
            // consumed; proxy replies are short.
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() > 8192 {
                    return Err("proxy reply too long".into());
                }
                let n = s
                    .read(&mut byte)
                    .await
                    .map_err(|e| format!("proxy read: {e}"))?;
                if n == 0 {
                    return Err("proxy closed the connection".into());
                }
                head.push(byte[0]);
            }
            let status_line = String::from_utf8_lossy(&head);
            let status_line = status_line.lines().next().unwrap_or_default();
            let code = status_line.split_whitespace().nth(1).unwrap_or_default();
            if code != "200" {
                return Err(format!("proxy refused CONNECT: {status_line}"));
            }
            s
        }
    };
    tune_socket(&stream);
    Ok(stream)
}

/// The TCP options of the control connection (see the constants): no
/// Nagle delay, little unsent data in the kernel (so the link's lanes
/// decide what goes next), and a dead path noticed within
/// [`TCP_USER_TIMEOUT`] even when idle. Failures only cost those
/// properties, so they are logged, not fatal.
fn tune_socket(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL);
    for (option, result) in [
        ("TCP_NODELAY", sock.set_tcp_nodelay(true)),
        (
            "TCP_NOTSENT_LOWAT",
            sock.set_tcp_notsent_lowat(TCP_NOTSENT_LOWAT),
        ),
        (
            "TCP_USER_TIMEOUT",
            sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)),
        ),
        ("SO_KEEPALIVE", sock.set_tcp_keepalive(&keepalive)),
    ] {
        if let Err(e) = result {
            tracing::debug!(option, error = %e, "Cannot set a control socket option.");
        }
    }
}

/// The server's `maxPayload`, clamped to [`MAX_PAYLOAD_CEILING`].
pub fn clamp_max_payload(announced: u64) -> usize {
    usize::try_from(announced)
        .unwrap_or(usize::MAX)
        .min(MAX_PAYLOAD_CEILING)
}

/// The silence deadline for the server's ping settings (milliseconds),
/// clamped to [`MIN_SILENCE`]..=[`MAX_SILENCE`].
pub fn silence_deadline(ping_interval_ms: u64, ping_timeout_ms: u64) -> Duration {
    Duration::from_millis(ping_interval_ms.saturating_add(ping_timeout_ms))
        .clamp(MIN_SILENCE, MAX_SILENCE)
}

async fn open_ws(p: &ConnParams) -> Result<WsStream, String> {
    let stream = open_stream(p).await?;
    p.connected.set(true);
    let connector = if p.url.is_tls() {
        Connector::Rustls(p.tls.clone())
    } else {
        Connector::Plain
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_INBOUND_FRAME));
    let (ws, _resp) = tokio_tungstenite::client_async_tls_with_config(
        p.url.socket_io_url(),
        stream,
        Some(config),
        Some(connector),
    )
    .await
    .map_err(|e| format!("websocket handshake: {e}"))?;
    Ok(ws)
}

/// Reads the next text frame, answering control frames on the way.
async fn next_text(ws: &mut WsStream, wait: Duration) -> Result<String, String> {
    loop {
        let frame = timeout(wait, ws.next())
            .await
            .map_err(|_| "timed out waiting for the server".to_owned())?;
        match frame {
            Some(Ok(WsMessage::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(WsMessage::Close(c))) => {
                return Err(format!(
                    "server closed the connection{}",
                    c.map(|c| format!(" ({})", c.reason)).unwrap_or_default()
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        }
    }
}

async fn run_connection(p: ConnParams) -> Outcome {
    let lost = |reason: String| Outcome {
        end: End::Lost(reason),
        registered_at: None,
    };
    let limit = |limit: WireLimit, size: usize, max: usize| Outcome {
        end: End::Limit { limit, size, max },
        registered_at: None,
    };
    let mut ws = match timeout(p.connect_timeout, open_ws(&p)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return lost(e),
        Err(_) => return lost("connect timed out".into()),
    };

    // 1. Engine.IO handshake.
    let open: OpenPayload = match next_text(&mut ws, p.connect_timeout).await {
        Ok(t) => match engineio::Packet::decode(&t) {
            Ok(engineio::Packet::Open(open)) => open,
            Ok(other) => {
                return lost(format!(
                    "expected an open packet, got {:?}",
                    other.packet_type()
                ));
            }
            Err(e) => return lost(e.to_string()),
        },
        Err(e) => return lost(e),
    };
    let idle = silence_deadline(open.ping_interval, open.ping_timeout);
    let max_payload = clamp_max_payload(open.max_payload);
    if max_payload as u64 != open.max_payload {
        tracing::warn!(
            announced = open.max_payload,
            used = max_payload,
            "The server announced a maxPayload above voltd's ceiling; using the ceiling."
        );
    }

    // 2. CONNECT the default namespace.
    if let Err(e) = ws
        .send(WsMessage::text(engineio::message_frame(
            &socketio::encode_connect("/", None),
        )))
        .await
    {
        return lost(e.to_string());
    }
    loop {
        let t = match next_text(&mut ws, idle).await {
            Ok(t) => t,
            Err(e) => return lost(e),
        };
        match engineio::Packet::decode(&t) {
            Ok(engineio::Packet::Ping(d)) => {
                if let Err(e) = ws.send(WsMessage::text(engineio::pong_for(d))).await {
                    return lost(e.to_string());
                }
            }
            Ok(engineio::Packet::Message(m)) => match socketio::Packet::decode(m) {
                Ok(pk) if pk.kind == PacketKind::Connect && pk.namespace == "/" => break,
                Ok(pk) if pk.kind == PacketKind::ConnectError => {
                    return lost(format!(
                        "namespace refused: {}",
                        pk.connect_error_message().unwrap_or_default()
                    ));
                }
                _ => {}
            },
            Ok(engineio::Packet::Close) => return lost("server closed the session".into()),
            _ => {}
        }
    }

    // 3. Register (with an ack id: the reference server acks `{ok:false,
    //    error}` when authentication throws, which tells bad credentials
    //    from a lost connection).
    let payload =
        match RegisterPayload::new(&p.creds.team_cluster_id, p.creds.daemon_password.clone()) {
            Ok(pl) => pl,
            Err(e) => {
                return Outcome {
                    end: End::Rejected {
                        credentials: true,
                        message: e.to_string(),
                    },
                    registered_at: None,
                };
            }
        };
    let frame =
        match volt_protocol::encode_event_frame(REGISTER_EVENT, &payload, Some(REGISTER_ACK_ID)) {
            Ok(f) => f,
            Err(e) => return lost(e.to_string()),
        };
    if let Err(e) = ws.send(WsMessage::text(frame)).await {
        return lost(e.to_string());
    }
    let deadline = Instant::now() + p.register_timeout;
    let mut early: Vec<String> = Vec::new();
    let mut early_bytes = 0usize;
    let mut validation_error: Option<String> = None;
    let extensions;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let t = match next_text(&mut ws, left.min(idle)).await {
            Ok(t) => t,
            Err(_) if Instant::now() >= deadline => {
                let message = validation_error
                    .unwrap_or_else(|| "no `registered` reply from the server".into());
                return Outcome {
                    end: End::Rejected {
                        credentials: false,
                        message,
                    },
                    registered_at: None,
                };
            }
            Err(e) => return lost(e),
        };
        match engineio::Packet::decode(&t) {
            Ok(engineio::Packet::Ping(d)) => {
                if let Err(e) = ws.send(WsMessage::text(engineio::pong_for(d))).await {
                    return lost(e.to_string());
                }
            }
            Ok(engineio::Packet::Close) => return lost("server closed the session".into()),
            Ok(engineio::Packet::Message(m)) => {
                let Ok(pk) = socketio::Packet::decode(m) else {
                    continue;
                };
                match pk.kind {
                    PacketKind::Ack if pk.id == Some(REGISTER_ACK_ID) => {
                        let first = pk
                            .args()
                            .ok()
                            .and_then(|a| a.first().map(|r| r.get().to_owned()));
                        let v: Value = first
                            .and_then(|s| serde_json::from_str(&s).ok())
                            .unwrap_or(Value::Null);
                        if v.get("ok") == Some(&Value::Bool(false)) {
                            let message = v
                                .get("error")
                                .and_then(Value::as_str)
                                .unwrap_or("registration refused")
                                .to_owned();
                            return Outcome {
                                end: End::Rejected {
                                    credentials: is_credentials_rejection(&message),
                                    message,
                                },
                                registered_at: None,
                            };
                        }
                    }
                    PacketKind::Event => match pk.event() {
                        Ok((name, args)) if name == REGISTERED_EVENT => {
                            extensions = announced_extensions(args.first().map(|a| a.get()));
                            break;
                        }
                        Ok((name, args)) if name == "error" => {
                            let detail =
                                args.first().map(|a| a.get().to_owned()).unwrap_or_default();
                            tracing::warn!(%detail, "Server reported an error during registration.");
                            validation_error = Some(format!("server error: {detail}"));
                        }
                        Ok((name, _)) if name == MESSAGE_EVENT => {
                            early_bytes = early_bytes.saturating_add(m.len());
                            if early.len() >= MAX_EARLY_MESSAGES {
                                return limit(
                                    WireLimit::EarlyMessages,
                                    early.len() + 1,
                                    MAX_EARLY_MESSAGES,
                                );
                            }
                            if early_bytes > MAX_EARLY_BYTES {
                                return limit(WireLimit::EarlyBytes, early_bytes, MAX_EARLY_BYTES);
                            }
                            early.push(m.to_owned());
                        }
                        _ => {}
                    },
                    PacketKind::Disconnect => {
                        return lost("server disconnected the namespace".into());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    // 4. Registered: the link goes to the dispatcher first (same sender as
    //    the inbound messages that follow, so it is there before them).
    let registered_at = Instant::now();
    let (link, lanes) = Link::with_lanes(p.connection, max_payload);
    p.dispatcher.do_send(SocketEvent::Up(link.clone()));
    p.me.do_send(Registered {
        link: link.clone(),
        extensions,
    });

    let (sink, stream) = ws.split();
    let mut reader = Reader {
        link,
        dispatcher: p.dispatcher.clone(),
        assembler: BinaryAssembler::new(MAX_PENDING_ATTACHMENT_BYTES),
    };
    for m in early {
        if let Some(end) = reader.on_socketio(&m).await {
            return Outcome {
                end,
                registered_at: Some(registered_at),
            };
        }
    }
    let end = tokio::select! {
        end = reader.run(stream, idle) => end,
        end = write_loop(sink, lanes) => end,
    };
    Outcome {
        end,
        registered_at: Some(registered_at),
    }
}

/// The extensions a `registered` payload announces; none when it is
/// missing or does not parse (an announcement never fails a registration).
fn announced_extensions(payload: Option<&str>) -> Extensions {
    payload
        .and_then(|raw| serde_json::from_str::<RegisteredPayload>(raw).ok())
        .map(|p| p.extensions)
        .unwrap_or_default()
}

/// Sends the link's frames: every control frame that is ready, then at
/// most [`BULK_BYTES_PER_WRITE`](crate::api::link::BULK_BYTES_PER_WRITE)
/// of bulk, per flush. A control frame queued while a flush is under way
/// waits only for that flush (with [`TCP_NOTSENT_LOWAT`], for at most one
/// bulk frame and 16 KiB of unsent kernel data).
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WsStream, WsMessage>,
    mut lanes: Lanes,
) -> End {
    use crate::api::link::BULK_BYTES_PER_WRITE;
    while let Some((lane, msg)) = lanes.next().await {
        let mut bulk_bytes = 0usize;
        let mut next = Some((lane, msg));
        let mut closing = false;
        while let Some((lane, msg)) = next.take() {
            closing = matches!(msg, WsMessage::Close(_));
            if lane == Lane::Bulk {
                bulk_bytes += msg.len();
            }
            if let Err(e) = sink.feed(msg).await {
                return End::Lost(format!("write: {e}"));
            }
            if closing {
                break;
            }
            next = lanes.ready(bulk_bytes < BULK_BYTES_PER_WRITE);
        }
        if let Err(e) = sink.flush().await {
            return End::Lost(format!("write: {e}"));
        }
        if closing {
            return End::ClosedByUs;
        }
    }
    End::ClosedByUs
}

struct Reader {
    /// Pongs and acks go out in the control lane.
    link: Link,
    dispatcher: Handle<SocketEvent>,
    assembler: BinaryAssembler,
}

impl Reader {
    async fn run(
        &mut self,
        mut stream: futures_util::stream::SplitStream<WsStream>,
        idle: Duration,
    ) -> End {
        loop {
            let frame = match timeout(idle, stream.next()).await {
                Ok(f) => f,
                Err(_) => {
                    return End::Lost(format!(
                        "no packet from the server for {} ms (pingInterval + pingTimeout)",
                        idle.as_millis()
                    ));
                }
            };
            match frame {
                Some(Ok(WsMessage::Text(t))) => {
                    if let Some(end) = self.on_text(t.as_str()).await {
                        return end;
                    }
                }
                Some(Ok(WsMessage::Binary(b))) => {
                    if let Some(end) = self.on_binary(b.to_vec()).await {
                        return end;
                    }
                }
                Some(Ok(WsMessage::Close(c))) => {
                    return End::Lost(format!(
                        "server closed the connection{}",
                        c.map(|c| format!(" ({} {})", u16::from(c.code), c.reason))
                            .unwrap_or_default()
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return End::Lost(format!("read: {e}")),
                None => return End::Lost("connection closed".into()),
            }
        }
    }

    async fn send(&self, frame: String) {
        // The writer only goes away with the connection; nothing to do then.
        let _ = self.link.send_frame(frame).await;
    }

    async fn on_text(&mut self, text: &str) -> Option<End> {
        match engineio::Packet::decode(text) {
            Ok(engineio::Packet::Ping(d)) => self.send(engineio::pong_for(d)).await,
            Ok(engineio::Packet::Message(m)) => return self.on_socketio(m).await,
            Ok(engineio::Packet::Close) => {
                return Some(End::Lost("server closed the session".into()));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Ignoring an invalid engine.io packet."),
        }
        None
    }

    async fn on_socketio(&mut self, text: &str) -> Option<End> {
        // The hot path: an EVENT decoded in one pass.
        if text.starts_with('2')
            && let Ok(event) = socketio::EventRef::decode(text)
        {
            if event.namespace == socketio::DEFAULT_NAMESPACE {
                let first = event.first_arg.map(|a| a.get());
                self.on_event(&event.name, first, event.id).await;
            }
            return None;
        }
        let packet = match socketio::Packet::decode(text) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "Ignoring an invalid socket.io packet.");
                return None;
            }
        };
        match packet.kind {
            PacketKind::Event if packet.namespace == socketio::DEFAULT_NAMESPACE => {
                if let Ok((name, args)) = packet.event() {
                    let first = args.first().map(|a| a.get());
                    self.on_event(&name, first, packet.id).await;
                }
            }
            PacketKind::BinaryEvent => match self.assembler.start(packet.to_owned_packet()) {
                Ok(Some(assembled)) => self.on_assembled(assembled).await,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "Dropped an incomplete binary packet."),
            },
            PacketKind::Disconnect => {
                return Some(End::Lost("server disconnected the namespace".into()));
            }
            PacketKind::ConnectError => {
                return Some(End::Lost(format!(
                    "namespace error: {}",
                    packet.connect_error_message().unwrap_or_default()
                )));
            }
            PacketKind::Event | PacketKind::Connect | PacketKind::Ack | PacketKind::BinaryAck => {}
        }
        None
    }

    async fn on_binary(&mut self, bytes: Vec<u8>) -> Option<End> {
        match self.assembler.push(bytes) {
            Ok(Some(assembled)) => self.on_assembled(assembled).await,
            Ok(None) => {}
            Err(AssembleError::TooLarge { size, max }) => {
                return Some(End::Limit {
                    limit: WireLimit::PendingAttachments,
                    size,
                    max,
                });
            }
            Err(e) => tracing::debug!(error = %e, "Ignoring a stray binary frame."),
        }
        None
    }

    async fn on_assembled(&mut self, (packet, frames): socketio::Assembled) {
        let Some(data) = packet.data.as_ref() else {
            return;
        };
        let Ok(mut value) = serde_json::from_str::<Value>(data.get()) else {
            return;
        };
        // Gen B carries bytes as base64 strings; binary attachments (Gen C
        // style) are mapped onto the same representation.
        let fill = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
        if socketio::fill_placeholders(&mut value, &frames, &fill).is_err() {
            return;
        }
        if packet.kind != PacketKind::BinaryEvent {
            return;
        }
        let Value::Array(mut items) = value else {
            return;
        };
        if items.is_empty() {
            return;
        }
        let name = match items.remove(0) {
            Value::String(s) => s,
            _ => return,
        };
        let first = items.first().map(Value::to_string);
        self.on_event(&name, first.as_deref(), packet.id).await;
    }

    async fn on_event(&mut self, name: &str, first_arg: Option<&str>, ack_id: Option<u64>) {
        let mut ack: Option<Value> = None;
        if name == MESSAGE_EVENT {
            let raw = first_arg.unwrap_or("null");
            let inbound = match Message::decode(raw) {
                Ok(m) => SocketEvent::Message(m),
                Err(e) => SocketEvent::Invalid {
                    raw: raw.to_owned(),
                    error: e.to_string(),
                },
            };
            self.dispatcher.do_send(inbound);
            ack = Some(json!({ "ok": true }));
        } else if name == REGISTERED_EVENT {
            ack = Some(json!({ "ok": true }));
        } else if name == "error" {
            tracing::warn!(
                detail = first_arg.unwrap_or_default(),
                "Server reported an error."
            );
        } else {
            tracing::debug!(event = name, "Ignoring an unknown event.");
            ack = Some(json!({ "ok": false, "error": format!("Unknown event: {name}") }));
        }
        if let (Some(id), Some(body)) = (ack_id, ack) {
            self.send(engineio::message_frame(&socketio::encode_ack(
                "/",
                id,
                &[body],
            )))
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_read_from_the_registered_payload() {
        use volt_protocol::register::Extension;
        let plane = r#"{"teamClusterId":"c1","voltdExtensions":["lifecycle-reason"]}"#;
        assert!(announced_extensions(Some(plane)).contains(Extension::LifecycleReason));
        for reference in [
            Some(r#"{"teamClusterId":"c1"}"#),
            Some(r#"{"teamClusterId":"c1","channel":"x"}"#),
            Some("not json"),
            None,
        ] {
            assert!(announced_extensions(reference).is_empty(), "{reference:?}");
        }
    }

    #[test]
    fn credential_rejections_are_recognised() {
        assert!(is_credentials_rejection("Invalid daemon credentials"));
        assert!(is_credentials_rejection("TeamCluster::DaemonUnauthorized"));
        assert!(is_credentials_rejection("Team cluster not found"));
        assert!(!is_credentials_rejection("Internal error"));
        assert!(!is_credentials_rejection("database timeout"));
    }
}
