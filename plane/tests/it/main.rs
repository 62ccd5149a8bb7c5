//! volt-plane integration tests, one module per topic (see
//! notes/layout.md: the other test files move in here as they are
//! regrouped).

#[path = "../common/mod.rs"]
mod common;

mod extensions;
mod releases;
