//! The actors crate's integration tests, one module per topic.

mod download;
mod keystore;
mod mirror;
mod provision;
#[path = "../support/mod.rs"]
mod support;
