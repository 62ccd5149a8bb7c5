#![no_main]
//! `cargo +nightly fuzz run engineio` (see scripts/fuzz.sh); the body is in
//! `fuzz/targets/wire.rs`.

#[path = "../targets/wire.rs"]
mod wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire::engineio(data));
