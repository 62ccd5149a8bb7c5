//! `minio`: buckets, prefixes and objects of the cluster's object store.
//!
//! Paths: `` (buckets), `<bucket>` or `<bucket>/<prefix>` (immediate
//! children: prefixes as `directory`, objects as `object`, sorted by name;
//! one S3 page of at most [`MAX_PAGE`] per call, a `cursor` — the S3
//! continuation token — goes on), `<bucket>/<key>` for a node (the first
//! 64 KiB as UTF-8 text, by range; a bucket alone is an `empty` node).
//! Downloads stream the whole object, never buffering it.

use super::{Entry, Listing, Node, Page, download_headers, normalize, stream, unavailable};
use crate::api::reply::Reply;
use crate::remote::context::HandlerContext;
use futures_util::StreamExt;
use s3::Bucket;
use s3::error::S3Error;
use s3::request::Request as _;

/// Bytes of an object shown in a node (the reference's limit).
pub const MAX_PREVIEW_BYTES: u64 = 65_536;
/// Keys per listing page: S3's own per-call maximum.
pub const MAX_PAGE: usize = 1000;

/// The S3 error status, if the server answered one.
pub fn s3_status(e: &S3Error) -> Option<u16> {
    match e {
        S3Error::HttpFailWithBody(status, _) => Some(*status),
        _ => None,
    }
}

pub(crate) fn failed(e: S3Error) -> Reply {
    match s3_status(&e) {
        Some(404) => Reply::not_found("Not found in the object store"),
        Some(403) => Reply::failure_with_code(
            502,
            "S3_FORBIDDEN",
            "The object store refused voltd's credentials",
        ),
        _ => Reply::failure_with_code(502, "S3_ERROR", format!("Object store: {e}")),
    }
}

pub(crate) fn bucket(ctx: &HandlerContext, name: &str) -> Result<Box<Bucket>, Reply> {
    let registry = &ctx.services;
    match registry.s3_bucket(name) {
        Some(b) => Ok(b),
        // Distinguish "MinIO down" from "bad bucket name".
        None if registry.s3_bucket("volt-dumps").is_some() => {
            Err(Reply::bad_request(format!("Invalid bucket name: {name:?}")))
        }
        None => Err(unavailable("minio", ctx)),
    }
}

/// Names between `<Name>` tags inside `<Bucket>` elements of a
/// ListAllMyBucketsResult (parsed leniently: s3s-fs omits `<Owner>`, which
/// rust-s3's typed parser requires).
pub fn parse_bucket_names(xml: &str) -> Vec<String> {
    let mut names = Vec::new();
    for part in xml.split("<Bucket>").skip(1) {
        let Some(body) = part.split("</Bucket>").next() else {
            continue;
        };
        if let Some(name) = body
            .split_once("<Name>")
            .and_then(|(_, rest)| rest.split_once("</Name>"))
            .map(|(n, _)| n.trim())
        {
            names.push(xml_unescape(name));
        }
    }
    names.sort();
    names
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn bucket_names(ctx: &HandlerContext) -> Result<Vec<String>, Reply> {
    // Any bucket handle carries the endpoint and credentials; an empty name
    // with path style addresses the service root (ListBuckets).
    let mut root = bucket(ctx, "volt-dumps")?;
    root.name = String::new();
    let request = s3::request::tokio_backend::ReqwestRequest::new(
        &root,
        "",
        s3::command::Command::ListBuckets,
    )
    .await
    .map_err(failed)?;
    let data = request.response_data(false).await.map_err(failed)?;
    let xml = String::from_utf8_lossy(data.as_slice());
    Ok(parse_bucket_names(&xml))
}

pub async fn list(ctx: &HandlerContext, path: &str, page: &Page) -> Result<Listing, Reply> {
    let norm = normalize(path);
    if norm.is_empty() {
        return Ok(Listing::whole(
            bucket_names(ctx)
                .await?
                .into_iter()
                .map(|b| Entry::new(b.clone(), b, "bucket", "Bucket"))
                .collect(),
        ));
    }
    let limit = page
        .limit_or(MAX_PAGE, MAX_PAGE)
        .map_err(|f| f.into_reply())?;
    let (bucket_name, prefix) = norm.split_once('/').unwrap_or((norm, ""));
    let prefix = prefix.trim_end_matches('/');
    let effective = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let b = bucket(ctx, bucket_name)?;
    let (result, _) = b
        .list_page(
            effective.clone(),
            Some("/".to_owned()),
            page.cursor.clone(),
            None,
            Some(limit),
        )
        .await
        .map_err(failed)?;
    let mut entries = Vec::new();
    for cp in result.common_prefixes.unwrap_or_default() {
        let rest = cp.prefix.strip_prefix(&effective).unwrap_or(&cp.prefix);
        let name = rest.trim_end_matches('/').to_owned();
        if name.is_empty() {
            continue;
        }
        let p = format!("{bucket_name}/{effective}{name}");
        entries.push(Entry::new(p, name, "directory", "Directory"));
    }
    for obj in result.contents {
        let name = obj
            .key
            .strip_prefix(&effective)
            .unwrap_or(&obj.key)
            .to_owned();
        if name.is_empty() {
            continue;
        }
        let p = format!("{bucket_name}/{effective}{name}");
        entries.push(Entry::new(p, name, "object", "Object"));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries.dedup_by(|a, b| a.path == b.path);
    let cursor = result
        .next_continuation_token
        .filter(|_| result.is_truncated);
    Ok(Listing {
        entries,
        truncated: cursor.is_some(),
        cursor,
    })
}

pub async fn node(ctx: &HandlerContext, path: &str) -> Result<Node, Reply> {
    let norm = normalize(path);
    let (bucket_name, key) = norm.split_once('/').unwrap_or((norm, ""));
    if bucket_name.is_empty() || key.is_empty() {
        let title = if bucket_name.is_empty() {
            "MinIO"
        } else {
            bucket_name
        };
        return Ok(Node::empty(path, title, "object"));
    }
    let b = bucket(ctx, bucket_name)?;
    let data = b
        .get_object_range(key, 0, Some(MAX_PREVIEW_BYTES - 1))
        .await
        .map_err(|e| match s3_status(&e) {
            Some(404) => Reply::not_found(format!("Object not found: {bucket_name}/{key}")),
            // An empty object has no satisfiable range.
            _ => failed(e),
        });
    let bytes = match data {
        Ok(d) => d.bytes().to_vec(),
        Err(refused @ Reply::Failure { status: 502, .. }) => {
            // Some servers refuse ranges on empty objects (416): an empty
            // object is empty text; anything else keeps the error (never
            // a read of the whole object).
            match b.head_object(key).await {
                Ok((head, _)) if head.content_length == Some(0) => Vec::new(),
                _ => return Err(refused),
            }
        }
        Err(r) => return Err(r),
    };
    let end = bytes.len().min(MAX_PREVIEW_BYTES as usize);
    Ok(Node::text(
        path,
        key,
        "object",
        String::from_utf8_lossy(&bytes[..end]).into_owned(),
    ))
}

/// Streams one object with its length and type (shared with `object.get`).
pub async fn stream_object(b: &Bucket, bucket_name: &str, key: &str, attachment: bool) -> Reply {
    let head = match b.head_object(key).await {
        Ok((head, _)) => head,
        Err(e) if s3_status(&e) == Some(404) => {
            return Reply::not_found(format!("Object not found: {bucket_name}/{key}"));
        }
        Err(e) => return failed(e),
    };
    let length = head.content_length.and_then(|n| u64::try_from(n).ok());
    let ctype = head
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let data = match b.get_object_stream(key).await {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let body = data.bytes.map(|r| {
        r.map(|b| b.to_vec())
            .map_err(|e| format!("object store: {e}"))
    });
    let file_name = key.rsplit('/').next().unwrap_or(key);
    let headers = if attachment {
        download_headers(&ctype, file_name, length)
    } else {
        let mut h = volt_protocol::envelope::Headers::new();
        h.insert("content-type".into(), ctype);
        if let Some(n) = length {
            h.insert("content-length".into(), n.to_string());
        }
        h
    };
    stream(headers, body.boxed_local())
}

pub async fn download(ctx: &HandlerContext, path: &str) -> Reply {
    let norm = normalize(path);
    let Some((bucket_name, key)) = norm.split_once('/').filter(|(_, k)| !k.is_empty()) else {
        return Reply::bad_request("download needs an object: path must be <bucket>/<key>");
    };
    match bucket(ctx, bucket_name) {
        Ok(b) => stream_object(&b, bucket_name, key, true).await,
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_parse_with_or_without_owner() {
        let with_owner = "<?xml version=\"1.0\"?><ListAllMyBucketsResult><Owner><ID>x</ID></Owner><Buckets><Bucket><Name>volt-models</Name><CreationDate>t</CreationDate></Bucket><Bucket><Name>a&amp;b</Name></Bucket></Buckets></ListAllMyBucketsResult>";
        assert_eq!(parse_bucket_names(with_owner), vec!["a&b", "volt-models"]);
        let s3s = "<ListAllMyBucketsResult><Buckets><Bucket><CreationDate>t</CreationDate><Name>volt-dumps</Name></Bucket></Buckets></ListAllMyBucketsResult>";
        assert_eq!(parse_bucket_names(s3s), vec!["volt-dumps"]);
        assert!(parse_bucket_names("garbage").is_empty());
    }
}
