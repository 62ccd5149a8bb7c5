//! Network faults for root-only tests: a network namespace joined to the
//! host by a veth pair (a link that can be cut and rate-limited with
//! `ip`/`tc`), and a user-space proxy that adds latency (this kernel has no
//! `netem`, so delay is emulated here).
//!
//! Only addresses inside the namespaces a test creates are used
//! (`10.213.<n>.0/24`); everything is removed when the value is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with one veth link to the host: the host end has
/// [`NetNs::host_ip`], the namespace end [`NetNs::ns_ip`].
pub struct NetNs {
    name: String,
    host_if: String,
    ns_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

impl NetNs {
    /// Creates the namespace and its link (root only).
    pub fn create() -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names have at most 15 bytes; the subnet is picked from
        // the pid and a counter so parallel test processes do not collide.
        let tag = format!("{}{}", pid % 100_000, n);
        let name = format!("voltd-chaos-{tag}");
        let host_if = format!("vc{tag}h");
        let ns_if = format!("vc{tag}n");
        let subnet = ((pid.wrapping_mul(31) + n) % 250) as u8 + 1;
        let host_ip = Ipv4Addr::new(10, 213, subnet, 1);
        let ns_ip = Ipv4Addr::new(10, 213, subnet, 2);
        run(&["ip", "netns", "add", &name]);
        let ns = NetNs {
            name,
            host_if,
            ns_if,
            host_ip,
            ns_ip,
        };
        run(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
        ]);
        run(&["ip", "link", "set", &ns.ns_if, "netns", &ns.name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        run(&["ip", "link", "set", &ns.host_if, "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.ns_ip),
            "dev",
            &ns.ns_if,
        ]);
        ns.exec(&["ip", "link", "set", &ns.ns_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace to completion (asserting success).
    pub fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Limits both directions of the link to `kbit` kbit/s with a token
    /// bucket (`tc tbf`): a queue of at most `latency` at that rate, then
    /// drops, as a slow uplink behaves.
    pub fn throttle(&self, kbit: u32, latency: Duration) {
        let rate = format!("{kbit}kbit");
        let latency = format!("{}ms", latency.as_millis());
        let tbf = |dev: &str| {
            vec![
                "tc".to_owned(),
                "qdisc".into(),
                "add".into(),
                "dev".into(),
                dev.to_owned(),
                "root".into(),
                "tbf".into(),
                "rate".into(),
                rate.clone(),
                "burst".into(),
                "32kbit".into(),
                "latency".into(),
                latency.clone(),
            ]
        };
        let host = tbf(&self.host_if);
        run(&host.iter().map(String::as_str).collect::<Vec<_>>());
        let ns = tbf(&self.ns_if);
        self.exec(&ns.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Cuts the link (the host end goes down: the namespace loses carrier).
    pub fn partition(&self) {
        run(&["ip", "link", "set", &self.host_if, "down"]);
    }

    /// Restores the link.
    pub fn heal(&self) {
        run(&["ip", "link", "set", &self.host_if, "up"]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// A TCP proxy that delays every byte by a fixed time in each direction
/// (a long link), keeping order and rate. Stops when dropped.
pub struct DelayProxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// The first [`CLIENT_BYTES_KEPT`] bytes the clients sent, in order.
    from_clients: Arc<Mutex<Vec<u8>>>,
}

/// Bytes of what the clients send that [`DelayProxy::client_bytes`] keeps
/// (enough for an HTTP upgrade and the first frames).
const CLIENT_BYTES_KEPT: usize = 64 * 1024;

/// Chunks in flight per direction; beyond that the proxy stops reading, so
/// its memory stays bounded whatever the peers do.
const IN_FLIGHT_CHUNKS: usize = 4096;

impl DelayProxy {
    /// Listens on `listen` and forwards each connection to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind(listen).await.expect("proxy listens");
        let addr = listener.local_addr().expect("proxy address");
        let from_clients: Arc<Mutex<Vec<u8>>> = Arc::default();
        let kept = from_clients.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, delay, Some(kept)), pump(sr, cw, delay, None));
                });
            }
        });
        DelayProxy {
            addr,
            task,
            from_clients,
        }
    }

    /// What the clients have sent so far (the first 64 KiB), as the proxy
    /// read it — before the delay.
    pub fn client_bytes(&self) -> Vec<u8> {
        self.from_clients
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    record: Option<Arc<Mutex<Vec<u8>>>>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(Ok(mut kept)) = record.as_ref().map(|r| r.lock()) {
                        let room = CLIENT_BYTES_KEPT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
