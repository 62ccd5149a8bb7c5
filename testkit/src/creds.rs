//! Credentials at rest, as a test sees them: sealed with the real
//! `systemd-creds` where this process can seal (root), a 0600 plain file
//! otherwise — tests assert whichever this machine does.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use voltd_actors::cloud::credentials::{CredentialStore, StoredCredentials};
use voltd_actors::config::CREDENTIALS_FILE;
use voltd_actors::host::keystore::{Keystore, SealKey, sealed_path};

/// Whether voltd seals secrets when run like this test (root with a
/// working `systemd-creds`).
pub fn seals_here() -> bool {
    Keystore::detect(SealKey::Auto).is_sealed()
}

/// The credentials stored in `state_dir`, asserting how they are kept:
/// sealed only (no plain file) where [`seals_here`], else a 0600 plain file.
pub fn stored_credentials(state_dir: &Path) -> StoredCredentials {
    let plain = state_dir.join(CREDENTIALS_FILE);
    let sealed = sealed_path(&plain);
    if seals_here() {
        assert!(sealed.exists(), "{} missing", sealed.display());
        assert!(!plain.exists(), "{} is plain text", plain.display());
    } else {
        let mode = std::fs::metadata(&plain)
            .unwrap_or_else(|e| panic!("{}: {e}", plain.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", plain.display());
    }
    CredentialStore::detect()
        .peek(&plain)
        .expect("stored credentials readable")
        .expect("credentials stored")
}

/// The file the credentials live in on this machine: the sealed file where
/// [`seals_here`], else the plain one.
pub fn stored_path(state_dir: &Path) -> std::path::PathBuf {
    let plain = state_dir.join(CREDENTIALS_FILE);
    if seals_here() {
        sealed_path(&plain)
    } else {
        plain
    }
}

/// The credentials in `state_dir` if stored yet (a kill may come first),
/// asserting they are kept as [`stored_credentials`] says and are 0600.
pub fn try_stored_credentials(state_dir: &Path) -> Option<StoredCredentials> {
    let at = stored_path(state_dir);
    let meta = std::fs::metadata(&at).ok()?;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{} has mode {:o}",
        at.display(),
        meta.permissions().mode() & 0o777
    );
    Some(stored_credentials(state_dir))
}

/// The managed services' generated credentials stored in `state_dir`
/// (`{"redis": {"user", "password"}, …}`), asserting how they are kept:
/// sealed only where [`seals_here`], else a 0600 plain file.
pub fn generated_service_credentials(state_dir: &Path) -> serde_json::Value {
    use voltd_actors::host::keystore::SecretStore;
    use voltd_actors::services::resolve::{GENERATED_CREDENTIALS_FILE, GENERATED_CREDENTIALS_NAME};
    let plain = state_dir
        .join(voltd_actors::config::SERVICES_DIR)
        .join(GENERATED_CREDENTIALS_FILE);
    let sealed = sealed_path(&plain);
    if seals_here() {
        assert!(sealed.exists(), "{} missing", sealed.display());
        assert!(!plain.exists(), "{} is plain text", plain.display());
    } else {
        let mode = std::fs::metadata(&plain)
            .unwrap_or_else(|e| panic!("{}: {e}", plain.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", plain.display());
    }
    let text = SecretStore::new(Keystore::detect(SealKey::Auto), None)
        .load(&plain, GENERATED_CREDENTIALS_NAME)
        .expect("generated credentials readable")
        .expect("generated credentials stored");
    serde_json::from_str(text.expose()).expect("generated credentials are JSON")
}
