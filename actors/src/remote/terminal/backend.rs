//! voltd's side of a terminal session: reaching a terminal helper,
//! receiving the PTY master it passes, and the control connection that
//! reports the shell's exit and carries `hangup`/`kill`.
//!
//! How voltd reaches a helper ([`open_shell`], blocking, run on the
//! blocking pool — never on the actor thread):
//!
//! | voltd | helper |
//! |---|---|
//! | `[terminal] helper_socket` exists | connect to it: systemd starts `voltd terminal-helper` (root, its own unit) for the connection |
//! | no helper socket, voltd is root (development, tests, root outside systemd) | a helper thread in voltd over a socket pair ("direct mode") |
//! | no helper socket, not root, `allow_daemon_user` | a helper thread; the shell runs as voltd's own account (development only) |
//! | otherwise | 403 with the reason; nothing falls back to voltd's account |
//!
//! Dropping the [`Control`] closes the connection: the helper then hangs
//! the session up, kills what is left after the grace and reaps the shell.

use super::AttachError;
use super::wire::{self, Reply, Request};
use crate::config::TerminalSettings;
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// The helper answers `open` once the shell runs: a passwd lookup and an
/// exec, milliseconds; a helper that does not answer in this long is
/// treated as broken.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A started shell, as voltd holds it.
pub(super) struct Opened {
    pub(super) master: OwnedFd,
    pub(super) user: String,
    pub(super) pid: i32,
    pub(super) conn: UnixStream,
    /// Bytes read after the `opened` line (an `exited` may already be
    /// there).
    pub(super) leftover: Vec<u8>,
}

/// How the helper is reached (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Socket(std::path::PathBuf),
    Thread,
}

/// Picks the route, or the 403 that says why there is none.
pub(super) fn route(settings: &TerminalSettings, euid: u32) -> Result<Route, AttachError> {
    let socket = settings.helper_socket.as_path();
    let is_socket = std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        return Ok(Route::Socket(socket.to_path_buf()));
    }
    if euid == 0 || settings.allow_daemon_user {
        return Ok(Route::Thread);
    }
    Err(AttachError::new(
        403,
        format!(
            "voltd runs as uid {euid} and cannot start a shell as {}: no terminal helper listens at {} (install.sh installs voltd-terminal.socket) and voltd is not root; it never falls back to its own account",
            &*settings.user,
            socket.display()
        ),
    ))
}

/// Starts a shell through a helper (blocking).
pub(super) fn open_shell(settings: &TerminalSettings) -> Result<Opened, AttachError> {
    let euid = nix::unistd::Uid::effective().as_raw();
    let conn = match route(settings, euid)? {
        Route::Socket(path) => UnixStream::connect(&path).map_err(|e| {
            AttachError::new(
                503,
                format!(
                    "the terminal helper at {} does not answer ({e}): is voltd-terminal.socket running?",
                    path.display()
                ),
            )
        })?,
        Route::Thread => {
            let (ours, theirs) = UnixStream::pair()
                .map_err(|e| AttachError::new(500, format!("cannot open a socket pair: {e}")))?;
            let settings = settings.clone();
            std::thread::Builder::new()
                .name("voltd-term-helper".into())
                .spawn(move || super::helper::serve(theirs, &settings, euid))
                .map_err(|e| {
                    AttachError::new(500, format!("cannot start the terminal helper: {e}"))
                })?;
            ours
        }
    };
    handshake(conn)
}

fn handshake(mut conn: UnixStream) -> Result<Opened, AttachError> {
    let broken = |e: &dyn std::fmt::Display| {
        AttachError::new(502, format!("the terminal helper failed: {e}"))
    };
    conn.set_read_timeout(Some(OPEN_TIMEOUT))
        .map_err(|e| broken(&e))?;
    conn.write_all(&wire::encode(&Request::Open))
        .map_err(|e| broken(&e))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut master: Option<OwnedFd> = None;
    loop {
        let mut chunk = [0u8; 1024];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            conn.as_fd(),
            &mut [IoSliceMut::new(&mut chunk)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| broken(&e))?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                for fd in fds {
                    master.get_or_insert(fd);
                }
            }
        }
        if got.bytes == 0 {
            return Err(broken(&"it closed the connection without an answer"));
        }
        buf.extend_from_slice(&chunk[..got.bytes]);
        let mut lines = wire::take_lines(&mut buf).map_err(|e| broken(&e))?;
        if lines.is_empty() {
            continue;
        }
        let first = lines.remove(0);
        // Lines after the first (an early `exited`) stay for the control.
        let mut leftover = Vec::new();
        for l in lines {
            leftover.extend_from_slice(&l);
            leftover.push(b'\n');
        }
        leftover.extend_from_slice(&buf);
        return match wire::decode::<Reply>(&first).map_err(|e| broken(&e))? {
            Reply::Opened { pid, user } => {
                let master =
                    master.ok_or_else(|| broken(&"it sent no terminal with its answer"))?;
                let _ = conn.set_read_timeout(None);
                Ok(Opened {
                    master,
                    user,
                    pid,
                    conn,
                    leftover,
                })
            }
            Reply::Refused { status, message } => Err(AttachError::new(status, message)),
            Reply::Exited { .. } => Err(broken(&"it answered with an exit")),
        };
    }
}

/// What the actor keeps of a session's helper connection.
pub(super) struct Control {
    ops: mpsc::UnboundedSender<Request>,
}

impl Control {
    /// SIGHUP (+SIGCONT) to the session's processes.
    pub(super) fn hang_up(&self) {
        let _ = self.ops.send(Request::Hangup);
    }

    /// SIGKILL to the session's processes and the terminal's holders.
    pub(super) fn kill(&self) {
        let _ = self.ops.send(Request::Kill);
    }
}

/// Runs the control connection on the actor's thread (async, never
/// blocking): the shell's exit goes to `exited`; dropping the returned
/// [`Control`] closes the connection, which ends the session in the
/// helper.
pub(super) fn start_control(
    conn: UnixStream,
    leftover: Vec<u8>,
    exited: oneshot::Sender<Option<i32>>,
) -> std::io::Result<Control> {
    conn.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(conn)?;
    let (ops_tx, mut ops) = mpsc::unbounded_channel::<Request>();
    actix_rt::spawn(async move {
        let (mut read, mut write) = stream.into_split();
        let mut exited = Some(exited);
        let mut buf = leftover;
        let mut chunk = [0u8; 512];
        let mut reading = true;
        loop {
            match wire::take_lines(&mut buf) {
                Ok(lines) => {
                    for line in lines {
                        if let Ok(Reply::Exited { code }) = wire::decode::<Reply>(&line)
                            && let Some(tx) = exited.take()
                        {
                            let _ = tx.send(code);
                        }
                    }
                }
                Err(_) => reading = false,
            }
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => {
                        if write.write_all(&wire::encode(&op)).await.is_err() {
                            reading = false;
                        }
                    }
                    // The session is gone: closing ends it in the helper.
                    None => return,
                },
                n = read.read(&mut chunk), if reading => match n {
                    Ok(0) | Err(_) => {
                        // The helper is gone: the shell with it.
                        reading = false;
                        if let Some(tx) = exited.take() {
                            let _ = tx.send(None);
                        }
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
            }
        }
    });
    Ok(Control { ops: ops_tx })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AbsPath, UserName};

    #[test]
    fn without_a_helper_or_root_the_terminal_is_refused_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        let settings = TerminalSettings {
            user: UserName::parse("volt-terminal").unwrap(),
            helper_socket: AbsPath::new(d.path().join("none.sock")).unwrap(),
            ..TerminalSettings::default()
        };
        let err = route(&settings, 1000).unwrap_err();
        assert_eq!(err.status, 403);
        assert!(
            err.message.contains("no terminal helper listens"),
            "{}",
            err.message
        );
        assert!(err.message.contains("never falls back"), "{}", err.message);
        assert_eq!(route(&settings, 0).unwrap(), Route::Thread);
        let _listener =
            std::os::unix::net::UnixListener::bind(d.path().join("helper.sock")).unwrap();
        let with_helper = TerminalSettings {
            helper_socket: AbsPath::new(d.path().join("helper.sock")).unwrap(),
            ..settings
        };
        assert!(matches!(
            route(&with_helper, 1000).unwrap(),
            Route::Socket(_)
        ));
    }
}
