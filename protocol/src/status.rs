//! Cluster status wire ids and the server's transition table.
//!
//! The table is `TEAM_CLUSTER_ALLOWED_TRANSITIONS` of the reference server:
//! a transition not listed is ignored by the server (the row is left as it
//! was). Same → same is always allowed.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// The 11 statuses, spelled exactly as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterStatus {
    WaitingForConnection,
    HealthcheckReceived,
    PreparingEnvironment,
    DependencyInstallationFailed,
    OperatingSystemNotSupported,
    Connected,
    Disconnected,
    Deleting,
    DeleteFailed,
    Updating,
    UpdateFailed,
}

use ClusterStatus::*;

impl ClusterStatus {
    /// Every status, in the reference's declaration order.
    pub const ALL: [ClusterStatus; 11] = [
        WaitingForConnection,
        HealthcheckReceived,
        PreparingEnvironment,
        DependencyInstallationFailed,
        OperatingSystemNotSupported,
        Connected,
        Disconnected,
        Deleting,
        DeleteFailed,
        Updating,
        UpdateFailed,
    ];

    /// The wire id.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingForConnection => "waiting-for-connection",
            HealthcheckReceived => "healthcheck-received",
            PreparingEnvironment => "preparing-environment",
            DependencyInstallationFailed => "dependency-installation-failed",
            OperatingSystemNotSupported => "operating-system-not-supported",
            Connected => "connected",
            Disconnected => "disconnected",
            Deleting => "deleting",
            DeleteFailed => "delete-failed",
            Updating => "updating",
            UpdateFailed => "update-failed",
        }
    }

    /// Statuses the server may move to from `self` (besides `self`).
    pub fn allowed_next(self) -> &'static [ClusterStatus] {
        match self {
            WaitingForConnection => &[HealthcheckReceived, Connected, Deleting],
            HealthcheckReceived => &[
                PreparingEnvironment,
                Connected,
                DependencyInstallationFailed,
                OperatingSystemNotSupported,
                Deleting,
            ],
            PreparingEnvironment => &[
                Connected,
                DependencyInstallationFailed,
                OperatingSystemNotSupported,
                Deleting,
            ],
            DependencyInstallationFailed => &[HealthcheckReceived, PreparingEnvironment, Deleting],
            OperatingSystemNotSupported => &[HealthcheckReceived, PreparingEnvironment, Deleting],
            Connected => &[Disconnected, Updating, Deleting],
            Disconnected => &[
                HealthcheckReceived,
                PreparingEnvironment,
                DependencyInstallationFailed,
                OperatingSystemNotSupported,
                Connected,
                Updating,
                Deleting,
            ],
            Deleting => &[DeleteFailed],
            DeleteFailed => &[Deleting],
            Updating => &[Connected, UpdateFailed, Deleting],
            UpdateFailed => &[Updating, Connected, Deleting],
        }
    }

    /// Whether the server accepts `self → to`.
    pub fn can_transition(self, to: ClusterStatus) -> bool {
        self == to || self.allowed_next().contains(&to)
    }

    /// Statuses a daemon may report through `runtime.lifecycle` (the server's
    /// `publicStatusSchema`); `connected` comes only from registration and
    /// heartbeats, `waiting-for-connection` only from the control plane.
    pub fn is_daemon_reportable(self) -> bool {
        matches!(
            self,
            PreparingEnvironment
                | DependencyInstallationFailed
                | OperatingSystemNotSupported
                | Deleting
                | DeleteFailed
                | Disconnected
        )
    }

    /// Statuses a heartbeat or a registration does not turn into `connected`.
    pub fn is_heartbeat_locked(self) -> bool {
        matches!(self, Deleting | DeleteFailed | Updating | UpdateFailed)
    }

    /// The status a heartbeat (or registration) leaves the server in.
    pub fn after_heartbeat(self) -> ClusterStatus {
        if self.is_heartbeat_locked() {
            self
        } else if self.can_transition(Connected) {
            Connected
        } else {
            // Illegal transitions are ignored by the server.
            self
        }
    }

    /// The shortest sequence of daemon-reportable statuses that moves the
    /// server from `from` to `to` with legal transitions only (empty when
    /// `from == to`), or `None` when no such sequence exists.
    ///
    /// Example: a registered daemon (`connected`) whose services are still
    /// starting reaches `preparing-environment` via `disconnected`.
    pub fn report_path(from: ClusterStatus, to: ClusterStatus) -> Option<Vec<ClusterStatus>> {
        if from == to {
            return Some(Vec::new());
        }
        if !to.is_daemon_reportable() {
            return None;
        }
        let mut prev: [Option<ClusterStatus>; 11] = [None; 11];
        let mut seen = [false; 11];
        let idx = |s: ClusterStatus| s as usize;
        let mut queue = VecDeque::from([from]);
        seen[idx(from)] = true;
        while let Some(cur) = queue.pop_front() {
            for &next in cur.allowed_next() {
                if !next.is_daemon_reportable() || seen[idx(next)] {
                    continue;
                }
                seen[idx(next)] = true;
                prev[idx(next)] = Some(cur);
                if next == to {
                    let mut path = vec![to];
                    let mut at = to;
                    while let Some(p) = prev[idx(at)] {
                        if p == from {
                            break;
                        }
                        path.push(p);
                        at = p;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cluster status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for ClusterStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_are_exact() {
        let ids: Vec<&str> = ClusterStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            ids,
            [
                "waiting-for-connection",
                "healthcheck-received",
                "preparing-environment",
                "dependency-installation-failed",
                "operating-system-not-supported",
                "connected",
                "disconnected",
                "deleting",
                "delete-failed",
                "updating",
                "update-failed"
            ]
        );
    }

    #[test]
    fn serde_uses_wire_ids_and_round_trips_every_status() {
        for s in ClusterStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ClusterStatus>(&json).unwrap(), s);
            assert_eq!(s.as_str().parse::<ClusterStatus>().unwrap(), s);
        }
    }

    #[test]
    fn user_doc_short_names_are_not_wire_ids() {
        assert!(
            "dependency-install-failed"
                .parse::<ClusterStatus>()
                .is_err()
        );
        assert!("os-not-supported".parse::<ClusterStatus>().is_err());
    }

    #[test]
    fn transition_table_matches_the_reference() {
        let table: &[(ClusterStatus, &[ClusterStatus])] = &[
            (
                WaitingForConnection,
                &[HealthcheckReceived, Connected, Deleting],
            ),
            (
                HealthcheckReceived,
                &[
                    PreparingEnvironment,
                    Connected,
                    DependencyInstallationFailed,
                    OperatingSystemNotSupported,
                    Deleting,
                ],
            ),
            (
                PreparingEnvironment,
                &[
                    Connected,
                    DependencyInstallationFailed,
                    OperatingSystemNotSupported,
                    Deleting,
                ],
            ),
            (
                DependencyInstallationFailed,
                &[HealthcheckReceived, PreparingEnvironment, Deleting],
            ),
            (
                OperatingSystemNotSupported,
                &[HealthcheckReceived, PreparingEnvironment, Deleting],
            ),
            (Connected, &[Disconnected, Updating, Deleting]),
            (
                Disconnected,
                &[
                    HealthcheckReceived,
                    PreparingEnvironment,
                    DependencyInstallationFailed,
                    OperatingSystemNotSupported,
                    Connected,
                    Updating,
                    Deleting,
                ],
            ),
            (Deleting, &[DeleteFailed]),
            (DeleteFailed, &[Deleting]),
            (Updating, &[Connected, UpdateFailed, Deleting]),
            (UpdateFailed, &[Updating, Connected, Deleting]),
        ];
        for &(from, allowed) in table {
            for to in ClusterStatus::ALL {
                let expected = from == to || allowed.contains(&to);
                assert_eq!(from.can_transition(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn reportable_statuses_are_the_public_schema() {
        let reportable: Vec<_> = ClusterStatus::ALL
            .into_iter()
            .filter(|s| s.is_daemon_reportable())
            .collect();
        assert_eq!(
            reportable,
            [
                PreparingEnvironment,
                DependencyInstallationFailed,
                OperatingSystemNotSupported,
                Disconnected,
                Deleting,
                DeleteFailed
            ]
        );
    }

    #[test]
    fn heartbeat_connects_unless_locked_or_illegal() {
        assert_eq!(HealthcheckReceived.after_heartbeat(), Connected);
        assert_eq!(PreparingEnvironment.after_heartbeat(), Connected);
        assert_eq!(Disconnected.after_heartbeat(), Connected);
        assert_eq!(Updating.after_heartbeat(), Updating);
        assert_eq!(DeleteFailed.after_heartbeat(), DeleteFailed);
        // dependency-installation-failed → connected is not in the table.
        assert_eq!(
            DependencyInstallationFailed.after_heartbeat(),
            DependencyInstallationFailed
        );
    }

    #[test]
    fn report_path_is_direct_when_legal() {
        assert_eq!(
            ClusterStatus::report_path(HealthcheckReceived, PreparingEnvironment),
            Some(vec![PreparingEnvironment])
        );
        assert_eq!(
            ClusterStatus::report_path(Connected, Connected),
            Some(vec![])
        );
    }

    #[test]
    fn report_path_goes_through_disconnected_from_connected() {
        assert_eq!(
            ClusterStatus::report_path(Connected, PreparingEnvironment),
            Some(vec![Disconnected, PreparingEnvironment])
        );
        assert_eq!(
            ClusterStatus::report_path(Connected, DependencyInstallationFailed),
            Some(vec![Disconnected, DependencyInstallationFailed])
        );
    }

    #[test]
    fn report_path_refuses_server_owned_targets_and_dead_ends() {
        assert_eq!(ClusterStatus::report_path(Disconnected, Connected), None);
        assert_eq!(
            ClusterStatus::report_path(Deleting, PreparingEnvironment),
            None
        );
        assert_eq!(
            ClusterStatus::report_path(Updating, DeleteFailed),
            Some(vec![Deleting, DeleteFailed])
        );
    }

    #[test]
    fn every_report_path_is_legal_step_by_step() {
        for from in ClusterStatus::ALL {
            for to in ClusterStatus::ALL {
                if let Some(path) = ClusterStatus::report_path(from, to) {
                    let mut at = from;
                    for step in path {
                        assert!(at.can_transition(step), "{at} -> {step}");
                        assert!(step.is_daemon_reportable());
                        at = step;
                    }
                    assert_eq!(at, to);
                }
            }
        }
    }
}
