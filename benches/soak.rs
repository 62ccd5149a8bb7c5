//! Soak benchmark (not a test): `cargo bench --bench soak -- --duration SECS`.
//!
//! The release `voltd` with its three managed services (the stand-ins when
//! the real servers are not installed) runs against an in-process
//! volt-plane while a load loops for the whole duration:
//!
//! * commands: `runtime.ping` 20 times a second, a Redis keyspace listing
//!   every 2 s, `runtime.services.status` every 5 s;
//! * terminal output: a host terminal session every `--session-every`
//!   seconds (default 3) that prints 256 KB and exits (a new PTY, shell and
//!   pump each time);
//! * reconnects: the plane cuts the daemon's socket every 30 s;
//! * service restarts: `runtime.services.restart` of redis, mongo, minio in
//!   turn every 60 s.
//!
//! Every `--sample` seconds (default 30) it prints voltd's RSS, open file
//! descriptors and threads. The warm-up ends after `--warmup` seconds and
//! not before every bounded buffer of the daemon is full — the supervisor
//! log's ring (`events::DEFAULT_RING_CAPACITY` records, read through
//! `voltd logs`) is the slowest to fill; then the load goes on for
//! `--duration` seconds (default 3600) and the RSS slope over that window
//! (least squares, in % of the mean per hour; also over its second half,
//! which tells memory that settles from memory that keeps growing) and the
//! descriptor range are printed. Targets: slope ≤ 1 %/h, descriptors flat. `--quick` is a
//! 3-minute smoke run (no wait for the ring).
//!
//! Anonymous memory is printed beside RSS, split into the main heap
//! (`[heap]`) and the other anonymous mappings (thread arenas and stacks),
//! and `--without pings,listings,sessions,cuts,restarts` leaves loads out:
//! together they tell which load a growth follows. To see what grows, attach
//! `heaptrack -p <pid>` (the pid is printed) after the warm-up: what it
//! reports as leaked at the end was allocated in the measured window and
//! never freed.

use serde_json::json;
use std::cell::Cell;
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};
use volt_plane::{PlaneConfig, SessionEvent};

struct Sample {
    at: f64,
    rss_kib: u64,
    /// Private memory (heap, stacks): what a leak would grow. The rest of
    /// RSS is file pages of the binary, mapped as code runs for the first
    /// time.
    anon_kib: u64,
    /// Of which in the main heap (`[heap]`, glibc's main arena); the rest
    /// is anonymous mappings: thread arenas, thread stacks, large blocks.
    heap_kib: u64,
    fds: usize,
    threads: u64,
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Anonymous KiB of the `[heap]` mapping (from `/proc/<pid>/smaps`).
fn heap_anon(pid: u32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut in_heap = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Anonymous:") {
            if in_heap {
                kib += v
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            in_heap = line.ends_with("[heap]");
        }
    }
    kib
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The voltd binary the soak runs: `BENCH_VOLTD` if set (a copy that a
/// rebuild cannot replace under a profiler), else the one cargo built.
fn voltd_bin() -> std::ffi::OsString {
    std::env::var_os("BENCH_VOLTD").unwrap_or_else(|| env!("CARGO_BIN_EXE_voltd").into())
}

/// Whether the daemon's supervisor log ring is full: its newest record's
/// sequence number (from `voltd logs`) has reached the ring's capacity.
async fn log_ring_full(config: &std::path::Path) -> bool {
    let Ok(out) = tokio::process::Command::new(voltd_bin())
        .arg("--config")
        .arg(config)
        .args(["logs", "--tail", "1", "--json"])
        .output()
        .await
    else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["seq"].as_u64())
        .is_some_and(|seq| seq >= voltd_actors::events::DEFAULT_RING_CAPACITY as u64)
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

fn arg(args: &[String], name: &str) -> Option<u64> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let duration =
        Duration::from_secs(arg(&args, "--duration").unwrap_or(if quick { 120 } else { 3600 }));
    let warmup =
        Duration::from_secs(arg(&args, "--warmup").unwrap_or(if quick { 60 } else { 600 }));
    let session_every = Duration::from_secs(arg(&args, "--session-every").unwrap_or(3));
    let sample_every =
        Duration::from_secs(arg(&args, "--sample").unwrap_or(if quick { 10 } else { 30 }));
    // `--without pings,listings,sessions,cuts,restarts`: loads left out
    // (to find which one a growth follows).
    let without: Vec<String> = args
        .iter()
        .position(|a| a == "--without")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    const LOADS: [&str; 5] = ["pings", "listings", "sessions", "cuts", "restarts"];
    if let Some(bad) = without.iter().find(|w| !LOADS.contains(&w.as_str())) {
        eprintln!("--without: unknown load {bad:?} (one of {LOADS:?})");
        std::process::exit(2);
    }
    let left_out = without.clone();
    let with = move |load: &str| !left_out.iter().any(|w| w == load);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let plane = volt_plane::start(PlaneConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            daemon_wait: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .expect("plane");
        let created = plane.create_cluster(Default::default()).await.expect("cluster");
        let id = created.team_cluster.id.clone();
        let (services, notes) = voltd::standins::services_config().expect("ports");
        for n in notes {
            println!("{n}");
        }
        // The terminal runs shells as a dedicated account, as on a host
        // (the tests' account when root; this user, allowed explicitly,
        // otherwise), started by voltd's helper thread.
        let term = testkit::daemon::test_terminal("/bin/sh");
        let config = dir.path().join("voltd.toml");
        std::fs::write(
            &config,
            format!(
                "cloud_url = \"{}\"\nteam_cluster_id = \"{id}\"\nstate_dir = \"{}\"\nlog_level = \"warn\"\n\
                 [terminal]\nshell = \"/bin/sh\"\nuser = \"{}\"\nallow_daemon_user = {}\nhelper_socket = \"{}\"\n{services}",
                plane.base_url(),
                dir.path().join("state").display(),
                term.user.as_str(),
                term.allow_daemon_user,
                term.helper_socket.display(),
            ),
        )
        .expect("config");
        let mut daemon = tokio::process::Command::new(voltd_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("TEAM_CLUSTER_DAEMON_PASSWORD", &created.daemon_password)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("voltd runs");
        let pid = daemon.id().expect("pid");
        let t = Instant::now();
        loop {
            let ready = plane.request(&id, "runtime.services.status", json!({}), None).await;
            if let Ok((200, v)) = &ready
                && ["redis", "mongo", "minio"]
                    .iter()
                    .all(|s| v["services"][s]["state"] == "healthy")
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "services did not become healthy: {ready:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "soak: voltd pid {pid} with its services up; {} s, warm-up {} s, a sample every {} s",
            duration.as_secs(),
            warmup.as_secs(),
            sample_every.as_secs()
        );

        let plane = Rc::new(plane);
        let stop = Rc::new(Cell::new(false));
        let counts: Rc<[Cell<u64>; 6]> = Rc::new(Default::default());
        // [pings ok, pings failed, terminal sessions, reconnects, service restarts, listings]
        let bump = |c: &Rc<[Cell<u64>; 6]>, i: usize| c[i].set(c[i].get() + 1);

        let mut tasks = Vec::new();
        if with("pings") {
            let (plane, id, stop, counts) = (plane.clone(), id.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                while !stop.get() {
                    tick.tick().await;
                    match plane.request(&id, "runtime.ping", json!({}), Some(Duration::from_secs(10))).await {
                        Ok((200, _)) => bump(&counts, 0),
                        _ => bump(&counts, 1),
                    }
                }
            }));
        }
        if with("listings") {
            let (plane, id, stop, counts) = (plane.clone(), id.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut n = 0u64;
                while !stop.get() {
                    n += 1;
                    if n.is_multiple_of(5) {
                        let _ = plane.request(&id, "runtime.services.status", json!({}), None).await;
                    }
                    if let Ok((200, _)) = plane
                        .request(&id, "remote.explorer.list", json!({"target": "redis-data", "path": "db/0"}), None)
                        .await
                    {
                        bump(&counts, 5);
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }));
        }
        if with("sessions") {
            let (plane, id, stop, counts) = (plane.clone(), id.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::task::spawn_local(async move {
                while !stop.get() {
                    tokio::time::sleep(session_every).await;
                    let Ok(mut s) = plane.attach_host_terminal(&id).await else {
                        continue;
                    };
                    if s.send_input(b"head -c 262144 /dev/zero | tr '\\0' a; exit 0\n", false).await.is_err() {
                        continue;
                    }
                    let done = tokio::time::timeout(Duration::from_secs(30), async {
                        loop {
                            match s.recv().await {
                                SessionEvent::Data { .. } => {}
                                SessionEvent::End(_) => return true,
                                _ => return false,
                            }
                        }
                    })
                    .await;
                    if matches!(done, Ok(true)) {
                        bump(&counts, 2);
                    }
                }
            }));
        }
        if with("cuts") {
            let (plane, id, stop, counts) = (plane.clone(), id.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::task::spawn_local(async move {
                while !stop.get() {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    if plane.disconnect_daemon(&id).await {
                        bump(&counts, 3);
                    }
                }
            }));
        }
        if with("restarts") {
            let (plane, id, stop, counts) = (plane.clone(), id.clone(), stop.clone(), counts.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut n = 0usize;
                while !stop.get() {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    let service = ["redis", "mongo", "minio"][n % 3];
                    n += 1;
                    if let Ok((200, _)) = plane
                        .request(&id, "runtime.services.restart", json!({"service": service}), None)
                        .await
                    {
                        bump(&counts, 4);
                    }
                }
            }));
        }

        let start = Instant::now();
        let mut samples: Vec<Sample> = Vec::new();
        // The warm-up ends once the supervisor log's ring is full (and not
        // before `--warmup`); the measured window follows it.
        let mut warm_at: Option<f64> = None;
        println!("{:>7} {:>10} {:>5} {:>8} {:>9} {:>6} {:>9} {:>10} {:>9} {:>8}",
            "t (s)", "RSS (KiB)", "fds", "threads", "pings", "fails", "sessions", "reconnects", "restarts", "listings");
        println!("[anonymous KiB: all / of which in the main heap]{}", if without.is_empty() { String::new() } else { format!("; without {}", without.join(",")) });
        while warm_at.is_none_or(|w| start.elapsed().as_secs_f64() < w + duration.as_secs_f64()) {
            tokio::time::sleep(sample_every).await;
            assert!(matches!(daemon.try_wait(), Ok(None)), "voltd exited during the soak");
            let s = Sample {
                at: start.elapsed().as_secs_f64(),
                rss_kib: proc_status(pid, "VmRSS:"),
                anon_kib: proc_status(pid, "RssAnon:"),
                heap_kib: heap_anon(pid),
                fds: fds(pid),
                threads: proc_status(pid, "Threads:"),
            };
            println!(
                "{:>7.0} {:>10} {:>5} {:>8} {:>9} {:>6} {:>9} {:>10} {:>9} {:>8} [{} / {}]",
                s.at, s.rss_kib, s.fds, s.threads,
                counts[0].get(), counts[1].get(), counts[2].get(), counts[3].get(), counts[4].get(), counts[5].get(),
                s.anon_kib, s.heap_kib
            );
            if warm_at.is_none() && s.at >= warmup.as_secs_f64() && (quick || log_ring_full(&config).await) {
                println!("warm-up over at {:.0} s: the supervisor log's ring is full; measuring {} s", s.at, duration.as_secs());
                warm_at = Some(s.at);
            }
            samples.push(s);
        }
        stop.set(true);
        for t in tasks {
            t.abort();
        }
        let warm = warm_at.unwrap_or(0.0);
        let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm).collect();
        if after.len() >= 2 {
            let xs: Vec<f64> = after.iter().map(|s| s.at / 3600.0).collect();
            let ys: Vec<f64> = after.iter().map(|s| s.rss_kib as f64).collect();
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            let per_hour = slope(&xs, &ys);
            let anon: Vec<f64> = after.iter().map(|s| s.anon_kib as f64).collect();
            let anon_mean = anon.iter().sum::<f64>() / anon.len() as f64;
            let anon_per_hour = slope(&xs, &anon);
            let heap: Vec<f64> = after.iter().map(|s| s.heap_kib as f64).collect();
            let heap_per_hour = slope(&xs, &heap);
            // A memory that settles rises early in the window and then stays:
            // the second half's slope tells a plateau from a steady growth.
            let half = after.len() / 2;
            let late_rss = slope(&xs[half..], &ys[half..]);
            let late_anon = slope(&xs[half..], &anon[half..]);
            let fd_min = after.iter().map(|s| s.fds).min().unwrap_or(0);
            let fd_max = after.iter().map(|s| s.fds).max().unwrap_or(0);
            let th_min = after.iter().map(|s| s.threads).min().unwrap_or(0);
            let th_max = after.iter().map(|s| s.threads).max().unwrap_or(0);
            println!(
                "after {:.0} s of warm-up, {:.0} s measured ({} samples): RSS mean {:.1} MiB, slope {:+.1} KiB/h = {:+.2} %/h (target ≤ 1 %/h); fds {}..{}; threads {}..{}",
                warm,
                after.last().map_or(0.0, |s| s.at) - warm,
                after.len(),
                mean / 1024.0,
                per_hour,
                per_hour / mean * 100.0,
                fd_min,
                fd_max,
                th_min,
                th_max
            );
            println!(
                "anonymous memory: mean {:.1} MiB, slope {:+.1} KiB/h = {:+.2} %/h (main heap {:+.1} KiB/h, other mappings {:+.1} KiB/h)",
                anon_mean / 1024.0,
                anon_per_hour,
                anon_per_hour / anon_mean * 100.0,
                heap_per_hour,
                anon_per_hour - heap_per_hour
            );
            println!(
                "second half of the window: RSS slope {:+.1} KiB/h = {:+.2} %/h, anonymous {:+.1} KiB/h = {:+.2} %/h",
                late_rss,
                late_rss / mean * 100.0,
                late_anon,
                late_anon / anon_mean * 100.0
            );
        }
        println!(
            "load: {} pings ({} failed, during reconnects), {} terminal sessions, {} reconnects, {} service restarts, {} keyspace listings",
            counts[0].get(), counts[1].get(), counts[2].get(), counts[3].get(), counts[4].get(), counts[5].get()
        );
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let _ = daemon.wait().await;
        if let Ok(p) = Rc::try_unwrap(plane) {
            p.shutdown().await;
        }
    });
}
