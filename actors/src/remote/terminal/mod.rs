//! Host terminal sessions: a login shell in a real PTY, running as the
//! dedicated terminal account (never voltd's), relayed over the control
//! channel (`session.attach` and the `session-*` messages, Gen B wire
//! format).
//!
//! ```text
//! session.attach ─► remote/session.rs ─Attach─► Sessions (this actor)
//!                     blocking pool: backend::open_shell ─► terminal helper (own unit, or a thread when root)
//!                                                          checks the account, starts the shell in a PTY,
//!                                                          passes the PTY master back (SCM_RIGHTS)
//!                                                 1. {attached:true} queued on the link
//!                                                 2. pump started
//! session-input  ─Route─► Sessions ─► writer thread ─► PTY
//! session-resize ─Route─► Sessions ─► TIOCSWINSZ (SIGWINCH to the shell)
//! session-detach ─Route─► Sessions ─► helper: SIGHUP, SIGKILL after a grace
//! PTY ─► reader thread ─(bounded)─► pump task ─► session-data … session-end ─► link
//! ```
//!
//! * **Identity.** voltd never starts a shell itself: a terminal helper
//!   does ([`helper`], [`backend`] says how it is reached). The helper
//!   runs the shell as `[terminal] user` — a login account install.sh
//!   creates — and refuses root and voltd's own account, so the shell can
//!   read neither voltd's state directory and credentials nor
//!   `/proc/<voltd>/environ`. Without a helper and without root there is
//!   no shell: 403 with the reason. The helper owns the session's
//!   processes; voltd holds the PTY and a control connection.
//!
//! * **Ordering.** The server rejects an attach whose `session-end` arrives
//!   before the reply, so a session's pump (the only sender of its
//!   `session-data`/`session-end`) starts only after the reply was queued on
//!   the link, and the link is one FIFO queue.
//! * **Backpressure.** A blocking reader thread per session feeds a bounded
//!   channel. The pump takes from it only while the link accepts frames;
//!   when the link is full the channel fills, the reader blocks, the
//!   kernel's PTY buffer fills and the shell blocks in `write`. A flood
//!   (`yes`, `cat` of a large file) holds at most [`OUTPUT_QUEUE`] reads
//!   plus one batch in memory and never blocks the actor system.
//! * **Batching.** Output is gathered for [`BATCH_WINDOW`] or up to
//!   [`MAX_CHUNK_BYTES`] (less when the server's `maxPayload` demands) per
//!   `session-data`.
//! * **Processes.** The shell is a session leader (`setsid --ctty`), so
//!   everything started from the terminal shares its session id. Ending a
//!   session makes the helper send SIGHUP (and SIGCONT, for stopped jobs)
//!   to every process of that session and SIGKILL after [`KILL_GRACE`] to
//!   those left and to anything else still holding the terminal open. This
//!   also happens when the shell exits by itself, so no background job
//!   outlives its terminal. The shell stays a zombie until then, so its pid
//!   (the session id being signalled) cannot be recycled meanwhile.
//! * **Teardown.** Detach, invalid input, the idle timeout, a control socket
//!   drop, the actor stopping, and dropping a session (even during a panic:
//!   the helper connection closes) all end in the same kill path.
//! * **Off the actor thread.** The passwd lookup, fork/exec and the
//!   `/proc` scans of the kill path run in the helper; the helper is
//!   reached from the blocking pool; PTY reads and writes have their own
//!   threads.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the sessions actor: attach, input, resize, detach, idle sweep, teardown |
//! | `backend.rs` | voltd's side: reaching a helper, the passed PTY, the control connection |
//! | `helper.rs` | the helper: `voltd terminal-helper` (own unit) or a thread (direct mode) |
//! | `wire.rs` | the helper's line protocol (pure codec) |
//! | `identity.rs` | who the shell runs as and its clean environment |
//! | `spawn.rs` | the PTY, the shell, and the reader/writer/waiter threads |
//! | `pump.rs` | output batching and backpressure, `session-data`/`session-end` |
//! | `reap.rs` | SIGHUP/SIGKILL of a session's processes (in the helper) |
//!
//! The shell's environment is built from scratch (`TERM=xterm-256color`,
//! `HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, locale): voltd's own
//! environment may hold the daemon password. Session input and output are
//! never logged.

mod backend;
pub mod helper;
mod identity;
mod pump;
mod reap;
mod spawn;
pub mod wire;

pub use identity::FALLBACK_SHELL;
pub use pump::{BATCH_WINDOW, MAX_CHUNK_BYTES, chunk_budget};
pub use reap::KILL_GRACE;
pub use spawn::OUTPUT_QUEUE;

use crate::api::link::Link;
use crate::api::{Handle, Outbox, Route, Router};
use crate::config::TerminalSettings;
use crate::events::{Delivery, Event, EventBus};
use actix::prelude::*;
use backend::{Control, Opened, open_shell, start_control};
use otp::supervisor::StopChild;
use otp::{ExitReason, ExitSlot};
use pump::{EndNote, Pump, PumpOutcome, Shared, decode_base64};
use rustix::fd::OwnedFd;
use rustix::termios::Winsize;
use spawn::start_io;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::Instant;
use volt_protocol::Message;
use volt_protocol::envelope::{
    ResponseMessage, SessionDetach, SessionEnd, SessionInput, SessionResizeMessage,
};

/// After asking every session to end on shutdown, the actor waits this much
/// longer than [`KILL_GRACE`] for their ends to be sent (well inside the
/// supervisor's 5 s shutdown timeout).
const STOP_MARGIN: Duration = Duration::from_millis(500);
/// Input bytes queued for a shell that does not read its terminal. A real
/// terminal would block the typist; the server cannot be blocked, so input
/// beyond this is dropped (and logged once).
pub const INPUT_QUEUE_BYTES: usize = 1024 * 1024;
/// Largest accepted terminal dimension: far beyond any real screen, small
/// enough that no program allocates absurd per-cell buffers.
pub const MAX_DIMENSION: u16 = 1000;
/// The idle sweep runs every quarter of the idle timeout, but at least this
/// often, so a session outlives its timeout by at most 25 % or 30 s …
const MAX_IDLE_SWEEP: Duration = Duration::from_secs(30);
/// … and at most this often (tests use sub-second timeouts).
const MIN_IDLE_SWEEP: Duration = Duration::from_millis(100);

/// Why an attach was refused: the status and message of the reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{status}: {message}")]
pub struct AttachError {
    pub status: u16,
    pub message: String,
}

impl AttachError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        AttachError {
            status,
            message: message.into(),
        }
    }
}

/// Start a host terminal session and answer its `session.attach`.
///
/// On `Ok` the success reply has been queued on `link` (on `request_id`);
/// on `Err` nothing was sent and the caller replies with the error.
#[derive(Message)]
#[rtype(result = "Result<(), AttachError>")]
pub struct Attach {
    pub session_id: String,
    pub request_id: String,
    pub link: Link,
}

/// The ids of the open sessions, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListSessions;

/// A session's pump finished.
struct PumpDone {
    session_id: String,
    serial: u64,
    outcome: PumpOutcome,
}

impl actix::Message for PumpDone {
    type Result = ();
}

/// One open session.
struct Session {
    serial: u64,
    user: String,
    /// The control connection the session was attached on.
    connection: u64,
    /// The PTY master the helper passed (resizes; the I/O threads hold
    /// their own copies).
    master: OwnedFd,
    input: std::sync::mpsc::Sender<Vec<u8>>,
    /// Input bytes accepted but not yet written (shared with the writer).
    input_queued: Arc<AtomicUsize>,
    /// Fired once the attach reply is queued; the pump waits for it.
    start: Option<oneshot::Sender<()>>,
    shared: Rc<Shared>,
    /// Why the daemon is ending the session, once it is.
    ending: Option<String>,
    /// Whether `SessionOpened` was emitted.
    opened: bool,
    input_overflow_logged: bool,
    /// The helper connection: dropping it ends the session's processes.
    control: Control,
}

/// The sessions actor (see the module docs).
pub struct Sessions {
    settings: TerminalSettings,
    outbox: Outbox,
    router: Router,
    attach: Handle<Attach>,
    list: Handle<ListSessions>,
    bus: EventBus,
    exit: ExitSlot,
    sessions: HashMap<String, Session>,
    /// Attaches whose shell is being started (they count as sessions).
    starting: HashSet<String>,
    next_serial: u64,
    stopping: bool,
}

/// What the sessions actor is connected to.
#[derive(Clone)]
pub struct TerminalWiring {
    /// `session-end` for unknown sessions goes out here.
    pub outbox: Outbox,
    /// `session-*` messages come from here.
    pub router: Router,
    /// Bound to the actor on start (`session.attach`).
    pub attach: Handle<Attach>,
    /// Bound to the actor on start (which sessions are open).
    pub list: Handle<ListSessions>,
    pub bus: EventBus,
}

impl Sessions {
    pub fn new(settings: TerminalSettings, wiring: TerminalWiring, exit: ExitSlot) -> Self {
        Sessions {
            settings,
            outbox: wiring.outbox,
            router: wiring.router,
            attach: wiring.attach,
            list: wiring.list,
            bus: wiring.bus,
            exit,
            sessions: HashMap::new(),
            starting: HashSet::new(),
            next_serial: 0,
            stopping: false,
        }
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// Starts ending a session: the note goes into its `session-end`, its
    /// processes get SIGHUP now and SIGKILL after the grace. The pump sends
    /// the end once the shell is gone.
    fn end_session(
        &mut self,
        session_id: &str,
        note: Option<EndNote>,
        reason: &str,
        ctx: &mut Context<Self>,
    ) {
        let Some(s) = self.sessions.get_mut(session_id) else {
            return;
        };
        if s.ending.is_some() {
            return;
        }
        tracing::debug!(%session_id, %reason, "Ending terminal session.");
        s.ending = Some(reason.to_owned());
        if let Some(note) = note {
            *s.shared.end.borrow_mut() = Some(note);
        }
        s.control.hang_up();
        let serial = s.serial;
        let id = session_id.to_owned();
        ctx.run_later(KILL_GRACE, move |act, _| {
            if let Some(s) = act.sessions.get(&id).filter(|s| s.serial == serial) {
                s.control.kill();
            }
        });
    }

    /// Tells the server a session it named does not exist here.
    fn unknown_session(&self, session_id: &str, kind: &str) {
        if self.stopping {
            return;
        }
        tracing::debug!(%session_id, kind, "Message for an unknown terminal session.");
        self.outbox.emit(Message::SessionEnd(SessionEnd {
            session_id: session_id.to_owned(),
            code: None,
            message: None,
            error: Some("unknown session".into()),
        }));
    }

    fn on_input(&mut self, m: SessionInput, ctx: &mut Context<Self>) {
        let Some(s) = self.sessions.get_mut(&m.session_id) else {
            self.unknown_session(&m.session_id, "session-input");
            return;
        };
        if s.ending.is_some() {
            return;
        }
        let Ok(bytes) = decode_base64(&m.chunk_base64) else {
            tracing::warn!(session_id = %m.session_id, "Invalid base64 in session-input; ending the session.");
            self.end_session(
                &m.session_id,
                Some(EndNote::error("invalid base64 in session-input")),
                "invalid base64 in session-input",
                ctx,
            );
            return;
        };
        s.shared.touch();
        if bytes.is_empty() {
            return;
        }
        let queued = s.input_queued.load(Ordering::Relaxed);
        if queued + bytes.len() > INPUT_QUEUE_BYTES {
            if !s.input_overflow_logged {
                s.input_overflow_logged = true;
                tracing::warn!(session_id = %m.session_id, queued, "Terminal input dropped: the shell is not reading its input.");
            }
            return;
        }
        s.input_queued.fetch_add(bytes.len(), Ordering::Relaxed);
        // A send error only means the shell side is gone, which the pump
        // reports.
        let _ = s.input.send(bytes);
    }

    fn on_resize(&mut self, m: SessionResizeMessage) {
        let Some(s) = self.sessions.get(&m.session_id) else {
            self.unknown_session(&m.session_id, "session-resize");
            return;
        };
        if !(1..=MAX_DIMENSION).contains(&m.rows) || !(1..=MAX_DIMENSION).contains(&m.cols) {
            tracing::warn!(session_id = %m.session_id, rows = m.rows, cols = m.cols, "Ignoring a terminal resize outside 1..=1000.");
            return;
        }
        let size = Winsize {
            ws_row: m.rows,
            ws_col: m.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        if let Err(e) = rustix::termios::tcsetwinsize(&s.master, size) {
            tracing::warn!(session_id = %m.session_id, error = %e, "Terminal resize failed.");
        }
    }

    fn on_detach(&mut self, m: SessionDetach, ctx: &mut Context<Self>) {
        if !self.sessions.contains_key(&m.session_id) {
            self.unknown_session(&m.session_id, "session-detach");
            return;
        }
        self.end_session(
            &m.session_id,
            Some(EndNote::message("detached")),
            "detached by the server",
            ctx,
        );
    }

    fn sweep_idle(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.settings.idle_timeout;
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.ending.is_none() && s.shared.last_activity.get().elapsed() >= timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            self.end_session(
                &id,
                Some(EndNote::message("idle timeout")),
                "idle timeout",
                ctx,
            );
        }
    }

    /// The checks an attach passes before a shell is started.
    fn admit(&self, msg: &Attach) -> Result<(), AttachError> {
        if self.stopping {
            return Err(AttachError::new(503, "terminal sessions are shutting down"));
        }
        if self.sessions.contains_key(&msg.session_id) || self.starting.contains(&msg.session_id) {
            return Err(AttachError::new(
                409,
                format!("session {} is already attached", msg.session_id),
            ));
        }
        let open = self.sessions.len() + self.starting.len();
        if open >= self.settings.max_sessions {
            return Err(AttachError::new(
                429,
                format!(
                    "too many terminal sessions: {open} are open (the limit is {})",
                    self.settings.max_sessions
                ),
            ));
        }
        Ok(())
    }

    /// Takes a started shell into the actor: its I/O threads, control
    /// connection and pump (which waits for the attach reply).
    fn install(
        &mut self,
        msg: &Attach,
        opened: Opened,
        ctx: &mut Context<Self>,
    ) -> Result<u64, AttachError> {
        let Opened {
            master,
            user,
            pid,
            conn,
            leftover,
        } = opened;
        let internal =
            |e: std::io::Error| AttachError::new(500, format!("cannot start the terminal: {e}"));
        // On any error below, `conn` is dropped: the helper ends the shell.
        let io = start_io(&master).map_err(internal)?;
        let (exited_tx, exited) = oneshot::channel();
        let control = start_control(conn, leftover, exited_tx).map_err(internal)?;
        let serial = self.serial();
        let shared = Rc::new(Shared {
            last_activity: Cell::new(Instant::now()),
            end: RefCell::new(None),
        });
        let (start, start_rx) = oneshot::channel();
        let pump = Pump {
            session_id: msg.session_id.clone(),
            output: io.output,
            link: msg.link.clone(),
            shared: shared.clone(),
            start: start_rx,
            exited,
        };
        let me = ctx.address();
        let session_id = msg.session_id.clone();
        actix_rt::spawn(async move {
            let outcome = pump.run().await;
            me.do_send(PumpDone {
                session_id,
                serial,
                outcome,
            });
        });
        tracing::debug!(session_id = %msg.session_id, pid, %user, "Terminal shell started.");
        self.sessions.insert(
            msg.session_id.clone(),
            Session {
                serial,
                user,
                connection: msg.link.connection(),
                master,
                input: io.input,
                input_queued: io.input_queued,
                start: Some(start),
                shared,
                ending: None,
                opened: false,
                input_overflow_logged: false,
                control,
            },
        );
        Ok(serial)
    }
}

impl Actor for Sessions {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.attach.bind(ctx.address());
        self.list.bind(ctx.address());
        self.router.subscribe("session-", ctx.address().recipient());
        ctx.add_stream(self.bus.subscribe_control());
        let sweep = (self.settings.idle_timeout / 4).clamp(MIN_IDLE_SWEEP, MAX_IDLE_SWEEP);
        ctx.run_interval(sweep, |act, ctx| act.sweep_idle(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for (session_id, s) in self.sessions.drain() {
            if s.opened {
                let reason = s.ending.clone().unwrap_or_else(|| "daemon stopped".into());
                self.bus.emit(Event::SessionClosed { session_id, reason });
            }
            // Dropping the session closes its helper connection: the
            // helper kills its processes.
        }
    }
}

impl Handler<Attach> for Sessions {
    type Result = ResponseActFuture<Self, Result<(), AttachError>>;

    fn handle(&mut self, msg: Attach, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.admit(&msg) {
            tracing::warn!(session_id = %msg.session_id, status = e.status, error = %e.message, "Terminal attach refused.");
            return Box::pin(fut::ready(Err(e)));
        }
        self.starting.insert(msg.session_id.clone());
        let settings = self.settings.clone();
        // The helper is reached from the blocking pool: connecting, the
        // passwd lookup and fork/exec never run on this thread.
        let opening = async move {
            tokio::task::spawn_blocking(move || open_shell(&settings))
                .await
                .unwrap_or_else(|e| {
                    Err(AttachError::new(
                        500,
                        format!("the terminal start failed: {e}"),
                    ))
                })
        };
        Box::pin(opening.into_actor(self).then(move |opened, act, ctx| {
            act.starting.remove(&msg.session_id);
            let installed = opened.and_then(|o| {
                if act.stopping {
                    return Err(AttachError::new(503, "terminal sessions are shutting down"));
                }
                act.install(&msg, o, ctx)
            });
            let serial = match installed {
                Ok(serial) => serial,
                Err(e) => {
                    tracing::warn!(session_id = %msg.session_id, status = e.status, error = %e.message, "Terminal attach refused.");
                    let refused: ResponseActFuture<Self, Result<(), AttachError>> =
                        Box::pin(fut::ready(Err(e)));
                    return refused;
                }
            };
            Box::pin(act.reply_attached(msg, serial))
        }))
    }
}

impl Sessions {
    /// Queues the attach reply, then lets the session's pump speak.
    fn reply_attached(
        &mut self,
        msg: Attach,
        serial: u64,
    ) -> impl ActorFuture<Self, Output = Result<(), AttachError>> + use<> {
        let reply = Message::Response(ResponseMessage::success(
            msg.request_id,
            serde_json::json!({ "attached": true }),
        ));
        let link = msg.link;
        let session_id = msg.session_id;
        async move { link.send(&reply).await }
            .into_actor(self)
            .map(move |sent, act, _ctx| {
                let Some(s) = act
                    .sessions
                    .get_mut(&session_id)
                    .filter(|s| s.serial == serial)
                else {
                    return sent.map_err(|e| AttachError::new(503, e.to_string()));
                };
                match sent {
                    Ok(()) => {
                        // The reply is queued: the session may speak now.
                        if let Some(start) = s.start.take() {
                            let _ = start.send(());
                        }
                        s.opened = true;
                        act.bus.emit(Event::SessionOpened {
                            session_id,
                            user: s.user.clone(),
                        });
                        Ok(())
                    }
                    Err(e) => {
                        // Dropping the start signal cancels the pump,
                        // whose end kills the shell.
                        s.start = None;
                        s.ending = Some("attach reply not delivered".into());
                        Err(AttachError::new(
                            503,
                            format!("cannot send the attach reply: {e}"),
                        ))
                    }
                }
            })
    }
}

impl Handler<Route> for Sessions {
    type Result = ();

    fn handle(&mut self, Route(msg): Route, ctx: &mut Self::Context) {
        match msg {
            Message::SessionInput(m) => self.on_input(m, ctx),
            Message::SessionResize(m) => self.on_resize(m),
            Message::SessionDetach(m) => self.on_detach(m, ctx),
            other => tracing::debug!(
                kind = other.type_str(),
                "Ignoring a session message meant for the server."
            ),
        }
    }
}

impl Handler<PumpDone> for Sessions {
    type Result = ();

    fn handle(&mut self, done: PumpDone, ctx: &mut Self::Context) {
        let current = self
            .sessions
            .get(&done.session_id)
            .is_some_and(|s| s.serial == done.serial);
        if !current {
            return;
        }
        let Some(s) = self.sessions.remove(&done.session_id) else {
            return;
        };
        let reason = s.ending.clone().unwrap_or_else(|| done.outcome.describe());
        if s.opened {
            self.bus.emit(Event::SessionClosed {
                session_id: done.session_id,
                reason,
            });
        } else {
            tracing::debug!(session_id = %done.session_id, %reason, "Terminal session ended before it started.");
        }
        // The PTY, the writer and the helper connection go with the
        // session: the helper gives what is left the grace, then kills it.
        drop(s);
        if self.stopping && self.sessions.is_empty() {
            ctx.stop();
        }
    }
}

impl Handler<ListSessions> for Sessions {
    type Result = Vec<String>;

    fn handle(&mut self, _: ListSessions, _ctx: &mut Self::Context) -> Vec<String> {
        let mut ids: Vec<String> = self.sessions.keys().cloned().collect();
        ids.sort();
        ids
    }
}

impl StreamHandler<Delivery> for Sessions {
    fn handle(&mut self, item: Delivery, ctx: &mut Self::Context) {
        let Delivery::Record(record) = item else {
            return;
        };
        if let Event::SocketDisconnected { connection, .. } = &record.event {
            let gone: Vec<String> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.connection <= *connection)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                self.end_session(&id, None, "control socket disconnected", ctx);
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<StopChild> for Sessions {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        self.stopping = true;
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.end_session(
                &id,
                Some(EndNote::message("daemon stopping")),
                "daemon stopping",
                ctx,
            );
        }
        if self.sessions.is_empty() {
            ctx.stop();
        } else {
            ctx.run_later(KILL_GRACE + STOP_MARGIN, |_, ctx| ctx.stop());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    /// A shell through a helper thread (direct mode): as `nobody` when the
    /// tests run as root (a terminal never runs as root), else as the
    /// account running them (development mode).
    fn settings(shell: &str) -> TerminalSettings {
        let euid = nix::unistd::Uid::effective();
        let name = if euid.is_root() {
            "nobody".to_owned()
        } else {
            nix::unistd::User::from_uid(euid).unwrap().unwrap().name
        };
        TerminalSettings {
            shell: Some(crate::config::AbsPath::new(shell).unwrap()),
            user: crate::config::UserName::parse(&name).unwrap(),
            allow_daemon_user: !euid.is_root(),
            helper_socket: crate::config::AbsPath::new("/nonexistent/voltd-terminal.sock").unwrap(),
            ..TerminalSettings::default()
        }
    }

    fn start(settings: TerminalSettings) -> Addr<Sessions> {
        let wiring = TerminalWiring {
            outbox: Outbox::default(),
            router: Router::default(),
            attach: Handle::new("terminal sessions"),
            list: Handle::new("terminal sessions"),
            bus: EventBus::default(),
        };
        Sessions::new(settings, wiring, ExitSlot::new()).start()
    }

    /// The next frame on the link: its length and the message in it.
    async fn next_message(rx: &mut mpsc::Receiver<WsMessage>) -> (usize, Message) {
        let frame = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a frame within 10 s")
            .expect("link open");
        let text = frame.into_text().unwrap().to_string();
        let json = text
            .strip_prefix("42[\"team-cluster-daemon:message\",")
            .and_then(|t| t.strip_suffix(']'))
            .unwrap();
        (text.len(), Message::decode(json).unwrap())
    }

    #[actix_rt::test]
    async fn reply_is_queued_before_a_shell_that_exits_at_once_ends() {
        let sessions = start(settings("/bin/true"));
        let (tx, mut rx) = mpsc::channel(64);
        let attached = sessions
            .send(Attach {
                session_id: "s-true".into(),
                request_id: "r-true".into(),
                link: Link::new(1, tx, 1_000_000),
            })
            .await
            .unwrap();
        assert_eq!(attached, Ok(()));
        let (_, first) = next_message(&mut rx).await;
        let Message::Response(r) = first else {
            panic!("first frame is not the reply: {first:?}")
        };
        assert_eq!(r.request_id, "r-true");
        assert_eq!(
            r.into_result().unwrap(),
            serde_json::json!({"attached": true})
        );
        loop {
            match next_message(&mut rx).await.1 {
                Message::SessionEnd(end) => {
                    assert_eq!(end.session_id, "s-true");
                    assert_eq!(end.code, Some(0));
                    break;
                }
                Message::SessionData(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[actix_rt::test]
    async fn output_is_chunked_under_a_small_max_payload() {
        const MAX_PAYLOAD: usize = 2048;
        let sessions = start(settings("/bin/sh"));
        let (tx, mut rx) = mpsc::channel(64);
        sessions
            .send(Attach {
                session_id: "s-small".into(),
                request_id: "s-small".into(),
                link: Link::new(1, tx, MAX_PAYLOAD),
            })
            .await
            .unwrap()
            .unwrap();
        let input = "head -c 200000 /dev/zero | tr '\\0' x; exit 3\n";
        sessions.do_send(Route(Message::SessionInput(SessionInput {
            session_id: "s-small".into(),
            chunk_base64: base64::engine::general_purpose::STANDARD.encode(input),
            is_binary: false,
        })));
        let mut xs = 0usize;
        let mut frames = 0usize;
        loop {
            let (len, msg) = next_message(&mut rx).await;
            assert!(len <= MAX_PAYLOAD, "frame of {len} bytes");
            match msg {
                Message::Response(_) => {}
                Message::SessionData(d) => {
                    frames += 1;
                    let bytes = decode_base64(&d.chunk_base64).unwrap();
                    xs += bytes.iter().filter(|b| **b == b'x').count();
                }
                Message::SessionEnd(end) => {
                    assert_eq!(end.code, Some(3));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(xs >= 200_000, "{xs} x received");
        assert!(frames > 100, "{frames} frames");
        // The session is forgotten once its pump reported the end.
        for _ in 0..100 {
            if sessions.send(ListSessions).await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the session is still listed");
    }
}
