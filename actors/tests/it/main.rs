//! Integration tests of voltd-actors, one module per topic.

mod jobs_interop;
mod jobs_kit;
mod jobs_pool;
mod ssh_import;
