//! Cluster credentials and the install manifest on disk.
//!
//! `credentials.json` holds what enrollment returned. Its presence (or its
//! sealed form's) means "enrolled": a restarted voltd never enrolls again
//! (the token is single-use anyway). A corrupt file is an error, never
//! silently replaced — replacing it would throw away the only copy of the
//! daemon password.
//!
//! At rest it goes through the host's key store ([`CredentialStore`],
//! `host/keystore.rs`): where `systemd-creds` can seal (root, which is how
//! install.sh runs `voltd enroll`), only `credentials.json.cred` exists —
//! never the plain file; the sandboxed daemon then gets the plaintext from
//! systemd (`LoadCredentialEncrypted=voltd-credentials:…` in the unit's
//! drop-in → `$CREDENTIALS_DIRECTORY/voltd-credentials`). Without a key
//! store the plain file is written with mode 0600. A plain file found
//! where a key store exists is sealed and removed the first time it is
//! read (migration: `voltd enroll` as root on an enrolled host does it).

use crate::host::fsutil::{SECRET_FILE_MODE, write_atomic, write_json_atomic};
use crate::host::keystore::{
    CREDENTIALS_DIRECTORY_ENV, Keystore, KeystoreError, MAX_SECRET_LEN, SealKey, SecretStore,
    read_plain, remove_if_present,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;
use volt_protocol::enrollment::InstallManifest;
use volt_protocol::register::Secret;

/// File names inside the state directory (its layout is configuration).
pub use crate::config::{CREDENTIALS_FILE, MANIFEST_FILE};
/// Marker left by `runtime.uninstall` so a reboot does not resurrect voltd.
pub const UNINSTALLED_MARKER: &str = "uninstalled";

pub use crate::api::Credentials;

/// `credentials.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCredentials {
    pub team_cluster_id: String,
    pub daemon_password: Secret,
    /// The server they belong to.
    pub cloud_url: String,
    /// RFC 3339 time of enrollment.
    pub enrolled_at: String,
}

impl StoredCredentials {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            team_cluster_id: self.team_cluster_id.clone(),
            daemon_password: self.daemon_password.clone(),
        }
    }
}

/// Credential storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({reason}); move it away to enroll again")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot edit {path}: {reason}")]
    Edit { path: PathBuf, reason: String },
    #[error("key store for {path}: {source}{hint}")]
    Keystore {
        path: PathBuf,
        source: Box<KeystoreError>,
        hint: &'static str,
    },
}

/// The credential's name in the key store: `systemd-creds --name`, and the
/// file systemd decrypts it to in `$CREDENTIALS_DIRECTORY` (the unit's
/// drop-in names it in `LoadCredentialEncrypted=`).
pub const CREDENTIALS_NAME: &str = "voltd-credentials";

/// Where the daemon's credentials are kept at rest (see the module docs).
/// Every method blocks (files, `systemd-creds`): call them off the actor
/// thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStore {
    keystore: Keystore,
    /// `$CREDENTIALS_DIRECTORY`: what systemd decrypted for the service.
    credentials_dir: Option<PathBuf>,
}

impl CredentialStore {
    /// A key store if this process can seal (`systemd-creds` as root), else
    /// 0600 files; `$CREDENTIALS_DIRECTORY` from the environment.
    pub fn detect() -> Self {
        CredentialStore {
            keystore: Keystore::detect(SealKey::Auto),
            credentials_dir: std::env::var_os(CREDENTIALS_DIRECTORY_ENV).map(PathBuf::from),
        }
    }

    /// A given key store and credentials directory (tests, embedders).
    pub fn new(keystore: Keystore, credentials_dir: Option<PathBuf>) -> Self {
        CredentialStore {
            keystore,
            credentials_dir,
        }
    }

    /// Whether secrets are sealed at rest here.
    pub fn is_sealed(&self) -> bool {
        self.keystore.is_sealed()
    }

    fn keystore_error(path: &Path, source: KeystoreError) -> StoreError {
        StoreError::Keystore {
            path: path.to_owned(),
            hint: match source {
                KeystoreError::Failed { .. } | KeystoreError::Spawn { .. } => {
                    " (a sealed file is decrypted by systemd for the service: the unit needs the drop-in voltd.service.d/host.conf with its LoadCredentialEncrypted= lines, which install.sh writes)"
                }
                _ => "",
            },
            source: Box::new(source),
        }
    }

    /// Loads stored credentials (`Ok(None)`: not enrolled), sealing a plain
    /// file on the way when a key store exists.
    pub fn load(&self, path: &Path) -> Result<Option<StoredCredentials>, StoreError> {
        let stored = self.peek(path)?;
        if let Some(stored) = &stored
            && self.keystore.is_sealed()
            && path.exists()
        {
            self.save(path, stored)?;
            tracing::info!(path = %path.display(), "Plain credentials sealed with the host key store.");
        }
        Ok(stored)
    }

    /// [`CredentialStore::load`] without sealing a plain file (a release
    /// candidate's self-check reads, never writes).
    pub fn peek(&self, path: &Path) -> Result<Option<StoredCredentials>, StoreError> {
        let text = self
            .keystore
            .load(self.credentials_dir.as_deref(), path, CREDENTIALS_NAME)
            .map_err(|e| match e {
                KeystoreError::Io { source, .. } => StoreError::Read {
                    path: path.to_owned(),
                    source,
                },
                other => Self::keystore_error(path, other),
            })?;
        let Some(text) = text else {
            return Ok(None);
        };
        parse(text.expose().as_bytes(), path).map(Some)
    }

    /// Stores credentials atomically: sealed (`<path>.cred`, the plain file
    /// removed) where a key store exists, else `path` with mode 0600.
    pub fn save(&self, path: &Path, creds: &StoredCredentials) -> Result<(), StoreError> {
        let json = serde_json::to_string(creds).map_err(|e| StoreError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.keystore
            .store(path, CREDENTIALS_NAME, &Secret::new(json))
            .map_err(|e| match e {
                KeystoreError::Io { source, .. } => StoreError::Write {
                    path: path.to_owned(),
                    source,
                },
                other => Self::keystore_error(path, other),
            })
    }
}

/// Loads plain stored credentials; `Ok(None)` when there are none. The
/// daemon goes through [`CredentialStore::load`].
pub fn load(path: &Path) -> Result<Option<StoredCredentials>, StoreError> {
    CredentialStore::new(Keystore::PlainFile, None).load(path)
}

fn parse(bytes: &[u8], path: &Path) -> Result<StoredCredentials, StoreError> {
    let stored: StoredCredentials =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            // Where, never serde's message: it may quote the password.
            reason: format!(
                "JSON {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
    if stored.team_cluster_id.trim().is_empty() || stored.daemon_password.is_empty() {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: "empty cluster id or password".into(),
        });
    }
    Ok(stored)
}

/// Stores plain credentials atomically with mode 0600 (the daemon goes
/// through [`CredentialStore::save`]).
pub fn save(path: &Path, creds: &StoredCredentials) -> Result<(), StoreError> {
    CredentialStore::new(Keystore::PlainFile, None).save(path, creds)
}

/// The install manifest's name in the key store and in
/// `$CREDENTIALS_DIRECTORY` (drop-in: `LoadCredentialEncrypted=voltd-manifest:…`).
pub const MANIFEST_NAME: &str = "voltd-manifest";

fn manifest_store_error(path: &Path, e: KeystoreError) -> StoreError {
    match e {
        KeystoreError::Io { source, .. } => StoreError::Read {
            path: path.to_owned(),
            source,
        },
        other => CredentialStore::keystore_error(path, other),
    }
}

fn parse_manifest(text: &Secret, path: &Path) -> Result<InstallManifest, StoreError> {
    serde_json::from_str(text.expose()).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        // Where, never serde's message: it may quote a value (a password).
        reason: format!(
            "JSON {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

/// Loads a stored install manifest, if any, with this process's key store
/// (what systemd decrypted, the sealed file, the plain file). Never writes.
pub fn load_manifest(path: &Path) -> Result<Option<InstallManifest>, StoreError> {
    load_manifest_with(SecretStore::shared(), path)
}

/// [`load_manifest`] with a given key store.
pub fn load_manifest_with(
    store: &SecretStore,
    path: &Path,
) -> Result<Option<InstallManifest>, StoreError> {
    match store
        .load(path, MANIFEST_NAME)
        .map_err(|e| manifest_store_error(path, e))?
    {
        Some(text) => parse_manifest(&text, path).map(Some),
        None => Ok(None),
    }
}

/// The manifest's files as they go under the install directory, each
/// checked not to climb out of it.
fn manifest_targets(
    manifest: &InstallManifest,
    dir: &Path,
) -> Result<Vec<(PathBuf, String, u32)>, StoreError> {
    manifest
        .files
        .iter()
        .map(|file| {
            let rel = Path::new(&file.path);
            // Manifest paths are relative file names; refuse anything that
            // could climb out of the install directory.
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(StoreError::Write {
                    path: dir.join(rel),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "manifest file path escapes the install directory",
                    ),
                });
            }
            let mut contents = file.contents.clone();
            contents.push('\n');
            Ok((dir.join(rel), contents, file.mode.bits()))
        })
        .collect()
}

/// Stores the install manifest as a 0600 plain file and writes its files
/// under `install_dir` (see [`save_manifest_with`]; the daemon goes through
/// that one).
pub fn save_manifest(
    path: &Path,
    manifest: &InstallManifest,
    install_dir: Option<&Path>,
) -> Result<(), StoreError> {
    save_manifest_with(
        &SecretStore::new(Keystore::PlainFile, None),
        path,
        manifest,
        install_dir,
    )
}

/// Stores the install manifest (it holds the service passwords and, in
/// `daemon.env`, the daemon password).
///
/// * Where `store` seals: only `<path>.cred` (a plain file removed), and
///   **no** file goes to `install_dir` — those are the reference's files
///   for docker compose, all of them in plain text (`daemon.env`,
///   `*.env`, `redis.acl`); voltd reads the sealed manifest instead. Copies
///   an earlier run wrote there are removed when they still hold exactly
///   the manifest's contents (an edited file is left alone).
/// * Otherwise: `path` with mode 0600, and the files written under
///   `install_dir` with their own modes, as the reference installers do
///   (`contents + "\n"`).
pub fn save_manifest_with(
    store: &SecretStore,
    path: &Path,
    manifest: &InstallManifest,
    install_dir: Option<&Path>,
) -> Result<(), StoreError> {
    let targets = match install_dir {
        Some(dir) => manifest_targets(manifest, dir)?,
        None => Vec::new(),
    };
    let write_err = |e: KeystoreError| match e {
        KeystoreError::Io { source, .. } => StoreError::Write {
            path: path.to_owned(),
            source,
        },
        other => CredentialStore::keystore_error(path, other),
    };
    if store.is_sealed() {
        let mut json = serde_json::to_string(manifest).map_err(|e| StoreError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if json.len() > MAX_SECRET_LEN && manifest.build_context_archive_base64.is_some() {
            // The docker build context (a source archive) is for compose's
            // build mode, which voltd never uses; the rest must fit.
            let mut slim = manifest.clone();
            slim.build_context_archive_base64 = None;
            json = serde_json::to_string(&slim).map_err(|e| StoreError::Write {
                path: path.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        store
            .store(path, MANIFEST_NAME, &Secret::new(json))
            .map_err(write_err)?;
        for (target, contents, _) in &targets {
            if std::fs::read(target).is_ok_and(|b| b == contents.as_bytes()) {
                remove_if_present(target).map_err(write_err)?;
            }
        }
        return Ok(());
    }
    write_json_atomic(path, manifest, SECRET_FILE_MODE).map_err(|source| StoreError::Write {
        path: path.to_owned(),
        source,
    })?;
    for (target, contents, mode) in targets {
        write_atomic(&target, contents.as_bytes(), mode).map_err(|source| StoreError::Write {
            path: target,
            source,
        })?;
    }
    Ok(())
}

/// Seals a plain stored manifest where `store` seals (migration: `voltd
/// enroll` as root on a host enrolled before, or a daemon run as root).
/// Returns whether it did.
pub fn seal_manifest(
    store: &SecretStore,
    path: &Path,
    install_dir: Option<&Path>,
) -> Result<bool, StoreError> {
    if !store.is_sealed() || !path.exists() {
        return Ok(false);
    }
    let Some(text) = read_plain(path).map_err(|e| manifest_store_error(path, e))? else {
        return Ok(false);
    };
    let manifest = parse_manifest(&text, path)?;
    save_manifest_with(store, path, &manifest, install_dir)?;
    tracing::info!(path = %path.display(), "Plain install manifest sealed with the host key store.");
    Ok(true)
}

/// Removes `key` from a TOML config file, keeping comments and layout.
/// Used to drop the one-time enrollment token after it was used.
pub fn remove_toml_key(path: &Path, key: &str) -> Result<bool, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| StoreError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| StoreError::Edit {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
    if doc.remove(key).is_none() {
        return Ok(false);
    }
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(SECRET_FILE_MODE);
    write_atomic(path, doc.to_string().as_bytes(), mode).map_err(|source| StoreError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(true)
}

/// The install manifest's modification time, plain or sealed, whichever
/// was written last: a change means service credentials, ports or the
/// catalogue may have changed (enrollment stores it after the services
/// started).
pub fn manifest_stamp(settings: &crate::config::Settings) -> Option<std::time::SystemTime> {
    let plain = settings.manifest_file();
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    mtime(&plain).max(mtime(&crate::host::keystore::sealed_path(&plain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use volt_protocol::enrollment::{FileMode, ManifestFile};

    fn creds() -> StoredCredentials {
        StoredCredentials {
            team_cluster_id: "c1".into(),
            daemon_password: Secret::new("pw-123"),
            cloud_url: "http://x".into(),
            enrolled_at: "2026-11-23T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn save_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CREDENTIALS_FILE);
        assert!(load(&p).unwrap().is_none());
        save(&p, &creds()).unwrap();
        assert_eq!(load(&p).unwrap().unwrap(), creds());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// A stand-in for `systemd-creds` that passes stdin through (sealing
    /// for real needs root: see the `needs_root` tests of `tests/it`).
    fn passthrough_keystore(dir: &Path) -> Keystore {
        let prog = dir.join("fake-creds");
        std::fs::write(&prog, "#!/bin/sh\ncat\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        Keystore::SystemdCreds {
            program: prog,
            key: SealKey::Auto,
        }
    }

    #[test]
    fn with_a_key_store_only_the_sealed_file_exists_and_a_plain_one_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CREDENTIALS_FILE);
        let sealed = crate::host::keystore::sealed_path(&p);
        let store = CredentialStore::new(passthrough_keystore(dir.path()), None);
        store.save(&p, &creds()).unwrap();
        assert!(!p.exists() && sealed.exists());
        assert_eq!(store.load(&p).unwrap().unwrap(), creds());

        // An older install left a plain file: reading it seals it.
        std::fs::remove_file(&sealed).unwrap();
        save(&p, &creds()).unwrap();
        assert_eq!(store.peek(&p).unwrap().unwrap(), creds());
        assert!(p.exists(), "peek never writes");
        assert_eq!(store.load(&p).unwrap().unwrap(), creds());
        assert!(!p.exists() && sealed.exists(), "migrated");
        assert_eq!(
            std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // What systemd decrypted for the service wins.
        let creds_dir = dir.path().join("creds");
        std::fs::create_dir(&creds_dir).unwrap();
        let other = StoredCredentials {
            team_cluster_id: "c2".into(),
            ..creds()
        };
        std::fs::write(
            creds_dir.join(CREDENTIALS_NAME),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        let service = CredentialStore::new(Keystore::PlainFile, Some(creds_dir));
        assert_eq!(service.load(&p).unwrap().unwrap(), other);
    }

    #[test]
    fn with_a_key_store_the_manifest_is_sealed_and_writes_no_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = InstallManifest {
            manifest_version: "1.0.0".into(),
            compose_project_name: "p".into(),
            files: vec![
                ManifestFile {
                    path: "redis.env".into(),
                    contents: "REDIS_PASSWORD=r-secret".into(),
                    mode: FileMode::Number(0o600),
                },
                ManifestFile {
                    path: "daemon.env".into(),
                    contents: "TEAM_CLUSTER_DAEMON_PASSWORD=d-secret".into(),
                    mode: FileMode::Number(0o600),
                },
            ],
            images: serde_json::Value::Null,
            build_context_archive_base64: None,
        };
        let install = dir.path().join("install/c1");
        let path = dir.path().join(MANIFEST_FILE);
        let sealed = crate::host::keystore::sealed_path(&path);
        // An older install: plain manifest, plain copies, one edited since.
        save_manifest(&path, &m, Some(&install)).unwrap();
        std::fs::write(install.join("daemon.env"), "edited by hand\n").unwrap();

        let root = SecretStore::new(passthrough_keystore(dir.path()), None);
        assert!(seal_manifest(&root, &path, Some(&install)).unwrap());
        assert!(!path.exists() && sealed.exists());
        assert!(!install.join("redis.env").exists(), "plain copy removed");
        assert_eq!(
            std::fs::read_to_string(install.join("daemon.env")).unwrap(),
            "edited by hand\n",
            "an edited file is left alone"
        );
        assert!(!seal_manifest(&root, &path, Some(&install)).unwrap());
        assert_eq!(load_manifest_with(&root, &path).unwrap(), Some(m.clone()));

        // Storing anew writes nothing in plain text.
        std::fs::remove_file(install.join("daemon.env")).unwrap();
        save_manifest_with(&root, &path, &m, Some(&install)).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&install).unwrap().count(), 0);

        // The daemon reads what systemd decrypted.
        let creds_dir = dir.path().join("creds");
        std::fs::create_dir(&creds_dir).unwrap();
        std::fs::copy(&sealed, creds_dir.join(MANIFEST_NAME)).unwrap();
        std::fs::remove_file(&sealed).unwrap();
        let daemon = SecretStore::new(Keystore::PlainFile, Some(creds_dir));
        assert_eq!(load_manifest_with(&daemon, &path).unwrap(), Some(m));
        assert!(!seal_manifest(&daemon, &path, None).unwrap());
    }

    #[test]
    fn corrupt_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CREDENTIALS_FILE);
        std::fs::write(&p, b"{not json").unwrap();
        let err = load(&p).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"{not json");
        std::fs::write(
            &p,
            br#"{"teamClusterId":"","daemonPassword":"x","cloudUrl":"","enrolledAt":""}"#,
        )
        .unwrap();
        assert!(load(&p).is_err());
    }

    #[test]
    fn errors_never_contain_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir/x/").join(CREDENTIALS_FILE);
        std::fs::write(dir.path().join("missing-dir"), b"file, not dir").unwrap();
        let err = save(&p, &creds()).unwrap_err();
        assert!(!err.to_string().contains("pw-123"));
        assert!(!format!("{err:?}").contains("pw-123"));
        assert!(!format!("{:?}", creds()).contains("pw-123"));
    }

    #[test]
    fn removes_the_token_key_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("voltd.toml");
        std::fs::write(
            &p,
            "# my config\ncloud_url = \"http://x\" # server\nenrollment_token = \"abc\"\n\n[socket]\nca_file = \"/c\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(remove_toml_key(&p, "enrollment_token").unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("abc"));
        assert!(text.contains("# my config"));
        assert!(text.contains("cloud_url = \"http://x\" # server"));
        assert!(text.contains("[socket]"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!remove_toml_key(&p, "enrollment_token").unwrap());
    }

    #[test]
    fn manifest_files_are_written_with_their_modes_and_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = InstallManifest {
            manifest_version: "1.0.0".into(),
            compose_project_name: "p".into(),
            files: vec![
                ManifestFile {
                    path: "redis.env".into(),
                    contents: "REDIS_PASSWORD=x".into(),
                    mode: FileMode::Number(0o600),
                },
                ManifestFile {
                    path: "redis.acl".into(),
                    contents: "user default off".into(),
                    mode: FileMode::Text("0644".into()),
                },
            ],
            images: serde_json::Value::Null,
            build_context_archive_base64: None,
        };
        let install = dir.path().join("install/c1");
        let state = dir.path().join("state").join(MANIFEST_FILE);
        save_manifest(&state, &m, Some(&install)).unwrap();
        assert_eq!(load_manifest(&state).unwrap().unwrap(), m);
        assert_eq!(
            std::fs::read_to_string(install.join("redis.env")).unwrap(),
            "REDIS_PASSWORD=x\n"
        );
        let mode = |p: &str| {
            std::fs::metadata(install.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("redis.env"), 0o600);
        assert_eq!(mode("redis.acl"), 0o644);

        m.files[0].path = "../evil".into();
        assert!(save_manifest(&state, &m, Some(&install)).is_err());
        assert!(!dir.path().join("install/evil").exists());
    }
}
