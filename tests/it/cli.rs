//! The real `voltd` binary: readiness line, status/logs over the admin
//! socket, exit codes, signals, config handling, secrets kept out of logs.

use crate::voltd_bin;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::daemon::*;
use testkit::eventually;
use testkit::process::{Signal, signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SECS_15: Duration = Duration::from_secs(15);

/// A running `voltd` whose stdout and stderr lines are collected.
struct Voltd {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Voltd {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(voltd_bin());
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("VOLTD_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("voltd runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for reader in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            readers.push(tokio::spawn(async move {
                let mut r = BufReader::new(reader).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    lines.lock().unwrap().push(l);
                }
            }));
        }
        Voltd {
            child,
            lines,
            readers,
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    async fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        eventually(SECS_15, what, async || {
            self.lines.lock().unwrap().iter().find(|l| pred(l)).cloned()
        })
        .await
    }

    async fn term(&mut self) -> i32 {
        let pid = self.child.id().unwrap() as i32;
        signal(pid, Signal::SIGTERM);
        self.exit_code().await
    }

    /// Waits for the exit and for every line of output to be collected.
    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(SECS_15, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(SECS_15, r).await;
        }
        status.code().unwrap_or(-1)
    }
}

/// Runs a short `voltd` command to completion.
async fn voltd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(voltd_bin());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("VOLTD_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(SECS_15, cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_args<'a>(url: &'a str, id: &'a str, state: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--cloud-url",
        url,
        "--cluster-id",
        id,
        "--state-dir",
        state,
        "--heartbeat-interval-ms",
        "300",
        // These tests are about the daemon itself; the services and
        // services_binary topics run the managed services.
        "--services",
        "none",
    ]
}

#[tokio::test]
async fn runs_prints_the_readiness_line_answers_status_and_logs_and_stops_on_sigterm() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let state_s = state.path().to_str().unwrap();
    let url = plane.base_url();
    let mut d = Voltd::spawn(
        &run_args(&url, &id, state_s),
        &[("TEAM_CLUSTER_ENROLLMENT_TOKEN", &created.enrollment_token)],
    );
    d.wait_line("readiness line", |l| {
        l.contains(&format!("cluster-daemon started for team cluster {id}"))
    })
    .await;
    eventually(SECS_15, "heartbeats", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count >= 2)
    })
    .await;

    let (code, out, _) = voltd(&["status", "--state-dir", state_s], &[]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("status     connected (server: connected)"),
        "{out}"
    );
    assert!(out.contains(&id), "{out}");

    let (code, out, _) = voltd(&["status", "--json", "--state-dir", state_s], &[]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "connected");
    assert_eq!(v["registered"], true);
    assert!(v["heartbeatsOk"].as_u64().unwrap() >= 1);

    let (code, out, _) = voltd(
        &["logs", "--json", "--tail", "1000", "--state-dir", state_s],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| e["event"] == "registered"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "child-started" && e["child"] == "control-socket")
    );

    // `logs -f` keeps streaming new records.
    let follow = Voltd::spawn(&["logs", "-f", "--tail", "0", "--state-dir", state_s], &[]);
    follow
        .wait_line("a live heartbeat record", |l| l.contains("heartbeat-ok"))
        .await;
    drop(follow);

    // The admin socket is private.
    let mode = std::fs::metadata(state.path().join("voltd.sock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    assert_eq!(d.term().await, 0);
    assert!(
        !state.path().join("voltd.sock").exists(),
        "socket removed on exit"
    );
    eventually(SECS_15, "socket close seen by the plane", async || {
        plane.cluster(&id).filter(|c| !c.connected)
    })
    .await;
    plane.shutdown().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_never_contain_secrets() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let state_s = state.path().to_str().unwrap();
    let url = plane.base_url();
    let mut args = run_args(&url, &id, state_s);
    args.extend(["--log-format", "json"]);
    let mut d = Voltd::spawn(
        &args,
        &[
            ("TEAM_CLUSTER_ENROLLMENT_TOKEN", &created.enrollment_token),
            ("LOG_LEVEL", "trace"),
        ],
    );
    d.wait_line("readiness line", |l| l.contains("cluster-daemon started"))
        .await;
    eventually(SECS_15, "heartbeats", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count >= 2)
    })
    .await;
    assert_eq!(d.term().await, 0);
    let out = d.output();
    assert!(
        !out.contains(&created.daemon_password),
        "daemon password leaked into logs"
    );
    assert!(
        !out.contains(&created.enrollment_token),
        "enrollment token leaked into logs"
    );
    let mut n = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        n += 1;
    }
    assert!(n > 5);
    plane.shutdown().await;
}

#[tokio::test]
async fn exit_codes_for_bad_config_rejected_credentials_and_a_second_instance() {
    // 1: configuration errors.
    let (code, _, err) = voltd(&["run", "--cluster-id", "x", "--state-dir", "/tmp/x"], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("VOLT_CLOUD_URL"), "{err}");
    let (code, _, err) = voltd(&["run", "--bogus-flag"], &[]).await;
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = voltd(&["--config", "/nonexistent/voltd.toml", "run"], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/voltd.toml"), "{err}");

    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let url = plane.base_url();

    // 4: a wrong daemon password is rejected at registration.
    let state = tempfile::tempdir().unwrap();
    let state_s = state.path().to_str().unwrap();
    let mut d = Voltd::spawn(
        &run_args(&url, &id, state_s),
        &[("TEAM_CLUSTER_DAEMON_PASSWORD", "not-the-password")],
    );
    assert_eq!(d.exit_code().await, 4, "{}", d.output());
    assert!(d.output().contains("rejected"), "{}", d.output());

    // 1: a second daemon on the same state directory.
    let state = tempfile::tempdir().unwrap();
    let state_s = state.path().to_str().unwrap();
    let mut first = Voltd::spawn(
        &run_args(&url, &id, state_s),
        &[("TEAM_CLUSTER_DAEMON_PASSWORD", &created.daemon_password)],
    );
    first
        .wait_line("readiness line", |l| l.contains("cluster-daemon started"))
        .await;
    let mut second = Voltd::spawn(
        &run_args(&url, &id, state_s),
        &[("TEAM_CLUSTER_DAEMON_PASSWORD", &created.daemon_password)],
    );
    assert_eq!(second.exit_code().await, 1);
    assert!(
        second.output().contains("already running"),
        "{}",
        second.output()
    );
    assert_eq!(first.term().await, 0);

    // 3: status of a daemon that is not running.
    let (code, _, err) = voltd(&["status", "--state-dir", state_s], &[]).await;
    assert_eq!(code, 3);
    assert!(err.contains("not running"), "{err}");
    plane.shutdown().await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn enroll_stores_credentials_and_a_token_from_the_config_file_is_removed() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("voltd.toml");
    write(
        &config,
        &format!(
            "# lab server\ncloud_url = \"{}\"\nteam_cluster_id = \"{id}\"\nstate_dir = \"{}\"\nenrollment_token = \"{}\"\n",
            plane.base_url(),
            state.display(),
            created.enrollment_token
        ),
    );
    let cfg = config.to_str().unwrap();

    let (code, out, _) = voltd(&["--config", cfg, "config", "show"], &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains("enrollment_token = \"***\""), "{out}");
    assert!(!out.contains(&created.enrollment_token));

    let (code, out, err) = voltd(&["--config", cfg, "enroll"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("enrolled"), "{out}");
    let creds = testkit::creds::stored_credentials(&state);
    assert_eq!(creds.daemon_password.expose(), created.daemon_password);
    let cfg_text = std::fs::read_to_string(&config).unwrap();
    assert!(!cfg_text.contains("enrollment_token"), "{cfg_text}");
    assert!(
        cfg_text.contains("# lab server"),
        "comments kept: {cfg_text}"
    );

    // Enrolling again with the same (now used) token is a clear rejection.
    let fresh = dir.path().join("fresh");
    let (code, _, err) = voltd(
        &[
            "enroll",
            "--cloud-url",
            &plane.base_url(),
            "--cluster-id",
            &id,
            "--state-dir",
            fresh.to_str().unwrap(),
            "--token",
            &created.enrollment_token,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 4);
    assert!(err.contains("409"), "{err}");

    // `run` with the config file connects with the stored credentials.
    let mut d = Voltd::spawn(&["--config", cfg, "run", "--services", "none"], &[]);
    d.wait_line("readiness line", |l| l.contains("cluster-daemon started"))
        .await;
    assert_eq!(d.term().await, 0);
    plane.shutdown().await;
}
