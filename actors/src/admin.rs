//! The local admin socket behind `voltd status` and `voltd logs`.
//!
//! A Unix socket (mode 0600, in the 0700 state directory: only the daemon's
//! user can connect) speaking newline-delimited JSON. The client sends one
//! request line:
//!
//! * `{"op":"status"}` → one line `{"ok":true,"status":{…}}`;
//! * `{"op":"logs","tail":N,"follow":bool}` → the last N records of the
//!   supervisor log stream, one JSON object per line, then (with `follow`)
//!   every new record until the client hangs up. A client that falls behind
//!   gets `{"lagged":n}` instead of the records it missed.

use crate::api::Handle;
use crate::events::{Delivery, EventBus};
use crate::host::fsutil::{PRIVATE_DIR_MODE, ensure_dir};
use crate::status::GetSnapshot;
use actix::prelude::*;
use futures_util::StreamExt;
use otp::supervisor::StopChild;
use otp::{ExitCode, ExitReason, ExitSlot};
use serde::Deserialize;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Records sent by `voltd logs` without `--tail`.
pub const DEFAULT_TAIL: usize = 100;
/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;

/// A request line.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum AdminRequest {
    Status,
    Logs {
        #[serde(default)]
        tail: Option<usize>,
        #[serde(default)]
        follow: bool,
    },
}

/// The admin socket actor.
pub struct Admin {
    path: PathBuf,
    status: Handle<GetSnapshot>,
    bus: EventBus,
    exit: ExitSlot,
}

impl Admin {
    /// Serves `path`; status requests go to `status`.
    pub fn new(path: PathBuf, status: Handle<GetSnapshot>, bus: EventBus, exit: ExitSlot) -> Self {
        Admin {
            path,
            status,
            bus,
            exit,
        }
    }
}

/// Binds the socket, replacing a stale file but never a live daemon's.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        ensure_dir(dir, PRIVATE_DIR_MODE)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another voltd is already running (admin socket {} is live)",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    Ok(listener)
}

async fn serve(
    stream: UnixStream,
    status: Handle<GetSnapshot>,
    bus: EventBus,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64)).lines();
    let Some(line) = lines.next_line().await? else {
        return Ok(());
    };
    let request: AdminRequest = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let reply = json!({"ok": false, "error": format!("invalid request: {e}")});
            write.write_all(format!("{reply}\n").as_bytes()).await?;
            return Ok(());
        }
    };
    match request {
        AdminRequest::Status => {
            let reply = match status.send(GetSnapshot).await {
                Ok(snap) => json!({"ok": true, "status": snap}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            };
            write.write_all(format!("{reply}\n").as_bytes()).await?;
        }
        AdminRequest::Logs { tail, follow } => {
            // Subscribe before reading the backlog so nothing falls between.
            let mut live = bus.subscribe_log();
            let backlog = bus.recent(tail.unwrap_or(DEFAULT_TAIL));
            let mut last_seq = 0;
            for r in backlog {
                last_seq = r.seq;
                let line = serde_json::to_string(&*r).unwrap_or_default();
                write.write_all(format!("{line}\n").as_bytes()).await?;
            }
            write.flush().await?;
            if follow {
                while let Some(item) = live.next().await {
                    let line = match item {
                        Delivery::Record(r) if r.seq <= last_seq => continue,
                        Delivery::Record(r) => serde_json::to_string(&*r).unwrap_or_default(),
                        Delivery::Lagged(n) => json!({ "lagged": n }).to_string(),
                    };
                    write.write_all(format!("{line}\n").as_bytes()).await?;
                }
            }
        }
    }
    write.shutdown().await
}

impl Actor for Admin {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let listener = match bind(&self.path) {
            Ok(l) => l,
            Err(e) => {
                self.exit.set(ExitReason::fatal(ExitCode::Config, e));
                ctx.stop();
                return;
            }
        };
        let status = self.status.clone();
        let bus = self.bus.clone();
        ctx.spawn(
            async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let status = status.clone();
                            let bus = bus.clone();
                            actix_rt::spawn(async move {
                                if let Err(e) = serve(stream, status, bus).await {
                                    tracing::debug!(error = %e, "Admin client went away.");
                                }
                            });
                        }
                        Err(e) => {
                            return e.to_string();
                        }
                    }
                }
            }
            .into_actor(self)
            .map(|error, act, ctx| {
                act.exit
                    .set(ExitReason::failed(format!("admin socket: {error}")));
                ctx.stop();
            }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Handler<StopChild> for Admin {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}

/// Client side of one admin request.
pub struct AdminClient {
    /// Reply lines as they come.
    pub lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    /// Kept open for the life of the request: dropping the client is how a
    /// `logs -f` reader hangs up.
    _write: tokio::net::unix::OwnedWriteHalf,
}

/// Sends one request to the admin socket at `path`.
pub async fn request(path: &Path, request: &serde_json::Value) -> std::io::Result<AdminClient> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{request}\n").as_bytes()).await?;
    write.flush().await?;
    Ok(AdminClient {
        lines: BufReader::new(read).lines(),
        _write: write,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            serde_json::from_str::<AdminRequest>(r#"{"op":"status"}"#).unwrap(),
            AdminRequest::Status
        );
        assert_eq!(
            serde_json::from_str::<AdminRequest>(r#"{"op":"logs","tail":5,"follow":true}"#)
                .unwrap(),
            AdminRequest::Logs {
                tail: Some(5),
                follow: true
            }
        );
        assert!(serde_json::from_str::<AdminRequest>(r#"{"op":"rm"}"#).is_err());
    }

    #[test]
    fn bind_refuses_a_live_socket_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/voltd.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let live = bind(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let err = bind(&path).unwrap_err();
            assert!(err.contains("already running"), "{err}");
            drop(live);
            // The file is still there but nobody listens: stale.
            assert!(path.exists());
            bind(&path).unwrap();
        });
    }
}
