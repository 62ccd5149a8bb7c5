//! Starting a shell in a real PTY (the helper's side) and the threads
//! around it: in the helper, a waiter (`waitid` blocks; the shell stays a
//! zombie until its session is over, so its pid — the session id the kill
//! path signals — cannot be recycled meanwhile); in voltd, on the PTY
//! master the helper passed, a reader (PTY reads block; it feeds a bounded
//! channel, which is the backpressure on the shell) and a writer (a shell
//! that does not read blocks the write).

use super::AttachError;
use super::identity::{Identity, find_setpriv, find_setsid, give_tty, shell_command};
use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Bytes asked of the PTY per read. A PTY master hands out a few KiB per
/// read; the slice only bounds what one read may return.
pub(super) const READ_SLICE: usize = 16 * 1024;

/// Reads queued between a session's reader thread and its pump: enough to
/// keep a full batch ready while the previous one is sent, and at most
/// 32 × 16 KiB = 512 KiB per session.
pub const OUTPUT_QUEUE: usize = 32;

/// One read of terminal output, or why reading stopped.
pub(super) type OutputItem = Result<Vec<u8>, String>;

/// Terminal size until the first `session-resize` (the classic 80×24).
const INITIAL_SIZE: Winsize = Winsize {
    ws_row: 24,
    ws_col: 80,
    ws_xpixel: 0,
    ws_ypixel: 0,
};

/// A started shell (helper side).
pub(super) struct ShellChild {
    pub(super) master: OwnedFd,
    pub(super) pid: Pid,
    pub(super) tty: Option<std::path::PathBuf>,
}

/// Opens a PTY and starts the login shell of `id` in it (blocking: fork
/// and exec; runs in the helper).
pub(super) fn spawn_shell(id: &Identity) -> Result<ShellChild, AttachError> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, what, "Cannot start a terminal.");
        AttachError::new(500, format!("cannot start the terminal: {what}: {e}"))
    };
    let missing = |tool: &str| {
        AttachError::new(
            500,
            format!("the host terminal needs {tool} (util-linux), which is not installed"),
        )
    };
    let setsid = find_setsid().ok_or_else(|| missing("setsid"))?;
    let setpriv = if id.switch {
        Some(find_setpriv().ok_or_else(|| missing("setpriv"))?)
    } else {
        None
    };
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| internal("cannot open a PTY", &e))?;
    rustix::pty::grantpt(&master).map_err(|e| internal("grantpt", &e))?;
    rustix::pty::unlockpt(&master).map_err(|e| internal("unlockpt", &e))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(|e| internal("ptsname", &e))?;
    let tty = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = rustix::fs::open(
        &tty,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| internal("cannot open the PTY's terminal", &e))?;
    let _ = rustix::termios::tcsetwinsize(&master, INITIAL_SIZE);
    if id.switch {
        give_tty(Some(&tty), id);
    }
    let stdio = |fd: &OwnedFd| {
        fd.try_clone()
            .map(std::process::Stdio::from)
            .map_err(|e| internal("cannot duplicate the terminal", &e))
    };
    let mut cmd = shell_command(id, setsid, setpriv);
    cmd.stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?);
    let child = cmd.spawn().map_err(|e| {
        AttachError::new(
            500,
            format!(
                "cannot start the terminal shell {}: {e}",
                id.shell.display()
            ),
        )
    })?;
    // Only the shell keeps the terminal's slave side open now, so voltd's
    // reader sees the end once every process of the session closed it.
    drop(slave);
    drop(cmd);
    let pid = i32::try_from(child.id()).map(Pid::from_raw);
    // From here the process is managed by pid (waitid/waitpid below);
    // dropping std's handle neither waits for nor kills it.
    drop(child);
    let pid = pid.map_err(|e| internal("the shell has no pid", &e))?;
    Ok(ShellChild {
        master,
        pid,
        tty: Some(tty),
    })
}

/// The I/O ends of a PTY master in voltd.
pub(super) struct PtyIo {
    pub(super) input: std::sync::mpsc::Sender<Vec<u8>>,
    pub(super) input_queued: Arc<AtomicUsize>,
    pub(super) output: mpsc::Receiver<OutputItem>,
}

/// Starts the reader and writer threads on (duplicates of) `master`.
pub(super) fn start_io(master: &OwnedFd) -> std::io::Result<PtyIo> {
    let reader = std::fs::File::from(master.try_clone()?);
    let writer = std::fs::File::from(master.try_clone()?);
    let (output_tx, output) = mpsc::channel(OUTPUT_QUEUE);
    spawn_reader(Box::new(PtyReader(reader)), output_tx)?;
    let input_queued = Arc::new(AtomicUsize::new(0));
    let input = spawn_writer(Box::new(writer), input_queued.clone())?;
    Ok(PtyIo {
        input,
        input_queued,
        output,
    })
}

/// A PTY master read: `EIO` means no slave side is open any more (every
/// process of the session closed the terminal): the end, as portable-pty
/// reports it.
struct PtyReader(std::fs::File);

impl Read for PtyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(0),
            other => other,
        }
    }
}

/// Reads the PTY on its own thread (reads block) into a bounded channel:
/// when the channel is full the thread blocks and stops reading, which is
/// the backpressure on the shell. Ends at the end of output (every slave
/// side closed) or when the pump is gone.
pub(super) fn spawn_reader(
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
pub(super) fn spawn_writer(
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

/// Waits for the shell on its own thread (`waitid` blocks) and calls
/// `on_exit` with its code. The shell is left a zombie until the returned
/// sender is dropped, so its pid, which is also the session id the kill
/// path signals, stays reserved until then.
pub(super) fn spawn_waiter(
    pid: Pid,
    on_exit: impl FnOnce(Option<i32>) + Send + 'static,
) -> std::io::Result<std::sync::mpsc::Sender<()>> {
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
            on_exit(code);
            // Returns once the session dropped its sender.
            let _ = reap_rx.recv();
            let _ = waitpid(pid, None);
        })?;
    Ok(reap_tx)
}
