//! voltd-actors' integration tests, one binary: one module per topic, on
//! the shared `testkit`. A new topic is a file here plus its `mod` line.

mod import_cycles;
mod services;
mod timing;
