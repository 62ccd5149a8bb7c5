//! Worker pools: one per queue that has an executor, each a BullMQ worker
//! (`bullmq::Worker`: fetch with `moveToActive`, lock renewal, stalled-job
//! recovery, retries, `moveToFinished` with retention) around an
//! [`Executor`], plus what voltd adds on top:
//!
//! * a deadline per attempt ([`Executor::deadline`]) and cancellation
//!   ([`WorkerPool::cancel`]) that stops the executor's process;
//! * captured logs (BullMQ's job log, visible to `Queue.getJobLogs`) and
//!   progress (BullMQ's `job.progress`);
//! * job records at `jobs:status:<jobId>` and the team set
//!   ([`super::status`]), and typed [`JobEvent`]s for the supervisor log
//!   stream and the server ([`JobStatusEvent`]);
//! * worker availability per queue ([`Pools::availability`]).
//!
//! Concurrency is live: [`WorkerPool::set_concurrency`] changes how many
//! jobs the worker fetches at once without restarting it.

use super::events::JobStatusEvent;
use super::executor::{Executor, JobContext, JobError, JobInput, MAX_LOG_LINES, Report};
use super::names::{ConcurrencyKey, QueueName};
use super::queue::{JobQueues, QueueError};
use super::status::{JobRecord, JobStatus, StatusStore, cap_error, now_iso};
use bullmq::types::JobProgress;
use bullmq::worker::WorkerEvent;
use bullmq::{Job, Worker, WorkerOptions};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long an executor may take to return after its job was cancelled
/// before the pool drops its future (which kills any process it runs):
/// `jobs.remove-running` promises a stop within 2 s.
pub const CANCEL_GRACE: Duration = Duration::from_millis(1500);

/// Window of "failed in the last hour" in worker availability.
pub const FAILED_WINDOW: Duration = Duration::from_secs(3600);

/// Most concurrent jobs one queue may run (the server sets concurrency).
pub const MAX_CONCURRENCY: usize = 64;

/// Worker settings of one pool. Defaults are BullMQ's (lock 30 s renewed
/// every 15 s, stalled check every 30 s, a job may stall once before it
/// fails), which the reference's workers use too.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub concurrency: usize,
    pub lock_duration: Duration,
    pub stalled_interval: Duration,
    pub max_stalled_count: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            concurrency: 1,
            lock_duration: Duration::from_secs(30),
            stalled_interval: Duration::from_secs(30),
            max_stalled_count: 1,
        }
    }
}

/// What happens to jobs, for the supervisor log stream and the server.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Started {
        queue: QueueName,
        job_id: String,
        attempt: u32,
    },
    Progress {
        queue: QueueName,
        job_id: String,
        progress: Value,
    },
    Finished {
        queue: QueueName,
        job_id: String,
        /// `Completed`, `Failed`, or `Queued` when a retry follows.
        status: JobStatus,
        error: Option<String>,
    },
    /// A wire event for the server (§5.2).
    Wire(JobStatusEvent),
}

/// Where a pool sends its [`JobEvent`]s (dropped if nobody listens).
pub type JobEvents = Option<mpsc::UnboundedSender<JobEvent>>;

fn emit(events: &JobEvents, ev: JobEvent) {
    if let Some(tx) = events {
        let _ = tx.send(ev);
    }
}

struct Running {
    token: CancellationToken,
}

struct Inner {
    queue: QueueName,
    executor: Arc<dyn Executor>,
    status: StatusStore,
    events: JobEvents,
    running: Mutex<HashMap<String, Running>>,
    /// Set by [`WorkerPool::interrupt`] (voltd is stopping): a job that
    /// stops now goes back to waiting instead of failing, and runs again
    /// after the restart.
    interrupting: AtomicBool,
}

/// What an interrupted job's record and [`JobEvent::Finished`] say.
pub const INTERRUPTED: &str = "interrupted: voltd is stopping; the job runs again when it is back";

/// One queue's worker pool.
pub struct WorkerPool {
    inner: Arc<Inner>,
    worker: Arc<Worker>,
    finished: broadcast::Sender<String>,
    pump: tokio::task::JoinHandle<()>,
}

impl WorkerPool {
    /// Starts a BullMQ worker on `queue` that runs `executor`.
    pub async fn start(
        queues: &JobQueues,
        queue: QueueName,
        executor: Arc<dyn Executor>,
        settings: PoolSettings,
        events: JobEvents,
    ) -> Result<WorkerPool, QueueError> {
        let inner = Arc::new(Inner {
            queue,
            executor,
            status: StatusStore::new(queues.connection().clone()),
            events,
            running: Mutex::new(HashMap::new()),
            interrupting: AtomicBool::new(false),
        });
        let for_worker = inner.clone();
        let processor = move |job: Job, _token: bullmq::worker::CancellationToken| {
            let inner = for_worker.clone();
            async move { inner.process(job).await }
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let opts = WorkerOptions {
            connection: queues.target().options(),
            prefix: super::queue::PREFIX.into(),
            name: Some(format!("voltd:{}", inner.executor.name())),
            concurrency: settings.concurrency.clamp(1, MAX_CONCURRENCY),
            lock_duration: ms(settings.lock_duration),
            stalled_interval: ms(settings.stalled_interval),
            max_stalled_count: settings.max_stalled_count,
            // Short blocking waits so close() returns promptly.
            drain_delay: 1,
            ..WorkerOptions::default()
        };
        let worker = Arc::new(Worker::with_options(queue.as_str(), processor, opts).await?);
        let (finished, _) = broadcast::channel(256);
        let pump = {
            let worker = worker.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                // Drain the worker's event channel (unbounded: it must be
                // read) and tell cancel() waiters when a job has left
                // `active`.
                while let Some(ev) = worker.next_event().await {
                    match ev {
                        WorkerEvent::Completed { job_id, .. }
                        | WorkerEvent::Failed { job_id, .. } => {
                            let _ = finished.send(job_id);
                        }
                        WorkerEvent::Stalled { job_id } => {
                            warn!(%queue, %job_id, "Stalled job moved back to waiting.");
                        }
                        WorkerEvent::Error(e) => warn!(%queue, error = %e, "Worker error."),
                        WorkerEvent::Closed => break,
                        _ => {}
                    }
                }
            })
        };
        info!(%queue, executor = inner.executor.name(), concurrency = settings.concurrency, "Worker pool started.");
        Ok(WorkerPool {
            inner,
            worker,
            finished,
            pump,
        })
    }

    pub fn queue(&self) -> QueueName {
        self.inner.queue
    }

    pub fn executor_name(&self) -> &'static str {
        self.inner.executor.name()
    }

    pub fn concurrency(&self) -> usize {
        self.worker.concurrency()
    }

    /// Changes the concurrency live (clamped to 1..=[`MAX_CONCURRENCY`]).
    /// Running jobs are not interrupted when it shrinks.
    pub fn set_concurrency(&self, n: usize) {
        self.worker.set_concurrency(n.clamp(1, MAX_CONCURRENCY));
    }

    /// Jobs this pool is running now.
    pub fn busy(&self) -> usize {
        self.inner.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_running(&self, job_id: &str) -> bool {
        self.inner
            .running
            .lock()
            .map(|r| r.contains_key(job_id))
            .unwrap_or(false)
    }

    /// Cancels a job this pool is running and waits (up to `within`) until
    /// BullMQ has moved it out of `active`. `false` if this pool is not
    /// running it.
    pub async fn cancel(&self, job_id: &str, within: Duration) -> bool {
        let mut finished = self.finished.subscribe();
        let token = match self.inner.running.lock() {
            Ok(r) => match r.get(job_id) {
                Some(run) => run.token.clone(),
                None => return false,
            },
            Err(_) => return false,
        };
        token.cancel();
        let _ = tokio::time::timeout(within, async {
            loop {
                match finished.recv().await {
                    Ok(id) if id == job_id => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
        .await;
        true
    }

    /// Stops taking new jobs (`true`) or takes them again (`false`); running
    /// jobs go on. For a cluster whose role has no compute (or is draining).
    pub fn set_paused(&self, paused: bool) {
        if paused {
            self.worker.pause();
        } else {
            self.worker.resume();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.worker.is_paused()
    }

    /// Stops every running job so that it goes back to waiting (it is not
    /// failed and uses no attempt): for a daemon that stops and will run
    /// the job again when it is back.
    pub fn interrupt(&self) {
        self.inner.interrupting.store(true, Ordering::SeqCst);
        if let Ok(r) = self.inner.running.lock() {
            for run in r.values() {
                run.token.cancel();
            }
        }
    }

    /// Stops fetching, [interrupts](Self::interrupt) running jobs (back to
    /// waiting) and closes, within about `timeout`.
    pub async fn close(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.interrupt();
        if let Err(e) = self.worker.close(ms).await {
            warn!(queue = %self.inner.queue, error = %e, "Closing the worker failed.");
        }
        self.pump.abort();
    }
}

impl Inner {
    async fn process(self: Arc<Self>, mut job: Job) -> Result<Value, bullmq::Error> {
        let queue = self.queue;
        let job_id = job.id().to_owned();
        let payload = job.data().clone();
        if self.interrupting.load(Ordering::SeqCst) {
            // Fetched while the pool was closing: straight back to waiting.
            return Err(bullmq::Error::RateLimited { delay_ms: 0 });
        }
        let input = JobInput {
            id: job_id.clone(),
            queue,
            name: job.name().to_owned(),
            payload: payload.clone(),
            attempt: job.attempts_started().max(1),
            max_attempts: job.opts().attempts.unwrap_or(1).max(1),
        };
        let token = CancellationToken::new();
        if let Ok(mut r) = self.running.lock() {
            r.insert(
                job_id.clone(),
                Running {
                    token: token.clone(),
                },
            );
        }
        let attempt = input.attempt;
        let max_attempts = input.max_attempts;
        self.record(&job_id, &payload, |r| {
            r.status = JobStatus::Running;
            r.attempts = attempt;
            r.started_at = Some(now_iso());
            r.finished_at = None;
            r.error = None;
        })
        .await;
        debug!(%queue, %job_id, attempt, "Job started.");
        emit(
            &self.events,
            JobEvent::Started {
                queue,
                job_id: job_id.clone(),
                attempt,
            },
        );
        self.wire(&job_id, &payload, JobStatus::Running, None);

        let deadline = self.executor.deadline(&input);
        let (ctx, mut reports) = JobContext::new(input, token.clone());
        let executor = self.executor.clone();
        // Boxed (async_trait), so dropping it below really ends it.
        let mut run = executor.run(ctx);
        let deadline_at = Instant::now() + deadline;
        let mut expired = false;
        let mut grace_at: Option<Instant> = None;
        let mut logged = 0usize;
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                Some(report) = reports.recv() => {
                    self.report(&mut job, report, &mut logged).await;
                }
                () = tokio::time::sleep_until(deadline_at), if !expired => {
                    expired = true;
                    token.cancel();
                }
                () = token.cancelled(), if grace_at.is_none() => {
                    grace_at = Some(Instant::now() + CANCEL_GRACE);
                }
                () = async { if let Some(at) = grace_at { tokio::time::sleep_until(at).await } }, if grace_at.is_some() => {
                    warn!(%queue, %job_id, "Executor ignored cancellation; dropping it.");
                    break Err(JobError::Cancelled);
                }
            }
        };
        // Drop the executor's future (and with it any process guard)
        // before the bookkeeping, then take what it reported last.
        drop(run);
        while let Ok(report) = reports.try_recv() {
            self.report(&mut job, report, &mut logged).await;
        }
        if logged > MAX_LOG_LINES {
            let _ = job
                .log(&format!(
                    "… {} more log lines not kept",
                    logged - MAX_LOG_LINES
                ))
                .await;
        }
        if logged > 0
            && let Err(e) = job.clear_logs(Some(super::queue::KEEP_LOG_LINES)).await
        {
            warn!(%queue, %job_id, error = %e, "Could not trim the job log.");
        }
        if let Ok(mut r) = self.running.lock() {
            r.remove(&job_id);
        }
        if result.is_err() && self.interrupting.load(Ordering::SeqCst) {
            // BullMQ moves a job whose processor answers "rate limited"
            // from active back to waiting (moveJobFromActiveToWait) without
            // counting an attempt.
            self.finish(&job_id, &payload, JobStatus::Queued, Some(INTERRUPTED))
                .await;
            return Err(bullmq::Error::RateLimited { delay_ms: 0 });
        }
        let result = match result {
            Err(JobError::Cancelled) if expired => Err(JobError::DeadlineExceeded(deadline)),
            other => other,
        };
        match result {
            Ok(value) => {
                self.finish(&job_id, &payload, JobStatus::Completed, None)
                    .await;
                Ok(value)
            }
            Err(e) => {
                let text = e.to_string();
                let will_retry = e.retryable() && attempt < max_attempts;
                let status = if will_retry {
                    JobStatus::Queued
                } else {
                    JobStatus::Failed
                };
                self.finish(&job_id, &payload, status, Some(&text)).await;
                if e.retryable() {
                    Err(bullmq::Error::ProcessingError(text))
                } else {
                    Err(bullmq::Error::Unrecoverable(text))
                }
            }
        }
    }

    async fn report(&self, job: &mut Job, report: Report, logged: &mut usize) {
        match report {
            Report::Log(line) => {
                *logged += 1;
                if *logged <= MAX_LOG_LINES
                    && let Err(e) = job.log(&line).await
                {
                    warn!(queue = %self.queue, job_id = job.id(), error = %e, "Could not store a job log line.");
                }
            }
            Report::Progress(value) => {
                let progress = match value.as_f64() {
                    Some(n) => JobProgress::Number(n),
                    None => JobProgress::Object(value.clone()),
                };
                if let Err(e) = job.update_progress(progress).await {
                    warn!(queue = %self.queue, job_id = job.id(), error = %e, "Could not store job progress.");
                }
                let payload = job.data().clone();
                let v = value.clone();
                self.record(job.id(), &payload, move |r| r.progress = Some(v))
                    .await;
                emit(
                    &self.events,
                    JobEvent::Progress {
                        queue: self.queue,
                        job_id: job.id().to_owned(),
                        progress: value,
                    },
                );
            }
        }
    }

    async fn finish(&self, job_id: &str, payload: &Value, status: JobStatus, error: Option<&str>) {
        let err = error.map(cap_error);
        let e2 = err.clone();
        self.record(job_id, payload, move |r| {
            r.status = status;
            r.error = e2;
            if status.is_finished() {
                r.finished_at = Some(now_iso());
            }
        })
        .await;
        match &err {
            Some(e) => {
                debug!(queue = %self.queue, %job_id, ?status, error = %e, "Job did not succeed.")
            }
            None => debug!(queue = %self.queue, %job_id, "Job completed."),
        }
        emit(
            &self.events,
            JobEvent::Finished {
                queue: self.queue,
                job_id: job_id.to_owned(),
                status,
                error: err.clone(),
            },
        );
        if status.is_finished() {
            self.wire(job_id, payload, status, err.as_deref());
        }
    }

    fn wire(&self, job_id: &str, payload: &Value, status: JobStatus, error: Option<&str>) {
        for ev in JobStatusEvent::for_job(self.queue, job_id, payload, status, error) {
            emit(&self.events, JobEvent::Wire(ev));
        }
    }

    async fn record(&self, job_id: &str, payload: &Value, change: impl FnOnce(&mut JobRecord)) {
        let queue = self.queue;
        let fallback = || JobRecord::new(job_id, queue.as_str(), payload, JobStatus::Queued);
        if let Err(e) = self.status.update(job_id, fallback, change).await {
            warn!(%queue, %job_id, error = %e, "Could not write the job record.");
        }
    }
}

/// Worker availability of one queue (`voltd status`, `runtime.status`,
/// the supervisor log stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub queue: QueueName,
    /// The executor's name, or `"no worker"` when the queue has none on
    /// this cluster (its jobs wait).
    pub worker: String,
    pub concurrency: usize,
    pub busy: usize,
    /// Jobs waiting to start (waiting + prioritized + delayed + paused).
    pub waiting: u64,
    pub failed_last_hour: u64,
    /// The worker takes no new jobs (the cluster's role has no compute,
    /// or it is draining).
    pub paused: bool,
}

/// The text availability uses for a queue without an executor.
pub const NO_WORKER: &str = "no worker";

/// The pools of one daemon, by queue. Shared (`&self` everywhere): a
/// pool can be added while commands use the others.
pub struct Pools {
    queues: JobQueues,
    pools: RwLock<BTreeMap<QueueName, Arc<WorkerPool>>>,
    events: JobEvents,
}

impl Pools {
    pub fn new(queues: JobQueues, events: JobEvents) -> Self {
        Pools {
            queues,
            pools: RwLock::new(BTreeMap::new()),
            events,
        }
    }

    pub fn queues(&self) -> &JobQueues {
        &self.queues
    }

    fn all(&self) -> Vec<Arc<WorkerPool>> {
        self.pools
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts the pool of `queue` (replacing none: a second executor for a
    /// queue is refused).
    pub async fn start(
        &self,
        queue: QueueName,
        executor: Arc<dyn Executor>,
        settings: PoolSettings,
    ) -> Result<(), QueueError> {
        let taken = || QueueError::Invalid(format!("{queue} already has a worker pool"));
        if self.get(queue).is_some() {
            return Err(taken());
        }
        let pool =
            WorkerPool::start(&self.queues, queue, executor, settings, self.events.clone()).await?;
        let refused = match self.pools.write() {
            Ok(mut map) if !map.contains_key(&queue) => {
                map.insert(queue, Arc::new(pool));
                return Ok(());
            }
            _ => pool,
        };
        refused.close(Duration::from_secs(1)).await;
        Err(taken())
    }

    pub fn get(&self, queue: QueueName) -> Option<Arc<WorkerPool>> {
        self.pools.read().ok()?.get(&queue).cloned()
    }

    /// Applies a server concurrency for `key`'s queue; `false` if that
    /// queue has no pool here (the value is then only reported back).
    pub fn apply_concurrency(&self, key: ConcurrencyKey, n: usize) -> bool {
        match self.get(key.queue()) {
            Some(p) => {
                p.set_concurrency(n);
                true
            }
            None => false,
        }
    }

    /// Pauses or resumes every pool (see [`WorkerPool::set_paused`]).
    pub fn set_paused(&self, paused: bool) {
        for p in self.all() {
            p.set_paused(paused);
        }
    }

    /// The pool running `job_id`, if any here.
    pub fn running(&self, job_id: &str) -> Option<Arc<WorkerPool>> {
        self.all().into_iter().find(|p| p.is_running(job_id))
    }

    /// Availability of all seven queues.
    pub async fn availability(&self) -> Result<Vec<Availability>, QueueError> {
        let mut out = Vec::new();
        for q in QueueName::ALL {
            let counts = self.queues.counts(q).await?;
            let failed_last_hour = self
                .queues
                .failed_since(
                    q,
                    u64::try_from(FAILED_WINDOW.as_millis()).unwrap_or(u64::MAX),
                )
                .await?;
            let waiting = counts.waiting + counts.prioritized + counts.delayed + counts.paused;
            out.push(match self.get(q) {
                Some(p) => Availability {
                    queue: q,
                    worker: p.executor_name().to_owned(),
                    concurrency: p.concurrency(),
                    busy: p.busy(),
                    waiting,
                    failed_last_hour,
                    paused: p.is_paused(),
                },
                None => Availability {
                    queue: q,
                    worker: NO_WORKER.to_owned(),
                    concurrency: 0,
                    busy: 0,
                    waiting,
                    failed_last_hour,
                    paused: false,
                },
            });
        }
        Ok(out)
    }

    /// Closes every pool; their running jobs go back to waiting (see
    /// [`WorkerPool::close`]).
    pub async fn shutdown(&self, timeout: Duration) {
        let pools = self.all();
        // Interrupt all first so every pool's jobs stop together.
        for p in &pools {
            p.interrupt();
        }
        for p in pools {
            p.close(timeout).await;
        }
    }

    /// [`Self::shutdown`], consuming the pools.
    pub async fn close(self, timeout: Duration) {
        self.shutdown(timeout).await;
    }
}
