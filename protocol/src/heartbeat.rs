//! The `runtime.heartbeat` and `runtime.lifecycle` command payloads, and the
//! host metrics snapshot, with the reference's exact field names and units.

use crate::register::{Extension, Extensions, Secret};
use crate::status::ClusterStatus;
use serde::{Deserialize, Serialize};

/// Command name of the heartbeat (daemon → server).
pub const HEARTBEAT_COMMAND: &str = "runtime.heartbeat";
/// Command name of a lifecycle status report (daemon → server).
pub const LIFECYCLE_COMMAND: &str = "runtime.lifecycle";
/// Command name announcing that uninstall finished (daemon → server).
pub const DELETE_COMPLETED_COMMAND: &str = "runtime.delete-completed";

/// One metrics snapshot. Units are part of the names: bytes, percent (0..100),
/// MB/s, KB/s, IOPS, seconds, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// ISO 8601 / RFC 3339 time the sample was taken.
    pub timestamp: String,
    pub hostname: String,
    pub uptime_seconds: u64,
    /// Integer percent 0..100: rounded mean of the per-core figures.
    pub cpu_usage_percent: f64,
    /// 1, 5 and 15 minute load averages.
    pub cpu_load_average: Vec<f64>,
    /// Integer percent 0..100 per logical core.
    pub cpu_per_core_usage_percent: Vec<f64>,
    pub memory: UsageMetrics,
    pub disk: UsageMetrics,
    pub disk_operations: DiskOperations,
    pub network: NetworkMetrics,
    /// Round trip of the previous heartbeat, `null` before the first one.
    pub cloud_latency_ms: Option<f64>,
    pub connected_to_cloud: bool,
}

/// Memory or disk usage, in bytes, with the used share as a rounded percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetrics {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub used_bytes: u64,
    pub usage_percent: f64,
}

/// Disk throughput over the last sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct DiskOperations {
    #[serde(rename = "readMegabytesPerSecond")]
    pub read_megabytes_per_second: f64,
    #[serde(rename = "writeMegabytesPerSecond")]
    pub write_megabytes_per_second: f64,
    #[serde(rename = "readIOPS")]
    pub read_iops: f64,
    #[serde(rename = "writeIOPS")]
    pub write_iops: f64,
    #[serde(rename = "totalIOPS")]
    pub total_iops: f64,
}

/// Network throughput over the last interval, plus cumulative byte counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkMetrics {
    pub incoming_kilobytes_per_second: f64,
    pub outgoing_kilobytes_per_second: f64,
    pub total_kilobytes_per_second: f64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// `runtime.heartbeat` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatPayload {
    pub team_cluster_id: String,
    pub daemon_password: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

/// `runtime.lifecycle` payload. The reference keys are `{teamClusterId,
/// daemonPassword, status, installedVersion?}`; `reason` is voltd's
/// extension ([`Extension::LifecycleReason`]) and goes on the wire only to a
/// server that announced it: build the payload with
/// [`LifecyclePayload::to_wire`].
///
/// Plain `Serialize` never writes `reason` (it is skipped), so no path
/// can send it by accident; only `to_wire` adds it, and only for a server
/// that announced the extension. `Deserialize` reads it (volt-plane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePayload {
    pub team_cluster_id: String,
    pub daemon_password: Secret,
    pub status: ClusterStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    #[serde(default, skip_serializing)]
    pub reason: Option<String>,
}

impl LifecyclePayload {
    /// The payload for a server that announced `extensions`: exactly the
    /// reference keys, plus `reason` only under
    /// [`Extension::LifecycleReason`].
    pub fn to_wire(&self, extensions: &Extensions) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("teamClusterId".into(), self.team_cluster_id.clone().into());
        m.insert(
            "daemonPassword".into(),
            self.daemon_password.expose().into(),
        );
        m.insert("status".into(), self.status.as_str().into());
        if let Some(v) = &self.installed_version {
            m.insert("installedVersion".into(), v.clone().into());
        }
        if let Some(r) = &self.reason
            && extensions.contains(Extension::LifecycleReason)
        {
            m.insert("reason".into(), r.clone().into());
        }
        serde_json::Value::Object(m)
    }
}

/// `runtime.delete-completed` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteCompletedPayload {
    pub team_cluster_id: String,
    pub daemon_password: Secret,
}

/// Rounds to `decimals` places, as the reference does before sending.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    if !value.is_finite() {
        return 0.0;
    }
    let f = 10f64.powi(decimals);
    (value * f).round() / f
}

/// `used / total` as a rounded integer percent; 0 when `total` is 0.
pub fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (used as f64 * 100.0 / total as f64)
            .round()
            .clamp(0.0, 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn sample() -> Metrics {
        Metrics {
            timestamp: "2026-11-23T10:00:00Z".into(),
            hostname: "h".into(),
            uptime_seconds: 5,
            cpu_usage_percent: 12.0,
            cpu_load_average: vec![0.1, 0.2, 0.3],
            cpu_per_core_usage_percent: vec![10.0, 14.0],
            memory: UsageMetrics {
                total_bytes: 100,
                free_bytes: 40,
                used_bytes: 60,
                usage_percent: 60.0,
            },
            disk: UsageMetrics::default(),
            disk_operations: DiskOperations::default(),
            network: NetworkMetrics::default(),
            cloud_latency_ms: None,
            connected_to_cloud: true,
        }
    }

    #[test]
    fn metrics_serialise_with_every_reference_field_name() {
        let v = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "timestamp",
            "hostname",
            "uptimeSeconds",
            "cpuUsagePercent",
            "cpuLoadAverage",
            "cpuPerCoreUsagePercent",
            "memory",
            "disk",
            "diskOperations",
            "network",
            "cloudLatencyMs",
            "connectedToCloud",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        expected.sort();
        assert_eq!(keys_sorted, expected);
        assert_eq!(
            v["memory"],
            json!({"totalBytes":100,"freeBytes":40,"usedBytes":60,"usagePercent":60.0})
        );
        let disk_ops: Vec<&str> = v["diskOperations"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "readMegabytesPerSecond",
            "writeMegabytesPerSecond",
            "readIOPS",
            "writeIOPS",
            "totalIOPS",
        ] {
            assert!(disk_ops.contains(&k), "{k}");
        }
        let net: Vec<&str> = v["network"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "incomingKilobytesPerSecond",
            "outgoingKilobytesPerSecond",
            "totalKilobytesPerSecond",
            "receivedBytes",
            "sentBytes",
        ] {
            assert!(net.contains(&k), "{k}");
        }
        assert_eq!(v["cloudLatencyMs"], Value::Null);
    }

    #[test]
    fn heartbeat_payload_shape() {
        let p = HeartbeatPayload {
            team_cluster_id: "c".into(),
            daemon_password: Secret::new("pw"),
            installed_version: Some("1.0.0".into()),
            runtime: None,
            metrics: Some(sample()),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["teamClusterId"], "c");
        assert_eq!(v["daemonPassword"], "pw");
        assert_eq!(v["installedVersion"], "1.0.0");
        assert!(v.get("runtime").is_none());
        assert!(v["metrics"].is_object());
        assert!(!format!("{p:?}").contains("pw\""));
    }

    #[test]
    fn lifecycle_payload_uses_wire_status() {
        let p = LifecyclePayload {
            team_cluster_id: "c".into(),
            daemon_password: Secret::new("pw"),
            status: ClusterStatus::DependencyInstallationFailed,
            installed_version: None,
            reason: Some("redis-server not found".into()),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], "dependency-installation-failed");
        assert!(v.get("reason").is_none(), "never serialised by default");
        let back: LifecyclePayload =
            serde_json::from_value(p.to_wire(&Extensions::none().with(Extension::LifecycleReason)))
                .unwrap();
        assert_eq!(back.reason.as_deref(), Some("redis-server not found"));
    }

    #[test]
    fn lifecycle_to_a_reference_server_carries_only_the_reference_keys() {
        let p = LifecyclePayload {
            team_cluster_id: "c".into(),
            daemon_password: Secret::new("pw"),
            status: ClusterStatus::UpdateFailed,
            installed_version: Some("1.0.0".into()),
            reason: Some("bad signature".into()),
        };
        let v = p.to_wire(&Extensions::none());
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "daemonPassword",
                "installedVersion",
                "status",
                "teamClusterId"
            ]
        );
        assert_eq!(v["status"], "update-failed");
        let v = LifecyclePayload {
            installed_version: None,
            ..p.clone()
        }
        .to_wire(&Extensions::none());
        assert_eq!(v.as_object().unwrap().len(), 3);
    }

    #[test]
    fn lifecycle_reason_goes_only_to_a_server_that_announced_it() {
        let p = LifecyclePayload {
            team_cluster_id: "c".into(),
            daemon_password: Secret::new("pw"),
            status: ClusterStatus::UpdateFailed,
            installed_version: None,
            reason: Some("bad signature".into()),
        };
        let ext = Extensions::none().with(Extension::LifecycleReason);
        let v = p.to_wire(&ext);
        assert_eq!(v["reason"], "bad signature");
        assert_eq!(v["daemonPassword"], "pw");
        let without = LifecyclePayload {
            reason: None,
            ..p.clone()
        };
        assert!(without.to_wire(&ext).get("reason").is_none());
    }

    #[test]
    fn rounding_helpers() {
        assert_eq!(round_to(1.23456, 2), 1.23);
        assert_eq!(round_to(f64::NAN, 2), 0.0);
        assert_eq!(percent(1, 3), 33.0);
        assert_eq!(percent(5, 0), 0.0);
        assert_eq!(percent(7, 5), 100.0);
    }
}
