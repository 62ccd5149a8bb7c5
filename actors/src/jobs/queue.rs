//! The seven BullMQ queues on the cluster's Redis.
//!
//! # Why `bullmq-official` and not our own Lua
//! The Redis layout of a BullMQ queue *is* its Lua scripts (`addStandardJob`,
//! `moveToActive`, `moveToFinished` with `keepJobs`, `retryJob`,
//! `moveStalledJobsToWait`, `extendLock`, `getCounts`, …). Taskforce.sh, the
//! authors of BullMQ, publish a Rust port (`bullmq-official` on crates.io,
//! imported as `bullmq`) that embeds those scripts and calls them with
//! EVALSHA, exactly as the Node package does. We pin 1.4.4: its scripts are
//! byte-identical to npm `bullmq@6.7.0`'s for every script voltd runs
//! (moveToActive, moveToFinished, retryJob, removeJob, moveStalledJobsToWait,
//! extendLock(s), moveJobsToWait, addLog, updateProgress); `addStandardJob`
//! differs only in the deduplication-with-reschedule branch (unused here) and
//! `getCounts` only in an optional delayed cut-off argument (unused here).
//! The interop tests (`actors/tests/it/jobs_interop.rs`) run the npm package
//! 6.7.0 against what voltd writes and the other way round. Other crates
//! found (`bullrs` 0.0.3 "not ready", `bullmq_rust` 0.2 its own layout) do not
//! fit. The crate builds with the workspace's ring-only rustls (its redis TLS
//! features leave the crypto provider to us).
//!
//! # What voltd adds
//! Job options the reference uses for `queue.dispatch` (§4.3): job id =
//! `payload.jobId` when it is a string, `attempts` 1 unless the payload asks
//! for more (bounded), and retention of the last [`KEEP_FINISHED`] completed
//! and failed jobs per queue. Durability is Redis's: the managed Redis runs
//! with AOF on, and every state change is one Lua script, so a job is in
//! exactly one state list after any crash of voltd or Redis.

use super::names::QueueName;
use bullmq::options::{JobOptions, QueueOptions, RedisConnectionOptions};
use bullmq::redis_connection::RedisConnection;
use bullmq::types::{JobCounts, RemoveOnFinish};
use bullmq::{Job, Queue};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Completed and failed jobs kept per queue (the reference's `keep last
/// 1000`, §4.3): enough history for `jobs.list`/inspection, bounded memory.
pub const KEEP_FINISHED: usize = 1000;

/// Log lines kept per job across attempts. Not sent as BullMQ's
/// `keepLogs` option: bullmq-official 1.4.4 does not pack that option
/// into the job (checked against npm bullmq 6.7.0, which then reads no
/// `keepLogs`), so the pool trims the log itself after every attempt.
pub const KEEP_LOG_LINES: u32 = 1000;

/// Attempts when the payload does not ask (the reference dispatches with 1).
pub const DEFAULT_ATTEMPTS: u32 = 1;

/// Upper bound on `payload.attempts`: the server controls the payload, and
/// every size the server controls is capped.
pub const MAX_ATTEMPTS: u32 = 25;

/// Longest job id accepted (`payload.jobId`); BullMQ ids become Redis keys.
pub const MAX_JOB_ID_BYTES: usize = 256;

/// Largest serialised payload accepted by `queue.dispatch` (the job hash
/// lives in Redis memory; the reference's payloads are a few KiB).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// BullMQ's default key prefix, used by the reference and every tool.
pub const PREFIX: &str = "bull";

/// Where the managed Redis is. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u8,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

impl RedisTarget {
    /// A local Redis without credentials (tests, benchmarks).
    pub fn local(port: u16) -> Self {
        RedisTarget {
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            db: 0,
        }
    }

    pub(crate) fn options(&self) -> RedisConnectionOptions {
        RedisConnectionOptions {
            host: Some(self.host.clone()),
            port: Some(self.port),
            username: self.username.clone(),
            password: self.password.clone(),
            db: Some(self.db),
            ..RedisConnectionOptions::default()
        }
    }
}

/// Errors of the queue layer, with messages fit for a command reply (they
/// never contain credentials: bullmq/redis errors name commands and keys).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("unknown queue: {0}")]
    UnknownQueue(String),
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("job {0} not found")]
    NotFound(String),
    #[error("queue store: {0}")]
    Store(String),
}

impl From<bullmq::Error> for QueueError {
    fn from(e: bullmq::Error) -> Self {
        QueueError::Store(e.to_string())
    }
}

/// Per-state counts of one queue, as BullMQ's `getJobCounts` names them
/// (this is the `counts` object of `runtime.queues.snapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub active: u64,
    pub completed: u64,
    pub delayed: u64,
    pub failed: u64,
    pub paused: u64,
    pub prioritized: u64,
    pub waiting: u64,
    #[serde(rename = "waiting-children")]
    pub waiting_children: u64,
}

impl From<JobCounts> for Counts {
    fn from(c: JobCounts) -> Self {
        Counts {
            active: c.active,
            completed: c.completed,
            delayed: c.delayed,
            failed: c.failed,
            paused: c.paused,
            prioritized: c.prioritized,
            waiting: c.waiting,
            waiting_children: c.waiting_children,
        }
    }
}

/// A validated `queue.dispatch` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub queue: QueueName,
    /// `payload.jobId` when it is a string; otherwise BullMQ assigns one.
    pub job_id: Option<String>,
    pub attempts: u32,
    pub payload: serde_json::Value,
}

impl Dispatch {
    /// Validates `{queueName, payload}` as the reference does, with voltd's
    /// caps on size and attempts.
    pub fn new(queue_name: &str, payload: serde_json::Value) -> Result<Dispatch, QueueError> {
        let queue = QueueName::parse(queue_name)
            .ok_or_else(|| QueueError::UnknownQueue(queue_name.to_owned()))?;
        if !payload.is_object() {
            return Err(QueueError::Invalid("payload must be an object".into()));
        }
        let size = serde_json::to_vec(&payload)
            .map_err(|e| QueueError::Invalid(e.to_string()))?
            .len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(QueueError::Invalid(format!(
                "payload is {size} bytes; at most {MAX_PAYLOAD_BYTES}"
            )));
        }
        let job_id = match payload.get("jobId") {
            Some(serde_json::Value::String(id)) => {
                check_job_id(id)?;
                Some(id.clone())
            }
            _ => None,
        };
        let attempts = match payload.get("attempts").and_then(|a| a.as_u64()) {
            Some(n) if n >= 1 => u32::try_from(n.min(u64::from(MAX_ATTEMPTS))).unwrap_or(1),
            _ => DEFAULT_ATTEMPTS,
        };
        Ok(Dispatch {
            queue,
            job_id,
            attempts,
            payload,
        })
    }

    /// The BullMQ job options voltd enqueues with.
    pub fn options(&self) -> JobOptions {
        JobOptions {
            attempts: Some(self.attempts),
            job_id: self.job_id.clone(),
            remove_on_complete: Some(RemoveOnFinish::Count(KEEP_FINISHED)),
            remove_on_fail: Some(RemoveOnFinish::Count(KEEP_FINISHED)),
            ..JobOptions::default()
        }
    }
}

/// A job id the server sent: non-empty, bounded, and not one BullMQ
/// misreads (pure integers are reserved for its own counter; `:` would
/// break the key layout).
pub fn check_job_id(id: &str) -> Result<(), QueueError> {
    if id.is_empty() || id.len() > MAX_JOB_ID_BYTES {
        return Err(QueueError::Invalid(format!(
            "jobId must be 1..{MAX_JOB_ID_BYTES} bytes"
        )));
    }
    if id.contains(':') {
        return Err(QueueError::Invalid("jobId must not contain ':'".into()));
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueueError::Invalid(
            "jobId must not be a plain integer (BullMQ reserves those)".into(),
        ));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (BullMQ's clock unit).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Handles on the seven queues, sharing one auto-reconnecting connection.
#[derive(Clone)]
pub struct JobQueues {
    target: RedisTarget,
    conn: RedisConnection,
    queues: BTreeMap<QueueName, Queue>,
}

impl JobQueues {
    /// Connects and opens every queue (writes each queue's `meta` hash, as
    /// a Node `Queue` does).
    pub async fn connect(target: RedisTarget) -> Result<JobQueues, QueueError> {
        let conn = RedisConnection::new_managed_only(&target.options()).await?;
        let mut queues = BTreeMap::new();
        for q in QueueName::ALL {
            let opts = QueueOptions {
                connection: target.options(),
                prefix: PREFIX.into(),
                ..QueueOptions::default()
            };
            queues.insert(
                q,
                Queue::with_connection(q.as_str(), conn.clone(), opts).await?,
            );
        }
        Ok(JobQueues {
            target,
            conn,
            queues,
        })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The shared connection (status records use it too).
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    pub fn queue(&self, name: QueueName) -> &Queue {
        // Every QueueName is inserted in `connect`.
        &self.queues[&name]
    }

    /// Enqueues a job. With a `jobId` that already exists BullMQ returns
    /// the existing job instead of adding a second one, so a re-sent
    /// dispatch is harmless. Returns the job id.
    pub async fn dispatch(&self, d: &Dispatch) -> Result<String, QueueError> {
        let name = job_name(d);
        let job = self
            .queue(d.queue)
            .add(&name, d.payload.clone())
            .options(d.options())
            .await?;
        Ok(job.id().to_owned())
    }

    pub async fn counts(&self, name: QueueName) -> Result<Counts, QueueError> {
        Ok(self.queue(name).get_job_counts().await?.into())
    }

    /// Failed jobs of `name` that finished within the last `window_ms`
    /// (BullMQ scores its failed set by `finishedOn`).
    pub async fn failed_since(&self, name: QueueName, window_ms: u64) -> Result<u64, QueueError> {
        let key = self.queue(name).keys().failed();
        let min = now_ms().saturating_sub(window_ms);
        let n: u64 = self
            .conn
            .cmd(redis::cmd("ZCOUNT").arg(&key).arg(min).arg("+inf"))
            .await?;
        Ok(n)
    }

    /// Finds a job by id in any of the seven queues.
    pub async fn find(&self, job_id: &str) -> Result<Option<(QueueName, Job)>, QueueError> {
        for q in QueueName::ALL {
            if let Some(job) = self.queue(q).get_job(job_id).await? {
                return Ok(Some((q, job)));
            }
        }
        Ok(None)
    }

    /// BullMQ state of a job (`waiting`, `active`, `completed`, `failed`,
    /// `delayed`, `prioritized`, `waiting-children`, `unknown`).
    pub async fn state(&self, queue: QueueName, job_id: &str) -> Result<String, QueueError> {
        let state = self.queue(queue).get_job_state(job_id).await?;
        Ok(serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into()))
    }

    /// Moves a failed (or completed) job back to waiting, as BullMQ's
    /// `Job.retry` does (attempt counters reset).
    pub async fn retry(&self, queue: QueueName, job_id: &str) -> Result<(), QueueError> {
        let mut job = self
            .queue(queue)
            .get_job(job_id)
            .await?
            .ok_or_else(|| QueueError::NotFound(job_id.to_owned()))?;
        let state = self.state(queue, job_id).await?;
        if state != "failed" && state != "completed" {
            return Err(QueueError::Invalid(format!(
                "job {job_id} is {state}; only failed or completed jobs can be retried"
            )));
        }
        job.retry(&state, None).await?;
        Ok(())
    }

    /// Removes a job that is not locked by a worker. `Ok(false)` when it
    /// was absent or locked (BullMQ refuses to remove a locked active job).
    pub async fn remove(&self, queue: QueueName, job_id: &str) -> Result<bool, QueueError> {
        Ok(self.queue(queue).remove(job_id).await?)
    }
}

/// The BullMQ job name: the payload's `name` or `jobType` when it is a
/// short string, else the queue name (what a reader of the queue sees).
fn job_name(d: &Dispatch) -> String {
    ["name", "jobType"]
        .iter()
        .find_map(|k| d.payload.get(*k).and_then(|v| v.as_str()))
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .unwrap_or(d.queue.as_str())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dispatch_takes_the_job_id_only_when_it_is_a_string() {
        let d = Dispatch::new("ssh_import", json!({"jobId": "j-1", "teamId": "t"})).unwrap();
        assert_eq!(d.job_id.as_deref(), Some("j-1"));
        assert_eq!(d.attempts, 1);
        let d = Dispatch::new("ssh_import", json!({"jobId": 7})).unwrap();
        assert_eq!(d.job_id, None);
    }

    #[test]
    fn dispatch_refuses_unknown_queues_and_bad_payloads() {
        assert!(matches!(
            Dispatch::new("nope", json!({})),
            Err(QueueError::UnknownQueue(_))
        ));
        assert!(Dispatch::new("ssh_import", json!([1])).is_err());
        assert!(Dispatch::new("ssh_import", json!({"jobId": ""})).is_err());
        assert!(Dispatch::new("ssh_import", json!({"jobId": "a:b"})).is_err());
        assert!(Dispatch::new("ssh_import", json!({"jobId": "123"})).is_err());
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        assert!(Dispatch::new("ssh_import", json!({ "blob": big })).is_err());
    }

    #[test]
    fn attempts_are_bounded() {
        let d = Dispatch::new("plugin_warmup", json!({"attempts": 3})).unwrap();
        assert_eq!(d.attempts, 3);
        let d = Dispatch::new("plugin_warmup", json!({"attempts": 1_000_000})).unwrap();
        assert_eq!(d.attempts, MAX_ATTEMPTS);
        let d = Dispatch::new("plugin_warmup", json!({"attempts": 0})).unwrap();
        assert_eq!(d.attempts, DEFAULT_ATTEMPTS);
    }

    #[test]
    fn options_keep_the_last_thousand() {
        let d = Dispatch::new("ssh_import", json!({"jobId": "x"})).unwrap();
        let o = d.options();
        assert!(matches!(
            o.remove_on_complete,
            Some(RemoveOnFinish::Count(1000))
        ));
        assert!(matches!(
            o.remove_on_fail,
            Some(RemoveOnFinish::Count(1000))
        ));
        assert_eq!(o.job_id.as_deref(), Some("x"));
    }

    #[test]
    fn job_name_prefers_the_payload() {
        let d = Dispatch::new("ssh_import", json!({"name": "import"})).unwrap();
        assert_eq!(job_name(&d), "import");
        let d = Dispatch::new("ssh_import", json!({})).unwrap();
        assert_eq!(job_name(&d), "ssh_import");
    }

    #[test]
    fn target_debug_hides_the_password() {
        let mut t = RedisTarget::local(1);
        t.password = Some("hunter2".into());
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
