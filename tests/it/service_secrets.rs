//! The managed services' secrets at rest with the real `systemd-creds` (the
//! host key; root only), the way install.sh and systemd run voltd:
//!
//! 1. `voltd enroll` as root stores the daemon's credentials, the install
//!    manifest and the services' pre-generated passwords sealed only;
//! 2. the test does systemd's part of `LoadCredentialEncrypted=` (decrypts
//!    each sealed file into a credentials directory) and of
//!    `RuntimeDirectory=`, and runs `voltd run` as an unprivileged user (it
//!    cannot seal, like user `volt` on systemd < 256);
//! 3. the daemon registers, Redis starts and authenticates with the sealed
//!    password, and no file under the state directory (nor the install
//!    directory) holds any secret's bytes.
//!
//! Also: plain files of an older install are sealed by `voltd enroll`, and a
//! host without a key store keeps 0600 files.

use crate::voltd_bin;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use testkit::standins::{WITHIN, redis_command};
use testkit::{eventually, free_port};
use tokio::process::{Child, Command};
use volt_plane::{CreatedCluster, PlaneHandle};
use volt_protocol::enrollment::InstallManifest;
use voltd_actors::cloud::credentials::{self, CREDENTIALS_NAME, MANIFEST_NAME};
use voltd_actors::config::{CREDENTIALS_FILE, MANIFEST_FILE, SERVICES_DIR};
use voltd_actors::host::keystore::{Keystore, SecretStore, sealed_path};
use voltd_actors::services::resolve::{GENERATED_CREDENTIALS_FILE, GENERATED_CREDENTIALS_NAME};

/// `nobody`: an account that cannot read the host key, like `volt`.
const UNPRIVILEGED: u32 = 65534;

/// The secret files of a state directory: (key store name, path).
fn secret_files(state: &Path) -> [(&'static str, PathBuf); 3] {
    [
        (CREDENTIALS_NAME, state.join(CREDENTIALS_FILE)),
        (MANIFEST_NAME, state.join(MANIFEST_FILE)),
        (
            GENERATED_CREDENTIALS_NAME,
            state.join(SERVICES_DIR).join(GENERATED_CREDENTIALS_FILE),
        ),
    ]
}

struct Host {
    _dir: tempfile::TempDir,
    plane: PlaneHandle,
    created: CreatedCluster,
    config: PathBuf,
    state: PathBuf,
    install_dir: PathBuf,
    redis_port: u16,
}

impl Host {
    /// A plane, a cluster and a config: Redis native (the real
    /// redis-server), MongoDB and MinIO off; with `manifest`, the install
    /// manifest is requested at enrollment (Redis's password then comes
    /// from it, else it is generated).
    async fn new(manifest: bool) -> Host {
        let dir = tempfile::tempdir().unwrap();
        // Every user may traverse to the state directory (it is 0700 itself).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let plane = testkit::daemon::plane().await;
        let created = plane.create_cluster(Default::default()).await.unwrap();
        let state = dir.path().join("state");
        let install_root = dir.path().join("install");
        let redis_port = free_port();
        let mut text = format!(
            "cloud_url = {:?}\nteam_cluster_id = {:?}\nstate_dir = {:?}\nheartbeat_interval_ms = 500\n\n[install]\ninstall_root = {:?}\n",
            plane.base_url(),
            created.team_cluster.id,
            state.display().to_string(),
            install_root.display().to_string(),
        );
        if manifest {
            text.push_str(&format!(
                "fetch_manifest = true\nports = {{ minio = {}, redis = {redis_port}, mongodb = {}, daemon = {} }}\n",
                free_port(),
                free_port(),
                free_port()
            ));
        }
        let command: Vec<String> = redis_command().iter().map(|a| format!("{a:?}")).collect();
        text.push_str(&format!(
            "\n[services.redis]\ncommand = [{}]\nport = {redis_port}\nprobe_interval_ms = 300\nstart_timeout_ms = 45000\n\n[services.mongo]\nmode = \"disabled\"\n\n[services.minio]\nmode = \"disabled\"\n",
            command.join(", ")
        ));
        let config = dir.path().join("voltd.toml");
        std::fs::write(&config, text).unwrap();
        let install_dir = install_root.join(&created.team_cluster.id);
        Host {
            _dir: dir,
            plane,
            created,
            config,
            state,
            install_dir,
            redis_port,
        }
    }

    fn id(&self) -> &str {
        &self.created.team_cluster.id
    }

    /// `voltd enroll` as root (as install.sh runs it), the token in the
    /// environment; returns stdout.
    async fn enroll(&self, token: Option<&str>, path: Option<&str>) -> String {
        let mut cmd = Command::new(voltd_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("enroll")
            .env_remove("VOLTD_CONFIG")
            .env_remove("TEAM_CLUSTER_ENROLLMENT_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(t) = token {
            cmd.env("TEAM_CLUSTER_ENROLLMENT_TOKEN", t);
        }
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let out = cmd.output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// systemd's part of `LoadCredentialEncrypted=NAME:FILE.cred`: each
    /// sealed file decrypted (as root) into a directory only the service's
    /// user can read.
    fn credentials_directory(&self) -> PathBuf {
        let dir = self.state.parent().unwrap().join("credentials");
        std::fs::create_dir(&dir).unwrap();
        for (name, plain) in secret_files(&self.state) {
            let sealed = sealed_path(&plain);
            if !sealed.exists() {
                continue;
            }
            let status = std::process::Command::new("systemd-creds")
                .arg("decrypt")
                .arg(format!("--name={name}"))
                .arg(&sealed)
                .arg(dir.join(name))
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "systemd-creds decrypt {name}");
        }
        chown_r(&dir);
        dir
    }

    /// `voltd run` as the unprivileged user, with systemd's credentials
    /// and runtime directories.
    fn run_unprivileged(&self, credentials: &Path, runtime: &Path) -> Child {
        chown_r(&self.state);
        Command::new("setpriv")
            .arg(format!("--reuid={UNPRIVILEGED}"))
            .arg(format!("--regid={UNPRIVILEGED}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(voltd_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env_remove("RUST_LOG")
            .env_remove("VOLTD_CONFIG")
            .env("CREDENTIALS_DIRECTORY", credentials)
            .env("RUNTIME_DIRECTORY", runtime)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("setpriv runs voltd")
    }
}

fn chown_r(path: &Path) {
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{UNPRIVILEGED}:{UNPRIVILEGED}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every regular file under `root` holding one of `secrets`' bytes.
fn files_holding(root: &Path, secrets: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                if secrets
                    .iter()
                    .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
                {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

/// The values after `PASSWORD=` / `_KEY=` / `>` in the manifest's files:
/// every secret the server sent.
fn manifest_secrets(m: &InstallManifest) -> Vec<String> {
    let mut out = Vec::new();
    for f in &m.files {
        for line in f.contents.lines() {
            if let Some((k, v)) = line.split_once('=')
                && (k.ends_with("PASSWORD") || k.ends_with("SECRET_KEY"))
                && v.len() >= 16
            {
                out.push(v.to_owned());
            }
            out.extend(
                line.split_whitespace()
                    .filter_map(|w| w.strip_prefix('>'))
                    .map(str::to_owned),
            );
        }
    }
    out.retain(|s| s.len() >= 16);
    out.sort();
    out.dedup();
    out
}

/// Run by `scripts/test.sh` as root.
mod needs_root {
    use super::*;
    use testkit::needs_root;

    /// Steps 1-3 of the module docs.
    async fn sealed_install_runs_redis_with_no_plaintext(manifest: bool) {
        needs_root();
        assert!(testkit::creds::seals_here(), "systemd-creds works as root");
        let h = Host::new(manifest).await;
        let out = h.enroll(Some(&h.created.enrollment_token), None).await;
        assert!(out.contains("sealed with systemd-creds"), "{out}");
        for (name, plain) in secret_files(&h.state) {
            // Redis's password comes from the manifest when there is one.
            let expected = match name {
                MANIFEST_NAME => manifest,
                GENERATED_CREDENTIALS_NAME => !manifest,
                _ => true,
            };
            assert!(!plain.exists(), "{} is plain text", plain.display());
            assert_eq!(sealed_path(&plain).exists(), expected, "{name}");
        }
        // The plain copies for docker compose are not written either.
        assert!(!h.install_dir.exists() || std::fs::read_dir(&h.install_dir).unwrap().count() == 0);

        // What the daemon will use, read back as root.
        let root = SecretStore::detect();
        let mut secrets = vec![h.created.daemon_password.clone()];
        let (user, password) = if manifest {
            let m = credentials::load_manifest_with(&root, &h.state.join(MANIFEST_FILE))
                .unwrap()
                .expect("manifest stored");
            secrets.extend(manifest_secrets(&m));
            let env = m.env("redis.env");
            (env["REDIS_USERNAME"].clone(), env["REDIS_PASSWORD"].clone())
        } else {
            let g = testkit::creds::generated_service_credentials(&h.state);
            let user = g["redis"]["user"].as_str().unwrap().to_owned();
            let password = g["redis"]["password"].as_str().unwrap().to_owned();
            (user, password)
        };
        assert!(secrets.contains(&password) || !manifest);
        secrets.push(password.clone());
        assert!(secrets.iter().all(|s| s.len() >= 16), "{}", secrets.len());

        // A Redis ACL an older voltd left in the state directory.
        let services = h.state.join(SERVICES_DIR);
        std::fs::create_dir_all(&services).unwrap();
        let stale_acl = services.join("redis.acl");
        std::fs::write(
            &stale_acl,
            format!("user {user} on >{password} ~* &* +@all\n"),
        )
        .unwrap();

        let credentials = h.credentials_directory();
        let runtime = h.state.parent().unwrap().join("run-voltd");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown_r(&runtime);
        let mut daemon = h.run_unprivileged(&credentials, &runtime);

        testkit::daemon::wait_connected(&h.plane, h.id()).await;
        let client = redis::Client::open(format!(
            "redis://{user}:{password}@127.0.0.1:{}/",
            h.redis_port
        ))
        .unwrap();
        let whoami: String =
            eventually(WITHIN, "Redis authenticates the sealed user", async || {
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("ACL")
                    .arg("WHOAMI")
                    .query_async(&mut c)
                    .await
                    .ok()
            })
            .await;
        assert_eq!(whoami, user);

        // Redis reads its ACL from the runtime directory (0600), and the
        // one left in the state directory is gone.
        let acl = runtime.join("redis.acl");
        assert_eq!(
            std::fs::metadata(&acl).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&acl).unwrap().contains(&password));
        assert!(!stale_acl.exists(), "the old plain ACL is removed");

        // No secret in any file of the state or install directory.
        let leaks = files_holding(&h.state, &secrets);
        assert!(leaks.is_empty(), "plain secrets in {leaks:?}");
        let leaks = files_holding(&h.install_dir, &secrets);
        assert!(leaks.is_empty(), "plain secrets in {leaks:?}");

        // SIGTERM: voltd stops Redis, then exits.
        let pid = daemon.id().expect("running") as i32;
        testkit::process::signal(pid, testkit::process::Signal::SIGTERM);
        let status = tokio::time::timeout(WITHIN, daemon.wait()).await;
        assert!(status.is_ok_and(|s| s.is_ok()), "voltd stops on SIGTERM");
        h.plane.shutdown().await;
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn with_a_manifest_no_service_secret_is_plain_in_the_state_directory() {
        sealed_install_runs_redis_with_no_plaintext(true).await;
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn generated_service_passwords_are_sealed_before_the_daemon_needs_them() {
        sealed_install_runs_redis_with_no_plaintext(false).await;
    }

    /// An install from before the key store: every secret in a plain file
    /// (and the manifest's files in the install directory). `voltd enroll`
    /// as root (no token) seals them all and keeps their values.
    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn voltd_enroll_seals_the_plain_files_of_an_older_install() {
        needs_root();
        let h = Host::new(true).await;
        // Enrolled without a key store (systemd-creds not on PATH).
        h.enroll(Some(&h.created.enrollment_token), Some("/nonexistent"))
            .await;
        let plain = SecretStore::new(Keystore::PlainFile, None);
        let manifest_before =
            credentials::load_manifest_with(&plain, &h.state.join(MANIFEST_FILE)).unwrap();
        assert!(manifest_before.is_some());
        assert!(h.install_dir.join("redis.env").exists());
        // A generated password too (a service without manifest values).
        let services = h.state.join(SERVICES_DIR);
        std::fs::create_dir_all(&services).unwrap();
        std::fs::write(
            services.join(GENERATED_CREDENTIALS_FILE),
            br#"{"mongo":{"user":"volt_mongo_1","password":"0123456789abcdef0123456789abcdef"}}"#,
        )
        .unwrap();
        for (_, p) in secret_files(&h.state) {
            assert!(p.exists() && !sealed_path(&p).exists(), "{}", p.display());
        }

        let out = h.enroll(None, None).await;
        assert!(out.contains("was already enrolled"), "{out}");
        for (_, p) in secret_files(&h.state) {
            assert!(!p.exists(), "{} still plain", p.display());
            assert!(sealed_path(&p).exists(), "{} not sealed", p.display());
        }
        assert!(
            !h.install_dir.join("redis.env").exists(),
            "the install directory's plain copies are removed"
        );
        let root = SecretStore::detect();
        assert_eq!(
            credentials::load_manifest_with(&root, &h.state.join(MANIFEST_FILE)).unwrap(),
            manifest_before
        );
        let g = testkit::creds::generated_service_credentials(&h.state);
        assert_eq!(g["mongo"]["password"], "0123456789abcdef0123456789abcdef");
        let mut secrets = vec![
            h.created.daemon_password.clone(),
            "0123456789abcdef0123456789abcdef".to_owned(),
        ];
        secrets.extend(manifest_secrets(manifest_before.as_ref().unwrap()));
        let leaks = files_holding(&h.state, &secrets);
        assert!(leaks.is_empty(), "plain secrets in {leaks:?}");

        // Nothing left to do: a second run changes nothing.
        let before: Vec<_> = secret_files(&h.state)
            .iter()
            .map(|(_, p)| std::fs::read(sealed_path(p)).unwrap())
            .collect();
        h.enroll(None, None).await;
        let after: Vec<_> = secret_files(&h.state)
            .iter()
            .map(|(_, p)| std::fs::read(sealed_path(p)).unwrap())
            .collect();
        assert_eq!(before, after);
        h.plane.shutdown().await;
    }
}

/// A host without a key store (here: no `systemd-creds` on `PATH`, which is
/// also what a non-root user gets): every secret stays a 0600 plain file,
/// and the manifest's files go to the install directory as the reference
/// writes them.
#[actix_rt::test]
async fn without_a_key_store_secrets_are_0600_files() {
    let h = Host::new(true).await;
    h.enroll(Some(&h.created.enrollment_token), Some("/nonexistent"))
        .await;
    let h_state = &h.state;
    // Redis takes its password from the manifest: no generated file.
    for (name, p) in secret_files(h_state) {
        assert!(!sealed_path(&p).exists(), "{name}");
        if name == GENERATED_CREDENTIALS_NAME {
            continue;
        }
        let mode = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }
    let mode = |f: &str| {
        std::fs::metadata(h.install_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("redis.env"), 0o600);
    assert_eq!(mode("daemon.env"), 0o600);
    h.plane.shutdown().await;
}
