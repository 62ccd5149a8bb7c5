//! The real servers tests run against (see `.ci/install-services`):
//! `redis-server`, SecantusDB (`secantusd-py`, a MongoDB-wire server) and
//! `s3s-fs` (an S3 server) — where they are, the command lines that point
//! voltd's native mode at them, and [`StandIn`], which starts one on a
//! loopback port and stops it by its pid.

use crate::process;
use nix::sys::signal::Signal;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a test waits for a real server to come up or to change state:
/// several start in parallel with the rest of the suite on 2 cores, and
/// SecantusDB (Python) is slow to start under load.
pub const WITHIN: Duration = Duration::from_secs(60);

/// Where `.ci/install-services` puts the stand-ins ($VOLTD_CI_DIR, else
/// `~/.cache/voltd-ci`).
pub fn ci_dir() -> PathBuf {
    std::env::var("VOLTD_CI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/voltd-ci")
        })
}

fn located(var: &str, default: PathBuf, what: &str) -> PathBuf {
    let path = std::env::var(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{what} not found at {} — run .ci/install-services (CI installs it) or set {var}",
        path.display()
    );
    path
}

/// `redis-server` ($VOLTD_REDIS_SERVER, else the Debian package's).
pub fn redis_server() -> PathBuf {
    let default = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    located("VOLTD_REDIS_SERVER", default, "redis-server")
}

/// A MongoDB-wire server ($VOLTD_MONGO_SERVER, else SecantusDB).
pub fn mongo_server() -> PathBuf {
    located(
        "VOLTD_MONGO_SERVER",
        ci_dir().join("venv/bin/secantusd-py"),
        "secantusd-py (SecantusDB)",
    )
}

/// An S3 server ($VOLTD_S3_SERVER, else s3s-fs).
pub fn s3_server() -> PathBuf {
    located(
        "VOLTD_S3_SERVER",
        ci_dir().join("cargo/bin/s3s-fs"),
        "s3s-fs",
    )
}

/// The npm modules with `socket.io` 4.8.4, for the interop tests
/// ($VOLTD_NODE_MODULES, else `node_modules` of the CI directory).
pub fn node_modules() -> PathBuf {
    let modules = std::env::var("VOLTD_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| ci_dir().join("node_modules"));
    assert!(
        modules.join("socket.io").exists(),
        "socket.io is not installed at {} — run .ci/install-services (or set VOLTD_NODE_MODULES)",
        modules.display()
    );
    modules
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| (*s).to_owned()).collect()
}

/// voltd's native-mode command line for Redis (placeholders filled by
/// voltd).
pub fn redis_command() -> Vec<String> {
    vec![redis_server().display().to_string(), "{config_file}".into()]
}

/// voltd's native-mode command line for MongoDB, run by SecantusDB.
pub fn mongo_command() -> Vec<String> {
    let mut c = vec![mongo_server().display().to_string()];
    c.extend(words(&[
        "--host",
        "{bind}",
        "--port",
        "{port}",
        "--storage-path",
        "{data_dir}",
        "--log-level",
        "WARNING",
        "--auth",
    ]));
    c
}

/// voltd's native-mode command line for MinIO, run by s3s-fs.
pub fn s3_command() -> Vec<String> {
    let mut c = vec![s3_server().display().to_string()];
    c.extend(words(&[
        "--host",
        "{bind}",
        "--port",
        "{port}",
        "--access-key",
        "{user}",
        "--secret-key",
        "{password}",
        "{data_dir}",
    ]));
    c
}

/// A real server a test started itself, on `127.0.0.1:port`. Its output
/// goes to a log file shown when it fails to come up. Dropping it kills it
/// (SIGKILL, by pid) and reaps it; [`StandIn::stop`] asks it to exit first.
pub struct StandIn {
    name: String,
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl StandIn {
    /// `redis-server` on `port` with its data in `dir`, plus `args`.
    pub fn redis(port: u16, dir: &Path, args: &[&str]) -> StandIn {
        let mut all = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--dir".to_owned(),
            dir.display().to_string(),
        ];
        all.extend(words(args));
        StandIn::spawn("redis-server", &redis_server(), &all, port)
    }

    /// SecantusDB on `port` with its data in `storage`; `auth` turns
    /// SCRAM authentication on (users are created on a server without it).
    pub fn mongo(port: u16, storage: &Path, auth: bool) -> StandIn {
        let mut all = vec![
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--storage-path".to_owned(),
            storage.display().to_string(),
        ];
        if auth {
            all.push("--auth".to_owned());
        }
        StandIn::spawn("secantusd-py", &mongo_server(), &all, port)
    }

    /// s3s-fs on `port` serving `dir`, accepting only `access_key` /
    /// `secret_key` (SigV4).
    pub fn s3(port: u16, dir: &Path, access_key: &str, secret_key: &str) -> StandIn {
        let all = vec![
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--access-key".to_owned(),
            access_key.to_owned(),
            "--secret-key".to_owned(),
            secret_key.to_owned(),
            dir.display().to_string(),
        ];
        StandIn::spawn("s3s-fs", &s3_server(), &all, port)
    }

    /// Runs `program` with `args`, which will listen on `port`.
    pub fn spawn(name: &str, program: &Path, args: &[String], port: u16) -> StandIn {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let out = log.reopen().expect("the log file");
        let err = log.reopen().expect("the log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} ({}): {e}", program.display()));
        StandIn {
            name: name.to_owned(),
            child,
            port,
            log,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the server still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server wrote so far.
    pub fn output(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = self.log.reopen() {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the port accepts connections; fails at once, with the
    /// server's output, if the server exits instead.
    pub async fn listening(&mut self) {
        let port = self.port;
        let name = self.name.clone();
        crate::eventually(
            WITHIN,
            format!("{name} listening on port {port}"),
            async || {
                if !self.running() {
                    panic!("{name} exited before listening:\n{}", self.output());
                }
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
    }

    /// Asks the server to exit (SIGTERM) and waits until it has, e.g. so
    /// that it flushes its data before it is started again.
    pub async fn stop(mut self) {
        process::signal(self.pid(), Signal::SIGTERM);
        let name = self.name.clone();
        crate::eventually(WITHIN, format!("{name} exiting on SIGTERM"), async || {
            !self.running()
        })
        .await;
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if self.running() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
