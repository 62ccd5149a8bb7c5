//! Secrets never reach a log line. The one plane test outside the `it`
//! binary, on purpose: `tracing` caches per-callsite interest process-wide,
//! so a thread-scoped capture subscriber is only reliable when no other test
//! runs beside it in the same process.

use serde_json::json;
use testkit::plane::*;
use testkit::sio::*;

#[tokio::test]
async fn secrets_never_reach_the_log() {
    // The plane logs through `tracing`; capture everything it writes while a
    // cluster is created, enrolled, registered and refused.
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let mut c = SioClient::connect(&plane.base_url()).await;
    let ack = c
        .emit_with_ack(
            volt_protocol::REGISTER_EVENT,
            &json!({"teamClusterId": created.team_cluster.id, "daemonPassword": "wrong-secret-x"}),
        )
        .await;
    c.expect_ack(ack).await;
    c.register(&created.team_cluster.id, &pw).await;
    plane.shutdown().await;

    let log = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Daemon registered."), "{log}");
    for secret in [
        pw.as_str(),
        created.enrollment_token.as_str(),
        "wrong-secret-x",
        created.credentials.redis.password.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}
