//! Person-facing remote access over HTTP: the explorers
//! (`remote.explorer.list` / `.node` / `.download`), the host file manager
//! (`remote.explorer.stat` / `.mkdir` / `.rename` / `.delete` /
//! `.upload.*`) and the object store (`object.list` / `.upload` / `.get`),
//! each route one daemon command — an upload is one HTTP request that
//! becomes `upload.begin`, a `upload.chunk` per packet-sized piece, then
//! `upload.commit` (or `upload.abort` when anything fails).
//!
//! JSON replies use the API's envelope (`{status:"success", data}`). A
//! daemon failure (`ok:false, status, message`) becomes that HTTP status
//! with `{status:"error", code, message}`, `code` being the daemon's
//! `data.code` or `TeamCluster::DaemonRequestFailed`.
//!
//! Downloads are streamed: the daemon's status and content headers go out
//! as soon as its stream opens, then every chunk as it arrives. A
//! `stream-end` with a message (or a lost daemon, or a client too slow for
//! the bounded buffer) aborts the body, so the client sees a failed
//! transfer — never a silently short file.

use crate::Plane;
use crate::error::PlaneError;
use crate::http::{ApiError, ApiResult, success};
use crate::reverse_channel::DaemonStream;
use crate::socket::MAX_PAYLOAD;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Room left in the 1 MB socket packet for everything of an `object.upload`
/// command but the base64 content: the envelope (~200 bytes), the bucket
/// (≤ 63) and the key (S3 keys are ≤ 1 024 bytes, ≤ 6 144 once JSON-escaped),
/// with a wide margin.
const UPLOAD_FRAME_HEADROOM: usize = 40_000;
/// Largest object body `PUT …/objects/{bucket}/{key}` accepts (720 000
/// bytes). The body travels base64-encoded (4 bytes per 3) inside one
/// `object.upload` command, and one socket.io packet may carry at most
/// [`MAX_PAYLOAD`] bytes; larger bodies get 413.
pub const MAX_OBJECT_UPLOAD_BYTES: usize = (MAX_PAYLOAD as usize - UPLOAD_FRAME_HEADROOM) / 4 * 3;

pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new()
        .route(
            "/api/clusters/{id}/explorer/{target}/entries",
            get(explorer_entries).delete(explorer_delete),
        )
        .route(
            "/api/clusters/{id}/explorer/{target}/stat",
            get(explorer_stat),
        )
        .route(
            "/api/clusters/{id}/explorer/{target}/mkdir",
            post(explorer_mkdir),
        )
        .route(
            "/api/clusters/{id}/explorer/{target}/rename",
            post(explorer_rename),
        )
        .route(
            "/api/clusters/{id}/explorer/{target}/upload",
            put(explorer_upload),
        )
        .route(
            "/api/clusters/{id}/explorer/{target}/node",
            get(explorer_node),
        )
        .route(
            "/api/clusters/{id}/explorer/{target}/download",
            get(explorer_download),
        )
        .route("/api/clusters/{id}/objects/{bucket}", get(list_objects))
        .route(
            "/api/clusters/{id}/objects/{bucket}/{*key}",
            get(get_object).put(put_object),
        )
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError(PlaneError::InvalidInput(format!("Invalid query: {e}"))))
}

#[derive(Deserialize)]
struct PathQuery {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    cursor: Option<String>,
}

fn explorer_payload(target: &str, q: PathQuery) -> Value {
    let mut payload = json!({ "target": target, "path": q.path.unwrap_or_default() });
    if let Some(limit) = q.limit {
        payload["limit"] = json!(limit);
    }
    if let Some(cursor) = q.cursor {
        payload["cursor"] = json!(cursor);
    }
    payload
}

/// `GET /api/clusters/{id}/explorer/{target}/entries?path=…[&limit=N][&cursor=C]`:
/// the entries under `path` (`remote.explorer.list`); no `path` lists the
/// root. Targets: `mongo-documents`, `redis-data`, `minio`, `host-files`
/// (the daemon answers 400 with the supported list for anything else).
/// With `limit` or `cursor` the answer is one page, `{entries, truncated,
/// cursor}`: ask again with that `cursor` while `truncated` is true.
///
/// ```text
/// curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/minio/entries?path=volt-dumps/2024"
/// curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/entries?path=data&limit=100"
/// ```
async fn explorer_entries(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> ApiResult {
    explorer_json(&plane, &id, &target, q, "remote.explorer.list").await
}

/// Forwards a JSON explorer command and returns the daemon's data.
async fn explorer_json(
    plane: &Plane,
    id: &str,
    target: &str,
    q: Result<Query<PathQuery>, QueryRejection>,
    command: &str,
) -> ApiResult {
    let payload = explorer_payload(target, query(q)?);
    let (_, data) = plane.request(id, command, &payload, None).await?;
    success(StatusCode::OK, data)
}

/// `GET /api/clusters/{id}/explorer/{target}/node?path=…`: one node — a
/// collection's first documents, a Redis value, an object's or file's
/// head — as `{path, title, type, contentType, textContent,
/// mongoDocuments}` (`remote.explorer.node`).
///
/// ```text
/// curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/mongo-documents/node?path=analyses"
/// curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/node?path=home/notes.txt"
/// ```
async fn explorer_node(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> ApiResult {
    explorer_json(&plane, &id, &target, q, "remote.explorer.node").await
}

/// `GET /api/clusters/{id}/explorer/{target}/download?path=…`: the whole
/// value, object, file or collection export, streamed with the daemon's
/// status, `content-type`, `content-disposition` and `content-length`
/// (`remote.explorer.download`). A failure mid-transfer aborts the body
/// (curl exits non-zero, e.g. 18 "transfer closed with outstanding read
/// data remaining"); `-J -O` keeps the daemon's file name.
///
/// ```text
/// curl -fsS -J -O "http://127.0.0.1:8080/api/clusters/$ID/explorer/minio/download?path=volt-dumps/a.bin"
/// ```
async fn explorer_download(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> ApiResult {
    let payload = explorer_payload(&target, query(q)?);
    let stream = plane
        .open_stream(&id, "remote.explorer.download", &payload, None)
        .await?;
    Ok(stream_response(stream))
}

#[derive(Deserialize)]
struct ChangeQuery {
    path: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    overwrite: bool,
}

/// Sends one file manager command and returns the daemon's data.
async fn change(
    plane: &Plane,
    id: &str,
    command: &str,
    payload: Value,
    created: bool,
) -> ApiResult {
    let (_, data) = plane.request(id, command, &payload, None).await?;
    success(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        data,
    )
}

/// `GET /api/clusters/{id}/explorer/host-files/stat?path=…`: one entry
/// with its `mode` and whether its root is writable (`remote.explorer.stat`).
///
/// ```text
/// curl -s "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/stat?path=data/runs/log.txt"
/// ```
async fn explorer_stat(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<ChangeQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let payload = json!({ "target": target, "path": q.path });
    change(&plane, &id, "remote.explorer.stat", payload, false).await
}

/// `POST /api/clusters/{id}/explorer/host-files/mkdir?path=…`: a new
/// directory in a writable root (`remote.explorer.mkdir`); 201.
///
/// ```text
/// curl -s -X POST "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/mkdir?path=data/new"
/// ```
async fn explorer_mkdir(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<ChangeQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let payload = json!({ "target": target, "path": q.path });
    change(&plane, &id, "remote.explorer.mkdir", payload, true).await
}

/// `POST /api/clusters/{id}/explorer/host-files/rename?path=…&to=…[&overwrite=true]`:
/// renames or moves within one root (`remote.explorer.rename`); an
/// existing destination is a 409 unless `overwrite=true`.
///
/// ```text
/// curl -s -X POST "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/rename?path=data/a.txt&to=data/old/a.txt"
/// ```
async fn explorer_rename(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<ChangeQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let Some(to) = q.to else {
        return Err(ApiError(PlaneError::InvalidInput(
            "Invalid query: missing field `to`".into(),
        )));
    };
    let payload = json!({ "target": target, "path": q.path, "to": to, "overwrite": q.overwrite });
    change(&plane, &id, "remote.explorer.rename", payload, false).await
}

/// `DELETE /api/clusters/{id}/explorer/host-files/entries?path=…[&recursive=true]`:
/// deletes a file or symlink, or a directory — only an empty one unless
/// `recursive=true` (`remote.explorer.delete`).
///
/// ```text
/// curl -s -X DELETE "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/entries?path=data/old&recursive=true"
/// ```
async fn explorer_delete(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<ChangeQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let payload = json!({ "target": target, "path": q.path, "recursive": q.recursive });
    change(&plane, &id, "remote.explorer.delete", payload, false).await
}

/// Raw bytes per `remote.explorer.upload.chunk`: one socket.io packet
/// carries the base64 (as for `object.upload`).
pub const UPLOAD_CHUNK_BYTES: usize = MAX_OBJECT_UPLOAD_BYTES;

/// `PUT /api/clusters/{id}/explorer/host-files/upload?path=…[&overwrite=true]`:
/// stores the raw request body, of any size, at `path` in a writable root.
/// The body is streamed to the daemon in packet-sized chunks
/// (`remote.explorer.upload.begin`, `.chunk`…, `.commit` with the SHA-256
/// the plane computed); the file appears only once complete, and a
/// request cut short (or any failure) aborts the upload, leaving nothing.
/// An existing file is a 409 unless `overwrite=true`. 201 with `{uploaded,
/// path, size, sha256}`.
///
/// ```text
/// curl -sS -X PUT -T results.tar.gz \
///   "http://127.0.0.1:8080/api/clusters/$ID/explorer/host-files/upload?path=data/results.tar.gz"
/// ```
async fn explorer_upload(
    State(plane): State<Arc<Plane>>,
    Path((id, target)): Path<(String, String)>,
    q: Result<Query<ChangeQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    use sha2::{Digest, Sha256};
    let q = query(q)?;
    let size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut begin = json!({ "target": target, "path": q.path, "overwrite": q.overwrite });
    if let Some(size) = size {
        begin["size"] = json!(size);
    }
    let (_, started) = plane
        .request(&id, "remote.explorer.upload.begin", &begin, None)
        .await?;
    let Some(upload_id) = started["uploadId"].as_str().map(str::to_owned) else {
        return Err(ApiError(PlaneError::Internal(
            "the daemon's upload.begin answer has no uploadId".into(),
        )));
    };
    let abort = |plane: Arc<Plane>, id: String, upload_id: String| async move {
        let payload = json!({ "uploadId": upload_id });
        let _ = plane
            .request(&id, "remote.explorer.upload.abort", &payload, None)
            .await;
    };
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::with_capacity(UPLOAD_CHUNK_BYTES);
    let mut offset: u64 = 0;
    let mut hasher = Sha256::new();
    let mut finished = false;
    while !finished {
        match stream.next().await {
            Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
            Some(Err(e)) => {
                abort(plane.clone(), id.clone(), upload_id.clone()).await;
                return Err(ApiError(PlaneError::InvalidInput(format!(
                    "The request body broke off after {offset} bytes: {e}; nothing was stored"
                ))));
            }
            None => finished = true,
        }
        while pending.len() >= UPLOAD_CHUNK_BYTES || (finished && !pending.is_empty()) {
            let take = pending.len().min(UPLOAD_CHUNK_BYTES);
            let piece: Vec<u8> = pending.drain(..take).collect();
            hasher.update(&piece);
            let payload = json!({
                "uploadId": upload_id,
                "offset": offset,
                "chunkBase64": base64::engine::general_purpose::STANDARD.encode(&piece),
            });
            if let Err(e) = plane
                .request(&id, "remote.explorer.upload.chunk", &payload, None)
                .await
            {
                abort(plane.clone(), id.clone(), upload_id.clone()).await;
                return Err(ApiError(e));
            }
            offset += piece.len() as u64;
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let commit = json!({ "uploadId": upload_id, "sha256": digest });
    let (_, data) = plane
        .request(&id, "remote.explorer.upload.commit", &commit, None)
        .await?;
    tracing::info!(cluster_id = %id, size = offset, "Host file uploaded.");
    success(StatusCode::CREATED, data)
}

#[derive(Deserialize)]
struct PrefixQuery {
    #[serde(default)]
    prefix: Option<String>,
}

/// `GET /api/clusters/{id}/objects/{bucket}?prefix=…`: the object keys of a
/// bucket, `{keys:[…]}` (`object.list`).
///
/// ```text
/// curl -s "http://127.0.0.1:8080/api/clusters/$ID/objects/volt-dumps?prefix=2024/"
/// ```
async fn list_objects(
    State(plane): State<Arc<Plane>>,
    Path((id, bucket)): Path<(String, String)>,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> ApiResult {
    let mut payload = json!({ "bucket": bucket });
    if let Some(prefix) = query(q)?.prefix {
        payload["prefix"] = Value::String(prefix);
    }
    let (_, data) = plane.request(&id, "object.list", &payload, None).await?;
    success(StatusCode::OK, data)
}

fn upload_too_large(detail: &str) -> ApiError {
    ApiError(PlaneError::PayloadTooLarge(format!(
        "{detail}; object uploads through volt-plane are limited to {MAX_OBJECT_UPLOAD_BYTES} bytes, because the base64 body must fit in one {MAX_PAYLOAD}-byte socket.io packet (maxPayload)"
    )))
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError(PlaneError::InvalidInput(format!(
                "Cannot read the request body: {e}"
            )))
        })?;
        if out.len() + chunk.len() > limit {
            return Err(upload_too_large("The object body is larger than that"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `PUT /api/clusters/{id}/objects/{bucket}/{key}`: stores the raw request
/// body (any bytes; sent base64-encoded) under `key` — everything after the
/// bucket, slashes included; percent-encode spaces and the like
/// (`object.upload`). Bodies over [`MAX_OBJECT_UPLOAD_BYTES`] get 413.
///
/// ```text
/// curl -s -X PUT --data-binary @report.pdf \
///   "http://127.0.0.1:8080/api/clusters/$ID/objects/volt-dumps/2024/my%20report.pdf"
/// ```
async fn put_object(
    State(plane): State<Arc<Plane>>,
    Path((id, bucket, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared
        && len > MAX_OBJECT_UPLOAD_BYTES as u64
    {
        return Err(upload_too_large(&format!("The object body is {len} bytes")));
    }
    let bytes = read_body(body, MAX_OBJECT_UPLOAD_BYTES).await?;
    let size = bytes.len();
    let payload = json!({
        "bucket": bucket,
        "objectKey": key,
        "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "encoding": "base64",
    });
    drop(bytes);
    let (status, data) = plane
        .request(&id, "object.upload", &payload, None)
        .await
        .map_err(|e| match e {
            PlaneError::PayloadTooLarge(m) => upload_too_large(&m),
            e => ApiError(e),
        })?;
    tracing::info!(cluster_id = %id, %bucket, %key, size, "Object uploaded.");
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(StatusCode::is_success)
        .unwrap_or(StatusCode::OK);
    success(status, data)
}

/// `GET /api/clusters/{id}/objects/{bucket}/{key}`: the object's bytes,
/// streamed with its `content-type` and `content-length` (`object.get`); a
/// missing object is 404.
///
/// ```text
/// curl -fsS -o report.pdf "http://127.0.0.1:8080/api/clusters/$ID/objects/volt-dumps/2024/my%20report.pdf"
/// ```
async fn get_object(
    State(plane): State<Arc<Plane>>,
    Path((id, bucket, key)): Path<(String, String, String)>,
) -> ApiResult {
    let payload = json!({ "bucket": bucket, "objectKey": key });
    let stream = plane.open_stream(&id, "object.get", &payload, None).await?;
    Ok(stream_response(stream))
}

/// The daemon's stream as an HTTP response: its status, its content
/// headers, and a body that yields each chunk as it arrives and fails (so
/// the connection is cut) when the stream fails.
pub(crate) fn stream_response(stream: DaemonStream) -> Response {
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
        if let Some(v) = stream.header(name.as_str())
            && let Ok(v) = HeaderValue::from_str(v)
        {
            headers.insert(name, v);
        }
    }
    // Passed on only when it is a number; hyper then checks the body
    // against it, so a short stream cannot pass for a whole one.
    if let Some(len) = stream
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    let status = StatusCode::from_u16(stream.status()).unwrap_or(StatusCode::OK);
    let body = Body::from_stream(stream.into_stream().map_ok(Bytes::from));
    (status, headers, body).into_response()
}
