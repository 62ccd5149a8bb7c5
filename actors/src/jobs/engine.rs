//! The job engine: the queues and the worker pools, on threads of their
//! own.
//!
//! Why not on the actor thread: every actor of the daemon shares one
//! thread (actix), the one that answers the server's commands and sends
//! heartbeats. Jobs are heavy: an SSH import decrypts every byte it moves
//! and hashes it again for each S3 part's signature, and executors run
//! processes. On the actor thread an import would delay heartbeats. The
//! engine owns a tokio runtime of [`ENGINE_THREADS`] `voltd-jobs` threads;
//! the jobs actor drives it through [`Engine`], whose methods only send on
//! a channel and await the answer, so they cost the actor thread nothing.
//!
//! Stopping ([`Engine::shutdown`]) closes every pool — running jobs go
//! back to waiting, they are not failed — then drops the runtime, which
//! ends whatever is left (an executor's child processes are killed when
//! their guard drops).

use super::commands::{self, CommandError};
use super::events::JobStatusEvent;
use super::executor::Executor;
use super::names::{ConcurrencyKey, QueueName};
use super::pool::{Availability, JobEvent, PoolSettings, Pools};
use super::queue::{JobQueues, QueueError, RedisTarget};
use super::status::JobStatus;
use crate::api::jobs::{JobsCommand, JobsFailure};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Threads of the engine's runtime: two keep an import's encryption and
/// its uploads' hashing apart without taking a small host's every core.
pub const ENGINE_THREADS: usize = 2;

/// Time the runtime's remaining tasks get once the pools are closed.
const RUNTIME_STOP: Duration = Duration::from_secs(2);

/// Builds an executor once the queues are connected: executors may need
/// the jobs' Redis connection (the SSH import keeps its resume ledger
/// there).
pub type ExecutorFactory = Box<dyn FnOnce(&JobQueues) -> Arc<dyn Executor> + Send>;

/// What the engine starts with.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub redis: RedisTarget,
    /// Lock and stalled-check timing of every pool (its `concurrency` is
    /// replaced by the queue's entry in `concurrency`).
    pub pool: PoolSettings,
    /// Concurrency of each queue's pool when it starts (1 when absent).
    pub concurrency: BTreeMap<QueueName, usize>,
    /// Pools start paused (the cluster's role has no compute).
    pub paused: bool,
}

enum Call {
    Command {
        command: JobsCommand,
        payload: Value,
        reply: oneshot::Sender<Result<Value, JobsFailure>>,
    },
    Availability(oneshot::Sender<Result<Vec<Availability>, JobsFailure>>),
    Start {
        queue: QueueName,
        factory: ExecutorFactory,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Concurrency(Vec<(ConcurrencyKey, usize)>),
    Paused(bool),
}

struct Stop {
    timeout: Duration,
    done: oneshot::Sender<()>,
}

/// A running engine (see the module docs). Dropping it without
/// [`Engine::shutdown`] stops it too, without waiting.
pub struct Engine {
    calls: mpsc::UnboundedSender<Call>,
    stop: Option<oneshot::Sender<Stop>>,
}

fn gone() -> JobsFailure {
    JobsFailure::unavailable("the job engine stopped")
}

fn failure(e: CommandError) -> JobsFailure {
    JobsFailure {
        status: e.status,
        message: e.message,
    }
}

impl Engine {
    /// Starts the engine's thread, connects to Redis and opens the seven
    /// queues; resolves once it can take calls (or with why it cannot).
    /// `events` receives what happens to jobs.
    pub fn start(
        settings: EngineSettings,
        events: mpsc::UnboundedSender<JobEvent>,
    ) -> impl Future<Output = Result<Engine, String>> + 'static {
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let (ready, ready_rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("voltd-jobs".into())
            .spawn(move || run_thread(settings, events, calls_rx, stop_rx, ready));
        async move {
            spawned.map_err(|e| format!("cannot start the job engine's thread: {e}"))?;
            ready_rx
                .await
                .map_err(|_| "the job engine's thread ended while starting".to_owned())??;
            Ok(Engine {
                calls,
                stop: Some(stop),
            })
        }
    }

    /// Runs one job command.
    pub fn command(
        &self,
        command: JobsCommand,
        payload: Value,
    ) -> impl Future<Output = Result<Value, JobsFailure>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .calls
            .send(Call::Command {
                command,
                payload,
                reply,
            })
            .is_ok();
        async move {
            if !sent {
                return Err(gone());
            }
            rx.await.unwrap_or_else(|_| Err(gone()))
        }
    }

    /// Worker availability of the seven queues.
    pub fn availability(
        &self,
    ) -> impl Future<Output = Result<Vec<Availability>, JobsFailure>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self.calls.send(Call::Availability(reply)).is_ok();
        async move {
            if !sent {
                return Err(gone());
            }
            rx.await.unwrap_or_else(|_| Err(gone()))
        }
    }

    /// Starts the pool of `queue` with the executor `factory` builds.
    pub fn start_pool(
        &self,
        queue: QueueName,
        factory: ExecutorFactory,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .calls
            .send(Call::Start {
                queue,
                factory,
                reply,
            })
            .is_ok();
        async move {
            if !sent {
                return Err(gone().message);
            }
            rx.await.unwrap_or_else(|_| Err(gone().message))
        }
    }

    /// Applies concurrency live (and to pools started later).
    pub fn apply_concurrency(&self, values: Vec<(ConcurrencyKey, usize)>) {
        let _ = self.calls.send(Call::Concurrency(values));
    }

    /// Pauses or resumes every pool (and pools started later).
    pub fn set_paused(&self, paused: bool) {
        let _ = self.calls.send(Call::Paused(paused));
    }

    /// Closes the pools (running jobs go back to waiting) within about
    /// `timeout`, then stops the engine's runtime; resolves when its
    /// thread is done with them.
    pub fn shutdown(mut self, timeout: Duration) -> impl Future<Output = ()> + 'static {
        let (done, done_rx) = oneshot::channel();
        let sent = self
            .stop
            .take()
            .map(|s| s.send(Stop { timeout, done }).is_ok())
            .unwrap_or(false);
        async move {
            if sent {
                let _ = done_rx.await;
            }
        }
    }
}

fn run_thread(
    settings: EngineSettings,
    events: mpsc::UnboundedSender<JobEvent>,
    calls: mpsc::UnboundedReceiver<Call>,
    stop: oneshot::Receiver<Stop>,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ENGINE_THREADS)
        .thread_name("voltd-jobs")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot build the job engine's runtime: {e}")));
            return;
        }
    };
    let done = rt.block_on(serve(settings, events, calls, stop, ready));
    // Whatever still runs (a job that ignored its interruption) ends here.
    rt.shutdown_timeout(RUNTIME_STOP);
    if let Some(done) = done {
        let _ = done.send(());
    }
}

async fn serve(
    settings: EngineSettings,
    events: mpsc::UnboundedSender<JobEvent>,
    mut calls: mpsc::UnboundedReceiver<Call>,
    mut stop: oneshot::Receiver<Stop>,
    ready: oneshot::Sender<Result<(), String>>,
) -> Option<oneshot::Sender<()>> {
    let queues = match JobQueues::connect(settings.redis.clone()).await {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot open the job queues: {e}")));
            return None;
        }
    };
    let pools = Arc::new(Pools::new(queues.clone(), Some(events.clone())));
    let mut concurrency = settings.concurrency.clone();
    let mut paused = settings.paused;
    if ready.send(Ok(())).is_err() {
        // Nobody waits for this engine any more.
        pools.shutdown(RUNTIME_STOP).await;
        return None;
    }
    loop {
        let call = tokio::select! {
            call = calls.recv() => call,
            stop = &mut stop => {
                let (timeout, done) = match stop {
                    Ok(Stop { timeout, done }) => (timeout, Some(done)),
                    Err(_) => (RUNTIME_STOP, None),
                };
                pools.shutdown(timeout).await;
                return done;
            }
        };
        let Some(call) = call else {
            // The engine handle was dropped without a shutdown.
            pools.shutdown(RUNTIME_STOP).await;
            return None;
        };
        match call {
            Call::Command {
                command: JobsCommand::ApplyConcurrency,
                payload,
                reply,
            } => {
                // Here, not in a task: pools started later take it too.
                let _ = reply.send(Ok(match commands::parse_apply(&payload) {
                    Ok((values, answer)) => {
                        for (key, n) in values {
                            concurrency.insert(key.queue(), n);
                            pools.apply_concurrency(key, n);
                        }
                        answer
                    }
                    Err(refusal) => refusal,
                }));
            }
            Call::Command {
                command: JobsCommand::Dispatch,
                payload,
                reply,
            } => {
                let (q, events) = (queues.clone(), events.clone());
                tokio::spawn(async move {
                    let result = commands::dispatch_job(&q, &payload).await;
                    if let Ok((job_id, queue, body)) = &result {
                        // Only `artifact-upload-job-status` knows `queued`.
                        for ev in
                            JobStatusEvent::for_job(*queue, job_id, body, JobStatus::Queued, None)
                        {
                            let _ = events.send(JobEvent::Wire(ev));
                        }
                    }
                    let _ = reply.send(
                        result
                            .map(|_| serde_json::json!({ "queued": true }))
                            .map_err(failure),
                    );
                });
            }
            Call::Command {
                command,
                payload,
                reply,
            } => {
                let (q, p) = (queues.clone(), pools.clone());
                tokio::spawn(async move {
                    let _ = reply.send(run_command(&q, &p, command, &payload).await);
                });
            }
            Call::Availability(reply) => {
                let p = pools.clone();
                tokio::spawn(async move {
                    let r = p
                        .availability()
                        .await
                        .map_err(|e: QueueError| failure(CommandError::from(e)));
                    let _ = reply.send(r);
                });
            }
            Call::Start {
                queue,
                factory,
                reply,
            } => {
                let executor = factory(&queues);
                let pool_settings = PoolSettings {
                    concurrency: concurrency.get(&queue).copied().unwrap_or(1),
                    ..settings.pool.clone()
                };
                let p = pools.clone();
                tokio::spawn(async move {
                    let r = p.start(queue, executor, pool_settings).await;
                    if r.is_ok()
                        && paused
                        && let Some(pool) = p.get(queue)
                    {
                        pool.set_paused(true);
                    }
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                });
            }
            Call::Concurrency(values) => {
                for (key, n) in values {
                    concurrency.insert(key.queue(), n);
                    pools.apply_concurrency(key, n);
                }
            }
            Call::Paused(p) => {
                paused = p;
                pools.set_paused(p);
            }
        }
    }
}

async fn run_command(
    queues: &JobQueues,
    pools: &Pools,
    command: JobsCommand,
    payload: &Value,
) -> Result<Value, JobsFailure> {
    let result = match command {
        JobsCommand::Dispatch => commands::dispatch(queues, payload).await,
        JobsCommand::List => commands::list(queues, payload).await,
        JobsCommand::Retry => commands::retry(queues, payload).await,
        JobsCommand::RemoveRunning => commands::remove_running(queues, pools, payload).await,
        JobsCommand::ClearHistory => commands::clear_history(queues, payload).await,
        JobsCommand::QueuesSnapshot => commands::queues_snapshot(queues).await,
        JobsCommand::ApplyConcurrency => Ok(commands::apply_concurrency(pools, payload)),
    };
    result.map_err(failure)
}
