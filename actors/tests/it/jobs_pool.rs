//! Worker pools and the job commands against a real redis-server:
//! retries, retention, deadlines, live concurrency, cancellation of a
//! running process, records, availability, snapshots.

use super::jobs_kit::{Redis, eventually};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use voltd_actors::jobs::commands;
use voltd_actors::jobs::events::JobStatusEvent;
use voltd_actors::jobs::pool::{JobEvent, NO_WORKER};
use voltd_actors::jobs::status::{JobStatus, StatusStore};
use voltd_actors::jobs::{
    Executor, JobContext, JobError, JobInput, JobQueues, PoolSettings, Pools, QueueName,
};

fn fast(concurrency: usize) -> PoolSettings {
    PoolSettings {
        concurrency,
        lock_duration: Duration::from_secs(5),
        stalled_interval: Duration::from_secs(5),
        max_stalled_count: 1,
    }
}

/// Fails (retryably) until the `pass_on`-th attempt; `Fatal` payloads fail for good.
struct Flaky {
    pass_on: u32,
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl Executor for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if ctx.job.payload.get("fatal").is_some() {
            return Err(JobError::Fatal("bad payload".into()));
        }
        if ctx.job.attempt < self.pass_on {
            return Err(JobError::Retryable(format!(
                "attempt {} failed",
                ctx.job.attempt
            )));
        }
        Ok(json!({"attempt": ctx.job.attempt}))
    }
}

/// Runs `sleep 60` as a child process (its pid in `<dir>/<jobId>.pid`):
/// only cancellation ends it.
struct Sleeper(std::path::PathBuf);

#[async_trait]
impl Executor for Sleeper {
    fn name(&self) -> &'static str {
        "sleeper"
    }
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(format!(
            "echo $$ > {}/{}.pid; exec sleep 60",
            self.0.display(),
            ctx.job.id
        ));
        let status = ctx.run_process(cmd).await?;
        Ok(json!({"status": status.code()}))
    }
}

async fn pid_of(dir: &std::path::Path, job: &str) -> i32 {
    let path = dir.join(format!("{job}.pid"));
    eventually(&format!("{job} to start"), || {
        let path = path.clone();
        async move { std::fs::read_to_string(&path).ok()?.trim().parse().ok() }
    })
    .await
}

/// Ignores cancellation and never ends.
struct Stubborn;

#[async_trait]
impl Executor for Stubborn {
    fn name(&self) -> &'static str {
        "stubborn"
    }
    fn deadline(&self, _: &JobInput) -> Duration {
        Duration::from_millis(300)
    }
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        std::future::pending().await
    }
}

struct Noop;

#[async_trait]
impl Executor for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    async fn run(&self, _ctx: JobContext) -> Result<Value, JobError> {
        Ok(Value::Null)
    }
}

async fn state(q: &JobQueues, queue: QueueName, id: &str) -> String {
    q.state(queue, id).await.unwrap()
}

async fn wait_state(q: &JobQueues, queue: QueueName, id: &str, want: &str) {
    eventually(&format!("{id} to be {want}"), || {
        let q = q.clone();
        let id = id.to_owned();
        let want = want.to_owned();
        async move { (q.state(queue, &id).await.ok()? == want).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn attempts_retry_retryable_failures_but_not_fatal_ones() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let (tx, mut events) = mpsc::unbounded_channel();
    let pools = Pools::new(queues.clone(), Some(tx));
    pools
        .start(
            QueueName::TrajectoryGlbConversion,
            Arc::new(Flaky {
                pass_on: 3,
                runs: runs.clone(),
            }),
            fast(1),
        )
        .await
        .unwrap();
    let p = json!({"jobId": "glb-1", "attempts": 3, "teamId": "t", "trajectoryId": "tr"});
    commands::dispatch(
        &queues,
        &json!({"queueName": "trajectory_glb_conversion", "payload": p}),
    )
    .await
    .unwrap();
    wait_state(
        &queues,
        QueueName::TrajectoryGlbConversion,
        "glb-1",
        "completed",
    )
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let rec = StatusStore::new(queues.connection().clone())
        .get("glb-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, JobStatus::Completed);
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.team_id.as_deref(), Some("t"));
    assert!(rec.finished_at.is_some());

    commands::dispatch(
        &queues,
        &json!({"queueName": "trajectory_glb_conversion", "payload": {"jobId": "glb-2", "attempts": 5, "fatal": true, "teamId": "t", "trajectoryId": "tr"}}),
    )
    .await
    .unwrap();
    wait_state(
        &queues,
        QueueName::TrajectoryGlbConversion,
        "glb-2",
        "failed",
    )
    .await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "a fatal failure is not retried"
    );
    let rec = StatusStore::new(queues.connection().clone())
        .get("glb-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(rec.error.as_deref(), Some("bad payload"));
    let avail = pools.availability().await.unwrap();
    let glb = avail
        .iter()
        .find(|a| a.queue == QueueName::TrajectoryGlbConversion)
        .unwrap();
    assert_eq!(
        (glb.worker.as_str(), glb.busy, glb.failed_last_hour),
        ("flaky", 0, 1)
    );

    // The wire events: running ×3 for glb-1 then completed; glb-2 failed.
    let mut wire = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let JobEvent::Wire(w) = ev {
            wire.push((
                w.fields()["jobId"].as_str().unwrap().to_owned(),
                w.fields()["status"].as_str().unwrap().to_owned(),
            ));
            assert!(matches!(w, JobStatusEvent::Glb(_)));
        }
    }
    assert_eq!(
        wire.iter()
            .filter(|(id, s)| id == "glb-1" && s == "running")
            .count(),
        3
    );
    assert!(wire.contains(&("glb-1".into(), "completed".into())));
    assert!(
        !wire.contains(&("glb-1".into(), "failed".into())),
        "no failed event while retries remain"
    );
    assert!(wire.contains(&("glb-2".into(), "failed".into())));
    pools.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_last_thousand_finished_jobs_are_kept() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(QueueName::PluginWarmup, Arc::new(Noop), fast(8))
        .await
        .unwrap();
    for i in 0..1010 {
        commands::dispatch(
            &queues,
            &json!({"queueName": "plugin_warmup", "payload": {"jobId": format!("keep-{i}")}}),
        )
        .await
        .unwrap();
    }
    wait_state(&queues, QueueName::PluginWarmup, "keep-1009", "completed").await;
    let counts = eventually("all jobs to finish", || {
        let q = queues.clone();
        async move {
            let c = q.counts(QueueName::PluginWarmup).await.ok()?;
            (c.waiting == 0 && c.active == 0).then_some(c)
        }
    })
    .await;
    assert_eq!(counts.completed, 1000);
    assert!(queues.find("keep-1009").await.unwrap().is_some());
    assert!(
        queues.find("keep-0").await.unwrap().is_none(),
        "the oldest was trimmed"
    );
    pools.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_even_if_its_executor_ignores_cancellation() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(QueueName::PluginWarmup, Arc::new(Stubborn), fast(1))
        .await
        .unwrap();
    commands::dispatch(
        &queues,
        &json!({"queueName": "plugin_warmup", "payload": {"jobId": "late-1"}}),
    )
    .await
    .unwrap();
    wait_state(&queues, QueueName::PluginWarmup, "late-1", "failed").await;
    let rec = StatusStore::new(queues.connection().clone())
        .get("late-1")
        .await
        .unwrap()
        .unwrap();
    assert!(
        rec.error.unwrap().contains("deadline"),
        "error names the deadline"
    );
    assert_eq!(pools.get(QueueName::PluginWarmup).unwrap().busy(), 0);
    pools.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn concurrency_changes_live_and_remove_running_kills_the_process() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(
            QueueName::SshImport,
            Arc::new(Sleeper(dir.path().to_owned())),
            fast(1),
        )
        .await
        .unwrap();
    for i in 0..3 {
        commands::dispatch(
            &queues,
            &json!({"queueName": "ssh_import", "payload": {"jobId": format!("sleep-{i}"), "teamId": "team-a"}}),
        )
        .await
        .unwrap();
    }
    let first = pid_of(dir.path(), "sleep-0").await;
    let pool = pools.get(QueueName::SshImport).unwrap();
    assert_eq!(pool.busy(), 1);
    assert_eq!(
        queues.counts(QueueName::SshImport).await.unwrap().waiting,
        2
    );

    let r = commands::apply_concurrency(
        &pools,
        &json!({"queueConcurrency": {"sshImport": 3, "analysis": 2}, "queueScopeLimits": {"x": 1}}),
    );
    assert_eq!(r["accepted"], true);
    assert_eq!(
        r["queueConcurrency"],
        json!({"sshImport": 3, "analysis": 2})
    );
    assert_eq!(r["queueScopeLimits"], json!({"x": 1}));
    let all = vec![
        first,
        pid_of(dir.path(), "sleep-1").await,
        pid_of(dir.path(), "sleep-2").await,
    ];
    assert_eq!(pool.concurrency(), 3);
    eventually("three busy", || async { (pool.busy() == 3).then_some(()) }).await;

    let avail = pools.availability().await.unwrap();
    let ssh = avail
        .iter()
        .find(|a| a.queue == QueueName::SshImport)
        .unwrap();
    assert_eq!(
        (ssh.worker.as_str(), ssh.concurrency, ssh.busy, ssh.waiting),
        ("sleeper", 3, 3, 0)
    );
    let analysis = avail
        .iter()
        .find(|a| a.queue == QueueName::AnalysisProcessing)
        .unwrap();
    assert_eq!(analysis.worker, NO_WORKER);

    let bad = commands::apply_concurrency(&pools, &json!({"queueConcurrency": {"sshImport": 0}}));
    assert_eq!(bad["accepted"], false);
    assert_eq!(pool.concurrency(), 3);

    // Cancel one running job: its process is stopped within 2 s.
    let started = Instant::now();
    let r = commands::remove_running(&queues, &pools, &json!({"jobIds": ["sleep-1", "nope-1"]}))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        r,
        json!({"results": [{"jobId": "sleep-1", "outcome": "cancelled"}, {"jobId": "nope-1", "outcome": "not-found"}]})
    );
    assert!(
        queues.find("sleep-1").await.unwrap().is_none(),
        "removed from its queue"
    );
    let rec = StatusStore::new(queues.connection().clone())
        .get("sleep-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, JobStatus::Failed);
    assert_eq!(pool.busy(), 2);
    // Exactly one of the three sleeps is gone.
    let alive = all
        .iter()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .count();
    assert_eq!(alive, 2);
    pools.close(Duration::from_secs(2)).await;
    for pid in all {
        eventually(
            &format!("sleep {pid} to end with the pool"),
            || async move {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                (stat.is_empty() || stat.contains(") Z ")).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn queues_without_an_executor_keep_jobs_waiting_and_say_so() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let pools = Pools::new(queues.clone(), None);
    commands::dispatch(
        &queues,
        &json!({"queueName": "analysis_processing", "payload": {"analysisId": "a"}}),
    )
    .await
    .unwrap();
    let err = commands::dispatch(&queues, &json!({"queueName": "not_a_queue", "payload": {}}))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400);
    let avail = pools.availability().await.unwrap();
    assert_eq!(avail.len(), 7);
    let a = avail
        .iter()
        .find(|a| a.queue == QueueName::AnalysisProcessing)
        .unwrap();
    assert_eq!(
        (a.worker.as_str(), a.concurrency, a.busy, a.waiting),
        (NO_WORKER, 0, 0, 1)
    );
    assert_eq!(serde_json::to_value(a).unwrap()["failedLastHour"], 0);

    let snap = commands::queues_snapshot(&queues).await.unwrap();
    assert_eq!(snap["accepted"], true);
    assert!(snap["capturedAt"].as_str().unwrap().ends_with('Z'));
    let names: Vec<&str> = snap["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7);
    let analysis = snap["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "analysis_processing")
        .unwrap();
    assert_eq!(analysis["counts"]["waiting"], 1);
    assert_eq!(analysis["counts"]["active"], 0);
}

#[tokio::test]
async fn list_retry_and_clear_history_work_on_a_teams_jobs() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let pools = Pools::new(queues.clone(), None);
    // Passes from the second attempt on: the first run fails for good
    // (attempts 1), a jobs.retry makes it pass.
    pools
        .start(
            QueueName::TrajectoryRasterization,
            Arc::new(Flaky {
                pass_on: 2,
                runs: runs.clone(),
            }),
            fast(1),
        )
        .await
        .unwrap();
    for id in ["r-1", "r-2"] {
        commands::dispatch(
            &queues,
            &json!({"queueName": "trajectory_rasterization", "payload": {"jobId": id, "teamId": "team-b", "trajectoryId": "tr"}}),
        )
        .await
        .unwrap();
    }
    wait_state(&queues, QueueName::TrajectoryRasterization, "r-2", "failed").await;
    wait_state(&queues, QueueName::TrajectoryRasterization, "r-1", "failed").await;

    let list = commands::list(&queues, &json!({"teamId": "team-b"}))
        .await
        .unwrap();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert!(data.iter().all(|r| r["status"] == "failed"
        && r["createdAt"].is_string()
        && r["updatedAt"].is_string()));
    assert_eq!(
        commands::list(&queues, &json!({"teamId": "other"}))
            .await
            .unwrap(),
        json!({"data": []})
    );

    let r = commands::retry(&queues, &json!({"jobIds": ["r-1", "ghost-1"]}))
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({"results": [{"jobId": "r-1", "outcome": "retried"}, {"jobId": "ghost-1", "outcome": "not-found"}]})
    );
    wait_state(
        &queues,
        QueueName::TrajectoryRasterization,
        "r-1",
        "completed",
    )
    .await;
    let again = commands::retry(&queues, &json!({"jobIds": ["r-1"]}))
        .await
        .unwrap();
    assert_eq!(
        again["results"][0]["outcome"], "retried",
        "a completed job can be run again too"
    );
    wait_state(
        &queues,
        QueueName::TrajectoryRasterization,
        "r-1",
        "completed",
    )
    .await;

    let r = commands::clear_history(&queues, &json!({"teamId": "team-b", "jobIds": []}))
        .await
        .unwrap();
    let mut outcomes: Vec<(String, String)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["jobId"].as_str().unwrap().to_owned(),
                x["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("r-1".into(), "cleared".into()),
            ("r-2".into(), "cleared".into())
        ]
    );
    assert_eq!(
        commands::list(&queues, &json!({"teamId": "team-b"}))
            .await
            .unwrap(),
        json!({"data": []})
    );
    assert!(queues.find("r-1").await.unwrap().is_none());
    assert_eq!(
        state(&queues, QueueName::TrajectoryRasterization, "r-2").await,
        "unknown"
    );

    let bad = commands::retry(&queues, &json!({"jobIds": "r-1"}))
        .await
        .unwrap_err();
    assert_eq!(bad.status, 400);
    pools.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn closing_the_pools_puts_running_jobs_back_to_waiting_without_using_an_attempt() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(
            QueueName::SshImport,
            Arc::new(Sleeper(dir.path().to_path_buf())),
            fast(1),
        )
        .await
        .unwrap();
    commands::dispatch(
        &queues,
        &json!({"queueName": "ssh_import", "payload": {"jobId": "back-1", "teamId": "t"}}),
    )
    .await
    .unwrap();
    let pid = pid_of(dir.path(), "back-1").await;
    // voltd stops: the job is neither failed nor left locked in `active`.
    pools.close(Duration::from_secs(5)).await;
    assert_eq!(
        state(&queues, QueueName::SshImport, "back-1").await,
        "waiting"
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the job's process ended"
    );
    let status = StatusStore::new(queues.connection().clone());
    let rec = status.get("back-1").await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Queued);
    // voltd is back: the job runs again and completes; the interrupted
    // run did not count as an attempt (attempts: 1 allows one).
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(QueueName::SshImport, Arc::new(Noop), fast(1))
        .await
        .unwrap();
    wait_state(&queues, QueueName::SshImport, "back-1", "completed").await;
    let (_, job) = queues.find("back-1").await.unwrap().unwrap();
    assert_eq!(job.attempts_made(), 1);
    assert_eq!(
        status.get("back-1").await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    pools.close(Duration::from_secs(5)).await;
}
