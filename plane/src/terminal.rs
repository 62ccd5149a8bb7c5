//! The browser terminal: a WebSocket at `GET /api/clusters/{id}/terminal`
//! relayed to a host terminal session on the daemon (`session.attach` with
//! `kind:"terminal", terminalTarget:"host"`, then the `session-*`
//! messages).
//!
//! Client → plane:
//! * binary frames are keystrokes, sent as `session-input` with
//!   `isBinary:true`; text frames likewise with `isBinary:false`;
//! * a text frame that is exactly a JSON object
//!   `{"type":"resize","rows":R,"cols":C}` (1 ≤ R, C ≤ 65535; surrounding
//!   whitespace allowed, no other keys) is `session-resize` instead;
//! * closing the WebSocket sends `session-detach` (the daemon kills the
//!   shell).
//!
//! Plane → client:
//! * `session-data` → binary frames with the raw bytes;
//! * `session-end` → close `1000` with reason `exit <code>` (or the error
//!   text);
//! * a refused or failed attach → close `1011` with the reason (at most
//!   [`CLOSE_REASON_MAX`] bytes); so does a dropped daemon socket;
//! * a client that reads slower than the shell writes gets close `1013`
//!   once `PlaneConfig::session_buffer_limit` bytes are waiting for it,
//!   and the session is detached: plane memory stays bounded.

use crate::Plane;
use crate::error::PlaneError;
use crate::http::{ApiError, ApiResult};
use crate::session::{AttachedSession, SessionEvent, describe_end};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code,
};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use volt_protocol::envelope::{SessionAttach, SessionKind, TerminalTarget};

/// Largest WebSocket message (and frame) a terminal client may send.
/// Keystrokes and pastes are far smaller; it bounds what one client can
/// make the plane allocate (axum's default is 64 MiB).
pub const MAX_TERMINAL_FRAME: usize = 1 << 20;
/// Longest close reason: a close frame's payload is at most 125 bytes
/// (RFC 6455 §5.5), two of which are the code.
pub const CLOSE_REASON_MAX: usize = 123;
/// How long the relay tries to deliver its close frame, and then waits for
/// the client's answering close, before it drops the connection: a stalled
/// client must not keep the task alive.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new().route("/api/clusters/{id}/terminal", get(terminal))
}

/// A new host terminal attach payload (`sessionId` = a UUID v4 unless
/// given).
pub(crate) fn host_terminal(session_id: Option<String>) -> SessionAttach {
    SessionAttach {
        session_id: session_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        kind: SessionKind::Terminal,
        terminal_target: Some(TerminalTarget::Host),
        container_id: None,
        target_url: None,
        protocols: None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TerminalQuery {
    #[serde(default)]
    rows: Option<u16>,
    #[serde(default)]
    cols: Option<u16>,
    #[serde(default)]
    session_id: Option<String>,
}

/// `GET /api/clusters/{id}/terminal` (WebSocket): a shell on the cluster's
/// host. Optional query: `rows` and `cols` (both or neither; the initial
/// size, sent as `session-resize` after the attach) and `sessionId` (a
/// UUID; default a new one). Protocol in the module docs. For an
/// interactive shell put the local terminal in raw mode and use binary
/// frames:
///
/// ```text
/// stty raw -echo; websocat -b "ws://127.0.0.1:8080/api/clusters/$ID/terminal?rows=$(tput lines)&cols=$(tput cols)"; stty sane
/// echo 'uname -a; exit' | websocat -b ws://127.0.0.1:8080/api/clusters/$ID/terminal
/// ```
///
/// Resize from a script (a text frame): `{"type":"resize","rows":40,"cols":120}`.
async fn terminal(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    q: Result<Query<TerminalQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult {
    let Query(q) =
        q.map_err(|e| ApiError(PlaneError::InvalidInput(format!("Invalid query: {e}"))))?;
    let size = match (q.rows, q.cols) {
        (None, None) => None,
        (Some(r), Some(c)) if r > 0 && c > 0 => Some((r, c)),
        _ => {
            return Err(ApiError(PlaneError::InvalidInput(
                "rows and cols must be given together, each 1..65535".into(),
            )));
        }
    };
    let session_id = match q.session_id {
        None => None,
        Some(s) => Some(
            uuid::Uuid::parse_str(s.trim())
                .map_err(|_| ApiError(PlaneError::InvalidInput("sessionId must be a UUID".into())))?
                .to_string(),
        ),
    };
    if !plane.store.contains(&id) {
        return Err(ApiError(PlaneError::NotFound));
    }
    let ws = ws.map_err(|e| {
        ApiError(PlaneError::bad_request(
            "Route::WebSocketRequired",
            format!(
                "This is a WebSocket endpoint ({e}); connect with e.g. websocat -b ws://<plane>/api/clusters/{id}/terminal"
            ),
        ))
    })?;
    let attach = host_terminal(session_id);
    Ok(ws
        .max_message_size(MAX_TERMINAL_FRAME)
        .max_frame_size(MAX_TERMINAL_FRAME)
        .on_upgrade(move |socket| relay(plane, id, attach, size, socket))
        .into_response())
}

/// How a relay ends.
enum Outcome {
    /// The client closed or failed; nothing more to tell it.
    ClientGone,
    /// Close the WebSocket with this code and reason.
    Close(u16, String),
}

type WsTx = SplitSink<WebSocket, WsMessage>;
type WsRx = SplitStream<WebSocket>;

async fn relay(
    plane: Arc<Plane>,
    cluster_id: String,
    attach: SessionAttach,
    size: Option<(u16, u16)>,
    socket: WebSocket,
) {
    let (mut tx, mut rx) = socket.split();
    let session_id = attach.session_id.clone();
    let mut session = match plane.attach_session(&cluster_id, &attach).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%cluster_id, %session_id, error = %e, "Terminal attach failed.");
            close(&mut tx, &mut rx, close_code::ERROR, &e.to_string()).await;
            return;
        }
    };
    tracing::info!(%cluster_id, %session_id, "Terminal WebSocket opened.");
    let outcome = match size {
        Some((rows, cols)) => match session.resize(rows, cols).await {
            Ok(()) => pump(&mut session, &mut tx, &mut rx).await,
            Err(e) => failed_input(e),
        },
        None => pump(&mut session, &mut tx, &mut rx).await,
    };
    match outcome {
        Outcome::ClientGone => {
            let _ = session.detach();
            // Delivers the answer to the client's close frame, if it sent one.
            let _ = tokio::time::timeout(CLOSE_GRACE, tx.close()).await;
            tracing::info!(%cluster_id, %session_id, "Terminal WebSocket closed by the client.");
        }
        Outcome::Close(code, reason) => {
            let _ = session.detach();
            tracing::info!(%cluster_id, %session_id, code, %reason, "Terminal WebSocket closed.");
            close(&mut tx, &mut rx, code, &reason).await;
        }
    }
}

/// Input could not be forwarded: say why (the caller detaches).
fn failed_input(e: PlaneError) -> Outcome {
    let code = match e {
        PlaneError::DaemonBusy => close_code::AGAIN,
        _ => close_code::ERROR,
    };
    Outcome::Close(code, e.to_string())
}

/// Relays until either side ends the session.
async fn pump(session: &mut AttachedSession, tx: &mut WsTx, rx: &mut WsRx) -> Outcome {
    loop {
        tokio::select! {
            event = session.recv() => match event {
                SessionEvent::Data { bytes, .. } => {
                    // A stalled client blocks this send; the session's
                    // bounded queue overflowing ends the wait.
                    let sent = tokio::select! {
                        r = tx.send(WsMessage::Binary(bytes.into())) => r.is_ok(),
                        _ = session.overflowed() => return overflow(),
                    };
                    if !sent {
                        return Outcome::ClientGone;
                    }
                }
                SessionEvent::End(end) => {
                    return Outcome::Close(close_code::NORMAL, describe_end(&end));
                }
                SessionEvent::Overflow { .. } => return overflow(),
                SessionEvent::ConnectionLost => {
                    return Outcome::Close(
                        close_code::ERROR,
                        PlaneError::ConnectionLost.to_string(),
                    );
                }
                SessionEvent::Invalid(m) => return Outcome::Close(close_code::ERROR, m),
            },
            frame = rx.next() => match frame {
                Some(Ok(WsMessage::Binary(b))) => {
                    if let Err(e) = session.send_input(&b, true).await {
                        return failed_input(e);
                    }
                }
                Some(Ok(WsMessage::Text(t))) => {
                    let res = match text_frame(t.as_str()) {
                        TextFrame::Resize(rows, cols) => session.resize(rows, cols).await,
                        TextFrame::Keys => session.send_input(t.as_bytes(), false).await,
                    };
                    if let Err(e) = res {
                        return failed_input(e);
                    }
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_))) | None => return Outcome::ClientGone,
                Some(Err(e)) => {
                    tracing::debug!(session_id = %session.session_id(), error = %e, "Terminal WebSocket failed.");
                    return Outcome::ClientGone;
                }
            }
        }
    }
}

fn overflow() -> Outcome {
    Outcome::Close(
        close_code::AGAIN,
        "terminal output is arriving faster than this client reads it".into(),
    )
}

#[derive(Debug, PartialEq, Eq)]
enum TextFrame {
    Resize(u16, u16),
    Keys,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResizeFrame {
    #[serde(rename = "type")]
    kind: String,
    rows: u16,
    cols: u16,
}

/// A resize control frame, or keystrokes.
fn text_frame(text: &str) -> TextFrame {
    let t = text.trim();
    if !t.starts_with('{') {
        return TextFrame::Keys;
    }
    match serde_json::from_str::<ResizeFrame>(t) {
        Ok(f) if f.kind == "resize" && f.rows > 0 && f.cols > 0 => {
            TextFrame::Resize(f.rows, f.cols)
        }
        _ => TextFrame::Keys,
    }
}

/// `reason` cut to at most `max` bytes on a character boundary.
fn truncate_reason(reason: &str, max: usize) -> &str {
    if reason.len() <= max {
        return reason;
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Sends a close frame and waits (briefly) for the client's answer.
async fn close(tx: &mut WsTx, rx: &mut WsRx, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: truncate_reason(reason, CLOSE_REASON_MAX).into(),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if tx.send(WsMessage::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_frames_are_recognised_exactly() {
        assert_eq!(
            text_frame(r#"{"type":"resize","rows":40,"cols":120}"#),
            TextFrame::Resize(40, 120)
        );
        assert_eq!(
            text_frame(" {\"cols\":80,\"rows\":24,\"type\":\"resize\"}\n"),
            TextFrame::Resize(24, 80)
        );
        for keys in [
            "ls -l\r",
            r#"{"type":"resize","rows":40}"#,
            r#"{"type":"resize","rows":40,"cols":120,"x":1}"#,
            r#"{"type":"resize","rows":0,"cols":120}"#,
            r#"{"type":"resize","rows":70000,"cols":120}"#,
            r#"{"type":"other","rows":40,"cols":120}"#,
            r#"{"type":"resize","rows":40,"cols":120} x"#,
        ] {
            assert_eq!(text_frame(keys), TextFrame::Keys, "{keys}");
        }
    }

    #[test]
    fn close_reasons_are_cut_on_char_boundaries() {
        assert_eq!(truncate_reason("exit 0", CLOSE_REASON_MAX), "exit 0");
        let long = "é".repeat(100);
        let cut = truncate_reason(&long, CLOSE_REASON_MAX);
        assert_eq!(cut.len(), 122);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn host_terminal_payload_matches_the_reference() {
        let a = host_terminal(Some("s-1".into()));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"sessionId": "s-1", "kind": "terminal", "terminalTarget": "host"})
        );
        let b = host_terminal(None);
        assert!(uuid::Uuid::parse_str(&b.session_id).is_ok());
    }
}
