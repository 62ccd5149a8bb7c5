//! Job commands (volt-protocol.md §4.1, §4.3): the queues live with the
//! jobs actor (`jobs/actor.rs`); this family names the command and hands
//! the payload to it through `Handle<JobsCall>`.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `queue.dispatch` | `{queueName, payload{}}` | `{queued:true}`; job id = `payload.jobId` when a string |
//! | `jobs.list` | `{teamId}` | `{data:[record…]}` |
//! | `jobs.retry` | `{jobIds[]}` | `{results:[{jobId, outcome, error?}]}` |
//! | `jobs.remove-running` | `{jobIds[]}` | same; a running job's executor (and process) is stopped within 2 s |
//! | `jobs.clear-history` | `{teamId, jobIds[]}` | same |
//! | `runtime.queues.snapshot` | – | `{accepted:true, queues:[{name, counts}], capturedAt}` |
//! | `runtime.queue-concurrency.apply` | `{queueConcurrency{analysis, rasterizer, glbPreprocessing, sshImport}, queueScopeLimits?}` | `{accepted:true, queueConcurrency, queueScopeLimits}` or `{accepted:false, error}`; applied live |
//!
//! Until the cluster's Redis is healthy every command but the last gets
//! 503; a bad payload gets 400 with the reason (`jobs::commands` checks
//! the fields).

use crate::api::jobs::{JobsCall, JobsCommand};
use crate::api::reply::{CallInfo, Reply, Run};
use crate::remote::context::HandlerContext;
use serde_json::Value;
use std::rc::Rc;

/// One job command with its payload.
pub struct JobsFamily {
    command: JobsCommand,
    payload: Value,
}

impl JobsFamily {
    pub fn parse(name: &str, payload: &Value) -> Result<Option<Self>, Reply> {
        let Some(command) = JobsCommand::parse(name) else {
            return Ok(None);
        };
        let payload = match payload {
            Value::Null => Value::Object(Default::default()),
            Value::Object(_) => payload.clone(),
            _ => {
                return Err(Reply::bad_request(format!(
                    "Invalid payload for {name}: expected an object"
                )));
            }
        };
        Ok(Some(JobsFamily { command, payload }))
    }

    pub fn run(self, ctx: &Rc<HandlerContext>, _call: &CallInfo) -> Run {
        let jobs = ctx.jobs.clone();
        let JobsFamily { command, payload } = self;
        Run::later(async move {
            match jobs.send(JobsCall { command, payload }).await {
                Ok(Ok(data)) => Reply::ok(data),
                Ok(Err(f)) => Reply::failure(f.status, f.message),
                Err(e) => Reply::failure(503, format!("job queues unavailable: {e}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_job_commands_are_claimed() {
        assert!(
            JobsFamily::parse("runtime.status", &json!({}))
                .unwrap()
                .is_none()
        );
        let f = JobsFamily::parse("queue.dispatch", &json!({"queueName": "ssh_import"}))
            .unwrap()
            .unwrap();
        assert_eq!(f.command, JobsCommand::Dispatch);
        let f = JobsFamily::parse("runtime.queues.snapshot", &Value::Null)
            .unwrap()
            .unwrap();
        assert_eq!(f.payload, json!({}));
        assert!(JobsFamily::parse("jobs.list", &json!([1])).is_err());
    }
}
