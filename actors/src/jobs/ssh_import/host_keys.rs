//! Host key checking for imports — never skipped:
//!
//! * with a `knownHosts` value in the job, the server's key must match one
//!   of its entries: OpenSSH `known_hosts` lines (`host[,host…] type base64`,
//!   `[host]:port` for other ports, `*` for any host, `@revoked` honoured),
//!   bare `type base64` lines, or `SHA256:…` fingerprints. Hashed host
//!   names (`|1|…`) and `@cert-authority` lines are not supported and are
//!   skipped; a value with no usable entry is refused.
//! * without one, trust-on-first-use: the first key seen for `host:port`
//!   is recorded in a file voltd owns ([`TofuStore`], written atomically,
//!   mode 0600) and every later connection must present the same key.

use crate::host::fsutil::{SECRET_FILE_MODE, write_atomic};
use russh::keys::{HashAlg, PublicKey};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;

/// How the server's key was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// It matched the job's `knownHosts`.
    KnownHosts,
    /// First contact: recorded.
    TofuRecorded,
    /// It matched the key recorded earlier.
    TofuMatched,
}

impl Trust {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trust::KnownHosts => "known-hosts",
            Trust::TofuRecorded => "trust-on-first-use (recorded)",
            Trust::TofuMatched => "trust-on-first-use (matched)",
        }
    }
}

/// Why a key was refused (messages name fingerprints, never secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    #[error("host key of {host} ({got}) matches no entry of the job's knownHosts")]
    NotKnown { host: String, got: String },
    #[error("host key of {host} ({got}) is revoked by the job's knownHosts")]
    Revoked { host: String, got: String },
    #[error(
        "host key of {host} changed: recorded {recorded}, presented {got} — refusing (possible man-in-the-middle)"
    )]
    Changed {
        host: String,
        recorded: String,
        got: String,
    },
    #[error("knownHosts has no usable entry")]
    NoUsableEntry,
    #[error("host key store: {0}")]
    Store(String),
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The name a host has in `known_hosts` for `port`.
pub fn host_id(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Key {
        hosts: Option<Vec<String>>,
        key: Box<PublicKey>,
        revoked: bool,
    },
    Fingerprint(String),
}

/// A parsed `knownHosts` value.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    pub fn parse(text: &str) -> Result<KnownHosts, HostKeyError> {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("SHA256:") {
                entries.push(Entry::Fingerprint(
                    line.split_whitespace().next().unwrap_or(line).to_owned(),
                ));
                continue;
            }
            let mut fields: Vec<&str> = line.split_whitespace().collect();
            let mut revoked = false;
            if let Some(first) = fields.first() {
                if *first == "@revoked" {
                    revoked = true;
                    fields.remove(0);
                } else if first.starts_with('@') {
                    continue;
                }
            }
            // `type base64 [comment]` or `hosts type base64 [comment]`.
            let (hosts, rest) = match fields.as_slice() {
                [t, b, ..] if PublicKey::from_openssh(&format!("{t} {b}")).is_ok() => {
                    (None, &fields[..])
                }
                [h, ..] if fields.len() >= 3 => (Some(*h), &fields[1..]),
                _ => continue,
            };
            if hosts.is_some_and(|h| h.starts_with('|')) {
                continue;
            }
            let Ok(key) = PublicKey::from_openssh(&format!("{} {}", rest[0], rest[1])) else {
                continue;
            };
            entries.push(Entry::Key {
                hosts: hosts.map(|h| h.split(',').map(str::to_owned).collect()),
                key: Box::new(key),
                revoked,
            });
        }
        if entries.is_empty() {
            return Err(HostKeyError::NoUsableEntry);
        }
        Ok(KnownHosts { entries })
    }

    /// Accepts `key` for `host:port` or says why not.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Result<Trust, HostKeyError> {
        let id = host_id(host, port);
        let fp = fingerprint(key);
        let host_matches = |hosts: &Option<Vec<String>>| match hosts {
            None => true,
            Some(hs) => hs
                .iter()
                .any(|h| h == "*" || *h == id || (port == 22 && h == host)),
        };
        let mut accepted = false;
        for e in &self.entries {
            match e {
                Entry::Key {
                    hosts,
                    key: k,
                    revoked,
                } if k.key_data() == key.key_data() => {
                    if *revoked {
                        return Err(HostKeyError::Revoked { host: id, got: fp });
                    }
                    if host_matches(hosts) {
                        accepted = true;
                    }
                }
                Entry::Fingerprint(f) if *f == fp => accepted = true,
                _ => {}
            }
        }
        if accepted {
            Ok(Trust::KnownHosts)
        } else {
            Err(HostKeyError::NotKnown { host: id, got: fp })
        }
    }
}

/// Keys recorded on first use, one per `host:port`, in a JSON file.
#[derive(Clone)]
pub struct TofuStore {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl TofuStore {
    pub fn new(path: PathBuf) -> Self {
        TofuStore {
            path,
            lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    async fn load(&self) -> Result<BTreeMap<String, String>, HostKeyError> {
        let path = self.path.clone();
        let text = tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        })
        .await
        .map_err(|e| HostKeyError::Store(e.to_string()))?
        .map_err(HostKeyError::Store)?;
        match text {
            None => Ok(BTreeMap::new()),
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| HostKeyError::Store(format!("{}: {e}", self.path.display()))),
        }
    }

    /// The key recorded for `host:port`, if any.
    pub async fn recorded(&self, host: &str, port: u16) -> Result<Option<PublicKey>, HostKeyError> {
        let map = self.load().await?;
        Ok(map
            .get(&host_id(host, port))
            .and_then(|k| PublicKey::from_openssh(k).ok()))
    }

    /// Checks `key` against the record for `host:port`, recording it on
    /// first use.
    pub async fn check(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<Trust, HostKeyError> {
        let _guard = self.lock.lock().await;
        let mut map = self.load().await?;
        let id = host_id(host, port);
        if let Some(recorded) = map.get(&id) {
            let recorded_key = PublicKey::from_openssh(recorded)
                .map_err(|e| HostKeyError::Store(format!("recorded key of {id}: {e}")))?;
            return if recorded_key.key_data() == key.key_data() {
                Ok(Trust::TofuMatched)
            } else {
                Err(HostKeyError::Changed {
                    host: id,
                    recorded: fingerprint(&recorded_key),
                    got: fingerprint(key),
                })
            };
        }
        let line = key
            .to_openssh()
            .map_err(|e| HostKeyError::Store(e.to_string()))?;
        map.insert(id, line);
        let bytes =
            serde_json::to_vec_pretty(&map).map_err(|e| HostKeyError::Store(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes, SECRET_FILE_MODE))
            .await
            .map_err(|e| HostKeyError::Store(e.to_string()))?
            .map_err(|e| HostKeyError::Store(e.to_string()))?;
        Ok(Trust::TofuRecorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlsMv7pKVKcZlnEussiG+eXGWN8BoRW6UMs3j9g2X5p";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILycQo4k02aAXHTL4l8KkidlEtCweq6z7TnigIezw7LO";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn known_hosts_lines_match_by_host_and_port() {
        let kh =
            KnownHosts::parse(&format!("# c\nlab,10.0.0.1 {ED} c\n[lab]:2222 {ED2}\n")).unwrap();
        assert_eq!(kh.check("lab", 22, &key(ED)), Ok(Trust::KnownHosts));
        assert_eq!(kh.check("10.0.0.1", 22, &key(ED)), Ok(Trust::KnownHosts));
        assert!(matches!(
            kh.check("other", 22, &key(ED)),
            Err(HostKeyError::NotKnown { .. })
        ));
        assert_eq!(kh.check("lab", 2222, &key(ED2)), Ok(Trust::KnownHosts));
        assert!(kh.check("lab", 2222, &key(ED)).is_err());
    }

    #[test]
    fn bare_keys_fingerprints_and_revocations() {
        assert!(
            KnownHosts::parse(ED)
                .unwrap()
                .check("any", 9, &key(ED))
                .is_ok()
        );
        let fp = fingerprint(&key(ED2));
        assert!(fp.starts_with("SHA256:"));
        assert!(
            KnownHosts::parse(&fp)
                .unwrap()
                .check("h", 22, &key(ED2))
                .is_ok()
        );
        let kh = KnownHosts::parse(&format!("* {ED}\n@revoked * {ED}")).unwrap();
        assert!(matches!(
            kh.check("h", 22, &key(ED)),
            Err(HostKeyError::Revoked { .. })
        ));
    }

    #[test]
    fn nothing_usable_is_refused() {
        assert_eq!(
            KnownHosts::parse("").unwrap_err(),
            HostKeyError::NoUsableEntry
        );
        assert!(KnownHosts::parse("|1|abc|def ssh-ed25519 AAAA\ngarbage").is_err());
    }

    #[tokio::test]
    async fn tofu_records_then_insists() {
        let dir = tempfile::tempdir().unwrap();
        let store = TofuStore::new(dir.path().join("hosts.json"));
        assert_eq!(
            store.check("h", 2222, &key(ED)).await,
            Ok(Trust::TofuRecorded)
        );
        assert_eq!(
            store.check("h", 2222, &key(ED)).await,
            Ok(Trust::TofuMatched)
        );
        assert!(matches!(
            store.check("h", 2222, &key(ED2)).await,
            Err(HostKeyError::Changed { .. })
        ));
        // Per host: another port is another host.
        assert_eq!(
            store.check("h", 22, &key(ED2)).await,
            Ok(Trust::TofuRecorded)
        );
        let mode = std::fs::metadata(store.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        assert!(store.recorded("h", 2222).await.unwrap().is_some());
    }
}
