//! The console: a browser UI served by the plane itself, and the API it
//! reads besides the person API of `http.rs`.
//!
//! * `GET /` and `GET /console/…` — the page, its script and style, and
//!   xterm.js (embedded at build time, see `build.rs`; no CDN, works
//!   offline). Served with a strict Content-Security-Policy.
//! * `GET /api/clusters/{id}/metrics?minutes=60&after=T` — the charts'
//!   points (`history.rs`).
//! * `GET /api/plane/events?after=SEQ&limit=N&cluster=ID` — the plane's
//!   supervisor log (`events.rs`).
//! * `GET /api/plane/info` — version, whether the terminal is bundled.
//! * `GET /api/events?cluster=ID` — live updates as Server-Sent Events:
//!   `statuses` (clusters whose status or connection changed, batched per
//!   second), `clusters` (created or deleted: re-read the list), `log` (new
//!   log entries), `metrics` (new chart points of `cluster`), `resync`
//!   (this client fell behind: re-read everything).

use crate::Plane;
use crate::error::PlaneError;
use crate::events::{EventKind, PlaneEvent};
use crate::http::{ApiError, ApiResult, success};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

mod vendor {
    include!(concat!(env!("OUT_DIR"), "/vendor.rs"));
}
pub use vendor::{XTERM_BUNDLED, XTERM_VERSION};

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");
const XTERM_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xterm.mjs"));
const XTERM_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xterm.css"));
const FIT_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/addon-fit.mjs"));

/// The page may load its own scripts and styles only, talk to its own
/// origin only (fetch, EventSource, WebSocket), and never be framed.
/// `style-src 'unsafe-inline'`: xterm.js sizes its rows with inline styles.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How often the event stream sends what accumulated: often enough to look
/// live, rarely enough that a cold start of 10,000 daemons is a handful of
/// messages per second.
pub const EVENT_BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Log entries one batch carries at most (the newest).
const LOG_BATCH_LIMIT: usize = 200;
/// Largest `limit` of `GET /api/plane/events`.
const MAX_LOG_PAGE: usize = 2_000;

pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css))
        .route("/console/vendor/{file}", get(vendor_file))
}

pub(crate) fn api_routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/api/clusters/{id}/metrics", get(metrics))
        .route("/api/plane/events", get(log))
        .route("/api/plane/info", get(info))
        .route("/api/events", get(events))
}

fn asset(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut r = (StatusCode::OK, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, embedded in the binary: revalidate, never stale after
    // an upgrade.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn vendor_file(Path(file): Path<String>) -> Result<Response, ApiError> {
    if !XTERM_BUNDLED {
        return Err(ApiError(PlaneError::bad_request(
            "Console::TerminalNotBundled",
            "xterm.js was not embedded in this build: run `npm ci --prefix plane/console` (or .ci/install-services) and rebuild volt-plane",
        )));
    }
    Ok(match file.as_str() {
        "xterm.mjs" => asset("text/javascript; charset=utf-8", XTERM_JS),
        "addon-fit.mjs" => asset("text/javascript; charset=utf-8", FIT_JS),
        "xterm.css" => asset("text/css; charset=utf-8", XTERM_CSS),
        _ => return Err(ApiError(PlaneError::RouteNotFound)),
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError(PlaneError::InvalidInput(format!("Invalid query: {e}"))))
}

#[derive(Deserialize)]
struct MetricsQuery {
    #[serde(default)]
    minutes: Option<u32>,
    #[serde(default)]
    after: Option<u32>,
}

/// `GET /api/clusters/{id}/metrics?minutes=60&after=T`: the chart points
/// of the last `minutes` (default 60, at most a day), newer than `after`
/// (Unix seconds), as columns.
///
/// ```text
/// curl -s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/clusters/$ID/metrics?minutes=60"
/// ```
async fn metrics(
    State(plane): State<Arc<Plane>>,
    Path(id): Path<String>,
    q: Result<Query<MetricsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    success(
        StatusCode::OK,
        plane.metrics(&id, q.minutes.unwrap_or(60), q.after)?,
    )
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cluster: Option<String>,
}

/// `GET /api/plane/events?after=SEQ&limit=N&cluster=ID`: the plane's own
/// log, oldest first (the newest `limit`, default 200).
///
/// ```text
/// curl -s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/plane/events?limit=20"
/// ```
async fn log(
    State(plane): State<Arc<Plane>>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let events = plane.store.events.recent(
        q.after.unwrap_or(0),
        q.limit.unwrap_or(LOG_BATCH_LIMIT).min(MAX_LOG_PAGE),
        q.cluster.as_deref(),
    );
    let events: Vec<&PlaneEvent> = events.iter().map(|e| &**e).collect();
    success(StatusCode::OK, json!({ "events": events }))
}

/// `GET /api/plane/info`: what the console needs to know about this build.
async fn info(State(plane): State<Arc<Plane>>) -> ApiResult {
    success(
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "publicUrl": plane.public_url,
            "terminal": { "bundled": XTERM_BUNDLED, "xtermVersion": XTERM_VERSION },
        }),
    )
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    cluster: Option<String>,
}

/// `GET /api/events?cluster=ID` (`text/event-stream`): see the module docs.
///
/// ```text
/// curl -sN -H "authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/events
/// ```
async fn events(
    State(plane): State<Arc<Plane>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q = query(q)?;
    if let Some(id) = &q.cluster
        && !plane.store.contains(id)
    {
        return Err(ApiError(PlaneError::NotFound));
    }
    let feed = Feed {
        rx: plane.store.events.subscribe(),
        plane,
        cluster: q.cluster,
        changed: HashSet::new(),
        log: Vec::new(),
        listing: false,
        lagged: false,
        metrics_after: None,
        started: false,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let batch = feed.next_batch().await;
        Some((futures_util::stream::iter(batch), feed))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}

/// One client's event stream state.
struct Feed {
    plane: Arc<Plane>,
    rx: tokio::sync::broadcast::Receiver<Arc<PlaneEvent>>,
    cluster: Option<String>,
    /// Clusters whose status or connection changed since the last batch.
    changed: HashSet<String>,
    log: Vec<Arc<PlaneEvent>>,
    /// A cluster was created or deleted.
    listing: bool,
    lagged: bool,
    /// Newest chart point already sent (Unix seconds).
    metrics_after: Option<u32>,
    started: bool,
}

fn sse(name: &str, data: &impl serde::Serialize) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| SseEvent::default().event(name).data("null")))
}

impl Feed {
    fn take(&mut self, e: Arc<PlaneEvent>) {
        if let (Some(id), true) = (&e.cluster_id, e.kind.changes_listing()) {
            self.changed.insert(id.clone());
        }
        if matches!(
            e.kind,
            EventKind::ClusterCreated { .. } | EventKind::ClusterDeleted
        ) {
            self.listing = true;
        }
        self.log.push(e);
    }

    /// Waits one batch interval, collecting events, and returns what to send.
    async fn next_batch(&mut self) -> Vec<Result<SseEvent, Infallible>> {
        if !self.started {
            self.started = true;
            return vec![sse("hello", &json!({ "cluster": self.cluster }))];
        }
        let deadline = tokio::time::Instant::now() + EVENT_BATCH_INTERVAL;
        loop {
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(e) => self.take(e),
                    Err(RecvError::Lagged(_)) => self.lagged = true,
                    // The plane is shutting down; keep-alives carry on
                    // until the connection is cut.
                    Err(RecvError::Closed) => tokio::time::sleep_until(deadline).await,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> Vec<Result<SseEvent, Infallible>> {
        let mut out = Vec::new();
        if std::mem::take(&mut self.lagged) {
            self.changed.clear();
            self.log.clear();
            self.listing = false;
            out.push(sse("resync", &json!({})));
        }
        if !self.changed.is_empty() {
            let ids: Vec<String> = self.changed.drain().collect();
            let plane = &self.plane;
            let states: Vec<Value> = {
                let map = plane.store.lock();
                ids.iter()
                    .map(|id| match map.get(id) {
                        Some(c) => json!({
                            "id": id,
                            "status": c.rec.status,
                            "lastHeartbeatAt": c.rec.last_heartbeat_at,
                            "installedVersion": c.rec.installed_version,
                        }),
                        None => json!({ "id": id, "deleted": true }),
                    })
                    .collect()
            };
            let states: Vec<Value> = states
                .into_iter()
                .map(|mut s| {
                    if let Some(id) = s["id"].as_str() {
                        let connected = plane.channels.get(id).is_some();
                        s["connected"] = Value::Bool(connected);
                    }
                    s
                })
                .collect();
            out.push(sse("statuses", &states));
        }
        if std::mem::take(&mut self.listing) {
            out.push(sse("clusters", &json!({})));
        }
        if !self.log.is_empty() {
            let dropped = self.log.len().saturating_sub(LOG_BATCH_LIMIT);
            let kept: Vec<Arc<PlaneEvent>> = self.log.drain(..).skip(dropped).collect();
            let entries: Vec<&PlaneEvent> = kept.iter().map(|e| &**e).collect();
            out.push(sse(
                "log",
                &json!({ "events": entries, "dropped": dropped }),
            ));
        }
        if let Some(id) = &self.cluster {
            let latest = self
                .plane
                .store
                .read(id, |c| c.rt.history.latest())
                .flatten();
            if latest.is_some() && latest != self.metrics_after {
                // The newest point may still be filling (heartbeats within
                // its step are averaged), so it is re-sent until the next
                // one starts.
                let after = self.metrics_after.map(|t| t.saturating_sub(1));
                if let Ok(series) = self.plane.metrics(id, 60, after) {
                    self.metrics_after = series.t.last().copied();
                    out.push(sse("metrics", &series));
                }
            }
        }
        out
    }
}
