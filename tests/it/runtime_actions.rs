//! runtime.update and runtime.restart end to end: the plane asks, the daemon
//! answers `{accepted}` and ends with the documented exit code (or reports
//! `update-failed`).

use otp::ExitCode;
use serde_json::json;
use std::time::Duration;
use testkit::daemon::*;
use testkit::eventually;
use volt_plane::PlaneError;
use volt_protocol::ClusterStatus;
use voltd_actors::api::{ActionStage, RuntimeAction};
use voltd_actors::events::Event;

const SECS_15: Duration = Duration::from_secs(15);

/// Writes an executable script into `dir` and returns its path.
fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

#[actix_rt::test]
async fn an_update_runs_the_configured_command_and_exits_with_code_3() {
    let Fixture {
        plane,
        id,
        daemon,
        state,
        ..
    } = Fixture::start_with(|s| {
        let marker = s.state_dir.join("updated-to");
        let hook = script(
            &s.state_dir,
            "hook.sh",
            &format!("printf '%s|' \"$@\" > {}", marker.display()),
        );
        s.update_command = Some(vec![hook, "--channel".into(), "stable".into()]);
    })
    .await;
    eventually(SECS_15, "a heartbeat", async || {
        plane.cluster(&id).filter(|c| c.heartbeat_count >= 1)
    })
    .await;

    let dto = plane.request_update(&id, "1.2.3", false).await.unwrap();
    assert_eq!(dto.status, ClusterStatus::Updating);
    let code = tokio::time::timeout(SECS_15, daemon.wait())
        .await
        .expect("daemon exits");
    assert_eq!(code, ExitCode::Updating);
    assert_eq!(code.code(), 3);
    // The operator's arguments, then the version as one argument; the
    // server's image string is not passed at all.
    assert_eq!(
        std::fs::read_to_string(state.path().join("updated-to")).unwrap(),
        "--channel|stable|1.2.3|"
    );
    plane.shutdown().await;
}

#[actix_rt::test]
async fn a_failing_update_command_reports_update_failed_and_the_daemon_stays() {
    let f = Fixture::start_with(|s| {
        let hook = script(
            &s.state_dir,
            "hook.sh",
            "echo 'registry unreachable' >&2; exit 7",
        );
        s.update_command = Some(vec![hook]);
    })
    .await;
    let (plane, id) = (&f.plane, f.id.as_str());
    eventually(SECS_15, "a heartbeat", async || {
        plane.cluster(id).filter(|c| c.heartbeat_count >= 1)
    })
    .await;

    plane.request_update(id, "2.0.0", false).await.unwrap();
    let view = eventually(SECS_15, "update-failed on the plane", async || {
        plane
            .cluster(id)
            .filter(|c| c.status == ClusterStatus::UpdateFailed)
    })
    .await;
    let reason = view
        .status_history
        .last()
        .unwrap()
        .reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("registry unreachable"), "{reason}");
    let r = wait_event(&f.daemon, SECS_15, "failed action", |e| {
        matches!(e, Event::RuntimeAction { action, stage, .. } if *action == RuntimeAction::Update && *stage == ActionStage::Failed)
    })
    .await;
    assert!(
        matches!(&r.event, Event::RuntimeAction { detail: Some(d), .. } if d.contains("exit status: 7"))
    );
    // Still serving.
    let (status, data) = plane
        .request(id, "runtime.ping", json!({}), None)
        .await
        .unwrap();
    assert_eq!((status, data["pong"].clone()), (200, json!(true)));
    f.stop().await;
}

#[actix_rt::test]
async fn without_an_update_command_the_update_is_refused_with_a_reason() {
    let f = Fixture::start().await;
    let (plane, id) = (&f.plane, f.id.as_str());
    eventually(SECS_15, "a heartbeat", async || {
        plane.cluster(id).filter(|c| c.heartbeat_count >= 1)
    })
    .await;

    let err = plane.request_update(id, "1.2.3", false).await.unwrap_err();
    assert_eq!(err.code(), "TeamCluster::UpdateRejected", "{err}");
    assert!(err.to_string().contains("update_command"), "{err}");
    assert_eq!(plane.cluster(id).unwrap().status, ClusterStatus::Connected);
    assert!(!matches!(err, PlaneError::InvalidInput(_)));
    f.stop().await;
}

#[actix_rt::test]
async fn runtime_restart_is_accepted_then_the_daemon_exits_with_code_5() {
    let Fixture {
        plane, id, daemon, ..
    } = Fixture::start().await;
    let (status, data) = plane
        .request(&id, "runtime.restart", json!({}), None)
        .await
        .unwrap();
    assert_eq!((status, data), (200, json!({"accepted": true})));
    let code = tokio::time::timeout(SECS_15, daemon.wait())
        .await
        .expect("daemon exits");
    assert_eq!(code, ExitCode::RestartRequested);
    assert_eq!(code.code(), 5);
    plane.shutdown().await;
}
