//! `volt-loadgen`: plays N cluster daemons in one process against a VOLT
//! control plane, with the real protocol — enrollment over HTTP, one
//! socket.io WebSocket per daemon, `team-cluster-daemon:register`,
//! `runtime.heartbeat` every 10 s with a full, real-shaped metrics
//! snapshot, and answers to the plane's commands — and optionally drives
//! commands through the plane's person API at a fixed rate, measuring
//! their latency.
//!
//! ```text
//! export VOLT_PLANE_ADMIN_TOKEN=…        # to create the clusters
//! volt-loadgen --url http://127.0.0.1:8080 --daemons 10000 --state lg.json \
//!     --duration-secs 60 --command-rate 500
//! ```
//!
//! `--state` keeps the clusters' ids and daemon passwords (mode 0600), so
//! a second run reuses them (a cold start against a plane that knows them
//! already). The summary is one JSON object on stdout; progress goes to
//! stderr.

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use volt_protocol::engineio;
use volt_protocol::socketio::{self, PacketKind};
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, REGISTERED_EVENT};

/// Concurrent HTTP calls while creating and enrolling clusters.
const PROVISION_CONCURRENCY: usize = 32;
/// Pause before a daemon whose connection failed tries again (the
/// reference daemon starts at 500 ms).
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// Read buffer of each simulated daemon's WebSocket: frames are small, and
/// ten thousand 128 KiB defaults would be 1.2 GiB.
const WS_READ_BUFFER: usize = 8 * 1024;
/// Heartbeat periods are spread ±10 % (the SDK's jitter), so ten thousand
/// daemons started together do not beat in lockstep forever.
const HEARTBEAT_JITTER: f64 = 0.1;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "volt-loadgen",
    about = "Play N VOLT cluster daemons against a control plane"
)]
struct Args {
    /// Base URL of the plane.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Daemons to play.
    #[arg(long, default_value_t = 100)]
    daemons: usize,
    /// File keeping the clusters' credentials between runs (0600).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Create and enroll the clusters, save them, and exit.
    #[arg(long)]
    provision_only: bool,
    /// Heartbeat period.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// How long to run once every daemon registered (0: until Ctrl-C).
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Commands per second sent through the plane's HTTP API
    /// (`runtime.ping`, to daemons picked in turn); 0: none.
    #[arg(long, default_value_t = 0.0)]
    command_rate: f64,
    /// Start the command driver this many seconds after every daemon
    /// registered (it then runs until the end).
    #[arg(long, default_value_t = 0)]
    command_after_secs: u64,
    /// Daemons connecting at the same time.
    #[arg(long, default_value_t = 1_000)]
    connect_concurrency: usize,
    /// Give up if not every daemon registered within this many seconds.
    #[arg(long, default_value_t = 120)]
    register_timeout_secs: u64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cred {
    id: String,
    password: String,
}

#[derive(Default)]
struct Stats {
    registered: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeats_ok: AtomicU64,
    heartbeats_failed: AtomicU64,
    commands_answered: AtomicU64,
    disconnects: AtomicU64,
    errors_logged: AtomicU64,
}

fn token() -> Option<String> {
    std::env::var("VOLT_PLANE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
}

fn load_state(path: Option<&Path>) -> Vec<Cred> {
    path.and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(path: &Path, creds: &[Cred]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(creds).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

/// Creates and enrolls `n` clusters.
async fn provision(http: &reqwest::Client, base: &str, n: usize) -> Result<Vec<Cred>, String> {
    let token = token().ok_or("set VOLT_PLANE_ADMIN_TOKEN to create clusters")?;
    let made = AtomicU64::new(0);
    let results: Vec<Result<Cred, String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (http, token, made) = (http, &token, &made);
            async move {
                let r: Value = http
                    .post(format!("{base}/api/clusters"))
                    .bearer_auth(token)
                    .json(&json!({ "name": format!("loadgen-{i:05}") }))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let id = r["data"]["teamCluster"]["_id"]
                    .as_str()
                    .ok_or_else(|| format!("create failed: {r}"))?
                    .to_owned();
                let enroll_token = r["data"]["enrollmentToken"].as_str().unwrap_or_default();
                let h: Value = http
                    .post(format!("{base}/api/team-clusters/{id}/healthcheck"))
                    .json(&json!({"enrollmentToken": enroll_token, "installedVersion": "1.0.0"}))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let password = h["data"]["daemonPassword"]
                    .as_str()
                    .ok_or_else(|| format!("enrollment failed: {h}"))?
                    .to_owned();
                let done = made.fetch_add(1, Ordering::Relaxed) + 1;
                if done % 1000 == 0 {
                    eprintln!("volt-loadgen: {done}/{n} clusters created and enrolled");
                }
                Ok(Cred { id, password })
            }
        })
        .buffer_unordered(PROVISION_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A real-shaped metrics snapshot (protocol §3.1: every field).
fn metrics(i: usize, beat: u64) -> Value {
    let wave = ((beat as f64 / 6.0) + i as f64).sin().abs();
    let cpu = (10.0 + 60.0 * wave).round();
    let total: u64 = 16 << 30;
    let used = total / 3 + (wave * 1e9) as u64;
    let disk_total: u64 = 500 << 30;
    let disk_used = disk_total / 2;
    json!({
        "timestamp": volt_plane::Timestamp::now(),
        "hostname": format!("loadgen-{i:05}"),
        "uptimeSeconds": 3600 + beat * 10,
        "cpuUsagePercent": cpu,
        "cpuLoadAverage": [wave * 2.0, wave * 1.5, wave],
        "cpuPerCoreUsagePercent": [cpu, (cpu * 0.8).round()],
        "memory": {"totalBytes": total, "freeBytes": total - used, "usedBytes": used,
                   "usagePercent": (used as f64 * 100.0 / total as f64).round()},
        "disk": {"totalBytes": disk_total, "freeBytes": disk_total - disk_used, "usedBytes": disk_used,
                 "usagePercent": 50},
        "diskOperations": {"readMegabytesPerSecond": (wave * 5.0 * 100.0).round() / 100.0,
                           "writeMegabytesPerSecond": (wave * 2.0 * 100.0).round() / 100.0,
                           "readIOPS": (wave * 80.0).round(), "writeIOPS": (wave * 30.0).round(),
                           "totalIOPS": (wave * 110.0).round()},
        "network": {"incomingKilobytesPerSecond": (wave * 120.0 * 10.0).round() / 10.0,
                    "outgoingKilobytesPerSecond": (wave * 40.0 * 10.0).round() / 10.0,
                    "totalKilobytesPerSecond": (wave * 160.0 * 10.0).round() / 10.0,
                    "receivedBytes": beat * 1_000_000, "sentBytes": beat * 300_000},
        "cloudLatencyMs": 1,
        "connectedToCloud": true
    })
}

/// The reply to one server→daemon command.
fn answer(cmd: &Value, i: usize) -> Value {
    let request_id = &cmd["requestId"];
    let ok = |data: Value| {
        json!({"type": "response", "requestId": request_id, "ok": true, "status": 200,
               "data": {"status": "success", "data": data}})
    };
    match cmd["command"].as_str().unwrap_or_default() {
        "runtime.ping" => ok(json!({"pong": true, "version": "loadgen", "pid": i})),
        // Accepted: the next heartbeat reports 1.0.0, which completes an
        // update to 1.0.0 (how the benchmark shows a live status change).
        "runtime.update" => ok(json!({"accepted": true})),
        "runtime.services.status" => ok(json!({"services": {
            "redis": {"state": "healthy", "mode": "native", "restarts": 0, "probeLatencyMs": 0.4,
                      "stats": {"connectedClients": 3, "usedMemoryBytes": 1_048_576, "opsPerSecond": 12, "totalCommands": 1000}},
            "mongo": {"state": "healthy", "mode": "native", "restarts": 0, "probeLatencyMs": 0.9,
                      "stats": {"connections": 5, "availableConnections": 800, "queries": 42}}
        }})),
        "remote.explorer.list" => ok(json!([
            {"id": "db/0", "name": "db0", "path": "db/0", "type": "redis-database", "size": null, "updatedAt": null, "description": "1 keys"}
        ])),
        other => json!({"type": "response", "requestId": request_id, "ok": false, "status": 404,
                        "message": format!("Unknown daemon command: {other}")}),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send_event(ws: &mut Ws, event: &str, arg: &Value, ack: Option<u64>) -> Result<(), String> {
    let p = socketio::encode_event("/", ack, event, arg).map_err(|e| e.to_string())?;
    ws.send(WsMessage::text(engineio::message_frame(&p)))
        .await
        .map_err(|e| e.to_string())
}

/// What every simulated daemon shares.
struct Shared {
    url: String,
    args: Args,
    stats: Stats,
    /// Bounds the daemons connecting at the same time.
    gate: tokio::sync::Semaphore,
}

/// One connection's life: connect, register, beat and answer until the
/// connection drops (→ `Err`) or `stop` flips. `registered` says whether
/// it got as far as registering.
async fn session(
    shared: &Shared,
    i: usize,
    cred: &Cred,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    registered: &mut bool,
) -> Result<(), String> {
    let Shared {
        url,
        args,
        stats,
        gate,
    } = shared;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = WS_READ_BUFFER;
    config.write_buffer_size = 0;
    let mut ws = {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| e.to_string())?;
        // Engine.IO open, then the socket.io CONNECT and its answer.
        let open = next_text(&mut ws).await.ok_or("closed before open")?;
        if !matches!(
            engineio::Packet::decode(&open),
            Ok(engineio::Packet::Open(_))
        ) {
            return Err(format!("expected an open packet, got {open}"));
        }
        ws.send(WsMessage::text(engineio::message_frame(
            &socketio::encode_connect("/", None),
        )))
        .await
        .map_err(|e| e.to_string())?;
        // Events sent before the namespace CONNECT is answered may be
        // dropped: wait for it, as socket.io clients do.
        // The server's first ping may come first: answer it, or the
        // server closes the session a ping timeout later.
        loop {
            let text = next_text(&mut ws).await.ok_or("closed before connect")?;
            match engineio::Packet::decode(&text) {
                Ok(engineio::Packet::Message(m))
                    if socketio::Packet::decode(m).is_ok_and(|p| p.kind == PacketKind::Connect) =>
                {
                    break;
                }
                Ok(engineio::Packet::Ping(d)) => {
                    ws.send(WsMessage::text(engineio::pong_for(d)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                _ => {}
            }
        }
        send_event(
            &mut ws,
            REGISTER_EVENT,
            &json!({"teamClusterId": cred.id, "daemonPassword": cred.password}),
            Some(0),
        )
        .await?;
        ws
    };
    stats.connects.fetch_add(1, Ordering::Relaxed);
    *registered = false;
    let period = Duration::from_millis(args.heartbeat_ms.max(1));
    let mut next_beat: Option<tokio::time::Instant> = None;
    let mut beat = 0u64;
    let mut pending_beats: std::collections::HashSet<String> = Default::default();
    loop {
        let sleep_until =
            next_beat.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            _ = tokio::time::sleep_until(sleep_until), if next_beat.is_some() => {
                beat += 1;
                let request_id = format!("hb-{i}-{beat}");
                send_event(&mut ws, MESSAGE_EVENT, &json!({
                    "type": "command", "requestId": request_id, "command": "runtime.heartbeat",
                    "responseType": "json",
                    "payload": {"teamClusterId": cred.id, "daemonPassword": cred.password,
                                "installedVersion": "1.0.0", "metrics": metrics(i, beat)}
                }), None).await?;
                pending_beats.insert(request_id);
                stats.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                let jitter = 1.0 + HEARTBEAT_JITTER * (2.0 * rand::random::<f64>() - 1.0);
                next_beat = Some(tokio::time::Instant::now() + period.mul_f64(jitter));
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None => return Err("connection closed".into()),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(_)) => continue,
                };
                match engineio::Packet::decode(&text) {
                    Ok(engineio::Packet::Ping(d)) => {
                        ws.send(WsMessage::text(engineio::pong_for(d))).await.map_err(|e| e.to_string())?;
                    }
                    Ok(engineio::Packet::Message(m)) => {
                        let Ok(p) = socketio::Packet::decode(m) else { continue };
                        match p.kind {
                            PacketKind::Event => {
                                let Ok((name, sargs)) = p.event() else { continue };
                                let arg: Value = sargs.first().and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or(Value::Null);
                                if name == REGISTERED_EVENT && !*registered {
                                    *registered = true;
                                    stats.registered.fetch_add(1, Ordering::Relaxed);
                                    // The first heartbeat right away, as the reference daemon does.
                                    next_beat = Some(tokio::time::Instant::now());
                                } else if name == MESSAGE_EVENT {
                                    match arg["type"].as_str() {
                                        Some("command") => {
                                            send_event(&mut ws, MESSAGE_EVENT, &answer(&arg, i), None).await?;
                                            stats.commands_answered.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Some("response") => {
                                            if let Some(id) = arg["requestId"].as_str()
                                                && pending_beats.remove(id)
                                            {
                                                if arg["ok"] == true {
                                                    stats.heartbeats_ok.fetch_add(1, Ordering::Relaxed);
                                                } else {
                                                    stats.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
                                                }
                                            }
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            PacketKind::Ack => {
                                let ok = p.args().ok().and_then(|a| a.first().map(|r| r.get().contains("\"ok\":true")));
                                if ok == Some(false) {
                                    return Err("registration refused".into());
                                }
                            }
                            PacketKind::Disconnect => return Err("disconnected by the server".into()),
                            _ => {}
                        }
                    }
                    Ok(engineio::Packet::Close) => return Err("engine.io close".into()),
                    _ => {}
                }
            }
        }
    }
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(WsMessage::Text(t)) => return Some(t.to_string()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn daemon(
    shared: Arc<Shared>,
    i: usize,
    cred: Cred,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let stats = &shared.stats;
    loop {
        let mut registered = false;
        match session(&shared, i, &cred, &mut stop, &mut registered).await {
            Ok(()) => return,
            Err(e) => {
                if *stop.borrow() {
                    return;
                }
                if registered {
                    stats.disconnects.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
                let seen = stats.errors_logged.fetch_add(1, Ordering::Relaxed);
                if seen < 5 {
                    eprintln!("volt-loadgen: daemon {i}: {e}");
                }
                if e == "registration refused" {
                    eprintln!("volt-loadgen: daemon {i} ({}): {e}", cred.id);
                    return;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

/// Sends `runtime.ping` through the plane's HTTP API at `rate` per second
/// until `stop`, to the daemons in turn; returns latencies (µs) and errors.
async fn drive_commands(
    base: String,
    ids: Vec<String>,
    rate: f64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<u64>, u64) {
    let http = match token() {
        Some(t) => volt_plane_client(&t),
        None => return (Vec::new(), 0),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<u64>>();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                let id = &ids[n % ids.len()];
                n += 1;
                let (http, tx) = (http.clone(), tx.clone());
                let url = format!("{base}/api/clusters/{id}/commands");
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let r = http.post(url).json(&json!({"command": "runtime.ping", "payload": {}})).send().await;
                    let ok = match r {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|v| v["data"]["ok"] == true),
                        _ => false,
                    };
                    let _ = tx.send(ok.then(|| t0.elapsed().as_micros() as u64));
                });
            }
        }
    }
    drop(tx);
    let mut lat = Vec::new();
    let mut errors = 0;
    while let Some(r) = rx.recv().await {
        match r {
            Some(us) => lat.push(us),
            None => errors += 1,
        }
    }
    (lat, errors)
}

fn volt_plane_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(256)
        .build()
        .unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Raises the open-file limit to its hard maximum: every daemon is a
/// socket, and the usual soft limit (1024) is far below 10,000.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        eprintln!("volt-loadgen: cannot raise the open-file limit from {soft}: {e}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    raise_nofile();
    let base = args.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let mut creds = load_state(args.state.as_deref());
    if creds.len() < args.daemons {
        let missing = args.daemons - creds.len();
        eprintln!("volt-loadgen: creating and enrolling {missing} clusters on {base}");
        match provision(&http, &base, missing).await {
            Ok(mut more) => creds.append(&mut more),
            Err(e) => {
                eprintln!("volt-loadgen: {e}");
                return ExitCode::from(1);
            }
        }
        if let Some(p) = &args.state
            && let Err(e) = save_state(p, &creds)
        {
            eprintln!("volt-loadgen: cannot write {}: {e}", p.display());
            return ExitCode::from(1);
        }
    }
    creds.truncate(args.daemons);
    if args.provision_only {
        println!("{}", json!({"provisioned": creds.len()}));
        return ExitCode::SUCCESS;
    }

    let ws_url = format!(
        "{}{}?{}",
        base.replacen("http", "ws", 1),
        volt_protocol::SOCKET_IO_PATH,
        volt_protocol::SOCKET_IO_QUERY
    );
    let shared = Arc::new(Shared {
        url: ws_url,
        args: (*args).clone(),
        stats: Stats::default(),
        gate: tokio::sync::Semaphore::new(args.connect_concurrency.max(1)),
    });
    let stats = &shared.stats;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(creds.len());
    for (i, cred) in creds.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(daemon(
            shared.clone(),
            i,
            cred,
            stop_rx.clone(),
        )));
    }
    let n = creds.len() as u64;
    let deadline = started + Duration::from_secs(args.register_timeout_secs);
    let mut last_report = Instant::now();
    while stats.registered.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            eprintln!(
                "volt-loadgen: only {}/{n} registered after {} s",
                stats.registered.load(Ordering::Relaxed),
                args.register_timeout_secs
            );
            let _ = stop_tx.send(true);
            return ExitCode::from(2);
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "volt-loadgen: {}/{n} registered after {:.1} s",
                stats.registered.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_registered = started.elapsed();
    eprintln!(
        "volt-loadgen: all {n} registered after {:.2} s",
        all_registered.as_secs_f64()
    );

    // The command driver stops first, so no command is cut off by its
    // daemon going away.
    let (stop_driver, driver_rx) = tokio::sync::watch::channel(false);
    let driver = (args.command_rate > 0.0).then(|| {
        let (base, ids, rate, after) = (
            base.clone(),
            creds.iter().map(|c| c.id.clone()).collect(),
            args.command_rate,
            Duration::from_secs(args.command_after_secs),
        );
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let started = Instant::now();
            let out = drive_commands(base, ids, rate, driver_rx).await;
            (out, started.elapsed())
        })
    });
    let run = Instant::now();
    if args.duration_secs == 0 {
        let _ = tokio::signal::ctrl_c().await;
    } else {
        tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    }
    let ran = run.elapsed();
    let _ = stop_driver.send(true);
    let ((mut lat, errors), drove) = match driver {
        Some(d) => d.await.unwrap_or_default(),
        None => ((Vec::new(), 0), Duration::ZERO),
    };
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    lat.sort_unstable();
    let s = stats;
    let summary = json!({
        "daemons": n,
        "allRegisteredSeconds": all_registered.as_secs_f64(),
        "runSeconds": ran.as_secs_f64(),
        "registered": s.registered.load(Ordering::Relaxed),
        "connects": s.connects.load(Ordering::Relaxed),
        "disconnects": s.disconnects.load(Ordering::Relaxed),
        "connectFailures": s.connect_failures.load(Ordering::Relaxed),
        "heartbeatsSent": s.heartbeats_sent.load(Ordering::Relaxed),
        "heartbeatsOk": s.heartbeats_ok.load(Ordering::Relaxed),
        "heartbeatsFailed": s.heartbeats_failed.load(Ordering::Relaxed),
        "commandsAnswered": s.commands_answered.load(Ordering::Relaxed),
        "httpCommands": {
            "ok": lat.len(),
            "errors": errors,
            "seconds": drove.as_secs_f64(),
            "perSecond": lat.len() as f64 / drove.as_secs_f64().max(1e-9),
            "p50Ms": percentile(&lat, 0.50),
            "p99Ms": percentile(&lat, 0.99),
            "maxMs": lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
        },
    });
    println!("{summary}");
    ExitCode::SUCCESS
}
