//! Uploads into a writable root: a file of any size, sent in chunks that
//! each fit in one message, invisible until it is complete.
//!
//! `begin` opens the destination's directory beneath the root and creates
//! an *unnamed* file in it (`O_TMPFILE`); `chunk` writes at the offset the
//! upload has reached (a gap or an overlap is a 409 that names where to go
//! on from); `commit` checks the announced size (and SHA-256, if given),
//! `fsync`s, and links the file into place — `linkat` to the final name
//! when nothing may be replaced (atomic: `EEXIST` is the check), else to a
//! temporary name and `renameat` over the old file. Until then nothing is
//! visible in the directory, and an upload that is aborted, left idle for
//! [`UPLOAD_IDLE`], or cut short by a crash of voltd leaves nothing behind:
//! the kernel frees an unnamed file with its last descriptor.
//!
//! Where `O_TMPFILE` is unavailable (some filesystems, no `/proc` to link
//! it through), the file is a hidden `.voltd-upload-<id>` in the same
//! directory instead, removed on abort, expiry and shutdown; only a crash
//! of voltd can leave one behind there.

use super::beneath::lstat_at;
use super::{Fail, Located, io_fail, open_at};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Uploads open at once; more `begin`s get 429.
pub const MAX_UPLOADS: usize = 16;
/// An upload with no chunk for this long is dropped (its file with it).
pub const UPLOAD_IDLE: Duration = Duration::from_secs(600);
/// Largest decoded chunk accepted (the sender is bounded by the socket's
/// `maxPayload` anyway; this bounds what one command can make voltd hold).
pub const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Mode of an uploaded file (the process umask narrows it).
const FILE_MODE: u32 = 0o644;
/// Prefix of the fallback temporary files.
pub const TEMP_PREFIX: &str = ".voltd-upload-";

/// The open uploads (cheap to clone; shared by the command handlers).
#[derive(Clone, Default)]
pub struct Uploads(Arc<Mutex<HashMap<String, Arc<Mutex<Upload>>>>>);

enum Temp {
    /// `O_TMPFILE`: no name until committed.
    Unnamed,
    /// The fallback: a hidden name in the destination directory.
    Named(OsString),
}

/// One upload in progress.
pub struct Upload {
    id: String,
    loc: Located,
    dir: OwnedFd,
    name: OsString,
    file: std::fs::File,
    temp: Temp,
    received: u64,
    size: Option<u64>,
    overwrite: bool,
    last: Instant,
    hasher: Sha256,
    committed: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let (Temp::Named(n), false) = (&self.temp, self.committed) {
            let _ = rustix::fs::unlinkat(&self.dir, n.as_os_str(), AtFlags::empty());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unknown(id: &str) -> Fail {
    Fail::new(
        404,
        "UPLOAD_NOT_FOUND",
        format!(
            "unknown upload {id:?}: never begun, already committed or aborted, or dropped after {} s without a chunk",
            UPLOAD_IDLE.as_secs()
        ),
    )
}

impl Uploads {
    /// How many uploads are open.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops uploads idle for longer than [`UPLOAD_IDLE`].
    fn sweep(&self, now: Instant) {
        lock(&self.0).retain(|_, u| match u.try_lock() {
            Ok(u) => now.duration_since(u.last) < UPLOAD_IDLE,
            Err(_) => true, // a chunk is being written: not idle
        });
    }

    fn get(&self, id: &str) -> Result<Arc<Mutex<Upload>>, Fail> {
        lock(&self.0).get(id).cloned().ok_or_else(|| unknown(id))
    }

    fn take(&self, id: &str) -> Result<Arc<Mutex<Upload>>, Fail> {
        lock(&self.0).remove(id).ok_or_else(|| unknown(id))
    }

    /// Starts an upload to `loc` (blocking).
    pub fn begin(&self, loc: Located, size: Option<u64>, overwrite: bool) -> Result<Value, Fail> {
        loc.require_writable()?;
        self.sweep(Instant::now());
        if self.len() >= MAX_UPLOADS {
            return Err(Fail::new(
                429,
                "TOO_MANY_UPLOADS",
                format!("{MAX_UPLOADS} uploads are open; commit or abort one first"),
            ));
        }
        let Some((parent, name)) = loc.split() else {
            return Err(Fail::bad_request(format!(
                "cannot upload to {}: it is a root",
                loc.display
            )));
        };
        let name = name.to_owned();
        let parent_loc = Located {
            root: loc.root.clone(),
            rel: parent.to_path_buf(),
            display: loc.display.clone(),
        };
        let dir = open_at(&parent_loc, OFlags::RDONLY | OFlags::DIRECTORY, "upload to")?;
        match lstat_at(&dir, &name) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(Fail::bad_request(format!(
                    "cannot upload to {}: it is a directory",
                    loc.display
                )));
            }
            Ok(_) if !overwrite => {
                return Err(Fail::new(
                    409,
                    "ALREADY_EXISTS",
                    format!(
                        "{} already exists (pass overwrite: true to replace it)",
                        loc.display
                    ),
                ));
            }
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_fail(e, "upload to", &loc.display)),
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (file, temp) =
            create_temp(&dir, &id).map_err(|e| io_fail(e, "upload to", &loc.display))?;
        let upload = Upload {
            id: id.clone(),
            loc,
            dir,
            name,
            file: std::fs::File::from(file),
            temp,
            received: 0,
            size,
            overwrite,
            last: Instant::now(),
            hasher: Sha256::new(),
            committed: false,
        };
        tracing::info!(upload_id = %id, path = %upload.loc.display, size, "Upload begun.");
        lock(&self.0).insert(id.clone(), Arc::new(Mutex::new(upload)));
        Ok(json!({ "uploadId": id, "received": 0, "maxChunkBytes": MAX_CHUNK_BYTES }))
    }

    /// Writes one chunk at `offset` (blocking).
    pub fn chunk(&self, id: &str, offset: u64, bytes: &[u8]) -> Result<Value, Fail> {
        if bytes.len() > MAX_CHUNK_BYTES {
            return Err(Fail::new(
                413,
                "CHUNK_TOO_LARGE",
                format!(
                    "a chunk of {} bytes is over the {MAX_CHUNK_BYTES}-byte limit",
                    bytes.len()
                ),
            ));
        }
        let upload = self.get(id)?;
        let mut u = lock(&upload);
        if offset != u.received {
            return Err(Fail::new(
                409,
                "UPLOAD_OFFSET_MISMATCH",
                format!(
                    "chunk at offset {offset}, but {} bytes were received: send from offset {}",
                    u.received, u.received
                ),
            ));
        }
        let end = u.received + bytes.len() as u64;
        if let Some(size) = u.size
            && end > size
        {
            let display = u.loc.display.clone();
            drop(u);
            self.take(id).ok();
            return Err(Fail::new(
                409,
                "UPLOAD_TOO_LARGE",
                format!(
                    "{display}: {end} bytes sent, more than the {size} announced; the upload is dropped"
                ),
            ));
        }
        if let Err(e) = u.file.write_all_at(bytes, offset) {
            let fail = io_fail(
                e.raw_os_error()
                    .map(Errno::from_raw_os_error)
                    .unwrap_or(Errno::IO),
                "write",
                &u.loc.display,
            );
            drop(u);
            self.take(id).ok();
            return Err(fail);
        }
        u.hasher.update(bytes);
        u.received = end;
        u.last = Instant::now();
        Ok(json!({ "uploadId": id, "received": end }))
    }

    /// Checks and links the file into place (blocking).
    pub fn commit(&self, id: &str, sha256: Option<&str>) -> Result<Value, Fail> {
        let upload = self.take(id)?;
        let mut u = lock(&upload);
        if let Some(size) = u.size
            && size != u.received
        {
            return Err(Fail::new(
                409,
                "UPLOAD_INCOMPLETE",
                format!(
                    "{}: {} of the {size} bytes announced were received; the upload is dropped",
                    u.loc.display, u.received
                ),
            ));
        }
        let digest = hex(&u.hasher.clone().finalize());
        if let Some(expected) = sha256
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(Fail::new(
                409,
                "UPLOAD_CHECKSUM_MISMATCH",
                format!(
                    "{}: the SHA-256 of the {} bytes received is {digest}, not {expected}; the upload is dropped",
                    u.loc.display, u.received
                ),
            ));
        }
        let display = u.loc.display.clone();
        let where_to = display.clone();
        u.file
            .sync_all()
            .map_err(|e| Fail::new(500, "IO_ERROR", format!("cannot write {display}: {e}")))?;
        place(&mut u).map_err(|e| match e {
            Errno::EXIST => Fail::new(
                409,
                "ALREADY_EXISTS",
                format!("{display} appeared meanwhile (pass overwrite: true to replace it); the upload is dropped"),
            ),
            other => io_fail(other, "upload to", &display),
        })?;
        u.committed = true;
        let _ = rustix::fs::fsync(&u.dir);
        tracing::info!(upload_id = %u.id, path = %where_to, size = u.received, "Upload committed.");
        Ok(json!({ "uploaded": true, "path": display, "size": u.received, "sha256": digest }))
    }

    /// Drops an upload and its file (blocking).
    pub fn abort(&self, id: &str) -> Result<Value, Fail> {
        let upload = self.take(id)?;
        drop(upload);
        Ok(json!({ "aborted": true, "uploadId": id }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether an unnamed file can be linked in later (`/proc/self/fd`).
fn can_link_unnamed() -> bool {
    std::path::Path::new("/proc/self/fd").is_dir()
}

fn create_temp(dir: &impl AsFd, id: &str) -> Result<(OwnedFd, Temp), Errno> {
    if can_link_unnamed() {
        match rustix::fs::openat(
            dir,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        ) {
            Ok(fd) => return Ok((fd, Temp::Unnamed)),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    let name = OsString::from(format!("{TEMP_PREFIX}{id}"));
    let fd = rustix::fs::openat(
        dir,
        name.as_os_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )?;
    Ok((fd, Temp::Named(name)))
}

/// Gives the finished file its name.
fn place(u: &mut Upload) -> Result<(), Errno> {
    let name: &OsStr = u.name.as_os_str();
    match &u.temp {
        Temp::Unnamed => {
            let proc = format!("/proc/self/fd/{}", u.file.as_raw_fd());
            if !u.overwrite {
                return rustix::fs::linkat(
                    rustix::fs::CWD,
                    proc.as_str(),
                    &u.dir,
                    name,
                    AtFlags::SYMLINK_FOLLOW,
                );
            }
            let temp = OsString::from(format!("{TEMP_PREFIX}{}", u.id));
            rustix::fs::linkat(
                rustix::fs::CWD,
                proc.as_str(),
                &u.dir,
                temp.as_os_str(),
                AtFlags::SYMLINK_FOLLOW,
            )?;
            rustix::fs::renameat(&u.dir, temp.as_os_str(), &u.dir, name).inspect_err(|_| {
                let _ = rustix::fs::unlinkat(&u.dir, temp.as_os_str(), AtFlags::empty());
            })
        }
        Temp::Named(temp) => {
            let flags = if u.overwrite {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            };
            rustix::fs::renameat_with(&u.dir, temp.as_os_str(), &u.dir, name, flags)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::locate;
    use super::*;
    use crate::config::HostRoot;

    fn setup(read_only: bool) -> (tempfile::TempDir, Vec<HostRoot>) {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().canonicalize().unwrap().join("data");
        std::fs::create_dir_all(&data).unwrap();
        (
            d,
            vec![HostRoot {
                name: "data".into(),
                path: data,
                read_only,
            }],
        )
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn chunks_become_a_file_only_at_commit() {
        let (_d, r) = setup(false);
        let dir = r[0].path.clone();
        let up = Uploads::default();
        let loc = locate(&r, "data/out.bin").unwrap().unwrap();
        let v = up.begin(loc.clone(), Some(6), false).unwrap();
        let id = v["uploadId"].as_str().unwrap().to_owned();
        up.chunk(&id, 0, b"abc").unwrap();
        assert!(names(&dir).is_empty(), "nothing visible before the commit");
        assert_eq!(up.chunk(&id, 1, b"x").unwrap_err().status, 409);
        up.chunk(&id, 3, b"def").unwrap();
        let done = up.commit(&id, None).unwrap();
        assert_eq!(done["size"], 6);
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), b"abcdef");
        assert_eq!(names(&dir), ["out.bin"]);
        // No overwrite unless asked.
        assert_eq!(up.begin(loc.clone(), None, false).unwrap_err().status, 409);
        let v = up.begin(loc, None, true).unwrap();
        let id = v["uploadId"].as_str().unwrap().to_owned();
        up.chunk(&id, 0, b"new").unwrap();
        let sha = hex(&Sha256::digest(b"new"));
        assert_eq!(
            up.commit(&id, Some("00")).unwrap_err().code,
            "UPLOAD_CHECKSUM_MISMATCH"
        );
        // (a failed commit drops the upload; start again with the checksum)
        let id = up
            .begin(locate(&r, "data/out.bin").unwrap().unwrap(), None, true)
            .unwrap()["uploadId"]
            .as_str()
            .unwrap()
            .to_owned();
        up.chunk(&id, 0, b"new").unwrap();
        up.commit(&id, Some(&sha)).unwrap();
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), b"new");
        assert_eq!(names(&dir), ["out.bin"]);
        assert!(up.is_empty());
    }

    #[test]
    fn aborted_short_and_unknown_uploads_leave_nothing() {
        let (_d, r) = setup(false);
        let dir = r[0].path.clone();
        let up = Uploads::default();
        let begin = |p: &str, size| {
            up.begin(locate(&r, p).unwrap().unwrap(), size, false)
                .unwrap()["uploadId"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let a = begin("data/a", None);
        up.chunk(&a, 0, b"partial").unwrap();
        up.abort(&a).unwrap();
        let b = begin("data/b", Some(10));
        up.chunk(&b, 0, b"short").unwrap();
        assert_eq!(up.commit(&b, None).unwrap_err().code, "UPLOAD_INCOMPLETE");
        let c = begin("data/c", Some(2));
        assert_eq!(
            up.chunk(&c, 0, b"toolong").unwrap_err().code,
            "UPLOAD_TOO_LARGE"
        );
        assert_eq!(up.chunk(&c, 0, b"x").unwrap_err().status, 404);
        assert_eq!(up.abort("nope").unwrap_err().status, 404);
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        assert!(up.is_empty());
    }

    #[test]
    fn read_only_roots_and_directories_refuse_uploads() {
        let (_d, r) = setup(true);
        let up = Uploads::default();
        let f = up
            .begin(locate(&r, "data/x").unwrap().unwrap(), None, false)
            .unwrap_err();
        assert_eq!(f.code, "ROOT_READ_ONLY");
        let (_d2, r2) = setup(false);
        std::fs::create_dir(r2[0].path.join("sub")).unwrap();
        let f = up
            .begin(locate(&r2, "data/sub").unwrap().unwrap(), None, true)
            .unwrap_err();
        assert_eq!(f.status, 400);
        assert_eq!(
            up.begin(locate(&r2, "data").unwrap().unwrap(), None, true)
                .unwrap_err()
                .status,
            400
        );
    }
}
