//! Managed services: the cluster's Redis, MongoDB and MinIO, each supervised
//! by its own actor built on one generic core.
//!
//! | piece | file | job |
//! |---|---|---|
//! | registry, shared types, tree glue | `services/mod.rs` | what the rest of voltd sees: states, clients, restart/stop |
//! | credentials and ports | `services/resolve.rs` | install manifest → config → generated secrets |
//! | supervision core | `services/core.rs` | the actor, state machine, probe loop, restart backoff and intensity |
//! | processes | `services/process.rs` | spawn (own process group, parent-death signal), output capture, stop, pid files |
//! | redis | `services/redis.rs` | generated config + ACL file, `PING`/`INFO` probe |
//! | mongo | `services/mongo.rs` | root user provisioning, `ping`/`serverStatus` probe, database `volt` |
//! | minio | `services/minio.rs` | S3 probe on a known bucket, the four VOLT buckets |
//!
//! Each service is `native` (voltd runs the server from a configurable
//! command line), `external` (something else runs it; voltd probes,
//! bootstraps and reports it) or `disabled`. States: `starting` →
//! `healthy` ⇄ `degraded` → `failed`, plus `stopped`; every change is an
//! `Event::ServiceState` on the bus, which the status machine turns into
//! `preparing-environment` / `dependency-installation-failed`.
//!
//! The [`ServiceRegistry`] (created by `daemon.rs`) outlives the service
//! actors: it holds each service's view for `voltd status` and
//! `runtime.services.status`, the handle to ask for a restart, and — while
//! a service is healthy — a ready client for handlers (`mongo_client`,
//! `redis_client`, `s3_bucket`).

pub mod core;
pub mod minio;
pub mod mongo;
pub mod process;
pub mod redis;
pub mod resolve;

pub use crate::api::vocab::{ServiceKind, ServiceState};
/// How each service is configured lives in `config::services`.
pub use crate::config::{ServiceMode, ServiceSettings, ServicesSettings};
pub use resolve::CredentialSource;

use crate::config::Settings;
use crate::events::EventBus;
use otp::supervisor::{ChildSpec, Restart, Strategy, SupervisorSpec};
use serde::Serialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Extra time the services subtree gets to stop, on top of its children's.
const SUBTREE_STOP_MARGIN: Duration = Duration::from_secs(5);

/// One service as `voltd status` and `runtime.services.status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    pub state: ServiceState,
    pub mode: ServiceMode,
    /// The server's pid (native mode, while running).
    pub pid: Option<i32>,
    /// Seconds since the server process started (native mode).
    pub uptime_seconds: Option<u64>,
    /// How often voltd started the server again since voltd started.
    pub restarts: u32,
    /// The most recent failure (kept after recovery, for the operator).
    pub last_error: Option<String>,
    /// Round trip of the last successful probe.
    pub probe_latency_ms: Option<f64>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Where the credentials in use come from (never the values).
    pub credentials: Option<CredentialSource>,
    /// Performance figures of the last probe (per service).
    pub stats: Option<Value>,
    /// RFC 3339 time of the last state change.
    pub since: String,
}

/// What a handler may ask of a service actor.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop the server (if voltd runs it) and start it again now.
    Restart,
    /// Stop the server and stay stopped until `Restart` (uninstall).
    Hold(oneshot::Sender<()>),
    /// Stop the server and end (the supervisor stops the actor).
    Stop,
}

/// A ready client of a healthy service.
#[derive(Clone)]
pub(crate) enum ServiceClient {
    Mongo(mongodb::Client),
    Redis(::redis::Client),
    S3(minio::S3Access),
}

struct Entry {
    view: ServiceView,
    started: Option<Instant>,
    /// Server processes started so far (the first is not a restart).
    spawns: u32,
    control: Option<mpsc::UnboundedSender<Control>>,
    client: Option<ServiceClient>,
}

/// Why a restart request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceError {
    #[error("unknown service {name:?}; known services: {}", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("{0} is external: voltd does not run it and cannot restart it")]
    External(String),
    #[error("the {0} service actor is not running")]
    NotRunning(String),
}

/// The shared directory of managed services (see the module docs). Lives
/// on the daemon's single actix thread; cheap to clone.
#[derive(Clone, Default)]
pub struct ServiceRegistry(Rc<RefCell<BTreeMap<ServiceKind, Entry>>>);

impl ServiceRegistry {
    /// Registers (or re-attaches, after an actor restart) a service.
    pub(crate) fn attach(
        &self,
        kind: ServiceKind,
        mode: ServiceMode,
        control: mpsc::UnboundedSender<Control>,
    ) {
        let mut map = self.0.borrow_mut();
        let entry = map.entry(kind).or_insert_with(|| Entry {
            view: ServiceView {
                state: ServiceState::Starting,
                mode,
                pid: None,
                uptime_seconds: None,
                restarts: 0,
                last_error: None,
                probe_latency_ms: None,
                host: None,
                port: None,
                credentials: None,
                stats: None,
                since: crate::host::clock::now_iso(),
            },
            started: None,
            spawns: 0,
            control: None,
            client: None,
        });
        entry.view.mode = mode;
        entry.control = Some(control);
    }

    pub(crate) fn with<T>(
        &self,
        kind: ServiceKind,
        f: impl FnOnce(&mut ServiceViewMut<'_>) -> T,
    ) -> Option<T> {
        let mut map = self.0.borrow_mut();
        let entry = map.get_mut(&kind)?;
        Some(f(&mut ServiceViewMut(entry)))
    }

    /// The managed services' names.
    pub fn names(&self) -> Vec<String> {
        self.0
            .borrow()
            .keys()
            .map(|k| k.name().to_owned())
            .collect()
    }

    /// One service's view, with its uptime as of now.
    pub fn view(&self, name: &str) -> Option<ServiceView> {
        let kind = ServiceKind::from_name(name)?;
        self.0.borrow().get(&kind).map(snapshot)
    }

    /// Every service's view.
    pub fn views(&self) -> BTreeMap<String, ServiceView> {
        self.0
            .borrow()
            .iter()
            .map(|(k, e)| (k.name().to_owned(), snapshot(e)))
            .collect()
    }

    /// Every service's view as JSON (for the status snapshot).
    pub fn details(&self) -> BTreeMap<String, Value> {
        self.views()
            .into_iter()
            .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(Value::Null)))
            .collect()
    }

    /// Asks the service to restart its server now. Not counted against the
    /// restart intensity; a `failed` service is tried again at once.
    pub fn restart(&self, name: &str) -> Result<(), ServiceError> {
        let unknown = || ServiceError::Unknown {
            name: name.to_owned(),
            known: self.names(),
        };
        let kind = ServiceKind::from_name(name).ok_or_else(unknown)?;
        let map = self.0.borrow();
        let entry = map.get(&kind).ok_or_else(unknown)?;
        if entry.view.mode == ServiceMode::External {
            return Err(ServiceError::External(name.to_owned()));
        }
        entry
            .control
            .as_ref()
            .and_then(|c| c.send(Control::Restart).ok())
            .ok_or_else(|| ServiceError::NotRunning(name.to_owned()))
    }

    /// Stops every server voltd runs and keeps them stopped (uninstall:
    /// their data directories are deleted next). Returns once all stopped.
    pub async fn stop_all(&self) {
        let acks: Vec<(ServiceKind, oneshot::Receiver<()>)> = self
            .0
            .borrow()
            .iter()
            .filter(|(_, e)| e.view.mode == ServiceMode::Native)
            .filter_map(|(k, e)| {
                let (tx, rx) = oneshot::channel();
                e.control.as_ref()?.send(Control::Hold(tx)).ok()?;
                Some((*k, rx))
            })
            .collect();
        for (kind, ack) in acks {
            if ack.await.is_err() {
                tracing::debug!(
                    service = %kind.name(),
                    "Service actor ended before confirming the stop."
                );
            }
        }
    }

    fn client(&self, kind: ServiceKind) -> Option<ServiceClient> {
        let map = self.0.borrow();
        let e = map.get(&kind)?;
        if e.view.state.is_usable() {
            e.client.clone()
        } else {
            None
        }
    }

    /// A client of MongoDB, authenticated as the root user, whose default
    /// database is `volt` (`client.default_database()`), while MongoDB is
    /// healthy or degraded. Clone it freely (it is a handle to one pool).
    pub fn mongo_client(&self) -> Option<mongodb::Client> {
        match self.client(ServiceKind::Mongo)? {
            ServiceClient::Mongo(c) => Some(c),
            _ => None,
        }
    }

    /// The `volt` database of [`Self::mongo_client`].
    pub fn mongo_database(&self) -> Option<mongodb::Database> {
        self.mongo_client().map(|c| c.database(mongo::DATABASE))
    }

    /// A client of Redis (database 0, authenticated as the ACL user) while
    /// Redis is healthy or degraded. `get_multiplexed_async_connection()`
    /// on it gives a connection to share.
    pub fn redis_client(&self) -> Option<::redis::Client> {
        match self.client(ServiceKind::Redis)? {
            ServiceClient::Redis(c) => Some(c),
            _ => None,
        }
    }

    /// The bucket `name` of MinIO (path-style, plain HTTP, the root
    /// credentials) while MinIO is healthy or degraded; `None` also when
    /// `name` is not a valid bucket name.
    pub fn s3_bucket(&self, name: &str) -> Option<Box<s3::Bucket>> {
        match self.client(ServiceKind::Minio)? {
            ServiceClient::S3(access) => access.bucket(name).ok(),
            _ => None,
        }
    }
}

/// Mutable access to one entry for the service's own actor.
pub(crate) struct ServiceViewMut<'a>(&'a mut Entry);

impl ServiceViewMut<'_> {
    pub fn view(&mut self) -> &mut ServiceView {
        &mut self.0.view
    }

    /// A server process started (or `None`: none runs now).
    pub fn set_process(&mut self, pid: Option<i32>, started: Option<Instant>) {
        if pid.is_some() {
            if self.0.spawns > 0 {
                self.0.view.restarts += 1;
            }
            self.0.spawns += 1;
        }
        self.0.view.pid = pid;
        self.0.started = started;
    }

    pub fn set_client(&mut self, client: Option<ServiceClient>) {
        self.0.client = client;
    }
}

fn snapshot(e: &Entry) -> ServiceView {
    let mut v = e.view.clone();
    v.uptime_seconds = e.started.map(|s| s.elapsed().as_secs());
    v
}

/// The `services` supervisor (one_for_one) with one child per enabled
/// service, or `None` when every service is disabled.
pub fn supervisor_spec(
    settings: &Arc<Settings>,
    registry: &ServiceRegistry,
    bus: &EventBus,
) -> Option<SupervisorSpec> {
    let enabled = settings.services.enabled();
    if enabled.is_empty() {
        return None;
    }
    // One provisioner for all three (it serialises installs per service).
    let servers = crate::provision::ProvisionSource::new(settings.clone());
    let mut spec = SupervisorSpec::new("services", Strategy::OneForOne)
        .intensity(settings.supervisor.intensity());
    for kind in enabled {
        let child = match kind {
            ServiceKind::Redis => core::child_spec(
                redis::Redis,
                settings.clone(),
                registry.clone(),
                bus.clone(),
                servers.clone(),
            ),
            ServiceKind::Mongo => core::child_spec(
                mongo::Mongo,
                settings.clone(),
                registry.clone(),
                bus.clone(),
                servers.clone(),
            ),
            ServiceKind::Minio => core::child_spec(
                minio::Minio,
                settings.clone(),
                registry.clone(),
                bus.clone(),
                servers.clone(),
            ),
        };
        spec = spec.child(child);
    }
    Some(spec)
}

/// [`supervisor_spec`] as a child of the root supervisor, with a shutdown
/// timeout that covers stopping every server in turn.
pub fn child_spec(
    settings: &Arc<Settings>,
    registry: &ServiceRegistry,
    bus: &EventBus,
) -> Option<ChildSpec> {
    let spec = supervisor_spec(settings, registry, bus)?;
    let total: Duration = spec.children.iter().map(|c| c.shutdown_timeout).sum();
    Some(
        spec.into_child(Restart::Permanent)
            .shutdown_timeout(total + SUBTREE_STOP_MARGIN),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for k in ServiceKind::ALL {
            assert_eq!(ServiceKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ServiceKind::from_name("postgres"), None);
    }

    #[test]
    fn restart_refuses_unknown_and_external_services() {
        let reg = ServiceRegistry::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        reg.attach(ServiceKind::Redis, ServiceMode::Native, tx);
        let (tx2, _rx2) = mpsc::unbounded_channel();
        reg.attach(ServiceKind::Minio, ServiceMode::External, tx2);
        let err = reg.restart("postgres").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown service \"postgres\"; known services: redis, minio"
        );
        let err = reg.restart("mongo").unwrap_err();
        assert!(
            matches!(err, ServiceError::Unknown { .. }),
            "not managed here"
        );
        assert!(matches!(
            reg.restart("minio"),
            Err(ServiceError::External(_))
        ));
        reg.restart("redis").unwrap();
        assert!(matches!(rx.try_recv(), Ok(Control::Restart)));
    }

    #[test]
    fn clients_are_only_handed_out_while_usable_and_views_serialise_camel_case() {
        let reg = ServiceRegistry::default();
        let (tx, _rx) = mpsc::unbounded_channel();
        reg.attach(ServiceKind::Redis, ServiceMode::Native, tx);
        let client = ::redis::Client::open("redis://127.0.0.1:1/").unwrap();
        reg.with(ServiceKind::Redis, |e| {
            e.set_client(Some(ServiceClient::Redis(client)));
            e.set_process(Some(42), Some(Instant::now()));
        });
        assert!(reg.redis_client().is_none(), "starting: no client yet");
        reg.with(ServiceKind::Redis, |e| {
            e.view().state = ServiceState::Healthy
        });
        assert!(reg.redis_client().is_some());
        assert!(reg.mongo_client().is_none());
        assert!(reg.s3_bucket("volt-dumps").is_none());
        let v = &reg.details()["redis"];
        assert_eq!(v["state"], "healthy");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["uptimeSeconds"], 0);
        assert_eq!(v["restarts"], 0);
        assert!(v.get("probeLatencyMs").is_some());
        reg.with(ServiceKind::Redis, |e| {
            e.set_process(Some(43), Some(Instant::now()))
        });
        assert_eq!(reg.view("redis").unwrap().restarts, 1);
    }
}
