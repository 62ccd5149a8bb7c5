//! The actors crate's integration tests, one module per topic.

mod download;
mod jobs_interop;
mod jobs_kit;
mod jobs_pool;
mod keystore;
mod mirror;
mod provision;
mod ssh_import;
#[path = "../support/mod.rs"]
mod support;
