//! MongoDB: `mongod` with authentication on, the root user from the install
//! manifest (`MONGO_INITDB_ROOT_USERNAME/PASSWORD`), database `volt`.
//!
//! The docker image creates the root user from those variables on first
//! start; a native `mongod` does not. So the first start (and any start
//! after the credentials changed) is a provisioning run: the server is
//! started without `--auth` on loopback, the root user is created (or its
//! password updated), the server is stopped, and a marker in the data
//! directory records a fingerprint of the credentials (a SHA-256, never the
//! password). This works for `mongod` and for MongoDB-wire servers that
//! provision users the same way (SecantusDB).
//!
//! Probe: `ping` (the second of two is timed) plus `serverStatus` for
//! connections and operation counters. Bootstrap: the collections the VOLT daemon uses exist in
//! `volt`, which makes the database itself exist.

use super::core::{Driver, Probe, ProbeError, Provisioning};
use super::resolve::Resolved;
use super::{ServiceClient, ServiceKind};
use crate::config::ServiceSettings;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::time::Instant;

/// The VOLT database.
pub const DATABASE: &str = "volt";
/// Collections of the reference daemon (`cluster-daemon/src/modules/*/models`),
/// created if missing so `volt` exists from the start.
pub const COLLECTIONS: [&str; 4] = [
    "scriptingnotebooks",
    "trajectorysceneartifacts",
    "pluginlistingrows",
    "pluginsublistingrows",
];
/// Marker file (in the data directory) of a finished provisioning run.
pub const PROVISIONED_MARKER: &str = ".voltd-provisioned";
/// Where the root user lives (`authSource=admin` in the reference URI).
pub const AUTH_SOURCE: &str = "admin";
/// MongoDB's "NamespaceExists" error: a collection created concurrently.
const NAMESPACE_EXISTS: i32 = 48;

/// The MongoDB driver.
#[derive(Debug, Clone, Copy)]
pub struct Mongo;

/// Client options for one server, with or without the root credentials.
pub fn client_options(
    host: &str,
    port: u16,
    auth: Option<(&str, &str)>,
    timeout: Duration,
) -> ClientOptions {
    let credential = auth.map(|(user, password)| {
        Credential::builder()
            .username(user.to_owned())
            .password(password.to_owned())
            .source(AUTH_SOURCE.to_owned())
            .build()
    });
    let mut options = ClientOptions::builder()
        .hosts(vec![ServerAddress::Tcp {
            host: host.to_owned(),
            port: Some(port),
        }])
        .direct_connection(true)
        .server_selection_timeout(timeout)
        .connect_timeout(timeout)
        .app_name("voltd".to_owned())
        .default_database(DATABASE.to_owned())
        .build();
    options.credential = credential;
    options
}

/// `sha256(user ":" password)`, hex: what the provisioning marker holds.
pub fn fingerprint(user: &str, password: &str) -> String {
    let digest = Sha256::digest(format!("{user}:{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn classify(e: mongodb::error::Error) -> ProbeError {
    use mongodb::error::ErrorKind as K;
    let message = e.to_string();
    match &*e.kind {
        K::Authentication { .. } => ProbeError::auth(message),
        K::Command(c) if c.code == 18 || c.code == 13 => ProbeError::auth(message),
        K::ServerSelection { message: m, .. } if m.contains("uthentication") => {
            ProbeError::auth(message)
        }
        K::ServerSelection { .. } | K::Io(_) | K::ConnectionPoolCleared { .. } => {
            ProbeError::unreachable(message)
        }
        _ => ProbeError::other(message),
    }
}

fn number(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) => Some(f.round() as i64),
        _ => None,
    }
}

/// The figures of `serverStatus` voltd reports.
pub fn server_stats(status: &Document) -> Value {
    let connections = status.get_document("connections").ok();
    let ops = status.get_document("opcounters").ok();
    let op = |k: &str| ops.and_then(|o| number(o, k));
    let queries = ["query", "getmore"]
        .iter()
        .filter_map(|k| op(k))
        .sum::<i64>();
    json!({
        "connections": connections.and_then(|c| number(c, "current")),
        "availableConnections": connections.and_then(|c| number(c, "available")),
        "opcounters": {
            "insert": op("insert"),
            "query": op("query"),
            "update": op("update"),
            "delete": op("delete"),
            "getmore": op("getmore"),
            "command": op("command"),
        },
        "queries": ops.map(|_| queries),
        "uptimeSeconds": number(status, "uptime"),
        "version": status.get_str("version").ok(),
    })
}

impl Driver for Mongo {
    type Client = mongodb::Client;
    const KIND: ServiceKind = ServiceKind::Mongo;

    fn client(&self, r: &Resolved, timeout: Duration) -> Result<Self::Client, String> {
        let options = client_options(
            &r.host,
            r.port,
            Some((&r.user, r.password.expose())),
            timeout,
        );
        mongodb::Client::with_options(options)
            .map_err(|e| format!("invalid MongoDB client settings: {e}"))
    }

    fn share(client: &Self::Client) -> ServiceClient {
        ServiceClient::Mongo(client.clone())
    }

    async fn probe(&self, client: &Self::Client, _timeout: Duration) -> Result<Probe, ProbeError> {
        let admin = client.database(AUTH_SOURCE);
        // The first ping may wait for server selection and a new pooled
        // connection (SCRAM takes hundreds of milliseconds on some
        // servers); the second one is the round trip worth reporting.
        admin
            .run_command(doc! {"ping": 1})
            .await
            .map_err(classify)?;
        let started = Instant::now();
        admin
            .run_command(doc! {"ping": 1})
            .await
            .map_err(classify)?;
        let latency = started.elapsed();
        let stats = match admin.run_command(doc! {"serverStatus": 1}).await {
            Ok(status) => Some(server_stats(&status)),
            Err(e) => {
                tracing::debug!(error = %e, "MongoDB serverStatus failed; no figures this time.");
                None
            }
        };
        Ok(Probe { latency, stats })
    }

    async fn bootstrap(&self, client: &Self::Client, _r: &Resolved) -> Result<(), ProbeError> {
        let db = client.database(DATABASE);
        let existing = db.list_collection_names().await.map_err(classify)?;
        for name in COLLECTIONS
            .iter()
            .filter(|c| !existing.iter().any(|e| e == *c))
        {
            match db.create_collection(*name).await {
                Ok(()) => tracing::info!(
                    database = %DATABASE,
                    collection = %name,
                    "Collection created."
                ),
                Err(e) if matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS) =>
                    {}
                Err(e) => return Err(classify(e).context(format!("creating {DATABASE}.{name}"))),
            }
        }
        Ok(())
    }

    fn provisioning(&self, svc: &ServiceSettings, r: &Resolved) -> Option<Provisioning> {
        Some(Provisioning {
            marker: r.data_dir.join(PROVISIONED_MARKER),
            fingerprint: fingerprint(&r.user, r.password.expose()),
            drop_arg: svc.auth_flag.clone(),
        })
    }

    async fn provision(
        &self,
        r: &Resolved,
        host: &str,
        within: Duration,
    ) -> Result<(), ProbeError> {
        let client = mongodb::Client::with_options(client_options(host, r.port, None, within))
            .map_err(|e| ProbeError::other(format!("invalid MongoDB client settings: {e}")))?;
        let admin = client.database(AUTH_SOURCE);
        let info = admin
            .run_command(doc! {"usersInfo": r.user.as_str()})
            .await
            .map_err(classify)?;
        let exists = info.get_array("users").is_ok_and(|u| !u.is_empty());
        let roles = vec![Bson::Document(doc! {"role": "root", "db": AUTH_SOURCE})];
        let command = if exists {
            doc! {"updateUser": r.user.as_str(), "pwd": r.password.expose(), "roles": roles}
        } else {
            doc! {"createUser": r.user.as_str(), "pwd": r.password.expose(), "roles": roles}
        };
        admin.run_command(command).await.map_err(classify)?;
        client.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_hide_the_password() {
        let f = fingerprint("root", "secret-pw");
        assert_eq!(f.len(), 64);
        assert_eq!(f, fingerprint("root", "secret-pw"));
        assert_ne!(f, fingerprint("root", "other-pw"));
        assert!(!f.contains("secret"));
    }

    #[test]
    fn server_status_figures_are_extracted() {
        let status = doc! {
            "version": "8.2.11",
            "uptime": 12.0,
            "connections": {"current": 3, "available": 0},
            "opcounters": {"insert": 1i64, "query": 2, "update": 0, "delete": 0, "getmore": 1, "command": 11},
        };
        let v = server_stats(&status);
        assert_eq!(v["connections"], 3);
        assert_eq!(v["opcounters"]["command"], 11);
        assert_eq!(v["queries"], 3);
        assert_eq!(v["uptimeSeconds"], 12);
        assert_eq!(v["version"], "8.2.11");
    }

    #[test]
    fn options_target_one_server_directly_with_the_admin_source() {
        let o = client_options("127.0.0.1", 27018, Some(("u", "p")), Duration::from_secs(2));
        assert_eq!(o.hosts.len(), 1);
        assert_eq!(o.direct_connection, Some(true));
        assert_eq!(o.default_database.as_deref(), Some("volt"));
        let c = o.credential.unwrap();
        assert_eq!(c.source.as_deref(), Some("admin"));
        assert!(
            client_options("h", 1, None, Duration::from_secs(1))
                .credential
                .is_none()
        );
    }
}
