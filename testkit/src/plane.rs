//! Plane-only fixtures: a volt-plane on a free loopback port, clusters
//! (created, or enrolled with their daemon password), a plane with a data
//! file that can be restarted, and small HTTP helpers that authenticate as
//! the test admin (the one place that knows the token).

use serde_json::{Value, json};
use std::ops::Deref;
use std::path::Path;
use std::time::Duration;
use volt_plane::{CreateClusterRequest, CreatedCluster, PlaneConfig, PlaneHandle};

/// A plane for tests: a free loopback port, memory only, commands time
/// out after 5 s, and a command for a cluster without a daemon waits only
/// 300 ms (the scripted daemons of the plane tests register before they are
/// sent anything; see `daemon::plane_config` for a real daemon).
pub fn config() -> PlaneConfig {
    PlaneConfig {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        command_timeout: Duration::from_secs(5),
        daemon_wait: Duration::from_millis(300),
        admin_token: Some(
            volt_plane::AdminToken::new(TEST_ADMIN_TOKEN).expect("a valid admin token"),
        ),
        ..PlaneConfig::default()
    }
}

/// The admin token of every test plane: tests authenticate through
/// [`http`] (and [`ws_request`]).
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// An HTTP client that authenticates as the test admin.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TEST_ADMIN_TOKEN}")
            .parse()
            .expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// A WebSocket handshake request for `url` that authenticates as the test
/// admin.
pub fn ws_request(url: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().expect("a WebSocket URL");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {TEST_ADMIN_TOKEN}")
            .parse()
            .expect("a header value"),
    );
    req
}

/// Starts a plane with `cfg`.
pub async fn start(cfg: PlaneConfig) -> PlaneHandle {
    volt_plane::start(cfg).await.expect("the plane starts")
}

/// Starts a plane with [`config`].
pub async fn plane() -> PlaneHandle {
    start(config()).await
}

/// Creates a cluster (not enrolled yet).
pub async fn cluster(plane: &PlaneHandle) -> CreatedCluster {
    plane
        .create_cluster(CreateClusterRequest::default())
        .await
        .expect("cluster created")
}

/// Creates a cluster and completes its enrollment over HTTP, as a daemon's
/// first start does; returns it and the daemon password.
pub async fn enrolled_cluster(plane: &PlaneHandle) -> (CreatedCluster, String) {
    let created = cluster(plane).await;
    let url = format!(
        "{}/api/team-clusters/{}/healthcheck",
        plane.base_url(),
        created.team_cluster.id
    );
    let (status, body) = post(
        &url,
        json!({"enrollmentToken": created.enrollment_token, "installedVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(status, 200, "enrollment: {body}");
    let pw = body["data"]["daemonPassword"]
        .as_str()
        .expect("a daemon password")
        .to_owned();
    (created, pw)
}

/// POSTs JSON; returns the status and the JSON body (null if none).
pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GETs; returns the status and the JSON body (null if none).
pub async fn get(url: &str) -> (u16, Value) {
    let r = http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A plane with a data file in a private directory, which can be stopped
/// and started again on the same address (daemons reconnect to it, the
/// file carries the clusters over). Derefs to the running plane.
pub struct PersistentPlane {
    cfg: PlaneConfig,
    running: Option<PlaneHandle>,
    /// Holds the data file; removed with the plane.
    _dir: tempfile::TempDir,
}

impl PersistentPlane {
    /// Starts `cfg` (its `listen` and `data_file` are the kit's).
    pub async fn start(cfg: PlaneConfig) -> PersistentPlane {
        let dir = tempfile::tempdir().expect("a directory for the data file");
        let mut cfg = PlaneConfig {
            data_file: Some(dir.path().join("plane.json")),
            ..cfg
        };
        let running = start(cfg.clone()).await;
        // Restarts bind the address the first start got.
        cfg.listen = running.addr();
        PersistentPlane {
            cfg,
            running: Some(running),
            _dir: dir,
        }
    }

    /// The data file.
    pub fn data_file(&self) -> &Path {
        self.cfg.data_file.as_deref().expect("a data file")
    }

    /// The data file's text ("" before the first write).
    pub fn data_file_text(&self) -> String {
        std::fs::read_to_string(self.data_file()).unwrap_or_default()
    }

    /// Shuts the plane down (its port is free and the file flushed when
    /// this returns); connected daemons see a network failure.
    pub async fn stop(&mut self) {
        self.running
            .take()
            .expect("the plane is running")
            .shutdown()
            .await;
    }

    /// Starts the plane again on the same address, from the data file.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "stop the plane first");
        self.running = Some(start(self.cfg.clone()).await);
    }

    /// Stops the plane for good.
    pub async fn shutdown(mut self) {
        if self.running.is_some() {
            self.stop().await;
        }
    }
}

impl Deref for PersistentPlane {
    type Target = PlaneHandle;
    fn deref(&self) -> &PlaneHandle {
        self.running
            .as_ref()
            .expect("the plane is stopped (restart it first)")
    }
}
