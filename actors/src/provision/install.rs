//! The install layout and the atomic switch.
//!
//! ```text
//! <deps>/<service>/
//!     <version>/                 a complete, verified install (marker inside)
//!         .voltd-artifact.json   what was installed: URL, sha256, entry
//!         bin/mongod …
//!     current -> <version>       the last version switched in (for people)
//!     .downloads/<file>[.part]   downloads in progress (resumed from here)
//!     .staging-<version>-<id>/   an install being unpacked
//!     .lock                      held while installing
//! ```
//!
//! An install is unpacked into a staging directory, its binary checked, the
//! marker written, everything fsynced, and only then renamed to
//! `<version>/` — one atomic rename — after which `current` is swapped by
//! renaming a fresh symlink over it. A crash at any point leaves either no
//! `<version>/` or a complete one: a half-finished download or unpack never
//! counts as installed, and leftovers are removed by the next install.

use super::catalogue::Artifact;
use crate::api::vocab::ServiceKind;
use crate::host::download::Sha256Digest;
use crate::host::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The marker file inside a complete install.
pub const MARKER: &str = ".voltd-artifact.json";
/// The symlink to the version switched in last.
pub const CURRENT: &str = "current";
const DOWNLOADS: &str = ".downloads";
const STAGING_PREFIX: &str = ".staging-";
const RETIRED_PREFIX: &str = ".retired-";
const LOCK: &str = ".lock";
/// Installs are readable by the service user and operators; nothing in
/// them is secret.
pub const INSTALL_DIR_MODE: u32 = 0o755;

/// What a complete install records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub service: String,
    pub version: String,
    pub sha256: String,
    pub url: String,
    pub entry: PathBuf,
}

impl Marker {
    pub fn for_artifact(a: &Artifact, fetched_from: &str) -> Self {
        Marker {
            service: a.service.name().to_owned(),
            version: a.version.clone(),
            sha256: a.sha256.to_string(),
            url: fetched_from.to_owned(),
            entry: a.entry.clone(),
        }
    }
}

/// The `deps` directory (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepsDir {
    root: PathBuf,
}

impl DepsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DepsDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn service_dir(&self, kind: ServiceKind) -> PathBuf {
        self.root.join(kind.name())
    }

    /// `<deps>/<service>/<version>`.
    pub fn version_dir(&self, a: &Artifact) -> PathBuf {
        self.service_dir(a.service).join(&a.version)
    }

    /// The binary a complete install of `a` provides.
    pub fn binary(&self, a: &Artifact) -> PathBuf {
        self.version_dir(a).join(&a.entry)
    }

    pub fn downloads_dir(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join(DOWNLOADS)
    }

    pub fn current_link(&self, kind: ServiceKind) -> PathBuf {
        self.service_dir(kind).join(CURRENT)
    }

    /// The binary of `a` when a complete install with a matching marker
    /// exists (same checksum and entry), else `None`.
    pub fn installed(&self, a: &Artifact) -> Option<PathBuf> {
        let dir = self.version_dir(a);
        let marker: Marker = serde_json::from_slice(&fs::read(dir.join(MARKER)).ok()?).ok()?;
        if marker.sha256.parse::<Sha256Digest>().ok()? != a.sha256 || marker.entry != a.entry {
            return None;
        }
        let bin = dir.join(&a.entry);
        is_executable(&bin).then_some(bin)
    }

    /// Takes the service's install lock (blocking until it is free), so
    /// that `voltd provision` and the daemon never install at once.
    pub fn lock(&self, kind: ServiceKind) -> io::Result<InstallLock> {
        let dir = self.service_dir(kind);
        ensure_dir(&dir)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
            Ok(lock) => Ok(InstallLock { _lock: lock }),
            Err((_, errno)) => Err(io::Error::from(errno)),
        }
    }

    /// Removes staging and retired directories a crashed install left
    /// (call with the lock held).
    pub fn sweep(&self, kind: ServiceKind) -> io::Result<()> {
        let dir = self.service_dir(kind);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) || name.starts_with(RETIRED_PREFIX) {
                remove_tree(&e.path())?;
            }
        }
        Ok(())
    }

    /// A fresh, empty staging directory for `a`.
    pub fn staging(&self, a: &Artifact) -> io::Result<PathBuf> {
        let dir = self.service_dir(a.service);
        ensure_dir(&dir)?;
        let path = dir.join(format!(
            "{STAGING_PREFIX}{}-{}-{:08x}",
            a.version,
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(INSTALL_DIR_MODE))?;
        Ok(path)
    }

    /// Switches the complete `staging` install in as `a`'s version
    /// directory and points `current` at it (see the module docs).
    pub fn commit(&self, staging: &Path, a: &Artifact, marker: &Marker) -> io::Result<PathBuf> {
        let bytes = serde_json::to_vec_pretty(marker).map_err(io::Error::other)?;
        write_atomic(&staging.join(MARKER), &bytes, 0o644)?;
        sync_dir(staging)?;
        let service_dir = self.service_dir(a.service);
        let final_dir = self.version_dir(a);
        // A stale install of the same version (another checksum) is moved
        // aside first; rename cannot replace a non-empty directory.
        if fs::symlink_metadata(&final_dir).is_ok() {
            let retired = service_dir.join(format!(
                "{RETIRED_PREFIX}{}-{:08x}",
                a.version,
                rand::random::<u32>()
            ));
            fs::rename(&final_dir, &retired)?;
            fs::rename(staging, &final_dir)?;
            sync_dir(&service_dir)?;
            remove_tree(&retired)?;
        } else {
            fs::rename(staging, &final_dir)?;
        }
        let tmp_link = service_dir.join(format!(".{CURRENT}-{}", std::process::id()));
        let _ = fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(&a.version, &tmp_link)?;
        fs::rename(&tmp_link, self.current_link(a.service))?;
        sync_dir(&service_dir)?;
        Ok(final_dir.join(&a.entry))
    }
}

/// Held while installing one service.
#[derive(Debug)]
pub struct InstallLock {
    _lock: nix::fcntl::Flock<File>,
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(INSTALL_DIR_MODE))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::catalogue::{Layout, Platform};

    fn artifact(version: &str, sha: &[u8]) -> Artifact {
        Artifact {
            service: ServiceKind::Minio,
            version: version.into(),
            platform: Platform::new("linux", "x86_64"),
            url: "https://dl.example/minio".into(),
            sha256: Sha256Digest::of(sha),
            size: None,
            layout: Layout::Binary,
            entry: PathBuf::from("bin/minio"),
        }
    }

    fn stage(deps: &DepsDir, a: &Artifact, body: &str) -> PathBuf {
        let s = deps.staging(a).unwrap();
        fs::create_dir(s.join("bin")).unwrap();
        fs::write(s.join("bin/minio"), body).unwrap();
        fs::set_permissions(s.join("bin/minio"), fs::Permissions::from_mode(0o755)).unwrap();
        s
    }

    #[test]
    fn commit_switches_in_a_complete_install() {
        let dir = tempfile::tempdir().unwrap();
        let deps = DepsDir::new(dir.path().join("deps"));
        let a = artifact("RELEASE.2025-02-28T09-55-16Z", b"one");
        assert_eq!(deps.installed(&a), None);
        let s = stage(&deps, &a, "one");
        // Staged is not installed.
        assert_eq!(deps.installed(&a), None);
        let bin = deps
            .commit(&s, &a, &Marker::for_artifact(&a, &a.url))
            .unwrap();
        assert_eq!(deps.installed(&a), Some(bin.clone()));
        assert_eq!(
            fs::read_link(deps.current_link(ServiceKind::Minio)).unwrap(),
            PathBuf::from(&a.version)
        );
        assert!(!s.exists());

        // Same version, other checksum: not installed until re-committed.
        let b = artifact(&a.version, b"two");
        assert_eq!(deps.installed(&b), None);
        let s = stage(&deps, &b, "two");
        deps.commit(&s, &b, &Marker::for_artifact(&b, &b.url))
            .unwrap();
        assert_eq!(deps.installed(&b), Some(bin.clone()));
        assert_eq!(fs::read_to_string(&bin).unwrap(), "two");
        assert_eq!(deps.installed(&a), None);
        let names: Vec<String> = fs::read_dir(deps.service_dir(ServiceKind::Minio))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != LOCK)
            .collect();
        assert_eq!(names.len(), 2, "version dir + current only: {names:?}");
    }

    #[test]
    fn leftovers_of_a_crash_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let deps = DepsDir::new(dir.path());
        let a = artifact("RELEASE.2025-02-28T09-55-16Z", b"one");
        let s = stage(&deps, &a, "half");
        let _lock = deps.lock(ServiceKind::Minio).unwrap();
        deps.sweep(ServiceKind::Minio).unwrap();
        assert!(!s.exists());
        assert_eq!(deps.installed(&a), None);
    }
}
