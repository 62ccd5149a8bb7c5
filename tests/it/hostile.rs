//! Hostile input, end to end: a real volt-plane sends every command family
//! what a broken or malicious server could send — wrong types, missing and
//! extra fields, NUL bytes, non-UTF-8 names, 10 000-deep JSON, invalid
//! base64, oversized values, unknown ids, FIFOs, devices, symlink loops and
//! escapes, a 5 000-entry directory — to a real in-process voltd running
//! real Redis, a MongoDB-wire server and an S3 server. Each case names the
//! status and the words of the error it must get; after the table the
//! daemon still answers, and the process's RSS stayed bounded throughout.
//! Then: 1 000 concurrent commands against the in-flight cap, deadlines
//! and stalled streams, and a symlink swapped in a tight loop during 2 000
//! reads (zero escapes).

use serde_json::{Value, json};
use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use testkit::daemon::*;
use testkit::services::{native_services, wait_all_healthy};
use volt_plane::{DaemonReply, Message, PlaneHandle, ResponseType};
use volt_protocol::envelope::{SessionDetach, SessionInput, SessionResizeMessage};
use voltd_actors::api::reply::Reply;
use voltd_actors::config::{HostFilesSettings, Settings};
use voltd_actors::daemon::DaemonHandle;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
/// What the whole process (plane, daemon, test) may grow by while the
/// table runs: a daemon that read a value or a directory whole, or leaked
/// per command, would blow through it.
const RSS_BUDGET_KB: u64 = 300 * 1024;

struct Rig {
    plane: PlaneHandle,
    daemon: DaemonHandle,
    id: String,
    _state: tempfile::TempDir,
    files: tempfile::TempDir,
}

/// The process's resident set size.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Host files with everything hostile in them; `rw` writable, `ro` not.
fn host_tree() -> (tempfile::TempDir, HostFilesSettings) {
    let files = tempfile::tempdir().unwrap();
    let base = files.path().canonicalize().unwrap();
    let rw = base.join("rw");
    std::fs::create_dir_all(rw.join("many")).unwrap();
    std::fs::create_dir_all(base.join("ro")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::fs::write(base.join("outside/secret"), "OUTSIDE-SECRET").unwrap();
    std::fs::write(rw.join("file.txt"), "hello").unwrap();
    for i in 0..5000 {
        std::fs::write(rw.join(format!("many/f{i:04}")), "").unwrap();
    }
    nix::unistd::mkfifo(&rw.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(rw.join("sock")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", rw.join("zero")).unwrap();
    std::os::unix::fs::symlink("loop-b", rw.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", rw.join("loop-b")).unwrap();
    std::os::unix::fs::symlink("../outside", rw.join("escape")).unwrap();
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(
        rw.join(std::ffi::OsStr::from_bytes(b"bad-\xff\xfe-name")),
        "x",
    )
    .unwrap();
    let roots = HostFilesSettings::try_new_with_access(vec![
        ("rw".into(), rw, false),
        ("ro".into(), base.join("ro"), true),
    ])
    .unwrap();
    (files, roots)
}

async fn rig(services: bool, tweak: impl FnOnce(&mut Settings)) -> Rig {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let (files, roots) = host_tree();
    let mut s = settings(&plane.base_url(), &created, state.path());
    if services {
        s.services = native_services();
    }
    s.host_files = roots;
    tweak(&mut s);
    let daemon = start_daemon(s);
    if services {
        wait_all_healthy(daemon.services(), &["redis", "mongo", "minio"]).await;
    }
    wait_connected(&plane, &id).await;
    Rig {
        plane,
        daemon,
        id,
        _state: state,
        files,
    }
}

impl Rig {
    /// `(status, message or data)` of any reply.
    async fn call(&self, command: &str, payload: Value, rt: ResponseType) -> (u16, String) {
        let reply = self
            .plane
            .send_command(&self.id, command, payload, rt, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{command}: no answer: {e}"));
        let r = reply.response();
        let text = match (&reply, r.ok) {
            (_, false) => format!(
                "{} {}",
                r.message.clone().unwrap_or_default(),
                r.data.clone().unwrap_or(Value::Null)
            ),
            (DaemonReply::Stream { error, body, .. }, true) => format!(
                "{} {}",
                error.clone().unwrap_or_default(),
                String::from_utf8_lossy(&body[..body.len().min(4096)])
            ),
            _ => r.data.clone().unwrap_or(Value::Null).to_string(),
        };
        (r.status, text)
    }

    async fn ping(&self) {
        let (status, text) = self
            .call("runtime.ping", json!({}), ResponseType::Json)
            .await;
        assert_eq!(status, 200, "{text}");
    }

    async fn stop(self) {
        self.daemon.shutdown(otp::ExitCode::Stopped, "test");
        self.daemon.wait().await;
        self.plane.shutdown().await;
    }
}

/// One row: the command, its payload, how it is asked for, and the status
/// and words of the answer it must get.
struct Case {
    command: &'static str,
    payload: Value,
    rt: ResponseType,
    status: u16,
    needle: &'static str,
}

fn j(command: &'static str, payload: Value, status: u16, needle: &'static str) -> Case {
    Case {
        command,
        payload,
        rt: ResponseType::Json,
        status,
        needle,
    }
}

fn s(command: &'static str, payload: Value, status: u16, needle: &'static str) -> Case {
    Case {
        rt: ResponseType::Stream,
        ..j(command, payload, status, needle)
    }
}

fn hf(path: &str) -> Value {
    json!({"target": "host-files", "path": path})
}

/// `depth` nested arrays around `{}`.
fn deep(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

fn table() -> Vec<Case> {
    const LIST: &str = "remote.explorer.list";
    const NODE: &str = "remote.explorer.node";
    const DOWNLOAD: &str = "remote.explorer.download";
    vec![
        // The envelope and unknown names.
        j(
            "remote.explorer.bogus",
            json!({}),
            404,
            "Unknown daemon command: remote.explorer.bogus",
        ),
        j("", json!({}), 404, "Unknown daemon command"),
        j(
            LIST,
            json!({"target": "host-files", "path": deep(10_000)}),
            400,
            "Invalid command message",
        ),
        j(
            "runtime.services.restart",
            json!("a string"),
            400,
            "Invalid payload for runtime.services.restart",
        ),
        j(
            "object.list",
            json!([1, 2]),
            400,
            "Invalid payload for object.list",
        ),
        // runtime.*: nothing hostile gets as far as acting.
        j(
            "runtime.uninstall",
            json!({"reason": 5}),
            400,
            "Invalid payload for runtime.uninstall",
        ),
        j(
            "runtime.update",
            json!({}),
            400,
            "missing field `targetVersion`",
        ),
        j(
            "runtime.update",
            json!({"targetVersion": 5}),
            400,
            "invalid type",
        ),
        j(
            "runtime.update",
            json!({"targetVersion": "1.0; touch /tmp/pwned"}),
            400,
            "targetVersion must be",
        ),
        j(
            "runtime.update",
            json!({"targetVersion": "1\u{0}0"}),
            400,
            "targetVersion must be",
        ),
        j(
            "runtime.update",
            json!({"targetVersion": "9".repeat(100_000)}),
            400,
            "targetVersion must be",
        ),
        j(
            "runtime.ping",
            json!({"extra": [1, {"x": null}], "metadata": {"traceId": "t"}}),
            200,
            "pong",
        ),
        // runtime.services.*
        j(
            "runtime.services.restart",
            json!({}),
            400,
            "missing field `service`",
        ),
        j(
            "runtime.services.restart",
            json!({"service": 7}),
            400,
            "invalid type",
        ),
        j(
            "runtime.services.restart",
            json!({"service": "nginx"}),
            400,
            "nginx",
        ),
        j(
            "runtime.services.restart",
            json!({"service": "redis\u{0}"}),
            400,
            "redis",
        ),
        // session.attach
        j(
            "session.attach",
            json!({}),
            400,
            "Invalid session attach payload",
        ),
        j(
            "session.attach",
            json!({"sessionId": 5, "kind": "terminal"}),
            400,
            "Invalid session attach payload",
        ),
        j(
            "session.attach",
            json!({"sessionId": "a\u{0}b", "kind": "terminal"}),
            400,
            "sessionId must be",
        ),
        j(
            "session.attach",
            json!({"sessionId": "x".repeat(100_000), "kind": "terminal"}),
            400,
            "sessionId must be",
        ),
        j(
            "session.attach",
            json!({"sessionId": "s", "kind": "shell"}),
            400,
            "Invalid session attach payload",
        ),
        j(
            "session.attach",
            json!({"sessionId": "s", "kind": "websocket", "targetUrl": "ws://x"}),
            400,
            "not supported",
        ),
        j(
            "session.attach",
            json!({"sessionId": "s", "kind": "terminal", "terminalTarget": "container"}),
            400,
            "container terminals",
        ),
        j(
            "session.attach",
            json!({"sessionId": "s", "kind": "terminal", "terminalTarget": "moon"}),
            400,
            "Invalid session attach payload",
        ),
        // remote.explorer.*, any target.
        j(LIST, json!({}), 400, "missing field `target`"),
        j(LIST, json!({"target": 5}), 400, "invalid type"),
        j(
            LIST,
            json!({"target": "host-terminal"}),
            400,
            "supported: mongo-documents, redis-data, minio, host-files",
        ),
        j(
            LIST,
            json!({"target": "minio", "path": 5}),
            400,
            "invalid type",
        ),
        j(
            LIST,
            json!({"target": "host-files", "path": "rw", "limit": -1}),
            400,
            "invalid value",
        ),
        j(
            LIST,
            json!({"target": "host-files", "path": "rw", "limit": 0}),
            400,
            "limit must be between 1 and 5000",
        ),
        j(
            LIST,
            json!({"target": "host-files", "path": "rw", "limit": "ten"}),
            400,
            "invalid type",
        ),
        j(
            LIST,
            json!({"target": "host-files", "path": "rw", "cursor": "!!!"}),
            400,
            "invalid cursor",
        ),
        j(
            "remote.explorer.mkdir",
            json!({"target": "minio", "path": "x"}),
            400,
            "works on the host-files target only",
        ),
        // mongo-documents
        j(
            LIST,
            json!({"target": "mongo-documents", "limit": 0}),
            400,
            "limit must be",
        ),
        s(
            DOWNLOAD,
            json!({"target": "mongo-documents", "path": ""}),
            400,
            "download needs a collection",
        ),
        s(
            DOWNLOAD,
            json!({"target": "mongo-documents", "path": "no-such-collection"}),
            404,
            "Collection not found",
        ),
        // redis-data
        j(
            NODE,
            json!({"target": "redis-data", "path": "db/0/key/%ZZ"}),
            400,
            "invalid percent-encoding",
        ),
        j(
            NODE,
            json!({"target": "redis-data", "path": "db/0/key/big-string"}),
            200,
            "\\\"truncated\\\": true",
        ),
        j(
            NODE,
            json!({"target": "redis-data", "path": "db/0/key/big-set"}),
            200,
            "\\\"length\\\": 5000",
        ),
        j(
            LIST,
            json!({"target": "redis-data", "path": "db/0", "cursor": "zz"}),
            400,
            "invalid cursor",
        ),
        j(
            LIST,
            json!({"target": "redis-data", "path": "db/0", "limit": 1}),
            200,
            "\"truncated\":true",
        ),
        s(
            DOWNLOAD,
            json!({"target": "redis-data", "path": "db/0"}),
            400,
            "download needs a key",
        ),
        s(
            DOWNLOAD,
            json!({"target": "redis-data", "path": "db/0/key/missing"}),
            404,
            "Key not found",
        ),
        s(
            DOWNLOAD,
            json!({"target": "redis-data", "path": "db/99999999999/key/a"}),
            502,
            "Redis",
        ),
        // minio
        j(
            NODE,
            json!({"target": "minio", "path": "Bad_Bucket!/key"}),
            400,
            "Invalid bucket name",
        ),
        s(
            DOWNLOAD,
            json!({"target": "minio", "path": "volt-dumps"}),
            400,
            "download needs an object",
        ),
        s(
            DOWNLOAD,
            json!({"target": "minio", "path": "volt-dumps/missing"}),
            404,
            "Object not found",
        ),
        // object.*
        j(
            "object.upload",
            json!({"bucket": "volt-dumps", "objectKey": "k", "content": "!!!", "encoding": "base64"}),
            400,
            "not valid base64",
        ),
        j(
            "object.upload",
            json!({"bucket": "volt-dumps", "objectKey": "k", "content": "x", "encoding": "hex"}),
            400,
            "Invalid payload for object.upload",
        ),
        j(
            "object.upload",
            json!({"bucket": "volt-dumps", "objectKey": "", "content": "x"}),
            400,
            "objectKey must be",
        ),
        j(
            "object.upload",
            json!({"bucket": "volt-dumps", "objectKey": "k".repeat(2000), "content": "x"}),
            400,
            "objectKey must be",
        ),
        j(
            "object.get",
            json!({"bucket": "volt-dumps"}),
            400,
            "missing field `objectKey`",
        ),
        j("object.list", json!({"bucket": 5}), 400, "invalid type"),
        j(
            "object.list",
            json!({"bucket": "volt-dumps", "limit": 0}),
            400,
            "limit must be",
        ),
        // host-files: confinement and file types.
        j(LIST, hf("rw/../etc"), 403, "'..' is not allowed"),
        j(NODE, hf("/etc/passwd"), 403, "outside the configured roots"),
        j(NODE, hf("nosuchroot/x"), 404, "no root named"),
        j(NODE, hf("rw/a\u{0}b"), 400, "NUL byte"),
        j(NODE, hf("rw/fifo"), 400, "is a named pipe (fifo)"),
        s(
            DOWNLOAD,
            hf("rw/fifo"),
            400,
            "only regular files can be read",
        ),
        j(NODE, hf("rw/sock"), 400, "is a socket"),
        j(NODE, hf("rw/zero"), 403, "leads outside its root"),
        s(DOWNLOAD, hf("rw/zero"), 403, "leads outside its root"),
        j(NODE, hf("rw/loop-a"), 400, "symlink loop"),
        j(LIST, hf("rw/loop-b"), 400, "symlink loop"),
        j(NODE, hf("rw/escape/secret"), 403, "leads outside its root"),
        j(
            NODE,
            hf(&format!("rw/{}", "x".repeat(300))),
            400,
            "name too long",
        ),
        j(
            NODE,
            hf(&format!("rw/{}", "a/".repeat(3000))),
            400,
            "name too long",
        ),
        s(DOWNLOAD, hf("rw"), 400, "is a directory"),
        j(LIST, hf("rw"), 200, "not valid UTF-8"),
        // host-files: a 5 000-entry directory, paged.
        j(
            LIST,
            hf("rw/many"),
            200,
            "Only the first 1000 entries are shown",
        ),
        j(
            LIST,
            json!({"target": "host-files", "path": "rw/many", "limit": 5000}),
            200,
            "\"truncated\":false",
        ),
        j(
            LIST,
            json!({"target": "host-files", "path": "rw/many", "limit": 100_000}),
            200,
            "f4999",
        ),
        j(NODE, hf("rw/many"), 200, "\"contentType\":\"empty\""),
        // host-files: the file manager.
        j(
            "remote.explorer.stat",
            json!({"target": "host-files"}),
            400,
            "missing field `path`",
        ),
        j(
            "remote.explorer.mkdir",
            hf("rw/many"),
            409,
            "already exists",
        ),
        j("remote.explorer.mkdir", hf("ro/x"), 403, "is read-only"),
        j(
            "remote.explorer.rename",
            hf("rw/file.txt"),
            400,
            "missing field `to`",
        ),
        j(
            "remote.explorer.rename",
            json!({"target": "host-files", "path": "rw/file.txt", "to": "ro/file.txt"}),
            400,
            "stays within one root",
        ),
        j(
            "remote.explorer.rename",
            json!({"target": "host-files", "path": "rw/many", "to": "rw/many/inner"}),
            400,
            "into itself",
        ),
        j(
            "remote.explorer.rename",
            json!({"target": "host-files", "path": "rw/file.txt", "to": "rw/../x"}),
            403,
            "'..' is not allowed",
        ),
        j("remote.explorer.delete", hf("rw"), 400, "it is a root"),
        j("remote.explorer.delete", hf("rw/many"), 409, "not empty"),
        j(
            "remote.explorer.delete",
            json!({"target": "host-files", "path": "rw/x", "recursive": "yes"}),
            400,
            "invalid type",
        ),
        j(
            "remote.explorer.upload.begin",
            hf("rw/many"),
            400,
            "it is a directory",
        ),
        j(
            "remote.explorer.upload.begin",
            hf("ro/new"),
            403,
            "is read-only",
        ),
        j(
            "remote.explorer.upload.chunk",
            json!({"uploadId": "nope", "offset": 0, "chunkBase64": "aGk="}),
            404,
            "unknown upload",
        ),
        j(
            "remote.explorer.upload.chunk",
            json!({"uploadId": "nope", "offset": 0, "chunkBase64": "!!"}),
            400,
            "not valid base64",
        ),
        j(
            "remote.explorer.upload.chunk",
            json!({"uploadId": "nope", "offset": -1, "chunkBase64": "aGk="}),
            400,
            "invalid value",
        ),
        j(
            "remote.explorer.upload.commit",
            json!({"uploadId": "nope"}),
            404,
            "unknown upload",
        ),
        j(
            "remote.explorer.upload.abort",
            json!({}),
            400,
            "missing field `uploadId`",
        ),
    ]
}

async fn seed_stores(r: &Rig) {
    let client = r.daemon.services().redis_client().unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("big-string").arg("s".repeat(2_000_000));
    for chunk in (0..5000).collect::<Vec<u32>>().chunks(500) {
        pipe.cmd("SADD").arg("big-set").arg(chunk);
    }
    pipe.query_async::<()>(&mut con).await.unwrap();
}

async fn run_table() {
    let r = rig(true, |_| {}).await;
    seed_stores(&r).await;
    let cases = table();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let baseline = rss_kb();
    let peak = Rc::new(Cell::new(baseline));
    let mut failures = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let label = format!("#{i} {} {}", case.command, {
            let p = case.payload.to_string();
            p[..p.len().min(120)].to_owned()
        });
        let (status, text) = r.call(case.command, case.payload, case.rt).await;
        if status != case.status || !text.contains(case.needle) {
            failures.push(format!(
                "{label}: got {status} {:?}, want {} with {:?}",
                &text[..text.len().min(300)],
                case.status,
                case.needle
            ));
        }
        peak.set(peak.get().max(rss_kb()));
        // Still answering after every case.
        r.ping().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Session messages for ids that do not exist: each gets a session-end
    // naming the problem, nothing else happens.
    for (i, msg) in [
        Message::SessionInput(SessionInput {
            session_id: "ghost-1".into(),
            chunk_base64: "aGk=".into(),
            is_binary: false,
        }),
        Message::SessionInput(SessionInput {
            session_id: "ghost-2".into(),
            chunk_base64: "!!not base64!!".into(),
            is_binary: true,
        }),
        Message::SessionResize(SessionResizeMessage {
            session_id: "ghost-3".into(),
            rows: 0,
            cols: 65535,
        }),
        Message::SessionDetach(SessionDetach {
            session_id: "ghost-4".into(),
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("ghost-{}", i + 1);
        let mut sub = r.plane.subscribe_session(&r.id, &id);
        r.plane.send_message(&r.id, &msg).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("a session-end")
            .expect("subscription open");
        let Message::SessionEnd(end) = got else {
            panic!("{id}: {got:?}")
        };
        assert_eq!(end.error.as_deref(), Some("unknown session"), "{id}");
    }
    r.ping().await;
    let grown = peak.get().saturating_sub(baseline);
    assert!(
        grown < RSS_BUDGET_KB,
        "RSS grew by {grown} KiB during the table (budget {RSS_BUDGET_KB})"
    );
    // Nothing changed on disk that the table did not ask for.
    let base = r.files.path().canonicalize().unwrap();
    assert_eq!(
        std::fs::read_to_string(base.join("rw/file.txt")).unwrap(),
        "hello"
    );
    assert_eq!(std::fs::read_dir(base.join("ro")).unwrap().count(), 0);
    r.stop().await;
}

/// The table, on a thread with a large stack: building and encoding the
/// 10 000-deep payload on the plane's side recurses (the daemon's decoder
/// stops at 128 levels and still answers).
#[test]
fn every_hostile_input_gets_its_clear_error_and_the_daemon_goes_on() {
    std::thread::Builder::new()
        .name("hostile-table".into())
        .stack_size(512 << 20)
        .spawn(|| actix_rt::System::new().block_on(run_table()))
        .unwrap()
        .join()
        .unwrap();
}

#[actix_rt::test]
async fn a_thousand_concurrent_commands_meet_the_in_flight_cap_and_pings_still_answer() {
    const CAP: usize = 64;
    let r = rig(false, |s| s.commands.max_in_flight = CAP).await;
    // Held until the gate opens: exactly CAP are in flight.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    r.daemon
        .register_handler("test.hold", move |_payload: Value| {
            let g = g.clone();
            async move {
                let _permit = g.acquire().await;
                Reply::ok(json!({"held": true}))
            }
        });
    let baseline = rss_kb();
    let mut calls: futures_util::stream::FuturesUnordered<_> = (0..1000)
        .map(|_| r.call("test.hold", json!({}), ResponseType::Json))
        .collect();
    use futures_util::StreamExt;
    let mut refused = 0;
    while refused < 1000 - CAP {
        let (status, text) = calls.next().await.unwrap();
        assert_eq!(status, 429, "{text}");
        assert!(
            text.contains("commands are in flight (the limit is 64"),
            "{text}"
        );
        refused += 1;
    }
    // At the cap, pings (answered at once) still are.
    r.ping().await;
    gate.add_permits(1000);
    let mut held = 0;
    while let Some((status, text)) = calls.next().await {
        assert_eq!(status, 200, "{text}");
        held += 1;
    }
    assert_eq!(held, CAP);
    // Room again: the next command runs.
    drop(calls);
    let (status, _) = r.call("test.hold", json!({}), ResponseType::Json).await;
    assert_eq!(status, 200);
    let grown = rss_kb().saturating_sub(baseline);
    assert!(grown < RSS_BUDGET_KB, "RSS grew by {grown} KiB");
    r.stop().await;
}

#[actix_rt::test]
async fn a_command_past_its_deadline_is_504_and_a_stalled_stream_ends_with_a_reason() {
    let r = rig(false, |s| {
        s.commands.deadline = Duration::from_secs(1);
        s.commands.stream_idle = Duration::from_secs(1);
    })
    .await;
    r.daemon.register_handler("test.never", |_payload: Value| {
        std::future::pending::<Reply>()
    });
    r.daemon
        .register_handler("test.stall", |_payload: Value| async {
            use futures_util::StreamExt;
            let body = futures_util::stream::once(async { Ok(b"first".to_vec()) })
                .chain(futures_util::stream::pending());
            Reply::Stream(voltd_actors::api::reply::StreamReply {
                status: 200,
                headers: Default::default(),
                body: body.boxed_local(),
            })
        });
    let (status, text) = r.call("test.never", json!({}), ResponseType::Json).await;
    assert_eq!(status, 504, "{text}");
    assert!(text.contains("did not finish within 1000 ms"), "{text}");
    let reply = r
        .plane
        .send_command(
            &r.id,
            "test.stall",
            json!({}),
            ResponseType::Stream,
            TIMEOUT,
        )
        .await
        .unwrap();
    let DaemonReply::Stream { body, error, .. } = reply else {
        panic!("not a stream")
    };
    assert_eq!(body, b"first");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("no progress for 1000 ms")),
        "{error:?}"
    );
    r.ping().await;
    r.stop().await;
}

/// `rw/swap` is swapped with a symlink to the outside (relative and
/// climbing, or absolute) by `renameat2(RENAME_EXCHANGE)` in a tight loop
/// while 2 000 reads go through the plane: every read sees the inside file
/// or is refused; none ever sees the outside.
#[actix_rt::test]
async fn a_symlink_swapped_in_a_tight_loop_never_lets_2000_reads_escape() {
    let r = rig(false, |_| {}).await;
    let base = r.files.path().canonicalize().unwrap();
    let rw = base.join("rw");
    std::fs::create_dir(rw.join("swap")).unwrap();
    std::fs::write(rw.join("swap/secret"), "inside").unwrap();
    std::os::unix::fs::symlink("../outside", rw.join("swap-rel")).unwrap();
    std::os::unix::fs::symlink(base.join("outside"), rw.join("swap-abs")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let rw: PathBuf = rw.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for other in ["swap-rel", "swap-abs"] {
                    rustix_exchange(&rw, "swap", other);
                    rustix_exchange(&rw, "swap", other);
                    swaps += 2;
                }
            }
            swaps
        })
    };
    use futures_util::StreamExt;
    // 2 000 reads, and more (up to 20 000) until both sides were seen: a
    // busy machine may deschedule the swapper for a while.
    let mut outcomes: Vec<(u16, String)> = Vec::new();
    let seen = |o: &[(u16, String)], status: u16| o.iter().any(|(s, _)| *s == status);
    while outcomes.len() < 2000 || !(seen(&outcomes, 200) && seen(&outcomes, 403)) {
        assert!(outcomes.len() < 20_000, "the swap was never observed");
        let batch: Vec<(u16, String)> = futures_util::stream::iter(0..200)
            .map(|i| {
                let (command, rt) = if i % 2 == 0 {
                    ("remote.explorer.node", ResponseType::Json)
                } else {
                    ("remote.explorer.download", ResponseType::Stream)
                };
                r.call(command, hf("rw/swap/secret"), rt)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        outcomes.extend(batch);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0);
    let escapes: Vec<&(u16, String)> = outcomes
        .iter()
        .filter(|(_, t)| t.contains("OUTSIDE-SECRET"))
        .collect();
    assert!(
        escapes.is_empty(),
        "{} escapes: {:?}",
        escapes.len(),
        escapes.first()
    );
    let inside = outcomes
        .iter()
        .filter(|(s, t)| *s == 200 && t.contains("inside"))
        .count();
    let refused = outcomes.iter().filter(|(s, _)| *s == 403).count();
    assert!(outcomes.len() >= 2000);
    assert!(
        inside > 0 && refused > 0,
        "inside {inside}, refused {refused}"
    );
    for (status, text) in &outcomes {
        assert!(
            matches!(status, 200 | 403 | 404 | 400 | 503),
            "{status} {text}"
        );
    }
    r.ping().await;
    r.stop().await;
}

/// `renameat2(dir/a, dir/b, RENAME_EXCHANGE)`: both names always exist.
fn rustix_exchange(dir: &std::path::Path, a: &str, b: &str) {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        dir.join(a),
        rustix::fs::CWD,
        dir.join(b),
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .expect("renameat2 RENAME_EXCHANGE");
}

/// Device nodes need root to make.
mod needs_root {
    use super::*;

    /// A `/dev/zero` inside a root (the same device, `mknod c 1 5`) is
    /// refused at once, never streamed.
    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn a_device_node_inside_a_root_is_refused_at_once() {
        testkit::needs_root();
        let r = rig(false, |_| {}).await;
        let dev = r.files.path().canonicalize().unwrap().join("rw/zero-dev");
        nix::sys::stat::mknod(
            &dev,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .unwrap();
        for (command, rt) in [
            ("remote.explorer.node", ResponseType::Json),
            ("remote.explorer.download", ResponseType::Stream),
        ] {
            let (status, text) = r.call(command, hf("rw/zero-dev"), rt).await;
            assert_eq!(status, 400, "{command}: {text}");
            assert!(text.contains("is a character device"), "{text}");
        }
        r.ping().await;
        r.stop().await;
    }
}
