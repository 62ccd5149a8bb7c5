//! The load generator against a real plane: 500 daemons with the real
//! protocol (enrollment, registration, heartbeats with full metrics,
//! commands through the person API). Figures are for the benchmark
//! (`plane/benches/scale.rs`); this checks that everything arrives.

use serde_json::Value;
use std::time::Duration;
use testkit::WAIT;
use testkit::plane::*;

const DAEMONS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_daemons_register_beat_and_answer() {
    let plane = volt_plane::start(volt_plane::PlaneConfig {
        daemon_wait: Duration::from_secs(5),
        ..config()
    })
    .await
    .unwrap();
    let base = plane.base_url();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_volt-loadgen"))
        .args(["--url", &base, "--daemons", &DAEMONS.to_string()])
        .arg("--state")
        .arg(dir.path().join("loadgen.json"))
        .args([
            "--heartbeat-ms",
            "1000",
            "--duration-secs",
            "4",
            "--command-rate",
            "50",
        ])
        .env("VOLT_PLANE_ADMIN_TOKEN", TEST_ADMIN_TOKEN)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "volt-loadgen failed: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["registered"], DAEMONS, "{summary}");
    assert_eq!(summary["disconnects"], 0, "{summary}");
    assert_eq!(summary["heartbeatsFailed"], 0, "{summary}");
    assert!(
        summary["heartbeatsOk"].as_u64().unwrap() >= DAEMONS as u64,
        "{summary}"
    );
    let cmds = &summary["httpCommands"];
    assert_eq!(cmds["errors"], 0, "{summary}");
    assert!(cmds["ok"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["commandsAnswered"], cmds["ok"], "{summary}");

    // What the console would show: every cluster, paged; each with points.
    let (_, page) = get(&format!("{base}/api/clusters?limit=50&q=loadgen")).await;
    assert_eq!(page["data"]["total"], DAEMONS);
    let some = page["data"]["teamClusters"][0]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, series) = get(&format!("{base}/api/clusters/{some}/metrics")).await;
    assert!(!series["data"]["t"].as_array().unwrap().is_empty());
    assert!(series["data"]["cpu"][0].as_f64().unwrap() > 0.0);
    // The loadgen disconnected at the end: the plane saw every daemon go.
    testkit::eventually(WAIT, "every daemon disconnected", async || {
        plane.clusters().iter().all(|c| !c.connected)
    })
    .await;
    plane.shutdown().await;
}
