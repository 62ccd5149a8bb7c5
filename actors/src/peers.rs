//! The directory of running actors and shared cells.
//!
//! Actors restart; their addresses change. Nobody keeps a peer's address:
//! they look it up here at the moment they send, and a supervisor start
//! function publishes the new address when it (re)starts a child. Everything
//! runs on the daemon's single actix thread, so plain `Rc`/`RefCell` suffice.

use crate::cloud::credentials::Credentials;
use crate::cloud::dispatch::{Dispatcher, Routes};
use crate::cloud::heartbeat::Heartbeat;
use crate::host::monitoring::Monitoring;
use crate::remote::ExtensionRegistry;
use crate::remote::terminal::Sessions;
use crate::services::ServiceRegistry;
use crate::status::StatusActor;
use crate::supervisor::Supervisor;
use actix::Addr;
use std::cell::RefCell;
use std::rc::Rc;
use tokio::sync::watch;

#[derive(Default)]
struct Slots {
    root: Option<Addr<Supervisor>>,
    dispatcher: Option<Addr<Dispatcher>>,
    heartbeat: Option<Addr<Heartbeat>>,
    sessions: Option<Addr<Sessions>>,
    monitoring: Option<Addr<Monitoring>>,
    status: Option<Addr<StatusActor>>,
}

struct Inner {
    slots: RefCell<Slots>,
    credentials: watch::Sender<Option<Credentials>>,
    extensions: ExtensionRegistry,
    routes: Routes,
    services: ServiceRegistry,
}

/// Cheap-to-clone handle to the directory.
#[derive(Clone)]
pub struct Peers(Rc<Inner>);

impl Default for Peers {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! slot {
    ($get:ident, $set:ident, $ty:ty) => {
        pub fn $get(&self) -> Option<Addr<$ty>> {
            self.0.slots.borrow().$get.clone()
        }
        pub fn $set(&self, addr: Addr<$ty>) {
            self.0.slots.borrow_mut().$get = Some(addr);
        }
    };
}

impl Peers {
    pub fn new() -> Self {
        let (credentials, _) = watch::channel(None);
        Peers(Rc::new(Inner {
            slots: RefCell::default(),
            credentials,
            extensions: ExtensionRegistry::default(),
            routes: Routes::default(),
            services: ServiceRegistry::default(),
        }))
    }

    slot!(root, set_root, Supervisor);
    slot!(dispatcher, set_dispatcher, Dispatcher);
    slot!(heartbeat, set_heartbeat, Heartbeat);
    slot!(sessions, set_sessions, Sessions);
    slot!(monitoring, set_monitoring, Monitoring);
    slot!(status, set_status, StatusActor);

    /// The managed services (states, restart, ready clients); outlives
    /// the service actors.
    pub fn services(&self) -> &ServiceRegistry {
        &self.0.services
    }

    /// Publishes the credentials the cloud-facing actors use.
    pub fn publish_credentials(&self, creds: Credentials) {
        self.0.credentials.send_replace(Some(creds));
    }

    /// The current credentials, if enrollment is done.
    pub fn credentials(&self) -> Option<Credentials> {
        self.0.credentials.borrow().clone()
    }

    /// Waits for credentials (returns at once when already published).
    pub fn watch_credentials(&self) -> watch::Receiver<Option<Credentials>> {
        self.0.credentials.subscribe()
    }

    /// Handlers registered at run time (they survive dispatcher restarts
    /// and reconnects because they live here, not in the dispatcher).
    pub fn extensions(&self) -> &ExtensionRegistry {
        &self.0.extensions
    }

    /// Subscribers of routed (non-command) messages.
    pub fn routes(&self) -> &Routes {
        &self.0.routes
    }
}
