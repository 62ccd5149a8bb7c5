//! `host-files`: the host's file explorer, confined to configured roots.
//!
//! Paths are `<root name>/<relative path>` (or an absolute path inside a
//! root's directory). Every request is resolved and checked before any file
//! is touched: a NUL byte is a 400; `..`, an absolute path outside every
//! root, or a symlink whose target leaves its root is a 403 with the reason.
//! list → the roots, or a directory's children (`directory`/`file`/
//! `symlink`, with size and modification time); node → a file's first
//! 64 KiB as text, a directory is `empty`; download → the file, streamed.

use super::{Entry, Node, download_headers, stream};
use crate::api::reply::Reply;
use crate::config::HostRoot;
use crate::remote::context::HandlerContext;
use futures_util::StreamExt;
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Bytes of a file shown in a node (as for objects).
pub const MAX_PREVIEW_BYTES: usize = 65_536;
/// Entries returned for one directory: a listing is for a person to read,
/// and a huge directory must not make a huge message.
pub const MAX_DIR_ENTRIES: usize = 5_000;
/// Read size while streaming a download.
const READ_CHUNK: usize = 64 * 1024;

/// A path resolved inside a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The root's name (first path segment).
    pub root: String,
    /// The path relative to the root, `/`-separated, without leading slash.
    pub relative: String,
    /// The canonical filesystem path (symlinks resolved).
    pub real: PathBuf,
}

fn forbidden(msg: impl Into<String>) -> Reply {
    Reply::failure_with_code(403, "PATH_FORBIDDEN", msg)
}

/// Resolves `raw` against `roots` (see the module docs).
pub fn resolve(roots: &[HostRoot], raw: &str) -> Result<Option<Resolved>, Reply> {
    if raw.contains('\0') {
        return Err(Reply::failure_with_code(
            400,
            "PATH_INVALID",
            "path contains a NUL byte",
        ));
    }
    if raw.split('/').any(|seg| seg == "..") {
        return Err(forbidden("'..' is not allowed in paths"));
    }
    if roots.is_empty() {
        return Err(forbidden(
            "the host file explorer is disabled: no [host_files] roots are configured",
        ));
    }
    // Absolute filesystem paths are accepted when they lie in a root.
    let (root, rest): (&HostRoot, String) = if raw.starts_with('/') && {
        let p = Path::new(raw);
        roots.iter().any(|r| p.starts_with(&r.path))
    } {
        let p = Path::new(raw);
        let root = roots
            .iter()
            .filter(|r| p.starts_with(&r.path))
            .max_by_key(|r| r.path.components().count())
            .ok_or_else(|| forbidden("path is outside the configured roots"))?;
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
                return Err(forbidden(format!("{raw} is outside the configured roots")));
            }
            None => {
                return Err(Reply::not_found(format!(
                    "no root named {first:?} (roots: {})",
                    roots
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    };
    let mut relative = PathBuf::new();
    for c in Path::new(&rest).components() {
        match c {
            Component::Normal(part) => relative.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err(forbidden("'..' is not allowed in paths")),
            Component::Prefix(_) => return Err(forbidden("path prefixes are not allowed")),
        }
    }
    let joined = root.path.join(&relative);
    let real = match std::fs::canonicalize(&joined) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Reply::not_found(format!(
                "No such file or directory: {}/{}",
                root.name,
                relative.display()
            )));
        }
        Err(e) => {
            return Err(forbidden(format!(
                "cannot access {}/{}: {e}",
                root.name,
                relative.display()
            )));
        }
    };
    if !real.starts_with(&root.path) {
        return Err(forbidden(format!(
            "{}/{} leads outside its root through a symlink",
            root.name,
            relative.display()
        )));
    }
    Ok(Some(Resolved {
        root: root.name.clone(),
        relative: relative.to_string_lossy().into_owned(),
        real,
    }))
}

fn iso(t: std::time::SystemTime) -> Option<String> {
    Some(crate::host::clock::system_time_iso(t))
}

fn join(root: &str, rel: &str, name: &str) -> String {
    if rel.is_empty() {
        format!("{root}/{name}")
    } else {
        format!("{root}/{rel}/{name}")
    }
}

fn roots(ctx: &HandlerContext) -> &[HostRoot] {
    &ctx.settings.host_files.roots
}

pub async fn list(ctx: &HandlerContext, path: &str) -> Result<Vec<Entry>, Reply> {
    let Some(r) = resolve(roots(ctx), path)? else {
        if roots(ctx).is_empty() {
            return Err(forbidden("the host file explorer is disabled"));
        }
        return Ok(roots(ctx)
            .iter()
            .map(|root| {
                Entry::new(
                    root.name.clone(),
                    root.name.clone(),
                    "directory",
                    root.path.display().to_string(),
                )
            })
            .collect());
    };
    if !r.real.is_dir() {
        return Err(Reply::bad_request(format!(
            "{}/{} is not a directory",
            r.root, r.relative
        )));
    }
    let mut dir = tokio::fs::read_dir(&r.real)
        .await
        .map_err(|e| forbidden(format!("cannot list {}/{}: {e}", r.root, r.relative)))?;
    let mut entries = Vec::new();
    while let Ok(Some(item)) = dir.next_entry().await {
        if entries.len() >= MAX_DIR_ENTRIES {
            break;
        }
        let name = item.file_name().to_string_lossy().into_owned();
        let meta = match tokio::fs::symlink_metadata(item.path()).await {
            Ok(m) => m,
            Err(_) => continue,
        };
        let (kind, desc) = if meta.file_type().is_symlink() {
            ("symlink", "Symbolic link")
        } else if meta.is_dir() {
            ("directory", "Directory")
        } else {
            ("file", "File")
        };
        let mut e = Entry::new(join(&r.root, &r.relative, &name), name, kind, desc);
        if kind == "file" {
            e.size = Some(meta.len());
        }
        e.updated_at = meta.modified().ok().and_then(iso);
        entries.push(e);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

pub async fn node(ctx: &HandlerContext, path: &str) -> Result<Node, Reply> {
    let Some(r) = resolve(roots(ctx), path)? else {
        return Ok(Node::empty(path, "Host files", "directory"));
    };
    let title = if r.relative.is_empty() {
        r.root.clone()
    } else {
        r.relative.clone()
    };
    if r.real.is_dir() {
        return Ok(Node::empty(path, title, "directory"));
    }
    let mut f = tokio::fs::File::open(&r.real)
        .await
        .map_err(|e| forbidden(format!("cannot read {}/{}: {e}", r.root, r.relative)))?;
    let mut buf = Vec::with_capacity(MAX_PREVIEW_BYTES.min(8192));
    (&mut f)
        .take(MAX_PREVIEW_BYTES as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| forbidden(format!("cannot read {}/{}: {e}", r.root, r.relative)))?;
    Ok(Node::text(
        path,
        title,
        "file",
        String::from_utf8_lossy(&buf).into_owned(),
    ))
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

pub async fn download(ctx: &HandlerContext, path: &str) -> Reply {
    let r = match resolve(roots(ctx), path) {
        Ok(Some(r)) => r,
        Ok(None) => return Reply::bad_request("download needs a file path"),
        Err(reply) => return reply,
    };
    if r.real.is_dir() {
        return Reply::bad_request(format!("{}/{} is a directory", r.root, r.relative));
    }
    let file = match tokio::fs::File::open(&r.real).await {
        Ok(f) => f,
        Err(e) => return forbidden(format!("cannot read {}/{}: {e}", r.root, r.relative)),
    };
    let length = file.metadata().await.ok().map(|m| m.len());
    let name = r
        .real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; READ_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(file)))
            }
            Err(e) => Some((Err(format!("read error: {e}")), None)),
        }
    });
    stream(
        download_headers(content_type(&name), &name, length),
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
        std::os::unix::fs::symlink(data.join("sub"), data.join("inside")).unwrap();
        (
            dir,
            vec![HostRoot {
                name: "data".into(),
                path: data,
            }],
        )
    }

    fn status(r: Result<Option<Resolved>, Reply>) -> u16 {
        match r {
            Err(Reply::Failure { status, .. }) => status,
            Ok(_) => 200,
            Err(_) => 0,
        }
    }

    #[test]
    fn resolves_inside_the_root_by_name_or_absolute_path() {
        let (_d, roots) = setup();
        let r = resolve(&roots, "/data/sub/a.txt/").unwrap().unwrap();
        assert_eq!(r.root, "data");
        assert_eq!(r.relative, "sub/a.txt");
        let abs = roots[0].path.join("sub/a.txt");
        let r2 = resolve(&roots, abs.to_str().unwrap()).unwrap().unwrap();
        assert_eq!(r2.real, r.real);
        assert!(resolve(&roots, "/").unwrap().is_none());
        // A symlink that stays inside the root is fine.
        assert!(resolve(&roots, "data/inside/a.txt").unwrap().is_some());
    }

    #[test]
    fn traversal_table_is_refused() {
        let (_d, roots) = setup();
        for (path, expected) in [
            ("data/../secret/key", 403),
            ("data/sub/../../secret/key", 403),
            ("../etc/passwd", 403),
            ("data/escape/key", 403),
            ("data/escape", 403),
            ("/etc/passwd", 403),
            ("/etc", 403),
            ("data/sub/a\0.txt", 400),
            ("data/missing.txt", 404),
            ("other/x", 404),
        ] {
            assert_eq!(status(resolve(&roots, path)), expected, "{path}");
        }
    }

    #[test]
    fn no_roots_means_disabled() {
        assert_eq!(status(resolve(&[], "data/x")), 403);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("run.LOG"), "text/plain; charset=utf-8");
        assert_eq!(content_type("model.glb"), "model/gltf-binary");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
