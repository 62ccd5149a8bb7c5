//! One session's output relay: PTY → `session-data` … `session-end`.
//!
//! * **Ordering.** The server rejects an attach whose `session-end` arrives
//!   before the reply, so the pump (the only sender of its session's
//!   `session-data`/`session-end`) starts only after the reply was queued
//!   on the link, and the link is one FIFO queue.
//! * **Backpressure.** The pump takes output only while the link accepts
//!   frames; when the link is full the reader's channel fills, the reader
//!   blocks, the kernel's PTY buffer fills and the shell blocks in `write`.
//! * **Batching.** Output is gathered for [`BATCH_WINDOW`] or up to
//!   [`MAX_CHUNK_BYTES`] (less when the server's `maxPayload` demands) per
//!   `session-data`.

use super::spawn::{OutputItem, READ_SLICE};
use crate::api::{Link, LinkError};
use base64::Engine as _;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use volt_protocol::Message;
use volt_protocol::envelope::{SessionData, SessionEnd};

/// Raw output bytes per `session-data`: 64 KiB is ~87 KiB of base64, far
/// below socket.io's default 1 MB `maxPayload`, and large enough that a
/// flood costs few frames. Smaller when the server announces less.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Envelope bytes of a `session-data` frame besides the base64 text and the
/// session id (`42["team-cluster-daemon:message",{"type":"session-data",…}]`
/// is about 110 bytes; the rest is margin).
const FRAME_OVERHEAD: usize = 256;

/// JSON may escape a character of the session id into up to six bytes.
const JSON_ESCAPE_FACTOR: usize = 6;

/// How long output is gathered into one frame after its first byte: short
/// enough that typing feels immediate, long enough that a program printing
/// many small pieces goes out in few frames.
pub const BATCH_WINDOW: Duration = Duration::from_millis(3);

/// After the shell exited, output still in the PTY is read until it has
/// been quiet this long …
const EXIT_DRAIN_QUIET: Duration = Duration::from_millis(50);

/// … but no longer than this (a surviving background job could write
/// forever; it is killed next).
const EXIT_DRAIN_MAX: Duration = Duration::from_secs(1);

/// How a pump ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PumpOutcome {
    /// The shell exited (code: exit status, or 128 + signal).
    Exited(Option<i32>),
    /// The control connection went away; nothing more can be sent.
    LinkClosed,
    /// The attach reply was never queued; the session never started.
    Cancelled,
    /// Reading the terminal or sending its output failed.
    Failed(String),
}

impl PumpOutcome {
    pub(super) fn describe(&self) -> String {
        match self {
            PumpOutcome::Exited(Some(code)) => format!("exited with code {code}"),
            PumpOutcome::Exited(None) => "exited".into(),
            PumpOutcome::LinkClosed => "control socket closed".into(),
            PumpOutcome::Cancelled => "attach reply not delivered".into(),
            PumpOutcome::Failed(e) => e.clone(),
        }
    }
}

/// What the final `session-end` says besides the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct EndNote {
    message: Option<String>,
    error: Option<String>,
}

impl EndNote {
    pub(super) fn message(m: &str) -> Self {
        EndNote {
            message: Some(m.to_owned()),
            error: None,
        }
    }

    pub(super) fn error(e: &str) -> Self {
        EndNote {
            message: None,
            error: Some(e.to_owned()),
        }
    }
}

/// State the actor and a session's pump share (same thread).
pub(super) struct Shared {
    /// Last input or output (idle timeout).
    pub(super) last_activity: Cell<Instant>,
    /// Set when the daemon ends the session; read by the pump's last message.
    pub(super) end: RefCell<Option<EndNote>>,
}

impl Shared {
    pub(super) fn touch(&self) {
        self.last_activity.set(Instant::now());
    }
}

/// Raw bytes per `session-data` so that its frame (base64 is 4/3 of the
/// raw size, plus the envelope) stays within `max_payload`.
pub fn chunk_budget(max_payload: usize, session_id_len: usize) -> usize {
    let room = max_payload.saturating_sub(FRAME_OVERHEAD + session_id_len * JSON_ESCAPE_FACTOR);
    (room / 4 * 3).clamp(1, MAX_CHUNK_BYTES)
}

/// One session's output relay (see the module docs).
pub(super) struct Pump {
    pub(super) session_id: String,
    pub(super) output: mpsc::Receiver<OutputItem>,
    pub(super) link: Link,
    pub(super) shared: Rc<Shared>,
    pub(super) start: oneshot::Receiver<()>,
    pub(super) exited: oneshot::Receiver<Option<i32>>,
}

/// What the pump got.
enum Step {
    Output(Vec<u8>),
    /// The reader stopped: no process has the terminal open any more.
    Eof,
    ReadFailed(String),
    Exited(Option<i32>),
    /// The shell exited and the output has been quiet (or drained long
    /// enough).
    Drained,
}

impl Pump {
    pub(super) async fn run(mut self) -> PumpOutcome {
        // Nothing may be sent before the attach reply is queued.
        if (&mut self.start).await.is_err() {
            return PumpOutcome::Cancelled;
        }
        let chunk_max = chunk_budget(self.link.max_payload(), self.session_id.len());
        let mut pending: Vec<u8> = Vec::with_capacity(chunk_max + READ_SLICE);
        let mut exit: Option<Option<i32>> = None;
        let mut drain_until: Option<Instant> = None;
        let mut eof = false;
        loop {
            // A background job may keep writing after the shell exited:
            // draining is bounded even while output never pauses.
            if drain_until.is_some_and(|max| Instant::now() >= max) {
                eof = true;
            }
            if eof && exit.is_some() {
                break;
            }
            let step = if eof {
                Step::Exited((&mut self.exited).await.ok().flatten())
            } else {
                let quiet_at = drain_until
                    .map(|max| (Instant::now() + EXIT_DRAIN_QUIET).min(max))
                    .unwrap_or_else(Instant::now);
                // The exit first: a flooding job must not hide it.
                tokio::select! {
                    biased;
                    code = &mut self.exited, if exit.is_none() => Step::Exited(code.ok().flatten()),
                    item = self.output.recv() => match item {
                        Some(Ok(bytes)) => Step::Output(bytes),
                        Some(Err(e)) => Step::ReadFailed(e),
                        None => Step::Eof,
                    },
                    () = tokio::time::sleep_until(quiet_at), if drain_until.is_some() => Step::Drained,
                }
            };
            match step {
                Step::Output(bytes) => {
                    pending.extend_from_slice(&bytes);
                    if let Err(e) = self.gather(&mut pending, chunk_max, &mut eof).await {
                        return self.fail(format!("reading the terminal failed: {e}")).await;
                    }
                }
                Step::Eof | Step::Drained => eof = true,
                Step::ReadFailed(e) => {
                    return self.fail(format!("reading the terminal failed: {e}")).await;
                }
                Step::Exited(code) => {
                    exit = Some(code);
                    drain_until = Some(Instant::now() + EXIT_DRAIN_MAX);
                }
            }
            while !pending.is_empty() {
                let n = pending.len().min(chunk_max);
                if let Err(outcome) = self.send_data(&pending[..n]).await {
                    return outcome;
                }
                pending.drain(..n);
            }
        }
        let code = exit.flatten();
        let note = self.shared.end.borrow_mut().take().unwrap_or_default();
        let end = Message::SessionEnd(SessionEnd {
            session_id: self.session_id.clone(),
            code,
            message: note.message,
            error: note.error,
        });
        match self.link.send(&end).await {
            Ok(()) => PumpOutcome::Exited(code),
            Err(_) => PumpOutcome::LinkClosed,
        }
    }

    /// After the first bytes, takes more for up to [`BATCH_WINDOW`] or
    /// until a frame is full.
    async fn gather(
        &mut self,
        pending: &mut Vec<u8>,
        max: usize,
        eof: &mut bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + BATCH_WINDOW;
        while pending.len() < max {
            tokio::select! {
                biased;
                item = self.output.recv() => match item {
                    Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                    Some(Err(e)) => return Err(e),
                    None => {
                        *eof = true;
                        return Ok(());
                    }
                },
                () = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
        Ok(())
    }

    async fn send_data(&self, bytes: &[u8]) -> Result<(), PumpOutcome> {
        let msg = Message::SessionData(SessionData {
            session_id: self.session_id.clone(),
            chunk_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            is_binary: true,
        });
        match self.link.send(&msg).await {
            Ok(()) => {}
            Err(LinkError::Closed) => return Err(PumpOutcome::LinkClosed),
            Err(e) => {
                return Err(self
                    .fail(format!("terminal output cannot be sent: {e}"))
                    .await);
            }
        }
        self.shared.touch();
        // One frame per turn: other sessions and commands share the thread.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Ends the session with an error (the kill path follows).
    async fn fail(&self, error: String) -> PumpOutcome {
        tracing::warn!(session_id = %self.session_id, %error, "Terminal session failed.");
        let end = Message::SessionEnd(SessionEnd {
            session_id: self.session_id.clone(),
            code: None,
            message: None,
            error: Some(error.clone()),
        });
        let _ = self.link.send(&end).await;
        PumpOutcome::Failed(error)
    }
}

/// Base64 as browsers and Node write it; padding optional.
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_the_payload_limit_and_base64_is_lenient_about_padding() {
        assert_eq!(chunk_budget(1_000_000, 36), MAX_CHUNK_BYTES);
        let small = chunk_budget(4096, 36);
        assert!(small < 4096 && small > 1000, "{small}");
        assert_eq!(chunk_budget(10, 36), 1);
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert!(decode_base64("!!!").is_err());
    }
}
