//! Job benchmarks (a bench binary, not a test): run with
//! `cargo bench -p voltd-actors --bench jobs`.
//!
//! 1. jobs/s through `queue.dispatch` → completion with a no-op executor
//!    (real redis-server, BullMQ scripts, records written per job);
//! 2. SSH import MB/s on loopback (real sshd → s3s-fs), one large file and
//!    many small ones.

#[path = "../tests/it/jobs_kit.rs"]
mod jobs_kit;

use async_trait::async_trait;
use jobs_kit::{Redis, S3, Sshd};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voltd_actors::jobs::commands;
use voltd_actors::jobs::executor::CancellationToken;
use voltd_actors::jobs::ssh_import::host_keys::TofuStore;
use voltd_actors::jobs::ssh_import::{SshImport, SshImportSettings};
use voltd_actors::jobs::{
    Executor, JobContext, JobError, JobInput, JobQueues, PoolSettings, Pools, QueueName,
};

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

async fn dispatch_throughput(jobs: usize, concurrency: usize) -> f64 {
    let redis = Redis::start().await;
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let pools = Pools::new(queues.clone(), None);
    pools
        .start(
            QueueName::PluginWarmup,
            Arc::new(Noop),
            PoolSettings {
                concurrency,
                ..PoolSettings::default()
            },
        )
        .await
        .unwrap();
    let start = Instant::now();
    for i in 0..jobs {
        commands::dispatch(&queues, &json!({"queueName": "plugin_warmup", "payload": {"jobId": format!("b-{i}"), "teamId": "t"}}))
            .await
            .unwrap();
    }
    loop {
        let c = queues.counts(QueueName::PluginWarmup).await.unwrap();
        if c.waiting == 0 && c.active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = jobs as f64 / start.elapsed().as_secs_f64();
    pools.close(Duration::from_secs(5)).await;
    rate
}

async fn import_rate(label: &str, make: impl FnOnce(&std::path::Path) -> u64) -> f64 {
    let (redis, s3, sshd) = tokio::join!(Redis::start(), S3::start(), Sshd::start());
    let queues = JobQueues::connect(redis.target()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = sshd.data_dir().join(label);
    std::fs::create_dir_all(&root).unwrap();
    let bytes = make(&root);
    let exec = SshImport::new(
        s3.bucket(),
        TofuStore::new(state.path().join("hosts.json")),
        queues.connection().clone(),
        SshImportSettings::default(),
    );
    let payload = json!({"teamId": "t", "trajectoryId": label, "host": "127.0.0.1", "port": sshd.port,
        "username": sshd.user, "privateKey": sshd.client_key, "remotePath": root.display().to_string()});
    let input = JobInput {
        id: format!("bench-{label}"),
        queue: QueueName::SshImport,
        name: "ssh_import".into(),
        payload,
        attempt: 1,
        max_attempts: 1,
    };
    let (ctx, _rx) = JobContext::new(input, CancellationToken::new());
    let start = Instant::now();
    exec.run(ctx).await.unwrap();
    bytes as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64()
}

fn fill(path: &std::path::Path, len: usize) {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let jobs = 2000;
    for concurrency in [1, 8] {
        let rate = dispatch_throughput(jobs, concurrency).await;
        println!(
            "dispatch→completion, no-op executor, {jobs} jobs, concurrency {concurrency}: {rate:.0} jobs/s"
        );
    }
    let big = import_rate("one-256MiB", |root| {
        fill(&root.join("big.dump"), 256 << 20);
        256 << 20
    })
    .await;
    println!("ssh import, 1 file of 256 MiB: {big:.1} MiB/s");
    let small = import_rate("200x1MiB", |root| {
        for i in 0..200 {
            fill(&root.join(format!("f{i}.dump")), 1 << 20);
        }
        200 << 20
    })
    .await;
    println!("ssh import, 200 files of 1 MiB: {small:.1} MiB/s");
}
