//! The real `voltd` binary killed with SIGKILL in the middle of a 100-file
//! SSH import: started again, it finishes the import with every file
//! byte-identical and none uploaded twice. Redis (the queue, the resume
//! ledger) and MinIO (s3s-fs) run natively under voltd and go down with
//! it (parent-death signal); sshd is the source.

use crate::voltd_bin;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::daemon::*;
use testkit::process::{Signal, signal};
use testkit::sshd::Sshd;
use testkit::standins::{WITHIN, redis_command, s3_command};
use testkit::{alive, eventually, free_port};
use tokio::process::{Child, Command};

const FILES: usize = 100;
/// Large enough that the import takes a while, small enough for CI disks.
const FILE_BYTES: usize = 512 * 1024;

fn toml_array(args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn write_config(path: &Path, url: &str, id: &str, token: &str, state: &Path) {
    // A dead worker's job runs again after its lock (2 s) at the next
    // stalled check (every second) instead of BullMQ's 30 s.
    let mut text = format!(
        "cloud_url = {url:?}\nteam_cluster_id = {id:?}\nenrollment_token = {token:?}\nstate_dir = {:?}\nheartbeat_interval_ms = 500\n\n[jobs]\nlock_duration_ms = 2000\nstalled_interval_ms = 1000\n",
        state.display().to_string()
    );
    for (name, command) in [("redis", redis_command()), ("minio", s3_command())] {
        text.push_str(&format!(
            "\n[services.{name}]\ncommand = {}\nport = {}\nprobe_interval_ms = 300\nprobe_timeout_ms = 5000\nunhealthy_after = 5\nstart_timeout_ms = 45000\nstop_timeout_ms = 10000\nrestart_base_ms = 50\nrestart_max_ms = 500\n",
            toml_array(&command),
            free_port()
        ));
    }
    text.push_str("\n[services.mongo]\nmode = \"disabled\"\n");
    std::fs::write(path, text).unwrap();
}

/// Runs voltd; its log goes to `log` (shown when the test fails).
fn run(config: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("a log file");
    let err = out.try_clone().expect("a log file");
    Command::new(voltd_bin())
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("VOLTD_CONFIG")
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("voltd runs")
}

async fn status(config: &Path) -> Option<Value> {
    let out = Command::new(voltd_bin())
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .env_remove("VOLTD_CONFIG")
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until `voltd status` shows the SSH import worker; returns the
/// services' pids.
async fn wait_ready(config: &Path) -> Vec<i32> {
    eventually(
        WITHIN,
        "the ssh_import worker in `voltd status`",
        async || {
            let s = status(config).await?;
            let ssh = s["jobs"]["queues"]
                .as_array()?
                .iter()
                .find(|q| q["queue"] == "ssh_import")?
                .clone();
            (ssh["worker"] == "ssh-import").then(|| {
                ["redis", "minio"]
                    .iter()
                    .filter_map(|n| s["services"][n]["pid"].as_i64())
                    .map(|p| p as i32)
                    .collect::<Vec<i32>>()
            })
        },
    )
    .await
}

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

/// Complete objects under `dir` (same size as their source): relative
/// path → (inode, mtime in ns). s3s-fs writes an object to a temp file
/// and renames it, so a present object is a whole one.
fn complete_objects(dir: &Path, source: &Path) -> BTreeMap<String, (u64, i64)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        let want = std::fs::metadata(source.join(&name)).map(|m| m.len()).ok();
        if meta.is_file() && Some(meta.len()) == want {
            out.insert(
                name,
                (meta.ino(), meta.mtime_nsec() + meta.mtime() * 1_000_000_000),
            );
        }
    }
    out
}

/// Prints both voltd logs when dropped during a panic.
struct LogsOnFailure(PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["first.log", "second.log"] {
                let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
                eprintln!("==== voltd {name}\n{text}");
            }
        }
    }
}

#[tokio::test]
async fn voltd_killed_mid_import_finishes_it_after_restart_with_no_file_twice() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("voltd.toml");
    write_config(
        &config,
        &plane.base_url(),
        &id,
        &created.enrollment_token,
        &state,
    );
    let sshd = Sshd::start().await;
    let source = sshd.data_dir().join("hundred");
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..FILES {
        std::fs::write(
            source.join(format!("frame-{i:03}.dump")),
            bytes(i as u64, FILE_BYTES),
        )
        .unwrap();
    }
    let objects: PathBuf = state.join("services/minio/volt-dumps/team-1/traj-kill");

    let mut first = run(&config, &dir.path().join("first.log"));
    let servers = wait_ready(&config).await;
    // `voltd status` shows the workers, one line per queue.
    let out = Command::new(voltd_bin())
        .arg("--config")
        .arg(&config)
        .arg("status")
        .env_remove("VOLTD_CONFIG")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |queue: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(queue))
            .unwrap_or_else(|| panic!("no {queue} line in:\n{text}"))
            .to_owned()
    };
    assert!(
        line("ssh_import").contains("ssh-import  busy 0/1"),
        "{text}"
    );
    assert!(line("analysis_processing").contains("no worker"), "{text}");
    let (_, queued) = plane
        .request(
            &id,
            "queue.dispatch",
            json!({"queueName": "ssh_import", "payload": {
                "jobId": "imp-kill", "teamId": "team-1", "trajectoryId": "traj-kill",
                "host": "127.0.0.1", "port": sshd.port, "username": sshd.user,
                "privateKey": sshd.client_key, "remotePath": source.display().to_string(),
                "knownHosts": format!("[127.0.0.1]:{} {}", sshd.port, sshd.host_key),
            }}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(queued, json!({"queued": true}));

    // Kill -9 once a good part of the import is in the object store.
    eventually(WITHIN, "30 files imported", async || {
        complete_objects(&objects, &source).len() >= 30
    })
    .await;
    signal(first.id().unwrap() as i32, Signal::SIGKILL);
    first.wait().await.unwrap();
    for pid in &servers {
        eventually(
            WITHIN,
            format!("server {pid} gone with voltd"),
            async || !alive(*pid),
        )
        .await;
    }
    let before = complete_objects(&objects, &source);
    assert!(
        !before.is_empty() && before.len() < FILES,
        "killed in the middle: {} of {FILES} files imported",
        before.len()
    );

    let mut second = run(&config, &dir.path().join("second.log"));
    let logs = LogsOnFailure(dir.path().to_path_buf());
    let done = eventually(
        Duration::from_secs(120),
        "the import completed on the plane",
        async || {
            plane
                .job_events(&id)?
                .into_iter()
                .find(|e| e.fields["jobId"] == "imp-kill" && e.fields["status"] == "completed")
        },
    )
    .await;
    assert_eq!(done.kind, "ssh-import-job-status");

    // Every file, byte for byte.
    for i in 0..FILES {
        let name = format!("frame-{i:03}.dump");
        assert!(
            std::fs::read(objects.join(&name)).unwrap() == bytes(i as u64, FILE_BYTES),
            "{name} differs"
        );
    }
    // None twice: what was imported before the kill was not written again
    // (same inode, same modification time).
    let after = complete_objects(&objects, &source);
    assert_eq!(after.len(), FILES);
    for (name, meta) in &before {
        assert_eq!(after.get(name), Some(meta), "{name} was uploaded again");
    }
    // The job ran a second time (the stalled job went back to waiting)
    // and completed once.
    let (_, list) = plane
        .request(&id, "jobs.list", json!({"teamId": "team-1"}), None)
        .await
        .unwrap();
    let rec = &list["data"][0];
    assert_eq!(rec["status"], "completed");
    assert_eq!(rec["attempts"], 2);
    let completions = plane
        .job_events(&id)
        .unwrap()
        .into_iter()
        .filter(|e| e.fields["jobId"] == "imp-kill" && e.fields["status"] == "completed")
        .count();
    assert_eq!(completions, 1);

    std::mem::forget(logs);
    signal(second.id().unwrap() as i32, Signal::SIGTERM);
    let code = tokio::time::timeout(WITHIN, second.wait())
        .await
        .expect("voltd stops in time")
        .unwrap();
    assert_eq!(code.code(), Some(0));
    plane.shutdown().await;
}
