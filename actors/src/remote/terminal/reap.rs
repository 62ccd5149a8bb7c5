//! Ending a session's processes (in the terminal helper, which owns them).
//! The shell is a session leader (`setsid --ctty`), so everything started from the terminal
//! shares its session id: ending a session sends SIGHUP (and SIGCONT, for
//! stopped jobs) to every process of that session, and SIGKILL after
//! [`KILL_GRACE`] to those left and to anything else still holding the
//! terminal open. Dropping a [`SessionProcess`] (even during a panic) runs
//! the kill path.

use crate::host::proc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SIGHUP → SIGKILL grace. A shell saves its history and exits within
/// milliseconds; a program that ignores SIGHUP gets this long.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// SIGKILL rounds: a process forking while the session is scanned is
/// caught by the next round.
const KILL_ROUNDS: usize = 3;

/// The processes of one session: the shell, whose pid is also the session
/// id of everything started from the terminal. Dropping it kills whatever
/// is left and lets the waiter thread reap the shell.
pub(super) struct SessionProcess {
    pub(super) pid: Pid,
    /// The terminal's slave device (`/dev/pts/N`), if known.
    pub(super) tty: Option<PathBuf>,
    /// Dropped with this: the waiter thread then reaps the shell.
    pub(super) _reap: std::sync::mpsc::Sender<()>,
}

impl SessionProcess {
    /// Sends `sig` to every live process of the session; returns how many.
    fn signal(&self, sig: Signal) -> usize {
        session_members(self.pid)
            .into_iter()
            .filter(|pid| kill(*pid, sig).is_ok())
            .count()
    }

    /// How many processes of the session are alive (not zombies).
    pub(super) fn alive(&self) -> usize {
        session_members(self.pid).len()
    }

    /// SIGHUP, and SIGCONT so stopped jobs act on it; returns how many
    /// processes were still alive.
    pub(super) fn hang_up(&self) -> usize {
        let n = self.signal(Signal::SIGHUP);
        if n > 0 {
            self.signal(Signal::SIGCONT);
        }
        n
    }

    /// SIGKILL to the session and to anything else holding its terminal
    /// (a process that left the session but kept the terminal open would
    /// otherwise keep it, and the reader thread, alive).
    pub(super) fn kill_all(&self) -> usize {
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

/// Live (not zombie) processes whose session id is `sid`.
fn session_members(sid: Pid) -> Vec<Pid> {
    proc::living(|s| s.session == sid.as_raw())
        .into_iter()
        .map(Pid::from_raw)
        .collect()
}

/// Other processes with `tty` open.
fn tty_holders(tty: &Path) -> Vec<Pid> {
    proc::holders_of(tty)
        .into_iter()
        .map(Pid::from_raw)
        .collect()
}
