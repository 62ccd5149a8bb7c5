//! Redis: the reference runs `redis-server --aclfile users.acl` with
//! `user default off` and one ACL user from the install manifest. voltd
//! writes the same ACL file and a config around it before every start, in
//! the runtime directory (`resolve::runtime_dir`: systemd's tmpfs
//! `RuntimeDirectory=`, never the state directory where secrets are sealed;
//! `redis.conf` and `redis.acl`, both 0600, written atomically; copies an
//! older voltd left in `<state dir>/services` are removed): port,
//! bind address, data directory, `appendonly yes` so a crash loses at most
//! a second of writes. Probe: `PING` (timed) plus `INFO` for the connected
//! clients, memory and operations per second. Bootstrap: `ACL WHOAMI` must
//! name the ACL user (the default user is off, so nothing else can log in).
//!
//! One deliberate difference from the reference's ACL file: the disabled
//! default user keeps every permission (`user default off ~* &* +@all`).
//! Redis replays the AOF as the default user, and up to at least 7.0.15 it
//! re-checks ACLs at each replayed `EXEC`; a Lua script's writes (every
//! BullMQ state change) are in the AOF as `MULTI … EXEC`, so with a
//! default user without permissions they were silently dropped at the next
//! start — queued jobs lost on every restart (redis/redis#14541, fixed by
//! #14545; valkey#3983). `off` still means nobody can log in as default
//! (`AUTH default …` fails with "user is disabled"; a connection without
//! AUTH gets `NOAUTH`).

use super::core::{Driver, Probe, ProbeError};
use super::resolve::Resolved;
use super::{ServiceClient, ServiceKind};
use crate::host::fsutil::{PRIVATE_DIR_MODE, SECRET_FILE_MODE, ensure_dir, write_atomic};
use crate::host::keystore::remove_if_present;
use ::redis::{ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// Generated config file inside the runtime directory.
pub const CONFIG_FILE: &str = "redis.conf";
/// Generated ACL file (it holds the password) inside the runtime directory.
pub const ACL_FILE: &str = "redis.acl";

/// The Redis driver.
#[derive(Debug, Clone, Copy)]
pub struct Redis;

/// A string for redis.conf: double-quoted with `\` and `"` escaped, so
/// paths with spaces survive.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The ACL file: the default user off (with permissions, so the AOF
/// replays whole: see the module docs), the service user with every right
/// (the reference's `user <name> on ><password> ~* &* +@all`).
pub fn acl_text(r: &Resolved) -> String {
    format!(
        "user default off ~* &* +@all\nuser {} on >{} ~* &* +@all\n",
        r.user,
        r.password.expose()
    )
}

/// The config file.
pub fn config_text(r: &Resolved, acl: &Path) -> String {
    format!(
        "# Written by voltd before every start; edit [services.redis] in voltd.toml instead.\n\
         bind {bind}\n\
         port {port}\n\
         dir {dir}\n\
         daemonize no\n\
         logfile \"\"\n\
         appendonly yes\n\
         appendfsync everysec\n\
         aclfile {acl}\n",
        bind = r.bind,
        port = r.port,
        dir = quote(&r.data_dir.display().to_string()),
        acl = quote(&acl.display().to_string()),
    )
}

fn classify(e: RedisError) -> ProbeError {
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    if auth {
        ProbeError::auth(e.to_string())
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        ProbeError::unreachable(e.to_string())
    } else {
        ProbeError::other(e.to_string())
    }
}

/// The figures of `INFO` voltd reports.
pub fn parse_info(info: &str) -> Value {
    let get = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    json!({
        "connectedClients": get("connected_clients"),
        "usedMemoryBytes": get("used_memory"),
        "opsPerSecond": get("instantaneous_ops_per_sec"),
        "totalCommands": get("total_commands_processed"),
        "uptimeSeconds": get("uptime_in_seconds"),
    })
}

async fn connect(
    client: &::redis::Client,
) -> Result<::redis::aio::MultiplexedConnection, ProbeError> {
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(classify)
}

impl Driver for Redis {
    type Client = ::redis::Client;
    const KIND: ServiceKind = ServiceKind::Redis;

    fn prepare(&self, r: &Resolved) -> Result<Option<PathBuf>, String> {
        ensure_dir(&r.runtime_dir, PRIVATE_DIR_MODE)
            .map_err(|e| format!("cannot create {}: {e}", r.runtime_dir.display()))?;
        // Where older versions wrote them (the ACL file holds the password).
        if r.services_dir != r.runtime_dir {
            for old in [ACL_FILE, CONFIG_FILE] {
                remove_if_present(&r.services_dir.join(old)).map_err(|e| e.to_string())?;
            }
        }
        let acl = r.runtime_dir.join(ACL_FILE);
        let conf = r.runtime_dir.join(CONFIG_FILE);
        write_atomic(&acl, acl_text(r).as_bytes(), SECRET_FILE_MODE)
            .map_err(|e| format!("cannot write {}: {e}", acl.display()))?;
        write_atomic(&conf, config_text(r, &acl).as_bytes(), SECRET_FILE_MODE)
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        Ok(Some(conf))
    }

    fn client(&self, r: &Resolved, _timeout: Duration) -> Result<Self::Client, String> {
        let info = ConnectionAddr::Tcp(r.host.clone(), r.port)
            .into_connection_info()
            .map_err(|e| format!("invalid Redis address: {e}"))?
            .set_redis_settings(
                RedisConnectionInfo::default()
                    .set_db(0)
                    .set_username(&r.user)
                    .set_password(r.password.expose()),
            );
        ::redis::Client::open(info).map_err(|e| format!("invalid Redis client settings: {e}"))
    }

    fn share(client: &Self::Client) -> ServiceClient {
        ServiceClient::Redis(client.clone())
    }

    async fn probe(&self, client: &Self::Client, _timeout: Duration) -> Result<Probe, ProbeError> {
        let mut con = connect(client).await?;
        let started = Instant::now();
        let pong: String = ::redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(classify)?;
        let latency = started.elapsed();
        if pong != "PONG" {
            return Err(ProbeError::other(format!("PING answered {pong:?}")));
        }
        let stats = match ::redis::cmd("INFO").query_async::<String>(&mut con).await {
            Ok(info) => Some(parse_info(&info)),
            Err(e) => {
                tracing::debug!(error = %e, "Redis INFO failed; no figures this time.");
                None
            }
        };
        Ok(Probe { latency, stats })
    }

    async fn bootstrap(&self, client: &Self::Client, r: &Resolved) -> Result<(), ProbeError> {
        let mut con = connect(client).await?;
        let whoami: String = ::redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut con)
            .await
            .map_err(classify)?;
        if whoami != r.user {
            return Err(ProbeError::other(format!(
                "logged in as {whoami:?} instead of the ACL user {:?}",
                r.user
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceMode;
    use crate::services::resolve::CredentialSource;
    use volt_protocol::register::Secret;

    fn resolved() -> Resolved {
        Resolved {
            kind: ServiceKind::Redis,
            mode: ServiceMode::Native,
            host: "127.0.0.1".into(),
            port: 6390,
            bind: "127.0.0.1".parse().unwrap(),
            data_dir: PathBuf::from("/var/lib/voltd/services/my redis"),
            services_dir: PathBuf::from("/var/lib/voltd/services"),
            runtime_dir: PathBuf::from("/run/voltd"),
            user: "volt_redis_1a2b3c4d".into(),
            password: Secret::new("p4ss"),
            source: CredentialSource::Manifest,
        }
    }

    #[test]
    fn acl_matches_the_reference_layout() {
        assert_eq!(
            acl_text(&resolved()),
            "user default off ~* &* +@all\nuser volt_redis_1a2b3c4d on >p4ss ~* &* +@all\n"
        );
    }

    #[test]
    fn config_sets_port_bind_dir_aof_and_acl_file() {
        let text = config_text(&resolved(), Path::new("/var/lib/voltd/services/redis.acl"));
        for line in [
            "bind 127.0.0.1",
            "port 6390",
            "dir \"/var/lib/voltd/services/my redis\"",
            "appendonly yes",
            "aclfile \"/var/lib/voltd/services/redis.acl\"",
            "daemonize no",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(
            !text.contains("p4ss"),
            "the password lives in the ACL file only"
        );
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn info_figures_are_extracted() {
        let info = "# Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n# Stats\r\ninstantaneous_ops_per_sec:12\r\ntotal_commands_processed:99\r\nuptime_in_seconds:7\r\n";
        assert_eq!(
            parse_info(info),
            json!({"connectedClients": 3, "usedMemoryBytes": 1048576, "opsPerSecond": 12, "totalCommands": 99, "uptimeSeconds": 7})
        );
    }
}
