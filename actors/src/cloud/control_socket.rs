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
//! envelope to the dispatcher; the writer batches queued frames per flush.
//! Silence longer than pingInterval + pingTimeout means the link is dead.
//!
//! Connection ends are followed by a reconnect after a jittered exponential
//! delay (500 ms × 2ⁿ, ≤ 30 s, ±30 %), reset once a connection has stayed
//! registered for a while. A registration refused for bad credentials ends
//! the daemon with the credentials-rejected exit code.

use crate::api::link::{Link, OUTBOUND_QUEUE};
use crate::api::{Credentials, CredentialsCell, Handle, SocketEvent};
use crate::config::{CloudUrl, ProxyUrl, Settings};
use crate::events::{Event, EventBus};
use actix::prelude::*;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use otp::supervisor::StopChild;
use otp::{ExitCode, ExitReason, ExitSlot};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use volt_protocol::engineio::{self, OpenPayload};
use volt_protocol::register::{Extensions, RegisterPayload, RegisteredPayload};
use volt_protocol::socketio::{self, BinaryAssembler, PacketKind};
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
    attempt: u32,
    connections: u64,
    current: Option<SpawnHandle>,
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
        ControlSocket {
            settings,
            tls,
            credentials,
            dispatcher,
            bus,
            exit,
            creds: None,
            attempt: 0,
            connections: 0,
            current: None,
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
            attempt: self.attempt,
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
        };
        let handle = ctx.spawn(
            run_connection(params)
                .into_actor(self)
                .map(move |outcome, act, ctx| act.connection_ended(connection, outcome, ctx)),
        );
        self.current = Some(handle);
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
            End::Lost(reason) => reason,
        };
        if self.stopping {
            return;
        }
        if let Some(at) = outcome.registered_at
            && at.elapsed() >= self.settings.socket.stable_after
        {
            self.attempt = 0;
        }
        let delay = self.settings.socket.reconnect().delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
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
            tracing::debug!(attempt = self.attempt, %reason, delay_ms = delay.as_millis() as u64, "Control socket attempt failed.");
        }
        ctx.run_later(delay, |act, ctx| act.connect(ctx));
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
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn open_ws(p: &ConnParams) -> Result<WsStream, String> {
    let stream = open_stream(p).await?;
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
    let idle = Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout));
    let max_payload = usize::try_from(open.max_payload).unwrap_or(usize::MAX);

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
                        Ok((name, _)) if name == MESSAGE_EVENT => early.push(m.to_owned()),
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
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let link = Link::new(p.connection, tx.clone(), max_payload);
    p.dispatcher.do_send(SocketEvent::Up(link.clone()));
    p.me.do_send(Registered { link, extensions });

    let (sink, stream) = ws.split();
    let mut reader = Reader {
        tx,
        dispatcher: p.dispatcher.clone(),
        assembler: BinaryAssembler::default(),
    };
    for m in early {
        reader.on_socketio(&m).await;
    }
    let end = tokio::select! {
        end = reader.run(stream, idle) => end,
        end = write_loop(sink, rx) => end,
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

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WsStream, WsMessage>,
    mut rx: mpsc::Receiver<WsMessage>,
) -> End {
    while let Some(msg) = rx.recv().await {
        let mut closing = matches!(msg, WsMessage::Close(_));
        if let Err(e) = sink.feed(msg).await {
            return End::Lost(format!("write: {e}"));
        }
        // Everything already queued goes out in the same flush.
        while !closing {
            match rx.try_recv() {
                Ok(m) => {
                    closing = matches!(m, WsMessage::Close(_));
                    if let Err(e) = sink.feed(m).await {
                        return End::Lost(format!("write: {e}"));
                    }
                }
                Err(_) => break,
            }
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
    tx: mpsc::Sender<WsMessage>,
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
                Some(Ok(WsMessage::Binary(b))) => self.on_binary(b.to_vec()).await,
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
        let _ = self.tx.send(WsMessage::text(frame)).await;
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
            PacketKind::BinaryEvent => {
                if let Err(e) = self.assembler.start(packet.to_owned_packet()) {
                    tracing::debug!(error = %e, "Dropped an incomplete binary packet.");
                }
            }
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

    async fn on_binary(&mut self, bytes: Vec<u8>) {
        let assembled = match self.assembler.push(bytes) {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "Ignoring a stray binary frame.");
                return;
            }
        };
        let (packet, frames) = assembled;
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
