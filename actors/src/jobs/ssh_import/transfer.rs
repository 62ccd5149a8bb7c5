//! Walking the remote tree and streaming files into the object store,
//! resumable at file granularity.
//!
//! Resume ledger: the Redis hash `voltd:ssh-import:<jobId>:done` maps each
//! finished file's relative path to its size. A file is recorded only after
//! its object is complete in S3 (a single PUT or a completed multipart
//! upload is atomic: a key holds either nothing or the whole object). A
//! crash between "object complete" and "recorded" is closed by a HEAD
//! before each upload: an object that already exists with the file's size
//! and this job's tag (`x-amz-meta-volt-import-job`) is recorded, not sent
//! again. So after any number of restarts every file is in S3 exactly once
//! and none is missing.

use super::super::executor::{JobContext, JobError};
use bullmq::redis_connection::RedisConnection;
use russh_sftp::client::SftpSession;
use s3::Bucket;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};

/// Most files one import may fetch (the remote side controls the count).
pub const MAX_FILES: usize = 100_000;
/// Deepest directory nesting followed.
pub const MAX_DEPTH: usize = 64;
/// Parts of one multipart upload in flight: with rust-s3's 8 MiB parts a
/// file costs at most ~24 MiB of memory, whatever its size.
pub const PARTS_IN_FLIGHT: usize = 2;
/// How long the resume ledger outlives the job's last progress.
pub const LEDGER_TTL_SECS: u64 = 7 * 86_400;

/// One remote file to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Absolute remote path.
    pub path: String,
    /// Path relative to the import root (`/`-separated, no `..`).
    pub rel: String,
    pub size: u64,
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A name from the remote side that is safe as one key segment.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn sftp_err(what: &str, e: impl std::fmt::Display) -> JobError {
    JobError::Retryable(format!("{what}: {e}"))
}

/// Lists the files under `root` (or `root` itself when it is a file),
/// sorted by relative path. Symbolic links and special files are skipped
/// (following links could loop or leave the tree); each skip is logged.
pub async fn walk(
    sftp: &SftpSession,
    root: &str,
    ctx: &JobContext,
) -> Result<Vec<RemoteFile>, JobError> {
    let meta = sftp
        .metadata(root)
        .await
        .map_err(|e| JobError::Fatal(format!("remotePath {root}: {e}")))?;
    if !meta.file_type().is_dir() {
        let name = root
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(root)
            .to_owned();
        if !meta.file_type().is_file() || !safe_name(&name) {
            return Err(JobError::Fatal(format!(
                "remotePath {root} is neither a regular file nor a directory"
            )));
        }
        return Ok(vec![RemoteFile {
            path: root.to_owned(),
            rel: name,
            size: meta.len(),
        }]);
    }
    let mut out = Vec::new();
    let mut dirs = VecDeque::from([(root.to_owned(), String::new(), 0usize)]);
    while let Some((dir, rel_dir, depth)) = dirs.pop_front() {
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let entries = sftp
            .read_dir(dir.as_str())
            .await
            .map_err(|e| sftp_err(&format!("listing {dir}"), e))?;
        for entry in entries {
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            if !safe_name(&name) {
                ctx.log(format!("skipped an entry with an unusable name in {dir}"));
                continue;
            }
            let path = join(&dir, &name);
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            let meta = entry.metadata();
            if meta.file_type().is_dir() {
                if depth + 1 > MAX_DEPTH {
                    return Err(JobError::Fatal(format!(
                        "{path} is nested deeper than {MAX_DEPTH} directories"
                    )));
                }
                dirs.push_back((path, rel, depth + 1));
            } else if meta.file_type().is_file() {
                if out.len() >= MAX_FILES {
                    return Err(JobError::Fatal(format!(
                        "more than {MAX_FILES} files under {root}"
                    )));
                }
                out.push(RemoteFile {
                    path,
                    rel,
                    size: meta.len(),
                });
            } else {
                ctx.log(format!("skipped {rel}: not a regular file or directory"));
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The resume ledger of one job.
pub struct Ledger {
    conn: RedisConnection,
    key: String,
}

impl Ledger {
    pub fn new(conn: RedisConnection, job_id: &str) -> Self {
        Ledger {
            conn,
            key: format!("voltd:ssh-import:{job_id}:done"),
        }
    }

    pub async fn done(&self) -> Result<HashMap<String, u64>, JobError> {
        self.conn
            .cmd(redis::cmd("HGETALL").arg(&self.key))
            .await
            .map_err(|e| JobError::Retryable(format!("reading the resume ledger: {e}")))
    }

    pub async fn record(&self, rel: &str, size: u64) -> Result<(), JobError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&self.key)
            .arg(rel)
            .arg(size)
            .ignore()
            .cmd("EXPIRE")
            .arg(&self.key)
            .arg(LEDGER_TTL_SECS)
            .ignore();
        self.conn
            .pipe::<()>(&pipe)
            .await
            .map_err(|e| JobError::Retryable(format!("writing the resume ledger: {e}")))
    }
}

/// The tag an object carries so a resumed import recognises its own
/// uploads (a digest: job ids need not be valid header values).
pub fn job_tag(job_id: &str) -> String {
    Sha256::digest(job_id.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Metadata key of [`job_tag`] (sent as `x-amz-meta-volt-import-job`).
pub const TAG_KEY: &str = "volt-import-job";

/// Whether `key` already holds this job's complete upload of `size` bytes.
pub async fn already_uploaded(
    bucket: &Bucket,
    key: &str,
    size: u64,
    tag: &str,
) -> Result<bool, JobError> {
    match bucket.head_object(key).await {
        Ok((head, 200)) => Ok(head.content_length.and_then(|l| u64::try_from(l).ok())
            == Some(size)
            && head
                .metadata
                .as_ref()
                .and_then(|m| m.get(TAG_KEY))
                .map(String::as_str)
                == Some(tag)),
        Ok(_) => Ok(false),
        Err(s3::error::S3Error::HttpFailWithBody(404, _)) => Ok(false),
        Err(e) => {
            let text = e.to_string();
            if text.contains("404") {
                Ok(false)
            } else {
                Err(JobError::Retryable(format!(
                    "checking {key} in the object store: {text}"
                )))
            }
        }
    }
}

/// An `AsyncRead` that counts the bytes read through it.
pub struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    pub fn new(inner: R, read: Arc<AtomicU64>) -> Self {
        Counting { inner, read }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

/// Totals for progress reports.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub files_total: usize,
    pub bytes_total: u64,
    pub files_done: usize,
    pub bytes_done: u64,
}

/// Where one file goes.
pub struct Target<'a> {
    pub bucket: &'a Bucket,
    pub key: &'a str,
    /// [`job_tag`] of the job.
    pub tag: &'a str,
}

/// Streams one remote file to its [`Target`], reporting progress every
/// `every` and stopping at once on cancellation. Returns bytes sent.
pub async fn upload(
    sftp: &SftpSession,
    file: &RemoteFile,
    target: &Target<'_>,
    ctx: &JobContext,
    totals: &Totals,
    every: Duration,
) -> Result<u64, JobError> {
    let remote = sftp
        .open(file.path.as_str())
        .await
        .map_err(|e| sftp_err(&format!("opening {}", file.rel), e))?;
    let read = Arc::new(AtomicU64::new(0));
    let mut reader = Counting::new(remote, read.clone());
    let builder = target
        .bucket
        .put_object_stream_builder(target.key)
        .with_content_type("application/octet-stream")
        .with_metadata(TAG_KEY, target.tag)
        .map_err(|e| JobError::Fatal(format!("object metadata: {e}")))?
        .with_max_concurrent_chunks(PARTS_IN_FLIGHT);
    let put = builder.execute_stream(&mut reader);
    tokio::pin!(put);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let sent = loop {
        tokio::select! {
            r = &mut put => break r.map_err(|e| JobError::Retryable(format!("uploading {}: {e}", file.rel)))?,
            () = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
            _ = tick.tick() => ctx.progress(json!({
                "filesTotal": totals.files_total, "filesDone": totals.files_done,
                "bytesTotal": totals.bytes_total,
                "bytesDone": totals.bytes_done + read.load(Ordering::Relaxed),
                "file": file.rel,
            })),
        }
    };
    Ok(sent.uploaded_bytes() as u64)
}
