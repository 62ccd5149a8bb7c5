//! Enrollment and install manifest: the reference HTTP routes an installer
//! calls, spoken over real HTTP to a real plane.

use serde_json::{Value, json};
use testkit::plane::*;
use volt_protocol::ClusterStatus;
use volt_protocol::enrollment::{ApiSuccess, HealthcheckData, InstallManifestData};

fn healthcheck_url(base: &str, id: &str) -> String {
    format!("{base}{}", volt_protocol::enrollment::healthcheck_path(id))
}

fn manifest_url(base: &str, id: &str) -> String {
    format!(
        "{base}{}",
        volt_protocol::enrollment::install_manifest_path(id)
    )
}

fn ports() -> Value {
    json!({"minio": 19000, "redis": 16379, "mongodb": 27018, "daemon": 18080})
}

#[tokio::test]
async fn healthcheck_trades_the_token_for_the_daemon_password_once() {
    let plane = plane().await;
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let id = &created.team_cluster.id;
    let url = healthcheck_url(&plane.base_url(), id);

    let (status, body) = post(
        &url,
        json!({"enrollmentToken": created.enrollment_token, "installedVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data: ApiSuccess<HealthcheckData> = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(data.status, "success");
    assert_eq!(data.data.daemon_password.expose(), created.daemon_password);
    assert_eq!(body["data"]["teamCluster"]["_id"], id.as_str());
    assert_eq!(
        body["data"]["teamCluster"]["status"],
        "healthcheck-received"
    );
    assert_eq!(body["data"]["teamCluster"]["installedVersion"], "1.0.0");

    let (status, body) = post(&url, json!({"enrollmentToken": created.enrollment_token})).await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"status": "error", "code": "TeamCluster::EnrollmentAlreadyCompleted",
               "message": "Team cluster enrollment has already been completed"})
    );
    let view = plane.cluster(id).unwrap();
    assert!(view.enrollment_completed);
    assert_eq!(view.status, ClusterStatus::HealthcheckReceived);
    plane.shutdown().await;
}

#[tokio::test]
async fn healthcheck_refuses_a_wrong_token_with_401() {
    let plane = plane().await;
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let url = healthcheck_url(&plane.base_url(), &created.team_cluster.id);
    let (status, body) = post(&url, json!({"enrollmentToken": "0".repeat(64)})).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "TeamCluster::EnrollmentInvalid");
    assert_eq!(body["status"], "error");
    // The right token still works afterwards.
    let (status, _) = post(&url, json!({"enrollmentToken": created.enrollment_token})).await;
    assert_eq!(status, 200);
    plane.shutdown().await;
}

#[tokio::test]
async fn healthcheck_for_an_unknown_cluster_is_404() {
    let plane = plane().await;
    let url = healthcheck_url(&plane.base_url(), "000000000000000000000000");
    let (status, body) = post(&url, json!({"enrollmentToken": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"status": "error", "code": "TeamCluster::NotFound", "message": "Team cluster not found"})
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn healthcheck_body_is_strict() {
    let plane = plane().await;
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let url = healthcheck_url(&plane.base_url(), &created.team_cluster.id);
    for bad in [
        json!({"enrollmentToken": created.enrollment_token, "extra": 1}),
        json!({}),
        json!({"enrollmentToken": "  "}),
        json!({"enrollmentToken": "t", "installedVersion": "x".repeat(65)}),
    ] {
        let (status, body) = post(&url, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["code"], "Validation::InvalidInput", "{bad}");
    }
    let r = http()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "Validation::InvalidInput");
    // Nothing was consumed by the bad requests.
    let (status, _) = post(&url, json!({"enrollmentToken": created.enrollment_token})).await;
    assert_eq!(status, 200);
    plane.shutdown().await;
}

#[tokio::test]
async fn install_manifest_needs_the_daemon_password() {
    let plane = plane().await;
    let (created, _) = enrolled_cluster(&plane).await;
    let url = manifest_url(&plane.base_url(), &created.team_cluster.id);
    let (status, body) = post(
        &url,
        json!({"daemonPassword": "wrong", "installRoot": "/opt/volt/team-clusters", "ports": ports()}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"status": "error", "code": "TeamCluster::DaemonUnauthorized",
               "message": "Invalid daemon credentials"})
    );
    let (status, body) = post(
        &url,
        json!({"daemonPassword": "x", "installRoot": "/r", "ports": ports(), "more": true}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "Validation::InvalidInput");
    let same = json!({"minio": 1, "redis": 1, "mongodb": 3, "daemon": 4});
    let (status, _) = post(
        &url,
        json!({"daemonPassword": created.daemon_password, "installRoot": "/r", "ports": same}),
    )
    .await;
    assert_eq!(status, 400);
    plane.shutdown().await;
}

#[tokio::test]
async fn install_manifest_has_the_gen_b_files_modes_and_credentials() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let url = manifest_url(&plane.base_url(), &id);
    let (status, body) = post(
        &url,
        json!({"daemonPassword": pw, "installRoot": "/opt/volt/team-clusters/", "ports": ports()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data: ApiSuccess<InstallManifestData> = serde_json::from_value(body.clone()).unwrap();
    let m = data.data.manifest;
    assert_eq!(m.manifest_version, "1.0.0");
    assert_eq!(
        m.compose_project_name,
        volt_protocol::enrollment::compose_project_name(&id)
    );
    let expected = [
        ("docker-compose.yml", 0o644),
        (".env", 0o600),
        ("minio.env", 0o600),
        ("mongodb.env", 0o600),
        ("redis.env", 0o600),
        ("redis.acl", 0o644),
        ("daemon.env", 0o600),
    ];
    assert_eq!(m.files.len(), expected.len());
    for (path, mode) in expected {
        let f = m.file(path).unwrap_or_else(|| panic!("missing {path}"));
        assert_eq!(f.mode.bits(), mode, "{path}");
    }
    assert_eq!(body["data"]["manifest"]["files"][1]["mode"], "0600");
    let root = m.env(".env");
    assert_eq!(root["TEAM_CLUSTER_ID"], id);
    assert_eq!(root["TEAM_CLUSTER_INSTALL_ROOT"], "/opt/volt/team-clusters");
    assert_eq!(root["VOLT_CLOUD_URL"], plane.public_url());
    assert_eq!(root["REDIS_PORT"], "16379");
    assert_eq!(root["VOLT_CLUSTER_INSTALL_MANIFEST_VERSION"], "1.0.0");
    let c = &created.credentials;
    assert_eq!(m.env("minio.env")["MINIO_ROOT_USER"], c.minio.user);
    assert_eq!(m.env("minio.env")["MINIO_ROOT_PASSWORD"], c.minio.password);
    assert_eq!(
        m.env("mongodb.env")["MONGO_INITDB_ROOT_PASSWORD"],
        c.mongodb.password
    );
    assert_eq!(m.env("redis.env")["REDIS_USERNAME"], c.redis.user);
    assert_eq!(
        m.file("redis.acl").unwrap().contents,
        format!(
            "user default off\nuser {} on >{} ~* &* +@all",
            c.redis.user, c.redis.password
        )
    );
    let d = m.env("daemon.env");
    assert_eq!(d["TEAM_CLUSTER_DAEMON_PASSWORD"], pw);
    assert_eq!(d["VOLT_CLOUD_DAEMON_SOCKET_URL"], plane.public_url());
    assert_eq!(d["MINIO_SECRET_KEY"], c.minio.password);
    assert_eq!(d["REDIS_PASSWORD"], c.redis.password);
    assert_eq!(
        m.images["daemon"],
        "ghcr.io/voltlabs-research/volt-cluster-daemon:main"
    );

    // The install context is persisted into the record's services.
    let view = plane.cluster(&id).unwrap();
    assert_eq!(view.team_cluster.services.redis.port, Some(16379));
    assert_eq!(view.team_cluster.services.daemon.port, Some(18080));
    assert_eq!(
        view.install_root.as_deref(),
        Some("/opt/volt/team-clusters")
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn regenerated_token_enrolls_again() {
    let plane = plane().await;
    let (created, _) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let (status, body) = post(
        &format!(
            "{}/api/clusters/{id}/enrollment-token/regenerate",
            plane.base_url()
        ),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["enrollmentToken"].as_str().unwrap().to_owned();
    assert_ne!(token, created.enrollment_token);
    assert!(
        body["data"]["voltdCommand"]
            .as_str()
            .unwrap()
            .contains(&token)
    );
    let url = healthcheck_url(&plane.base_url(), &id);
    let (status, _) = post(&url, json!({"enrollmentToken": created.enrollment_token})).await;
    assert_eq!(status, 401);
    let (status, _) = post(&url, json!({"enrollmentToken": token})).await;
    assert_eq!(status, 200);
    plane.shutdown().await;
}
