//! Job execution end to end: a real volt-plane sends the job commands to an
//! in-process voltd whose managed Redis (redis-server) and MinIO (s3s-fs)
//! hold the queues and the imports; a real sshd is the import source. The
//! plane records the job status events the daemon sends.

use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::daemon::*;
use testkit::eventually;
use testkit::plane::PersistentPlane;
use testkit::services::native_services;
use testkit::sshd::Sshd;
use testkit::standins::WITHIN;
use tokio::sync::watch;
use volt_plane::{JobEventView, PlaneError, PlaneHandle};
use voltd_actors::api::ConfigSource;
use voltd_actors::config::Settings;
use voltd_actors::daemon::DaemonHandle;
use voltd_actors::events::Event;
use voltd_actors::jobs::status::JobStatus;
use voltd_actors::jobs::{Executor, JobContext, JobError, QueueName};
use voltd_actors::services::ServiceMode;
use voltd_actors::status::GetSnapshot;

/// Redis and MinIO run natively (MongoDB is not needed by jobs).
fn queues_and_objects(s: &mut Settings) {
    let mut services = native_services();
    services.mongo.mode = ServiceMode::Disabled;
    s.services = services;
}

/// Redis only (executors registered by the test need no object store).
fn queues_only(s: &mut Settings) {
    let mut services = native_services();
    services.mongo.mode = ServiceMode::Disabled;
    services.minio.mode = ServiceMode::Disabled;
    s.services = services;
}

/// Deterministic bytes (a xorshift stream) so corruption cannot hide.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn import_payload(sshd: &Sshd, job_id: &str, trajectory: &str, remote: &Path) -> Value {
    json!({
        "jobId": job_id, "teamId": "team-1", "trajectoryId": trajectory,
        "trajectoryName": "Run 1", "host": "127.0.0.1", "port": sshd.port,
        "username": sshd.user, "privateKey": sshd.client_key,
        "remotePath": remote.display().to_string(),
    })
}

/// A job command through the plane's command API: `data.data`, or the
/// daemon's failure.
async fn request(plane: &PlaneHandle, id: &str, command: &str, payload: Value) -> Value {
    match plane
        .request(id, command, payload, Some(Duration::from_secs(30)))
        .await
    {
        Ok((_, data)) => data,
        Err(e) => panic!("{command}: {e}"),
    }
}

/// The job events the plane recorded for `job_id`, as `(type, status)`.
fn events_of(plane: &PlaneHandle, id: &str, job_id: &str) -> Vec<JobEventView> {
    plane
        .job_events(id)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.fields.get("jobId").and_then(Value::as_str) == Some(job_id))
        .collect()
}

fn statuses(events: &[JobEventView]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.fields["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Waits until the plane has an event of `job_id` with `status`.
async fn wait_job_event(plane: &PlaneHandle, id: &str, job_id: &str, status: &str) -> JobEventView {
    eventually(
        WITHIN,
        format!("{job_id} {status} on the plane"),
        async || {
            events_of(plane, id, job_id)
                .into_iter()
                .find(|e| e.fields["status"] == status)
        },
    )
    .await
}

/// The daemon's worker availability of `queue` (from `runtime.status`'s
/// snapshot), once the job queues are open.
async fn availability(daemon: &DaemonHandle, queue: &str) -> Option<Value> {
    let snap = daemon.wiring.snapshots.send(GetSnapshot).await.ok()?;
    let snap = serde_json::to_value(snap).ok()?;
    snap["jobs"]["queues"]
        .as_array()?
        .iter()
        .find(|q| q["queue"] == queue)
        .cloned()
}

async fn wait_worker(daemon: &DaemonHandle, queue: &str, worker: &str) {
    eventually(WITHIN, format!("{queue} served by {worker}"), async || {
        availability(daemon, queue)
            .await
            .filter(|a| a["worker"] == worker)
    })
    .await;
}

/// Holds every job until released; counts the running ones.
#[derive(Clone)]
struct Gate {
    running: Arc<AtomicUsize>,
    release: watch::Receiver<bool>,
}

impl Gate {
    fn new() -> (Gate, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (
            Gate {
                running: Arc::new(AtomicUsize::new(0)),
                release: rx,
            },
            tx,
        )
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Executor for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        self.running.fetch_add(1, Ordering::SeqCst);
        let mut release = self.release.clone();
        let result = tokio::select! {
            r = release.wait_for(|open| *open) => match r {
                Ok(_) => Ok(json!({"released": true})),
                Err(_) => Err(JobError::Retryable("gate dropped".into())),
            },
            () = ctx.cancel.cancelled() => Err(JobError::Cancelled),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

fn raster_job(job_id: &str) -> Value {
    json!({"queueName": "trajectory_rasterization",
           "payload": {"jobId": job_id, "teamId": "team-1", "trajectoryId": "traj-r", "timestep": 7}})
}

#[actix_rt::test]
async fn a_dispatched_ssh_import_runs_and_the_plane_sees_its_status_events() {
    let f = Fixture::start_with(queues_and_objects).await;
    let sshd = Sshd::start().await;
    let root = sshd.data_dir().join("run");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let files = ["a.dump", "b.dump", "sub/c.dump"];
    for (i, rel) in files.iter().enumerate() {
        std::fs::write(root.join(rel), bytes(i as u64, 50_000 + i * 1000)).unwrap();
    }
    wait_worker(&f.daemon, "ssh_import", "ssh-import").await;
    // Queues voltd has no executor for accept jobs and say so.
    let analysis = availability(&f.daemon, "analysis_processing")
        .await
        .unwrap();
    assert_eq!(analysis["worker"], "no worker");

    let queued = request(
        &f.plane,
        &f.id,
        "queue.dispatch",
        json!({"queueName": "ssh_import", "payload": import_payload(&sshd, "imp-1", "traj-1", &root)}),
    )
    .await;
    assert_eq!(queued, json!({"queued": true}));

    let done = wait_job_event(&f.plane, &f.id, "imp-1", "completed").await;
    assert_eq!(done.kind, "ssh-import-job-status");
    assert_eq!(
        done.fields,
        json!({"teamClusterId": f.id, "jobId": "imp-1", "teamId": "team-1",
               "trajectoryId": "traj-1", "trajectoryName": "Run 1", "status": "completed"})
        .as_object()
        .unwrap()
        .clone(),
        "the reference's fields (the password is not kept by the plane)"
    );
    assert_eq!(
        statuses(&events_of(&f.plane, &f.id, "imp-1")),
        ["running", "completed"]
    );
    // The objects, byte for byte, under volt-dumps/<teamId>/<trajectoryId>/.
    let dumps = f
        .state
        .path()
        .join("services/minio/volt-dumps/team-1/traj-1");
    for rel in files {
        assert_eq!(
            std::fs::read(dumps.join(rel)).unwrap(),
            std::fs::read(root.join(rel)).unwrap(),
            "{rel}"
        );
    }
    // No knownHosts in the payload: the host key was trusted on first use
    // and recorded in the state directory.
    let tofu = std::fs::read_to_string(f.state.path().join("ssh_known_hosts.json")).unwrap();
    assert!(
        tofu.contains(&format!("[127.0.0.1]:{}", sshd.port)) && tofu.contains(&sshd.host_key),
        "{tofu}"
    );

    let list = request(&f.plane, &f.id, "jobs.list", json!({"teamId": "team-1"})).await;
    let rec = &list["data"][0];
    assert_eq!(
        (rec["jobId"].as_str(), rec["status"].as_str()),
        (Some("imp-1"), Some("completed"))
    );
    let snap = request(&f.plane, &f.id, "runtime.queues.snapshot", json!({})).await;
    assert_eq!(snap["accepted"], true);
    let ssh = snap["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "ssh_import")
        .unwrap();
    assert_eq!(ssh["counts"]["completed"], 1);
    // `runtime.status` carries the worker availability.
    let status = request(&f.plane, &f.id, "runtime.status", json!({})).await;
    let queues = status["jobs"]["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 7);
    assert!(
        queues
            .iter()
            .any(|q| q["queue"] == "ssh_import" && q["worker"] == "ssh-import")
    );
    // The supervisor log stream saw the job.
    wait_event(&f.daemon, WITHIN, "job-finished", |e| {
        matches!(e, Event::JobFinished { job_id, status: JobStatus::Completed, .. } if job_id == "imp-1")
    })
    .await;
    assert_eq!(
        count_events(
            &f.daemon,
            |e| matches!(e, Event::JobStarted { job_id, .. } if job_id == "imp-1")
        ),
        1
    );
    f.stop().await;
}

#[actix_rt::test]
async fn jobs_remove_running_stops_a_running_import_within_two_seconds() {
    let f = Fixture::start_with(queues_and_objects).await;
    let sshd = Sshd::start().await;
    let root = sshd.data_dir().join("big");
    std::fs::create_dir_all(&root).unwrap();
    // 2 GiB sparse: minutes to import, nothing to create.
    std::fs::File::create(root.join("huge.dump"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    wait_worker(&f.daemon, "ssh_import", "ssh-import").await;
    request(
        &f.plane,
        &f.id,
        "queue.dispatch",
        json!({"queueName": "ssh_import", "payload": import_payload(&sshd, "imp-big", "traj-big", &root)}),
    )
    .await;
    wait_job_event(&f.plane, &f.id, "imp-big", "running").await;
    // Bytes are flowing (the record's progress).
    eventually(WITHIN, "import progress", async || {
        let list = f
            .plane
            .request(&f.id, "jobs.list", json!({"teamId": "team-1"}), None)
            .await
            .ok()?
            .1;
        (list["data"][0]["progress"]["bytesDone"].as_u64()? > 0).then_some(())
    })
    .await;

    let started = Instant::now();
    let r = request(
        &f.plane,
        &f.id,
        "jobs.remove-running",
        json!({"jobIds": ["imp-big"]}),
    )
    .await;
    let took = started.elapsed();
    // "cancelled" means the executor stopped and the job left `active`
    // (a job still locked by a running executor is "refused").
    assert_eq!(
        r,
        json!({"results": [{"jobId": "imp-big", "outcome": "cancelled"}]})
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let failed = wait_job_event(&f.plane, &f.id, "imp-big", "failed").await;
    assert_eq!(failed.fields["error"], "cancelled");
    let snap = request(&f.plane, &f.id, "runtime.queues.snapshot", json!({})).await;
    let ssh = snap["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "ssh_import")
        .unwrap()
        .clone();
    assert_eq!(ssh["counts"]["active"], 0);
    let busy = availability(&f.daemon, "ssh_import").await.unwrap();
    eventually(WITHIN, "no busy ssh worker", async || {
        availability(&f.daemon, "ssh_import")
            .await
            .filter(|a| a["busy"] == 0)
    })
    .await;
    drop(busy);
    f.stop().await;
}

#[actix_rt::test]
async fn queue_concurrency_comes_from_the_server_and_changes_live() {
    // The server says one rasterizer; voltd's own config says four.
    let mut config = volt_plane::runtime_config();
    config["queueConcurrency"]["rasterizer"] = json!(1);
    let plane = testkit::plane::start(volt_plane::PlaneConfig {
        runtime_config: Some(config),
        ..plane_config()
    })
    .await;
    let (gate, release) = Gate::new();
    let f = Fixture::start_on(plane, |s| {
        queues_only(s);
        s.jobs.rasterizer_concurrency = 4;
    })
    .await;
    f.daemon
        .register_executor(QueueName::TrajectoryRasterization, Arc::new(gate.clone()));
    let configured = wait_event(&f.daemon, WITHIN, "jobs-configured", |e| {
        matches!(e, Event::JobsConfigured { .. })
    })
    .await;
    let Event::JobsConfigured {
        source,
        concurrency,
        role,
        compute,
    } = &configured.event
    else {
        unreachable!()
    };
    assert_eq!(*source, ConfigSource::Server);
    assert_eq!(concurrency["rasterizer"], 1);
    assert_eq!(role.as_deref(), Some("cluster"));
    assert!(compute);
    wait_worker(&f.daemon, "trajectory_rasterization", "gate").await;

    for i in 0..4 {
        request(
            &f.plane,
            &f.id,
            "queue.dispatch",
            raster_job(&format!("r-{i}")),
        )
        .await;
    }
    eventually(WITHIN, "one job running", async || gate.running() == 1).await;
    eventually(WITHIN, "availability: 1/1 busy, 3 waiting", async || {
        availability(&f.daemon, "trajectory_rasterization")
            .await
            .filter(|a| a["busy"] == 1 && a["concurrency"] == 1 && a["waiting"] == 3)
    })
    .await;
    assert_eq!(gate.running(), 1, "the server's concurrency holds");

    let applied = request(
        &f.plane,
        &f.id,
        "runtime.queue-concurrency.apply",
        json!({"queueConcurrency": {"rasterizer": 3}, "queueScopeLimits": {"team-1": 2}}),
    )
    .await;
    assert_eq!(
        applied,
        json!({"accepted": true, "queueConcurrency": {"rasterizer": 3}, "queueScopeLimits": {"team-1": 2}})
    );
    eventually(WITHIN, "three jobs running", async || gate.running() == 3).await;
    eventually(WITHIN, "availability: 3/3 busy", async || {
        availability(&f.daemon, "trajectory_rasterization")
            .await
            .filter(|a| a["busy"] == 3 && a["concurrency"] == 3)
    })
    .await;
    let refused = request(
        &f.plane,
        &f.id,
        "runtime.queue-concurrency.apply",
        json!({"queueConcurrency": {"rasterizer": 0}}),
    )
    .await;
    assert_eq!(refused["accepted"], false);

    release.send_replace(true);
    for i in 0..4 {
        let done = wait_job_event(&f.plane, &f.id, &format!("r-{i}"), "completed").await;
        assert_eq!(done.kind, "trajectory-raster-job-status");
        assert_eq!(done.fields["timestep"], 7);
    }
    f.stop().await;
}

#[actix_rt::test]
async fn a_server_without_runtime_config_get_leaves_the_configured_concurrency() {
    let plane = testkit::plane::start(volt_plane::PlaneConfig {
        runtime_config: None,
        ..plane_config()
    })
    .await;
    let (gate, _release) = Gate::new();
    let f = Fixture::start_on(plane, |s| {
        queues_only(s);
        s.jobs.rasterizer_concurrency = 3;
    })
    .await;
    f.daemon
        .register_executor(QueueName::TrajectoryRasterization, Arc::new(gate));
    let configured = wait_event(&f.daemon, WITHIN, "jobs-configured", |e| {
        matches!(e, Event::JobsConfigured { .. })
    })
    .await;
    assert!(matches!(
        &configured.event,
        Event::JobsConfigured { source: ConfigSource::Config, concurrency, role: None, compute: true }
            if concurrency["rasterizer"] == 3
    ));
    eventually(WITHIN, "the configured concurrency in force", async || {
        availability(&f.daemon, "trajectory_rasterization")
            .await
            .filter(|a| a["worker"] == "gate" && a["concurrency"] == 3)
    })
    .await;
    let status = request(&f.plane, &f.id, "runtime.status", json!({})).await;
    assert_eq!(status["jobs"]["source"], "config");
    f.stop().await;
}

#[actix_rt::test]
async fn job_events_sent_while_disconnected_reach_the_server_after_reconnecting() {
    let mut plane = PersistentPlane::start(plane_config()).await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    queues_only(&mut s);
    let daemon = start_daemon(s);
    let (gate, release) = Gate::new();
    daemon.register_executor(QueueName::TrajectoryRasterization, Arc::new(gate.clone()));
    wait_connected(&plane, &id).await;
    wait_worker(&daemon, "trajectory_rasterization", "gate").await;
    request(&plane, &id, "queue.dispatch", raster_job("offline-1")).await;
    wait_job_event(&plane, &id, "offline-1", "running").await;

    // The server goes away; the job finishes meanwhile.
    plane.stop().await;
    release.send_replace(true);
    wait_event(&daemon, WITHIN, "offline-1 completed", |e| {
        matches!(e, Event::JobFinished { job_id, status: JobStatus::Completed, .. } if job_id == "offline-1")
    })
    .await;
    plane.restart().await;
    let done = wait_job_event(&plane, &id, "offline-1", "completed").await;
    assert_eq!(done.kind, "trajectory-raster-job-status");
    daemon.shutdown(otp::ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn job_commands_wait_for_redis_with_a_clear_503() {
    // No managed Redis at all: the queues never open.
    let f = Fixture::start().await;
    let err = f
        .plane
        .request(
            &f.id,
            "queue.dispatch",
            json!({"queueName": "ssh_import", "payload": {}}),
            None,
        )
        .await
        .unwrap_err();
    match err {
        PlaneError::DaemonRequestFailed {
            status, message, ..
        } => {
            assert_eq!(status, 503);
            assert!(message.contains("Redis is not healthy"), "{message}");
        }
        other => panic!("expected a daemon failure, got {other:?}"),
    }
    // The concurrency is still accepted (and applied when queues open).
    let applied = request(
        &f.plane,
        &f.id,
        "runtime.queue-concurrency.apply",
        json!({"queueConcurrency": {"sshImport": 2}}),
    )
    .await;
    assert_eq!(applied["accepted"], true);
    f.stop().await;
}

#[actix_rt::test]
async fn queued_jobs_survive_a_restart_of_the_managed_redis() {
    let f = Fixture::start_with(queues_only).await;
    wait_worker(&f.daemon, "analysis_processing", "no worker").await;
    for i in 0..3 {
        request(
            &f.plane,
            &f.id,
            "queue.dispatch",
            json!({"queueName": "analysis_processing", "payload": {
                "jobId": format!("keep-{i}"), "teamId": "team-1", "analysisId": "a-1", "name": "cna"}}),
        )
        .await;
    }
    let waiting = async |f: &Fixture| -> Option<u64> {
        let (_, snap) = f
            .plane
            .request(&f.id, "runtime.queues.snapshot", json!({}), None)
            .await
            .ok()?;
        snap["queues"]
            .as_array()?
            .iter()
            .find(|q| q["name"] == "analysis_processing")?["counts"]["waiting"]
            .as_u64()
    };
    assert_eq!(waiting(&f).await, Some(3));
    let before = f.daemon.services().view("redis").unwrap().pid.unwrap();
    let restarted = request(
        &f.plane,
        &f.id,
        "runtime.services.restart",
        json!({"service": "redis"}),
    )
    .await;
    assert_eq!(restarted["accepted"], true);
    eventually(WITHIN, "a new redis-server, healthy", async || {
        f.daemon.services().view("redis").filter(|v| {
            v.pid.is_some_and(|p| p != before)
                && v.state == voltd_actors::services::ServiceState::Healthy
        })
    })
    .await;
    // BullMQ's state changes are Lua scripts, in the AOF as MULTI/EXEC:
    // all three jobs and their records came back (the queue connection
    // reconnected on its own).
    eventually(WITHIN, "three jobs waiting after the restart", async || {
        waiting(&f).await == Some(3)
    })
    .await;
    let list = request(&f.plane, &f.id, "jobs.list", json!({"teamId": "team-1"})).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    request(
        &f.plane,
        &f.id,
        "queue.dispatch",
        json!({"queueName": "analysis_processing", "payload": {"jobId": "keep-3", "teamId": "team-1"}}),
    )
    .await;
    assert_eq!(waiting(&f).await, Some(4));
    f.stop().await;
}

#[actix_rt::test]
async fn a_dispatched_artifact_upload_is_reported_queued() {
    let f = Fixture::start_with(queues_only).await;
    wait_worker(&f.daemon, "artifact_upload", "no worker").await;
    request(
        &f.plane,
        &f.id,
        "queue.dispatch",
        json!({"queueName": "artifact_upload", "payload": {
            "jobId": "up-1", "teamId": "team-1", "trajectoryId": "traj-1", "analysisId": "a-1"}}),
    )
    .await;
    let queued = wait_job_event(&f.plane, &f.id, "up-1", "queued").await;
    assert_eq!(queued.kind, "artifact-upload-job-status");
    assert_eq!(queued.fields["analysisId"], "a-1");
    // Nothing runs it here: it stays waiting, and says so.
    let upload = availability(&f.daemon, "artifact_upload").await.unwrap();
    assert_eq!(upload["worker"], "no worker");
    eventually(WITHIN, "one artifact upload waiting", async || {
        availability(&f.daemon, "artifact_upload")
            .await
            .filter(|a| a["waiting"] == 1)
    })
    .await;
    f.stop().await;
}

#[actix_rt::test]
async fn a_stopping_daemon_puts_its_running_job_back_and_runs_it_when_back() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    queues_only(&mut s);

    let first = start_daemon(s.clone());
    let (held, _never) = Gate::new();
    first.register_executor(QueueName::TrajectoryRasterization, Arc::new(held.clone()));
    wait_connected(&plane, &id).await;
    wait_worker(&first, "trajectory_rasterization", "gate").await;
    request(&plane, &id, "queue.dispatch", raster_job("back-1")).await;
    eventually(WITHIN, "the job running", async || held.running() == 1).await;
    // The server has heard it is running (the event travels after the
    // executor starts; a stop before it arrives would lose it with the link).
    wait_job_event(&plane, &id, "back-1", "running").await;
    first.shutdown(otp::ExitCode::Stopped, "test");
    assert_eq!(first.wait().await, otp::ExitCode::Stopped);
    assert_eq!(held.running(), 0, "interrupted");

    // Back (same state, same Redis data): the job runs again, to the end.
    let second = start_daemon(s);
    let (open, release) = Gate::new();
    release.send_replace(true);
    second.register_executor(QueueName::TrajectoryRasterization, Arc::new(open));
    wait_job_event(&plane, &id, "back-1", "completed").await;
    assert_eq!(
        statuses(&events_of(&plane, &id, "back-1")),
        ["running", "running", "completed"],
        "interrupted, not failed"
    );
    second.shutdown(otp::ExitCode::Stopped, "test");
    second.wait().await;
    plane.shutdown().await;
}
