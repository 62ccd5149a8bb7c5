//! The file manager's changes on a writable root: `mkdir`, `rename`,
//! `delete`, and `stat` (read-only). Each runs on the blocking pool, opens
//! the parent directory beneath the root and acts on the last component
//! relative to that descriptor (`mkdirat`, `renameat2`, `unlinkat`), so a
//! path swapped meanwhile can never redirect it outside the root.
//!
//! * `rename` stays within one root; it never replaces an existing entry
//!   unless `overwrite: true` (`RENAME_NOREPLACE`: the check is atomic).
//! * `delete` removes a file or symlink (never what the link points to), a
//!   directory only when empty unless `recursive: true`; the recursive walk
//!   goes through descriptors, does not follow symlinks and does not cross
//!   into other mounts.
//! * A root itself can be neither renamed nor deleted.

use super::beneath::lstat_at;
use super::{Fail, Located, entry_of, io_fail, kind_name, open_at};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde_json::{Value, json};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Mode of a directory made by `mkdir` (the process umask narrows it;
/// voltd's unit sets 0077).
const DIR_MODE: u32 = 0o755;
/// Directory levels a recursive delete descends: deeper trees are refused
/// (bounded stack, bounded descriptors).
const MAX_DELETE_DEPTH: usize = 256;
/// Entries a recursive delete removes in one command.
const MAX_DELETE_ENTRIES: usize = 1_000_000;

fn parent_and_name<'a>(loc: &'a Located, what: &str) -> Result<(OwnedFd, &'a OsStr), Fail> {
    let Some((parent, name)) = loc.split() else {
        return Err(Fail::bad_request(format!(
            "cannot {what} {}: it is a root",
            loc.display
        )));
    };
    let parent_loc = Located {
        root: loc.root.clone(),
        rel: parent.to_path_buf(),
        display: loc.display.clone(),
    };
    let dir = open_at(&parent_loc, OFlags::PATH | OFlags::DIRECTORY, what)?;
    Ok((dir, name))
}

/// `{…entry, mode, readOnly}` of one path (a symlink is described, not
/// followed).
pub fn stat(loc: &Located) -> Result<Value, Fail> {
    let st = match loc.split() {
        Some(_) => {
            let (dir, name) = parent_and_name(loc, "stat")?;
            lstat_at(&dir, name).map_err(|e| io_fail(e, "stat", &loc.display))?
        }
        None => {
            let fd = open_at(loc, OFlags::PATH, "stat")?;
            rustix::fs::fstat(&fd).map_err(|e| io_fail(e, "stat", &loc.display))?
        }
    };
    let name = loc
        .rel
        .file_name()
        .unwrap_or_else(|| OsStr::new(loc.root.name.as_str()));
    let mut e = entry_of(loc, name, &st);
    e.id = loc.display.clone();
    e.path = loc.display.clone();
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    v["mode"] = json!(format!("{:04o}", st.st_mode & 0o7777));
    v["readOnly"] = json!(loc.root.read_only);
    Ok(v)
}

pub fn mkdir(loc: &Located) -> Result<Value, Fail> {
    loc.require_writable()?;
    let (dir, name) = parent_and_name(loc, "create")?;
    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(DIR_MODE))
        .map_err(|e| io_fail(e, "create", &loc.display))?;
    Ok(json!({ "created": true, "path": loc.display }))
}

pub fn rename(from: &Located, to: &Located, overwrite: bool) -> Result<Value, Fail> {
    from.require_writable()?;
    if from.root.name != to.root.name {
        return Err(Fail::bad_request(format!(
            "cannot move {} to {}: a move stays within one root",
            from.display, to.display
        )));
    }
    let (src_dir, src) = parent_and_name(from, "move")?;
    let (dst_dir, dst) = parent_and_name(to, "move")?;
    let flags = if overwrite {
        RenameFlags::empty()
    } else {
        RenameFlags::NOREPLACE
    };
    rustix::fs::renameat_with(&src_dir, src, &dst_dir, dst, flags).map_err(|e| match e {
        Errno::EXIST => Fail::new(
            409,
            "ALREADY_EXISTS",
            format!(
                "cannot move {} to {}: the destination exists (pass overwrite: true to replace it)",
                from.display, to.display
            ),
        ),
        Errno::NOTEMPTY => Fail::new(
            409,
            "ALREADY_EXISTS",
            format!(
                "cannot move {} to {}: the destination is a directory that is not empty",
                from.display, to.display
            ),
        ),
        Errno::INVAL => Fail::bad_request(format!(
            "cannot move {} into itself ({})",
            from.display, to.display
        )),
        other => io_fail(other, "move", &from.display),
    })?;
    Ok(json!({ "renamed": true, "from": from.display, "to": to.display }))
}

pub fn delete(loc: &Located, recursive: bool) -> Result<Value, Fail> {
    loc.require_writable()?;
    let (dir, name) = parent_and_name(loc, "delete")?;
    let st = lstat_at(&dir, name).map_err(|e| io_fail(e, "delete", &loc.display))?;
    let t = FileType::from_raw_mode(st.st_mode);
    let mut removed = 0usize;
    if t == FileType::Directory {
        if recursive {
            empty_tree(&dir, name, st.st_dev, 0, &mut removed)
                .map_err(|e| io_fail(e, "delete", &loc.display))?;
        }
        rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)
            .map_err(|e| io_fail(e, "delete", &loc.display))?;
    } else {
        rustix::fs::unlinkat(&dir, name, AtFlags::empty())
            .map_err(|e| io_fail(e, "delete", &loc.display))?;
    }
    removed += 1;
    Ok(json!({ "deleted": true, "path": loc.display, "type": kind_name(t), "removed": removed }))
}

/// Empties the directory `name` in `parent` through descriptors: no
/// symlink is followed (`O_NOFOLLOW`), no other mount entered.
fn empty_tree(
    parent: &impl AsFd,
    name: &OsStr,
    dev: u64,
    depth: usize,
    removed: &mut usize,
) -> Result<(), Errno> {
    if depth >= MAX_DELETE_DEPTH {
        return Err(Errno::LOOP);
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if rustix::fs::fstat(&dir)?.st_dev != dev {
        return Err(Errno::XDEV);
    }
    // Names first (the directory changes while entries are removed).
    let mut names: Vec<Vec<u8>> = Vec::new();
    for item in rustix::fs::Dir::read_from(&dir)? {
        let item = item?;
        let n = item.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        if *removed >= MAX_DELETE_ENTRIES {
            return Err(Errno::FBIG);
        }
        let n = OsStr::from_bytes(&n);
        let st = match lstat_at(&dir, n) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            empty_tree(&dir, n, dev, depth + 1, removed)?;
            rustix::fs::unlinkat(&dir, n, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(&dir, n, AtFlags::empty())?;
        }
        *removed += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::locate;
    use super::*;
    use crate::config::HostRoot;

    fn roots(read_only: bool) -> (tempfile::TempDir, Vec<HostRoot>) {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("data/a/b")).unwrap();
        std::fs::write(base.join("data/a/b/f"), "x").unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/keep"), "keep").unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("data/a/link")).unwrap();
        let roots = vec![
            HostRoot {
                name: "data".into(),
                path: base.join("data"),
                read_only,
            },
            HostRoot {
                name: "other".into(),
                path: base.join("outside"),
                read_only: false,
            },
        ];
        (d, roots)
    }

    fn at(roots: &[HostRoot], p: &str) -> Located {
        locate(roots, p).unwrap().unwrap()
    }

    #[test]
    fn mkdir_rename_delete_on_a_writable_root() {
        let (d, r) = roots(false);
        let base = d.path().canonicalize().unwrap();
        mkdir(&at(&r, "data/new")).unwrap();
        assert_eq!(mkdir(&at(&r, "data/new")).unwrap_err().status, 409);
        assert_eq!(mkdir(&at(&r, "data/nope/new")).unwrap_err().status, 404);
        rename(&at(&r, "data/a/b/f"), &at(&r, "data/new/g"), false).unwrap();
        assert!(base.join("data/new/g").is_file());
        std::fs::write(base.join("data/new/h"), "h").unwrap();
        assert_eq!(
            rename(&at(&r, "data/new/g"), &at(&r, "data/new/h"), false)
                .unwrap_err()
                .status,
            409
        );
        rename(&at(&r, "data/new/g"), &at(&r, "data/new/h"), true).unwrap();
        assert_eq!(
            std::fs::read_to_string(base.join("data/new/h")).unwrap(),
            "x"
        );
        assert_eq!(
            rename(&at(&r, "data/new/h"), &at(&r, "other/h"), false)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            rename(&at(&r, "data/a"), &at(&r, "data/a/b/a"), false)
                .unwrap_err()
                .status,
            400
        );
        // Not empty without recursive; recursive does not follow the link.
        assert_eq!(delete(&at(&r, "data/a"), false).unwrap_err().status, 409);
        let v = delete(&at(&r, "data/a"), true).unwrap();
        assert_eq!(v["removed"], 3);
        assert!(!base.join("data/a").exists());
        assert_eq!(
            std::fs::read_to_string(base.join("outside/keep")).unwrap(),
            "keep"
        );
        assert_eq!(delete(&at(&r, "data"), true).unwrap_err().status, 400);
        let s = stat(&at(&r, "data/new")).unwrap();
        assert_eq!(s["type"], "directory");
        assert_eq!(s["readOnly"], false);
    }

    #[test]
    fn a_read_only_root_refuses_every_change() {
        let (_d, r) = roots(true);
        for f in [
            mkdir(&at(&r, "data/new")),
            rename(&at(&r, "data/a"), &at(&r, "data/b"), false),
            delete(&at(&r, "data/a/b/f"), false),
        ] {
            let f = f.unwrap_err();
            assert_eq!((f.status, f.code), (403, "ROOT_READ_ONLY"), "{f:?}");
        }
        assert_eq!(stat(&at(&r, "data/a/link")).unwrap()["type"], "symlink");
    }
}
