//! glibc's allocator, set up for a daemon that runs for months.
//!
//! glibc gives a thread that allocates while the other arenas are busy an
//! arena of its own, up to eight per core, and an arena keeps the pages its
//! freed chunks leave behind. voltd's threads come and go (the blocking
//! pool, a PTY pump per terminal session), so arenas pile up: in the soak
//! (README "Resilience") voltd held 13–14 thread arenas beside the main
//! heap, and its anonymous memory grew ~270 KiB/h although the heap's live
//! allocations did not (heaptrack) and the main heap stayed flat — the
//! growth was in the thread arenas and, bounded only by the arena limit,
//! would have gone on for hours.
//!
//! [`limit_arenas`] caps them at [`ARENA_MAX`] before voltd starts a
//! thread. voltd's work runs on one actor thread; the others block on
//! files, processes and PTYs and allocate little, so two arenas cost no
//! measurable contention. An operator's own `MALLOC_ARENA_MAX` (or
//! `GLIBC_TUNABLES` naming `glibc.malloc.arena_max`) is left alone. Other C
//! libraries (musl) have no arenas: nothing to do there.
//!
//! A crate would not serve: the allocator crates replace glibc's malloc
//! (a second allocator in a small binary), while this is one documented
//! `mallopt(3)` call.

/// Arenas glibc may create: the main heap and one for every other thread
/// (two, like the common `MALLOC_ARENA_MAX=2` advice for long-running
/// services; one would put the PTY pumps' allocations on the actor
/// thread's lock).
pub const ARENA_MAX: i32 = 2;

/// What [`limit_arenas`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaLimit {
    /// `mallopt(M_ARENA_MAX, ARENA_MAX)` took effect.
    Set,
    /// The operator chose a limit in the environment; it stands.
    Operator,
    /// Not glibc (or glibc refused): the allocator is left as it is.
    Unsupported,
}

/// Whether the environment already sets glibc's arena limit.
fn operator_limit(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_ARENA_MAX").is_some_and(|v| !v.is_empty())
        || var("GLIBC_TUNABLES").is_some_and(|t| t.contains("glibc.malloc.arena_max"))
}

/// Caps glibc's arenas at [`ARENA_MAX`]; call it before any thread starts
/// (arenas already created stay).
pub fn limit_arenas() -> ArenaLimit {
    if operator_limit(|k| std::env::var(k).ok()) {
        return ArenaLimit::Operator;
    }
    set_arena_max(ARENA_MAX)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(n: i32) -> ArenaLimit {
    // SAFETY: mallopt(3) only stores a tunable in glibc's malloc state
    // (under its own lock); it takes integers and touches no Rust memory.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
    if ok == 1 {
        ArenaLimit::Set
    } else {
        ArenaLimit::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: i32) -> ArenaLimit {
    ArenaLimit::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_limit_in_the_environment_stands() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(operator_limit(env(&[("MALLOC_ARENA_MAX", "4")])));
        assert!(operator_limit(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=8"
        )])));
        assert!(!operator_limit(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.tcache_count=0"
        )])));
        assert!(!operator_limit(env(&[("PATH", "/usr/bin")])));
        assert!(!operator_limit(env(&[("MALLOC_ARENA_MAX", "")])));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_limit() {
        assert_eq!(set_arena_max(ARENA_MAX), ArenaLimit::Set);
    }
}
