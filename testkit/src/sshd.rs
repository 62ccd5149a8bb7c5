//! A real OpenSSH server (Debian `openssh-server`'s `/usr/sbin/sshd`) on a
//! loopback port, with its own host key and one authorised client key, as
//! the source of SSH imports. No system service is involved: the test
//! starts `sshd -D` with a config in a temp directory and it is killed (by
//! pid) when dropped.

use crate::standins::WITHIN;
use crate::{eventually, free_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// Where the Debian package puts the server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd (see the module docs).
pub struct Sshd {
    pub port: u16,
    pub dir: TempDir,
    /// `type base64` of the server's host key (a `knownHosts` value).
    pub host_key: String,
    /// The authorised client key (OpenSSH private key text).
    pub client_key: String,
    /// The user the test runs as (the one sshd lets in).
    pub user: String,
    child: Child,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen runs (Debian openssh-client)")
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn pub_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path.with_extension("pub")).expect("a public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = Command::new("id").arg("-un").output().expect("id runs");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
}

impl Sshd {
    /// Starts sshd and waits until it accepts connections.
    pub async fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "sshd not found at {SSHD} — run .ci/install-services (Debian openssh-server)"
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        // Privilege separation directory (root only; created by the
        // package's service, which the tests never start).
        if crate::is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let host_key = pub_line(&d.join("host_key"));
        let client_key = std::fs::read_to_string(d.join("client_key")).expect("the client key");
        let s = Sshd {
            port,
            dir,
            host_key,
            client_key,
            user: current_user(),
            child,
        };
        eventually(WITHIN, format!("sshd listening on {port}"), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        s
    }

    /// A directory the test fills with files to import.
    pub fn data_dir(&self) -> PathBuf {
        let p = self.dir.path().join("data");
        std::fs::create_dir_all(&p).expect("the data dir");
        p
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
