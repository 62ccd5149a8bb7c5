//! Unpacking a verified artifact into an empty staging directory, refusing
//! anything that could reach outside it. Blocking: run on a blocking thread.
//!
//! The `tar` crate's own `unpack_in` rejects `..` but would still create a
//! symlink pointing anywhere and then write through it, and it keeps modes
//! such as setuid; so members are handled one by one here:
//!
//! * paths: relative, no `..`, no root; `strip_components` leading parts
//!   are dropped (a tarball's top directory) and members that end up empty
//!   are skipped;
//! * regular files: created fresh (`O_CREAT|O_EXCL|O_NOFOLLOW`), mode
//!   reduced to `rwxr-xr-x` at most (no setuid, setgid, sticky or
//!   group/other write), fsynced;
//! * directories: created `rwxr-xr-x`; never through an existing symlink
//!   (every ancestor is checked);
//! * symlinks: only relative targets made of plain names (`lib.so.1`,
//!   `sub/dir/x`), never `..` or absolute — such links resolve below their
//!   own directory, so no chain of them can leave the staging directory;
//! * hard links, devices, FIFOs, sparse files: refused;
//! * size caps: total unpacked bytes and member count.

use flate2::read::GzDecoder;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// Several times the largest unpacked artifact of the shipped catalogue (a
/// MongoDB server tarball unpacks to a few hundred MB); a gzip bomb stops
/// here instead of filling the disk.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 4 << 30;
/// Server tarballs hold a handful of files; ten thousand is generous.
pub const DEFAULT_MAX_ENTRIES: u32 = 10_000;
/// Longest member path accepted (bytes).
pub const MAX_MEMBER_PATH: usize = 1024;

/// Caps of one unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    pub max_bytes: u64,
    pub max_entries: u32,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Why an archive was refused or could not be unpacked.
#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("archive member {member:?} escapes the install directory")]
    Traversal { member: String },
    #[error(
        "archive member {member:?} is a symlink to {target:?}, which could point outside the install directory"
    )]
    UnsafeLink { member: String, target: String },
    #[error("archive member {member:?} would be written through a symlink")]
    ThroughLink { member: String },
    #[error("archive member {member:?} is a {kind}, which voltd does not unpack")]
    Unsupported { member: String, kind: String },
    #[error("archive member {member:?} appears twice")]
    Duplicate { member: String },
    #[error("the archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the archive has more than {limit} members")]
    TooManyEntries { limit: u32 },
    #[error("the archive is corrupt: {reason}")]
    Corrupt { reason: String },
    #[error("no space left on the device holding {}", path.display())]
    NoSpace { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path, e: io::Error) -> UnpackError {
    if crate::host::download::is_no_space(&e) {
        UnpackError::NoSpace {
            path: path.to_path_buf(),
        }
    } else {
        UnpackError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// What an unpack produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub files: u32,
    pub dirs: u32,
    pub links: u32,
    pub bytes: u64,
}

/// Unpacks the gzip-compressed tar `archive` into the existing, empty
/// directory `dest` (see the module docs).
pub fn unpack_tar_gz(
    archive: &Path,
    dest: &Path,
    strip_components: u8,
    limits: UnpackLimits,
) -> Result<Unpacked, UnpackError> {
    let file = File::open(archive).map_err(|e| io_err(archive, e))?;
    unpack_tar(GzDecoder::new(file), dest, strip_components, limits)
}

/// [`unpack_tar_gz`] on any reader of an uncompressed tar stream.
pub fn unpack_tar<R: Read>(
    reader: R,
    dest: &Path,
    strip_components: u8,
    limits: UnpackLimits,
) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let corrupt = |e: io::Error| {
        if crate::host::download::is_no_space(&e) {
            UnpackError::NoSpace {
                path: dest.to_path_buf(),
            }
        } else {
            UnpackError::Corrupt {
                reason: e.to_string(),
            }
        }
    };
    let mut out = Unpacked::default();
    let mut dirs_to_sync: Vec<PathBuf> = vec![dest.to_path_buf()];
    let mut seen = 0u32;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        seen += 1;
        if seen > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw_path = entry.path().map_err(corrupt)?.into_owned();
        let member = raw_path.display().to_string();
        if member.len() > MAX_MEMBER_PATH {
            return Err(UnpackError::Corrupt {
                reason: format!("a member path is longer than {MAX_MEMBER_PATH} bytes"),
            });
        }
        let Some(rel) = member_path(&raw_path, strip_components, &member)? else {
            continue;
        };
        let target = dest.join(&rel);
        let kind = entry.header().entry_type();
        check_no_links_above(dest, &rel, &member)?;
        match kind {
            tar::EntryType::Directory => match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(UnpackError::Duplicate { member }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dirs(dest, &rel, &mut dirs_to_sync, &mut out)?;
                }
                Err(e) => return Err(io_err(&target, e)),
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = rel.parent() {
                    create_dirs(dest, parent, &mut dirs_to_sync, &mut out)?;
                }
                let declared = entry.header().size().map_err(corrupt)?;
                if out.bytes.saturating_add(declared) > limits.max_bytes {
                    return Err(UnpackError::TooLarge {
                        limit: limits.max_bytes,
                    });
                }
                let mode = entry.header().mode().map_err(corrupt)?;
                let mut f = match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(file_mode(mode))
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&target)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(UnpackError::Duplicate { member });
                    }
                    Err(e) => return Err(io_err(&target, e)),
                };
                let budget = limits.max_bytes - out.bytes;
                let written = copy_capped(&mut entry, &mut f, budget).map_err(|e| match e {
                    CopyError::Read(e) => corrupt(e),
                    CopyError::Write(e) => io_err(&target, e),
                })?;
                let Some(written) = written else {
                    return Err(UnpackError::TooLarge {
                        limit: limits.max_bytes,
                    });
                };
                // The umask filtered the mode at creation: set it exactly.
                f.set_permissions(fs::Permissions::from_mode(file_mode(mode)))
                    .map_err(|e| io_err(&target, e))?;
                f.sync_all().map_err(|e| io_err(&target, e))?;
                out.bytes += written;
                out.files += 1;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| UnpackError::Corrupt {
                        reason: format!("symlink {member:?} has no target"),
                    })?
                    .into_owned();
                if !is_downward(&link) {
                    return Err(UnpackError::UnsafeLink {
                        member,
                        target: link.display().to_string(),
                    });
                }
                if let Some(parent) = rel.parent() {
                    create_dirs(dest, parent, &mut dirs_to_sync, &mut out)?;
                }
                match std::os::unix::fs::symlink(&link, &target) {
                    Ok(()) => out.links += 1,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(UnpackError::Duplicate { member });
                    }
                    Err(e) => return Err(io_err(&target, e)),
                }
            }
            tar::EntryType::Link => {
                return Err(UnpackError::Unsupported {
                    member,
                    kind: "hard link".into(),
                });
            }
            other => {
                return Err(UnpackError::Unsupported {
                    member,
                    kind: format!("{other:?}").to_lowercase(),
                });
            }
        }
    }
    for d in dirs_to_sync.iter().rev() {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(d, e))?;
    }
    Ok(out)
}

/// Places a downloaded single binary at `dest/entry` (mode `rwxr-xr-x`),
/// moving it when it is on the same filesystem.
pub fn place_binary(download: &Path, dest: &Path, entry: &Path) -> Result<(), UnpackError> {
    let mut dirs = vec![dest.to_path_buf()];
    let mut stats = Unpacked::default();
    if let Some(parent) = entry.parent() {
        create_dirs(dest, parent, &mut dirs, &mut stats)?;
    }
    let target = dest.join(entry);
    if fs::rename(download, &target).is_err() {
        fs::copy(download, &target).map_err(|e| io_err(&target, e))?;
        fs::remove_file(download).map_err(|e| io_err(download, e))?;
    }
    let f = File::open(&target).map_err(|e| io_err(&target, e))?;
    f.set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(|e| io_err(&target, e))?;
    f.sync_all().map_err(|e| io_err(&target, e))?;
    for d in dirs.iter().rev() {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(d, e))?;
    }
    Ok(())
}

/// At most `rwxr-xr-x`, at least `rw-------`.
fn file_mode(header_mode: u32) -> u32 {
    (header_mode & 0o755) | 0o600
}

/// The member's path below the staging directory, or `None` when nothing
/// is left after stripping.
fn member_path(raw: &Path, strip: u8, member: &str) -> Result<Option<PathBuf>, UnpackError> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Traversal {
                    member: member.to_owned(),
                });
            }
        }
    }
    let rel: PathBuf = parts.into_iter().skip(usize::from(strip)).collect();
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Relative, plain names only (see the module docs).
fn is_downward(target: &Path) -> bool {
    let mut any = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => any = true,
            Component::CurDir => {}
            _ => return false,
        }
    }
    any
}

/// Fails when an existing ancestor of `dest/rel` (below `dest`) is not a
/// real directory: nothing is ever written through a symlink.
fn check_no_links_above(dest: &Path, rel: &Path, member: &str) -> Result<(), UnpackError> {
    let mut at = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::ThroughLink {
                    member: member.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&at, e)),
        }
    }
    Ok(())
}

/// Creates `dest/rel` and its missing parents (`rwxr-xr-x`), refusing to
/// pass through anything but real directories.
fn create_dirs(
    dest: &Path,
    rel: &Path,
    created: &mut Vec<PathBuf>,
    stats: &mut Unpacked,
) -> Result<(), UnpackError> {
    let mut at = dest.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(UnpackError::ThroughLink {
                    member: rel.display().to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&at, e)),
        }
        fs::create_dir(&at).map_err(|e| io_err(&at, e))?;
        fs::set_permissions(&at, fs::Permissions::from_mode(0o755)).map_err(|e| io_err(&at, e))?;
        created.push(at.clone());
        stats.dirs += 1;
    }
    Ok(())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies at most `budget` bytes; `Ok(None)` when the source had more.
fn copy_capped(
    src: &mut impl Read,
    dst: &mut impl Write,
    budget: u64,
) -> Result<Option<u64>, CopyError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(Some(total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        total += n as u64;
        if total > budget {
            return Ok(None);
        }
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar built member by member with raw headers (the `tar` builder
    /// itself refuses `..`, which is what these tests need to send).
    struct RawTar(Vec<u8>);

    impl RawTar {
        fn new() -> Self {
            RawTar(Vec::new())
        }

        fn member(
            mut self,
            name: &str,
            kind: tar::EntryType,
            mode: u32,
            data: &[u8],
            link: &str,
        ) -> Self {
            let mut h = tar::Header::new_gnu();
            {
                let raw = h.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
                raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.extend_from_slice(h.as_bytes());
            self.0.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.0.extend(std::iter::repeat_n(0u8, pad));
            self
        }

        fn file(self, name: &str, data: &[u8]) -> Self {
            self.member(name, tar::EntryType::Regular, 0o644, data, "")
        }

        fn finish(mut self) -> Vec<u8> {
            self.0.extend(std::iter::repeat_n(0u8, 1024));
            self.0
        }
    }

    fn unpack(tar: Vec<u8>, strip: u8) -> (tempfile::TempDir, Result<Unpacked, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("stage");
        fs::create_dir(&dest).unwrap();
        let r = unpack_tar(&tar[..], &dest, strip, UnpackLimits::default());
        (dir, r)
    }

    #[test]
    fn a_tarball_with_a_top_directory_is_unpacked_stripped() {
        let tar = RawTar::new()
            .member("top/", tar::EntryType::Directory, 0o755, b"", "")
            .member(
                "top/bin/mongod",
                tar::EntryType::Regular,
                0o4755,
                b"#!/bin/sh\n",
                "",
            )
            .file("top/LICENSE", b"text")
            .member(
                "top/lib/libx.so",
                tar::EntryType::Symlink,
                0o777,
                b"",
                "libx.so.1",
            )
            .file("top/lib/libx.so.1", b"lib")
            .finish();
        let (dir, r) = unpack(tar, 1);
        let stats = r.unwrap();
        let dest = dir.path().join("stage");
        assert_eq!(stats.files, 3);
        assert_eq!(stats.links, 1);
        let mode = fs::metadata(dest.join("bin/mongod"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid dropped");
        assert_eq!(fs::read(dest.join("LICENSE")).unwrap(), b"text");
        assert_eq!(fs::read(dest.join("lib/libx.so")).unwrap(), b"lib");
        assert!(!dest.join("top").exists());
    }

    #[test]
    fn traversal_and_absolute_members_are_refused() {
        for name in ["../evil", "top/../../evil", "/etc/evil"] {
            let tar = RawTar::new().file(name, b"x").finish();
            let (dir, r) = unpack(tar, 0);
            assert!(
                matches!(r, Err(UnpackError::Traversal { .. })),
                "{name}: {r:?}"
            );
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn escaping_symlinks_are_refused_and_never_written_through() {
        for target in ["../../etc", "/etc", "a/../../x", ".."] {
            let tar = RawTar::new()
                .member("link", tar::EntryType::Symlink, 0o777, b"", target)
                .finish();
            let (_dir, r) = unpack(tar, 0);
            assert!(
                matches!(r, Err(UnpackError::UnsafeLink { .. })),
                "{target}: {r:?}"
            );
        }
        // A contained link followed by a member "below" it.
        let tar = RawTar::new()
            .member("d/", tar::EntryType::Directory, 0o755, b"", "")
            .member("l", tar::EntryType::Symlink, 0o777, b"", "d")
            .file("l/x", b"through")
            .finish();
        let (dir, r) = unpack(tar, 0);
        assert!(matches!(r, Err(UnpackError::ThroughLink { .. })), "{r:?}");
        assert!(!dir.path().join("stage/d/x").exists());
    }

    #[test]
    fn hard_links_devices_and_duplicates_are_refused() {
        let tar = RawTar::new()
            .file("a", b"x")
            .member("b", tar::EntryType::Link, 0o644, b"", "a")
            .finish();
        assert!(matches!(
            unpack(tar, 0).1,
            Err(UnpackError::Unsupported { .. })
        ));
        let tar = RawTar::new()
            .member("dev", tar::EntryType::Char, 0o644, b"", "")
            .finish();
        assert!(matches!(
            unpack(tar, 0).1,
            Err(UnpackError::Unsupported { .. })
        ));
        let tar = RawTar::new().file("a", b"x").file("a", b"y").finish();
        assert!(matches!(
            unpack(tar, 0).1,
            Err(UnpackError::Duplicate { .. })
        ));
    }

    #[test]
    fn sizes_and_member_counts_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let tar = RawTar::new().file("a", &[1u8; 5000]).finish();
        let limits = UnpackLimits {
            max_bytes: 4096,
            max_entries: 10,
        };
        let r = unpack_tar(&tar[..], dir.path(), 0, limits);
        assert!(
            matches!(r, Err(UnpackError::TooLarge { limit: 4096 })),
            "{r:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let mut t = RawTar::new();
        for i in 0..5 {
            t = t.file(&format!("f{i}"), b"x");
        }
        let limits = UnpackLimits {
            max_bytes: 1 << 20,
            max_entries: 3,
        };
        let r = unpack_tar(&t.finish()[..], dir.path(), 0, limits);
        assert!(
            matches!(r, Err(UnpackError::TooManyEntries { limit: 3 })),
            "{r:?}"
        );
    }

    #[test]
    fn garbage_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.tgz");
        fs::write(&archive, b"this is not gzip").unwrap();
        let dest = dir.path().join("d");
        fs::create_dir(&dest).unwrap();
        let r = unpack_tar_gz(&archive, &dest, 0, UnpackLimits::default());
        assert!(matches!(r, Err(UnpackError::Corrupt { .. })), "{r:?}");
    }

    #[test]
    fn a_single_binary_is_placed_executable() {
        let dir = tempfile::tempdir().unwrap();
        let dl = dir.path().join("minio.download");
        fs::write(&dl, b"#!/bin/sh\n").unwrap();
        let dest = dir.path().join("stage");
        fs::create_dir(&dest).unwrap();
        place_binary(&dl, &dest, Path::new("bin/minio")).unwrap();
        let m = fs::metadata(dest.join("bin/minio")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        assert!(!dl.exists());
    }
}
