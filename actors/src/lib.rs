//! voltd's actor system: the actors under the root supervisor, the handles
//! they talk through, and the pieces they use.
//!
//! | module | what |
//! |---|---|
//! | `api/` | messages and handles actors share (`Handle<M>`, `Outbox`, `Router`, `Link`, reply types, typed event vocabulary) |
//! | `events.rs` | the supervisor log stream |
//! | `config/` | the one configuration model |
//! | `host/` | metrics, monitoring actor, /proc, clock, atomic files, downloads, keystore, sd_notify |
//! | `cloud/` | enrollment, control socket, dispatcher, heartbeat (actors) |
//! | `status/` | the pure status machine, its actor, uninstall/update |
//! | `services/` | the managed services: registry, one actor per service on one core |
//! | `remote/` | inbound command families (one file each) and the terminal sessions actor |
//! | `provision/`, `update/`, `jobs/` | provisioning of the services' servers, signed self-update, job queues |
//! | `admin.rs` | the local admin socket actor |
//! | `daemon.rs` | builds the tree: the only file that names every actor |
//!
//! Supervision itself is the `otp` crate. README "Architecture" maps every
//! actor to its file.
// `deny`, not `forbid`: exactly one function may opt out — the
// parent-death signal of service processes (`services/process.rs`).
#![deny(unsafe_code)]

pub mod admin;
pub mod api;
pub mod cloud;
pub mod config;
pub mod daemon;
pub mod events;
pub mod host;
pub mod jobs;
pub mod provision;
pub mod remote;
pub mod services;
pub mod status;
pub mod update;
