//! voltd releases: `volt-plane release publish` signs a binary with the
//! plane's release key, and the plane serves the result under `/downloads/`
//! — the default release channel of every daemon it manages and the source
//! of `install.sh`.
//!
//! The manifest format and what the signature covers are defined in
//! [`volt_protocol::release`]. On disk (`--releases-dir`, default
//! [`default_dir`]):
//!
//! ```text
//! <dir>/release-key.pk8                       the signing key (PKCS#8, 0600, created at first publish)
//! <dir>/voltd/<version>/<os>/<arch>/voltd     the binary (0644)
//! <dir>/voltd/<version>/<os>/<arch>/manifest.json
//! <dir>/voltd/latest-<os>-<arch>              the version published last for that platform
//! ```
//!
//! The directory is a static mirror: copying it to any web server gives a
//! release channel a daemon can be pointed at.
//!
//! Routes (no authentication: everything here is public by design; what
//! protects a host is the signature and the key pinned at install time):
//!
//! ```text
//! curl -s  http://127.0.0.1:8080/downloads/release-key.pub      # the key to pin (base64, 44 chars)
//! curl -s  http://127.0.0.1:8080/downloads/release-key.pem      # the same key for openssl
//! curl -s  http://127.0.0.1:8080/downloads/voltd/latest/linux/x86_64/manifest.json
//! curl -sO http://127.0.0.1:8080/downloads/voltd/1.2.3/linux/x86_64/voltd
//! ```

use crate::Plane;
use crate::error::PlaneError;
use crate::http::{ApiError, ApiResult};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use volt_protocol::release::{
    MAX_RELEASE_SIZE, Platform, PublicKey, ReleaseInfo, ReleaseManifest, SigningKey,
    validate_version,
};

/// The signing key's file name inside the releases directory.
pub const KEY_FILE: &str = "release-key.pk8";
/// The manifest's file name next to each binary.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The binary's file name.
pub const BINARY_FILE: &str = "voltd";
/// The version segment that resolves to the latest published release.
pub const LATEST: &str = "latest";

/// Where releases live when no directory is given: the system location for
/// root (a plane run as a service), the user's data directory otherwise.
pub fn default_dir() -> PathBuf {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if root {
        return PathBuf::from("/var/lib/volt-plane/releases");
    }
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("volt-plane/releases"),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/share/volt-plane/releases"),
            None => PathBuf::from("volt-plane-releases"),
        },
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> PlaneError {
    PlaneError::Internal(format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` atomically (temp file, fsync, rename, fsync dir) with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 6];
    rand::fill(&mut suffix[..]);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(suffix)));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A releases directory (see the module docs). Blocking file I/O: call it
/// from the CLI or `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct ReleaseStore {
    dir: PathBuf,
}

impl ReleaseStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReleaseStore { dir: dir.into() }
    }

    /// [`default_dir`].
    pub fn default_dir() -> PathBuf {
        default_dir()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The signing key, created (0600) at first use.
    pub fn signing_key(&self) -> Result<SigningKey, PlaneError> {
        let path = self.dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(der) => {
                return SigningKey::from_pkcs8(&der)
                    .map_err(|e| PlaneError::Internal(format!("{}: {e}", path.display())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot read", &path, e)),
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("cannot create", &self.dir, e))?;
        let der = SigningKey::generate_pkcs8().map_err(|e| PlaneError::Internal(e.to_string()))?;
        // `create_new` through a temp name + hard link would be needed to
        // be both atomic and exclusive; two first publishes racing is not a
        // case worth it: the rename is atomic, the last writer wins, and a
        // release signed by the losing key fails verification loudly.
        write_file(&path, &der, 0o600).map_err(|e| io_err("cannot write", &path, e))?;
        tracing::info!(path = %path.display(), "Release signing key created.");
        self.signing_key()
    }

    /// The public key, if a signing key exists.
    pub fn public_key(&self) -> Result<Option<PublicKey>, PlaneError> {
        if !self.dir.join(KEY_FILE).exists() {
            return Ok(None);
        }
        Ok(Some(self.signing_key()?.public_key()))
    }

    /// `<dir>/voltd/<version>/<os>/<arch>`.
    pub fn release_dir(&self, version: &str, platform: &Platform) -> PathBuf {
        self.dir
            .join("voltd")
            .join(version)
            .join(&platform.os)
            .join(&platform.arch)
    }

    /// Where the binary of a release is stored.
    pub fn binary_path(&self, version: &str, platform: &Platform) -> PathBuf {
        self.release_dir(version, platform).join(BINARY_FILE)
    }

    /// Where the manifest of a release is stored.
    pub fn manifest_path(&self, version: &str, platform: &Platform) -> PathBuf {
        self.release_dir(version, platform).join(MANIFEST_FILE)
    }

    fn latest_path(&self, platform: &Platform) -> PathBuf {
        self.dir
            .join("voltd")
            .join(format!("{LATEST}-{}-{}", platform.os, platform.arch))
    }

    /// The version published last for `platform`.
    pub fn latest(&self, platform: &Platform) -> Option<String> {
        let v = std::fs::read_to_string(self.latest_path(platform)).ok()?;
        let v = v.trim().to_owned();
        validate_version(&v).ok().map(|()| v)
    }

    /// Copies `file` in as release `version` for `platform`, signs it and
    /// makes it the latest. Publishing a version again replaces it.
    pub fn publish(
        &self,
        version: &str,
        platform: &Platform,
        file: &Path,
    ) -> Result<ReleaseManifest, PlaneError> {
        validate_version(version).map_err(|e| PlaneError::InvalidInput(e.to_string()))?;
        let meta = std::fs::metadata(file).map_err(|e| {
            PlaneError::InvalidInput(format!("cannot read {}: {e}", file.display()))
        })?;
        if !meta.is_file() {
            return Err(PlaneError::InvalidInput(format!(
                "{} is not a regular file",
                file.display()
            )));
        }
        if meta.len() == 0 || meta.len() > MAX_RELEASE_SIZE {
            return Err(PlaneError::InvalidInput(format!(
                "{} must be 1..{MAX_RELEASE_SIZE} bytes",
                file.display()
            )));
        }
        let key = self.signing_key()?;
        let dir = self.release_dir(version, platform);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;

        // Copy and hash in one pass, into a temp file beside the target.
        let mut src = std::fs::File::open(file).map_err(|e| {
            PlaneError::InvalidInput(format!("cannot open {}: {e}", file.display()))
        })?;
        let mut hasher = Sha256::new();
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| io_err("cannot read", file, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes.extend_from_slice(&buf[..n]);
            if bytes.len() as u64 > MAX_RELEASE_SIZE {
                return Err(PlaneError::InvalidInput(format!(
                    "{} grew beyond {MAX_RELEASE_SIZE} bytes while being read",
                    file.display()
                )));
            }
        }
        let sha256 = hex::encode(hasher.finalize());
        let info = ReleaseInfo::new(version, platform.clone(), bytes.len() as u64, &sha256)
            .map_err(|e| PlaneError::InvalidInput(e.to_string()))?;
        let manifest = key.sign(&info);
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| PlaneError::Internal(format!("cannot encode the manifest: {e}")))?;
        let bin = dir.join(BINARY_FILE);
        write_file(&bin, &bytes, 0o755).map_err(|e| io_err("cannot write", &bin, e))?;
        let mpath = dir.join(MANIFEST_FILE);
        write_file(&mpath, &json, 0o644).map_err(|e| io_err("cannot write", &mpath, e))?;
        let latest = self.latest_path(platform);
        write_file(&latest, format!("{version}\n").as_bytes(), 0o644)
            .map_err(|e| io_err("cannot write", &latest, e))?;
        tracing::info!(%version, %platform, size = info.size(), %sha256, key_id = %manifest.key_id, "Release published.");
        Ok(manifest)
    }

    /// Resolves `latest` to a version.
    fn resolve(&self, version: &str, platform: &Platform) -> Result<String, PlaneError> {
        if version == LATEST {
            return self.latest(platform).ok_or(PlaneError::NotFound);
        }
        validate_version(version).map_err(|e| PlaneError::InvalidInput(e.to_string()))?;
        Ok(version.to_owned())
    }
}

/// The `/downloads/` routes.
pub(crate) fn routes() -> Router<Arc<Plane>> {
    Router::new()
        .route("/downloads/release-key.pub", get(key_pub))
        .route("/downloads/release-key.pem", get(key_pem))
        .route(
            "/downloads/voltd/{version}/{os}/{arch}/{file}",
            get(release_file),
        )
}

fn store(plane: &Plane) -> Result<ReleaseStore, ApiError> {
    plane
        .cfg
        .releases_dir
        .clone()
        .map(ReleaseStore::new)
        .ok_or(ApiError(PlaneError::NotFound))
}

async fn public_key(plane: &Arc<Plane>) -> Result<PublicKey, ApiError> {
    let s = store(plane)?;
    tokio::task::spawn_blocking(move || s.public_key())
        .await
        .map_err(|e| ApiError(PlaneError::Internal(e.to_string())))??
        .ok_or(ApiError(PlaneError::NotFound))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `GET /downloads/release-key.pub`: the key to pin (base64 of the 32 raw
/// bytes, one line). 404 before the first release.
async fn key_pub(State(plane): State<Arc<Plane>>) -> ApiResult {
    Ok(text(format!("{}\n", public_key(&plane).await?.to_base64())))
}

/// `GET /downloads/release-key.pem`: the same key as a PEM
/// SubjectPublicKeyInfo (`openssl pkeyutl -pubin -inkey`).
async fn key_pem(State(plane): State<Arc<Plane>>) -> ApiResult {
    Ok(text(public_key(&plane).await?.to_pem()))
}

/// `GET /downloads/voltd/{version|latest}/{os}/{arch}/{manifest.json|voltd}`.
async fn release_file(
    State(plane): State<Arc<Plane>>,
    UrlPath((version, os, arch, file)): UrlPath<(String, String, String, String)>,
) -> ApiResult {
    let s = store(&plane)?;
    let platform =
        Platform::new(&os, &arch).map_err(|e| ApiError(PlaneError::InvalidInput(e.to_string())))?;
    let version = s.resolve(&version, &platform)?;
    let (path, content_type) = match file.as_str() {
        MANIFEST_FILE => (s.manifest_path(&version, &platform), "application/json"),
        BINARY_FILE => (
            s.binary_path(&version, &platform),
            "application/octet-stream",
        ),
        _ => return Err(ApiError(PlaneError::RouteNotFound)),
    };
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError(PlaneError::NotFound));
        }
        Err(e) => return Err(ApiError(io_err("cannot open", &path, e))),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| ApiError(io_err("cannot stat", &path, e)))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux() -> Platform {
        Platform::new("linux", "x86_64").unwrap()
    }

    #[test]
    fn publish_signs_with_a_key_created_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = ReleaseStore::new(dir.path().join("rel"));
        assert!(s.public_key().unwrap().is_none());
        let bin = dir.path().join("voltd");
        std::fs::write(&bin, b"#!/bin/sh\nexit 0\n").unwrap();
        let m = s.publish("1.0.0", &linux(), &bin).unwrap();
        let key = s.public_key().unwrap().unwrap();
        let mode = std::fs::metadata(s.dir().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let v = m.verify(&key).unwrap();
        assert_eq!(v.info().size(), 17);
        assert_eq!(
            v.info().sha256(),
            hex::encode(Sha256::digest(b"#!/bin/sh\nexit 0\n"))
        );
        // Second publish: same key, latest moves.
        let m2 = s.publish("1.1.0", &linux(), &bin).unwrap();
        assert_eq!(m2.key_id, m.key_id);
        assert_eq!(s.latest(&linux()).as_deref(), Some("1.1.0"));
        assert_eq!(s.resolve(LATEST, &linux()).unwrap(), "1.1.0");
        let stored = std::fs::read(s.manifest_path("1.0.0", &linux())).unwrap();
        assert_eq!(ReleaseManifest::parse(&stored).unwrap(), m);
        assert_eq!(
            std::fs::read(s.binary_path("1.0.0", &linux())).unwrap(),
            b"#!/bin/sh\nexit 0\n"
        );
    }

    #[test]
    fn publish_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let s = ReleaseStore::new(dir.path());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(s.publish("1.0.0", &linux(), &empty).is_err());
        assert!(s.publish("1.0.0", &linux(), dir.path()).is_err());
        assert!(
            s.publish("1.0.0", &linux(), &dir.path().join("missing"))
                .is_err()
        );
        std::fs::write(&empty, b"x").unwrap();
        for v in ["../x", "latest", ""] {
            assert!(s.publish(v, &linux(), &empty).is_err(), "{v}");
        }
        assert!(matches!(
            s.resolve(LATEST, &linux()),
            Err(PlaneError::NotFound)
        ));
    }
}
