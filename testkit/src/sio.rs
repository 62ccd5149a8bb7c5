//! Test peers of the plane: a minimal socket.io v5 / Engine.IO v4
//! WebSocket client built on the protocol crate's codecs (no mock: it
//! speaks the real wire to a real plane), and a scripted daemon on top.

use crate::WAIT;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use volt_protocol::engineio;
use volt_protocol::socketio::{self, PacketKind};
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, REGISTERED_EVENT};

/// A cluster id no plane knows: registering with it is refused with an ack
/// and changes nothing, which makes it the ordering marker of
/// [`SioClient::sync`].
const UNKNOWN_CLUSTER: &str = "000000000000000000000000";

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
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connects");
        let open = next_text(&mut ws).await.expect("engine.io open");
        let engineio::Packet::Open(open) =
            engineio::Packet::decode(&open).expect("an engine.io packet")
        else {
            panic!("expected an open packet, got {open}");
        };
        ws.send(WsMessage::text(engineio::message_frame(
            &socketio::encode_connect("/", None),
        )))
        .await
        .expect("CONNECT sent");
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
            .expect("packet sent");
    }

    pub async fn emit(&mut self, event: &str, arg: &Value) {
        let p = socketio::encode_event("/", None, event, arg).expect("an event packet");
        self.send_packet(&p).await;
    }

    /// Emits with an ack id; returns the id.
    pub async fn emit_with_ack(&mut self, event: &str, arg: &Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let p = socketio::encode_event("/", Some(id), event, arg).expect("an event packet");
        self.send_packet(&p).await;
        id
    }

    /// The next thing the server sent (answering pings on the way); `None`
    /// when the connection ended or nothing came within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Incoming> {
        if let Some(i) = self.pending.pop_front() {
            return Some(i);
        }
        tokio::time::timeout(within, self.next_packet())
            .await
            .ok()
            .flatten()
    }

    /// The next event, ack or disconnect from the wire; `None` once the
    /// connection ended.
    async fn next_packet(&mut self) -> Option<Incoming> {
        loop {
            let text = self.read_text().await?;
            match engineio::Packet::decode(&text).expect("an engine.io packet") {
                engineio::Packet::Ping(d) => {
                    let pong = engineio::pong_for(d);
                    self.ws.send(WsMessage::text(pong)).await.ok()?;
                }
                engineio::Packet::Message(m) => {
                    let p = socketio::Packet::decode(m).expect("a socket.io packet");
                    match p.kind {
                        PacketKind::Event => {
                            let (name, args) = p.event().expect("an event");
                            let arg = args
                                .first()
                                .map(|r| serde_json::from_str(r.get()).expect("JSON"))
                                .unwrap_or(Value::Null);
                            return Some(Incoming::Event(name.into_owned(), arg));
                        }
                        PacketKind::Ack => {
                            let args = p
                                .args()
                                .expect("ack arguments")
                                .into_iter()
                                .map(|r| serde_json::from_str(r.get()).expect("JSON"))
                                .collect();
                            return Some(Incoming::Ack(p.id.expect("an ack id"), args));
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

    /// Waits for what `pick` accepts, keeping everything else for later
    /// `next` calls.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Incoming) -> Option<T>) -> T {
        let mut skipped = VecDeque::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(i) => match pick(&i) {
                    Some(v) => break v,
                    None => skipped.push_back(i),
                },
                None => panic!("no {what} within {WAIT:?}; got {skipped:?}"),
            }
        };
        skipped.extend(self.pending.drain(..));
        self.pending = skipped;
        found
    }

    /// Waits for `event`, keeping everything else for later `next` calls.
    pub async fn expect_event(&mut self, event: &str) -> Value {
        self.expect(&format!("{event} event"), |i| match i {
            Incoming::Event(name, v) if name == event => Some(v.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the ack with `id`, keeping everything else for later.
    pub async fn expect_ack(&mut self, id: u64) -> Vec<Value> {
        self.expect(&format!("ack {id}"), |i| match i {
            Incoming::Ack(i, args) if *i == id => Some(args.clone()),
            _ => None,
        })
        .await
    }

    /// An ordering marker: a round trip through the server that returns
    /// everything the server sent before answering it (nothing stays
    /// pending). The plane handles one socket's packets in arrival order and
    /// answers on the same socket in order, so whatever it sent in answer to
    /// anything this client sent earlier is in the result: "nothing came"
    /// is a fact, not a guess after a pause. The marker is a registration
    /// for an unknown cluster, which is refused and changes nothing (for a
    /// registered socket too).
    pub async fn sync(&mut self) -> Vec<Incoming> {
        let id = self
            .emit_with_ack(
                REGISTER_EVENT,
                &json!({"teamClusterId": UNKNOWN_CLUSTER, "daemonPassword": "marker"}),
            )
            .await;
        let answer = self.expect_ack(id).await;
        assert_eq!(
            answer,
            vec![json!({"ok": false, "error": "Team cluster not found"})],
            "the ordering marker's answer"
        );
        self.pending.drain(..).collect()
    }

    /// Reads until the server ends the connection; returns what arrived
    /// before. Fails if the connection is still open after [`WAIT`].
    pub async fn closed(&mut self) -> Vec<Incoming> {
        let mut seen: Vec<Incoming> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.next_packet()).await {
                Ok(Some(i)) => seen.push(i),
                Ok(None) => return seen,
                Err(_) => panic!("the connection is still open after {WAIT:?}; got {seen:?}"),
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
        assert_eq!(
            reg,
            json!({ "teamClusterId": cluster_id, "voltdExtensions": ["lifecycle-reason"] })
        );
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

    /// Closes the WebSocket (a close frame, as a daemon that stops does).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Closes the WebSocket and waits until the server has dropped the
    /// connection, i.e. has seen the close.
    pub async fn close_and_wait(mut self) {
        let _ = self.ws.close(None).await;
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        assert!(ended.is_ok(), "the server kept the connection open");
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

/// A registered daemon in the background: every server command is
/// recorded and answered by `reply`, which returns the messages to send
/// back.
pub struct ScriptedDaemon {
    task: tokio::task::JoinHandle<SioClient>,
    stop: tokio::sync::oneshot::Sender<()>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl ScriptedDaemon {
    pub async fn start<F>(base: &str, cluster_id: &str, password: &str, reply: F) -> ScriptedDaemon
    where
        F: Fn(&Value) -> Vec<Value> + Send + 'static,
    {
        let mut c = SioClient::connect(base).await;
        c.register(cluster_id, password).await;
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return c,
                    i = c.next(Duration::from_secs(3600)) => match i {
                        Some(Incoming::Event(name, msg)) if name == MESSAGE_EVENT && msg["type"] == "command" => {
                            log.lock().unwrap_or_else(|e| e.into_inner()).push(msg.clone());
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
        ScriptedDaemon {
            task,
            stop,
            received,
        }
    }

    /// Every command received so far, oldest first.
    pub fn received(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a command named `command` has arrived; returns it.
    pub async fn wait_command(&self, command: &str) -> Value {
        crate::eventually(
            WAIT,
            format!("the daemon to receive {command}"),
            async || {
                self.received()
                    .into_iter()
                    .find(|c| c["command"] == command)
            },
        )
        .await
    }

    /// Stops answering and returns the client (still connected).
    pub async fn stop(self) -> SioClient {
        let _ = self.stop.send(());
        self.task.await.expect("the scripted daemon's task")
    }
}

/// `{type:"response", requestId, ok:true, status:200, data:{status:"success", data}}`.
pub fn success_for(cmd: &Value, data: Value) -> Value {
    json!({"type": "response", "requestId": cmd["requestId"], "ok": true, "status": 200,
           "data": {"status": "success", "data": data}})
}
