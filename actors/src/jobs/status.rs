//! Job records the reference keeps beside BullMQ: JSON at
//! `jobs:status:<jobId>` (TTL [`STATUS_TTL_SECS`]) and the set
//! `team:<teamId>:jobs` of a team's job ids (volt-protocol.md §7.3).
//!
//! The protocol doc names the keys, the TTL and that `jobs.list` defaults
//! `createdAt`/`updatedAt`; it does not list the record's other fields. The
//! shape of [`JobRecord`] is therefore voltd's choice: camelCase, the ids the
//! server knows (`jobId`, `teamId`, `trajectoryId`, `analysisId`), the
//! `status` strings of the reference's job events (`queued`, `running`,
//! `completed`, `failed`), ISO-8601 times. Readers treat records as JSON
//! objects, so a record written by another daemon still lists.

use super::queue::QueueError;
use bullmq::redis_connection::RedisConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The reference's record lifetime: one day after the last update.
pub const STATUS_TTL_SECS: u64 = 86_400;

/// Most records one `jobs.list` returns (newest first): a team's set only
/// holds a day of jobs, but the server controls how many it dispatches.
pub const MAX_LISTED: usize = 5_000;

/// Longest error text kept in a record or event (errors can quote output).
pub const MAX_ERROR_CHARS: usize = 2_000;

pub fn status_key(job_id: &str) -> String {
    format!("jobs:status:{job_id}")
}

pub fn team_key(team_id: &str) -> String {
    format!("team:{team_id}:jobs")
}

/// `status` of a record and of the reference's job events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }
}

/// One job's record (see the module doc for why these fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub job_id: String,
    pub queue_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trajectory_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_id: Option<String>,
    /// Attempts started so far (1 on the first run).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// Now, as the ISO-8601 string the records and replies use.
pub fn now_iso() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Longest id taken from a payload into a record (ids become key parts;
/// a longer one is left out rather than stored).
pub const MAX_ID_BYTES: usize = 256;

fn str_field(payload: &Value, key: &str) -> Option<String> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_BYTES)
        .map(str::to_owned)
}

/// Cuts an error text to [`MAX_ERROR_CHARS`].
pub fn cap_error(e: &str) -> String {
    if e.chars().count() <= MAX_ERROR_CHARS {
        e.to_owned()
    } else {
        let mut s: String = e.chars().take(MAX_ERROR_CHARS).collect();
        s.push('…');
        s
    }
}

impl JobRecord {
    /// A fresh record for a job whose payload is `payload`.
    pub fn new(job_id: &str, queue_name: &str, payload: &Value, status: JobStatus) -> Self {
        let now = now_iso();
        JobRecord {
            job_id: job_id.to_owned(),
            queue_name: queue_name.to_owned(),
            team_id: str_field(payload, "teamId"),
            status,
            trajectory_id: str_field(payload, "trajectoryId"),
            trajectory_name: str_field(payload, "trajectoryName"),
            analysis_id: str_field(payload, "analysisId"),
            attempts: 0,
            progress: None,
            error: None,
            created_at: now.clone(),
            updated_at: now,
            started_at: None,
            finished_at: None,
        }
    }
}

/// Reads and writes records over the queues' shared connection.
#[derive(Clone)]
pub struct StatusStore {
    conn: RedisConnection,
}

impl StatusStore {
    pub fn new(conn: RedisConnection) -> Self {
        StatusStore { conn }
    }

    /// Writes `record` with the reference's TTL and adds it to its team's
    /// set (whose TTL is refreshed, so an idle team's set expires with its
    /// last record).
    pub async fn put(&self, record: &JobRecord) -> Result<(), QueueError> {
        let json = serde_json::to_string(record).map_err(|e| QueueError::Store(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(status_key(&record.job_id))
            .arg(json)
            .arg("EX")
            .arg(STATUS_TTL_SECS)
            .ignore();
        if let Some(team) = &record.team_id {
            pipe.cmd("SADD")
                .arg(team_key(team))
                .arg(&record.job_id)
                .ignore()
                .cmd("EXPIRE")
                .arg(team_key(team))
                .arg(STATUS_TTL_SECS)
                .ignore();
        }
        self.conn.pipe::<()>(&pipe).await?;
        Ok(())
    }

    /// The record of `job_id`, if it has one that parses.
    pub async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, QueueError> {
        let raw: Option<String> = self
            .conn
            .cmd(redis::cmd("GET").arg(status_key(job_id)))
            .await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Applies `change` to the stored record (or to `fallback` when there is
    /// none), stamps `updatedAt`, writes it back and returns it.
    pub async fn update(
        &self,
        job_id: &str,
        fallback: impl FnOnce() -> JobRecord,
        change: impl FnOnce(&mut JobRecord),
    ) -> Result<JobRecord, QueueError> {
        let mut record = self.get(job_id).await?.unwrap_or_else(fallback);
        change(&mut record);
        record.updated_at = now_iso();
        self.put(&record).await?;
        Ok(record)
    }

    /// A team's records as JSON objects, newest `updatedAt` first, with
    /// `createdAt`/`updatedAt` defaulted as the reference does. Ids whose
    /// record expired are dropped from the set on the way.
    pub async fn list(&self, team_id: &str) -> Result<Vec<Value>, QueueError> {
        let ids: Vec<String> = self
            .conn
            .cmd(redis::cmd("SMEMBERS").arg(team_key(team_id)))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| status_key(id)).collect();
        let raws: Vec<Option<String>> = self.conn.cmd(redis::cmd("MGET").arg(&keys)).await?;
        let mut gone = Vec::new();
        let mut out = Vec::new();
        let now = now_iso();
        for (id, raw) in ids.iter().zip(raws) {
            let Some(raw) = raw else {
                gone.push(id.clone());
                continue;
            };
            let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(&raw) else {
                continue;
            };
            obj.entry("jobId")
                .or_insert_with(|| Value::String(id.clone()));
            let created = obj
                .get("createdAt")
                .cloned()
                .unwrap_or_else(|| Value::String(now.clone()));
            obj.entry("createdAt").or_insert_with(|| created.clone());
            obj.entry("updatedAt").or_insert(created);
            out.push(Value::Object(obj));
        }
        if !gone.is_empty() {
            self.conn
                .cmd::<()>(redis::cmd("SREM").arg(team_key(team_id)).arg(&gone))
                .await?;
        }
        out.sort_by(|a, b| {
            let ka = a.get("updatedAt").and_then(Value::as_str).unwrap_or("");
            let kb = b.get("updatedAt").and_then(Value::as_str).unwrap_or("");
            kb.cmp(ka)
        });
        out.truncate(MAX_LISTED);
        Ok(out)
    }

    /// Deletes a record and its team-set membership.
    pub async fn delete(&self, team_id: Option<&str>, job_id: &str) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(status_key(job_id)).ignore();
        if let Some(team) = team_id {
            pipe.cmd("SREM").arg(team_key(team)).arg(job_id).ignore();
        }
        self.conn.pipe::<()>(&pipe).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_the_references() {
        assert_eq!(status_key("j1"), "jobs:status:j1");
        assert_eq!(team_key("t1"), "team:t1:jobs");
    }

    #[test]
    fn record_takes_ids_from_the_payload_and_serialises_camel_case() {
        let r = JobRecord::new(
            "j1",
            "ssh_import",
            &json!({"teamId": "t", "trajectoryId": "tr", "trajectoryName": "", "x": 1}),
            JobStatus::Queued,
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["jobId"], "j1");
        assert_eq!(v["queueName"], "ssh_import");
        assert_eq!(v["teamId"], "t");
        assert_eq!(v["trajectoryId"], "tr");
        assert!(
            v.get("trajectoryName").is_none(),
            "empty strings are absent"
        );
        assert_eq!(v["status"], "queued");
        assert!(v["createdAt"].as_str().unwrap().ends_with('Z'));
        let back: JobRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn errors_are_capped() {
        let long = "e".repeat(MAX_ERROR_CHARS + 10);
        assert_eq!(cap_error(&long).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(cap_error("short"), "short");
    }
}
