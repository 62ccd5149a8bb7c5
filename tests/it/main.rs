//! voltd integration tests, one binary (`cargo test --test it`).

mod console;
