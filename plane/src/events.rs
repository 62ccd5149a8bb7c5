//! The plane's supervisor log: a typed record of what the plane itself did
//! (clusters created and deleted, enrollments, registrations, status
//! changes, logins), kept in a bounded ring for the console's log page and
//! broadcast to live subscribers (the console's event stream).
//!
//! Sending never blocks and never fails: the ring drops its oldest entry,
//! and a subscriber that falls behind the broadcast channel is told it
//! lagged (the console then re-reads what it shows).

use crate::clock::Timestamp;
use crate::store::StatusSource;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use volt_protocol::ClusterStatus;

/// Entries the log keeps: a few minutes of a 10,000-daemon cold start,
/// hours of a quiet plane; about 200 bytes each.
pub const EVENT_LOG_LIMIT: usize = 2_000;
/// Events a live subscriber may fall behind before it is told it lagged.
/// A cold start of 10,000 daemons makes two events per daemon in seconds;
/// subscribers batch them, so a few thousand in flight is plenty.
const BROADCAST_CAPACITY: usize = 8_192;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    /// The plane started (`clusters` loaded from the data file).
    PlaneStarted { clusters: usize },
    /// A cluster was created.
    ClusterCreated { name: String },
    /// The enrollment token was traded for the daemon password.
    #[serde(rename_all = "camelCase")]
    EnrollmentCompleted {
        /// A regenerated token was used: the daemon password was replaced
        /// and the previous one no longer works.
        password_rotated: bool,
    },
    /// A new enrollment token replaced the previous one.
    TokenRegenerated,
    /// A daemon socket registered for the cluster.
    DaemonRegistered,
    /// The cluster's registered daemon socket went away.
    DaemonDisconnected,
    /// The cluster's status changed.
    StatusChanged {
        from: ClusterStatus,
        to: ClusterStatus,
        source: StatusSource,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A person asked for deletion.
    DeleteRequested,
    /// A person asked for an update.
    #[serde(rename_all = "camelCase")]
    UpdateRequested { target_version: String },
    /// The cluster record is gone.
    ClusterDeleted,
    /// A person logged in to the console.
    LoginSucceeded { remote: String },
    /// A login attempt failed.
    LoginFailed { remote: String },
    /// A person logged out.
    LoggedOut,
}

impl EventKind {
    /// Changes that alter what a cluster list shows (status, connection,
    /// existence).
    pub fn changes_listing(&self) -> bool {
        matches!(
            self,
            EventKind::ClusterCreated { .. }
                | EventKind::ClusterDeleted
                | EventKind::DaemonRegistered
                | EventKind::DaemonDisconnected
                | EventKind::StatusChanged { .. }
        )
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaneEvent {
    /// Increases by one per event since the plane started.
    pub seq: u64,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The ring plus the live fan-out.
pub struct EventLog {
    ring: Mutex<VecDeque<Arc<PlaneEvent>>>,
    next: AtomicU64,
    tx: broadcast::Sender<Arc<PlaneEvent>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new()
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl EventLog {
    pub fn new() -> Self {
        EventLog {
            ring: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
            tx: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    /// Records one event.
    pub fn emit(&self, cluster_id: Option<&str>, kind: EventKind) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // The sequence number is taken under the ring's lock, so the ring
        // is always in order.
        let event = Arc::new(PlaneEvent {
            seq: self.next.fetch_add(1, Ordering::Relaxed),
            at: Timestamp::now(),
            cluster_id: cluster_id.map(str::to_owned),
            kind,
        });
        if ring.len() >= EVENT_LOG_LIMIT {
            ring.pop_front();
        }
        ring.push_back(event.clone());
        drop(ring);
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// A cluster event.
    pub fn cluster(&self, cluster_id: &str, kind: EventKind) {
        self.emit(Some(cluster_id), kind);
    }

    /// The newest `limit` entries after `after` (a `seq`), oldest first,
    /// optionally of one cluster only.
    pub fn recent(&self, after: u64, limit: usize, cluster: Option<&str>) -> Vec<Arc<PlaneEvent>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<PlaneEvent>> = ring
            .iter()
            .rev()
            .take_while(|e| e.seq > after)
            .filter(|e| cluster.is_none_or(|c| e.cluster_id.as_deref() == Some(c)))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The live feed (events from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PlaneEvent>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_ordered_and_filterable() {
        let log = EventLog::new();
        for i in 0..(EVENT_LOG_LIMIT + 10) {
            let id = if i % 2 == 0 { "a" } else { "b" };
            log.cluster(id, EventKind::DaemonRegistered);
        }
        let all = log.recent(0, usize::MAX, None);
        assert_eq!(all.len(), EVENT_LOG_LIMIT);
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert_eq!(all.last().unwrap().seq, (EVENT_LOG_LIMIT + 10) as u64);
        let last_three = log.recent(0, 3, Some("a"));
        assert_eq!(last_three.len(), 3);
        assert!(
            last_three
                .iter()
                .all(|e| e.cluster_id.as_deref() == Some("a"))
        );
        let after = all[all.len() - 2].seq;
        assert_eq!(log.recent(after, 100, None).len(), 1);
    }

    #[test]
    fn events_serialise_with_their_type_and_fields() {
        let log = EventLog::new();
        let mut rx = log.subscribe();
        log.cluster(
            "c1",
            EventKind::StatusChanged {
                from: ClusterStatus::WaitingForConnection,
                to: ClusterStatus::Connected,
                source: StatusSource::Registration,
                reason: None,
            },
        );
        let e = rx.try_recv().unwrap();
        let v = serde_json::to_value(&*e).unwrap();
        assert_eq!(v["type"], "status-changed");
        assert_eq!(v["clusterId"], "c1");
        assert_eq!(v["from"], "waiting-for-connection");
        assert_eq!(v["to"], "connected");
        assert_eq!(v["source"], "registration");
        assert!(v.get("reason").is_none());
        assert!(e.kind.changes_listing());
        assert!(!EventKind::TokenRegenerated.changes_listing());
    }
}
