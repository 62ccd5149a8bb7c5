//! The supervisor log stream: every notable occurrence is a typed [`Event`]
//! emitted once on the [`EventBus`], which logs it (one place decides the
//! level and fields), keeps it in a ring buffer for `voltd logs`, and fans it
//! out to subscribers: actors that react to it (status machine, heartbeat)
//! and `voltd logs -f` clients.
//!
//! Two channels keep chatty output from starving the actors: `control`
//! carries everything except captured service output; `log` carries
//! everything.

use crate::api::jobs::ConfigSource;
use crate::api::vocab::{
    ActionStage, CredentialOrigin, OutputStream, RuntimeAction, ServiceKind, ServiceState,
    WireLimit,
};
use crate::jobs::names::QueueName;
use crate::jobs::pool::Availability;
use crate::jobs::status::JobStatus;
use crate::provision::ProvisionEvent;
use futures_util::Stream;
use otp::SupervisorEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use volt_protocol::register::Extensions;
use volt_protocol::{ClusterStatus, ErrorCode};

/// Events kept for `voltd logs` (without `-f`) and for actors that restart
/// and need to catch up. A few thousand small records is well under 1 MB.
pub const DEFAULT_RING_CAPACITY: usize = 2048;
/// Per-subscriber queue; a subscriber further behind than this loses the
/// oldest events (and is told so) rather than growing memory without bound.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// One notable occurrence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Cluster credentials are available.
    CredentialsReady {
        cluster_id: String,
        source: CredentialOrigin,
    },
    /// Enrollment is being retried after a transient failure.
    EnrollmentRetrying {
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// The control socket is connecting.
    SocketConnecting { url: String, attempt: u32 },
    /// Registration acknowledged: the control channel is usable.
    /// `extensions`: what the server announced it understands (none for
    /// the VOLT server); reports on this registration use only those.
    Registered {
        cluster_id: String,
        connection: u64,
        extensions: Extensions,
    },
    /// The control channel went down.
    SocketDisconnected {
        reason: String,
        connection: u64,
        reconnect_in_ms: u64,
    },
    /// The server sent more than a cap allows (`size` > `max`); the
    /// connection is dropped and a new one made.
    WireLimitExceeded {
        limit: WireLimit,
        size: u64,
        max: u64,
    },
    /// The server refused the registration.
    RegistrationRejected { message: String },
    /// A heartbeat was answered.
    HeartbeatOk {
        latency_ms: f64,
        server_status: Option<ClusterStatus>,
    },
    /// A heartbeat failed.
    HeartbeatFailed { code: ErrorCode, message: String },
    /// A lifecycle status was reported to the server.
    LifecycleReported {
        status: ClusterStatus,
        server_status: Option<ClusterStatus>,
        reason: Option<String>,
    },
    /// The daemon's view of the cluster status changed.
    StatusChanged {
        from: ClusterStatus,
        to: ClusterStatus,
        reason: Option<String>,
    },
    /// Fire-and-forget messages were dropped because the buffer was full
    /// while disconnected.
    EmitBufferOverflow { dropped: u64 },
    /// A managed service changed state.
    ServiceState {
        service: ServiceKind,
        state: ServiceState,
        reason: Option<String>,
    },
    /// Provisioning of a managed service's server made progress (found,
    /// fetching, download progress, installed, retrying).
    Provision { progress: ProvisionEvent },
    /// A managed service cannot run on this host at all: no server is
    /// installed and the catalogue has no artifact for this platform. The
    /// status machine reports `operating-system-not-supported` until the
    /// service reaches another state.
    ServiceUnsupported {
        service: ServiceKind,
        reason: String,
    },
    /// A line a managed service printed.
    ServiceOutput {
        service: ServiceKind,
        stream: OutputStream,
        line: String,
    },
    /// A lifecycle action the server asked for, at one of its stages.
    RuntimeAction {
        action: RuntimeAction,
        stage: ActionStage,
        detail: Option<String>,
    },
    /// A host terminal session started; its shell runs as `user`.
    SessionOpened { session_id: String, user: String },
    /// A host terminal session ended (`reason`: exited with code N,
    /// detached, idle timeout, control socket disconnected, …).
    SessionClosed { session_id: String, reason: String },
    /// The workers' concurrency (per `queueConcurrency` key) and role were
    /// settled at registration.
    JobsConfigured {
        source: ConfigSource,
        concurrency: BTreeMap<String, usize>,
        /// The server's `roleConfig.effectiveRole`, when it sent one.
        role: Option<String>,
        /// Whether the workers take jobs (the role has compute and is not
        /// draining it).
        compute: bool,
    },
    /// The job queues cannot be opened (Redis unreachable); retried.
    JobQueuesUnavailable { error: String },
    /// Worker availability of every queue (sent when it changes).
    WorkerAvailability { queues: Vec<Availability> },
    /// A job attempt started on this cluster.
    JobStarted {
        queue: QueueName,
        job_id: String,
        attempt: u32,
    },
    /// A job attempt ended: `completed`, `failed`, or `queued` when it
    /// runs again (a retry, or voltd stopping).
    JobFinished {
        queue: QueueName,
        job_id: String,
        status: JobStatus,
        error: Option<String>,
    },
    /// What a supervisor did (child started, exited, restarting, gave up,
    /// killed; escalation; shutdown). Serialised as the supervisor event
    /// itself (`{"event":"child-started",…}`).
    #[serde(untagged)]
    Supervisor(SupervisorEvent),
}

impl From<SupervisorEvent> for Event {
    fn from(e: SupervisorEvent) -> Self {
        Event::Supervisor(e)
    }
}

impl Event {
    fn is_output(&self) -> bool {
        matches!(self, Event::ServiceOutput { .. })
    }

    /// Writes the event to the tracing log at the level an operator expects:
    /// INFO = something succeeded, WARN = recovered by itself, ERROR = act.
    fn trace(&self) {
        use tracing::{debug, error, info, warn};
        match self {
            Event::Supervisor(e) => trace_supervisor(e),
            Event::CredentialsReady { cluster_id, source } => {
                info!(%cluster_id, %source, "Cluster credentials ready.")
            }
            Event::EnrollmentRetrying {
                attempt,
                delay_ms,
                error,
            } => warn!(attempt, delay_ms, %error, "Enrollment failed; retrying."),
            Event::SocketConnecting { url, attempt } => {
                debug!(%url, attempt, "Connecting control socket.")
            }
            Event::Registered {
                cluster_id,
                connection,
                extensions,
            } => {
                info!(%cluster_id, connection, extensions = ?extensions, "Control channel registered.")
            }
            Event::SocketDisconnected {
                reason,
                connection,
                reconnect_in_ms,
            } => warn!(%reason, connection, reconnect_in_ms, "Control channel down."),
            Event::WireLimitExceeded { limit, size, max } => {
                warn!(%limit, size, max, "The server sent more than voltd accepts; dropping the connection and reconnecting.")
            }
            Event::RegistrationRejected { message } => {
                error!(%message, "Registration rejected by the server.")
            }
            Event::HeartbeatOk {
                latency_ms,
                server_status,
            } => debug!(latency_ms, server_status = ?server_status, "Heartbeat answered."),
            Event::HeartbeatFailed { code, message } => {
                warn!(%code, %message, "Heartbeat failed.")
            }
            Event::LifecycleReported {
                status,
                server_status,
                reason,
            } => {
                info!(%status, server_status = ?server_status, reason = ?reason, "Lifecycle status reported.")
            }
            Event::StatusChanged { from, to, reason } => {
                info!(%from, %to, reason = ?reason, "Cluster status changed.")
            }
            Event::EmitBufferOverflow { dropped } => {
                warn!(
                    dropped,
                    "Outbound buffer full while disconnected; dropped oldest messages."
                )
            }
            Event::ServiceState {
                service,
                state,
                reason,
            } => match state {
                ServiceState::Failed => error!(%service, reason = ?reason, "Service failed."),
                ServiceState::Degraded => warn!(%service, reason = ?reason, "Service degraded."),
                _ => {
                    info!(%service, state = state.as_str(), reason = ?reason, "Service state changed.")
                }
            },
            Event::Provision { progress } => trace_provision(progress),
            Event::ServiceUnsupported { service, reason } => {
                error!(%service, %reason, "This host cannot run the service's server.")
            }
            Event::ServiceOutput {
                service,
                stream,
                line,
            } => debug!(target: "voltd::service_output", %service, %stream, "{line}"),
            Event::RuntimeAction {
                action,
                stage,
                detail,
            } => info!(%action, %stage, detail = ?detail, "Runtime action."),
            Event::SessionOpened { session_id, user } => {
                info!(%session_id, %user, "Terminal session opened.")
            }
            Event::SessionClosed { session_id, reason } => {
                info!(%session_id, %reason, "Terminal session closed.")
            }
            Event::JobsConfigured {
                source,
                concurrency,
                role,
                compute,
            } => {
                info!(%source, concurrency = ?concurrency, role = ?role, compute, "Job workers configured.")
            }
            Event::JobQueuesUnavailable { error } => {
                warn!(%error, "Job queues unavailable; retrying.")
            }
            Event::WorkerAvailability { queues } => {
                let summary: Vec<String> = queues
                    .iter()
                    .map(|a| {
                        format!(
                            "{} {} {}/{} busy {} waiting{}",
                            a.queue,
                            a.worker,
                            a.busy,
                            a.concurrency,
                            a.waiting,
                            if a.paused { " paused" } else { "" }
                        )
                    })
                    .collect();
                debug!(queues = %summary.join("; "), "Worker availability.")
            }
            Event::JobStarted {
                queue,
                job_id,
                attempt,
            } => info!(%queue, %job_id, attempt, "Job started."),
            Event::JobFinished {
                queue,
                job_id,
                status,
                error,
            } => match status {
                JobStatus::Failed => {
                    warn!(%queue, %job_id, error = ?error, "Job failed.")
                }
                JobStatus::Queued => {
                    info!(%queue, %job_id, error = ?error, "Job goes back to waiting.")
                }
                _ => info!(%queue, %job_id, "Job completed."),
            },
        }
    }
}

/// The log line of a supervisor event.
fn trace_supervisor(e: &SupervisorEvent) {
    use tracing::{debug, error, info, warn};
    match e {
        SupervisorEvent::ChildStarted {
            supervisor,
            child,
            restarts,
        } => {
            if *restarts == 0 {
                debug!(%supervisor, %child, "Child started.");
            } else {
                info!(%supervisor, %child, restarts, "Child restarted.");
            }
        }
        SupervisorEvent::ChildExited {
            supervisor,
            child,
            reason,
        } => {
            if reason.is_abnormal() {
                warn!(%supervisor, %child, %reason, "Child exited.");
            } else {
                debug!(%supervisor, %child, %reason, "Child exited.");
            }
        }
        SupervisorEvent::ChildRestarting {
            supervisor,
            child,
            delay_ms,
            restarts,
        } => warn!(%supervisor, %child, delay_ms, restarts, "Restarting child."),
        SupervisorEvent::ChildGaveUp {
            supervisor,
            child,
            restarts,
            window_secs,
        } => {
            error!(%supervisor, %child, restarts, window_secs, "Restart intensity exceeded; giving up.")
        }
        SupervisorEvent::ChildKilled { supervisor, child } => {
            warn!(%supervisor, %child, "Child did not stop in time; aborted.")
        }
        SupervisorEvent::Escalated {
            supervisor,
            code,
            reason,
        } => {
            error!(%supervisor, exit_code = code.code(), %reason, "Escalating to process exit.")
        }
        SupervisorEvent::ShutdownStarted { reason } => info!(%reason, "Shutting down."),
    }
}

/// Provisioning progress: what an operator follows at info, download
/// progress at debug.
fn trace_provision(p: &ProvisionEvent) {
    use tracing::{debug, info, warn};
    match p {
        ProvisionEvent::Found {
            service,
            binary,
            version,
            found,
        } => {
            info!(%service, binary = %binary.display(), version = ?version.map(|v| v.to_string()), %found, "Server binary found.")
        }
        ProvisionEvent::PassedOver {
            service,
            binary,
            reason,
        } => info!(%service, binary = %binary.display(), %reason, "Server binary passed over."),
        ProvisionEvent::Fetching {
            service,
            version,
            url,
            dest,
        } => info!(%service, %version, %url, dest = %dest.display(), "Fetching the server."),
        ProvisionEvent::Download { service, progress } => {
            debug!(%service, progress = ?progress, "Download progress.")
        }
        ProvisionEvent::Unpacking { service, dest } => {
            debug!(%service, dest = %dest.display(), "Unpacking.")
        }
        ProvisionEvent::Installed {
            service,
            version,
            binary,
        } => info!(%service, %version, binary = %binary.display(), "Server installed."),
        ProvisionEvent::Retrying {
            service,
            attempt,
            delay_ms,
            step,
            reason,
        } => warn!(%service, attempt, delay_ms, %step, %reason, "Provisioning failed; retrying."),
    }
}

/// An event with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC, millisecond precision.
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

struct Inner {
    seq: AtomicU64,
    ring: Mutex<VecDeque<Arc<Record>>>,
    ring_capacity: usize,
    control: broadcast::Sender<Arc<Record>>,
    log: broadcast::Sender<Arc<Record>>,
}

/// The one broadcast channel of supervision events. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_RING_CAPACITY)
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("seq", &self.inner.seq.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a subscriber receives: a record, or notice that it fell behind.
#[derive(Debug, Clone)]
pub enum Delivery {
    Record(Arc<Record>),
    Lagged(u64),
}

impl EventBus {
    pub fn new(ring_capacity: usize) -> Self {
        let (control, _) = broadcast::channel(SUBSCRIBER_QUEUE);
        let (log, _) = broadcast::channel(SUBSCRIBER_QUEUE);
        EventBus {
            inner: Arc::new(Inner {
                seq: AtomicU64::new(0),
                ring: Mutex::new(VecDeque::with_capacity(ring_capacity.min(256))),
                ring_capacity: ring_capacity.max(1),
                control,
                log,
            }),
        }
    }

    /// Emits one event: logs it, records it, and delivers it.
    pub fn emit(&self, event: Event) -> Arc<Record> {
        event.trace();
        let record = Arc::new(Record {
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at: crate::host::clock::now_iso(),
            event,
        });
        if let Ok(mut ring) = self.inner.ring.lock() {
            if ring.len() >= self.inner.ring_capacity {
                ring.pop_front();
            }
            ring.push_back(record.clone());
        }
        if !record.event.is_output() {
            // No receivers is fine: nobody is listening yet.
            let _ = self.inner.control.send(record.clone());
        }
        let _ = self.inner.log.send(record.clone());
        record
    }

    /// The last `n` records (all kept ones when `n` is larger).
    pub fn recent(&self, n: usize) -> Vec<Arc<Record>> {
        match self.inner.ring.lock() {
            Ok(ring) => ring
                .iter()
                .skip(ring.len().saturating_sub(n))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Live control events (no service output) for actors.
    pub fn subscribe_control(&self) -> impl Stream<Item = Delivery> + Unpin + use<> {
        stream_of(self.inner.control.subscribe())
    }

    /// Every live event, for `voltd logs -f`.
    pub fn subscribe_log(&self) -> impl Stream<Item = Delivery> + Unpin + use<> {
        stream_of(self.inner.log.subscribe())
    }

    /// An observer that puts supervisor reports on this bus.
    pub fn observer(&self) -> otp::Observer {
        let bus = self.clone();
        std::rc::Rc::new(move |e: SupervisorEvent| {
            bus.emit(Event::from(e));
        })
    }

    /// Number of events emitted so far.
    pub fn emitted(&self) -> u64 {
        self.inner.seq.load(Ordering::Relaxed)
    }
}

fn stream_of(rx: broadcast::Receiver<Arc<Record>>) -> impl Stream<Item = Delivery> + Unpin {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(r) => Some((Delivery::Record(r), rx)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((Delivery::Lagged(n), rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn started(child: &str) -> Event {
        Event::Supervisor(SupervisorEvent::ChildStarted {
            supervisor: "root".into(),
            child: child.into(),
            restarts: 0,
        })
    }

    #[tokio::test]
    async fn emits_in_order_to_subscribers_and_ring() {
        let bus = EventBus::new(3);
        let mut sub = bus.subscribe_control();
        for c in ["a", "b", "c", "d"] {
            bus.emit(started(c));
        }
        let recent: Vec<u64> = bus.recent(10).iter().map(|r| r.seq).collect();
        assert_eq!(recent, [2, 3, 4], "ring keeps the newest");
        assert_eq!(bus.recent(1)[0].seq, 4);
        for expected in 1..=4 {
            let Some(Delivery::Record(r)) = sub.next().await else {
                panic!("missing record")
            };
            assert_eq!(r.seq, expected);
        }
    }

    #[tokio::test]
    async fn service_output_goes_to_the_log_stream_only() {
        let bus = EventBus::default();
        let mut control = bus.subscribe_control();
        let mut log = bus.subscribe_log();
        bus.emit(Event::ServiceOutput {
            service: ServiceKind::Redis,
            stream: OutputStream::Stdout,
            line: "ready".into(),
        });
        bus.emit(started("x"));
        let Some(Delivery::Record(first_log)) = log.next().await else {
            panic!()
        };
        assert!(matches!(first_log.event, Event::ServiceOutput { .. }));
        let Some(Delivery::Record(first_control)) = control.next().await else {
            panic!()
        };
        assert!(matches!(
            first_control.event,
            Event::Supervisor(SupervisorEvent::ChildStarted { .. })
        ));
    }

    #[tokio::test]
    async fn slow_subscribers_are_told_they_lagged() {
        let bus = EventBus::default();
        let mut sub = bus.subscribe_control();
        for _ in 0..(SUBSCRIBER_QUEUE + 10) {
            bus.emit(started("x"));
        }
        assert!(matches!(sub.next().await, Some(Delivery::Lagged(10))));
    }

    #[test]
    fn records_serialise_as_flat_json_lines() {
        let bus = EventBus::default();
        let r = bus.emit(Event::StatusChanged {
            from: ClusterStatus::HealthcheckReceived,
            to: ClusterStatus::Connected,
            reason: None,
        });
        let v = serde_json::to_value(&*r).unwrap();
        assert_eq!(v["event"], "status-changed");
        assert_eq!(v["from"], "healthcheck-received");
        assert_eq!(v["to"], "connected");
        assert_eq!(v["seq"], 1);
        assert!(
            time::OffsetDateTime::parse(
                v["at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
    }

    #[test]
    fn supervisor_events_keep_their_own_shape_on_the_log_stream() {
        let v = serde_json::to_value(started("heartbeat")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "child-started", "supervisor": "root", "child": "heartbeat", "restarts": 0})
        );
    }
}
