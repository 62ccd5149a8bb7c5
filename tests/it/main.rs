//! voltd's integration tests, one binary: one module per topic, all built
//! on the shared `testkit` (plane + daemon fixtures, the real stand-in
//! servers). A new topic is a file here plus its `mod` line. Root-only
//! tests sit in a `needs_root` module of their topic, marked
//! `#[ignore = "needs root"]`; `scripts/test.sh` runs them as root.

mod chaos;
mod cli;
mod console;
mod control_channel;
mod credentials;
mod explorer;
mod file_manager;
mod hostile;
mod install;
mod interop;
mod jobs;
mod jobs_binary;
mod journey;
mod provision_cli;
mod provisioning;
mod runtime_actions;
mod self_update;
mod service_secrets;
mod services;
mod services_binary;
mod terminal;
mod tls_proxy;
mod unit;
mod update;

/// The voltd binary built for these tests (Cargo builds it for the
/// package's integration tests).
pub fn voltd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_voltd")
}

/// The repository root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
