//! The person-facing HTTP API.

use serde_json::{Value, json};
use testkit::plane::*;
use testkit::sio::*;

#[tokio::test]
async fn healthz_answers_get_and_head() {
    let plane = plane().await;
    let (status, body) = get(&format!("{}/healthz", plane.base_url())).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "success", "data": {"ok": true}}));
    let r = http()
        .head(format!("{}/healthz", plane.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    plane.shutdown().await;
}

#[tokio::test]
async fn install_sh_is_served() {
    let plane = plane().await;
    let r = reqwest::get(format!("{}/install.sh", plane.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/x-shellscript")
    );
    assert!(r.text().await.unwrap().starts_with("#!"));
    plane.shutdown().await;
}

#[tokio::test]
async fn create_cluster_returns_everything_needed_to_install() {
    let plane = plane().await;
    let (status, body) = post(
        &format!("{}/api/clusters", plane.base_url()),
        json!({"name": "lab", "installRoot": "/srv/volt"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "success");
    let d = &body["data"];
    let id = d["teamCluster"]["_id"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(d["teamCluster"]["name"], "lab");
    assert_eq!(d["teamCluster"]["status"], "waiting-for-connection");
    assert_eq!(d["teamCluster"]["role"], "cluster");
    assert_eq!(d["teamCluster"]["team"], "local");
    assert_eq!(d["teamCluster"]["createdBy"], "local");
    assert_eq!(d["teamCluster"]["services"]["minio"]["port"], Value::Null);
    let token = d["enrollmentToken"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(d["daemonPassword"].as_str().unwrap().len(), 48);
    for svc in ["minio", "redis", "mongodb"] {
        let user = d["credentials"][svc]["user"].as_str().unwrap();
        assert!(user.starts_with(&format!("volt_{svc}_")), "{user}");
        assert_eq!(
            d["credentials"][svc]["password"].as_str().unwrap().len(),
            48
        );
    }
    let url = plane.public_url();
    assert_eq!(
        d["installCommand"],
        format!(
            "curl -fsSL {url}/install.sh | sudo bash -s -- --url {url} --cluster {id} --install-root /srv/volt"
        )
    );
    assert_eq!(
        d["voltdCommand"],
        format!("voltd enroll --cloud-url {url} --cluster-id {id} --token {token}")
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn create_accepts_an_empty_body_and_refuses_unknown_keys() {
    let plane = plane().await;
    let url = format!("{}/api/clusters", plane.base_url());
    let r = http()
        .post(&url)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["data"]["teamCluster"]["name"]
            .as_str()
            .unwrap()
            .starts_with("cluster-")
    );
    let (status, body) = post(&url, json!({"nmae": "typo"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "Validation::InvalidInput");
    let r = http()
        .post(&url)
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body")
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn list_and_show_clusters() {
    let plane = plane().await;
    let (a, pw) = enrolled_cluster(&plane).await;
    let b = plane.create_cluster(Default::default()).await.unwrap();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&a.team_cluster.id, &pw).await;
    c.command(
        "hb",
        "runtime.heartbeat",
        json!({"teamClusterId": a.team_cluster.id, "daemonPassword": pw,
               "metrics": {"cpuUsagePercent": 12}}),
    )
    .await;

    let (status, body) = get(&format!("{}/api/clusters", plane.base_url())).await;
    assert_eq!(status, 200);
    let list = body["data"]["teamClusters"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let by_id = |id: &str| list.iter().find(|e| e["_id"] == id).unwrap().clone();
    assert_eq!(by_id(&a.team_cluster.id)["status"], "connected");
    assert_eq!(by_id(&a.team_cluster.id)["connected"], true);
    assert_eq!(
        by_id(&b.team_cluster.id)["status"],
        "waiting-for-connection"
    );
    assert_eq!(by_id(&b.team_cluster.id)["connected"], false);

    let (status, body) = get(&format!(
        "{}/api/clusters/{}",
        plane.base_url(),
        a.team_cluster.id
    ))
    .await;
    assert_eq!(status, 200);
    let d = &body["data"];
    assert_eq!(d["teamCluster"]["_id"], a.team_cluster.id.as_str());
    assert_eq!(d["connected"], true);
    assert_eq!(d["registrations"], 1);
    assert_eq!(d["heartbeatCount"], 1);
    assert_eq!(d["metricsCount"], 1);
    assert_eq!(d["lastMetrics"], json!({"cpuUsagePercent": 12}));
    let history: Vec<&str> = d["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "waiting-for-connection",
            "healthcheck-received",
            "connected"
        ]
    );
    assert_eq!(d["statusHistory"][1]["source"], "enrollment");
    assert!(d["statusHistory"][0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["exposures"], json!([]));

    let (status, body) = get(&format!(
        "{}/api/clusters/000000000000000000000000",
        plane.base_url()
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "TeamCluster::NotFound");
    plane.shutdown().await;
}

#[tokio::test]
async fn disconnect_route_cuts_the_daemon() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let url = format!("{}/api/clusters/{id}/disconnect", plane.base_url());
    let (status, body) = post(&url, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["disconnected"], true);
    let (_, body) = post(&url, json!({})).await;
    assert_eq!(body["data"]["disconnected"], false);
    let (status, _) = post(
        &format!(
            "{}/api/clusters/000000000000000000000000/disconnect",
            plane.base_url()
        ),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    plane.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_envelope() {
    let plane = plane().await;
    let (status, body) = get(&format!("{}/api/nope", plane.base_url())).await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], "error");
    let r = http()
        .delete(format!("{}/api/clusters", plane.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "Route::MethodNotAllowed");
    plane.shutdown().await;
}
