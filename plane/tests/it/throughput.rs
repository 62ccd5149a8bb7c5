//! Command throughput through the in-process plane with a fast socket.io
//! daemon (reader and writer tasks, batched writes). Ignored by default;
//! run it in release mode:
//!
//! ```text
//! cargo test --release -p volt-plane --test it -- --ignored --nocapture throughput::
//! ```

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::plane::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use volt_plane::ResponseType;
use volt_protocol::envelope::{Message, ResponseMessage};
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, engineio, socketio};

/// Concurrency the benchmark uses.
const CONCURRENCY: usize = 32;
/// Commands per run.
const COMMANDS: usize = 200_000;

async fn fast_daemon(base: &str, id: &str, pw: &str) {
    let url = format!(
        "{}{}?{}",
        base.replacen("http", "ws", 1),
        volt_protocol::SOCKET_IO_PATH,
        volt_protocol::SOCKET_IO_QUERY
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            tx.feed(WsMessage::text(first)).await.unwrap();
            while let Ok(more) = out_rx.try_recv() {
                tx.feed(WsMessage::text(more)).await.unwrap();
            }
            tx.flush().await.unwrap();
        }
    });
    let (reg_tx, reg_rx) = tokio::sync::oneshot::channel();
    let mut reg_tx = Some(reg_tx);
    let register = socketio::encode_event(
        "/",
        None,
        REGISTER_EVENT,
        &json!({"teamClusterId": id, "daemonPassword": pw}),
    )
    .unwrap();
    let out = out_tx.clone();
    tokio::spawn(async move {
        while let Some(Ok(WsMessage::Text(t))) = rx.next().await {
            match engineio::Packet::decode(&t).unwrap() {
                engineio::Packet::Open(_) => {
                    out.send(engineio::message_frame(&socketio::encode_connect(
                        "/", None,
                    )))
                    .unwrap();
                }
                engineio::Packet::Ping(d) => out.send(engineio::pong_for(d)).unwrap(),
                engineio::Packet::Message(m) => {
                    let p = socketio::Packet::decode(m).unwrap();
                    match p.kind {
                        socketio::PacketKind::Connect => {
                            out.send(engineio::message_frame(&register)).unwrap();
                        }
                        socketio::PacketKind::Event => {
                            let (name, args) = p.event().unwrap();
                            if name != MESSAGE_EVENT {
                                if let Some(tx) = reg_tx.take() {
                                    let _ = tx.send(());
                                }
                                continue;
                            }
                            if let Ok(Message::Command(c)) = Message::decode(args[0].get()) {
                                let reply = Message::Response(ResponseMessage::success(
                                    c.request_id,
                                    json!({"pong": true}),
                                ));
                                let pkt = socketio::encode_event("/", None, MESSAGE_EVENT, &reply)
                                    .unwrap();
                                out.send(engineio::message_frame(&pkt)).unwrap();
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    });
    reg_rx.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark; run in release mode"]
async fn thirty_thousand_commands_per_second_at_concurrency_32() {
    let plane = Arc::new(plane().await);
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    fast_daemon(&plane.base_url(), &id, &pw).await;

    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (plane, id, done) = (plane.clone(), id.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let payload = json!({"ping": 1});
            while done.fetch_add(1, Ordering::Relaxed) < COMMANDS {
                let r = plane
                    .send_command(
                        &id,
                        "ping",
                        payload.clone(),
                        ResponseType::Json,
                        Some(Duration::from_secs(10)),
                    )
                    .await
                    .unwrap();
                assert!(r.response().ok);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = COMMANDS as f64 / started.elapsed().as_secs_f64();
    println!("{rate:.0} commands/s at concurrency {CONCURRENCY}");
    assert!(rate >= 30_000.0, "{rate:.0} commands/s");
}
