//! The `preparing-environment` phase end to end: a real volt-plane, an
//! in-process daemon whose MongoDB and MinIO run natively with the
//! production command lines (`mongod --dbpath …`, `minio server …`) and an
//! empty `PATH`, so their servers must come from the catalogue — here a
//! local mirror serving wrapper artifacts around the stand-ins (a tarball
//! whose `bin/mongod` runs SecantusDB, a `minio` that runs s3s-fs). The
//! statuses are the ones the plane records.

use otp::ExitCode;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use testkit::artifacts::*;
use testkit::daemon::*;
use testkit::eventually;
use testkit::mirror::{Mirror, Serve};
use testkit::services::{native_services, wait_state};
use testkit::standins::WITHIN;
use volt_plane::{ClusterView, PlaneHandle};
use volt_protocol::ClusterStatus;
use voltd_actors::config::{AbsPath, ServiceMode, ServicesSettings, Settings};
use voltd_actors::events::Event;
use voltd_actors::host::download::Sha256Digest;
use voltd_actors::provision::ProvisionEvent;
use voltd_actors::services::{ServiceKind, ServiceState};

/// How often a failed provisioning is tried again here (the production
/// backoff starts at 15 s; `failed_retry` caps it).
const RETRY: Duration = Duration::from_secs(1);

/// A host with nothing installed: the production command lines of the
/// `wanted` services, an empty `PATH`, the catalogue `catalogue` (a file in
/// `dir`), servers installed under `dir/root/deps`.
fn bare_host(s: &mut Settings, dir: &Path, wanted: &[ServiceKind], catalogue: &str) {
    let empty = dir.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let production = ServicesSettings::native();
    let mut services = native_services();
    for kind in ServiceKind::ALL {
        let svc = services.get_mut(kind);
        if !wanted.contains(&kind) {
            svc.mode = ServiceMode::Disabled;
            continue;
        }
        let prod = production.get(kind);
        svc.command = prod.command.clone();
        svc.env = prod.env.clone();
        svc.env.insert("PATH".into(), empty.display().to_string());
        svc.failed_retry = RETRY;
    }
    s.services = services;
    let file = dir.join("catalogue.toml");
    std::fs::write(&file, catalogue).unwrap();
    s.provision.catalogue = Some(AbsPath::new(&file).unwrap());
    s.install.install_root = AbsPath::new(dir.join("root")).unwrap();
}

fn statuses(view: &ClusterView) -> Vec<ClusterStatus> {
    view.status_history.iter().map(|h| h.status).collect()
}

/// The plane's view once `pred` holds.
async fn plane_sees(
    plane: &PlaneHandle,
    id: &str,
    what: &str,
    pred: impl Fn(&ClusterView) -> bool,
) -> ClusterView {
    eventually(WITHIN, what, async || plane.cluster(id).filter(|c| pred(c))).await
}

/// `a` happens before `b` in `history` (first `a`, some later `b`).
fn before(history: &[ClusterStatus], a: ClusterStatus, b: ClusterStatus) -> bool {
    history
        .iter()
        .position(|s| *s == a)
        .is_some_and(|i| history[i..].contains(&b))
}

#[actix_rt::test]
async fn a_bare_host_fetches_its_servers_from_the_mirror_and_the_cluster_gets_connected() {
    testkit::standins::mongo_server();
    testkit::standins::s3_server();
    let mirror = Mirror::start().await;
    let (mongo, minio) = serve_good_artifacts(&mirror);
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, &dir.path().join("state"));
    bare_host(
        &mut s,
        dir.path(),
        &[ServiceKind::Mongo, ServiceKind::Minio],
        &catalogue_toml(&mirror, &good_entries(&mongo, &minio)),
    );
    let daemon = start_daemon(s);

    let view = plane_sees(&plane, &id, "connected after provisioning", |c| {
        c.status == ClusterStatus::Connected
            && statuses(c).contains(&ClusterStatus::PreparingEnvironment)
    })
    .await;
    let history = statuses(&view);
    assert!(
        before(
            &history,
            ClusterStatus::PreparingEnvironment,
            ClusterStatus::Connected
        ),
        "{history:?}"
    );
    assert!(
        !history.contains(&ClusterStatus::DependencyInstallationFailed),
        "{history:?}"
    );
    for name in ["mongo", "minio"] {
        wait_state(daemon.services(), name, ServiceState::Healthy).await;
    }
    // Installed where the catalogue says, fetched once each, and the log
    // stream told the story.
    let root = dir.path().join("root/deps");
    assert!(
        root.join("mongo")
            .join(MONGO_VERSION)
            .join("bin/mongod")
            .is_file()
    );
    assert!(
        root.join("minio")
            .join(MINIO_VERSION)
            .join("bin/minio")
            .is_file()
    );
    for kind in [ServiceKind::Mongo, ServiceKind::Minio] {
        let installed = count_events(
            &daemon,
            |e| matches!(e, Event::Provision { progress: ProvisionEvent::Installed { service, .. } } if *service == kind),
        );
        assert_eq!(installed, 1, "{kind}");
        assert!(
            count_events(&daemon, |e| matches!(
                e,
                Event::Provision { progress: ProvisionEvent::Fetching { service, .. } } if *service == kind
            )) >= 1
        );
    }
    assert_eq!(
        mirror
            .seen()
            .iter()
            .filter(|r| r.path == mirror_path(MONGO_URL))
            .count(),
        1
    );

    daemon.shutdown(ExitCode::Stopped, "test");
    assert_eq!(daemon.wait().await, ExitCode::Stopped);
    plane.shutdown().await;
}

/// A wrong checksum on the mirror: the server sees
/// `dependency-installation-failed` naming MinIO and the mismatch; once the
/// mirror serves the right file, the daemon heals without a restart. On a
/// strict plane (no extensions announced) the same reports go out without
/// their reason, and the plane accepts them.
async fn bad_checksum_heals(plane: PlaneHandle, with_reasons: bool) {
    testkit::standins::s3_server();
    let mirror = Mirror::start().await;
    let (mongo, minio) = serve_good_artifacts(&mirror);
    mirror.put(
        &mirror_path(MINIO_URL),
        b"#!/bin/sh\necho tampered\n".to_vec(),
        Serve::Normal,
    );
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, &dir.path().join("state"));
    bare_host(
        &mut s,
        dir.path(),
        &[ServiceKind::Minio],
        &catalogue_toml(&mirror, &good_entries(&mongo, &minio)),
    );
    let daemon = start_daemon(s);

    let view = plane_sees(&plane, &id, "dependency-installation-failed", |c| {
        c.status == ClusterStatus::DependencyInstallationFailed
    })
    .await;
    let reason = view.status_history.last().unwrap().reason.clone();
    if with_reasons {
        let reason = reason.unwrap_or_default();
        assert!(
            reason.starts_with("minio: verify: checksum mismatch"),
            "{reason}"
        );
        assert!(
            reason.contains(&Sha256Digest::of(&minio).to_string()),
            "{reason}"
        );
    } else {
        assert_eq!(reason, None, "a strict server gets no reason");
    }
    // The daemon's own status names it either way.
    let snap = daemon
        .wiring
        .snapshots
        .send(voltd_actors::status::GetSnapshot)
        .await
        .unwrap();
    assert!(
        snap.reason
            .as_deref()
            .is_some_and(|r| r.contains("checksum mismatch")),
        "{:?}",
        snap.reason
    );
    assert!(
        !dir.path()
            .join("root/deps/minio")
            .join(MINIO_VERSION)
            .exists(),
        "nothing unverified is installed"
    );

    // Fix the mirror: the next attempt installs it and the cluster heals.
    mirror.put(&mirror_path(MINIO_URL), minio.clone(), Serve::Normal);
    let view = plane_sees(&plane, &id, "healed to connected", |c| {
        c.status == ClusterStatus::Connected
            && before(
                &statuses(c),
                ClusterStatus::DependencyInstallationFailed,
                ClusterStatus::Connected,
            )
    })
    .await;
    let history = statuses(&view);
    assert!(
        before(
            &history,
            ClusterStatus::DependencyInstallationFailed,
            ClusterStatus::PreparingEnvironment
        ),
        "healing walks back through preparing-environment: {history:?}"
    );
    wait_state(daemon.services(), "minio", ServiceState::Healthy).await;
    assert_eq!(
        daemon.services().view("minio").unwrap().restarts,
        0,
        "a provisioning failure is no crash"
    );
    daemon.shutdown(ExitCode::Stopped, "test");
    assert_eq!(daemon.wait().await, ExitCode::Stopped);
    plane.shutdown().await;
}

#[actix_rt::test]
async fn a_bad_checksum_is_reported_by_name_and_fixing_the_mirror_heals_it() {
    bad_checksum_heals(plane().await, true).await;
}

#[actix_rt::test]
async fn a_strict_server_gets_the_same_statuses_without_reasons() {
    let strict = testkit::plane::start(volt_plane::PlaneConfig {
        announce_extensions: false,
        ..plane_config()
    })
    .await;
    bad_checksum_heals(strict, false).await;
}

/// No artifact for this platform and nothing installed:
/// `operating-system-not-supported`, naming the service; a server installed
/// by hand later heals it on the next attempt.
#[actix_rt::test]
async fn a_platform_without_an_artifact_is_operating_system_not_supported_until_one_is_installed() {
    testkit::standins::s3_server();
    let mirror = Mirror::start().await;
    let (mongo, _) = serve_good_artifacts(&mirror);
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, &dir.path().join("state"));
    // The catalogue knows MongoDB only.
    let only_mongo: Vec<Entry<'_>> = good_entries(&mongo, b"")
        .into_iter()
        .filter(|e| e.service == "mongo")
        .collect();
    bare_host(
        &mut s,
        dir.path(),
        &[ServiceKind::Minio],
        &catalogue_toml(&mirror, &only_mongo),
    );
    let daemon = start_daemon(s);

    let view = plane_sees(&plane, &id, "operating-system-not-supported", |c| {
        c.status == ClusterStatus::OperatingSystemNotSupported
    })
    .await;
    let reason = view.status_history.last().unwrap().reason.clone().unwrap();
    assert!(
        reason.starts_with("minio: resolve: no minio server is installed"),
        "{reason}"
    );

    // An operator puts a MinIO on the service's PATH.
    let on_path = dir.path().join("empty-path/minio");
    std::fs::write(&on_path, minio_wrapper(MINIO_VERSION)).unwrap();
    std::fs::set_permissions(&on_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let view = plane_sees(&plane, &id, "connected with the server from PATH", |c| {
        c.status == ClusterStatus::Connected
    })
    .await;
    assert!(
        before(
            &statuses(&view),
            ClusterStatus::OperatingSystemNotSupported,
            ClusterStatus::PreparingEnvironment
        ),
        "{:?}",
        statuses(&view)
    );
    daemon.shutdown(ExitCode::Stopped, "test");
    assert_eq!(daemon.wait().await, ExitCode::Stopped);
    plane.shutdown().await;
}

/// A stop does not wait for a download: the service actor drops it at once
/// (here the mirror stalls mid-body, and the idle timeout is a minute), and
/// what arrived stays in the `.part` file for the next attempt to resume.
#[actix_rt::test]
async fn a_stop_interrupts_a_download_and_keeps_what_arrived() {
    let mirror = Mirror::start().await;
    let (mongo, minio) = serve_good_artifacts(&mirror);
    let big: Vec<u8> = minio
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'#', 200_000))
        .collect();
    mirror.put(
        &mirror_path(MINIO_URL),
        big.clone(),
        Serve::StallAfter(100_000),
    );
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, &dir.path().join("state"));
    bare_host(
        &mut s,
        dir.path(),
        &[ServiceKind::Minio],
        &catalogue_toml(&mirror, &good_entries(&mongo, &big)),
    );
    let daemon = start_daemon(s);
    wait_connected(&plane, &id).await;
    let part = dir
        .path()
        .join("root/deps/minio/.downloads")
        .join(format!("{}.part", MINIO_URL.rsplit('/').next().unwrap()));
    eventually(WITHIN, "the download stalled half way", async || {
        std::fs::metadata(&part)
            .ok()
            .filter(|m| m.len() >= 100_000)
            .map(|_| ())
    })
    .await;
    let view = daemon.services().view("minio").unwrap();
    assert_eq!(view.state, ServiceState::Starting);

    let bus = daemon.bus.clone();
    daemon.shutdown(ExitCode::Stopped, "test");
    assert_eq!(daemon.wait().await, ExitCode::Stopped);
    // The actor answered the stop itself (a stuck one is aborted by its
    // supervisor after the shutdown timeout: `child-killed`).
    let events: Vec<Event> = bus
        .recent(usize::MAX)
        .iter()
        .map(|r| r.event.clone())
        .collect();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::Supervisor(otp::SupervisorEvent::ChildKilled { .. })
        )),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ServiceState {
            service: ServiceKind::Minio,
            state: ServiceState::Stopped,
            ..
        }
    )));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 100_000);
    plane.shutdown().await;
}
