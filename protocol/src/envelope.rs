//! The `team-cluster-daemon:message` envelope: one JSON object whose `type`
//! says what it is. Every type of the reference has a variant; an unknown
//! `type` is kept as raw JSON ([`Message::Unknown`]) and is never an error.
//!
//! Decoding reads the `type` first and then parses the text once more straight
//! into the matching struct, so no intermediate JSON tree is built for the hot
//! `command`/`response` path. Unknown keys are ignored everywhere.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use thiserror::Error;

/// How the server wants a command answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    #[default]
    Json,
    Buffer,
    Stream,
    /// A value this version does not know; treated like `json`.
    #[serde(other)]
    Other,
}

/// `{type:"command", requestId, command, responseType?, payload?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandMessage {
    pub request_id: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_type: Option<ResponseType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl CommandMessage {
    /// The payload, or an empty object when absent.
    pub fn payload_or_empty(&self) -> Cow<'_, Value> {
        match &self.payload {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(Value::Object(Map::new())),
        }
    }
}

/// Response headers (string map, as the reference types them).
pub type Headers = BTreeMap<String, String>;

/// `{type:"response", requestId, ok, status, data?, bodyBase64?, headers?, message?, streamId?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMessage {
    pub request_id: String,
    pub ok: bool,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// A response that is not a success, as seen by the side that sent the command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{status}: {message}")]
pub struct ResponseFailure {
    pub status: u16,
    /// `data.code` when the peer sent `{status:"error", code, message}`.
    pub code: Option<String>,
    pub message: String,
}

impl ResponseMessage {
    /// `ok:true, status:200, data:{status:"success", data}`.
    pub fn success(request_id: impl Into<String>, data: Value) -> Self {
        Self::success_with_status(request_id, 200, data)
    }

    /// A success with another status (201 for creations).
    pub fn success_with_status(request_id: impl Into<String>, status: u16, data: Value) -> Self {
        let mut env = Map::with_capacity(2);
        env.insert("status".into(), Value::String("success".into()));
        env.insert("data".into(), data);
        ResponseMessage {
            request_id: request_id.into(),
            ok: true,
            status,
            data: Some(Value::Object(env)),
            body_base64: None,
            headers: None,
            message: None,
            stream_id: None,
        }
    }

    /// `ok:false, status, message` — how the reference reports failures.
    pub fn failure(request_id: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        ResponseMessage {
            request_id: request_id.into(),
            ok: false,
            status,
            data: None,
            body_base64: None,
            headers: None,
            message: Some(message.into()),
            stream_id: None,
        }
    }

    /// A failure that also carries `data:{status:"error", code, message}`,
    /// which the server uses for its own error code when present.
    pub fn failure_with_code(
        request_id: impl Into<String>,
        status: u16,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let mut r = Self::failure(request_id, status, message.clone());
        r.data = Some(serde_json::json!({"status": "error", "code": code, "message": message}));
        r
    }

    /// The unknown-command reply, worded exactly as the reference daemon.
    pub fn unknown_command(request_id: impl Into<String>, command: &str) -> Self {
        Self::failure(
            request_id,
            404,
            format!("Unknown daemon command: {command}"),
        )
    }

    /// A buffer reply: `ok:true, status, headers?, bodyBase64`.
    pub fn buffer(
        request_id: impl Into<String>,
        status: u16,
        headers: Option<Headers>,
        body_base64: String,
    ) -> Self {
        ResponseMessage {
            request_id: request_id.into(),
            ok: true,
            status,
            data: None,
            body_base64: Some(body_base64),
            headers,
            message: None,
            stream_id: None,
        }
    }

    /// The first message of a stream reply: `ok:true, status, headers, streamId`.
    pub fn stream_start(
        request_id: impl Into<String>,
        status: u16,
        headers: Headers,
        stream_id: impl Into<String>,
    ) -> Self {
        ResponseMessage {
            request_id: request_id.into(),
            ok: true,
            status,
            data: None,
            body_base64: None,
            headers: Some(headers),
            message: None,
            stream_id: Some(stream_id.into()),
        }
    }

    /// Unwraps a JSON reply the way the server does: `ok` must be true and
    /// `data` must be `{status:<string>, data:…}`; anything else is a failure.
    pub fn into_result(self) -> Result<Value, ResponseFailure> {
        if !self.ok {
            let (code, data_message) = match &self.data {
                Some(Value::Object(m))
                    if m.get("status").and_then(Value::as_str) == Some("error") =>
                {
                    (
                        m.get("code").and_then(Value::as_str).map(str::to_owned),
                        m.get("message").and_then(Value::as_str).map(str::to_owned),
                    )
                }
                _ => (None, None),
            };
            return Err(ResponseFailure {
                status: self.status,
                code,
                message: self
                    .message
                    .or(data_message)
                    .unwrap_or_else(|| format!("request failed with status {}", self.status)),
            });
        }
        match self.data {
            Some(Value::Object(mut m)) if m.get("status").is_some_and(Value::is_string) => {
                Ok(m.remove("data").unwrap_or(Value::Null))
            }
            _ => Err(ResponseFailure {
                status: self.status,
                code: None,
                message: "response data is not a {status, data} envelope".into(),
            }),
        }
    }
}

/// `{type:"stream", requestId, streamId, chunkBase64}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamChunk {
    pub request_id: String,
    pub stream_id: String,
    pub chunk_base64: String,
}

/// `{type:"stream-end", requestId, streamId, message?}`; `message` = failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamEnd {
    pub request_id: String,
    pub stream_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `{type:"session-input", sessionId, chunkBase64, isBinary}` (server → daemon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInput {
    pub session_id: String,
    pub chunk_base64: String,
    #[serde(default)]
    pub is_binary: bool,
}

/// `{type:"session-resize", sessionId, rows, cols}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResizeMessage {
    pub session_id: String,
    pub rows: u16,
    pub cols: u16,
}

/// `{type:"session-detach", sessionId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDetach {
    pub session_id: String,
}

/// `{type:"session-data", sessionId, chunkBase64, isBinary}` (daemon → server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionData {
    pub session_id: String,
    pub chunk_base64: String,
    #[serde(default)]
    pub is_binary: bool,
}

/// `{type:"session-end", sessionId, code?, message?, error?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEnd {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Session kinds of `session.attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Terminal,
    Tunnel,
    Websocket,
}

/// Where a terminal session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalTarget {
    Container,
    Host,
}

/// Command name that starts a session; its `requestId` equals the session id.
pub const SESSION_ATTACH_COMMAND: &str = "session.attach";

/// Payload of `session.attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAttach {
    pub session_id: String,
    pub kind: SessionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_target: Option<TerminalTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
}

/// One published service of the cluster (exposure registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    pub id: String,
    pub team_cluster_id: String,
    pub team_id: String,
    /// `container` or `daemon`.
    pub source_kind: String,
    pub exposure_name: String,
    /// Any of `tcp`, `http`, `websocket`.
    pub access_modes: Vec<String>,
    pub target_host: String,
    pub target_port: u16,
    /// `active` or `unavailable`.
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
}

/// `exposure-snapshot` / `exposure-upsert`: `{exposures:[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureList {
    pub exposures: Vec<Exposure>,
}

/// `exposure-remove`: `{exposureIds:[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExposureRemove {
    pub exposure_ids: Vec<String>,
}

/// Optional binary relay of a `tunnel-open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelRelay {
    pub relay_session_id: String,
    pub relay_url: String,
    pub relay_token: crate::register::Secret,
    pub relay_protocol_version: u32,
}

/// `tunnel-open`: against an exposure or a direct target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelOpen {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// `http`, `tcp` or `websocket`.
    pub access_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<TunnelRelay>,
}

/// States of a tunnel session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelStatus {
    Opening,
    Open,
    Closed,
}

/// `tunnel-state {sessionId, status, message?, error?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelState {
    pub session_id: String,
    pub status: TunnelStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `tunnel-data {sessionId, chunkBase64, isBinary}` (Gen C adds sequencing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelData {
    pub session_id: String,
    pub chunk_base64: String,
    #[serde(default)]
    pub is_binary: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_ack: Option<bool>,
}

/// `tunnel-drain {sessionId, sequence}` (Gen C flow control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelDrain {
    pub session_id: String,
    pub sequence: u64,
}

/// `tunnel-close {sessionId, code?, message?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelClose {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `tunnel-heartbeat {sessionId, occurredAt}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelHeartbeat {
    pub session_id: String,
    pub occurred_at: String,
}

/// Stages of a `runtime-progress` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressStage {
    Accepted,
    Queued,
    Running,
    Completed,
    Failed,
}

/// `runtime-progress {action, stage, timestamp, payload?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeProgress {
    pub action: String,
    pub stage: ProgressStage,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// Report events a daemon sends fire-and-forget (job and artifact status,
/// Gen C heartbeat events and binary command forms). voltd runs no job queue,
/// so their bodies are carried as JSON objects rather than typed structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    AnalysisJobCompletion,
    AnalysisJobStatus,
    AnalysisStageStatus,
    TrajectoryRasterJobStatus,
    TrajectoryGlbJobStatus,
    SshImportJobStatus,
    ArtifactUploadJobStatus,
    TrajectorySceneArtifactUpsertBatch,
    RuntimeHeartbeat,
    CommandBinary,
    ResponseBinary,
}

impl ReportKind {
    pub const ALL: [ReportKind; 11] = [
        ReportKind::AnalysisJobCompletion,
        ReportKind::AnalysisJobStatus,
        ReportKind::AnalysisStageStatus,
        ReportKind::TrajectoryRasterJobStatus,
        ReportKind::TrajectoryGlbJobStatus,
        ReportKind::SshImportJobStatus,
        ReportKind::ArtifactUploadJobStatus,
        ReportKind::TrajectorySceneArtifactUpsertBatch,
        ReportKind::RuntimeHeartbeat,
        ReportKind::CommandBinary,
        ReportKind::ResponseBinary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::AnalysisJobCompletion => "analysis-job-completion",
            ReportKind::AnalysisJobStatus => "analysis-job-status",
            ReportKind::AnalysisStageStatus => "analysis-stage-status",
            ReportKind::TrajectoryRasterJobStatus => "trajectory-raster-job-status",
            ReportKind::TrajectoryGlbJobStatus => "trajectory-glb-job-status",
            ReportKind::SshImportJobStatus => "ssh-import-job-status",
            ReportKind::ArtifactUploadJobStatus => "artifact-upload-job-status",
            ReportKind::TrajectorySceneArtifactUpsertBatch => {
                "trajectory-scene-artifact-upsert-batch"
            }
            ReportKind::RuntimeHeartbeat => "runtime-heartbeat",
            ReportKind::CommandBinary => "command-binary",
            ReportKind::ResponseBinary => "response-binary",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Every envelope of the reference, plus [`Message::Unknown`].
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Command(CommandMessage),
    Response(ResponseMessage),
    Stream(StreamChunk),
    StreamEnd(StreamEnd),
    SessionInput(SessionInput),
    SessionResize(SessionResizeMessage),
    SessionDetach(SessionDetach),
    SessionData(SessionData),
    SessionEnd(SessionEnd),
    ExposureSnapshot(ExposureList),
    ExposureUpsert(ExposureList),
    ExposureRemove(ExposureRemove),
    TunnelOpen(TunnelOpen),
    TunnelState(TunnelState),
    TunnelData(TunnelData),
    TunnelDrain(TunnelDrain),
    TunnelClose(TunnelClose),
    TunnelHeartbeat(TunnelHeartbeat),
    RuntimeProgress(RuntimeProgress),
    /// A report event; `fields` holds everything but `type`.
    Report {
        kind: ReportKind,
        fields: Map<String, Value>,
    },
    /// A `type` this version does not know, kept whole.
    Unknown {
        kind: String,
        raw: Value,
    },
}

/// Why a message could not be decoded (never for an unknown `type`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("message is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("message has no string `type`")]
    MissingType,
    #[error("invalid `{kind}` message: {reason}")]
    Invalid { kind: String, reason: String },
}

#[derive(Deserialize)]
struct TypeTag<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// The `type` when the object starts with it, as every sender of the
/// reference does (`{"type":"…",`): found without scanning the JSON. Any
/// other layout (or an escaped tag) goes through the full tag parse; the
/// typed parse that follows validates the whole object either way.
fn quick_tag(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix("{\"type\":\"")?;
    let tag = &rest[..rest.find('"')?];
    (!tag.contains('\\')).then_some(tag)
}

fn parse<'a, T: Deserialize<'a>>(kind: &str, raw: &'a str) -> Result<T, EnvelopeError> {
    serde_json::from_str(raw).map_err(|e| EnvelopeError::Invalid {
        kind: kind.to_owned(),
        reason: e.to_string(),
    })
}

impl Message {
    /// Decodes one envelope from its JSON text.
    pub fn decode(raw: &str) -> Result<Message, EnvelopeError> {
        // serde accepts a JSON array for a struct; an envelope must be an object.
        if !raw.trim_start().starts_with('{') {
            return Err(EnvelopeError::NotAnObject("expected a JSON object".into()));
        }
        let kind: Cow<'_, str> = match quick_tag(raw) {
            Some(tag) => Cow::Borrowed(tag),
            None => {
                let tag: TypeTag<'_> = serde_json::from_str(raw)
                    .map_err(|e| EnvelopeError::NotAnObject(e.to_string()))?;
                tag.kind.ok_or(EnvelopeError::MissingType)?
            }
        };
        let k = kind.as_ref();
        Ok(match k {
            "command" => Message::Command(parse(k, raw)?),
            "response" => Message::Response(parse(k, raw)?),
            "stream" => Message::Stream(parse(k, raw)?),
            "stream-end" => Message::StreamEnd(parse(k, raw)?),
            "session-input" => Message::SessionInput(parse(k, raw)?),
            "session-resize" => Message::SessionResize(parse(k, raw)?),
            "session-detach" => Message::SessionDetach(parse(k, raw)?),
            "session-data" => Message::SessionData(parse(k, raw)?),
            "session-end" => Message::SessionEnd(parse(k, raw)?),
            "exposure-snapshot" => Message::ExposureSnapshot(parse(k, raw)?),
            "exposure-upsert" => Message::ExposureUpsert(parse(k, raw)?),
            "exposure-remove" => Message::ExposureRemove(parse(k, raw)?),
            "tunnel-open" => Message::TunnelOpen(parse(k, raw)?),
            "tunnel-state" => Message::TunnelState(parse(k, raw)?),
            "tunnel-data" => Message::TunnelData(parse(k, raw)?),
            "tunnel-drain" => Message::TunnelDrain(parse(k, raw)?),
            "tunnel-close" => Message::TunnelClose(parse(k, raw)?),
            "tunnel-heartbeat" => Message::TunnelHeartbeat(parse(k, raw)?),
            "runtime-progress" => Message::RuntimeProgress(parse(k, raw)?),
            other => {
                let mut value: Map<String, Value> = parse(other, raw)?;
                // A repeated `type` key: the quick tag saw the first, the map
                // kept the last. Both must agree, or the message would
                // re-encode as something else.
                if value.get("type").and_then(Value::as_str) != Some(other) {
                    return Err(EnvelopeError::Invalid {
                        kind: other.to_owned(),
                        reason: "conflicting `type` keys".into(),
                    });
                }
                match ReportKind::from_wire(other) {
                    Some(kind) => {
                        value.remove("type");
                        Message::Report {
                            kind,
                            fields: value,
                        }
                    }
                    None => Message::Unknown {
                        kind: other.to_owned(),
                        raw: Value::Object(value),
                    },
                }
            }
        })
    }

    /// The wire `type` of this message.
    pub fn type_str(&self) -> &str {
        match self {
            Message::Command(_) => "command",
            Message::Response(_) => "response",
            Message::Stream(_) => "stream",
            Message::StreamEnd(_) => "stream-end",
            Message::SessionInput(_) => "session-input",
            Message::SessionResize(_) => "session-resize",
            Message::SessionDetach(_) => "session-detach",
            Message::SessionData(_) => "session-data",
            Message::SessionEnd(_) => "session-end",
            Message::ExposureSnapshot(_) => "exposure-snapshot",
            Message::ExposureUpsert(_) => "exposure-upsert",
            Message::ExposureRemove(_) => "exposure-remove",
            Message::TunnelOpen(_) => "tunnel-open",
            Message::TunnelState(_) => "tunnel-state",
            Message::TunnelData(_) => "tunnel-data",
            Message::TunnelDrain(_) => "tunnel-drain",
            Message::TunnelClose(_) => "tunnel-close",
            Message::TunnelHeartbeat(_) => "tunnel-heartbeat",
            Message::RuntimeProgress(_) => "runtime-progress",
            Message::Report { kind, .. } => kind.as_str(),
            Message::Unknown { kind, .. } => kind,
        }
    }

    /// The session id of a session-* message, if it is one.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Message::SessionInput(m) => Some(&m.session_id),
            Message::SessionResize(m) => Some(&m.session_id),
            Message::SessionDetach(m) => Some(&m.session_id),
            Message::SessionData(m) => Some(&m.session_id),
            Message::SessionEnd(m) => Some(&m.session_id),
            _ => None,
        }
    }

    /// Encodes the message as JSON text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.type_str();
        macro_rules! tagged {
            ($body:expr) => {
                Tagged { kind, body: $body }.serialize(s)
            };
        }
        match self {
            Message::Command(m) => tagged!(m),
            Message::Response(m) => tagged!(m),
            Message::Stream(m) => tagged!(m),
            Message::StreamEnd(m) => tagged!(m),
            Message::SessionInput(m) => tagged!(m),
            Message::SessionResize(m) => tagged!(m),
            Message::SessionDetach(m) => tagged!(m),
            Message::SessionData(m) => tagged!(m),
            Message::SessionEnd(m) => tagged!(m),
            Message::ExposureSnapshot(m) => tagged!(m),
            Message::ExposureUpsert(m) => tagged!(m),
            Message::ExposureRemove(m) => tagged!(m),
            Message::TunnelOpen(m) => tagged!(m),
            Message::TunnelState(m) => tagged!(m),
            Message::TunnelData(m) => tagged!(m),
            Message::TunnelDrain(m) => tagged!(m),
            Message::TunnelClose(m) => tagged!(m),
            Message::TunnelHeartbeat(m) => tagged!(m),
            Message::RuntimeProgress(m) => tagged!(m),
            Message::Report { fields, .. } => tagged!(fields),
            Message::Unknown { raw, .. } => raw.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn round_trip(m: &Message) -> Message {
        Message::decode(&m.to_json().unwrap()).unwrap()
    }

    #[test]
    fn decodes_a_server_command_and_ignores_unknown_keys() {
        let raw = r#"{"type":"command","requestId":"r1","command":"remote.explorer.list","responseType":"json","payload":{"target":"minio","path":"/a/","metadata":{"traceId":"t"}},"extra":1}"#;
        let Message::Command(c) = Message::decode(raw).unwrap() else {
            panic!("not a command")
        };
        assert_eq!(c.request_id, "r1");
        assert_eq!(c.command, "remote.explorer.list");
        assert_eq!(c.response_type, Some(ResponseType::Json));
        assert_eq!(c.payload.as_ref().unwrap()["target"], "minio");
    }

    #[test]
    fn unknown_response_type_is_not_an_error() {
        let raw = r#"{"type":"command","requestId":"r","command":"c","responseType":"binary"}"#;
        let Message::Command(c) = Message::decode(raw).unwrap() else {
            panic!()
        };
        assert_eq!(c.response_type, Some(ResponseType::Other));
        assert_eq!(c.payload_or_empty().as_ref(), &json!({}));
    }

    #[test]
    fn success_response_has_the_reference_shape() {
        let r = ResponseMessage::success("r1", json!({"pong": true}));
        let v = serde_json::to_value(Message::Response(r)).unwrap();
        assert_eq!(
            v,
            json!({"type":"response","requestId":"r1","ok":true,"status":200,
                   "data":{"status":"success","data":{"pong":true}}})
        );
    }

    #[test]
    fn unknown_command_reply_is_worded_like_the_reference() {
        let r = ResponseMessage::unknown_command("r", "nope.cmd");
        let v = serde_json::to_value(Message::Response(r)).unwrap();
        assert_eq!(
            v,
            json!({"type":"response","requestId":"r","ok":false,"status":404,
                   "message":"Unknown daemon command: nope.cmd"})
        );
    }

    #[test]
    fn failure_with_code_carries_an_error_envelope() {
        let r = ResponseMessage::failure_with_code("r", 400, "BAD", "bad input");
        assert_eq!(r.data.as_ref().unwrap()["code"], "BAD");
        let err = r.into_result().unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.code.as_deref(), Some("BAD"));
        assert_eq!(err.message, "bad input");
    }

    #[test]
    fn into_result_unwraps_like_the_server() {
        let ok = ResponseMessage::success("r", json!(5));
        assert_eq!(ok.into_result().unwrap(), json!(5));
        let bad_shape = ResponseMessage {
            data: Some(json!({"x": 1})),
            ..ResponseMessage::success("r", json!(1))
        };
        assert!(bad_shape.into_result().is_err());
        let no_message = ResponseMessage {
            message: None,
            ..ResponseMessage::failure("r", 503, "x")
        };
        assert_eq!(
            no_message.into_result().unwrap_err().message,
            "request failed with status 503"
        );
    }

    #[test]
    fn buffer_and_stream_replies() {
        let mut h = Headers::new();
        h.insert("content-type".into(), "text/plain".into());
        let b = ResponseMessage::buffer("r", 200, Some(h.clone()), "aGk=".into());
        let v = serde_json::to_value(Message::Response(b)).unwrap();
        assert_eq!(v["bodyBase64"], "aGk=");
        assert_eq!(v["headers"]["content-type"], "text/plain");
        assert!(v.get("data").is_none());
        let s = ResponseMessage::stream_start("r", 200, h, "s1");
        let v = serde_json::to_value(Message::Response(s)).unwrap();
        assert_eq!(v["streamId"], "s1");
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn every_known_type_round_trips() {
        let msgs = vec![
            Message::Command(CommandMessage {
                request_id: "r".into(),
                command: "c".into(),
                response_type: Some(ResponseType::Stream),
                payload: Some(json!({"a": 1})),
            }),
            Message::Response(ResponseMessage::failure("r", 500, "boom")),
            Message::Stream(StreamChunk {
                request_id: "r".into(),
                stream_id: "s".into(),
                chunk_base64: "AA==".into(),
            }),
            Message::StreamEnd(StreamEnd {
                request_id: "r".into(),
                stream_id: "s".into(),
                message: Some("failed".into()),
            }),
            Message::SessionInput(SessionInput {
                session_id: "s".into(),
                chunk_base64: "bHM=".into(),
                is_binary: false,
            }),
            Message::SessionResize(SessionResizeMessage {
                session_id: "s".into(),
                rows: 40,
                cols: 120,
            }),
            Message::SessionDetach(SessionDetach {
                session_id: "s".into(),
            }),
            Message::SessionData(SessionData {
                session_id: "s".into(),
                chunk_base64: "eA==".into(),
                is_binary: true,
            }),
            Message::SessionEnd(SessionEnd {
                session_id: "s".into(),
                code: Some(0),
                message: None,
                error: None,
            }),
            Message::ExposureSnapshot(ExposureList {
                exposures: vec![Exposure {
                    id: "c1:80".into(),
                    team_cluster_id: "tc".into(),
                    team_id: "t".into(),
                    source_kind: "container".into(),
                    exposure_name: "web:80".into(),
                    access_modes: vec!["tcp".into(), "http".into()],
                    target_host: "10.0.0.2".into(),
                    target_port: 80,
                    status: "active".into(),
                    labels: BTreeMap::new(),
                    container_id: Some("c1".into()),
                    container_name: Some("web".into()),
                    container_port: Some(80),
                }],
            }),
            Message::ExposureUpsert(ExposureList { exposures: vec![] }),
            Message::ExposureRemove(ExposureRemove {
                exposure_ids: vec!["a".into()],
            }),
            Message::TunnelOpen(TunnelOpen {
                session_id: "s".into(),
                exposure_id: None,
                target_host: Some("127.0.0.1".into()),
                target_port: Some(8888),
                access_mode: "tcp".into(),
                relay: None,
            }),
            Message::TunnelState(TunnelState {
                session_id: "s".into(),
                status: TunnelStatus::Closed,
                message: None,
                error: Some("Exposure not found".into()),
            }),
            Message::TunnelData(TunnelData {
                session_id: "s".into(),
                chunk_base64: "AA==".into(),
                is_binary: true,
                sequence: None,
                requires_ack: None,
            }),
            Message::TunnelDrain(TunnelDrain {
                session_id: "s".into(),
                sequence: 3,
            }),
            Message::TunnelClose(TunnelClose {
                session_id: "s".into(),
                code: None,
                message: Some("bye".into()),
            }),
            Message::TunnelHeartbeat(TunnelHeartbeat {
                session_id: "s".into(),
                occurred_at: "2026-01-01T00:00:00Z".into(),
            }),
            Message::RuntimeProgress(RuntimeProgress {
                action: "container-create".into(),
                stage: ProgressStage::Running,
                timestamp: "t".into(),
                payload: Some(json!({"operationId": "o"})),
            }),
            Message::Report {
                kind: ReportKind::AnalysisJobStatus,
                fields: json!({"jobId": "j", "status": "running"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            Message::Unknown {
                kind: "future-thing".into(),
                raw: json!({"type": "future-thing", "x": [1, 2]}),
            },
        ];
        for m in &msgs {
            assert_eq!(&round_trip(m), m, "{}", m.type_str());
        }
    }

    #[test]
    fn every_report_kind_decodes_as_a_report() {
        for kind in ReportKind::ALL {
            let raw = format!(r#"{{"type":"{}","jobId":"j"}}"#, kind.as_str());
            let m = Message::decode(&raw).unwrap();
            assert_eq!(m.type_str(), kind.as_str());
            let Message::Report { fields, .. } = m else {
                panic!()
            };
            assert_eq!(fields["jobId"], "j");
            assert!(!fields.contains_key("type"));
        }
    }

    #[test]
    fn wire_field_names_are_exact() {
        let v = serde_json::to_value(Message::SessionData(SessionData {
            session_id: "s".into(),
            chunk_base64: "x".into(),
            is_binary: true,
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"session-data","sessionId":"s","chunkBase64":"x","isBinary":true})
        );
        let v = serde_json::to_value(Message::StreamEnd(StreamEnd {
            request_id: "r".into(),
            stream_id: "s".into(),
            message: None,
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"stream-end","requestId":"r","streamId":"s"})
        );
    }

    #[test]
    fn the_quick_tag_path_and_the_full_parse_agree() {
        assert_eq!(quick_tag(r#"{"type":"command","x":1}"#), Some("command"));
        assert_eq!(quick_tag(r#"{ "type":"command"}"#), None);
        assert_eq!(quick_tag(r#"{"type":"a\"b"}"#), None);
        // An escaped tag and a tag that is not first decode the same way.
        let a = Message::decode(r#"{"requestId":"r","type":"command","command":"c"}"#).unwrap();
        let b = Message::decode(r#"{"type":"command","requestId":"r","command":"c"}"#).unwrap();
        assert_eq!(a, b);
        let c =
            Message::decode(r#"{"type":"comm\u0061nd","requestId":"r","command":"c"}"#).unwrap();
        assert_eq!(c, b);
        // A quick tag on malformed JSON still fails in the typed parse.
        assert!(Message::decode(r#"{"type":"command","requestId":"#).is_err());
        assert!(Message::decode(r#"{"type":"future","x":"#).is_err());
    }

    #[test]
    fn unknown_type_is_kept_raw() {
        let m = Message::decode(r#"{"type":"brand-new","a":{"b":1}}"#).unwrap();
        assert_eq!(
            m,
            Message::Unknown {
                kind: "brand-new".into(),
                raw: json!({"type":"brand-new","a":{"b":1}})
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(matches!(
            Message::decode("[]"),
            Err(EnvelopeError::NotAnObject(_))
        ));
        assert!(matches!(
            Message::decode("nope"),
            Err(EnvelopeError::NotAnObject(_))
        ));
        assert_eq!(
            Message::decode(r#"{"a":1}"#),
            Err(EnvelopeError::MissingType)
        );
        assert!(matches!(
            Message::decode(r#"{"type":5}"#),
            Err(EnvelopeError::NotAnObject(_))
        ));
        assert!(matches!(
            Message::decode(r#"{"type":"command","requestId":"r"}"#),
            Err(EnvelopeError::Invalid { .. })
        ));
        assert!(matches!(
            Message::decode(r#"{"type":"session-resize","sessionId":"s","rows":-1,"cols":2}"#),
            Err(EnvelopeError::Invalid { .. })
        ));
    }

    #[test]
    fn session_attach_payload_parses_host_terminal() {
        let a: SessionAttach = serde_json::from_value(
            json!({"sessionId":"s","kind":"terminal","terminalTarget":"host","metadata":{}}),
        )
        .unwrap();
        assert_eq!(a.kind, SessionKind::Terminal);
        assert_eq!(a.terminal_target, Some(TerminalTarget::Host));
    }

    #[test]
    fn session_id_accessor() {
        let m = Message::SessionDetach(SessionDetach {
            session_id: "x".into(),
        });
        assert_eq!(m.session_id(), Some("x"));
        assert_eq!(
            Message::Response(ResponseMessage::failure("r", 1, "m")).session_id(),
            None
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".*") {
            let _ = Message::decode(&s);
        }

        #[test]
        fn decode_never_panics_on_objects_with_known_types(
            kind in prop_oneof![
                Just("command"), Just("response"), Just("stream"), Just("session-resize"),
                Just("tunnel-open"), Just("exposure-snapshot"), Just("runtime-progress")
            ],
            body in ".{0,40}",
        ) {
            let _ = Message::decode(&format!(r#"{{"type":"{kind}",{body}}}"#));
        }

        #[test]
        fn commands_round_trip(req in "[a-f0-9-]{1,36}", cmd in "[a-z.]{1,20}", n in any::<i64>()) {
            let m = Message::Command(CommandMessage {
                request_id: req,
                command: cmd,
                response_type: None,
                payload: Some(json!({"n": n})),
            });
            prop_assert_eq!(round_trip(&m), m);
        }
    }

    #[test]
    fn a_repeated_type_key_that_disagrees_is_refused() {
        // Found by the envelope fuzz target: the first `type` chose the
        // variant, the last one was kept in the raw map.
        for raw in [
            r#"{"type":"sesshon-resmze","type":24}"#,
            r#"{"type":"cluster-status","type":"other"}"#,
        ] {
            assert!(
                matches!(Message::decode(raw), Err(EnvelopeError::Invalid { .. })),
                "{raw}"
            );
        }
        // Repeated but equal: one message, stable through a round trip.
        let m = Message::decode(r#"{"type":"x-y","type":"x-y","a":1}"#).unwrap();
        let back = Message::decode(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn numbers_come_back_out_exactly() {
        // Found by the envelope fuzz target: a 256-digit integer is an f64
        // that the default float parser read one ULP off on the way back.
        let raw = format!(r#"{{"type":"x-y","cs":2{}4}}"#, "5".repeat(254));
        let m = Message::decode(&raw).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back = Message::decode(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}
