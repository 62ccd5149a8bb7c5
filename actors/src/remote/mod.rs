//! Inbound commands: one file per command family, joined by one dispatch
//! enum ([`Command`]). Adding a command touches its family file and, for a
//! new family, one enum arm here.
//!
//! A family parses `(name, payload)` into its own typed command (unknown
//! payload keys are ignored; a bad payload is a 400 with the reason), and
//! runs it into a [`Reply`], either at once ([`Run::Done`]) or as a future
//! ([`Run::Later`]) that the dispatcher runs on its own task.
//!
//! | family | file |
//! |---|---|
//! | `runtime.*` | `runtime.rs` |
//! | `runtime.services.status`, `runtime.services.restart` (voltd extensions) | `services.rs` |
//! | `session.attach` (host terminal; the sessions themselves: `terminal/`) | `session.rs` |
//! | `remote.explorer.*` | `explorer/` (one file per target) |
//! | `object.*` | `object.rs` |
//! | `queue.dispatch`, `jobs.*`, `runtime.queues.snapshot`, `runtime.queue-concurrency.apply` | `jobs.rs` |
//!
//! The reply types live in [`crate::api::reply`]; the dispatcher gets
//! [`command_handler`] and knows nothing else of this module.

pub mod context;
pub mod explorer;
pub mod jobs;
pub mod object;
pub mod runtime;
pub mod services;
pub mod session;
pub mod terminal;

pub use crate::api::reply::{
    CallInfo, CommandHandler, Reply, Run, StreamReply, accepted, parse_payload,
};

pub use context::{ExtensionHandler, ExtensionRegistry, HandlerContext};

use serde_json::Value;
use std::rc::Rc;

/// Every built-in command family.
pub enum Command {
    Runtime(runtime::RuntimeCommand),
    Session(session::SessionCommand),
    Services(services::ServicesCommand),
    Explorer(explorer::ExplorerCommand),
    Object(object::ObjectCommand),
    Jobs(jobs::JobsFamily),
}

impl Command {
    /// `Ok(None)` when no family owns `name`.
    pub fn parse(name: &str, payload: &Value) -> Result<Option<Command>, Reply> {
        if let Some(c) = runtime::RuntimeCommand::parse(name, payload)? {
            return Ok(Some(Command::Runtime(c)));
        }
        if let Some(c) = session::SessionCommand::parse(name, payload)? {
            return Ok(Some(Command::Session(c)));
        }
        if let Some(c) = services::ServicesCommand::parse(name, payload)? {
            return Ok(Some(Command::Services(c)));
        }
        if let Some(c) = explorer::ExplorerCommand::parse(name, payload)? {
            return Ok(Some(Command::Explorer(c)));
        }
        if let Some(c) = object::ObjectCommand::parse(name, payload)? {
            return Ok(Some(Command::Object(c)));
        }
        if let Some(c) = jobs::JobsFamily::parse(name, payload)? {
            return Ok(Some(Command::Jobs(c)));
        }
        Ok(None)
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, call: &CallInfo) -> Run {
        match self {
            Command::Runtime(c) => c.run(ctx, call),
            Command::Session(c) => c.run(ctx, call),
            Command::Services(c) => c.run(ctx, call),
            Command::Explorer(c) => c.run(ctx, call),
            Command::Object(c) => c.run(ctx, call),
            Command::Jobs(c) => c.run(ctx, call),
        }
    }
}

/// Resolves and runs one inbound command.
pub fn dispatch(ctx: &Rc<HandlerContext>, call: &CallInfo) -> Run {
    match Command::parse(&call.command, &call.payload) {
        Ok(Some(command)) => command.run(ctx, call),
        Ok(None) => match ctx.extensions.get(&call.command) {
            Some(handler) => Run::Later(handler(call.payload.clone())),
            None => Run::Done(Reply::Failure {
                status: 404,
                code: None,
                message: format!("Unknown daemon command: {}", call.command),
            }),
        },
        Err(reply) => Run::Done(reply),
    }
}

/// The dispatcher's view of this module: one function that answers a call.
pub fn command_handler(ctx: Rc<HandlerContext>) -> CommandHandler {
    Rc::new(move |call: &CallInfo| dispatch(&ctx, call))
}
