//! install/install.sh, fetched from volt-plane exactly as the one-liner does
//! (`curl …/install.sh | bash -s -- <id> <token>`), in a staging prefix
//! without systemd, then the installed daemon started with the written
//! configuration.

use crate::voltd_bin;
use std::time::Duration;
use testkit::daemon::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[tokio::test]
async fn the_one_liner_installs_enrolls_and_configures_voltd() {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let script = reqwest::get(format!("{}/install.sh", plane.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.starts_with("#!/usr/bin/env bash"));

    let prefix = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .args(["-s", "--", &id, &created.enrollment_token])
        .env("VOLT_CLOUD_URL", plane.base_url())
        .env("VOLTD_PREFIX", prefix.path())
        .env("VOLTD_SYSTEMD", "0")
        .env("VOLTD_BINARY", voltd_bin())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("enrolled"), "{log}");
    assert!(
        !log.contains(&created.enrollment_token),
        "token echoed: {log}"
    );

    let p = prefix.path();
    let config = p.join("etc/voltd/voltd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("team_cluster_id = \"{id}\"")),
        "{text}"
    );
    assert!(
        !text.contains(&created.enrollment_token),
        "token stored in config"
    );
    let creds = p.join("var/lib/voltd/credentials.json");
    assert!(
        std::fs::read_to_string(&creds)
            .unwrap()
            .contains(&created.daemon_password)
    );
    let mode = |path: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&creds), 0o600);
    assert_eq!(mode(&p.join("var/lib/voltd")), 0o700);
    assert!(p.join("usr/local/bin/voltd").exists());
    assert!(plane.cluster(&id).unwrap().enrollment_completed);

    // The installed daemon runs from that configuration.
    let mut daemon = Command::new(p.join("usr/local/bin/voltd"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_connected(&plane, &id).await;
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;

    // Running the installer again with the used token fails clearly.
    let out = Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("install/install.sh"))
        .args([&id, "0000"])
        .env("VOLT_CLOUD_URL", plane.base_url())
        .env("VOLTD_PREFIX", tempfile::tempdir().unwrap().path())
        .env("VOLTD_SYSTEMD", "0")
        .env("VOLTD_BINARY", voltd_bin())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("enrollment failed"));
    plane.shutdown().await;
}
