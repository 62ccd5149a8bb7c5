//! Starting a program that was just written.
//!
//! Linux refuses to execute a file while any process holds it open for
//! writing (`ETXTBSY`, "Text file busy"). voltd runs programs it or its
//! installer has just written — a provisioned server's `--version`, a new
//! release's `self-check`, a key-store program — while its other threads
//! start processes, and a `fork` on one of them copies every open
//! descriptor, the writer's included, into a child that keeps it until its
//! own `exec` closes it (`O_CLOEXEC`): for that moment the new program is
//! "busy" although nobody writes it any more. The window is the time
//! between a `fork` and its `exec`, so trying again shortly succeeds; these
//! helpers do that, a bounded number of times. No crate covers it (std and
//! tokio return the error as it is).

use std::io;
use std::time::Duration;

/// Attempts in all before `ETXTBSY` is reported (the window is the time
/// between another thread's fork and its exec: microseconds, a few
/// milliseconds on a loaded host).
pub const BUSY_ATTEMPTS: u32 = 10;
/// Pause between attempts: ten of them cover 90 ms.
pub const BUSY_PAUSE: Duration = Duration::from_millis(10);

fn busy(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ExecutableFileBusy
}

/// Runs `spawn` until it succeeds, fails otherwise than with `ETXTBSY`, or
/// [`BUSY_ATTEMPTS`] are made; `pause(n)` runs between attempts.
fn retry_busy<T>(
    mut spawn: impl FnMut() -> io::Result<T>,
    mut pause: impl FnMut(u32),
) -> io::Result<T> {
    let mut attempt = 1;
    loop {
        match spawn() {
            Err(e) if busy(&e) && attempt < BUSY_ATTEMPTS => {
                pause(attempt);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// [`std::process::Command::spawn`], trying again while the program is
/// busy. It sleeps between attempts: call it on the blocking pool.
pub fn spawn_blocking(cmd: &mut std::process::Command) -> io::Result<std::process::Child> {
    retry_busy(|| cmd.spawn(), |_| std::thread::sleep(BUSY_PAUSE))
}

/// [`tokio::process::Command::spawn`], trying again while the program is
/// busy (waiting without blocking the thread).
pub async fn spawn(cmd: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
    let mut attempt = 1;
    loop {
        match cmd.spawn() {
            Err(e) if busy(&e) && attempt < BUSY_ATTEMPTS => {
                tokio::time::sleep(BUSY_PAUSE).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A script held open for writing: executing it is `ETXTBSY`.
    fn busy_script(dir: &std::path::Path) -> (std::path::PathBuf, std::fs::File) {
        let path = dir.join("prog");
        let mut f = std::fs::File::create(&path).unwrap();
        io::Write::write_all(&mut f, b"#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (path, f)
    }

    #[test]
    fn a_program_that_stops_being_busy_is_started() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = busy_script(dir.path());
        let err = std::process::Command::new(&path).spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ExecutableFileBusy);
        // The writer goes away during the first pause.
        let mut writer = Some(writer);
        let mut pauses = Vec::new();
        let mut child = retry_busy(
            || std::process::Command::new(&path).spawn(),
            |n| {
                pauses.push(n);
                writer.take();
            },
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(pauses, [1]);
    }

    #[test]
    fn a_program_that_stays_busy_is_reported_after_the_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _writer) = busy_script(dir.path());
        let mut pauses = 0;
        let err = retry_busy(
            || std::process::Command::new(&path).spawn(),
            |_| pauses += 1,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ExecutableFileBusy);
        assert_eq!(pauses, BUSY_ATTEMPTS - 1);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut pauses = 0;
        let err = retry_busy(
            || std::process::Command::new("/nonexistent/voltd-test-program").spawn(),
            |_| pauses += 1,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(pauses, 0);
    }
}
