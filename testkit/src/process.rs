//! The host side of tests: free ports, processes, root.

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A loopback port nobody listens on right now (the kernel picks it; it is
/// released at once for the server under test to bind). Never the same port
/// twice in one test process: the kernel may hand a just-released port out
/// again, and two services of one test asking in a row would collide.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Mutex::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if given.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Whether `pid` runs (a zombie does not count: it has exited, only its
/// parent has not reaped it yet).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace()
                .next()
                .map(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Whether `/proc/<pid>` exists at all (also true for a zombie).
pub fn exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends `signal` to `pid`; panics if it cannot be sent.
pub fn signal(pid: i32, signal: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid), signal)
        .unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// Whether the tests run as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The first line of a root-only test, which is marked
/// `#[ignore = "needs root"]` and lives in a `needs_root` module (so
/// `scripts/test.sh` can select it by name): fails loudly when run by hand
/// without root, instead of passing without testing anything.
#[track_caller]
pub fn needs_root() {
    assert!(
        is_root(),
        "this test needs root (it switches users or changes the host); run it as root — \
         CI does, through ./scripts/test.sh"
    );
}
