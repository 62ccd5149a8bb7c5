//! Interop against the reference implementation: the Node `socket.io` v4
//! server (tests/it/interop/server.js) talking to voltd's own codec.
//!
//! Needs `node` and the npm package `socket.io@4.8.4`; `.ci/install-services`
//! installs it under `$VOLTD_CI_DIR/node_modules` (default
//! `~/.cache/voltd-ci`). Set `VOLTD_NODE_MODULES` to use another copy.

use otp::ExitCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use testkit::daemon::*;
use testkit::eventually;
use testkit::standins::node_modules;
use tokio::io::{AsyncBufReadExt, BufReader};
use volt_protocol::ErrorCode;
use voltd_actors::api::SendCommand;
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::events::Event;

const SECS_10: Duration = Duration::from_secs(10);
const CLUSTER: &str = "interop-cluster";
const PASSWORD: &str = "interop-password";

struct NodeServer {
    child: tokio::process::Child,
    port: u16,
    http: reqwest::Client,
}

impl NodeServer {
    async fn start(mode: &str, ping_interval_ms: u64, ping_timeout_ms: u64) -> Self {
        let modules = node_modules();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/interop/server.js");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .arg("0")
            .env("NODE_PATH", &modules)
            .env("CLUSTER_ID", CLUSTER)
            .env("DAEMON_PASSWORD", PASSWORD)
            .env("MODE", mode)
            .env("PING_INTERVAL", ping_interval_ms.to_string())
            .env("PING_TIMEOUT", ping_timeout_ms.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (install Node.js 20)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(SECS_10, lines.next_line())
            .await
            .expect("node server starts")
            .unwrap()
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from node: {line}"));
        NodeServer {
            child,
            port,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn state(&self) -> Value {
        self.http
            .get(format!("{}/ctl/state", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn command(&self, command: &str, payload: Value, with_ack: bool) -> Value {
        self.http
            .post(format!("{}/ctl/command", self.url()))
            .json(&json!({"command": command, "payload": payload, "withAck": with_ack}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn disconnect(&self) {
        self.http
            .post(format!("{}/ctl/disconnect", self.url()))
            .send()
            .await
            .unwrap();
    }

    async fn wait_state(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(SECS_10, what, async || {
            let s = self.state().await;
            if pred(&s) { Ok(s) } else { Err(s) }
        })
        .await
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn daemon_settings(url: &str, state: &std::path::Path, password: &str) -> Settings {
    let mut s = Settings::new(
        CloudUrl::parse(url).unwrap(),
        ClusterId::parse(CLUSTER).unwrap(),
        state.to_path_buf(),
    );
    s.daemon_password = Some(password.into());
    s.heartbeat_interval = Duration::from_millis(300);
    s.socket.reconnect_base = Duration::from_millis(50);
    s.socket.reconnect_max = Duration::from_millis(300);
    s.socket.command_timeout = Duration::from_secs(5);
    s
}

#[actix_rt::test]
async fn registers_answers_pings_and_commands_with_acks_against_node_socket_io() {
    // Fast pings: the server closes any client that misses a pong within
    // 300 ms, so ten pongs on the first connection prove ping/pong works.
    let server = NodeServer::start("answer", 200, 300).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start_daemon(daemon_settings(&server.url(), state.path(), PASSWORD));

    let s = server
        .wait_state("registration", |s| s["registrations"] == 1)
        .await;
    assert_eq!(
        s["invalidRegistrations"], 0,
        "register payload has exactly the two keys"
    );
    assert_eq!(s["registerAcks"], 1, "register is sent with an ack id");

    let s = server
        .wait_state("ten pongs and three heartbeats", |s| {
            s["pongs"].as_u64().unwrap() >= 10 && s["heartbeats"].as_array().unwrap().len() >= 3
        })
        .await;
    assert_eq!(s["connections"], 1, "no reconnect: pings were answered");
    assert_eq!(s["registrations"], 1);
    assert!(s["heartbeats"].as_array().unwrap().len() >= 3, "{s}");
    let hb = &s["heartbeats"][0];
    assert_eq!(hb["teamClusterId"], CLUSTER);
    assert_eq!(hb["daemonPassword"], PASSWORD);
    assert!(hb["metrics"]["memory"]["totalBytes"].as_u64().unwrap() > 0);

    // A command the server emits with an ack callback: acked, and answered
    // with the reference envelope.
    let r = server
        .command("runtime.ping", json!({"metadata": {"traceId": "t"}}), true)
        .await;
    assert_eq!(r["ack"], json!([{"ok": true}]));
    let resp = &r["response"];
    assert_eq!(resp["type"], "response");
    assert_eq!(resp["ok"], true);
    assert_eq!(resp["status"], 200);
    assert_eq!(resp["data"]["status"], "success");
    assert_eq!(resp["data"]["data"]["pong"], true);

    let r = server.command("nope.command", json!({}), false).await;
    assert_eq!(r["response"]["ok"], false);
    assert_eq!(r["response"]["status"], 404);
    assert_eq!(
        r["response"]["message"],
        "Unknown daemon command: nope.command"
    );

    assert_eq!(
        count_events(&daemon, |e| matches!(e, Event::SocketDisconnected { .. })),
        0
    );
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
}

#[actix_rt::test]
async fn pending_commands_fail_at_once_when_the_socket_drops() {
    // "silent": the server never answers the daemon's commands.
    let server = NodeServer::start("silent", 25_000, 20_000).await;
    let state = tempfile::tempdir().unwrap();
    let mut s = daemon_settings(&server.url(), state.path(), PASSWORD);
    s.heartbeat_interval = Duration::from_secs(3600);
    let daemon = start_daemon(s);
    server
        .wait_state("registration", |s| s["registrations"] == 1)
        .await;
    let dispatcher = daemon.wiring.outbox.clone();

    // No answer within the timeout → COMMAND_TIMEOUT.
    let err = dispatcher
        .command(
            SendCommand::new("runtime.config.get", json!({})).timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "COMMAND_TIMEOUT");

    // A command left pending (30 s timeout) fails as soon as the socket drops.
    let pending = dispatcher.command(SendCommand::new("runtime.config.get", json!({})));
    let started = tokio::time::Instant::now();
    let (result, ()) = tokio::join!(pending, async {
        server
            .wait_state("command seen", |s| {
                s["daemonCommands"].as_array().unwrap().len() >= 3
            })
            .await;
        server.disconnect().await;
    });
    let err = result.unwrap_err();
    assert_eq!(err.code().as_str(), "SOCKET_NOT_READY", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed at once, not at the timeout"
    );

    // The heartbeat that was pending at the drop failed the same way.
    wait_event(
        &daemon,
        SECS_10,
        "failed heartbeat",
        |e| matches!(e, Event::HeartbeatFailed { code, .. } if *code == ErrorCode::SocketNotReady),
    )
    .await;
    // And the daemon is back.
    server
        .wait_state("re-registration", |s| s["registrations"] == 2)
        .await;
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
}

#[actix_rt::test]
async fn a_rejected_password_ends_the_daemon_with_exit_code_4() {
    let server = NodeServer::start("answer", 25_000, 20_000).await;
    let state = tempfile::tempdir().unwrap();
    let daemon = start_daemon(daemon_settings(
        &server.url(),
        state.path(),
        "wrong-password",
    ));
    let code = tokio::time::timeout(SECS_10, daemon.wait())
        .await
        .expect("daemon ends");
    assert_eq!(code, ExitCode::CredentialsRejected);
    let s = server.state().await;
    assert_eq!(
        s["rejectedRegistrations"], 1,
        "no retry loop on rejected credentials"
    );
}
