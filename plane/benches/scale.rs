//! Scale with people in the loop: N daemons (default 10,000, played by
//! `volt-loadgen` with the real protocol) against one `volt-plane` process,
//! while the console is open in headless Chromium on the cluster list and
//! on one cluster's charts.
//!
//! ```text
//! cargo bench -p volt-plane --bench scale              # 10,000 daemons (~6 min)
//! cargo bench -p volt-plane --bench scale -- --quick   # 500 daemons, short windows
//! cargo bench -p volt-plane --bench scale -- --daemons 2000
//! ```
//!
//! Phases: (1) provision N clusters (create + enroll) on a plane with a
//! data file, stop it; (2) cold start: a new plane process loads them and
//! every daemon connects at once — time from the plane's spawn until the
//! last registration; (3) log in, open the list and a cluster's charts;
//! time until the list of N is interactive, until a filter answers, until
//! a status change reaches an open list (live, no reload); (4) steady
//! state: the plane's CPU (from /proc/<pid>/stat) over a window, RSS per
//! daemon with each cluster's history rings allocated; (5) commands at
//! 500/s through the person API spread over all daemons: p50/p99.
//! Figures are printed and written to `target/scale-bench.json`.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "scale-bench-admin-token-0123456789";
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",
];

struct Opts {
    daemons: usize,
    /// Seconds of steady state measured for CPU.
    steady_secs: u64,
    /// Seconds of commands at `rate`.
    command_secs: u64,
    rate: f64,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let daemons = args
        .iter()
        .position(|a| a == "--daemons")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500 } else { 10_000 });
    Opts {
        daemons,
        steady_secs: if quick { 15 } else { 60 },
        command_secs: if quick { 10 } else { 30 },
        rate: 500.0,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clk_tck()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

struct Plane {
    child: Child,
    base: String,
    spawned: Instant,
}

impl Plane {
    fn start(data: &Path) -> Plane {
        let port = free_port();
        let spawned = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_volt-plane"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-file")
            .arg(data)
            .env("VOLT_PLANE_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("volt-plane starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "volt-plane did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Plane {
            child,
            base,
            spawned,
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn loadgen(base: &str, state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_volt-loadgen"));
    c.args(["--url", base])
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("VOLT_PLANE_ADMIN_TOKEN", TOKEN);
    c
}

fn which(bin: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            p.to_str()?
                .split(':')
                .map(|d| Path::new(d).join(bin))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{bin} not found (.ci/install-services installs it)"))
}

async fn browser(profile: &Path) -> (Child, Client) {
    let port = free_port();
    let driver = Command::new(which("chromedriver"))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let Value::Object(caps) =
        json!({"goog:chromeOptions": {"binary": which("chromium"), "args": args}})
    else {
        unreachable!("a literal object")
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (driver, client)
}

/// Polls `script` until truthy; returns the elapsed time.
async fn until(c: &Client, what: &str, script: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let v = c.execute(script, vec![]).await.unwrap_or(Value::Null);
        if v == Value::Bool(true) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let n = o.daemons;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("plane.json");
    let state = dir.path().join("loadgen.json");
    println!("scale bench: {n} daemons");

    // 1. Provision.
    let t = Instant::now();
    let plane = Plane::start(&data);
    let st = loadgen(
        &plane.base,
        &state,
        &["--daemons", &n.to_string(), "--provision-only"],
    )
    .stdout(Stdio::null())
    .status()
    .expect("loadgen");
    assert!(st.success(), "provisioning failed");
    plane.stop();
    println!(
        "provisioned {n} clusters in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 2. Cold start: a fresh plane process, every daemon at once.
    let plane = Plane::start(&data);
    let pid = plane.child.id();
    let listening = plane.spawned.elapsed();
    let run_secs = 40 + o.steady_secs + o.command_secs + 20;
    let command_after = 40 + o.steady_secs;
    let mut lg = loadgen(
        &plane.base,
        &state,
        &[
            "--daemons",
            &n.to_string(),
            "--duration-secs",
            &run_secs.to_string(),
            "--command-rate",
            &o.rate.to_string(),
            "--command-after-secs",
            &command_after.to_string(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("loadgen");
    let stderr = lg.stderr.take().expect("piped");
    let (reg_tx, reg_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("all ") && line.contains(" registered after ") {
                let _ = reg_tx.send(Instant::now());
            }
            if line.contains("only ") {
                eprintln!("{line}");
            }
        }
    });
    let registered_at = reg_rx
        .recv_timeout(Duration::from_secs(180))
        .expect("every daemon registered");
    let cold_start = registered_at - plane.spawned;
    println!(
        "cold start: listening after {:.2} s, all {n} registered {:.2} s after the plane's spawn",
        listening.as_secs_f64(),
        cold_start.as_secs_f64()
    );

    // 3. The console: log in, the list, one cluster's charts.
    let profile = tempfile::tempdir().expect("profile");
    let (mut driver, c) = browser(profile.path()).await;
    let base = plane.base.clone();
    c.goto(&format!("{base}/")).await.unwrap();
    let input = c
        .wait()
        .for_element(Locator::Css("#login-token"))
        .await
        .unwrap();
    input.send_keys(TOKEN).await.unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "the list",
        &format!("return document.getElementById('list-summary')?.textContent?.endsWith('of {n}') === true"),
        Duration::from_secs(30),
    )
    .await;
    // A fresh navigation: the list of N interactive (rows + pager shown).
    let t0 = Instant::now();
    c.goto(&format!("{base}/?reload=1#/")).await.unwrap();
    until(
        &c,
        "the list after a reload",
        &format!("return document.getElementById('list-summary')?.textContent === '1–50 of {n}' && document.querySelectorAll('#cluster-table tbody tr').length === 50"),
        Duration::from_secs(30),
    )
    .await;
    let list_interactive = t0.elapsed();
    let in_page_ms: f64 = c
        .execute("return performance.now()", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap_or(0.0);
    // Filter by name on the server (debounced 200 ms in the page).
    c.find(Locator::Css("#filter-name"))
        .await
        .unwrap()
        .send_keys("loadgen-001")
        .await
        .unwrap();
    let filter = until(
        &c,
        "the filter",
        "return document.getElementById('list-summary').textContent === '1–50 of 100'",
        Duration::from_secs(30),
    )
    .await;
    c.find(Locator::Css("#filter-name"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    c.goto(&format!("{base}/#/")).await.unwrap();
    until(
        &c,
        "the list again",
        &format!("return document.getElementById('list-summary')?.textContent === '1–50 of {n}'"),
        Duration::from_secs(30),
    )
    .await;
    // A live status change on the open list: an update request moves a
    // visible cluster to `updating` (its next heartbeat brings it back).
    let first_id: String = c
        .execute(
            "return document.querySelector('#cluster-table tbody tr').dataset.clusterId",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let r = http
        .post(format!("{base}/api/clusters/{first_id}/update-requests"))
        .bearer_auth(TOKEN)
        .json(&json!({"targetVersion": "1.0.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "update accepted");
    let live_update = until(
        &c,
        "the live badge",
        &format!("return document.querySelector(\"tr[data-cluster-id='{first_id}'] .badge\")?.dataset.status === 'updating'"),
        Duration::from_secs(30),
    )
    .await;
    let _ = t0;
    // Second window: one cluster's charts, left open.
    c.new_window(false).await.unwrap();
    let handles = c.windows().await.unwrap();
    c.switch_to_window(handles[1].clone()).await.unwrap();
    c.goto(&format!("{base}/#/clusters/{first_id}/monitoring"))
        .await
        .unwrap();
    until(
        &c,
        "chart points",
        "return Number(document.querySelector('svg[data-chart=cpu]')?.getAttribute('data-points') ?? 0) >= 1",
        Duration::from_secs(30),
    )
    .await;
    println!(
        "console: list of {n} interactive after {:.0} ms (page clock {:.0} ms), filter answered in {:.0} ms, live status change shown after {:.0} ms",
        list_interactive.as_secs_f64() * 1000.0,
        in_page_ms,
        filter.as_secs_f64() * 1000.0,
        live_update.as_secs_f64() * 1000.0
    );
    // API latency of a page (what the list costs the plane).
    let mut page_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/api/clusters?limit=50&offset=5000"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await.unwrap();
        page_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    page_ms.sort_by(f64::total_cmp);

    // 4. Steady state, console open on both pages (live streams running).
    let since_reg = registered_at.elapsed();
    let warm = Duration::from_secs(30).saturating_sub(since_reg);
    tokio::time::sleep(warm).await;
    let cpu0 = cpu_secs(pid);
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.steady_secs)).await;
    let steady_cpu = (cpu_secs(pid) - cpu0) / w0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_kib(pid);
    let chart_points: f64 = c
        .execute(
            "return Number(document.querySelector('svg[data-chart=cpu]').getAttribute('data-points'))",
            vec![],
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap_or(0.0);
    println!(
        "steady: plane CPU {steady_cpu:.1} % of a core over {} s; RSS {:.1} MiB = {:.1} KiB per daemon; chart shows {chart_points} points",
        o.steady_secs,
        rss as f64 / 1024.0,
        rss as f64 / n as f64
    );

    // 5. Commands: the loadgen drives them; its summary has the figures.
    let cpu1 = cpu_secs(pid);
    let w1 = Instant::now();
    let out = tokio::task::spawn_blocking(move || lg.wait_with_output())
        .await
        .unwrap()
        .expect("loadgen output");
    let run_cpu = (cpu_secs(pid) - cpu1) / w1.elapsed().as_secs_f64() * 100.0;
    let summary: Value = serde_json::from_slice(&out.stdout).expect("loadgen summary");
    let cmds = &summary["httpCommands"];
    println!(
        "commands: {} ok, {} errors, {:.0}/s over {:.0} s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms (plane CPU {run_cpu:.1} % incl. the tail)",
        cmds["ok"],
        cmds["errors"],
        cmds["perSecond"].as_f64().unwrap_or(0.0),
        cmds["seconds"].as_f64().unwrap_or(0.0),
        cmds["p50Ms"].as_f64().unwrap_or(0.0),
        cmds["p99Ms"].as_f64().unwrap_or(0.0),
        cmds["maxMs"].as_f64().unwrap_or(0.0),
    );
    let rss_end = rss_kib(pid);
    let _ = c.close().await;
    let _ = driver.kill();
    plane.stop();

    let report = json!({
        "daemons": n,
        "coldStartAllRegisteredSeconds": cold_start.as_secs_f64(),
        "listInteractiveMs": list_interactive.as_secs_f64() * 1000.0,
        "filterMs": filter.as_secs_f64() * 1000.0,
        "liveStatusUpdateMs": live_update.as_secs_f64() * 1000.0,
        "pageApiP50Ms": page_ms[page_ms.len() / 2],
        "steadyCpuPercent": steady_cpu,
        "rssMiB": rss as f64 / 1024.0,
        "rssKiBPerDaemon": rss as f64 / n as f64,
        "rssEndMiB": rss_end as f64 / 1024.0,
        "commands": cmds,
        "heartbeatsOk": summary["heartbeatsOk"],
        "heartbeatsFailed": summary["heartbeatsFailed"],
        "disconnects": summary["disconnects"],
    });
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.ancestors()
                .find(|a| a.file_name().is_some_and(|f| f == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(std::env::temp_dir);
    let out_path = target.join("scale-bench.json");
    let _ = std::fs::write(
        &out_path,
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    );
    println!(
        "\n{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    println!("written to {}", out_path.display());
    println!(
        "goals: registered ≤ 15 s: {}; CPU ≤ 20 %: {}; RSS ≤ 60 KiB/daemon: {}; p99 ≤ 20 ms: {}; list ≤ 1 s: {}",
        cold_start.as_secs_f64() <= 15.0,
        steady_cpu <= 20.0,
        (rss as f64 / n as f64) <= 60.0,
        cmds["p99Ms"].as_f64().unwrap_or(f64::MAX) <= 20.0,
        list_interactive.as_secs_f64() <= 1.0
    );
}
