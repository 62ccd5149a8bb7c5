//! Heartbeat scheduling and reconnect backoff, with paused tokio time: the
//! real actors run; virtual time makes seconds of waiting instant and exact.

use otp::ExitSlot;
use otp::supervisor::spawn_actor;
use serde_json::json;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volt_protocol::ClusterStatus;
use volt_protocol::envelope::ResponseMessage;
use volt_protocol::{ErrorCode, Message};
use voltd_actors::api::link::Link;
use voltd_actors::api::{Reply, Run, SocketEvent};
use voltd_actors::cloud::control_socket::ControlSocket;
use voltd_actors::cloud::credentials::Credentials;
use voltd_actors::cloud::dispatch::{DispatchSettings, Dispatcher};
use voltd_actors::cloud::heartbeat::Heartbeat;
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::daemon::Wiring;
use voltd_actors::events::{Event, EventBus};
use voltd_actors::host::monitoring::Monitoring;

/// tokio's timer has millisecond granularity and rounds each sleep up, so
/// virtual instants land within a few ms of the exact value.
#[track_caller]
fn assert_about(actual: Duration, expected: Duration) {
    let slack = Duration::from_millis(5);
    assert!(
        actual >= expected && actual <= expected + slack,
        "{actual:?} is not {expected:?} (+{slack:?})"
    );
}

fn settings(url: &str) -> Settings {
    let dir = std::env::temp_dir().join(format!("voltd-timing-{}", std::process::id()));
    let mut s = Settings::new(
        CloudUrl::parse(url).unwrap(),
        ClusterId::parse("c1").unwrap(),
        dir,
    );
    s.heartbeat_interval = Duration::from_secs(10);
    s.socket.command_timeout = Duration::from_secs(30);
    s
}

fn creds() -> Credentials {
    Credentials {
        team_cluster_id: "c1".into(),
        daemon_password: "pw".into(),
    }
}

/// A daemon core (dispatcher, heartbeat, monitoring) whose link is an
/// in-memory queue the test reads: the test plays the server.
struct Harness {
    bus: EventBus,
    wiring: Wiring,
    frames: mpsc::Receiver<WsMessage>,
    _link_tx: Link,
}

fn harness() -> Harness {
    let s = Arc::new(settings("http://127.0.0.1:9"));
    let bus = EventBus::default();
    let wiring = Wiring::new(bus.clone());
    wiring.credentials.publish(creds());
    let (d, _) = spawn_actor(Dispatcher::new(
        Rc::new(|_| Run::Done(Reply::not_found("no handlers here"))),
        wiring.router.clone(),
        wiring.outbox.clone(),
        DispatchSettings {
            emit_buffer: 16,
            command_timeout: s.socket.command_timeout,
        },
        bus.clone(),
        ExitSlot::new(),
    ));
    wiring.socket_events.bind(d.clone());
    let (_m, _) = spawn_actor(Monitoring::new(
        "/".into(),
        wiring.samples.clone(),
        ExitSlot::new(),
    ));
    let (_h, _) = spawn_actor(Heartbeat::new(
        s,
        wiring.outbox.clone(),
        wiring.credentials.clone(),
        wiring.samples.clone(),
        bus.clone(),
        ExitSlot::new(),
    ));
    let (tx, frames) = mpsc::channel(64);
    let link = Link::new(1, tx, 1_000_000);
    d.do_send(SocketEvent::Up(link.clone()));
    Harness {
        bus,
        wiring,
        frames,
        _link_tx: link,
    }
}

/// Next outbound command (skipping nothing: only heartbeats are sent here).
async fn next_command(h: &mut Harness) -> (String, String) {
    let frame = h.frames.recv().await.expect("a frame");
    let text = frame.into_text().unwrap();
    let json = text.as_str().strip_prefix("42").unwrap();
    let (_, args): (String, Vec<serde_json::Value>) = {
        let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
        (v[0].as_str().unwrap().to_owned(), v[1..].to_vec())
    };
    let Message::Command(c) = Message::decode(&args[0].to_string()).unwrap() else {
        panic!("not a command: {text}")
    };
    (c.request_id, c.command)
}

fn answer(h: &Harness, request_id: &str, status: &str) {
    h.wiring
        .socket_events
        .do_send(SocketEvent::Message(Message::Response(
            ResponseMessage::success(request_id, json!({"teamCluster": {"status": status}})),
        )));
}

fn registered(bus: &EventBus) {
    bus.emit(Event::Registered {
        cluster_id: "c1".into(),
        connection: 1,
        extensions: Default::default(),
    });
}

#[actix_rt::test]
async fn first_beat_at_registration_next_one_interval_after_the_answer() {
    tokio::time::pause();
    let mut h = harness();
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    registered(&h.bus);

    let (id, command) = next_command(&mut h).await;
    assert_eq!(command, "runtime.heartbeat");
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "first beat right after registration"
    );

    // The server takes 3 s to answer: the next beat is 10 s after the
    // answer, not 10 s after the request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    answer(&h, &id, "connected");
    let (id2, _) = next_command(&mut h).await;
    assert_about(t0.elapsed(), Duration::from_secs(13));

    answer(&h, &id2, "connected");
    let _ = next_command(&mut h).await;
    assert_about(t0.elapsed(), Duration::from_secs(23));

    let ok = h
        .bus
        .recent(100)
        .iter()
        .filter(|r| matches!(r.event, Event::HeartbeatOk { .. }))
        .count();
    assert_eq!(ok, 2);
    let latency = h.bus.recent(100).iter().find_map(|r| match &r.event {
        Event::HeartbeatOk {
            latency_ms,
            server_status,
        } => Some((*latency_ms, *server_status)),
        _ => None,
    });
    let (latency_ms, server_status) = latency.expect("a heartbeat answer");
    assert_about(
        Duration::from_secs_f64(latency_ms / 1000.0),
        Duration::from_secs(3),
    );
    assert_eq!(server_status, Some(ClusterStatus::Connected));
}

#[actix_rt::test]
async fn an_unanswered_beat_times_out_and_the_next_follows_an_interval_later() {
    tokio::time::pause();
    let mut h = harness();
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    registered(&h.bus);
    let _ = next_command(&mut h).await;
    // Never answered: COMMAND_TIMEOUT after 30 s, next beat 10 s later.
    let _ = next_command(&mut h).await;
    assert_about(t0.elapsed(), Duration::from_secs(40));
    let failed = h.bus.recent(100).iter().any(
        |r| matches!(&r.event, Event::HeartbeatFailed { code, .. } if *code == ErrorCode::CommandTimeout),
    );
    assert!(failed);
}

#[actix_rt::test]
async fn beats_stop_on_disconnect_and_pause_while_preparing() {
    tokio::time::pause();
    let mut h = harness();
    tokio::task::yield_now().await;
    registered(&h.bus);
    let (id, _) = next_command(&mut h).await;
    answer(&h, &id, "connected");

    // Preparing the environment: no beats at all.
    h.bus.emit(Event::StatusChanged {
        from: ClusterStatus::Connected,
        to: ClusterStatus::PreparingEnvironment,
        reason: None,
    });
    let quiet = tokio::time::timeout(Duration::from_secs(60), h.frames.recv()).await;
    assert!(quiet.is_err(), "no heartbeat while preparing");

    // Ready again: a beat at once.
    let t = Instant::now();
    h.bus.emit(Event::StatusChanged {
        from: ClusterStatus::PreparingEnvironment,
        to: ClusterStatus::Connected,
        reason: None,
    });
    let (id, _) = next_command(&mut h).await;
    assert_eq!(t.elapsed(), Duration::ZERO);
    answer(&h, &id, "connected");

    // Disconnected: silence.
    h.bus.emit(Event::SocketDisconnected {
        reason: "test".into(),
        connection: 1,
        reconnect_in_ms: 0,
    });
    let quiet = tokio::time::timeout(Duration::from_secs(60), h.frames.recv()).await;
    assert!(quiet.is_err(), "no heartbeat while disconnected");
}

#[actix_rt::test]
async fn reconnect_attempts_follow_the_jittered_exponential_backoff() {
    tokio::time::pause();
    // A port nobody listens on: every attempt is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = settings(&format!("http://127.0.0.1:{port}"));
    s.socket.reconnect_base = Duration::from_millis(500);
    s.socket.reconnect_max = Duration::from_secs(4);
    // Another process changing the machine's network must not cut a wait.
    s.socket.watch_network = false;
    let s = Arc::new(s);
    let bus = EventBus::default();
    let wiring = Wiring::new(bus.clone());
    wiring.credentials.publish(creds());
    voltd_actors::cloud::tls::install_default_provider();
    let tls = voltd_actors::cloud::tls::client_config(None).unwrap();
    let mut sub = bus.subscribe_control();
    let (_addr, _) = spawn_actor(ControlSocket::new(
        s,
        tls,
        wiring.credentials.clone(),
        wiring.socket_events.clone(),
        bus.clone(),
        ExitSlot::new(),
    ));

    use futures_util::StreamExt;
    let mut times = Vec::new();
    while times.len() < 7 {
        match sub.next().await {
            Some(voltd_actors::events::Delivery::Record(r)) => {
                if matches!(r.event, Event::SocketConnecting { .. }) {
                    times.push(Instant::now());
                }
            }
            _ => panic!("event stream ended"),
        }
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Nominal 0.5, 1, 2, 4, 4, 4 s, each within ±30 %.
    let nominal = [500u64, 1000, 2000, 4000, 4000, 4000];
    for (gap, n) in gaps.iter().zip(nominal) {
        let ms = gap.as_millis() as u64;
        let (low, high) = (n * 7 / 10, (n * 13 / 10).min(4000) + 5);
        assert!(
            ms >= low && ms <= high,
            "gap {ms} ms for nominal {n} ms: {gaps:?}"
        );
    }
}
