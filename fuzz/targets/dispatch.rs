//! The structured fuzz target's body: arbitrary sequences of what the
//! control socket hands the dispatcher (commands for every built-in family
//! with arbitrary payloads, responses, routed messages, undecodable
//! envelopes, the link going down and up) driven through the real
//! `Dispatcher` and the real command families, with a daemon that manages
//! no service, has no terminal and keeps its state in a temporary
//! directory. Shared by `fuzz/fuzz_targets/dispatch.rs` and the corpus
//! replay test (`actors/tests/it/fuzz_corpus.rs`).
//!
//! What must hold: nothing panics (a handler panic is answered with a 500
//! "panicked" reply — that counts as a crash here); every command that
//! arrived while the link was up gets an answer; every frame sent is a
//! valid envelope within `maxPayload`. Time is paused (tokio's test clock),
//! so every timeout in the daemon runs to its end in no real time.

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use volt_protocol::Message;
use voltd_actors::api::{Credentials, Link, SocketEvent};
use voltd_actors::cloud::dispatch::{DispatchSettings, Dispatcher};
use voltd_actors::config::{AbsPath, CloudUrl, ClusterId, Settings};
use voltd_actors::daemon::{self, Wiring};
use voltd_actors::remote;

/// Every built-in command name (and what an arbitrary string finds).
const COMMANDS: &[&str] = &[
    "runtime.ping",
    "runtime.status",
    "runtime.restart",
    "runtime.update",
    "runtime.uninstall",
    "runtime.services.status",
    "runtime.services.restart",
    "session.attach",
    "remote.explorer.list",
    "remote.explorer.node",
    "remote.explorer.download",
    "object.upload",
    "object.list",
    "object.get",
];

const KEYS: &[&str] = &[
    "target",
    "path",
    "service",
    "sessionId",
    "kind",
    "terminalTarget",
    "bucket",
    "objectKey",
    "prefix",
    "bodyBase64",
    "contentType",
    "version",
    "targetImage",
    "reason",
    "metadata",
    "limit",
    "cursor",
    "cols",
    "rows",
];

/// Values the families look for.
const WORDS: &[&str] = &[
    "redis",
    "mongo",
    "minio",
    "host-files",
    "redis-data",
    "mongo-documents",
    "volt-dumps",
    "db/0",
    "",
    "/",
    "..",
    "terminal",
    "host",
];

/// JSON, biased towards the shapes the families read.
#[derive(Debug, Arbitrary)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Word(u8),
    Arr(Vec<Json>),
    Obj(Vec<(Key, Json)>),
}

#[derive(Debug, Arbitrary)]
pub enum Key {
    Known(u8),
    Other(String),
}

impl Key {
    fn name(&self) -> String {
        match self {
            Key::Known(i) => KEYS[*i as usize % KEYS.len()].to_owned(),
            Key::Other(s) => s.clone(),
        }
    }
}

impl Json {
    fn value(&self, depth: u32) -> Value {
        if depth > 6 {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(n) => json!(n),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => json!(s),
            Json::Word(i) => json!(WORDS[*i as usize % WORDS.len()]),
            Json::Arr(v) => Value::Array(v.iter().map(|j| j.value(depth + 1)).collect()),
            Json::Obj(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.name(), v.value(depth + 1)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Name {
    Known(u8),
    Other(String),
}

/// One thing the control socket hands the dispatcher.
#[derive(Debug, Arbitrary)]
pub enum Step {
    Command {
        name: Name,
        request_id: u8,
        response_type: u8,
        payload: Option<Json>,
    },
    Response {
        request_id: u8,
        ok: bool,
        status: u16,
        data: Json,
    },
    /// Any other message type, as JSON.
    Other {
        kind: String,
        body: Vec<(Key, Json)>,
    },
    /// An envelope that does not decode.
    Invalid(String),
    Down,
    Up,
}

/// A run: the server's `maxPayload` and the steps.
#[derive(Debug, Arbitrary)]
pub struct Input {
    pub max_payload: u16,
    pub steps: Vec<Step>,
}

fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::new(
        CloudUrl::parse("http://127.0.0.1:9").expect("a URL"),
        ClusterId::parse("fuzz").expect("an id"),
        dir.join("state"),
    );
    s.install.install_root = AbsPath::new(dir.join("install")).expect("absolute");
    s.terminal.enabled = false;
    s.socket.command_timeout = Duration::from_secs(5);
    s
}

/// Runs one input (see the module docs); panics on a violated property.
pub fn dispatch(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if input.steps.len() > 64 {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let system = actix_rt::System::new();
    system.block_on(run(input, dir.path()));
}

async fn run(input: Input, dir: &std::path::Path) {
    tokio::time::pause();
    let settings = Arc::new(settings(dir));
    let bus = voltd_actors::events::EventBus::default();
    let w = Wiring::new(bus.clone());
    w.credentials.publish(Credentials {
        team_cluster_id: "fuzz".into(),
        daemon_password: "pw".into(),
    });
    let lifecycle = daemon::lifecycle(settings.clone(), &w);
    let handler = remote::command_handler(daemon::handler_context(settings.clone(), &w, lifecycle));
    let (dispatcher, _) = otp::supervisor::spawn_actor(Dispatcher::new(
        handler,
        w.router.clone(),
        w.outbox.clone(),
        DispatchSettings {
            emit_buffer: 64,
            command_timeout: settings.socket.command_timeout,
        },
        bus.clone(),
        otp::ExitSlot::new(),
    ));
    let max_payload = 256 + input.max_payload as usize * 16;
    let (tx, mut rx) = mpsc::channel(100_000);
    let link = Link::new(1, tx, max_payload);
    dispatcher.do_send(SocketEvent::Up(link.clone()));
    let mut up = true;
    let mut expected: HashSet<String> = HashSet::new();
    for step in &input.steps {
        let event = match step {
            Step::Command {
                name,
                request_id,
                response_type,
                payload,
            } => {
                let command = match name {
                    Name::Known(i) => COMMANDS[*i as usize % COMMANDS.len()].to_owned(),
                    Name::Other(s) => s.clone(),
                };
                let request_id = format!("r{request_id}");
                let response_type = ["json", "buffer", "stream"][*response_type as usize % 3];
                let mut v = json!({
                    "type": "command",
                    "requestId": request_id,
                    "command": command,
                    "responseType": response_type,
                });
                if let Some(p) = payload {
                    v["payload"] = p.value(0);
                }
                match Message::decode(&v.to_string()) {
                    Ok(m) => {
                        if up {
                            expected.insert(request_id);
                        }
                        SocketEvent::Message(m)
                    }
                    Err(e) => SocketEvent::Invalid {
                        raw: v.to_string(),
                        error: e.to_string(),
                    },
                }
            }
            Step::Response {
                request_id,
                ok,
                status,
                data,
            } => {
                let v = json!({"type": "response", "requestId": format!("r{request_id}"), "ok": ok, "status": status, "data": data.value(0)});
                match Message::decode(&v.to_string()) {
                    Ok(m) => SocketEvent::Message(m),
                    Err(_) => continue,
                }
            }
            Step::Other { kind, body } => {
                let mut map: Map<String, Value> =
                    body.iter().map(|(k, v)| (k.name(), v.value(0))).collect();
                map.insert("type".into(), json!(kind));
                let raw = Value::Object(map).to_string();
                match Message::decode(&raw) {
                    Ok(m) => SocketEvent::Message(m),
                    Err(e) => SocketEvent::Invalid {
                        raw,
                        error: e.to_string(),
                    },
                }
            }
            Step::Invalid(raw) => SocketEvent::Invalid {
                raw: raw.clone(),
                error: "fuzz".into(),
            },
            Step::Down => {
                up = false;
                SocketEvent::Down { connection: 1 }
            }
            Step::Up => {
                up = true;
                SocketEvent::Up(link.clone())
            }
        };
        dispatcher.do_send(event);
    }
    // Let every handler, stream and timeout run to its end (virtual time).
    tokio::time::sleep(Duration::from_secs(600)).await;

    let mut answered: HashSet<String> = HashSet::new();
    while let Ok(frame) = rx.try_recv() {
        let text = frame.into_text().expect("a text frame");
        let text = text.as_str();
        assert!(
            text.len() <= max_payload,
            "a frame of {} > {max_payload}",
            text.len()
        );
        let body = text
            .strip_prefix("42[\"team-cluster-daemon:message\",")
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or_else(|| panic!("not a message frame: {text}"));
        let msg = Message::decode(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        if let Message::Response(r) = &msg {
            if let Some(m) = &r.message {
                assert!(!m.contains("panicked"), "a handler panicked: {m}");
            }
            answered.insert(r.request_id.clone());
        }
    }
    let missing: Vec<&String> = expected.difference(&answered).collect();
    assert!(missing.is_empty(), "commands never answered: {missing:?}");
}
