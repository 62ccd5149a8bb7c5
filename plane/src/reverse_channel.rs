//! The reverse channel (`TeamClusterReverseChannelService.ts`): which socket
//! serves which cluster, server→daemon commands and their pending replies,
//! stream reassembly, and routing of everything else a daemon sends.
//!
//! Hot path (the benchmark drives ≥30 000 commands/s through it): a command
//! takes one read lock on the connection map, one short lock on its
//! connection's pending map to insert, one to remove, and one socket emit.
//! No lock is held across an `.await`.

use crate::budget::Budget;
use crate::error::PlaneError;
use crate::listener::KillSwitch;
use crate::store::Store;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::SendError;
use socketioxide::extract::SocketRef;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use volt_protocol::MESSAGE_EVENT;
use volt_protocol::envelope::{Message, ResponseMessage, ResponseType, StreamChunk, StreamEnd};

/// The daemon's answer to a server→daemon command.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonReply {
    /// `responseType: "json"`: the response message as sent.
    Json(ResponseMessage),
    /// `responseType: "buffer"`: the response, body in `bodyBase64`.
    Buffer(ResponseMessage),
    /// `responseType: "stream"`: the opening response and the reassembled body.
    Stream {
        response: ResponseMessage,
        /// Every `chunkBase64`, decoded and concatenated in order.
        body: Vec<u8>,
        /// Number of `stream` messages received.
        chunks: usize,
        /// Largest Engine.IO text frame that carried a `stream` message, in
        /// bytes (`42["team-cluster-daemon:message",{…}]`); proves chunks fit
        /// under the advertised `maxPayload`.
        max_chunk_packet_len: usize,
        /// `stream-end.message`, a refused opening, or a bad chunk.
        error: Option<String>,
    },
}

impl DaemonReply {
    /// The response message (for a stream, its opening response).
    pub fn response(&self) -> &ResponseMessage {
        match self {
            DaemonReply::Json(r) | DaemonReply::Buffer(r) => r,
            DaemonReply::Stream { response, .. } => response,
        }
    }
}

/// Bytes a `team-cluster-daemon:message` event adds around its JSON
/// argument on the wire: `42["team-cluster-daemon:message",` and `]`.
pub(crate) const MESSAGE_FRAME_OVERHEAD: usize =
    "42[\"".len() + MESSAGE_EVENT.len() + "\",".len() + "]".len();

/// Session messages cost at least this much of a session budget, so a
/// flood of tiny messages is bounded too (roughly a decoded envelope).
const SESSION_MESSAGE_COST_FLOOR: usize = 256;

/// A server→daemon command as it goes on the wire. Borrowed fields, so
/// sending a command copies nothing but what serialisation writes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutboundCommand<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: &'a str,
    command: &'a str,
    response_type: ResponseType,
    payload: &'a Value,
}

enum StreamEvent {
    Open(ResponseMessage),
    Chunk {
        chunk_base64: String,
        packet_len: usize,
    },
    End(Option<String>),
    Lost,
}

enum Pending {
    Reply(oneshot::Sender<Result<ResponseMessage, PlaneError>>),
    Stream {
        tx: mpsc::UnboundedSender<StreamEvent>,
        stream_id: Option<String>,
        /// Bounds the chunks queued for a consumer that streams them on
        /// (`None`: the caller collects the whole body anyway).
        budget: Option<Arc<Budget>>,
    },
}

/// Source of [`DaemonConn::id`].
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// One registered daemon socket.
pub(crate) struct DaemonConn {
    pub cluster_id: String,
    /// Unique per connection: sessions attached over this socket accept
    /// messages from it alone.
    pub id: u64,
    socket: SocketRef,
    pending: Mutex<HashMap<String, Pending>>,
    active: AtomicBool,
    /// Woken when the connection is retired.
    retired: Notify,
    kill: Option<Arc<KillSwitch>>,
}

impl DaemonConn {
    pub fn new(cluster_id: String, socket: SocketRef, kill: Option<Arc<KillSwitch>>) -> Self {
        DaemonConn {
            cluster_id,
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            socket,
            pending: Mutex::new(HashMap::new()),
            active: AtomicBool::new(true),
            retired: Notify::new(),
            kill,
        }
    }

    /// Still the cluster's registered socket (not replaced, not closed).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Resolves once this connection is no longer the cluster's registered
    /// socket (closed or replaced); at once if it already is not.
    pub async fn closed(&self) {
        loop {
            let notified = self.retired.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_active() {
                return;
            }
            notified.await;
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Emits one `team-cluster-daemon:message`.
    pub fn emit<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), PlaneError> {
        self.socket
            .emit(MESSAGE_EVENT, message)
            .map_err(|e| match e {
                SendError::Socket(socketioxide::SocketError::InternalChannelFull) => {
                    PlaneError::DaemonBusy
                }
                SendError::Socket(_) => PlaneError::ConnectionLost,
                other => PlaneError::Internal(format!("cannot encode message: {other}")),
            })
    }

    /// Cuts the connection like a network failure would (falls back to a
    /// socket.io namespace disconnect when the transport is not ours).
    pub fn cut(&self) {
        match &self.kill {
            Some(k) => k.kill(),
            None => {
                let _ = self.socket.clone().disconnect();
            }
        }
    }

    /// No longer the registered socket: every pending request fails now.
    fn retire(&self) {
        self.active.store(false, Ordering::Release);
        self.retired.notify_waiters();
        let drained: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for p in drained {
            match p {
                Pending::Reply(tx) => {
                    let _ = tx.send(Err(PlaneError::ConnectionLost));
                }
                Pending::Stream { tx, .. } => {
                    let _ = tx.send(StreamEvent::Lost);
                }
            }
        }
    }

    /// Hands a response to its pending request; gives it back when no
    /// request waits for it (it may answer a `session.attach`).
    fn resolve_response(&self, r: ResponseMessage) -> Option<ResponseMessage> {
        let mut pending = self.pending();
        match pending.get_mut(&r.request_id) {
            Some(Pending::Reply(_)) => {
                if let Some(Pending::Reply(tx)) = pending.remove(&r.request_id) {
                    drop(pending);
                    let _ = tx.send(Ok(r));
                }
                None
            }
            Some(Pending::Stream { tx, stream_id, .. }) => {
                if stream_id.is_none() {
                    *stream_id = Some(r.stream_id.clone().unwrap_or_else(|| r.request_id.clone()));
                }
                let _ = tx.send(StreamEvent::Open(r));
                None
            }
            None => Some(r),
        }
    }

    fn stream_chunk(&self, c: StreamChunk, packet_len: usize) {
        let mut pending = self.pending();
        let Some(Pending::Stream {
            tx,
            stream_id,
            budget,
        }) = pending.get(&c.request_id)
        else {
            return;
        };
        if stream_id.as_deref().is_some_and(|s| s != c.stream_id) {
            return;
        }
        if let Some(b) = budget
            && !b.try_take(c.chunk_base64.len())
        {
            // The consumer is too slow: stop routing this stream (later
            // chunks are dropped); the consumer sees the tripped budget.
            tracing::warn!(request_id = %c.request_id, limit = b.limit(), "Stream consumer too slow; stream buffer full, transfer aborted.");
            pending.remove(&c.request_id);
            return;
        }
        let _ = tx.send(StreamEvent::Chunk {
            chunk_base64: c.chunk_base64,
            packet_len,
        });
    }

    fn stream_end(&self, e: StreamEnd) {
        let mut pending = self.pending();
        let matches = matches!(
            pending.get(&e.request_id),
            Some(Pending::Stream { stream_id, .. })
                if stream_id.as_deref().is_none_or(|s| s == e.stream_id)
        );
        if matches && let Some(Pending::Stream { tx, .. }) = pending.remove(&e.request_id) {
            drop(pending);
            let _ = tx.send(StreamEvent::End(e.message));
        }
    }
}

/// Removes a pending entry when its waiter goes away (reply, timeout, or a
/// dropped future), so abandoned requests never pile up.
struct PendingGuard<'a> {
    conn: &'a DaemonConn,
    request_id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.pending().remove(self.request_id);
    }
}

/// Removes a pending entry when the value owning it is dropped (the
/// owned form of [`PendingGuard`], for streams that outlive the call).
struct OwnedPendingGuard {
    conn: Arc<DaemonConn>,
    request_id: String,
}

impl Drop for OwnedPendingGuard {
    fn drop(&mut self) {
        self.conn.pending().remove(&self.request_id);
    }
}

/// Messages for one session (terminal, websocket or tunnel), delivered by
/// the reverse channel until this is dropped.
///
/// From `PlaneHandle::subscribe_session` the queue is unbounded (the caller
/// must keep up). Behind an attached session (`attach_session`, the
/// terminal relay) it is bounded by `PlaneConfig::session_buffer_limit`
/// bytes: when the reader falls that far behind, the plane stops delivering
/// to it and [`SessionSubscription::recv`] returns `None` with
/// [`SessionSubscription::overflowed`] true.
pub struct SessionSubscription {
    session_id: String,
    token: u64,
    rx: mpsc::UnboundedReceiver<Message>,
    budget: Arc<Budget>,
    channels: Weak<Channels>,
}

impl SessionSubscription {
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The next `session-*` / `tunnel-*` message for this session (or the
    /// response to its `session.attach`). `None` once the queue overflowed
    /// or the subscription was replaced by a newer one.
    pub async fn recv(&mut self) -> Option<Message> {
        if self.budget.is_tripped() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.budget.tripped() => None,
            m = self.rx.recv() => {
                if let Some(m) = &m {
                    self.budget.release(session_cost(m));
                }
                m
            }
        }
    }

    /// The reader fell too far behind and delivery stopped.
    pub fn overflowed(&self) -> bool {
        self.budget.is_tripped()
    }

    /// The queue limit in bytes.
    pub fn buffer_limit(&self) -> usize {
        self.budget.limit()
    }

    /// Resolves when the queue overflows.
    pub(crate) async fn overflow(&self) {
        self.budget.tripped().await
    }
}

impl Drop for SessionSubscription {
    fn drop(&mut self) {
        if let Some(ch) = self.channels.upgrade() {
            let mut s = ch.sessions();
            if s.get(&self.session_id)
                .is_some_and(|slot| slot.token == self.token)
            {
                s.remove(&self.session_id);
            }
        }
    }
}

struct SessionSlot {
    token: u64,
    tx: mpsc::UnboundedSender<Message>,
    budget: Arc<Budget>,
    /// The cluster whose daemon owns the session: messages for it from any
    /// other daemon are dropped (a daemon that learns another cluster's
    /// session id must not write into that terminal).
    cluster_id: String,
    /// The daemon socket the session was attached over, when known.
    conn_id: Option<u64>,
}

impl SessionSlot {
    fn owned_by(&self, conn: &DaemonConn) -> bool {
        self.cluster_id == conn.cluster_id && self.conn_id.is_none_or(|id| id == conn.id)
    }
}

type SessionMap = HashMap<String, SessionSlot>;

/// What a queued session message costs of its budget.
fn session_cost(m: &Message) -> usize {
    let chunk = match m {
        Message::SessionData(d) => d.chunk_base64.len(),
        Message::TunnelData(d) => d.chunk_base64.len(),
        _ => 0,
    };
    chunk.max(SESSION_MESSAGE_COST_FLOOR)
}

/// All registered daemon sockets and session subscribers.
pub(crate) struct Channels {
    conns: RwLock<HashMap<String, Arc<DaemonConn>>>,
    registered: Notify,
    sessions: Mutex<SessionMap>,
    next_token: AtomicU64,
    /// Byte limit of each session subscription's queue.
    session_buffer_limit: usize,
}

impl Channels {
    pub fn new(session_buffer_limit: usize) -> Self {
        Channels {
            conns: RwLock::new(HashMap::new()),
            registered: Notify::new(),
            sessions: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
            session_buffer_limit,
        }
    }

    fn sessions(&self) -> MutexGuard<'_, SessionMap> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `conn` the cluster's socket; a previous one is retired.
    pub fn register(&self, conn: Arc<DaemonConn>) {
        let old = self
            .conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.cluster_id.clone(), conn.clone());
        if let Some(old) = old
            && !Arc::ptr_eq(&old, &conn)
        {
            tracing::info!(cluster_id = %conn.cluster_id, "Newer daemon socket replaced the previous one.");
            old.retire();
        }
        self.registered.notify_waiters();
    }

    /// Forgets `conn`; true if it was still the cluster's socket.
    pub fn unregister(&self, conn: &Arc<DaemonConn>) -> bool {
        let mut map = self.conns.write().unwrap_or_else(|e| e.into_inner());
        let current = map
            .get(&conn.cluster_id)
            .is_some_and(|c| Arc::ptr_eq(c, conn));
        if current {
            map.remove(&conn.cluster_id);
        }
        drop(map);
        conn.retire();
        current
    }

    pub fn get(&self, cluster_id: &str) -> Option<Arc<DaemonConn>> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster_id)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<DaemonConn>> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The cluster's socket, waiting up to `wait` for a daemon to
    /// (re)register, as the reference's `requireDaemonSocketId` does.
    pub async fn wait_for(
        &self,
        cluster_id: &str,
        wait: Duration,
        store: &Store,
    ) -> Result<Arc<DaemonConn>, PlaneError> {
        if let Some(c) = self.get(cluster_id) {
            return Ok(c);
        }
        if !store.contains(cluster_id) {
            return Err(PlaneError::NotFound);
        }
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.registered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(c) = self.get(cluster_id) {
                return Ok(c);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(PlaneError::DaemonUnavailable);
            }
        }
    }

    fn new_subscription(
        self: &Arc<Self>,
        session_id: &str,
        limit: usize,
        cluster_id: &str,
        conn_id: Option<u64>,
    ) -> (SessionSlot, SessionSubscription) {
        let (tx, rx) = mpsc::unbounded_channel();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let budget = Arc::new(Budget::new(limit));
        let slot = SessionSlot {
            token,
            tx,
            budget: budget.clone(),
            cluster_id: cluster_id.to_owned(),
            conn_id,
        };
        let sub = SessionSubscription {
            session_id: session_id.to_owned(),
            token,
            rx,
            budget,
            channels: Arc::downgrade(self),
        };
        (slot, sub)
    }

    /// Subscribes to one session of `cluster_id`'s daemon (replacing an
    /// older subscriber), with an unbounded queue: the low-level hook,
    /// whose callers read as fast as they want.
    pub fn subscribe_session(
        self: &Arc<Self>,
        cluster_id: &str,
        session_id: &str,
    ) -> SessionSubscription {
        let (slot, sub) = self.new_subscription(session_id, usize::MAX, cluster_id, None);
        self.sessions().insert(session_id.to_owned(), slot);
        sub
    }

    /// Subscribes to a session on `conn` that nobody else follows (409
    /// otherwise), with a queue bounded by `session_buffer_limit`.
    pub fn try_subscribe_session(
        self: &Arc<Self>,
        conn: &DaemonConn,
        session_id: &str,
    ) -> Result<SessionSubscription, PlaneError> {
        let mut sessions = self.sessions();
        if sessions.contains_key(session_id) {
            return Err(PlaneError::conflict(
                "TeamCluster::SessionInUse",
                format!("Session {session_id} is already attached"),
            ));
        }
        let (slot, sub) = self.new_subscription(
            session_id,
            self.session_buffer_limit,
            &conn.cluster_id,
            Some(conn.id),
        );
        sessions.insert(session_id.to_owned(), slot);
        Ok(sub)
    }

    /// Queues `msg`, sent by `conn`, for the session's subscriber within
    /// its budget, if `conn` owns the session.
    fn deliver_session(&self, conn: &DaemonConn, session_id: &str, msg: Message) {
        let mut sessions = self.sessions();
        let Some(slot) = sessions.get(session_id) else {
            tracing::debug!(session_id = %session_id, kind = msg.type_str(), "Session message without a subscriber ignored.");
            return;
        };
        if !slot.owned_by(conn) {
            tracing::warn!(cluster_id = %conn.cluster_id, session_id = %session_id, kind = msg.type_str(), "Session message from a daemon that does not own the session dropped.");
            return;
        }
        if !slot.budget.try_take(session_cost(&msg)) {
            tracing::warn!(session_id = %session_id, limit = slot.budget.limit(), "Session subscriber too slow; its buffer is full, delivery stopped.");
            sessions.remove(session_id);
            return;
        }
        // Unbounded send never waits; the budget is what bounds the queue.
        let _ = slot.tx.send(msg);
    }

    /// Routes a daemon message that is not a daemon→server command.
    pub fn route(&self, conn: &DaemonConn, msg: Message, packet_len: usize, store: &Store) {
        match msg {
            Message::Response(r) => {
                // `session.attach` uses the session id as its request id and
                // is answered through the session's queue, so the reply
                // keeps its order relative to the session's messages.
                if let Some(r) = conn.resolve_response(r) {
                    let id = r.request_id.clone();
                    self.deliver_session(conn, &id, Message::Response(r));
                }
            }
            Message::Stream(c) => conn.stream_chunk(c, packet_len),
            Message::StreamEnd(e) => conn.stream_end(e),
            Message::ExposureSnapshot(list) => {
                store.set_exposures(&conn.cluster_id, list.exposures)
            }
            Message::Report { kind, fields } if crate::job_reports::is_job_event(kind) => {
                if let Err(e) = store.record_job_event(&conn.cluster_id, kind, fields) {
                    tracing::debug!(cluster_id = %conn.cluster_id, kind = kind.as_str(), error = %e, "Job event ignored.");
                }
            }
            other => match session_key(&other) {
                Some(id) => {
                    let id = id.to_owned();
                    self.deliver_session(conn, &id, other);
                }
                None => {
                    tracing::debug!(cluster_id = %conn.cluster_id, kind = other.type_str(), "Daemon message ignored.")
                }
            },
        }
    }
}

/// The session a message belongs to (`session-*` and `tunnel-*`).
fn session_key(m: &Message) -> Option<&str> {
    if let Some(id) = m.session_id() {
        return Some(id);
    }
    match m {
        Message::TunnelOpen(t) => Some(&t.session_id),
        Message::TunnelState(t) => Some(&t.session_id),
        Message::TunnelData(t) => Some(&t.session_id),
        Message::TunnelDrain(t) => Some(&t.session_id),
        Message::TunnelClose(t) => Some(&t.session_id),
        Message::TunnelHeartbeat(t) => Some(&t.session_id),
        _ => None,
    }
}

/// Sends one command to a registered daemon and waits for its reply.
/// For streams `timeout` bounds every silence (before the opening response
/// and between chunks), since a large download may take longer in total.
pub(crate) async fn send_command(
    conn: &DaemonConn,
    command: &str,
    payload: &Value,
    response_type: ResponseType,
    timeout: Duration,
) -> Result<DaemonReply, PlaneError> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let wire_type = match response_type {
        ResponseType::Other => ResponseType::Json,
        t => t,
    };
    let out = OutboundCommand {
        kind: "command",
        request_id: &request_id,
        command,
        response_type: wire_type,
        payload,
    };
    if wire_type == ResponseType::Stream {
        return send_stream(conn, &request_id, &out, timeout).await;
    }
    let (tx, rx) = oneshot::channel();
    conn.pending()
        .insert(request_id.clone(), Pending::Reply(tx));
    let _guard = PendingGuard {
        conn,
        request_id: &request_id,
    };
    conn.emit(&out)?;
    let response = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => return Err(PlaneError::ConnectionLost),
        Err(_) => return Err(PlaneError::Timeout),
    };
    Ok(if wire_type == ResponseType::Buffer {
        DaemonReply::Buffer(response)
    } else {
        DaemonReply::Json(response)
    })
}

async fn send_stream(
    conn: &DaemonConn,
    request_id: &str,
    out: &OutboundCommand<'_>,
    timeout: Duration,
) -> Result<DaemonReply, PlaneError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    conn.pending().insert(
        request_id.to_owned(),
        Pending::Stream {
            tx,
            stream_id: None,
            budget: None,
        },
    );
    let _guard = PendingGuard { conn, request_id };
    conn.emit(out)?;
    let mut response: Option<ResponseMessage> = None;
    let mut body = Vec::new();
    let mut chunks = 0usize;
    let mut max_chunk_packet_len = 0usize;
    let mut error: Option<String> = None;
    loop {
        let event = match tokio::time::timeout(timeout, rx.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => StreamEvent::Lost,
            Err(_) => return Err(PlaneError::Timeout),
        };
        match event {
            StreamEvent::Open(r) => {
                if !r.ok {
                    let error = Some(
                        r.message
                            .clone()
                            .unwrap_or_else(|| "Daemon stream request failed".into()),
                    );
                    return Ok(DaemonReply::Stream {
                        response: r,
                        body,
                        chunks,
                        max_chunk_packet_len,
                        error,
                    });
                }
                response = Some(r);
            }
            StreamEvent::Chunk {
                chunk_base64,
                packet_len,
            } => {
                chunks += 1;
                max_chunk_packet_len = max_chunk_packet_len.max(packet_len);
                if let Err(e) =
                    base64::engine::general_purpose::STANDARD.decode_vec(&chunk_base64, &mut body)
                {
                    error.get_or_insert_with(|| {
                        format!("Invalid chunkBase64 in chunk {chunks}: {e}")
                    });
                }
            }
            StreamEvent::End(message) => {
                if let Some(m) = message {
                    error.get_or_insert(m);
                }
                break;
            }
            StreamEvent::Lost => return Err(PlaneError::ConnectionLost),
        }
    }
    let response = response.unwrap_or_else(|| {
        error.get_or_insert_with(|| "Stream ended before its opening response".into());
        ResponseMessage::failure(request_id, 502, "Stream ended before its opening response")
    });
    Ok(DaemonReply::Stream {
        response,
        body,
        chunks,
        max_chunk_packet_len,
        error,
    })
}

/// A server→daemon command serialised once: the JSON argument of its
/// `team-cluster-daemon:message` event, ready to emit, and the size of the
/// Engine.IO frame it makes.
pub(crate) struct EncodedCommand {
    raw: Box<RawValue>,
}

impl EncodedCommand {
    pub fn new(
        request_id: &str,
        command: &str,
        payload: &Value,
        response_type: ResponseType,
    ) -> Result<Self, PlaneError> {
        let wire_type = match response_type {
            ResponseType::Other => ResponseType::Json,
            t => t,
        };
        let text = serde_json::to_string(&OutboundCommand {
            kind: "command",
            request_id,
            command,
            response_type: wire_type,
            payload,
        })
        .map_err(|e| PlaneError::Internal(format!("cannot encode command: {e}")))?;
        let raw = RawValue::from_string(text)
            .map_err(|e| PlaneError::Internal(format!("cannot encode command: {e}")))?;
        Ok(EncodedCommand { raw })
    }

    /// Bytes of the Engine.IO text frame carrying this command.
    pub fn frame_len(&self) -> usize {
        self.raw.get().len() + MESSAGE_FRAME_OVERHEAD
    }

    /// Emits it on `conn` (the raw JSON goes out verbatim).
    pub fn emit(&self, conn: &DaemonConn) -> Result<(), PlaneError> {
        conn.emit(&*self.raw)
    }
}

/// Sends a JSON command whose frame was already encoded (and size-checked)
/// and waits for its response.
pub(crate) async fn send_encoded(
    conn: &DaemonConn,
    request_id: &str,
    command: &EncodedCommand,
    timeout: Duration,
) -> Result<ResponseMessage, PlaneError> {
    let (tx, rx) = oneshot::channel();
    conn.pending()
        .insert(request_id.to_owned(), Pending::Reply(tx));
    let _guard = PendingGuard { conn, request_id };
    command.emit(conn)?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(PlaneError::ConnectionLost),
        Err(_) => Err(PlaneError::Timeout),
    }
}

/// Sends a stream command and waits for its opening response. The chunks
/// are then read from the returned [`DaemonStream`] as they arrive, with at
/// most `buffer_limit` bytes (base64 text) queued for it; `timeout` bounds
/// every silence. A refused opening (`ok:false`) is
/// [`PlaneError::DaemonRequestFailed`].
pub(crate) async fn open_stream(
    conn: Arc<DaemonConn>,
    command: &str,
    payload: &Value,
    timeout: Duration,
    buffer_limit: usize,
) -> Result<DaemonStream, PlaneError> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let encoded = EncodedCommand::new(&request_id, command, payload, ResponseType::Stream)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Budget::new(buffer_limit));
    conn.pending().insert(
        request_id.clone(),
        Pending::Stream {
            tx,
            stream_id: None,
            budget: Some(budget.clone()),
        },
    );
    let guard = OwnedPendingGuard {
        conn: conn.clone(),
        request_id,
    };
    encoded.emit(&conn)?;
    let response = match tokio::time::timeout(timeout, rx.recv()).await {
        Err(_) => return Err(PlaneError::Timeout),
        Ok(None | Some(StreamEvent::Lost)) => return Err(PlaneError::ConnectionLost),
        Ok(Some(StreamEvent::Open(r))) => r,
        Ok(Some(StreamEvent::Chunk { .. })) => {
            return Err(PlaneError::DaemonProtocol(format!(
                "`{command}` sent stream data before its opening response"
            )));
        }
        Ok(Some(StreamEvent::End(message))) => {
            return Err(PlaneError::DaemonProtocol(format!(
                "`{command}` ended its stream before the opening response{}",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )));
        }
    };
    if !response.ok {
        return Err(PlaneError::from_daemon(
            response.into_result().err().unwrap_or_else(
                // `into_result` of an `ok:false` response is always an error;
                // this arm only keeps the types honest.
                || volt_protocol::envelope::ResponseFailure {
                    status: 502,
                    code: None,
                    message: "Daemon refused the stream".into(),
                },
            ),
        ));
    }
    Ok(DaemonStream {
        command: command.to_owned(),
        response,
        rx,
        budget,
        _guard: guard,
        timeout,
        finished: false,
        chunks: 0,
    })
}

/// A stream reply being received: the opening response, then the body
/// chunk by chunk as the daemon sends it. Dropping it stops routing the
/// stream (later chunks are discarded).
pub struct DaemonStream {
    command: String,
    response: ResponseMessage,
    rx: mpsc::UnboundedReceiver<StreamEvent>,
    budget: Arc<Budget>,
    _guard: OwnedPendingGuard,
    timeout: Duration,
    finished: bool,
    chunks: usize,
}

impl std::fmt::Debug for DaemonStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonStream")
            .field("command", &self.command)
            .field("response", &self.response)
            .field("chunks", &self.chunks)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl DaemonStream {
    /// The opening response (`ok:true, status, headers, streamId`).
    pub fn response(&self) -> &ResponseMessage {
        &self.response
    }

    /// The daemon's status.
    pub fn status(&self) -> u16 {
        self.response.status
    }

    /// A header of the opening response (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Bytes of base64 text the plane queues for this stream at most.
    pub fn buffer_limit(&self) -> usize {
        self.budget.limit()
    }

    /// `stream` messages received so far.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// The next decoded chunk; `None` after a clean `stream-end`. An error
    /// ends the stream: `stream-end` with a message
    /// ([`PlaneError::StreamFailed`]), a lost connection, a silence longer
    /// than the timeout, invalid base64, or a consumer that fell more than
    /// the buffer limit behind ([`PlaneError::BufferFull`]).
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, PlaneError>> {
        loop {
            if self.finished {
                return None;
            }
            if self.budget.is_tripped() {
                return Some(self.fail(PlaneError::BufferFull {
                    limit: self.budget.limit(),
                }));
            }
            let event = tokio::select! {
                biased;
                _ = self.budget.tripped() => continue,
                e = tokio::time::timeout(self.timeout, self.rx.recv()) => e,
            };
            let event = match event {
                Err(_) => return Some(self.fail(PlaneError::Timeout)),
                Ok(None | Some(StreamEvent::Lost)) => {
                    if self.budget.is_tripped() {
                        continue;
                    }
                    return Some(self.fail(PlaneError::ConnectionLost));
                }
                Ok(Some(e)) => e,
            };
            match event {
                StreamEvent::Chunk { chunk_base64, .. } => {
                    self.budget.release(chunk_base64.len());
                    self.chunks += 1;
                    return Some(
                        match base64::engine::general_purpose::STANDARD.decode(&chunk_base64) {
                            Ok(bytes) => Ok(bytes),
                            Err(e) => self.fail(PlaneError::DaemonProtocol(format!(
                                "invalid chunkBase64 in chunk {} of `{}`: {e}",
                                self.chunks, self.command
                            ))),
                        },
                    );
                }
                StreamEvent::End(None) => {
                    self.finished = true;
                    return None;
                }
                StreamEvent::End(Some(message)) => {
                    return Some(self.fail(PlaneError::StreamFailed(message)));
                }
                // A repeated opening response changes nothing.
                StreamEvent::Open(_) => continue,
                StreamEvent::Lost => return Some(self.fail(PlaneError::ConnectionLost)),
            }
        }
    }

    fn fail<T>(&mut self, e: PlaneError) -> Result<T, PlaneError> {
        self.finished = true;
        tracing::warn!(command = %self.command, chunks = self.chunks, error = %e, "Daemon stream aborted.");
        Err(e)
    }

    /// The body as a `futures` stream of chunks (what an HTTP body wants).
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, PlaneError>> + Send + 'static {
        futures_util::stream::unfold(self, |mut s| async move {
            let item = s.next_chunk().await?;
            Some((item, s))
        })
    }

    /// Reads the whole body (for small replies and tests).
    pub async fn collect(mut self) -> Result<Vec<u8>, PlaneError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            body.extend(chunk?);
        }
        Ok(body)
    }
}
