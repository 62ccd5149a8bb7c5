//! Per-cluster monitoring history for the console's charts, kept compactly:
//! each heartbeat's metrics are reduced to one fixed-size [`Sample`]
//! (32 bytes) and stored in two downsampled ring buffers —
//!
//! * **fine**: one point per [`FINE_STEP_SECS`] (10 s, the reference's
//!   heartbeat period), [`FINE_POINTS`] of them = the last hour;
//! * **coarse**: one point per [`COARSE_STEP_SECS`] (15 min),
//!   [`COARSE_POINTS`] of them = the last 24 hours.
//!
//! Heartbeats closer together than a step (tests beat every second) are
//! averaged into the step's point. A cluster costs 14.25 KiB from its first
//! heartbeat on (both rings are allocated whole then); nothing before, and
//! nothing here is persisted. (The coarse step was 5 min at first; the
//! 10,000-daemon benchmark put the plane at 61.6 KiB per daemon against a
//! budget of 60, and a day at 15-minute points saves 6 KiB per cluster.)

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Width of a fine point: the reference daemon's heartbeat period.
pub const FINE_STEP_SECS: u32 = 10;
/// One hour of fine points.
pub const FINE_POINTS: usize = 360;
/// Width of a coarse point.
pub const COARSE_STEP_SECS: u32 = 900;
/// One day of coarse points.
pub const COARSE_POINTS: usize = 96;
/// Longest window the history answers for, in minutes (the coarse ring).
pub const MAX_WINDOW_MINUTES: u32 = COARSE_POINTS as u32 * COARSE_STEP_SECS / 60;

/// The figures of one heartbeat the charts show. Percentages are stored
/// in hundredths (0..=10000); a missing figure is `NaN` / `u16::MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Start of the step, Unix seconds.
    pub t: u32,
    /// Heartbeats averaged into this point.
    pub n: u16,
    pub cpu: u16,
    pub memory: u16,
    pub disk: u16,
    pub latency_ms: f32,
    pub net_in_kbps: f32,
    pub net_out_kbps: f32,
    pub disk_read_mbps: f32,
    pub disk_write_mbps: f32,
}

const MISSING_PERCENT: u16 = u16::MAX;

/// The heartbeat `metrics` fields the charts use (protocol §3.1); the
/// rest of the snapshot is ignored here.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Figures {
    cpu_usage_percent: Option<f64>,
    memory: Usage,
    disk: Usage,
    cloud_latency_ms: Option<f64>,
    network: Network,
    disk_operations: DiskOps,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Usage {
    usage_percent: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Network {
    incoming_kilobytes_per_second: Option<f64>,
    outgoing_kilobytes_per_second: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DiskOps {
    read_megabytes_per_second: Option<f64>,
    write_megabytes_per_second: Option<f64>,
}

fn percent(v: Option<f64>) -> u16 {
    match v {
        Some(p) if p.is_finite() => (p.clamp(0.0, 100.0) * 100.0).round() as u16,
        _ => MISSING_PERCENT,
    }
}

fn rate(v: Option<f64>) -> f32 {
    match v {
        Some(x) if x.is_finite() && x >= 0.0 => x as f32,
        _ => f32::NAN,
    }
}

impl Sample {
    /// Reduces a heartbeat's metrics to a sample at `unix_secs`. Metrics
    /// that are not an object of the reference shape give a sample of
    /// missing figures (the daemon still beat).
    pub fn from_metrics(metrics: &Value, unix_secs: u32) -> Sample {
        let f = Figures::deserialize(metrics).unwrap_or_default();
        Sample {
            t: unix_secs,
            n: 1,
            cpu: percent(f.cpu_usage_percent),
            memory: percent(f.memory.usage_percent),
            disk: percent(f.disk.usage_percent),
            latency_ms: rate(f.cloud_latency_ms),
            net_in_kbps: rate(f.network.incoming_kilobytes_per_second),
            net_out_kbps: rate(f.network.outgoing_kilobytes_per_second),
            disk_read_mbps: rate(f.disk_operations.read_megabytes_per_second),
            disk_write_mbps: rate(f.disk_operations.write_megabytes_per_second),
        }
    }

    /// Folds `other` into this point (a running mean; a missing figure
    /// does not drag the mean down).
    fn merge(&mut self, other: &Sample) {
        let n = f64::from(self.n);
        let mean_pct = |a: u16, b: u16| match (a, b) {
            (MISSING_PERCENT, b) => b,
            (a, MISSING_PERCENT) => a,
            (a, b) => ((f64::from(a) * n + f64::from(b)) / (n + 1.0)).round() as u16,
        };
        let mean = |a: f32, b: f32| {
            if a.is_nan() {
                b
            } else if b.is_nan() {
                a
            } else {
                ((f64::from(a) * n + f64::from(b)) / (n + 1.0)) as f32
            }
        };
        self.cpu = mean_pct(self.cpu, other.cpu);
        self.memory = mean_pct(self.memory, other.memory);
        self.disk = mean_pct(self.disk, other.disk);
        self.latency_ms = mean(self.latency_ms, other.latency_ms);
        self.net_in_kbps = mean(self.net_in_kbps, other.net_in_kbps);
        self.net_out_kbps = mean(self.net_out_kbps, other.net_out_kbps);
        self.disk_read_mbps = mean(self.disk_read_mbps, other.disk_read_mbps);
        self.disk_write_mbps = mean(self.disk_write_mbps, other.disk_write_mbps);
        self.n = self.n.saturating_add(1);
    }
}

/// A bounded ring of points `step` seconds wide, in one allocation made
/// (and written through) at its first point: a cluster's history costs the
/// same after a minute as after a day, so a memory measurement taken early
/// already shows the full cost.
#[derive(Debug)]
struct Ring {
    buf: Box<[Sample]>,
    /// Index of the oldest point.
    head: usize,
    len: usize,
    cap: usize,
    step: u32,
}

/// What an unused slot holds (never read: `len` bounds every read).
const EMPTY: Sample = Sample {
    t: u32::MAX,
    n: 0,
    cpu: MISSING_PERCENT,
    memory: MISSING_PERCENT,
    disk: MISSING_PERCENT,
    latency_ms: f32::NAN,
    net_in_kbps: f32::NAN,
    net_out_kbps: f32::NAN,
    disk_read_mbps: f32::NAN,
    disk_write_mbps: f32::NAN,
};

impl Ring {
    fn new(cap: usize, step: u32) -> Self {
        Ring {
            buf: Box::default(),
            head: 0,
            len: 0,
            cap,
            step,
        }
    }

    fn get(&self, i: usize) -> &Sample {
        &self.buf[(self.head + i) % self.cap]
    }

    fn last_mut(&mut self) -> Option<&mut Sample> {
        if self.len == 0 {
            return None;
        }
        let i = (self.head + self.len - 1) % self.cap;
        Some(&mut self.buf[i])
    }

    /// Adds `s` (already aligned to this ring's step): merged into the
    /// last point when it falls in the same step, else appended, dropping
    /// the oldest when full. A sample older than the last point (a clock
    /// step back) is merged too.
    fn push(&mut self, s: Sample) {
        if let Some(last) = self.last_mut()
            && s.t <= last.t
        {
            last.merge(&s);
            return;
        }
        if self.buf.is_empty() {
            self.buf = vec![EMPTY; self.cap].into_boxed_slice();
        }
        if self.len == self.cap {
            self.buf[self.head] = s;
            self.head = (self.head + 1) % self.cap;
        } else {
            let i = (self.head + self.len) % self.cap;
            self.buf[i] = s;
            self.len += 1;
        }
    }

    fn since(&self, t: u32) -> impl Iterator<Item = &Sample> {
        (0..self.len).map(|i| self.get(i)).filter(move |p| p.t >= t)
    }

    fn latest(&self) -> Option<&Sample> {
        (self.len > 0).then(|| self.get(self.len - 1))
    }
}

/// One cluster's history.
#[derive(Debug)]
pub struct MetricHistory {
    fine: Ring,
    coarse: Ring,
}

impl Default for MetricHistory {
    fn default() -> Self {
        MetricHistory::new()
    }
}

impl MetricHistory {
    pub fn new() -> Self {
        MetricHistory {
            fine: Ring::new(FINE_POINTS, FINE_STEP_SECS),
            coarse: Ring::new(COARSE_POINTS, COARSE_STEP_SECS),
        }
    }

    /// Records one heartbeat's sample.
    pub fn record(&mut self, s: Sample) {
        let mut fine = s;
        fine.t -= fine.t % self.fine.step;
        self.fine.push(fine);
        let mut coarse = s;
        coarse.t -= coarse.t % self.coarse.step;
        self.coarse.push(coarse);
    }

    /// Points of the last `minutes` (at most [`MAX_WINDOW_MINUTES`]) newer
    /// than `after` (Unix seconds), as of `now`: fine points for windows up
    /// to an hour, coarse ones beyond. Returns the step too.
    pub fn window(&self, minutes: u32, after: Option<u32>, now: u32) -> (u32, Vec<Sample>) {
        let minutes = minutes.clamp(1, MAX_WINDOW_MINUTES);
        let start = now.saturating_sub(minutes * 60);
        let ring = if minutes * 60 <= FINE_POINTS as u32 * FINE_STEP_SECS {
            &self.fine
        } else {
            &self.coarse
        };
        let from = after.map_or(start, |a| a.saturating_add(1).max(start));
        (ring.step, ring.since(from).copied().collect())
    }

    /// Start of the newest fine point, if any.
    pub fn latest(&self) -> Option<u32> {
        self.fine.latest().map(|p| p.t)
    }

    /// Heap bytes held (for the memory budget's arithmetic and tests).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        (self.fine.buf.len() + self.coarse.buf.len()) * size_of::<Sample>()
    }
}

/// Points as columns, the JSON the console's charts read:
/// `{stepSeconds, t:[…], cpu:[…], memory:[…], disk:[…], latencyMs:[…],
/// netInKbps:[…], netOutKbps:[…], diskReadMbps:[…], diskWriteMbps:[…]}`,
/// percentages as numbers with two decimals, a missing figure as `null`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub step_seconds: u32,
    pub t: Vec<u32>,
    pub cpu: Vec<Option<f32>>,
    pub memory: Vec<Option<f32>>,
    pub disk: Vec<Option<f32>>,
    pub latency_ms: Vec<Option<f32>>,
    pub net_in_kbps: Vec<Option<f32>>,
    pub net_out_kbps: Vec<Option<f32>>,
    pub disk_read_mbps: Vec<Option<f32>>,
    pub disk_write_mbps: Vec<Option<f32>>,
}

impl Series {
    pub fn new(step_seconds: u32, points: &[Sample]) -> Self {
        let pct = |v: u16| (v != MISSING_PERCENT).then(|| f32::from(v) / 100.0);
        let num = |v: f32| (!v.is_nan()).then_some(v);
        Series {
            step_seconds,
            t: points.iter().map(|p| p.t).collect(),
            cpu: points.iter().map(|p| pct(p.cpu)).collect(),
            memory: points.iter().map(|p| pct(p.memory)).collect(),
            disk: points.iter().map(|p| pct(p.disk)).collect(),
            latency_ms: points.iter().map(|p| num(p.latency_ms)).collect(),
            net_in_kbps: points.iter().map(|p| num(p.net_in_kbps)).collect(),
            net_out_kbps: points.iter().map(|p| num(p.net_out_kbps)).collect(),
            disk_read_mbps: points.iter().map(|p| num(p.disk_read_mbps)).collect(),
            disk_write_mbps: points.iter().map(|p| num(p.disk_write_mbps)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics(cpu: f64) -> Value {
        json!({
            "timestamp": "2026-11-23T10:00:00.000Z", "hostname": "h", "uptimeSeconds": 5,
            "cpuUsagePercent": cpu, "cpuLoadAverage": [0.1, 0.2, 0.3], "cpuPerCoreUsagePercent": [cpu],
            "memory": {"totalBytes": 8, "freeBytes": 4, "usedBytes": 4, "usagePercent": 50},
            "disk": {"totalBytes": 8, "freeBytes": 2, "usedBytes": 6, "usagePercent": 75.5},
            "diskOperations": {"readMegabytesPerSecond": 1.5, "writeMegabytesPerSecond": 0.25,
                               "readIOPS": 1, "writeIOPS": 1, "totalIOPS": 2},
            "network": {"incomingKilobytesPerSecond": 10.0, "outgoingKilobytesPerSecond": 2.0,
                        "totalKilobytesPerSecond": 12.0, "receivedBytes": 1, "sentBytes": 1},
            "cloudLatencyMs": 3, "connectedToCloud": true
        })
    }

    #[test]
    fn a_sample_keeps_the_charted_figures() {
        let s = Sample::from_metrics(&metrics(12.34), 1000);
        assert_eq!((s.cpu, s.memory, s.disk), (1234, 5000, 7550));
        assert_eq!(s.latency_ms, 3.0);
        assert_eq!((s.net_in_kbps, s.net_out_kbps), (10.0, 2.0));
        assert_eq!((s.disk_read_mbps, s.disk_write_mbps), (1.5, 0.25));
        assert_eq!(size_of::<Sample>(), 32);
        let junk = Sample::from_metrics(&json!("nope"), 5);
        assert_eq!(junk.cpu, MISSING_PERCENT);
        assert!(junk.latency_ms.is_nan());
        let partial = Sample::from_metrics(&json!({"cpuUsagePercent": 150}), 5);
        assert_eq!(partial.cpu, 10000);
        assert_eq!(partial.memory, MISSING_PERCENT);
    }

    #[test]
    fn heartbeats_within_a_step_are_averaged() {
        let mut h = MetricHistory::new();
        let t0 = 1_000_000 - 1_000_000 % 900;
        h.record(Sample::from_metrics(&metrics(10.0), t0 + 1));
        h.record(Sample::from_metrics(&metrics(20.0), t0 + 5));
        h.record(Sample::from_metrics(&json!({}), t0 + 6));
        h.record(Sample::from_metrics(&metrics(40.0), t0 + 12));
        let (step, pts) = h.window(60, None, t0 + 20);
        assert_eq!(step, FINE_STEP_SECS);
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].t, t0);
        assert_eq!(pts[0].n, 3);
        assert_eq!(pts[0].cpu, 1500);
        assert_eq!(pts[1].cpu, 4000);
        // Incremental reads return only newer points.
        let (_, newer) = h.window(60, Some(t0), t0 + 20);
        assert_eq!(newer.len(), 1);
        assert_eq!(h.latest(), Some(t0 + 10));
        // The coarse ring holds one point for the whole 15 minutes.
        let (step, coarse) = h.window(24 * 60, None, t0 + 20);
        assert_eq!(step, COARSE_STEP_SECS);
        assert_eq!(coarse.len(), 1);
        assert_eq!(coarse[0].n, 4);
    }

    #[test]
    fn an_hour_and_a_day_are_kept_in_bounded_memory() {
        let mut h = MetricHistory::new();
        assert_eq!(h.heap_bytes(), 0);
        let start = 2_000_000_000u32 - 2_000_000_000 % 900;
        let day = 24 * 3600;
        for i in 0..(day / 10 + 100) {
            h.record(Sample::from_metrics(
                &metrics(f64::from(i % 100)),
                start + i * 10,
            ));
        }
        let now = start + (day / 10 + 99) * 10;
        let (_, hour) = h.window(60, None, now);
        assert_eq!(hour.len(), FINE_POINTS);
        assert!(hour.windows(2).all(|w| w[1].t == w[0].t + 10));
        let (_, all_day) = h.window(MAX_WINDOW_MINUTES, None, now);
        assert_eq!(all_day.len(), COARSE_POINTS);
        assert_eq!(h.heap_bytes(), (FINE_POINTS + COARSE_POINTS) * 32);
        assert_eq!(h.heap_bytes(), 14_592);
    }

    #[test]
    fn series_are_columns_with_nulls_for_missing_figures() {
        let a = Sample::from_metrics(&metrics(50.0), 10);
        let b = Sample::from_metrics(&json!({"cpuUsagePercent": 1}), 20);
        let s = Series::new(10, &[a, b]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["t"], json!([10, 20]));
        assert_eq!(v["cpu"], json!([50.0, 1.0]));
        assert_eq!(v["memory"], json!([50.0, null]));
        assert_eq!(v["latencyMs"], json!([3.0, null]));
        assert_eq!(v["stepSeconds"], 10);
    }
}
