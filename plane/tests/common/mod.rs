//! Test peers: a minimal socket.io v5 / Engine.IO v4 WebSocket client built
//! on the protocol crate's codecs (no mock: it speaks the real wire to a
//! real plane), a scripted daemon on top of it, and small HTTP helpers.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use volt_plane::{CreatedCluster, PlaneConfig, PlaneHandle};
use volt_protocol::engineio;
use volt_protocol::socketio::{self, PacketKind};
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, REGISTERED_EVENT};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// The admin token of every test plane: tests authenticate as the admin
/// through [`http`] (and [`ws_request`]), the one place that knows it.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A plane with short timeouts, memory only, the test admin token.
pub fn test_config() -> PlaneConfig {
    PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        command_timeout: Duration::from_secs(5),
        daemon_wait: Duration::from_millis(300),
        admin_token: Some(volt_plane::AdminToken::new(TEST_ADMIN_TOKEN).unwrap()),
        ..PlaneConfig::default()
    }
}

/// An HTTP client that authenticates as the test admin.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TEST_ADMIN_TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A WebSocket handshake request for `url` that authenticates as the test
/// admin.
pub fn ws_request(url: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {TEST_ADMIN_TOKEN}").parse().unwrap(),
    );
    req
}

pub async fn start_plane() -> PlaneHandle {
    volt_plane::start(test_config()).await.unwrap()
}

/// Something the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Event(String, Value),
    Ack(u64, Vec<Value>),
    Disconnect,
}

/// A socket.io client over one WebSocket.
pub struct SioClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ack: u64,
    pub max_payload: u64,
    pending: VecDeque<Incoming>,
}

impl SioClient {
    /// Connects to the default namespace of the plane at `base` (http://…).
    pub async fn connect(base: &str) -> SioClient {
        let url = format!(
            "{}{}?{}",
            base.replacen("http", "ws", 1),
            volt_protocol::SOCKET_IO_PATH,
            volt_protocol::SOCKET_IO_QUERY
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let open = next_text(&mut ws).await.expect("engine.io open");
        let engineio::Packet::Open(open) = engineio::Packet::decode(&open).unwrap() else {
            panic!("expected an open packet, got {open}");
        };
        ws.send(WsMessage::text(engineio::message_frame(
            &socketio::encode_connect("/", None),
        )))
        .await
        .unwrap();
        let mut c = SioClient {
            ws,
            next_ack: 0,
            max_payload: open.max_payload,
            pending: VecDeque::new(),
        };
        // Wait for the CONNECT answer; the server's first ping may come
        // first and must be answered (or the server closes the session a
        // ping timeout later).
        loop {
            let text = c.read_text().await.expect("socket.io connect");
            match engineio::Packet::decode(&text).unwrap() {
                engineio::Packet::Message(m) => {
                    let p = socketio::Packet::decode(m).unwrap();
                    assert_eq!(p.kind, PacketKind::Connect, "{m}");
                    break;
                }
                engineio::Packet::Ping(d) => {
                    c.ws.send(WsMessage::text(engineio::pong_for(d)))
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
        c
    }

    async fn read_text(&mut self) -> Option<String> {
        next_text(&mut self.ws).await
    }

    /// Sends one Socket.IO packet (already encoded) as an Engine.IO message.
    pub async fn send_packet(&mut self, sio_packet: &str) {
        self.ws
            .send(WsMessage::text(engineio::message_frame(sio_packet)))
            .await
            .unwrap();
    }

    pub async fn emit(&mut self, event: &str, arg: &Value) {
        let p = socketio::encode_event("/", None, event, arg).unwrap();
        self.send_packet(&p).await;
    }

    /// Emits with an ack id; returns the id.
    pub async fn emit_with_ack(&mut self, event: &str, arg: &Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let p = socketio::encode_event("/", Some(id), event, arg).unwrap();
        self.send_packet(&p).await;
        id
    }

    /// The next thing the server sent (answering pings on the way).
    pub async fn next(&mut self, within: Duration) -> Option<Incoming> {
        if let Some(i) = self.pending.pop_front() {
            return Some(i);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = tokio::time::timeout_at(deadline, self.read_text())
                .await
                .ok()??;
            match engineio::Packet::decode(&text).unwrap() {
                engineio::Packet::Ping(d) => {
                    let pong = engineio::pong_for(d);
                    self.ws.send(WsMessage::text(pong)).await.ok()?;
                }
                engineio::Packet::Message(m) => {
                    let p = socketio::Packet::decode(m).unwrap();
                    match p.kind {
                        PacketKind::Event => {
                            let (name, args) = p.event().unwrap();
                            let arg = args
                                .first()
                                .map(|r| serde_json::from_str(r.get()).unwrap())
                                .unwrap_or(Value::Null);
                            return Some(Incoming::Event(name.into_owned(), arg));
                        }
                        PacketKind::Ack => {
                            let args = p
                                .args()
                                .unwrap()
                                .into_iter()
                                .map(|r| serde_json::from_str(r.get()).unwrap())
                                .collect();
                            return Some(Incoming::Ack(p.id.unwrap(), args));
                        }
                        PacketKind::Disconnect => return Some(Incoming::Disconnect),
                        _ => {}
                    }
                }
                engineio::Packet::Close => return None,
                _ => {}
            }
        }
    }

    /// Waits for `event`, keeping everything else for later `next` calls.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        let mut skipped = VecDeque::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Incoming::Event(name, v)) if name == event => break v,
                Some(other) => skipped.push_back(other),
                None => panic!("no {event} event; got {skipped:?}"),
            }
        };
        skipped.extend(self.pending.drain(..));
        self.pending = skipped;
        found
    }

    /// Waits for the ack with `id`.
    pub async fn expect_ack(&mut self, id: u64) -> Vec<Value> {
        let mut skipped = VecDeque::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Incoming::Ack(i, args)) if i == id => break args,
                Some(other) => skipped.push_back(other),
                None => panic!("no ack {id}; got {skipped:?}"),
            }
        };
        skipped.extend(self.pending.drain(..));
        self.pending = skipped;
        found
    }

    /// Everything that arrives within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Incoming> {
        let mut out: Vec<Incoming> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left).await {
                Some(i) => out.push(i),
                None => return out,
            }
        }
    }

    /// Registers and waits for `registered`.
    pub async fn register(&mut self, cluster_id: &str, password: &str) {
        let id = self
            .emit_with_ack(
                REGISTER_EVENT,
                &json!({"teamClusterId": cluster_id, "daemonPassword": password}),
            )
            .await;
        let reg = self.expect_event(REGISTERED_EVENT).await;
        assert_eq!(reg, json!({ "teamClusterId": cluster_id }));
        assert_eq!(self.expect_ack(id).await, vec![json!({"ok": true})]);
    }

    /// Sends a daemon→server command and returns the response message.
    pub async fn command(&mut self, request_id: &str, command: &str, payload: Value) -> Value {
        self.emit(
            MESSAGE_EVENT,
            &json!({"type": "command", "requestId": request_id, "command": command,
                    "responseType": "json", "payload": payload}),
        )
        .await;
        loop {
            let msg = self.expect_event(MESSAGE_EVENT).await;
            if msg["type"] == "response" && msg["requestId"] == request_id {
                return msg;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

async fn next_text(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(WsMessage::Text(t)) => return Some(t.to_string()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Runs a registered daemon in the background: every server command is
/// answered by `reply`, which returns the messages to send back.
pub struct ScriptedDaemon {
    pub task: tokio::task::JoinHandle<SioClient>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ScriptedDaemon {
    pub async fn start<F>(base: &str, cluster_id: &str, password: &str, reply: F) -> ScriptedDaemon
    where
        F: Fn(&Value) -> Vec<Value> + Send + 'static,
    {
        let mut c = SioClient::connect(base).await;
        c.register(cluster_id, password).await;
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return c,
                    i = c.next(Duration::from_secs(3600)) => match i {
                        Some(Incoming::Event(name, msg)) if name == MESSAGE_EVENT && msg["type"] == "command" => {
                            for out in reply(&msg) {
                                c.emit(MESSAGE_EVENT, &out).await;
                            }
                        }
                        Some(_) => {}
                        None => return c,
                    }
                }
            }
        });
        ScriptedDaemon { task, stop }
    }

    /// Stops answering and returns the client (still connected).
    pub async fn stop(self) -> SioClient {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// `{type:"response", requestId, ok:true, status:200, data:{status:"success", data}}`.
pub fn success_for(cmd: &Value, data: Value) -> Value {
    json!({"type": "response", "requestId": cmd["requestId"], "ok": true, "status": 200,
           "data": {"status": "success", "data": data}})
}

/// Creates a cluster and completes enrollment; returns it and the password.
pub async fn enrolled_cluster(plane: &PlaneHandle) -> (CreatedCluster, String) {
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let url = format!(
        "{}/api/team-clusters/{}/healthcheck",
        plane.base_url(),
        created.team_cluster.id
    );
    let r = http()
        .post(url)
        .json(&json!({"enrollmentToken": created.enrollment_token, "installedVersion": "1.0.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let pw = body["data"]["daemonPassword"].as_str().unwrap().to_owned();
    (created, pw)
}

/// POSTs JSON and returns (status, body).
pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = http().post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get(url: &str) -> (u16, Value) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `f` until it is true or `WAIT` passes.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}
