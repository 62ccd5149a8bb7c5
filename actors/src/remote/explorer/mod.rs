//! `remote.explorer.*`: browse the cluster's data from VOLT's web UI.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `remote.explorer.list` | `{target, path, limit?, cursor?}` | `[{id, name, path, type, size, updatedAt, description}]`; with `limit`/`cursor`: `{entries, truncated, cursor}` ([`Listing`]) |
//! | `remote.explorer.node` | `{target, path}` | `{path, title, type, contentType, textContent, mongoDocuments}` |
//! | `remote.explorer.download` (voltd; the reference lacks it) | `{target, path}` | stream reply of the value with `content-type` and `content-disposition` |
//! | `remote.explorer.stat` | `{target:"host-files", path}` | `{…entry, mode, readOnly}` |
//! | `remote.explorer.mkdir` | `{target:"host-files", path}` | `{created, path}` |
//! | `remote.explorer.rename` | `{target:"host-files", path, to, overwrite?}` | `{renamed, from, to}` |
//! | `remote.explorer.delete` | `{target:"host-files", path, recursive?}` | `{deleted, path, type, removed}` |
//! | `remote.explorer.upload.begin` | `{target:"host-files", path, size?, overwrite?}` | `{uploadId, received, maxChunkBytes}` |
//! | `remote.explorer.upload.chunk` | `{uploadId, offset, chunkBase64}` | `{uploadId, received}` |
//! | `remote.explorer.upload.commit` | `{uploadId, sha256?}` | `{uploaded, path, size, sha256}` |
//! | `remote.explorer.upload.abort` | `{uploadId}` | `{aborted, uploadId}` |
//!
//! Listings are bounded per call: a page of at most `limit` entries (each
//! target's default when none is asked for) and a `cursor` to go on from.
//! The file manager commands (stat … upload) work on `host-files` only.
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
pub mod shapes;

pub use shapes::{
    Entry, Fail, Listing, MongoDocument, Node, Page, download_headers, normalize, stream,
};

use crate::api::reply::{CallInfo, Reply, Run, parse_payload};
use crate::remote::context::HandlerContext;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

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
#[serde(rename_all = "camelCase")]
struct RawRequest {
    target: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChange {
    target: String,
    path: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChunk {
    upload_id: String,
    offset: u64,
    chunk_base64: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUploadEnd {
    upload_id: String,
    #[serde(default)]
    sha256: Option<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List(Page),
    Node,
    Download,
    /// The file manager (`host-files` only).
    Change(host_files::Change),
}

/// A parsed explorer command.
#[derive(Debug, Clone)]
pub struct ExplorerCommand {
    pub action: Action,
    pub target: Target,
    /// The path as sent (nodes echo it back).
    pub raw_path: String,
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

fn json_reply<T: Serialize>(value: Result<T, Reply>) -> Reply {
    match value {
        Ok(v) => match serde_json::to_value(v) {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::failure(500, format!("cannot encode the result: {e}")),
        },
        Err(reply) => reply,
    }
}

/// The commands only `host-files` has (the file manager).
pub const HOST_FILES_ONLY: [&str; 8] = [
    "remote.explorer.stat",
    "remote.explorer.mkdir",
    "remote.explorer.rename",
    "remote.explorer.delete",
    "remote.explorer.upload.begin",
    "remote.explorer.upload.chunk",
    "remote.explorer.upload.commit",
    "remote.explorer.upload.abort",
];

fn host_files_only(name: &str, target: Target) -> Result<(), Reply> {
    if target == Target::HostFiles {
        return Ok(());
    }
    Err(Reply::failure_with_code(
        400,
        "EXPLORER_OPERATION_UNSUPPORTED",
        format!("{name} works on the host-files target only"),
    ))
}

impl ExplorerCommand {
    pub fn parse(name: &str, payload: &serde_json::Value) -> Result<Option<Self>, Reply> {
        use base64::Engine as _;
        use host_files::Change;
        let simple = |action: Action| -> Result<Option<Self>, Reply> {
            let raw: RawRequest = parse_payload(name, payload)?;
            let target = Target::parse(raw.target.trim())?;
            let action = match action {
                Action::List(_) => Action::List(Page {
                    limit: raw.limit,
                    cursor: raw.cursor,
                }),
                other => other,
            };
            Ok(Some(ExplorerCommand {
                action,
                target,
                raw_path: raw.path.unwrap_or_default(),
            }))
        };
        let change = |make: &dyn Fn(&RawChange) -> Result<Change, Reply>| {
            let raw: RawChange = parse_payload(name, payload)?;
            let target = Target::parse(raw.target.trim())?;
            host_files_only(name, target)?;
            Ok(Some(ExplorerCommand {
                action: Action::Change(make(&raw)?),
                target,
                raw_path: raw.path.clone(),
            }))
        };
        let upload = |change: Change| {
            Ok(Some(ExplorerCommand {
                action: Action::Change(change),
                target: Target::HostFiles,
                raw_path: String::new(),
            }))
        };
        match name {
            "remote.explorer.list" => simple(Action::List(Page::default())),
            "remote.explorer.node" => simple(Action::Node),
            "remote.explorer.download" => simple(Action::Download),
            "remote.explorer.stat" => change(&|_| Ok(Change::Stat)),
            "remote.explorer.mkdir" => change(&|_| Ok(Change::Mkdir)),
            "remote.explorer.rename" => change(&|r| match &r.to {
                Some(to) => Ok(Change::Rename {
                    to: to.clone(),
                    overwrite: r.overwrite,
                }),
                None => Err(Reply::bad_request(format!(
                    "Invalid payload for {name}: missing field `to`"
                ))),
            }),
            "remote.explorer.delete" => change(&|r| {
                Ok(Change::Delete {
                    recursive: r.recursive,
                })
            }),
            "remote.explorer.upload.begin" => change(&|r| {
                Ok(Change::UploadBegin {
                    size: r.size,
                    overwrite: r.overwrite,
                })
            }),
            "remote.explorer.upload.chunk" => {
                let raw: RawChunk = parse_payload(name, payload)?;
                if raw.chunk_base64.len() > host_files::uploads::MAX_CHUNK_BYTES / 3 * 4 + 4 {
                    return Err(Reply::failure_with_code(
                        413,
                        "CHUNK_TOO_LARGE",
                        format!(
                            "chunkBase64 is {} characters; a chunk may carry at most {} bytes",
                            raw.chunk_base64.len(),
                            host_files::uploads::MAX_CHUNK_BYTES
                        ),
                    ));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw.chunk_base64.trim())
                    .map_err(|e| {
                        Reply::bad_request(format!("chunkBase64 is not valid base64: {e}"))
                    })?;
                upload(Change::UploadChunk {
                    upload_id: raw.upload_id,
                    offset: raw.offset,
                    bytes,
                })
            }
            "remote.explorer.upload.commit" => {
                let raw: RawUploadEnd = parse_payload(name, payload)?;
                upload(Change::UploadCommit {
                    upload_id: raw.upload_id,
                    sha256: raw.sha256,
                })
            }
            "remote.explorer.upload.abort" => {
                let raw: RawUploadEnd = parse_payload(name, payload)?;
                upload(Change::UploadAbort {
                    upload_id: raw.upload_id,
                })
            }
            _ => Ok(None),
        }
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, _call: &CallInfo) -> Run {
        let ctx = ctx.clone();
        Run::later(async move {
            let path = self.raw_path.as_str();
            match (self.target, self.action) {
                (Target::Mongo, Action::List(page)) => {
                    listing(mongo::list(&ctx, &page).await, &page, path)
                }
                (Target::Mongo, Action::Node) => json_reply(mongo::node(&ctx, path).await),
                (Target::Mongo, Action::Download) => mongo::download(&ctx, path).await,
                (Target::Redis, Action::List(page)) => {
                    listing(redis::list(&ctx, path, &page).await, &page, path)
                }
                (Target::Redis, Action::Node) => json_reply(redis::node(&ctx, path).await),
                (Target::Redis, Action::Download) => redis::download(&ctx, path).await,
                (Target::Minio, Action::List(page)) => {
                    listing(minio::list(&ctx, path, &page).await, &page, path)
                }
                (Target::Minio, Action::Node) => json_reply(minio::node(&ctx, path).await),
                (Target::Minio, Action::Download) => minio::download(&ctx, path).await,
                (Target::HostFiles, Action::List(page)) => {
                    let roots = &ctx.settings.host_files.roots;
                    listing(host_files::list(roots, path, &page).await, &page, path)
                }
                (Target::HostFiles, Action::Node) => {
                    json_reply(host_files::node(&ctx.settings.host_files.roots, path).await)
                }
                (Target::HostFiles, Action::Download) => {
                    host_files::download(&ctx.settings.host_files.roots, path).await
                }
                (Target::HostFiles, Action::Change(change)) => {
                    let roots = &ctx.settings.host_files.roots;
                    json_reply(
                        host_files::change(roots, &ctx.host_files.uploads, path, change).await,
                    )
                }
                (_, Action::Change(_)) => Reply::failure_with_code(
                    400,
                    "EXPLORER_OPERATION_UNSUPPORTED",
                    "this operation works on the host-files target only",
                ),
            }
        })
    }
}

fn listing(result: Result<Listing, Reply>, page: &Page, path: &str) -> Reply {
    match result {
        Ok(l) => Reply::ok(l.into_value(page, path)),
        Err(r) => r,
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
