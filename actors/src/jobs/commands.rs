//! The job commands' logic as plain async functions; the dispatcher's
//! `remote/jobs.rs` (phase 2) only parses the envelope, calls these and
//! wraps the result in a reply.
//!
//! | command | payload | result |
//! |---|---|---|
//! | `queue.dispatch` | `{queueName, payload{}}` | `{queued:true}` (reference) |
//! | `jobs.list` | `{teamId}` | `{data:[record…]}` (reference) |
//! | `jobs.retry` | `{jobIds[]}` | `{results:[{jobId, outcome, error?}]}` (voltd's choice) |
//! | `jobs.remove-running` | `{jobIds[]}` | same (voltd's choice) |
//! | `jobs.clear-history` | `{teamId, jobIds[]}` | same (voltd's choice) |
//! | `runtime.queues.snapshot` | `{}` | `{accepted:true, queues:[{name, counts}], capturedAt}` (reference) |
//! | `runtime.queue-concurrency.apply` | `{queueConcurrency{analysis, rasterizer, glbPreprocessing, sshImport}, queueScopeLimits?}` | `{accepted:true, queueConcurrency, queueScopeLimits}` or `{accepted:false, error}` (reference) |
//!
//! The protocol doc says the reference's `jobs.retry`, `jobs.remove-running`
//! and `jobs.clear-history` results were not inspected; voltd answers with
//! one entry per requested id so the caller learns what happened to each:
//! `outcome` is one of [`Outcome`]'s kebab-case names.

use super::names::ConcurrencyKey;
use super::pool::{MAX_CONCURRENCY, Pools};
use super::queue::{Dispatch, JobQueues, QueueError, check_job_id};
use super::status::{JobRecord, JobStatus, StatusStore, now_iso};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// Most job ids one command may name (the server controls the list).
pub const MAX_JOB_IDS: usize = 1_000;

/// How long `jobs.remove-running` waits for a cancelled job to stop: the
/// issue's bound for stopping a running import.
pub const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// Longest team id accepted (it becomes part of a Redis key).
pub const MAX_TEAM_ID_BYTES: usize = 256;

/// A command failure: an HTTP-like status and a message for the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub status: u16,
    pub message: String,
}

impl CommandError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        CommandError {
            status: 400,
            message: m.into(),
        }
    }
}

impl From<QueueError> for CommandError {
    fn from(e: QueueError) -> Self {
        let status = match e {
            QueueError::UnknownQueue(_) | QueueError::Invalid(_) => 400,
            QueueError::NotFound(_) => 404,
            QueueError::Store(_) => 503,
        };
        CommandError {
            status,
            message: e.to_string(),
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(command: &str, payload: &Value) -> Result<T, CommandError> {
    serde_json::from_value(payload.clone())
        .map_err(|e| CommandError::bad_request(format!("invalid {command} payload: {e}")))
}

fn check_team(team_id: &str) -> Result<(), CommandError> {
    if team_id.is_empty() || team_id.len() > MAX_TEAM_ID_BYTES {
        return Err(CommandError::bad_request(format!(
            "teamId must be 1..{MAX_TEAM_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_ids(ids: &[String]) -> Result<(), CommandError> {
    if ids.len() > MAX_JOB_IDS {
        return Err(CommandError::bad_request(format!(
            "at most {MAX_JOB_IDS} jobIds per command"
        )));
    }
    for id in ids {
        check_job_id(id).map_err(CommandError::from)?;
    }
    Ok(())
}

/// What happened to one job id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Moved back to waiting.
    Retried,
    /// Running here: its executor was stopped and the job removed.
    Cancelled,
    /// Not running: removed from its queue.
    Removed,
    /// History (queue entry and record) deleted.
    Cleared,
    /// No such job.
    NotFound,
    /// The job is in a state the command does not apply to (the error says which).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    pub job_id: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn results(rs: Vec<JobResult>) -> Value {
    json!({ "results": rs })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DispatchIn {
    queue_name: String,
    #[serde(default)]
    payload: Option<Value>,
}

/// `queue.dispatch`: enqueue and write the `queued` record.
pub async fn dispatch(queues: &JobQueues, payload: &Value) -> Result<Value, CommandError> {
    dispatch_job(queues, payload).await?;
    Ok(json!({ "queued": true }))
}

/// [`dispatch`], returning the enqueued job (its id, queue and payload)
/// for the `queued` job event.
pub async fn dispatch_job(
    queues: &JobQueues,
    payload: &Value,
) -> Result<(String, super::names::QueueName, Value), CommandError> {
    let req: DispatchIn = parse("queue.dispatch", payload)?;
    let d = Dispatch::new(&req.queue_name, req.payload.unwrap_or_else(|| json!({})))?;
    let job_id = queues.dispatch(&d).await?;
    let status = StatusStore::new(queues.connection().clone());
    let queue = d.queue;
    let body = d.payload.clone();
    status
        .update(
            &job_id,
            || JobRecord::new(&job_id, queue.as_str(), &body, JobStatus::Queued),
            |_| {},
        )
        .await?;
    Ok((job_id, queue, d.payload))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamIn {
    team_id: String,
}

/// `jobs.list`: the team's records, newest first.
pub async fn list(queues: &JobQueues, payload: &Value) -> Result<Value, CommandError> {
    let req: TeamIn = parse("jobs.list", payload)?;
    check_team(&req.team_id)?;
    let data = StatusStore::new(queues.connection().clone())
        .list(&req.team_id)
        .await?;
    Ok(json!({ "data": data }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdsIn {
    job_ids: Vec<String>,
}

/// `jobs.retry`: failed (or completed) jobs back to waiting.
pub async fn retry(queues: &JobQueues, payload: &Value) -> Result<Value, CommandError> {
    let req: IdsIn = parse("jobs.retry", payload)?;
    check_ids(&req.job_ids)?;
    let status = StatusStore::new(queues.connection().clone());
    let mut out = Vec::new();
    for id in req.job_ids {
        let Some((queue, job)) = queues.find(&id).await? else {
            out.push(JobResult {
                job_id: id,
                outcome: Outcome::NotFound,
                error: None,
            });
            continue;
        };
        match queues.retry(queue, &id).await {
            Ok(()) => {
                let data = job.data().clone();
                status
                    .update(
                        &id,
                        || JobRecord::new(&id, queue.as_str(), &data, JobStatus::Queued),
                        |r| {
                            r.status = JobStatus::Queued;
                            r.error = None;
                            r.finished_at = None;
                        },
                    )
                    .await?;
                out.push(JobResult {
                    job_id: id,
                    outcome: Outcome::Retried,
                    error: None,
                });
            }
            Err(QueueError::Store(e)) => return Err(QueueError::Store(e).into()),
            Err(e) => out.push(JobResult {
                job_id: id,
                outcome: Outcome::Refused,
                error: Some(e.to_string()),
            }),
        }
    }
    Ok(results(out))
}

/// `jobs.remove-running`: a job running here is cancelled (its process is
/// stopped) and removed; a job not yet running is removed; a job locked by
/// a worker elsewhere is refused (it cannot be stopped from here).
pub async fn remove_running(
    queues: &JobQueues,
    pools: &Pools,
    payload: &Value,
) -> Result<Value, CommandError> {
    let req: IdsIn = parse("jobs.remove-running", payload)?;
    check_ids(&req.job_ids)?;
    let status = StatusStore::new(queues.connection().clone());
    let mut out = Vec::new();
    for id in req.job_ids {
        let cancelled = match pools.running(&id) {
            Some(pool) => pool.cancel(&id, REMOVE_WAIT).await,
            None => false,
        };
        let Some((queue, job)) = queues.find(&id).await? else {
            out.push(JobResult {
                job_id: id,
                outcome: if cancelled {
                    Outcome::Cancelled
                } else {
                    Outcome::NotFound
                },
                error: None,
            });
            continue;
        };
        if queues.remove(queue, &id).await? {
            let data = job.data().clone();
            status
                .update(
                    &id,
                    || JobRecord::new(&id, queue.as_str(), &data, JobStatus::Failed),
                    |r| {
                        r.status = JobStatus::Failed;
                        r.error = Some("removed by request".into());
                        r.finished_at = Some(now_iso());
                    },
                )
                .await?;
            out.push(JobResult {
                job_id: id,
                outcome: if cancelled {
                    Outcome::Cancelled
                } else {
                    Outcome::Removed
                },
                error: None,
            });
        } else {
            out.push(JobResult {
                job_id: id,
                outcome: Outcome::Refused,
                error: Some("the job is locked by a worker that is not this daemon's".into()),
            });
        }
    }
    Ok(results(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClearIn {
    team_id: String,
    #[serde(default)]
    job_ids: Vec<String>,
}

/// `jobs.clear-history`: deletes finished jobs (queue entry and record) of
/// a team. With an empty `jobIds` every finished job of the team is
/// cleared. Jobs that are waiting or running are refused: clearing is for
/// history, `jobs.remove-running` is for live jobs.
pub async fn clear_history(queues: &JobQueues, payload: &Value) -> Result<Value, CommandError> {
    let req: ClearIn = parse("jobs.clear-history", payload)?;
    check_team(&req.team_id)?;
    check_ids(&req.job_ids)?;
    let status = StatusStore::new(queues.connection().clone());
    let ids = if req.job_ids.is_empty() {
        status
            .list(&req.team_id)
            .await?
            .into_iter()
            .filter(|r| {
                matches!(
                    r.get("status").and_then(Value::as_str),
                    Some("completed" | "failed")
                )
            })
            .filter_map(|r| r.get("jobId").and_then(Value::as_str).map(str::to_owned))
            .collect()
    } else {
        req.job_ids
    };
    let mut out = Vec::new();
    for id in ids {
        let record = status.get(&id).await?;
        if let Some(r) = &record
            && r.team_id.as_deref() != Some(req.team_id.as_str())
        {
            out.push(JobResult {
                job_id: id,
                outcome: Outcome::NotFound,
                error: None,
            });
            continue;
        }
        let found = queues.find(&id).await?;
        if let Some((queue, _)) = &found {
            let state = queues.state(*queue, &id).await?;
            if state != "completed" && state != "failed" {
                out.push(JobResult {
                    job_id: id,
                    outcome: Outcome::Refused,
                    error: Some(format!(
                        "the job is {state}; only finished jobs are history"
                    )),
                });
                continue;
            }
            queues.remove(*queue, &id).await?;
        }
        if record.is_none() && found.is_none() {
            out.push(JobResult {
                job_id: id,
                outcome: Outcome::NotFound,
                error: None,
            });
            continue;
        }
        status.delete(Some(&req.team_id), &id).await?;
        out.push(JobResult {
            job_id: id,
            outcome: Outcome::Cleared,
            error: None,
        });
    }
    Ok(results(out))
}

/// `runtime.queues.snapshot`: BullMQ counts of every queue.
pub async fn queues_snapshot(queues: &JobQueues) -> Result<Value, CommandError> {
    let mut list = Vec::new();
    for q in super::names::QueueName::ALL {
        let counts = queues.counts(q).await?;
        list.push(json!({ "name": q.as_str(), "counts": counts }));
    }
    Ok(json!({ "accepted": true, "queues": list, "capturedAt": now_iso() }))
}

/// A validated `queueConcurrency` object.
pub type QueueConcurrency = Vec<(ConcurrencyKey, usize)>;

/// Parses `queueConcurrency`: any of the four keys, each an integer in
/// 1..=[`MAX_CONCURRENCY`]; unknown keys are ignored (the server may add
/// queues), at least one known key is required.
pub fn parse_concurrency(v: &Value) -> Result<QueueConcurrency, String> {
    let obj = v.as_object().ok_or("queueConcurrency must be an object")?;
    let mut out = Vec::new();
    for key in ConcurrencyKey::ALL {
        if let Some(raw) = obj.get(key.as_str()) {
            let n = raw
                .as_u64()
                .filter(|n| (1..=MAX_CONCURRENCY as u64).contains(n))
                .ok_or_else(|| {
                    format!(
                        "queueConcurrency.{} must be an integer in 1..={MAX_CONCURRENCY}",
                        key.as_str()
                    )
                })?;
            out.push((key, usize::try_from(n).unwrap_or(1)));
        }
    }
    if out.is_empty() {
        return Err(
            "queueConcurrency names none of analysis, rasterizer, glbPreprocessing, sshImport"
                .into(),
        );
    }
    Ok(out)
}

/// `runtime.queue-concurrency.apply`, checked: the concurrency to apply
/// and the reply `{accepted:true, queueConcurrency, queueScopeLimits}`, or
/// the refusal `{accepted:false, error}` (the reference's shapes, §4.1).
/// `queueScopeLimits` (shape not in the protocol doc) is echoed back
/// unchanged.
pub fn parse_apply(payload: &Value) -> Result<(QueueConcurrency, Value), Value> {
    let Some(qc) = payload.get("queueConcurrency") else {
        return Err(json!({ "accepted": false, "error": "queueConcurrency is required" }));
    };
    let parsed =
        parse_concurrency(qc).map_err(|error| json!({ "accepted": false, "error": error }))?;
    let applied: serde_json::Map<String, Value> = parsed
        .iter()
        .map(|(k, n)| (k.as_str().to_owned(), json!(n)))
        .collect();
    let reply = json!({
        "accepted": true,
        "queueConcurrency": applied,
        "queueScopeLimits": payload.get("queueScopeLimits").cloned().unwrap_or(Value::Null),
    });
    Ok((parsed, reply))
}

/// `runtime.queue-concurrency.apply`: sets the pools' concurrency live
/// (see [`parse_apply`]). A key whose queue has no pool on this cluster is
/// accepted and echoed (there is nothing to run it).
pub fn apply_concurrency(pools: &Pools, payload: &Value) -> Value {
    match parse_apply(payload) {
        Ok((parsed, reply)) => {
            for (key, n) in &parsed {
                pools.apply_concurrency(*key, *n);
            }
            reply
        }
        Err(refusal) => refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_validated() {
        let p = parse_concurrency(&json!({"analysis": 2, "sshImport": 3, "future": 9})).unwrap();
        assert_eq!(
            p,
            vec![
                (ConcurrencyKey::Analysis, 2),
                (ConcurrencyKey::SshImport, 3)
            ]
        );
        assert!(parse_concurrency(&json!({"analysis": 0})).is_err());
        assert!(parse_concurrency(&json!({"analysis": 1000})).is_err());
        assert!(parse_concurrency(&json!({"analysis": "2"})).is_err());
        assert!(parse_concurrency(&json!({})).is_err());
        assert!(parse_concurrency(&json!([1])).is_err());
    }

    #[test]
    fn ids_are_bounded() {
        let many: Vec<String> = (0..=MAX_JOB_IDS).map(|i| format!("j{i}")).collect();
        assert!(check_ids(&many).is_err());
        assert!(check_ids(&["ok-1".into()]).is_ok());
        assert!(check_ids(&["".into()]).is_err());
    }

    #[test]
    fn outcomes_are_kebab_case() {
        let r = JobResult {
            job_id: "j".into(),
            outcome: Outcome::NotFound,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            json!({"jobId": "j", "outcome": "not-found"})
        );
    }

    #[test]
    fn queue_errors_map_to_statuses() {
        assert_eq!(
            CommandError::from(QueueError::UnknownQueue("x".into())).status,
            400
        );
        assert_eq!(
            CommandError::from(QueueError::Store("down".into())).status,
            503
        );
    }
}
