//! The signed self-update against a real volt-plane serving releases, with
//! real binaries: a copy of the built voltd, a tampered one, a truncated
//! one, one whose self-check fails, one signed by another key.

use crate::voltd_bin;
use std::path::{Path, PathBuf};
use std::time::Duration;
use volt_plane::{PlaneConfig, PlaneHandle, ReleaseStore};
use volt_protocol::release::Platform;
use voltd_actors::host::download::{DownloadOptions, Downloader};
use voltd_actors::update::install::{BINARY_FILE, InstallLayout};
use voltd_actors::update::marker::{self, MarkerState};
use voltd_actors::update::{self, UpdateConfig, UpdateError};

/// A host with voltd 0.1.0 installed the way install.sh does it, and a
/// plane with a releases directory.
struct Host {
    _tmp: tempfile::TempDir,
    layout: InstallLayout,
    config: PathBuf,
    store: ReleaseStore,
    plane: PlaneHandle,
}

impl Host {
    async fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let layout = InstallLayout::new(tmp.path().join("opt/voltd"), tmp.path().join("state"));
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        let first = layout.release_dir("0.1.0");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::copy(voltd_bin(), first.join(BINARY_FILE)).unwrap();
        layout.set_current("0.1.0").unwrap();
        layout.set_previous("0.1.0").unwrap();
        let config = tmp.path().join("voltd.toml");
        std::fs::write(
            &config,
            format!(
                "cloud_url = \"http://127.0.0.1:9\"\nteam_cluster_id = \"c1\"\nstate_dir = \"{}\"\n",
                layout.state_dir.display()
            ),
        )
        .unwrap();
        let store = ReleaseStore::new(tmp.path().join("releases"));
        let plane = volt_plane::start(PlaneConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            releases_dir: Some(store.dir().to_owned()),
            ..PlaneConfig::default()
        })
        .await
        .unwrap();
        Host {
            _tmp: tmp,
            layout,
            config,
            store,
            plane,
        }
    }

    fn platform() -> Platform {
        Platform::current().unwrap()
    }

    fn publish(&self, version: &str, file: &Path) {
        self.store
            .publish(version, &Self::platform(), file)
            .unwrap();
    }

    fn cfg(&self) -> UpdateConfig {
        UpdateConfig {
            channel: UpdateConfig::default_channel(&self.plane.base_url()),
            key: self.store.public_key().unwrap().unwrap(),
            platform: Self::platform(),
            layout: self.layout.clone(),
            config_file: Some(self.config.clone()),
            self_check_timeout: Duration::from_secs(30),
        }
    }

    async fn prepare(&self, version: &str) -> Result<update::Staged, UpdateError> {
        let downloader = Downloader::new(DownloadOptions::default()).unwrap();
        update::prepare(&self.cfg(), &downloader, version).await
    }

    /// Nothing changed: only 0.1.0 installed and current, no staging left.
    fn assert_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.layout.releases_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["0.1.0".to_owned()]);
        assert_eq!(self.layout.current_version().as_deref(), Some("0.1.0"));
        assert!(marker::read(&self.layout).is_none());
    }

    fn guard_with(&self, binary: &Path) -> String {
        let out = std::process::Command::new(binary)
            .arg("--config")
            .arg(&self.config)
            .arg("update-guard")
            .arg("--install-dir")
            .arg(&self.layout.install_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "the guard never fails a start");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("release.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn a_signed_release_is_verified_self_checked_and_swapped_in_keeping_the_previous() {
    let h = Host::new().await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    let staged = h.prepare("0.2.0").await.unwrap();
    assert_eq!(staged.version(), "0.2.0");
    assert_eq!(
        std::fs::read(staged.dir.join(BINARY_FILE)).unwrap(),
        std::fs::read(voltd_bin()).unwrap()
    );
    // Still nothing live.
    assert_eq!(h.layout.current_version().as_deref(), Some("0.1.0"));

    update::activate(&h.layout, &staged).unwrap();
    assert_eq!(h.layout.current_version().as_deref(), Some("0.2.0"));
    assert_eq!(h.layout.previous_version().as_deref(), Some("0.1.0"));
    let m = marker::read(&h.layout).unwrap();
    assert_eq!(
        (m.state, m.from.as_str(), m.to.as_str()),
        (MarkerState::Pending, "0.1.0", "0.2.0")
    );
    assert!(h.layout.release_dir("0.1.0").join(BINARY_FILE).is_file());
    // The new binary knows which release it is, whatever it was compiled as.
    assert_eq!(
        h.layout
            .release_of(&h.layout.current_link().join(BINARY_FILE))
            .as_deref(),
        Some("0.2.0")
    );
    h.plane.shutdown().await;
}

#[tokio::test]
async fn a_release_that_keeps_failing_to_start_is_rolled_back_by_the_previous_binarys_guard() {
    let h = Host::new().await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    let staged = h.prepare("0.2.0").await.unwrap();
    update::activate(&h.layout, &staged).unwrap();
    // systemd runs ExecStartPre (previous/voltd update-guard) before each
    // start; the new version dies before it can check anything each time.
    let guard = h.layout.previous_link().join(BINARY_FILE);
    for n in 1..=marker::MAX_TRIAL_STARTS {
        let out = h.guard_with(&guard);
        assert!(out.contains(&format!("start {n}")), "{out}");
        assert_eq!(h.layout.current_version().as_deref(), Some("0.2.0"));
    }
    let out = h.guard_with(&guard);
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(h.layout.current_version().as_deref(), Some("0.1.0"));
    // The restored release finds out why, to report update-failed.
    let m = marker::read(&h.layout).unwrap();
    assert_eq!(m.state, MarkerState::RolledBack);
    let startup = marker::startup(&h.layout, Some("0.1.0"));
    assert!(
        matches!(&startup, marker::Startup::RolledBack { reason, .. } if reason.contains("0.2.0")),
        "{startup:?}"
    );
    h.plane.shutdown().await;
}

#[tokio::test]
async fn a_tampered_binary_is_refused_and_nothing_is_installed() {
    let h = Host::new().await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    let served = h.store.binary_path("0.2.0", &Host::platform());
    let mut bytes = std::fs::read(&served).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&served, &bytes).unwrap();
    let e = h.prepare("0.2.0").await.unwrap_err();
    assert_eq!(e.code(), "checksum-mismatch", "{e}");
    h.assert_untouched();
    h.plane.shutdown().await;
}

#[tokio::test]
async fn a_truncated_or_padded_download_is_refused() {
    let h = Host::new().await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    let served = h.store.binary_path("0.2.0", &Host::platform());
    let full = std::fs::read(&served).unwrap();
    std::fs::write(&served, &full[..full.len() - 1000]).unwrap();
    let e = h.prepare("0.2.0").await.unwrap_err();
    assert!(
        matches!(e, UpdateError::Truncated { expected, got } if expected == full.len() as u64 && got == full.len() as u64 - 1000),
        "{e:?}"
    );
    h.assert_untouched();
    let mut padded = full.clone();
    padded.extend_from_slice(b"extra");
    std::fs::write(&served, &padded).unwrap();
    let e = h.prepare("0.2.0").await.unwrap_err();
    assert_eq!(e.code(), "too-large", "{e}");
    h.assert_untouched();
    h.plane.shutdown().await;
}

#[tokio::test]
async fn a_release_whose_self_check_fails_is_refused_with_its_message() {
    let h = Host::new().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = script(
        dir.path(),
        "echo 'cannot read state: schema 9 unknown' >&2\nexit 1",
    );
    h.publish("0.2.0", &bad);
    let e = h.prepare("0.2.0").await.unwrap_err();
    assert_eq!(e.code(), "self-check-failed", "{e}");
    assert!(e.reason().contains("schema 9 unknown"), "{}", e.reason());
    h.assert_untouched();
    h.plane.shutdown().await;
}

#[tokio::test]
async fn the_real_self_check_fails_when_the_state_cannot_be_read() {
    let h = Host::new().await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    std::fs::write(h.layout.state_dir.join("credentials.json"), b"{not json").unwrap();
    let e = h.prepare("0.2.0").await.unwrap_err();
    assert_eq!(e.code(), "self-check-failed", "{e}");
    assert!(e.reason().contains("credentials"), "{}", e.reason());
    h.plane.shutdown().await;
}

#[tokio::test]
async fn a_release_signed_by_another_key_is_refused() {
    let h = Host::new().await;
    // Pin the plane's key first, then sign 0.2.0 with a stranger's key and
    // serve it from the plane's channel.
    h.publish("0.1.5", Path::new(voltd_bin()));
    let other = tempfile::tempdir().unwrap();
    let stranger = ReleaseStore::new(other.path());
    stranger
        .publish("0.2.0", &Host::platform(), Path::new(voltd_bin()))
        .unwrap();
    let from = stranger.release_dir("0.2.0", &Host::platform());
    let to = h.store.release_dir("0.2.0", &Host::platform());
    std::fs::create_dir_all(&to).unwrap();
    for f in ["manifest.json", "voltd"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let e = h.prepare("0.2.0").await.unwrap_err();
    assert_eq!(e.code(), "bad-signature", "{e}");
    let pinned = h.store.public_key().unwrap().unwrap().key_id();
    assert!(e.reason().contains(&pinned), "{}", e.reason());
    h.assert_untouched();
    h.plane.shutdown().await;
}

#[tokio::test]
async fn a_manifest_for_another_version_or_a_missing_release_is_refused() {
    let h = Host::new().await;
    h.publish("0.2.0", Path::new(voltd_bin()));
    // Serve 0.2.0's (validly signed) manifest under 0.3.0.
    let from = h.store.release_dir("0.2.0", &Host::platform());
    let to = h.store.release_dir("0.3.0", &Host::platform());
    std::fs::create_dir_all(&to).unwrap();
    for f in ["manifest.json", "voltd"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let e = h.prepare("0.3.0").await.unwrap_err();
    assert_eq!(e.code(), "wrong-release", "{e}");
    let e = h.prepare("9.9.9").await.unwrap_err();
    assert!(
        matches!(e, UpdateError::HttpStatus { status: 404, .. }),
        "{e:?}"
    );
    h.assert_untouched();
    h.plane.shutdown().await;
}
