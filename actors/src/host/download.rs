//! The shared downloader: one pinned artifact fetched over HTTP(S), resumed
//! with `Range` after a dropped connection, capped in size, and verified
//! against its SHA-256 before it appears at its destination.
//!
//! Used by provisioning (server tarballs and binaries) and by the signed
//! self-update (release binaries), so it knows nothing about either: a
//! [`DownloadRequest`] is a URL, the expected digest, an optional expected
//! size, a destination and a size cap.
//!
//! Guarantees:
//! * The destination only ever holds verified bytes. Bytes arrive in
//!   `<dest>.part` (mode 0600); after the body ended, its size and SHA-256
//!   are checked (on a blocking thread) and it is fsynced and renamed into
//!   place. A mismatching `.part` is deleted so that the next attempt starts
//!   clean instead of resuming corrupt bytes forever.
//! * An interrupted transfer (connection dropped, body shorter than its
//!   `Content-Length`, no byte for [`DownloadOptions::idle_timeout`]) keeps
//!   its `.part`; the next attempt — within the same call, up to
//!   [`DownloadOptions::attempts`], or a later call — asks for the rest with
//!   `Range: bytes=<len>-`. A server that ignores the range (200) starts the
//!   file over; a 416 means the `.part` is already whole (it is verified).
//! * Every failure is a typed [`DownloadError`]: HTTP status, checksum
//!   mismatch (expected and actual), truncated body, no space (ENOSPC,
//!   EDQUOT), idle timeout, size cap. URLs in errors never show a password.
//!
//! Written by hand on `reqwest` because no maintained crate combines resume,
//! a size cap, idle timeouts and digest pinning; the pieces it uses (HTTP,
//! TLS, SHA-256) are the maintained crates the daemon already links.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

/// An order of magnitude above the largest artifact of the shipped
/// catalogue: room for future releases, but a server (or mirror) that
/// streams without end cannot fill the disk.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// Connecting (DNS, TCP, TLS) to a download server: generous for a
/// congested site uplink, short enough that a blackholed mirror is
/// reported within a minute.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A body that delivers no byte for this long is abandoned (and resumed by
/// the next attempt). Slow links still deliver something every few
/// seconds; a stalled server never does.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts within one call: a dropped connection is resumed at once a
/// couple of times before the caller's own (slower) retry takes over.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Pause before attempt n+1 is n × this: enough for a load balancer to
/// route around a failed backend, short next to a download.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(2);
/// A progress event at least every this many bytes when the size is
/// unknown, and at every whole percent step of [`PROGRESS_PERCENT_STEP`]
/// otherwise: a handful of log lines per artifact, not thousands.
pub const PROGRESS_BYTES_STEP: u64 = 8 << 20;
/// See [`PROGRESS_BYTES_STEP`].
pub const PROGRESS_PERCENT_STEP: u64 = 10;
/// Read buffer when hashing a downloaded file.
const HASH_BUFFER: usize = 64 << 10;

/// A SHA-256 digest, parsed from (and shown as) 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    /// The digest of `data` (tests, small files).
    pub fn of(data: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(data).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Why a string is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a SHA-256 digest is 64 hexadecimal digits, got {0:?}")]
pub struct BadDigest(pub String);

impl FromStr for Sha256Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDigest(s.chars().take(80).collect());
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One artifact to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadRequest {
    /// `https://…` (or `http://` — the caller decides what it accepts).
    pub url: String,
    /// What the bytes must hash to.
    pub sha256: Sha256Digest,
    /// The exact size when known: a different `Content-Length` fails early.
    pub expected_size: Option<u64>,
    /// Where the verified file goes; `<dest>.part` holds the bytes until then.
    pub dest: PathBuf,
    /// Refuse bodies larger than this.
    pub max_size: u64,
    /// Continue an existing `<dest>.part` (else it is discarded first).
    pub resume: bool,
}

impl DownloadRequest {
    /// A request with the default cap, resuming.
    pub fn new(url: impl Into<String>, sha256: Sha256Digest, dest: impl Into<PathBuf>) -> Self {
        DownloadRequest {
            url: url.into(),
            sha256,
            expected_size: None,
            dest: dest.into(),
            max_size: DEFAULT_MAX_SIZE,
            resume: true,
        }
    }

    /// `<dest>.part`.
    pub fn part_path(&self) -> PathBuf {
        part_path(&self.dest)
    }
}

/// `<dest>.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// Timeouts and retries of a [`Downloader`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownloadOptions {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Attempts per [`Downloader::fetch`] call (at least 1).
    pub attempts: u32,
    pub retry_delay: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            retry_delay: DEFAULT_RETRY_DELAY,
        }
    }
}

/// What a download is doing, for progress lines on the log stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum DownloadEvent {
    /// The server answered; bytes follow. `offset` > 0: resumed there.
    Started {
        url: String,
        offset: u64,
        total: Option<u64>,
    },
    /// `received` bytes of `total` are in the `.part` file.
    Progress { received: u64, total: Option<u64> },
    /// An attempt failed and another follows after `delay_ms`.
    Retrying {
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// The file is whole and its digest matches.
    Verified { size: u64 },
}

/// A verified download.
#[derive(Debug, Clone, PartialEq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Bytes that were already there when the last attempt resumed (0 = a
    /// fresh transfer).
    pub resumed_from: u64,
    /// Attempts this call made.
    pub attempts: u32,
}

/// Why a download failed.
#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("invalid download URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("{url} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: the body ended after {received} of {} bytes", expected.map_or_else(|| "?".to_owned(), |e| e.to_string()))]
    Truncated {
        url: String,
        received: u64,
        expected: Option<u64>,
    },
    #[error("{url} is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("no space left on the device holding {}", path.display())]
    NoSpace { path: PathBuf },
    #[error("{url}: no data for {}s", after.as_secs_f64())]
    Timeout { url: String, after: Duration },
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// [`DownloadError`] without its details: what a caller branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownloadErrorKind {
    BadUrl,
    HttpStatus,
    ChecksumMismatch,
    SizeMismatch,
    Truncated,
    TooLarge,
    NoSpace,
    Timeout,
    Network,
    Io,
}

impl DownloadError {
    pub fn kind(&self) -> DownloadErrorKind {
        match self {
            DownloadError::BadUrl { .. } => DownloadErrorKind::BadUrl,
            DownloadError::HttpStatus { .. } => DownloadErrorKind::HttpStatus,
            DownloadError::ChecksumMismatch { .. } => DownloadErrorKind::ChecksumMismatch,
            DownloadError::SizeMismatch { .. } => DownloadErrorKind::SizeMismatch,
            DownloadError::Truncated { .. } => DownloadErrorKind::Truncated,
            DownloadError::TooLarge { .. } => DownloadErrorKind::TooLarge,
            DownloadError::NoSpace { .. } => DownloadErrorKind::NoSpace,
            DownloadError::Timeout { .. } => DownloadErrorKind::Timeout,
            DownloadError::Network { .. } => DownloadErrorKind::Network,
            DownloadError::Io { .. } => DownloadErrorKind::Io,
        }
    }

    /// Worth another attempt right away (the `.part` is kept and resumed):
    /// the transfer broke, or the server had a passing fault.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Truncated { .. }
            | DownloadError::Timeout { .. }
            | DownloadError::Network { .. } => true,
            DownloadError::HttpStatus { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => false,
        }
    }
}

/// The URL as it may appear in logs and errors: no user name or password.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        // Not a URL: show no more than its scheme-ish start.
        Err(_) => url.split('@').next_back().unwrap_or_default().to_owned(),
    }
}

fn io_error(path: &Path, e: io::Error) -> DownloadError {
    if is_no_space(&e) {
        DownloadError::NoSpace {
            path: path.to_path_buf(),
        }
    } else {
        DownloadError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// ENOSPC or EDQUOT: the disk (or the user's quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == nix::errno::Errno::ENOSPC as i32 || c == nix::errno::Errno::EDQUOT as i32
    )
}

/// Fetches artifacts; cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    opts: DownloadOptions,
}

impl Downloader {
    /// A downloader with its own client: system proxy variables apply, no
    /// transparent decompression (the bytes hashed are the bytes served).
    pub fn new(opts: DownloadOptions) -> Result<Self, DownloadError> {
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("voltd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DownloadError::Network {
                url: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self::with_client(client, opts))
    }

    /// A downloader on a client the caller built (custom CA, proxy).
    pub fn with_client(client: reqwest::Client, opts: DownloadOptions) -> Self {
        let opts = DownloadOptions {
            attempts: opts.attempts.max(1),
            ..opts
        };
        Downloader { client, opts }
    }

    pub fn options(&self) -> &DownloadOptions {
        &self.opts
    }

    /// GETs a small document (a signed manifest) into memory: no more than
    /// `limit` bytes are ever held, no byte for the idle timeout is a
    /// timeout. Not retried: the caller decides.
    pub async fn get_small(&self, url: &str, limit: u64) -> Result<Vec<u8>, DownloadError> {
        let shown = redact_url(url);
        let parsed = reqwest::Url::parse(url).map_err(|e| DownloadError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DownloadError::BadUrl {
                url: shown,
                reason: "only http and https are supported".into(),
            });
        }
        let idle = self.opts.idle_timeout;
        let timeout = || DownloadError::Timeout {
            url: shown.clone(),
            after: idle,
        };
        let request = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        let mut resp = tokio::time::timeout(idle, request.send())
            .await
            .map_err(|_| timeout())?
            .map_err(|e| DownloadError::Network {
                url: shown.clone(),
                reason: describe_reqwest(&e),
            })?;
        if !resp.status().is_success() {
            return Err(DownloadError::HttpStatus {
                url: shown,
                status: resp.status().as_u16(),
            });
        }
        let too_large = || DownloadError::TooLarge {
            url: shown.clone(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        loop {
            let chunk = tokio::time::timeout(idle, resp.chunk())
                .await
                .map_err(|_| timeout())?
                .map_err(|_| DownloadError::Truncated {
                    url: shown.clone(),
                    received: out.len() as u64,
                    expected: None,
                })?;
            let Some(chunk) = chunk else {
                return Ok(out);
            };
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Fetches `req` (see the module docs), reporting progress to
    /// `progress`. Returns once `req.dest` holds the verified file.
    pub async fn fetch<F>(
        &self,
        req: &DownloadRequest,
        mut progress: F,
    ) -> Result<Downloaded, DownloadError>
    where
        F: FnMut(DownloadEvent),
    {
        let shown = redact_url(&req.url);
        let url = reqwest::Url::parse(&req.url).map_err(|e| DownloadError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DownloadError::BadUrl {
                url: shown,
                reason: "only http and https are supported".into(),
            });
        }
        if let Some(parent) = req.dest.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error(parent, e))?;
        }
        let part = req.part_path();
        if !req.resume {
            remove_if_exists(&part).await?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(req, &url, &shown, &part, &mut progress).await {
                Ok(mut d) => {
                    d.attempts = attempt;
                    return Ok(d);
                }
                Err(e) if e.is_transient() && attempt < self.opts.attempts => {
                    let delay = self.opts.retry_delay * attempt;
                    progress(DownloadEvent::Retrying {
                        attempt,
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error: e.to_string(),
                    });
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt<F>(
        &self,
        req: &DownloadRequest,
        url: &reqwest::Url,
        shown: &str,
        part: &Path,
        progress: &mut F,
    ) -> Result<Downloaded, DownloadError>
    where
        F: FnMut(DownloadEvent),
    {
        let mut offset = match tokio::fs::symlink_metadata(part).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                // Not a regular file (a symlink, a directory): never write
                // through it.
                return Err(DownloadError::Io {
                    path: part.to_path_buf(),
                    source: io::Error::other("exists and is not a regular file"),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error(part, e)),
        };
        let too_big = offset > req.max_size || req.expected_size.is_some_and(|s| offset > s);
        if too_big {
            remove_if_exists(part).await?;
            offset = 0;
        }
        if offset > 0 && req.expected_size == Some(offset) {
            // A previous run received everything but did not get to verify.
            return self.finish(req, shown, part, offset, progress).await;
        }

        let mut request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT_ENCODING, "identity");
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let send = tokio::time::timeout(self.opts.idle_timeout, request.send());
        let mut resp = match send.await {
            Err(_) => {
                return Err(DownloadError::Timeout {
                    url: shown.to_owned(),
                    after: self.opts.idle_timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(DownloadError::Network {
                    url: shown.to_owned(),
                    reason: describe_reqwest(&e),
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let total = match status {
            206 if offset > 0 => {
                let range = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                match range {
                    Some((start, total)) if start == offset => total,
                    _ => {
                        // Resumed somewhere else: the bytes would not line
                        // up. Start over on the next attempt.
                        remove_if_exists(part).await?;
                        return Err(DownloadError::Network {
                            url: shown.to_owned(),
                            reason: "the server resumed at another offset than asked".into(),
                        });
                    }
                }
            }
            200 => {
                // A fresh body (the server ignored or was not sent a range).
                offset = 0;
                resp.content_length()
            }
            416 if offset > 0 => {
                // Nothing after `offset`: the part is whole (or stale).
                return match self.finish(req, shown, part, offset, progress).await {
                    Err(DownloadError::ChecksumMismatch { .. })
                    | Err(DownloadError::SizeMismatch { .. }) => Err(DownloadError::Network {
                        url: shown.to_owned(),
                        reason:
                            "the server refused to resume a stale partial download; starting over"
                                .into(),
                    }),
                    other => other,
                };
            }
            _ => {
                return Err(DownloadError::HttpStatus {
                    url: shown.to_owned(),
                    status,
                });
            }
        };
        if let Some(t) = total {
            if t > req.max_size {
                remove_if_exists(part).await?;
                return Err(DownloadError::TooLarge {
                    url: shown.to_owned(),
                    limit: req.max_size,
                });
            }
            if let Some(expected) = req.expected_size
                && expected != t
            {
                remove_if_exists(part).await?;
                return Err(DownloadError::SizeMismatch {
                    url: shown.to_owned(),
                    expected,
                    actual: t,
                });
            }
        }
        progress(DownloadEvent::Started {
            url: shown.to_owned(),
            offset,
            total,
        });

        let mut file = open_part(part, offset == 0).await?;
        let mut received = offset;
        let mut reported = Reported::new(offset, total);
        let end = loop {
            match tokio::time::timeout(self.opts.idle_timeout, resp.chunk()).await {
                Err(_) => {
                    break Err(DownloadError::Timeout {
                        url: shown.to_owned(),
                        after: self.opts.idle_timeout,
                    });
                }
                Ok(Err(e)) => {
                    tracing::debug!(url = %shown, received, error = %describe_reqwest(&e), "Download body broke off.");
                    break Err(DownloadError::Truncated {
                        url: shown.to_owned(),
                        received,
                        expected: total,
                    });
                }
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(bytes))) => {
                    let len = bytes.len() as u64;
                    if received + len > req.max_size {
                        drop(file);
                        remove_if_exists(part).await?;
                        return Err(DownloadError::TooLarge {
                            url: shown.to_owned(),
                            limit: req.max_size,
                        });
                    }
                    file.write_all(&bytes)
                        .await
                        .map_err(|e| io_error(part, e))?;
                    received += len;
                    if reported.due(received) {
                        progress(DownloadEvent::Progress { received, total });
                    }
                }
            }
        };
        // Whatever arrived is kept durably for the next attempt.
        file.flush().await.map_err(|e| io_error(part, e))?;
        file.sync_all().await.map_err(|e| io_error(part, e))?;
        drop(file);
        end?;
        if let Some(t) = total
            && received < t
        {
            return Err(DownloadError::Truncated {
                url: shown.to_owned(),
                received,
                expected: Some(t),
            });
        }
        let mut done = self.finish(req, shown, part, received, progress).await?;
        done.resumed_from = offset;
        Ok(done)
    }

    /// Verifies the whole `.part` and renames it into place.
    async fn finish<F>(
        &self,
        req: &DownloadRequest,
        shown: &str,
        part: &Path,
        size: u64,
        progress: &mut F,
    ) -> Result<Downloaded, DownloadError>
    where
        F: FnMut(DownloadEvent),
    {
        if let Some(expected) = req.expected_size
            && expected != size
        {
            remove_if_exists(part).await?;
            return Err(DownloadError::SizeMismatch {
                url: shown.to_owned(),
                expected,
                actual: size,
            });
        }
        let path = part.to_path_buf();
        let actual = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| DownloadError::Io {
                path: part.to_path_buf(),
                source: io::Error::other(format!("hashing task failed: {e}")),
            })?
            .map_err(|e| io_error(part, e))?;
        if actual != req.sha256 {
            remove_if_exists(part).await?;
            return Err(DownloadError::ChecksumMismatch {
                url: shown.to_owned(),
                expected: req.sha256,
                actual,
            });
        }
        tokio::fs::rename(part, &req.dest)
            .await
            .map_err(|e| io_error(&req.dest, e))?;
        if let Some(dir) = req.dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_path_buf()
            };
            let d = dir.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
                .await
                .map_err(|e| DownloadError::Io {
                    path: dir.clone(),
                    source: io::Error::other(e.to_string()),
                })?
                .map_err(|e| io_error(&dir, e))?;
        }
        progress(DownloadEvent::Verified { size });
        Ok(Downloaded {
            path: req.dest.clone(),
            size,
            sha256: actual,
            resumed_from: 0,
            attempts: 1,
        })
    }
}

/// When to emit the next progress event.
struct Reported {
    total: Option<u64>,
    next: u64,
}

impl Reported {
    fn new(start: u64, total: Option<u64>) -> Self {
        let mut r = Reported { total, next: 0 };
        r.advance(start);
        r
    }

    fn step(&self) -> u64 {
        match self.total {
            Some(t) => (t * PROGRESS_PERCENT_STEP / 100).max(1),
            None => PROGRESS_BYTES_STEP,
        }
    }

    fn advance(&mut self, received: u64) {
        let step = self.step();
        self.next = (received / step + 1) * step;
    }

    fn due(&mut self, received: u64) -> bool {
        if received >= self.next {
            self.advance(received);
            true
        } else {
            false
        }
    }
}

/// `bytes <start>-<end>/<total|*>` → (start, total).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    // reqwest's Display names the URL (possibly with credentials); the
    // source chain has the cause.
    let mut out = if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the body broke off".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn open_part(part: &Path, truncate: bool) -> Result<tokio::fs::File, DownloadError> {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create(true);
    if truncate {
        o.truncate(true);
    } else {
        o.append(true);
    }
    // Never follow a symlink planted at the part path; 0600 until verified.
    o.mode(0o600).custom_flags(nix::libc::O_NOFOLLOW);
    o.open(part).await.map_err(|e| io_error(part, e))
}

async fn remove_if_exists(path: &Path) -> Result<(), DownloadError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// SHA-256 of a file (blocking; run it on a blocking thread).
pub fn hash_file(path: &Path) -> io::Result<Sha256Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Digest(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_print_as_lowercase_hex() {
        let hex = "5cb1e6309f2bd70e7d0ca77f33782beac1745790deb4c1f94444f1e7dec5fcb6";
        let d: Sha256Digest = hex.parse().unwrap();
        assert_eq!(d.to_string(), hex);
        let upper: Sha256Digest = hex.to_uppercase().parse().unwrap();
        assert_eq!(upper, d);
        assert!("abc".parse::<Sha256Digest>().is_err());
        assert!(hex.replace('5', "g").parse::<Sha256Digest>().is_err());
        assert!(format!("{hex}00").parse::<Sha256Digest>().is_err());
        // Multi-byte characters of the right byte length are not hex.
        assert!("é".repeat(32).parse::<Sha256Digest>().is_err());
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn urls_in_errors_hide_credentials() {
        assert_eq!(
            redact_url("https://user:secret@mirror.example/x.tgz"),
            "https://mirror.example/x.tgz"
        );
        assert_eq!(redact_url("https://a.example/b"), "https://a.example/b");
        assert!(!redact_url("not a url user:secret@host").contains("secret"));
    }

    #[test]
    fn progress_is_reported_in_steps() {
        let mut r = Reported::new(0, Some(1000));
        let fired: Vec<u64> = (1..=1000).filter(|n| r.due(*n)).collect();
        assert_eq!(fired.len(), 10, "{fired:?}");
        let mut r = Reported::new(0, None);
        assert!(!r.due(PROGRESS_BYTES_STEP - 1));
        assert!(r.due(PROGRESS_BYTES_STEP));
        // A resumed download does not report what was already there.
        let mut r = Reported::new(550, Some(1000));
        assert!(!r.due(560));
        assert!(r.due(600));
    }

    #[test]
    fn transient_errors_are_the_resumable_ones() {
        let t = |e: DownloadError| e.is_transient();
        assert!(t(DownloadError::Truncated {
            url: "u".into(),
            received: 1,
            expected: Some(2)
        }));
        assert!(t(DownloadError::HttpStatus {
            url: "u".into(),
            status: 503
        }));
        assert!(!t(DownloadError::HttpStatus {
            url: "u".into(),
            status: 404
        }));
        assert!(!t(DownloadError::ChecksumMismatch {
            url: "u".into(),
            expected: Sha256Digest::of(b"a"),
            actual: Sha256Digest::of(b"b"),
        }));
        assert!(!t(DownloadError::NoSpace { path: "/".into() }));
    }

    #[test]
    fn no_space_is_recognised() {
        let e = io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        assert!(matches!(
            io_error(Path::new("/x"), e),
            DownloadError::NoSpace { .. }
        ));
        let e = io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        assert!(matches!(
            io_error(Path::new("/x"), e),
            DownloadError::Io { .. }
        ));
    }

    #[test]
    fn part_path_appends_a_suffix() {
        assert_eq!(
            part_path(Path::new("/a/b.tgz")),
            PathBuf::from("/a/b.tgz.part")
        );
    }
}
