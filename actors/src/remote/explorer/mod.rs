//! `remote.explorer.*`: browse the cluster's data from VOLT's web UI.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `remote.explorer.list` | `{target, path}` | `[{id, name, path, type, size, updatedAt, description}]` |
//! | `remote.explorer.node` | `{target, path}` | `{path, title, type, contentType, textContent, mongoDocuments}` |
//! | `remote.explorer.download` (voltd; the reference lacks it) | `{target, path}` | stream reply of the whole value with `content-type` and `content-disposition` |
//!
//! Targets, one file each: `mongo-documents` ([`mongo`]), `redis-data`
//! ([`redis`]), `minio` ([`minio`]) with the reference's exact shapes, and
//! `host-files` ([`host_files`]), voltd's file explorer over configured
//! root directories. Leading/trailing slashes of `path` are trimmed, as the
//! reference does. An unsupported target is a 400 listing the supported ones.

pub mod host_files;
pub mod minio;
pub mod mongo;
pub mod redis;

use crate::api::reply::{CallInfo, Reply, Run, StreamReply, parse_payload};
use crate::remote::context::HandlerContext;
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use volt_protocol::envelope::Headers;

/// Every target, as spelled on the wire.
pub const TARGETS: [&str; 4] = ["mongo-documents", "redis-data", "minio", "host-files"];

/// Which store to browse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Mongo,
    Redis,
    Minio,
    HostFiles,
}

impl Target {
    fn parse(s: &str) -> Result<Self, Reply> {
        Ok(match s {
            "mongo-documents" => Target::Mongo,
            "redis-data" => Target::Redis,
            "minio" => Target::Minio,
            "host-files" => Target::HostFiles,
            other => {
                return Err(Reply::failure_with_code(
                    400,
                    "EXPLORER_TARGET_UNSUPPORTED",
                    format!(
                        "Unsupported remote explorer target: {other} (supported: {})",
                        TARGETS.join(", ")
                    ),
                ));
            }
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawRequest {
    target: String,
    #[serde(default)]
    path: Option<String>,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    List,
    Node,
    Download,
}

/// A parsed explorer command.
#[derive(Debug, Clone)]
pub struct ExplorerCommand {
    pub action: Action,
    pub target: Target,
    /// The path as sent (nodes echo it back).
    pub raw_path: String,
}

/// One entry of a listing, exactly the reference's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: Option<u64>,
    pub updated_at: Option<String>,
    pub description: Option<String>,
}

impl Entry {
    /// An entry whose id and path are the same (every reference target).
    pub fn new(
        path: String,
        name: String,
        kind: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Entry {
            id: path.clone(),
            name,
            path,
            kind,
            size: None,
            updated_at: None,
            description: Some(description.into()),
        }
    }
}

/// One MongoDB document in a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MongoDocument {
    pub id: String,
    pub value: serde_json::Value,
}

/// What `remote.explorer.node` returns, exactly the reference's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub path: String,
    pub title: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub content_type: &'static str,
    pub text_content: Option<String>,
    pub mongo_documents: Vec<MongoDocument>,
}

impl Node {
    /// A node with nothing to show (e.g. a bucket, the root).
    pub fn empty(path: &str, title: impl Into<String>, kind: &'static str) -> Self {
        Node {
            path: path.to_owned(),
            title: title.into(),
            kind,
            content_type: "empty",
            text_content: None,
            mongo_documents: Vec::new(),
        }
    }

    pub fn text(path: &str, title: impl Into<String>, kind: &'static str, text: String) -> Self {
        Node {
            path: path.to_owned(),
            title: title.into(),
            kind,
            content_type: "text",
            text_content: Some(text),
            mongo_documents: Vec::new(),
        }
    }
}

/// `path` with leading and trailing slashes removed (the reference's rule).
pub fn normalize(path: &str) -> &str {
    path.trim_matches('/')
}

/// Headers of a download: type, a safe attachment file name, and the
/// length when known.
pub fn download_headers(content_type: &str, file_name: &str, length: Option<u64>) -> Headers {
    let mut h = Headers::new();
    h.insert("content-type".into(), content_type.to_owned());
    let safe: String = file_name
        .chars()
        .map(|c| {
            if c.is_control() || c == '"' || c == '\\' || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let ascii: String = safe
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    let encoded: String = safe
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    h.insert(
        "content-disposition".into(),
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"),
    );
    if let Some(n) = length {
        h.insert("content-length".into(), n.to_string());
    }
    h
}

/// The 503 a handler answers when the store behind a target is not up.
pub fn unavailable(service: &str, ctx: &HandlerContext) -> Reply {
    let state = ctx
        .services
        .view(service)
        .map(|v| {
            let mut s = v.state.as_str().to_owned();
            if let Some(e) = v.last_error {
                s.push_str(": ");
                s.push_str(&e);
            }
            s
        })
        .unwrap_or_else(|| "not configured".into());
    Reply::failure_with_code(
        503,
        "SERVICE_UNAVAILABLE",
        format!("{service} is not available on this cluster ({state})"),
    )
}

/// A stream reply from a boxed body.
pub fn stream(
    headers: Headers,
    body: futures_util::stream::LocalBoxStream<'static, Result<Vec<u8>, String>>,
) -> Reply {
    Reply::Stream(StreamReply {
        status: 200,
        headers,
        body,
    })
}

fn json_reply<T: Serialize>(value: Result<T, Reply>) -> Reply {
    match value {
        Ok(v) => match serde_json::to_value(v) {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::failure(500, format!("cannot encode the result: {e}")),
        },
        Err(reply) => reply,
    }
}

impl ExplorerCommand {
    pub fn parse(name: &str, payload: &serde_json::Value) -> Result<Option<Self>, Reply> {
        let action = match name {
            "remote.explorer.list" => Action::List,
            "remote.explorer.node" => Action::Node,
            "remote.explorer.download" => Action::Download,
            _ => return Ok(None),
        };
        let raw: RawRequest = parse_payload(name, payload)?;
        let target = Target::parse(raw.target.trim())?;
        Ok(Some(ExplorerCommand {
            action,
            target,
            raw_path: raw.path.unwrap_or_default(),
        }))
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, _call: &CallInfo) -> Run {
        let ctx = ctx.clone();
        Run::later(async move {
            let path = self.raw_path.as_str();
            match (self.target, self.action) {
                (Target::Mongo, Action::List) => json_reply(mongo::list(&ctx).await),
                (Target::Mongo, Action::Node) => json_reply(mongo::node(&ctx, path).await),
                (Target::Mongo, Action::Download) => mongo::download(&ctx, path).await,
                (Target::Redis, Action::List) => json_reply(redis::list(&ctx, path).await),
                (Target::Redis, Action::Node) => json_reply(redis::node(&ctx, path).await),
                (Target::Redis, Action::Download) => redis::download(&ctx, path).await,
                (Target::Minio, Action::List) => json_reply(minio::list(&ctx, path).await),
                (Target::Minio, Action::Node) => json_reply(minio::node(&ctx, path).await),
                (Target::Minio, Action::Download) => minio::download(&ctx, path).await,
                (Target::HostFiles, Action::List) => json_reply(host_files::list(&ctx, path).await),
                (Target::HostFiles, Action::Node) => json_reply(host_files::node(&ctx, path).await),
                (Target::HostFiles, Action::Download) => host_files::download(&ctx, path).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_targets_and_keeps_the_raw_path() {
        let c = ExplorerCommand::parse(
            "remote.explorer.node",
            &json!({"target": "redis-data", "path": "/db/0/key/a%2Fb/", "metadata": {}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.target, Target::Redis);
        assert_eq!(c.action, Action::Node);
        assert_eq!(c.raw_path, "/db/0/key/a%2Fb/");
        assert_eq!(normalize(&c.raw_path), "db/0/key/a%2Fb");
        assert!(
            ExplorerCommand::parse("remote.other", &json!({}))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn unsupported_target_is_a_400_listing_the_supported_ones() {
        let Err(Reply::Failure {
            status, message, ..
        }) = ExplorerCommand::parse("remote.explorer.list", &json!({"target": "host-terminal"}))
        else {
            panic!("accepted")
        };
        assert_eq!(status, 400);
        assert!(message.contains("host-terminal"));
        for t in TARGETS {
            assert!(message.contains(t), "{message}");
        }
        let Err(Reply::Failure { status, .. }) =
            ExplorerCommand::parse("remote.explorer.list", &json!({"path": "x"}))
        else {
            panic!("accepted a payload without target")
        };
        assert_eq!(status, 400);
    }

    #[test]
    fn entry_and_node_shapes_match_the_reference() {
        let e = Entry::new("volt-dumps".into(), "volt-dumps".into(), "bucket", "Bucket");
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            json!({"id":"volt-dumps","name":"volt-dumps","path":"volt-dumps","type":"bucket","size":null,"updatedAt":null,"description":"Bucket"})
        );
        assert_eq!(
            serde_json::to_value(Node::empty("/x/", "MinIO", "object")).unwrap(),
            json!({"path":"/x/","title":"MinIO","type":"object","contentType":"empty","textContent":null,"mongoDocuments":[]})
        );
    }

    #[test]
    fn download_headers_are_safe() {
        let h = download_headers("text/plain", "a\"b\n/é.txt", Some(3));
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["content-length"], "3");
        assert_eq!(
            h["content-disposition"],
            "attachment; filename=\"a_b___.txt\"; filename*=UTF-8''a_b__%C3%A9.txt"
        );
    }
}
