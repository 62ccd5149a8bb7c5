//! Answering inbound commands: what a handler is given ([`CallInfo`]), what
//! it answers ([`Reply`]) and how it runs ([`Run`]). The dispatcher sends the
//! replies; the command families (`remote/`) produce them. The dispatcher is
//! handed one [`CommandHandler`] at construction and knows nothing else of
//! the families.

use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::rc::Rc;
use volt_protocol::Message;
use volt_protocol::envelope::{Headers, ResponseMessage, ResponseType};

/// Resolves and runs one inbound command (the families' dispatch).
pub type CommandHandler = Rc<dyn Fn(&CallInfo) -> Run>;

/// The command being answered.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub request_id: String,
    pub command: String,
    pub response_type: ResponseType,
    pub payload: Value,
}

/// A streamed body: chunks of bytes, or an error that ends the stream with
/// `stream-end {message}`.
pub struct StreamReply {
    pub status: u16,
    pub headers: Headers,
    pub body: LocalBoxStream<'static, Result<Vec<u8>, String>>,
}

/// A handler's answer.
pub enum Reply {
    /// `ok:true, status, data:{status:"success", data}`.
    Json { status: u16, data: Value },
    /// `ok:false, status, message` (+ `data:{status:"error", code, message}`
    /// when a code is given).
    Failure {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// `ok:true, status, headers?, bodyBase64`.
    Buffer {
        status: u16,
        headers: Option<Headers>,
        body: Vec<u8>,
    },
    /// `response` with a `streamId`, then `stream` chunks, then `stream-end`.
    Stream(StreamReply),
    /// The handler answered on its own (e.g. `session.attach`).
    Handled,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Json { status, data } => f
                .debug_struct("Json")
                .field("status", status)
                .field("data", data)
                .finish(),
            Reply::Failure {
                status,
                code,
                message,
            } => f
                .debug_struct("Failure")
                .field("status", status)
                .field("code", code)
                .field("message", message)
                .finish(),
            Reply::Buffer { status, body, .. } => f
                .debug_struct("Buffer")
                .field("status", status)
                .field("bytes", &body.len())
                .finish(),
            Reply::Stream(s) => f
                .debug_struct("Stream")
                .field("status", &s.status)
                .field("headers", &s.headers)
                .finish_non_exhaustive(),
            Reply::Handled => f.write_str("Handled"),
        }
    }
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply::Json { status: 200, data }
    }

    pub fn created(data: Value) -> Self {
        Reply::Json { status: 201, data }
    }

    pub fn failure(status: u16, message: impl Into<String>) -> Self {
        Reply::Failure {
            status,
            code: None,
            message: message.into(),
        }
    }

    pub fn failure_with_code(status: u16, code: &str, message: impl Into<String>) -> Self {
        Reply::Failure {
            status,
            code: Some(code.to_owned()),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::failure(404, message)
    }

    /// The 500 a panicking handler turns into.
    pub fn panicked(command: &str, message: &str) -> Self {
        tracing::error!(%command, panic = %message, "Command handler panicked.");
        Reply::failure_with_code(
            500,
            "INTERNAL_ERROR",
            format!("Handler for {command} panicked: {message}"),
        )
    }

    /// The reply as one message; streams and handled replies come back
    /// unchanged (they are not one message). Consumes the reply so the
    /// hot path never clones its data.
    pub fn into_message(self, request_id: &str) -> Result<Message, Reply> {
        Ok(Message::Response(match self {
            Reply::Json { status, data } => {
                ResponseMessage::success_with_status(request_id, status, data)
            }
            Reply::Failure {
                status,
                code: Some(code),
                message,
            } => ResponseMessage::failure_with_code(request_id, status, &code, message),
            Reply::Failure {
                status,
                code: None,
                message,
            } => ResponseMessage::failure(request_id, status, message),
            Reply::Buffer {
                status,
                headers,
                body,
            } => {
                use base64::Engine as _;
                ResponseMessage::buffer(
                    request_id,
                    status,
                    headers,
                    base64::engine::general_purpose::STANDARD.encode(body),
                )
            }
            other @ (Reply::Stream(_) | Reply::Handled) => return Err(other),
        }))
    }
}

/// How a handler runs.
pub enum Run {
    Done(Reply),
    Later(LocalBoxFuture<'static, Reply>),
}

impl Run {
    pub fn later(fut: impl std::future::Future<Output = Reply> + 'static) -> Self {
        Run::Later(Box::pin(fut))
    }
}

/// Parses a payload into a family's typed request (unknown keys ignored).
pub fn parse_payload<T: DeserializeOwned>(command: &str, payload: &Value) -> Result<T, Reply> {
    let value = match payload {
        Value::Null => Value::Object(Map::new()),
        v => v.clone(),
    };
    serde_json::from_value(value)
        .map_err(|e| Reply::bad_request(format!("Invalid payload for {command}: {e}")))
}

/// `{accepted: true}` — the answer to lifecycle commands.
pub fn accepted() -> Value {
    json!({ "accepted": true })
}
