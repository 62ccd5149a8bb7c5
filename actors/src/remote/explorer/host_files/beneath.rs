//! Opening a path *beneath* a directory, with the kernel's help: the one
//! way every host-files operation reaches a file.
//!
//! On Linux ≥ 5.6, `openat2(dirfd, path, how)` with `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS` makes the kernel refuse, atomically with the
//! lookup, any resolution that leaves `dirfd` — through `..`, an absolute
//! path, an absolute symlink or a relative one that climbs out (`EXDEV`) —
//! and any `/proc/…/fd`-style magic link. There is no check-then-open
//! window: a directory swapped for a symlink between two requests, or in
//! the middle of one, is seen by the kernel during the lookup itself.
//!
//! Symlinks that stay inside are followed, relative ones only: an
//! absolute symlink always names something outside `dirfd` as far as the
//! kernel is concerned (`RESOLVE_BENEATH` does not re-root `/`), so it is
//! refused even when it points back inside the root.
//!
//! Where `openat2` does not exist (older kernels: `ENOSYS`; a seccomp
//! filter that hides it: `EPERM`/`ENOSYS`), [`open_beneath`] walks the path
//! one component at a time the way `cap-std` does: every step is an
//! `openat(…, O_PATH | O_NOFOLLOW)` relative to the descriptor of the
//! previous one, symlinks are read and their (relative) targets spliced
//! into the walk, `..` pops back to a descriptor already held — never a
//! path looked up again — and popping past the start is `EXDEV`. The walk
//! is slower (a syscall per component) but has no window either: it never
//! resolves a name it did not open itself. The `cap-std` crate is not used
//! because it wants to own every descriptor (its `Dir` type) and brings a
//! dozen crates for what is one function here; rustix gives the syscalls.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Symlinks followed in one lookup before giving up with `ELOOP` (the
/// kernel's own limit, `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// `openat2` answers `EAGAIN` when a rename or mount raced with a
/// `RESOLVE_BENEATH` lookup; it is retried this many times.
const RACE_RETRIES: usize = 16;

/// Set once `openat2` turned out to be missing: later lookups walk.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Which way [`open_beneath`] resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `openat2` when the kernel has it, else [`Strategy::Walk`].
    Auto,
    /// Component by component (what older kernels get; tests force it).
    Walk,
}

/// Opens `rel` (relative, `/`-separated components; empty = `dir` itself)
/// beneath `dir` with `flags` (`O_CLOEXEC` is always added).
pub fn open_beneath<Fd: AsFd>(
    dir: Fd,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
    strategy: Strategy,
) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    let target: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    if strategy == Strategy::Auto && !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(dir.as_fd(), target, flags, mode, resolve) {
                Err(Errno::AGAIN) if tries < RACE_RETRIES => tries += 1,
                Err(Errno::NOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "openat2 is not available: host-files resolves paths component by component."
                    );
                    break;
                }
                other => return other,
            }
        }
    }
    walk(dir.as_fd(), target, flags, mode)
}

/// The `cap-std`-style walk (see the module docs).
fn walk(
    dir: rustix::fd::BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    if rel.is_absolute() {
        return Err(Errno::XDEV);
    }
    let mut queue: VecDeque<OsString> = components(rel.as_os_str().as_bytes());
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut links = 0usize;
    // Whether the last component may be a symlink to follow (O_NOFOLLOW
    // asked for: open the link itself, as openat2 would).
    let follow_last = !flags.contains(OFlags::NOFOLLOW);
    loop {
        let Some(name) = queue.pop_front() else {
            // Everything consumed by `..`/`.`: the directory we are in.
            let cur = stack.last().map(|f| f.as_fd()).unwrap_or(dir);
            return rustix::fs::openat(cur, ".", flags, mode);
        };
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(dir);
        if name == ".." {
            if stack.pop().is_none() {
                return Err(Errno::XDEV);
            }
            if queue.is_empty() {
                let cur = stack.last().map(|f| f.as_fd()).unwrap_or(dir);
                return rustix::fs::openat(cur, ".", flags, mode);
            }
            continue;
        }
        let last = queue.is_empty();
        let probe = match rustix::fs::openat(
            cur,
            name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Creating the last component: nothing to probe.
            Err(Errno::NOENT) if last && flags.contains(OFlags::CREATE) => {
                return rustix::fs::openat(cur, name.as_os_str(), flags | OFlags::NOFOLLOW, mode);
            }
            Err(e) => return Err(e),
        };
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&probe)?.st_mode);
        if kind == FileType::Symlink && (!last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::LOOP);
            }
            let target = match rustix::fs::readlinkat(cur, name.as_os_str(), Vec::new()) {
                Ok(t) => t,
                // No longer a symlink (swapped since the probe): look at
                // the name again (bounded by MAX_SYMLINKS).
                Err(Errno::INVAL) => {
                    queue.push_front(name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let bytes = target.as_bytes();
            if bytes.starts_with(b"/") {
                return Err(Errno::XDEV);
            }
            let mut spliced = components(bytes);
            spliced.extend(queue.drain(..));
            queue = spliced;
            continue;
        }
        if last {
            if flags.contains(OFlags::PATH) && flags.contains(OFlags::NOFOLLOW) {
                return Ok(probe);
            }
            // The final open itself never follows: a symlink swapped in
            // since the probe fails (ELOOP) rather than escaping.
            return rustix::fs::openat(cur, name.as_os_str(), flags | OFlags::NOFOLLOW, mode);
        }
        if kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        stack.push(probe);
    }
}

fn components(bytes: &[u8]) -> VecDeque<OsString> {
    bytes
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_owned())
        .collect()
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: what a directory entry is,
/// without following it.
pub fn lstat_at<Fd: AsFd>(dir: Fd, name: &OsStr) -> rustix::io::Result<rustix::fs::Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f.txt"), "inside").unwrap();
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::fs::write(d.path().join("outside/secret"), "secret").unwrap();
        symlink("b", root.join("a/rel")).unwrap();
        symlink("../../outside", root.join("a/up")).unwrap();
        symlink(d.path().join("outside"), root.join("abs")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink("/proc/self/root", root.join("magic")).unwrap();
        let fd = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (d, fd)
    }

    fn read(fd: &OwnedFd, rel: &str, strategy: Strategy) -> Result<String, Errno> {
        let f = open_beneath(fd, Path::new(rel), OFlags::RDONLY, Mode::empty(), strategy)?;
        Ok(std::fs::read_to_string(format!(
            "/proc/self/fd/{}",
            rustix::fd::AsRawFd::as_raw_fd(&f)
        ))
        .unwrap())
    }

    #[test]
    fn both_strategies_agree_on_the_escape_table() {
        let (_d, root) = tree();
        for strategy in [Strategy::Auto, Strategy::Walk] {
            assert_eq!(read(&root, "a/b/f.txt", strategy).as_deref(), Ok("inside"));
            assert_eq!(
                read(&root, "a/rel/f.txt", strategy).as_deref(),
                Ok("inside")
            );
            assert_eq!(
                read(&root, "a/b/../b/f.txt", strategy).as_deref(),
                Ok("inside")
            );
            for (rel, errno) in [
                ("a/up/secret", Errno::XDEV),
                ("abs/secret", Errno::XDEV),
                ("../outside/secret", Errno::XDEV),
                ("a/../../outside/secret", Errno::XDEV),
                ("loop1", Errno::LOOP),
                ("a/b/f.txt/x", Errno::NOTDIR),
                ("a/missing", Errno::NOENT),
            ] {
                assert_eq!(read(&root, rel, strategy), Err(errno), "{rel} {strategy:?}");
            }
            // /proc/self/root is absolute: outside either way.
            assert!(read(&root, "magic/etc/hostname", strategy).is_err());
        }
    }

    /// A directory swapped with an escaping symlink in a tight loop: 2 000
    /// lookups each way, not one reaches the outside.
    #[test]
    fn a_swapped_symlink_never_escapes_either_strategy() {
        let (d, root) = tree();
        let base = d.path().join("root");
        std::fs::create_dir(base.join("swap")).unwrap();
        std::fs::write(base.join("swap/secret"), "inside").unwrap();
        symlink("../outside", base.join("swap-out")).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let swapper = {
            let stop = stop.clone();
            let base = base.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    rustix::fs::renameat_with(
                        rustix::fs::CWD,
                        base.join("swap"),
                        rustix::fs::CWD,
                        base.join("swap-out"),
                        rustix::fs::RenameFlags::EXCHANGE,
                    )
                    .unwrap();
                }
            })
        };
        for strategy in [Strategy::Auto, Strategy::Walk] {
            // At least 2 000 lookups, and until both sides were seen (the
            // swapper may be descheduled for a while on a busy machine).
            let (mut inside, mut refused, mut n) = (0, 0, 0);
            while n < 2000 || inside == 0 || refused == 0 {
                assert!(
                    n < 1_000_000,
                    "{strategy:?}: inside {inside}, refused {refused}"
                );
                n += 1;
                match read(&root, "swap/secret", strategy) {
                    Ok(text) => {
                        assert_eq!(text, "inside", "{strategy:?} escaped");
                        inside += 1;
                    }
                    Err(Errno::XDEV) => refused += 1,
                    Err(e) => assert!(
                        [Errno::NOENT, Errno::NOTDIR, Errno::LOOP].contains(&e),
                        "{strategy:?}: {e}"
                    ),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
    }

    #[test]
    fn the_empty_path_is_the_directory_itself() {
        let (_d, root) = tree();
        for strategy in [Strategy::Auto, Strategy::Walk] {
            let fd = open_beneath(
                &root,
                Path::new(""),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
                strategy,
            )
            .unwrap();
            let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd).unwrap().st_mode);
            assert_eq!(kind, FileType::Directory);
        }
    }
}
