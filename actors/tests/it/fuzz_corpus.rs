//! The fuzz corpus, replayed as a normal test: every input kept in
//! `fuzz/corpus/<target>/` (minimised seeds and every input that once found
//! a bug) goes through the same target bodies `cargo fuzz` runs
//! (`fuzz/targets/`), on the stable toolchain. The fuzzing itself is
//! `scripts/fuzz.sh` (nightly, not CI).

#[path = "../../../fuzz/targets/dispatch.rs"]
mod dispatch;
#[path = "../../../fuzz/targets/wire.rs"]
mod wire;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a corpus file");
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let r = std::panic::catch_unwind(|| run(&bytes));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn engineio_corpus() {
    replay("engineio", wire::engineio);
}

#[test]
fn socketio_corpus() {
    replay("socketio", wire::socketio);
}

#[test]
fn envelope_corpus() {
    replay("envelope", wire::envelope);
}

#[test]
fn dispatch_corpus() {
    replay("dispatch", dispatch::dispatch);
}
