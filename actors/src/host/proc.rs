//! Processes as `/proc` shows them — the one place voltd reads
//! `/proc/<pid>/…` (through the maintained `procfs` crate): the managed
//! services' process groups and pid files, and the terminal sessions'
//! members and tty holders.
//!
//! These are blocking reads of a pseudo-filesystem: callers on the actor
//! thread keep them to the moments a process is started or killed.

use nix::sys::signal::Signal;
use procfs::process::{FDTarget, Process};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// What voltd needs of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat {
    /// `R`, `S`, `D`, `Z`, `T`, …
    pub state: char,
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Session id.
    pub session: i32,
    /// Start time in clock ticks since boot: with the pid, a process
    /// identity that survives pid reuse.
    pub start_time: u64,
}

impl PidStat {
    /// Dead but not reaped yet (its parent, possibly init, has not waited).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn stat_of(p: &Process) -> Option<PidStat> {
    let s = p.stat().ok()?;
    Some(PidStat {
        state: s.state,
        ppid: s.ppid,
        pgrp: s.pgrp,
        session: s.session,
        start_time: s.starttime,
    })
}

/// `/proc/<pid>/stat` of a process, if it exists.
pub fn pid_stat(pid: i32) -> Option<PidStat> {
    stat_of(&Process::new(pid).ok()?)
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    pid_stat(pid).is_some_and(|s| !s.is_dead())
}

/// Living processes whose stat satisfies `pick` (e.g. a process group, a
/// session).
pub fn living(pick: impl Fn(&PidStat) -> bool) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|p| Some((p.pid, stat_of(&p)?)))
        .filter(|(_, s)| !s.is_dead() && pick(s))
        .map(|(pid, _)| pid)
        .collect()
}

/// Processes other than this one with `path` open.
pub fn holders_of(path: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter(|p| p.pid != me)
        .filter(|p| {
            p.fd().is_ok_and(|fds| {
                fds.filter_map(Result::ok)
                    .any(|fd| matches!(&fd.target, FDTarget::Path(t) if t == path))
            })
        })
        .map(|p| p.pid)
        .collect()
}

/// Describes how a process ended ("exited with code 1", "killed by SIGKILL").
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "ended".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_in_its_own_group_and_session() {
        let me = std::process::id() as i32;
        let s = pid_stat(me).expect("own stat");
        assert!(is_alive(me));
        assert!(!s.is_dead());
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(s.pgrp, nix::unistd::getpgrp().as_raw());
        assert!(s.start_time > 0);
        assert!(living(|p| p.pgrp == s.pgrp).contains(&me));
    }

    #[test]
    fn a_missing_pid_has_no_stat() {
        // pid_max is at most 2^22.
        assert_eq!(pid_stat(i32::MAX), None);
        assert!(!is_alive(i32::MAX));
    }

    #[test]
    fn holders_of_a_file_a_child_keeps_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("held");
        std::fs::write(&file, b"x").unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; echo ready; exec sleep 60")
            .arg(&file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let holders = holders_of(&file);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(holders, vec![child.id() as i32]);
    }
}
