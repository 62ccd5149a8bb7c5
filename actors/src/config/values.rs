//! Validating value types of the configuration and the serde helpers that
//! read a key in the unit its name says (`*_ms`, `*_secs`).
//!
//! Each type checks its value once, when it is built (from the config
//! file, the environment, a flag, or by a test), so code that holds one
//! never checks again. Errors say what is wrong with the value; the loader
//! puts the key in front (`socket.reconnect_jitter: …`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;
use volt_protocol::register::Secret;

/// A validated `http(s)://` base URL without trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CloudUrl(reqwest::Url);

impl CloudUrl {
    /// Parses and validates: scheme http/https (or ws/wss), a host, no query
    /// or fragment. Trailing slashes are stripped, as the reference does.
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim().trim_end_matches('/');
        let mut url =
            reqwest::Url::parse(trimmed).map_err(|e| format!("invalid URL {trimmed:?}: {e}"))?;
        let scheme = match url.scheme() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            other => return Err(format!("URL {trimmed:?} must be http(s), not {other}")),
        };
        if url.scheme() != scheme {
            // Only the scheme changes; both are "special" schemes, so the
            // url crate accepts the swap.
            let _ = url.set_scheme(scheme);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("URL {trimmed:?} has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("URL {trimmed:?} must not have a query or fragment"));
        }
        Ok(CloudUrl(url))
    }

    /// The URL as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// `base + path` (path starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.as_str(), path)
    }

    /// The WebSocket URL of the socket.io endpoint.
    pub fn socket_io_url(&self) -> String {
        let base = self.as_str();
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        format!(
            "{ws}{}?{}",
            volt_protocol::SOCKET_IO_PATH,
            volt_protocol::SOCKET_IO_QUERY
        )
    }

    pub fn is_tls(&self) -> bool {
        self.0.scheme() == "https"
    }

    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(80)
    }
}

impl fmt::Display for CloudUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for CloudUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        CloudUrl::parse(&s)
    }
}

impl From<CloudUrl> for String {
    fn from(u: CloudUrl) -> String {
        u.as_str().to_owned()
    }
}

/// Implements `Deref`, `Display`, `TryFrom<String>` and `Into<String>` for
/// a validated string newtype with a `parse` constructor.
macro_rules! text_newtype {
    ($name:ident) => {
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $name::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// A team cluster id: letters, digits, `-` and `_` (it becomes a path
/// segment of the install directory and of server URLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

impl ClusterId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the team cluster id must not be empty".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(format!(
                "team cluster id {s:?} may only contain letters, digits, '-' and '_'"
            ));
        }
        Ok(ClusterId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
text_newtype!(ClusterId);

/// The `installedVersion` reported to the server: 1..=64 characters, as
/// the server's schema requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstalledVersion(String);

impl InstalledVersion {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let max = volt_protocol::enrollment::MAX_INSTALLED_VERSION_LEN;
        if s.is_empty() || s.len() > max {
            return Err(format!("the installed version must be 1..{max} characters"));
        }
        Ok(InstalledVersion(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
text_newtype!(InstalledVersion);

/// Longest user name (the useradd limit).
pub const MAX_USER_NAME_LEN: usize = 32;

/// A POSIX user name: 1..=32 characters of `[A-Za-z0-9._-]`, not starting
/// with `-` (it is passed to `setpriv`/`getpwnam`, never to a shell, but a
/// leading dash would read as an option).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let user = s.trim();
        let valid = (1..=MAX_USER_NAME_LEN).contains(&user.len())
            && !user.starts_with('-')
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(format!(
                "{user:?} is not a valid user name (1..{MAX_USER_NAME_LEN} characters of [A-Za-z0-9._-], not starting with '-')"
            ));
        }
        Ok(UserName(user.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
text_newtype!(UserName);

/// An absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct AbsPath(PathBuf);

impl AbsPath {
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, String> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(format!(
                "must be an absolute path, got {:?}",
                path.display().to_string()
            ));
        }
        Ok(AbsPath(path))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Deref for AbsPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for AbsPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for AbsPath {
    type Error = String;
    fn try_from(p: PathBuf) -> Result<Self, String> {
        AbsPath::new(p)
    }
}

impl From<AbsPath> for PathBuf {
    fn from(p: AbsPath) -> PathBuf {
        p.0
    }
}

/// The spread of a backoff (socket.io's `randomizationFactor`): 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Jitter(f64);

impl Jitter {
    pub fn new(v: f64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("must be within 0..=1, got {v}"));
        }
        Ok(Jitter(v))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Jitter {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        Jitter::new(v)
    }
}

impl From<Jitter> for f64 {
    fn from(j: Jitter) -> f64 {
        j.0
    }
}

/// An HTTP CONNECT proxy for the control socket:
/// `http://[user:pass@]host[:port]` (port 80 when none is given).
///
/// Serialises with the credentials as `***` (the only place it is
/// serialised is `voltd config show`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyUrl {
    /// `host:port` of the proxy.
    pub address: String,
    /// `Proxy-Authorization: Basic …` credentials from `user:pass@` in the URL.
    pub basic_auth: Option<Secret>,
}

impl ProxyUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        // Never echo the URL: it may carry credentials.
        let bad = || "invalid proxy URL: expected http://[user:pass@]host:port".to_owned();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url)
            .trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(Secret::new(a)), h),
            None => (None, rest),
        };
        if hostport.is_empty() || hostport.contains('/') {
            return Err(bad());
        }
        let address = if hostport.contains(':') && !hostport.ends_with(']') {
            hostport.to_owned()
        } else {
            format!("{hostport}:80")
        };
        Ok(ProxyUrl {
            address,
            basic_auth: auth,
        })
    }
}

impl TryFrom<String> for ProxyUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ProxyUrl::parse(&s)
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let auth = if self.basic_auth.is_some() {
            "***@"
        } else {
            ""
        };
        s.serialize_str(&format!("http://{auth}{}", self.address))
    }
}

/// Whether `host` is reached directly under the `NO_PROXY` rules `rules`:
/// `*`, a host name, or a domain (`example.com` and `.example.com` both
/// match its subdomains).
pub fn bypasses_proxy(rules: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    rules.iter().any(|rule| {
        let rule = rule.trim().to_ascii_lowercase();
        rule == "*"
            || host == rule.trim_start_matches('.')
            || (host.ends_with(&rule) && rule.starts_with('.'))
            || host.ends_with(&format!(".{rule}"))
    })
}

/// `*_ms` keys: a positive number of milliseconds as a [`Duration`].
pub mod ms {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::positive(d).map(Duration::from_millis)
    }
}

/// `*_secs` keys: a positive number of seconds as a [`Duration`].
pub mod secs {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::positive(d).map(Duration::from_secs)
    }
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("must be greater than 0"));
    }
    Ok(v)
}

/// A count that must be at least 1.
pub fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + From<u8>,
{
    let v = T::deserialize(d)?;
    if v < T::from(1) {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(v)
}

/// A string trimmed; blank is "not set".
pub fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<String>::deserialize(d)?;
    Ok(v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// `update_command`: an argument vector (empty = none). The old string form
/// (a shell command with `{version}`/`{image}` pasted in) is refused with a
/// message saying so: a server-provided string must never reach a shell.
pub fn update_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Argv(Vec<String>),
        Shell(#[allow(dead_code)] String),
    }
    match Option::<Form>::deserialize(d)? {
        None => Ok(None),
        Some(Form::Argv(v)) if v.is_empty() => Ok(None),
        Some(Form::Argv(v)) => Ok(Some(v)),
        Some(Form::Shell(_)) => Err(serde::de::Error::custom(
            "update_command is an argument vector now, e.g. [\"/usr/local/sbin/upgrade-voltd\", \"--quiet\"]; the target version is appended as the last argument (no shell, no {version}/{image} placeholders)",
        )),
    }
}

/// A secret; blank is "not set" (an installer that writes an empty
/// `daemon_password = ""` has none).
pub fn non_blank_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let v = Option::<Secret>::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

/// A secret is written as `***` (`voltd config show`).
pub fn redact<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("***"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_url_strips_slashes_and_builds_socket_url() {
        let u = CloudUrl::parse("https://cloud.voltlabs.io///").unwrap();
        assert_eq!(u.as_str(), "https://cloud.voltlabs.io");
        assert_eq!(
            u.socket_io_url(),
            "wss://cloud.voltlabs.io/socket.io/?EIO=4&transport=websocket"
        );
        assert!(u.is_tls());
        assert_eq!(u.port(), 443);
        let u = CloudUrl::parse("http://127.0.0.1:8080/base/").unwrap();
        assert_eq!(u.join("/api/x"), "http://127.0.0.1:8080/base/api/x");
        assert_eq!(
            u.socket_io_url(),
            "ws://127.0.0.1:8080/base/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(CloudUrl::parse("wss://h").unwrap().as_str(), "https://h");
    }

    #[test]
    fn cloud_url_rejects_nonsense() {
        for bad in [
            "",
            "nope",
            "ftp://h",
            "http://",
            "http://h?x=1",
            "http://h#f",
        ] {
            assert!(CloudUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_proxy_rules() {
        let rules: Vec<String> = vec!["localhost".into(), ".internal".into(), "example.com".into()];
        assert!(bypasses_proxy(&rules, "localhost"));
        assert!(bypasses_proxy(&rules, "a.internal"));
        assert!(bypasses_proxy(&rules, "internal"));
        assert!(bypasses_proxy(&rules, "api.example.com"));
        assert!(bypasses_proxy(&rules, "EXAMPLE.com"));
        assert!(!bypasses_proxy(&rules, "cloud.voltlabs.io"));
        assert!(!bypasses_proxy(&rules, "notexample.com"));
        assert!(bypasses_proxy(&["*".into()], "anything"));
    }

    #[test]
    fn proxy_urls_default_the_port_and_keep_credentials_out_of_errors() {
        let p = ProxyUrl::parse("http://user:secret@proxy.lan:3128/").unwrap();
        assert_eq!(p.address, "proxy.lan:3128");
        assert_eq!(p.basic_auth.as_ref().unwrap().expose(), "user:secret");
        assert_eq!(
            ProxyUrl::parse("proxy.lan").unwrap().address,
            "proxy.lan:80"
        );
        assert_eq!(ProxyUrl::parse("http://[::1]").unwrap().address, "[::1]:80");
        let err = ProxyUrl::parse("http://u:hidden-9@host/path").unwrap_err();
        assert!(!err.contains("hidden-9"), "{err}");
        assert!(ProxyUrl::parse("http://").is_err());
        let shown = toml::Value::try_from(&p).unwrap();
        assert_eq!(shown.as_str(), Some("http://***@proxy.lan:3128"));
    }

    #[test]
    fn cluster_ids_versions_user_names_paths_and_jitter_are_checked() {
        assert_eq!(ClusterId::parse(" c-1_x ").unwrap(), "c-1_x");
        for bad in ["", "  ", "../etc", "a b", "a/b"] {
            assert!(ClusterId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(InstalledVersion::parse(" 2.0.0 ").unwrap(), "2.0.0");
        assert!(InstalledVersion::parse("").is_err());
        assert!(InstalledVersion::parse(&"9".repeat(65)).is_err());
        assert!(InstalledVersion::parse(&"9".repeat(64)).is_ok());
        assert_eq!(UserName::parse("volt").unwrap(), "volt");
        for bad in ["-rf", "a b", "", "x;y", &"u".repeat(33)] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AbsPath::new("/bin/zsh").is_ok());
        assert!(AbsPath::new("bash").unwrap_err().contains("absolute path"));
        assert!(Jitter::new(0.0).is_ok() && Jitter::new(1.0).is_ok());
        assert!(Jitter::new(2.0).is_err() && Jitter::new(-0.1).is_err());
        assert!(Jitter::new(f64::NAN).is_err());
    }
}
