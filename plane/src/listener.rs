//! A TCP listener whose connections can be cut from the server side.
//!
//! socket.io's own server-side disconnect only leaves the namespace, which a
//! socket.io client treats as "the server kicked me, do not reconnect". To
//! test a daemon against a real network failure, and to make shutdown close
//! every connection (so the port is free for a restarted plane), each
//! accepted stream carries a [`KillSwitch`]: once flipped, reads and writes
//! fail and the peer sees the connection drop.
//!
//! The switch travels to the socket.io layer as axum connect info
//! ([`ConnInfo`]), which the socket layer finds in the request extensions.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use futures_util::task::AtomicWaker;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin; the same back-off axum's own listener uses.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Cuts one connection.
#[derive(Debug, Default)]
pub struct KillSwitch {
    killed: AtomicBool,
    reader: AtomicWaker,
}

impl KillSwitch {
    /// Makes every further read and write fail and wakes a pending read.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.reader.wake();
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

/// Every live connection, so shutdown can cut them all.
#[derive(Debug, Default)]
pub struct ConnRegistry {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<KillSwitch>>>,
}

impl ConnRegistry {
    fn add(&self) -> (u64, Arc<KillSwitch>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let k = Arc::new(KillSwitch::default());
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, k.clone());
        (id, k)
    }

    fn remove(&self, id: u64) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Cuts every live connection.
    pub fn kill_all(&self) {
        let all: Vec<_> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for k in all {
            k.kill();
        }
    }
}

/// What a request knows about its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub kill: Arc<KillSwitch>,
}

impl Connected<IncomingStream<'_, TrackedListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, TrackedListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The listener handed to `axum::serve`.
pub struct TrackedListener {
    inner: TcpListener,
    registry: Arc<ConnRegistry>,
}

impl TrackedListener {
    pub fn new(inner: TcpListener, registry: Arc<ConnRegistry>) -> Self {
        TrackedListener { inner, registry }
    }
}

impl Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    // Small request/response frames: latency beats batching.
                    let _ = stream.set_nodelay(true);
                    let (id, kill) = self.registry.add();
                    let io = TrackedStream {
                        inner: stream,
                        kill: kill.clone(),
                        id,
                        registry: self.registry.clone(),
                    };
                    return (io, ConnInfo { remote, kill });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnInfo {
            remote: self.inner.local_addr()?,
            kill: Arc::new(KillSwitch::default()),
        })
    }
}

/// A TCP stream that fails once its [`KillSwitch`] is flipped.
pub struct TrackedStream {
    inner: TcpStream,
    kill: Arc<KillSwitch>,
    id: u64,
    registry: Arc<ConnRegistry>,
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the server",
    )
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        self.kill.reader.register(cx.waker());
        if self.kill.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn killing_fails_a_pending_read_and_the_peer_sees_eof() {
        let registry = Arc::new(ConnRegistry::default());
        let mut l = TrackedListener::new(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            registry.clone(),
        );
        let addr = l.inner.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 8];
            c.read(&mut buf).await.unwrap_or(0)
        });
        let (mut io, info) = Listener::accept(&mut l).await;
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let r = io.read(&mut buf).await;
            drop(io);
            r
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        info.kill.kill();
        let r = reader.await.unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(client.await.unwrap(), 0);
        assert!(registry.live.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn kill_all_cuts_writes_too() {
        let registry = Arc::new(ConnRegistry::default());
        let mut l = TrackedListener::new(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            registry.clone(),
        );
        let addr = l.inner.local_addr().unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = Listener::accept(&mut l).await;
        registry.kill_all();
        assert!(io.write_all(b"x").await.is_err());
    }
}
