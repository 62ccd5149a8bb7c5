//! The pending-update marker, `<state dir>/update.json`, and everything that
//! reads it: the guard (ExecStartPre), the start-up decision, commit,
//! rollback and the trial watchdog (see the module docs of [`super`]).
//!
//! ```json
//! {"state":"pending","from":"1.0.0","to":"1.1.0","startedAt":"2026-…","starts":1}
//! {"state":"rolled-back","from":"1.0.0","to":"1.1.0","startedAt":"2026-…","starts":3,
//!  "reason":"version 1.1.0 did not register within 90 s"}
//! ```
//!
//! `from` is the release that performed the update and is restored on
//! rollback; `starts` is the boot counter the guard increments before every
//! start of the unit. Written atomically, 0600. Blocking file I/O.

use super::UpdateError;
use super::install::InstallLayout;
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::time::Duration;

/// The marker's file name in the state directory.
pub const MARKER_FILE: &str = "update.json";
/// Starts a release on trial gets. Three: one crash can be bad luck (an
/// OOM kill while the host was busy), three in a row at start-up is the
/// release; with `RestartSec=5` that is under half a minute.
pub const MAX_TRIAL_STARTS: u32 = 3;
/// How long a release on trial has to register with the server by default
/// (`[update] register_deadline_secs`; see its constant for the reason).
pub const REGISTER_DEADLINE: Duration = crate::config::host::DEFAULT_REGISTER_DEADLINE;
/// After the watchdog asked for a graceful stop, how long before it exits
/// the process itself (services are stopped within their stop timeouts).
pub const ROLLBACK_EXIT_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkerState {
    Pending,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    pub state: MarkerState,
    pub from: String,
    pub to: String,
    pub started_at: String,
    pub starts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn path(layout: &InstallLayout) -> std::path::PathBuf {
    layout.state_dir.join(MARKER_FILE)
}

/// Reads the marker; an unreadable or corrupt one counts as none (and is
/// logged): a broken marker must never keep the daemon from starting.
pub fn read(layout: &InstallLayout) -> Option<Marker> {
    let p = path(layout);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "Cannot read the update marker; ignoring it.");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "Corrupt update marker; ignoring it.");
            None
        }
    }
}

fn write(layout: &InstallLayout, m: &Marker) -> Result<(), UpdateError> {
    let p = path(layout);
    let bytes = serde_json::to_vec(m).map_err(|e| UpdateError::Io(e.to_string()))?;
    crate::host::fsutil::write_atomic(&p, &bytes, crate::host::fsutil::SECRET_FILE_MODE)
        .map_err(|e| UpdateError::Io(format!("cannot write {}: {e}", p.display())))
}

/// Removes the marker (missing is fine).
pub fn clear(layout: &InstallLayout) -> Result<(), UpdateError> {
    let p = path(layout);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UpdateError::Io(format!(
            "cannot remove {}: {e}",
            p.display()
        ))),
    }
}

/// Writes a pending marker before the swap.
pub fn begin(layout: &InstallLayout, from: &str, to: &str) -> Result<(), UpdateError> {
    write(
        layout,
        &Marker {
            state: MarkerState::Pending,
            from: from.to_owned(),
            to: to.to_owned(),
            started_at: crate::host::clock::now_iso(),
            starts: 0,
            reason: None,
        },
    )
}

/// Swaps `current` back to `from` and marks the marker rolled back.
pub fn rollback(layout: &InstallLayout, reason: &str) -> Result<Marker, UpdateError> {
    let Some(mut m) = read(layout).filter(|m| m.state == MarkerState::Pending) else {
        return Err(UpdateError::Io("no update is pending".into()));
    };
    layout.set_current(&m.from)?;
    m.state = MarkerState::RolledBack;
    m.reason = Some(reason.to_owned());
    write(layout, &m)?;
    tracing::warn!(from = %m.from, to = %m.to, %reason, "Update rolled back.");
    Ok(m)
}

/// What the guard did before a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardOutcome {
    /// No update on trial.
    Nothing,
    /// The trial release starts again; this is start number `starts`.
    Counted { starts: u32 },
    /// The trial release used up its starts; `from` runs again.
    RolledBack { reason: String },
}

/// `voltd update-guard`, run before every start of the unit (see the
/// module docs of [`super`]).
pub fn guard(layout: &InstallLayout) -> Result<GuardOutcome, UpdateError> {
    let Some(mut m) = read(layout).filter(|m| m.state == MarkerState::Pending) else {
        return Ok(GuardOutcome::Nothing);
    };
    if layout.current_version().as_deref() != Some(m.to.as_str()) {
        // The swap never happened or was undone by hand: nothing on trial.
        return Ok(GuardOutcome::Nothing);
    }
    if m.starts >= MAX_TRIAL_STARTS {
        let reason = format!(
            "version {} stopped before registering {} times in a row; restored {}",
            m.to, m.starts, m.from
        );
        rollback(layout, &reason)?;
        return Ok(GuardOutcome::RolledBack { reason });
    }
    m.starts += 1;
    write(layout, &m)?;
    Ok(GuardOutcome::Counted { starts: m.starts })
}

/// What a starting daemon must do about updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Nothing pending.
    Normal,
    /// This process is the release on trial: arm a [`TrialWatchdog`] and
    /// commit once registered.
    Trial { from: String, to: String },
    /// An update failed and this process is the restored release: once
    /// registered, report `update-failed` with `reason`, then
    /// [`acknowledge`].
    RolledBack {
        from: String,
        to: String,
        reason: String,
    },
}

/// Decides [`Startup`] from the marker and the release this process runs
/// (`layout.running_release()`; `None` when not run from the install dir).
pub fn startup(layout: &InstallLayout, running: Option<&str>) -> Startup {
    let Some(m) = read(layout) else {
        return Startup::Normal;
    };
    let Some(running) = running else {
        return Startup::Normal;
    };
    match m.state {
        MarkerState::Pending if running == m.to => Startup::Trial {
            from: m.from,
            to: m.to,
        },
        MarkerState::Pending if running == m.from => {
            // Crashed between marker and swap, or the links were put back
            // by hand: the update did not take effect.
            let reason = format!(
                "the update to {} was interrupted before it took effect",
                m.to
            );
            let _ = write(
                layout,
                &Marker {
                    state: MarkerState::RolledBack,
                    reason: Some(reason.clone()),
                    ..m.clone()
                },
            );
            Startup::RolledBack {
                from: m.from,
                to: m.to,
                reason,
            }
        }
        MarkerState::RolledBack if running == m.from => Startup::RolledBack {
            reason: m
                .reason
                .unwrap_or_else(|| format!("the update to {} was rolled back", m.to)),
            from: m.from,
            to: m.to,
        },
        _ => {
            // Some other release runs (installed by hand): the marker is
            // about a story that is over.
            tracing::info!(running, marker_to = %m.to, "Stale update marker removed.");
            let _ = clear(layout);
            Startup::Normal
        }
    }
}

/// The release on trial registered: the update is done. Removes the marker
/// and releases older than `previous`.
pub fn commit(layout: &InstallLayout) -> Result<(), UpdateError> {
    let m = read(layout);
    clear(layout)?;
    if let Some(m) = m {
        tracing::info!(from = %m.from, to = %m.to, "Update committed.");
    }
    if let Err(e) = layout.prune() {
        tracing::warn!(error = %e, "Cannot remove old releases.");
    }
    Ok(())
}

/// The restored release reported `update-failed`: the story is over.
pub fn acknowledge(layout: &InstallLayout) -> Result<(), UpdateError> {
    clear(layout)
}

/// Rolls a release on trial back if it does not register in time.
///
/// Runs on its own OS thread, so a stuck async runtime cannot keep it from
/// firing. On expiry it rolls back (swaps `current` to `from`), calls
/// `on_expire` with the reason — the daemon asks its root supervisor for a
/// graceful exit with code 3 there — and if the process still runs
/// `exit_grace` later, exits with code 3 itself.
pub struct TrialWatchdog {
    commit: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TrialWatchdog {
    pub fn spawn(
        layout: InstallLayout,
        deadline: Duration,
        exit_grace: Duration,
        on_expire: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<TrialWatchdog> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("update-trial".into())
            .spawn(move || {
                match rx.recv_timeout(deadline) {
                    // Committed (or the watchdog was dropped).
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                let to = read(&layout).map(|m| m.to).unwrap_or_default();
                let reason = format!(
                    "version {to} did not register with the server within {} s",
                    deadline.as_secs()
                );
                if let Err(e) = rollback(&layout, &reason) {
                    tracing::error!(error = %e, "Rollback failed.");
                }
                on_expire(reason);
                std::thread::sleep(exit_grace);
                tracing::error!("Graceful stop after rollback did not finish; exiting.");
                std::process::exit(otp::ExitCode::Updating.code());
            })?;
        Ok(TrialWatchdog {
            commit: Some(tx),
            thread: Some(thread),
        })
    }

    /// Registration succeeded: stop the watchdog and commit the update.
    pub fn commit(mut self, layout: &InstallLayout) -> Result<(), UpdateError> {
        if let Some(tx) = self.commit.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        commit(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::install::BINARY_FILE;

    fn layout() -> (tempfile::TempDir, InstallLayout) {
        let dir = tempfile::tempdir().unwrap();
        let l = InstallLayout::new(dir.path().join("opt"), dir.path().join("state"));
        std::fs::create_dir_all(&l.state_dir).unwrap();
        for v in ["1.0.0", "1.1.0"] {
            let d = l.release_dir(v);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(BINARY_FILE), b"bin").unwrap();
        }
        l.set_previous("1.0.0").unwrap();
        l.set_current("1.1.0").unwrap();
        (dir, l)
    }

    #[test]
    fn the_guard_counts_starts_then_rolls_back() {
        let (_d, l) = layout();
        assert_eq!(guard(&l).unwrap(), GuardOutcome::Nothing);
        begin(&l, "1.0.0", "1.1.0").unwrap();
        for n in 1..=MAX_TRIAL_STARTS {
            assert_eq!(guard(&l).unwrap(), GuardOutcome::Counted { starts: n });
            assert_eq!(
                startup(&l, Some("1.1.0")),
                Startup::Trial {
                    from: "1.0.0".into(),
                    to: "1.1.0".into()
                }
            );
        }
        let GuardOutcome::RolledBack { reason } = guard(&l).unwrap() else {
            panic!("no rollback");
        };
        assert!(
            reason.contains("1.1.0") && reason.contains("3 times"),
            "{reason}"
        );
        assert_eq!(l.current_version().as_deref(), Some("1.0.0"));
        // The restored release learns why; the guard stays quiet now.
        assert_eq!(
            startup(&l, Some("1.0.0")),
            Startup::RolledBack {
                from: "1.0.0".into(),
                to: "1.1.0".into(),
                reason: reason.clone()
            }
        );
        assert_eq!(guard(&l).unwrap(), GuardOutcome::Nothing);
        acknowledge(&l).unwrap();
        assert_eq!(startup(&l, Some("1.0.0")), Startup::Normal);
        assert!(read(&l).is_none());
    }

    #[test]
    fn a_commit_ends_the_trial() {
        let (_d, l) = layout();
        begin(&l, "1.0.0", "1.1.0").unwrap();
        guard(&l).unwrap();
        commit(&l).unwrap();
        assert_eq!(guard(&l).unwrap(), GuardOutcome::Nothing);
        assert_eq!(startup(&l, Some("1.1.0")), Startup::Normal);
        assert_eq!(l.current_version().as_deref(), Some("1.1.0"));
        assert!(l.release_dir("1.0.0").exists(), "previous is kept");
    }

    #[test]
    fn an_interrupted_swap_is_reported_by_the_old_release() {
        let (_d, l) = layout();
        l.set_current("1.0.0").unwrap();
        begin(&l, "1.0.0", "1.1.0").unwrap();
        // current is still 1.0.0: the guard has nothing on trial.
        assert_eq!(guard(&l).unwrap(), GuardOutcome::Nothing);
        let Startup::RolledBack { reason, .. } = startup(&l, Some("1.0.0")) else {
            panic!();
        };
        assert!(reason.contains("interrupted"), "{reason}");
    }

    #[test]
    fn stale_or_corrupt_markers_never_block_a_start() {
        let (_d, l) = layout();
        begin(&l, "0.5.0", "0.6.0").unwrap();
        assert_eq!(startup(&l, Some("1.1.0")), Startup::Normal);
        assert!(read(&l).is_none());
        std::fs::write(l.state_dir.join(MARKER_FILE), b"{nope").unwrap();
        assert_eq!(startup(&l, Some("1.1.0")), Startup::Normal);
        assert_eq!(guard(&l).unwrap(), GuardOutcome::Nothing);
        begin(&l, "1.0.0", "1.1.0").unwrap();
        assert_eq!(startup(&l, None), Startup::Normal);
    }

    #[test]
    fn the_watchdog_rolls_back_a_release_that_does_not_register() {
        let (_d, l) = layout();
        begin(&l, "1.0.0", "1.1.0").unwrap();
        let (tx, rx) = mpsc::channel();
        let _w = TrialWatchdog::spawn(
            l.clone(),
            Duration::from_millis(50),
            Duration::from_secs(3600),
            move |reason| tx.send(reason).unwrap(),
        )
        .unwrap();
        let reason = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(reason.contains("did not register"), "{reason}");
        assert_eq!(l.current_version().as_deref(), Some("1.0.0"));
        assert_eq!(read(&l).unwrap().state, MarkerState::RolledBack);
    }

    #[test]
    fn a_committed_watchdog_never_fires() {
        let (_d, l) = layout();
        begin(&l, "1.0.0", "1.1.0").unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let w = TrialWatchdog::spawn(
            l.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            move |reason| tx.send(reason).unwrap(),
        )
        .unwrap();
        w.commit(&l).unwrap();
        // The thread has ended (commit joins it) without calling back.
        assert!(rx.try_recv().is_err());
        assert!(read(&l).is_none());
        assert_eq!(l.current_version().as_deref(), Some("1.1.0"));
    }
}
