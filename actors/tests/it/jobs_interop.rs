//! BullMQ interop: the npm `bullmq` package (6.7.0) and voltd read and run
//! each other's jobs on a real redis-server.

use super::jobs_kit::{Redis, eventually, node, run_node};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use voltd_actors::jobs::commands;
use voltd_actors::jobs::{
    Executor, JobContext, JobError, JobQueues, PoolSettings, Pools, QueueName,
};

/// Runs jobs by handing their input to the test.
struct Recorder(mpsc::UnboundedSender<(String, Value, u32)>);

#[async_trait]
impl Executor for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        ctx.log("recorded");
        let _ = self
            .0
            .send((ctx.job.id.clone(), ctx.job.payload.clone(), ctx.job.attempt));
        Ok(json!({"ran": ctx.job.id}))
    }
}

fn fast() -> PoolSettings {
    PoolSettings {
        concurrency: 1,
        lock_duration: Duration::from_secs(2),
        stalled_interval: Duration::from_millis(500),
        max_stalled_count: 1,
    }
}

const PRELUDE: &str = r#"
const { Queue, Worker, Job } = require('bullmq');
const [port, ...rest] = process.argv.slice(1);
const connection = { host: '127.0.0.1', port: Number(port) };
"#;

#[tokio::test]
async fn a_bullmq_producer_job_runs_in_a_voltd_pool() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(QueueName::PluginWarmup, Arc::new(Recorder(tx)), fast())
        .await
        .unwrap();

    let script = format!(
        "{PRELUDE}
        (async () => {{
          const q = new Queue('plugin_warmup', {{ connection }});
          await q.add('warm', {{ pluginId: 'p1', teamId: 't1', n: [1, 2] }}, {{ jobId: 'from-node-1' }});
          await q.close();
        }})().catch(e => {{ console.error(e); process.exit(1); }});"
    );
    run_node(&script, &[&redis.port.to_string()]).await;

    let (id, payload, attempt) = tokio::time::timeout(super::jobs_kit::WITHIN, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "from-node-1");
    assert_eq!(
        payload,
        json!({"pluginId": "p1", "teamId": "t1", "n": [1, 2]})
    );
    assert_eq!(attempt, 1);

    // Node sees it completed with voltd's return value and log.
    let check = format!(
        "{PRELUDE}
        (async () => {{
          const q = new Queue('plugin_warmup', {{ connection }});
          for (;;) {{
            const j = await Job.fromId(q, 'from-node-1');
            const state = await j.getState();
            if (state === 'completed') {{
              const logs = await q.getJobLogs('from-node-1');
              console.log(JSON.stringify({{ state, rv: j.returnvalue, logs: logs.logs }}));
              break;
            }}
            await new Promise(r => setTimeout(r, 50));
          }}
          await q.close();
        }})().catch(e => {{ console.error(e); process.exit(1); }});"
    );
    let out: Value =
        serde_json::from_str(run_node(&check, &[&redis.port.to_string()]).await.trim()).unwrap();
    assert_eq!(out["rv"], json!({"ran": "from-node-1"}));
    assert_eq!(out["logs"], json!(["recorded"]));
    pools.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_voltd_dispatch_is_seen_and_consumed_by_bullmq() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let r = commands::dispatch(
        &queues,
        &json!({"queueName": "trajectory_rasterization",
                "payload": {"jobId": "raster-7", "teamId": "t", "trajectoryId": "tr", "timestep": 3}}),
    )
    .await
    .unwrap();
    assert_eq!(r, json!({"queued": true}));

    let script = format!(
        "{PRELUDE}
        (async () => {{
          const q = new Queue('trajectory_rasterization', {{ connection }});
          const counts = await q.getJobCounts();
          const j = await q.getJob('raster-7');
          const seen = {{ counts, data: j.data, attempts: j.opts.attempts,
                          roc: j.opts.removeOnComplete, rof: j.opts.removeOnFail }};
          let done;
          const finished = new Promise(r => done = r);
          const w = new Worker('trajectory_rasterization', async job => {{
            done(job.id); return {{ by: 'node', timestep: job.data.timestep }};
          }}, {{ connection }});
          await finished;
          for (;;) {{
            if ((await j.getState()) === 'completed' || (await q.getJob('raster-7')).finishedOn) break;
            await new Promise(r => setTimeout(r, 50));
          }}
          await w.close(); await q.close();
          console.log(JSON.stringify(seen));
        }})().catch(e => {{ console.error(e); process.exit(1); }});"
    );
    let seen: Value =
        serde_json::from_str(run_node(&script, &[&redis.port.to_string()]).await.trim()).unwrap();
    assert_eq!(seen["counts"]["waiting"], 1);
    assert_eq!(
        seen["data"],
        json!({"jobId": "raster-7", "teamId": "t", "trajectoryId": "tr", "timestep": 3})
    );
    assert_eq!(seen["attempts"], 1);
    // Retention of the last 1000 finished jobs, as the reference dispatches.
    let keep = |v: &Value| v.as_u64().or_else(|| v["count"].as_u64());
    assert_eq!(keep(&seen["roc"]), Some(1000));
    assert_eq!(keep(&seen["rof"]), Some(1000));

    let counts = queues
        .counts(QueueName::TrajectoryRasterization)
        .await
        .unwrap();
    assert_eq!(counts.completed, 1);
    assert_eq!(counts.waiting, 0);
    let (_, job) = queues.find("raster-7").await.unwrap().unwrap();
    let rv: Value = serde_json::from_str(job.returnvalue()).unwrap();
    assert_eq!(rv, json!({"by": "node", "timestep": 3}));
}

#[tokio::test]
async fn a_job_whose_bullmq_worker_was_killed_is_recovered_as_stalled_and_run_again() {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    commands::dispatch(
        &queues,
        &json!({"queueName": "plugin_warmup", "payload": {"jobId": "stall-1"}}),
    )
    .await
    .unwrap();

    // A node worker takes the job and hangs; then it is killed -9.
    let script = format!(
        "{PRELUDE}
        new Worker('plugin_warmup', async job => {{
          console.log('started ' + job.id);
          await new Promise(() => {{}});
        }}, {{ connection, lockDuration: 2000, skipStalledCheck: true }});"
    );
    let mut child = node()
        .arg("-e")
        .arg(script)
        .arg("--")
        .arg(redis.port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(super::jobs_kit::WITHIN, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(line, "started stall-1");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_eq!(
        queues
            .state(QueueName::PluginWarmup, "stall-1")
            .await
            .unwrap(),
        "active"
    );

    // voltd's pool finds the stalled job (lock expired), moves it back to
    // waiting and runs it.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(QueueName::PluginWarmup, Arc::new(Recorder(tx)), fast())
        .await
        .unwrap();
    let (id, _, attempt) = tokio::time::timeout(super::jobs_kit::WITHIN, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "stall-1");
    assert_eq!(attempt, 2, "the second start of the job");
    eventually("the recovered job to complete", || {
        let q = queues.clone();
        async move {
            (q.state(QueueName::PluginWarmup, "stall-1").await.ok()? == "completed").then_some(())
        }
    })
    .await;
    pools.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn queued_jobs_survive_a_redis_restart() {
    let mut redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    for i in 0..3 {
        commands::dispatch(
            &queues,
            &json!({"queueName": "ssh_import", "payload": {"jobId": format!("durable-{i}")}}),
        )
        .await
        .unwrap();
    }
    redis.restart().await;
    // The same handles reconnect on their own.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pools = Pools::new(queues.clone(), None);
    let started = eventually("the pool to start after the restart", || {
        let q = queues.clone();
        async move { q.counts(QueueName::SshImport).await.ok() }
    })
    .await;
    assert_eq!(started.waiting, 3);
    pools
        .start(QueueName::SshImport, Arc::new(Recorder(tx)), fast())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            tokio::time::timeout(super::jobs_kit::WITHIN, rx.recv())
                .await
                .unwrap()
                .unwrap()
                .0,
        );
    }
    ids.sort();
    assert_eq!(ids, ["durable-0", "durable-1", "durable-2"]);
    pools.close(Duration::from_secs(5)).await;
}
