//! volt-plane's integration tests, one binary: one module per topic, all
//! built on the shared `testkit` (plane-only fixtures, the socket.io test
//! client and scripted daemon). A new topic is a file here plus its `mod`
//! line. `log_secrets` stays a binary of its own (see that file).

mod auth;
mod commands;
mod console_api;
mod daemon_socket;
mod enrollment;
mod extensions;
mod http_api;
mod lifecycle;
mod persistence;
mod releases;
mod remote_access;
mod scale;
mod terminal;
mod throughput;
