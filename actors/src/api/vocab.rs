//! The typed vocabulary of events that drive behaviour. The status
//! machine, the heartbeat and `voltd status` match on these, so a typo in
//! an emitter is a compile error, not a silently wrong cluster status.

use serde::Serialize;
use std::fmt;
use volt_protocol::ClusterStatus;

/// One of the three managed services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Redis,
    Mongo,
    Minio,
}

impl ServiceKind {
    /// Every service, in start order (the supervisor stops in reverse).
    pub const ALL: [ServiceKind; 3] = [ServiceKind::Redis, ServiceKind::Mongo, ServiceKind::Minio];

    /// The name in config keys, events, status and commands.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Redis => "redis",
            ServiceKind::Mongo => "mongo",
            ServiceKind::Minio => "minio",
        }
    }

    /// The port the service listens on when nothing else says.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::Redis => 6379,
            ServiceKind::Mongo => 27017,
            ServiceKind::Minio => 9000,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A service's state (the `state` of `Event::ServiceState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Being started (or restarted, or not answering yet).
    Starting,
    /// Answering probes and bootstrapped.
    Healthy,
    /// Was healthy; recent probes failed.
    Degraded,
    /// Cannot run: binary missing, restart intensity exceeded, … Retried
    /// at a slow rate.
    Failed,
    /// Stopped by voltd (shutdown, uninstall).
    Stopped,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Healthy => "healthy",
            ServiceState::Degraded => "degraded",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }

    /// Whether the service can be used (clients are handed out).
    pub fn is_usable(self) -> bool {
        matches!(self, ServiceState::Healthy | ServiceState::Degraded)
    }
}

/// A lifecycle action the server asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeAction {
    Uninstall,
    Update,
    Restart,
}

impl RuntimeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeAction::Uninstall => "uninstall",
            RuntimeAction::Update => "update",
            RuntimeAction::Restart => "restart",
        }
    }
}

impl fmt::Display for RuntimeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a [`RuntimeAction`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionStage {
    Started,
    Completed,
    Failed,
}

impl ActionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStage::Started => "started",
            ActionStage::Completed => "completed",
            ActionStage::Failed => "failed",
        }
    }
}

impl fmt::Display for ActionStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the cluster credentials came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialOrigin {
    /// `credentials.json` from an earlier enrollment.
    Stored,
    /// Enrolled just now with the one-time token.
    Enrolled,
    /// `daemon_password` from the configuration.
    Config,
}

impl CredentialOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialOrigin::Stored => "stored",
            CredentialOrigin::Enrolled => "enrolled",
            CredentialOrigin::Config => "config",
        }
    }
}

impl fmt::Display for CredentialOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which output stream of a managed server a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for OutputStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A supervised child as `voltd status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildState {
    Running,
    Restarting,
    Stopped,
    Failed,
}

/// Whether heartbeats may flow while the daemon is in `status`: not while
/// the environment is prepared (a heartbeat would make the server show
/// `connected`), nor while a managed service has failed or the host is
/// unsupported (reporting those walks the server through `disconnected`,
/// which a heartbeat in between would turn back into `connected`).
pub fn heartbeats_allowed(status: ClusterStatus) -> bool {
    !matches!(
        status,
        ClusterStatus::PreparingEnvironment
            | ClusterStatus::DependencyInstallationFailed
            | ClusterStatus::OperatingSystemNotSupported
    )
}

/// A cap on something the VOLT server controls the size of (the `limit`
/// of `Event::WireLimitExceeded`). Tripping one drops the connection; the
/// daemon reconnects with a fresh one and nothing keeps growing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireLimit {
    /// Bytes of the binary attachments of one socket.io packet.
    PendingAttachments,
    /// Messages the server sent before it confirmed the registration.
    EarlyMessages,
    /// Bytes of those messages.
    EarlyBytes,
}

impl WireLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            WireLimit::PendingAttachments => "pending-attachments",
            WireLimit::EarlyMessages => "early-messages",
            WireLimit::EarlyBytes => "early-bytes",
        }
    }
}

impl fmt::Display for WireLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
