//! The [`Outbox`]: how any actor sends something to the VOLT server.
//!
//! Outbound traffic goes through the dispatcher (it owns request ids,
//! pending replies, the emit buffer and the current link), but nobody needs
//! to know that: the outbox is bound to whoever dispatches today, and keeps
//! fire-and-forget messages emitted while nobody is bound (before the first
//! start, during a dispatcher restart) until someone binds again.

use super::handle::Handle;
use super::link::Link;
use actix::dev::ToEnvelope;
use actix::prelude::*;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;
use thiserror::Error;
use volt_protocol::{ErrorCode, Message as WireMessage};

/// Messages kept while no dispatcher is bound: the same bound as the
/// dispatcher's own emit buffer (the SDK's and Gen C's 8,192), applied
/// separately, oldest dropped first.
pub const UNBOUND_EMIT_BUFFER: usize = 8192;

/// Why an outbound command failed; `code()` is the SDK's wire code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("SOCKET_NOT_READY: {0}")]
    SocketNotReady(String),
    #[error("COMMAND_TIMEOUT: {command} got no response within {timeout_ms} ms")]
    Timeout { command: String, timeout_ms: u64 },
    #[error("COMMAND_REJECTED: {command} failed with status {status}: {message}")]
    Rejected {
        command: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("EMIT_FAILED: {0}")]
    EmitFailed(String),
}

impl CommandError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::SocketNotReady(_) => ErrorCode::SocketNotReady,
            CommandError::Timeout { .. } => ErrorCode::CommandTimeout,
            CommandError::Rejected { .. } => ErrorCode::CommandRejected,
            CommandError::EmitFailed(_) => ErrorCode::EmitFailed,
        }
    }

    /// The HTTP-like status of a rejection.
    pub fn status(&self) -> Option<u16> {
        match self {
            CommandError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Send a command to the server and wait for its result (`data.data`).
#[derive(Message)]
#[rtype(result = "Result<Value, CommandError>")]
pub struct SendCommand {
    pub command: String,
    pub payload: Value,
    /// Defaults to the configured command timeout.
    pub timeout: Option<Duration>,
}

impl SendCommand {
    pub fn new(command: impl Into<String>, payload: Value) -> Self {
        SendCommand {
            command: command.into(),
            payload,
            timeout: None,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Fire-and-forget message to the server (buffered while disconnected).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit(pub WireMessage);

/// The current link, if registered (for senders that stream on their own).
#[derive(Message)]
#[rtype(result = "Option<Link>")]
pub struct CurrentLink;

struct Inner {
    commands: Handle<SendCommand>,
    emits: Handle<Emit>,
    links: Handle<CurrentLink>,
    unsent: RefCell<VecDeque<WireMessage>>,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Outbox(Rc<Inner>);

impl Default for Outbox {
    fn default() -> Self {
        Outbox(Rc::new(Inner {
            commands: Handle::new("the dispatcher"),
            emits: Handle::new("the dispatcher"),
            links: Handle::new("the dispatcher"),
            unsent: RefCell::default(),
        }))
    }
}

impl Outbox {
    /// Makes `addr` the dispatcher and returns what was emitted while none
    /// was bound (oldest first) for it to send.
    pub fn bind<A>(&self, addr: Addr<A>) -> Vec<WireMessage>
    where
        A: Actor + Handler<SendCommand> + Handler<Emit> + Handler<CurrentLink>,
        A::Context: ToEnvelope<A, SendCommand> + ToEnvelope<A, Emit> + ToEnvelope<A, CurrentLink>,
    {
        self.0.commands.bind(addr.clone());
        self.0.emits.bind(addr.clone());
        self.0.links.bind(addr);
        self.0.unsent.borrow_mut().drain(..).collect()
    }

    /// Sends `command` and waits for the server's result.
    pub async fn command(&self, msg: SendCommand) -> Result<Value, CommandError> {
        let command = msg.command.clone();
        match self.0.commands.send(msg).await {
            Ok(result) => result,
            Err(e) => Err(CommandError::SocketNotReady(format!(
                "{e}; cannot send {command}"
            ))),
        }
    }

    /// Emits `msg` (kept until a dispatcher is bound when none is).
    pub fn emit(&self, msg: WireMessage) {
        if let Some(r) = self.0.emits.recipient() {
            r.do_send(Emit(msg));
            return;
        }
        let mut unsent = self.0.unsent.borrow_mut();
        if unsent.len() >= UNBOUND_EMIT_BUFFER {
            unsent.pop_front();
        }
        unsent.push_back(msg);
    }

    /// The registered link, if there is one right now.
    pub async fn link(&self) -> Option<Link> {
        self.0.links.send(CurrentLink).await.ok().flatten()
    }
}
