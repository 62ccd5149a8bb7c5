//! The Gen B install manifest (`TeamClusterInstallManifestFiles.ts`, image
//! distribution mode): docker-compose.yml, the env files, the Redis ACL.
//! The installer writes each file as `contents + "\n"` with `mode`.

use crate::store::{ClusterRecord, LOCAL_OWNER};
use serde::Serialize;
use volt_protocol::enrollment::{ServicePorts, compose_project_name};

/// `manifestVersion`, also written as `VOLT_CLUSTER_INSTALL_MANIFEST_VERSION`.
pub const MANIFEST_VERSION: &str = "1.0.0";
/// Images of the reference's Gen B manifest.
pub const MINIO_IMAGE: &str = "minio/minio:RELEASE.2025-02-28T09-55-16Z";
pub const REDIS_IMAGE: &str = "redis:7.4.2-alpine";
pub const MONGODB_IMAGE: &str = "mongo:8.0.5";
pub const DAEMON_IMAGE: &str = "ghcr.io/voltlabs-research/volt-cluster-daemon:main";
/// Repository of daemon images (`runtime.update` targets).
pub const DAEMON_IMAGE_REPOSITORY: &str = "ghcr.io/voltlabs-research/volt-cluster-daemon";

/// One file of the manifest. `mode` is an octal string, as the reference sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestFile {
    pub path: &'static str,
    pub contents: String,
    pub mode: &'static str,
}

/// `images` of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Images {
    pub minio: &'static str,
    pub redis: &'static str,
    pub mongodb: &'static str,
    pub daemon: &'static str,
}

/// `data.manifest` of the install manifest call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub manifest_version: &'static str,
    pub compose_project_name: String,
    pub files: Vec<ManifestFile>,
    pub images: Images,
}

const COMPOSE_FILE: &str = r#"services:
  minio:
    image: ${MINIO_IMAGE}
    restart: unless-stopped
    env_file:
      - ./minio.env
    command: server /data --address ":9000"
    ports:
      - "${MINIO_PORT}:9000"
    volumes:
      - minio-data:/data
  mongodb:
    image: ${MONGODB_IMAGE}
    restart: unless-stopped
    env_file:
      - ./mongodb.env
    ports:
      - "${MONGODB_PORT}:27017"
    volumes:
      - mongodb-data:/data/db
  redis:
    image: ${REDIS_IMAGE}
    restart: unless-stopped
    command:
      - redis-server
      - --aclfile
      - /usr/local/etc/redis/users.acl
    ports:
      - "${REDIS_PORT}:6379"
    volumes:
      - redis-data:/data
      - ./redis.acl:/usr/local/etc/redis/users.acl:ro
  daemon:
    image: ${VOLT_CLUSTER_DAEMON_IMAGE}
    restart: always
    env_file:
      - ./.env
      - ./daemon.env
    depends_on:
      - minio
      - mongodb
      - redis
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
volumes:
  minio-data:
  mongodb-data:
  redis-data:"#;

fn lines(items: &[String]) -> String {
    items.join("\n")
}

/// Builds the manifest for a cluster whose install context (root, ports)
/// was just stored. `cloud_url` has no trailing slash.
pub fn build(
    rec: &ClusterRecord,
    install_root: &str,
    ports: ServicePorts,
    cloud_url: &str,
) -> Manifest {
    let id = &rec.id;
    let project = compose_project_name(id);
    let cr = &rec.credentials;

    let root_env = lines(&[
        format!("TEAM_CLUSTER_ID={id}"),
        format!("COMPOSE_PROJECT_NAME={project}"),
        format!("TEAM_CLUSTER_INSTALL_ROOT={install_root}"),
        format!("VOLT_CLOUD_URL={cloud_url}"),
        format!("VOLT_CLUSTER_INSTALL_MANIFEST_VERSION={MANIFEST_VERSION}"),
        format!("MINIO_IMAGE={MINIO_IMAGE}"),
        format!("REDIS_IMAGE={REDIS_IMAGE}"),
        format!("MONGODB_IMAGE={MONGODB_IMAGE}"),
        format!("VOLT_CLUSTER_DAEMON_IMAGE={DAEMON_IMAGE}"),
        format!("MINIO_PORT={}", ports.minio),
        format!("REDIS_PORT={}", ports.redis),
        format!("MONGODB_PORT={}", ports.mongodb),
    ]);
    let minio_env = lines(&[
        format!("MINIO_ROOT_USER={}", cr.minio.user),
        format!("MINIO_ROOT_PASSWORD={}", cr.minio.password),
    ]);
    let mongodb_env = lines(&[
        format!("MONGO_INITDB_ROOT_USERNAME={}", cr.mongodb.user),
        format!("MONGO_INITDB_ROOT_PASSWORD={}", cr.mongodb.password),
        "MONGO_INITDB_DATABASE=volt".into(),
    ]);
    let redis_env = lines(&[
        format!("REDIS_USERNAME={}", cr.redis.user),
        format!("REDIS_PASSWORD={}", cr.redis.password),
    ]);
    let redis_acl = lines(&[
        "user default off".into(),
        format!(
            "user {} on >{} ~* &* +@all",
            cr.redis.user, cr.redis.password
        ),
    ]);
    // The union of the reference's daemon.env revisions: the newest keys
    // plus the older *_PATH keys, which the Gen B daemon's config requires.
    let daemon_env = lines(&[
        format!("TEAM_ID={LOCAL_OWNER}"),
        format!("TEAM_CLUSTER_ID={id}"),
        format!("COMPOSE_PROJECT_NAME={project}"),
        format!("TEAM_CLUSTER_INSTALL_ROOT={install_root}"),
        format!("VOLT_CLOUD_URL={cloud_url}"),
        format!("TEAM_CLUSTER_DAEMON_PASSWORD={}", rec.daemon_password),
        format!("TEAM_CLUSTER_HEARTBEAT_PATH=/api/team-clusters/{id}/heartbeats"),
        format!("TEAM_CLUSTER_LIFECYCLE_PATH=/api/team-clusters/{id}/lifecycle"),
        format!("TEAM_CLUSTER_HEALTHCHECK_PATH=/api/team-clusters/{id}/healthcheck"),
        format!("TEAM_CLUSTER_DELETE_COMPLETION_PATH=/api/team-clusters/{id}/delete-completions"),
        format!("TEAM_CLUSTER_INSTALL_MANIFEST_PATH=/api/team-clusters/{id}/install-manifest"),
        "MINIO_ENDPOINT=http://minio:9000".into(),
        format!("MINIO_ACCESS_KEY={}", cr.minio.user),
        format!("MINIO_SECRET_KEY={}", cr.minio.password),
        format!(
            "MONGODB_URI=mongodb://{}:{}@mongodb:27017/volt?authSource=admin",
            cr.mongodb.user, cr.mongodb.password
        ),
        "REDIS_HOST=redis".into(),
        "REDIS_PORT=6379".into(),
        format!("REDIS_USERNAME={}", cr.redis.user),
        format!("REDIS_PASSWORD={}", cr.redis.password),
        "PORT=8080".into(),
        format!("VOLT_CLOUD_DAEMON_SOCKET_URL={cloud_url}"),
    ]);

    let file = |path, contents, mode| ManifestFile {
        path,
        contents,
        mode,
    };
    Manifest {
        manifest_version: MANIFEST_VERSION,
        compose_project_name: project,
        files: vec![
            file("docker-compose.yml", COMPOSE_FILE.to_owned(), "0644"),
            file(".env", root_env, "0600"),
            file("minio.env", minio_env, "0600"),
            file("mongodb.env", mongodb_env, "0600"),
            file("redis.env", redis_env, "0600"),
            file("redis.acl", redis_acl, "0644"),
            file("daemon.env", daemon_env, "0600"),
        ],
        images: Images {
            minio: MINIO_IMAGE,
            redis: REDIS_IMAGE,
            mongodb: MONGODB_IMAGE,
            daemon: DAEMON_IMAGE,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volt_protocol::ClusterStatus;
    use volt_protocol::enrollment::{InstallManifest, parse_env_file};

    fn rec() -> ClusterRecord {
        let mut r = crate::store::tests::record(
            "65a1b2c3d4e5f60718293a4b",
            ClusterStatus::HealthcheckReceived,
        );
        r.daemon_password = "daemonpw".into();
        r
    }

    #[test]
    fn manifest_parses_with_the_protocol_types_and_has_every_key() {
        let r = rec();
        let ports = ServicePorts {
            minio: 9001,
            redis: 6380,
            mongodb: 27018,
            daemon: 8081,
        };
        let m = build(
            &r,
            "/opt/volt/team-clusters",
            ports,
            "http://127.0.0.1:8080",
        );
        let parsed: InstallManifest =
            serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(parsed.manifest_version, "1.0.0");
        assert_eq!(parsed.compose_project_name, "voltcluster65a1b2c3d4e5");
        let env = parsed.env(".env");
        assert_eq!(env["MINIO_PORT"], "9001");
        assert_eq!(env["VOLT_CLOUD_URL"], "http://127.0.0.1:8080");
        assert_eq!(env["VOLT_CLUSTER_INSTALL_MANIFEST_VERSION"], "1.0.0");
        assert_eq!(env.len(), 12);
        let d = parsed.env("daemon.env");
        assert_eq!(d["TEAM_CLUSTER_DAEMON_PASSWORD"], "daemonpw");
        assert_eq!(d["VOLT_CLOUD_DAEMON_SOCKET_URL"], "http://127.0.0.1:8080");
        assert_eq!(d["MINIO_ACCESS_KEY"], r.credentials.minio.user);
        assert!(d["MONGODB_URI"].contains(&r.credentials.mongodb.password));
        let acl = &parsed.file("redis.acl").unwrap().contents;
        assert!(acl.starts_with("user default off\n"));
        assert!(acl.contains(&format!(">{}", r.credentials.redis.password)));
        for (path, mode) in [
            ("docker-compose.yml", 0o644),
            (".env", 0o600),
            ("minio.env", 0o600),
            ("mongodb.env", 0o600),
            ("redis.env", 0o600),
            ("redis.acl", 0o644),
            ("daemon.env", 0o600),
        ] {
            assert_eq!(parsed.file(path).unwrap().mode.bits(), mode, "{path}");
        }
        assert_eq!(
            parse_env_file(&parsed.file("mongodb.env").unwrap().contents)["MONGO_INITDB_DATABASE"],
            "volt"
        );
    }
}
