//! Cluster credentials and the install manifest on disk.
//!
//! `credentials.json` (0600) holds what enrollment returned. Its presence
//! means "enrolled": a restarted voltd never enrolls again (the token is
//! single-use anyway). A corrupt file is an error, never silently replaced —
//! replacing it would throw away the only copy of the daemon password.

use crate::host::fsutil::{SECRET_FILE_MODE, write_atomic, write_json_atomic};
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
}

/// Loads stored credentials; `Ok(None)` when there are none.
pub fn load(path: &Path) -> Result<Option<StoredCredentials>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let stored: StoredCredentials =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if stored.team_cluster_id.trim().is_empty() || stored.daemon_password.is_empty() {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: "empty cluster id or password".into(),
        });
    }
    Ok(Some(stored))
}

/// Stores credentials atomically with mode 0600.
pub fn save(path: &Path, creds: &StoredCredentials) -> Result<(), StoreError> {
    write_json_atomic(path, creds, SECRET_FILE_MODE).map_err(|source| StoreError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Loads a stored install manifest, if any.
pub fn load_manifest(path: &Path) -> Result<Option<InstallManifest>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Stores the install manifest (it holds service passwords: 0600) and
/// writes its files under `install_dir` with their own modes, as the
/// reference installers do (`contents + "\n"`).
pub fn save_manifest(
    path: &Path,
    manifest: &InstallManifest,
    install_dir: Option<&Path>,
) -> Result<(), StoreError> {
    write_json_atomic(path, manifest, SECRET_FILE_MODE).map_err(|source| StoreError::Write {
        path: path.to_owned(),
        source,
    })?;
    if let Some(dir) = install_dir {
        for file in &manifest.files {
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
            let target = dir.join(rel);
            let mut contents = file.contents.clone();
            contents.push('\n');
            write_atomic(&target, contents.as_bytes(), file.mode.bits()).map_err(|source| {
                StoreError::Write {
                    path: target.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
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
