//! The cluster status: the pure state machine (`machine.rs`), the actor
//! that feeds it and reports statuses (`actor.rs`), and the runtime actions
//! that change it (`lifecycle.rs`: uninstall, update).
//!
//! [`StatusMachine`] is pure: it folds the events of the supervisor log
//! stream into facts (credentials, registration, services, runtime actions,
//! the server's last known status) and derives the status the daemon is in.
//! [`StatusActor`] feeds it, announces changes (`status-changed`, which also
//! gates heartbeats), reports the statuses the daemon owns through
//! `runtime.lifecycle`, and serves snapshots to `voltd status`.
//!
//! The server's transition table decides how to report: from `connected`
//! (what registration makes the server show) `preparing-environment` is not
//! reachable directly, so the daemon walks the shortest legal path through
//! statuses it may report (`connected → disconnected → preparing-environment`).
//! `connected` and `waiting-for-connection` are never reported; heartbeats
//! make the server show `connected`, so heartbeats are held while the
//! environment is being prepared.

pub mod actor;
pub mod lifecycle;
pub mod machine;

pub use actor::{
    Announced, GetSnapshot, HeartbeatView, JobsView, StatusActor, StatusSnapshot, StatusWiring,
    os_support,
};
pub use machine::{ChildView, ServiceFact, StatusMachine};
