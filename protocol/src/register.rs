//! Registration on the control socket, and the [`Secret`] wrapper used for
//! every credential that crosses the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A credential (daemon password, enrollment token, service password).
///
/// Serialises as the plain string — the wire needs it — but its `Debug` and
/// `Display` never show it, so it cannot reach a log line or an error by
/// accident. Use [`Secret::expose`] where the value is really needed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Every call site is a place a secret leaves its box.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// `team-cluster-daemon:register` payload. The real server validates it with a
/// strict schema: exactly these two keys, both non-empty after trimming. A
/// Gen C `channel` key makes a Gen B server reject the registration, so there
/// is deliberately no such field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterPayload {
    pub team_cluster_id: String,
    pub daemon_password: Secret,
}

/// Why a registration payload is refused (server-side validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid register payload: {0}")]
    Invalid(String),
    #[error("teamClusterId must be a non-empty string")]
    EmptyClusterId,
    #[error("daemonPassword must be a non-empty string")]
    EmptyPassword,
}

impl RegisterPayload {
    /// Builds a payload, refusing blank values as the server would.
    pub fn new(
        team_cluster_id: impl Into<String>,
        daemon_password: Secret,
    ) -> Result<Self, RegisterError> {
        let p = RegisterPayload {
            team_cluster_id: team_cluster_id.into(),
            daemon_password,
        };
        p.validate()?;
        Ok(p)
    }

    /// Parses and validates a payload with the server's strict rules.
    pub fn parse_strict(raw: &str) -> Result<Self, RegisterError> {
        let p: RegisterPayload =
            serde_json::from_str(raw).map_err(|e| RegisterError::Invalid(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), RegisterError> {
        if self.team_cluster_id.trim().is_empty() {
            return Err(RegisterError::EmptyClusterId);
        }
        if self.daemon_password.is_empty() {
            return Err(RegisterError::EmptyPassword);
        }
        Ok(())
    }
}

/// `team-cluster-daemon:registered` payload (Gen C adds `channel`).
///
/// `voltdExtensions` is volt-plane's announcement of the extensions it
/// understands (see [`Extensions`]); the VOLT server never sends it, so a
/// daemon talking to it sends only reference shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredPayload {
    pub team_cluster_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(
        default,
        rename = "voltdExtensions",
        skip_serializing_if = "Extensions::is_empty",
        deserialize_with = "Extensions::deserialize_lenient"
    )]
    pub extensions: Extensions,
}

/// The key of the announcement in the `registered` payload.
pub const EXTENSIONS_KEY: &str = "voltdExtensions";

/// One protocol extension a server may announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `runtime.lifecycle` may carry `reason` (why the status changed). The
    /// reference schema is `{teamClusterId, daemonPassword, status,
    /// installedVersion?}`; a strict server records any other key as a
    /// protocol violation.
    LifecycleReason,
}

impl Extension {
    /// Every extension this build knows.
    pub const ALL: [Extension; 1] = [Extension::LifecycleReason];

    /// The wire name in `voltdExtensions`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Extension::LifecycleReason => "lifecycle-reason",
        }
    }

    fn from_wire(name: &str) -> Option<Self> {
        Extension::ALL.into_iter().find(|e| e.wire_name() == name)
    }
}

/// The extensions a server announced at registration (none for the VOLT
/// server). A daemon keeps the set of the registration it is on and sends
/// an extension's shapes only while it holds it.
///
/// On the wire: `"voltdExtensions": ["lifecycle-reason", …]`. Parsing is
/// lenient — names this build does not know are ignored and a malformed
/// value counts as no announcement — because an announcement must never
/// make a registration fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    lifecycle_reason: bool,
}

impl Extensions {
    /// No extension: the reference protocol.
    pub fn none() -> Self {
        Extensions::default()
    }

    /// Every extension this build knows (what volt-plane announces).
    pub fn all() -> Self {
        Extension::ALL
            .into_iter()
            .fold(Extensions::none(), Extensions::with)
    }

    pub fn with(mut self, e: Extension) -> Self {
        match e {
            Extension::LifecycleReason => self.lifecycle_reason = true,
        }
        self
    }

    pub fn contains(&self, e: Extension) -> bool {
        match e {
            Extension::LifecycleReason => self.lifecycle_reason,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Extensions::none()
    }

    /// The announced names, in [`Extension::ALL`] order.
    pub fn names(&self) -> Vec<&'static str> {
        Extension::ALL
            .into_iter()
            .filter(|e| self.contains(*e))
            .map(Extension::wire_name)
            .collect()
    }

    fn deserialize_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().and_then(Extension::from_wire))
            .fold(Extensions::none(), Extensions::with))
    }
}

impl Serialize for Extensions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Extensions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Extensions::deserialize_lenient(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_in_debug_or_display() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        let p = RegisterPayload::new("c1", s).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn register_serialises_exactly_two_keys() {
        let p = RegisterPayload::new("c1", Secret::new("pw")).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"teamClusterId":"c1","daemonPassword":"pw"}"#
        );
    }

    #[test]
    fn strict_parse_rejects_extra_keys_like_the_server() {
        let err = RegisterPayload::parse_strict(
            r#"{"teamClusterId":"c","daemonPassword":"p","channel":"control"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, RegisterError::Invalid(_)));
    }

    #[test]
    fn strict_parse_rejects_blank_values() {
        assert_eq!(
            RegisterPayload::parse_strict(r#"{"teamClusterId":"  ","daemonPassword":"p"}"#),
            Err(RegisterError::EmptyClusterId)
        );
        assert_eq!(
            RegisterPayload::parse_strict(r#"{"teamClusterId":"c","daemonPassword":" "}"#),
            Err(RegisterError::EmptyPassword)
        );
        assert!(RegisterPayload::parse_strict(r#"{"teamClusterId":"c"}"#).is_err());
        assert!(RegisterPayload::parse_strict("[]").is_err());
    }

    #[test]
    fn registered_accepts_gen_c_channel() {
        let r: RegisteredPayload =
            serde_json::from_str(r#"{"teamClusterId":"c","channel":"control"}"#).unwrap();
        assert_eq!(r.channel.as_deref(), Some("control"));
        let r: RegisteredPayload = serde_json::from_str(r#"{"teamClusterId":"c"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"teamClusterId":"c"}"#
        );
    }

    #[test]
    fn the_reference_registered_payload_announces_nothing() {
        let r: RegisteredPayload = serde_json::from_str(r#"{"teamClusterId":"c"}"#).unwrap();
        assert!(r.extensions.is_empty());
        assert!(!r.extensions.contains(Extension::LifecycleReason));
    }

    #[test]
    fn volt_plane_announcement_round_trips() {
        let r = RegisteredPayload {
            team_cluster_id: "c".into(),
            channel: None,
            extensions: Extensions::all(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"teamClusterId":"c","voltdExtensions":["lifecycle-reason"]}"#
        );
        let back: RegisteredPayload = serde_json::from_str(&text).unwrap();
        assert!(back.extensions.contains(Extension::LifecycleReason));
        assert_eq!(back, r);
        assert!(text.contains(EXTENSIONS_KEY));
    }

    #[test]
    fn announcements_parse_leniently() {
        for (raw, expected) in [
            (r#"["lifecycle-reason","future-thing"]"#, true),
            (r#"["future-thing"]"#, false),
            (r#""lifecycle-reason""#, false),
            (r#"{"lifecycle-reason":true}"#, false),
            (r#"[1,null,"lifecycle-reason"]"#, true),
            ("null", false),
        ] {
            let r: RegisteredPayload = serde_json::from_str(&format!(
                r#"{{"teamClusterId":"c","voltdExtensions":{raw}}}"#
            ))
            .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                r.extensions.contains(Extension::LifecycleReason),
                expected,
                "{raw}"
            );
        }
    }
}
