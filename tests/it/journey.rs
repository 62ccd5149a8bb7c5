//! The README's first command runs `volt-journey`; it must complete.

use std::time::Duration;

#[tokio::test]
async fn the_local_journey_completes() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_volt-journey"))
            .args(["--duration", "1", "--heartbeat-ms", "500"])
            .arg("--dir")
            .arg(dir.path())
            .output(),
    )
    .await
    .expect("journey finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "==> 1. Starting volt-plane",
        "cluster-daemon started for team cluster",
        "status history: waiting-for-connection → healthcheck-received",
        "runtime.ping: ok 200",
        "no.such.command: 404 \"Unknown daemon command: no.such.command\"",
        "status     connected (server: connected)",
        "voltd exited with 0",
        "Journey complete.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
