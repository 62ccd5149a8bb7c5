//! What a command handler is given: [`HandlerContext`] (handles, never
//! actor addresses) and the run-time [`ExtensionRegistry`]. Apart from
//! `mod.rs` so that every family, at any depth, depends on this file and
//! not on the module that dispatches to it.

use crate::api::reply::Reply;
use crate::api::{CredentialsCell, Handle, JobsCall, Outbox};
use crate::config::Settings;
use crate::events::EventBus;
use crate::remote::explorer::host_files::HostFiles;
use crate::remote::terminal::Attach;
use crate::services::ServiceRegistry;
use crate::status::GetSnapshot;
use crate::status::lifecycle::Lifecycle;
use futures_util::future::LocalBoxFuture;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::Instant;

/// What every handler may use: handles, never actor addresses.
pub struct HandlerContext {
    pub settings: Arc<Settings>,
    pub bus: EventBus,
    /// When the daemon started (uptime).
    pub started: Instant,
    /// Commands and messages to the server.
    pub outbox: Outbox,
    pub credentials: CredentialsCell,
    /// The managed services (states, restart, ready clients).
    pub services: ServiceRegistry,
    /// The status actor (`runtime.status`).
    pub status: Handle<GetSnapshot>,
    /// The terminal sessions actor (`session.attach`).
    pub terminal: Handle<Attach>,
    /// The jobs actor (`queue.dispatch`, `jobs.*`, …).
    pub jobs: Handle<JobsCall>,
    /// Uninstall, update, restart.
    pub lifecycle: Rc<Lifecycle>,
    /// Handlers registered at run time.
    pub extensions: ExtensionRegistry,
    /// The host file manager's open uploads.
    pub host_files: HostFiles,
}

/// A handler registered at run time (embedding applications, tests).
pub type ExtensionHandler = Rc<dyn Fn(Value) -> LocalBoxFuture<'static, Reply>>;

/// Run-time registered handlers, by command name.
#[derive(Default, Clone)]
pub struct ExtensionRegistry(Rc<RefCell<HashMap<String, ExtensionHandler>>>);

impl ExtensionRegistry {
    /// Registers (or replaces) the handler for `command`. Built-in commands
    /// cannot be overridden: they are resolved first.
    pub fn register<F, Fut>(&self, command: impl Into<String>, handler: F)
    where
        F: Fn(Value) -> Fut + 'static,
        Fut: std::future::Future<Output = Reply> + 'static,
    {
        let handler: ExtensionHandler = Rc::new(move |payload| Box::pin(handler(payload)));
        self.0.borrow_mut().insert(command.into(), handler);
    }

    pub fn get(&self, command: &str) -> Option<ExtensionHandler> {
        self.0.borrow().get(command).cloned()
    }
}
