//! Control-channel benchmark (not a test): `cargo bench --bench control`.
//!
//! On loopback against an in-process volt-plane, with the release `voltd`
//! binary as a separate process:
//! * the daemon's idle RSS after 60 s connected and heartbeating;
//! * command round trip p50/p99 and commands/s at concurrency 1 and 32
//!   (`runtime.ping` through the plane's server→daemon path);
//! * the daemon's CPU time per answered command, from /proc/<pid>/stat, so
//!   the plane's own cost does not blur it.
//!
//! The daemon runs with `--services none`: this measures the control
//! channel and the actor system; `benches/remote.rs` runs the services.
//!
//! `-- --quick` shortens the idle wait and the run sizes (for smoke runs;
//! the README quotes full runs); `-- --idle SECS` sets the idle wait. Targets: ≤ 7 µs CPU per command, idle RSS
//! ≤ 12 MB, ≥ 30,000 commands/s at concurrency 32. `BENCH_VOLTD=path`
//! runs another voltd binary (to compare builds).

use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use volt_plane::{PlaneConfig, ResponseType};

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux).
const USER_HZ: f64 = 100.0;

struct Sizes {
    idle: Duration,
    warmup: usize,
    serial: usize,
    parallel: usize,
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime
    // 14, stime 15 (1-based) → indices 11 and 12 after the ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / USER_HZ
}

fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

async fn ping(plane: &volt_plane::PlaneHandle, id: &str) -> Duration {
    let t = Instant::now();
    let reply = plane
        .send_command(id, "runtime.ping", json!({}), ResponseType::Json, None)
        .await
        .expect("ping answered");
    assert!(reply.response().ok, "ping failed: {:?}", reply.response());
    t.elapsed()
}

async fn run(
    plane: &volt_plane::PlaneHandle,
    id: &str,
    pid: u32,
    concurrency: usize,
    total: usize,
) {
    let per_task = total / concurrency;
    let cpu0 = proc_cpu_seconds(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let plane_ref: &volt_plane::PlaneHandle = plane;
        let id = id.to_owned();
        // Scoped by the join below; all tasks borrow the same plane.
        tasks.push(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                lat.push(ping(plane_ref, &id).await);
            }
            lat
        });
    }
    let results = futures_util::future::join_all(tasks).await;
    let elapsed = start.elapsed();
    let cpu = proc_cpu_seconds(pid) - cpu0;
    let mut lat: Vec<Duration> = results.into_iter().flatten().collect();
    lat.sort();
    let n = lat.len();
    println!(
        "concurrency {concurrency:>2}: {n} commands in {:.2} s → {:.0} commands/s · p50 {} · p99 {} · daemon CPU {:.2} µs/command",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        us(percentile(&lat, 0.50)),
        us(percentile(&lat, 0.99)),
        cpu * 1e6 / n as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let idle_override = args
        .iter()
        .position(|a| a == "--idle")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut sizes = if quick {
        Sizes {
            idle: Duration::from_secs(5),
            warmup: 500,
            serial: 2_000,
            parallel: 32_000,
        }
    } else {
        Sizes {
            idle: Duration::from_secs(60),
            warmup: 5_000,
            serial: 20_000,
            parallel: 320_000,
        }
    };
    if let Some(idle) = idle_override {
        sizes.idle = idle;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let plane = volt_plane::start(PlaneConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..Default::default()
        })
        .await
        .expect("plane");
        let created = plane
            .create_cluster(Default::default())
            .await
            .expect("cluster");
        let id = created.team_cluster.id.clone();
        let state = tempfile::tempdir().expect("tempdir");
        let mut daemon = tokio::process::Command::new(
            std::env::var_os("BENCH_VOLTD").unwrap_or_else(|| env!("CARGO_BIN_EXE_voltd").into()),
        )
        .args(["run", "--cloud-url", &plane.base_url(), "--cluster-id", &id])
        .arg("--state-dir")
        .arg(state.path())
        .args(["--log-level", "warn", "--services", "none"])
        .env("TEAM_CLUSTER_DAEMON_PASSWORD", &created.daemon_password)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("voltd runs");
        let pid = daemon.id().expect("pid");
        let t = Instant::now();
        while !plane.cluster(&id).is_some_and(|c| c.connected) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "daemon did not register"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "voltd pid {pid} registered; idling {} s (heartbeat every 10 s)",
            sizes.idle.as_secs()
        );
        tokio::time::sleep(sizes.idle).await;
        let hb = plane.cluster(&id).map(|c| c.heartbeat_count).unwrap_or(0);
        println!(
            "idle RSS after {} s connected: {:.1} MiB ({hb} heartbeats)",
            sizes.idle.as_secs(),
            proc_rss_kib(pid) as f64 / 1024.0
        );

        for _ in 0..sizes.warmup {
            ping(&plane, &id).await;
        }
        run(&plane, &id, pid, 1, sizes.serial).await;
        run(&plane, &id, pid, 32, sizes.parallel).await;
        println!(
            "RSS after the load: {:.1} MiB",
            proc_rss_kib(pid) as f64 / 1024.0
        );

        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let _ = daemon.wait().await;
        plane.shutdown().await;
    });
}
