//! Host terminal sessions: the user's login shell in a real PTY, relayed
//! over the control channel (`session.attach` and the `session-*` messages,
//! Gen B wire format).
//!
//! ```text
//! session.attach ─► handlers/session.rs ─Attach─► Sessions (this actor)
//!                                                 1. shell in a PTY (not yet relayed)
//!                                                 2. {attached:true} queued on the link
//!                                                 3. pump started
//! session-input  ─Route─► Sessions ─► writer thread ─► PTY
//! session-resize ─Route─► Sessions ─► TIOCSWINSZ (SIGWINCH to the shell)
//! session-detach ─Route─► Sessions ─► SIGHUP, SIGKILL after a grace
//! PTY ─► reader thread ─(bounded)─► pump task ─► session-data … session-end ─► link
//! ```
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
//! * **Processes.** The shell is a session leader (portable-pty calls
//!   `setsid`), so everything started from the terminal shares its session
//!   id. Ending a session sends SIGHUP (and SIGCONT, for stopped jobs) to
//!   every process of that session and SIGKILL after [`KILL_GRACE`] to those
//!   left and to anything else still holding the terminal open. This also
//!   happens when the shell exits by itself, so no background job outlives
//!   its terminal. The shell stays a zombie until then, so its pid (the
//!   session id being signalled) cannot be recycled meanwhile.
//! * **Teardown.** Detach, invalid input, the idle timeout, a control socket
//!   drop, the actor stopping, and dropping a session (even during a panic)
//!   all end in the same kill path.
//!
//! The shell's environment is built from scratch (`TERM=xterm-256color`,
//! `HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, locale): voltd's own
//! environment may hold the daemon password. Session input and output are
//! never logged.

use crate::api::link::{Link, LinkError};
use crate::api::{Handle, Outbox, Route, Router};
use crate::config::TerminalSettings;
use crate::events::{Delivery, Event, EventBus};
use actix::prelude::*;
use base64::Engine as _;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::{Pid, Uid, User};
use otp::supervisor::StopChild;
use otp::{ExitReason, ExitSlot};
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use volt_protocol::Message;
use volt_protocol::envelope::{
    ResponseMessage, SessionData, SessionDetach, SessionEnd, SessionInput, SessionResizeMessage,
};

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
/// Bytes asked of the PTY per read. A PTY master hands out a few KiB per
/// read; the slice only bounds what one read may return.
const READ_SLICE: usize = 16 * 1024;
/// Reads queued between a session's reader thread and its pump: enough to
/// keep a full batch ready while the previous one is sent, and at most
/// 32 × 16 KiB = 512 KiB per session.
pub const OUTPUT_QUEUE: usize = 32;
/// After the shell exited, output still in the PTY is read until it has
/// been quiet this long …
const EXIT_DRAIN_QUIET: Duration = Duration::from_millis(50);
/// … but no longer than this (a surviving background job could write
/// forever; it is killed next).
const EXIT_DRAIN_MAX: Duration = Duration::from_secs(1);
/// SIGHUP → SIGKILL grace. A shell saves its history and exits within
/// milliseconds; a program that ignores SIGHUP gets this long.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// After asking every session to end on shutdown, the actor waits this much
/// longer than [`KILL_GRACE`] for their ends to be sent (well inside the
/// supervisor's 5 s shutdown timeout).
const STOP_MARGIN: Duration = Duration::from_millis(500);
/// SIGKILL rounds: a process forking while the session is scanned is
/// caught by the next round.
const KILL_ROUNDS: usize = 3;
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
/// `PATH` before the login shell's profile runs (the Debian/Ubuntu default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Shell when neither the config nor the passwd entry names one.
pub const FALLBACK_SHELL: &str = "/bin/bash";
/// What the reference sets, and what the terminal emulators the VOLT UI
/// embeds understand.
const TERM: &str = "xterm-256color";
/// Where `setpriv` (util-linux) is looked for when switching users.
const SETPRIV_PATHS: [&str; 4] = [
    "/usr/bin/setpriv",
    "/bin/setpriv",
    "/usr/sbin/setpriv",
    "/sbin/setpriv",
];
/// The only variables passed from voltd's environment to the shell (locale
/// and time zone); everything else is set explicitly.
const PASSED_ENV: [&str; 4] = ["LANG", "LANGUAGE", "LC_ALL", "TZ"];

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

/// How a pump ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PumpOutcome {
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
    fn describe(&self) -> String {
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
struct EndNote {
    message: Option<String>,
    error: Option<String>,
}

impl EndNote {
    fn message(m: &str) -> Self {
        EndNote {
            message: Some(m.to_owned()),
            error: None,
        }
    }

    fn error(e: &str) -> Self {
        EndNote {
            message: None,
            error: Some(e.to_owned()),
        }
    }
}

/// State the actor and a session's pump share (same thread).
struct Shared {
    /// Last input or output (idle timeout).
    last_activity: Cell<Instant>,
    /// Set when the daemon ends the session; read by the pump's last message.
    end: RefCell<Option<EndNote>>,
}

impl Shared {
    fn touch(&self) {
        self.last_activity.set(Instant::now());
    }
}

/// One read of terminal output, or why reading stopped.
type OutputItem = Result<Vec<u8>, String>;

/// The processes of one session: the shell, whose pid is also the session
/// id of everything started from the terminal. Dropping it kills whatever
/// is left and lets the waiter thread reap the shell.
struct SessionProcess {
    pid: Pid,
    /// The terminal's slave device (`/dev/pts/N`), if known.
    tty: Option<PathBuf>,
    /// Dropped with this: the waiter thread then reaps the shell.
    _reap: std::sync::mpsc::Sender<()>,
}

impl SessionProcess {
    /// Sends `sig` to every live process of the session; returns how many.
    fn signal(&self, sig: Signal) -> usize {
        session_members(self.pid)
            .into_iter()
            .filter(|pid| kill(*pid, sig).is_ok())
            .count()
    }

    /// SIGHUP, and SIGCONT so stopped jobs act on it; returns how many
    /// processes were still alive.
    fn hang_up(&self) -> usize {
        let n = self.signal(Signal::SIGHUP);
        if n > 0 {
            self.signal(Signal::SIGCONT);
        }
        n
    }

    /// SIGKILL to the session and to anything else holding its terminal
    /// (a process that left the session but kept the terminal open would
    /// otherwise keep it, and the reader thread, alive).
    fn kill_all(&self) -> usize {
        let mut total = 0;
        for _ in 0..KILL_ROUNDS {
            let mut n = self.signal(Signal::SIGKILL);
            if let Some(tty) = &self.tty {
                n += tty_holders(tty)
                    .into_iter()
                    .filter(|pid| kill(*pid, Signal::SIGKILL).is_ok())
                    .count();
            }
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }
}

impl Drop for SessionProcess {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// One open session.
struct Session {
    serial: u64,
    user: String,
    /// The control connection the session was attached on.
    connection: u64,
    master: Box<dyn MasterPty + Send>,
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
    process: SessionProcess,
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
    /// Processes that outlived their session's pump, killed after the grace.
    lingering: HashMap<u64, SessionProcess>,
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
            lingering: HashMap::new(),
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
        s.process.hang_up();
        let serial = s.serial;
        let id = session_id.to_owned();
        ctx.run_later(KILL_GRACE, move |act, _| {
            if let Some(s) = act.sessions.get(&id).filter(|s| s.serial == serial) {
                let killed = s.process.kill_all();
                if killed > 0 {
                    tracing::warn!(session_id = %id, killed, "Terminal processes ignored SIGHUP; killed.");
                }
            }
        });
    }

    /// Gives what is left of a finished session the grace, then kills it.
    fn release(&mut self, process: SessionProcess, ctx: &mut Context<Self>) {
        if process.hang_up() == 0 {
            return; // dropped: anything holding the tty is killed, the shell reaped
        }
        let serial = self.serial();
        self.lingering.insert(serial, process);
        ctx.run_later(KILL_GRACE, move |act, _| {
            // Dropping kills the survivors and reaps the shell.
            act.lingering.remove(&serial);
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
        let size = PtySize {
            rows: m.rows,
            cols: m.cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        if let Err(e) = s.master.resize(size) {
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

    fn start_session(&mut self, msg: &Attach, ctx: &mut Context<Self>) -> Result<u64, AttachError> {
        if self.stopping {
            return Err(AttachError::new(503, "terminal sessions are shutting down"));
        }
        if self.sessions.contains_key(&msg.session_id) {
            return Err(AttachError::new(
                409,
                format!("session {} is already attached", msg.session_id),
            ));
        }
        if self.sessions.len() >= self.settings.max_sessions {
            return Err(AttachError::new(
                429,
                format!(
                    "too many terminal sessions: {} are open (the limit is {})",
                    self.sessions.len(),
                    self.settings.max_sessions
                ),
            ));
        }
        let identity = resolve_identity(&self.settings, Uid::effective())?;
        let spawned = spawn_shell(&identity)?;
        let serial = self.serial();
        let shared = Rc::new(Shared {
            last_activity: Cell::new(Instant::now()),
            end: RefCell::new(None),
        });
        let (start, start_rx) = oneshot::channel();
        let pump = Pump {
            session_id: msg.session_id.clone(),
            output: spawned.output,
            link: msg.link.clone(),
            shared: shared.clone(),
            start: start_rx,
            exited: spawned.exited,
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
        self.sessions.insert(
            msg.session_id.clone(),
            Session {
                serial,
                user: identity.name,
                connection: msg.link.connection(),
                master: spawned.master,
                input: spawned.input,
                input_queued: spawned.input_queued,
                start: Some(start),
                shared,
                ending: None,
                opened: false,
                input_overflow_logged: false,
                process: spawned.process,
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
            // Dropping the session kills its processes.
        }
        self.lingering.clear();
    }
}

impl Handler<Attach> for Sessions {
    type Result = ResponseActFuture<Self, Result<(), AttachError>>;

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) -> Self::Result {
        let serial = match self.start_session(&msg, ctx) {
            Ok(serial) => serial,
            Err(e) => {
                tracing::warn!(session_id = %msg.session_id, status = e.status, error = %e.message, "Terminal attach refused.");
                return Box::pin(fut::ready(Err(e)));
            }
        };
        let reply = Message::Response(ResponseMessage::success(
            msg.request_id,
            serde_json::json!({ "attached": true }),
        ));
        let link = msg.link;
        let session_id = msg.session_id;
        Box::pin(async move { link.send(&reply).await }.into_actor(self).map(
            move |sent, act, _ctx| {
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
            },
        ))
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
        // The PTY and the writer go with the session; its processes get
        // the grace.
        let Session { process, .. } = s;
        self.release(process, ctx);
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

/// Base64 as browsers and Node write it; padding optional.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text)
}

/// Raw bytes per `session-data` so that its frame (base64 is 4/3 of the
/// raw size, plus the envelope) stays within `max_payload`.
pub fn chunk_budget(max_payload: usize, session_id_len: usize) -> usize {
    let room = max_payload.saturating_sub(FRAME_OVERHEAD + session_id_len * JSON_ESCAPE_FACTOR);
    (room / 4 * 3).clamp(1, MAX_CHUNK_BYTES)
}

/// Who a shell runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: PathBuf,
    /// voltd is root and the user is someone else: switch with `setpriv`.
    switch: bool,
}

/// A passwd entry, reduced to what a shell needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: PathBuf,
}

impl From<User> for Account {
    fn from(u: User) -> Self {
        Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }
    }
}

/// Looks the configured user (or voltd's own) up and decides how to run
/// the shell.
fn resolve_identity(settings: &TerminalSettings, euid: Uid) -> Result<Identity, AttachError> {
    let account: Account = match &settings.user {
        Some(name) => User::from_name(name)
            .map_err(|e| {
                AttachError::new(500, format!("cannot look up terminal user {name}: {e}"))
            })?
            .ok_or_else(|| {
                AttachError::new(
                    500,
                    format!("terminal user {name} does not exist on this host ([terminal] user)"),
                )
            })?
            .into(),
        None => User::from_uid(euid)
            .map_err(|e| AttachError::new(500, format!("cannot look up uid {euid}: {e}")))?
            .ok_or_else(|| {
                AttachError::new(
                    500,
                    format!(
                        "voltd runs as uid {euid}, which has no passwd entry; set [terminal] user"
                    ),
                )
            })?
            .into(),
    };
    plan_identity(settings.shell.as_deref(), euid.as_raw(), account)
}

/// The pure part of [`resolve_identity`].
fn plan_identity(
    configured_shell: Option<&Path>,
    euid: u32,
    account: Account,
) -> Result<Identity, AttachError> {
    let switch = account.uid != euid;
    if switch && euid != 0 {
        return Err(AttachError::new(
            403,
            format!(
                "the host terminal is configured to run as {} (uid {}), but voltd runs as uid {euid} and only root can switch users; run voltd as root or remove [terminal] user",
                account.name, account.uid
            ),
        ));
    }
    let shell = match configured_shell {
        Some(s) => s.to_path_buf(),
        None if !account.shell.as_os_str().is_empty() => account.shell.clone(),
        None => PathBuf::from(FALLBACK_SHELL),
    };
    Ok(Identity {
        name: account.name,
        uid: account.uid,
        gid: account.gid,
        home: account.home,
        shell,
        switch,
    })
}

/// The command line and environment of a login shell for `id`.
fn shell_command(id: &Identity, setpriv: Option<&Path>) -> CommandBuilder {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(setpriv) = setpriv {
        argv.push(setpriv.into());
        argv.push(format!("--reuid={}", id.uid).into());
        argv.push(format!("--regid={}", id.gid).into());
        argv.push("--init-groups".into());
        argv.push("--".into());
    }
    argv.push(id.shell.clone().into());
    argv.push("-l".into());
    let mut cmd = CommandBuilder::from_argv(argv);
    cmd.env_clear();
    for key in PASSED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("TERM", TERM);
    cmd.env("HOME", &id.home);
    cmd.env("USER", &id.name);
    cmd.env("LOGNAME", &id.name);
    cmd.env("SHELL", &id.shell);
    cmd.env("PATH", DEFAULT_PATH);
    let cwd = if id.home.is_dir() {
        id.home.as_path()
    } else {
        Path::new("/")
    };
    cmd.cwd(cwd);
    cmd
}

fn find_setpriv() -> Option<&'static Path> {
    SETPRIV_PATHS.iter().map(Path::new).find(|p| p.is_file())
}

/// A started shell and the ends of its I/O threads.
struct Spawned {
    master: Box<dyn MasterPty + Send>,
    input: std::sync::mpsc::Sender<Vec<u8>>,
    input_queued: Arc<AtomicUsize>,
    output: mpsc::Receiver<OutputItem>,
    process: SessionProcess,
    /// The shell's exit code (`None`: unknown), once it exited.
    exited: oneshot::Receiver<Option<i32>>,
}

/// Opens a PTY and starts the login shell of `id` in it.
fn spawn_shell(id: &Identity) -> Result<Spawned, AttachError> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, what, "Cannot start a terminal.");
        AttachError::new(500, format!("cannot start the terminal: {what}: {e}"))
    };
    let setpriv = if id.switch {
        Some(find_setpriv().ok_or_else(|| {
            AttachError::new(
                500,
                format!(
                    "running the terminal as {} needs setpriv (util-linux), which is not installed",
                    id.name
                ),
            )
        })?)
    } else {
        None
    };
    let pair = native_pty_system()
        .openpty(PtySize::default())
        .map_err(|e| internal("cannot open a PTY", &e))?;
    let reader = pair
        .master
        .try_clone_reader()
        .map_err(|e| internal("cannot read the PTY", &e))?;
    let writer = pair
        .master
        .take_writer()
        .map_err(|e| internal("cannot write the PTY", &e))?;
    let tty = pair.master.tty_name();
    // Both threads end by themselves if anything below fails: the reader
    // when no slave side is open any more, the writer when its sender goes.
    let (output_tx, output) = mpsc::channel(OUTPUT_QUEUE);
    spawn_reader(reader, output_tx).map_err(|e| internal("cannot start the reader thread", &e))?;
    let input_queued = Arc::new(AtomicUsize::new(0));
    let input = spawn_writer(writer, input_queued.clone())
        .map_err(|e| internal("cannot start the writer thread", &e))?;
    if id.switch {
        give_tty(tty.as_deref(), id);
    }
    let child = pair
        .slave
        .spawn_command(shell_command(id, setpriv))
        .map_err(|e| {
            AttachError::new(
                500,
                format!(
                    "cannot start the terminal shell {}: {e}",
                    id.shell.display()
                ),
            )
        })?;
    // Only the shell keeps the terminal's slave side open now, so the
    // reader sees the end once every process of the session closed it.
    drop(pair.slave);
    let pid = child
        .process_id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    // From here the process is managed by pid (waitid/waitpid below);
    // dropping std's handle neither waits for nor kills it.
    drop(child);
    let Some(pid) = pid else {
        return Err(internal("the shell has no pid", &"unknown pid"));
    };
    let (exited, reap) = match spawn_waiter(pid) {
        Ok(w) => w,
        Err(e) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(internal("cannot start the waiter thread", &e));
        }
    };
    Ok(Spawned {
        master: pair.master,
        input,
        input_queued,
        output,
        process: SessionProcess {
            pid,
            tty,
            _reap: reap,
        },
        exited,
    })
}

/// Makes the terminal the user's, as `login` and `sshd` do, so programs
/// that check who owns their tty (`screen`, `mesg`) work.
fn give_tty(tty: Option<&Path>, id: &Identity) {
    use std::os::unix::fs::PermissionsExt;
    let Some(tty) = tty else {
        return;
    };
    let owned = nix::unistd::chown(
        tty,
        Some(Uid::from_raw(id.uid)),
        Some(nix::unistd::Gid::from_raw(id.gid)),
    )
    .map_err(std::io::Error::from)
    .and_then(|()| std::fs::set_permissions(tty, std::fs::Permissions::from_mode(0o600)));
    if let Err(e) = owned {
        tracing::warn!(tty = %tty.display(), user = %id.name, error = %e, "Cannot hand the terminal to its user.");
    }
}

/// Reads the PTY on its own thread (reads block) into a bounded channel:
/// when the channel is full the thread blocks and stops reading, which is
/// the backpressure on the shell. Ends at the end of output (every slave
/// side closed) or when the pump is gone.
fn spawn_reader(
    mut reader: Box<dyn Read + Send>,
    tx: mpsc::Sender<OutputItem>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("voltd-pty-read".into())
        .spawn(move || {
            let mut buf = vec![0u8; READ_SLICE];
            loop {
                match reader.read(&mut buf) {
                    // portable-pty maps EIO (no slave side open) to 0.
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// Writes input to the PTY on its own thread (a shell that does not read
/// blocks the write). Ends when the session drops its sender or the shell
/// side is gone.
fn spawn_writer(
    mut writer: Box<dyn Write + Send>,
    queued: Arc<AtomicUsize>,
) -> std::io::Result<std::sync::mpsc::Sender<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::Builder::new()
        .name("voltd-pty-write".into())
        .spawn(move || {
            for chunk in rx {
                if writer
                    .write_all(&chunk)
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    return;
                }
                queued.fetch_sub(chunk.len(), Ordering::Relaxed);
            }
        })?;
    Ok(tx)
}

/// Waits for the shell on its own thread (`waitid` blocks). The shell is
/// left a zombie until `reap` is dropped, so its pid, which is also the
/// session id the kill path signals, stays reserved until then.
fn spawn_waiter(
    pid: Pid,
) -> std::io::Result<(oneshot::Receiver<Option<i32>>, std::sync::mpsc::Sender<()>)> {
    let (exit_tx, exit_rx) = oneshot::channel();
    let (reap_tx, reap_rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("voltd-pty-wait".into())
        .spawn(move || {
            let code = loop {
                match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                    Ok(WaitStatus::Exited(_, code)) => break Some(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break Some(128 + sig as i32),
                    Err(Errno::EINTR) => {}
                    // Anything else (ECHILD: reaped elsewhere) ends the
                    // session; the kill path deals with whatever is left.
                    Ok(_) | Err(_) => break None,
                }
            };
            let _ = exit_tx.send(code);
            // Returns once the session dropped its sender.
            let _ = reap_rx.recv();
            let _ = waitpid(pid, None);
        })?;
    Ok((exit_rx, reap_tx))
}

/// Live (not zombie) processes whose session id is `sid`.
fn session_members(sid: Pid) -> Vec<Pid> {
    proc_pids()
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, session)| {
                    session == sid.as_raw() && !matches!(state, 'Z' | 'X' | 'x')
                })
        })
        .map(Pid::from_raw)
        .collect()
}

/// Other processes with `tty` open.
fn tty_holders(tty: &Path) -> Vec<Pid> {
    let me = std::process::id() as i32;
    proc_pids()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(Result::ok)
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == tty))
            })
        })
        .map(Pid::from_raw)
        .collect()
}

fn proc_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
}

/// `(state, session id)` from `/proc/<pid>/stat` (the command name may
/// contain spaces and parentheses; it ends at the last `)`).
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some((state, session))
}

/// One session's output relay (see the module docs).
struct Pump {
    session_id: String,
    output: mpsc::Receiver<OutputItem>,
    link: Link,
    shared: Rc<Shared>,
    start: oneshot::Receiver<()>,
    exited: oneshot::Receiver<Option<i32>>,
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
    async fn run(mut self) -> PumpOutcome {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    fn account(uid: u32, shell: &str) -> Account {
        Account {
            name: format!("user{uid}"),
            uid,
            gid: uid,
            home: PathBuf::from(format!("/home/user{uid}")),
            shell: PathBuf::from(shell),
        }
    }

    #[test]
    fn identity_switches_only_from_root_and_picks_the_shell() {
        let same = plan_identity(None, 1000, account(1000, "/bin/zsh")).unwrap();
        assert!(!same.switch);
        assert_eq!(same.shell, PathBuf::from("/bin/zsh"));

        let from_root = plan_identity(None, 0, account(1000, "")).unwrap();
        assert!(from_root.switch);
        assert_eq!(from_root.shell, PathBuf::from(FALLBACK_SHELL));

        let configured = plan_identity(Some(Path::new("/bin/sh")), 0, account(0, "/bin/bash"));
        assert_eq!(configured.unwrap().shell, PathBuf::from("/bin/sh"));

        let err = plan_identity(None, 1000, account(1001, "/bin/bash")).unwrap_err();
        assert_eq!(err.status, 403);
        assert!(
            err.message.contains("only root can switch users"),
            "{}",
            err.message
        );
    }

    #[test]
    fn shell_environment_is_built_from_scratch() {
        let id = plan_identity(None, 0, account(0, "/bin/sh")).unwrap();
        let cmd = shell_command(&id, None);
        let env: HashMap<&str, &str> = cmd.iter_full_env_as_str().collect();
        assert_eq!(env.get("TERM"), Some(&"xterm-256color"));
        assert_eq!(env.get("HOME"), Some(&"/home/user0"));
        assert_eq!(env.get("USER"), Some(&"user0"));
        assert_eq!(env.get("LOGNAME"), Some(&"user0"));
        assert_eq!(env.get("SHELL"), Some(&"/bin/sh"));
        assert!(env.keys().all(|k| {
            ["TERM", "HOME", "USER", "LOGNAME", "SHELL", "PATH"].contains(k)
                || PASSED_ENV.contains(k)
        }));
        assert_eq!(cmd.get_argv(), &["/bin/sh", "-l"]);
        let switched = shell_command(
            &plan_identity(None, 0, account(7, "/bin/sh")).unwrap(),
            Some(Path::new("/usr/bin/setpriv")),
        );
        assert_eq!(
            switched.get_argv(),
            &[
                "/usr/bin/setpriv",
                "--reuid=7",
                "--regid=7",
                "--init-groups",
                "--",
                "/bin/sh",
                "-l"
            ]
        );
    }

    #[test]
    fn proc_stat_is_parsed_past_odd_command_names() {
        let stat = "4242 (we ird) (name) S 1 4242 4240 34816 4242 4194560 1 0";
        assert_eq!(parse_stat(stat), Some(('S', 4240)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) Z"), None);
    }

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

    fn settings(shell: &str) -> TerminalSettings {
        TerminalSettings {
            shell: Some(crate::config::AbsPath::new(shell).unwrap()),
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
