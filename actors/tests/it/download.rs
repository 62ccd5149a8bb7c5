//! The shared downloader (`host::download`) against a real local HTTP
//! server: verification, resume with `Range`, the typed failures.

use std::path::Path;
use std::time::Duration;
use testkit::mirror::{Mirror, Serve};
use voltd_actors::host::download::{
    DownloadError, DownloadEvent, DownloadOptions, DownloadRequest, Downloader, Sha256Digest,
};

/// 300 KB that are not all alike, so a misplaced resume cannot pass.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

pub fn quick(attempts: u32) -> Downloader {
    Downloader::new(DownloadOptions {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        attempts,
        retry_delay: Duration::from_millis(10),
    })
    .unwrap()
}

fn request(mirror: &Mirror, path: &str, data: &[u8], dest: &Path) -> DownloadRequest {
    DownloadRequest::new(mirror.url(path), Sha256Digest::of(data), dest)
}

#[tokio::test]
async fn a_download_is_verified_and_reports_progress() {
    let m = Mirror::start().await;
    let data = payload(300_000);
    m.put("/a.bin", data.clone(), Serve::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub/a.bin");
    let mut events = Vec::new();
    let d = quick(1)
        .fetch(&request(&m, "/a.bin", &data, &dest), |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!((d.size, d.resumed_from, d.attempts), (300_000, 0, 1));
    assert!(!dest.with_file_name("a.bin.part").exists());
    assert!(matches!(
        events.first(),
        Some(DownloadEvent::Started {
            offset: 0,
            total: Some(300_000),
            ..
        })
    ));
    assert!(matches!(
        events.last(),
        Some(DownloadEvent::Verified { size: 300_000 })
    ));
    let progress = events
        .iter()
        .filter(|e| matches!(e, DownloadEvent::Progress { .. }))
        .count();
    // Steps of 10 %, but a chunk may cross several steps at once.
    assert!((2..=11).contains(&progress), "{events:?}");
    assert!(matches!(
        events[events.len() - 2],
        DownloadEvent::Progress {
            received: 300_000,
            ..
        }
    ));
}

#[tokio::test]
async fn a_broken_body_is_resumed_with_a_range_request() {
    let m = Mirror::start().await;
    let data = payload(300_000);
    m.put("/a.bin", data.clone(), Serve::BreakAfter(120_000));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.bin");
    let req = request(&m, "/a.bin", &data, &dest);

    let e = quick(1).fetch(&req, |_| {}).await.unwrap_err();
    assert!(
        matches!(
            e,
            DownloadError::Truncated {
                expected: Some(300_000),
                ..
            }
        ),
        "{e}"
    );
    assert!(!dest.exists(), "nothing unverified at the destination");
    let kept = std::fs::metadata(req.part_path()).unwrap().len();
    assert!(kept > 0 && kept < 300_000, "partial bytes kept: {kept}");

    m.set("/a.bin", Serve::Normal);
    let d = quick(1).fetch(&req, |_| {}).await.unwrap();
    assert_eq!(d.resumed_from, kept);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let seen = m.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range, Some(format!("bytes={kept}-")));
}

#[tokio::test]
async fn one_call_resumes_by_itself_within_its_attempts() {
    let m = Mirror::start().await;
    let data = payload(200_000);
    m.put("/a.bin", data.clone(), Serve::BreakOnceAfter(64_000));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.bin");
    let mut events = Vec::new();
    let d = quick(3)
        .fetch(&request(&m, "/a.bin", &data, &dest), |e| events.push(e))
        .await
        .unwrap();
    assert_eq!(d.attempts, 2);
    assert!(d.resumed_from > 0);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Retrying { attempt: 1, .. }))
    );
    assert!(m.seen()[1].range.is_some());
}

#[tokio::test]
async fn a_server_that_ignores_ranges_starts_the_file_over() {
    let m = Mirror::start().await;
    let data = payload(100_000);
    m.put("/a.bin", data.clone(), Serve::BreakAfter(30_000));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.bin");
    let req = request(&m, "/a.bin", &data, &dest);
    assert!(quick(1).fetch(&req, |_| {}).await.is_err());
    m.set("/a.bin", Serve::NoRanges);
    let d = quick(1).fetch(&req, |_| {}).await.unwrap();
    assert_eq!(d.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[tokio::test]
async fn a_checksum_mismatch_names_both_digests_and_keeps_nothing() {
    let m = Mirror::start().await;
    let data = payload(50_000);
    m.put("/a.bin", data.clone(), Serve::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.bin");
    let expected = Sha256Digest::of(b"something else");
    let req = DownloadRequest::new(m.url("/a.bin"), expected, &dest);
    let e = quick(3).fetch(&req, |_| {}).await.unwrap_err();
    match &e {
        DownloadError::ChecksumMismatch {
            expected: x,
            actual,
            ..
        } => {
            assert_eq!(*x, expected);
            assert_eq!(*actual, Sha256Digest::of(&data));
        }
        other => panic!("{other}"),
    }
    let text = e.to_string();
    assert!(text.contains(&expected.to_string()) && text.contains("checksum mismatch"));
    assert!(!dest.exists() && !req.part_path().exists());
    assert_eq!(m.seen().len(), 1, "a mismatch is not retried in the call");
}

#[tokio::test]
async fn http_errors_stalls_and_caps_are_typed() {
    let m = Mirror::start().await;
    let data = payload(100_000);
    m.put("/gone", data.clone(), Serve::Status(404));
    m.put("/stall", data.clone(), Serve::StallAfter(1000));
    m.put("/big", data.clone(), Serve::Normal);
    let dir = tempfile::tempdir().unwrap();

    let e = quick(3)
        .fetch(&request(&m, "/gone", &data, &dir.path().join("g")), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, DownloadError::HttpStatus { status: 404, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("404"));
    let e = quick(1)
        .fetch(
            &request(&m, "/missing", &data, &dir.path().join("n")),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, DownloadError::HttpStatus { status: 404, .. }),
        "{e}"
    );

    let stall = Downloader::new(DownloadOptions {
        idle_timeout: Duration::from_millis(400),
        attempts: 1,
        ..DownloadOptions::default()
    })
    .unwrap();
    let e = stall
        .fetch(&request(&m, "/stall", &data, &dir.path().join("s")), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::Timeout { .. }), "{e}");
    assert!(!dir.path().join("s").exists());

    let mut capped = request(&m, "/big", &data, &dir.path().join("b"));
    capped.max_size = 10_000;
    let e = quick(1).fetch(&capped, |_| {}).await.unwrap_err();
    assert!(
        matches!(e, DownloadError::TooLarge { limit: 10_000, .. }),
        "{e}"
    );
    assert!(!capped.part_path().exists());

    let mut sized = request(&m, "/big", &data, &dir.path().join("z"));
    sized.expected_size = Some(99_999);
    let e = quick(1).fetch(&sized, |_| {}).await.unwrap_err();
    assert!(
        matches!(
            e,
            DownloadError::SizeMismatch {
                expected: 99_999,
                actual: 100_000,
                ..
            }
        ),
        "{e}"
    );

    let e = quick(1)
        .fetch(
            &DownloadRequest::new(
                "http://127.0.0.1:1/x",
                Sha256Digest::of(b""),
                dir.path().join("c"),
            ),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::Network { .. }), "{e}");
}

#[tokio::test]
async fn a_whole_part_left_by_a_crash_is_verified_without_a_request() {
    let m = Mirror::start().await;
    let data = payload(10_000);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.bin");
    let mut req = request(&m, "/a.bin", &data, &dest);
    req.expected_size = Some(10_000);
    std::fs::write(req.part_path(), &data).unwrap();
    quick(1).fetch(&req, |_| {}).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(m.seen().is_empty());

    // Without a known size, the server's 416 says the part is whole.
    m.put("/b.bin", data.clone(), Serve::Normal);
    let dest = dir.path().join("b.bin");
    let req = request(&m, "/b.bin", &data, &dest);
    std::fs::write(req.part_path(), &data).unwrap();
    quick(1).fetch(&req, |_| {}).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(m.seen()[0].range.as_deref(), Some("bytes=10000-"));
}

#[tokio::test]
async fn a_symlink_at_the_part_path_is_never_written_through() {
    let m = Mirror::start().await;
    let data = payload(1000);
    m.put("/a.bin", data.clone(), Serve::Normal);
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let dest = dir.path().join("a.bin");
    let req = request(&m, "/a.bin", &data, &dest);
    std::os::unix::fs::symlink(&victim, req.part_path()).unwrap();
    let e = quick(1).fetch(&req, |_| {}).await.unwrap_err();
    assert!(matches!(e, DownloadError::Io { .. }), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}
