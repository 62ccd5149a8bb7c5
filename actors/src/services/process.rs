//! The processes of native services: spawned in their own process group
//! with a parent-death signal, output captured line by line, stopped with
//! SIGTERM then SIGKILL, and recorded in a pid file so that a voltd
//! restarted after a crash finds what its predecessor left behind.
//!
//! A pid file holds the pid (which is also the process group id), the
//! process start time from `/proc/<pid>/stat` and the command line with
//! secrets masked. A pid is only ever signalled when its start time matches
//! the record: a recycled pid belongs to someone else. Processes of the
//! recorded group whose leader is gone are still ours, because Linux does
//! not hand out a number as a pid while a process group of that number
//! exists.

use crate::api::vocab::{OutputStream, ServiceKind};
use crate::events::{Event, EventBus};
use crate::host::fsutil::{SECRET_FILE_MODE, write_json_atomic};
use crate::host::proc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::time::Instant;

/// Longest captured output line; longer ones are split. Servers print
/// short lines; this bounds memory if one prints binary garbage.
pub const MAX_OUTPUT_LINE: usize = 8 * 1024;
/// How often a leftover process group or a busy port is checked.
const POLL: Duration = Duration::from_millis(50);
/// How long SIGKILLed processes may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a port may stay busy after its previous owner is gone (the
/// kernel releases it as soon as the socket closes; this covers a server
/// still shutting down that voltd did not start).
pub const PORT_FREE_TIMEOUT: Duration = Duration::from_secs(10);

/// One pid file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PidRecord {
    pub service: String,
    /// Pid of the server, which is also its process group id.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot).
    pub start_time: u64,
    /// The command line, secrets masked (for the operator).
    pub command: String,
    /// The voltd that started it …
    pub voltd_pid: u32,
    /// … and when that voltd started (its pid may be recycled too).
    #[serde(default)]
    pub voltd_start_time: u64,
}

/// Living processes of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    proc::living(|s| s.pgrp == pgid)
}

/// Sends `signal` to process group `pgid`; a group that is already gone is
/// not an error.
fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid, %signal, error = %e, "Cannot signal a service process group.")
        }
    }
}

/// Kills what is left of group `pgid` after its leader exited (a server's
/// helper processes must not outlive it).
fn kill_stragglers(pgid: i32) {
    if !group_members(pgid).is_empty() {
        signal_group(pgid, Signal::SIGKILL);
    }
}

/// Reads a pid file; a missing or unreadable one is no record.
pub fn read_pid_file(path: &Path) -> Option<PidRecord> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Ignoring a corrupt service pid file.");
            None
        }
    }
}

fn remove_pid_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot remove a service pid file.")
        }
    }
}

async fn wait_group_gone(pgid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The pid of another voltd, still running, that started the server
/// recorded in `pid_file` (two daemons on one state directory must not
/// stop each other's servers; the second one exits anyway).
pub fn owned_by_other_voltd(pid_file: &Path) -> Option<u32> {
    let record = read_pid_file(pid_file)?;
    let me = std::process::id();
    if record.voltd_pid == me || record.voltd_pid == 0 {
        return None;
    }
    let stat = proc::pid_stat(i32::try_from(record.voltd_pid).ok()?)?;
    (!stat.is_dead() && stat.start_time == record.voltd_start_time).then_some(record.voltd_pid)
}

/// Stops a server a previous voltd left behind (found through `pid_file`):
/// SIGTERM to its group, SIGKILL after `stop_timeout`. Returns the pid it
/// stopped, `None` when there was nothing of ours left.
pub async fn replace_leftover(
    pid_file: &Path,
    stop_timeout: Duration,
) -> Result<Option<i32>, String> {
    let Some(record) = read_pid_file(pid_file) else {
        remove_pid_file(pid_file);
        return Ok(None);
    };
    let pgid = record.pid;
    if pgid <= 1 {
        remove_pid_file(pid_file);
        return Ok(None);
    }
    if let Some(stat) = proc::pid_stat(pgid)
        && stat.start_time != record.start_time
    {
        // The pid was recycled by an unrelated process: not ours.
        tracing::debug!(service = %record.service, pid = pgid, "Stale service pid file; the pid now belongs to another process.");
        remove_pid_file(pid_file);
        return Ok(None);
    }
    if group_members(pgid).is_empty() {
        remove_pid_file(pid_file);
        return Ok(None);
    }
    tracing::warn!(service = %record.service, pid = pgid, command = %record.command, "Found a server left by a previous voltd; replacing it.");
    signal_group(pgid, Signal::SIGTERM);
    if !wait_group_gone(pgid, stop_timeout).await {
        signal_group(pgid, Signal::SIGKILL);
        if !wait_group_gone(pgid, KILL_WAIT).await {
            return Err(format!(
                "cannot stop process group {pgid} left by a previous voltd"
            ));
        }
    }
    remove_pid_file(pid_file);
    Ok(Some(pgid))
}

/// Waits until `bind:port` can be listened on.
pub async fn wait_port_free(bind: IpAddr, port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match std::net::TcpListener::bind((bind, port)) {
            Ok(listener) => {
                drop(listener);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "port {port} on {bind} is in use by another process"
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(format!("cannot listen on {bind}:{port}: {e}")),
        }
    }
}

/// Finds a program like `execvp` (a host helper; services and
/// provisioning both look binaries up).
pub use crate::host::which::find_binary;

/// How a process ended ("exited with code 1", "killed by SIGKILL").
pub use crate::host::proc::describe_exit;

/// Replaces every secret in `text` with `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// What to start.
pub struct SpawnSpec<'a> {
    pub kind: ServiceKind,
    /// The binary, already located.
    pub binary: &'a Path,
    /// The arguments after the binary.
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub pid_file: PathBuf,
    /// Values masked in captured output and in the pid file.
    pub secrets: Vec<String>,
}

/// A running server process (see the module docs). Dropping it kills the
/// whole process group, so an aborted or panicking service actor never
/// leaves its server behind.
pub struct ManagedChild {
    child: tokio::process::Child,
    pid: i32,
    pid_file: PathBuf,
    started: Instant,
    exited: bool,
}

impl ManagedChild {
    /// Spawns the process and writes its pid file.
    pub fn spawn(spec: SpawnSpec<'_>, bus: &EventBus) -> Result<Self, String> {
        let mut cmd = tokio::process::Command::new(spec.binary);
        cmd.args(spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.binary.display()))?;
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return Err(format!(
                "{} ended before it could be watched",
                spec.binary.display()
            ));
        };
        let started = Instant::now();
        if let Some(out) = child.stdout.take() {
            pump(
                out,
                spec.kind,
                OutputStream::Stdout,
                bus.clone(),
                spec.secrets.clone(),
            );
        }
        if let Some(err) = child.stderr.take() {
            pump(
                err,
                spec.kind,
                OutputStream::Stderr,
                bus.clone(),
                spec.secrets.clone(),
            );
        }
        let managed = ManagedChild {
            child,
            pid,
            pid_file: spec.pid_file,
            started,
            exited: false,
        };
        let command = std::iter::once(spec.binary.display().to_string())
            .chain(spec.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let record = PidRecord {
            service: spec.kind.name().to_owned(),
            pid,
            start_time: proc::pid_stat(pid)
                .map(|s| s.start_time)
                .unwrap_or_default(),
            command: mask(&command, &spec.secrets),
            voltd_pid: std::process::id(),
            voltd_start_time: proc::pid_stat(std::process::id() as i32)
                .map(|s| s.start_time)
                .unwrap_or_default(),
        };
        // Without a pid file a crashed voltd could not clean up after
        // itself; dropping `managed` kills the server again.
        write_json_atomic(&managed.pid_file, &record, SECRET_FILE_MODE).map_err(|e| {
            format!(
                "cannot write the pid file {}: {e}",
                managed.pid_file.display()
            )
        })?;
        Ok(managed)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    fn ended(&mut self) {
        self.exited = true;
        kill_stragglers(self.pid);
        remove_pid_file(&self.pid_file);
    }

    /// Waits for the server to exit and says how it ended. Cancel-safe:
    /// dropping the future leaves the process running and watched.
    pub async fn wait(&mut self) -> String {
        let outcome = self.child.wait().await;
        self.ended();
        match outcome {
            Ok(status) => describe_exit(status),
            Err(e) => format!("ended (cannot read its exit status: {e})"),
        }
    }

    /// SIGTERM to the group, SIGKILL after `timeout`; returns how it ended.
    pub async fn stop(mut self, timeout: Duration) -> String {
        if self.exited {
            return "already ended".to_owned();
        }
        signal_group(self.pid, Signal::SIGTERM);
        let outcome = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    timeout_ms = timeout.as_millis() as u64,
                    "Service did not stop in time; killing it."
                );
                signal_group(self.pid, Signal::SIGKILL);
                self.child.wait().await
            }
        };
        self.ended();
        match outcome {
            Ok(status) => describe_exit(status),
            Err(e) => format!("ended (cannot read its exit status: {e})"),
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        if !self.exited {
            // Not stopped through `stop`: the actor was aborted or panicked.
            // tokio reaps the zombie in the background.
            signal_group(self.pid, Signal::SIGKILL);
            remove_pid_file(&self.pid_file);
        }
    }
}

/// Copies one output stream of a server to the log stream, line by line.
fn pump<R>(
    reader: R,
    service: ServiceKind,
    stream: OutputStream,
    bus: EventBus,
    secrets: Vec<String>,
) where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            match (&mut reader)
                .take(MAX_OUTPUT_LINE as u64)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        continue;
                    }
                    bus.emit(Event::ServiceOutput {
                        service,
                        stream,
                        line: mask(line, &secrets),
                    });
                }
            }
        }
    });
}

/// Makes the child receive SIGTERM when voltd dies, even by SIGKILL, so a
/// server never outlives the daemon that supervises it. (Linux delivers it
/// when the spawning thread ends; voltd spawns from its actix thread, which
/// lives as long as the process.)
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: `pre_exec` runs the closure in the forked child before exec,
    // where only async-signal-safe operations are allowed. The closure makes
    // two plain system calls through nix (prctl(PR_SET_PDEATHSIG) and
    // getppid), which neither allocate nor take locks, and turns an errno
    // into an `io::Error`, which does not allocate either.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // The parent may have died between fork and prctl: then no
            // signal will ever come, so do not start at all.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask(
                "--secret-key s3cr3t --user u",
                &["s3cr3t".into(), String::new()]
            ),
            "--secret-key *** --user u"
        );
    }

    async fn spawn_sleep(dir: &Path, bus: &EventBus) -> ManagedChild {
        ManagedChild::spawn(
            SpawnSpec {
                kind: ServiceKind::Redis,
                binary: Path::new("/bin/sh"),
                args: &["-c".into(), "echo started hunter2; exec sleep 600".into()],
                env: &[],
                cwd: dir,
                pid_file: dir.join("test.pid"),
                secrets: vec!["hunter2".into()],
            },
            bus,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn spawn_records_a_pid_file_captures_output_and_stop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::default();
        let child = spawn_sleep(dir.path(), &bus).await;
        let pid = child.pid();
        let record = read_pid_file(&dir.path().join("test.pid")).unwrap();
        assert_eq!(record.pid, pid);
        assert_eq!(record.start_time, proc::pid_stat(pid).unwrap().start_time);
        assert!(!record.command.contains("hunter2"), "{}", record.command);
        assert_eq!(proc::pid_stat(pid).unwrap().pgrp, pid, "own process group");
        for _ in 0..200 {
            if !bus.recent(10).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lines: Vec<String> = bus
            .recent(10)
            .iter()
            .filter_map(|r| match &r.event {
                Event::ServiceOutput { line, stream, .. } => Some(format!("{stream}: {line}")),
                _ => None,
            })
            .collect();
        assert_eq!(lines, ["stdout: started ***"]);
        let how = child.stop(Duration::from_secs(5)).await;
        assert_eq!(how, "killed by SIGTERM");
        assert!(!proc::is_alive(pid));
        assert!(!dir.path().join("test.pid").exists());
    }

    #[tokio::test]
    async fn a_leftover_with_a_matching_start_time_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::default();
        let child = spawn_sleep(dir.path(), &bus).await;
        let pid = child.pid();
        // Simulate a crashed voltd: the record stays, the handle is gone
        // without killing (forget skips Drop).
        std::mem::forget(child);
        let stopped = replace_leftover(&dir.path().join("test.pid"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(stopped, Some(pid));
        assert!(!proc::is_alive(pid));
        assert!(!dir.path().join("test.pid").exists());
    }

    #[tokio::test]
    async fn a_server_of_another_live_voltd_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::default();
        let child = spawn_sleep(dir.path(), &bus).await;
        let path = dir.path().join("test.pid");
        assert_eq!(owned_by_other_voltd(&path), None, "ours");
        // Pretend our parent (alive: it runs this test) started it.
        let parent = nix::unistd::getppid().as_raw();
        let mut record = read_pid_file(&path).unwrap();
        record.voltd_pid = parent as u32;
        record.voltd_start_time = proc::pid_stat(parent).unwrap().start_time;
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(owned_by_other_voltd(&path), Some(parent as u32));
        record.voltd_start_time += 1;
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(owned_by_other_voltd(&path), None, "a recycled voltd pid");
        child.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_recycled_pid_is_never_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::default();
        let child = spawn_sleep(dir.path(), &bus).await;
        let pid = child.pid();
        let path = dir.path().join("test.pid");
        let mut record = read_pid_file(&path).unwrap();
        record.start_time += 1;
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(
            replace_leftover(&path, Duration::from_secs(1))
                .await
                .unwrap(),
            None
        );
        assert!(proc::is_alive(pid), "another process's pid is left alone");
        assert!(!path.exists(), "the stale record is dropped");
        child.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::default();
        let child = spawn_sleep(dir.path(), &bus).await;
        let pid = child.pid();
        drop(child);
        assert!(wait_group_gone(pid, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_busy_port_is_reported_clearly() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let err = wait_port_free(ip, port, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!("port {port} on 127.0.0.1 is in use by another process")
        );
        drop(l);
        wait_port_free(ip, port, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by SIGKILL");
    }
}
