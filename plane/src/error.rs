//! The plane's one error type. Every variant knows its HTTP status and the
//! wire error code of the reference server (`TeamCluster::…`), so the HTTP
//! layer, the socket layer and library callers all report the same thing.

use std::path::PathBuf;
use thiserror::Error;
use volt_protocol::error_code::server;

/// The reference server's error code for a validation failure.
pub(crate) const VALIDATION: &str = server::VALIDATION_INVALID_INPUT;
/// Code of a daemon failure that carries no `data.code` of its own (the
/// reference server's generic daemon failure).
pub const DAEMON_REQUEST_FAILED: &str = "TeamCluster::DaemonRequestFailed";

/// Everything that can go wrong in the plane. Messages never contain a
/// password or a token.
#[derive(Debug, Error)]
pub enum PlaneError {
    /// No cluster with that id.
    #[error("Team cluster not found")]
    NotFound,
    /// A request body or payload failed validation.
    #[error("{0}")]
    InvalidInput(String),
    /// Wrong daemon password.
    #[error("Invalid daemon credentials")]
    DaemonUnauthorized,
    /// Wrong enrollment token.
    #[error("Invalid enrollment credentials")]
    EnrollmentInvalid,
    /// The enrollment token was already used.
    #[error("Team cluster enrollment has already been completed")]
    EnrollmentAlreadyCompleted,
    /// No daemon registered for the cluster within the wait window.
    #[error("Team cluster daemon is not connected")]
    DaemonUnavailable,
    /// The daemon did not answer in time.
    #[error("Timed out waiting for daemon response")]
    Timeout,
    /// The daemon socket went away while a request was pending.
    #[error("Team cluster daemon connection was lost")]
    ConnectionLost,
    /// The daemon socket's outbound buffer is full.
    #[error("Team cluster daemon connection is saturated")]
    DaemonBusy,
    /// The daemon answered `ok:false` (or a 4xx/5xx status): its status,
    /// its `data.code` when it sent one, and its message.
    #[error("{message}")]
    DaemonRequestFailed {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The daemon broke the protocol (e.g. stream data before the opening
    /// response, invalid base64).
    #[error("Daemon protocol error: {0}")]
    DaemonProtocol(String),
    /// A stream reply ended with `stream-end.message`.
    #[error("Daemon stream failed: {0}")]
    StreamFailed(String),
    /// A consumer (HTTP client, WebSocket client) read slower than the
    /// daemon sent and the plane's bounded buffer for it filled up.
    #[error(
        "The client reads slower than the daemon sends: the plane's {limit}-byte buffer for this transfer is full, so it was aborted"
    )]
    BufferFull { limit: usize },
    /// A request body, or the command frame it becomes, is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A state conflict with a reference error code (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A refused request with a reference error code (400).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The data file exists but cannot be read or written.
    #[error("data file {}: {source}", path.display())]
    DataFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data file is not a volt-plane data file; it is left untouched.
    #[error("data file {} is corrupt (left untouched): {reason}", path.display())]
    CorruptDataFile { path: PathBuf, reason: String },
    /// No such HTTP route.
    #[error("Route not found")]
    RouteNotFound,
    /// The route exists, the method does not.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// Anything else (a bug, or a serialisation failure).
    #[error("{0}")]
    Internal(String),
}

impl PlaneError {
    /// The HTTP status this error is reported with.
    pub fn http_status(&self) -> u16 {
        match self {
            PlaneError::NotFound | PlaneError::RouteNotFound => 404,
            PlaneError::MethodNotAllowed => 405,
            PlaneError::InvalidInput(_) | PlaneError::BadRequest { .. } => 400,
            PlaneError::DaemonUnauthorized | PlaneError::EnrollmentInvalid => 401,
            PlaneError::EnrollmentAlreadyCompleted
            | PlaneError::DaemonUnavailable
            | PlaneError::Conflict { .. } => 409,
            PlaneError::ConnectionLost
            | PlaneError::DaemonProtocol(_)
            | PlaneError::StreamFailed(_) => 502,
            PlaneError::DaemonBusy | PlaneError::BufferFull { .. } => 503,
            PlaneError::PayloadTooLarge(_) => 413,
            // A daemon status outside 400..=599 on a failure is itself a
            // broken reply: a bad gateway.
            PlaneError::DaemonRequestFailed { status, .. } => {
                if (400..=599).contains(status) {
                    *status
                } else {
                    502
                }
            }
            PlaneError::Timeout => 504,
            PlaneError::Bind { .. }
            | PlaneError::DataFile { .. }
            | PlaneError::CorruptDataFile { .. }
            | PlaneError::Internal(_) => 500,
        }
    }

    /// The machine-readable code (the reference server's where it has one;
    /// the daemon's own `data.code` for [`PlaneError::DaemonRequestFailed`]).
    pub fn code(&self) -> &str {
        match self {
            PlaneError::NotFound => server::NOT_FOUND,
            PlaneError::RouteNotFound => "Route::NotFound",
            PlaneError::MethodNotAllowed => "Route::MethodNotAllowed",
            PlaneError::InvalidInput(_) => VALIDATION,
            PlaneError::DaemonUnauthorized => server::DAEMON_UNAUTHORIZED,
            PlaneError::EnrollmentInvalid => server::ENROLLMENT_INVALID,
            PlaneError::EnrollmentAlreadyCompleted => server::ENROLLMENT_ALREADY_COMPLETED,
            PlaneError::DaemonUnavailable => server::DAEMON_UNAVAILABLE,
            PlaneError::Timeout => "TeamCluster::DaemonTimeout",
            PlaneError::ConnectionLost => "TeamCluster::DaemonConnectionLost",
            PlaneError::DaemonBusy => "TeamCluster::DaemonBusy",
            PlaneError::DaemonRequestFailed { code, .. } => {
                code.as_deref().unwrap_or(DAEMON_REQUEST_FAILED)
            }
            PlaneError::DaemonProtocol(_) => "TeamCluster::DaemonProtocolError",
            PlaneError::StreamFailed(_) => "TeamCluster::DaemonStreamFailed",
            PlaneError::BufferFull { .. } => "TeamCluster::ClientTooSlow",
            PlaneError::PayloadTooLarge(_) => "Request::PayloadTooLarge",
            PlaneError::Conflict { code, .. } | PlaneError::BadRequest { code, .. } => code,
            PlaneError::Bind { .. }
            | PlaneError::DataFile { .. }
            | PlaneError::CorruptDataFile { .. }
            | PlaneError::Internal(_) => "Server::Internal",
        }
    }

    /// A failed daemon reply as an error.
    pub(crate) fn from_daemon(f: volt_protocol::envelope::ResponseFailure) -> Self {
        PlaneError::DaemonRequestFailed {
            status: f.status,
            code: f.code.filter(|c| !c.trim().is_empty()),
            message: f.message,
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        PlaneError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        PlaneError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The reference server's error envelope for this error.
    pub fn to_envelope(&self) -> serde_json::Value {
        serde_json::json!({
            "status": "error",
            "code": self.code(),
            "message": self.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_match_the_reference() {
        assert_eq!(PlaneError::NotFound.http_status(), 404);
        assert_eq!(PlaneError::NotFound.code(), "TeamCluster::NotFound");
        assert_eq!(PlaneError::EnrollmentAlreadyCompleted.http_status(), 409);
        assert_eq!(PlaneError::EnrollmentInvalid.http_status(), 401);
        assert_eq!(PlaneError::DaemonUnavailable.http_status(), 409);
        assert_eq!(
            PlaneError::DaemonUnavailable.code(),
            "TeamCluster::DaemonUnavailable"
        );
        assert_eq!(PlaneError::Timeout.http_status(), 504);
        assert_eq!(
            PlaneError::InvalidInput("x".into()).code(),
            "Validation::InvalidInput"
        );
        let failed = PlaneError::from_daemon(volt_protocol::envelope::ResponseFailure {
            status: 404,
            code: None,
            message: "Object not found".into(),
        });
        assert_eq!(failed.http_status(), 404);
        assert_eq!(failed.code(), "TeamCluster::DaemonRequestFailed");
        let coded = PlaneError::DaemonRequestFailed {
            status: 200,
            code: Some("Explorer::BadTarget".into()),
            message: "x".into(),
        };
        assert_eq!(coded.http_status(), 502);
        assert_eq!(coded.code(), "Explorer::BadTarget");
        let env = PlaneError::DaemonUnauthorized.to_envelope();
        assert_eq!(env["status"], "error");
        assert_eq!(env["code"], "TeamCluster::DaemonUnauthorized");
        assert_eq!(env["message"], "Invalid daemon credentials");
    }
}
