//! Reverse-channel dispatch: everything that travels in
//! `team-cluster-daemon:message` envelopes, in both directions.
//!
//! Inbound `command` → the handler family that owns the name
//! (the [`CommandHandler`] it was built with: `remote/`'s command enum or a
//! run-time registered extension) →
//! `response` (`ok:true, status, data:{status:"success", data}`; unknown
//! command → 404 `Unknown daemon command: <name>`; handler error → `ok:false`
//! with its status and message; handler panic → 500, the daemon goes on).
//! Inbound `response` → the pending outbound command it answers. Other types
//! → the [`Router`]'s subscribers.
//!
//! Inbound commands are bounded ([`CommandLimits`], `[commands]`): at most
//! `max_in_flight` are answered at once (a command beyond that gets 429
//! with the reason and is not run; replies that are ready at once, such as
//! `runtime.ping`, never count), a reply not ready within `deadline` is a
//! 504, and a streamed reply that makes no progress for `stream_idle` ends
//! with `stream-end {message}`. A command whose JSON is too deep to decode
//! (serde's limit of 128 levels) still gets its 400.
//!
//! Outbound [`SendCommand`] gets a UUID v4 `requestId` and a timeout and fails
//! with `SOCKET_NOT_READY` / `COMMAND_TIMEOUT` / `COMMAND_REJECTED`; every
//! pending command fails at once when the link goes down. [`Emit`] is
//! fire-and-forget: queued in a bounded buffer while disconnected, drained
//! in order after the next registration.
//!
//! Replies and the daemon's own commands travel in the link's control lane;
//! a stream's chunks and its `stream-end` in the bulk lane (`api/link.rs`),
//! so a large download never delays a heartbeat or another reply.

use crate::api::reply::{self, CallInfo, CommandHandler, Reply, Run};
use crate::api::{
    CommandError, CurrentLink, Emit, Link, LinkError, Outbox, Router, SendCommand, SocketEvent,
};
use crate::events::{Event, EventBus};
use actix::prelude::*;
use base64::Engine as _;
use futures_util::FutureExt;
use otp::supervisor::StopChild;
use otp::{ExitReason, ExitSlot, panic_message};
use serde_json::{Value, json};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;
use volt_protocol::Message;
use volt_protocol::envelope::{
    CommandMessage, ResponseMessage, ResponseType, StreamChunk, StreamEnd,
};

/// Raw bytes per `stream` chunk. 64 KiB becomes ~87 KiB of base64: far
/// below socket.io's default 1 MB maxPayload, small enough that a full
/// outbound queue stays a few MB, large enough that framing overhead is
/// negligible.
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Envelope bytes around a chunk's base64 text (type, ids, frame prefix).
const STREAM_FRAME_OVERHEAD: usize = 256;
/// Drain retry period when the link's queue is full.
const DRAIN_RETRY: Duration = Duration::from_millis(5);

struct ForgetPending(String);

impl actix::Message for ForgetPending {
    type Result = ();
}

struct Pending {
    tx: oneshot::Sender<Result<Value, CommandError>>,
    command: String,
}

/// Bounds on answering inbound commands (from `[commands]`).
#[derive(Debug, Clone, Copy)]
pub struct CommandLimits {
    pub deadline: Duration,
    pub stream_idle: Duration,
    pub max_in_flight: usize,
}

impl From<&crate::config::CommandSettings> for CommandLimits {
    fn from(s: &crate::config::CommandSettings) -> Self {
        CommandLimits {
            deadline: s.deadline,
            stream_idle: s.stream_idle,
            max_in_flight: s.max_in_flight.max(1),
        }
    }
}

impl Default for CommandLimits {
    fn default() -> Self {
        (&crate::config::CommandSettings::default()).into()
    }
}

/// Decrements the in-flight count when a command's reply is done (or its
/// task is dropped).
struct InFlight(Rc<Cell<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The dispatcher's tuning (from the `[socket]` settings).
#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    /// Fire-and-forget messages kept while disconnected.
    pub emit_buffer: usize,
    /// Default timeout of outbound commands.
    pub command_timeout: Duration,
}

/// The dispatcher actor (see the module docs).
pub struct Dispatcher {
    handler: CommandHandler,
    router: Router,
    outbox: Outbox,
    bus: EventBus,
    exit: ExitSlot,
    link: Option<Link>,
    pending: HashMap<String, Pending>,
    buffer: VecDeque<Message>,
    buffer_cap: usize,
    dropped: u64,
    command_timeout: Duration,
    draining: bool,
    limits: CommandLimits,
    in_flight: Rc<Cell<usize>>,
}

impl Dispatcher {
    /// `handler` answers inbound commands; `router` takes other inbound
    /// messages; the dispatcher binds itself to `outbox` when it starts.
    pub fn new(
        handler: CommandHandler,
        router: Router,
        outbox: Outbox,
        settings: DispatchSettings,
        bus: EventBus,
        exit: ExitSlot,
    ) -> Self {
        Dispatcher {
            handler,
            router,
            outbox,
            bus,
            exit,
            link: None,
            pending: HashMap::new(),
            buffer: VecDeque::new(),
            buffer_cap: settings.emit_buffer.max(1),
            dropped: 0,
            command_timeout: settings.command_timeout,
            draining: false,
            limits: CommandLimits::default(),
            in_flight: Rc::new(Cell::new(0)),
        }
    }

    /// Sets the bounds on inbound commands (default: `[commands]`'s).
    pub fn with_limits(mut self, limits: CommandLimits) -> Self {
        self.limits = limits;
        self
    }

    fn fail_pending(&mut self, why: &str) {
        for (_, p) in self.pending.drain() {
            let _ = p.tx.send(Err(CommandError::SocketNotReady(format!(
                "{why} while waiting for {}",
                p.command
            ))));
        }
    }

    fn on_response(&mut self, resp: ResponseMessage) {
        let Some(p) = self.pending.remove(&resp.request_id) else {
            tracing::debug!(request_id = %resp.request_id, "Response for an unknown request ignored.");
            return;
        };
        let result = resp.into_result().map_err(|f| CommandError::Rejected {
            command: p.command.clone(),
            status: f.status,
            code: f.code,
            message: f.message,
        });
        let _ = p.tx.send(result);
    }

    fn on_command(&mut self, cmd: CommandMessage) {
        let Some(link) = self.link.clone() else {
            tracing::warn!(command = %cmd.command, "Command arrived without a registered link; dropped.");
            return;
        };
        let call = CallInfo {
            request_id: cmd.request_id,
            command: cmd.command,
            response_type: cmd.response_type.unwrap_or_default(),
            payload: cmd.payload.unwrap_or_else(|| json!({})),
        };
        let run = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.handler)(&call))) {
            Ok(run) => run,
            Err(p) => Run::Done(Reply::panicked(&call.command, &panic_message(p.as_ref()))),
        };
        match run {
            Run::Done(reply) => deliver_now(link, call, reply),
            Run::Later(fut) => {
                let limits = self.limits;
                let busy = self.in_flight.get();
                if busy >= limits.max_in_flight {
                    tracing::warn!(command = %call.command, in_flight = busy, "Command refused: too many in flight.");
                    let reply = Reply::failure_with_code(
                        429,
                        "TOO_MANY_COMMANDS",
                        format!(
                            "{busy} commands are in flight (the limit is {}, [commands] max_in_flight); {} was not run, retry later",
                            limits.max_in_flight, call.command
                        ),
                    );
                    return deliver_now(link, call, reply);
                }
                self.in_flight.set(busy + 1);
                let guard = InFlight(self.in_flight.clone());
                let command = call.command.clone();
                actix_rt::spawn(async move {
                    let _guard = guard;
                    let run = AssertUnwindSafe(fut).catch_unwind();
                    let reply = match tokio::time::timeout(limits.deadline, run).await {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(p)) => Reply::panicked(&command, &panic_message(p.as_ref())),
                        Err(_) => {
                            tracing::warn!(%command, deadline_ms = limits.deadline.as_millis() as u64, "Command missed its deadline.");
                            Reply::failure_with_code(
                                504,
                                "COMMAND_DEADLINE",
                                format!(
                                    "{command} did not finish within {} ms ([commands] deadline_secs)",
                                    limits.deadline.as_millis()
                                ),
                            )
                        }
                    };
                    deliver_bounded(&link, &call, reply, limits.stream_idle).await;
                });
            }
        }
    }

    fn on_invalid(&mut self, raw: &str, error: &str) {
        // Only the two keys: skipping the rest never recurses (serde_json
        // ignores values iteratively), so 10 000-deep JSON is answered too.
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "type")]
            kind: Option<String>,
            #[serde(rename = "requestId")]
            request_id: Option<String>,
        }
        let probe = serde_json::from_str::<Probe>(raw).ok();
        let is_command = probe.as_ref().and_then(|p| p.kind.as_deref()) == Some("command");
        match (
            is_command,
            probe.as_ref().and_then(|p| p.request_id.as_deref()),
            &self.link,
        ) {
            (true, Some(id), Some(link)) => {
                let _ = link.try_send(&Message::Response(ResponseMessage::failure(
                    id,
                    400,
                    format!("Invalid command message: {error}"),
                )));
            }
            _ => tracing::warn!(%error, "Ignoring an invalid message from the server."),
        }
    }

    fn route(&mut self, msg: Message) {
        let delivered = self.router.deliver(&msg);
        if !delivered {
            tracing::debug!(kind = msg.type_str(), "No subscriber for message; ignored.");
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.clone() else {
            self.draining = false;
            return;
        };
        if self.dropped > 0 {
            self.bus.emit(Event::EmitBufferOverflow {
                dropped: self.dropped,
            });
            self.dropped = 0;
        }
        while let Some(msg) = self.buffer.front() {
            match link.try_send(msg) {
                Ok(()) => {
                    self.buffer.pop_front();
                }
                Err(LinkError::Full) => {
                    self.draining = true;
                    ctx.run_later(DRAIN_RETRY, |act, ctx| act.drain(ctx));
                    return;
                }
                Err(LinkError::Closed) => {
                    self.draining = false;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = msg.type_str(), "Dropping a buffered message that cannot be sent.");
                    self.buffer.pop_front();
                }
            }
        }
        self.draining = false;
    }

    fn buffer_push(&mut self, msg: Message) {
        if self.buffer.len() >= self.buffer_cap {
            self.buffer.pop_front();
            self.dropped += 1;
        }
        self.buffer.push_back(msg);
    }
}

/// Sends a reply that is ready now. JSON and failures are sent without
/// waiting when the queue has room (the hot path); everything else goes
/// through [`deliver`] on its own task.
fn deliver_now(link: Link, call: CallInfo, reply: Reply) {
    let msg = match reply.into_message(&call.request_id) {
        Ok(msg) => msg,
        Err(reply) => {
            actix_rt::spawn(async move { deliver(&link, &call, reply).await });
            return;
        }
    };
    match link.try_send(&msg) {
        Ok(()) => {}
        Err(LinkError::Full) => {
            actix_rt::spawn(async move { send_or_report(&link, &call, msg).await });
        }
        Err(LinkError::TooLarge { len, max }) => {
            let _ = link.try_send(&too_large(&call, len, max));
        }
        Err(e) => tracing::debug!(error = %e, command = %call.command, "Reply not sent."),
    }
}

fn too_large(call: &CallInfo, len: usize, max: usize) -> Message {
    Message::Response(ResponseMessage::failure(
        call.request_id.clone(),
        413,
        format!(
            "Reply to {} is {len} bytes, over the server's maxPayload of {max}; use responseType \"stream\"",
            call.command
        ),
    ))
}

async fn send_or_report(link: &Link, call: &CallInfo, msg: Message) {
    match link.send(&msg).await {
        Ok(()) => {}
        Err(LinkError::TooLarge { len, max }) => {
            let _ = link.send(&too_large(call, len, max)).await;
        }
        Err(e) => tracing::debug!(error = %e, command = %call.command, "Reply not sent."),
    }
}

/// Sends any reply, waiting for room in the link's queue (backpressure).
/// A streamed body asked for with `responseType:"buffer"` is sent as one
/// buffer reply (`bodyBase64`) when it fits in the server's `maxPayload`.
pub async fn deliver(link: &Link, call: &CallInfo, reply: Reply) {
    deliver_bounded(link, call, reply, CommandLimits::default().stream_idle).await
}

/// [`deliver`], ending a stream that makes no progress for `idle`.
pub async fn deliver_bounded(link: &Link, call: &CallInfo, reply: Reply, idle: Duration) {
    match reply.into_message(&call.request_id) {
        Ok(msg) => send_or_report(link, call, msg).await,
        Err(Reply::Stream(stream)) if call.response_type == ResponseType::Buffer => {
            let reply =
                match tokio::time::timeout(idle, buffer_from_stream(stream, link.max_payload()))
                    .await
                {
                    Ok(reply) => reply,
                    Err(_) => Reply::failure_with_code(
                        504,
                        "STREAM_STALLED",
                        format!("the body made no progress for {} ms", idle.as_millis()),
                    ),
                };
            Box::pin(deliver_bounded(link, call, reply, idle)).await;
        }
        Err(Reply::Stream(stream)) => send_stream(link, call, stream, idle).await,
        // Handled replies were answered by their handler.
        Err(_) => {}
    }
}

/// Collects a stream body into a buffer reply, refusing (413) one whose
/// base64 would not fit in a single message of `max_payload` bytes.
async fn buffer_from_stream(stream: reply::StreamReply, max_payload: usize) -> Reply {
    use futures_util::StreamExt;
    let limit = max_payload.saturating_sub(STREAM_FRAME_OVERHEAD) / 4 * 3;
    let mut body = Vec::new();
    let mut chunks = stream.body;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                body.extend_from_slice(&bytes);
                if body.len() > limit {
                    return Reply::failure(
                        413,
                        format!(
                            "the body is over {limit} bytes, more than one message of the server's maxPayload can carry; use responseType \"stream\""
                        ),
                    );
                }
            }
            Err(e) => return Reply::failure(502, e),
        }
    }
    Reply::Buffer {
        status: stream.status,
        headers: Some(stream.headers),
        body,
    }
}

async fn send_stream(link: &Link, call: &CallInfo, stream: reply::StreamReply, idle: Duration) {
    use futures_util::StreamExt;
    let request_id = call.request_id.clone();
    // Gen B uses the requestId as the streamId.
    let stream_id = request_id.clone();
    let start = Message::Response(ResponseMessage::stream_start(
        request_id.clone(),
        stream.status,
        stream.headers,
        stream_id.clone(),
    ));
    match link.send(&start).await {
        Ok(()) => {}
        // Headers too large for the server's maxPayload: say so rather than
        // leave the server waiting for a reply until its timeout.
        Err(LinkError::TooLarge { len, max }) => {
            let _ = link.send(&too_large(call, len, max)).await;
            return;
        }
        Err(_) => return,
    }
    // Raw bytes per chunk so that base64 plus the envelope stays under
    // maxPayload, whatever the server announced.
    let budget = link
        .max_payload()
        .saturating_sub(STREAM_FRAME_OVERHEAD + request_id.len() * 2);
    let chunk_bytes = (budget / 4 * 3).clamp(1, STREAM_CHUNK_BYTES);
    let mut body = stream.body;
    let mut pending: Vec<u8> = Vec::with_capacity(chunk_bytes);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut failure: Option<String> = None;
    loop {
        // A body that makes no progress ends like a failed one: what was
        // read is sent, then `stream-end` with the reason.
        let next = match tokio::time::timeout(idle, body.next()).await {
            Ok(next) => next,
            Err(_) => {
                tracing::warn!(command = %call.command, idle_ms = idle.as_millis() as u64, "Stream ended: no progress.");
                Some(Err(format!(
                    "the stream made no progress for {} ms ([commands] stream_idle_secs)",
                    idle.as_millis()
                )))
            }
        };
        let done = match next {
            Some(Ok(bytes)) => {
                pending.extend_from_slice(&bytes);
                false
            }
            Some(Err(e)) => {
                failure = Some(e);
                true
            }
            None => true,
        };
        while pending.len() >= chunk_bytes || (done && !pending.is_empty()) {
            let take = pending.len().min(chunk_bytes);
            let chunk: Vec<u8> = pending.drain(..take).collect();
            let msg = Message::Stream(StreamChunk {
                request_id: request_id.clone(),
                stream_id: stream_id.clone(),
                chunk_base64: b64.encode(&chunk),
            });
            match tokio::time::timeout(idle, link.send(&msg)).await {
                Ok(Ok(())) => {}
                // The connection is gone (the server failed the request)
                // or takes nothing any more: stop reading the body.
                Ok(Err(_)) | Err(_) => return,
            }
        }
        if done {
            break;
        }
    }
    let _ = link
        .send(&Message::StreamEnd(StreamEnd {
            request_id,
            stream_id,
            message: failure,
        }))
        .await;
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for msg in self.outbox.bind(ctx.address()) {
            self.buffer_push(msg);
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.fail_pending("dispatcher stopped");
    }
}

impl Handler<StopChild> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}

impl Handler<SocketEvent> for Dispatcher {
    type Result = ();
    fn handle(&mut self, event: SocketEvent, ctx: &mut Self::Context) {
        match event {
            SocketEvent::Message(Message::Command(cmd)) => self.on_command(cmd),
            SocketEvent::Message(Message::Response(resp)) => self.on_response(resp),
            SocketEvent::Message(other) => self.route(other),
            SocketEvent::Invalid { raw, error } => self.on_invalid(&raw, &error),
            SocketEvent::Up(link) => {
                self.link = Some(link);
                if !self.buffer.is_empty() || self.dropped > 0 {
                    self.drain(ctx);
                }
            }
            SocketEvent::Down { connection } => {
                if self
                    .link
                    .as_ref()
                    .is_some_and(|l| l.connection() <= connection)
                {
                    self.link = None;
                }
                self.fail_pending("control socket disconnected");
            }
        }
    }
}

impl Handler<SendCommand> for Dispatcher {
    type Result = ResponseFuture<Result<Value, CommandError>>;

    fn handle(&mut self, msg: SendCommand, ctx: &mut Self::Context) -> Self::Result {
        let command = msg.command;
        let Some(link) = self.link.clone().filter(|l| !l.is_closed()) else {
            return Box::pin(std::future::ready(Err(CommandError::SocketNotReady(
                format!("control socket is not registered; cannot send {command}"),
            ))));
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let message = Message::Command(CommandMessage {
            request_id: request_id.clone(),
            command: command.clone(),
            response_type: Some(ResponseType::Json),
            payload: Some(msg.payload),
        });
        let frame = match link.encode(&message) {
            Ok(f) => f,
            Err(e) => {
                return Box::pin(std::future::ready(Err(CommandError::EmitFailed(
                    e.to_string(),
                ))));
            }
        };
        let (tx, rx) = oneshot::channel();
        self.pending.insert(
            request_id.clone(),
            Pending {
                tx,
                command: command.clone(),
            },
        );
        let timeout = msg.timeout.unwrap_or(self.command_timeout);
        let me = ctx.address();
        Box::pin(async move {
            if link.send_frame(frame).await.is_err() {
                me.do_send(ForgetPending(request_id));
                return Err(CommandError::SocketNotReady(format!(
                    "control socket closed while sending {command}"
                )));
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(CommandError::SocketNotReady(format!(
                    "dispatcher stopped while waiting for {command}"
                ))),
                Err(_) => {
                    me.do_send(ForgetPending(request_id));
                    Err(CommandError::Timeout {
                        command,
                        timeout_ms: timeout.as_millis() as u64,
                    })
                }
            }
        })
    }
}

impl Handler<ForgetPending> for Dispatcher {
    type Result = ();
    fn handle(&mut self, msg: ForgetPending, _ctx: &mut Self::Context) {
        self.pending.remove(&msg.0);
    }
}

impl Handler<Emit> for Dispatcher {
    type Result = ();
    fn handle(&mut self, Emit(msg): Emit, ctx: &mut Self::Context) {
        match self.link.clone() {
            Some(link) if !self.draining && self.buffer.is_empty() => match link.try_send(&msg) {
                Ok(()) => {}
                Err(LinkError::Full) => {
                    self.buffer_push(msg);
                    self.draining = true;
                    ctx.run_later(DRAIN_RETRY, |act, ctx| act.drain(ctx));
                }
                Err(LinkError::Closed) => self.buffer_push(msg),
                Err(e) => tracing::warn!(error = %e, "Dropping a message that cannot be sent."),
            },
            _ => self.buffer_push(msg),
        }
    }
}

impl Handler<CurrentLink> for Dispatcher {
    type Result = Option<Link>;
    fn handle(&mut self, _: CurrentLink, _ctx: &mut Self::Context) -> Option<Link> {
        self.link.clone().filter(|l| !l.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn call() -> CallInfo {
        CallInfo {
            request_id: "r1".into(),
            command: "object.get".into(),
            response_type: ResponseType::Stream,
            payload: json!({}),
        }
    }

    #[tokio::test]
    async fn a_stream_whose_first_reply_exceeds_max_payload_is_answered_413() {
        let (tx, mut rx) = mpsc::channel(8);
        let link = Link::new(1, tx, 300);
        let headers = [("x-big".to_owned(), "v".repeat(400))]
            .into_iter()
            .collect();
        let reply = Reply::Stream(reply::StreamReply {
            status: 200,
            headers,
            body: Box::pin(futures_util::stream::empty()),
        });
        deliver(&link, &call(), reply).await;
        // `deliver` has returned: whatever it sent is queued.
        let frame = rx.try_recv().expect("a reply").into_text().unwrap();
        let body = frame
            .as_str()
            .strip_prefix("42[\"team-cluster-daemon:message\",")
            .and_then(|t| t.strip_suffix(']'))
            .unwrap();
        let Message::Response(r) = Message::decode(body).unwrap() else {
            panic!("{body}")
        };
        assert_eq!((r.request_id.as_str(), r.ok, r.status), ("r1", false, 413));
        assert!(rx.try_recv().is_err(), "nothing else is sent");
    }
}
