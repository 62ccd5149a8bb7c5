//! Starting a shell in a real PTY and its three threads: a reader (PTY
//! reads block; it feeds a bounded channel, which is the backpressure on
//! the shell), a writer (a shell that does not read blocks the write) and
//! a waiter (`waitid` blocks; the shell stays a zombie until its session
//! is dropped, so its pid — the session id the kill path signals — cannot
//! be recycled meanwhile).

use super::AttachError;
use super::identity::{Identity, find_setpriv, give_tty, shell_command};
use super::reap::SessionProcess;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use portable_pty::{MasterPty, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Bytes asked of the PTY per read. A PTY master hands out a few KiB per
/// read; the slice only bounds what one read may return.
pub(super) const READ_SLICE: usize = 16 * 1024;

/// Reads queued between a session's reader thread and its pump: enough to
/// keep a full batch ready while the previous one is sent, and at most
/// 32 × 16 KiB = 512 KiB per session.
pub const OUTPUT_QUEUE: usize = 32;

/// One read of terminal output, or why reading stopped.
pub(super) type OutputItem = Result<Vec<u8>, String>;

/// A started shell and the ends of its I/O threads.
pub(super) struct Spawned {
    pub(super) master: Box<dyn MasterPty + Send>,
    pub(super) input: std::sync::mpsc::Sender<Vec<u8>>,
    pub(super) input_queued: Arc<AtomicUsize>,
    pub(super) output: mpsc::Receiver<OutputItem>,
    pub(super) process: SessionProcess,
    /// The shell's exit code (`None`: unknown), once it exited.
    pub(super) exited: oneshot::Receiver<Option<i32>>,
}

/// Opens a PTY and starts the login shell of `id` in it.
pub(super) fn spawn_shell(id: &Identity) -> Result<Spawned, AttachError> {
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

/// Waits for the shell on its own thread (`waitid` blocks). The shell is
/// left a zombie until `reap` is dropped, so its pid, which is also the
/// session id the kill path signals, stays reserved until then.
pub(super) fn spawn_waiter(
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
