//! End to end: the host terminal (`session.attach` and the `session-*`
//! messages) through a real volt-plane, with real PTYs and real shells.

use base64::Engine as _;
use serde_json::{Value, json};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::alive;
use testkit::daemon::test_terminal;
use testkit::daemon::*;
use testkit::eventually;
use testkit::process::exists;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use volt_plane::{DaemonReply, Message, ResponseMessage, ResponseType, SessionSubscription};
use volt_protocol::envelope::{
    SessionData, SessionDetach, SessionEnd, SessionInput, SessionResizeMessage,
};
use voltd_actors::api::ChildState;
use voltd_actors::config::AbsPath;
use voltd_actors::config::{CloudUrl, TerminalSettings};
use voltd_actors::events::Event;
use voltd_actors::remote::terminal::ListSessions;

const SECS_10: Duration = Duration::from_secs(10);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A plane, a cluster, and a registered in-process daemon with the given
/// terminal settings (the kit's [`Fixture`]).
struct Rig(Fixture);

impl std::ops::Deref for Rig {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.0
    }
}

impl Rig {
    async fn start(terminal: TerminalSettings) -> Rig {
        Rig(Fixture::start_with(|s| s.terminal = terminal).await)
    }

    async fn stop(self) {
        self.0.stop().await;
    }

    async fn command(&self, command: &str, payload: Value) -> ResponseMessage {
        match self
            .plane
            .send_command(&self.id, command, payload, ResponseType::Json, None)
            .await
            .expect("daemon answers")
        {
            DaemonReply::Json(r) => r,
            other => panic!("expected a json reply, got {:?}", other.response()),
        }
    }

    async fn attach_payload(&self, payload: Value) -> ResponseMessage {
        self.command("session.attach", payload).await
    }

    /// Subscribes, then attaches a host terminal (subscribing first, so no
    /// output is missed).
    async fn attach(&self, session_id: &str) -> Term {
        let term = Term::new(self.plane.subscribe_session(&self.id, session_id));
        let reply = self
            .attach_payload(
                json!({"sessionId": session_id, "kind": "terminal", "terminalTarget": "host"}),
            )
            .await;
        assert!(reply.ok, "attach refused: {reply:?}");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.data,
            Some(json!({"status": "success", "data": {"attached": true}}))
        );
        term
    }

    fn send(&self, message: Message) {
        self.plane.send_message(&self.id, &message).unwrap();
    }

    fn input(&self, session_id: &str, text: &str) {
        self.send(Message::SessionInput(SessionInput {
            session_id: session_id.into(),
            chunk_base64: B64.encode(text),
            is_binary: false,
        }));
    }

    fn detach(&self, session_id: &str) {
        self.send(Message::SessionDetach(SessionDetach {
            session_id: session_id.into(),
        }));
    }

    async fn ping(&self) -> ResponseMessage {
        self.command("runtime.ping", json!({})).await
    }

    async fn open_sessions(&self) -> Vec<String> {
        self.daemon
            .wiring
            .sessions
            .send(ListSessions)
            .await
            .expect("sessions actor")
    }

    /// Waits until the daemon has forgotten every session.
    async fn no_sessions_left(&self) {
        eventually(SECS_10, "every session forgotten", async || {
            let open = self.open_sessions().await;
            if open.is_empty() { Ok(()) } else { Err(open) }
        })
        .await;
    }
}

/// One session as the server sees it: its output so far and its end.
struct Term {
    sub: SessionSubscription,
    output: Vec<u8>,
    end: Option<SessionEnd>,
    /// Every output byte received (`output` may be trimmed).
    bytes: usize,
    frames: usize,
    max_frame: usize,
}

impl Term {
    fn new(sub: SessionSubscription) -> Term {
        Term {
            sub,
            output: Vec::new(),
            end: None,
            bytes: 0,
            frames: 0,
            max_frame: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Takes one message; false once the session ended.
    async fn pump(&mut self, within: Duration) -> bool {
        if self.end.is_some() {
            return false;
        }
        let msg = tokio::time::timeout(within, self.sub.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no message for {} within {within:?}; output so far: {:?}",
                    self.sub.session_id(),
                    self.text()
                )
            })
            .expect("subscription open");
        match msg {
            Message::SessionData(d) => {
                assert_eq!(d.session_id, self.sub.session_id());
                assert!(d.is_binary, "terminal output is sent with isBinary:true");
                // The frame as the daemon sent it. Base64 needs no JSON
                // escaping, so it is the empty-chunk frame plus the text
                // (re-encoding every 87 KB frame is slow in debug builds).
                let empty = Message::SessionData(SessionData {
                    session_id: d.session_id.clone(),
                    chunk_base64: String::new(),
                    is_binary: d.is_binary,
                });
                let frame = volt_protocol::encode_message_frame(&empty).unwrap().len()
                    + d.chunk_base64.len();
                self.max_frame = self.max_frame.max(frame);
                self.frames += 1;
                let before = self.output.len();
                B64.decode_vec(&d.chunk_base64, &mut self.output).unwrap();
                self.bytes += self.output.len() - before;
                true
            }
            Message::SessionEnd(e) => {
                self.end = Some(e);
                false
            }
            other => panic!("unexpected message {other:?}"),
        }
    }

    /// Reads until the output contains `needle`; returns the output.
    async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + SECS_10;
        while !self.text().contains(needle) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                self.pump(left.max(Duration::from_millis(1))).await,
                "session ended ({:?}) before {needle:?} appeared in {:?}",
                self.end,
                self.text()
            );
        }
        self.text()
    }

    /// Reads until the `session-end`.
    async fn ended(&mut self) -> SessionEnd {
        while self.pump(SECS_10).await {}
        self.end.clone().unwrap()
    }
}

/// The number right after `prefix` in `text` (e.g. `pid=` → 1234). The
/// terminal echoes typed input first (`pid=$$`), so occurrences not
/// followed by a digit are skipped.
fn number_after(text: &str, prefix: &str) -> i32 {
    text.match_indices(prefix)
        .find_map(|(i, _)| {
            let digits: String = text[i + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no number after {prefix} in {text:?}"))
}

/// Direct mode with `shell`, as the test account (testkit::daemon::test_terminal).
fn sh(shell: &str) -> TerminalSettings {
    test_terminal(shell)
}

#[actix_rt::test]
async fn attach_runs_a_login_shell_with_a_clean_environment_in_the_home_directory() {
    // Cargo runs tests with this set: the shell must not see it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let rig = Rig::start(sh("/bin/bash")).await;
    let mut term = rig.attach("term-basic").await;
    rig.input(
        "term-basic",
        "echo \"hello-$((6*7)) term=$TERM leak=${CARGO_MANIFEST_DIR:-none} cwd=$(pwd) home=$HOME end-$((2+3))\"\n",
    );
    let out = term.expect("end-5").await;
    let line = &out[out.find("hello-42").unwrap()..];
    assert!(line.contains("term=xterm-256color"), "{line}");
    assert!(
        line.contains("leak=none"),
        "voltd's environment leaked: {line}"
    );
    let cwd = &line[line.find("cwd=").unwrap() + 4..line.find(" home=").unwrap()];
    let home = &line[line.find("home=").unwrap() + 5..line.find(" end-5").unwrap()];
    assert_eq!(cwd, home, "{line}");

    wait_event(
        &rig.daemon,
        SECS_10,
        "session-opened",
        |e| matches!(e, Event::SessionOpened { session_id, .. } if session_id == "term-basic"),
    )
    .await;
    let status = rig.daemon.wiring.snapshots.clone();
    let snapshot = eventually(SECS_10, "the session in the status snapshot", async || {
        let snapshot = status
            .send(voltd_actors::status::GetSnapshot)
            .await
            .unwrap();
        (snapshot.terminal_sessions == 1).then_some(snapshot)
    })
    .await;
    assert_eq!(snapshot.terminal_sessions, 1);
    assert_eq!(snapshot.children["sessions"].state, ChildState::Running);

    rig.input("term-basic", "exit 7\n");
    let end = term.ended().await;
    assert_eq!(end.code, Some(7));
    assert_eq!(end.error, None);
    wait_event(&rig.daemon, SECS_10, "session-closed", |e| {
        matches!(e, Event::SessionClosed { session_id, reason } if session_id == "term-basic" && reason == "exited with code 7")
    })
    .await;
    rig.stop().await;
}

#[actix_rt::test]
async fn resize_reaches_the_shell() {
    let rig = Rig::start(sh("/bin/bash")).await;
    let mut term = rig.attach("term-resize").await;
    rig.send(Message::SessionResize(SessionResizeMessage {
        session_id: "term-resize".into(),
        rows: 40,
        cols: 123,
    }));
    rig.input("term-resize", "stty size\n");
    term.expect("40 123").await;
    // Out-of-range sizes are ignored, the session goes on.
    rig.send(Message::SessionResize(SessionResizeMessage {
        session_id: "term-resize".into(),
        rows: 0,
        cols: 5000,
    }));
    rig.input("term-resize", "stty size; echo size-$((1+1))\n");
    let out = term.expect("size-2").await;
    assert_eq!(out.matches("40 123").count(), 2, "{out}");
    rig.stop().await;
}

#[actix_rt::test]
async fn detach_kills_the_shell_and_its_children() {
    let rig = Rig::start(sh("/bin/bash")).await;
    let mut term = rig.attach("term-detach").await;
    rig.input(
        "term-detach",
        "sleep 1000 & echo \"pids=$$,$!,$((1+1)) \"\n",
    );
    let out = term.expect(",2 ").await;
    let shell = number_after(&out, "pids=");
    let child = number_after(&out, &format!("pids={shell},"));
    assert!(alive(shell) && alive(child), "{out}");

    rig.detach("term-detach");
    let end = term.ended().await;
    assert_eq!(end.message.as_deref(), Some("detached"));
    eventually(SECS_10, "the shell reaped and its child dead", async || {
        (!exists(shell) && !alive(child)).then_some(())
    })
    .await;
    rig.no_sessions_left().await;
    rig.stop().await;
}

/// A TCP relay in front of `backend` that records the WebSocket text frames
/// the client sends, in order (client frames are masked; they are unmasked
/// here, and forwarded untouched).
async fn wire_tap(backend: SocketAddr) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let seen = frames.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(upstream) = TcpStream::connect(backend).await else {
                continue;
            };
            let seen = seen.clone();
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut up_rx, mut up_tx) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_rx, &mut client_tx).await;
            });
            tokio::spawn(async move {
                let mut parser = WsParser::default();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match client_rx.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if up_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    for text in parser.push(&buf[..n]) {
                        seen.lock().unwrap().push(text);
                    }
                }
            });
        }
    });
    (port, frames)
}

/// Just enough of RFC 6455 to read a client's text frames.
#[derive(Default)]
struct WsParser {
    upgraded: bool,
    buf: Vec<u8>,
}

impl WsParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        if !self.upgraded {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return out;
            };
            self.buf.drain(..end + 4);
            self.upgraded = true;
        }
        loop {
            if self.buf.len() < 2 {
                return out;
            }
            let opcode = self.buf[0] & 0x0f;
            let masked = self.buf[1] & 0x80 != 0;
            let (len, mut at) = match self.buf[1] & 0x7f {
                126 if self.buf.len() >= 4 => {
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 if self.buf.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => return out,
                n => (n as usize, 2),
            };
            let mask = if masked {
                if self.buf.len() < at + 4 {
                    return out;
                }
                let m = [
                    self.buf[at],
                    self.buf[at + 1],
                    self.buf[at + 2],
                    self.buf[at + 3],
                ];
                at += 4;
                Some(m)
            } else {
                None
            };
            if self.buf.len() < at + len {
                return out;
            }
            let mut payload: Vec<u8> = self.buf[at..at + len].to_vec();
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            self.buf.drain(..at + len);
            if opcode == 1 {
                out.push(String::from_utf8_lossy(&payload).into_owned());
            }
        }
    }
}

#[actix_rt::test]
async fn attach_reply_precedes_the_end_of_a_shell_that_exits_at_once() {
    let plane = plane().await;
    let (port, frames) = wire_tap(plane.addr()).await;
    let rig = Rig(Fixture::start_on(plane, |s| {
        s.socket_url = CloudUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        s.terminal = sh("/bin/true");
    })
    .await);

    for round in 0..3 {
        let sid = format!("term-true-{round}");
        let mut term = rig.attach(&sid).await;
        let end = term.ended().await;
        assert_eq!(end.code, Some(0), "{end:?}");
        assert_eq!((end.message.as_deref(), end.error.as_deref()), (None, None));
        // On the wire, the reply (the only `attached` response of this
        // session) went out before its session-end.
        let sid_field = format!("\"sessionId\":\"{sid}\"");
        let wire = eventually(SECS_10, "both frames on the wire", async || {
            let frames = frames.lock().unwrap();
            let replies: Vec<usize> = frames
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.contains("\"type\":\"response\"") && f.contains("\"attached\":true")
                })
                .map(|(i, _)| i)
                .collect();
            let end = frames
                .iter()
                .position(|f| f.contains("\"type\":\"session-end\"") && f.contains(&sid_field))?;
            (replies.len() > round).then(|| (replies[round], end))
        })
        .await;
        assert!(
            wire.0 < wire.1,
            "reply at frame {}, session-end at frame {}",
            wire.0,
            wire.1
        );
    }
    rig.stop().await;
}

#[actix_rt::test]
async fn five_concurrent_sessions_each_get_only_their_own_output() {
    let rig = Rig::start(sh("/bin/bash")).await;
    let ids: Vec<String> = (0..5).map(|i| format!("term-many-{i}")).collect();
    let mut terms = Vec::new();
    for id in &ids {
        terms.push(rig.attach(id).await);
    }
    assert_eq!(rig.open_sessions().await.len(), 5);
    for (i, id) in ids.iter().enumerate() {
        rig.input(id, &format!("echo \"mark-$((1000+{i}))-end\"\n"));
    }
    for (i, term) in terms.iter_mut().enumerate() {
        term.expect(&format!("mark-{}-end", 1000 + i)).await;
    }
    for (i, term) in terms.iter_mut().enumerate() {
        let out = term.text();
        for j in (0..5).filter(|j| *j != i) {
            assert!(
                !out.contains(&format!("mark-{}-end", 1000 + j)),
                "session {i} got session {j}'s output: {out:?}"
            );
        }
    }
    for (id, term) in ids.iter().zip(terms.iter_mut()) {
        rig.input(id, "exit\n");
        assert_eq!(term.ended().await.code, Some(0));
    }
    rig.stop().await;
}

#[actix_rt::test]
async fn socket_drop_ends_every_session_and_kills_their_shells() {
    let rig = Rig::start(sh("/bin/bash")).await;
    let mut pids = Vec::new();
    for i in 0..3 {
        let sid = format!("term-drop-{i}");
        let mut term = rig.attach(&sid).await;
        rig.input(&sid, "echo \"pid=$$:$((1+1))\"\n");
        let out = term.expect(":2").await;
        let pid = number_after(&out, "pid=");
        assert!(alive(pid));
        pids.push(pid);
    }
    assert!(rig.plane.disconnect_daemon(&rig.id).await);
    eventually(SECS_10, "every shell gone", async || {
        pids.iter().all(|p| !exists(*p)).then_some(())
    })
    .await;
    for i in 0..3 {
        let sid = format!("term-drop-{i}");
        wait_event(&rig.daemon, SECS_10, "session closed by the drop", |e| {
            matches!(e, Event::SessionClosed { session_id, reason }
                if *session_id == sid && reason == "control socket disconnected")
        })
        .await;
    }
    rig.no_sessions_left().await;
    // The daemon reconnects and goes on.
    wait_connected(&rig.plane, &rig.id).await;
    assert!(rig.ping().await.ok);
    let mut term = rig.attach("term-after-drop").await;
    rig.input("term-after-drop", "echo again-$((2+2))\n");
    term.expect("again-4").await;
    rig.stop().await;
}

#[actix_rt::test]
async fn bad_base64_ends_the_session_with_an_error_and_the_daemon_goes_on() {
    let rig = Rig::start(sh("/bin/bash")).await;
    let mut term = rig.attach("term-b64").await;
    rig.input("term-b64", "echo \"pid=$$:$((1+1))\"\n");
    let out = term.expect(":2").await;
    let pid = number_after(&out, "pid=");
    rig.send(Message::SessionInput(SessionInput {
        session_id: "term-b64".into(),
        chunk_base64: "!!! not base64 !!!".into(),
        is_binary: false,
    }));
    let end = term.ended().await;
    assert_eq!(
        end.error.as_deref(),
        Some("invalid base64 in session-input")
    );
    eventually(SECS_10, "the shell gone", async || {
        (!exists(pid)).then_some(())
    })
    .await;
    let pong = rig.ping().await;
    assert!(pong.ok);
    assert_eq!(pong.data.unwrap()["data"]["pong"], true);

    // Messages for sessions that do not exist are answered with an end.
    let mut ghost = Term::new(rig.plane.subscribe_session(&rig.id, "term-ghost"));
    rig.input("term-ghost", "ls\n");
    assert_eq!(
        ghost.ended().await.error.as_deref(),
        Some("unknown session")
    );
    rig.stop().await;
}

#[actix_rt::test]
async fn unsupported_and_invalid_attaches_are_400_and_duplicates_409() {
    let rig = Rig::start(sh("/bin/bash")).await;
    for (payload, message) in [
        (
            json!({"sessionId": "w", "kind": "websocket", "targetUrl": "ws://127.0.0.1:1/"}),
            "websocket sessions are not supported by this daemon",
        ),
        (
            json!({"sessionId": "t", "kind": "tunnel"}),
            "tunnel sessions are not supported by this daemon",
        ),
        (
            json!({"sessionId": "c", "kind": "terminal", "terminalTarget": "container", "containerId": "abc"}),
            "container terminals are not supported by this daemon",
        ),
        (
            json!({"kind": "terminal"}),
            "Invalid session attach payload",
        ),
        (
            json!({"sessionId": "x", "kind": "vnc"}),
            "Invalid session attach payload",
        ),
        (
            json!({"sessionId": "bad id", "kind": "terminal"}),
            "Invalid session attach payload: sessionId",
        ),
    ] {
        let reply = rig.attach_payload(payload.clone()).await;
        assert!(!reply.ok, "{payload}");
        assert_eq!(reply.status, 400, "{payload}");
        let got = reply.message.unwrap_or_default();
        assert!(got.starts_with(message), "{payload}: {got}");
    }
    let _term = rig.attach("term-dup").await;
    let dup = rig
        .attach_payload(
            json!({"sessionId": "term-dup", "kind": "terminal", "terminalTarget": "host"}),
        )
        .await;
    assert_eq!((dup.ok, dup.status), (false, 409));
    assert!(dup.message.unwrap().contains("already attached"));
    rig.stop().await;
}

#[actix_rt::test]
async fn disabled_terminal_is_403() {
    let rig = Rig::start(TerminalSettings {
        enabled: false,
        ..TerminalSettings::default()
    })
    .await;
    let reply = rig
        .attach_payload(json!({"sessionId": "off", "kind": "terminal", "terminalTarget": "host"}))
        .await;
    assert_eq!((reply.ok, reply.status), (false, 403));
    assert_eq!(
        reply.message.as_deref(),
        Some("host terminal is disabled on this cluster")
    );
    assert!(rig.open_sessions().await.is_empty());
    rig.stop().await;
}

#[actix_rt::test]
async fn session_limit_is_429_and_frees_up_when_a_session_ends() {
    let rig = Rig::start(TerminalSettings {
        max_sessions: 1,
        ..sh("/bin/sh")
    })
    .await;
    let mut first = rig.attach("term-limit-1").await;
    let refused = rig
        .attach_payload(
            json!({"sessionId": "term-limit-2", "kind": "terminal", "terminalTarget": "host"}),
        )
        .await;
    assert_eq!((refused.ok, refused.status), (false, 429));
    assert!(refused.message.unwrap().contains("the limit is 1"));
    rig.input("term-limit-1", "exit\n");
    first.ended().await;
    rig.no_sessions_left().await;
    let _second = rig.attach("term-limit-2").await;
    rig.stop().await;
}

#[actix_rt::test]
async fn idle_sessions_are_reaped() {
    let rig = Rig::start(TerminalSettings {
        idle_timeout: Duration::from_millis(600),
        ..sh("/bin/sh")
    })
    .await;
    let mut term = rig.attach("term-idle").await;
    let end = term.ended().await;
    assert_eq!(end.message.as_deref(), Some("idle timeout"));
    wait_event(&rig.daemon, SECS_10, "closed as idle", |e| {
        matches!(e, Event::SessionClosed { session_id, reason } if session_id == "term-idle" && reason == "idle timeout")
    })
    .await;
    rig.stop().await;
}

/// No fallback to voltd's account: without the terminal account (and, when
/// not root, without a helper) an attach is a 403 that says why.
#[actix_rt::test]
async fn a_missing_terminal_account_is_403_and_nothing_falls_back_to_voltd() {
    let rig = Rig::start(TerminalSettings {
        user: voltd_actors::config::UserName::parse("volt-no-such-account").unwrap(),
        allow_daemon_user: false,
        ..sh("/bin/sh")
    })
    .await;
    let reply = rig
        .attach_payload(
            json!({"sessionId": "no-account", "kind": "terminal", "terminalTarget": "host"}),
        )
        .await;
    assert_eq!((reply.ok, reply.status), (false, 403), "{reply:?}");
    let message = reply.message.unwrap_or_default();
    assert!(
        message.contains("volt-no-such-account does not exist")
            || message.contains("never falls back to its own account"),
        "{message}"
    );
    assert!(rig.open_sessions().await.is_empty());
    assert!(rig.ping().await.ok);
    rig.stop().await;
}

/// Switching accounts needs root: run by `scripts/test.sh` as root (CI).
mod needs_root {
    use super::*;
    use testkit::daemon::TEST_TERMINAL_USER;

    fn uid_of(name: &str) -> u32 {
        let out = std::process::Command::new("id")
            .args(["-u", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// The last line of `out` that starts with `prefix` (the typed command
    /// is echoed before its output).
    fn last_line<'a>(out: &'a str, prefix: &str) -> &'a str {
        let from = out
            .rfind(prefix)
            .unwrap_or_else(|| panic!("{prefix} in {out}"));
        out[from..].lines().next().unwrap()
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn the_shell_runs_as_the_terminal_account_and_cannot_read_voltds_secrets() {
        testkit::needs_root();
        let rig = Rig::start(sh("/bin/sh")).await;
        // The credentials as this host keeps them (sealed where root can
        // seal, else the 0600 plain file): the shell must read neither.
        let creds = testkit::creds::stored_path(rig.state.path());
        assert!(creds.is_file(), "the daemon enrolled");
        let password = rig.created.daemon_password.clone();
        assert_eq!(
            testkit::creds::stored_credentials(rig.state.path())
                .daemon_password
                .expose(),
            password
        );
        let creds = creds.display().to_string();
        let mut term = rig.attach("term-identity").await;
        let state = rig.state.path().display().to_string();
        let voltd = std::process::id();
        rig.input(
            "term-identity",
            &format!(
                "echo \"who uid=$(id -u) user=$USER tty=$(stat -c %U $(tty))\"; \
                 cat {creds} {state}/credentials.json; echo \"creds=$?\"; \
                 ls {state} >/dev/null 2>&1; echo \"ls=$?\"; \
                 cat /proc/{voltd}/environ; echo \"environ=$?\"; echo end-$((2+3))\n"
            ),
        );
        let out = term.expect("end-5").await;
        let who = last_line(&out, "who uid=");
        assert!(
            who.starts_with(&format!(
                "who uid={} user={TEST_TERMINAL_USER} tty={TEST_TERMINAL_USER}",
                uid_of(TEST_TERMINAL_USER)
            )),
            "{who}"
        );
        for check in ["creds=", "ls=", "environ="] {
            let line = last_line(&out, check);
            assert_ne!(line, format!("{check}0"), "{check} succeeded: {out}");
        }
        assert!(
            !out.contains(&password),
            "the daemon password leaked: {out}"
        );
        assert!(
            !out.contains("CARGO_MANIFEST_DIR="),
            "voltd's environment leaked: {out}"
        );
        rig.stop().await;
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn through_the_socket_activated_helper_the_shell_runs_as_the_terminal_account() {
        testkit::needs_root();
        testkit::daemon::ensure_test_terminal_account();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("voltd-terminal.sock");
        let config = dir.path().join("voltd.toml");
        std::fs::write(
            &config,
            format!(
                "cloud_url = \"http://127.0.0.1:9\"\nteam_cluster_id = \"helper-test\"\nstate_dir = \"{}\"\n[terminal]\nuser = \"{TEST_TERMINAL_USER}\"\nshell = \"/bin/sh\"\n",
                dir.path().join("state").display()
            ),
        )
        .unwrap();
        // systemd's own socket activation, as voltd-terminal.socket does
        // it (Accept=yes; the connection on stdin/stdout).
        let mut activate = std::process::Command::new("systemd-socket-activate")
            .arg("--listen")
            .arg(&socket)
            .args(["--accept", "--inetd"])
            .arg(crate::voltd_bin())
            .arg("--config")
            .arg(&config)
            .arg("terminal-helper")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("systemd-socket-activate (Debian package systemd)");
        eventually(SECS_10, "the helper socket", async || {
            socket.exists().then_some(())
        })
        .await;
        let rig = Rig::start(TerminalSettings {
            helper_socket: AbsPath::new(&socket).unwrap(),
            ..sh("/bin/sh")
        })
        .await;
        let mut term = rig.attach("term-helper").await;
        rig.input(
            "term-helper",
            "echo \"via uid=$(id -u) ppid-user=$(ps -o user= -p $PPID) end-$((2+3))\"\n",
        );
        let out = term.expect("end-5").await;
        let line = last_line(&out, "via uid=");
        assert!(
            line.starts_with(&format!("via uid={}", uid_of(TEST_TERMINAL_USER))),
            "{line}"
        );
        rig.input("term-helper", "exit 4\n");
        assert_eq!(term.ended().await.code, Some(4));
        rig.no_sessions_left().await;
        rig.stop().await;
        let _ = activate.kill();
        let _ = activate.wait();
    }
}

#[actix_rt::test]
async fn flood_arrives_complete_in_frames_under_max_payload_while_pings_are_answered() {
    const FLOOD: usize = 20_000_000;
    const MARKER: &[u8] = b"flood-42-done";
    let rig = Rig::start(sh("/bin/bash")).await;
    let mut term = rig.attach("term-flood").await;
    rig.input(
        "term-flood",
        &format!("yes | head -c {FLOOD}; echo \"flood-$((40+2))-done\"\n"),
    );
    let done = Cell::new(false);
    let pings = Cell::new(0u32);
    let flood = async {
        loop {
            let before = term.output.len().saturating_sub(MARKER.len());
            assert!(term.pump(Duration::from_secs(60)).await, "ended early");
            if term.output[before..]
                .windows(MARKER.len())
                .any(|w| w == MARKER)
            {
                break;
            }
            // Keep only a tail in memory; `bytes` counts everything.
            if term.output.len() > 1 << 20 {
                let cut = term.output.len() - MARKER.len();
                term.output.drain(..cut);
            }
        }
        done.set(true);
    };
    let ping_loop = async {
        // The server's pace: a ping every 50 ms while the flood runs.
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !done.get() {
            pace.tick().await;
            let pong = rig.ping().await;
            assert!(pong.ok, "{pong:?}");
            pings.set(pings.get() + 1);
        }
    };
    tokio::join!(flood, ping_loop);
    assert!(term.bytes >= FLOOD, "only {} bytes arrived", term.bytes);
    assert!(pings.get() >= 1, "no ping answered during the flood");
    let max_payload = volt_protocol::engineio::DEFAULT_MAX_PAYLOAD as usize;
    assert!(
        term.max_frame <= max_payload,
        "a frame of {} bytes",
        term.max_frame
    );
    assert!(term.frames > 100, "{} frames", term.frames);
    rig.input("term-flood", "exit\n");
    assert_eq!(term.ended().await.code, Some(0));
    rig.stop().await;
}
