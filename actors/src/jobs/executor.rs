//! The one trait a job executor implements. A new executor is one file:
//! implement [`Executor`] for a struct, hand an `Arc` of it to
//! [`super::pool::WorkerPool::start`] for its queue, done. Queues without an
//! executor keep their jobs waiting and report "no worker".
//!
//! ```ignore
//! pub struct Rasterizer { /* its settings and handles */ }
//!
//! #[async_trait::async_trait]
//! impl Executor for Rasterizer {
//!     fn name(&self) -> &'static str { "rasterizer" }
//!     async fn run(&self, ctx: JobContext) -> Result<serde_json::Value, JobError> {
//!         let mut cmd = tokio::process::Command::new("volt-rasterize");
//!         cmd.arg("--job").arg(&ctx.job.id);            // never a shell
//!         let status = ctx.run_process(cmd).await?;      // killed on cancel
//!         if status.success() { Ok(serde_json::json!({})) }
//!         else { Err(JobError::Retryable(format!("rasterizer exited with {status}"))) }
//!     }
//! }
//! ```
//!
//! Cancellation reaches an executor two ways, and both are handled by the
//! pool: in-process work watches [`JobContext::cancel`] (a
//! `CancellationToken`) and returns [`JobError::Cancelled`]; work in a child
//! process runs through [`JobContext::run_process`], which puts the child in
//! its own process group and stops the whole group (SIGTERM, then SIGKILL
//! after [`KILL_GRACE`]) when the job is cancelled, passes its deadline, or
//! the executor's future is dropped. If an executor ignores the token, the
//! pool drops its future after [`super::pool::CANCEL_GRACE`].

use super::names::QueueName;
use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

/// Deadline of a job whose executor does not say otherwise: long enough
/// for a large import or analysis, short enough that a hung job frees its
/// slot the same day.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(6 * 3600);

/// Time a cancelled child process group gets between SIGTERM and SIGKILL
/// (`jobs.remove-running` must stop a job within 2 s).
pub const KILL_GRACE: Duration = Duration::from_millis(1000);

/// Log lines kept per job attempt (the rest are counted, not stored).
pub const MAX_LOG_LINES: usize = 1_000;

/// Longest log line kept (bytes); longer lines are cut.
pub const MAX_LOG_LINE: usize = 4_096;

/// What an executor is given about its job.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub id: String,
    pub queue: QueueName,
    /// BullMQ job name.
    pub name: String,
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed in total.
    pub max_attempts: u32,
}

/// How a job ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Stopped on request (`jobs.remove-running`); never retried.
    #[error("cancelled")]
    Cancelled,
    /// Ran past its deadline; retried if attempts remain.
    #[error("deadline of {0:?} exceeded")]
    DeadlineExceeded(Duration),
    /// A failure another attempt may fix (network, remote host down).
    #[error("{0}")]
    Retryable(String),
    /// A failure no retry fixes (bad payload, host key mismatch).
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    pub fn retryable(&self) -> bool {
        matches!(self, JobError::DeadlineExceeded(_) | JobError::Retryable(_))
    }
}

/// What an executor reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Log(String),
    Progress(Value),
}

/// The running job's side of the pool: input, cancellation, logs, progress.
pub struct JobContext {
    pub job: JobInput,
    /// Cancelled when the job is removed or passes its deadline.
    pub cancel: CancellationToken,
    reports: mpsc::UnboundedSender<Report>,
}

impl JobContext {
    /// A context and the receiving end of its reports (the pool holds it;
    /// tests of a single executor may too).
    pub fn new(
        job: JobInput,
        cancel: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<Report>) {
        let (reports, rx) = mpsc::unbounded_channel();
        (
            JobContext {
                job,
                cancel,
                reports,
            },
            rx,
        )
    }

    /// Captures one log line (kept in the job's BullMQ log, bounded).
    pub fn log(&self, line: impl Into<String>) {
        let mut line = line.into();
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let _ = self.reports.send(Report::Log(line));
    }

    /// Publishes progress (any JSON; BullMQ's `job.progress`). Executors
    /// throttle their own calls.
    pub fn progress(&self, value: Value) {
        let _ = self.reports.send(Report::Progress(value));
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Runs `cmd` as a child in its own process group with stdout and
    /// stderr captured into the job log, and waits for it. Cancellation
    /// (or dropping this future) stops the whole group: SIGTERM, then
    /// SIGKILL after [`KILL_GRACE`]; the result is then
    /// [`JobError::Cancelled`].
    pub async fn run_process(&self, mut cmd: Command) -> Result<ExitStatus, JobError> {
        cmd.process_group(0)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::Fatal(format!("cannot start process: {e}")))?;
        let guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
        if let Some(out) = child.stdout.take() {
            self.pump(out);
        }
        if let Some(err) = child.stderr.take() {
            self.pump(err);
        }
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| JobError::Retryable(format!("waiting for process: {e}")))?;
                // The leader is reaped; stop any stragglers it left behind.
                guard.signal(Signal::SIGKILL);
                Ok(status)
            }
            () = self.cancel.cancelled() => {
                guard.signal(Signal::SIGTERM);
                if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
                    guard.signal(Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                guard.signal(Signal::SIGKILL);
                Err(JobError::Cancelled)
            }
        }
    }

    fn pump<R: AsyncRead + Unpin + Send + 'static>(&self, stream: R) {
        let tx = self.reports.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut line = line;
                if line.len() > MAX_LOG_LINE {
                    let mut cut = MAX_LOG_LINE;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                }
                if tx.send(Report::Log(line)).is_err() {
                    break;
                }
            }
        });
    }
}

/// Kills a child's process group when the job's future is dropped.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.0 {
            // ESRCH (group already gone) is the normal case after exit.
            let _ = killpg(Pid::from_raw(pgid), sig);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// A job executor: the code that runs one queue's jobs.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// A short name for logs and worker availability ("ssh-import").
    fn name(&self) -> &'static str;

    /// How long one attempt of `job` may run.
    fn deadline(&self, _job: &JobInput) -> Duration {
        DEFAULT_DEADLINE
    }

    /// Runs one attempt. The returned JSON becomes BullMQ's `returnvalue`.
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> JobInput {
        JobInput {
            id: "j".into(),
            queue: QueueName::PluginWarmup,
            name: "n".into(),
            payload: Value::Null,
            attempt: 1,
            max_attempts: 1,
        }
    }

    #[tokio::test]
    async fn process_output_is_captured_line_by_line() {
        let (ctx, mut rx) = JobContext::new(input(), CancellationToken::new());
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo one; echo two >&2; exit 3");
        let status = ctx.run_process(cmd).await.unwrap();
        assert_eq!(status.code(), Some(3));
        drop(ctx);
        let mut lines = Vec::new();
        while let Some(Report::Log(l)) = rx.recv().await {
            lines.push(l);
        }
        lines.sort();
        assert_eq!(lines, ["one", "two"]);
    }

    #[tokio::test]
    async fn cancellation_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let token = CancellationToken::new();
        let (ctx, _rx) = JobContext::new(input(), token.clone());
        let mut cmd = Command::new("sh");
        // A grandchild that ignores SIGTERM: only the group SIGKILL stops it.
        cmd.arg("-c").arg(format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 60' & wait",
            pidfile.display()
        ));
        let run = tokio::spawn(async move { ctx.run_process(cmd).await });
        let pid = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile)
                && let Ok(p) = s.trim().parse::<i32>()
            {
                break p;
            }
            tokio::task::yield_now().await;
        };
        let started = std::time::Instant::now();
        token.cancel();
        assert_eq!(run.await.unwrap(), Err(JobError::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(2));
        // The grandchild dies (or is a zombie awaiting init's reaping);
        // SIGKILL is delivered asynchronously, so watch for it.
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "grandchild still alive: {stat}"
            );
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn only_deadline_and_retryable_errors_retry() {
        assert!(JobError::Retryable("x".into()).retryable());
        assert!(JobError::DeadlineExceeded(Duration::from_secs(1)).retryable());
        assert!(!JobError::Cancelled.retryable());
        assert!(!JobError::Fatal("x".into()).retryable());
    }
}
