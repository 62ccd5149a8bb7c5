//! `runtime.services.*` commands: the managed services (voltd extensions;
//! the reference daemon leaves its services to Docker).
//!
//! | command | payload | result |
//! |---|---|---|
//! | `runtime.services.status` (voltd) | – | `{services: {<name>: {state, mode, pid, uptimeSeconds, restarts, lastError, probeLatencyMs, host, port, credentials, stats, since}}}` |
//! | `runtime.services.restart` (voltd) | `{service}` | `{accepted: true, service}`; 400 unknown service (the message lists the known ones); 409 external service (voltd does not run it); 503 its actor is not running |
//!
//! `state` is `starting`, `healthy`, `degraded`, `failed` or `stopped`;
//! `credentials` says where they come from (`manifest`, `config`,
//! `generated`), never what they are; `stats` holds the service's figures
//! (MongoDB: connections and operation counters; Redis: connected clients,
//! memory, operations per second; MinIO: buckets present).

use super::context::HandlerContext;
use crate::api::reply::{CallInfo, Reply, Run, parse_payload};
use crate::services::ServiceError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::rc::Rc;

#[derive(Debug, Deserialize)]
pub struct RestartRequest {
    pub service: String,
}

/// The `runtime.services.*` family.
pub enum ServicesCommand {
    Status,
    Restart(RestartRequest),
}

impl ServicesCommand {
    pub fn parse(name: &str, payload: &Value) -> Result<Option<Self>, Reply> {
        Ok(Some(match name {
            "runtime.services.status" => ServicesCommand::Status,
            "runtime.services.restart" => ServicesCommand::Restart(parse_payload(name, payload)?),
            _ => return Ok(None),
        }))
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, _call: &CallInfo) -> Run {
        let registry = &ctx.services;
        Run::Done(match self {
            ServicesCommand::Status => Reply::ok(json!({ "services": registry.views() })),
            ServicesCommand::Restart(req) => match registry.restart(req.service.trim()) {
                Ok(()) => Reply::ok(json!({"accepted": true, "service": req.service.trim()})),
                Err(e @ ServiceError::Unknown { .. }) => Reply::bad_request(e.to_string()),
                Err(e @ ServiceError::External(_)) => Reply::failure(409, e.to_string()),
                Err(e @ ServiceError::NotRunning(_)) => Reply::failure(503, e.to_string()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_names_only() {
        assert!(matches!(
            ServicesCommand::parse("runtime.services.status", &Value::Null),
            Ok(Some(ServicesCommand::Status))
        ));
        assert!(matches!(
            ServicesCommand::parse("runtime.services.restart", &json!({"service": "redis"})),
            Ok(Some(ServicesCommand::Restart(RestartRequest { .. })))
        ));
        assert!(matches!(
            ServicesCommand::parse("runtime.ping", &json!({})),
            Ok(None)
        ));
        let Err(Reply::Failure {
            status, message, ..
        }) = ServicesCommand::parse("runtime.services.restart", &json!({}))
        else {
            panic!("a restart without a service must be refused");
        };
        assert_eq!(status, 400);
        assert!(message.contains("service"), "{message}");
    }
}
