//! `runtime.*` commands: the daemon's own lifecycle.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `runtime.ping` (voltd) | – | `{pong:true, version, uptimeSeconds, pid}` |
//! | `runtime.status` (voltd) | – | the `voltd status` snapshot |
//! | `runtime.restart` | – | `{accepted:true}`, then exit code 5 after 250 ms |
//! | `runtime.uninstall` | `{reason?}` | `{accepted:true}`, then uninstall (see [`crate::status::lifecycle`]) |
//! | `runtime.update` | `{targetImage?, targetVersion}` | `{accepted:true}` and the signed self-update (or the configured `update_command`) runs, or `{accepted:false, reason}` |

use super::context::HandlerContext;
use crate::api::reply::{CallInfo, Reply, Run, accepted, parse_payload};
use crate::api::vocab::{ActionStage, RuntimeAction};
use crate::status::GetSnapshot;
use crate::status::lifecycle;
use otp::ExitCode;
use otp::supervisor::Shutdown;
use serde::Deserialize;
use serde_json::{Value, json};
use std::rc::Rc;
use std::time::Duration;

/// The reference daemon answers first and acts 250 ms later, so the
/// `{accepted:true}` reply leaves before the connection goes away.
pub const ACT_AFTER_REPLY: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
pub struct UninstallRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    #[serde(default)]
    pub target_image: Option<String>,
    pub target_version: String,
}

/// The `runtime.*` family.
pub enum RuntimeCommand {
    Ping,
    Status,
    Restart,
    Uninstall(UninstallRequest),
    Update(UpdateRequest),
}

/// This process's id, read once (`getpid` is a syscall on every call and
/// `runtime.ping` is the benchmark's command).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Longest accepted `targetVersion` (the server allows 128).
const MAX_VERSION_LEN: usize = 128;

impl RuntimeCommand {
    pub fn parse(name: &str, payload: &Value) -> Result<Option<Self>, Reply> {
        Ok(Some(match name {
            "runtime.ping" => RuntimeCommand::Ping,
            "runtime.status" => RuntimeCommand::Status,
            "runtime.restart" => RuntimeCommand::Restart,
            "runtime.uninstall" => RuntimeCommand::Uninstall(parse_payload(name, payload)?),
            "runtime.update" => {
                let req: UpdateRequest = parse_payload(name, payload)?;
                let v = req.target_version.trim();
                if v.is_empty()
                    || v.len() > MAX_VERSION_LEN
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
                {
                    return Err(Reply::bad_request(
                        "Invalid payload for runtime.update: targetVersion must be 1..128 characters of [A-Za-z0-9.+_-]",
                    ));
                }
                RuntimeCommand::Update(req)
            }
            _ => return Ok(None),
        }))
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, _call: &CallInfo) -> Run {
        match self {
            RuntimeCommand::Ping => Run::Done(Reply::ok(json!({
                "pong": true,
                "version": env!("CARGO_PKG_VERSION"),
                "uptimeSeconds": ctx.started.elapsed().as_secs(),
                "pid": pid(),
            }))),
            RuntimeCommand::Status => {
                let status = ctx.status.clone();
                Run::later(async move {
                    match status.send(GetSnapshot).await {
                        Ok(s) => Reply::ok(serde_json::to_value(s).unwrap_or(Value::Null)),
                        Err(e) => Reply::failure(503, format!("status unavailable: {e}")),
                    }
                })
            }
            RuntimeCommand::Restart => {
                let lifecycle = ctx.lifecycle.clone();
                actix_rt::spawn(async move {
                    tokio::time::sleep(ACT_AFTER_REPLY).await;
                    lifecycle.bus.emit(crate::events::Event::RuntimeAction {
                        action: RuntimeAction::Restart,
                        stage: ActionStage::Started,
                        detail: None,
                    });
                    lifecycle.root.do_send(Shutdown {
                        code: ExitCode::RestartRequested,
                        reason: "restart requested by the server",
                    });
                });
                Run::Done(Reply::ok(accepted()))
            }
            RuntimeCommand::Uninstall(req) => {
                let lifecycle = ctx.lifecycle.clone();
                actix_rt::spawn(async move {
                    tokio::time::sleep(ACT_AFTER_REPLY).await;
                    lifecycle::uninstall(&lifecycle, req.reason).await;
                });
                Run::Done(Reply::ok(accepted()))
            }
            RuntimeCommand::Update(req) => {
                let lifecycle = ctx.lifecycle.clone();
                Run::later(async move {
                    let method = match lifecycle::update_method(&lifecycle).await {
                        Ok(m) => m,
                        Err(reason) => {
                            return Reply::ok(json!({ "accepted": false, "reason": reason }));
                        }
                    };
                    // `targetImage` names a container image: nothing here
                    // uses it (the release channel is configured).
                    let version = req.target_version.trim().to_owned();
                    actix_rt::spawn(async move {
                        tokio::time::sleep(ACT_AFTER_REPLY).await;
                        lifecycle::update(&lifecycle, method, &version).await;
                    });
                    Reply::ok(accepted())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_names_only() {
        assert!(matches!(
            RuntimeCommand::parse("runtime.ping", &json!({"metadata": {}})),
            Ok(Some(RuntimeCommand::Ping))
        ));
        assert!(matches!(
            RuntimeCommand::parse("runtime.nope", &json!({})),
            Ok(None)
        ));
        assert!(matches!(
            RuntimeCommand::parse(
                "runtime.uninstall",
                &json!({"reason": "Delete requested by user u1"})
            ),
            Ok(Some(RuntimeCommand::Uninstall(UninstallRequest {
                reason: Some(_)
            })))
        ));
        assert!(matches!(
            RuntimeCommand::parse("runtime.uninstall", &Value::Null),
            Ok(Some(RuntimeCommand::Uninstall(UninstallRequest {
                reason: None
            })))
        ));
    }

    #[test]
    fn update_payload_is_validated() {
        let ok = RuntimeCommand::parse(
            "runtime.update",
            &json!({"targetImage": "ghcr.io/x:1.2.3", "targetVersion": "1.2.3"}),
        );
        assert!(matches!(ok, Ok(Some(RuntimeCommand::Update(_)))));
        for bad in [
            json!({}),
            json!({"targetVersion": ""}),
            json!({"targetVersion": "1; rm -rf /"}),
        ] {
            let Err(Reply::Failure {
                status, message, ..
            }) = RuntimeCommand::parse("runtime.update", &bad)
            else {
                panic!("{bad} accepted");
            };
            assert_eq!(status, 400);
            assert!(message.contains("runtime.update"), "{message}");
        }
    }
}
