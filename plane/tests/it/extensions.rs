//! The `voltdExtensions` announcement and what the plane accepts with and
//! without it; the Gen A HTTP lifecycle route installers use.

use serde_json::{Value, json};
use testkit::plane::*;
use testkit::sio::*;
use volt_plane::PlaneConfig;
use volt_protocol::ClusterStatus;
use volt_protocol::{REGISTER_EVENT, REGISTERED_EVENT};

fn lifecycle(id: &str, pw: &str, status: &str) -> Value {
    json!({"teamClusterId": id, "daemonPassword": pw, "status": status})
}

#[tokio::test]
async fn a_strict_plane_announces_nothing_and_refuses_a_reason() {
    let plane = volt_plane::start(PlaneConfig {
        announce_extensions: false,
        ..config()
    })
    .await
    .unwrap();
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    let ack = c
        .emit_with_ack(
            REGISTER_EVENT,
            &json!({"teamClusterId": id, "daemonPassword": pw}),
        )
        .await;
    // Exactly the reference payload.
    assert_eq!(
        c.expect_event(REGISTERED_EVENT).await,
        json!({ "teamClusterId": id })
    );
    assert_eq!(c.expect_ack(ack).await, vec![json!({"ok": true})]);

    let mut with_reason = lifecycle(&id, &pw, "disconnected");
    with_reason["reason"] = json!("services restarting");
    let resp = c.command("l1", "runtime.lifecycle", with_reason).await;
    assert_eq!(resp["ok"], false, "{resp}");
    assert_eq!(resp["status"], 400);
    assert!(
        resp["message"].as_str().unwrap().contains("reason"),
        "{resp}"
    );
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);

    let resp = c
        .command(
            "l2",
            "runtime.lifecycle",
            lifecycle(&id, &pw, "disconnected"),
        )
        .await;
    assert_eq!(resp["ok"], true, "{resp}");
    assert_eq!(
        plane.cluster(&id).unwrap().status,
        ClusterStatus::Disconnected
    );
    c.close().await;
    plane.shutdown().await;
}

#[tokio::test]
async fn the_default_plane_announces_lifecycle_reason_and_records_it() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    // `register` asserts the announcement.
    c.register(&id, &pw).await;
    let mut report = lifecycle(&id, &pw, "disconnected");
    report["reason"] = json!("network maintenance");
    let resp = c.command("l1", "runtime.lifecycle", report).await;
    assert_eq!(resp["ok"], true, "{resp}");
    let view = plane.cluster(&id).unwrap();
    assert_eq!(
        view.status_history.last().unwrap().reason.as_deref(),
        Some("network maintenance")
    );
    c.close().await;
    plane.shutdown().await;
}

#[tokio::test]
async fn the_http_lifecycle_route_takes_the_gen_a_body_strictly() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let url = format!("{}/api/team-clusters/{id}/lifecycle", plane.base_url());

    let (status, body) = post(
        &url,
        json!({"daemonPassword": pw, "status": "operating-system-not-supported", "reason": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(&url, json!({"daemonPassword": pw, "status": "connected"})).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &url,
        json!({"daemonPassword": "wrong", "status": "operating-system-not-supported"}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = post(
        &url,
        json!({"daemonPassword": pw, "status": "operating-system-not-supported", "installedVersion": "0.1.0"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["teamCluster"]["status"],
        "operating-system-not-supported"
    );
    assert_eq!(
        plane.cluster(&id).unwrap().status,
        ClusterStatus::OperatingSystemNotSupported
    );
    let (status, _) = post(
        &format!("{}/api/team-clusters/nope/lifecycle", plane.base_url()),
        json!({"daemonPassword": pw, "status": "operating-system-not-supported"}),
    )
    .await;
    assert_eq!(status, 404);
    plane.shutdown().await;
}
