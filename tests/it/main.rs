//! The voltd crate's integration tests, one module per topic.

mod install;
mod provision_cli;
mod unit;
mod update;

/// The voltd binary cargo built for these tests.
pub fn voltd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_voltd")
}

/// The repository root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
