//! Attached sessions (`session.attach` and the `session-*` messages, §4.8
//! of the protocol notes): what the WebSocket terminal relay drives, and
//! what a library caller can drive directly.
//!
//! The attach reply is routed through the session's own queue (its
//! `requestId` is the session id), so it keeps its order relative to the
//! session's messages: a `session-end` that arrives before the reply
//! rejects the attach, as the reference server does.

use crate::error::PlaneError;
use crate::reverse_channel::{DaemonConn, EncodedCommand, SessionSubscription};
use base64::Engine as _;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use volt_protocol::envelope::{
    Message, ResponseType, SESSION_ATTACH_COMMAND, SessionAttach, SessionDetach, SessionEnd,
    SessionInput, SessionResizeMessage,
};

/// How long `session.attach` waits for the daemon's reply: the reference
/// server's session attach timeout.
pub const SESSION_ATTACH_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest piece of input sent in one `session-input` message. Keeps each
/// frame far below the 1 MB socket `maxPayload` (base64 adds a third) and
/// lets a large paste interleave with other traffic on the control socket.
pub const SESSION_INPUT_CHUNK: usize = 64 * 1024;
/// How long input waits for room in the daemon socket's outbound buffer
/// before it fails with [`PlaneError::DaemonBusy`]. Meanwhile the caller
/// (the relay) reads no more input: that is the backpressure toward it.
const INPUT_BUSY_DEADLINE: Duration = Duration::from_secs(5);
/// Pause between attempts while the daemon socket's buffer is full.
const INPUT_BUSY_RETRY: Duration = Duration::from_millis(5);

/// What happened on an attached session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// `session-data`, decoded.
    Data { bytes: Vec<u8>, is_binary: bool },
    /// `session-end`: the daemon ended the session.
    End(SessionEnd),
    /// The caller read slower than the daemon wrote and the session's
    /// bounded queue (`PlaneConfig::session_buffer_limit`) filled up;
    /// nothing more is delivered. Detach (or drop) the session.
    Overflow { limit: usize },
    /// The daemon connection closed or was replaced; the daemon tears its
    /// sessions down when its socket drops.
    ConnectionLost,
    /// The daemon sent something unusable (e.g. invalid base64).
    Invalid(String),
}

/// A session attached with `session.attach`. Dropping it sends
/// `session-detach` unless the session already ended or was detached.
pub struct AttachedSession {
    cluster_id: String,
    sub: SessionSubscription,
    conn: Arc<DaemonConn>,
    /// Session messages that arrived before the attach reply.
    early: VecDeque<Message>,
    /// Ended, detached or connection lost: nothing to detach any more.
    finished: bool,
}

impl std::fmt::Debug for AttachedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedSession")
            .field("cluster_id", &self.cluster_id)
            .field("session_id", &self.sub.session_id())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Human text for a `session-end`: `exit <code>`, the error, the message.
pub fn describe_end(end: &SessionEnd) -> String {
    fn text(s: &Option<String>) -> Option<&str> {
        s.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    if let Some(e) = text(&end.error) {
        e.to_owned()
    } else if let Some(code) = end.code {
        format!("exit {code}")
    } else if let Some(m) = text(&end.message) {
        m.to_owned()
    } else {
        "session ended".to_owned()
    }
}

/// Attaches `attach` on `conn`: subscribes first (so nothing the daemon
/// sends right after its reply is lost), sends `session.attach` with
/// `requestId == sessionId`, and waits for the reply.
pub(crate) async fn attach(
    conn: Arc<DaemonConn>,
    sub: SessionSubscription,
    attach: &SessionAttach,
) -> Result<AttachedSession, PlaneError> {
    let payload = serde_json::to_value(attach)
        .map_err(|e| PlaneError::Internal(format!("cannot encode session.attach: {e}")))?;
    let encoded = EncodedCommand::new(
        &attach.session_id,
        SESSION_ATTACH_COMMAND,
        &payload,
        ResponseType::Json,
    )?;
    let mut session = AttachedSession {
        cluster_id: conn.cluster_id.clone(),
        sub,
        conn,
        early: VecDeque::new(),
        // Nothing to detach until the command went out.
        finished: true,
    };
    encoded.emit(&session.conn)?;
    session.finished = false;
    let deadline = tokio::time::Instant::now() + SESSION_ATTACH_TIMEOUT;
    let response = loop {
        let next = tokio::select! {
            biased;
            m = session.sub.recv() => m,
            _ = session.conn.closed() => {
                session.finished = true;
                return Err(PlaneError::ConnectionLost);
            }
            // Dropping `session` on the way out detaches, in case the
            // daemon attaches after all.
            _ = tokio::time::sleep_until(deadline) => return Err(PlaneError::Timeout),
        };
        match next {
            None if session.sub.overflowed() => {
                return Err(PlaneError::BufferFull {
                    limit: session.sub.buffer_limit(),
                });
            }
            None => return Err(PlaneError::ConnectionLost),
            Some(Message::Response(r)) => break r,
            Some(Message::SessionEnd(end)) => {
                session.finished = true;
                return Err(PlaneError::DaemonRequestFailed {
                    status: 502,
                    code: Some("TeamCluster::SessionEndedBeforeAttach".into()),
                    message: format!(
                        "The session ended before it was attached: {}",
                        describe_end(&end)
                    ),
                });
            }
            Some(other) => session.early.push_back(other),
        }
    };
    let refused =
        |message: String, code: Option<String>, status: u16| PlaneError::DaemonRequestFailed {
            status,
            code,
            message,
        };
    let status = response.status;
    let value = response.into_result().map_err(|f| {
        // A refused attach started nothing on the daemon.
        PlaneError::from_daemon(f)
    });
    let value = match value {
        Ok(v) => v,
        Err(e) => {
            session.finished = true;
            return Err(e);
        }
    };
    if value.get("attached") == Some(&Value::Bool(false)) {
        session.finished = true;
        let message = value
            .get("message")
            .or_else(|| value.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("The daemon did not attach the session")
            .to_owned();
        return Err(refused(message, None, 502));
    }
    if status >= 400 {
        session.finished = true;
        let code = value.get("code").and_then(Value::as_str).map(str::to_owned);
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("The daemon refused the session with status {status}"));
        return Err(refused(message, code, status));
    }
    tracing::info!(cluster_id = %session.cluster_id, session_id = %session.session_id(), "Session attached.");
    Ok(session)
}

impl AttachedSession {
    pub fn session_id(&self) -> &str {
        self.sub.session_id()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The next event. After `End` or `ConnectionLost` the session is over;
    /// after `Overflow` or `Invalid`, detach it.
    pub async fn recv(&mut self) -> SessionEvent {
        loop {
            let msg = match self.early.pop_front() {
                Some(m) => m,
                None => {
                    let next = tokio::select! {
                        biased;
                        m = self.sub.recv() => m,
                        _ = self.conn.closed() => None,
                    };
                    match next {
                        Some(m) => m,
                        None if self.sub.overflowed() => {
                            return SessionEvent::Overflow {
                                limit: self.sub.buffer_limit(),
                            };
                        }
                        // Closed connection (or, only through the low-level
                        // `subscribe_session`, a replaced subscription).
                        None => {
                            self.finished = true;
                            return SessionEvent::ConnectionLost;
                        }
                    }
                }
            };
            match msg {
                Message::SessionData(d) => {
                    return match base64::engine::general_purpose::STANDARD.decode(&d.chunk_base64) {
                        Ok(bytes) => SessionEvent::Data {
                            bytes,
                            is_binary: d.is_binary,
                        },
                        Err(e) => SessionEvent::Invalid(format!(
                            "daemon sent invalid chunkBase64 in session-data: {e}"
                        )),
                    };
                }
                Message::SessionEnd(end) => {
                    self.finished = true;
                    tracing::info!(cluster_id = %self.cluster_id, session_id = %self.session_id(), end = %describe_end(&end), "Session ended by the daemon.");
                    return SessionEvent::End(end);
                }
                other => {
                    tracing::debug!(session_id = %self.session_id(), kind = other.type_str(), "Unexpected session message ignored.");
                }
            }
        }
    }

    /// Resolves when the session's queue overflows (see
    /// [`SessionEvent::Overflow`]); lets a caller stop waiting on a slow
    /// consumer.
    pub async fn overflowed(&self) {
        self.sub.overflow().await
    }

    fn emit_now(&self, message: &Message) -> Result<(), PlaneError> {
        if !self.conn.is_active() {
            return Err(PlaneError::ConnectionLost);
        }
        self.conn.emit(message)
    }

    async fn emit(&self, message: &Message) -> Result<(), PlaneError> {
        let deadline = tokio::time::Instant::now() + INPUT_BUSY_DEADLINE;
        loop {
            match self.emit_now(message) {
                Err(PlaneError::DaemonBusy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(INPUT_BUSY_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// Sends input as `session-input` messages of at most
    /// [`SESSION_INPUT_CHUNK`] bytes. Waits (a while) for room when the
    /// daemon socket's outbound buffer is full.
    pub async fn send_input(&self, bytes: &[u8], is_binary: bool) -> Result<(), PlaneError> {
        for piece in bytes.chunks(SESSION_INPUT_CHUNK) {
            let message = Message::SessionInput(SessionInput {
                session_id: self.session_id().to_owned(),
                chunk_base64: base64::engine::general_purpose::STANDARD.encode(piece),
                is_binary,
            });
            self.emit(&message).await?;
        }
        Ok(())
    }

    /// Sends `session-resize`.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), PlaneError> {
        if rows == 0 || cols == 0 {
            return Err(PlaneError::InvalidInput(
                "rows and cols must be at least 1".into(),
            ));
        }
        let message = Message::SessionResize(SessionResizeMessage {
            session_id: self.session_id().to_owned(),
            rows,
            cols,
        });
        self.emit(&message).await
    }

    /// Sends `session-detach` (once); the daemon kills the session.
    pub fn detach(&mut self) -> Result<(), PlaneError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let message = Message::SessionDetach(SessionDetach {
            session_id: self.session_id().to_owned(),
        });
        let res = self.emit_now(&message);
        if let Err(e) = &res {
            tracing::warn!(cluster_id = %self.cluster_id, session_id = %self.session_id(), error = %e, "Sending session-detach failed.");
        } else {
            tracing::info!(cluster_id = %self.cluster_id, session_id = %self.session_id(), "Session detached.");
        }
        res
    }
}

impl Drop for AttachedSession {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: Option<i32>, message: Option<&str>, error: Option<&str>) -> SessionEnd {
        SessionEnd {
            session_id: "s".into(),
            code,
            message: message.map(Into::into),
            error: error.map(Into::into),
        }
    }

    #[test]
    fn session_end_descriptions() {
        assert_eq!(describe_end(&end(Some(0), None, None)), "exit 0");
        assert_eq!(describe_end(&end(Some(2), Some("bye"), None)), "exit 2");
        assert_eq!(
            describe_end(&end(Some(1), None, Some("pty failed"))),
            "pty failed"
        );
        assert_eq!(describe_end(&end(None, Some("closed"), None)), "closed");
        assert_eq!(describe_end(&end(None, Some(" "), None)), "session ended");
    }
}
