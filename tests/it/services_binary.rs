//! The real `voltd` binary running the managed services from its config
//! file (`[services.*]` pointed at redis-server, SecantusDB and s3s-fs):
//! `voltd status` shows them, and a voltd killed with SIGKILL and started
//! again replaces its servers on the same ports without leaving any behind.

use crate::voltd_bin;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use testkit::daemon::*;
use testkit::process::{Signal, signal};
use testkit::standins::{WITHIN, mongo_command, redis_command, s3_command};
use testkit::{alive, eventually, free_port};
use tokio::process::{Child, Command};

const ALL: [&str; 3] = ["redis", "mongo", "minio"];

fn toml_array(args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn write_config(path: &Path, url: &str, id: &str, token: &str, state: &Path) {
    let mut text = format!(
        "cloud_url = {url:?}\nteam_cluster_id = {id:?}\nenrollment_token = {token:?}\nstate_dir = {:?}\nheartbeat_interval_ms = 500\n",
        state.display().to_string()
    );
    for (name, command) in [
        ("redis", redis_command()),
        ("mongo", mongo_command()),
        ("minio", s3_command()),
    ] {
        text.push_str(&format!(
            "\n[services.{name}]\ncommand = {}\nport = {}\nprobe_interval_ms = 300\nprobe_timeout_ms = 5000\nunhealthy_after = 5\nstart_timeout_ms = 45000\nstop_timeout_ms = 10000\nrestart_base_ms = 50\nrestart_max_ms = 500\n",
            toml_array(&command),
            free_port()
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn run(config: &Path) -> Child {
    Command::new(voltd_bin())
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .env_remove("VOLTD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("voltd runs")
}

async fn status(config: &Path, json: bool) -> Option<String> {
    let mut cmd = Command::new(voltd_bin());
    cmd.arg("--config").arg(config).arg("status");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.env_remove("VOLTD_CONFIG").output().await.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `voltd status --json` until every service is healthy; returns the
/// services' views.
async fn wait_healthy(config: &Path) -> Value {
    eventually(
        WITHIN,
        "every service healthy in `voltd status`",
        async || {
            let v: Value = serde_json::from_str(&status(config, true).await?).ok()?;
            ALL.iter()
                .all(|n| v["services"][n]["state"] == "healthy")
                .then(|| v["services"].clone())
        },
    )
    .await
}

fn pids(services: &Value) -> Vec<i32> {
    ALL.iter()
        .map(|n| services[n]["pid"].as_i64().expect("a pid") as i32)
        .collect()
}

#[tokio::test]
async fn voltd_killed_and_restarted_replaces_its_servers_without_port_clash_or_orphans() {
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

    let mut first = run(&config);
    let before = wait_healthy(&config).await;
    let old = pids(&before);
    for pid in &old {
        assert!(alive(*pid));
    }

    // `voltd status` shows every service healthy with its probe latency.
    let text = status(&config, false).await.expect("voltd status answers");
    for name in ALL {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{text}"));
        assert!(line.contains("healthy"), "{line}");
        assert!(line.contains(" ms"), "probe latency shown: {line}");
        assert!(line.contains("pid "), "{line}");
    }

    // SIGKILL: no chance to stop anything.
    signal(first.id().unwrap() as i32, Signal::SIGKILL);
    first.wait().await.unwrap();

    let mut second = run(&config);
    let after = wait_healthy(&config).await;
    let new = pids(&after);
    for (name, (o, n)) in ALL.iter().zip(old.iter().zip(&new)) {
        assert_ne!(o, n, "{name} is a new process");
        assert!(!alive(*o), "{name}'s old server {o} is gone");
        assert_eq!(
            after[name]["port"], before[name]["port"],
            "{name} on the same port"
        );
        assert_eq!(
            after[name]["restarts"], 0,
            "{name}: no port clash, no crash loop"
        );
    }

    signal(second.id().unwrap() as i32, Signal::SIGTERM);
    let code = tokio::time::timeout(WITHIN, second.wait())
        .await
        .expect("voltd stops in time")
        .unwrap();
    assert_eq!(code.code(), Some(0));
    for pid in new {
        assert!(!alive(pid), "{pid} outlived voltd");
    }
    for name in ALL {
        assert!(!state.join(format!("services/{name}.pid")).exists());
    }
    plane.shutdown().await;
}
