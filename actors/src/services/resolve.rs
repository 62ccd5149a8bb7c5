//! Where a service's port and credentials come from.
//!
//! The VOLT server connects to the cluster's Redis and MinIO directly, with
//! the credentials and published ports it generated for the install
//! manifest, so those win: `minio.env` (`MINIO_ROOT_USER/PASSWORD`),
//! `mongodb.env` (`MONGO_INITDB_ROOT_USERNAME/PASSWORD`), `redis.env`
//! (`REDIS_USERNAME/PASSWORD`, else the user line of `redis.acl`), and the
//! ports in `.env` (`MINIO_PORT`, `MONGODB_PORT`, `REDIS_PORT`). Without a
//! manifest the config file's values apply, then `[install] ports`, then the
//! well-known port. A native service without any password gets a generated
//! one (24 random bytes, hex, like the server's), stored under the state
//! directory so every restart reuses it.
//!
//! # At rest
//!
//! Generated credentials go through the host key store like the daemon's
//! own (`host/keystore.rs`): where this process can seal (root: `voltd
//! enroll`, which install.sh runs and which pre-generates them with
//! [`pregenerate`]) only `services/credentials.json.cred` exists, and the
//! sandboxed daemon reads the plaintext systemd decrypted for it
//! (`LoadCredentialEncrypted=voltd-services:…` → `$CREDENTIALS_DIRECTORY`).
//! A plain file found where sealing works is merged into the sealed one and
//! removed. A process that cannot seal and must generate a password the
//! sealed file lacks (a service enabled after enrollment) writes only the
//! new entries to the 0600 plain file — never a copy of the sealed ones —
//! until the next `voltd enroll` seals them. Without a key store the plain
//! 0600 file is all there is.
//!
//! What a server must read in plain text (Redis's ACL file) is written
//! before every start to the runtime directory ([`runtime_dir`]: systemd's
//! `RuntimeDirectory=`, a tmpfs), not the state directory.

use super::ServiceKind;
use crate::cloud::credentials;
use crate::config::Settings;
use crate::config::services::services_dir;
use crate::config::{ServiceMode, ServiceSettings};
use crate::host::keystore::{SecretStore, read_plain, sealed_path};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use volt_protocol::enrollment::InstallManifest;
use volt_protocol::register::Secret;

/// File of generated service credentials inside `<state dir>/services`.
pub const GENERATED_CREDENTIALS_FILE: &str = "credentials.json";
/// Their name in the key store and in `$CREDENTIALS_DIRECTORY` (the
/// unit's drop-in: `LoadCredentialEncrypted=voltd-services:…`).
pub const GENERATED_CREDENTIALS_NAME: &str = "voltd-services";
/// The variable systemd sets to the unit's `RuntimeDirectory=`.
pub const RUNTIME_DIRECTORY_ENV: &str = "RUNTIME_DIRECTORY";
/// The runtime directory inside the state directory where systemd gives
/// none (no key store to speak of there either: see [`runtime_dir`]).
pub const FALLBACK_RUNTIME_DIR: &str = "run";
/// Random bytes of a generated password (48 hex characters, as the VOLT
/// server generates them).
const GENERATED_PASSWORD_BYTES: usize = 24;
/// Random bytes of a generated user name suffix (`volt_<service>_<8 hex>`,
/// the server's pattern).
const GENERATED_USER_BYTES: usize = 4;

/// Where the credentials in use came from (shown in status, never the
/// values themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    Manifest,
    Config,
    Generated,
}

/// Everything needed to start, reach and authenticate to one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub kind: ServiceKind,
    pub mode: ServiceMode,
    /// Where voltd connects.
    pub host: String,
    pub port: u16,
    /// Where the server listens (native mode).
    pub bind: IpAddr,
    pub data_dir: PathBuf,
    /// `<state dir>/services` (pid files, provisioning markers).
    pub services_dir: PathBuf,
    /// Where files a server reads in plain text go ([`runtime_dir`]).
    pub runtime_dir: PathBuf,
    pub user: String,
    pub password: Secret,
    pub source: CredentialSource,
}

impl Resolved {
    /// The placeholder values for a command line. `bind` may be overridden
    /// (provisioning listens on loopback only).
    pub fn placeholders(
        &self,
        bind: IpAddr,
        config_file: Option<&Path>,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("port", self.port.to_string()),
            ("bind", bind.to_string()),
            ("host", self.host.clone()),
            ("data_dir", self.data_dir.display().to_string()),
            ("user", self.user.clone()),
            ("password", self.password.expose().to_owned()),
            (
                "config_file",
                config_file
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ]
    }

    /// `<state dir>/services/<name>.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.services_dir.join(format!("{}.pid", self.kind.name()))
    }
}

/// Replaces every placeholder of `template` with its value (the pairs of
/// [`Resolved::placeholders`]; `config::services::check_placeholders`
/// rejected unknown ones at load).
pub fn substitute(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The install manifest's modification time ([`credentials::manifest_stamp`]),
/// looked up on the blocking pool (the service actors share the thread that
/// answers the server).
pub async fn manifest_stamp(settings: &Arc<Settings>) -> Option<SystemTime> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || credentials::manifest_stamp(&settings))
        .await
        .ok()
        .flatten()
}

struct ManifestValues {
    user: Option<String>,
    password: Option<Secret>,
    port: Option<u16>,
}

fn manifest_values(
    kind: ServiceKind,
    manifest: &InstallManifest,
) -> Result<ManifestValues, String> {
    let (file, user_key, password_key, port_key) = match kind {
        ServiceKind::Mongo => (
            "mongodb.env",
            "MONGO_INITDB_ROOT_USERNAME",
            "MONGO_INITDB_ROOT_PASSWORD",
            "MONGODB_PORT",
        ),
        ServiceKind::Minio => (
            "minio.env",
            "MINIO_ROOT_USER",
            "MINIO_ROOT_PASSWORD",
            "MINIO_PORT",
        ),
        ServiceKind::Redis => (
            "redis.env",
            "REDIS_USERNAME",
            "REDIS_PASSWORD",
            "REDIS_PORT",
        ),
    };
    let env = manifest.env(file);
    let mut user = env.get(user_key).filter(|v| !v.is_empty()).cloned();
    let mut password = env
        .get(password_key)
        .filter(|v| !v.is_empty())
        .map(|v| Secret::new(v.as_str()));
    if kind == ServiceKind::Redis
        && (user.is_none() || password.is_none())
        && let Some(acl) = manifest.file("redis.acl")
        && let Some((u, p)) = acl_user(&acl.contents)
    {
        user = user.or(Some(u));
        password = password.or(Some(p));
    }
    let port = match manifest.env(".env").get(port_key) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("the install manifest's {port_key} is not a port: {v:?}"))?,
        ),
    };
    Ok(ManifestValues {
        user,
        password,
        port,
    })
}

/// The first non-default user of a Redis ACL file with a `>password`.
fn acl_user(acl: &str) -> Option<(String, Secret)> {
    acl.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("user") {
            return None;
        }
        let name = words.next().filter(|n| *n != "default")?;
        let password = words.find_map(|w| w.strip_prefix('>'))?;
        Some((name.to_owned(), Secret::new(password)))
    })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GeneratedEntry {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

type GeneratedMap = BTreeMap<String, GeneratedEntry>;

fn parse_generated(text: &Secret, from: &Path) -> Result<GeneratedMap, String> {
    serde_json::from_str(text.expose()).map_err(|e| {
        // Only where, never serde's message: it may quote a value.
        format!(
            "{} is corrupt (JSON {:?} error at line {} column {}); restore it or remove it to generate new service passwords",
            from.display(),
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

fn complete(entry: Option<&GeneratedEntry>, need_user: bool) -> bool {
    entry.is_some_and(|e| {
        e.password.as_ref().is_some_and(|p| !p.is_empty())
            && (!need_user || e.user.as_deref().is_some_and(|u| !u.is_empty()))
    })
}

fn store_generated(
    store: &SecretStore,
    path: &Path,
    all: &GeneratedMap,
    sealed: bool,
) -> Result<(), String> {
    let json = serde_json::to_string(all)
        .map_err(|e| format!("cannot encode generated service credentials: {e}"))?;
    if let Some(dir) = path.parent() {
        crate::host::fsutil::ensure_dir(dir, crate::host::fsutil::PRIVATE_DIR_MODE)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let result = if sealed {
        store.store(path, GENERATED_CREDENTIALS_NAME, &Secret::new(json))
    } else {
        // Plain, and only what is not sealed: a sealed file stays where it
        // is (`Keystore::store` for a plain file would remove it).
        crate::host::fsutil::write_atomic(
            path,
            json.as_bytes(),
            crate::host::fsutil::SECRET_FILE_MODE,
        )
        .map_err(|source| crate::host::keystore::KeystoreError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    result.map_err(|e| {
        format!(
            "cannot store generated service credentials in {}: {e}",
            path.display()
        )
    })
}

/// The stored generated credentials: the sealed layer (what systemd
/// decrypted, else the `.cred` file), the plain file, and both merged (the
/// sealed entries win).
struct GeneratedLayers {
    sealed: Option<GeneratedMap>,
    plain: GeneratedMap,
    all: GeneratedMap,
}

fn load_generated(store: &SecretStore, path: &Path) -> Result<GeneratedLayers, String> {
    let read_err = |e| format!("cannot read the generated service credentials: {e}");
    let sealed = match store
        .load_sealed(path, GENERATED_CREDENTIALS_NAME)
        .map_err(read_err)?
    {
        Some(text) => Some(parse_generated(&text, &sealed_path(path))?),
        None => None,
    };
    let plain = match read_plain(path).map_err(read_err)? {
        Some(text) => parse_generated(&text, path)?,
        None => GeneratedMap::new(),
    };
    let mut all = sealed.clone().unwrap_or_default();
    for (k, v) in &plain {
        if !complete(all.get(k), false) {
            all.insert(k.clone(), v.clone());
        }
    }
    Ok(GeneratedLayers { sealed, plain, all })
}

/// Serialises [`generated`] and [`seal_generated`] within the process.
static GENERATED_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Seals a plain generated-credentials file where `store` seals (merged
/// into the sealed one, the plain file removed). Returns whether it did.
pub fn seal_generated(store: &SecretStore, services_dir: &Path) -> Result<bool, String> {
    let path = services_dir.join(GENERATED_CREDENTIALS_FILE);
    if !store.is_sealed() || !path.exists() {
        return Ok(false);
    }
    let _guard = GENERATED_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let layers = load_generated(store, &path)?;
    store_generated(store, &path, &layers.all, true)?;
    tracing::info!(path = %sealed_path(&path).display(), "Generated service credentials sealed with the host key store.");
    Ok(true)
}

/// Loads (or creates) the generated credentials of `kind` (see the module
/// docs for where they live), generating only what is missing.
fn generated(
    store: &SecretStore,
    services_dir: &Path,
    kind: ServiceKind,
    need_user: bool,
) -> Result<(String, Secret), String> {
    let path = services_dir.join(GENERATED_CREDENTIALS_FILE);
    // One read-modify-write at a time: the services resolve in parallel
    // (blocking threads) and share the file.
    let _guard = GENERATED_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let GeneratedLayers {
        sealed,
        plain: mut plain_layer,
        mut all,
    } = load_generated(store, &path)?;
    let had_sealed = sealed.is_some();
    let name = kind.name().to_owned();
    let entry = all.entry(name.clone()).or_default();
    let mut changed = false;
    if entry.password.as_ref().is_none_or(Secret::is_empty) {
        entry.password = Some(Secret::new(random_hex(GENERATED_PASSWORD_BYTES)));
        changed = true;
    }
    if need_user && entry.user.as_deref().is_none_or(str::is_empty) {
        entry.user = Some(format!(
            "volt_{}_{}",
            kind.name(),
            random_hex(GENERATED_USER_BYTES)
        ));
        changed = true;
    }
    let user = entry.user.clone().unwrap_or_default();
    let password = entry.password.clone().unwrap_or_default();
    if store.is_sealed() {
        // Sealing works here: everything sealed, a plain file migrated.
        if changed || path.exists() {
            store_generated(store, &path, &all, true)?;
            tracing::info!(path = %sealed_path(&path).display(), "Generated service credentials sealed with the host key store.");
        }
    } else if changed {
        let entry = all.remove(&name).unwrap_or_default();
        plain_layer.insert(name, entry);
        store_generated(store, &path, &plain_layer, false)?;
        if had_sealed {
            tracing::warn!(
                service = %kind.name(),
                path = %path.display(),
                "Generated a service password this process cannot seal; stored it as a 0600 file until `voltd enroll` (install.sh) seals it."
            );
        }
    }
    Ok((user, password))
}

/// Where the files a server reads in plain text go: systemd's
/// `RuntimeDirectory=` (`$RUNTIME_DIRECTORY`, a tmpfs gone at stop) when the
/// unit has one, else `<state dir>/run` (a host without systemd, where
/// there is no key store either).
pub fn runtime_dir(state_dir: &Path) -> PathBuf {
    runtime_dir_from(
        std::env::var_os(RUNTIME_DIRECTORY_ENV).as_deref(),
        state_dir,
    )
}

fn runtime_dir_from(env: Option<&std::ffi::OsStr>, state_dir: &Path) -> PathBuf {
    // systemd lists several directories separated by ':'; the unit has one.
    env.and_then(|v| std::env::split_paths(v).find(|p| p.is_absolute()))
        .unwrap_or_else(|| state_dir.join(FALLBACK_RUNTIME_DIR))
}

/// Generates (and stores, sealed where this process can seal) the
/// credentials every native service without manifest or configured ones
/// will need: `voltd enroll` runs it as root so the sandboxed daemon, which
/// cannot seal, never has to create a plain one. Returns the services it
/// covered.
pub fn pregenerate(settings: &Settings, store: &SecretStore) -> Result<Vec<ServiceKind>, String> {
    seal_generated(store, &settings.services_dir())?;
    let mut done = Vec::new();
    for kind in ServiceKind::ALL {
        let svc = settings.services.get(kind);
        if svc.mode != ServiceMode::Native {
            continue;
        }
        if resolve_with(kind, svc, settings, store)?.source == CredentialSource::Generated {
            done.push(kind);
        }
    }
    Ok(done)
}

fn default_host(bind: IpAddr) -> String {
    match bind {
        IpAddr::V4(a) if a.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(a) if a.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
        other => other.to_string(),
    }
}

/// Resolves `kind`'s port and credentials now (see the module docs), with
/// this process's key store. Blocking.
pub fn resolve(
    kind: ServiceKind,
    svc: &ServiceSettings,
    settings: &Settings,
) -> Result<Resolved, String> {
    resolve_with(kind, svc, settings, SecretStore::shared())
}

/// [`resolve`] with a given key store.
pub fn resolve_with(
    kind: ServiceKind,
    svc: &ServiceSettings,
    settings: &Settings,
    store: &SecretStore,
) -> Result<Resolved, String> {
    let manifest = match credentials::load_manifest_with(store, &settings.manifest_file()) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(service = %kind.name(), error = %e, "Install manifest unreadable; using configured service credentials.");
            None
        }
    };
    let from_manifest = match &manifest {
        Some(m) => manifest_values(kind, m)?,
        None => ManifestValues {
            user: None,
            password: None,
            port: None,
        },
    };
    let install_port = settings.install.ports.map(|p| match kind {
        ServiceKind::Mongo => p.mongodb,
        ServiceKind::Minio => p.minio,
        ServiceKind::Redis => p.redis,
    });
    let port = from_manifest
        .port
        .or(svc.port)
        .or(install_port)
        .unwrap_or(kind.default_port());

    let services_dir = services_dir(&settings.state_dir);
    let mut user = from_manifest.user.clone().or(svc.user.clone());
    let mut password = from_manifest.password.clone().or(svc.password.clone());
    let source = if from_manifest.user.is_some() && from_manifest.password.is_some() {
        CredentialSource::Manifest
    } else if user.is_some() && password.is_some() {
        CredentialSource::Config
    } else if svc.mode == ServiceMode::External {
        return Err(format!(
            "services.{0}.user and services.{0}.password are required in external mode (or an install manifest)",
            kind.name()
        ));
    } else {
        let (u, p) = generated(store, &services_dir, kind, user.is_none())?;
        user = user.or(Some(u));
        password = password.or(Some(p));
        CredentialSource::Generated
    };
    let user = user.unwrap_or_default();
    let password = password.unwrap_or_default();
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the {} user name is empty or contains spaces",
            kind.name()
        ));
    }
    if password.is_empty()
        || password
            .expose()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the {} password is empty or contains spaces",
            kind.name()
        ));
    }
    Ok(Resolved {
        kind,
        mode: svc.mode,
        host: svc.host.clone().unwrap_or_else(|| default_host(svc.bind)),
        port,
        bind: svc.bind,
        data_dir: svc.data_dir(kind, &settings.state_dir),
        services_dir,
        runtime_dir: runtime_dir(&settings.state_dir),
        user,
        password,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CloudUrl, ClusterId};
    use volt_protocol::enrollment::{FileMode, ManifestFile, ServicePorts};

    use crate::host::keystore::{Keystore, SealKey};
    use std::os::unix::fs::PermissionsExt;

    fn plain_store() -> SecretStore {
        SecretStore::new(Keystore::PlainFile, None)
    }

    /// Unit tests keep secrets in plain files whoever runs them (as root,
    /// [`super::resolve`] would seal with the real `systemd-creds`: that is
    /// tested in `tests/it/service_secrets.rs`).
    fn resolve(kind: ServiceKind, svc: &ServiceSettings, s: &Settings) -> Result<Resolved, String> {
        resolve_with(kind, svc, s, &plain_store())
    }

    /// A stand-in for `systemd-creds` that passes stdin through, so a test
    /// sees which file is written without needing root.
    fn passthrough_store(dir: &Path, credentials_dir: Option<PathBuf>) -> SecretStore {
        let prog = dir.join("fake-creds");
        std::fs::write(&prog, "#!/bin/sh\ncat\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        SecretStore::new(
            Keystore::SystemdCreds {
                program: prog,
                key: SealKey::Auto,
            },
            credentials_dir,
        )
    }

    fn settings(dir: &Path) -> Settings {
        Settings::new(
            CloudUrl::parse("http://x").unwrap(),
            ClusterId::parse("c1").unwrap(),
            dir.to_path_buf(),
        )
    }

    #[test]
    fn placeholders_are_substituted() {
        assert_eq!(
            substitute("{bind}:{port}", &[("bind", "127.0.0.1"), ("port", "9000")]),
            "127.0.0.1:9000"
        );
        assert_eq!(substitute("{unknown}", &[("port", "1")]), "{unknown}");
    }

    fn file(path: &str, contents: &str) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            contents: contents.into(),
            mode: FileMode::Number(0o600),
        }
    }

    fn store_manifest(s: &Settings, files: Vec<ManifestFile>) {
        let m = InstallManifest {
            manifest_version: "1.0.0".into(),
            compose_project_name: "p".into(),
            files,
            images: serde_json::Value::Null,
            build_context_archive_base64: None,
        };
        credentials::save_manifest(&s.manifest_file(), &m, None).unwrap();
    }

    fn native(kind: ServiceKind) -> ServiceSettings {
        ServiceSettings::defaults(kind, ServiceMode::Native)
    }

    #[test]
    fn the_manifest_wins_over_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        store_manifest(
            &s,
            vec![
                file(
                    "minio.env",
                    "MINIO_ROOT_USER=volt_minio_1\nMINIO_ROOT_PASSWORD=m-pw",
                ),
                file(
                    "mongodb.env",
                    "MONGO_INITDB_ROOT_USERNAME=volt_mongodb_1\nMONGO_INITDB_ROOT_PASSWORD=mg-pw\nMONGO_INITDB_DATABASE=volt",
                ),
                file(
                    "redis.env",
                    "REDIS_USERNAME=volt_redis_1\nREDIS_PASSWORD=r-pw",
                ),
                file(
                    ".env",
                    "MINIO_PORT=9100\nREDIS_PORT=6390\nMONGODB_PORT=27018",
                ),
            ],
        );
        let mut svc = native(ServiceKind::Minio);
        svc.user = Some("configured".into());
        svc.password = Some(Secret::new("configured-pw"));
        svc.port = Some(1234);
        let r = resolve(ServiceKind::Minio, &svc, &s).unwrap();
        assert_eq!(
            (r.user.as_str(), r.password.expose(), r.port),
            ("volt_minio_1", "m-pw", 9100)
        );
        assert_eq!(r.source, CredentialSource::Manifest);
        let r = resolve(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s).unwrap();
        assert_eq!(
            (r.user.as_str(), r.password.expose(), r.port),
            ("volt_mongodb_1", "mg-pw", 27018)
        );
        let r = resolve(ServiceKind::Redis, &native(ServiceKind::Redis), &s).unwrap();
        assert_eq!(
            (r.user.as_str(), r.password.expose(), r.port),
            ("volt_redis_1", "r-pw", 6390)
        );
        assert_eq!(r.host, "127.0.0.1");
        assert_eq!(r.data_dir, dir.path().join("services/redis"));
        assert_eq!(r.pid_file(), dir.path().join("services/redis.pid"));
    }

    #[test]
    fn redis_credentials_fall_back_to_the_acl_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        store_manifest(
            &s,
            vec![file(
                "redis.acl",
                "user default off\nuser volt_redis_2 on >acl-pw ~* &* +@all",
            )],
        );
        let r = resolve(ServiceKind::Redis, &native(ServiceKind::Redis), &s).unwrap();
        assert_eq!(
            (r.user.as_str(), r.password.expose()),
            ("volt_redis_2", "acl-pw")
        );
    }

    #[test]
    fn without_a_manifest_config_then_install_ports_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let mut svc = native(ServiceKind::Redis);
        svc.user = Some("u".into());
        svc.password = Some(Secret::new("p"));
        let r = resolve(ServiceKind::Redis, &svc, &s).unwrap();
        assert_eq!((r.port, r.source), (6379, CredentialSource::Config));
        s.install.ports = Some(ServicePorts {
            minio: 9100,
            redis: 6390,
            mongodb: 27018,
            daemon: 8090,
        });
        assert_eq!(resolve(ServiceKind::Redis, &svc, &s).unwrap().port, 6390);
        svc.port = Some(7000);
        assert_eq!(resolve(ServiceKind::Redis, &svc, &s).unwrap().port, 7000);
    }

    #[test]
    fn generated_credentials_are_stored_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let a = resolve(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s).unwrap();
        assert_eq!(a.source, CredentialSource::Generated);
        assert_eq!(a.password.expose().len(), 48);
        assert!(a.user.starts_with("volt_mongo_"), "{}", a.user);
        let b = resolve(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s).unwrap();
        assert_eq!(a, b, "a restart reuses the stored credentials");
        let other = resolve(ServiceKind::Redis, &native(ServiceKind::Redis), &s).unwrap();
        assert_ne!(other.password, a.password);
        let path = dir.path().join("services").join(GENERATED_CREDENTIALS_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A configured user keeps its name; only the password is generated.
        let mut svc = native(ServiceKind::Minio);
        svc.user = Some("minio-admin".into());
        let r = resolve(ServiceKind::Minio, &svc, &s).unwrap();
        assert_eq!(r.user, "minio-admin");
        assert_eq!(r.password.expose().len(), 48);
    }

    #[test]
    fn external_mode_needs_credentials_and_a_corrupt_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let svc = ServiceSettings::defaults(ServiceKind::Redis, ServiceMode::External);
        let err = resolve(ServiceKind::Redis, &svc, &s).unwrap_err();
        assert!(err.contains("services.redis.password"), "{err}");

        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        std::fs::write(
            dir.path().join("services").join(GENERATED_CREDENTIALS_FILE),
            "{oops",
        )
        .unwrap();
        let err = resolve(ServiceKind::Redis, &native(ServiceKind::Redis), &s).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
    }

    fn read_map(p: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn with_a_key_store_generated_credentials_are_sealed_and_a_plain_file_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.services = crate::config::ServicesSettings::native();
        let plain = dir.path().join("services").join(GENERATED_CREDENTIALS_FILE);
        let sealed = sealed_path(&plain);
        // An older voltd left a plain file with mongo's password.
        let old = resolve(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s).unwrap();
        assert!(plain.exists() && !sealed.exists());

        let root = passthrough_store(dir.path(), None);
        let done = pregenerate(&s, &root).unwrap();
        assert_eq!(done, ServiceKind::ALL.to_vec());
        assert!(!plain.exists(), "migrated");
        assert_eq!(
            std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = resolve_with(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s, &root);
        assert_eq!(again.unwrap(), old, "the migrated password is kept");
        let sealed_text = std::fs::read(&sealed).unwrap();
        assert!(pregenerate(&s, &root).is_ok());
        assert_eq!(std::fs::read(&sealed).unwrap(), sealed_text, "nothing new");

        // The sandboxed daemon: cannot seal, reads what systemd decrypted.
        let creds_dir = dir.path().join("creds");
        std::fs::create_dir(&creds_dir).unwrap();
        std::fs::write(creds_dir.join(GENERATED_CREDENTIALS_NAME), &sealed_text).unwrap();
        std::fs::remove_file(&sealed).unwrap();
        let daemon = SecretStore::new(Keystore::PlainFile, Some(creds_dir.clone()));
        let r = resolve_with(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s, &daemon);
        assert_eq!(r.unwrap(), old);
        for kind in ServiceKind::ALL {
            resolve_with(kind, &native(kind), &s, &daemon).unwrap();
        }
        assert!(
            !plain.exists(),
            "everything was pre-generated: no plain file"
        );

        // A password the sealed set lacks: only that one goes to the plain
        // file, never a copy of the sealed ones.
        std::fs::write(
            creds_dir.join(GENERATED_CREDENTIALS_NAME),
            serde_json::to_vec(&read_map_bytes(&sealed_text, &["mongo"])).unwrap(),
        )
        .unwrap();
        let redis = resolve_with(ServiceKind::Redis, &native(ServiceKind::Redis), &s, &daemon);
        let redis = redis.unwrap();
        let on_disk = read_map(&plain);
        assert_eq!(on_disk.as_object().unwrap().len(), 1, "{on_disk}");
        assert_eq!(on_disk["redis"]["password"], redis.password.expose());
        let r = resolve_with(ServiceKind::Redis, &native(ServiceKind::Redis), &s, &daemon);
        assert_eq!(r.unwrap(), redis, "reused from the plain file");
        let r = resolve_with(ServiceKind::Mongo, &native(ServiceKind::Mongo), &s, &daemon);
        assert_eq!(r.unwrap(), old, "still from the credentials directory");
    }

    /// `bytes` (a generated-credentials JSON) with only `keep`'s entries.
    fn read_map_bytes(bytes: &[u8], keep: &[&str]) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v.as_object_mut()
            .unwrap()
            .retain(|k, _| keep.contains(&k.as_str()));
        v
    }

    #[test]
    fn parallel_resolves_keep_every_generated_password() {
        // The services resolve on blocking threads at the same time; no
        // read-modify-write of the shared file may lose another's entry.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let s = settings(dir.path());
            let got: Vec<Resolved> = std::thread::scope(|scope| {
                let handles: Vec<_> = ServiceKind::ALL
                    .into_iter()
                    .map(|k| {
                        let s = &s;
                        scope.spawn(move || resolve(k, &native(k), s).unwrap())
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let on_disk = read_map(&dir.path().join("services").join(GENERATED_CREDENTIALS_FILE));
            for r in got {
                assert_eq!(
                    on_disk[r.kind.name()]["password"],
                    r.password.expose(),
                    "{on_disk}"
                );
            }
        }
    }

    #[test]
    fn runtime_files_go_to_systemds_runtime_directory_else_state_run() {
        let state = Path::new("/var/lib/voltd");
        assert_eq!(
            runtime_dir_from(Some("/run/voltd".as_ref()), state),
            PathBuf::from("/run/voltd")
        );
        assert_eq!(
            runtime_dir_from(Some("/run/voltd:/run/other".as_ref()), state),
            PathBuf::from("/run/voltd")
        );
        assert_eq!(runtime_dir_from(None, state), state.join("run"));
        assert_eq!(
            runtime_dir_from(Some("".as_ref()), state),
            state.join("run")
        );
    }

    #[test]
    fn a_corrupt_store_error_quotes_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        std::fs::write(
            dir.path().join("services").join(GENERATED_CREDENTIALS_FILE),
            r#"{"redis": {"user": "u", "password": 12345678901234}}"#,
        )
        .unwrap();
        let err = resolve(ServiceKind::Redis, &native(ServiceKind::Redis), &s).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
        assert!(!err.contains("12345678901234"), "{err}");
    }

    #[test]
    fn unspecified_bind_addresses_are_reached_on_loopback() {
        assert_eq!(default_host("0.0.0.0".parse().unwrap()), "127.0.0.1");
        assert_eq!(default_host("::".parse().unwrap()), "::1");
        assert_eq!(default_host("10.0.0.5".parse().unwrap()), "10.0.0.5");
    }

    #[test]
    fn resolved_debug_never_shows_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let r = resolve(ServiceKind::Redis, &native(ServiceKind::Redis), &s).unwrap();
        assert!(!format!("{r:?}").contains(r.password.expose()));
    }
}
