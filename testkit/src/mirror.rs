//! A local HTTP download mirror for the provisioning, downloader and update tests:
//! serves files by path, honours `Range`, records every request, and can
//! misbehave on purpose (status codes, bodies that break off, bodies that
//! stall). Behaviour can be changed while it runs, so a test can "fix the
//! mirror" and watch provisioning heal.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Whole, or the requested range (206).
    Normal,
    /// This status, no body.
    Status(u16),
    /// Announces the full length, sends this many bytes, then breaks the
    /// connection — every time.
    BreakAfter(usize),
    /// Like `BreakAfter` for the first request, then `Normal`.
    BreakOnceAfter(usize),
    /// Announces the full length, sends this many bytes, then goes silent.
    StallAfter(usize),
    /// Ignores `Range` and always sends the whole file with 200.
    NoRanges,
}

/// One request the mirror saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct Inner {
    files: Mutex<HashMap<String, (Bytes, Serve)>>,
    seen: Mutex<Vec<Seen>>,
}

/// The running mirror (stops with the test's runtime).
#[derive(Clone)]
pub struct Mirror {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    inner: Arc<Inner>,
}

impl Mirror {
    pub async fn start() -> Mirror {
        let inner = Arc::new(Inner::default());
        let app = Router::new().fallback(serve).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mirror {
            base: format!("http://{addr}"),
            inner,
        }
    }

    /// Serves `bytes` at `path` (starting with `/`) as `how`.
    pub fn put(&self, path: &str, bytes: impl Into<Bytes>, how: Serve) {
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(path.to_owned(), (bytes.into(), how));
    }

    /// Changes how `path` is served.
    pub fn set(&self, path: &str, how: Serve) {
        if let Some(f) = self.inner.files.lock().unwrap().get_mut(path) {
            f.1 = how;
        }
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Headers and the first `after` bytes, then a broken connection (or
/// silence). The body yields once between the bytes and the break, which
/// makes hyper flush what it has: the client really receives the head.
fn broken(bytes: Bytes, after: usize, stall: bool) -> Body {
    let head = bytes.slice(..after.min(bytes.len()));
    let first = stream::iter([Ok::<Bytes, std::io::Error>(head)]);
    if stall {
        Body::from_stream(first.chain(stream::pending()))
    } else {
        Body::from_stream(first.chain(stream::once(async {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            Err(std::io::Error::other("mirror breaks the connection"))
        })))
    }
}

/// `bytes=<start>-` → start.
fn range_start(v: &str) -> Option<usize> {
    v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

async fn serve(State(inner): State<Arc<Inner>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inner.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let entry = inner.files.lock().unwrap().get(&path).cloned();
    let Some((bytes, how)) = entry else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = bytes.len();
    let with_length = |status: StatusCode, body: Body, length: usize| {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        r
    };
    match how {
        Serve::Status(s) => StatusCode::from_u16(s)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Serve::BreakAfter(n) => with_length(StatusCode::OK, broken(bytes, n, false), len),
        Serve::BreakOnceAfter(n) => {
            if let Some(f) = inner.files.lock().unwrap().get_mut(&path) {
                f.1 = Serve::Normal;
            }
            with_length(StatusCode::OK, broken(bytes, n, false), len)
        }
        Serve::StallAfter(n) => with_length(StatusCode::OK, broken(bytes, n, true), len),
        Serve::NoRanges => with_length(StatusCode::OK, Body::from(bytes), len),
        Serve::Normal => match range.as_deref().and_then(range_start) {
            Some(start) if start >= len => {
                let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).unwrap(),
                );
                r
            }
            Some(start) => {
                let mut r = with_length(
                    StatusCode::PARTIAL_CONTENT,
                    Body::from(bytes.slice(start..)),
                    len - start,
                );
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes {start}-{}/{len}", len - 1)).unwrap(),
                );
                r
            }
            None => with_length(StatusCode::OK, Body::from(bytes), len),
        },
    }
}
