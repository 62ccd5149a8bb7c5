//! `object.*`: the cluster's object store (MinIO), as the reference.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `object.upload` | `{bucket, objectKey, content, encoding?:"utf8"\|"base64", metadata?}` | `{uploaded:true}` |
//! | `object.list` | `{bucket, prefix?, limit?, cursor?}` | `{keys:[…]}`: one page of at most 1000 keys under the prefix; a request with `limit`/`cursor` also gets `truncated` and the `cursor` of the next page |
//! | `object.get` | `{bucket, objectKey}` | stream reply with `content-length` and `content-type`; 404 when missing |

use super::context::HandlerContext;
use super::explorer::minio::{bucket, failed, stream_object};
use crate::api::reply::{CallInfo, Reply, Run, parse_payload};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Longest object key S3 accepts (bytes).
const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub bucket: String,
    pub object_key: String,
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
pub struct List {
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Keys per `object.list` call: S3's own per-call maximum.
pub const MAX_LIST_KEYS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Get {
    pub bucket: String,
    pub object_key: String,
}

/// The `object.*` family.
pub enum ObjectCommand {
    Upload(Upload),
    List(List),
    Get(Get),
}

fn check_key(key: &str) -> Result<(), Reply> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Reply::bad_request(format!(
            "objectKey must be 1..{MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

impl ObjectCommand {
    pub fn parse(name: &str, payload: &serde_json::Value) -> Result<Option<Self>, Reply> {
        Ok(Some(match name {
            "object.upload" => {
                let u: Upload = parse_payload(name, payload)?;
                check_key(&u.object_key)?;
                ObjectCommand::Upload(u)
            }
            "object.list" => ObjectCommand::List(parse_payload(name, payload)?),
            "object.get" => {
                let g: Get = parse_payload(name, payload)?;
                check_key(&g.object_key)?;
                ObjectCommand::Get(g)
            }
            _ => return Ok(None),
        }))
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, _call: &CallInfo) -> Run {
        let ctx = ctx.clone();
        Run::later(async move {
            match self {
                ObjectCommand::Upload(u) => upload(&ctx, u).await.unwrap_or_else(|r| r),
                ObjectCommand::List(l) => list(&ctx, l).await.unwrap_or_else(|r| r),
                ObjectCommand::Get(g) => match bucket(&ctx, &g.bucket) {
                    Ok(b) => stream_object(&b, &g.bucket, &g.object_key, false).await,
                    Err(r) => r,
                },
            }
        })
    }
}

async fn upload(ctx: &HandlerContext, u: Upload) -> Result<Reply, Reply> {
    let bytes = match u.encoding {
        Encoding::Utf8 => u.content.into_bytes(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(u.content.trim())
            .map_err(|e| Reply::bad_request(format!("content is not valid base64: {e}")))?,
    };
    let b = bucket(ctx, &u.bucket)?;
    let mut content_type = "application/octet-stream".to_owned();
    let mut meta: Vec<(String, String)> = Vec::new();
    for (k, v) in u.metadata.unwrap_or_default() {
        let v = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if k.eq_ignore_ascii_case("content-type") {
            content_type = v;
        } else {
            meta.push((k, v));
        }
    }
    let mut req = b
        .put_object_builder(&u.object_key, &bytes)
        .with_content_type(&content_type);
    for (k, v) in meta {
        req = req
            .with_metadata(&k, &v)
            .map_err(|e| Reply::bad_request(format!("invalid metadata {k:?}: {e}")))?;
    }
    req.execute().await.map_err(failed)?;
    Ok(Reply::ok(json!({ "uploaded": true })))
}

async fn list(ctx: &HandlerContext, l: List) -> Result<Reply, Reply> {
    let page = super::explorer::Page {
        limit: l.limit,
        cursor: l.cursor.clone(),
    };
    let limit = page
        .limit_or(MAX_LIST_KEYS, MAX_LIST_KEYS)
        .map_err(|f| f.into_reply())?;
    let b = bucket(ctx, &l.bucket)?;
    let (result, _) = b
        .list_page(
            l.prefix.unwrap_or_default(),
            None,
            l.cursor,
            None,
            Some(limit),
        )
        .await
        .map_err(|e| match super::explorer::minio::s3_status(&e) {
            Some(404) => Reply::not_found(format!("Bucket not found: {}", l.bucket)),
            _ => failed(e),
        })?;
    let keys: Vec<String> = result.contents.into_iter().map(|o| o.key).collect();
    let next = result
        .next_continuation_token
        .filter(|_| result.is_truncated);
    if page.paged() {
        return Ok(Reply::ok(
            json!({ "keys": keys, "truncated": next.is_some(), "cursor": next }),
        ));
    }
    if next.is_some() {
        tracing::warn!(bucket = %l.bucket, keys = keys.len(), "object.list answered one page only; the server did not ask for pages (limit/cursor).");
    }
    Ok(Reply::ok(json!({ "keys": keys })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_validated() {
        assert!(matches!(
            ObjectCommand::parse(
                "object.upload",
                &json!({"bucket": "b", "objectKey": "k", "content": "aGk=", "encoding": "base64"})
            ),
            Ok(Some(ObjectCommand::Upload(Upload {
                encoding: Encoding::Base64,
                ..
            })))
        ));
        for bad in [
            json!({"bucket": "b", "objectKey": "", "content": "x"}),
            json!({"bucket": "b", "objectKey": "k", "content": "x", "encoding": "hex"}),
            json!({"objectKey": "k", "content": "x"}),
        ] {
            assert!(
                ObjectCommand::parse("object.upload", &bad).is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            ObjectCommand::parse("object.list", &json!({"bucket": "b"})),
            Ok(Some(_))
        ));
        assert!(ObjectCommand::parse("object.get", &json!({"bucket": "b"})).is_err());
        assert!(matches!(
            ObjectCommand::parse("object.nope", &json!({})),
            Ok(None)
        ));
    }
}
