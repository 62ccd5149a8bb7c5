//! The plane itself: configuration, store and reverse channel together, and
//! the operations both the HTTP API and the library API offer (create,
//! command, view, delete, update, …). HTTP handlers are thin wrappers.

use crate::PlaneConfig;
use crate::clock::Timestamp;
use crate::credentials::ServiceCredentials;
use crate::error::PlaneError;
use crate::lifecycle::{manual_uninstall_command, requires_manual_uninstall};
use crate::manifest::DAEMON_IMAGE_REPOSITORY;
use crate::reverse_channel::{
    self, Channels, DaemonReply, DaemonStream, EncodedCommand, SessionSubscription,
};
use crate::session::{self, AttachedSession};
use crate::socket::MAX_PAYLOAD;
use crate::store::{ClusterRecord, StatusChange, StatusSource, Store, TeamClusterDto};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use volt_protocol::ClusterStatus;
use volt_protocol::envelope::{Exposure, Message, ResponseMessage, ResponseType, SessionAttach};

/// Timeout of `runtime.uninstall` and `runtime.update`: the reference's
/// `long-running-control-plane` timeout class.
pub const LONG_RUNNING_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `targetVersion` of an update request (the reference's schema).
pub const MAX_TARGET_VERSION_LEN: usize = 128;
/// How long `disconnect_daemon` waits for the disconnect to be processed,
/// so callers can assert on the status right after it returns.
const DISCONNECT_SETTLE: Duration = Duration::from_secs(2);
/// The user a local plane acts as (`Delete requested by user <id>`).
const LOCAL_USER: &str = "local";

/// Body of `POST /api/clusters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateClusterRequest {
    /// Display name; `cluster-<last 6 of the id>` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the installer should put the cluster (default
    /// `/opt/volt/team-clusters`); passed to the install command.
    #[serde(default)]
    pub install_root: Option<String>,
}

/// A new cluster and everything needed to install it. Shown once: the
/// enrollment token is stored only as a hash.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedCluster {
    pub team_cluster: TeamClusterDto,
    pub enrollment_token: String,
    pub daemon_password: String,
    pub credentials: ServiceCredentials,
    /// `curl -fsSL <url>/install.sh | sudo bash -s -- --url <url> --cluster <id> --release-key <key>`
    /// (the installer asks for the token)
    pub install_command: String,
    /// `voltd enroll --cloud-url <url> --cluster-id <id> --token <token>`
    pub voltd_command: String,
}

impl std::fmt::Debug for CreatedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedCluster")
            .field("team_cluster", &self.team_cluster)
            .field("enrollment_token", &"***")
            .field("daemon_password", &"***")
            .finish_non_exhaustive()
    }
}

/// A fresh enrollment token for an existing cluster.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegeneratedToken {
    pub team_cluster: TeamClusterDto,
    pub enrollment_token: String,
    pub install_command: String,
    pub voltd_command: String,
}

/// Everything the plane knows about one cluster right now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The reference DTO.
    pub team_cluster: TeamClusterDto,
    pub status: ClusterStatus,
    pub install_root: Option<String>,
    /// Status changes, oldest first (bounded).
    pub status_history: Vec<StatusChange>,
    /// Metrics of the latest heartbeat that carried any.
    pub last_metrics: Option<Value>,
    /// Heartbeats with metrics since the plane started.
    pub metrics_count: u64,
    /// Accepted heartbeats since the plane started.
    pub heartbeat_count: u64,
    /// Successful daemon registrations since the plane started.
    pub registrations: u64,
    /// A daemon socket is registered right now.
    pub connected: bool,
    /// The latest exposure snapshot of the registered daemon.
    pub exposures: Vec<Exposure>,
    /// The enrollment token was used (and cannot be used again).
    pub enrollment_completed: bool,
    /// Version of an accepted, not yet completed update.
    pub pending_update_version: Option<String>,
}

/// One entry of `GET /api/clusters`: the DTO and whether a daemon is on.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterListEntry {
    #[serde(flatten)]
    pub team_cluster: TeamClusterDto,
    pub connected: bool,
}

/// A page of the cluster list (`GET /api/clusters?limit=…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Case-insensitive substring of the name (or a prefix of the id).
    #[serde(default)]
    pub q: Option<String>,
    /// Only clusters in this status.
    #[serde(default)]
    pub status: Option<ClusterStatus>,
    #[serde(default)]
    pub offset: Option<usize>,
    /// Page size, at most [`MAX_PAGE_SIZE`]; no limit (and no other
    /// parameter) lists every cluster, as before paging existed.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Largest page of the cluster list.
pub const MAX_PAGE_SIZE: usize = 500;

/// One page of clusters, oldest first, with the totals a pager needs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPage {
    pub team_clusters: Vec<ClusterListEntry>,
    /// Clusters matching the filter.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// Clusters matching the name filter, per status (for filter chips).
    pub counts: std::collections::BTreeMap<ClusterStatus, usize>,
}

/// What a delete request did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The daemon accepted `runtime.uninstall`; the record goes when it
    /// reports `runtime.delete-completed` (or turns `delete-failed`).
    Deleting(TeamClusterDto),
    /// No daemon was registered: the record is gone. The command cleans the
    /// host up by hand when the cluster was ever installed.
    Deleted {
        manual_uninstall_command: Option<String>,
    },
}

/// The shared state behind the HTTP API, the socket and the library API.
pub(crate) struct Plane {
    pub cfg: PlaneConfig,
    /// Base URL daemons and installers use (no trailing slash).
    pub public_url: String,
    pub store: Arc<Store>,
    pub channels: Arc<Channels>,
    /// Who may use the console and the person API.
    pub auth: crate::auth::Auth,
}

/// `haystack` contains the lowercase `needle`, ignoring ASCII case
/// (allocation-free: the list filter runs over every cluster).
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if !needle.is_ascii() {
        return haystack.to_lowercase().contains(needle);
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// Quotes `s` for a POSIX shell unless it is made of safe characters only.
pub(crate) fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'@' | b'%' | b'+' | b'=' | b','
                )
        });
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

impl Plane {
    /// The installer one-liner for a cluster. It carries the release key
    /// to pin (the trust root of the host's binary and of every later
    /// update) but never the enrollment token: the installer asks for it on
    /// the terminal (or reads `TEAM_CLUSTER_ENROLLMENT_TOKEN`), so it shows
    /// up in no process list and no shell history.
    pub fn install_command(&self, id: &str, install_root: Option<&str>) -> String {
        let root = install_root
            .map(|r| format!(" --install-root {}", shell_quote(r)))
            .unwrap_or_default();
        let key = self
            .cfg
            .releases_dir
            .as_ref()
            .and_then(|d| {
                crate::releases::ReleaseStore::new(d)
                    .public_key()
                    .ok()
                    .flatten()
            })
            .map(|k| format!(" --release-key {}", shell_quote(&k.to_base64())))
            .unwrap_or_default();
        format!(
            "curl -fsSL {} | sudo bash -s -- --url {} --cluster {}{key}{root}",
            shell_quote(&format!("{}/install.sh", self.public_url)),
            shell_quote(&self.public_url),
            shell_quote(id),
        )
    }

    /// The `voltd enroll` command for a cluster.
    pub fn voltd_command(&self, id: &str, token: &str) -> String {
        format!(
            "voltd enroll --cloud-url {} --cluster-id {} --token {}",
            shell_quote(&self.public_url),
            shell_quote(id),
            shell_quote(token)
        )
    }

    pub fn create_cluster(&self, req: CreateClusterRequest) -> Result<CreatedCluster, PlaneError> {
        let created = self.store.create(req.name, req.install_root)?;
        let rec = &created.record;
        let token = created.enrollment_token;
        Ok(CreatedCluster {
            team_cluster: rec.dto(),
            install_command: self.install_command(&rec.id, rec.install_root.as_deref()),
            voltd_command: self.voltd_command(&rec.id, &token),
            enrollment_token: token,
            daemon_password: rec.daemon_password.clone(),
            credentials: rec.credentials.clone(),
        })
    }

    /// Enrollment (the installer's healthcheck, or `runtime.healthcheck`):
    /// the daemon password for a valid single-use token. When the token was
    /// regenerated the password is a new one, and a daemon still connected
    /// with the old password is cut off (it can no longer authenticate).
    pub fn enroll(
        &self,
        id: &str,
        req: &volt_protocol::enrollment::HealthcheckRequest,
    ) -> Result<(TeamClusterDto, String), PlaneError> {
        let (dto, password, rotated) = self.store.enroll(id, req)?;
        if rotated && let Some(conn) = self.channels.get(id) {
            tracing::info!(cluster_id = %id, "Daemon password replaced; cutting the daemon that used the old one.");
            conn.cut();
        }
        Ok((dto, password))
    }

    pub fn regenerate_token(&self, id: &str) -> Result<RegeneratedToken, PlaneError> {
        let (token, rec) = self.store.regenerate_token(id)?;
        Ok(RegeneratedToken {
            team_cluster: rec.dto(),
            install_command: self.install_command(&rec.id, rec.install_root.as_deref()),
            voltd_command: self.voltd_command(&rec.id, &token),
            enrollment_token: token,
        })
    }

    pub fn view(&self, id: &str) -> Option<ClusterView> {
        let connected = self.channels.get(id).is_some();
        self.store.read(id, |c| ClusterView {
            team_cluster: c.rec.dto(),
            status: c.rec.status,
            install_root: c.rec.install_root.clone(),
            status_history: c.rec.status_history.iter().cloned().collect(),
            last_metrics: c
                .rt
                .last_metrics
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            metrics_count: c.rt.metrics_count,
            heartbeat_count: c.rt.heartbeats,
            registrations: c.rt.registrations,
            connected,
            exposures: c.rt.exposures.clone(),
            enrollment_completed: c.rec.enrollment_token_hash.is_none(),
            pending_update_version: c.rec.pending_update_version.clone(),
        })
    }

    pub fn list(&self) -> Vec<ClusterListEntry> {
        let mut records: Vec<(Timestamp, TeamClusterDto)> = self
            .store
            .lock()
            .values()
            .map(|c| (c.rec.created_at, c.rec.dto()))
            .collect();
        records.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        records
            .into_iter()
            .map(|(_, dto)| ClusterListEntry {
                connected: self.channels.get(&dto.id).is_some(),
                team_cluster: dto,
            })
            .collect()
    }

    /// One page of the cluster list, filtered by name and status. Only the
    /// page's records are copied; the rest is compared in place.
    pub fn list_page(&self, q: &ListQuery) -> ClusterPage {
        let needle =
            q.q.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_lowercase);
        let limit = q.limit.unwrap_or(MAX_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
        let offset = q.offset.unwrap_or(0);
        let mut counts = std::collections::BTreeMap::new();
        let map = self.store.lock();
        let mut hits: Vec<(Timestamp, &str)> = Vec::new();
        for c in map.values() {
            if let Some(n) = &needle
                && !c.rec.id.starts_with(n.as_str())
                && !contains_ignore_case(&c.rec.name, n)
            {
                continue;
            }
            *counts.entry(c.rec.status).or_insert(0) += 1;
            if q.status.is_none_or(|s| s == c.rec.status) {
                hits.push((c.rec.created_at, &c.rec.id));
            }
        }
        hits.sort_unstable();
        let total = hits.len();
        let page: Vec<TeamClusterDto> = hits
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|(_, id)| map.get(*id).map(|c| c.rec.dto()))
            .collect();
        drop(map);
        ClusterPage {
            team_clusters: page
                .into_iter()
                .map(|dto| ClusterListEntry {
                    connected: self.channels.get(&dto.id).is_some(),
                    team_cluster: dto,
                })
                .collect(),
            total,
            offset,
            limit,
            counts,
        }
    }

    /// The charts' points of one cluster (see `history.rs`).
    pub fn metrics(
        &self,
        id: &str,
        minutes: u32,
        after: Option<u32>,
    ) -> Result<crate::history::Series, PlaneError> {
        let now = u32::try_from(Timestamp::now().unix_millis() / 1000).unwrap_or(u32::MAX);
        self.store
            .read(id, |c| {
                let (step, points) = c.rt.history.window(minutes, after, now);
                crate::history::Series::new(step, &points)
            })
            .ok_or(PlaneError::NotFound)
    }

    /// Sends a command, waiting up to `daemon_wait` for a daemon to register.
    pub async fn send_command(
        &self,
        id: &str,
        command: &str,
        payload: &Value,
        response_type: ResponseType,
        timeout: Option<Duration>,
    ) -> Result<DaemonReply, PlaneError> {
        let conn = self
            .channels
            .wait_for(id, self.cfg.daemon_wait, &self.store)
            .await?;
        reverse_channel::send_command(
            &conn,
            command,
            payload,
            response_type,
            timeout.unwrap_or(self.cfg.command_timeout),
        )
        .await
    }

    /// Sends a JSON command and unwraps the reply: `(status, data.data)`.
    /// The command frame must fit in one socket.io packet
    /// ([`MAX_PAYLOAD`]; [`PlaneError::PayloadTooLarge`] otherwise). A
    /// daemon failure (`ok:false`, or a 4xx/5xx status with an
    /// `{status:"error", code, message}` result) is
    /// [`PlaneError::DaemonRequestFailed`].
    pub async fn request(
        &self,
        id: &str,
        command: &str,
        payload: &Value,
        timeout: Option<Duration>,
    ) -> Result<(u16, Value), PlaneError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let encoded = EncodedCommand::new(&request_id, command, payload, ResponseType::Json)?;
        let frame_len = encoded.frame_len();
        if frame_len as u64 > MAX_PAYLOAD {
            return Err(PlaneError::PayloadTooLarge(format!(
                "The `{command}` command would be a {frame_len}-byte socket.io packet; one packet may carry at most {MAX_PAYLOAD} bytes (the socket's maxPayload)"
            )));
        }
        let conn = self
            .channels
            .wait_for(id, self.cfg.daemon_wait, &self.store)
            .await?;
        let response = reverse_channel::send_encoded(
            &conn,
            &request_id,
            &encoded,
            timeout.unwrap_or(self.cfg.command_timeout),
        )
        .await?;
        daemon_result(response)
    }

    /// Sends a stream command and returns once the daemon opened the
    /// stream; the body is then read from the [`DaemonStream`] as it
    /// arrives, with at most `stream_buffer_limit` bytes queued.
    pub async fn open_stream(
        &self,
        id: &str,
        command: &str,
        payload: &Value,
        timeout: Option<Duration>,
    ) -> Result<DaemonStream, PlaneError> {
        let conn = self
            .channels
            .wait_for(id, self.cfg.daemon_wait, &self.store)
            .await?;
        reverse_channel::open_stream(
            conn,
            command,
            payload,
            timeout.unwrap_or(self.cfg.command_timeout),
            self.cfg.stream_buffer_limit,
        )
        .await
    }

    /// Attaches a session (`session.attach`, `requestId == sessionId`),
    /// waiting up to `daemon_wait` for a daemon and
    /// [`session::SESSION_ATTACH_TIMEOUT`] for its reply.
    pub async fn attach_session(
        &self,
        id: &str,
        attach: &SessionAttach,
    ) -> Result<AttachedSession, PlaneError> {
        if attach.session_id.trim().is_empty() {
            return Err(PlaneError::InvalidInput(
                "sessionId must be a non-empty string".into(),
            ));
        }
        let conn = self
            .channels
            .wait_for(id, self.cfg.daemon_wait, &self.store)
            .await?;
        let sub = self
            .channels
            .try_subscribe_session(&conn, &attach.session_id)?;
        session::attach(conn, sub, attach).await
    }

    /// Emits one message to the cluster's registered daemon (no waiting).
    pub fn send_message(&self, id: &str, message: &Message) -> Result<(), PlaneError> {
        let conn = self.channels.get(id).ok_or_else(|| {
            if self.store.contains(id) {
                PlaneError::DaemonUnavailable
            } else {
                PlaneError::NotFound
            }
        })?;
        conn.emit(message)
    }

    pub fn subscribe_session(&self, cluster_id: &str, session_id: &str) -> SessionSubscription {
        self.channels.subscribe_session(cluster_id, session_id)
    }

    /// Cuts the daemon's connection; true if one was registered.
    pub async fn disconnect_daemon(&self, id: &str) -> bool {
        let Some(conn) = self.channels.get(id) else {
            return false;
        };
        tracing::info!(cluster_id = %id, "Cutting the daemon connection on request.");
        conn.cut();
        let deadline = tokio::time::Instant::now() + DISCONNECT_SETTLE;
        while conn.is_active() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// `DeleteTeamClusterByIdUseCase`, for the local user.
    pub async fn request_delete(&self, id: &str) -> Result<DeleteOutcome, PlaneError> {
        let rec = self.record(id)?;
        if rec.status == ClusterStatus::Deleting {
            return Err(PlaneError::conflict(
                "TeamCluster::DeletionAlreadyInProgress",
                "Team cluster deletion is already in progress",
            ));
        }
        if let Some(conn) = self.channels.get(id) {
            let reason = format!("Delete requested by user {LOCAL_USER}");
            let failed = || {
                PlaneError::conflict(
                    "TeamCluster::RemoteUninstallRequestFailed",
                    "Failed to request uninstall from the connected cluster daemon",
                )
            };
            let reply = reverse_channel::send_command(
                &conn,
                "runtime.uninstall",
                &json!({ "reason": reason }),
                ResponseType::Json,
                LONG_RUNNING_COMMAND_TIMEOUT,
            )
            .await
            .map_err(|e| {
                tracing::warn!(cluster_id = %id, error = %e, "Uninstall request to the daemon failed.");
                failed()
            })?;
            let value = reply.response().clone().into_result().map_err(|e| {
                tracing::warn!(cluster_id = %id, error = %e, "Daemon refused the uninstall command.");
                failed()
            })?;
            if let Some(reason) = rejection(&value) {
                return Err(PlaneError::conflict(
                    "TeamCluster::RemoteUninstallRejected",
                    reason.unwrap_or_else(|| "The daemon rejected the uninstall request.".into()),
                ));
            }
            self.store
                .events
                .cluster(id, crate::events::EventKind::DeleteRequested);
            return match self.store.mark_status(
                id,
                ClusterStatus::Deleting,
                StatusSource::DeleteRequest,
                Some(reason),
                None,
            ) {
                Ok(dto) => Ok(DeleteOutcome::Deleting(dto)),
                // The daemon already reported `runtime.delete-completed`.
                Err(PlaneError::NotFound) => Ok(DeleteOutcome::Deleted {
                    manual_uninstall_command: None,
                }),
                Err(e) => Err(e),
            };
        }
        let manual = requires_manual_uninstall(&rec)
            .then(|| manual_uninstall_command(&rec.id, rec.install_root.as_deref()));
        self.store.delete(id);
        Ok(DeleteOutcome::Deleted {
            manual_uninstall_command: manual,
        })
    }

    /// `RequestTeamClusterUpdateUseCase`, for the local user.
    pub async fn request_update(
        &self,
        id: &str,
        target_version: &str,
        is_edge: bool,
    ) -> Result<TeamClusterDto, PlaneError> {
        let target_version = target_version.trim();
        if target_version.is_empty() || target_version.len() > MAX_TARGET_VERSION_LEN {
            return Err(PlaneError::InvalidInput(format!(
                "targetVersion must be 1..{MAX_TARGET_VERSION_LEN} characters"
            )));
        }
        let rec = self.record(id)?;
        if !matches!(
            rec.status,
            ClusterStatus::Connected | ClusterStatus::UpdateFailed
        ) {
            return Err(PlaneError::conflict(
                "TeamCluster::NotUpdatable",
                format!(
                    "Cluster update can only be requested when the cluster is connected or in update-failed state. Current status: {}",
                    rec.status
                ),
            ));
        }
        let tag = if is_edge { "main" } else { target_version };
        let target_image = format!("{DAEMON_IMAGE_REPOSITORY}:{tag}");
        let failed = || {
            PlaneError::conflict(
                "TeamCluster::UpdateRequestFailed",
                "Failed to send update command to the connected cluster daemon",
            )
        };
        let conn = self
            .channels
            .wait_for(id, self.cfg.daemon_wait, &self.store)
            .await
            .map_err(|_| failed())?;
        let reply = reverse_channel::send_command(
            &conn,
            "runtime.update",
            &json!({ "targetImage": target_image, "targetVersion": target_version }),
            ResponseType::Json,
            LONG_RUNNING_COMMAND_TIMEOUT,
        )
        .await
        .map_err(|e| {
            tracing::warn!(cluster_id = %id, error = %e, "Update request to the daemon failed.");
            failed()
        })?;
        let value = reply.response().clone().into_result().map_err(|e| {
            tracing::warn!(cluster_id = %id, error = %e, "Daemon refused the update command.");
            failed()
        })?;
        if let Some(reason) = rejection(&value) {
            return Err(PlaneError::conflict(
                "TeamCluster::UpdateRejected",
                reason.unwrap_or_else(|| "The daemon rejected the update request.".into()),
            ));
        }
        tracing::info!(cluster_id = %id, %target_version, %target_image, "Cluster update requested.");
        self.store.events.cluster(
            id,
            crate::events::EventKind::UpdateRequested {
                target_version: target_version.to_owned(),
            },
        );
        self.store.mark_status(
            id,
            ClusterStatus::Updating,
            StatusSource::UpdateRequest,
            Some(format!("Update to {target_version} requested")),
            Some(target_version.to_owned()),
        )
    }

    fn record(&self, id: &str) -> Result<ClusterRecord, PlaneError> {
        self.store
            .read(id, |c| c.rec.clone())
            .ok_or(PlaneError::NotFound)
    }
}

/// A JSON reply as `(status, result)`, or the daemon's failure. Besides
/// `ok:false`, a 4xx/5xx status whose result is `{status:"error", …}` (how
/// SDK-era daemons report handled errors) is a failure too.
pub(crate) fn daemon_result(response: ResponseMessage) -> Result<(u16, Value), PlaneError> {
    let status = response.status;
    let value = response.into_result().map_err(PlaneError::from_daemon)?;
    if status >= 400 {
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        return Err(PlaneError::DaemonRequestFailed {
            status,
            code: text("code"),
            message: text("message")
                .unwrap_or_else(|| format!("The daemon answered with status {status}")),
        });
    }
    Ok((status, value))
}

/// `Some(reason?)` when a semantic result says `accepted: false`.
fn rejection(value: &Value) -> Option<Option<String>> {
    if value.get("accepted") != Some(&Value::Bool(false)) {
        return None;
    }
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some(
        text("reason")
            .or_else(|| text("message"))
            .or_else(|| text("error")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filter_ignores_case() {
        assert!(contains_ignore_case("Lab-Cluster", "cluster"));
        assert!(contains_ignore_case("lab", ""));
        assert!(!contains_ignore_case("lab", "labs"));
        assert!(contains_ignore_case("Écluse", "écl"));
    }

    #[test]
    fn shell_quoting_leaves_safe_words_alone() {
        assert_eq!(
            shell_quote("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn daemon_results_unwrap_and_fail_like_the_server() {
        let ok = ResponseMessage::success("r", json!({"keys": []}));
        assert_eq!(daemon_result(ok).unwrap(), (200, json!({"keys": []})));
        let refused = ResponseMessage::failure_with_code("r", 404, "Object::NotFound", "missing");
        let e = daemon_result(refused).unwrap_err();
        assert_eq!((e.http_status(), e.code()), (404, "Object::NotFound"));
        assert_eq!(e.to_string(), "missing");
        let plain = ResponseMessage::failure("r", 400, "Unsupported target");
        let e = daemon_result(plain).unwrap_err();
        assert_eq!(
            (e.http_status(), e.code()),
            (400, "TeamCluster::DaemonRequestFailed")
        );
        let handled = ResponseMessage::success_with_status(
            "r",
            422,
            json!({"status": "error", "code": "X", "message": "bad"}),
        );
        let e = daemon_result(handled).unwrap_err();
        assert_eq!(
            (e.http_status(), e.code(), e.to_string().as_str()),
            (422, "X", "bad")
        );
        let malformed = ResponseMessage {
            data: Some(json!(1)),
            ..ResponseMessage::success("r", json!(null))
        };
        assert_eq!(daemon_result(malformed).unwrap_err().http_status(), 502);
    }

    #[test]
    fn rejections_carry_their_reason() {
        assert_eq!(rejection(&json!({"accepted": true})), None);
        assert_eq!(rejection(&json!({})), None);
        assert_eq!(
            rejection(&json!({"accepted": false, "reason": "busy"})),
            Some(Some("busy".into()))
        );
        assert_eq!(rejection(&json!({"accepted": false})), Some(None));
    }
}
