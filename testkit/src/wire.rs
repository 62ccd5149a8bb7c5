//! A scriptable socket.io *server* at the frame level: the test decides
//! every Engine.IO / Socket.IO frame it sends and when, so it can play a
//! server that is broken or hostile (huge `maxPayload`, endless binary
//! attachments, messages before `registered`, a socket cut seconds after
//! registration) — things volt-plane, a well-behaved server, never does.
//!
//! It speaks the real wire over real loopback WebSockets, with the
//! protocol crate's codec; it works under paused tokio time (loopback I/O
//! is ready as soon as it is written).

use crate::WAIT;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use volt_protocol::engineio;
use volt_protocol::socketio::{self, PacketKind};
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, REGISTERED_EVENT};

/// The Engine.IO open packet of the reference server (socket.io 4.8.4
/// defaults: 25 s ping interval, 20 s ping timeout, 1 MB maxPayload).
pub fn reference_open() -> Value {
    json!({"sid": "raw", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 1_000_000})
}

/// A listening server; every accepted WebSocket is handed to the test.
pub struct RawServer {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<RawConn>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    /// Listens on a free loopback port.
    pub async fn start() -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let (tx, accepted) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // Hostile tests send frames far above tungstenite's
                // defaults; the daemon's caps are what is under test.
                let cfg = WebSocketConfig::default()
                    .max_message_size(Some(1 << 30))
                    .max_frame_size(Some(1 << 30));
                match tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await {
                    Ok(ws) => {
                        if tx.send(RawConn { ws }).is_err() {
                            return;
                        }
                    }
                    Err(_) => continue,
                }
            }
        });
        RawServer {
            addr,
            accepted,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`, the URL a daemon is pointed at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next accepted WebSocket; panics after `within`.
    pub async fn accept_within(&mut self, within: Duration) -> RawConn {
        tokio::time::timeout(within, self.accepted.recv())
            .await
            .unwrap_or_else(|_| panic!("no connection within {within:?}"))
            .expect("the server is listening")
    }

    /// The next accepted WebSocket; panics after [`WAIT`].
    pub async fn accept(&mut self) -> RawConn {
        self.accept_within(WAIT).await
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the daemon sent in its register event.
#[derive(Debug, Clone)]
pub struct Register {
    pub payload: Value,
    pub ack_id: Option<u64>,
}

/// One accepted WebSocket, server side.
pub struct RawConn {
    ws: WebSocketStream<TcpStream>,
}

impl RawConn {
    /// Sends one text frame as is.
    pub async fn send_text(&mut self, frame: &str) {
        self.ws
            .send(WsMessage::text(frame.to_owned()))
            .await
            .expect("frame sent");
    }

    /// Sends one text frame; `false` if the daemon has gone away.
    pub async fn try_send_text(&mut self, frame: &str) -> bool {
        self.ws
            .send(WsMessage::text(frame.to_owned()))
            .await
            .is_ok()
    }

    /// Sends one binary frame; `false` if the daemon has gone away.
    pub async fn try_send_binary(&mut self, bytes: Vec<u8>) -> bool {
        self.ws.send(WsMessage::binary(bytes)).await.is_ok()
    }

    /// Sends a Socket.IO event on the default namespace.
    pub async fn emit(&mut self, event: &str, arg: &Value) {
        let p = socketio::encode_event("/", None, event, arg).expect("an event packet");
        self.send_text(&engineio::message_frame(&p)).await;
    }

    /// Sends a `team-cluster-daemon:message`.
    pub async fn message(&mut self, msg: &Value) {
        self.emit(MESSAGE_EVENT, msg).await;
    }

    /// The next text frame; `None` once the daemon closed the connection.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            match self.ws.next().await? {
                Ok(WsMessage::Text(t)) => return Some(t.to_string()),
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The Engine.IO and namespace handshake with `open` as the open
    /// packet, up to the daemon's register event (not answered yet).
    pub async fn handshake(&mut self, open: &Value) -> Register {
        self.send_text(&format!("0{open}")).await;
        let connect = self.next_text().await.expect("a CONNECT");
        assert_eq!(connect, "40", "the daemon joins the default namespace");
        self.send_text(r#"40{"sid":"raw-nsp"}"#).await;
        let frame = self.next_text().await.expect("a register event");
        let m = frame.strip_prefix('4').expect("an engine.io message");
        let p = socketio::Packet::decode(m).expect("a socket.io packet");
        assert_eq!(p.kind, PacketKind::Event, "{frame}");
        let (name, args) = p.event().expect("an event");
        assert_eq!(name, REGISTER_EVENT, "{frame}");
        let payload = args
            .first()
            .map(|a| serde_json::from_str(a.get()).expect("JSON"))
            .unwrap_or(Value::Null);
        Register {
            payload,
            ack_id: p.id,
        }
    }

    /// Confirms the registration (`registered`, then the ack).
    pub async fn registered(&mut self, reg: &Register) {
        let id = reg.payload["teamClusterId"].clone();
        self.emit(REGISTERED_EVENT, &json!({ "teamClusterId": id }))
            .await;
        if let Some(ack) = reg.ack_id {
            let a = socketio::encode_ack("/", ack, &[json!({"ok": true})]);
            self.send_text(&engineio::message_frame(&a)).await;
        }
    }

    /// [`Self::handshake`] + [`Self::registered`].
    pub async fn register(&mut self, open: &Value) -> Register {
        let reg = self.handshake(open).await;
        self.registered(&reg).await;
        reg
    }

    /// The next `team-cluster-daemon:message` the daemon sent (skipping
    /// pongs, acks and other frames); `None` once it closed.
    pub async fn next_message(&mut self) -> Option<Value> {
        loop {
            let t = self.next_text().await?;
            let Some(m) = t.strip_prefix('4') else {
                continue;
            };
            let Ok(p) = socketio::Packet::decode(m) else {
                continue;
            };
            if p.kind != PacketKind::Event {
                continue;
            }
            if let Ok((name, args)) = p.event()
                && name == MESSAGE_EVENT
            {
                return args
                    .first()
                    .map(|a| serde_json::from_str(a.get()).expect("JSON"));
            }
        }
    }

    /// Waits until the daemon has closed or dropped the connection,
    /// returning the text frames it sent meanwhile; panics after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let r = tokio::time::timeout(within, async {
            while let Some(t) = self.next_text().await {
                seen.push(t);
            }
        })
        .await;
        assert!(
            r.is_ok(),
            "the daemon kept the connection open; it sent {seen:?}"
        );
        seen
    }

    /// [`Self::closed_within`] with [`WAIT`].
    pub async fn closed(&mut self) -> Vec<String> {
        self.closed_within(WAIT).await
    }
}
