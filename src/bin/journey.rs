//! `volt-journey`: the whole local journey in one command.
//!
//! Starts a volt-plane, creates a cluster over its HTTP API, enrolls with
//! `voltd enroll`, runs `voltd run` (which starts and supervises the managed
//! services when their binaries are available), waits for the readiness line
//! and the first heartbeats, drives the daemon through the plane's HTTP API,
//! shows `voltd status`, then stops everything cleanly. Every step is
//! printed as it happens.

use clap::Parser;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[derive(Debug, Parser)]
#[command(
    name = "volt-journey",
    about = "Run voltd end to end against a local volt-plane"
)]
struct Args {
    /// Seconds to keep the daemon running after the journey's steps
    /// (0 = until Ctrl-C).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Working directory for the plane's data and the daemon's state
    /// (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Heartbeat period of the daemon, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
}

/// How long each step may take before the journey reports a failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

fn step(n: u32, text: &str) {
    println!("\n==> {n}. {text}");
}

fn info(text: impl std::fmt::Display) {
    println!("    {text}");
}

fn fail(text: impl std::fmt::Display) -> ! {
    eprintln!("\nvolt-journey: {text}");
    std::process::exit(1);
}

fn voltd_path() -> PathBuf {
    let here =
        std::env::current_exe().unwrap_or_else(|e| fail(format!("cannot locate myself: {e}")));
    let p = here.with_file_name("voltd");
    if !p.exists() {
        fail(format!(
            "{} not found: build it with `cargo build --bins`",
            p.display()
        ));
    }
    p
}

/// Shortens a secret for display: enough to recognise, not to use.
fn peek(secret: &str) -> String {
    format!("{}…", &secret[..secret.len().min(8)])
}

async fn http_json(req: reqwest::RequestBuilder) -> Value {
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| fail(format!("plane unreachable: {e}")));
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .unwrap_or_else(|e| fail(format!("bad plane answer: {e}")));
    if !status.is_success() {
        fail(format!("plane answered {status}: {body}"));
    }
    body["data"].clone()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            fail(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn write_config(path: &Path, url: &str, id: &str, state: &Path, heartbeat_ms: u64) {
    let mut text = format!(
        "# written by volt-journey\ncloud_url = \"{url}\"\nteam_cluster_id = \"{id}\"\nstate_dir = \"{}\"\nheartbeat_interval_ms = {heartbeat_ms}\n",
        state.display()
    );
    let (services, notes) = voltd::standins::services_config()
        .unwrap_or_else(|e| fail(format!("cannot pick ports: {e}")));
    for note in notes {
        info(note);
    }
    text.push_str(&services);
    std::fs::write(path, text)
        .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", path.display())));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let voltd = voltd_path();
    let tmp =
        tempfile::tempdir().unwrap_or_else(|e| fail(format!("cannot create a temp dir: {e}")));
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| fail(format!("cannot create {}: {e}", dir.display())));

    step(1, "Starting volt-plane (the local reference control plane)");
    let plane = volt_plane::start(volt_plane::PlaneConfig {
        listen: "127.0.0.1:0"
            .parse()
            .unwrap_or_else(|_| unreachable!("literal address")),
        data_file: Some(dir.join("plane.json")),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| fail(format!("plane did not start: {e}")));
    let url = plane.base_url();
    info(format!(
        "listening on {url} (data in {})",
        dir.join("plane.json").display()
    ));
    if let Some(token) = plane.admin_token() {
        info(format!(
            "console: open {url}/ and log in with the admin token {token}"
        ));
    }

    step(
        2,
        "Creating a cluster over the plane's HTTP API (POST /api/clusters)",
    );
    // The person API needs the admin token; the handle knows the one this
    // first start generated.
    let http = plane.client();
    let created = http_json(
        http.post(format!("{url}/api/clusters"))
            .json(&json!({"name": "journey"})),
    )
    .await;
    let id = created["teamCluster"]["_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let token = created["enrollmentToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    info(format!(
        "cluster {id}, status {}",
        created["teamCluster"]["status"]
    ));
    info(format!(
        "one-time enrollment token {} (shown once)",
        peek(&token)
    ));
    info(format!(
        "installer one-liner: {}",
        created["installCommand"]
            .as_str()
            .unwrap_or_default()
            .replace(&token, "<token>")
    ));

    step(
        3,
        "Enrolling with `voltd enroll` (POST /api/team-clusters/{id}/healthcheck)",
    );
    let state = dir.join("state");
    let config = dir.join("voltd.toml");
    write_config(&config, &url, &id, &state, args.heartbeat_ms);
    let out = Command::new(&voltd)
        .arg("--config")
        .arg(&config)
        .args(["enroll", "--token", &token])
        .output()
        .await
        .unwrap_or_else(|e| fail(format!("cannot run voltd: {e}")));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        info(line);
    }
    if !out.status.success() {
        fail(format!(
            "voltd enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let view = http_json(http.get(format!("{url}/api/clusters/{id}"))).await;
    info(format!("plane now shows: {}", view["status"]));

    step(
        4,
        "Running the daemon (`voltd run`); its log follows, prefixed [voltd]",
    );
    let mut child = Command::new(&voltd)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| fail(format!("cannot run voltd: {e}")));
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let marker = format!("cluster-daemon started for team cluster {id}");
    for stream in [
        Box::new(child.stdout.take().unwrap_or_else(|| unreachable!("piped")))
            as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap_or_else(|| unreachable!("piped"))),
    ] {
        let ready_tx = ready_tx.clone();
        let marker = marker.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(&marker) {
                    let _ = ready_tx.send(true);
                }
                println!("    [voltd] {line}");
            }
        });
    }
    if tokio::time::timeout(STEP_TIMEOUT, ready_rx.wait_for(|r| *r))
        .await
        .is_err()
    {
        fail("the daemon did not print its readiness line");
    }

    step(5, "Waiting for heartbeats to reach the plane");
    wait_for("two heartbeats", async || {
        plane.cluster(&id).is_some_and(|c| c.heartbeat_count >= 2)
    })
    .await;
    let view = http_json(http.get(format!("{url}/api/clusters/{id}"))).await;
    let m = &view["lastMetrics"];
    info(format!(
        "status {} · cpu {}% · memory {}% · disk {}% · cloud latency {} ms",
        view["status"],
        m["cpuUsagePercent"],
        m["memory"]["usagePercent"],
        m["disk"]["usagePercent"],
        m["cloudLatencyMs"]
    ));
    let history: Vec<String> = view["statusHistory"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| e["status"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    info(format!("status history: {}", history.join(" → ")));

    step(
        6,
        "Driving the daemon through the plane (POST /api/clusters/{id}/commands)",
    );
    for (command, payload) in [
        ("runtime.ping", json!({})),
        ("runtime.services.status", json!({})),
        ("no.such.command", json!({})),
    ] {
        let reply = http_json(
            http.post(format!("{url}/api/clusters/{id}/commands"))
                .json(&json!({"command": command, "payload": payload})),
        )
        .await;
        let shown = if reply["ok"] == true {
            format!("ok {} {}", reply["status"], reply["data"]["data"])
        } else {
            format!("{} {}", reply["status"], reply["message"])
        };
        let shown: String = shown.chars().take(300).collect();
        info(format!("{command}: {shown}"));
    }

    step(7, "`voltd status`");
    let out = Command::new(&voltd)
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .await
        .unwrap_or_else(|e| fail(format!("cannot run voltd: {e}")));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        info(line);
    }

    if args.duration == 0 {
        step(8, "Running until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        step(8, &format!("Running for {} s more", args.duration));
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
    }

    step(9, "Stopping the daemon (SIGTERM) and the plane");
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
        .await
        .unwrap_or_else(|_| fail("the daemon did not stop"))
        .unwrap_or_else(|e| fail(e));
    info(format!("voltd exited with {}", status.code().unwrap_or(-1)));
    wait_for("the plane to see the disconnect", async || {
        plane.cluster(&id).is_some_and(|c| !c.connected)
    })
    .await;
    let view = plane.cluster(&id);
    info(format!(
        "plane shows {} after {} heartbeats",
        view.as_ref().map(|v| v.status.as_str()).unwrap_or("?"),
        view.as_ref().map(|v| v.heartbeat_count).unwrap_or(0)
    ));
    plane.shutdown().await;
    if !status.success() {
        fail("voltd did not exit cleanly");
    }
    println!("\nJourney complete.");
}
