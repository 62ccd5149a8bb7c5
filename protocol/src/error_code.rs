//! Wire error codes: the daemon client's codes (the reference SDK's
//! `DaemonClientErrorCode`) and the server's error codes a daemon meets.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable, machine-readable error codes of the daemon side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Enrollment (`/healthcheck`) failed.
    EnrollmentFailed,
    /// The control socket could not be (re)connected.
    SocketConnectionFailed,
    /// An outbound command got no response in time.
    CommandTimeout,
    /// The server answered an outbound command with `ok:false`.
    CommandRejected,
    /// The socket is not connected and registered.
    SocketNotReady,
    /// An inbound command's handler failed.
    HandlerError,
    /// A fire-and-forget message could not be emitted.
    EmitFailed,
    /// A heartbeat failed.
    HeartbeatFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::EnrollmentFailed => "ENROLLMENT_FAILED",
            ErrorCode::SocketConnectionFailed => "SOCKET_CONNECTION_FAILED",
            ErrorCode::CommandTimeout => "COMMAND_TIMEOUT",
            ErrorCode::CommandRejected => "COMMAND_REJECTED",
            ErrorCode::SocketNotReady => "SOCKET_NOT_READY",
            ErrorCode::HandlerError => "HANDLER_ERROR",
            ErrorCode::EmitFailed => "EMIT_FAILED",
            ErrorCode::HeartbeatFailed => "HEARTBEAT_FAILED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error codes of the VOLT server that matter to a daemon.
pub mod server {
    /// Cluster id unknown (enrollment 404).
    pub const NOT_FOUND: &str = "TeamCluster::NotFound";
    /// Enrollment token already used (409).
    pub const ENROLLMENT_ALREADY_COMPLETED: &str = "TeamCluster::EnrollmentAlreadyCompleted";
    /// Enrollment token wrong (401).
    pub const ENROLLMENT_INVALID: &str = "TeamCluster::EnrollmentInvalid";
    /// Daemon password wrong (401).
    pub const DAEMON_UNAUTHORIZED: &str = "TeamCluster::DaemonUnauthorized";
    /// No daemon socket registered for the cluster (409).
    pub const DAEMON_UNAVAILABLE: &str = "TeamCluster::DaemonUnavailable";
    /// `runtime.lifecycle` with `connected`.
    pub const HEARTBEAT_REQUIRED: &str = "TeamCluster::HeartbeatRequired";
    /// `runtime.lifecycle` with `waiting-for-connection`.
    pub const LIFECYCLE_STATUS_INVALID: &str = "TeamCluster::LifecycleStatusInvalid";
    /// Request validation failed.
    pub const VALIDATION_INVALID_INPUT: &str = "Validation::InvalidInput";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_the_sdk_strings() {
        for (code, s) in [
            (ErrorCode::EnrollmentFailed, "ENROLLMENT_FAILED"),
            (
                ErrorCode::SocketConnectionFailed,
                "SOCKET_CONNECTION_FAILED",
            ),
            (ErrorCode::CommandTimeout, "COMMAND_TIMEOUT"),
            (ErrorCode::CommandRejected, "COMMAND_REJECTED"),
            (ErrorCode::SocketNotReady, "SOCKET_NOT_READY"),
            (ErrorCode::HandlerError, "HANDLER_ERROR"),
            (ErrorCode::EmitFailed, "EMIT_FAILED"),
            (ErrorCode::HeartbeatFailed, "HEARTBEAT_FAILED"),
        ] {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.to_string(), s);
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&format!("\"{s}\"")).unwrap(),
                code
            );
        }
    }
}
