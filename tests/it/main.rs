//! The voltd crate's integration tests, one module per topic.

mod provision_cli;
