//! Enrollment over HTTP: `POST /api/team-clusters/{id}/healthcheck` and
//! `POST /api/team-clusters/{id}/install-manifest`, with the server's
//! standard `{status, data}` / `{status:"error", code, message}` envelopes.

use crate::register::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path of the enrollment call for a cluster id.
pub fn healthcheck_path(team_cluster_id: &str) -> String {
    format!(
        "/api/team-clusters/{}/healthcheck",
        path_segment(team_cluster_id)
    )
}

/// Path of the install manifest call for a cluster id.
pub fn install_manifest_path(team_cluster_id: &str) -> String {
    format!(
        "/api/team-clusters/{}/install-manifest",
        path_segment(team_cluster_id)
    )
}

/// Percent-encodes everything but unreserved characters, so an id can never
/// change the path it is put in.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Body of the enrollment call (strict on the server: no other keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthcheckRequest {
    pub enrollment_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
}

/// Largest `installedVersion` the server accepts.
pub const MAX_INSTALLED_VERSION_LEN: usize = 64;

impl HealthcheckRequest {
    /// Server-side validation: token non-empty after trimming, version 1..64.
    pub fn validate(&self) -> Result<(), String> {
        if self.enrollment_token.is_empty() {
            return Err("enrollmentToken must be a non-empty string".into());
        }
        if let Some(v) = &self.installed_version {
            let v = v.trim();
            if v.is_empty() || v.len() > MAX_INSTALLED_VERSION_LEN {
                return Err("installedVersion must be 1..64 characters".into());
            }
        }
        Ok(())
    }
}

/// `data` of a successful enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthcheckData {
    pub team_cluster: serde_json::Value,
    pub daemon_password: Secret,
}

/// The server's success envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiSuccess<T> {
    pub status: String,
    pub data: T,
}

impl<T> ApiSuccess<T> {
    pub fn new(data: T) -> Self {
        ApiSuccess {
            status: "success".into(),
            data,
        }
    }
}

/// The server's error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApiError {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: "error".into(),
            code: Some(code.into()),
            message: Some(message.into()),
        }
    }

    /// `message`, else `code`, else a fallback — what installers print.
    pub fn describe(&self) -> String {
        self.message
            .clone()
            .or_else(|| self.code.clone())
            .unwrap_or_else(|| "no error message".into())
    }
}

/// The four host ports of a Gen B cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePorts {
    pub minio: u16,
    pub redis: u16,
    pub mongodb: u16,
    pub daemon: u16,
}

impl ServicePorts {
    /// Server-side validation: each 1..65535 and all distinct.
    pub fn validate(&self) -> Result<(), String> {
        let all = [self.minio, self.redis, self.mongodb, self.daemon];
        if all.contains(&0) {
            return Err("ports must be between 1 and 65535".into());
        }
        for (i, a) in all.iter().enumerate() {
            if all[i + 1..].contains(a) {
                return Err("ports must be distinct".into());
            }
        }
        Ok(())
    }
}

/// Body of the install manifest call (strict on the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallManifestRequest {
    pub daemon_password: Secret,
    pub install_root: String,
    pub ports: ServicePorts,
}

/// Longest `installRoot` the server accepts.
pub const MAX_INSTALL_ROOT_LEN: usize = 512;

impl InstallManifestRequest {
    pub fn validate(&self) -> Result<(), String> {
        if self.daemon_password.is_empty() {
            return Err("daemonPassword must be a non-empty string".into());
        }
        let len = self.install_root.len();
        if len == 0 || len > MAX_INSTALL_ROOT_LEN {
            return Err("installRoot must be 1..512 characters".into());
        }
        self.ports.validate()
    }
}

/// One file of the manifest (written as `contents + "\n"` with `mode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub contents: String,
    /// Octal permission bits, e.g. `0600` arrives as the number 384 or the
    /// string `"0600"` depending on the server revision.
    pub mode: FileMode,
}

/// A file mode as either a number or an octal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileMode {
    Number(u32),
    Text(String),
}

impl FileMode {
    /// The permission bits; invalid text falls back to 0600 (the safe choice
    /// for a file that may hold secrets).
    pub fn bits(&self) -> u32 {
        match self {
            FileMode::Number(n) => *n & 0o7777,
            FileMode::Text(s) => {
                u32::from_str_radix(s.trim_start_matches("0o"), 8).map_or(0o600, |n| n & 0o7777)
            }
        }
    }
}

/// `data.manifest` of the install manifest call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallManifest {
    pub manifest_version: String,
    pub compose_project_name: String,
    pub files: Vec<ManifestFile>,
    #[serde(default)]
    pub images: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_context_archive_base64: Option<String>,
}

/// `data` of the install manifest call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallManifestData {
    pub manifest: InstallManifest,
}

impl InstallManifest {
    /// The file at `path` (e.g. `redis.env`), if the manifest has one.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The `KEY=VALUE` pairs of an env file in the manifest.
    pub fn env(&self, path: &str) -> BTreeMap<String, String> {
        self.file(path)
            .map(|f| parse_env_file(&f.contents))
            .unwrap_or_default()
    }
}

/// `voltcluster` + the first 12 lower-cased alphanumerics of the id, or
/// `voltclustercluster` when the id has none (the reference's rule).
pub fn compose_project_name(team_cluster_id: &str) -> String {
    let cleaned: String = team_cluster_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    if cleaned.is_empty() {
        "voltclustercluster".into()
    } else {
        format!("voltcluster{cleaned}")
    }
}

/// Parses a dotenv-style file: `KEY=VALUE` lines, `#` comments, optional
/// `export `, and single or double quotes around the value.
pub fn parse_env_file(contents: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in contents.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        out.insert(key.to_owned(), value.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_reference_paths_and_escape_ids() {
        assert_eq!(
            healthcheck_path("abc"),
            "/api/team-clusters/abc/healthcheck"
        );
        assert_eq!(
            install_manifest_path("abc"),
            "/api/team-clusters/abc/install-manifest"
        );
        assert_eq!(
            healthcheck_path("a/../b"),
            "/api/team-clusters/a%2F..%2Fb/healthcheck"
        );
    }

    #[test]
    fn healthcheck_request_shape_and_strictness() {
        let r = HealthcheckRequest {
            enrollment_token: Secret::new("tok"),
            installed_version: Some("1.0.0".into()),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"enrollmentToken":"tok","installedVersion":"1.0.0"}"#
        );
        assert!(
            serde_json::from_str::<HealthcheckRequest>(r#"{"enrollmentToken":"t","x":1}"#).is_err()
        );
        assert!(r.validate().is_ok());
        let blank = HealthcheckRequest {
            enrollment_token: Secret::new(" "),
            installed_version: None,
        };
        assert!(blank.validate().is_err());
        let long = HealthcheckRequest {
            enrollment_token: Secret::new("t"),
            installed_version: Some("x".repeat(65)),
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn healthcheck_response_parses() {
        let body =
            r#"{"status":"success","data":{"teamCluster":{"_id":"c"},"daemonPassword":"pw"}}"#;
        let r: ApiSuccess<HealthcheckData> = serde_json::from_str(body).unwrap();
        assert_eq!(r.data.daemon_password.expose(), "pw");
        assert_eq!(r.data.team_cluster["_id"], "c");
    }

    #[test]
    fn api_error_describe_prefers_message() {
        let e: ApiError =
            serde_json::from_str(r#"{"status":"error","code":"TeamCluster::NotFound"}"#).unwrap();
        assert_eq!(e.describe(), "TeamCluster::NotFound");
        let e = ApiError::new("X", "boom");
        assert_eq!(e.describe(), "boom");
        assert_eq!(ApiError::default().describe(), "no error message");
    }

    #[test]
    fn ports_validation() {
        let ok = ServicePorts {
            minio: 1,
            redis: 2,
            mongodb: 3,
            daemon: 4,
        };
        assert!(ok.validate().is_ok());
        assert!(ServicePorts { minio: 0, ..ok }.validate().is_err());
        assert!(ServicePorts { redis: 1, ..ok }.validate().is_err());
    }

    #[test]
    fn install_manifest_request_validation() {
        let ports = ServicePorts {
            minio: 1,
            redis: 2,
            mongodb: 3,
            daemon: 4,
        };
        let mut r = InstallManifestRequest {
            daemon_password: Secret::new("pw"),
            install_root: "/opt/volt".into(),
            ports,
        };
        assert!(r.validate().is_ok());
        r.install_root = String::new();
        assert!(r.validate().is_err());
        r.install_root = "x".repeat(513);
        assert!(r.validate().is_err());
    }

    #[test]
    fn file_modes_parse_from_numbers_and_octal_text() {
        assert_eq!(FileMode::Number(0o600).bits(), 0o600);
        assert_eq!(FileMode::Text("0644".into()).bits(), 0o644);
        assert_eq!(FileMode::Text("0o600".into()).bits(), 0o600);
        assert_eq!(FileMode::Text("rw".into()).bits(), 0o600);
    }

    #[test]
    fn compose_project_name_rule() {
        assert_eq!(
            compose_project_name("65A1-b2c3_d4e5f6g7h8"),
            "voltcluster65a1b2c3d4e5"
        );
        assert_eq!(compose_project_name("---"), "voltclustercluster");
    }

    #[test]
    fn env_files_parse() {
        let env = parse_env_file(
            "# comment\nA=1\nexport B = two \nC=\"quoted = x\"\nD='single'\nnoequals\n=novalue\nE=\n",
        );
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two");
        assert_eq!(env["C"], "quoted = x");
        assert_eq!(env["D"], "single");
        assert_eq!(env["E"], "");
        assert_eq!(env.len(), 5);
    }

    #[test]
    fn manifest_env_lookup() {
        let m = InstallManifest {
            manifest_version: "1.0.0".into(),
            compose_project_name: "p".into(),
            files: vec![ManifestFile {
                path: "redis.env".into(),
                contents: "REDIS_USERNAME=u\nREDIS_PASSWORD=p".into(),
                mode: FileMode::Number(0o600),
            }],
            images: serde_json::Value::Null,
            build_context_archive_base64: None,
        };
        assert_eq!(m.env("redis.env")["REDIS_USERNAME"], "u");
        assert!(m.env("missing.env").is_empty());
    }
}
