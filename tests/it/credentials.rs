//! The daemon's credentials at rest with the real `systemd-creds` (the
//! host key; root only): enrollment stores them sealed and nothing else, a
//! plain file from an older install is sealed when read (by the daemon or
//! `voltd enroll`), and what systemd decrypts for the service
//! (`LoadCredentialEncrypted=` → `$CREDENTIALS_DIRECTORY`) is what the
//! daemon uses. As another user the daemon keeps a 0600 file (tests of
//! `cloud/credentials.rs` and `tests/it/cli.rs`).

/// Run by `scripts/test.sh` as root.
mod needs_root {
    use crate::voltd_bin;
    use otp::ExitCode;
    use std::path::Path;
    use testkit::daemon::*;
    use testkit::needs_root;
    use voltd_actors::cloud::credentials::{
        CREDENTIALS_NAME, CredentialStore, StoredCredentials, save,
    };
    use voltd_actors::config::CREDENTIALS_FILE;
    use voltd_actors::host::keystore::{Keystore, sealed_path};

    fn assert_sealed_only(state: &Path, password: &str) {
        let plain = state.join(CREDENTIALS_FILE);
        let sealed = sealed_path(&plain);
        assert!(!plain.exists(), "plain credentials in {}", state.display());
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the password is readable in {}",
            sealed.display()
        );
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn enrollment_stores_only_sealed_credentials_and_a_restart_registers_with_them() {
        needs_root();
        assert!(testkit::creds::seals_here(), "systemd-creds works as root");
        let f = Fixture::start().await;
        let password = f.created.daemon_password.clone();
        assert_sealed_only(f.state.path(), &password);
        let registrations = f.plane.cluster(&f.id).unwrap().registrations;
        f.daemon.shutdown(ExitCode::Stopped, "test");
        assert_eq!(f.daemon.wait().await, ExitCode::Stopped);

        // No token any more: the sealed credentials are all there is.
        let mut s = settings(&f.plane.base_url(), &f.created, f.state.path());
        s.enrollment_token = None;
        let daemon = start_daemon(s);
        testkit::eventually(WITHIN, "registered again", async || {
            f.plane
                .cluster(&f.id)
                .filter(|c| c.connected && c.registrations > registrations)
        })
        .await;
        assert_sealed_only(f.state.path(), &password);
        daemon.shutdown(ExitCode::Stopped, "test");
        assert_eq!(daemon.wait().await, ExitCode::Stopped);
        f.plane.shutdown().await;
    }

    /// An install from before the key store: a plain 0600 file.
    fn plain_credentials(state: &Path, id: &str, password: &str, cloud_url: &str) {
        std::fs::create_dir_all(state).unwrap();
        save(
            &state.join(CREDENTIALS_FILE),
            &StoredCredentials {
                team_cluster_id: id.into(),
                daemon_password: password.into(),
                cloud_url: cloud_url.into(),
                enrolled_at: "2026-01-01T00:00:00.000Z".into(),
            },
        )
        .unwrap();
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn a_plain_credentials_file_is_sealed_by_the_daemon_that_reads_it() {
        needs_root();
        let plane = plane().await;
        let created = cluster(&plane).await;
        let id = created.team_cluster.id.clone();
        let state = tempfile::tempdir().unwrap();
        plain_credentials(
            state.path(),
            &id,
            &created.daemon_password,
            &plane.base_url(),
        );
        let mut s = settings(&plane.base_url(), &created, state.path());
        s.enrollment_token = None;
        let daemon = start_daemon(s);
        wait_connected(&plane, &id).await;
        assert_sealed_only(state.path(), &created.daemon_password);
        daemon.shutdown(ExitCode::Stopped, "test");
        assert_eq!(daemon.wait().await, ExitCode::Stopped);
        plane.shutdown().await;
    }

    /// What install.sh does on a host enrolled before: `voltd enroll`
    /// (no token) as root seals the plain file.
    #[tokio::test]
    #[ignore = "needs root"]
    async fn voltd_enroll_on_an_enrolled_host_seals_its_plain_credentials() {
        needs_root();
        let plane = plane().await;
        let created = cluster(&plane).await;
        let id = created.team_cluster.id.clone();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        plain_credentials(&state, &id, &created.daemon_password, &plane.base_url());
        let config = dir.path().join("voltd.toml");
        std::fs::write(
            &config,
            format!(
                "cloud_url = \"{}\"\nteam_cluster_id = \"{id}\"\nstate_dir = \"{}\"\n",
                plane.base_url(),
                state.display()
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(voltd_bin())
            .arg("--config")
            .arg(&config)
            .arg("enroll")
            .env_remove("VOLTD_CONFIG")
            .env_remove("TEAM_CLUSTER_ENROLLMENT_TOKEN")
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("was already enrolled"), "{text}");
        assert!(text.contains("sealed with systemd-creds"), "{text}");
        assert_sealed_only(&state, &created.daemon_password);
        plane.shutdown().await;
    }

    /// systemd's side of `LoadCredentialEncrypted=`: it decrypts the sealed
    /// file (as root) into the service's credentials directory; the
    /// daemon, which cannot unseal itself as its own user, reads it there.
    #[test]
    #[ignore = "needs root"]
    fn the_service_reads_what_systemd_decrypted_for_it() {
        needs_root();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join(CREDENTIALS_FILE);
        let creds = StoredCredentials {
            team_cluster_id: "c1".into(),
            daemon_password: "pw-sealed-123".into(),
            cloud_url: "https://cloud.example".into(),
            enrolled_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let root = CredentialStore::detect();
        assert!(root.is_sealed());
        root.save(&plain, &creds).unwrap();
        let creds_dir = dir.path().join("credentials");
        std::fs::create_dir(&creds_dir).unwrap();
        let status = std::process::Command::new("systemd-creds")
            .arg("decrypt")
            .arg(format!("--name={CREDENTIALS_NAME}"))
            .arg(sealed_path(&plain))
            .arg(creds_dir.join(CREDENTIALS_NAME))
            .status()
            .unwrap();
        assert!(status.success());
        let service = CredentialStore::new(Keystore::PlainFile, Some(creds_dir));
        assert_eq!(service.load(&plain).unwrap(), Some(creds));
        assert!(!plain.exists(), "the service writes no plain copy");
    }
}
