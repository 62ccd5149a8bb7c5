//! The terminal helper: the one part of voltd that starts shells. It runs
//! either as its own process, started by systemd for each connection to
//! `voltd-terminal.socket` (`voltd terminal-helper`, as root, outside
//! voltd's sandbox: the terminal is the whole host), or — "direct mode",
//! for development and tests when voltd itself runs as root outside
//! systemd — on a thread of voltd, over a socket pair. Both speak
//! [`super::wire`] and run [`serve`].
//!
//! One connection is one session: read `open`, check who the shell may run
//! as ([`super::identity`]: never root, never the peer's account unless
//! `allow_daemon_user`), start the login shell in a PTY as that account,
//! pass the PTY master back with `SCM_RIGHTS`, report the shell's exit,
//! signal the session on `hangup`/`kill`, and when voltd closes the
//! connection (or dies) hang the session up, wait [`KILL_GRACE`], kill
//! what is left, reap the shell and return. voltd never holds a process of
//! another account: it cannot signal one, and needs not.

use super::identity::resolve_identity;
use super::reap::{KILL_GRACE, SessionProcess};
use super::spawn::{ShellChild, spawn_shell, spawn_waiter};
use super::wire::{self, Reply, Request};
use crate::config::TerminalSettings;
use nix::unistd::Uid;
use rustix::fd::AsFd;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// voltd sends `open` at once; a connection that says nothing is dropped.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// While waiting out the grace, how often the session is looked at.
const GRACE_POLL: Duration = Duration::from_millis(50);

/// Serves one session on `conn` (blocking; returns when it is over).
/// `peer_uid`: who asked (`SO_PEERCRED`, or voltd's own uid in direct
/// mode).
pub fn serve(mut conn: UnixStream, settings: &TerminalSettings, peer_uid: u32) {
    let refuse = |conn: &mut UnixStream, status: u16, message: String| {
        tracing::warn!(status, %message, "Terminal refused.");
        let _ = conn.write_all(&wire::encode(&Reply::Refused { status, message }));
    };
    match read_open(&mut conn) {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(error = %e, "Terminal helper: no open request.");
            return refuse(&mut conn, 400, e);
        }
    }
    let identity = match resolve_identity(settings, Uid::effective(), peer_uid) {
        Ok(id) => id,
        Err(e) => return refuse(&mut conn, e.status, e.message),
    };
    let ShellChild { master, pid, tty } = match spawn_shell(&identity) {
        Ok(c) => c,
        Err(e) => return refuse(&mut conn, e.status, e.message),
    };
    // The session's processes are ours from here: any return kills them.
    // A shell that exits at once must still be reported after `opened`:
    // the waiter holds its `exited` until the answer is on the wire.
    let (answered, answer_sent) = std::sync::mpsc::channel::<()>();
    let exit_conn = conn.try_clone();
    let reap = match exit_conn {
        Ok(mut exit_conn) => spawn_waiter(pid, move |code| {
            // Err: the answer was never sent (the sender is gone); then
            // nobody reads this either way.
            let _ = answer_sent.recv();
            let _ = exit_conn.write_all(&wire::encode(&Reply::Exited { code }));
        }),
        Err(e) => Err(e),
    };
    let reap = match reap {
        Ok(r) => r,
        Err(e) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return refuse(&mut conn, 500, format!("cannot start the terminal: {e}"));
        }
    };
    let session = SessionProcess {
        pid,
        tty,
        _reap: reap,
    };
    let opened = Reply::Opened {
        pid: pid.as_raw(),
        user: identity.name.clone(),
    };
    let sent = send_with_fd(&conn, &wire::encode(&opened), master.as_fd());
    drop(answered);
    // voltd holds its own copy of the master now. This one stays open
    // until the session is over: it keeps the terminal's number (the
    // /dev/pts/N the kill path looks for) from going to a new terminal
    // while this session's processes are still being ended.
    if let Err(e) = sent {
        tracing::warn!(error = %e, "Terminal helper: cannot pass the terminal to voltd.");
        end(session);
        drop(master);
        return;
    }
    tracing::info!(pid = pid.as_raw(), user = %identity.name, peer_uid, "Terminal session started.");
    let _ = conn.set_read_timeout(None);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let lines = match wire::take_lines(&mut buf) {
            Ok(l) => l,
            Err(_) => break,
        };
        for line in lines {
            match wire::decode::<Request>(&line) {
                Ok(Request::Hangup) => {
                    session.hang_up();
                }
                Ok(Request::Kill) => {
                    let killed = session.kill_all();
                    if killed > 0 {
                        tracing::warn!(killed, "Terminal processes ignored SIGHUP; killed.");
                    }
                }
                Ok(Request::Open) | Err(_) => {}
            }
        }
    }
    end(session);
    drop(master);
}

/// The end of a session: SIGHUP now, SIGKILL to whatever is left after
/// the grace, then the shell is reaped (dropping the session).
fn end(session: SessionProcess) {
    if session.hang_up() > 0 {
        let until = Instant::now() + KILL_GRACE;
        while Instant::now() < until && session.alive() > 0 {
            std::thread::sleep(GRACE_POLL);
        }
    }
    drop(session);
}

fn read_open(conn: &mut UnixStream) -> Result<(), String> {
    conn.set_read_timeout(Some(OPEN_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 256];
    loop {
        let n = conn
            .read(&mut byte)
            .map_err(|e| format!("no open request: {e}"))?;
        if n == 0 {
            return Err("the connection closed before the open request".into());
        }
        buf.extend_from_slice(&byte[..n]);
        let lines = wire::take_lines(&mut buf)?;
        if let Some(first) = lines.first() {
            return match wire::decode::<Request>(first)? {
                Request::Open => Ok(()),
                other => Err(format!("expected an open request, got {other:?}")),
            };
        }
    }
}

/// Sends `line` with `fd` attached (`SCM_RIGHTS`).
fn send_with_fd(
    conn: &UnixStream,
    line: &[u8],
    fd: rustix::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = rustix::net::sendmsg(
        conn.as_fd(),
        &[IoSlice::new(line)],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent < line.len() {
        // The descriptor went with the first byte; the rest is plain.
        let mut rest = conn;
        rest.write_all(&line[sent..])?;
    }
    Ok(())
}

/// `voltd terminal-helper`: serves the one connection systemd passed on
/// standard input (`voltd-terminal.socket`, `Accept=yes`,
/// `StandardInput=socket`). `terminal` is the `[terminal]` section of the
/// config, or why it could not be read (then told to voltd). Returns the
/// exit status.
pub fn serve_stdin(terminal: Result<TerminalSettings, String>) -> i32 {
    let conn = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("voltd terminal-helper: no standard input: {e}");
            return 1;
        }
    };
    let is_socket = rustix::fs::fstat(&conn).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
    });
    if !is_socket {
        eprintln!(
            "voltd terminal-helper serves one connection on its standard input and is started by voltd-terminal.socket; standard input is not a socket"
        );
        return 1;
    }
    let mut conn = UnixStream::from(conn);
    let peer = match rustix::net::sockopt::socket_peercred(&conn) {
        Ok(cred) => cred.uid.as_raw(),
        Err(e) => {
            eprintln!("voltd terminal-helper: cannot tell who connected: {e}");
            return 1;
        }
    };
    let settings = match terminal {
        Ok(s) => s,
        Err(e) => {
            let message = format!("the terminal helper cannot read its configuration: {e}");
            tracing::error!(%message, "Terminal refused.");
            let _ = conn.write_all(&wire::encode(&Reply::Refused {
                status: 500,
                message,
            }));
            return 1;
        }
    };
    if !settings.enabled {
        let _ = conn.write_all(&wire::encode(&Reply::Refused {
            status: 403,
            message: "host terminal is disabled on this cluster".into(),
        }));
        return 0;
    }
    serve(conn, &settings, peer);
    0
}
