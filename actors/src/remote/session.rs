//! `session.attach`: starts a host terminal session.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `session.attach` | `{sessionId, kind:"terminal", terminalTarget:"host"}` | `{attached:true}`, then `session-data` … `session-end` messages |
//!
//! | refusal | status | message |
//! |---|---|---|
//! | payload does not parse, bad `sessionId` | 400 | `Invalid session attach payload: …` |
//! | `kind` `websocket` or `tunnel` | 400 | `<kind> sessions are not supported by this daemon` |
//! | `terminalTarget:"container"` | 400 | `container terminals are not supported by this daemon: …` |
//! | `[terminal] enabled = false` | 403 | `host terminal is disabled on this cluster` |
//! | no terminal account, or it is root or voltd's own account, or no way to switch to it (not root, no terminal helper) | 403 | why, and what to configure (never a fallback to voltd's account) |
//! | `sessionId` already attached | 409 | `session <id> is already attached` |
//! | `[terminal] max_sessions` open | 429 | `too many terminal sessions: …` |
//!
//! The sessions actor ([`crate::remote::terminal`]) sends the success reply itself
//! (this family answers [`Reply::Handled`]): the reply must be queued on the
//! link before the session may emit anything, because the server rejects an
//! attach whose `session-end` arrives first. The reference uses
//! `requestId == sessionId`; the reply always goes to the command's
//! `requestId`, so a server that uses distinct ids works as well.
//!
//! What follows an attach (`session-input`, `session-resize`,
//! `session-detach` in; `session-data`, `session-end` out) is routed to and
//! from [`crate::remote::terminal`], which documents it.

use super::context::HandlerContext;
use crate::api::reply::{CallInfo, Reply, Run};
use crate::remote::terminal::Attach;
use serde_json::Value;
use std::rc::Rc;
use volt_protocol::envelope::{SESSION_ATTACH_COMMAND, SessionAttach, SessionKind, TerminalTarget};

/// Longest accepted session id (the server uses 36-character UUIDs).
pub const MAX_SESSION_ID_LEN: usize = 128;

/// A validated host terminal attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    pub session_id: String,
}

/// The `session.*` family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Attach(AttachRequest),
}

fn invalid(reason: impl std::fmt::Display) -> Reply {
    Reply::bad_request(format!("Invalid session attach payload: {reason}"))
}

/// Session ids travel in every `session-*` message and in logs: letters,
/// digits and `._:-` only, so none needs escaping anywhere.
fn valid_session_id(id: &str) -> bool {
    (1..=MAX_SESSION_ID_LEN).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

impl SessionCommand {
    pub fn parse(name: &str, payload: &Value) -> Result<Option<Self>, Reply> {
        if name != SESSION_ATTACH_COMMAND {
            return Ok(None);
        }
        let attach: SessionAttach = serde_json::from_value(payload.clone()).map_err(invalid)?;
        if !valid_session_id(&attach.session_id) {
            return Err(invalid(format_args!(
                "sessionId must be 1..{MAX_SESSION_ID_LEN} characters of [A-Za-z0-9._:-]"
            )));
        }
        match attach.kind {
            SessionKind::Terminal => {}
            SessionKind::Websocket => {
                return Err(Reply::bad_request(
                    "websocket sessions are not supported by this daemon",
                ));
            }
            SessionKind::Tunnel => {
                return Err(Reply::bad_request(
                    "tunnel sessions are not supported by this daemon",
                ));
            }
        }
        // No target but a container id means a container terminal, as in
        // the reference; no target at all means the host.
        let container = match attach.terminal_target {
            Some(TerminalTarget::Container) => true,
            Some(TerminalTarget::Host) => false,
            None => attach.container_id.is_some(),
        };
        if container {
            return Err(Reply::bad_request(
                "container terminals are not supported by this daemon: it manages no container runtime; use terminalTarget \"host\"",
            ));
        }
        Ok(Some(SessionCommand::Attach(AttachRequest {
            session_id: attach.session_id,
        })))
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, call: &CallInfo) -> Run {
        let SessionCommand::Attach(req) = self;
        if !ctx.settings.terminal.enabled {
            return Run::Done(Reply::failure(
                403,
                "host terminal is disabled on this cluster",
            ));
        }
        let sessions = ctx.terminal.clone();
        if !sessions.is_bound() {
            return Run::Done(Reply::failure(503, "terminal sessions are not running"));
        }
        let outbox = ctx.outbox.clone();
        if call.request_id != req.session_id {
            tracing::debug!(session_id = %req.session_id, request_id = %call.request_id, "Attach requestId differs from its sessionId; replying on the requestId.");
        }
        let request_id = call.request_id.clone();
        Run::later(async move {
            let Some(link) = outbox.link().await else {
                return Reply::failure(503, "control socket is not registered");
            };
            let attach = Attach {
                session_id: req.session_id,
                request_id,
                link,
            };
            match sessions.send(attach).await {
                Ok(Ok(())) => Reply::Handled,
                Ok(Err(e)) => Reply::failure(e.status, e.message),
                Err(e) => Reply::failure(503, format!("terminal sessions are unavailable: {e}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(payload: Value) -> (u16, String) {
        match SessionCommand::parse(SESSION_ATTACH_COMMAND, &payload) {
            Err(Reply::Failure {
                status, message, ..
            }) => (status, message),
            Ok(c) => panic!("{payload} accepted as {c:?}"),
            Err(_) => panic!("{payload}: not a failure"),
        }
    }

    #[test]
    fn host_terminal_attach_parses_and_ignores_unknown_keys() {
        let c = SessionCommand::parse(
            "session.attach",
            &json!({"sessionId": "4f1c-aa", "kind": "terminal", "terminalTarget": "host", "metadata": {"traceId": "t"}}),
        );
        assert_eq!(
            c.ok().flatten(),
            Some(SessionCommand::Attach(AttachRequest {
                session_id: "4f1c-aa".into()
            }))
        );
        let c = SessionCommand::parse(
            "session.attach",
            &json!({"sessionId": "s", "kind": "terminal"}),
        );
        assert!(matches!(c, Ok(Some(_))));
        assert!(matches!(
            SessionCommand::parse("runtime.ping", &json!({})),
            Ok(None)
        ));
    }

    #[test]
    fn bad_payloads_and_unsupported_kinds_are_400() {
        for (payload, needle) in [
            (json!(null), "Invalid session attach payload"),
            (
                json!({"kind": "terminal"}),
                "Invalid session attach payload",
            ),
            (
                json!({"sessionId": "s", "kind": "shell"}),
                "Invalid session attach payload",
            ),
            (
                json!({"sessionId": "", "kind": "terminal"}),
                "sessionId must be",
            ),
            (
                json!({"sessionId": "a\"b", "kind": "terminal"}),
                "sessionId must be",
            ),
            (
                json!({"sessionId": "x".repeat(129), "kind": "terminal"}),
                "sessionId must be",
            ),
            (
                json!({"sessionId": "s", "kind": "websocket", "targetUrl": "ws://x"}),
                "websocket sessions are not supported by this daemon",
            ),
            (
                json!({"sessionId": "s", "kind": "tunnel"}),
                "tunnel sessions are not supported by this daemon",
            ),
            (
                json!({"sessionId": "s", "kind": "terminal", "terminalTarget": "container", "containerId": "c"}),
                "container terminals are not supported",
            ),
            (
                json!({"sessionId": "s", "kind": "terminal", "containerId": "c"}),
                "container terminals are not supported",
            ),
        ] {
            let (status, message) = refusal(payload.clone());
            assert_eq!(status, 400, "{payload}");
            assert!(message.contains(needle), "{payload}: {message}");
        }
    }
}
