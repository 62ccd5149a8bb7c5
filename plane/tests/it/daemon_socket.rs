//! The daemon's control socket: registration and daemon→server commands,
//! spoken by a real socket.io client over a real WebSocket.

use serde_json::json;
use testkit::plane::*;
use testkit::sio::*;
use testkit::{WAIT, eventually};
use volt_plane::StatusSource;
use volt_protocol::ClusterStatus;
use volt_protocol::{MESSAGE_EVENT, REGISTER_EVENT, REGISTERED_EVENT};

#[tokio::test]
async fn open_packet_advertises_the_reference_max_payload() {
    let plane = plane().await;
    let c = SioClient::connect(&plane.base_url()).await;
    assert_eq!(c.max_payload, 1_000_000);
    c.close().await;
    plane.shutdown().await;
}

#[tokio::test]
async fn register_with_a_wrong_password_is_refused_without_registered() {
    let plane = plane().await;
    let (created, _) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    let ack = c
        .emit_with_ack(
            REGISTER_EVENT,
            &json!({"teamClusterId": id, "daemonPassword": "nope"}),
        )
        .await;
    assert_eq!(
        c.expect_ack(ack).await,
        vec![json!({"ok": false, "error": "Invalid daemon credentials"})]
    );
    // Anything the refused registration caused was sent before the
    // marker's answer.
    let later = c.sync().await;
    assert!(
        !later
            .iter()
            .any(|i| matches!(i, Incoming::Event(n, _) if n == REGISTERED_EVENT)),
        "{later:?}"
    );
    let view = plane.cluster(&id).unwrap();
    assert!(!view.connected);
    assert_eq!(view.registrations, 0);
    assert_eq!(view.status, ClusterStatus::HealthcheckReceived);
    plane.shutdown().await;
}

#[tokio::test]
async fn register_for_an_unknown_cluster_is_refused() {
    let plane = plane().await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    let ack = c
        .emit_with_ack(
            REGISTER_EVENT,
            &json!({"teamClusterId": "000000000000000000000000", "daemonPassword": "pw"}),
        )
        .await;
    assert_eq!(
        c.expect_ack(ack).await,
        vec![json!({"ok": false, "error": "Team cluster not found"})]
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn register_with_an_extra_key_gets_a_validation_error_event() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    let ack = c
        .emit_with_ack(
            REGISTER_EVENT,
            &json!({"teamClusterId": created.team_cluster.id, "daemonPassword": pw, "channel": "control"}),
        )
        .await;
    let err = c.expect_event("error").await;
    assert_eq!(err["code"], "Validation::InvalidInput");
    assert_eq!(err["message"], "Validation::InvalidInput");
    assert!(
        err["details"].as_str().unwrap().contains("channel"),
        "{err}"
    );
    assert_eq!(c.expect_ack(ack).await, vec![json!({"ok": true})]);
    assert!(!plane.cluster(&created.team_cluster.id).unwrap().connected);
    plane.shutdown().await;
}

#[tokio::test]
async fn register_connects_the_cluster_and_counts_registrations() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let view = plane.cluster(&id).unwrap();
    assert!(view.connected);
    assert_eq!(view.status, ClusterStatus::Connected);
    assert_eq!(view.registrations, 1);
    assert!(view.team_cluster.last_heartbeat_at.is_some());
    assert!(view.team_cluster.last_disconnect_at.is_none());
    let last = view.status_history.last().unwrap();
    assert_eq!(
        (last.status, last.source),
        (ClusterStatus::Connected, StatusSource::Registration)
    );
    // Registering again on the same socket is accepted and counted.
    c.register(&id, &pw).await;
    assert_eq!(plane.cluster(&id).unwrap().registrations, 2);
    plane.shutdown().await;
}

#[tokio::test]
async fn register_without_ack_id_still_gets_registered() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.emit(
        REGISTER_EVENT,
        &json!({"teamClusterId": created.team_cluster.id, "daemonPassword": pw}),
    )
    .await;
    let reg = c.expect_event(REGISTERED_EVENT).await;
    assert_eq!(reg["teamClusterId"], created.team_cluster.id.as_str());
    plane.shutdown().await;
}

#[tokio::test]
async fn heartbeat_command_replies_with_the_dto_and_stores_metrics() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let metrics =
        json!({"timestamp": "2026-11-23T10:00:00Z", "hostname": "h", "cpuUsagePercent": 7});
    let resp = c
        .command(
            "hb-1",
            "runtime.heartbeat",
            json!({"teamClusterId": id, "daemonPassword": pw, "installedVersion": "1.2.3", "metrics": metrics}),
        )
        .await;
    assert_eq!(resp["ok"], true);
    assert_eq!(resp["status"], 200);
    assert_eq!(resp["data"]["status"], "success");
    let dto = &resp["data"]["data"]["teamCluster"];
    assert_eq!(dto["_id"], id.as_str());
    assert_eq!(dto["status"], "connected");
    assert_eq!(dto["installedVersion"], "1.2.3");
    let view = plane.cluster(&id).unwrap();
    assert_eq!(view.heartbeat_count, 1);
    assert_eq!(view.metrics_count, 1);
    assert_eq!(view.last_metrics, Some(metrics));

    let resp = c
        .command(
            "hb-2",
            "runtime.heartbeat",
            json!({"teamClusterId": id, "daemonPassword": "bad"}),
        )
        .await;
    assert_eq!(
        resp,
        json!({"type": "response", "requestId": "hb-2", "ok": false, "status": 401,
               "message": "Invalid daemon credentials"})
    );
    assert_eq!(plane.cluster(&id).unwrap().heartbeat_count, 1);
    plane.shutdown().await;
}

#[tokio::test]
async fn lifecycle_reports_follow_the_reference_rules() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let lc = |status: &str| json!({"teamClusterId": id, "daemonPassword": pw, "status": status});

    let resp = c.command("l1", "runtime.lifecycle", lc("connected")).await;
    assert_eq!(resp["ok"], false);
    assert_eq!(resp["status"], 400);
    assert_eq!(
        resp["message"],
        "Connected status must be reported through the heartbeat endpoint"
    );
    let resp = c
        .command("l2", "runtime.lifecycle", lc("waiting-for-connection"))
        .await;
    assert_eq!(resp["status"], 400);

    // connected → preparing-environment is illegal: ignored, still success.
    let history_before = plane.cluster(&id).unwrap().status_history.len();
    let resp = c
        .command("l3", "runtime.lifecycle", lc("preparing-environment"))
        .await;
    assert_eq!(resp["ok"], true);
    assert_eq!(resp["data"]["data"]["teamCluster"]["status"], "connected");
    assert_eq!(
        plane.cluster(&id).unwrap().status_history.len(),
        history_before
    );

    // connected → disconnected is legal and keeps the reason.
    let mut report = lc("disconnected");
    report["reason"] = json!("services restarting");
    let resp = c.command("l4", "runtime.lifecycle", report).await;
    assert_eq!(
        resp["data"]["data"]["teamCluster"]["status"],
        "disconnected"
    );
    let view = plane.cluster(&id).unwrap();
    let last = view.status_history.last().unwrap();
    assert_eq!(last.status, ClusterStatus::Disconnected);
    assert_eq!(last.source, StatusSource::Lifecycle);
    assert_eq!(last.reason.as_deref(), Some("services restarting"));
    assert!(view.team_cluster.last_disconnect_at.is_some());

    let mut bad = lc("preparing-environment");
    bad["daemonPassword"] = json!("wrong");
    let resp = c.command("l5", "runtime.lifecycle", bad).await;
    assert_eq!(resp["status"], 401);
    plane.shutdown().await;
}

#[tokio::test]
async fn unknown_daemon_server_command_is_404_with_the_reference_wording() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&created.team_cluster.id, &pw).await;
    let resp = c.command("u1", "runtime.does-not-exist", json!({})).await;
    assert_eq!(
        resp,
        json!({"type": "response", "requestId": "u1", "ok": false, "status": 404,
               "message": "Unknown daemon server command: runtime.does-not-exist"})
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn runtime_config_get_returns_the_contract() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&created.team_cluster.id, &pw).await;
    let resp = c.command("c1", "runtime.config.get", json!({})).await;
    assert_eq!(resp["ok"], true);
    let cfg = &resp["data"]["data"];
    assert_eq!(cfg["contractVersion"], 3);
    assert_eq!(cfg["queueConcurrency"]["rasterizer"], 2);
    assert_eq!(cfg["roleConfig"]["effectiveRole"], "cluster");
    assert_eq!(cfg["effectiveCapabilities"]["storage"], true);
    plane.shutdown().await;
}

#[tokio::test]
async fn commands_from_an_unregistered_socket_are_ignored() {
    let plane = plane().await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "command", "requestId": "x", "command": "runtime.config.get"}),
    )
    .await;
    // An answer would have come before the marker's.
    let answered = c.sync().await;
    assert!(answered.is_empty(), "{answered:?}");
    plane.shutdown().await;
}

#[tokio::test]
async fn delete_completed_removes_the_record() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let resp = c
        .command(
            "d1",
            "runtime.delete-completed",
            json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    assert_eq!(resp["ok"], true);
    assert_eq!(resp["data"]["data"], json!({"success": true}));
    assert!(plane.cluster(&id).is_none());
    plane.shutdown().await;
}

#[tokio::test]
async fn exposure_snapshots_are_kept_and_cleared_on_disconnect() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "exposure-snapshot", "exposures": [{
            "id": "c1:80", "teamClusterId": id, "teamId": "local", "sourceKind": "container",
            "exposureName": "web:80", "accessModes": ["tcp", "http"], "targetHost": "10.0.0.2",
            "targetPort": 80, "status": "active", "labels": {}
        }]}),
    )
    .await;
    eventually(WAIT, "the snapshot stored", async || {
        plane.cluster(&id).unwrap().exposures.len() == 1
    })
    .await;
    assert_eq!(plane.cluster(&id).unwrap().exposures[0].id, "c1:80");
    c.close().await;
    eventually(WAIT, "the socket close seen", async || {
        !plane.cluster(&id).unwrap().connected
    })
    .await;
    assert!(plane.cluster(&id).unwrap().exposures.is_empty());
    plane.shutdown().await;
}

#[tokio::test]
async fn socket_close_marks_the_cluster_disconnected() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    c.close().await;
    eventually(WAIT, "disconnected", async || {
        plane.cluster(&id).unwrap().status == ClusterStatus::Disconnected
    })
    .await;
    let view = plane.cluster(&id).unwrap();
    assert!(!view.connected);
    assert!(view.team_cluster.last_disconnect_at.is_some());
    assert_eq!(
        view.status_history.last().unwrap().source,
        StatusSource::SocketClose
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn a_newer_socket_replaces_the_older_one() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut old = SioClient::connect(&plane.base_url()).await;
    old.register(&id, &pw).await;
    let mut new = SioClient::connect(&plane.base_url()).await;
    new.register(&id, &pw).await;
    assert_eq!(plane.cluster(&id).unwrap().registrations, 2);
    // Closing the replaced socket does not disconnect the cluster.
    // Once the plane has dropped the old connection, its disconnect
    // handler is queued; on this single-threaded test runtime it runs
    // before the plane reads the next packet of the new socket, so the
    // command's answer below comes after it.
    old.close_and_wait().await;
    let resp = new.command("n1", "runtime.config.get", json!({})).await;
    assert_eq!(resp["ok"], true);
    let view = plane.cluster(&id).unwrap();
    assert!(view.connected);
    assert_eq!(view.status, ClusterStatus::Connected);
    assert!(
        !view
            .status_history
            .iter()
            .any(|h| h.status == ClusterStatus::Disconnected),
        "{:?}",
        view.status_history
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn disconnect_daemon_cuts_the_connection_like_a_network_failure() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    assert!(plane.disconnect_daemon(&id).await);
    let view = plane.cluster(&id).unwrap();
    assert!(!view.connected);
    assert_eq!(view.status, ClusterStatus::Disconnected);
    // The client sees its transport end, not a socket.io DISCONNECT packet.
    let seen = c.closed().await;
    assert!(!seen.contains(&Incoming::Disconnect), "{seen:?}");
    assert!(c.next(WAIT).await.is_none());
    // And it can come back.
    let mut again = SioClient::connect(&plane.base_url()).await;
    again.register(&id, &pw).await;
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);
    assert!(!plane.disconnect_daemon("000000000000000000000000").await);
    plane.shutdown().await;
}

#[tokio::test]
async fn a_plane_without_runtime_config_answers_it_as_an_unknown_command() {
    let plane = start(volt_plane::PlaneConfig {
        runtime_config: None,
        ..config()
    })
    .await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&created.team_cluster.id, &pw).await;
    let resp = c.command("c1", "runtime.config.get", json!({})).await;
    assert_eq!(resp["ok"], false);
    assert_eq!(resp["status"], 404);
    assert_eq!(
        resp["message"],
        "Unknown daemon server command: runtime.config.get"
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn job_status_events_are_kept_when_they_authenticate() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let event = |cluster: &str, password: &str, job: &str| {
        json!({"type": "ssh-import-job-status", "teamClusterId": cluster,
               "daemonPassword": password, "jobId": job, "teamId": "t",
               "trajectoryId": "tr", "status": "completed"})
    };
    c.emit(MESSAGE_EVENT, &event(&id, &pw, "good")).await;
    c.emit(MESSAGE_EVENT, &event(&id, "wrong", "bad-password"))
        .await;
    c.emit(MESSAGE_EVENT, &event("someone-else", &pw, "other-cluster"))
        .await;
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "analysis-job-status", "teamClusterId": id, "daemonPassword": pw,
                "jobId": "a1", "name": "cna", "analysisId": "a", "teamId": "t", "status": "running"}),
    )
    .await;
    // Everything sent before the marker has been handled.
    c.sync().await;
    let events = plane.job_events(&id).unwrap();
    let kept: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.fields["jobId"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kept,
        [
            ("ssh-import-job-status", "good"),
            ("analysis-job-status", "a1")
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| !e.fields.contains_key("daemonPassword")),
        "the password is not kept"
    );
    // The same list over HTTP.
    let (status, body) = get(&format!(
        "{}/api/clusters/{id}/job-events",
        plane.base_url()
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["type"], "ssh-import-job-status");
    assert_eq!(body["data"][1]["fields"]["status"], "running");
    plane.shutdown().await;
}
