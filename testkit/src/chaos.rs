//! Chaos scenarios, shared by the fast cases CI runs (`tests/it/chaos.rs`,
//! small counts) and the long run whose figures the README quotes
//! (`benches/chaos.rs`, run by `scripts/chaos.sh`). Each scenario checks its
//! invariants as it goes — a violation panics and says what broke — and
//! returns its figures.
//!
//! | scenario | what is done | what must hold |
//! |---|---|---|
//! | [`service_kills`] | `kill -9` of each managed server, N times, while a client writes to Redis | back healthy every time; no acknowledged Redis write lost (AOF) |
//! | [`voltd_kills`] | the real `voltd` killed at random points (start-up and enrollment included), N times | enrolled exactly once; credentials always valid and 0600; registered again every time |
//! | [`plane_restarts`] | volt-plane stopped and started again from its data file, N times | re-registered every time, exactly once |
//! | [`partition`] | the daemon's network namespace cut off (`ip link set down`) for a while (root) | the plane shows `disconnected`; voltd back within 5 s of the heal |
//! | [`throttled_download`] | a 20 MB download over 1 Mbit/s + 200 ms each way (root) | no ping timeout, heartbeats on time |
//!
//! The random kill points come from a seeded generator: a run can be
//! repeated exactly (the seed is in the report).

use crate::daemon::{plane, plane_config};
use crate::netns::{DelayProxy, NetNs};
use crate::plane::{PersistentPlane, cluster, enrolled_cluster};
use crate::services::{Services, native_services, settings_with};
use crate::{eventually, free_port};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;
use volt_plane::{PlaneConfig, PlaneHandle};
use volt_protocol::ClusterStatus;
use voltd_actors::services::{ServiceRegistry, ServiceState};

/// How long a daemon may take to register after a (re)start or a heal on
/// a loaded 2-core machine before a scenario calls it a failure.
pub const REGISTER_WITHIN: Duration = Duration::from_secs(20);
/// How long a killed managed server may take to be healthy again
/// (SecantusDB, the MongoDB stand-in, needs a few seconds to start).
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

/// Durations and their summary.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    pub fn p50(&self) -> Duration {
        let v = self.sorted();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }
}

impl fmt::Display for Samples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} s, max {:.2} s (n = {})",
            self.p50().as_secs_f64(),
            self.max().as_secs_f64(),
            self.0.len()
        )
    }
}

/// xorshift64*: a few lines instead of a dependency, and runs repeat
/// exactly from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

// ---------------------------------------------------------------------------
// The real voltd binary.

/// A `voltd run` process; killed with SIGKILL when dropped.
pub struct Voltd {
    child: tokio::process::Child,
    pid: i32,
}

/// How to start `voltd run` against a plane.
#[derive(Debug, Clone)]
pub struct VoltdCmd {
    pub bin: PathBuf,
    pub cloud_url: String,
    pub cluster_id: String,
    pub state_dir: PathBuf,
    /// Environment (credentials: token or password).
    pub env: Vec<(String, String)>,
    /// More arguments after the usual ones.
    pub args: Vec<String>,
    /// Where its output goes (appended).
    pub log: PathBuf,
}

impl VoltdCmd {
    pub fn new(bin: &Path, cloud_url: &str, cluster_id: &str, work: &Path) -> VoltdCmd {
        VoltdCmd {
            bin: bin.to_path_buf(),
            cloud_url: cloud_url.to_owned(),
            cluster_id: cluster_id.to_owned(),
            state_dir: work.join("state"),
            env: Vec::new(),
            args: Vec::new(),
            log: work.join("voltd.log"),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts it (inside `netns` when given).
    pub fn spawn(&self, netns: Option<&NetNs>) -> Voltd {
        let mut c = match netns {
            Some(ns) => ns.command(&self.bin),
            None => tokio::process::Command::new(&self.bin),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the voltd log file");
        let log2 = log.try_clone().expect("the voltd log file");
        c.args(["run", "--cloud-url", &self.cloud_url])
            .args(["--cluster-id", &self.cluster_id])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--services", "none", "--log-level", "info"])
            .args(&self.args)
            .env_remove("TEAM_CLUSTER_DAEMON_PASSWORD")
            .env_remove("TEAM_CLUSTER_ENROLLMENT_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        let child = c.spawn().expect("voltd starts");
        let pid = child.id().expect("a pid") as i32;
        Voltd { child, pid }
    }
}

impl Voltd {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `kill -9`, and waits until it is gone.
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM; its exit code.
    pub async fn stop(mut self) -> Option<i32> {
        crate::process::signal(self.pid, crate::process::Signal::SIGTERM);
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("voltd stops within 20 s of SIGTERM")
            .ok()
            .and_then(|s| s.code())
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The last lines of a voltd log, for failure messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits until the plane has counted more than `before` registrations of
/// `id` (and a registered socket is there).
async fn registered_after(plane: &PlaneHandle, id: &str, before: u64, log: &Path) {
    let deadline = Instant::now() + REGISTER_WITHIN;
    loop {
        if plane
            .cluster(id)
            .is_some_and(|c| c.connected && c.registrations > before)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "voltd did not register within {REGISTER_WITHIN:?}; its log:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// voltd killed at random points.

/// The text frames a WebSocket client sent, from the bytes of its
/// connection (the HTTP upgrade request, then masked frames; RFC 6455
/// §5.2). Stops at the first incomplete frame.
pub fn client_ws_texts(bytes: &[u8]) -> Vec<String> {
    let Some(start) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut rest = &bytes[start + 4..];
    let mut texts = Vec::new();
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let masked = rest[1] & 0x80 != 0;
        let (len, mut at) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        let mut key = [0u8; 4];
        if masked {
            let Some(k) = rest.get(at..at + 4) else { break };
            key.copy_from_slice(k);
            at += 4;
        }
        let Some(payload) = rest.get(at..at + len) else {
            break;
        };
        if opcode == 1 {
            let text: Vec<u8> = payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            texts.push(String::from_utf8_lossy(&text).into_owned());
        }
        rest = &rest[at + len..];
    }
    texts
}

/// A network change while a connection attempt waits for its
/// registration: voltd runs in a namespace behind a 1.5 s link; once its
/// register event has left (the proxy read it), an address is added in the
/// namespace (an rtnetlink `RTM_NEWADDR`, as a DHCP renewal or an IPv6
/// address gives). The attempt, connected, must go on: the plane sees one
/// registration (a cancelled one would leave the server a second). Returns the plane's
/// registration count and voltd's log. Root only.
pub async fn network_change_while_registering(bin: &Path) -> (u64, String) {
    let ns = NetNs::create();
    let plane = crate::plane::start(plane_config()).await;
    let proxy = DelayProxy::start(
        (ns.host_ip, free_port()).into(),
        plane.addr(),
        Duration::from_millis(1500),
    )
    .await;
    let (created, password) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let work = tempfile::tempdir().expect("a work directory");
    let cmd = VoltdCmd::new(bin, &format!("http://{}", proxy.addr()), &id, work.path())
        .env("TEAM_CLUSTER_DAEMON_PASSWORD", &password);
    let v = cmd.spawn(Some(&ns));
    // The registration has left voltd (its answer is 3 s away).
    eventually(REGISTER_WITHIN, "the register event sent", async || {
        client_ws_texts(&proxy.client_bytes())
            .iter()
            .any(|t| t.contains(volt_protocol::REGISTER_EVENT))
            .then_some(())
    })
    .await;
    assert_eq!(
        plane.cluster(&id).map_or(0, |c| c.registrations),
        0,
        "registered before the change; the link is not slow enough"
    );
    ns.exec(&["ip", "addr", "add", "192.0.2.7/32", "dev", "lo"]);
    registered_after(&plane, &id, 0, &cmd.log).await;
    // Whatever a cancelled attempt left at the server would have arrived
    // by now: the first registration travelled the same delayed link.
    eventually(REGISTER_WITHIN, "the change logged", async || {
        log_tail(&cmd.log)
            .contains("The host's network changed")
            .then_some(())
    })
    .await;
    let registrations = plane.cluster(&id).map_or(0, |c| c.registrations);
    let log = log_tail(&cmd.log);
    v.stop().await;
    plane.shutdown().await;
    (registrations, log)
}

/// Figures of [`voltd_kills`].
#[derive(Debug, Clone)]
pub struct KillReport {
    pub seed: u64,
    /// Phase 1: fresh clusters, voltd killed while starting and enrolling.
    pub enroll_rounds: usize,
    /// … killed before the server took the token: enrolled on restart.
    pub before_enrollment: usize,
    /// … killed after the credentials were stored.
    pub after_credentials: usize,
    /// … killed in the one window no client can close: after the server
    /// consumed the single-use token, before the password reached the disk.
    /// The restart must then end with exit code 4 and say so.
    pub token_spent: usize,
    /// Start → credentials on disk, measured once (phase 1's kill range is
    /// 1.5 × this).
    pub enroll_time: Duration,
    /// Phase 2: one enrolled cluster, voltd killed at random points.
    pub rounds: usize,
    /// Restart → registered again (both phases).
    pub register: Samples,
}

impl fmt::Display for KillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "voltd kill -9 × {} during start-up/enrollment of fresh clusters (start → credentials stored {:.0} ms; killed before the token was taken: {}, after the credentials were stored: {}, in between (token spent, exit 4 on restart): {}) and × {} at random points of a running daemon (seed {}): never enrolled twice, credentials valid and 0600 after every kill, registered again every time; restart → registered {}",
            self.enroll_rounds,
            self.enroll_time.as_secs_f64() * 1000.0,
            self.before_enrollment,
            self.after_credentials,
            self.token_spent,
            self.rounds,
            self.seed,
            self.register
        )
    }
}

/// Checks the stored credentials after a kill: absent (enrollment not
/// done yet), or complete, 0600 and the cluster's password. Returns whether
/// they are there.
fn check_credentials(state: &Path, id: &str, password: &str) -> bool {
    let Some(stored) = crate::creds::try_stored_credentials(state) else {
        return false;
    };
    assert_eq!(stored.team_cluster_id, id);
    assert_eq!(
        stored.daemon_password.expose(),
        password,
        "the stored password is the cluster's"
    );
    true
}

/// A fresh cluster and a voltd command that enrolls it with its token.
async fn fresh_cluster(
    plane: &PlaneHandle,
    bin: &Path,
    work: &Path,
) -> (volt_plane::CreatedCluster, VoltdCmd) {
    let created = cluster(plane).await;
    std::fs::create_dir_all(work).expect("a work directory");
    let cmd = VoltdCmd::new(bin, &plane.base_url(), &created.team_cluster.id, work)
        .env("TEAM_CLUSTER_ENROLLMENT_TOKEN", &created.enrollment_token)
        .arg("--heartbeat-interval-ms")
        .arg("1000");
    (created, cmd)
}

/// Kills the real voltd with SIGKILL at random points, in two phases.
///
/// 1. `enroll_rounds` fresh clusters: voltd is started with the token and
///    killed at a random point within 1.5 × the time it takes to store the
///    credentials (measured first), i.e. during start-up and enrollment.
///    After the kill the credentials are absent or valid and 0600; then a
///    restart must register — unless the kill fell between the server
///    consuming the single-use token and the credentials reaching the disk
///    (a few milliseconds no client can close: the reference server never
///    hands the password out twice), in which case the restart must end at
///    once with exit code 4 and a message naming the token.
/// 2. `rounds` kills of a running daemon of one enrolled cluster, at a
///    random point within 2 s of its start; every restart registers again
///    with the same stored credentials.
///
/// Ends with a clean run: registered, heartbeating, SIGTERM → 0.
pub async fn voltd_kills(bin: &Path, enroll_rounds: usize, rounds: usize, seed: u64) -> KillReport {
    let plane = plane().await;
    let root = tempfile::tempdir().expect("a work directory");
    let mut rng = Rng::new(seed);
    let mut report = KillReport {
        seed,
        enroll_rounds,
        before_enrollment: 0,
        after_credentials: 0,
        token_spent: 0,
        enroll_time: Duration::ZERO,
        rounds,
        register: Samples::default(),
    };

    // How long start → credentials stored takes here.
    let (created, cmd) = fresh_cluster(&plane, bin, &root.path().join("calibrate")).await;
    let t = Instant::now();
    let v = cmd.spawn(None);
    let creds = crate::creds::stored_path(&cmd.state_dir);
    eventually(REGISTER_WITHIN, "credentials stored", async || {
        creds.exists()
    })
    .await;
    report.enroll_time = t.elapsed();
    v.kill9().await;
    assert!(check_credentials(
        &cmd.state_dir,
        &created.team_cluster.id,
        &created.daemon_password
    ));
    let window = (report.enroll_time.as_millis() as u64 * 3 / 2).max(1);

    for round in 0..enroll_rounds {
        let (created, cmd) =
            fresh_cluster(&plane, bin, &root.path().join(format!("enroll-{round}"))).await;
        let id = created.team_cluster.id.clone();
        let v = cmd.spawn(None);
        // The chaos schedule itself: kill at this random point.
        tokio::time::sleep(Duration::from_micros(rng.below(window * 1000))).await;
        v.kill9().await;
        let stored = check_credentials(&cmd.state_dir, &id, &created.daemon_password);
        let spent = plane.cluster(&id).is_some_and(|c| c.enrollment_completed);
        if stored {
            report.after_credentials += 1;
        } else if !spent {
            report.before_enrollment += 1;
        } else {
            // Token spent, password lost with the process: the restart
            // must say so and stop, not loop.
            report.token_spent += 1;
            let mut v = cmd.spawn(None);
            let exited = tokio::time::timeout(REGISTER_WITHIN, v.child.wait())
                .await
                .expect("voltd gives up at once when its token is spent")
                .ok()
                .and_then(|s| s.code());
            assert_eq!(exited, Some(4), "{}", log_tail(&cmd.log));
            assert!(!check_credentials(
                &cmd.state_dir,
                &id,
                &created.daemon_password
            ));
            continue;
        }
        let t = Instant::now();
        let v = cmd.spawn(None);
        registered_after(&plane, &id, 0, &cmd.log).await;
        report.register.push(t.elapsed());
        assert!(
            check_credentials(&cmd.state_dir, &id, &created.daemon_password),
            "registered without stored credentials"
        );
        v.kill9().await;
    }

    let (created, cmd) = fresh_cluster(&plane, bin, &root.path().join("running")).await;
    let id = created.team_cluster.id.clone();
    let t = Instant::now();
    let v = cmd.spawn(None);
    registered_after(&plane, &id, 0, &cmd.log).await;
    report.register.push(t.elapsed());
    v.kill9().await;
    for _ in 0..rounds {
        let before = plane.cluster(&id).map_or(0, |c| c.registrations);
        let v = cmd.spawn(None);
        // The chaos schedule itself: kill at this random point.
        tokio::time::sleep(Duration::from_millis(rng.below(2000))).await;
        let registered = plane.cluster(&id).map_or(0, |c| c.registrations) > before;
        v.kill9().await;
        assert!(check_credentials(
            &cmd.state_dir,
            &id,
            &created.daemon_password
        ));
        // Killed before it registered: the next start must register.
        if !registered {
            let before = plane.cluster(&id).map_or(0, |c| c.registrations);
            let t = Instant::now();
            let v = cmd.spawn(None);
            registered_after(&plane, &id, before, &cmd.log).await;
            report.register.push(t.elapsed());
            v.kill9().await;
        }
    }

    // A clean run at the end: registered, heartbeating, stops with 0.
    let before = plane.cluster(&id).map_or(0, |c| c.registrations);
    let t = Instant::now();
    let mut v = cmd.spawn(None);
    registered_after(&plane, &id, before, &cmd.log).await;
    report.register.push(t.elapsed());
    let beats = plane.cluster(&id).map_or(0, |c| c.heartbeat_count);
    eventually(REGISTER_WITHIN, "a heartbeat", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count > beats)
    })
    .await;
    assert!(v.running());
    assert_eq!(v.stop().await, Some(0), "{}", log_tail(&cmd.log));
    assert!(plane.cluster(&id).is_some_and(|c| c.enrollment_completed));
    plane.shutdown().await;
    report
}

// ---------------------------------------------------------------------------
// volt-plane restarted.

/// Figures of [`plane_restarts`].
#[derive(Debug, Clone)]
pub struct PlaneReport {
    pub rounds: usize,
    /// Plane started again → daemon registered.
    pub register: Samples,
}

impl fmt::Display for PlaneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "volt-plane restarted × {} with its data file: re-registered every time, exactly once; plane up → registered {}",
            self.rounds, self.register
        )
    }
}

/// Stops and starts a plane with a data file `rounds` times under a
/// running voltd; after each start the daemon registers exactly once (one
/// registration, then a heartbeat, still one) and the process is the same.
pub async fn plane_restarts(bin: &Path, rounds: usize) -> PlaneReport {
    let mut plane = PersistentPlane::start(plane_config()).await;
    let (created, password) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let work = tempfile::tempdir().expect("a work directory");
    let cmd = VoltdCmd::new(bin, &plane.base_url(), &id, work.path())
        .env("TEAM_CLUSTER_DAEMON_PASSWORD", &password)
        .arg("--heartbeat-interval-ms")
        .arg("1000");
    let mut v = cmd.spawn(None);
    registered_after(&plane, &id, 0, &cmd.log).await;
    let pid = v.pid();
    let mut report = PlaneReport {
        rounds,
        register: Samples::default(),
    };
    for _ in 0..rounds {
        plane.stop().await;
        plane.restart().await;
        let t = Instant::now();
        registered_after(&plane, &id, 0, &cmd.log).await;
        report.register.push(t.elapsed());
        // Heartbeats after the registration: by then a second registration
        // would have been counted. The plane stays up for three of them
        // (≥ 2 s at the 1 s interval), as a restarted server does, so the
        // registration counts as a stable one and the next cut is met with
        // an immediate reconnect, not a backoff (README "Reconnect"). The
        // count comes back from the data file, so it must grow.
        let beats = plane.cluster(&id).map_or(0, |c| c.heartbeat_count);
        eventually(
            REGISTER_WITHIN,
            "three heartbeats after the restart",
            async || {
                plane
                    .cluster(&id)
                    .filter(|c| c.heartbeat_count >= beats + 3)
            },
        )
        .await;
        let view = plane.cluster(&id).expect("the cluster");
        assert_eq!(view.registrations, 1, "exactly one registration");
        assert_eq!(view.status, ClusterStatus::Connected);
        assert!(v.running(), "{}", log_tail(&cmd.log));
        assert_eq!(v.pid(), pid);
    }
    assert_eq!(v.stop().await, Some(0));
    plane.shutdown().await;
    report
}

// ---------------------------------------------------------------------------
// Managed services killed.

/// Figures of [`service_kills`].
#[derive(Debug, Clone)]
pub struct ServicesReport {
    pub rounds: usize,
    /// Per service: kill → healthy again (a new process).
    pub recovery: Vec<(String, Samples)>,
    /// Redis writes acknowledged during the run; all were read back.
    pub acked_writes: usize,
}

impl fmt::Display for ServicesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "managed services kill -9 × {} each: healthy again every time ({}); {} acknowledged Redis writes, 0 lost",
            self.rounds,
            self.recovery
                .iter()
                .map(|(n, s)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join("; "),
            self.acked_writes
        )
    }
}

/// Writes `SET chaos:<n> <n>` in a loop, recording every acknowledged
/// `n`; reconnects (through the registry, which knows the credentials)
/// whenever the server goes away.
async fn redis_writer(
    registry: ServiceRegistry,
    acked: Rc<RefCell<Vec<u64>>>,
    stop: Rc<Cell<bool>>,
) {
    let mut n = 0u64;
    while !stop.get() {
        let Some(client) = registry.redis_client() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let con = tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await;
        let Ok(Ok(mut con)) = con else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while !stop.get() {
            n += 1;
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                redis::cmd("SET")
                    .arg(format!("chaos:{n}"))
                    .arg(n)
                    .query_async::<()>(&mut con),
            )
            .await;
            match r {
                Ok(Ok(())) => acked.borrow_mut().push(n),
                _ => break,
            }
        }
    }
}

/// Runs the three managed services (the test stand-ins) and kills each
/// server with SIGKILL `rounds` times while a client keeps writing to
/// Redis; after every kill the service must be healthy again with a new
/// process, and at the end every acknowledged write must be there.
///
/// The restart intensity is raised for the run (5 restarts in 60 s would,
/// by design, call a crash loop `failed`; that rule has its own tests).
/// Needs an actix system (`#[actix_rt::test]` or `actix_rt::System`).
pub async fn service_kills(rounds: usize) -> ServicesReport {
    let state = tempfile::tempdir().expect("a state directory");
    let mut services = native_services();
    for kind in voltd_actors::services::ServiceKind::ALL {
        let s = services.get_mut(kind);
        s.max_restarts = (rounds as u32).saturating_mul(2) + 10;
    }
    let svcs = Services::start(settings_with(state.path(), services));
    let reg = svcs.registry.clone();
    for name in ["redis", "mongo", "minio"] {
        wait_healthy(&reg, name, None).await;
    }
    let acked = Rc::new(RefCell::new(Vec::new()));
    let stop = Rc::new(Cell::new(false));
    let writer = tokio::task::spawn_local(redis_writer(reg.clone(), acked.clone(), stop.clone()));
    let mut recovery: Vec<(String, Samples)> = ["redis", "mongo", "minio"]
        .iter()
        .map(|n| (n.to_string(), Samples::default()))
        .collect();
    for _ in 0..rounds {
        for (name, samples) in recovery.iter_mut() {
            let old = reg
                .view(name)
                .and_then(|v| v.pid)
                .expect("a running server");
            let t = Instant::now();
            crate::process::signal(old, crate::process::Signal::SIGKILL);
            wait_healthy(&reg, name, Some(old)).await;
            samples.push(t.elapsed());
        }
    }
    stop.set(true);
    let _ = writer.await;
    let acked = acked.borrow().clone();
    assert!(!acked.is_empty(), "the writer got writes through");

    // Every acknowledged write is there.
    let client = reg.redis_client().expect("redis healthy");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis connection");
    let mut lost = Vec::new();
    for batch in acked.chunks(1000) {
        let keys: Vec<String> = batch.iter().map(|n| format!("chaos:{n}")).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .expect("MGET");
        for (n, v) in batch.iter().zip(values) {
            if v != Some(*n) {
                lost.push(*n);
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );
    svcs.stop().await;
    ServicesReport {
        rounds,
        recovery,
        acked_writes: acked.len(),
    }
}

/// Waits until `name` is healthy (with a process other than `not_pid`).
async fn wait_healthy(reg: &ServiceRegistry, name: &str, not_pid: Option<i32>) {
    eventually(
        HEALTHY_WITHIN,
        format!("{name} healthy again"),
        async || {
            reg.view(name)
                .filter(|v| v.state == ServiceState::Healthy && v.pid.is_some() && v.pid != not_pid)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// Network partition (root).

/// Figures of [`partition`].
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub outage: Duration,
    /// Cut → the plane shows `disconnected`.
    pub to_disconnected: Duration,
    /// Heal → heartbeating and `connected` again.
    pub back_after_heal: Duration,
    /// Whether voltd made a new connection (the old one timed out) or the
    /// old one came back.
    pub reconnected: bool,
}

impl fmt::Display for PartitionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} s partition: plane shows `disconnected` after {:.1} s; voltd back {:.2} s after the heal ({})",
            self.outage.as_secs(),
            self.to_disconnected.as_secs_f64(),
            self.back_after_heal.as_secs_f64(),
            if self.reconnected {
                "a new connection"
            } else {
                "the old connection resumed"
            }
        )
    }
}

/// The plane for the netns scenarios: listening on the host end of the
/// namespace's link (`listen_ip`), heartbeat sweep every 500 ms.
fn netns_plane_config(listen_ip: std::net::Ipv4Addr) -> PlaneConfig {
    PlaneConfig {
        listen: (listen_ip, 0).into(),
        heartbeat_timeout: Duration::from_secs(6),
        sweep_interval: Duration::from_millis(500),
        ..plane_config()
    }
}

/// Runs voltd in a network namespace, cuts the namespace's link for
/// `outage`, and heals it. The plane must show `disconnected` during the
/// outage (heartbeats every 2 s, plane timeout 6 s) and voltd must be
/// heartbeating and `connected` within 5 s of the heal. Root only.
pub async fn partition(bin: &Path, outage: Duration) -> PartitionReport {
    let ns = NetNs::create();
    let plane = crate::plane::start(netns_plane_config(ns.host_ip)).await;
    let (created, password) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let work = tempfile::tempdir().expect("a work directory");
    let cmd = VoltdCmd::new(bin, &plane.base_url(), &id, work.path())
        .env("TEAM_CLUSTER_DAEMON_PASSWORD", &password)
        .arg("--heartbeat-interval-ms")
        .arg("2000");
    let mut v = cmd.spawn(Some(&ns));
    registered_after(&plane, &id, 0, &cmd.log).await;
    eventually(REGISTER_WITHIN, "heartbeating", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count >= 1)
    })
    .await;

    ns.partition();
    let cut = Instant::now();
    eventually(outage, "the plane shows disconnected", async || {
        plane
            .cluster(&id)
            .filter(|c| c.status == ClusterStatus::Disconnected)
    })
    .await;
    let to_disconnected = cut.elapsed();
    // The rest of the outage.
    tokio::time::sleep_until(cut + outage).await;
    let regs = plane.cluster(&id).map_or(0, |c| c.registrations);
    let beats = plane.cluster(&id).map_or(0, |c| c.heartbeat_count);
    ns.heal();
    let healed = Instant::now();
    let back = Duration::from_secs(5);
    let deadline = healed + back;
    loop {
        if plane.cluster(&id).is_some_and(|c| {
            c.status == ClusterStatus::Connected && c.heartbeat_count > beats && c.connected
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voltd not back within {back:?} of the heal; plane: {:?}\nvoltd log:\n{}",
            plane
                .cluster(&id)
                .map(|c| (c.status, c.connected, c.registrations)),
            log_tail(&cmd.log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back_after_heal = healed.elapsed();
    let reconnected = plane.cluster(&id).map_or(0, |c| c.registrations) > regs;
    assert!(v.running(), "{}", log_tail(&cmd.log));
    assert_eq!(v.stop().await, Some(0));
    plane.shutdown().await;
    PartitionReport {
        outage,
        to_disconnected,
        back_after_heal,
        reconnected,
    }
}

// ---------------------------------------------------------------------------
// A download over a slow, long link (root).

/// Figures of [`throttled_download`].
#[derive(Debug, Clone)]
pub struct ThrottleReport {
    pub observed: Duration,
    pub bytes: usize,
    /// Plane-side time between consecutive heartbeats.
    pub heartbeat_gaps: Samples,
    pub heartbeat_interval: Duration,
    /// Whether the whole file arrived.
    pub complete: bool,
}

impl ThrottleReport {
    pub fn throughput_kbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1000.0 / self.observed.as_secs_f64()
    }
}

impl fmt::Display for ThrottleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "download over 1 Mbit/s + 200 ms each way: {:.1} MB in {:.0} s ({:.0} kbit/s{}); no ping timeout (plane pingInterval 5 s, pingTimeout 5 s), one registration; heartbeat every {} s → gaps {}",
            self.bytes as f64 / 1e6,
            self.observed.as_secs_f64(),
            self.throughput_kbit(),
            if self.complete {
                ", complete"
            } else {
                ", still running"
            },
            self.heartbeat_interval.as_secs(),
            self.heartbeat_gaps
        )
    }
}

/// Runs voltd in a namespace whose link is limited to 1 Mbit/s in both
/// directions (`tc tbf`) and reaches the plane through a proxy adding
/// 200 ms each way; downloads a `size`-byte file through
/// `remote.explorer.download` and watches for `observe` (or until the file
/// is complete). Meanwhile the plane pings every 5 s with a 5 s timeout
/// (stricter than any VOLT server) and voltd heartbeats every 2 s: the
/// socket must never drop (one registration, never `disconnected`) and no
/// heartbeat may arrive more than 3 s late. Root only.
pub async fn throttled_download(
    bin: &Path,
    size: usize,
    observe: Option<Duration>,
) -> ThrottleReport {
    const INTERVAL: Duration = Duration::from_secs(2);
    const LATE: Duration = Duration::from_secs(3);
    let ns = NetNs::create();
    ns.throttle(1000, Duration::from_millis(400));
    let plane = crate::plane::start(PlaneConfig {
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(60),
        ..plane_config()
    })
    .await;
    let proxy = DelayProxy::start(
        (ns.host_ip, free_port()).into(),
        plane.addr(),
        Duration::from_millis(200),
    )
    .await;
    let (created, password) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let work = tempfile::tempdir().expect("a work directory");
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).expect("the data directory");
    // Incompressible bytes (nothing on the way compresses, but be sure).
    let mut rng = Rng::new(7);
    let blob: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
    std::fs::write(data.join("blob.bin"), &blob).expect("the file to download");
    let config = work.path().join("voltd.toml");
    std::fs::write(
        &config,
        format!(
            "[host_files]\nroots = [{{ name = \"data\", path = \"{}\" }}]\n",
            data.display()
        ),
    )
    .expect("the config file");
    let cmd = VoltdCmd::new(bin, &format!("http://{}", proxy.addr()), &id, work.path())
        .env("TEAM_CLUSTER_DAEMON_PASSWORD", &password)
        .arg("--config")
        .arg(&config.display().to_string())
        .arg("--heartbeat-interval-ms")
        .arg(&INTERVAL.as_millis().to_string());
    let mut v = cmd.spawn(Some(&ns));
    registered_after(&plane, &id, 0, &cmd.log).await;

    let got = Rc::new(Cell::new(0usize));
    let done = Rc::new(Cell::new(false));
    let failed: Rc<RefCell<Option<String>>> = Rc::default();
    let mut stream = plane
        .open_stream(
            &id,
            "remote.explorer.download",
            serde_json::json!({"target": "host-files", "path": "data/blob.bin"}),
            Some(Duration::from_secs(60)),
        )
        .await
        .expect("the download starts");
    assert_eq!(stream.status(), 200);
    let (got2, done2, failed2) = (got.clone(), done.clone(), failed.clone());
    let reader = tokio::task::spawn_local(async move {
        while let Some(chunk) = stream.next_chunk().await {
            match chunk {
                Ok(chunk) => got2.set(got2.get() + chunk.len()),
                Err(e) => {
                    *failed2.borrow_mut() = Some(e.to_string());
                    return;
                }
            }
        }
        done2.set(true);
    });

    let start = Instant::now();
    let mut gaps = Samples::default();
    let mut last_count = plane.cluster(&id).map_or(0, |c| c.heartbeat_count);
    let mut last_beat = Instant::now();
    loop {
        if let Some(e) = failed.borrow().as_ref() {
            panic!("the download failed after {} bytes: {e}", got.get());
        }
        let c = plane.cluster(&id).expect("the cluster");
        assert_eq!(
            c.registrations,
            1,
            "the socket dropped (ping timeout?); voltd log:\n{}",
            log_tail(&cmd.log)
        );
        assert!(
            c.connected && c.status == ClusterStatus::Connected,
            "{:?}",
            c.status
        );
        if c.heartbeat_count > last_count {
            if last_count > 0 {
                gaps.push(last_beat.elapsed());
            }
            last_count = c.heartbeat_count;
            last_beat = Instant::now();
        }
        assert!(
            last_beat.elapsed() <= INTERVAL + LATE,
            "no heartbeat for {:?} (interval {INTERVAL:?}); got {} bytes so far",
            last_beat.elapsed(),
            got.get()
        );
        if done.get() || observe.is_some_and(|o| start.elapsed() >= o) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let observed = start.elapsed();
    let complete = done.get();
    reader.abort();
    if complete {
        assert_eq!(got.get(), size, "the whole file");
    }
    assert!(got.get() > 0, "the download moved");
    assert!(v.running(), "{}", log_tail(&cmd.log));
    assert_eq!(v.stop().await, Some(0));
    drop(proxy);
    plane.shutdown().await;
    ThrottleReport {
        observed,
        bytes: got.get(),
        heartbeat_gaps: gaps,
        heartbeat_interval: INTERVAL,
        complete,
    }
}
