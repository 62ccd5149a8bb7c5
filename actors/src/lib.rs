//! voltd's actor system: a root supervisor and the actors under it.
//!
//! | actor | file | job |
//! |---|---|---|
//! | root / cloud supervisors | `supervisor.rs` | OTP-style supervision, exit codes |
//! | admin | `admin.rs` | local Unix socket for `voltd status` / `voltd logs` |
//! | monitoring | `monitoring.rs` (+ `host_metrics.rs`) | host metrics for heartbeats |
//! | status | `status.rs` | status state machine, lifecycle reports |
//! | enrollment | `enrollment.rs` | token → daemon password, install manifest |
//! | dispatcher | `dispatch.rs` (+ `handlers/`) | reverse-channel commands and responses |
//! | control-socket | `control_socket.rs` (+ `link.rs`) | socket.io connection, register, reconnect |
//! | heartbeat | `heartbeat.rs` | `runtime.heartbeat` every interval |
//! | sessions | `sessions.rs` (+ `handlers/session.rs`) | host terminal: shell in a PTY per session |
//! | services supervisor | `services/mod.rs` | one_for_one over the managed services; the service registry |
//! | redis / mongo / minio | `services/{redis,mongo,minio}.rs` on `services/core.rs` (+ `process.rs`, `resolve.rs`; settings in `config/services.rs`) | run, probe, bootstrap and restart one managed service |
//!
//! Every actor is built with the `config::Settings` it needs (`config/`:
//! the one configuration model, layered file → environment → flags).
//! The tree is assembled in `daemon.rs`; every notable occurrence is an
//! `events::Event` on the supervisor log stream.
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
