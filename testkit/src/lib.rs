//! The one shared test kit of the workspace's integration tests
//! (`tests/it/`, `plane/tests/it/`, `actors/tests/it/`).
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`eventually`], [`WAIT`] | wait on observable state with a deadline and a clear failure | – |
//! | [`process`] | free ports, live pids, signals, [`needs_root`] | – |
//! | [`standins`] | where the real servers are; launchers on free loopback ports | – |
//! | [`sshd`] | a real OpenSSH server on loopback with its own keys | – |
//! | `plane` | plane-only fixtures, [`plane::PersistentPlane`] | `plane` |
//! | `sio` | a socket.io test client and a scripted daemon | `plane` |
//! | `wire` | a scriptable socket.io server at the frame level (hostile servers) | `wire` |
//! | `services` | the managed-services subtree on its own | `actors` |
//! | `creds` | credentials at rest, sealed or plain as this machine does it | `actors` |
//! | `daemon` | plane + registered in-process daemon ([`daemon::Fixture`]) | `daemon` |
//! | `mirror`, `artifacts` | a download mirror that misbehaves on demand; provisioning artifacts around the stand-ins | `mirror` |
//! | [`netns`] | network namespaces, veth links, `tc` limits, a delaying proxy (root) | – |
//! | `chaos` | the chaos scenarios (kills, restarts, partition, slow link) | `chaos` |
//!
//! Rules the kit follows, so tests can rely on them: nothing sleeps to
//! synchronise (waits poll observable state, or round-trip an ordering
//! marker, see [`sio::SioClient::sync`]); every server a test starts
//! listens on loopback only and is stopped by its pid when dropped.

pub mod netns;
pub mod process;
pub mod sshd;
pub mod standins;
mod wait;

#[cfg(feature = "plane")]
pub mod plane;
#[cfg(feature = "plane")]
pub mod sio;

#[cfg(feature = "wire")]
pub mod wire;

#[cfg(feature = "actors")]
pub mod creds;
#[cfg(feature = "actors")]
pub mod services;

#[cfg(feature = "daemon")]
pub mod daemon;

#[cfg(feature = "mirror")]
pub mod artifacts;
#[cfg(feature = "chaos")]
pub mod chaos;
#[cfg(feature = "mirror")]
pub mod mirror;

pub use process::{alive, free_port, is_root, needs_root};
pub use wait::{Settled, WAIT, eventually};
