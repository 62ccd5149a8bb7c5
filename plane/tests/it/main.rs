//! volt-plane integration tests, one binary (`cargo test -p volt-plane --test it`).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod console_api;
mod scale;
