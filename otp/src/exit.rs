//! How pieces of voltd end: the process exit-code table and the exit reason a
//! supervised child reports.
//!
//! The exit codes are the contract with systemd (see `install/voltd.service`:
//! `Restart=on-failure` with `RestartPreventExitStatus=1 4`):
//!
//! | code | name | meaning | systemd |
//! |---|---|---|---|
//! | 0 | `STOPPED` | stopped on request (SIGTERM/SIGINT) or uninstalled | stays stopped |
//! | 1 | `CONFIG` | fatal configuration error (bad/missing settings, unreadable state) | stays stopped |
//! | 2 | `RETRYABLE` | the supervisor gave up (restart intensity exceeded) or an internal failure | restarted |
//! | 3 | `UPDATING` | exiting so that a new version starts | restarted |
//! | 4 | `CREDENTIALS_REJECTED` | the server refused the enrollment token or daemon password | stays stopped |
//! | 5 | `RESTART_REQUESTED` | the server sent `runtime.restart` | restarted |

use serde::Serialize;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// A documented process exit code (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitCode {
    Stopped,
    Config,
    Retryable,
    Updating,
    CredentialsRejected,
    RestartRequested,
}

impl ExitCode {
    /// Every code, in table order.
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Stopped,
        ExitCode::Config,
        ExitCode::Retryable,
        ExitCode::Updating,
        ExitCode::CredentialsRejected,
        ExitCode::RestartRequested,
    ];

    /// The numeric process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Stopped => 0,
            ExitCode::Config => 1,
            ExitCode::Retryable => 2,
            ExitCode::Updating => 3,
            ExitCode::CredentialsRejected => 4,
            ExitCode::RestartRequested => 5,
        }
    }

    /// One line for the operator.
    pub fn describe(self) -> &'static str {
        match self {
            ExitCode::Stopped => "stopped on request or uninstalled",
            ExitCode::Config => "fatal configuration error",
            ExitCode::Retryable => "supervisor gave up; safe to restart",
            ExitCode::Updating => "exiting for an update",
            ExitCode::CredentialsRejected => "the server rejected the cluster credentials",
            ExitCode::RestartRequested => "restart requested by the server",
        }
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.describe())
    }
}

/// Why a supervised child ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ExitReason {
    /// Finished its job (a transient child is not restarted).
    Normal,
    /// Failed; the supervisor may restart it.
    Failed { reason: String },
    /// Panicked; treated as a failure.
    Panicked { message: String },
    /// Cannot go on and must not be restarted: the process exits with `code`.
    Fatal { code: ExitCode, reason: String },
    /// Stopped by its supervisor (shutdown or a sibling's restart).
    Shutdown,
}

impl ExitReason {
    pub fn failed(reason: impl Into<String>) -> Self {
        ExitReason::Failed {
            reason: reason.into(),
        }
    }

    pub fn fatal(code: ExitCode, reason: impl Into<String>) -> Self {
        ExitReason::Fatal {
            code,
            reason: reason.into(),
        }
    }

    /// Whether this ending counts as abnormal (restarts transient children).
    pub fn is_abnormal(&self) -> bool {
        matches!(
            self,
            ExitReason::Failed { .. } | ExitReason::Panicked { .. } | ExitReason::Fatal { .. }
        )
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Failed { reason } => write!(f, "failed: {reason}"),
            ExitReason::Panicked { message } => write!(f, "panicked: {message}"),
            ExitReason::Fatal { code, reason } => write!(f, "fatal ({}): {reason}", code.code()),
            ExitReason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// Where a child leaves its exit reason before it stops. A child that stops
/// without setting one ended normally; the supervisor reads it after the
/// child's task has finished.
#[derive(Debug, Clone, Default)]
pub struct ExitSlot(Rc<RefCell<Option<ExitReason>>>);

impl ExitSlot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the reason; the first abnormal reason wins over later ones.
    pub fn set(&self, reason: ExitReason) {
        let mut slot = self.0.borrow_mut();
        match &*slot {
            Some(existing) if existing.is_abnormal() => {}
            _ => *slot = Some(reason),
        }
    }

    /// Takes the recorded reason (normal if none).
    pub fn take(&self) -> ExitReason {
        self.0.borrow_mut().take().unwrap_or(ExitReason::Normal)
    }
}

/// Turns a panic payload into a message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_table_is_stable() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
        assert_eq!(
            ExitCode::CredentialsRejected.to_string(),
            "4 (the server rejected the cluster credentials)"
        );
    }

    #[test]
    fn exit_slot_defaults_to_normal_and_keeps_the_first_failure() {
        let slot = ExitSlot::new();
        assert_eq!(slot.take(), ExitReason::Normal);
        slot.set(ExitReason::failed("first"));
        slot.set(ExitReason::Shutdown);
        slot.set(ExitReason::failed("second"));
        assert_eq!(slot.take(), ExitReason::failed("first"));
        assert_eq!(slot.take(), ExitReason::Normal);
    }

    #[test]
    fn abnormal_reasons() {
        assert!(!ExitReason::Normal.is_abnormal());
        assert!(!ExitReason::Shutdown.is_abnormal());
        assert!(ExitReason::failed("x").is_abnormal());
        assert!(
            ExitReason::Panicked {
                message: "p".into()
            }
            .is_abnormal()
        );
        assert!(ExitReason::fatal(ExitCode::Config, "c").is_abnormal());
    }

    #[test]
    fn panic_messages_from_payloads() {
        let p: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_message(p.as_ref()), "static");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(p.as_ref()), "owned");
        let p: Box<dyn std::any::Any + Send> = Box::new(5u8);
        assert_eq!(panic_message(p.as_ref()), "panic with a non-string payload");
    }
}
