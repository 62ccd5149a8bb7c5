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
//! one (24 random bytes, hex, like the server's), stored 0600 under the
//! state directory so every restart reuses it.

use super::ServiceKind;
use crate::cloud::credentials;
use crate::config::Settings;
use crate::config::services::services_dir;
use crate::config::{ServiceMode, ServiceSettings};
use crate::host::fsutil::{SECRET_FILE_MODE, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use volt_protocol::enrollment::InstallManifest;
use volt_protocol::register::Secret;

/// File of generated service credentials inside `<state dir>/services`.
pub const GENERATED_CREDENTIALS_FILE: &str = "credentials.json";
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
    /// `<state dir>/services` (pid files, generated configs).
    pub services_dir: PathBuf,
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

/// The install manifest's modification time ([`Settings::manifest_stamp`]).
pub fn manifest_stamp(settings: &Settings) -> Option<SystemTime> {
    settings.manifest_stamp()
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

#[derive(Debug, Default, Serialize, Deserialize)]
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

/// Loads (or creates) the generated credentials of `kind`, generating only
/// what is missing and storing the result atomically with mode 0600.
fn generated(
    services_dir: &Path,
    kind: ServiceKind,
    need_user: bool,
) -> Result<(String, Secret), String> {
    let path = services_dir.join(GENERATED_CREDENTIALS_FILE);
    let mut all: BTreeMap<String, GeneratedEntry> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} is corrupt ({e}); restore it or remove it to generate new service passwords",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let entry = all.entry(kind.name().to_owned()).or_default();
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
    if changed {
        write_json_atomic(&path, &all, SECRET_FILE_MODE).map_err(|e| {
            format!(
                "cannot store generated service credentials in {}: {e}",
                path.display()
            )
        })?;
    }
    Ok((user, password))
}

fn default_host(bind: IpAddr) -> String {
    match bind {
        IpAddr::V4(a) if a.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(a) if a.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
        other => other.to_string(),
    }
}

/// Resolves `kind`'s port and credentials now (see the module docs).
pub fn resolve(
    kind: ServiceKind,
    svc: &ServiceSettings,
    settings: &Settings,
) -> Result<Resolved, String> {
    let manifest = match credentials::load_manifest(&settings.manifest_file()) {
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
        let (u, p) = generated(&services_dir, kind, user.is_none())?;
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
        use std::os::unix::fs::PermissionsExt;
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
