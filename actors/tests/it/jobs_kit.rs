//! Real peers for the job tests (local to the jobs tests until the shared
//! `testkit` lands): redis-server with AOF, the s3s-fs S3 server, an
//! OpenSSH sshd on loopback, and node with the npm `bullmq` package.
#![allow(dead_code)]

use s3::creds::Credentials;
use s3::{Bucket, Region};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Generous: the whole suite shares two cores.
pub const WITHIN: Duration = Duration::from_secs(60);

pub fn ci_dir() -> PathBuf {
    std::env::var("VOLTD_CI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/voltd-ci")
        })
}

fn must_exist(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {} — run .ci/install-services",
        path.display()
    );
    path
}

pub use testkit::free_port;

/// Waits until something accepts on 127.0.0.1:`port`.
pub async fn wait_port(port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(start.elapsed() < WITHIN, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it returns `Some`, failing after [`WITHIN`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < WITHIN, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Redis {
    pub port: u16,
    pub dir: TempDir,
    proc: Option<Proc>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            proc: None,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("redis-server not installed — run .ci/install-services");
        let child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        wait_port(self.port).await;
    }

    /// Stops Redis with SIGTERM (it flushes the AOF) and starts it again on
    /// the same port and data.
    pub async fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pid = nix::unistd::Pid::from_raw(p.0.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
            let _ = p.0.wait();
        }
        self.spawn().await;
    }

    pub fn target(&self) -> voltd_actors::jobs::RedisTarget {
        voltd_actors::jobs::RedisTarget::local(self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

pub struct S3 {
    pub port: u16,
    pub dir: TempDir,
    _proc: Proc,
}

pub const S3_USER: &str = "volt-test";
pub const S3_SECRET: &str = "volt-test-secret";

impl S3 {
    pub async fn start() -> S3 {
        let bin = must_exist(
            std::env::var("VOLTD_S3_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|_| ci_dir().join("cargo/bin/s3s-fs")),
            "s3s-fs",
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("volt-dumps")).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3_USER,
                "--secret-key",
                S3_SECRET,
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = S3 {
            port,
            dir,
            _proc: Proc(child),
        };
        wait_port(port).await;
        s
    }

    pub fn bucket(&self) -> Box<Bucket> {
        let region = Region::Custom {
            region: "us-east-1".into(),
            endpoint: format!("http://127.0.0.1:{}", self.port),
        };
        let creds = Credentials::new(Some(S3_USER), Some(S3_SECRET), None, None, None).unwrap();
        Bucket::new("volt-dumps", region, creds)
            .unwrap()
            .with_path_style()
    }
}

pub use testkit::sshd::Sshd;

/// `node` with the CI dir's `node_modules` (bullmq) on its path.
pub fn node() -> tokio::process::Command {
    let modules = must_exist(ci_dir().join("node_modules/bullmq"), "npm bullmq");
    let mut c = tokio::process::Command::new("node");
    c.env("NODE_PATH", modules.parent().unwrap());
    c.kill_on_drop(true);
    c
}

/// Runs a node script to completion and returns its stdout (asserting success).
pub async fn run_node(script: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        WITHIN,
        node().arg("-e").arg(script).arg("--").args(args).output(),
    )
    .await
    .expect("node script timed out")
    .unwrap();
    assert!(
        out.status.success(),
        "node failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
