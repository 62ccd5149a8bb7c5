//! Cluster records: what is persisted ([`ClusterRecord`]), what only lives
//! while the plane runs ([`ClusterRuntime`]), the status history, the
//! reference DTO, and the in-memory [`Store`] behind one short-held mutex.
//!
//! The mutex is a `std::sync::Mutex` and is never held across an `.await`:
//! every operation is a short synchronous edit, so the socket path (which
//! runs synchronously, see `socket.rs`) can use it directly.

use crate::clock::Timestamp;
use crate::credentials::ServiceCredentials;
use crate::events::{EventKind, EventLog};
use crate::history::{MetricHistory, Sample};
use crate::persist::PersistSignal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;
use volt_protocol::ClusterStatus;
use volt_protocol::envelope::Exposure;

/// Status changes kept per cluster. A cluster that flaps every few seconds
/// still shows its last several minutes; older entries are dropped first.
pub const STATUS_HISTORY_LIMIT: usize = 200;

/// What caused a status change (recorded in the history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSource {
    /// The cluster was created (`waiting-for-connection`).
    Created,
    /// The installer's healthcheck call.
    Enrollment,
    /// A daemon socket registered.
    Registration,
    /// A `runtime.heartbeat` command.
    Heartbeat,
    /// A `runtime.lifecycle` report.
    Lifecycle,
    /// The registered daemon socket closed (or the plane restarted).
    SocketClose,
    /// No heartbeat within the heartbeat timeout.
    HeartbeatTimeout,
    /// A user asked for deletion and the daemon accepted the uninstall.
    DeleteRequest,
    /// A user asked for an update and the daemon accepted it.
    UpdateRequest,
    /// `deleting`/`updating` lasted longer than its timeout.
    Timeout,
}

/// One entry of a cluster's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: ClusterStatus,
    pub at: Timestamp,
    pub source: StatusSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Host ports reported by the installer (null until the install manifest call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServicePortsRecord {
    pub minio: Option<u16>,
    pub redis: Option<u16>,
    pub mongodb: Option<u16>,
    pub daemon: Option<u16>,
}

/// The persisted part of a cluster.
///
/// It holds the daemon password and the service passwords **in clear**: the
/// reference encrypts them with a server key, but a local, single-user tool
/// would have to keep that key next to the file anyway. The data file is
/// therefore written with mode 0600; its `Debug` shows no secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterRecord {
    pub id: String,
    pub name: String,
    pub status: ClusterStatus,
    /// SHA-256 hex of the enrollment token; `None` once enrollment happened.
    pub enrollment_token_hash: Option<String>,
    pub daemon_password: String,
    pub credentials: ServiceCredentials,
    pub installed_version: Option<String>,
    pub install_root: Option<String>,
    #[serde(default)]
    pub ports: ServicePortsRecord,
    pub last_heartbeat_at: Option<Timestamp>,
    pub last_disconnect_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub status_history: VecDeque<StatusChange>,
    /// The version of a pending `runtime.update` (volt-plane's rule: a
    /// heartbeat reporting it moves `updating` back to `connected`).
    #[serde(default)]
    pub pending_update_version: Option<String>,
    /// Set when an enrollment token is regenerated: the enrollment that
    /// uses it replaces the daemon password instead of handing out the
    /// current one (whoever holds a regenerated token must not learn the
    /// password a running daemon uses).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_password_on_enroll: bool,
}

/// The parts of a cluster that only exist while the plane runs.
#[derive(Debug)]
pub(crate) struct ClusterRuntime {
    /// The latest heartbeat's metrics as compact JSON (shown as sent; a
    /// string costs a fraction of a parsed `Value`).
    pub last_metrics: Option<Box<str>>,
    /// The charts' history (see `history.rs`).
    pub history: MetricHistory,
    /// Heartbeats that carried metrics since start.
    pub metrics_count: u64,
    /// Accepted `runtime.heartbeat` commands since start.
    pub heartbeats: u64,
    /// Successful registrations since start.
    pub registrations: u64,
    /// Monotonic time of the last heartbeat or registration (sweeper input).
    pub last_seen: Option<Instant>,
    /// Monotonic time the current status was entered (delete/update timeouts).
    pub status_since: Instant,
    /// Latest `exposure-snapshot` of the registered daemon.
    pub exposures: Vec<Exposure>,
    /// The daemon's job status events, oldest first (`job_reports`).
    pub job_events: VecDeque<crate::job_reports::JobEventView>,
}

impl ClusterRuntime {
    pub fn new() -> Self {
        ClusterRuntime {
            last_metrics: None,
            history: MetricHistory::new(),
            metrics_count: 0,
            heartbeats: 0,
            registrations: 0,
            last_seen: None,
            status_since: Instant::now(),
            exposures: Vec::new(),
            job_events: VecDeque::new(),
        }
    }
}

impl std::fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("status", &self.status)
            .field("daemon_password", &"***")
            .finish_non_exhaustive()
    }
}

/// A record with its runtime state.
pub(crate) struct Cluster {
    pub rec: ClusterRecord,
    pub rt: ClusterRuntime,
}

/// What [`Cluster::transition`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Already in that status; nothing recorded.
    Unchanged,
    /// Status changed and was recorded in the history.
    Applied,
    /// Not allowed by the reference transition table; row left unchanged.
    Refused,
}

impl Cluster {
    pub fn new(rec: ClusterRecord) -> Self {
        Cluster {
            rec,
            rt: ClusterRuntime::new(),
        }
    }

    /// Moves to `to` if the reference's transition table allows it, recording
    /// the change in the history and the plane's log. Illegal transitions
    /// are ignored, as the reference does.
    pub fn transition(
        &mut self,
        to: ClusterStatus,
        source: StatusSource,
        reason: Option<String>,
        now: Timestamp,
        events: &EventLog,
    ) -> Transition {
        let from = self.rec.status;
        if from == to {
            return Transition::Unchanged;
        }
        if !from.can_transition(to) {
            tracing::debug!(cluster_id = %self.rec.id, %from, %to, ?source, "Ignored illegal status transition.");
            return Transition::Refused;
        }
        self.rec.status = to;
        self.rec.updated_at = now;
        self.rt.status_since = Instant::now();
        self.record(to, source, reason.clone(), now);
        events.cluster(
            &self.rec.id,
            EventKind::StatusChanged {
                from,
                to,
                source,
                reason,
            },
        );
        tracing::info!(cluster_id = %self.rec.id, %from, %to, ?source, "Cluster status changed.");
        Transition::Applied
    }

    /// Appends a history entry, dropping the oldest beyond the limit.
    pub fn record(
        &mut self,
        status: ClusterStatus,
        source: StatusSource,
        reason: Option<String>,
        at: Timestamp,
    ) {
        let h = &mut self.rec.status_history;
        while h.len() >= STATUS_HISTORY_LIMIT {
            h.pop_front();
        }
        h.push_back(StatusChange {
            status,
            at,
            source,
            reason,
        });
    }

    /// Keeps the latest metrics and adds them to the charts' history.
    pub fn push_metrics(&mut self, metrics: Value, now: Timestamp) {
        let secs = u32::try_from(now.unix_millis() / 1000).unwrap_or(u32::MAX);
        self.rt.history.record(Sample::from_metrics(&metrics, secs));
        self.rt.metrics_count += 1;
        self.rt.last_metrics = serde_json::to_string(&metrics)
            .ok()
            .map(String::into_boxed_str);
    }
}

/// `services.<name>` of the DTO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServiceDto {
    pub port: Option<u16>,
}

/// `services` of the DTO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServicesDto {
    pub minio: ServiceDto,
    pub redis: ServiceDto,
    pub mongodb: ServiceDto,
    pub daemon: ServiceDto,
}

/// The reference's Gen B `TeamClusterDTO`. A local plane has no teams or
/// users, so `team` and `createdBy` are the constant `"local"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamClusterDto {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub team: &'static str,
    pub created_by: &'static str,
    pub status: ClusterStatus,
    pub installed_version: Option<String>,
    pub last_heartbeat_at: Option<Timestamp>,
    pub last_disconnect_at: Option<Timestamp>,
    pub services: ServicesDto,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The team and user every local cluster belongs to.
pub const LOCAL_OWNER: &str = "local";

impl ClusterRecord {
    pub fn dto(&self) -> TeamClusterDto {
        let p = |port: Option<u16>| ServiceDto { port };
        TeamClusterDto {
            id: self.id.clone(),
            name: self.name.clone(),
            role: "cluster",
            team: LOCAL_OWNER,
            created_by: LOCAL_OWNER,
            status: self.status,
            installed_version: self.installed_version.clone(),
            last_heartbeat_at: self.last_heartbeat_at,
            last_disconnect_at: self.last_disconnect_at,
            services: ServicesDto {
                minio: p(self.ports.minio),
                redis: p(self.ports.redis),
                mongodb: p(self.ports.mongodb),
                daemon: p(self.ports.daemon),
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// How soon a change must reach the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Creation, deletion, enrollment, status changes: written promptly.
    Prompt,
    /// Heartbeat bookkeeping (`lastHeartbeatAt`, version): coalesced.
    Lazy,
}

/// All clusters, behind one mutex, plus the persistence signal.
pub(crate) struct Store {
    clusters: Mutex<HashMap<String, Cluster>>,
    persist: Arc<PersistSignal>,
    /// The plane's log: status changes and lifecycle events land here.
    pub events: Arc<EventLog>,
    /// The persisted admin credential (written with the records).
    admin: Mutex<Option<crate::auth::AdminRecord>>,
}

impl Store {
    pub fn new(
        records: Vec<ClusterRecord>,
        persist: Arc<PersistSignal>,
        events: Arc<EventLog>,
    ) -> Self {
        let clusters = records
            .into_iter()
            .map(|r| (r.id.clone(), Cluster::new(r)))
            .collect();
        Store {
            clusters: Mutex::new(clusters),
            persist,
            events,
            admin: Mutex::new(None),
        }
    }

    /// Sets the admin credential persisted with the records.
    pub fn set_admin(&self, admin: Option<crate::auth::AdminRecord>) {
        *self.admin.lock().unwrap_or_else(|e| e.into_inner()) = admin;
    }

    /// The map, even if a panicking thread poisoned the lock (every edit
    /// leaves the map consistent, so the data is still good).
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Cluster>> {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the persister something changed.
    pub fn changed(&self, durability: Durability) {
        self.persist.mark(durability);
    }

    /// Runs `f` on one cluster.
    pub fn read<R>(&self, id: &str, f: impl FnOnce(&Cluster) -> R) -> Option<R> {
        self.lock().get(id).map(f)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Serialises every record for the data file (sorted by creation).
    pub fn snapshot_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        self.snapshot().encode()
    }

    /// A copy of every record (sorted by creation) and the admin
    /// credential: the lock is held for the copy only, not the encoding.
    pub fn snapshot(&self) -> crate::persist::Snapshot {
        let mut clusters: Vec<ClusterRecord> =
            self.lock().values().map(|c| c.rec.clone()).collect();
        clusters.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner()).clone();
        crate::persist::Snapshot { admin, clusters }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record for tests (shared with other modules' tests).
    pub(crate) fn record(id: &str, status: ClusterStatus) -> ClusterRecord {
        let now = Timestamp::now();
        ClusterRecord {
            id: id.into(),
            name: "n".into(),
            status,
            enrollment_token_hash: None,
            daemon_password: "pw".into(),
            credentials: ServiceCredentials::generate(),
            installed_version: None,
            install_root: None,
            ports: ServicePortsRecord::default(),
            last_heartbeat_at: None,
            last_disconnect_at: None,
            created_at: now,
            updated_at: now,
            status_history: VecDeque::new(),
            pending_update_version: None,
            rotate_password_on_enroll: false,
        }
    }

    #[test]
    fn legal_transitions_are_recorded_illegal_ones_ignored() {
        let log = EventLog::new();
        let mut c = Cluster::new(record("a", ClusterStatus::Connected));
        let now = Timestamp::now();
        assert_eq!(
            c.transition(
                ClusterStatus::Connected,
                StatusSource::Heartbeat,
                None,
                now,
                &log
            ),
            Transition::Unchanged
        );
        assert_eq!(
            c.transition(
                ClusterStatus::PreparingEnvironment,
                StatusSource::Lifecycle,
                None,
                now,
                &log
            ),
            Transition::Refused
        );
        assert_eq!(c.rec.status, ClusterStatus::Connected);
        assert!(c.rec.status_history.is_empty());
        assert!(log.recent(0, 10, None).is_empty());
        assert_eq!(
            c.transition(
                ClusterStatus::Disconnected,
                StatusSource::SocketClose,
                Some("bye".into()),
                now,
                &log
            ),
            Transition::Applied
        );
        let last = c.rec.status_history.back().unwrap();
        assert_eq!(last.status, ClusterStatus::Disconnected);
        assert_eq!(last.reason.as_deref(), Some("bye"));
        let logged = log.recent(0, 10, Some("a"));
        assert_eq!(logged.len(), 1);
        assert!(matches!(
            logged[0].kind,
            EventKind::StatusChanged {
                to: ClusterStatus::Disconnected,
                ..
            }
        ));
    }

    #[test]
    fn history_and_metrics_are_bounded() {
        let log = EventLog::new();
        let mut c = Cluster::new(record("a", ClusterStatus::Connected));
        for i in 0..(STATUS_HISTORY_LIMIT + 10) {
            let to = if i % 2 == 0 {
                ClusterStatus::Disconnected
            } else {
                ClusterStatus::Connected
            };
            c.transition(to, StatusSource::Heartbeat, None, Timestamp::now(), &log);
        }
        assert_eq!(c.rec.status_history.len(), STATUS_HISTORY_LIMIT);
        for i in 0..5 {
            c.push_metrics(
                serde_json::json!({ "i": i, "cpuUsagePercent": 7 }),
                Timestamp::now(),
            );
        }
        assert_eq!(c.rt.metrics_count, 5);
        let last: Value = serde_json::from_str(c.rt.last_metrics.as_deref().unwrap()).unwrap();
        assert_eq!(last, serde_json::json!({"cpuUsagePercent": 7, "i": 4}));
        assert!(c.rt.history.latest().is_some());
    }

    #[test]
    fn dto_has_the_reference_shape() {
        let mut r = record("abc", ClusterStatus::WaitingForConnection);
        r.ports.redis = Some(6380);
        let v = serde_json::to_value(r.dto()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "_id",
            "name",
            "role",
            "team",
            "createdBy",
            "status",
            "installedVersion",
            "lastHeartbeatAt",
            "lastDisconnectAt",
            "services",
            "createdAt",
            "updatedAt",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert_eq!(v["status"], "waiting-for-connection");
        assert_eq!(v["role"], "cluster");
        assert_eq!(v["services"]["redis"]["port"], 6380);
        assert_eq!(v["services"]["minio"]["port"], Value::Null);
        assert_eq!(v["installedVersion"], Value::Null);
    }
}
