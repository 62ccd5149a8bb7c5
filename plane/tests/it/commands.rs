//! Server→daemon commands through the library API and the HTTP API, with a
//! scripted daemon on a real socket answering them.

use base64::Engine as _;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::WAIT;
use testkit::plane::*;
use testkit::sio::*;
use volt_plane::{DaemonReply, PlaneError, ResponseType};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Answers `echo` (json), `blob` (buffer), `download` (stream of 3 chunks),
/// `broken` (stream ending with an error); ignores `silent`.
fn daemon_script(cmd: &Value) -> Vec<Value> {
    let id = cmd["requestId"].clone();
    match cmd["command"].as_str().unwrap() {
        "echo" => vec![success_for(
            cmd,
            json!({"echo": cmd["payload"], "responseType": cmd["responseType"]}),
        )],
        "blob" => vec![
            json!({"type": "response", "requestId": id, "ok": true, "status": 200,
                              "headers": {"content-type": "text/plain"}, "bodyBase64": b64(b"hello")}),
        ],
        "download" => {
            let mut out = vec![
                json!({"type": "response", "requestId": id, "ok": true, "status": 200,
                "headers": {"content-type": "application/x-test", "content-disposition": "attachment; filename=\"a.bin\""},
                "streamId": id}),
            ];
            for part in [&b"abc"[..], &[0u8, 255, 10][..], &vec![b'z'; 300_000][..]] {
                out.push(json!({"type": "stream", "requestId": id, "streamId": id, "chunkBase64": b64(part)}));
            }
            out.push(json!({"type": "stream-end", "requestId": id, "streamId": id}));
            out
        }
        "broken" => vec![
            json!({"type": "response", "requestId": id, "ok": true, "status": 200, "headers": {}, "streamId": "s1"}),
            json!({"type": "stream", "requestId": id, "streamId": "s1", "chunkBase64": b64(b"part")}),
            json!({"type": "stream", "requestId": id, "streamId": "other", "chunkBase64": b64(b"ignored")}),
            json!({"type": "stream-end", "requestId": id, "streamId": "s1", "message": "disk read failed"}),
        ],
        "refuse-stream" => vec![
            json!({"type": "response", "requestId": id, "ok": false, "status": 404, "message": "Object not found"}),
        ],
        "silent" => vec![],
        other => vec![
            json!({"type": "response", "requestId": id, "ok": false, "status": 404,
                             "message": format!("Unknown daemon command: {other}")}),
        ],
    }
}

#[tokio::test]
async fn json_command_round_trips_with_a_uuid_request_id() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let reply = plane
        .send_command(&id, "echo", json!({"a": 1}), ResponseType::Json, None)
        .await
        .unwrap();
    let DaemonReply::Json(r) = reply else {
        panic!("{reply:?}")
    };
    assert!(r.ok);
    assert!(uuid::Uuid::parse_str(&r.request_id).is_ok());
    assert_eq!(
        r.clone().into_result().unwrap(),
        json!({"echo": {"a": 1}, "responseType": "json"})
    );
    // Many in flight at once all find their own reply.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let p = &plane;
        let id = id.clone();
        tasks.push(async move {
            let r = p
                .send_command(&id, "echo", json!({"i": i}), ResponseType::Json, None)
                .await
                .unwrap();
            assert_eq!(r.response().clone().into_result().unwrap()["echo"]["i"], i);
        });
    }
    futures_util::future::join_all(tasks).await;
    daemon.stop().await;
    plane.shutdown().await;
}

#[tokio::test]
async fn buffer_command_returns_body_base64() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let reply = plane
        .send_command(&id, "blob", json!({}), ResponseType::Buffer, None)
        .await
        .unwrap();
    let DaemonReply::Buffer(r) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(r.body_base64.as_deref(), Some(b64(b"hello").as_str()));
    plane.shutdown().await;
}

#[tokio::test]
async fn stream_chunks_are_reassembled_in_order() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    for _ in 0..5 {
        let reply = plane
            .send_command(&id, "download", json!({}), ResponseType::Stream, None)
            .await
            .unwrap();
        let DaemonReply::Stream {
            response,
            body,
            chunks,
            max_chunk_packet_len,
            error,
        } = reply
        else {
            panic!("{reply:?}")
        };
        assert!(response.ok);
        assert_eq!(error, None);
        assert_eq!(chunks, 3);
        let mut expected = b"abc".to_vec();
        expected.extend([0u8, 255, 10]);
        expected.extend(vec![b'z'; 300_000]);
        assert_eq!(body, expected);
        assert!(max_chunk_packet_len > 400_000, "{max_chunk_packet_len}");
        assert!(max_chunk_packet_len < 1_000_000);
    }
    plane.shutdown().await;
}

#[tokio::test]
async fn stream_end_message_is_an_error_and_foreign_chunks_are_ignored() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let reply = plane
        .send_command(&id, "broken", json!({}), ResponseType::Stream, None)
        .await
        .unwrap();
    let DaemonReply::Stream {
        body,
        chunks,
        error,
        ..
    } = reply
    else {
        panic!("{reply:?}")
    };
    assert_eq!(body, b"part");
    assert_eq!(chunks, 1);
    assert_eq!(error.as_deref(), Some("disk read failed"));

    let reply = plane
        .send_command(&id, "refuse-stream", json!({}), ResponseType::Stream, None)
        .await
        .unwrap();
    let DaemonReply::Stream {
        response, error, ..
    } = reply
    else {
        panic!("{reply:?}")
    };
    assert!(!response.ok);
    assert_eq!(response.status, 404);
    assert_eq!(error.as_deref(), Some("Object not found"));
    plane.shutdown().await;
}

#[tokio::test]
async fn a_silent_daemon_times_out() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let err = plane
        .send_command(
            &id,
            "silent",
            json!({}),
            ResponseType::Json,
            Some(Duration::from_millis(150)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PlaneError::Timeout), "{err:?}");
    assert_eq!(err.http_status(), 504);

    let (status, body) = post(
        &format!("{}/api/clusters/{id}/commands", plane.base_url()),
        json!({"command": "silent", "timeoutMs": 150}),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["status"], "error");
    plane.shutdown().await;
}

#[tokio::test]
async fn no_daemon_means_409_daemon_unavailable_after_the_wait() {
    let plane = plane().await;
    let (created, _) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let started = tokio::time::Instant::now();
    let err = plane
        .send_command(&id, "echo", json!({}), ResponseType::Json, None)
        .await
        .unwrap_err();
    assert!(matches!(err, PlaneError::DaemonUnavailable), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let (status, body) = post(
        &format!("{}/api/clusters/{id}/commands", plane.base_url()),
        json!({"command": "echo"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "TeamCluster::DaemonUnavailable");
    let err = plane
        .send_command(
            "000000000000000000000000",
            "echo",
            json!({}),
            ResponseType::Json,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PlaneError::NotFound));
    plane.shutdown().await;
}

#[tokio::test]
async fn a_command_waits_for_a_daemon_that_registers_late() {
    let mut cfg = config();
    cfg.daemon_wait = Duration::from_secs(3);
    let plane = start(cfg).await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let (reply, late) = {
        let send = plane.send_command(&id, "echo", json!({"late": true}), ResponseType::Json, None);
        tokio::pin!(send);
        // Polled once, the command is waiting for a daemon (none yet).
        assert!(futures_util::poll!(send.as_mut()).is_pending());
        let late = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
        (send.await.unwrap(), late)
    };
    assert!(reply.response().ok);
    late.stop().await;
    plane.shutdown().await;
}

#[tokio::test]
async fn pending_commands_fail_when_the_daemon_goes_away() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let send = plane.send_command(&id, "silent", json!({}), ResponseType::Json, None);
    let cut = async {
        daemon.wait_command("silent").await;
        daemon.stop().await.close().await;
    };
    let (res, ()) = tokio::join!(send, cut);
    assert!(matches!(res, Err(PlaneError::ConnectionLost)), "{res:?}");
    plane.shutdown().await;
}

#[tokio::test]
async fn http_commands_return_replies_and_raw_bytes() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let url = format!("{}/api/clusters/{id}/commands", plane.base_url());

    let (status, body) = post(&url, json!({"command": "echo", "payload": {"x": 2}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["ok"], true);
    assert_eq!(body["data"]["data"]["data"]["echo"], json!({"x": 2}));

    let (status, body) = post(&url, json!({"command": "nope"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["ok"], false);
    assert_eq!(body["data"]["status"], 404);
    assert_eq!(body["data"]["message"], "Unknown daemon command: nope");

    let (_, body) = post(&url, json!({"command": "blob", "responseType": "buffer"})).await;
    assert_eq!(body["data"]["bodyBase64"], b64(b"hello"));

    let (_, body) = post(
        &url,
        json!({"command": "download", "responseType": "stream"}),
    )
    .await;
    assert_eq!(body["data"]["ok"], true);
    assert_eq!(body["data"]["chunks"], 3);
    assert_eq!(
        body["data"]["headers"]["content-type"],
        "application/x-test"
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body["data"]["bodyBase64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded.len(), 300_006);

    let r = http()
        .post(format!("{url}?raw=1"))
        .json(&json!({"command": "download", "responseType": "stream"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"a.bin\""
    );
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"abc");
    assert_eq!(bytes.len(), 300_006);

    let r = http()
        .post(format!("{url}?raw=1"))
        .json(&json!({"command": "blob", "responseType": "buffer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello");

    for bad in [
        json!({}),
        json!({"command": ""}),
        json!({"command": "echo", "responseType": "binary"}),
        json!({"command": "echo", "timeoutMs": 0}),
        json!({"command": "echo", "extra": 1}),
    ] {
        let (status, body) = post(&url, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["code"], "Validation::InvalidInput");
    }
    let (status, _) = post(
        &format!(
            "{}/api/clusters/000000000000000000000000/commands",
            plane.base_url()
        ),
        json!({"command": "echo"}),
    )
    .await;
    assert_eq!(status, 404);
    plane.shutdown().await;
}

#[tokio::test]
async fn session_messages_reach_their_subscriber() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let mut sub = plane.subscribe_session(&id, "sess-1");
    c.emit(
        volt_protocol::MESSAGE_EVENT,
        &json!({"type": "session-data", "sessionId": "sess-1", "chunkBase64": b64(b"$ "), "isBinary": true}),
    )
    .await;
    let got = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.session_id(), Some("sess-1"));
    // And the plane can write to the daemon's session.
    plane
        .send_message(
            &id,
            &volt_plane::Message::SessionDetach(volt_protocol::envelope::SessionDetach {
                session_id: "sess-1".into(),
            }),
        )
        .unwrap();
    let msg = c.expect_event(volt_protocol::MESSAGE_EVENT).await;
    assert_eq!(
        msg,
        json!({"type": "session-detach", "sessionId": "sess-1"})
    );
    drop(sub);
    plane.shutdown().await;
}

#[tokio::test]
async fn a_replacing_socket_fails_the_old_sockets_pending_commands() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let old = ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await;
    let send = plane.send_command(&id, "silent", json!({}), ResponseType::Json, None);
    let replace = async {
        old.wait_command("silent").await;
        ScriptedDaemon::start(&plane.base_url(), &id, &pw, daemon_script).await
    };
    let (res, _new) = tokio::join!(send, replace);
    assert!(matches!(res, Err(PlaneError::ConnectionLost)), "{res:?}");
    // The new socket serves commands.
    let reply = plane
        .send_command(&id, "echo", json!({}), ResponseType::Json, None)
        .await
        .unwrap();
    assert!(reply.response().ok);
    plane.shutdown().await;
}
