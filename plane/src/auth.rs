//! Authentication for people: one admin, identified by an admin token.
//!
//! * **The token.** Given by the operator (`VOLT_PLANE_ADMIN_TOKEN`,
//!   [`crate::PlaneConfig::admin_token`]; kept in memory only), or else
//!   generated at the first start, printed once, and stored in the data
//!   file as an Argon2id hash only. 32 random bytes: guessing is hopeless,
//!   and Argon2 makes a stolen data file no shortcut either.
//! * **Sessions.** `POST /api/auth/login {"token":…}` sets a random
//!   session cookie (`HttpOnly; SameSite=Strict; Path=/`, plus `Secure`
//!   when the public URL is https), valid for [`SESSION_LIFETIME`]; the
//!   plane keeps only its SHA-256. Scripts send
//!   `Authorization: Bearer <token>` instead.
//! * **Every person route** ([`guard`]): the `Host` header must name the
//!   plane (loopback names, the listen address, the public URL's host, or
//!   an `--allowed-host`): a DNS-rebinding page reaches us under its own
//!   name and is refused. A request that carries `Origin` must come from
//!   the plane's own origin; `Sec-Fetch-Site: cross-site` is refused.
//!   A `POST` must be `content-type: application/json`, which a
//!   cross-site form cannot send without a CORS preflight (which the
//!   plane never grants).
//!
//! The daemon-facing routes (healthcheck, install manifest, socket.io) do
//! not pass through here: they are exactly the reference's.

use crate::Plane;
use crate::clock::Timestamp;
use crate::error::PlaneError;
use crate::events::EventKind;
use crate::http::{ApiError, ApiResult, success};
use crate::listener::ConnInfo;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "volt_session";
/// How long a console login lasts: a working day.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first. One admin rarely has
/// more than a few browsers.
const MAX_SESSIONS: usize = 256;
/// Random bytes of a generated admin token and of a session id.
const SECRET_BYTES: usize = 32;
/// Longest admin token accepted (a token is not a novel).
const MAX_TOKEN_LEN: usize = 256;
/// Paths of the person group open without a login (still Host/Origin
/// checked): the page and its assets, and the login itself.
const OPEN_PATHS: [&str; 3] = ["/", "/api/auth/login", "/api/auth/session"];
const OPEN_PREFIX: &str = "/console/";

/// An admin token given by the operator. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token of 16..=256 printable ASCII characters.
    pub fn new(token: impl Into<String>) -> Result<Self, PlaneError> {
        let t = token.into();
        if t.len() < 16 || t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PlaneError::InvalidInput(
                "the admin token must be 16..256 printable ASCII characters without spaces".into(),
            ));
        }
        Ok(AdminToken(t))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The persisted admin credential (in the data file).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AdminRecord {
    /// Argon2id PHC string of the admin token.
    pub token_hash: String,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for AdminRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRecord")
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Argon2id hash (PHC string) of `token`.
pub(crate) fn hash_token(token: &str) -> Result<String, PlaneError> {
    use argon2::PasswordHasher;
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| PlaneError::Internal(format!("argon2 salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PlaneError::Internal(format!("argon2: {e}")))
}

fn verify_hash(token: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(token.as_bytes(), &h)
            .is_ok()
    })
}

/// How the admin token is checked.
enum Secret {
    /// Given by the operator: its SHA-256, in memory only.
    Configured([u8; 32]),
    /// Stored Argon2id hash, plus the SHA-256 of the token once it was
    /// verified (later requests then cost a hash, not an Argon2 run).
    Stored {
        phc: String,
        verified: Mutex<Option<[u8; 32]>>,
    },
}

/// The plane's authentication state.
pub(crate) struct Auth {
    secret: Secret,
    /// Serialises Argon2 runs: wrong tokens cost at most one core.
    argon: tokio::sync::Semaphore,
    sessions: Mutex<HashMap<[u8; 32], Instant>>,
    allowed_hosts: Vec<String>,
    secure_cookie: bool,
}

/// What [`Auth::setup`] decided.
pub(crate) struct Setup {
    pub auth: Auth,
    /// A new credential to persist (first start).
    pub new_record: Option<AdminRecord>,
    /// The token, when this process knows it: configured, or generated now.
    pub token: Option<String>,
}

/// Host names (without port) always allowed: loopback.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The host part of a `Host` header or URL authority, lowercase, without
/// the port (`[v6]` keeps its brackets).
pub(crate) fn host_part(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if a.starts_with('[') {
        return a.split(']').next().map(|h| format!("{h}]")).unwrap_or(a);
    }
    a.split(':').next().unwrap_or_default().to_owned()
}

impl Auth {
    /// Chooses the admin secret: the configured token, else the stored
    /// hash, else a new token (returned once, its hash to be persisted).
    pub fn setup(
        configured: Option<&AdminToken>,
        stored: Option<&AdminRecord>,
        listen: std::net::SocketAddr,
        public_url: &str,
        extra_hosts: &[String],
    ) -> Result<Setup, PlaneError> {
        let (secret, new_record, token) = match (configured, stored) {
            (Some(t), _) => (
                Secret::Configured(sha256(t.expose())),
                None,
                Some(t.expose().to_owned()),
            ),
            (None, Some(rec)) => (
                Secret::Stored {
                    phc: rec.token_hash.clone(),
                    verified: Mutex::new(None),
                },
                None,
                None,
            ),
            (None, None) => {
                let token = random_hex(SECRET_BYTES);
                let phc = hash_token(&token)?;
                let rec = AdminRecord {
                    token_hash: phc.clone(),
                    created_at: Timestamp::now(),
                };
                (
                    Secret::Stored {
                        phc,
                        verified: Mutex::new(Some(sha256(&token))),
                    },
                    Some(rec),
                    Some(token),
                )
            }
        };
        let mut allowed_hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        let listen_host = match listen.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        if !listen.ip().is_unspecified() {
            allowed_hosts.push(listen_host);
        }
        if let Some(authority) = public_url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        {
            allowed_hosts.push(host_part(authority));
        }
        allowed_hosts.extend(extra_hosts.iter().map(|h| host_part(h)));
        allowed_hosts.retain(|h| !h.is_empty());
        allowed_hosts.sort();
        allowed_hosts.dedup();
        Ok(Setup {
            auth: Auth {
                secret,
                argon: tokio::sync::Semaphore::new(1),
                sessions: Mutex::new(HashMap::new()),
                allowed_hosts,
                secure_cookie: public_url.starts_with("https://"),
            },
            new_record,
            token,
        })
    }

    /// Whether `token` is the admin token.
    pub async fn check_token(&self, token: &str) -> bool {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return false;
        }
        let presented = sha256(token);
        match &self.secret {
            Secret::Configured(expected) => ct_eq(expected, &presented),
            Secret::Stored { phc, verified } => {
                let known = *verified.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(known) = known {
                    return ct_eq(&known, &presented);
                }
                let Ok(_permit) = self.argon.acquire().await else {
                    return false;
                };
                let (phc, token) = (phc.clone(), token.to_owned());
                let ok = tokio::task::spawn_blocking(move || verify_hash(&token, &phc))
                    .await
                    .unwrap_or(false);
                if ok {
                    *verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(presented);
                }
                ok
            }
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; returns its id (the cookie value).
    fn new_session(&self) -> String {
        let id = random_hex(SECRET_BYTES);
        let now = Instant::now();
        let mut s = self.sessions();
        s.retain(|_, exp| *exp > now);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k)
        {
            s.remove(&oldest);
        }
        s.insert(sha256(&id), now + SESSION_LIFETIME);
        id
    }

    fn session_valid(&self, id: &str) -> bool {
        let key = sha256(id);
        let mut s = self.sessions();
        match s.get(&key) {
            Some(exp) if *exp > Instant::now() => true,
            Some(_) => {
                s.remove(&key);
                false
            }
            None => false,
        }
    }

    fn end_session(&self, id: &str) {
        self.sessions().remove(&sha256(id));
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        // Hex ids only: always a valid header value.
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("volt_session=; Max-Age=0"))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let h = host_part(host);
        self.allowed_hosts.contains(&h)
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE && !v.is_empty()).then_some(v)
        })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    (
        status,
        axum::Json(json!({"status": "error", "code": code, "message": message.into()})),
    )
        .into_response()
}

/// Is the request's `Origin` (when present) this plane, as the `Host`
/// header names it?
fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    let host = host.trim().to_ascii_lowercase();
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The middleware in front of every person route (see the module docs).
pub(crate) async fn guard(State(plane): State<Arc<Plane>>, req: Request, next: Next) -> Response {
    let auth = &plane.auth;
    let headers = req.headers();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return refuse(400, "Auth::HostRequired", "A Host header is required");
    };
    if !auth.host_allowed(host) {
        return refuse(
            403,
            "Auth::HostNotAllowed",
            format!(
                "This plane does not answer to the host name {:?}. Use a loopback address or the public URL's host, or start the plane with --allowed-host.",
                host_part(host)
            ),
        );
    }
    if !same_origin(headers, host)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return refuse(
            403,
            "Auth::CrossOrigin",
            "Cross-origin requests are not accepted",
        );
    }
    if req.method() == Method::POST && !is_json(headers) {
        return refuse(
            415,
            "Request::JsonRequired",
            "This endpoint takes a JSON body: send content-type: application/json (an empty object {} when there is nothing to say)",
        );
    }
    let path = req.uri().path();
    if OPEN_PATHS.contains(&path) || path.starts_with(OPEN_PREFIX) {
        return next.run(req).await;
    }
    let authenticated = match bearer(headers) {
        Some(token) => auth.check_token(token).await,
        None => session_cookie(headers).is_some_and(|s| auth.session_valid(s)),
    };
    if !authenticated {
        return refuse(
            401,
            "Auth::Required",
            "Log in to the console, or send Authorization: Bearer <admin token>",
        );
    }
    next.run(req).await
}

pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/session", get(session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    token: String,
}

/// `POST /api/auth/login {"token":"…"}`: starts a console session (sets
/// the session cookie). A wrong token is 401.
async fn login(
    State(plane): State<Arc<Plane>>,
    ConnectInfo(info): ConnectInfo<ConnInfo>,
    body: Bytes,
) -> ApiResult {
    let req: LoginRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(PlaneError::InvalidInput(format!(
            "Invalid request body: {e}"
        )))
    })?;
    let remote = info.remote.to_string();
    if !plane.auth.check_token(req.token.trim()).await {
        tracing::warn!(%remote, "Console login refused.");
        plane
            .store
            .events
            .emit(None, EventKind::LoginFailed { remote });
        return Ok(refuse(401, "Auth::InvalidToken", "Wrong admin token"));
    }
    let id = plane.auth.new_session();
    tracing::info!(%remote, "Console login.");
    plane
        .store
        .events
        .emit(None, EventKind::LoginSucceeded { remote });
    let mut r = success(StatusCode::OK, json!({ "authenticated": true }))?;
    r.headers_mut().insert(
        header::SET_COOKIE,
        plane.auth.cookie(&id, SESSION_LIFETIME.as_secs()),
    );
    Ok(r)
}

/// `POST /api/auth/logout`: ends the session and clears the cookie.
async fn logout(State(plane): State<Arc<Plane>>, headers: HeaderMap) -> ApiResult {
    if let Some(id) = session_cookie(&headers) {
        plane.auth.end_session(id);
    }
    plane.store.events.emit(None, EventKind::LoggedOut);
    let mut r = success(StatusCode::OK, json!({ "authenticated": false }))?;
    r.headers_mut()
        .insert(header::SET_COOKIE, plane.auth.cookie("", 0));
    Ok(r)
}

/// `GET /api/auth/session`: whether this browser is logged in.
async fn session(State(plane): State<Arc<Plane>>, headers: HeaderMap) -> ApiResult {
    let authenticated = session_cookie(&headers).is_some_and(|s| plane.auth.session_valid(s));
    success(StatusCode::OK, json!({ "authenticated": authenticated }))
}

/// A `reqwest` client that authenticates as the admin.
pub(crate) fn client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token
        && let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
    {
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_compared_without_port_or_case() {
        assert_eq!(host_part("LocalHost:8080"), "localhost");
        assert_eq!(host_part("[::1]:9"), "[::1]");
        assert_eq!(host_part("example.org"), "example.org");
        let setup = Auth::setup(
            Some(&AdminToken::new("0123456789abcdef").unwrap()),
            None,
            "0.0.0.0:8080".parse().unwrap(),
            "https://plane.example.org:8443/x",
            &["lab.local".into()],
        )
        .unwrap();
        let a = setup.auth;
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "plane.example.org",
            "LAB.local:1",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example", "0.0.0.0:8080", "127.0.0.2", ""] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        assert!(a.secure_cookie);
    }

    #[test]
    fn origins_must_match_the_host() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, "127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h, "127.0.0.1:8080"));
        assert!(!same_origin(&h, "localhost:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h, "127.0.0.1:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, "127.0.0.1:8080"));
    }

    #[test]
    fn cookies_and_bearer_tokens_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; volt_session=abc; b=2"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t0k "),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        assert_eq!(bearer(&h), Some("t0k"));
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
    }

    #[tokio::test]
    async fn a_generated_token_is_stored_as_argon2_and_verified() {
        let setup = Auth::setup(
            None,
            None,
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:1",
            &[],
        )
        .unwrap();
        let token = setup.token.clone().unwrap();
        let rec = setup.new_record.clone().unwrap();
        assert!(rec.token_hash.starts_with("$argon2id$"));
        assert!(!rec.token_hash.contains(&token));
        // A restarted plane only has the hash.
        let again = Auth::setup(
            None,
            Some(&rec),
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:1",
            &[],
        )
        .unwrap();
        assert!(again.token.is_none() && again.new_record.is_none());
        assert!(!again.auth.check_token("wrong").await);
        assert!(again.auth.check_token(&token).await);
        // Cached after the first success, still exact.
        assert!(again.auth.check_token(&token).await);
        assert!(!again.auth.check_token(&format!("{token}x")).await);
    }

    #[test]
    fn sessions_expire_and_end() {
        let setup = Auth::setup(
            Some(&AdminToken::new("0123456789abcdef").unwrap()),
            None,
            "127.0.0.1:0".parse().unwrap(),
            "http://x",
            &[],
        )
        .unwrap();
        let a = setup.auth;
        let s = a.new_session();
        assert!(a.session_valid(&s));
        assert!(!a.session_valid("nope"));
        a.end_session(&s);
        assert!(!a.session_valid(&s));
        let c = a.cookie("v", 60);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(AdminToken::new("short").is_err());
        assert!(format!("{:?}", AdminToken::new("0123456789abcdefX").unwrap()).contains("***"));
    }
}
