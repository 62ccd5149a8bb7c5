//! voltd-actors' integration tests, one binary: one module per topic, on
//! the shared `testkit`. A new topic is a file here plus its `mod` line.

mod download;
mod fuzz_corpus;
mod hostile;
mod import_cycles;
mod jobs_interop;
mod jobs_kit;
mod jobs_pool;
mod keystore;
mod provision;
mod reconnect;
mod services;
mod ssh_import;
mod timing;
