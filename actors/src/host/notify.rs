//! `sd_notify`: tell systemd the daemon is ready (`Type=notify`), alive
//! (`WATCHDOG=1`), or stopping.
//!
//! The protocol (sd_notify(3)) is one datagram of `KEY=VALUE\n` lines to the
//! `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). It is written out here rather than taken from the
//! `sd-notify` crate because that crate reads the socket from the process
//! environment on every call, which a test cannot point at its own socket
//! without `std::env::set_var` (unsafe, and banned here); [`Notifier`]
//! reads the variable once, at start-up, and can be built for any path.
//!
//! Readiness means *registered with the server*: the unit's `systemctl
//! start` (and install.sh) return once the cluster is usable, and an
//! update on trial that never registers never becomes "active".

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notifier {
    /// Not started by systemd (or `NotifyAccess=none`): notifications are
    /// dropped.
    Disabled,
    /// A filesystem socket.
    Path(PathBuf),
    /// An abstract socket (`@name` in `$NOTIFY_SOCKET`), without the `@`.
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From the value of `$NOTIFY_SOCKET` (`None`: not under systemd).
    pub fn from_value(value: Option<&std::ffi::OsStr>) -> Notifier {
        use std::os::unix::ffi::OsStrExt;
        let Some(v) = value.filter(|v| !v.is_empty()) else {
            return Notifier::Disabled;
        };
        match v.as_bytes() {
            [b'@', rest @ ..] => Notifier::Abstract(rest.to_vec()),
            _ => Notifier::Path(PathBuf::from(v)),
        }
    }

    /// From this process's environment (read once: call at start-up).
    pub fn from_env() -> Notifier {
        Notifier::from_value(std::env::var_os(NOTIFY_SOCKET_ENV).as_deref())
    }

    fn send(&self, message: &str) -> io::Result<()> {
        let sock = match self {
            Notifier::Disabled => return Ok(()),
            _ => UnixDatagram::unbound()?,
        };
        let sent = match self {
            Notifier::Disabled => return Ok(()),
            Notifier::Path(p) => sock.send_to(message.as_bytes(), p)?,
            Notifier::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short sd_notify datagram",
            ))
        }
    }

    /// `READY=1` plus a status line (newlines in `status` are flattened).
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}\n", one_line(status)))
    }

    /// `STATUS=…`: shown by `systemctl status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}\n", one_line(status)))
    }

    /// `WATCHDOG=1`, for a unit with `WatchdogSec=`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1\n")
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1\n")
    }

    /// `EXTEND_TIMEOUT_USEC=…`: the start may take `by` longer from now
    /// (a daemon still waiting for its server; sd_notify(3), systemd ≥ 236).
    pub fn extend_timeout(&self, by: std::time::Duration) -> io::Result<()> {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}\n", by.as_micros()))
    }
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn ready_is_one_datagram_on_the_given_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_value(Some(path.as_os_str()));
        assert_eq!(n, Notifier::Path(path.clone()));
        n.ready("Registered as cluster c1\n(second line)").unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            "READY=1\nSTATUS=Registered as cluster c1 (second line)\n"
        );
        n.watchdog().unwrap();
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1\n");
        n.extend_timeout(std::time::Duration::from_secs(120))
            .unwrap();
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"EXTEND_TIMEOUT_USEC=120000000\n");
    }

    #[test]
    fn abstract_sockets_are_supported() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("voltd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_value(Some(OsStr::new(&format!("@{name}"))));
        n.stopping().unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\n");
    }

    #[test]
    fn without_systemd_notifications_are_no_ops() {
        let n = Notifier::from_value(None);
        assert_eq!(n, Notifier::Disabled);
        n.ready("x").unwrap();
        assert_eq!(
            Notifier::from_value(Some(OsStr::new(""))),
            Notifier::Disabled
        );
        // A socket that is gone is an error the caller can log.
        let gone = Notifier::from_value(Some(OsStr::new("/nonexistent/notify")));
        assert!(gone.ready("x").is_err());
    }
}
