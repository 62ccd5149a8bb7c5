//! The reference server's lifecycle rules (`TeamClusterLifecycleService.ts`,
//! `DaemonCredentialGuard.ts`, the lifecycle use cases) as operations on the
//! [`Store`]: enrollment, registration, heartbeats, lifecycle reports,
//! deletion, update, and the periodic timeout sweep.
//!
//! Status changes go through [`Cluster::transition`], which asks the
//! protocol crate's transition table; nothing here re-implements it.

use crate::clock::Timestamp;
use crate::credentials::{self, ServiceCredentials};
use crate::error::PlaneError;
use crate::store::{
    Cluster, ClusterRecord, Durability, ServicePortsRecord, StatusSource, Store, TeamClusterDto,
    Transition,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use volt_protocol::ClusterStatus;
use volt_protocol::enrollment::{HealthcheckRequest, InstallManifestRequest};
use volt_protocol::envelope::Exposure;
use volt_protocol::error_code::server;

/// Longest cluster name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// What `POST /api/clusters` produced. The token exists only here: the
/// store keeps its hash.
pub(crate) struct Created {
    pub record: ClusterRecord,
    pub enrollment_token: String,
}

/// `runtime.heartbeat` payload as the socket path accepts it: like the
/// reference, the metrics are passed through without a strict schema.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeartbeatIn {
    pub team_cluster_id: String,
    pub daemon_password: String,
    #[serde(default)]
    pub installed_version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for wire compatibility; roles are fixed locally.
    pub runtime: Option<Value>,
    #[serde(default)]
    pub metrics: Option<Value>,
}

/// `runtime.lifecycle` payload (`reason` is voltd's addition).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LifecycleIn {
    pub team_cluster_id: String,
    pub daemon_password: String,
    pub status: String,
    #[serde(default)]
    pub installed_version: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Payload of the daemon→server commands that only authenticate
/// (`runtime.delete-completed`, job reports).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CredentialsIn {
    pub team_cluster_id: String,
    pub daemon_password: String,
}

/// What one sweep changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    pub disconnected: usize,
    pub delete_failed: usize,
    pub update_failed: usize,
}

fn check_password(c: &Cluster, password: &str) -> Result<(), PlaneError> {
    if credentials::secure_eq(&c.rec.daemon_password, password) {
        Ok(())
    } else {
        Err(PlaneError::DaemonUnauthorized)
    }
}

fn non_blank(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Store {
    /// Creates a cluster in `waiting-for-connection` with fresh credentials.
    pub(crate) fn create(
        &self,
        name: Option<String>,
        install_root: Option<String>,
    ) -> Result<Created, PlaneError> {
        let id = credentials::new_cluster_id();
        let name = match non_blank(name) {
            Some(n) if n.chars().count() > MAX_NAME_LEN => {
                return Err(PlaneError::InvalidInput(format!(
                    "name must be at most {MAX_NAME_LEN} characters"
                )));
            }
            Some(n) => n,
            None => format!("cluster-{}", &id[id.len() - 6..]),
        };
        let install_root = match non_blank(install_root) {
            Some(r) if r.len() > volt_protocol::enrollment::MAX_INSTALL_ROOT_LEN => {
                return Err(PlaneError::InvalidInput(
                    "installRoot must be 1..512 characters".into(),
                ));
            }
            other => other,
        };
        let token = credentials::new_enrollment_token();
        let now = Timestamp::now();
        let rec = ClusterRecord {
            id: id.clone(),
            name,
            status: ClusterStatus::WaitingForConnection,
            enrollment_token_hash: Some(credentials::hash_token(&token)),
            daemon_password: credentials::new_password(),
            credentials: ServiceCredentials::generate(),
            installed_version: None,
            install_root,
            ports: ServicePortsRecord::default(),
            last_heartbeat_at: None,
            last_disconnect_at: None,
            created_at: now,
            updated_at: now,
            status_history: VecDeque::new(),
            pending_update_version: None,
            rotate_password_on_enroll: false,
        };
        let mut cluster = Cluster::new(rec);
        cluster.record(
            ClusterStatus::WaitingForConnection,
            StatusSource::Created,
            None,
            now,
        );
        let record = cluster.rec.clone();
        let name = record.name.clone();
        self.lock().insert(id.clone(), cluster);
        self.changed(Durability::Prompt);
        self.events
            .cluster(&id, crate::events::EventKind::ClusterCreated { name });
        tracing::info!(cluster_id = %id, "Cluster created.");
        Ok(Created {
            record,
            enrollment_token: token,
        })
    }

    /// The installer's healthcheck: single-use token check, then
    /// `healthcheck-received` (if legal), version stored, token hash cleared.
    pub(crate) fn enroll(
        &self,
        id: &str,
        req: &HealthcheckRequest,
    ) -> Result<(TeamClusterDto, String, bool), PlaneError> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or(PlaneError::NotFound)?;
        let Some(hash) = c.rec.enrollment_token_hash.as_deref() else {
            return Err(PlaneError::EnrollmentAlreadyCompleted);
        };
        let presented = credentials::hash_token(req.enrollment_token.expose().trim());
        if !credentials::secure_eq(hash, &presented) {
            return Err(PlaneError::EnrollmentInvalid);
        }
        let now = Timestamp::now();
        c.transition(
            ClusterStatus::HealthcheckReceived,
            StatusSource::Enrollment,
            None,
            now,
            &self.events,
        );
        if let Some(v) = non_blank(req.installed_version.clone()) {
            c.rec.installed_version = Some(v);
        }
        // A regenerated token gets a new password: the current one may be
        // in use by a daemon the token holder must not impersonate.
        let rotated = std::mem::take(&mut c.rec.rotate_password_on_enroll);
        if rotated {
            c.rec.daemon_password = credentials::new_password();
        }
        c.rec.enrollment_token_hash = None;
        c.rec.updated_at = now;
        let out = (c.rec.dto(), c.rec.daemon_password.clone(), rotated);
        drop(map);
        self.changed(Durability::Prompt);
        self.events.cluster(
            id,
            crate::events::EventKind::EnrollmentCompleted {
                password_rotated: rotated,
            },
        );
        tracing::info!(cluster_id = %id, password_rotated = rotated, "Enrollment completed.");
        Ok(out)
    }

    /// The install manifest call: authenticates, stores install root and
    /// ports, and returns the record the manifest is built from.
    pub(crate) fn install_context(
        &self,
        id: &str,
        req: &InstallManifestRequest,
    ) -> Result<ClusterRecord, PlaneError> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or(PlaneError::NotFound)?;
        check_password(c, req.daemon_password.expose())?;
        c.rec.install_root = Some(normalize_install_root(&req.install_root));
        c.rec.ports = ServicePortsRecord {
            minio: Some(req.ports.minio),
            redis: Some(req.ports.redis),
            mongodb: Some(req.ports.mongodb),
            daemon: Some(req.ports.daemon),
        };
        c.rec.updated_at = Timestamp::now();
        let out = c.rec.clone();
        drop(map);
        self.changed(Durability::Prompt);
        Ok(out)
    }

    /// `authenticateDaemonConnection`: cluster exists and password matches.
    pub(crate) fn authenticate(&self, id: &str, password: &str) -> Result<(), PlaneError> {
        let map = self.lock();
        let c = map.get(id).ok_or(PlaneError::NotFound)?;
        check_password(c, password)
    }

    /// `markDaemonConnected`: `connected` unless heartbeat-locked (or the
    /// table forbids it), `lastHeartbeatAt = now`, `lastDisconnectAt = null`.
    pub(crate) fn mark_daemon_connected(&self, id: &str) -> Option<ClusterStatus> {
        let mut map = self.lock();
        let c = map.get_mut(id)?;
        let now = Timestamp::now();
        let next = c.rec.status.after_heartbeat();
        c.transition(next, StatusSource::Registration, None, now, &self.events);
        c.rec.last_heartbeat_at = Some(now);
        c.rec.last_disconnect_at = None;
        c.rec.updated_at = now;
        c.rt.last_seen = Some(Instant::now());
        c.rt.registrations += 1;
        let status = c.rec.status;
        drop(map);
        self.changed(Durability::Prompt);
        self.events
            .cluster(id, crate::events::EventKind::DaemonRegistered);
        Some(status)
    }

    /// `markDaemonDisconnected`: `connected → disconnected` (locked statuses
    /// stay), `lastDisconnectAt = now`; the exposure registry is cleared.
    pub(crate) fn mark_daemon_disconnected(&self, id: &str, source: StatusSource) {
        let mut map = self.lock();
        let Some(c) = map.get_mut(id) else {
            return;
        };
        let now = Timestamp::now();
        if c.rec.status == ClusterStatus::Connected {
            c.transition(ClusterStatus::Disconnected, source, None, now, &self.events);
        }
        c.rec.last_disconnect_at = Some(now);
        c.rec.updated_at = now;
        c.rt.exposures.clear();
        drop(map);
        self.changed(Durability::Prompt);
        self.events
            .cluster(id, crate::events::EventKind::DaemonDisconnected);
    }

    /// `runtime.heartbeat` (`recordHeartbeat`).
    pub(crate) fn record_heartbeat(&self, hb: HeartbeatIn) -> Result<TeamClusterDto, PlaneError> {
        let mut map = self.lock();
        let c = map
            .get_mut(&hb.team_cluster_id)
            .ok_or(PlaneError::NotFound)?;
        check_password(c, &hb.daemon_password)?;
        let now = Timestamp::now();
        let version = non_blank(hb.installed_version);
        let cur = c.rec.status;
        // volt-plane's rule (the reference never says how `updating` ends):
        // a heartbeat reporting the requested version completes the update.
        let update_done = cur == ClusterStatus::Updating
            && version.is_some()
            && c.rec.pending_update_version == version;
        let (next, reason) = if update_done {
            (
                ClusterStatus::Connected,
                Some(format!(
                    "Heartbeat reported the requested version {}",
                    version.as_deref().unwrap_or_default()
                )),
            )
        } else {
            (cur.after_heartbeat(), None)
        };
        let status_changed = c.transition(next, StatusSource::Heartbeat, reason, now, &self.events);
        if update_done && status_changed == Transition::Applied {
            c.rec.pending_update_version = None;
        }
        if let Some(v) = version {
            c.rec.installed_version = Some(v);
        }
        c.rec.last_heartbeat_at = Some(now);
        c.rec.updated_at = now;
        c.rt.last_seen = Some(Instant::now());
        c.rt.heartbeats += 1;
        if let Some(m) = hb.metrics.filter(|m| !m.is_null()) {
            c.push_metrics(m, now);
        }
        let dto = c.rec.dto();
        drop(map);
        self.changed(if status_changed == Transition::Applied {
            Durability::Prompt
        } else {
            Durability::Lazy
        });
        Ok(dto)
    }

    /// `runtime.lifecycle` (`UpdateTeamClusterLifecycleUseCase`): refuses
    /// `connected` and `waiting-for-connection`, then applies the status if
    /// the table allows it and ignores it otherwise (still a success).
    pub(crate) fn update_lifecycle(&self, lc: LifecycleIn) -> Result<TeamClusterDto, PlaneError> {
        let status: ClusterStatus = lc
            .status
            .parse()
            .map_err(|_| PlaneError::InvalidInput(format!("Invalid status: {}", lc.status)))?;
        if status == ClusterStatus::Connected {
            return Err(PlaneError::bad_request(
                server::HEARTBEAT_REQUIRED,
                "Connected status must be reported through the heartbeat endpoint",
            ));
        }
        if status == ClusterStatus::WaitingForConnection {
            return Err(PlaneError::bad_request(
                server::LIFECYCLE_STATUS_INVALID,
                "Waiting-for-connection is managed by the control plane",
            ));
        }
        let mut map = self.lock();
        let c = map
            .get_mut(&lc.team_cluster_id)
            .ok_or(PlaneError::NotFound)?;
        check_password(c, &lc.daemon_password)?;
        let now = Timestamp::now();
        let reason = non_blank(lc.reason);
        let applied = c.transition(status, StatusSource::Lifecycle, reason, now, &self.events);
        let mut changed = applied == Transition::Applied;
        if applied != Transition::Refused {
            if let Some(v) = non_blank(lc.installed_version) {
                c.rec.installed_version = Some(v);
                changed = true;
            }
            if status == ClusterStatus::Disconnected {
                c.rec.last_disconnect_at = Some(now);
                changed = true;
            }
            if changed {
                c.rec.updated_at = now;
            }
        } else {
            tracing::debug!(cluster_id = %lc.team_cluster_id, from = %c.rec.status, to = %status, "Lifecycle report refused by the transition table.");
        }
        let dto = c.rec.dto();
        drop(map);
        if changed {
            self.changed(Durability::Prompt);
        }
        Ok(dto)
    }

    /// `runtime.delete-completed`: authenticated delete of the record. An
    /// already deleted cluster is a success, as in the reference.
    pub(crate) fn complete_deletion(&self, id: &str, password: &str) -> Result<(), PlaneError> {
        let mut map = self.lock();
        let Some(c) = map.get(id) else {
            return Ok(());
        };
        check_password(c, password)?;
        map.remove(id);
        drop(map);
        self.changed(Durability::Prompt);
        self.events
            .cluster(id, crate::events::EventKind::ClusterDeleted);
        tracing::info!(cluster_id = %id, "Cluster deleted after the daemon's uninstall.");
        Ok(())
    }

    /// A server-side status change (`markDeleting`, `markUpdating`).
    pub(crate) fn mark_status(
        &self,
        id: &str,
        to: ClusterStatus,
        source: StatusSource,
        reason: Option<String>,
        pending_update_version: Option<String>,
    ) -> Result<TeamClusterDto, PlaneError> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or(PlaneError::NotFound)?;
        if c.transition(to, source, reason, Timestamp::now(), &self.events) == Transition::Applied
            && pending_update_version.is_some()
        {
            c.rec.pending_update_version = pending_update_version;
        }
        let dto = c.rec.dto();
        drop(map);
        self.changed(Durability::Prompt);
        Ok(dto)
    }

    /// Removes a cluster record.
    pub(crate) fn delete(&self, id: &str) -> Option<ClusterRecord> {
        let removed = self.lock().remove(id).map(|c| c.rec);
        if removed.is_some() {
            self.changed(Durability::Prompt);
            self.events
                .cluster(id, crate::events::EventKind::ClusterDeleted);
            tracing::info!(cluster_id = %id, "Cluster deleted.");
        }
        removed
    }

    /// A new enrollment token (the old one, used or not, stops working).
    pub(crate) fn regenerate_token(&self, id: &str) -> Result<(String, ClusterRecord), PlaneError> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or(PlaneError::NotFound)?;
        if matches!(c.rec.status, ClusterStatus::Deleting) {
            return Err(PlaneError::conflict(
                "TeamCluster::InvalidStatusForTokenRegeneration",
                format!(
                    "Enrollment token cannot be regenerated while the cluster is {}",
                    c.rec.status
                ),
            ));
        }
        let token = credentials::new_enrollment_token();
        c.rec.enrollment_token_hash = Some(credentials::hash_token(&token));
        // Whoever enrolls with the new token gets a new daemon password,
        // never the one a running daemon holds (see `enroll`).
        c.rec.rotate_password_on_enroll = true;
        c.rec.updated_at = Timestamp::now();
        let rec = c.rec.clone();
        drop(map);
        self.changed(Durability::Prompt);
        self.events
            .cluster(id, crate::events::EventKind::TokenRegenerated);
        tracing::info!(cluster_id = %id, "Enrollment token regenerated.");
        Ok((token, rec))
    }

    /// Replaces the exposure registry of a cluster (`exposure-snapshot`).
    pub(crate) fn set_exposures(&self, id: &str, exposures: Vec<Exposure>) {
        if let Some(c) = self.lock().get_mut(id) {
            c.rt.exposures = exposures;
        }
    }

    /// One pass of the heartbeat monitor and the delete/update timeouts.
    pub(crate) fn sweep(
        &self,
        heartbeat_timeout: Duration,
        delete_timeout: Duration,
        update_timeout: Duration,
    ) -> Swept {
        let mono = Instant::now();
        let now = Timestamp::now();
        let mut out = Swept::default();
        let mut map = self.lock();
        for c in map.values_mut() {
            let in_status = mono.saturating_duration_since(c.rt.status_since);
            let timed_out = match c.rec.status {
                ClusterStatus::Connected => {
                    let seen = c.rt.last_seen.unwrap_or(c.rt.status_since);
                    (mono.saturating_duration_since(seen) > heartbeat_timeout).then_some((
                        ClusterStatus::Disconnected,
                        StatusSource::HeartbeatTimeout,
                        None,
                    ))
                }
                ClusterStatus::Deleting if in_status > delete_timeout => Some((
                    ClusterStatus::DeleteFailed,
                    StatusSource::Timeout,
                    Some("Deletion did not complete in time".to_owned()),
                )),
                ClusterStatus::Updating if in_status > update_timeout => Some((
                    ClusterStatus::UpdateFailed,
                    StatusSource::Timeout,
                    Some("Update did not complete in time".to_owned()),
                )),
                _ => None,
            };
            let Some((to, source, reason)) = timed_out else {
                continue;
            };
            if c.transition(to, source, reason, now, &self.events) != Transition::Applied {
                continue;
            }
            match to {
                ClusterStatus::Disconnected => {
                    c.rec.last_disconnect_at = Some(now);
                    out.disconnected += 1;
                }
                ClusterStatus::DeleteFailed => out.delete_failed += 1,
                _ => out.update_failed += 1,
            }
            tracing::warn!(cluster_id = %c.rec.id, status = %to, "Cluster status changed by a timeout.");
        }
        drop(map);
        if out != Swept::default() {
            self.changed(Durability::Prompt);
        }
        out
    }

    /// At start: sockets did not survive the restart, so `connected`
    /// clusters are `disconnected` now.
    pub(crate) fn disconnect_all_after_restart(&self) -> usize {
        let now = Timestamp::now();
        let mut n = 0;
        for c in self.lock().values_mut() {
            if c.rec.status == ClusterStatus::Connected
                && c.transition(
                    ClusterStatus::Disconnected,
                    StatusSource::SocketClose,
                    Some("Control plane restarted".into()),
                    now,
                    &self.events,
                ) == Transition::Applied
            {
                c.rec.last_disconnect_at = Some(now);
                n += 1;
            }
        }
        if n > 0 {
            self.changed(Durability::Prompt);
        }
        n
    }
}

/// The reference's `normalizeTeamClusterInstallRoot`: trimmed, trailing
/// slashes removed, default `/opt/volt/team-clusters` when blank.
pub(crate) fn normalize_install_root(root: &str) -> String {
    let t = root.trim();
    if t.is_empty() {
        return DEFAULT_INSTALL_ROOT.into();
    }
    let stripped = t.trim_end_matches(['/', '\\']);
    if stripped.is_empty() {
        t.into()
    } else {
        stripped.into()
    }
}

/// The reference's default install root on Linux.
pub const DEFAULT_INSTALL_ROOT: &str = "/opt/volt/team-clusters";

/// The reference's `buildManualTeamClusterUninstallCommand` (POSIX and
/// Windows forms).
pub(crate) fn manual_uninstall_command(id: &str, install_root: Option<&str>) -> String {
    let root = normalize_install_root(install_root.unwrap_or(""));
    let windows = is_windows_root(&root);
    let dir = format!("{root}{}{id}", if windows { "\\" } else { "/" });
    if windows {
        let d = dir.replace('\'', "''");
        format!(
            "powershell -NoProfile -ExecutionPolicy Bypass -Command \"$installDir='{d}'; if (Test-Path -LiteralPath $installDir) {{ Set-Location -LiteralPath $installDir; docker compose down -v --remove-orphans; Remove-Item -LiteralPath $installDir -Recurse -Force }}\""
        )
    } else {
        let d = dir.replace('\'', "'\"'\"'");
        format!(
            "sudo bash -lc 'if [ -d \"{d}\" ]; then cd \"{d}\" && docker compose down -v --remove-orphans; fi && rm -rf \"{d}\"'"
        )
    }
}

fn is_windows_root(root: &str) -> bool {
    let b = root.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
        || root.starts_with("\\\\")
}

/// Whether deleting a not-connected cluster should tell the user to clean
/// the host up by hand (the reference's `shouldRequireManualUninstall`).
pub(crate) fn requires_manual_uninstall(rec: &ClusterRecord) -> bool {
    if rec.status == ClusterStatus::WaitingForConnection {
        return rec.installed_version.is_some() || rec.ports.daemon.is_some();
    }
    rec.status != ClusterStatus::Connected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::PersistSignal;
    use std::sync::Arc;
    use volt_protocol::register::Secret;

    fn store() -> Store {
        Store::new(
            Vec::new(),
            Arc::new(PersistSignal::new(false)),
            Arc::new(crate::events::EventLog::new()),
        )
    }

    fn hb(id: &str, pw: &str, version: Option<&str>) -> HeartbeatIn {
        HeartbeatIn {
            team_cluster_id: id.into(),
            daemon_password: pw.into(),
            installed_version: version.map(Into::into),
            runtime: None,
            metrics: Some(serde_json::json!({"cpuUsagePercent": 3})),
        }
    }

    #[test]
    fn enrollment_is_single_use() {
        let s = store();
        let c = s.create(Some("x".into()), None).unwrap();
        let req = HealthcheckRequest {
            enrollment_token: Secret::new("wrong"),
            installed_version: None,
        };
        assert!(matches!(
            s.enroll(&c.record.id, &req),
            Err(PlaneError::EnrollmentInvalid)
        ));
        let req = HealthcheckRequest {
            enrollment_token: Secret::new(format!(" {} ", c.enrollment_token)),
            installed_version: Some("1.0.0".into()),
        };
        let (dto, pw, rotated) = s.enroll(&c.record.id, &req).unwrap();
        assert_eq!(dto.status, ClusterStatus::HealthcheckReceived);
        assert_eq!(dto.installed_version.as_deref(), Some("1.0.0"));
        // The first enrollment hands out the creation password, as the
        // reference does.
        assert_eq!(pw, c.record.daemon_password);
        assert!(!rotated);
        assert!(matches!(
            s.enroll(&c.record.id, &req),
            Err(PlaneError::EnrollmentAlreadyCompleted)
        ));
        assert!(matches!(s.enroll("nope", &req), Err(PlaneError::NotFound)));
        // A regenerated token enrolls with a new password; the old one
        // stops working.
        let (token, _) = s.regenerate_token(&c.record.id).unwrap();
        let req = HealthcheckRequest {
            enrollment_token: Secret::new(token),
            installed_version: None,
        };
        let (_, new_pw, rotated) = s.enroll(&c.record.id, &req).unwrap();
        assert!(rotated);
        assert_ne!(new_pw, pw);
        assert!(s.authenticate(&c.record.id, &pw).is_err());
        assert!(s.authenticate(&c.record.id, &new_pw).is_ok());
    }

    #[test]
    fn heartbeat_connects_unless_locked_and_finishes_updates() {
        let s = store();
        let c = s.create(None, None).unwrap();
        let id = c.record.id.clone();
        let pw = c.record.daemon_password.clone();
        assert!(matches!(
            s.record_heartbeat(hb(&id, "bad", None)),
            Err(PlaneError::DaemonUnauthorized)
        ));
        let dto = s.record_heartbeat(hb(&id, &pw, Some("1.0.0"))).unwrap();
        assert_eq!(dto.status, ClusterStatus::Connected);
        s.mark_status(
            &id,
            ClusterStatus::Updating,
            StatusSource::UpdateRequest,
            None,
            Some("2.0.0".into()),
        )
        .unwrap();
        let dto = s.record_heartbeat(hb(&id, &pw, Some("1.0.0"))).unwrap();
        assert_eq!(dto.status, ClusterStatus::Updating);
        let dto = s.record_heartbeat(hb(&id, &pw, Some("2.0.0"))).unwrap();
        assert_eq!(dto.status, ClusterStatus::Connected);
        assert_eq!(dto.installed_version.as_deref(), Some("2.0.0"));
        let heartbeats = s
            .read(&id, |c| (c.rt.heartbeats, c.rt.metrics_count))
            .unwrap();
        assert_eq!(heartbeats, (3, 3));
    }

    #[test]
    fn lifecycle_refuses_server_owned_statuses_and_ignores_illegal_ones() {
        let s = store();
        let c = s.create(None, None).unwrap();
        let id = c.record.id.clone();
        let pw = c.record.daemon_password.clone();
        let lc = |status: &str, reason: Option<&str>| LifecycleIn {
            team_cluster_id: id.clone(),
            daemon_password: pw.clone(),
            status: status.into(),
            installed_version: None,
            reason: reason.map(Into::into),
        };
        let err = s.update_lifecycle(lc("connected", None)).unwrap_err();
        assert_eq!(err.code(), "TeamCluster::HeartbeatRequired");
        assert_eq!(err.http_status(), 400);
        let err = s
            .update_lifecycle(lc("waiting-for-connection", None))
            .unwrap_err();
        assert_eq!(err.code(), "TeamCluster::LifecycleStatusInvalid");
        assert!(s.update_lifecycle(lc("bogus", None)).is_err());
        // waiting-for-connection → deleting is legal; → delete-failed is not.
        let dto = s.update_lifecycle(lc("delete-failed", None)).unwrap();
        assert_eq!(dto.status, ClusterStatus::WaitingForConnection);
        let dto = s
            .update_lifecycle(lc("deleting", Some("uninstalling")))
            .unwrap();
        assert_eq!(dto.status, ClusterStatus::Deleting);
        let reason = s
            .read(&id, |c| c.rec.status_history.back().unwrap().reason.clone())
            .unwrap();
        assert_eq!(reason.as_deref(), Some("uninstalling"));
    }

    #[test]
    fn registration_and_disconnect_follow_the_locks() {
        let s = store();
        let c = s.create(None, None).unwrap();
        let id = c.record.id.clone();
        assert_eq!(s.mark_daemon_connected(&id), Some(ClusterStatus::Connected));
        s.mark_daemon_disconnected(&id, StatusSource::SocketClose);
        let (status, last_disconnect) = s
            .read(&id, |c| (c.rec.status, c.rec.last_disconnect_at))
            .unwrap();
        assert_eq!(status, ClusterStatus::Disconnected);
        assert!(last_disconnect.is_some());
        s.mark_status(
            &id,
            ClusterStatus::Deleting,
            StatusSource::DeleteRequest,
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.mark_daemon_connected(&id), Some(ClusterStatus::Deleting));
        s.mark_daemon_disconnected(&id, StatusSource::SocketClose);
        assert_eq!(
            s.read(&id, |c| c.rec.status).unwrap(),
            ClusterStatus::Deleting
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_applies_every_timeout() {
        let s = store();
        let a = s.create(None, None).unwrap().record.id;
        let b = s.create(None, None).unwrap().record.id;
        s.mark_daemon_connected(&a);
        s.mark_daemon_connected(&b);
        s.mark_status(
            &b,
            ClusterStatus::Updating,
            StatusSource::UpdateRequest,
            None,
            Some("2".into()),
        )
        .unwrap();
        let t = Duration::from_secs(60);
        assert_eq!(s.sweep(t, t, t), Swept::default());
        tokio::time::advance(Duration::from_secs(61)).await;
        let swept = s.sweep(t, t, t);
        assert_eq!(swept.disconnected, 1);
        assert_eq!(swept.update_failed, 1);
        assert_eq!(
            s.read(&a, |c| c.rec.status).unwrap(),
            ClusterStatus::Disconnected
        );
        assert_eq!(
            s.read(&b, |c| c.rec.status).unwrap(),
            ClusterStatus::UpdateFailed
        );
    }

    #[test]
    fn a_restart_disconnects_clusters_that_were_connected() {
        let s = store();
        let a = s.create(None, None).unwrap().record.id;
        let b = s.create(None, None).unwrap().record.id;
        s.mark_daemon_connected(&a);
        assert_eq!(s.disconnect_all_after_restart(), 1);
        let (status, reason) = s
            .read(&a, |c| {
                (
                    c.rec.status,
                    c.rec.status_history.back().unwrap().reason.clone(),
                )
            })
            .unwrap();
        assert_eq!(status, ClusterStatus::Disconnected);
        assert_eq!(reason.as_deref(), Some("Control plane restarted"));
        assert_eq!(
            s.read(&b, |c| c.rec.status).unwrap(),
            ClusterStatus::WaitingForConnection
        );
    }

    #[test]
    fn install_roots_and_uninstall_commands_match_the_reference() {
        assert_eq!(normalize_install_root(" /srv/volt/ "), "/srv/volt");
        assert_eq!(normalize_install_root(""), DEFAULT_INSTALL_ROOT);
        assert_eq!(normalize_install_root("/"), "/");
        assert_eq!(
            manual_uninstall_command("abc", None),
            "sudo bash -lc 'if [ -d \"/opt/volt/team-clusters/abc\" ]; then cd \"/opt/volt/team-clusters/abc\" && docker compose down -v --remove-orphans; fi && rm -rf \"/opt/volt/team-clusters/abc\"'"
        );
        assert!(manual_uninstall_command("abc", Some("C:\\Volt")).starts_with("powershell"));
    }
}
