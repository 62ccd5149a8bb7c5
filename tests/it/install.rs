//! install.sh as a person runs it: fetched from a real volt-plane and piped
//! into bash (`curl … | bash -s -- …`), under a staging prefix so nothing
//! touches the real /etc or /opt. Twice (the second run changes nothing),
//! with a tampered binary and with another key (refused, nothing
//! installed), and on "macOS" (a `uname` that says Darwin).

use crate::{repo, voltd_bin};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use volt_plane::{CreatedCluster, PlaneConfig, PlaneHandle, ReleaseStore};
use volt_protocol::ClusterStatus;
use volt_protocol::release::Platform;

struct Setup {
    _releases: tempfile::TempDir,
    store: ReleaseStore,
    plane: PlaneHandle,
    created: CreatedCluster,
    key: String,
    script: String,
}

async fn setup() -> Setup {
    let releases = tempfile::tempdir().unwrap();
    let store = ReleaseStore::new(releases.path());
    store
        .publish(
            "0.1.0",
            &Platform::current().unwrap(),
            Path::new(voltd_bin()),
        )
        .unwrap();
    let key = store.public_key().unwrap().unwrap().to_base64();
    let plane = volt_plane::start(PlaneConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        releases_dir: Some(releases.path().to_owned()),
        ..PlaneConfig::default()
    })
    .await
    .unwrap();
    let created = plane.create_cluster(Default::default()).await.unwrap();
    // Exactly what the one-liner does: fetch the script from the plane.
    let script = reqwest::get(format!("{}/install.sh", plane.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Setup {
        _releases: releases,
        store,
        plane,
        created,
        key,
        script,
    }
}

impl Setup {
    fn id(&self) -> &str {
        &self.created.team_cluster.id
    }

    /// `bash -s -- --url … --cluster … --release-key … --prefix P <extra>`
    /// with the script on stdin; returns (exit code, stdout+stderr).
    async fn run(&self, prefix: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let mut args: Vec<String> = vec![
            "-s".into(),
            "--".into(),
            "--url".into(),
            self.plane.base_url(),
            "--cluster".into(),
            self.id().into(),
            "--release-key".into(),
            self.key.clone(),
            "--prefix".into(),
            prefix.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_bash(&self.script, &args, env).await
    }
}

async fn run_bash(script: &str, args: &[String], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args(args)
        .env_remove("TEAM_CLUSTER_ENROLLMENT_TOKEN")
        .env_remove("VOLT_CLOUD_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("install.sh finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every file and link under `root` with its content (or link target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(p, target.as_os_str().as_encoded_bytes().to_vec());
            } else if t.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                let meta = std::fs::metadata(&p).unwrap();
                let mut v = std::fs::read(&p).unwrap();
                v.extend_from_slice(format!("|mtime={:?}", meta.modified().unwrap()).as_bytes());
                out.insert(p, v);
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn piped_from_the_plane_it_installs_verifies_enrolls_and_a_second_run_changes_nothing() {
    let s = setup().await;
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    let token = s.created.enrollment_token.clone();
    let (code, log) = s
        .run(p, &[], &[("TEAM_CLUSTER_ENROLLMENT_TOKEN", &token)])
        .await;
    assert_eq!(code, 0, "{log}");
    for n in 1..=10 {
        assert!(
            log.contains(&format!("[{n}/10]")),
            "step {n} missing: {log}"
        );
    }
    assert!(log.contains("signature verified"), "{log}");
    assert!(log.contains("done: voltd 0.1.0 installed"), "{log}");
    assert!(!log.contains(&token), "token echoed: {log}");

    // The verified binary, the links, the pinned key, the config, the unit.
    let rel = p.join("opt/voltd/releases/0.1.0");
    assert_eq!(
        std::fs::read(rel.join("voltd")).unwrap(),
        std::fs::read(voltd_bin()).unwrap()
    );
    assert!(rel.join("manifest.json").is_file());
    for link in ["current", "previous"] {
        assert_eq!(
            std::fs::read_link(p.join("opt/voltd").join(link)).unwrap(),
            Path::new("releases/0.1.0")
        );
    }
    assert_eq!(
        std::fs::read_to_string(p.join("etc/voltd/release-key.pub")).unwrap(),
        format!("{}\n", s.key)
    );
    let config = p.join("etc/voltd/voltd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("team_cluster_id = \"{}\"", s.id())),
        "{text}"
    );
    assert!(!text.contains(&token));
    for unit in [
        "voltd.service",
        "voltd-terminal.socket",
        "voltd-terminal@.service",
    ] {
        assert_eq!(
            std::fs::read(p.join("etc/systemd/system").join(unit)).unwrap(),
            std::fs::read(repo().join("install").join(unit)).unwrap(),
            "{unit}"
        );
    }
    let creds = testkit::creds::stored_credentials(&p.join("var/lib/voltd"));
    assert_eq!(creds.daemon_password.expose(), s.created.daemon_password);
    // Sealed credentials come with the drop-in that has systemd decrypt
    // them for the service.
    let dropin = p.join("etc/systemd/system/voltd.service.d/host.conf");
    if testkit::creds::seals_here() {
        let text = std::fs::read_to_string(&dropin).unwrap();
        assert!(
            text.contains(
                "LoadCredentialEncrypted=voltd-credentials:/var/lib/voltd/credentials.json.cred"
            ),
            "{text}"
        );
        // The native services' passwords, pre-generated and sealed by
        // `voltd enroll`, are loaded the same way.
        assert!(
            text.contains(
                "LoadCredentialEncrypted=voltd-services:/var/lib/voltd/services/credentials.json.cred"
            ),
            "{text}"
        );
        let g = testkit::creds::generated_service_credentials(&p.join("var/lib/voltd"));
        assert_eq!(
            g.as_object().unwrap().len(),
            3,
            "{}",
            g.as_object().unwrap().len()
        );
    } else {
        assert!(!dropin.exists());
    }
    assert_eq!(mode(&p.join("var/lib/voltd")), 0o700);
    assert!(s.plane.cluster(s.id()).unwrap().enrollment_completed);

    // Second run: no token needed, nothing changes, and it says so.
    let before = snapshot(p);
    let (code, log) = s.run(p, &[], &[]).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("done: no change"), "{log}");
    assert!(log.contains("enrollment: already enrolled"), "{log}");
    assert_eq!(snapshot(p), before);

    // The installed daemon runs from what was written.
    let mut daemon = tokio::process::Command::new(p.join("usr/local/bin/voltd"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--services", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !s.plane.cluster(s.id()).unwrap().connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;
    s.plane.shutdown().await;
}

async fn assert_refused_and_nothing_installed(s: &Setup, key: Option<&str>, expect: &str) {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    let token = s.created.enrollment_token.clone();
    let mut args: Vec<&str> = Vec::new();
    if let Some(k) = key {
        args.extend(["--release-key", k]);
    }
    let (code, log) = s
        .run(p, &args, &[("TEAM_CLUSTER_ENROLLMENT_TOKEN", &token)])
        .await;
    assert_ne!(code, 0, "{log}");
    assert!(log.contains(expect), "{log}");
    assert!(log.contains("refusing to install"), "{log}");
    assert!(!p.join("opt/voltd/releases/0.1.0/voltd").exists());
    assert!(!p.join("opt/voltd/current").exists());
    assert!(!p.join("etc").exists());
    assert!(!p.join("var").exists());
    assert!(!s.plane.cluster(s.id()).unwrap().enrollment_completed);
}

#[tokio::test]
async fn a_tampered_binary_is_refused_before_it_runs() {
    let s = setup().await;
    let served = s.store.binary_path("0.1.0", &Platform::current().unwrap());
    let mut bytes = std::fs::read(&served).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&served, &bytes).unwrap();
    assert_refused_and_nothing_installed(&s, None, "SHA-256 does not match").await;
    // A truncated one too.
    std::fs::write(&served, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused_and_nothing_installed(&s, None, "signed size").await;
    s.plane.shutdown().await;
}

#[tokio::test]
async fn a_release_not_signed_by_the_pinned_key_is_refused() {
    let s = setup().await;
    let other = tempfile::tempdir().unwrap();
    let stranger = ReleaseStore::new(other.path());
    let bin = other.path().join("b");
    std::fs::write(&bin, b"x").unwrap();
    stranger
        .publish("0.0.1", &Platform::current().unwrap(), &bin)
        .unwrap();
    let k = stranger.public_key().unwrap().unwrap().to_base64();
    // The later --release-key wins.
    assert_refused_and_nothing_installed(&s, Some(&k), "signature does not verify").await;
    s.plane.shutdown().await;
}

#[tokio::test]
async fn unsafe_invocations_are_refused_up_front() {
    let s = setup().await;
    let prefix = tempfile::tempdir().unwrap();
    let base = |url: &str| -> Vec<String> {
        [
            "-s",
            "--",
            "--url",
            url,
            "--cluster",
            "c1",
            "--release-key",
            &s.key,
            "--prefix",
        ]
        .iter()
        .map(|x| x.to_string())
        .chain([prefix.path().display().to_string()])
        .collect()
    };
    for url in ["http://volt.example.org", "http://127.0.0.1.evil.example"] {
        let (code, log) = run_bash(&s.script, &base(url), &[]).await;
        assert_ne!(code, 0, "{url}");
        assert!(log.contains("use https://"), "{url}: {log}");
    }
    let mut args = base(&s.plane.base_url());
    args.extend(["--token".into(), "abc".into()]);
    let (code, log) = run_bash(&s.script, &args, &[]).await;
    assert_ne!(code, 0);
    assert!(log.contains("never passed on the command line"), "{log}");
    let mut args = base(&s.plane.base_url());
    args[7] = "not-a-key".into();
    let (code, log) = run_bash(&s.script, &args, &[]).await;
    assert_ne!(code, 0);
    assert!(log.contains("--release-key"), "{log}");
    assert!(std::fs::read_dir(prefix.path()).unwrap().next().is_none());
    s.plane.shutdown().await;
}

#[tokio::test]
async fn on_macos_it_says_so_and_reports_operating_system_not_supported() {
    let s = setup().await;
    let bin = tempfile::tempdir().unwrap();
    let uname = bin.path().join("uname");
    std::fs::write(
        &uname,
        "#!/bin/sh\ncase \"$1\" in -m) echo arm64 ;; *) echo Darwin ;; esac\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let token = s.created.enrollment_token.clone();
    let args: Vec<String> = [
        "-s",
        "--",
        "--url",
        &s.plane.base_url(),
        "--cluster",
        s.id(),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let (code, log) = run_bash(
        &s.script,
        &args,
        &[("PATH", &path), ("TEAM_CLUSTER_ENROLLMENT_TOKEN", &token)],
    )
    .await;
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("does not run on macOS"), "{log}");
    assert!(
        log.contains("reported operating-system-not-supported"),
        "{log}"
    );
    assert!(!log.contains(&token));
    assert_eq!(
        s.plane.cluster(s.id()).unwrap().status,
        ClusterStatus::OperatingSystemNotSupported
    );
    s.plane.shutdown().await;
}
