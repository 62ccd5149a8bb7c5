//! HTTP routes. Two groups:
//!
//! * the daemon/installer-facing reference routes
//!   (`/api/team-clusters/{id}/healthcheck`, `…/install-manifest`), wire
//!   compatible with the VOLT server (the installer's own files, the Gen A
//!   HTTP lifecycle route and `/downloads/` are in `installer_http` and
//!   `releases`);
//! * volt-plane's own person-facing API under `/api/clusters` (remote
//!   access — explorers, objects — lives in `remote_http`, the terminal
//!   WebSocket in `terminal`).
//!
//! Every success is `{status:"success", data}`; every error is
//! `{status:"error", code, message}` with a proper status. Bodies are parsed
//! here (not by axum's `Json` extractor) so malformed JSON gets the same
//! error envelope as everything else.

use crate::Plane;
use crate::error::PlaneError;
use crate::manifest;
use crate::plane::{CreateClusterRequest, DeleteOutcome, ListQuery};
use crate::reverse_channel::DaemonReply;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use volt_protocol::enrollment::{ApiSuccess, HealthcheckRequest, InstallManifestRequest};
use volt_protocol::envelope::ResponseType;

/// Longest `timeoutMs` of a command request (10 minutes): long enough for a
/// slow download, short enough that a forgotten request ends.
const MAX_COMMAND_TIMEOUT_MS: u64 = 600_000;

/// An error on its way to the client.
pub(crate) struct ApiError(pub PlaneError);

impl From<PlaneError> for ApiError {
    fn from(e: PlaneError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.to_envelope())).into_response()
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn success<T: Serialize>(status: StatusCode, data: T) -> ApiResult {
    Ok((status, Json(ApiSuccess::new(data))).into_response())
}

/// Parses a JSON body; an empty body counts as `{}` when `empty_ok`.
fn parse_body<T: DeserializeOwned>(body: &Bytes, empty_ok: bool) -> Result<T, ApiError> {
    let trimmed = body.iter().all(u8::is_ascii_whitespace);
    let text: &[u8] = if trimmed && empty_ok { b"{}" } else { body };
    serde_json::from_slice(text).map_err(|e| {
        ApiError(PlaneError::InvalidInput(if trimmed {
            "Request body must be a JSON object".into()
        } else {
            format!("Invalid request body: {e}")
        }))
    })
}

/// Builds the router; the socket.io layer is added by the caller.
///
/// Three groups: public routes (liveness, the installer, signed releases), the daemon-facing
/// reference routes (exactly as the VOLT server: no login, no Host check),
/// and everything a person uses (the console and its API), which
/// `auth::guard` protects.
pub(crate) fn router(plane: Arc<Plane>) -> Router {
    Router::new()
        .merge(public_routes())
        .merge(daemon_routes())
        .merge(person_routes(plane.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(plane)
}

/// Open to anyone who can reach the plane.
fn public_routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(crate::releases::routes())
        .merge(crate::installer_http::routes())
}

/// The reference server's daemon/installer routes (socket.io is a layer
/// around the whole router).
fn daemon_routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/api/team-clusters/{id}/healthcheck", post(healthcheck))
        .route(
            "/api/team-clusters/{id}/install-manifest",
            post(install_manifest),
        )
}

/// The console and the person API, behind `auth::guard` (login, Host and
/// Origin checks, JSON content type).
fn person_routes(plane: Arc<Plane>) -> Router<Arc<Plane>> {
    Router::new()
        .route("/api/clusters", post(create_cluster).get(list_clusters))
        .route("/api/clusters/{id}", get(show_cluster))
        .route("/api/clusters/{id}/commands", post(send_command))
        .route(
            "/api/clusters/{id}/enrollment-token/regenerate",
            post(regenerate_token),
        )
        .route("/api/clusters/{id}/disconnect", post(disconnect))
        .route("/api/clusters/{id}/delete-requests", post(delete_request))
        .route("/api/clusters/{id}/update-requests", post(update_request))
        .merge(crate::remote_http::routes())
        .merge(crate::job_reports::routes())
        .merge(crate::terminal::routes())
        .merge(crate::console::api_routes())
        .merge(crate::console::routes())
        .merge(crate::auth::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            plane,
            crate::auth::guard,
        ))
}

async fn not_found() -> ApiError {
    ApiError(PlaneError::RouteNotFound)
}

async fn method_not_allowed() -> ApiError {
    ApiError(PlaneError::MethodNotAllowed)
}

/// `GET /healthz` (and `HEAD`): liveness.
///
/// ```text
/// curl -s http://127.0.0.1:8080/healthz
/// ```
async fn healthz() -> ApiResult {
    success(StatusCode::OK, json!({ "ok": true }))
}

/// `POST /api/team-clusters/{id}/healthcheck` (reference route; what the
/// installer calls): trades the single-use enrollment token for the daemon
/// password.
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/team-clusters/$ID/healthcheck \
///   -H 'content-type: application/json' \
///   -d '{"enrollmentToken":"'$TOKEN'","installedVersion":"1.0.0"}'
/// ```
async fn healthcheck(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: HealthcheckRequest = parse_body(&body, false)?;
    req.validate().map_err(PlaneError::InvalidInput)?;
    let (dto, password) = plane.enroll(&id, &req)?;
    success(
        StatusCode::OK,
        json!({ "teamCluster": dto, "daemonPassword": password }),
    )
}

/// `POST /api/team-clusters/{id}/install-manifest` (reference route): the
/// compose project and env files for the host, for the daemon password.
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/team-clusters/$ID/install-manifest \
///   -H 'content-type: application/json' \
///   -d '{"daemonPassword":"'$PW'","installRoot":"/opt/volt/team-clusters",
///        "ports":{"minio":9000,"redis":6379,"mongodb":27017,"daemon":8081}}'
/// ```
async fn install_manifest(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: InstallManifestRequest = parse_body(&body, false)?;
    req.validate().map_err(PlaneError::InvalidInput)?;
    let rec = plane.store.install_context(&id, &req)?;
    let root = rec.install_root.clone().unwrap_or_default();
    let m = manifest::build(&rec, &root, req.ports, &plane.public_url);
    tracing::info!(cluster_id = %id, install_root = %root, "Install manifest issued.");
    success(StatusCode::OK, json!({ "manifest": m }))
}

/// `POST /api/clusters`: creates a cluster. Answers 201 with the DTO, the
/// enrollment token (shown once), the daemon password, the service
/// credentials, the install command and the `voltd enroll` command.
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/clusters \
///   -H 'content-type: application/json' -d '{"name":"lab"}'
/// ```
async fn create_cluster(State(plane): State<Arc<Plane>>, body: Bytes) -> ApiResult {
    let req: CreateClusterRequest = parse_body(&body, true)?;
    success(StatusCode::CREATED, plane.create_cluster(req)?)
}

/// `GET /api/clusters`: every cluster's DTO plus `connected`, oldest
/// first. With any of `limit`, `offset`, `q` (name substring, any case, or
/// id prefix), `status`: one page of at most 500, plus `total`, `offset`,
/// `limit` and `counts` (per status, among the name matches).
///
/// ```text
/// curl -s -H "authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/clusters
/// curl -s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/clusters?q=lab&status=connected&limit=50&offset=0"
/// ```
async fn list_clusters(
    State(plane): State<Arc<Plane>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        q.map_err(|e| ApiError(PlaneError::InvalidInput(format!("Invalid query: {e}"))))?;
    if q == ListQuery::default() {
        return success(StatusCode::OK, json!({ "teamClusters": plane.list() }));
    }
    success(StatusCode::OK, plane.list_page(&q))
}

/// `GET /api/clusters/{id}`: DTO, status history, last metrics, counters,
/// whether a daemon is registered, exposures.
///
/// ```text
/// curl -s http://127.0.0.1:8080/api/clusters/$ID
/// ```
async fn show_cluster(State(plane): State<Arc<Plane>>, Path(id): Path<String>) -> ApiResult {
    success(StatusCode::OK, plane.view(&id).ok_or(PlaneError::NotFound)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ReplyKind {
    Json,
    Buffer,
    Stream,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommandRequest {
    command: String,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    response_type: Option<ReplyKind>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct CommandQuery {
    #[serde(default)]
    raw: Option<String>,
}

/// `POST /api/clusters/{id}/commands`: sends a server→daemon command and
/// returns the daemon's reply (`responseType` `json` | `buffer` | `stream`,
/// optional `timeoutMs`). With `?raw=1`, a buffer or stream reply is
/// returned as the bytes themselves with the daemon's content headers.
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/clusters/$ID/commands \
///   -H 'content-type: application/json' -d '{"command":"container.list","payload":{}}'
/// curl -s -o dump.bin -X POST 'http://127.0.0.1:8080/api/clusters/'$ID'/commands?raw=1' \
///   -H 'content-type: application/json' \
///   -d '{"command":"object.get","payload":{"bucket":"volt-dumps","objectKey":"a"},"responseType":"stream"}'
/// ```
async fn send_command(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    Query(q): Query<CommandQuery>,
    body: Bytes,
) -> ApiResult {
    let req: CommandRequest = parse_body(&body, false)?;
    if req.command.trim().is_empty() {
        return Err(PlaneError::InvalidInput("command must be a non-empty string".into()).into());
    }
    let timeout = match req.timeout_ms {
        Some(ms) if ms == 0 || ms > MAX_COMMAND_TIMEOUT_MS => {
            return Err(PlaneError::InvalidInput(format!(
                "timeoutMs must be 1..{MAX_COMMAND_TIMEOUT_MS}"
            ))
            .into());
        }
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let response_type = match req.response_type.unwrap_or(ReplyKind::Json) {
        ReplyKind::Json => ResponseType::Json,
        ReplyKind::Buffer => ResponseType::Buffer,
        ReplyKind::Stream => ResponseType::Stream,
    };
    let payload = req.payload.unwrap_or_else(|| json!({}));
    let reply = plane
        .send_command(&id, &req.command, &payload, response_type, timeout)
        .await?;
    let raw = q
        .raw
        .as_deref()
        .is_some_and(|v| matches!(v, "1" | "true" | "yes"));
    match reply {
        DaemonReply::Json(r) => success(StatusCode::OK, r),
        DaemonReply::Buffer(r) if raw && r.ok => {
            let body = r
                .body_base64
                .as_deref()
                .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
                .transpose()
                .map_err(|e| PlaneError::Internal(format!("daemon sent invalid bodyBase64: {e}")))?
                .unwrap_or_default();
            Ok(raw_response(r.status, r.headers.as_ref(), body))
        }
        DaemonReply::Buffer(r) => success(StatusCode::OK, r),
        DaemonReply::Stream {
            response,
            body,
            chunks,
            max_chunk_packet_len,
            error,
        } => {
            if raw && response.ok && error.is_none() {
                return Ok(raw_response(
                    response.status,
                    response.headers.as_ref(),
                    body,
                ));
            }
            success(
                StatusCode::OK,
                json!({
                    "ok": response.ok && error.is_none(),
                    "status": response.status,
                    "headers": response.headers,
                    "bodyBase64": base64::engine::general_purpose::STANDARD.encode(&body),
                    "chunks": chunks,
                    "maxChunkPacketLen": max_chunk_packet_len,
                    "error": error,
                }),
            )
        }
    }
}

/// The daemon's bytes with its content headers.
fn raw_response(
    status: u16,
    headers: Option<&volt_protocol::envelope::Headers>,
    body: Vec<u8>,
) -> Response {
    let mut out = HeaderMap::new();
    for (k, v) in headers.into_iter().flatten() {
        let k = k.to_ascii_lowercase();
        if matches!(k.as_str(), "content-type" | "content-disposition")
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            )
        {
            out.insert(name, value);
        }
    }
    if !out.contains_key(header::CONTENT_TYPE) {
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, out, body).into_response()
}

/// `POST /api/clusters/{id}/enrollment-token/regenerate`: a new enrollment
/// token (refused while the cluster is deleting).
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/clusters/$ID/enrollment-token/regenerate
/// ```
async fn regenerate_token(State(plane): State<Arc<Plane>>, Path(id): Path<String>) -> ApiResult {
    success(StatusCode::OK, plane.regenerate_token(&id)?)
}

/// `POST /api/clusters/{id}/disconnect`: cuts the daemon's connection, as a
/// network failure would (a testing aid; the daemon should reconnect).
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/clusters/$ID/disconnect
/// ```
async fn disconnect(State(plane): State<Arc<Plane>>, Path(id): Path<String>) -> ApiResult {
    if !plane.store.contains(&id) {
        return Err(PlaneError::NotFound.into());
    }
    let disconnected = plane.disconnect_daemon(&id).await;
    success(StatusCode::OK, json!({ "disconnected": disconnected }))
}

/// `POST /api/clusters/{id}/delete-requests`: with a daemon registered,
/// asks it to uninstall (`runtime.uninstall`) and answers 202 (`deleting`);
/// otherwise deletes the record at once and answers 200 with the manual
/// uninstall command when the host may still hold the stack.
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/clusters/$ID/delete-requests
/// ```
async fn delete_request(State(plane): State<Arc<Plane>>, Path(id): Path<String>) -> ApiResult {
    match plane.request_delete(&id).await? {
        DeleteOutcome::Deleting(dto) => success(
            StatusCode::ACCEPTED,
            json!({
                "success": true,
                "deleted": false,
                "manualUninstallRequired": false,
                "message": "Remote uninstall requested. The cluster is removed once the daemon confirms cleanup.",
                "teamCluster": dto,
            }),
        ),
        DeleteOutcome::Deleted {
            manual_uninstall_command,
        } => {
            let required = manual_uninstall_command.is_some();
            success(
                StatusCode::OK,
                json!({
                    "success": true,
                    "deleted": true,
                    "manualUninstallRequired": required,
                    "message": if required {
                        "The cluster was removed from the control plane. Run the manual uninstall command on the host if the stack is still installed."
                    } else {
                        "Team cluster deleted from the control plane."
                    },
                    "manualUninstallCommand": manual_uninstall_command,
                }),
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateRequest {
    target_version: String,
    #[serde(default)]
    is_edge: bool,
}

/// `POST /api/clusters/{id}/update-requests`: sends `runtime.update` and,
/// when accepted, moves the cluster to `updating` (202). A heartbeat that
/// reports `targetVersion` brings it back to `connected`.
///
/// ```text
/// curl -s -X POST http://127.0.0.1:8080/api/clusters/$ID/update-requests \
///   -H 'content-type: application/json' -d '{"targetVersion":"1.2.0"}'
/// ```
async fn update_request(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: UpdateRequest = parse_body(&body, false)?;
    let dto = plane
        .request_update(&id, &req.target_version, req.is_edge)
        .await?;
    success(
        StatusCode::ACCEPTED,
        json!({
            "message": "Update requested. The cluster will reconnect with the new version shortly.",
            "teamCluster": dto,
        }),
    )
}
