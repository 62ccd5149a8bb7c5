//! End to end: voltd (in-process actor system) against a real volt-plane
//! over real sockets.

use otp::ExitCode;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::daemon::*;
use testkit::eventually;
use testkit::plane::PersistentPlane;
use volt_plane::{DaemonReply, PlaneConfig, ResponseType};
use volt_protocol::ClusterStatus;
use voltd_actors::api::CredentialOrigin;
use voltd_actors::api::{CommandError, SendCommand};
use voltd_actors::events::Event;
use voltd_actors::remote::Reply;

const SECS_10: Duration = Duration::from_secs(10);

fn json_reply(reply: DaemonReply) -> volt_plane::ResponseMessage {
    match reply {
        DaemonReply::Json(r) => r,
        other => panic!("expected a json reply, got {:?}", other.response()),
    }
}

#[actix_rt::test]
async fn enrolls_registers_heartbeats_with_every_metric_and_shows_connected() {
    let f = Fixture::start().await;
    let (plane, id, daemon) = (&f.plane, f.id.as_str(), &f.daemon);
    let view = eventually(SECS_10, "two heartbeats with metrics", async || {
        plane.cluster(id).filter(|c| c.metrics_count >= 2)
    })
    .await;
    assert_eq!(view.status, ClusterStatus::Connected);
    assert_eq!(view.registrations, 1);
    assert!(view.enrollment_completed);
    let history: Vec<ClusterStatus> = view.status_history.iter().map(|h| h.status).collect();
    assert_eq!(
        history,
        [
            ClusterStatus::WaitingForConnection,
            ClusterStatus::HealthcheckReceived,
            ClusterStatus::Connected
        ]
    );

    let m = view.last_metrics.expect("metrics stored");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&m),
        [
            "cloudLatencyMs",
            "connectedToCloud",
            "cpuLoadAverage",
            "cpuPerCoreUsagePercent",
            "cpuUsagePercent",
            "disk",
            "diskOperations",
            "hostname",
            "memory",
            "network",
            "timestamp",
            "uptimeSeconds"
        ]
    );
    assert_eq!(
        keys(&m["memory"]),
        ["freeBytes", "totalBytes", "usagePercent", "usedBytes"]
    );
    assert_eq!(
        keys(&m["disk"]),
        ["freeBytes", "totalBytes", "usagePercent", "usedBytes"]
    );
    assert_eq!(
        keys(&m["diskOperations"]),
        [
            "readIOPS",
            "readMegabytesPerSecond",
            "totalIOPS",
            "writeIOPS",
            "writeMegabytesPerSecond"
        ]
    );
    assert_eq!(
        keys(&m["network"]),
        [
            "incomingKilobytesPerSecond",
            "outgoingKilobytesPerSecond",
            "receivedBytes",
            "sentBytes",
            "totalKilobytesPerSecond"
        ]
    );
    assert!(m["memory"]["totalBytes"].as_u64().unwrap() > 0);
    assert!(m["disk"]["totalBytes"].as_u64().unwrap() > 0);
    assert_eq!(m["cpuLoadAverage"].as_array().unwrap().len(), 3);
    assert!(!m["cpuPerCoreUsagePercent"].as_array().unwrap().is_empty());
    assert!(!m["hostname"].as_str().unwrap().is_empty());
    assert_eq!(m["connectedToCloud"], true);
    // The second heartbeat carries the first one's round trip.
    assert!(m["cloudLatencyMs"].as_f64().unwrap() >= 0.0);

    // The daemon's own view agrees (once it has processed the answers).
    let status = daemon.wiring.snapshots.clone();
    let snap = eventually(
        SECS_10,
        "two answered heartbeats in the snapshot",
        async || {
            let snap = status
                .send(voltd_actors::status::GetSnapshot)
                .await
                .unwrap();
            (snap.heartbeats_ok >= 2).then_some(snap)
        },
    )
    .await;
    assert_eq!(snap.status, ClusterStatus::Connected);
    assert_eq!(snap.server_status, Some(ClusterStatus::Connected));
    assert!(snap.registered);
    assert!(snap.heartbeats_ok >= 2);

    f.stop().await;
}

#[actix_rt::test]
async fn used_token_gets_409_and_stored_credentials_still_connect() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();

    let first = start_daemon(settings(&plane.base_url(), &created, state.path()));
    wait_connected(&plane, &id).await;
    first.shutdown(ExitCode::Stopped, "test");
    first.wait().await;

    // The token is single use on the server.
    let client = reqwest::Client::new();
    let resp = client
        .post(format!(
            "{}/api/team-clusters/{id}/healthcheck",
            plane.base_url()
        ))
        .json(&json!({"enrollmentToken": created.enrollment_token, "installedVersion": "1.0.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "TeamCluster::EnrollmentAlreadyCompleted");

    // Restarted with the same state (token still configured): no second
    // enrollment, straight to the control channel.
    let second = start_daemon(settings(&plane.base_url(), &created, state.path()));
    wait_event(
        &second,
        SECS_10,
        "credentials from the store",
        |e| matches!(e, Event::CredentialsReady { source, .. } if *source == CredentialOrigin::Stored),
    )
    .await;
    eventually(SECS_10, "second registration", async || {
        plane
            .cluster(&id)
            .filter(|c| c.registrations >= 2 && c.connected)
    })
    .await;
    second.shutdown(ExitCode::Stopped, "test");
    second.wait().await;

    // A fresh host with the used token but the installer's password: 409 →
    // carry on with the configured password.
    let fresh = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, fresh.path());
    s.daemon_password = Some(created.daemon_password.as_str().into());
    let third = start_daemon(s);
    wait_event(
        &third,
        SECS_10,
        "credentials from config",
        |e| matches!(e, Event::CredentialsReady { source, .. } if *source == CredentialOrigin::Config),
    )
    .await;
    eventually(SECS_10, "third registration", async || {
        plane
            .cluster(&id)
            .filter(|c| c.registrations >= 3 && c.connected)
    })
    .await;
    third.shutdown(ExitCode::Stopped, "test");
    third.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn used_token_without_a_password_ends_with_the_credentials_rejected_code() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let state = tempfile::tempdir().unwrap();
    let first = start_daemon(settings(&plane.base_url(), &created, state.path()));
    wait_connected(&plane, &created.team_cluster.id).await;
    first.shutdown(ExitCode::Stopped, "test");
    first.wait().await;

    let fresh = tempfile::tempdir().unwrap();
    let daemon = start_daemon(settings(&plane.base_url(), &created, fresh.path()));
    let code = tokio::time::timeout(SECS_10, daemon.wait())
        .await
        .expect("daemon ends");
    assert_eq!(code, ExitCode::CredentialsRejected);
    assert_eq!(code.code(), 4);
    plane.shutdown().await;
}

#[actix_rt::test]
async fn plane_restart_makes_the_daemon_register_again() {
    let mut plane = PersistentPlane::start(plane_config()).await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let daemon = start_daemon(settings(&plane.base_url(), &created, state.path()));
    wait_connected(&plane, &id).await;
    plane.stop().await;

    wait_event(&daemon, SECS_10, "socket down", |e| {
        matches!(e, Event::SocketDisconnected { .. })
    })
    .await;

    plane.restart().await;
    let view = eventually(SECS_10, "registration on the restarted plane", async || {
        plane
            .cluster(&id)
            .filter(|c| c.connected && c.heartbeat_count >= 1)
    })
    .await;
    assert_eq!(view.registrations, 1, "counted by the new plane instance");
    assert_eq!(view.status, ClusterStatus::Connected);
    assert_eq!(
        count_events(&daemon, |e| matches!(e, Event::Registered { .. })),
        2,
        "the daemon registered on both planes"
    );
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn unknown_commands_get_the_reference_404() {
    let f = Fixture::start().await;
    let (plane, id) = (&f.plane, f.id.as_str());

    let reply = plane
        .send_command(
            id,
            "container.list",
            json!({"all": true}),
            ResponseType::Json,
            None,
        )
        .await
        .unwrap();
    let r = json_reply(reply);
    assert!(!r.ok);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message.as_deref(),
        Some("Unknown daemon command: container.list")
    );
    assert!(r.data.is_none());

    let ping = json_reply(
        plane
            .send_command(
                id,
                "runtime.ping",
                json!({"metadata": {"traceId": "t"}}),
                ResponseType::Json,
                None,
            )
            .await
            .unwrap(),
    );
    assert!(ping.ok);
    assert_eq!(ping.status, 200);
    let data = ping.data.unwrap();
    assert_eq!(data["status"], "success");
    assert_eq!(data["data"]["pong"], true);

    f.stop().await;
}

#[actix_rt::test]
async fn a_panicking_handler_answers_500_and_the_daemon_keeps_serving() {
    let f = Fixture::start().await;
    let (plane, id, daemon) = (&f.plane, f.id.as_str(), &f.daemon);
    daemon.register_handler("test.explode", |_payload| async move {
        if std::hint::black_box(true) {
            panic!("kaboom");
        }
        Reply::ok(json!({}))
    });
    daemon.register_handler("test.fail", |payload| async move {
        Reply::failure_with_code(422, "TEST_FAILED", format!("bad input: {}", payload["x"]))
    });

    let r = json_reply(
        plane
            .send_command(id, "test.explode", json!({}), ResponseType::Json, None)
            .await
            .unwrap(),
    );
    assert!(!r.ok);
    assert_eq!(r.status, 500);
    assert!(r.message.unwrap().contains("kaboom"));

    let r = json_reply(
        plane
            .send_command(id, "test.fail", json!({"x": 7}), ResponseType::Json, None)
            .await
            .unwrap(),
    );
    assert!(!r.ok);
    assert_eq!(r.status, 422);
    assert_eq!(r.message.as_deref(), Some("bad input: 7"));
    assert_eq!(r.data.unwrap()["code"], "TEST_FAILED");

    // Same connection, same dispatcher: nothing restarted.
    let ping = json_reply(
        plane
            .send_command(id, "runtime.ping", json!({}), ResponseType::Json, None)
            .await
            .unwrap(),
    );
    assert!(ping.ok);
    assert_eq!(
        count_events(daemon, |e| matches!(
            e,
            Event::Supervisor(otp::SupervisorEvent::ChildRestarting { .. })
        )),
        0
    );
    assert_eq!(plane.cluster(id).unwrap().registrations, 1);

    f.stop().await;
}

#[actix_rt::test]
async fn forced_socket_drop_fails_pending_work_and_handlers_answer_after_reconnect() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    // A fixed 1 s reconnect delay leaves a window to observe the down state.
    s.socket.reconnect_base = Duration::from_secs(1);
    s.socket.reconnect_max = Duration::from_secs(1);
    s.socket.reconnect_jitter = voltd_actors::config::Jitter::new(0.0).unwrap();
    let daemon = start_daemon(s);
    wait_connected(&plane, &id).await;

    assert!(plane.disconnect_daemon(&id).await);
    wait_event(&daemon, SECS_10, "socket down", |e| {
        matches!(e, Event::SocketDisconnected { .. })
    })
    .await;

    // While down, outbound commands fail at once with SOCKET_NOT_READY.
    let dispatcher = daemon.wiring.outbox.clone();
    let err = dispatcher
        .command(SendCommand::new("runtime.config.get", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::SocketNotReady(_)), "{err}");
    assert_eq!(err.code().as_str(), "SOCKET_NOT_READY");

    // The daemon reconnects on its own and serves again.
    eventually(SECS_10, "re-registration", async || {
        plane
            .cluster(&id)
            .filter(|c| c.connected && c.registrations >= 2)
    })
    .await;
    let ping = json_reply(
        plane
            .send_command(&id, "runtime.ping", json!({}), ResponseType::Json, None)
            .await
            .unwrap(),
    );
    assert!(ping.ok);
    // And its own commands reach the server again.
    let cfg = dispatcher
        .command(SendCommand::new("runtime.config.get", json!({})))
        .await
        .unwrap();
    assert_eq!(cfg["roleConfig"]["effectiveRole"], "cluster");

    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn outbound_command_errors_carry_the_sdk_codes() {
    let f = Fixture::start().await;
    let daemon = &f.daemon;
    let dispatcher = daemon.wiring.outbox.clone();

    let err = dispatcher
        .command(SendCommand::new("runtime.does-not-exist", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "COMMAND_REJECTED");
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string()
            .contains("Unknown daemon server command: runtime.does-not-exist")
    );

    // The plane refuses `connected` through lifecycle, as the real server.
    let creds = daemon.wiring.credentials.get().unwrap();
    let err = dispatcher
        .command(SendCommand::new(
            "runtime.lifecycle",
            json!({"teamClusterId": creds.team_cluster_id, "daemonPassword": creds.daemon_password, "status": "connected"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));

    f.stop().await;
}

#[actix_rt::test]
async fn heartbeat_silence_makes_the_plane_show_disconnected() {
    let plane = start_plane(PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        heartbeat_timeout: Duration::from_millis(800),
        sweep_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    // One heartbeat right after registration, then silence.
    s.heartbeat_interval = Duration::from_secs(3600);
    let daemon = start_daemon(s);
    eventually(SECS_10, "first heartbeat", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count == 1)
    })
    .await;
    let view = eventually(SECS_10, "sweep to disconnected", async || {
        plane
            .cluster(&id)
            .filter(|c| c.status == ClusterStatus::Disconnected)
    })
    .await;
    let last = view.status_history.last().unwrap();
    assert_eq!(last.status, ClusterStatus::Disconnected);
    assert!(view.connected, "the socket itself is still up");
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}

#[actix_rt::test]
async fn messages_emitted_while_disconnected_are_delivered_after_registration() {
    let mut plane = PersistentPlane::start(plane_config()).await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let daemon = start_daemon(settings(&plane.base_url(), &created, state.path()));
    wait_connected(&plane, &id).await;
    plane.stop().await;
    wait_event(&daemon, SECS_10, "socket down", |e| {
        matches!(e, Event::SocketDisconnected { .. })
    })
    .await;

    let snapshot = volt_protocol::Message::decode(
        &json!({
            "type": "exposure-snapshot",
            "exposures": [{
                "id": "c1:8888", "teamClusterId": id, "teamId": "local",
                "sourceKind": "daemon", "exposureName": "jupyter:8888",
                "accessModes": ["tcp", "http"], "targetHost": "127.0.0.1",
                "targetPort": 8888, "status": "active", "labels": {}
            }]
        })
        .to_string(),
    )
    .unwrap();
    daemon.wiring.outbox.emit(snapshot);

    plane.restart().await;
    let view = eventually(SECS_10, "buffered snapshot delivered", async || {
        plane.cluster(&id).filter(|c| !c.exposures.is_empty())
    })
    .await;
    assert_eq!(view.exposures[0].id, "c1:8888");
    daemon.shutdown(ExitCode::Stopped, "test");
    daemon.wait().await;
    plane.shutdown().await;
}
