//! Timeouts, deletion and update, end to end.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use testkit::plane::*;
use testkit::sio::*;
use testkit::{WAIT, eventually};
use volt_plane::{DeleteOutcome, StatusSource};
use volt_protocol::ClusterStatus;

fn fast_config() -> volt_plane::PlaneConfig {
    let mut cfg = config();
    cfg.heartbeat_timeout = Duration::from_millis(200);
    cfg.sweep_interval = Duration::from_millis(50);
    cfg.delete_timeout = Duration::from_millis(200);
    cfg.update_timeout = Duration::from_millis(200);
    cfg
}

#[tokio::test]
async fn no_heartbeat_within_the_timeout_marks_disconnected() {
    let plane = start(fast_config()).await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);
    eventually(WAIT, "disconnected by the sweep", async || {
        plane.cluster(&id).unwrap().status == ClusterStatus::Disconnected
    })
    .await;
    let view = plane.cluster(&id).unwrap();
    assert_eq!(
        view.status_history.last().unwrap().source,
        StatusSource::HeartbeatTimeout
    );
    // The socket itself stays registered; the next heartbeat reconnects.
    assert!(view.connected);
    let resp = c
        .command(
            "hb",
            "runtime.heartbeat",
            json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    assert_eq!(resp["data"]["data"]["teamCluster"]["status"], "connected");
    plane.shutdown().await;
}

#[tokio::test]
async fn regular_heartbeats_keep_the_cluster_connected() {
    let plane = start(fast_config()).await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    // A daemon beating every 60 ms, well inside the 200 ms timeout, while
    // the sweeper runs every 50 ms: the pace is the scenario under test.
    let mut beat = tokio::time::interval(Duration::from_millis(60));
    beat.tick().await;
    for i in 0..8 {
        beat.tick().await;
        c.command(
            &format!("hb{i}"),
            "runtime.heartbeat",
            json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    }
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);
    plane.shutdown().await;
}

#[tokio::test]
async fn delete_with_a_daemon_uninstalls_then_completes() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let seen_reason = Arc::new(std::sync::Mutex::new(Value::Null));
    let seen = seen_reason.clone();
    let daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, move |cmd| {
        if cmd["command"] == "runtime.uninstall" {
            *seen.lock().unwrap() = cmd["payload"].clone();
            vec![success_for(cmd, json!({"accepted": true}))]
        } else {
            vec![]
        }
    })
    .await;
    let (status, body) = post(
        &format!("{}/api/clusters/{id}/delete-requests", plane.base_url()),
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["deleted"], false);
    assert_eq!(body["data"]["teamCluster"]["status"], "deleting");
    assert_eq!(
        *seen_reason.lock().unwrap(),
        json!({"reason": "Delete requested by user local"})
    );
    // A second request while deleting is a conflict.
    let (status, body) = post(
        &format!("{}/api/clusters/{id}/delete-requests", plane.base_url()),
        json!({}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "TeamCluster::DeletionAlreadyInProgress");
    // Heartbeats do not lift the lock.
    let mut c = daemon.stop().await;
    let resp = c
        .command(
            "hb",
            "runtime.heartbeat",
            json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    assert_eq!(resp["data"]["data"]["teamCluster"]["status"], "deleting");
    let resp = c
        .command(
            "done",
            "runtime.delete-completed",
            json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    assert_eq!(resp["ok"], true);
    assert!(plane.cluster(&id).is_none());
    plane.shutdown().await;
}

#[tokio::test]
async fn a_rejected_uninstall_is_409_and_leaves_the_cluster() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, |cmd| {
        vec![success_for(
            cmd,
            json!({"accepted": false, "reason": "jobs running"}),
        )]
    })
    .await;
    let err = plane.request_delete(&id).await.unwrap_err();
    assert_eq!(err.code(), "TeamCluster::RemoteUninstallRejected");
    assert_eq!(err.to_string(), "jobs running");
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);
    plane.shutdown().await;
}

#[tokio::test]
async fn delete_without_a_daemon_removes_the_record_and_gives_the_manual_command() {
    let plane = plane().await;
    let (created, _) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let (status, body) = post(
        &format!("{}/api/clusters/{id}/delete-requests", plane.base_url()),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["deleted"], true);
    assert_eq!(body["data"]["manualUninstallRequired"], true);
    let cmd = body["data"]["manualUninstallCommand"].as_str().unwrap();
    assert!(
        cmd.contains(&format!("/opt/volt/team-clusters/{id}")),
        "{cmd}"
    );
    assert!(plane.cluster(&id).is_none());

    // A never-installed cluster needs no manual cleanup.
    let fresh = plane.create_cluster(Default::default()).await.unwrap();
    let out = plane.request_delete(&fresh.team_cluster.id).await.unwrap();
    assert!(matches!(
        out,
        DeleteOutcome::Deleted {
            manual_uninstall_command: None
        }
    ));
    let (status, _) = post(
        &format!(
            "{}/api/clusters/000000000000000000000000/delete-requests",
            plane.base_url()
        ),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    plane.shutdown().await;
}

#[tokio::test]
async fn deleting_too_long_becomes_delete_failed() {
    let plane = start(fast_config()).await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, |cmd| {
        vec![success_for(cmd, json!({"accepted": true}))]
    })
    .await;
    assert!(matches!(
        plane.request_delete(&id).await.unwrap(),
        DeleteOutcome::Deleting(_)
    ));
    eventually(WAIT, "delete-failed", async || {
        plane.cluster(&id).unwrap().status == ClusterStatus::DeleteFailed
    })
    .await;
    assert_eq!(
        plane
            .cluster(&id)
            .unwrap()
            .status_history
            .last()
            .unwrap()
            .source,
        StatusSource::Timeout
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn update_moves_to_updating_and_a_heartbeat_with_the_version_completes_it() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();

    let (status, body) = post(
        &format!("{}/api/clusters/{id}/update-requests", plane.base_url()),
        json!({"targetVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "TeamCluster::NotUpdatable");

    let payloads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = payloads.clone();
    let daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, move |cmd| {
        seen.lock().unwrap().push(cmd["payload"].clone());
        vec![success_for(cmd, json!({"accepted": true}))]
    })
    .await;
    let (status, body) = post(
        &format!("{}/api/clusters/{id}/update-requests", plane.base_url()),
        json!({"targetVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["teamCluster"]["status"], "updating");
    assert_eq!(
        payloads.lock().unwrap()[0],
        json!({"targetImage": "ghcr.io/voltlabs-research/volt-cluster-daemon:2.0.0", "targetVersion": "2.0.0"})
    );
    let mut c = daemon.stop().await;
    let hb = |v: &str| json!({"teamClusterId": id, "daemonPassword": pw, "installedVersion": v});
    let r = c.command("h1", "runtime.heartbeat", hb("1.0.0")).await;
    assert_eq!(r["data"]["data"]["teamCluster"]["status"], "updating");
    let r = c.command("h2", "runtime.heartbeat", hb("2.0.0")).await;
    assert_eq!(r["data"]["data"]["teamCluster"]["status"], "connected");
    assert_eq!(
        r["data"]["data"]["teamCluster"]["installedVersion"],
        "2.0.0"
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn update_rejected_or_unknown_to_the_daemon_is_409() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let reject = Arc::new(AtomicBool::new(true));
    let r = reject.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, move |cmd| {
        if r.load(Ordering::SeqCst) {
            vec![success_for(
                cmd,
                json!({"accepted": false, "message": "no space"}),
            )]
        } else {
            vec![
                json!({"type": "response", "requestId": cmd["requestId"], "ok": false,
                        "status": 404, "message": "Unknown daemon command: runtime.update"}),
            ]
        }
    })
    .await;
    let err = plane.request_update(&id, "2.0.0", true).await.unwrap_err();
    assert_eq!(err.code(), "TeamCluster::UpdateRejected");
    assert_eq!(err.to_string(), "no space");
    reject.store(false, Ordering::SeqCst);
    let err = plane.request_update(&id, "2.0.0", true).await.unwrap_err();
    assert_eq!(err.code(), "TeamCluster::UpdateRequestFailed");
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);
    plane.shutdown().await;
}

#[tokio::test]
async fn updating_too_long_becomes_update_failed() {
    let plane = start(fast_config()).await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let _daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, |cmd| {
        vec![success_for(cmd, json!({"accepted": true}))]
    })
    .await;
    let dto = plane.request_update(&id, "3.0.0", false).await.unwrap();
    assert_eq!(dto.status, ClusterStatus::Updating);
    eventually(WAIT, "update-failed", async || {
        plane.cluster(&id).unwrap().status == ClusterStatus::UpdateFailed
    })
    .await;
    plane.shutdown().await;
}
