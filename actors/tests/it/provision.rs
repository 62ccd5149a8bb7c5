//! Provisioning against a local mirror: the test builds tarballs and
//! binaries of wrapper scripts around the stand-ins (`bin/mongod` exec's
//! SecantusDB with translated arguments, `minio` exec's s3s-fs), serves them
//! with right and wrong checksums, broken and stalled bodies and 404s, and
//! checks what ends up installed — or, above all, that nothing does.

use crate::download::payload;
use flate2::Compression;
use flate2::write::GzEncoder;
use otp::ExponentialBackoff;
use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::artifacts::*;
use testkit::mirror::{Mirror, Serve};
use volt_protocol::ClusterStatus;
use voltd_actors::host::download::{
    DownloadErrorKind, DownloadEvent, DownloadOptions, Downloader, Sha256Digest,
};
use voltd_actors::provision::catalogue::{Origin, Overlay};
use voltd_actors::provision::install::{CURRENT, MARKER};
use voltd_actors::provision::{
    Catalogue, FailureKind, Found, PlanOutcome, Platform, ProvisionEvent, ProvisionSettings,
    Provisioner, ServiceRequest, ServiceVersion, Step,
};
use voltd_actors::services::ServiceKind;

/// A tarball with a member that climbs out of the install directory.
fn traversal_tarball() -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, data) in [
        ("top/bin/mongod", mongod_wrapper(MONGO_VERSION).into_bytes()),
        ("top/../../../escaped", b"pwned".to_vec()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(&data);
        tar.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }
    tar.extend(std::iter::repeat_n(0u8, 1024));
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

fn catalogue(mirror: &Mirror, entries: &[Entry<'_>]) -> Catalogue {
    let mut c = Catalogue::default();
    c.apply(
        Overlay::parse(
            &catalogue_toml(mirror, entries),
            &Origin::File("test-catalogue.toml".into()),
        )
        .unwrap(),
    );
    c
}

/// A mirror serving a good MongoDB tarball and MinIO binary.
struct Rig {
    mirror: Mirror,
    dir: tempfile::TempDir,
    mongo: Vec<u8>,
    minio: Vec<u8>,
}

impl Rig {
    async fn start() -> Rig {
        let mirror = Mirror::start().await;
        let mongo = mongo_tarball(MONGO_VERSION);
        let minio = minio_wrapper(MINIO_VERSION).into_bytes();
        mirror.put(&mirror_path(MONGO_URL), mongo.clone(), Serve::Normal);
        mirror.put(&mirror_path(MINIO_URL), minio.clone(), Serve::Normal);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("empty-path")).unwrap();
        Rig {
            mirror,
            dir,
            mongo,
            minio,
        }
    }

    fn deps(&self) -> PathBuf {
        self.dir.path().join("deps")
    }

    fn entries(&self) -> Vec<Entry<'static>> {
        vec![
            Entry {
                service: "mongo",
                version: MONGO_VERSION,
                url: MONGO_URL,
                sha256: Sha256Digest::of(&self.mongo),
                tarball: true,
            },
            Entry {
                service: "minio",
                version: MINIO_VERSION,
                url: MINIO_URL,
                sha256: Sha256Digest::of(&self.minio),
                tarball: false,
            },
        ]
    }

    fn provisioner_with(&self, entries: &[Entry<'_>], attempts: u32) -> Provisioner {
        self.provisioner_idle(entries, attempts, Duration::from_secs(10))
    }

    /// With an idle timeout (generous except where a stall is the test).
    fn provisioner_idle(
        &self,
        entries: &[Entry<'_>],
        attempts: u32,
        idle: Duration,
    ) -> Provisioner {
        let mut settings = ProvisionSettings::new(self.deps());
        settings.download = DownloadOptions {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: idle,
            attempts,
            retry_delay: Duration::from_millis(10),
        };
        let downloader = Downloader::new(settings.download).unwrap();
        Provisioner::with_downloader(settings, catalogue(&self.mirror, entries), downloader)
    }

    fn provisioner(&self) -> Provisioner {
        self.provisioner_with(&self.entries(), 1)
    }

    /// The standard program, searched only in `path_dir` (nothing of the
    /// host leaks in).
    fn request(&self, kind: ServiceKind) -> ServiceRequest {
        self.request_in(kind, &self.dir.path().join("empty-path"))
    }

    fn request_in(&self, kind: ServiceKind, path_dir: &Path) -> ServiceRequest {
        ServiceRequest {
            kind,
            program: voltd_actors::provision::standard_program(kind).to_owned(),
            path: Some(path_dir.display().to_string()),
        }
    }

    /// Everything under `deps/<service>` except the lock file.
    fn listing(&self, kind: ServiceKind) -> Vec<String> {
        let mut out = Vec::new();
        let root = self.deps().join(kind.name());
        walk(&root, &root, &mut out);
        out.retain(|p| p != ".lock");
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().display().to_string());
        if e.file_type().unwrap().is_dir() {
            walk(root, &p, out);
        }
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn servers_are_fetched_verified_and_installed_once() {
    let rig = Rig::start().await;
    let p = rig.provisioner();

    for kind in [ServiceKind::Mongo, ServiceKind::Minio] {
        let mut events = Vec::new();
        let ready = p
            .ensure(&rig.request(kind), |e| events.push(e))
            .await
            .unwrap();
        assert!(ready.fetched);
        assert_eq!(ready.found, Found::Provisioned);
        let (version, entry) = match kind {
            ServiceKind::Mongo => (MONGO_VERSION, "bin/mongod"),
            _ => (MINIO_VERSION, "bin/minio"),
        };
        let dir = rig.deps().join(kind.name()).join(version);
        assert_eq!(ready.binary, dir.join(entry));
        assert_eq!(ready.version, ServiceVersion::parse(kind, version));
        let mode = std::fs::metadata(&ready.binary)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(dir.join(MARKER).is_file());
        assert_eq!(
            std::fs::read_link(rig.deps().join(kind.name()).join(CURRENT)).unwrap(),
            PathBuf::from(version)
        );
        assert!(
            matches!(events.first(), Some(ProvisionEvent::Fetching { url, .. }) if url.starts_with(&rig.mirror.base))
        );
        assert!(events.iter().any(|e| matches!(
            e,
            ProvisionEvent::Download {
                progress: DownloadEvent::Verified { .. },
                ..
            }
        )));
        assert!(matches!(
            events.last(),
            Some(ProvisionEvent::Installed { .. })
        ));
    }
    // The installed layout: the version directory, `current`, an empty
    // downloads directory — no staging, no partial files.
    let mongo = rig.listing(ServiceKind::Mongo);
    assert_eq!(
        mongo,
        [
            ".downloads",
            "8.0.11",
            "8.0.11/.voltd-artifact.json",
            "8.0.11/LICENSE-Community.txt",
            "8.0.11/README",
            "8.0.11/bin",
            "8.0.11/bin/mongod",
            "current",
        ],
        "{mongo:?}"
    );
    // The mirror keeps the publisher's layout under its base.
    let paths: Vec<String> = rig.mirror.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, [mirror_path(MONGO_URL), mirror_path(MINIO_URL)]);

    // Idempotent: a verified install is used, not fetched again.
    for kind in [ServiceKind::Mongo, ServiceKind::Minio] {
        let ready = p.ensure(&rig.request(kind), |_| {}).await.unwrap();
        assert!(!ready.fetched);
        assert_eq!(ready.found, Found::Provisioned);
    }
    assert_eq!(rig.mirror.seen().len(), 2);
}

#[tokio::test]
async fn the_dry_run_plan_names_what_would_be_fetched_and_changes_nothing() {
    let rig = Rig::start().await;
    let host_bin = rig.dir.path().join("host-bin");
    std::fs::create_dir(&host_bin).unwrap();
    // An old mongod on PATH is passed over; a good redis-server is used.
    write_script(
        &host_bin.join("mongod"),
        "#!/bin/sh\necho 'db version v6.0.3'\n",
    );
    write_script(
        &host_bin.join("redis-server"),
        "#!/bin/sh\necho 'Redis server v=7.2.4 sha=00000000:0 malloc=libc bits=64'\n",
    );
    let p = rig.provisioner();
    let reqs: Vec<ServiceRequest> = [ServiceKind::Redis, ServiceKind::Mongo, ServiceKind::Minio]
        .into_iter()
        .map(|k| rig.request_in(k, &host_bin))
        .collect();
    let plan = p.plan(&reqs).await;
    assert!(plan.is_ok() && plan.fetches());
    match &plan.items[0].outcome {
        PlanOutcome::Installed {
            binary,
            version,
            found,
        } => {
            assert_eq!(binary, &host_bin.join("redis-server"));
            assert_eq!(version.as_deref(), Some("7.2.4"));
            assert_eq!(*found, Found::Path);
        }
        other => panic!("{other:?}"),
    }
    match &plan.items[1].outcome {
        PlanOutcome::Fetch {
            version,
            url,
            sha256,
            dest,
            passed_over,
            ..
        } => {
            assert_eq!(version, MONGO_VERSION);
            assert_eq!(url, &rig.mirror.url(&mirror_path(MONGO_URL)));
            assert_eq!(sha256, &Sha256Digest::of(&rig.mongo).to_string());
            assert_eq!(dest, &rig.deps().join("mongo/8.0.11"));
            let p = passed_over.as_ref().unwrap();
            assert!(
                p.reason.contains("6.0.3") && p.reason.contains("7.0.0"),
                "{}",
                p.reason
            );
        }
        other => panic!("{other:?}"),
    }
    let text = plan.to_string();
    assert!(text.contains("redis: already installed:"), "{text}");
    assert!(text.contains("mongo: would fetch 8.0.11"), "{text}");
    assert!(
        text.contains("minio: would fetch RELEASE.2025-02-28T09-55-16Z"),
        "{text}"
    );
    assert!(rig.mirror.seen().is_empty(), "a dry run downloads nothing");
    assert!(!rig.deps().exists(), "a dry run writes nothing");
}

#[tokio::test]
async fn a_bad_checksum_is_named_installs_nothing_and_heals_once_the_mirror_is_fixed() {
    let rig = Rig::start().await;
    let path = mirror_path(MINIO_URL);
    // The mirror serves other bytes than the catalogue pins.
    rig.mirror.put(
        &path,
        minio_wrapper("RELEASE.2099-01-01T00-00-00Z"),
        Serve::Normal,
    );
    let p = rig.provisioner();
    let req = rig.request(ServiceKind::Minio);

    let e = p.ensure(&req, |_| {}).await.unwrap_err();
    assert_eq!(e.service, ServiceKind::Minio);
    assert_eq!(e.step, Step::Verify);
    assert_eq!(
        e.kind(),
        FailureKind::Download(DownloadErrorKind::ChecksumMismatch)
    );
    assert_eq!(e.status(), ClusterStatus::DependencyInstallationFailed);
    let reason = e.reason();
    assert!(reason.starts_with("verify: checksum mismatch"), "{reason}");
    assert!(
        reason.contains(&Sha256Digest::of(&rig.minio).to_string()),
        "expected digest: {reason}"
    );
    assert!(e.to_string().starts_with("minio: verify: "), "{e}");
    assert_eq!(
        rig.listing(ServiceKind::Minio),
        [".downloads"],
        "nothing installed, nothing partial"
    );

    // Retried with backoff; the operator fixes the mirror after the first
    // failure; the next attempt heals without anything restarting.
    let backoff = ExponentialBackoff::try_new(
        Duration::from_millis(10),
        Duration::from_millis(50),
        2.0,
        0.0,
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut events = Vec::new();
    let ready = p
        .ensure_retrying(
            &req,
            &backoff,
            |ev| events.push(ev),
            |err, _delay| {
                failures.push(err.to_string());
                rig.mirror.put(&path, rig.minio.clone(), Serve::Normal);
                ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    assert!(ready.fetched);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("checksum mismatch"));
    assert!(events.iter().any(|e| matches!(
        e,
        ProvisionEvent::Retrying {
            step: Step::Verify,
            ..
        }
    )));
    assert_eq!(
        std::fs::read(
            rig.deps()
                .join("minio")
                .join(MINIO_VERSION)
                .join("bin/minio")
        )
        .unwrap(),
        rig.minio
    );
}

#[tokio::test]
async fn a_404_names_the_status_and_the_step() {
    let rig = Rig::start().await;
    rig.mirror.set(&mirror_path(MONGO_URL), Serve::Status(404));
    let e = rig
        .provisioner()
        .ensure(&rig.request(ServiceKind::Mongo), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Download);
    assert_eq!(
        e.kind(),
        FailureKind::Download(DownloadErrorKind::HttpStatus)
    );
    assert!(e.reason().contains("HTTP 404"), "{}", e.reason());
    assert!(!rig.deps().join("mongo/8.0.11").exists());
}

#[tokio::test]
async fn a_body_that_breaks_off_is_resumed_by_the_next_attempt() {
    let rig = Rig::start().await;
    // A bigger artifact so the break happens mid-body.
    let big = {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::none()));
        for (name, data, mode) in [
            (
                "t/bin/mongod",
                mongod_wrapper(MONGO_VERSION).into_bytes(),
                0o755,
            ),
            ("t/blob", payload(400_000), 0o644),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    };
    let path = mirror_path(MONGO_URL);
    rig.mirror
        .put(&path, big.clone(), Serve::BreakAfter(150_000));
    let entries = [Entry {
        service: "mongo",
        version: MONGO_VERSION,
        url: MONGO_URL,
        sha256: Sha256Digest::of(&big),
        tarball: true,
    }];
    let p = rig.provisioner_with(&entries, 1);
    let req = rig.request(ServiceKind::Mongo);

    let e = p.ensure(&req, |_| {}).await.unwrap_err();
    assert_eq!(
        e.kind(),
        FailureKind::Download(DownloadErrorKind::Truncated)
    );
    assert!(
        !rig.deps().join("mongo/8.0.11").exists(),
        "a partial download is not installed"
    );
    let part = rig
        .deps()
        .join("mongo/.downloads/voltd-test-mongodb-linux-8.0.11.tgz.part");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < big.len() as u64);

    // The mirror now finishes bodies and supports Range.
    rig.mirror.set(&path, Serve::Normal);
    let ready = p.ensure(&req, |_| {}).await.unwrap();
    assert!(ready.fetched);
    let seen = rig.mirror.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].range,
        Some(format!("bytes={kept}-")),
        "resumed, not restarted"
    );
    assert_eq!(
        std::fs::metadata(rig.deps().join("mongo/8.0.11/blob"))
            .unwrap()
            .len(),
        400_000
    );
    assert!(!part.exists());
}

#[tokio::test]
async fn a_stalled_server_times_out_and_installs_nothing() {
    let rig = Rig::start().await;
    rig.mirror
        .set(&mirror_path(MINIO_URL), Serve::StallAfter(16));
    let e = rig
        .provisioner_idle(&rig.entries(), 1, Duration::from_millis(500))
        .ensure(&rig.request(ServiceKind::Minio), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::Download(DownloadErrorKind::Timeout));
    assert_eq!(e.step, Step::Download);
    assert!(!rig.deps().join("minio").join(MINIO_VERSION).exists());
}

#[tokio::test]
async fn an_archive_that_escapes_its_directory_is_refused() {
    let rig = Rig::start().await;
    let evil = traversal_tarball();
    rig.mirror
        .put(&mirror_path(MONGO_URL), evil.clone(), Serve::Normal);
    let entries = [Entry {
        service: "mongo",
        version: MONGO_VERSION,
        url: MONGO_URL,
        sha256: Sha256Digest::of(&evil),
        tarball: true,
    }];
    let e = rig
        .provisioner_with(&entries, 1)
        .ensure(&rig.request(ServiceKind::Mongo), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Unpack);
    assert_eq!(e.kind(), FailureKind::Unpack);
    assert!(e.reason().contains("escapes"), "{}", e.reason());
    assert!(!rig.deps().join("mongo/8.0.11").exists());
    assert!(!rig.deps().join("escaped").exists() && !rig.dir.path().join("escaped").exists());
    let left = rig.listing(ServiceKind::Mongo);
    assert!(!left.iter().any(|p| p.starts_with(".staging")), "{left:?}");
}

#[tokio::test]
async fn an_artifact_reporting_another_version_is_not_switched_in() {
    let rig = Rig::start().await;
    let wrong = mongo_tarball("8.0.10");
    rig.mirror
        .put(&mirror_path(MONGO_URL), wrong.clone(), Serve::Normal);
    let entries = [Entry {
        service: "mongo",
        version: MONGO_VERSION,
        url: MONGO_URL,
        sha256: Sha256Digest::of(&wrong),
        tarball: true,
    }];
    let e = rig
        .provisioner_with(&entries, 1)
        .ensure(&rig.request(ServiceKind::Mongo), |_| {})
        .await
        .unwrap_err();
    assert_eq!((e.step, e.kind()), (Step::Check, FailureKind::WrongVersion));
    assert!(
        e.reason().contains("8.0.10") && e.reason().contains("8.0.11"),
        "{}",
        e.reason()
    );
    assert!(!rig.deps().join("mongo/8.0.11").exists());
}

#[tokio::test]
async fn missing_platforms_and_missing_redis_are_reported_as_the_reference_statuses() {
    let rig = Rig::start().await;
    let mut settings = ProvisionSettings::new(rig.deps());
    settings.platform = Platform::new("linux", "riscv64");
    let p = Provisioner::new(settings, catalogue(&rig.mirror, &rig.entries())).unwrap();
    let e = p
        .ensure(&rig.request(ServiceKind::Mongo), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.status(), ClusterStatus::OperatingSystemNotSupported);
    assert_eq!(
        (e.step, e.kind()),
        (Step::Resolve, FailureKind::Unsupported)
    );
    assert!(e.reason().contains("linux/riscv64"), "{}", e.reason());

    // Redis: no official binary, none on PATH, none in the catalogue.
    let e = rig
        .provisioner()
        .ensure(&rig.request(ServiceKind::Redis), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.status(), ClusterStatus::DependencyInstallationFailed);
    assert_eq!(e.kind(), FailureKind::NotInstalled);
    assert!(e.reason().contains("package manager"), "{}", e.reason());

    // A configured path that is too old is an error, not silently replaced.
    let old = rig.dir.path().join("old-mongod");
    std::fs::create_dir(&old).unwrap();
    write_script(&old.join("mongod"), "#!/bin/sh\necho 'db version v6.0.3'\n");
    let req = ServiceRequest {
        kind: ServiceKind::Mongo,
        program: old.join("mongod").display().to_string(),
        path: None,
    };
    let e = rig.provisioner().ensure(&req, |_| {}).await.unwrap_err();
    assert_eq!(e.kind(), FailureKind::TooOld);
    assert!(rig.mirror.seen().is_empty());

    // A custom program (a test stand-in) is used as configured.
    let custom = ServiceRequest {
        kind: ServiceKind::Mongo,
        program: "/bin/sh".into(),
        path: None,
    };
    let ready = rig.provisioner().ensure(&custom, |_| {}).await.unwrap();
    assert_eq!((ready.found, ready.version), (Found::Configured, None));
}

/// The provisioned wrappers really start the stand-ins (the daemon-level
/// tests in `tests/it/provisioning.rs` run them under the service actors).
#[tokio::test]
async fn provisioned_wrappers_run_the_stand_ins() {
    testkit::standins::mongo_server();
    testkit::standins::s3_server();
    let rig = Rig::start().await;
    let p = rig.provisioner();
    let minio = p
        .ensure(&rig.request(ServiceKind::Minio), |_| {})
        .await
        .unwrap();
    let mongod = p
        .ensure(&rig.request(ServiceKind::Mongo), |_| {})
        .await
        .unwrap();

    for (binary, args, env) in [
        (
            &minio.binary,
            vec![
                "server".to_owned(),
                rig.dir.path().join("s3").display().to_string(),
                "--address".into(),
            ],
            vec![
                ("MINIO_ROOT_USER", "volt"),
                ("MINIO_ROOT_PASSWORD", "volt-secret-1"),
            ],
        ),
        (
            &mongod.binary,
            vec![
                "--dbpath".to_owned(),
                rig.dir.path().join("db").display().to_string(),
            ],
            vec![],
        ),
    ] {
        let port = testkit::free_port();
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(&args).kill_on_drop(true);
        if binary == &minio.binary {
            std::fs::create_dir_all(rig.dir.path().join("s3")).unwrap();
            cmd.arg(format!("127.0.0.1:{port}"));
        } else {
            std::fs::create_dir_all(rig.dir.path().join("db")).unwrap();
            cmd.args(["--port", &port.to_string(), "--bind_ip", "127.0.0.1"]);
        }
        cmd.envs(env);
        let mut child = cmd.spawn().unwrap();
        let addr = format!("127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + testkit::standins::WITHIN;
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited early: {status}", binary.display());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never listened",
                binary.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child.kill().await.unwrap();
    }
}

/// Mounting a tmpfs needs root: run by `scripts/test.sh` as root.
mod needs_root {
    use super::*;

    /// ENOSPC while downloading and while unpacking is reported as "no space"
    /// (a tmpfs of 256 KiB stands in for a full disk).
    #[tokio::test]
    #[ignore = "needs root"]
    async fn a_full_disk_is_reported_as_no_space() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "run as root: this test mounts a tmpfs"
        );
        let rig = Rig::start().await;
        let small = rig.dir.path().join("small");
        std::fs::create_dir(&small).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&small)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount tmpfs");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _guard = Unmount(small.clone());

        // Download: a 1 MB artifact does not fit.
        let big = payload(1_000_000);
        rig.mirror
            .put(&mirror_path(MINIO_URL), big.clone(), Serve::Normal);
        let entries = [Entry {
            service: "minio",
            version: MINIO_VERSION,
            url: MINIO_URL,
            sha256: Sha256Digest::of(&big),
            tarball: false,
        }];
        let mut settings = ProvisionSettings::new(small.join("deps"));
        settings.download.attempts = 1;
        let p = Provisioner::new(settings.clone(), catalogue(&rig.mirror, &entries)).unwrap();
        let e = p
            .ensure(&rig.request(ServiceKind::Minio), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            (e.step, e.kind()),
            (Step::Download, FailureKind::NoSpace),
            "{e}"
        );
        assert!(e.reason().contains("no space"), "{}", e.reason());
        assert!(!small.join("deps/minio").join(MINIO_VERSION).exists());
        std::fs::remove_dir_all(small.join("deps")).unwrap();

        // Unpack: a small tarball of a big (compressible) file.
        let bomb = {
            let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::best()));
            for (name, data, mode) in [
                (
                    "t/bin/mongod",
                    mongod_wrapper(MONGO_VERSION).into_bytes(),
                    0o755,
                ),
                ("t/zeros", vec![0u8; 2_000_000], 0o644),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(mode);
                h.set_cksum();
                b.append_data(&mut h, name, &data[..]).unwrap();
            }
            b.into_inner().unwrap().finish().unwrap()
        };
        assert!(bomb.len() < 64_000, "compressed: {}", bomb.len());
        rig.mirror
            .put(&mirror_path(MONGO_URL), bomb.clone(), Serve::Normal);
        let entries = [Entry {
            service: "mongo",
            version: MONGO_VERSION,
            url: MONGO_URL,
            sha256: Sha256Digest::of(&bomb),
            tarball: true,
        }];
        let p = Provisioner::new(settings, catalogue(&rig.mirror, &entries)).unwrap();
        let e = p
            .ensure(&rig.request(ServiceKind::Mongo), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            (e.step, e.kind()),
            (Step::Unpack, FailureKind::NoSpace),
            "{e}"
        );
        assert!(!small.join("deps/mongo/8.0.11").exists());
    }
}
