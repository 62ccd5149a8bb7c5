//! The daemon-facing socket.io endpoint (default namespace, default path),
//! as `TeamClusterSocketModule.ts` defines it: `team-cluster-daemon:register`
//! and `team-cluster-daemon:message`, plus the socket `disconnect`.
//!
//! **Ordering.** socketioxide runs every message handler in its own spawned
//! task, so two messages of one socket may be handled in any order, and a
//! `stream-end` could overtake the last `stream` chunk. The reference (Node)
//! handles them strictly in order. Extractors, however, run synchronously,
//! in arrival order, before the handler is spawned — so all the work is done
//! in the [`Inbound`] extractor and the handlers themselves are empty. The
//! work is short and never blocks (in-memory maps, channel sends, emits).
//!
//! **Handler registration.** Handlers are attached in a connect
//! *middleware*, which socketioxide awaits before it answers the client's
//! CONNECT; a plain connect handler runs after, and a fast client's first
//! `register` could arrive before any handler exists.

use crate::Plane;
use crate::daemon_commands;
use crate::error::{PlaneError, VALIDATION};
use crate::listener::{ConnInfo, KillSwitch};
use crate::reverse_channel::DaemonConn;
use crate::store::StatusSource;
use axum::extract::ConnectInfo;
use serde_json::json;
use serde_json::value::RawValue;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value as SioValue};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SocketIo, adapter::LocalAdapter};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use volt_protocol::envelope::Message;
use volt_protocol::register::{Extensions, RegisterPayload, RegisteredPayload};
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, REGISTERED_EVENT};

/// Largest Engine.IO packet, advertised as `maxPayload` and enforced on the
/// WebSocket: socket.io's default `maxHttpBufferSize` (1 MB), which the
/// reference server keeps. A daemon must chunk streams below it.
pub const MAX_PAYLOAD: u64 = volt_protocol::engineio::DEFAULT_MAX_PAYLOAD;
/// The reference server's `pingInterval` (25 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// The reference server's `pingTimeout` (60 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(60);
/// Packets one socket may have queued for sending. socketioxide's default
/// (128) is smaller than one burst of stream chunks or of pipelined
/// commands; Node buffers without limit. 8192 bounds memory per socket while
/// never refusing a well-behaved burst.
pub const MAX_BUFFERED_PACKETS: usize = 8192;

/// Per-socket state, kept in the socket's extensions.
pub(crate) struct SocketCtx {
    plane: Arc<Plane>,
    /// The peer's address, for the log.
    remote: Option<std::net::SocketAddr>,
    kill: Option<Arc<KillSwitch>>,
    /// The registration of this socket, if any. Cleared on disconnect,
    /// which also breaks the socket ↔ connection reference cycle.
    conn: Mutex<Option<Arc<DaemonConn>>>,
}

impl SocketCtx {
    fn conn(&self) -> Option<Arc<DaemonConn>> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|c| c.is_active())
    }
}

/// Builds the socket.io layer and wires its handlers to `plane`.
pub(crate) fn layer(plane: Arc<Plane>) -> (SocketIoLayer, SocketIo) {
    let (ping_interval, ping_timeout) = (plane.cfg.ping_interval, plane.cfg.ping_timeout);
    let (layer, io) = SocketIo::builder()
        .max_payload(MAX_PAYLOAD)
        .ws_max_message_size(MAX_PAYLOAD as usize)
        .ws_max_frame_size(MAX_PAYLOAD as usize)
        .max_buffer_size(MAX_BUFFERED_PACKETS)
        .ping_interval(ping_interval)
        .ping_timeout(ping_timeout)
        .build_layer();
    let attach = move |s: SocketRef| {
        let plane = plane.clone();
        async move {
            attach(plane, &s);
            Ok::<(), Infallible>(())
        }
    };
    io.ns("/", (async || {}).with(attach));
    (layer, io)
}

fn attach(plane: Arc<Plane>, s: &SocketRef) {
    let info = s
        .req_parts()
        .extensions
        .get::<ConnectInfo<ConnInfo>>()
        .map(|ci| ci.0.clone());
    let ctx = Arc::new(SocketCtx {
        plane,
        remote: info.as_ref().map(|i| i.remote),
        kill: info.map(|i| i.kill),
        conn: Mutex::new(None),
    });
    s.extensions.insert(ctx.clone());
    s.on(REGISTER_EVENT, async |_: Inbound| {});
    s.on(MESSAGE_EVENT, async |_: Inbound| {});
    s.on_disconnect(move |reason: DisconnectReason| {
        let ctx = ctx.clone();
        async move { on_disconnect(&ctx, reason) }
    });
}

/// Does the work of an inbound event synchronously (see the module doc).
pub(crate) struct Inbound;

impl FromMessageParts<LocalAdapter> for Inbound {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut SioValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let Some(ctx) = s.extensions.get::<Arc<SocketCtx>>() else {
            return Ok(Inbound);
        };
        let Some(data) = v.as_str().cloned() else {
            return Ok(Inbound);
        };
        let ack = AckSender::from_message_parts(s, v, ack_id).ok();
        dispatch(&ctx, s, &data, ack);
        Ok(Inbound)
    }
}

fn dispatch(ctx: &SocketCtx, s: &Arc<Socket<LocalAdapter>>, data: &str, ack: Option<AckSender>) {
    // `data` is the packet's JSON array: ["event", arg].
    let Ok(args) = serde_json::from_str::<Vec<&RawValue>>(data) else {
        return;
    };
    let Some(Ok(event)) = args
        .first()
        .map(|r| serde_json::from_str::<std::borrow::Cow<'_, str>>(r.get()))
    else {
        return;
    };
    let arg = args.get(1).map_or("null", |r| r.get());
    match event.as_ref() {
        REGISTER_EVENT => on_register(ctx, s, arg, ack),
        // The Engine.IO text frame is "42" + data (default namespace).
        MESSAGE_EVENT => on_message(ctx, arg, data.len() + 2),
        _ => {}
    }
}

fn ack_reply(ack: Option<AckSender>, value: serde_json::Value) {
    if let Some(ack) = ack {
        let _ = ack.send(&value);
    }
}

fn on_register(ctx: &SocketCtx, s: &Arc<Socket<LocalAdapter>>, arg: &str, ack: Option<AckSender>) {
    let plane = &ctx.plane;
    let payload = match RegisterPayload::parse_strict(arg) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(socket_id = %s.id, error = %e, "Daemon registration refused: invalid payload.");
            let _ = s.emit(
                "error",
                &json!({"code": VALIDATION, "message": VALIDATION, "details": e.to_string()}),
            );
            // The reference's event registry acks the handler's return.
            ack_reply(ack, json!({"ok": true}));
            return;
        }
    };
    let id = payload.team_cluster_id.trim().to_owned();
    if let Err(e) = plane
        .store
        .authenticate(&id, payload.daemon_password.expose())
    {
        tracing::warn!(cluster_id = %id, socket_id = %s.id, error = %e, "Daemon registration refused.");
        let message = match e {
            PlaneError::NotFound => "Team cluster not found",
            _ => "Invalid daemon credentials",
        };
        ack_reply(ack, json!({"ok": false, "error": message}));
        return;
    }

    let existing = ctx.conn();
    let conn = match existing {
        // The same socket registering again for the same cluster keeps its
        // pending requests, as the reference does.
        Some(c) if c.cluster_id == id => c,
        other => {
            if let Some(prev) = other
                && plane.channels.unregister(&prev)
            {
                plane
                    .store
                    .mark_daemon_disconnected(&prev.cluster_id, StatusSource::SocketClose);
            }
            let conn = Arc::new(DaemonConn::new(
                id.clone(),
                SocketRef::from(s.clone()),
                ctx.kill.clone(),
            ));
            *ctx.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
            conn
        }
    };
    plane.store.mark_daemon_connected(&id);
    plane.channels.register(conn);
    let registrations = plane.store.read(&id, |c| c.rt.registrations).unwrap_or(0);
    tracing::info!(cluster_id = %id, socket_id = %s.id, remote = ?ctx.remote, registrations, "Daemon registered.");
    let _ = s.emit(
        REGISTERED_EVENT,
        &RegisteredPayload {
            team_cluster_id: id,
            channel: None,
            extensions: if plane.cfg.announce_extensions {
                Extensions::all()
            } else {
                Extensions::none()
            },
        },
    );
    ack_reply(ack, json!({"ok": true}));
}

fn on_message(ctx: &SocketCtx, arg: &str, packet_len: usize) {
    let msg = match Message::decode(arg) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "Undecodable daemon message ignored.");
            return;
        }
    };
    let Some(conn) = ctx.conn() else {
        tracing::debug!(
            kind = msg.type_str(),
            "Message from an unregistered socket ignored."
        );
        return;
    };
    let plane = &ctx.plane;
    match msg {
        Message::Command(cmd) => daemon_commands::handle(plane, &conn, cmd),
        other => plane.channels.route(&conn, other, packet_len, &plane.store),
    }
}

fn on_disconnect(ctx: &SocketCtx, reason: DisconnectReason) {
    let conn = ctx.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(conn) = conn else {
        return;
    };
    let plane = &ctx.plane;
    if plane.channels.unregister(&conn) {
        plane
            .store
            .mark_daemon_disconnected(&conn.cluster_id, StatusSource::SocketClose);
        tracing::info!(cluster_id = %conn.cluster_id, ?reason, "Daemon disconnected.");
    }
}
