//! The plan `voltd provision --dry-run` prints (and `--json` serializes):
//! per service, the binary in use, or what would be fetched from where to
//! where, or why neither is possible.

use super::{Found, PassedOver, Step};
use crate::api::vocab::ServiceKind;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// Everything provisioning would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub platform: super::Platform,
    pub deps_dir: PathBuf,
    pub mirror: Option<String>,
    pub items: Vec<PlanItem>,
}

/// One service's line of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanItem {
    pub service: ServiceKind,
    #[serde(flatten)]
    pub outcome: PlanOutcome,
}

/// What happens to one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PlanOutcome {
    /// A usable server exists; nothing is fetched.
    Installed {
        binary: PathBuf,
        version: Option<String>,
        found: Found,
    },
    /// It would be downloaded and installed.
    Fetch {
        version: String,
        url: String,
        sha256: String,
        size: Option<u64>,
        dest: PathBuf,
        binary: PathBuf,
        passed_over: Option<PassedOver>,
    },
    /// Neither: the status the service would report, and why.
    Failed {
        status: String,
        step: Step,
        reason: String,
    },
}

impl Plan {
    /// Whether every service has (or would get) a server.
    pub fn is_ok(&self) -> bool {
        self.items
            .iter()
            .all(|i| !matches!(i.outcome, PlanOutcome::Failed { .. }))
    }

    /// Whether anything would be downloaded.
    pub fn fetches(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i.outcome, PlanOutcome::Fetch { .. }))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "platform {}, installing under {}{}",
            self.platform,
            self.deps_dir.display(),
            self.mirror
                .as_ref()
                .map(|m| format!(", mirror {m}"))
                .unwrap_or_default()
        )?;
        for item in &self.items {
            write!(f, "{}: ", item.service)?;
            match &item.outcome {
                PlanOutcome::Installed {
                    binary,
                    version,
                    found,
                } => writeln!(
                    f,
                    "already installed: {} {} ({found})",
                    binary.display(),
                    version.as_deref().unwrap_or("(version not checked)")
                )?,
                PlanOutcome::Fetch {
                    version,
                    url,
                    sha256,
                    size,
                    dest,
                    binary,
                    passed_over,
                } => {
                    writeln!(f, "would fetch {version}")?;
                    writeln!(f, "    from    {url}")?;
                    writeln!(f, "    sha256  {sha256}")?;
                    if let Some(s) = size {
                        writeln!(f, "    size    {s} bytes")?;
                    }
                    writeln!(f, "    into    {}", dest.display())?;
                    writeln!(f, "    binary  {}", binary.display())?;
                    if let Some(p) = passed_over {
                        writeln!(f, "    instead of {} ({})", p.path.display(), p.reason)?;
                    }
                }
                PlanOutcome::Failed {
                    status,
                    step,
                    reason,
                } => writeln!(f, "cannot provision ({status}, {step}): {reason}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_prints_one_block_per_service() {
        let plan = Plan {
            platform: super::super::Platform::new("linux", "x86_64"),
            deps_dir: "/opt/volt/team-clusters/deps".into(),
            mirror: None,
            items: vec![
                PlanItem {
                    service: ServiceKind::Redis,
                    outcome: PlanOutcome::Installed {
                        binary: "/usr/bin/redis-server".into(),
                        version: Some("7.0.15".into()),
                        found: Found::Path,
                    },
                },
                PlanItem {
                    service: ServiceKind::Minio,
                    outcome: PlanOutcome::Fetch {
                        version: "RELEASE.2025-02-28T09-55-16Z".into(),
                        url: "https://dl.min.io/x".into(),
                        sha256: "ab".repeat(32),
                        size: None,
                        dest: "/opt/volt/team-clusters/deps/minio/RELEASE.2025-02-28T09-55-16Z"
                            .into(),
                        binary: "/opt/volt/team-clusters/deps/minio/RELEASE.2025-02-28T09-55-16Z/bin/minio".into(),
                        passed_over: None,
                    },
                },
            ],
        };
        let text = plan.to_string();
        assert!(
            text.contains("redis: already installed: /usr/bin/redis-server 7.0.15 (on PATH)"),
            "{text}"
        );
        assert!(
            text.contains("minio: would fetch RELEASE.2025-02-28T09-55-16Z"),
            "{text}"
        );
        assert!(text.contains("from    https://dl.min.io/x"), "{text}");
        assert!(plan.is_ok() && plan.fetches());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["items"][1]["action"], "fetch");
        assert_eq!(json["items"][0]["service"], "redis");
    }
}
