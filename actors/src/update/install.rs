//! The install directory: every release in its own directory, two symlinks
//! saying which one runs and which one ran before.
//!
//! ```text
//! /opt/voltd/releases/<version>/voltd           the binary (0755)
//! /opt/voltd/releases/<version>/manifest.json   its signed manifest
//! /opt/voltd/current  -> releases/<version>     what the unit's ExecStart runs
//! /opt/voltd/previous -> releases/<version>     what the unit's update guard runs
//! /opt/voltd/releases/.staging-*                downloads in progress
//! ```
//!
//! A symlink is switched by creating `…/.current.tmp-*` and renaming it
//! over `current` (rename(2) is atomic), then fsyncing the directory: a
//! crash leaves either the old link or the new one. The install dir is
//! written by the daemon's user (the unit lists it in `ReadWritePaths`);
//! the key that decides what may be installed is not (see
//! [`super::DEFAULT_KEY_FILE`]).
//!
//! Every function here does blocking file I/O.

use super::UpdateError;
use std::path::{Path, PathBuf};
use volt_protocol::release::validate_version;

/// Where install.sh puts releases.
/// The `[update] install_dir` default.
pub const DEFAULT_INSTALL_DIR: &str = crate::config::host::DEFAULT_UPDATE_INSTALL_DIR;
/// The binary's name inside a release directory.
pub const BINARY_FILE: &str = "voltd";
/// The manifest's name inside a release directory.
pub const MANIFEST_FILE: &str = "manifest.json";

fn io(what: &str, path: &Path, e: std::io::Error) -> UpdateError {
    UpdateError::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Where releases live and where the update marker is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallLayout {
    pub install_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl InstallLayout {
    pub fn new(install_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        InstallLayout {
            install_dir: install_dir.into(),
            state_dir: state_dir.into(),
        }
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.install_dir.join("releases")
    }

    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.releases_dir().join(version)
    }

    pub fn current_link(&self) -> PathBuf {
        self.install_dir.join("current")
    }

    pub fn previous_link(&self) -> PathBuf {
        self.install_dir.join("previous")
    }

    fn link_version(&self, link: &Path) -> Option<String> {
        let target = std::fs::read_link(link).ok()?;
        let name = target.file_name()?.to_str()?.to_owned();
        let parent_ok = target
            .parent()
            .is_some_and(|p| p == Path::new("releases") || p == self.releases_dir());
        (parent_ok && validate_version(&name).is_ok()).then_some(name)
    }

    /// The version `current` points at.
    pub fn current_version(&self) -> Option<String> {
        self.link_version(&self.current_link())
    }

    /// The version `previous` points at.
    pub fn previous_version(&self) -> Option<String> {
        self.link_version(&self.previous_link())
    }

    /// The release a binary at `exe` belongs to (canonical
    /// `<install>/releases/<v>/voltd`), if any: how a process knows which
    /// version it is, whatever version string was compiled in.
    pub fn release_of(&self, exe: &Path) -> Option<String> {
        let exe = std::fs::canonicalize(exe).ok()?;
        let releases = std::fs::canonicalize(self.releases_dir()).ok()?;
        let dir = exe.parent()?;
        if dir.parent()? != releases || exe.file_name()? != BINARY_FILE {
            return None;
        }
        let v = dir.file_name()?.to_str()?.to_owned();
        validate_version(&v).is_ok().then_some(v)
    }

    /// The release of this very process (`/proc/self/exe`).
    pub fn running_release(&self) -> Option<String> {
        std::env::current_exe()
            .ok()
            .and_then(|exe| self.release_of(&exe))
    }

    fn set_link(&self, link: &Path, version: &str) -> Result<(), UpdateError> {
        validate_version(version).map_err(|e| UpdateError::Io(e.to_string()))?;
        if !self.release_dir(version).join(BINARY_FILE).is_file() {
            return Err(UpdateError::Io(format!(
                "release {version} is not installed in {}",
                self.releases_dir().display()
            )));
        }
        let name = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut suffix = [0u8; 6];
        rand::fill(&mut suffix[..]);
        let tmp = self.install_dir.join(format!(
            ".{name}.tmp-{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        // Relative, so the install dir can be moved or bind-mounted.
        std::os::unix::fs::symlink(Path::new("releases").join(version), &tmp)
            .map_err(|e| io("create", &tmp, e))?;
        if let Err(e) = std::fs::rename(&tmp, link) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("replace", link, e));
        }
        std::fs::File::open(&self.install_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync", &self.install_dir, e))
    }

    /// Points `current` at `releases/<version>` atomically.
    pub fn set_current(&self, version: &str) -> Result<(), UpdateError> {
        self.set_link(&self.current_link(), version)
    }

    /// Points `previous` at `releases/<version>` atomically.
    pub fn set_previous(&self, version: &str) -> Result<(), UpdateError> {
        self.set_link(&self.previous_link(), version)
    }

    /// A fresh, private staging directory under `releases/`.
    pub fn new_staging_dir(&self) -> Result<PathBuf, UpdateError> {
        let releases = self.releases_dir();
        std::fs::create_dir_all(&releases).map_err(|e| io("create", &releases, e))?;
        let mut suffix = [0u8; 8];
        rand::fill(&mut suffix[..]);
        let dir = releases.join(format!(
            ".staging-{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        std::fs::create_dir(&dir).map_err(|e| io("create", &dir, e))?;
        Ok(dir)
    }

    /// Moves a verified staging directory to `releases/<version>`. A
    /// release directory of that version already there (an earlier attempt,
    /// or the same version again) is replaced, unless it is the running one.
    pub fn adopt_staging(&self, staging: &Path, version: &str) -> Result<PathBuf, UpdateError> {
        validate_version(version).map_err(|e| UpdateError::Io(e.to_string()))?;
        let dest = self.release_dir(version);
        if dest.exists() {
            if self.current_version().as_deref() == Some(version) {
                return Err(UpdateError::WrongRelease(format!(
                    "version {version} is the one running"
                )));
            }
            std::fs::remove_dir_all(&dest).map_err(|e| io("remove", &dest, e))?;
        }
        std::fs::rename(staging, &dest).map_err(|e| io("move into place", &dest, e))?;
        let releases = self.releases_dir();
        std::fs::File::open(&releases)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync", &releases, e))?;
        Ok(dest)
    }

    /// Removes every release but `current` and `previous`, and stale
    /// staging directories.
    pub fn prune(&self) -> Result<Vec<String>, UpdateError> {
        let keep: Vec<String> = [self.current_version(), self.previous_version()]
            .into_iter()
            .flatten()
            .collect();
        let mut removed = Vec::new();
        let releases = self.releases_dir();
        let entries = std::fs::read_dir(&releases).map_err(|e| io("list", &releases, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path).map_err(|e| io("remove", &path, e))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_with(versions: &[&str]) -> (tempfile::TempDir, InstallLayout) {
        let dir = tempfile::tempdir().unwrap();
        let l = InstallLayout::new(dir.path().join("opt"), dir.path().join("state"));
        for v in versions {
            let d = l.release_dir(v);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(BINARY_FILE), b"bin").unwrap();
        }
        (dir, l)
    }

    #[test]
    fn links_switch_atomically_and_name_their_release() {
        let (_d, l) = layout_with(&["1.0.0", "1.1.0"]);
        assert_eq!(l.current_version(), None);
        l.set_current("1.0.0").unwrap();
        assert_eq!(l.current_version().as_deref(), Some("1.0.0"));
        l.set_previous("1.0.0").unwrap();
        l.set_current("1.1.0").unwrap();
        assert_eq!(l.current_version().as_deref(), Some("1.1.0"));
        assert_eq!(l.previous_version().as_deref(), Some("1.0.0"));
        assert_eq!(
            std::fs::read_link(l.current_link()).unwrap(),
            Path::new("releases/1.1.0")
        );
        // The binary is reachable through the link.
        assert!(l.current_link().join(BINARY_FILE).is_file());
        assert_eq!(
            l.release_of(&l.current_link().join(BINARY_FILE)).as_deref(),
            Some("1.1.0")
        );
        // No temp links left behind.
        let names: Vec<String> = std::fs::read_dir(&l.install_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn links_refuse_missing_or_odd_releases() {
        let (_d, l) = layout_with(&["1.0.0"]);
        assert!(l.set_current("2.0.0").is_err());
        assert!(l.set_current("../x").is_err());
        assert_eq!(l.current_version(), None);
        assert_eq!(l.release_of(Path::new("/bin/sh")), None);
    }

    #[test]
    fn staging_is_adopted_and_old_releases_are_pruned() {
        let (_d, l) = layout_with(&["1.0.0", "1.1.0", "0.9.0"]);
        l.set_current("1.1.0").unwrap();
        l.set_previous("1.0.0").unwrap();
        let s = l.new_staging_dir().unwrap();
        std::fs::write(s.join(BINARY_FILE), b"new").unwrap();
        // The running version cannot be replaced under itself.
        assert!(l.adopt_staging(&s, "1.1.0").is_err());
        let dest = l.adopt_staging(&s, "1.2.0").unwrap();
        assert_eq!(std::fs::read(dest.join(BINARY_FILE)).unwrap(), b"new");
        assert!(!s.exists());
        let stale = l.new_staging_dir().unwrap();
        l.set_previous("1.1.0").unwrap();
        l.set_current("1.2.0").unwrap();
        let mut removed = l.prune().unwrap();
        removed.sort();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert!(removed.contains(&"0.9.0".to_owned()));
        assert!(removed.contains(&"1.0.0".to_owned()));
        assert!(!stale.exists());
        assert!(l.release_dir("1.1.0").exists());
        assert!(l.release_dir("1.2.0").exists());
    }
}
