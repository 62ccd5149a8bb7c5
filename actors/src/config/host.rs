//! The `[provision]` and `[update]` sections: where the managed services'
//! servers come from (the `preparing-environment` phase, `provision/`) and
//! where new releases of voltd come from (the signed self-update,
//! `update/`). Both are read by the daemon and by `voltd provision` /
//! `voltd update-guard`, so a host behaves the same by hand and unattended.

use super::values::{AbsPath, CloudUrl, non_blank, secs};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Where install.sh puts releases (`releases/<v>/`, `current`, `previous`).
pub const DEFAULT_UPDATE_INSTALL_DIR: &str = "/opt/voltd";
/// Where install.sh pins the release key: root-owned, so the daemon (and
/// anything that takes it over) can read it but never replace it.
pub const DEFAULT_RELEASE_KEY_FILE: &str = "/etc/voltd/release-key.pub";
/// How long a release on trial has to register with the server before it
/// is rolled back. Below the reference server's update timeout
/// (`TEAM_CLUSTER_UPDATE_TIMEOUT_MS`, 120 s), so the restored version's
/// `update-failed` is what the server hears first.
pub const DEFAULT_REGISTER_DEADLINE: Duration = Duration::from_secs(90);
/// The path below the cloud URL that is the default release channel.
pub const DEFAULT_CHANNEL_PATH: &str = "/downloads";
/// The directory under the install root that holds provisioned servers.
pub const DEPS_DIR_NAME: &str = "deps";

/// How far the install manifest's catalogue is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestCatalogue {
    /// Only its `mirror` applies: the server may say where to download
    /// from, never which binaries voltd runs (checksums stay voltd's).
    #[default]
    MirrorOnly,
    /// Its mirror and its artifacts.
    Full,
    /// Nothing of it.
    Ignore,
}

/// `[provision]`: the servers of the managed services.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSection {
    /// Where servers are installed; `None` = `<install root>/deps`
    /// ([`ProvisionSection::deps_dir`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps_dir: Option<AbsPath>,
    /// A catalogue file overlaying the built-in one (README "Provisioning").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<AbsPath>,
    /// Base URL every artifact is fetched from instead of its publisher
    /// (https, or http on loopback; checked when the catalogue is built).
    #[serde(
        default,
        deserialize_with = "non_blank",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror: Option<String>,
    pub manifest_catalogue: ManifestCatalogue,
}

impl ProvisionSection {
    /// The effective deps directory for `install_root`.
    pub fn deps_dir(&self, install_root: &std::path::Path) -> PathBuf {
        match &self.deps_dir {
            Some(d) => d.to_path_buf(),
            None => install_root.join(DEPS_DIR_NAME),
        }
    }
}

/// `[update]`: the signed self-update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSection {
    /// Base URL of the release channel; `None` = `<cloud_url>/downloads`
    /// ([`UpdateSection::channel`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<CloudUrl>,
    /// `releases/`, `current`, `previous`.
    pub install_dir: AbsPath,
    /// The pinned release key (base64 of the raw ed25519 key).
    pub key_file: AbsPath,
    /// A release on trial that has not registered after this is rolled back.
    #[serde(rename = "register_deadline_secs", with = "secs")]
    pub register_deadline: Duration,
}

impl Default for UpdateSection {
    fn default() -> Self {
        let abs = |p: &str| match AbsPath::new(p) {
            Ok(p) => p,
            Err(e) => unreachable!("the default {p} is absolute: {e}"),
        };
        UpdateSection {
            channel: None,
            install_dir: abs(DEFAULT_UPDATE_INSTALL_DIR),
            key_file: abs(DEFAULT_RELEASE_KEY_FILE),
            register_deadline: DEFAULT_REGISTER_DEADLINE,
        }
    }
}

impl UpdateSection {
    /// The effective release channel for `cloud_url`, no trailing slash.
    pub fn channel(&self, cloud_url: &CloudUrl) -> String {
        match &self.channel {
            Some(c) => c.as_str().to_owned(),
            None => cloud_url.join(DEFAULT_CHANNEL_PATH),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_defaults_follow_the_other_keys() {
        let p = ProvisionSection::default();
        assert_eq!(
            p.deps_dir(std::path::Path::new("/opt/volt/team-clusters")),
            PathBuf::from("/opt/volt/team-clusters/deps")
        );
        let u = UpdateSection::default();
        let cloud = CloudUrl::parse("https://cloud.example/").unwrap();
        assert_eq!(u.channel(&cloud), "https://cloud.example/downloads");
        let own = UpdateSection {
            channel: Some(CloudUrl::parse("https://mirror.lab/voltd/").unwrap()),
            ..u
        };
        assert_eq!(own.channel(&cloud), "https://mirror.lab/voltd");
    }
}
