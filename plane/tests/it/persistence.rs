//! The data file across restarts on the same port.

use serde_json::json;
use testkit::plane::*;
use testkit::sio::*;
use testkit::{WAIT, eventually};
use volt_plane::{PlaneConfig, PlaneError, StatusSource};
use volt_protocol::ClusterStatus;

fn config_with(data_file: &std::path::Path, listen: std::net::SocketAddr) -> PlaneConfig {
    PlaneConfig {
        listen,
        data_file: Some(data_file.to_owned()),
        ..config()
    }
}

#[tokio::test]
async fn clusters_survive_a_restart_on_the_same_port_and_daemons_come_back() {
    let mut plane = PersistentPlane::start(config()).await;
    let addr = plane.addr();
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    c.command(
        "hb",
        "runtime.heartbeat",
        json!({"teamClusterId": id, "daemonPassword": pw, "installedVersion": "1.4.0"}),
    )
    .await;
    plane.stop().await;
    // The daemon sees its connection drop (no clean socket.io disconnect).
    let seen = c.closed().await;
    assert!(seen.is_empty(), "{seen:?}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(plane.data_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    plane.restart().await;
    assert_eq!(plane.addr(), addr);
    let view = plane.cluster(&id).unwrap();
    assert_eq!(view.status, ClusterStatus::Disconnected);
    assert_eq!(
        view.team_cluster.installed_version.as_deref(),
        Some("1.4.0")
    );
    assert!(view.enrollment_completed);
    assert!(!view.connected);
    let last = view.status_history.last().unwrap();
    assert_eq!(last.status, ClusterStatus::Disconnected);
    assert_eq!(last.source, StatusSource::SocketClose);
    // Enrollment stays single use across the restart.
    let (status, _) = post(
        &format!("{}/api/team-clusters/{id}/healthcheck", plane.base_url()),
        json!({"enrollmentToken": created.enrollment_token}),
    )
    .await;
    assert_eq!(status, 409);
    // The same password still registers.
    let mut again = SioClient::connect(&plane.base_url()).await;
    again.register(&id, &pw).await;
    assert_eq!(plane.cluster(&id).unwrap().status, ClusterStatus::Connected);
    plane.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_data_file_is_a_startup_error_naming_it_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, "{\"version\":1,\"clusters\":[{").unwrap();
    let err = match volt_plane::start(config_with(&file, "127.0.0.1:0".parse().unwrap())).await {
        Err(e) => e,
        Ok(_) => panic!("a corrupt file must not start"),
    };
    assert!(matches!(err, PlaneError::CorruptDataFile { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.json"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"version\":1,\"clusters\":[{"
    );
}

#[tokio::test]
async fn an_unwritable_data_file_location_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing-dir").join("plane.json");
    let err = match volt_plane::start(config_with(&file, "127.0.0.1:0".parse().unwrap())).await {
        Err(e) => e,
        Ok(_) => panic!("must not start"),
    };
    assert!(matches!(err, PlaneError::DataFile { .. }), "{err:?}");
}

#[tokio::test]
async fn creation_and_deletion_reach_the_file_without_a_shutdown() {
    let plane = PersistentPlane::start(config()).await;
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let id = created.team_cluster.id.clone();
    eventually(WAIT, "the cluster in the file", async || {
        plane.data_file_text().contains(&id)
    })
    .await;
    // The token is stored only as a hash.
    assert!(!plane.data_file_text().contains(&created.enrollment_token));
    plane.request_delete(&id).await.unwrap();
    eventually(WAIT, "the cluster gone from the file", async || {
        !plane.data_file_text().contains(&id)
    })
    .await;
    plane.shutdown().await;
}

#[tokio::test]
async fn the_port_is_free_right_after_shutdown() {
    let plane = plane().await;
    let addr = plane.addr();
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&created.team_cluster.id, &pw).await;
    plane.shutdown().await;
    let l = std::net::TcpListener::bind(addr);
    assert!(l.is_ok(), "{l:?}");
}
