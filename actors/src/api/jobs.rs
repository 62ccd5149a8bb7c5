//! The job commands as a message: the dispatcher's `remote/jobs.rs` sends a
//! [`JobsCall`] to whoever runs the job queues (the jobs actor) through a
//! `Handle<JobsCall>`, and gets the command's result or a [`JobsFailure`]
//! (an HTTP-like status and a message) back.

use actix::Message;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// The job commands of the reference (volt-protocol.md §4.1, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobsCommand {
    /// `queue.dispatch {queueName, payload}` → `{queued:true}`
    Dispatch,
    /// `jobs.list {teamId}` → `{data:[record…]}`
    List,
    /// `jobs.retry {jobIds}`
    Retry,
    /// `jobs.remove-running {jobIds}`: running jobs are stopped
    RemoveRunning,
    /// `jobs.clear-history {teamId, jobIds}`
    ClearHistory,
    /// `runtime.queues.snapshot` → `{accepted, queues:[{name, counts}], capturedAt}`
    QueuesSnapshot,
    /// `runtime.queue-concurrency.apply {queueConcurrency, queueScopeLimits?}`, live
    ApplyConcurrency,
}

impl JobsCommand {
    pub const ALL: [JobsCommand; 7] = [
        JobsCommand::Dispatch,
        JobsCommand::List,
        JobsCommand::Retry,
        JobsCommand::RemoveRunning,
        JobsCommand::ClearHistory,
        JobsCommand::QueuesSnapshot,
        JobsCommand::ApplyConcurrency,
    ];

    /// The wire name.
    pub const fn name(self) -> &'static str {
        match self {
            JobsCommand::Dispatch => "queue.dispatch",
            JobsCommand::List => "jobs.list",
            JobsCommand::Retry => "jobs.retry",
            JobsCommand::RemoveRunning => "jobs.remove-running",
            JobsCommand::ClearHistory => "jobs.clear-history",
            JobsCommand::QueuesSnapshot => "runtime.queues.snapshot",
            JobsCommand::ApplyConcurrency => "runtime.queue-concurrency.apply",
        }
    }

    /// `None` for a name that is not a job command.
    pub fn parse(name: &str) -> Option<JobsCommand> {
        JobsCommand::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Why a job command failed: the reply's status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobsFailure {
    pub status: u16,
    pub message: String,
}

impl JobsFailure {
    /// 503: the job queues cannot answer now (Redis not ready, stopping).
    pub fn unavailable(message: impl Into<String>) -> Self {
        JobsFailure {
            status: 503,
            message: message.into(),
        }
    }
}

/// One job command with its payload (unknown payload keys are ignored by
/// the command; a bad payload is a 400).
#[derive(Debug, Message)]
#[rtype(result = "Result<Value, JobsFailure>")]
pub struct JobsCall {
    pub command: JobsCommand,
    pub payload: Value,
}

/// Where the workers' concurrency and role came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigSource {
    /// The server's answer to `runtime.config.get`.
    Server,
    /// voltd's `[jobs]` configuration: the server does not know
    /// `runtime.config.get` (404).
    Config,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigSource::Server => "server",
            ConfigSource::Config => "config",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in JobsCommand::ALL {
            assert_eq!(JobsCommand::parse(c.name()), Some(c));
        }
        assert_eq!(JobsCommand::parse("jobs.nope"), None);
        assert_eq!(JobsCommand::parse("runtime.status"), None);
    }
}
