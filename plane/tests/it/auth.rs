//! Authentication for people, over real HTTP: the admin token, sessions,
//! Host/Origin checks, JSON content types — and that the daemon-facing
//! routes stay exactly as the reference's.

use serde_json::{Value, json};
use std::time::Duration;
use testkit::WAIT;
use testkit::plane::*;
use testkit::sio::*;
use volt_plane::PlaneConfig;

fn plain() -> reqwest::Client {
    reqwest::Client::new()
}

async fn status_of(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn person_routes_need_the_admin_token_and_daemon_routes_do_not() {
    let plane = plane().await;
    let base = plane.base_url();
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let id = &created.team_cluster.id;
    for path in [
        "/api/clusters".to_string(),
        format!("/api/clusters/{id}"),
        format!("/api/clusters/{id}/metrics"),
        format!("/api/clusters/{id}/explorer/redis-data/entries"),
        "/api/plane/events".into(),
        "/api/events".into(),
    ] {
        let (status, body) = status_of(plain().get(format!("{base}{path}"))).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], "Auth::Required");
        let (status, _) = status_of(
            plain()
                .get(format!("{base}{path}"))
                .bearer_auth("not-the-token-0123456789"),
        )
        .await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    for (path, body) in [
        ("/api/clusters".to_string(), json!({})),
        (
            format!("/api/clusters/{id}/enrollment-token/regenerate"),
            json!({}),
        ),
        (
            format!("/api/clusters/{id}/commands"),
            json!({"command": "runtime.ping"}),
        ),
        (format!("/api/clusters/{id}/delete-requests"), json!({})),
    ] {
        let (status, _) = status_of(plain().post(format!("{base}{path}")).json(&body)).await;
        assert_eq!(status, 401, "{path}");
    }
    // The terminal WebSocket too.
    let ws = format!(
        "{}/api/clusters/{id}/terminal",
        base.replacen("http", "ws", 1)
    );
    let err = tokio_tungstenite::connect_async(&ws).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // With the token: fine.
    let (status, _) = status_of(http().get(format!("{base}/api/clusters"))).await;
    assert_eq!(status, 200);
    // Open: liveness, the installer, the console page, the daemon routes —
    // the latter even under a foreign Host name, exactly as the reference.
    for path in ["/healthz", "/install.sh", "/", "/console/app.js"] {
        let (status, _) = status_of(plain().get(format!("{base}{path}"))).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, body) = status_of(
        plain()
            .post(format!("{base}/api/team-clusters/{id}/healthcheck"))
            .header("host", "cloud.example.org")
            .json(&json!({"enrollmentToken": created.enrollment_token})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pw = body["data"]["daemonPassword"].as_str().unwrap().to_owned();
    let mut c = SioClient::connect(&base).await;
    c.register(id, &pw).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn host_and_origin_are_checked_on_person_routes() {
    let plane = volt_plane::start(PlaneConfig {
        allowed_hosts: vec!["lab.local".into()],
        ..config()
    })
    .await
    .unwrap();
    let base = plane.base_url();
    let port = plane.addr().port();
    let url = format!("{base}/api/clusters");
    // DNS rebinding: the attacker's name resolves to us; the token (or a
    // cookie) would not even be sent, but the name alone is refused.
    for host in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.evil.example",
    ] {
        let (status, body) = status_of(http().get(&url).header("host", host)).await;
        assert_eq!(status, 403, "{host}");
        assert_eq!(body["code"], "Auth::HostNotAllowed");
    }
    let (status, _) = status_of(
        plain()
            .get(format!("{base}/"))
            .header("host", "evil.example"),
    )
    .await;
    assert_eq!(status, 403, "the console page itself");
    for host in [
        format!("localhost:{port}"),
        "lab.local".into(),
        format!("127.0.0.1:{port}"),
    ] {
        let (status, _) = status_of(http().get(&url).header("host", &host)).await;
        assert_eq!(status, 200, "{host}");
    }
    // Origin: only our own.
    let (status, body) = status_of(
        http()
            .post(&url)
            .header("origin", "http://evil.example")
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "Auth::CrossOrigin");
    let (status, _) = status_of(http().get(&url).header("origin", "null")).await;
    assert_eq!(status, 403);
    let (status, _) = status_of(http().get(&url).header("sec-fetch-site", "cross-site")).await;
    assert_eq!(status, 403);
    let (status, _) = status_of(
        http()
            .post(&url)
            .header("origin", format!("http://127.0.0.1:{port}"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 201);
    // A cross-origin WebSocket (a page elsewhere opening our terminal).
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let mut req = ws_request(&format!(
        "{}/api/clusters/{}/terminal",
        base.replacen("http", "ws", 1),
        created.team_cluster.id
    ));
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    plane.shutdown().await;
}

#[tokio::test]
async fn json_endpoints_require_application_json() {
    let plane = plane().await;
    let base = plane.base_url();
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let id = &created.team_cluster.id;
    for path in [
        "/api/clusters".to_string(),
        format!("/api/clusters/{id}/enrollment-token/regenerate"),
        format!("/api/clusters/{id}/commands"),
        "/api/auth/login".into(),
    ] {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut r = http().post(format!("{base}{path}")).body("{}");
            if let Some(ct) = ct {
                r = r.header("content-type", ct);
            }
            let (status, body) = status_of(r).await;
            assert_eq!(status, 415, "{path} {ct:?}");
            assert_eq!(body["code"], "Request::JsonRequired");
        }
    }
    // Uploads are raw bytes, not JSON.
    let (status, _) = status_of(
        http()
            .put(format!("{base}/api/clusters/{id}/objects/b/k"))
            .body("bytes"),
    )
    .await;
    assert_eq!(status, 409, "reaches the route (no daemon)");
    plane.shutdown().await;
}

fn cookie_of(r: &reqwest::Response) -> String {
    let set = r
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_login_sets_a_strict_http_only_session_cookie_until_logout() {
    let plane = plane().await;
    let base = plane.base_url();
    let login = format!("{base}/api/auth/login");
    let (status, body) = status_of(
        plain()
            .post(&login)
            .json(&json!({"token": "wrong-token-0123456789"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "Auth::InvalidToken");
    let r = plain()
        .post(&login)
        .json(&json!({ "token": TEST_ADMIN_TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = cookie_of(&r);
    assert!(cookie.starts_with(volt_plane::SESSION_COOKIE));
    let (status, body) = status_of(
        plain()
            .get(format!("{base}/api/auth/session"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(
        (status, &body["data"]["authenticated"]),
        (200, &json!(true))
    );
    let (status, _) = status_of(
        plain()
            .get(format!("{base}/api/clusters"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = status_of(
        plain()
            .get(format!("{base}/api/clusters"))
            .header("cookie", "volt_session=forged"),
    )
    .await;
    assert_eq!(status, 401);
    let r = plain()
        .post(format!("{base}/api/auth/logout"))
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _) = status_of(
        plain()
            .get(format!("{base}/api/clusters"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(status, 401, "the session ended");
    // Both logins are in the plane's log.
    let log = plane_log(&base).await;
    assert!(log.iter().any(|e| e["type"] == "login-failed"));
    assert!(log.iter().any(|e| e["type"] == "login-succeeded"));
    plane.shutdown().await;
}

async fn plane_log(base: &str) -> Vec<Value> {
    let (_, body) = get(&format!("{base}/api/plane/events?limit=2000")).await;
    body["data"]["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_generated_token_is_printed_once_and_stored_only_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plane.json");
    let cfg = PlaneConfig {
        data_file: Some(file.clone()),
        admin_token: None,
        ..config()
    };
    let plane = volt_plane::start(cfg.clone()).await.unwrap();
    assert!(plane.admin_token_generated());
    let token = plane.admin_token().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    let (status, _) = status_of(
        plane
            .client()
            .get(format!("{}/api/clusters", plane.base_url())),
    )
    .await;
    assert_eq!(status, 200);
    plane.shutdown().await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&token), "the token itself is never stored");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert!(
        stored["admin"]["tokenHash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$")
    );
    // Restarted: nothing new, the old token still opens the console.
    let plane = volt_plane::start(cfg).await.unwrap();
    assert!(!plane.admin_token_generated());
    assert!(plane.admin_token().is_none());
    let base = plane.base_url();
    let (status, _) = status_of(
        plain()
            .get(format!("{base}/api/clusters"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = status_of(
        plain()
            .get(format!("{base}/api/clusters"))
            .bearer_auth(format!("{token}0")),
    )
    .await;
    assert_eq!(status, 401);
    plane.shutdown().await;
}

#[tokio::test]
async fn a_regenerated_token_never_reveals_the_running_daemons_password() {
    let plane = plane().await;
    let base = plane.base_url();
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut daemon = SioClient::connect(&base).await;
    daemon.register(&id, &pw).await;
    let (status, body) = post(
        &format!("{base}/api/clusters/{id}/enrollment-token/regenerate"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !body.to_string().contains(&pw),
        "regenerate shows no password"
    );
    let token = body["data"]["enrollmentToken"].as_str().unwrap().to_owned();
    let (status, body) = status_of(
        plain()
            .post(format!("{base}/api/team-clusters/{id}/healthcheck"))
            .json(&json!({"enrollmentToken": token})),
    )
    .await;
    assert_eq!(status, 200);
    let new_pw = body["data"]["daemonPassword"].as_str().unwrap().to_owned();
    assert_ne!(
        new_pw, pw,
        "the token holder gets a new password, not the running daemon's"
    );
    // The daemon that used the old password is cut off and cannot come back.
    testkit::eventually(WAIT, "the old daemon disconnected", async || {
        !plane.cluster(&id).unwrap().connected
    })
    .await;
    assert!(
        daemon.next(Duration::from_secs(5)).await.is_none(),
        "the old daemon's connection was cut"
    );
    let mut old = SioClient::connect(&base).await;
    let ack = old
        .emit_with_ack(
            volt_protocol::REGISTER_EVENT,
            &json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    assert_eq!(
        old.expect_ack(ack).await,
        vec![json!({"ok": false, "error": "Invalid daemon credentials"})]
    );
    let mut new = SioClient::connect(&base).await;
    new.register(&id, &new_pw).await;
    let log = plane_log(&base).await;
    assert!(
        log.iter()
            .any(|e| e["type"] == "enrollment-completed" && e["passwordRotated"] == true)
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn session_messages_are_accepted_only_from_the_owning_daemon() {
    let plane = plane().await;
    let base = plane.base_url();
    let (a, pw_a) = enrolled_cluster(&plane).await;
    let (b, pw_b) = enrolled_cluster(&plane).await;
    let (a_id, b_id) = (a.team_cluster.id.clone(), b.team_cluster.id.clone());
    let mut da = SioClient::connect(&base).await;
    da.register(&a_id, &pw_a).await;
    let mut db = SioClient::connect(&base).await;
    db.register(&b_id, &pw_b).await;
    let mut sub = plane.subscribe_session(&a_id, "sess-a");
    let data = |text: &str| {
        json!({"type": "session-data", "sessionId": "sess-a",
               "chunkBase64": base64_encode(text.as_bytes()), "isBinary": true})
    };
    // Cluster B's daemon learned A's session id: its writes are dropped.
    db.emit(volt_protocol::MESSAGE_EVENT, &data("rm -rf ~\n"))
        .await;
    da.emit(volt_protocol::MESSAGE_EVENT, &data("$ ")).await;
    let got = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    let volt_plane::Message::SessionData(d) = got else {
        panic!("expected session data, got {got:?}");
    };
    assert_eq!(d.chunk_base64, base64_encode(b"$ "));
    db.emit(
        volt_protocol::MESSAGE_EVENT,
        &json!({"type": "session-end", "sessionId": "sess-a", "code": 0}),
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.recv())
            .await
            .is_err(),
        "nothing from the foreign daemon"
    );
    plane.shutdown().await;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn the_event_stream_needs_a_login_too_and_then_streams() {
    let plane = plane().await;
    let base = plane.base_url();
    let mut r = http()
        .get(format!("{base}/api/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: hello"));
    plane.shutdown().await;
}
