//! The WebSocket terminal relay: tokio-tungstenite plays the browser, a
//! socket.io test client plays the daemon's session side.

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::WAIT;
use testkit::plane::*;
use testkit::sio::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use volt_plane::{PlaneConfig, PlaneError, SessionEvent};
use volt_protocol::MESSAGE_EVENT;

type Browser = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

struct Setup {
    plane: volt_plane::PlaneHandle,
    id: String,
    daemon: SioClient,
}

async fn setup_with(cfg: PlaneConfig) -> Setup {
    let plane = start(cfg).await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut daemon = SioClient::connect(&plane.base_url()).await;
    daemon.register(&id, &pw).await;
    Setup { plane, id, daemon }
}

async fn setup() -> Setup {
    setup_with(config()).await
}

fn ws_url(s: &Setup, query: &str) -> String {
    format!(
        "{}/api/clusters/{}/terminal{query}",
        s.plane.base_url().replacen("http", "ws", 1),
        s.id
    )
}

async fn open_browser(url: &str) -> Browser {
    let (ws, resp) = tokio_tungstenite::connect_async(ws_request(url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// The next `team-cluster-daemon:message` the daemon receives.
async fn daemon_next(d: &mut SioClient) -> Value {
    d.expect_event(MESSAGE_EVENT).await
}

/// Waits for the attach command; checks its shape; returns the session id.
async fn expect_attach(d: &mut SioClient) -> String {
    let cmd = daemon_next(d).await;
    assert_eq!(cmd["type"], "command");
    assert_eq!(cmd["command"], "session.attach");
    assert_eq!(cmd["responseType"], "json");
    let sid = cmd["payload"]["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(
        cmd["requestId"],
        sid.as_str(),
        "requestId must equal sessionId"
    );
    assert!(uuid::Uuid::parse_str(&sid).is_ok(), "{sid}");
    assert_eq!(
        cmd["payload"],
        json!({"sessionId": sid, "kind": "terminal", "terminalTarget": "host"})
    );
    sid
}

async fn accept_attach(d: &mut SioClient, sid: &str) {
    d.emit(
        MESSAGE_EVENT,
        &json!({"type": "response", "requestId": sid, "ok": true, "status": 200,
                "data": {"status": "success", "data": {"attached": true}}}),
    )
    .await;
}

async fn session_data(d: &mut SioClient, sid: &str, bytes: &[u8]) {
    d.emit(
        MESSAGE_EVENT,
        &json!({"type": "session-data", "sessionId": sid, "chunkBase64": b64(bytes), "isBinary": true}),
    )
    .await;
}

/// The next frame that is not a ping/pong.
async fn browser_next(b: &mut Browser) -> Option<WsMessage> {
    loop {
        match tokio::time::timeout(WAIT, b.next())
            .await
            .expect("browser frame")
        {
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

/// Drives the browser until the plane has dropped its connection, i.e.
/// the relay has returned and dropped its session: whatever the relay sent
/// the daemon is then ahead of a later ordering marker
/// ([`SioClient::sync`]).
async fn relay_ended(b: &mut Browser) {
    tokio::time::timeout(WAIT, async {
        // Reading completes the close handshake; the WebSocket then ends.
        while let Some(Ok(_)) = b.next().await {}
        let MaybeTlsStream::Plain(tcp) = b.get_mut() else {
            panic!("the browser talks plain TCP")
        };
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the plane drops the browser's connection");
}

fn close_of(m: Option<WsMessage>) -> (u16, String) {
    match m {
        Some(WsMessage::Close(Some(CloseFrame { code, reason }))) => {
            (u16::from(code), reason.to_string())
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_terminal_relays_keystrokes_resizes_output_and_exit() {
    let mut s = setup().await;
    let mut b = open_browser(&ws_url(&s, "?rows=30&cols=100")).await;
    let sid = expect_attach(&mut s.daemon).await;
    accept_attach(&mut s.daemon, &sid).await;
    // The initial size follows the attach.
    assert_eq!(
        daemon_next(&mut s.daemon).await,
        json!({"type": "session-resize", "sessionId": sid, "rows": 30, "cols": 100})
    );

    // Binary and text frames are keystrokes.
    b.send(WsMessage::binary(b"ls -l\r".to_vec()))
        .await
        .unwrap();
    let m = daemon_next(&mut s.daemon).await;
    assert_eq!(m["type"], "session-input");
    assert_eq!(m["sessionId"], sid.as_str());
    assert_eq!(m["isBinary"], true);
    assert_eq!(unb64(&m["chunkBase64"]), b"ls -l\r");
    b.send(WsMessage::text("echo héllo\n")).await.unwrap();
    let m = daemon_next(&mut s.daemon).await;
    assert_eq!(m["isBinary"], false);
    assert_eq!(unb64(&m["chunkBase64"]), "echo héllo\n".as_bytes());
    // A resize object is a resize; anything else JSON-ish is typed.
    b.send(WsMessage::text(r#"{"type":"resize","rows":40,"cols":120}"#))
        .await
        .unwrap();
    assert_eq!(
        daemon_next(&mut s.daemon).await,
        json!({"type": "session-resize", "sessionId": sid, "rows": 40, "cols": 120})
    );
    b.send(WsMessage::text(r#"{"type":"resize","rows":40}"#))
        .await
        .unwrap();
    let m = daemon_next(&mut s.daemon).await;
    assert_eq!(m["type"], "session-input");
    assert_eq!(unb64(&m["chunkBase64"]), br#"{"type":"resize","rows":40}"#);
    // A big paste is split into pieces the daemon gets in order.
    let paste: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    b.send(WsMessage::binary(paste.clone())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < paste.len() {
        let m = daemon_next(&mut s.daemon).await;
        assert_eq!(m["type"], "session-input");
        let piece = unb64(&m["chunkBase64"]);
        assert!(piece.len() <= volt_plane::SESSION_INPUT_CHUNK);
        got.extend(piece);
    }
    assert_eq!(got, paste);

    // Output arrives as binary frames, raw bytes.
    session_data(&mut s.daemon, &sid, b"total 0\r\n\x1b[0m$ ").await;
    assert_eq!(
        browser_next(&mut b).await,
        Some(WsMessage::binary(b"total 0\r\n\x1b[0m$ ".to_vec()))
    );
    session_data(&mut s.daemon, &sid, &[0xff, 0x00, 0xfe]).await;
    assert_eq!(
        browser_next(&mut b).await,
        Some(WsMessage::binary(vec![0xff, 0x00, 0xfe]))
    );

    // The shell exits: close 1000 "exit 3"; no detach follows.
    s.daemon
        .emit(
            MESSAGE_EVENT,
            &json!({"type": "session-end", "sessionId": sid, "code": 3}),
        )
        .await;
    assert_eq!(
        close_of(browser_next(&mut b).await),
        (1000, "exit 3".into())
    );
    relay_ended(&mut b).await;
    let rest = s.daemon.sync().await;
    assert!(
        !rest
            .iter()
            .any(|i| matches!(i, Incoming::Event(_, m) if m["type"] == "session-detach")),
        "{rest:?}"
    );
    s.plane.shutdown().await;
}

#[tokio::test]
async fn closing_the_browser_detaches_the_session() {
    let mut s = setup().await;
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    accept_attach(&mut s.daemon, &sid).await;
    b.send(WsMessage::text("x")).await.unwrap();
    assert_eq!(daemon_next(&mut s.daemon).await["type"], "session-input");
    b.close(None).await.unwrap();
    assert_eq!(
        daemon_next(&mut s.daemon).await,
        json!({"type": "session-detach", "sessionId": sid})
    );
    // Exactly once.
    relay_ended(&mut b).await;
    let rest = s.daemon.sync().await;
    assert!(rest.is_empty(), "{rest:?}");
    s.plane.shutdown().await;
}

#[tokio::test]
async fn a_refused_attach_closes_with_1011_and_the_daemons_message() {
    let mut s = setup().await;
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    s.daemon
        .emit(
            MESSAGE_EVENT,
            &json!({"type": "response", "requestId": sid, "ok": false, "status": 400,
                    "message": "Host terminal is disabled on this cluster"}),
        )
        .await;
    assert_eq!(
        close_of(browser_next(&mut b).await),
        (1011, "Host terminal is disabled on this cluster".into())
    );

    // A long refusal is cut to a valid close reason.
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    s.daemon
        .emit(
            MESSAGE_EVENT,
            &json!({"type": "response", "requestId": sid, "ok": false, "status": 500,
                    "message": "ü".repeat(200)}),
        )
        .await;
    let (code, reason) = close_of(browser_next(&mut b).await);
    assert_eq!(code, 1011);
    assert!(reason.len() <= 123 && reason.starts_with("üü"), "{reason}");
    s.plane.shutdown().await;
}

#[tokio::test]
async fn a_session_end_before_the_attach_reply_rejects_the_attach() {
    let mut s = setup().await;
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    s.daemon
        .emit(
            MESSAGE_EVENT,
            &json!({"type": "session-end", "sessionId": sid, "error": "spawn failed"}),
        )
        .await;
    accept_attach(&mut s.daemon, &sid).await;
    let (code, reason) = close_of(browser_next(&mut b).await);
    assert_eq!(code, 1011);
    assert!(reason.contains("spawn failed"), "{reason}");
    s.plane.shutdown().await;
}

#[tokio::test]
async fn output_sent_right_after_the_reply_is_not_lost() {
    let mut s = setup().await;
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    accept_attach(&mut s.daemon, &sid).await;
    session_data(&mut s.daemon, &sid, b"motd\r\n").await;
    s.daemon
        .emit(
            MESSAGE_EVENT,
            &json!({"type": "session-end", "sessionId": sid, "error": "pty closed"}),
        )
        .await;
    assert_eq!(
        browser_next(&mut b).await,
        Some(WsMessage::binary(b"motd\r\n".to_vec()))
    );
    assert_eq!(
        close_of(browser_next(&mut b).await),
        (1000, "pty closed".into())
    );
    s.plane.shutdown().await;
}

#[tokio::test]
async fn a_dropped_daemon_socket_closes_with_1011() {
    let mut s = setup().await;
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    accept_attach(&mut s.daemon, &sid).await;
    session_data(&mut s.daemon, &sid, b"$ ").await;
    assert_eq!(
        browser_next(&mut b).await,
        Some(WsMessage::binary(b"$ ".to_vec()))
    );
    s.daemon.close().await;
    let (code, reason) = close_of(browser_next(&mut b).await);
    assert_eq!(code, 1011);
    assert!(reason.contains("connection was lost"), "{reason}");
    s.plane.shutdown().await;
}

#[tokio::test]
async fn no_daemon_closes_with_1011() {
    let plane = plane().await;
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let url = format!(
        "{}/api/clusters/{}/terminal",
        plane.base_url().replacen("http", "ws", 1),
        created.team_cluster.id
    );
    let mut b = open_browser(&url).await;
    assert_eq!(
        close_of(browser_next(&mut b).await),
        (1011, "Team cluster daemon is not connected".into())
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn a_slow_browser_is_closed_with_1013_and_the_session_detached() {
    let mut s = setup_with(PlaneConfig {
        session_buffer_limit: 64 * 1024,
        ..config()
    })
    .await;
    let mut b = open_browser(&ws_url(&s, "")).await;
    let sid = expect_attach(&mut s.daemon).await;
    accept_attach(&mut s.daemon, &sid).await;
    // 32 MiB of output while the browser reads nothing: far more than the
    // socket buffers and the plane's 64 KiB queue hold.
    let chunk = b64(&vec![b'y'; 256 * 1024]);
    for _ in 0..128 {
        s.daemon
            .emit(
                MESSAGE_EVENT,
                &json!({"type": "session-data", "sessionId": sid, "chunkBase64": chunk, "isBinary": true}),
            )
            .await;
    }
    // The plane detaches the session…
    let detach = loop {
        let m = daemon_next(&mut s.daemon).await;
        if m["type"] == "session-detach" {
            break m;
        }
    };
    assert_eq!(detach, json!({"type": "session-detach", "sessionId": sid}));
    // …and the browser, once it reads, finds the 1013 close after what got
    // through.
    let mut received = 0usize;
    let close = loop {
        match tokio::time::timeout(WAIT, b.next()).await.unwrap() {
            Some(Ok(WsMessage::Binary(d))) => received += d.len(),
            Some(Ok(WsMessage::Close(f))) => break f,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    let f = close.unwrap();
    assert_eq!(u16::from(f.code), 1013);
    assert!(received < 128 * 256 * 1024);
    s.plane.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors_before_any_upgrade() {
    let s = setup().await;
    let http = s.plane.base_url();
    // Not a WebSocket request.
    let (status, body) = get(&format!("{http}/api/clusters/{}/terminal", s.id)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "Route::WebSocketRequired");
    // Unknown cluster.
    let err = tokio_tungstenite::connect_async(ws_request(&format!(
        "{}/api/clusters/000000000000000000000000/terminal",
        http.replacen("http", "ws", 1)
    )))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // Half a size, a zero size, a bad session id.
    for q in [
        "?rows=10",
        "?rows=0&cols=10",
        "?rows=abc&cols=1",
        "?sessionId=nope",
    ] {
        let err = tokio_tungstenite::connect_async(ws_request(&ws_url(&s, q)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("400"), "{q}: {err}");
    }
    s.plane.shutdown().await;
}

#[tokio::test]
async fn a_given_session_id_is_used_and_cannot_be_attached_twice() {
    let mut s = setup().await;
    let sid = uuid::Uuid::new_v4().to_string();
    let mut b1 = open_browser(&ws_url(&s, &format!("?sessionId={sid}"))).await;
    assert_eq!(expect_attach(&mut s.daemon).await, sid);
    accept_attach(&mut s.daemon, &sid).await;
    // The same id again is refused by the plane (never sent to the daemon).
    let mut b2 = open_browser(&ws_url(&s, &format!("?sessionId={sid}"))).await;
    let (code, reason) = close_of(browser_next(&mut b2).await);
    assert_eq!(code, 1011);
    assert!(reason.contains("already attached"), "{reason}");
    // The first is unaffected.
    session_data(&mut s.daemon, &sid, b"ok").await;
    assert_eq!(
        browser_next(&mut b1).await,
        Some(WsMessage::binary(b"ok".to_vec()))
    );
    s.plane.shutdown().await;
}

#[tokio::test]
async fn the_library_api_attaches_and_drives_a_session() {
    let mut s = setup().await;
    let (session, sid) = tokio::join!(s.plane.attach_host_terminal(&s.id), async {
        let sid = expect_attach(&mut s.daemon).await;
        accept_attach(&mut s.daemon, &sid).await;
        sid
    });
    let mut session = session.unwrap();
    assert_eq!(session.session_id(), sid);
    session.send_input(b"id\n", false).await.unwrap();
    let m = daemon_next(&mut s.daemon).await;
    assert_eq!(unb64(&m["chunkBase64"]), b"id\n");
    session.resize(50, 200).await.unwrap();
    assert_eq!(daemon_next(&mut s.daemon).await["type"], "session-resize");
    assert!(matches!(
        session.resize(0, 10).await,
        Err(PlaneError::InvalidInput(_))
    ));
    session_data(&mut s.daemon, &sid, b"uid=0").await;
    assert_eq!(
        tokio::time::timeout(WAIT, session.recv()).await.unwrap(),
        SessionEvent::Data {
            bytes: b"uid=0".to_vec(),
            is_binary: true
        }
    );
    // Dropping it detaches.
    drop(session);
    assert_eq!(
        daemon_next(&mut s.daemon).await,
        json!({"type": "session-detach", "sessionId": sid})
    );

    // A refusal with a code keeps status and code.
    let (res, ()) = tokio::join!(s.plane.attach_host_terminal(&s.id), async {
        let sid = expect_attach(&mut s.daemon).await;
        s.daemon
            .emit(
                MESSAGE_EVENT,
                &json!({"type": "response", "requestId": sid, "ok": false, "status": 400,
                        "message": "kind not supported",
                        "data": {"status": "error", "code": "Session::Unsupported", "message": "kind not supported"}}),
            )
            .await;
    });
    let err = res.unwrap_err();
    assert_eq!(
        (err.http_status(), err.code()),
        (400, "Session::Unsupported")
    );
    s.plane.shutdown().await;
}
