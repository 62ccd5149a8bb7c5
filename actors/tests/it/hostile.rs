//! A hostile or broken server (`testkit::wire`) against the real control
//! socket and dispatcher: every size the server controls is capped, a
//! tripped cap is reported (`Event::WireLimitExceeded`, logged as a warning),
//! the connection is dropped and a new one made, and nothing keeps growing.

use futures_util::StreamExt;
use otp::ExitSlot;
use otp::supervisor::spawn_actor;
use serde_json::{Value, json};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use testkit::WAIT;
use testkit::wire::{RawConn, RawServer, reference_open};
use voltd_actors::api::{Reply, Run, StreamReply, WireLimit};
use voltd_actors::cloud::control_socket::{
    MAX_EARLY_BYTES, MAX_EARLY_MESSAGES, MAX_PAYLOAD_CEILING, MAX_PENDING_ATTACHMENT_BYTES,
};
use voltd_actors::cloud::credentials::Credentials;
use voltd_actors::cloud::dispatch::{DispatchSettings, Dispatcher};
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::daemon::Wiring;
use voltd_actors::events::{Event, EventBus};

/// Bytes the `blob` command streams: more than a buffer reply may carry
/// under the clamped maxPayload.
const BLOB: usize = MAX_PAYLOAD_CEILING + (1 << 20);

/// A control socket and a dispatcher whose only command, `blob`, answers a
/// stream of [`BLOB`] zero bytes.
fn daemon(server: &RawServer) -> EventBus {
    let mut s = Settings::new(
        CloudUrl::parse(&server.url()).unwrap(),
        ClusterId::parse("c1").unwrap(),
        std::env::temp_dir().join(format!("voltd-hostile-{}", std::process::id())),
    );
    s.socket.reconnect_base = Duration::from_millis(50);
    s.socket.reconnect_max = Duration::from_millis(200);
    let s = Arc::new(s);
    let bus = EventBus::default();
    let wiring = Wiring::new(bus.clone());
    wiring.credentials.publish(Credentials {
        team_cluster_id: "c1".into(),
        daemon_password: "pw".into(),
    });
    let (d, _) = spawn_actor(Dispatcher::new(
        Rc::new(|call| {
            if call.command != "blob" {
                return Run::Done(Reply::not_found("no such command"));
            }
            let chunks = (0..BLOB / (1 << 20)).map(|_| Ok(vec![0u8; 1 << 20]));
            Run::Done(Reply::Stream(StreamReply {
                status: 200,
                headers: Default::default(),
                body: futures_util::stream::iter(chunks).boxed_local(),
            }))
        }),
        wiring.router.clone(),
        wiring.outbox.clone(),
        DispatchSettings {
            emit_buffer: 16,
            command_timeout: s.socket.command_timeout,
        },
        bus.clone(),
        ExitSlot::new(),
    ));
    wiring.socket_events.bind(d);
    voltd_actors::cloud::tls::install_default_provider();
    let tls = voltd_actors::cloud::tls::client_config(None).unwrap();
    spawn_actor(voltd_actors::cloud::control_socket::ControlSocket::new(
        s,
        tls,
        wiring.credentials.clone(),
        wiring.socket_events.clone(),
        bus.clone(),
        ExitSlot::new(),
    ));
    bus
}

/// The first `WireLimitExceeded` of `bus`, once there is one.
async fn limit_tripped(bus: &EventBus) -> (WireLimit, u64, u64) {
    testkit::eventually(WAIT, "a wire limit tripped", async || {
        bus.recent(usize::MAX).iter().find_map(|r| match r.event {
            Event::WireLimitExceeded { limit, size, max } => Some((limit, size, max)),
            _ => None,
        })
    })
    .await
}

/// The daemon drops `conn` and comes back with a new connection that
/// registers normally.
async fn dropped_and_back(server: &mut RawServer, mut conn: RawConn) {
    conn.closed().await;
    let mut again = server.accept().await;
    again.register(&reference_open()).await;
}

#[actix_rt::test]
async fn binary_attachments_over_the_cap_drop_the_connection() {
    let mut server = RawServer::start().await;
    let bus = daemon(&server);
    let mut conn = server.accept().await;
    conn.register(&reference_open()).await;
    // A binary event announcing 10,000 attachments (the count cap), then
    // 1 MiB frames until the daemon gives up.
    let placeholders: Vec<Value> = (0..10_000)
        .map(|n| json!({"_placeholder": true, "num": n}))
        .collect();
    let mut head = vec![json!("team-cluster-daemon:message")];
    head.extend(placeholders);
    conn.send_text(&format!("4510000-{}", Value::Array(head)))
        .await;
    let mut sent = 0usize;
    while conn.try_send_binary(vec![7u8; 1 << 20]).await {
        sent += 1 << 20;
        if sent > 4 * MAX_PENDING_ATTACHMENT_BYTES {
            panic!("the daemon accepted {sent} bytes of attachments");
        }
        if bus
            .recent(usize::MAX)
            .iter()
            .any(|r| matches!(r.event, Event::WireLimitExceeded { .. }))
        {
            break;
        }
    }
    let (limit, size, max) = limit_tripped(&bus).await;
    assert_eq!(limit, WireLimit::PendingAttachments);
    assert_eq!(max, MAX_PENDING_ATTACHMENT_BYTES as u64);
    assert!(size > max && size <= max + (1 << 20), "{size}");
    dropped_and_back(&mut server, conn).await;
}

#[actix_rt::test]
async fn too_many_messages_before_registered_drop_the_connection() {
    let mut server = RawServer::start().await;
    let bus = daemon(&server);
    let mut conn = server.accept().await;
    conn.handshake(&reference_open()).await;
    // Never `registered`; a stream of small messages instead.
    for n in 0..MAX_EARLY_MESSAGES + 10 {
        let msg = json!({"type": "session-detach", "sessionId": format!("s{n}")});
        let p =
            volt_protocol::socketio::encode_event("/", None, volt_protocol::MESSAGE_EVENT, &msg)
                .unwrap();
        if !conn.try_send_text(&format!("4{p}")).await {
            break;
        }
    }
    let (limit, size, max) = limit_tripped(&bus).await;
    assert_eq!(limit, WireLimit::EarlyMessages);
    assert_eq!(
        (size, max),
        (MAX_EARLY_MESSAGES as u64 + 1, MAX_EARLY_MESSAGES as u64)
    );
    dropped_and_back(&mut server, conn).await;
}

#[actix_rt::test]
async fn too_many_bytes_before_registered_drop_the_connection() {
    let mut server = RawServer::start().await;
    let bus = daemon(&server);
    let mut conn = server.accept().await;
    conn.handshake(&reference_open()).await;
    let big = "x".repeat(4 << 20);
    for n in 0..8 {
        let msg = json!({"type": "session-detach", "sessionId": format!("s{n}"), "pad": big});
        let p =
            volt_protocol::socketio::encode_event("/", None, volt_protocol::MESSAGE_EVENT, &msg)
                .unwrap();
        if !conn.try_send_text(&format!("4{p}")).await {
            break;
        }
    }
    let (limit, size, max) = limit_tripped(&bus).await;
    assert_eq!(limit, WireLimit::EarlyBytes);
    assert_eq!(max, MAX_EARLY_BYTES as u64);
    assert!(size > max, "{size}");
    dropped_and_back(&mut server, conn).await;
}

#[actix_rt::test]
async fn a_huge_max_payload_is_clamped_and_buffer_replies_are_sized_by_the_clamp() {
    let mut server = RawServer::start().await;
    let _bus = daemon(&server);
    let mut conn = server.accept().await;
    let mut open = reference_open();
    open["maxPayload"] = json!(1_000_000_000_000_000_000u64);
    conn.register(&open).await;
    conn.message(&json!({"type": "command", "requestId": "r1", "command": "blob", "responseType": "buffer", "payload": {}}))
        .await;
    let reply = tokio::time::timeout(Duration::from_secs(30), conn.next_message())
        .await
        .expect("a reply")
        .expect("the connection stays open");
    assert_eq!(reply["type"], "response");
    assert_eq!(reply["requestId"], "r1");
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["status"], 413);
    // The limit named is derived from the ceiling, not from 10¹⁸.
    let limit = (MAX_PAYLOAD_CEILING - 256) / 4 * 3;
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("over {limit} bytes")),
        "{message}"
    );

    // A stream reply is chunked as usual and the connection is fine.
    conn.message(&json!({"type": "command", "requestId": "r2", "command": "nope", "responseType": "json", "payload": {}}))
        .await;
    let reply = conn.next_message().await.expect("a reply");
    assert_eq!(reply["requestId"], "r2");
    assert_eq!(reply["status"], 404);
}

#[test]
fn ping_settings_out_of_range_are_clamped() {
    use voltd_actors::cloud::control_socket::{MAX_SILENCE, MIN_SILENCE, silence_deadline};
    assert_eq!(silence_deadline(0, 0), MIN_SILENCE);
    assert_eq!(silence_deadline(u64::MAX, u64::MAX), MAX_SILENCE);
    assert_eq!(silence_deadline(25_000, 20_000), Duration::from_secs(45));
    assert_eq!(
        voltd_actors::cloud::control_socket::clamp_max_payload(u64::MAX),
        MAX_PAYLOAD_CEILING
    );
    assert_eq!(
        voltd_actors::cloud::control_socket::clamp_max_payload(1_000_000),
        1_000_000
    );
}
