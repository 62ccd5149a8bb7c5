//! The credentials the daemon uses on the wire, and the cell enrollment
//! publishes them in (the control socket, heartbeat, status reports and
//! lifecycle actions read them; they survive every actor restart).

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use volt_protocol::register::Secret;

/// Cluster id and daemon password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub team_cluster_id: String,
    pub daemon_password: Secret,
}

/// Where the credentials were published (cheap to clone; one per daemon).
#[derive(Clone)]
pub struct CredentialsCell(watch::Sender<Option<Credentials>>);

impl Default for CredentialsCell {
    fn default() -> Self {
        CredentialsCell(watch::channel(None).0)
    }
}

impl CredentialsCell {
    /// Publishes `creds` (replacing earlier ones).
    pub fn publish(&self, creds: Credentials) {
        self.0.send_replace(Some(creds));
    }

    /// The current credentials, if enrollment is done.
    pub fn get(&self) -> Option<Credentials> {
        self.0.borrow().clone()
    }

    /// A receiver for waiting on them (`wait_for` sees the current value).
    pub fn watch(&self) -> watch::Receiver<Option<Credentials>> {
        self.0.subscribe()
    }
}
