//! The data file: cluster records as JSON, loaded at start and rewritten
//! atomically (temp file in the same directory, fsync, rename, mode 0600)
//! by one background task after changes.
//!
//! Nobody on the socket path touches the disk: changes only set a flag and
//! wake the persister, which coalesces them. Prompt changes (creation,
//! deletion, status) are written after [`PROMPT_DELAY`]; heartbeat
//! bookkeeping waits up to [`LAZY_DELAY`], so a busy cluster costs at most
//! about one write per second.

use crate::auth::AdminRecord;
use crate::error::PlaneError;
use crate::store::{ClusterRecord, Durability, Store};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Delay before writing a prompt change: long enough to coalesce a burst
/// (create + enroll + manifest in one install), short enough that a crash
/// right after loses almost nothing.
pub const PROMPT_DELAY: Duration = Duration::from_millis(50);
/// Longest delay of a lazy change (heartbeat bookkeeping, which never
/// stops on a busy plane): at most one write per 5 s from heartbeats. The
/// values are informational after a restart (every cluster starts
/// `disconnected`), so a few seconds of them may be lost.
pub const LAZY_DELAY: Duration = Duration::from_secs(5);
/// After a write that took `d`, the next waits at least `WRITE_DUTY × d`:
/// the persister spends at most about a fifth of a core on a plane whose
/// data file is large (10,000 clusters are ~15 MB), even while a cold start
/// changes every cluster's status.
const WRITE_DUTY: u32 = 4;
/// Version of the data file layout.
const DATA_FILE_VERSION: u32 = 1;

#[derive(Serialize)]
struct DataFileOut<'a> {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<&'a AdminRecord>,
    clusters: &'a [&'a ClusterRecord],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFileIn {
    version: u32,
    #[serde(default)]
    admin: Option<AdminRecord>,
    clusters: Vec<ClusterRecord>,
}

/// A copy of what the data file will hold, taken under the store's lock
/// and encoded outside it.
pub(crate) struct Snapshot {
    pub admin: Option<AdminRecord>,
    pub clusters: Vec<ClusterRecord>,
}

impl Snapshot {
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let refs: Vec<&ClusterRecord> = self.clusters.iter().collect();
        encode(self.admin.as_ref(), &refs)
    }
}

/// What the data file holds.
#[derive(Debug, Default)]
pub(crate) struct DataFile {
    pub admin: Option<AdminRecord>,
    pub clusters: Vec<ClusterRecord>,
}

/// Encodes records as the data file's contents.
pub(crate) fn encode(
    admin: Option<&AdminRecord>,
    records: &[&ClusterRecord],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = serde_json::to_vec_pretty(&DataFileOut {
        version: DATA_FILE_VERSION,
        admin,
        clusters: records,
    })?;
    out.push(b'\n');
    Ok(out)
}

/// Reads the data file. A missing or empty file is an empty plane; anything
/// unreadable is an error naming the file, and the file is left untouched.
pub(crate) fn load(path: &Path) -> Result<DataFile, PlaneError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataFile::default()),
        Err(source) => {
            return Err(PlaneError::DataFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DataFile::default());
    }
    let file: DataFileIn =
        serde_json::from_slice(&bytes).map_err(|e| PlaneError::CorruptDataFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if file.version != DATA_FILE_VERSION {
        return Err(PlaneError::CorruptDataFile {
            path: path.to_owned(),
            reason: format!(
                "unsupported version {} (expected {DATA_FILE_VERSION})",
                file.version
            ),
        });
    }
    Ok(DataFile {
        admin: file.admin,
        clusters: file.clusters,
    })
}

/// Writes `bytes` to `path` atomically with mode 0600: a reader sees the old
/// file or the new one, never a torn write, even across a power loss.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "volt-plane".into());
    let mut suffix = [0u8; 6];
    rand::fill(&mut suffix[..]);
    let tmp = dir.join(format!(".{file_name}.tmp-{}", hex::encode(suffix)));

    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The flags the store sets and the persister clears.
#[derive(Default)]
pub(crate) struct PersistSignal {
    /// Off when the plane runs without a data file: marking is then free.
    enabled: AtomicBool,
    dirty: AtomicBool,
    prompt: AtomicBool,
    notify: Notify,
}

impl PersistSignal {
    pub fn new(enabled: bool) -> Self {
        PersistSignal {
            enabled: AtomicBool::new(enabled),
            ..Default::default()
        }
    }

    pub fn mark(&self, durability: Durability) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        self.dirty.store(true, Ordering::Release);
        if durability == Durability::Prompt {
            self.prompt.store(true, Ordering::Release);
        }
        self.notify.notify_one();
    }
}

/// Writes the store now if anything changed. Failures are logged and the
/// change stays pending, so the next attempt retries it.
pub(crate) async fn flush(store: &Arc<Store>, signal: &PersistSignal, path: &Path) {
    if !signal.dirty.swap(false, Ordering::AcqRel) {
        return;
    }
    signal.prompt.store(false, Ordering::Release);
    // Copied under the store's lock (short), encoded and written off the
    // async threads.
    let snapshot = store.snapshot();
    let target = path.to_owned();
    let res = tokio::task::spawn_blocking(move || {
        let bytes = snapshot
            .encode()
            .map_err(|e| std::io::Error::other(format!("cannot encode cluster records: {e}")))?;
        write_atomic(&target, &bytes)
    })
    .await;
    let err = match res {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(path = %path.display(), error = %err, "Cannot write the data file.");
    signal.dirty.store(true, Ordering::Release);
}

/// The persister task: waits for changes, coalesces them, writes; on
/// shutdown writes whatever is still pending and returns.
pub(crate) async fn run(
    store: Arc<Store>,
    signal: Arc<PersistSignal>,
    path: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_cost = Duration::ZERO;
    'outer: loop {
        tokio::select! {
            _ = signal.notify.notified() => {}
            _ = shutdown.changed() => break 'outer,
        }
        let start = Instant::now();
        let prompt_delay = PROMPT_DELAY.max(last_cost * WRITE_DUTY);
        let lazy_delay = LAZY_DELAY.max(last_cost * WRITE_DUTY);
        let mut deadline = start
            + if signal.prompt.load(Ordering::Acquire) {
                prompt_delay
            } else {
                lazy_delay
            };
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = signal.notify.notified() => {
                    if signal.prompt.load(Ordering::Acquire) {
                        deadline = deadline.min(Instant::now() + prompt_delay);
                    }
                }
                _ = shutdown.changed() => break 'outer,
            }
        }
        let began = Instant::now();
        flush(&store, &signal, &path).await;
        last_cost = began.elapsed();
    }
    flush(&store, &signal, &path).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::credentials::ServiceCredentials;
    use crate::store::ServicePortsRecord;
    use std::collections::VecDeque;
    use volt_protocol::ClusterStatus;

    fn rec(id: &str) -> ClusterRecord {
        let now = Timestamp::now();
        ClusterRecord {
            id: id.into(),
            name: "n".into(),
            status: ClusterStatus::Connected,
            enrollment_token_hash: Some("h".into()),
            daemon_password: "pw".into(),
            credentials: ServiceCredentials::generate(),
            installed_version: Some("1.0.0".into()),
            install_root: None,
            ports: ServicePortsRecord::default(),
            last_heartbeat_at: Some(now),
            last_disconnect_at: None,
            created_at: now,
            updated_at: now,
            status_history: VecDeque::new(),
            pending_update_version: None,
            rotate_password_on_enroll: false,
        }
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane.json");
        assert!(load(&path).unwrap().clusters.is_empty());
        let r = rec("a");
        let admin = AdminRecord {
            token_hash: "$argon2id$x".into(),
            created_at: Timestamp::now(),
        };
        write_atomic(&path, &encode(Some(&admin), &[&r]).unwrap()).unwrap();
        let file = load(&path).unwrap();
        assert_eq!(file.admin.unwrap().token_hash, "$argon2id$x");
        let back = file.clusters;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].id, "a");
        assert_eq!(back[0].daemon_password, "pw");
        assert_eq!(back[0].status, ClusterStatus::Connected);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_no_temp_file_remains() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane.json");
        write_atomic(&path, b"{}").unwrap();
        write_atomic(&path, b"{\"x\":1}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, PlaneError::CorruptDataFile { .. }));
        assert!(err.to_string().contains("plane.json"));
        std::fs::write(&path, r#"{"version":99,"clusters":[]}"#).unwrap();
        assert!(load(&path).is_err());
        std::fs::write(&path, "  \n").unwrap();
        assert!(load(&path).unwrap().clusters.is_empty());
    }
}
