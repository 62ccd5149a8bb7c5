//! What the console reads: the paged cluster list, the metric history, the
//! plane's log, the live event stream, the embedded assets.

use serde_json::{Value, json};
use std::time::Duration;
use testkit::plane::*;
use testkit::sio::*;

#[tokio::test]
async fn the_list_pages_and_filters_by_name_and_status_on_the_server() {
    let plane = plane().await;
    let base = plane.base_url();
    for i in 0..30 {
        let name = if i % 3 == 0 {
            format!("Lab-{i}")
        } else {
            format!("bench-{i}")
        };
        post(&format!("{base}/api/clusters"), json!({ "name": name })).await;
    }
    let (_, first) = enrolled_cluster(&plane).await;
    let _ = first;
    let (status, body) = get(&format!("{base}/api/clusters?limit=10&offset=0")).await;
    assert_eq!(status, 200);
    let d = &body["data"];
    assert_eq!(d["total"], 31);
    assert_eq!(d["teamClusters"].as_array().unwrap().len(), 10);
    assert_eq!(d["teamClusters"][0]["name"], "Lab-0", "oldest first");
    assert_eq!(d["counts"]["waiting-for-connection"], 30);
    assert_eq!(d["counts"]["healthcheck-received"], 1);
    let (_, body) = get(&format!("{base}/api/clusters?limit=10&offset=30")).await;
    assert_eq!(body["data"]["teamClusters"].as_array().unwrap().len(), 1);
    // Name filter: any case, substring.
    let (_, body) = get(&format!("{base}/api/clusters?q=lab&limit=100")).await;
    assert_eq!(body["data"]["total"], 10);
    assert!(
        body["data"]["teamClusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"].as_str().unwrap().starts_with("Lab-"))
    );
    // Status filter.
    let (_, body) = get(&format!("{base}/api/clusters?status=healthcheck-received")).await;
    assert_eq!(body["data"]["total"], 1);
    let (status, _) = get(&format!("{base}/api/clusters?status=bogus")).await;
    assert_eq!(status, 400);
    // The page size is capped; no parameter at all keeps the old answer.
    let (_, body) = get(&format!("{base}/api/clusters?limit=100000")).await;
    assert_eq!(body["data"]["limit"], volt_plane::MAX_PAGE_SIZE);
    let (_, body) = get(&format!("{base}/api/clusters")).await;
    assert_eq!(body["data"]["teamClusters"].as_array().unwrap().len(), 31);
    assert!(body["data"].get("total").is_none());
    plane.shutdown().await;
}

fn metrics(cpu: f64) -> Value {
    json!({
        "timestamp": "2026-11-23T10:00:00.000Z", "hostname": "h", "uptimeSeconds": 5,
        "cpuUsagePercent": cpu, "cpuLoadAverage": [0.1], "cpuPerCoreUsagePercent": [cpu],
        "memory": {"totalBytes": 8, "freeBytes": 4, "usedBytes": 4, "usagePercent": 50},
        "disk": {"totalBytes": 8, "freeBytes": 2, "usedBytes": 6, "usagePercent": 75},
        "diskOperations": {"readMegabytesPerSecond": 1.5, "writeMegabytesPerSecond": 0.5,
                           "readIOPS": 1, "writeIOPS": 1, "totalIOPS": 2},
        "network": {"incomingKilobytesPerSecond": 10.0, "outgoingKilobytesPerSecond": 2.0,
                    "totalKilobytesPerSecond": 12.0, "receivedBytes": 1, "sentBytes": 1},
        "cloudLatencyMs": 3, "connectedToCloud": true
    })
}

async fn next_event(body: &mut reqwest::Response, buf: &mut String, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if event == name {
                return serde_json::from_str(&data).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event"))
            .unwrap()
            .expect("the stream goes on");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn heartbeats_become_chart_points_and_live_events() {
    let plane = plane().await;
    let base = plane.base_url();
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();

    let mut body = http()
        .get(format!("{base}/api/events?cluster={id}"))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    next_event(&mut body, &mut buf, "hello").await;

    let mut daemon = SioClient::connect(&base).await;
    daemon.register(&id, &pw).await;
    let statuses = next_event(&mut body, &mut buf, "statuses").await;
    let mine = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["status"], "connected");
    assert_eq!(mine["connected"], true);

    let reply = daemon
        .command(
            "hb-1",
            "runtime.heartbeat",
            json!({"teamClusterId": id, "daemonPassword": pw, "installedVersion": "1.0.0", "metrics": metrics(42.5)}),
        )
        .await;
    assert_eq!(reply["ok"], true);
    let pushed = next_event(&mut body, &mut buf, "metrics").await;
    assert_eq!(pushed["cpu"], json!([42.5]));

    let (status, series) = get(&format!("{base}/api/clusters/{id}/metrics?minutes=60")).await;
    assert_eq!(status, 200);
    let s = &series["data"];
    assert_eq!(s["stepSeconds"], 10);
    assert_eq!(s["cpu"], json!([42.5]));
    assert_eq!(s["memory"], json!([50.0]));
    assert_eq!(s["latencyMs"], json!([3.0]));
    assert_eq!(s["netInKbps"], json!([10.0]));
    let (_, day) = get(&format!("{base}/api/clusters/{id}/metrics?minutes=1440")).await;
    assert_eq!(day["data"]["stepSeconds"], 900);
    let (status, _) = get(&format!(
        "{base}/api/clusters/000000000000000000000000/metrics"
    ))
    .await;
    assert_eq!(status, 404);
    // The latest snapshot is still shown whole.
    let (_, view) = get(&format!("{base}/api/clusters/{id}")).await;
    assert_eq!(
        view["data"]["lastMetrics"]["cpuPerCoreUsagePercent"],
        json!([42.5])
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn the_plane_log_records_what_the_plane_did() {
    let plane = plane().await;
    let base = plane.base_url();
    let mut stream = http()
        .get(format!("{base}/api/events"))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    next_event(&mut stream, &mut buf, "hello").await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let listing = next_event(&mut stream, &mut buf, "clusters").await;
    assert_eq!(listing, json!({}));
    let mut daemon = SioClient::connect(&base).await;
    daemon.register(&id, &pw).await;
    let (_, body) = get(&format!("{base}/api/plane/events?cluster={id}")).await;
    let types: Vec<&str> = body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "cluster-created",
        "enrollment-completed",
        "status-changed",
        "daemon-registered",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let (_, all) = get(&format!("{base}/api/plane/events?limit=1")).await;
    assert_eq!(all["data"]["events"].as_array().unwrap().len(), 1);
    plane.shutdown().await;
}

#[tokio::test]
async fn the_console_and_xterm_are_embedded_with_a_strict_policy() {
    let plane = plane().await;
    let base = plane.base_url();
    let r = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("/console/app.js") && !html.contains("http://") && !html.contains("https://"),
        "no external asset"
    );
    let (_, info) = get(&format!("{base}/api/plane/info")).await;
    assert_eq!(
        info["data"]["terminal"]["bundled"], true,
        "xterm.js was not embedded: run `npm ci --prefix plane/console` (.ci/install-services does) and rebuild"
    );
    let js = reqwest::get(format!("{base}/console/vendor/xterm.mjs"))
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let js = js.text().await.unwrap();
    assert!(js.contains("xterm.js authors") && js.len() > 100_000);
    assert!(!js.contains("sourceMappingURL"));
    assert_eq!(info["data"]["terminal"]["xtermVersion"], "6.0.0");
    plane.shutdown().await;
}
