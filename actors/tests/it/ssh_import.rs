//! The `ssh_import` executor against a real OpenSSH sshd on loopback, the
//! s3s-fs S3 server and redis-server.

use super::jobs_kit::{Redis, S3, Sshd, WITHIN, eventually};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use voltd_actors::jobs::commands;
use voltd_actors::jobs::executor::{CancellationToken, Report};
use voltd_actors::jobs::ssh_import::host_keys::TofuStore;
use voltd_actors::jobs::ssh_import::{SshImport, SshImportSettings};
use voltd_actors::jobs::status::{JobStatus, StatusStore};
use voltd_actors::jobs::{
    Executor, JobContext, JobError, JobInput, JobQueues, PoolSettings, Pools, QueueName,
};

struct Rig {
    _redis: Redis,
    s3: S3,
    sshd: Sshd,
    queues: JobQueues,
    state: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let (redis, s3, sshd) = tokio::join!(Redis::start(), S3::start(), Sshd::start());
        let queues = JobQueues::connect(redis.target()).await.unwrap();
        Rig {
            _redis: redis,
            s3,
            sshd,
            queues,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn tofu_path(&self) -> std::path::PathBuf {
        self.state.path().join("ssh_known_hosts.json")
    }

    fn executor(&self) -> SshImport {
        SshImport::new(
            self.s3.bucket(),
            TofuStore::new(self.tofu_path()),
            self.queues.connection().clone(),
            SshImportSettings {
                progress_every: Duration::from_millis(100),
                ..SshImportSettings::default()
            },
        )
    }

    fn payload(&self, job_id: &str, remote: &Path) -> Value {
        json!({
            "jobId": job_id, "teamId": "team-1", "trajectoryId": format!("traj-{job_id}"),
            "trajectoryName": "Run", "host": "127.0.0.1", "port": self.sshd.port,
            "username": self.sshd.user, "privateKey": self.sshd.client_key,
            "remotePath": remote.display().to_string(),
        })
    }
}

fn input(job_id: &str, payload: Value) -> JobInput {
    JobInput {
        id: job_id.into(),
        queue: QueueName::SshImport,
        name: "ssh_import".into(),
        payload,
        attempt: 1,
        max_attempts: 1,
    }
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

/// 100 files: 90 at the top, 10 two levels down, one of 9 MiB (multipart).
fn make_tree(root: &Path) -> Vec<String> {
    let mut rels = Vec::new();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for i in 0..100u64 {
        let rel = if i < 90 {
            format!("frame-{i:03}.dump")
        } else {
            format!("sub/deeper/part {i}.bin")
        };
        let len = if i == 42 {
            9 * 1024 * 1024
        } else {
            ((i * 7919) % 60_000) as usize
        };
        std::fs::write(root.join(&rel), bytes(i, len)).unwrap();
        rels.push(rel);
    }
    rels.sort();
    rels
}

async fn run(
    exec: &SshImport,
    job_id: &str,
    payload: Value,
) -> (Result<Value, JobError>, Vec<String>) {
    let (ctx, mut rx) = JobContext::new(input(job_id, payload), CancellationToken::new());
    let r = exec.run(ctx).await;
    (r, logs(&mut rx))
}

fn logs(rx: &mut UnboundedReceiver<Report>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(rep) = rx.try_recv() {
        if let Report::Log(l) = rep {
            out.push(l);
        }
    }
    out
}

fn uploaded(logs: &[String]) -> Vec<String> {
    logs.iter()
        .filter_map(|l| l.strip_prefix("uploaded "))
        .map(|l| l.rsplit_once(" (").map(|(n, _)| n).unwrap_or(l).to_owned())
        .collect()
}

async fn assert_identical(rig: &Rig, root: &Path, prefix: &str, rels: &[String]) {
    let bucket = rig.s3.bucket();
    for rel in rels {
        let want = std::fs::read(root.join(rel)).unwrap();
        let got = bucket.get_object(format!("{prefix}/{rel}")).await.unwrap();
        assert!(
            got.as_slice() == want.as_slice(),
            "{rel} differs ({} vs {} bytes)",
            got.as_slice().len(),
            want.len()
        );
    }
}

#[tokio::test]
async fn a_100_file_import_is_byte_identical_and_trusts_on_first_use() {
    let rig = Rig::start().await;
    let root = rig.sshd.data_dir().join("run-1");
    let rels = make_tree(&root);
    let exec = rig.executor();
    let (r, log) = run(&exec, "imp-100", rig.payload("imp-100", &root)).await;
    let r = r.unwrap();
    assert_eq!(r["files"], 100);
    assert_eq!(r["uploaded"], 100);
    assert_eq!(r["prefix"], "team-1/traj-imp-100");
    assert_eq!(r["bucket"], "volt-dumps");
    assert_eq!(r["hostKey"]["trust"], "trust-on-first-use (recorded)");
    let mut up = uploaded(&log);
    up.sort();
    assert_eq!(up, rels);
    assert_identical(&rig, &root, "team-1/traj-imp-100", &rels).await;

    // The host key was recorded for this host and port…
    let recorded = TofuStore::new(rig.tofu_path())
        .recorded("127.0.0.1", rig.sshd.port)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.to_openssh().unwrap(), rig.sshd.host_key);
    // …and the next connection is checked against it.
    let single = root.join("frame-001.dump");
    let (r, _) = run(&exec, "imp-one", rig.payload("imp-one", &single)).await;
    let r = r.unwrap();
    assert_eq!(r["hostKey"]["trust"], "trust-on-first-use (matched)");
    assert_eq!(r["files"], 1);
    assert_identical(
        &rig,
        &root,
        "team-1/traj-imp-one",
        &["frame-001.dump".to_owned()],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_with_a_clear_error() {
    let rig = Rig::start().await;
    let root = rig.sshd.data_dir();
    std::fs::write(root.join("a.dump"), b"data").unwrap();
    let exec = rig.executor();
    let wrong = std::fs::read_to_string(rig.sshd.dir.path().join("client_key.pub")).unwrap();

    let mut p = rig.payload("kh-1", &root);
    p["knownHosts"] = json!(format!("127.0.0.1 {}", wrong.trim()));
    let (r, _) = run(&exec, "kh-1", p).await;
    match r {
        Err(JobError::Fatal(e)) => assert!(
            e.contains("matches no entry of the job's knownHosts"),
            "{e}"
        ),
        other => panic!("expected a fatal refusal, got {other:?}"),
    }

    // The right knownHosts value (OpenSSH's [host]:port form) is accepted.
    let mut p = rig.payload("kh-2", &root);
    p["knownHosts"] = json!(format!(
        "[127.0.0.1]:{} {}",
        rig.sshd.port, rig.sshd.host_key
    ));
    let (r, _) = run(&exec, "kh-2", p).await;
    assert_eq!(r.unwrap()["hostKey"]["trust"], "known-hosts");
    assert!(
        !rig.tofu_path().exists(),
        "knownHosts imports record nothing"
    );

    // A recorded key that differs from the server's: refused, not replaced.
    let id = format!("[127.0.0.1]:{}", rig.sshd.port);
    let fake: String = wrong
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        rig.tofu_path(),
        serde_json::to_vec(&json!({ id.clone(): fake })).unwrap(),
    )
    .unwrap();
    let (r, _) = run(&exec, "kh-3", rig.payload("kh-3", &root)).await;
    match r {
        Err(JobError::Fatal(e)) => assert!(e.contains("changed") && e.contains("SHA256:"), "{e}"),
        other => panic!("expected a fatal refusal, got {other:?}"),
    }
    let still: Value = serde_json::from_slice(&std::fs::read(rig.tofu_path()).unwrap()).unwrap();
    assert_eq!(still[&id], fake);
}

#[tokio::test]
async fn an_interrupted_import_finishes_after_a_restart_with_no_file_twice() {
    let rig = Rig::start().await;
    let root = rig.sshd.data_dir().join("run-2");
    let rels = make_tree(&root);
    let payload = rig.payload("imp-resume", &root);

    // First "process": stopped abruptly (its future dropped, as by kill -9)
    // after 40 files.
    let first = Arc::new(rig.executor());
    let (ctx, mut rx) = JobContext::new(
        input("imp-resume", payload.clone()),
        CancellationToken::new(),
    );
    let exec = first.clone();
    let task = tokio::spawn(async move { exec.run(ctx).await });
    let mut before = Vec::new();
    let deadline = Instant::now() + WITHIN;
    while before.len() < 40 {
        assert!(Instant::now() < deadline, "the first run stalled");
        match tokio::time::timeout(WITHIN, rx.recv()).await.unwrap() {
            Some(Report::Log(l)) => before.extend(uploaded(&[l])),
            Some(Report::Progress(_)) => {}
            None => panic!("the first run ended early"),
        }
    }
    task.abort();
    let _ = task.await;
    before.extend(uploaded(&logs(&mut rx)));
    drop(first);
    assert!(before.len() < 100, "interrupted before the end");

    // Second "process": a new executor on the same job.
    let second = rig.executor();
    let (r, log) = run(&second, "imp-resume", payload).await;
    let r = r.unwrap();
    let after = uploaded(&log);
    let first_set: BTreeSet<&String> = before.iter().collect();
    let twice: Vec<&String> = after.iter().filter(|f| first_set.contains(f)).collect();
    assert!(twice.is_empty(), "uploaded twice: {twice:?}");
    assert_eq!(r["files"], 100);
    assert_eq!(r["uploaded"].as_u64().unwrap() as usize, after.len());
    assert_eq!(
        r["uploaded"].as_u64().unwrap() + r["resumed"].as_u64().unwrap(),
        100
    );
    // At most the one upload in flight at the interruption can have
    // completed without its log line; the second run then found it in the
    // object store (counted as resumed, not sent again).
    assert!(
        before.len() + after.len() >= 99,
        "{} + {}",
        before.len(),
        after.len()
    );
    assert!(before.iter().chain(after.iter()).all(|f| rels.contains(f)));
    assert_identical(&rig, &root, "team-1/traj-imp-resume", &rels).await;
}

#[tokio::test]
async fn remove_running_stops_a_running_import_within_two_seconds() {
    let rig = Rig::start().await;
    let root = rig.sshd.data_dir().join("big");
    std::fs::create_dir_all(&root).unwrap();
    // 2 GiB sparse: minutes to import, seconds to create.
    std::fs::File::create(root.join("huge.dump"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let pools = Pools::new(rig.queues.clone(), Some(tx));
    pools
        .start(
            QueueName::SshImport,
            Arc::new(rig.executor()),
            PoolSettings::default(),
        )
        .await
        .unwrap();
    commands::dispatch(
        &rig.queues,
        &json!({"queueName": "ssh_import", "payload": rig.payload("imp-cancel", &root)}),
    )
    .await
    .unwrap();
    // Wait until bytes are flowing.
    eventually("import progress", || {
        let next = events.try_recv().ok();
        async move {
            match next {
                Some(voltd_actors::jobs::JobEvent::Progress { progress, .. }) => {
                    (progress["bytesDone"].as_u64() > Some(0)).then_some(())
                }
                _ => None,
            }
        }
    })
    .await;
    let started = Instant::now();
    let r = commands::remove_running(&rig.queues, &pools, &json!({"jobIds": ["imp-cancel"]}))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r["results"][0]["outcome"], "cancelled");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(pools.get(QueueName::SshImport).unwrap().busy(), 0);
    let rec = StatusStore::new(rig.queues.connection().clone())
        .get("imp-cancel")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, JobStatus::Failed);
    // No partial object was left behind under the key.
    assert!(
        rig.s3
            .bucket()
            .head_object("team-1/traj-imp-cancel/huge.dump")
            .await
            .is_err()
    );
    pools.close(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_encrypted_private_key_needs_its_passphrase() {
    let rig = Rig::start().await;
    let root = rig.sshd.data_dir();
    std::fs::write(root.join("one.dump"), bytes(7, 1000)).unwrap();
    let key = rig.sshd.dir.path().join("locked_key");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "open sesame", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut authorized = std::fs::OpenOptions::new()
        .append(true)
        .open(rig.sshd.dir.path().join("authorized_keys"))
        .unwrap();
    std::io::Write::write_all(&mut authorized, public.as_bytes()).unwrap();
    let exec = rig.executor();

    let mut p = rig.payload("enc-1", &root.join("one.dump"));
    p["privateKey"] = json!(std::fs::read_to_string(&key).unwrap());
    p["passphrase"] = json!("hunter2-guess");
    match run(&exec, "enc-1", p.clone()).await.0 {
        Err(JobError::Fatal(e)) => {
            assert!(e.contains("cannot be decoded"), "{e}");
            assert!(
                !e.contains("hunter2"),
                "the passphrase leaked into the error"
            );
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert!(
        rig.s3
            .bucket()
            .head_object("team-1/traj-enc-1/one.dump")
            .await
            .is_err(),
        "the refused attempt stored nothing"
    );
    p["passphrase"] = json!("open sesame");
    let (r, _) = run(&exec, "enc-1", p).await;
    assert_eq!(r.unwrap()["uploaded"], 1);
    let got = rig
        .s3
        .bucket()
        .get_object("team-1/traj-enc-1/one.dump")
        .await
        .unwrap();
    assert_eq!(got.as_slice(), bytes(7, 1000).as_slice());
}
