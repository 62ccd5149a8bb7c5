//! Remote-access benchmark (not a test): `cargo bench --bench remote`.
//!
//! The release `voltd` runs as its own process with its managed services
//! (real servers where installed, else the stand-ins of
//! `.ci/install-services`), driven through an in-process volt-plane:
//! * terminal throughput: `cat` of a 100 MB file through `session-data`;
//! * explorer latency: listing a Redis keyspace of 10,000 keys, opening a
//!   1 MB object (node preview) and fetching it whole (`object.get`).
//!
//! `-- --quick` uses 20 MB and fewer rounds. Target: ≥ 50 MB/s terminal.
//! `BENCH_VOLTD=path` runs another voltd binary (to compare builds).

use serde_json::json;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use volt_plane::{PlaneConfig, SessionEvent};

const REDIS_PASSWORD: &str = "bench-redis-password";
const S3_USER: &str = "benchaccess";
const S3_PASSWORD: &str = "bench-s3-secret";

/// utime + stime of a process, in seconds (USER_HZ = 100).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn time_n<F, Fut>(n: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let file_bytes: usize = if quick { 20_000_000 } else { 100_000_000 };
    let rounds = if quick { 20 } else { 100 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let plane = volt_plane::start(PlaneConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            stream_buffer_limit: 64 << 20,
            session_buffer_limit: 64 << 20,
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
        let config = dir.path().join("voltd.toml");
        // Shells run as a terminal account, as on a host (the tests'
        // account when root; this user, allowed explicitly, otherwise).
        let term = testkit::daemon::test_terminal("/bin/sh");
        let mut text = format!(
            "cloud_url = \"{}\"\nteam_cluster_id = \"{id}\"\nstate_dir = \"{}\"\nlog_level = \"warn\"\n\
             [terminal]\nshell = \"/bin/sh\"\nuser = \"{}\"\nallow_daemon_user = {}\nhelper_socket = \"{}\"\n{services}",
            plane.base_url(),
            dir.path().join("state").display(),
            term.user.as_str(),
            term.allow_daemon_user,
            term.helper_socket.display(),
        );
        text = text.replace("[services.redis]\n", &format!("[services.redis]\nuser = \"bench\"\npassword = \"{REDIS_PASSWORD}\"\n"));
        text = text.replace("[services.minio]\n", &format!("[services.minio]\nuser = \"{S3_USER}\"\npassword = \"{S3_PASSWORD}\"\n"));
        std::fs::write(&config, &text).expect("config");
        let port_of = |svc: &str| -> u16 {
            text.split(&format!("[services.{svc}]\n"))
                .nth(1)
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("port = ")))
                .and_then(|p| p.trim().parse().ok())
                .expect("port")
        };
        let (redis_port, minio_port) = (port_of("redis"), port_of("minio"));

        let mut daemon = tokio::process::Command::new(
            std::env::var_os("BENCH_VOLTD").unwrap_or_else(|| env!("CARGO_BIN_EXE_voltd").into()),
        )
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("TEAM_CLUSTER_DAEMON_PASSWORD", &created.daemon_password)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("voltd runs");
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
            assert!(t.elapsed() < Duration::from_secs(90), "services did not become healthy: {ready:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("voltd and its services are up ({:.1} s)", t.elapsed().as_secs_f64());
        let rss = |pid: u32| -> f64 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        tokio::time::sleep(Duration::from_secs(if quick { 5 } else { 30 })).await;
        println!(
            "voltd RSS while supervising and probing its three services: {:.1} MiB",
            rss(daemon.id().expect("pid"))
        );

        // Terminal: cat of a big file with no newlines (so the tty adds
        // nothing) through session-data.
        // In a directory the terminal account can read (the work
        // directory is private to this user).
        let shared = tempfile::Builder::new().prefix("voltd-bench-").tempdir().expect("dir");
        std::fs::set_permissions(shared.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let file = shared.path().join("big.txt");
        {
            let mut f = std::fs::File::create(&file).expect("file");
            let block = vec![b'a'; 1 << 20];
            let mut left = file_bytes;
            while left > 0 {
                let n = left.min(block.len());
                f.write_all(&block[..n]).expect("write");
                left -= n;
            }
        }
        let mut session = plane.attach_host_terminal(&id).await.expect("attach");
        session.send_input(b"stty -echo\n", false).await.expect("input");
        tokio::time::sleep(Duration::from_millis(500)).await;
        while let Ok(SessionEvent::Data { .. }) =
            tokio::time::timeout(Duration::from_millis(200), session.recv()).await
        {}
        let daemon_pid = daemon.id().expect("pid");
        let cpu0 = (cpu_seconds(daemon_pid), cpu_seconds(std::process::id()));
        let start = Instant::now();
        session
            .send_input(format!("cat {}\n", file.display()).as_bytes(), false)
            .await
            .expect("input");
        let mut received = 0usize;
        while received < file_bytes {
            match session.recv().await {
                SessionEvent::Data { bytes, .. } => {
                    received += bytes.iter().filter(|b| **b == b'a').count();
                }
                other => panic!("terminal ended early: {other:?}"),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let (daemon_cpu, plane_cpu) = (
            cpu_seconds(daemon_pid) - cpu0.0,
            cpu_seconds(std::process::id()) - cpu0.1,
        );
        println!(
            "terminal: cat of {} MB in {secs:.2} s → {:.1} MB/s (CPU: voltd {daemon_cpu:.2} s, plane + reader {plane_cpu:.2} s)",
            file_bytes / 1_000_000,
            file_bytes as f64 / 1e6 / secs
        );
        let _ = session.detach();

        // Redis keyspace of 10,000 keys.
        let client = redis::Client::open(format!("redis://bench:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"))
            .expect("redis url");
        let mut con = client.get_multiplexed_async_connection().await.expect("redis");
        for chunk in 0..10 {
            let mut pipe = redis::pipe();
            for i in 0..1000 {
                pipe.cmd("SET").arg(format!("bench:key:{}", chunk * 1000 + i)).arg(i).ignore();
            }
            pipe.query_async::<()>(&mut con).await.expect("seed");
        }
        let (p50, p99) = time_n(rounds, || async {
            let (status, v) = plane
                .request(&id, "remote.explorer.list", json!({"target": "redis-data", "path": "db/0"}), None)
                .await
                .expect("list");
            assert_eq!(status, 200);
            // 200 keys, then the marker of a truncated listing.
            let entries = v.as_array().expect("an array");
            assert_eq!(entries.len(), 201);
            assert_eq!(entries[200]["type"], "truncated");
        })
        .await;
        println!("explorer: list a Redis keyspace of 10,000 keys (first 200) → p50 {} · p99 {}", ms(p50), ms(p99));

        // A 1 MB object.
        let creds = s3::creds::Credentials::new(Some(S3_USER), Some(S3_PASSWORD), None, None, None).expect("creds");
        let region = s3::Region::Custom {
            region: "us-east-1".into(),
            endpoint: format!("http://127.0.0.1:{minio_port}"),
        };
        let bucket = s3::Bucket::new("volt-dumps", region, creds).expect("bucket").with_path_style();
        let object: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        bucket.put_object("bench/1mb.txt", &object).await.expect("put");
        let (p50, p99) = time_n(rounds, || async {
            let (status, v) = plane
                .request(&id, "remote.explorer.node", json!({"target": "minio", "path": "volt-dumps/bench/1mb.txt"}), None)
                .await
                .expect("node");
            assert_eq!(status, 200);
            assert_eq!(v["textContent"].as_str().map(str::len), Some(65_536));
        })
        .await;
        println!("explorer: open a 1 MB object (64 KiB preview) → p50 {} · p99 {}", ms(p50), ms(p99));
        let (p50, p99) = time_n(rounds, || async {
            let stream = plane
                .open_stream(&id, "object.get", json!({"bucket": "volt-dumps", "objectKey": "bench/1mb.txt"}), None)
                .await
                .expect("get");
            let body = stream.collect().await.expect("body");
            assert_eq!(body.len(), 1_000_000);
        })
        .await;
        println!("objects: fetch the 1 MB object whole (object.get stream) → p50 {} · p99 {}", ms(p50), ms(p99));
        // The same object straight from the S3 server (rust-s3, as voltd
        // uses it): what of object.get's time is the S3 server's.
        let (p50, p99) = time_n(rounds, || async {
            let got = bucket.get_object("bench/1mb.txt").await.expect("direct get");
            assert_eq!(got.bytes().len(), 1_000_000);
        })
        .await;
        println!("objects: the same 1 MB straight from the S3 server (no voltd) → p50 {} · p99 {}", ms(p50), ms(p99));

        if let Some(pid) = daemon.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        let _ = daemon.wait().await;
        plane.shutdown().await;
    });
}
