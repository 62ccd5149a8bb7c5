//! The `ssh_import` job payload, validated.
//!
//! The reference server resolves a stored SSH connection before it
//! dispatches; the protocol doc does not record the payload it sends, so
//! this shape is voltd's (flat, camelCase, with the reference's ids):
//!
//! ```json
//! { "jobId": "…", "teamId": "…", "trajectoryId": "…", "trajectoryName": "…",
//!   "host": "lab.example.org", "port": 22, "username": "alice",
//!   "password": "…"            // or
//!   "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----…", "passphrase": "…",
//!   "remotePath": "/data/run-7",  // a file or a directory (recursive)
//!   "knownHosts": "lab.example.org ssh-ed25519 AAAA…" }  // optional, else TOFU
//! ```
//!
//! Secrets (`password`, `privateKey`, `passphrase`) never reach `Debug`,
//! logs, records or error messages.

use serde::Deserialize;
use std::fmt;

/// Longest private key accepted (an RSA-16384 OpenSSH key is ~13 KiB).
pub const MAX_KEY_BYTES: usize = 32 * 1024;
/// Longest `knownHosts` value accepted.
pub const MAX_KNOWN_HOSTS_BYTES: usize = 64 * 1024;
/// Longest remote path accepted.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest id (teamId, trajectoryId) accepted; they become key segments.
pub const MAX_ID_BYTES: usize = 256;

#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Password(String),
    Key {
        pem: String,
        passphrase: Option<String>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Password(_) => f.write_str("Password(<redacted>)"),
            Auth::Key { .. } => f.write_str("Key(<redacted>)"),
        }
    }
}

/// A validated import request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub team_id: String,
    pub trajectory_id: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: Auth,
    pub remote_path: String,
    pub known_hosts: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    team_id: Option<String>,
    trajectory_id: Option<String>,
    host: Option<String>,
    port: Option<u64>,
    username: Option<String>,
    password: Option<String>,
    private_key: Option<String>,
    passphrase: Option<String>,
    remote_path: Option<String>,
    known_hosts: Option<String>,
}

fn required(v: Option<String>, name: &str) -> Result<String, String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("{name} is required"))
}

/// An id that is one safe object-key segment.
fn check_segment(v: &str, name: &str) -> Result<(), String> {
    if v.len() > MAX_ID_BYTES
        || v == "."
        || v == ".."
        || v.contains('/')
        || v.contains('\\')
        || v.chars().any(char::is_control)
    {
        return Err(format!(
            "{name} must be 1..{MAX_ID_BYTES} bytes without '/', '\\' or control characters"
        ));
    }
    Ok(())
}

impl ImportRequest {
    pub fn parse(payload: &serde_json::Value) -> Result<ImportRequest, String> {
        // Deserialise field by field so a type error never echoes a value.
        let raw: Raw = serde_json::from_value(payload.clone())
            .map_err(|_| "ssh_import payload has a field of the wrong type".to_string())?;
        let team_id = required(raw.team_id, "teamId")?;
        check_segment(&team_id, "teamId")?;
        let trajectory_id = required(raw.trajectory_id, "trajectoryId")?;
        check_segment(&trajectory_id, "trajectoryId")?;
        let host = required(raw.host, "host")?;
        if host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("host must be a host name or address".into());
        }
        let port = match raw.port {
            None => 22,
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or("port must be 1..65535")?,
        };
        let username = required(raw.username, "username")?;
        if username.len() > 256 || username.chars().any(char::is_control) {
            return Err("username is invalid".into());
        }
        let auth = match (raw.private_key, raw.password) {
            (Some(pem), _) if !pem.trim().is_empty() => {
                if pem.len() > MAX_KEY_BYTES {
                    return Err(format!("privateKey is larger than {MAX_KEY_BYTES} bytes"));
                }
                Auth::Key {
                    pem,
                    passphrase: raw.passphrase.filter(|p| !p.is_empty()),
                }
            }
            (_, Some(pw)) if !pw.is_empty() => Auth::Password(pw),
            _ => return Err("either privateKey or password is required".into()),
        };
        let remote_path = required(raw.remote_path, "remotePath")?;
        if remote_path.len() > MAX_PATH_BYTES || remote_path.contains('\0') {
            return Err(format!("remotePath must be 1..{MAX_PATH_BYTES} bytes"));
        }
        let known_hosts = raw.known_hosts.filter(|k| !k.trim().is_empty());
        if known_hosts
            .as_ref()
            .is_some_and(|k| k.len() > MAX_KNOWN_HOSTS_BYTES)
        {
            return Err(format!(
                "knownHosts is larger than {MAX_KNOWN_HOSTS_BYTES} bytes"
            ));
        }
        Ok(ImportRequest {
            team_id,
            trajectory_id,
            host,
            port,
            username,
            auth,
            remote_path,
            known_hosts,
        })
    }

    /// The object-key prefix of this import inside `volt-dumps`.
    pub fn key_prefix(&self) -> String {
        format!("{}/{}", self.team_id, self.trajectory_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({"teamId": "t1", "trajectoryId": "tr1", "host": "127.0.0.1", "username": "u",
               "password": "s3cret", "remotePath": "/data"})
    }

    #[test]
    fn parses_a_password_request_with_defaults() {
        let r = ImportRequest::parse(&base()).unwrap();
        assert_eq!(r.port, 22);
        assert_eq!(r.auth, Auth::Password("s3cret".into()));
        assert_eq!(r.key_prefix(), "t1/tr1");
        assert!(!format!("{r:?}").contains("s3cret"));
    }

    #[test]
    fn a_key_wins_over_a_password() {
        let mut p = base();
        p["privateKey"] = json!("-----BEGIN OPENSSH PRIVATE KEY-----");
        p["passphrase"] = json!("pp");
        let r = ImportRequest::parse(&p).unwrap();
        assert!(matches!(
            r.auth,
            Auth::Key {
                passphrase: Some(_),
                ..
            }
        ));
        assert!(!format!("{r:?}").contains("pp\""));
    }

    #[test]
    fn refuses_what_could_escape_or_is_missing() {
        for (k, v) in [
            ("teamId", json!("../x")),
            ("trajectoryId", json!("a/b")),
            ("port", json!(70000)),
            ("port", json!(0)),
            ("host", json!("a b")),
            ("remotePath", json!("")),
            ("password", json!("")),
        ] {
            let mut p = base();
            p[k] = v;
            assert!(ImportRequest::parse(&p).is_err(), "{k} accepted");
        }
        let mut p = base();
        p["password"] = json!(12345);
        let err = ImportRequest::parse(&p).unwrap_err();
        assert!(!err.contains("12345"));
    }
}
