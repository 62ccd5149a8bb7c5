#![no_main]
//! `cargo +nightly fuzz run dispatch` (see scripts/fuzz.sh); the body is in
//! `fuzz/targets/dispatch.rs`.

#[path = "../targets/dispatch.rs"]
mod dispatch;

libfuzzer_sys::fuzz_target!(|data: &[u8]| dispatch::dispatch(data));
