//! The managed services inside the whole daemon, against a real volt-plane
//! and real servers (`redis-server`, SecantusDB, s3s-fs; see
//! `.ci/install-services`): the status the server sees while they come up
//! or when one cannot run, the install manifest's credentials, and the
//! `runtime.services.*` commands.

use otp::ExitCode;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::daemon::*;
use testkit::services::{native_services, wait_state};
use testkit::standins::WITHIN;
use testkit::{alive, eventually, free_port};
use volt_plane::{DaemonReply, ResponseType};
use volt_protocol::ClusterStatus;
use volt_protocol::enrollment::ServicePorts;
use voltd_actors::services::{CredentialSource, ServiceMode, ServiceState};
use voltd_actors::status::GetSnapshot;

const ALL: [&str; 3] = ["redis", "mongo", "minio"];

/// `{ok, status, message, data}` of a JSON reply (the data unwrapped from
/// `{status:"success", data}`).
fn reply(r: DaemonReply) -> (bool, u16, Option<String>, Value) {
    match r {
        DaemonReply::Json(m) => (
            m.ok,
            m.status,
            m.message,
            m.data.map(|d| d["data"].clone()).unwrap_or(Value::Null),
        ),
        other => panic!("expected a json reply, got {:?}", other.response()),
    }
}

async fn command(
    plane: &volt_plane::PlaneHandle,
    id: &str,
    name: &str,
    payload: Value,
) -> (bool, u16, Option<String>, Value) {
    reply(
        plane
            .send_command(
                id,
                name,
                payload,
                ResponseType::Json,
                Some(Duration::from_secs(30)),
            )
            .await
            .unwrap(),
    )
}

#[actix_rt::test]
async fn services_come_up_with_the_manifest_credentials_and_are_operated_through_the_plane() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let install = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    let mut services = native_services();
    let ports = ServicePorts {
        redis: services.redis.port.take().unwrap(),
        mongodb: services.mongo.port.take().unwrap(),
        minio: services.minio.port.take().unwrap(),
        daemon: free_port(),
    };
    s.services = services;
    s.install.fetch_manifest = true;
    s.install.ports = Some(ports);
    s.install.install_root = voltd_actors::config::AbsPath::new(install.path()).unwrap();
    let daemon = start_daemon(s);
    let reg = daemon.services().clone();

    // The server sees the environment being prepared, then `connected`
    // once every service is healthy and heartbeats flow again.
    let view = eventually(WITHIN, "connected after the services came up", async || {
        plane.cluster(&id).filter(|c| {
            c.status == ClusterStatus::Connected
                && c.status_history
                    .iter()
                    .any(|h| h.status == ClusterStatus::PreparingEnvironment)
        })
    })
    .await;
    let history: Vec<ClusterStatus> = view.status_history.iter().map(|h| h.status).collect();
    let preparing = history
        .iter()
        .position(|s| *s == ClusterStatus::PreparingEnvironment)
        .unwrap();
    assert_eq!(
        history.last(),
        Some(&ClusterStatus::Connected),
        "{history:?}"
    );
    assert!(preparing < history.len() - 1, "{history:?}");
    for name in ALL {
        wait_state(&reg, name, ServiceState::Healthy).await;
    }

    // Ports and credentials are the install manifest's (the VOLT server
    // connects with those).
    for (name, port) in [
        ("redis", ports.redis),
        ("mongo", ports.mongodb),
        ("minio", ports.minio),
    ] {
        let v = eventually(
            WITHIN,
            format!("{name} on the manifest's credentials"),
            async || {
                reg.view(name).filter(|v| {
                    v.state == ServiceState::Healthy
                        && v.credentials == Some(CredentialSource::Manifest)
                })
            },
        )
        .await;
        assert_eq!(v.port, Some(port), "{name}");
        assert_eq!(v.mode, ServiceMode::Native);
    }

    // runtime.services.status: every service with its pid, latency, figures.
    let (ok, status, _, data) = command(&plane, &id, "runtime.services.status", json!({})).await;
    assert!(ok && status == 200, "{data}");
    for name in ALL {
        let v = &data["services"][name];
        assert_eq!(v["state"], "healthy", "{name}: {v}");
        assert_eq!(v["mode"], "native");
        assert!(v["pid"].as_i64().is_some(), "{name}: {v}");
        assert!(v["probeLatencyMs"].as_f64().is_some(), "{name}: {v}");
        assert!(v["uptimeSeconds"].as_u64().is_some(), "{name}: {v}");
        assert_eq!(v["credentials"], "manifest");
        assert!(v["stats"].is_object(), "{name}: {v}");
        assert!(!v.to_string().contains("password"), "{v}");
    }
    assert!(
        data["services"]["mongo"]["stats"]["connections"]
            .as_i64()
            .is_some()
    );
    assert!(
        data["services"]["redis"]["stats"]["connectedClients"]
            .as_u64()
            .is_some()
    );

    // The status snapshot (`voltd status`) carries the same views.
    let snap = daemon.wiring.snapshots.send(GetSnapshot).await.unwrap();
    assert_eq!(snap.status, ClusterStatus::Connected);
    assert_eq!(snap.services.len(), 3);

    // runtime.services.restart: a new redis process, healthy again.
    let old = reg.view("redis").unwrap().pid.unwrap();
    let (ok, _, _, data) = command(
        &plane,
        &id,
        "runtime.services.restart",
        json!({"service": "redis"}),
    )
    .await;
    assert!(ok, "{data}");
    assert_eq!(data, json!({"accepted": true, "service": "redis"}));
    eventually(WITHIN, "redis restarted", async || {
        reg.view("redis")
            .filter(|v| v.state == ServiceState::Healthy && v.pid.is_some_and(|p| p != old))
    })
    .await;
    assert!(!alive(old));

    let (ok, status, message, _) = command(
        &plane,
        &id,
        "runtime.services.restart",
        json!({"service": "postgres"}),
    )
    .await;
    assert!(!ok);
    assert_eq!(status, 400);
    assert_eq!(
        message.as_deref(),
        Some("unknown service \"postgres\"; known services: redis, mongo, minio")
    );
    let (ok, status, message, _) =
        command(&plane, &id, "runtime.services.restart", json!({})).await;
    assert!(!ok && status == 400, "{message:?}");

    let pids: Vec<i32> = ALL
        .iter()
        .filter_map(|n| reg.view(n).unwrap().pid)
        .collect();
    daemon.shutdown(ExitCode::Stopped, "test");
    assert_eq!(daemon.wait().await, ExitCode::Stopped);
    for pid in pids {
        assert!(!alive(pid), "{pid} outlived the daemon");
    }
    plane.shutdown().await;
}

#[actix_rt::test]
async fn a_missing_binary_is_reported_to_the_plane_as_dependency_installation_failed() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    let mut services = native_services();
    services.mongo.mode = ServiceMode::Disabled;
    services.minio.mode = ServiceMode::Disabled;
    services.redis.command = vec!["/nonexistent/redis-server".into(), "{config_file}".into()];
    s.services = services;
    let daemon = start_daemon(s);

    let view = eventually(
        WITHIN,
        "dependency-installation-failed on the plane",
        async || {
            plane
                .cluster(&id)
                .filter(|c| c.status == ClusterStatus::DependencyInstallationFailed)
        },
    )
    .await;
    let last = view.status_history.last().unwrap();
    assert_eq!(last.status, ClusterStatus::DependencyInstallationFailed);
    // Named by service and step; retried on the provisioning backoff
    // (15 s ± 20 % first).
    let reason = last.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with(
            "redis: resolve: /nonexistent/redis-server not found; services.redis.command names this path"
        ),
        "{reason}"
    );
    assert!(reason.contains("; next attempt in 1"), "{reason}");
    let v = daemon.services().view("redis").unwrap();
    assert_eq!(v.state, ServiceState::Failed);
    assert_eq!(v.restarts, 0);

    daemon.shutdown(ExitCode::Stopped, "test");
    assert_eq!(daemon.wait().await, ExitCode::Stopped);
    plane.shutdown().await;
}

#[actix_rt::test]
async fn uninstall_stops_the_servers_before_deleting_their_data() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let install = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    s.install.install_root = voltd_actors::config::AbsPath::new(install.path()).unwrap();
    let mut services = native_services();
    services.mongo.mode = ServiceMode::Disabled;
    services.minio.mode = ServiceMode::Disabled;
    s.services = services;
    let daemon = start_daemon(s);
    let reg = daemon.services().clone();
    let v = wait_state(&reg, "redis", ServiceState::Healthy).await;
    let pid = v.pid.unwrap();
    wait_connected(&plane, &id).await;
    let data = state.path().join("services/redis");
    assert!(data.exists());

    assert!(matches!(
        plane.request_delete(&id).await.unwrap(),
        volt_plane::DeleteOutcome::Deleting(_)
    ));
    let code = tokio::time::timeout(WITHIN, daemon.wait())
        .await
        .expect("the daemon ends after the uninstall");
    assert_eq!(code, ExitCode::Stopped);
    assert!(!alive(pid), "redis stopped");
    assert!(
        !state.path().join("services").exists(),
        "service data deleted"
    );
    assert!(state.path().join("uninstalled").exists());
    plane.shutdown().await;
}
