//! `host-files`: the host's file explorer and file manager, confined to
//! configured roots by construction.
//!
//! Paths are `<root name>/<relative path>` (or an absolute path inside a
//! root's directory). A NUL byte is a 400 and `..` a 403 before anything is
//! touched. Everything else is the kernel's job: each operation opens the
//! root, then resolves the rest *beneath* it with `openat2(RESOLVE_BENEATH
//! | RESOLVE_NO_MAGICLINKS)` ([`beneath`]) and works on the descriptor it
//! got, never on the path again. A symlink that leads out of its root
//! (relative and climbing, or absolute) is a 403; a loop is a 400.
//!
//! | command | does |
//! |---|---|
//! | `list` | the roots, or a directory's children (`directory`/`file`/`symlink`/`other`, with size and modification time), sorted by name, paginated |
//! | `node` | a regular file's first 64 KiB as text; a directory is `empty` |
//! | `download` | a regular file, streamed, exactly the size announced in `content-length` |
//! | `stat` | one entry with its mode and whether its root is writable |
//! | `mkdir`, `rename`, `delete` | change a writable root ([`ops`]) |
//! | `upload.begin/chunk/commit/abort` | a file of any size in chunks, invisible until committed ([`uploads`]) |
//!
//! Reads accept regular files only: a FIFO, socket or device is refused
//! with a 400 naming what it is, before it is opened for reading (a FIFO
//! would block the open, a device could stream forever). A download stops
//! at the size it announced, and fails (rather than ending short) when the
//! file shrank meanwhile. Every filesystem call runs on the blocking pool,
//! never on the actor thread.

pub mod beneath;
pub mod ops;
pub mod uploads;

pub use super::shapes::Fail;
use super::shapes::{Entry, Listing, Node, Page, download_headers, stream};
use crate::api::reply::Reply;
use crate::config::HostRoot;
use beneath::{Strategy, lstat_at, open_beneath};
use futures_util::StreamExt;
use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::BinaryHeap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncReadExt;

pub use uploads::Uploads;

/// Bytes of a file shown in a node (as for objects).
pub const MAX_PREVIEW_BYTES: usize = 65_536;
/// Entries of a listing page when the request names no `limit`: a page
/// is for a person to read.
pub const DEFAULT_PAGE: usize = 1_000;
/// Largest `limit` a listing accepts.
pub const MAX_PAGE: usize = 5_000;
/// Read size while streaming a download.
const READ_CHUNK: usize = 64 * 1024;

/// The state of the host file manager (open uploads), shared by the
/// commands through the [`HandlerContext`].
#[derive(Clone, Default)]
pub struct HostFiles {
    pub uploads: Uploads,
}

/// What an error number means for `what` (an action) on `path` (as the
/// person wrote it, root name first).
pub fn io_fail(e: Errno, what: &str, path: &str) -> Fail {
    match e {
        Errno::NOENT => Fail::new(
            404,
            "NOT_FOUND",
            format!("No such file or directory: {path}"),
        ),
        Errno::XDEV => Fail::forbidden(format!(
            "{path} leads outside its root (a symlink that climbs out or is absolute)"
        )),
        Errno::LOOP => Fail::new(
            400,
            "SYMLINK_LOOP",
            format!("cannot {what} {path}: too many levels of symbolic links (a symlink loop)"),
        ),
        Errno::NOTDIR => Fail::bad_request(format!(
            "cannot {what} {path}: a component of the path is not a directory"
        )),
        Errno::ISDIR => Fail::bad_request(format!("cannot {what} {path}: it is a directory")),
        Errno::ACCESS | Errno::PERM => {
            Fail::forbidden(format!("cannot {what} {path}: permission denied to voltd"))
        }
        Errno::EXIST => Fail::new(409, "ALREADY_EXISTS", format!("{path} already exists")),
        Errno::NOTEMPTY => Fail::new(
            409,
            "DIRECTORY_NOT_EMPTY",
            format!("cannot {what} {path}: the directory is not empty (pass recursive: true)"),
        ),
        Errno::ROFS => Fail::forbidden(format!("cannot {what} {path}: read-only file system")),
        Errno::NOSPC | Errno::DQUOT => Fail::new(
            507,
            "NO_SPACE",
            format!("cannot {what} {path}: no space left on the device"),
        ),
        Errno::NAMETOOLONG => Fail::bad_request(format!("cannot {what} {path}: name too long")),
        Errno::INVAL => Fail::bad_request(format!("cannot {what} {path}: invalid argument")),
        Errno::AGAIN | Errno::BUSY => Fail::new(
            503,
            "BUSY",
            format!("cannot {what} {path}: it changed during the lookup; try again"),
        ),
        other => Fail::new(500, "IO_ERROR", format!("cannot {what} {path}: {other}")),
    }
}

/// A request path located in a root: the root, the path below it, and the
/// text used in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub root: HostRoot,
    /// Relative, normal components only (may be empty: the root itself).
    pub rel: PathBuf,
    /// `<root name>/<rel>` as shown to people.
    pub display: String,
}

impl Located {
    /// The explorer path of a child entry.
    fn child(&self, name: &str) -> String {
        if self.rel.as_os_str().is_empty() {
            format!("{}/{name}", self.root.name)
        } else {
            format!("{}/{}/{name}", self.root.name, self.rel.to_string_lossy())
        }
    }

    /// The parent directory and the last component (`None` for a root).
    pub fn split(&self) -> Option<(&Path, &OsStr)> {
        let name = self.rel.file_name()?;
        Some((self.rel.parent().unwrap_or(Path::new("")), name))
    }

    pub fn require_writable(&self) -> Result<(), Fail> {
        if self.root.read_only {
            return Err(Fail::new(
                403,
                "ROOT_READ_ONLY",
                format!(
                    "root {} is read-only (set read_only = false for it in [host_files] roots to allow changes)",
                    self.root.name
                ),
            ));
        }
        Ok(())
    }
}

/// Locates `raw` in `roots` (see the module docs). `Ok(None)`: the list of
/// roots itself.
pub fn locate(roots: &[HostRoot], raw: &str) -> Result<Option<Located>, Fail> {
    if raw.contains('\0') {
        return Err(Fail::new(400, "PATH_INVALID", "path contains a NUL byte"));
    }
    if raw.split('/').any(|seg| seg == "..") {
        return Err(Fail::forbidden("'..' is not allowed in paths"));
    }
    if roots.is_empty() {
        return Err(Fail::forbidden(
            "the host file explorer is disabled: no [host_files] roots are configured",
        ));
    }
    let p = Path::new(raw);
    let (root, rest): (&HostRoot, String) =
        if raw.starts_with('/') && roots.iter().any(|r| p.starts_with(&r.path)) {
            let root = roots
                .iter()
                .filter(|r| p.starts_with(&r.path))
                .max_by_key(|r| r.path.components().count())
                .ok_or_else(|| Fail::forbidden("path is outside the configured roots"))?;
            let rest = p
                .strip_prefix(&root.path)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            (root, rest)
        } else {
            let norm = raw.trim_matches('/');
            if norm.is_empty() {
                return Ok(None);
            }
            let (first, rest) = norm.split_once('/').unwrap_or((norm, ""));
            match roots.iter().find(|r| r.name == first) {
                Some(root) => (root, rest.to_owned()),
                None if raw.starts_with('/') => {
                    return Err(Fail::forbidden(format!(
                        "{raw} is outside the configured roots"
                    )));
                }
                None => {
                    return Err(Fail::new(
                        404,
                        "NOT_FOUND",
                        format!(
                            "no root named {first:?} (roots: {})",
                            roots
                                .iter()
                                .map(|r| r.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        };
    let mut rel = PathBuf::new();
    for c in Path::new(&rest).components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err(Fail::forbidden("'..' is not allowed in paths")),
            Component::Prefix(_) => return Err(Fail::forbidden("path prefixes are not allowed")),
        }
    }
    let display = if rel.as_os_str().is_empty() {
        root.name.clone()
    } else {
        format!("{}/{}", root.name, rel.to_string_lossy())
    };
    Ok(Some(Located {
        root: root.clone(),
        rel,
        display,
    }))
}

/// Like [`locate`], but the roots list itself is not a valid answer.
pub fn locate_entry(roots: &[HostRoot], raw: &str, what: &str) -> Result<Located, Fail> {
    locate(roots, raw)?
        .ok_or_else(|| Fail::bad_request(format!("{what} needs a path inside a root")))
}

/// Opens a root's directory (`O_PATH`): the anchor of every lookup.
pub fn open_root(root: &HostRoot) -> Result<OwnedFd, Fail> {
    rustix::fs::open(
        &root.path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        Fail::new(
            503,
            "ROOT_UNAVAILABLE",
            format!(
                "root {} ({}) cannot be opened: {e}",
                root.name,
                root.path.display()
            ),
        )
    })
}

/// Opens `loc` beneath its root with `flags`.
pub fn open_at(loc: &Located, flags: OFlags, what: &str) -> Result<OwnedFd, Fail> {
    let root = open_root(&loc.root)?;
    open_beneath(&root, &loc.rel, flags, Mode::empty(), Strategy::Auto)
        .map_err(|e| io_fail(e, what, &loc.display))
}

/// What a file type is called in entries and messages.
pub fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character-device",
        FileType::BlockDevice => "block-device",
        FileType::Unknown => "other",
    }
}

fn described(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "File",
        FileType::Directory => "Directory",
        FileType::Symlink => "Symbolic link",
        FileType::Fifo => "Named pipe (FIFO)",
        FileType::Socket => "Socket",
        FileType::CharacterDevice => "Character device",
        FileType::BlockDevice => "Block device",
        FileType::Unknown => "Other",
    }
}

/// Opens a regular file for reading: an `O_PATH` probe first (no side
/// effects, never blocks) refuses anything else with a 400; the real open
/// is non-blocking and checked again, so a FIFO swapped in meanwhile is
/// refused too. Returns the file and its size.
pub fn open_regular(loc: &Located) -> Result<(std::fs::File, u64), Fail> {
    let probe = open_at(loc, OFlags::PATH, "read")?;
    let st = rustix::fs::fstat(&probe).map_err(|e| io_fail(e, "read", &loc.display))?;
    check_regular(loc, FileType::from_raw_mode(st.st_mode))?;
    let fd = open_at(
        loc,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        "read",
    )?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_fail(e, "read", &loc.display))?;
    check_regular(loc, FileType::from_raw_mode(st.st_mode))?;
    // Regular files ignore O_NONBLOCK; clear it anyway for plain reads.
    let _ = rustix::fs::fcntl_setfl(&fd, OFlags::empty());
    Ok((std::fs::File::from(fd), st.st_size.max(0) as u64))
}

fn check_regular(loc: &Located, t: FileType) -> Result<(), Fail> {
    match t {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(Fail::bad_request(format!("{} is a directory", loc.display))),
        other => Err(Fail::new(
            400,
            "NOT_A_REGULAR_FILE",
            format!(
                "{} is a {}: only regular files can be read",
                loc.display,
                described(other).to_lowercase()
            ),
        )),
    }
}

/// Runs blocking filesystem work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Reply> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Fail::into_reply),
        Err(e) => Err(Reply::failure(
            500,
            format!("host-files worker failed: {e}"),
        )),
    }
}

fn iso(t: std::time::SystemTime) -> String {
    crate::host::clock::system_time_iso(t)
}

fn mtime(st: &rustix::fs::Stat) -> Option<String> {
    let secs = u64::try_from(st.st_mtime).ok()?;
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    Some(iso(
        std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
    ))
}

/// An entry for `name` in the directory `dir` (not followed).
fn entry_of(loc: &Located, name: &OsStr, st: &rustix::fs::Stat) -> Entry {
    let t = FileType::from_raw_mode(st.st_mode);
    let shown = name.to_string_lossy().into_owned();
    let mut description = described(t).to_owned();
    if std::str::from_utf8(name.as_bytes()).is_err() {
        description.push_str(" (name is not valid UTF-8; rename it on the host to open it)");
    }
    let mut e = Entry::new(loc.child(&shown), shown, kind_name(t), description);
    if t == FileType::RegularFile {
        e.size = Some(st.st_size.max(0) as u64);
    }
    e.updated_at = mtime(st);
    e
}

/// The cursor of a listing: the last name returned, base64url.
fn encode_cursor(name: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn decode_cursor(cursor: &str) -> Result<Vec<u8>, Fail> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| Fail::bad_request("invalid cursor (pass the one the previous page returned)"))
}

/// One page of the directory at `loc`: the `limit` smallest names after
/// the cursor. Memory is O(limit) whatever the directory holds.
pub fn list_dir(loc: &Located, limit: usize, cursor: Option<&[u8]>) -> Result<Listing, Fail> {
    let dir = open_at(loc, OFlags::RDONLY | OFlags::DIRECTORY, "list")?;
    let reader = rustix::fs::Dir::read_from(&dir).map_err(|e| io_fail(e, "list", &loc.display))?;
    // A max-heap of the smallest names seen so far.
    let mut heap: BinaryHeap<Vec<u8>> = BinaryHeap::with_capacity(limit + 1);
    for item in reader {
        let item = item.map_err(|e| io_fail(e, "list", &loc.display))?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if cursor.is_some_and(|c| name <= c) {
            continue;
        }
        if heap.len() <= limit {
            heap.push(name.to_vec());
        } else if heap.peek().is_some_and(|top| name < top.as_slice()) {
            heap.pop();
            heap.push(name.to_vec());
        }
    }
    let mut names = heap.into_sorted_vec();
    let truncated = names.len() > limit;
    names.truncate(limit);
    let mut entries = Vec::with_capacity(names.len());
    for name in &names {
        let os = OsStr::from_bytes(name);
        // Gone since it was read: skip it.
        if let Ok(st) = lstat_at(&dir, os) {
            entries.push(entry_of(loc, os, &st));
        }
    }
    Ok(Listing {
        entries,
        truncated,
        cursor: if truncated {
            names.last().map(|n| encode_cursor(n))
        } else {
            None
        },
    })
}

pub async fn list(roots: &[HostRoot], path: &str, page: &Page) -> Result<Listing, Reply> {
    let Some(loc) = locate(roots, path)? else {
        return Ok(Listing::whole(
            roots
                .iter()
                .map(|root| {
                    let mut e = Entry::new(
                        root.name.clone(),
                        root.name.clone(),
                        "directory",
                        root.path.display().to_string(),
                    );
                    if root.read_only {
                        e.description = Some(format!("{} (read-only)", root.path.display()));
                    }
                    e
                })
                .collect(),
        ));
    };
    let limit = page.limit_or(DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = page.cursor.as_deref().map(decode_cursor).transpose()?;
    blocking(move || list_dir(&loc, limit, cursor.as_deref())).await
}

pub async fn node(roots: &[HostRoot], path: &str) -> Result<Node, Reply> {
    let Some(loc) = locate(roots, path)? else {
        return Ok(Node::empty(path, "Host files", "directory"));
    };
    let title = if loc.rel.as_os_str().is_empty() {
        loc.root.name.clone()
    } else {
        loc.rel.to_string_lossy().into_owned()
    };
    let path = path.to_owned();
    blocking(move || {
        let probe = open_at(&loc, OFlags::PATH, "read")?;
        let st = rustix::fs::fstat(&probe).map_err(|e| io_fail(e, "read", &loc.display))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Ok(Node::empty(&path, title, "directory"));
        }
        let (file, _) = open_regular(&loc)?;
        let mut buf = Vec::with_capacity(8192);
        use std::io::Read;
        file.take(MAX_PREVIEW_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Fail::forbidden(format!("cannot read {}: {e}", loc.display)))?;
        Ok(Node::text(
            &path,
            title,
            "file",
            String::from_utf8_lossy(&buf).into_owned(),
        ))
    })
    .await
}

/// A file manager command (everything but list/node/download).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Stat,
    Mkdir,
    Rename {
        to: String,
        overwrite: bool,
    },
    Delete {
        recursive: bool,
    },
    UploadBegin {
        size: Option<u64>,
        overwrite: bool,
    },
    UploadChunk {
        upload_id: String,
        offset: u64,
        bytes: Vec<u8>,
    },
    UploadCommit {
        upload_id: String,
        sha256: Option<String>,
    },
    UploadAbort {
        upload_id: String,
    },
}

/// Runs a file manager command on the blocking pool.
pub async fn change(
    roots: &[HostRoot],
    uploads: &Uploads,
    path: &str,
    change: Change,
) -> Result<serde_json::Value, Reply> {
    let uploads = uploads.clone();
    let at = |what: &str| locate_entry(roots, path, what);
    match change {
        Change::Stat => {
            let loc = at("stat")?;
            blocking(move || ops::stat(&loc)).await
        }
        Change::Mkdir => {
            let loc = at("mkdir")?;
            blocking(move || ops::mkdir(&loc)).await
        }
        Change::Rename { to, overwrite } => {
            let from = at("rename")?;
            let to = locate_entry(roots, &to, "rename")?;
            blocking(move || ops::rename(&from, &to, overwrite)).await
        }
        Change::Delete { recursive } => {
            let loc = at("delete")?;
            blocking(move || ops::delete(&loc, recursive)).await
        }
        Change::UploadBegin { size, overwrite } => {
            let loc = at("upload")?;
            blocking(move || uploads.begin(loc, size, overwrite)).await
        }
        Change::UploadChunk {
            upload_id,
            offset,
            bytes,
        } => blocking(move || uploads.chunk(&upload_id, offset, &bytes)).await,
        Change::UploadCommit { upload_id, sha256 } => {
            blocking(move || uploads.commit(&upload_id, sha256.as_deref())).await
        }
        Change::UploadAbort { upload_id } => blocking(move || uploads.abort(&upload_id)).await,
    }
}

/// A content type from the file extension (what browsers need to show or
/// save a download sensibly).
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" | "csv" | "tsv" | "in" | "out" | "lmp" | "dump" | "xyz" => {
            "text/plain; charset=utf-8"
        }
        "json" => "application/json",
        "html" | "htm" => "text/html; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "gz" => "application/gzip",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        "glb" => "model/gltf-binary",
        _ => "application/octet-stream",
    }
}

pub async fn download(roots: &[HostRoot], path: &str) -> Reply {
    let loc = match locate(roots, path) {
        Ok(Some(l)) => l,
        Ok(None) => return Reply::bad_request("download needs a file path"),
        Err(f) => return f.into_reply(),
    };
    let name = loc
        .rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let display = loc.display.clone();
    let (file, size) = match blocking(move || open_regular(&loc)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    // tokio's File reads on the blocking pool; `take` stops at the size
    // announced, so a file that grows (or a log being written) cannot
    // stream forever.
    let file = tokio::fs::File::from_std(file).take(size);
    let body = futures_util::stream::unfold(Some((file, 0u64)), move |state| {
        let display = display.clone();
        async move {
            let (mut file, sent) = state?;
            let mut buf = vec![0u8; READ_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) if sent < size => Some((
                    Err(format!(
                        "{display} shrank while it was read: {sent} of the {size} bytes announced"
                    )),
                    None,
                )),
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some((file, sent + n as u64))))
                }
                Err(e) => Some((Err(format!("read error: {e}")), None)),
            }
        }
    });
    stream(
        download_headers(content_type(&name), &name, Some(size)),
        body.boxed_local(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Vec<HostRoot>) {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let data = base.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/a.txt"), "hello").unwrap();
        std::fs::create_dir_all(base.join("secret")).unwrap();
        std::fs::write(base.join("secret/key"), "nope").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), data.join("escape")).unwrap();
        std::os::unix::fs::symlink("../secret", data.join("climb")).unwrap();
        std::os::unix::fs::symlink("sub", data.join("inside")).unwrap();
        std::os::unix::fs::symlink(data.join("sub"), data.join("inside-abs")).unwrap();
        nix::unistd::mkfifo(&data.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        (
            dir,
            vec![HostRoot {
                name: "data".into(),
                path: data,
                read_only: true,
            }],
        )
    }

    fn read(roots: &[HostRoot], path: &str) -> Result<String, u16> {
        let loc = locate(roots, path).map_err(|f| f.status)?.ok_or(0u16)?;
        let (file, size) = open_regular(&loc).map_err(|f| f.status)?;
        let mut s = String::new();
        use std::io::Read;
        file.take(size).read_to_string(&mut s).unwrap();
        Ok(s)
    }

    #[test]
    fn locates_by_name_or_absolute_path() {
        let (_d, roots) = setup();
        let r = locate(&roots, "/data/sub/a.txt/").unwrap().unwrap();
        assert_eq!(r.root.name, "data");
        assert_eq!(r.rel, PathBuf::from("sub/a.txt"));
        assert_eq!(r.display, "data/sub/a.txt");
        let abs = roots[0].path.join("sub/a.txt");
        let r2 = locate(&roots, abs.to_str().unwrap()).unwrap().unwrap();
        assert_eq!(r2.rel, r.rel);
        assert!(locate(&roots, "/").unwrap().is_none());
    }

    #[test]
    fn traversal_table_is_refused_by_the_kernel() {
        let (_d, roots) = setup();
        assert_eq!(read(&roots, "data/sub/a.txt").as_deref(), Ok("hello"));
        assert_eq!(read(&roots, "data/inside/a.txt").as_deref(), Ok("hello"));
        for (path, expected) in [
            ("data/../secret/key", 403),
            ("data/sub/../../secret/key", 403),
            ("../etc/passwd", 403),
            ("data/escape/key", 403),
            ("data/climb/key", 403),
            // Absolute symlinks are outside as far as RESOLVE_BENEATH goes.
            ("data/inside-abs/a.txt", 403),
            ("/etc/passwd", 403),
            ("data/sub/a\0.txt", 400),
            ("data/missing.txt", 404),
            ("other/x", 404),
            ("data/fifo", 400),
            ("data/sub", 400),
        ] {
            assert_eq!(read(&roots, path), Err(expected), "{path}");
        }
    }

    #[test]
    fn listing_pages_by_name_with_a_cursor() {
        let (d, roots) = setup();
        let dir = d.path().canonicalize().unwrap().join("data/many");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..25 {
            std::fs::write(dir.join(format!("f{i:02}")), "x").unwrap();
        }
        let loc = locate(&roots, "data/many").unwrap().unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = list_dir(&loc, 10, cursor.as_deref()).unwrap();
            seen.extend(page.entries.iter().map(|e| e.name.clone()));
            match page.cursor {
                Some(c) => {
                    assert!(page.truncated);
                    cursor = Some(decode_cursor(&c).unwrap());
                }
                None => {
                    assert!(!page.truncated);
                    break;
                }
            }
        }
        let expected: Vec<String> = (0..25).map(|i| format!("f{i:02}")).collect();
        assert_eq!(seen, expected);
        // Entries of the root listing: the fifo is listed, typed.
        let root = locate(&roots, "data").unwrap().unwrap();
        let all = list_dir(&root, 100, None).unwrap();
        let fifo = all.entries.iter().find(|e| e.name == "fifo").unwrap();
        assert_eq!(fifo.kind, "fifo");
        assert_eq!(fifo.size, None);
    }

    #[test]
    fn no_roots_means_disabled() {
        assert_eq!(locate(&[], "data/x").unwrap_err().status, 403);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("run.LOG"), "text/plain; charset=utf-8");
        assert_eq!(content_type("model.glb"), "model/gltf-binary");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
