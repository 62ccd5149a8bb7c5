//! Host metrics sampler: one [`Metrics`] snapshot per heartbeat.
//!
//! The figures mirror the reference daemon's `MetricsService` (protocol §3.1
//! and §8) so the server's thresholds (`Warning` at 75/85 %, `Critical` at
//! 90 %) mean the same thing for a host running voltd as for one running the
//! reference: per-core CPU from `os.cpus()`-style deltas, memory from
//! `MemTotal`/`MemAvailable`, disk usage as `df -B1 /` prints it, disk I/O
//! from `/proc/diskstats` and network from `/proc/net/dev`.
//!
//! The module is split the way `mini-redis` splits `frame.rs` from
//! `connection.rs`: every `/proc` file is parsed by a pure function over
//! `&str`, every rate by a pure function over two counter snapshots and an
//! elapsed time, and [`HostSampler`] only reads files and keeps the previous
//! snapshots. The parsers never panic: a malformed line is skipped.
//!
//! Why `/proc` is read directly instead of through `sysinfo`:
//!
//! * CPU: `sysinfo` counts iowait, softirq and steal into its total, while the
//!   reference (Node's `os.cpus()`, i.e. libuv) uses exactly
//!   user + nice + system + idle + irq. Reading `/proc/stat` reproduces the
//!   reference's numbers, and keeps two integers per core instead of a
//!   `sysinfo::Cpu` per core (brand, vendor, frequency read from `/sys` on
//!   each refresh), which matters for the daemon's ≤12 MB idle RSS target.
//! * Load average: `sysinfo::System::load_average` unwraps its parse of
//!   `/proc/loadavg`, so odd content there would panic the heartbeat.
//! * Disk and network: `sysinfo::Disks`/`Networks` enumerate every mount and
//!   keep per-interface state; we need one `statvfs` and two counters per
//!   interface.
//!
//! `sysinfo` is still used for the uptime (it falls back to `sysinfo(2)` when
//! `/proc/uptime` is hidden) and the hostname (`gethostname(2)`, what Node's
//! `os.hostname()` calls; `nix`'s `hostname` feature is not enabled here).
//! Neither keeps any state.
//!
//! A `/proc` file or the disk mount that cannot be read turns its group into
//! zeros and logs one warning when it starts failing (and one line when it
//! recovers), never a panic and never a warning per heartbeat.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use volt_protocol::heartbeat::{
    DiskOperations, Metrics, NetworkMetrics, UsageMetrics, percent, round_to,
};

/// Where the kernel's process/system information lives.
const PROC_ROOT: &str = "/proc";

/// `/proc/diskstats` always counts 512-byte sectors, whatever the device's
/// logical block size (see the kernel's `Documentation/admin-guide/iostats.rst`).
const SECTOR_BYTES: f64 = 512.0;

/// The reference's "megabytes" are MiB (`1024 * 1024`).
const BYTES_PER_MEGABYTE: f64 = 1_048_576.0;

/// The reference's "kilobytes" are KiB.
const BYTES_PER_KILOBYTE: f64 = 1024.0;

/// `/proc/meminfo`'s `kB` unit is KiB.
const MEMINFO_UNIT_BYTES: u64 = 1024;

/// Decimals the reference keeps for disk MB/s.
const MEGABYTES_PER_SECOND_DECIMALS: i32 = 2;

/// Decimals the reference keeps for network KB/s.
const KILOBYTES_PER_SECOND_DECIMALS: i32 = 1;

/// IOPS are sent as integers.
const IOPS_DECIMALS: i32 = 0;

/// A whole-disk `/proc/diskstats` line has at least 14 fields (major, minor,
/// name and 11 counters) on every kernel since 2.6; the reference skips
/// shorter lines, and so do we.
const DISKSTATS_MIN_FIELDS: usize = 14;

/// Positions in a `/proc/diskstats` line (0-based, after splitting on
/// whitespace): device name, reads completed, sectors read, writes completed,
/// sectors written.
const DISKSTATS_NAME: usize = 2;
const DISKSTATS_READS: usize = 3;
const DISKSTATS_READ_SECTORS: usize = 5;
const DISKSTATS_WRITES: usize = 7;
const DISKSTATS_WRITE_SECTORS: usize = 9;

/// Name prefixes of whole physical disks whose suffix is the drive letters:
/// SCSI/SATA (`sda`), virtio (`vda`), old IDE (`hda`) and Xen (`xvda`). NVMe
/// namespaces (`nvme0n1`) have their own shape, see [`is_physical_disk`].
const LETTERED_DISK_PREFIXES: [&str; 4] = ["sd", "vd", "hd", "xvd"];

/// NVMe whole-namespace devices are `nvme<controller>n<namespace>`.
const NVME_PREFIX: &str = "nvme";

/// The loopback interface: traffic that never leaves the host, which the
/// reference leaves out of the network figures.
const LOOPBACK_INTERFACE: &str = "lo";

/// In the counters after `<iface>:` in `/proc/net/dev`, received bytes come
/// first and transmitted bytes are the ninth (8 receive columns precede them).
const NET_DEV_TRANSMIT_BYTES: usize = 8;

/// Fields of a `/proc/stat` `cpuN` line the reference uses, as libuv reads
/// them: user, nice, system, idle, (iowait, ignored), irq.
const PROC_STAT_FIELDS: usize = 6;
/// `cpuN` lines of kernels before 2.5.41 stop after idle; libuv requires the
/// six fields, we accept the four and count irq as 0.
const PROC_STAT_MIN_FIELDS: usize = 4;
const PROC_STAT_IDLE: usize = 3;
const PROC_STAT_IOWAIT: usize = 4;

/// Reported when `gethostname(2)` fails, which a daemon should never see but
/// must not panic on; it is what an unconfigured host calls itself.
const FALLBACK_HOSTNAME: &str = "localhost";

/// Samples the host for the heartbeat's [`Metrics`].
///
/// Rates (CPU, disk I/O, network) are deltas between this sample and the
/// previous one, so the first sample reports them as 0, like the reference.
/// Holds only the previous counters (a few integers per core, disk and
/// interface) and one reusable read buffer.
#[derive(Debug)]
pub struct HostSampler {
    /// Mount point whose usage is reported (the daemon uses `/`, as the
    /// reference's `df -B1 /`).
    disk_path: PathBuf,
    /// `/proc` in production; a fixture directory in tests.
    proc_root: PathBuf,
    /// Reused for every `/proc` read so a heartbeat does not allocate a fresh
    /// buffer per file.
    buf: Vec<u8>,
    /// Monotonic time of the previous sample; wall-clock jumps must not
    /// produce negative or huge rates. tokio's `Instant`, as elsewhere in the
    /// workspace, so a paused-time test sees a zero interval (rates 0)
    /// instead of real time.
    last_sample_at: Option<Instant>,
    /// Previous snapshots; `None` before the first successful read of that
    /// source and after a failed one, so the next rate is 0 rather than a
    /// delta across a gap of unknown length.
    prev_cpu: Option<Vec<CpuTimes>>,
    prev_disks: Option<Vec<DiskCounters>>,
    prev_net: Option<NetCounters>,
    health: Health,
}

impl HostSampler {
    /// A sampler reporting the usage of the file system mounted at
    /// `disk_path`. Reads nothing yet: the first [`sample`](Self::sample)
    /// takes the baseline.
    pub fn new(disk_path: PathBuf) -> Self {
        Self::with_proc_root(disk_path, PathBuf::from(PROC_ROOT))
    }

    fn with_proc_root(disk_path: PathBuf, proc_root: PathBuf) -> Self {
        Self {
            disk_path,
            proc_root,
            buf: Vec::new(),
            last_sample_at: None,
            prev_cpu: None,
            prev_disks: None,
            prev_net: None,
            health: Health::default(),
        }
    }

    /// Takes one snapshot. `cloud_latency_ms` (round trip of the previous
    /// heartbeat, `None` before the first) and `connected_to_cloud` are passed
    /// through; a non-finite or negative latency becomes `None`, because JSON
    /// cannot carry NaN or infinity and a negative round trip means nothing.
    pub fn sample(&mut self, cloud_latency_ms: Option<f64>, connected_to_cloud: bool) -> Metrics {
        let timestamp = crate::host::clock::now_iso();
        let now = Instant::now();
        let elapsed = self
            .last_sample_at
            .map_or(Duration::ZERO, |then| now.saturating_duration_since(then));
        self.last_sample_at = Some(now);

        let cpu_per_core = self.sample_cpu();
        let cpu_load_average = self.sample_load_average();
        let memory = self.sample_memory();
        let disk = self.sample_disk_usage();
        let disk_operations = self.sample_disk_io(elapsed);
        let network = self.sample_network(elapsed);

        Metrics {
            timestamp,
            hostname: sysinfo::System::host_name()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| FALLBACK_HOSTNAME.to_owned()),
            uptime_seconds: sysinfo::System::uptime(),
            cpu_usage_percent: overall_cpu_usage(&cpu_per_core),
            cpu_load_average: cpu_load_average.to_vec(),
            cpu_per_core_usage_percent: cpu_per_core,
            memory,
            disk,
            disk_operations,
            network,
            cloud_latency_ms: cloud_latency_ms.filter(|ms| ms.is_finite() && *ms >= 0.0),
            connected_to_cloud,
        }
    }

    /// Per-core usage; empty when `/proc/stat` is unreadable (the core count
    /// is unknown then, as `os.cpus()` would return `[]`).
    fn sample_cpu(&mut self) -> Vec<f64> {
        let read = self.read_proc("stat", |text| {
            Some(parse_proc_stat(text)).filter(|cores| !cores.is_empty())
        });
        match self.health.cpu.check("cpu", read) {
            Some(cores) => {
                let usage = cpu_per_core_usage(self.prev_cpu.as_deref(), &cores);
                self.prev_cpu = Some(cores);
                usage
            }
            None => {
                self.prev_cpu = None;
                Vec::new()
            }
        }
    }

    fn sample_load_average(&mut self) -> [f64; 3] {
        let read = self.read_proc("loadavg", parse_loadavg);
        self.health
            .load_average
            .check("load_average", read)
            .unwrap_or_default()
    }

    fn sample_memory(&mut self) -> UsageMetrics {
        let read = self.read_proc("meminfo", parse_meminfo);
        self.health
            .memory
            .check("memory", read)
            .map(memory_usage)
            .unwrap_or_default()
    }

    fn sample_disk_usage(&mut self) -> UsageMetrics {
        let read = nix::sys::statvfs::statvfs(self.disk_path.as_path())
            .map_err(|source| SourceError::Statvfs {
                path: self.disk_path.clone(),
                source,
            })
            .map(|stat| {
                // `fsblkcnt_t` and `c_ulong` are u64 here but u32 on 32-bit
                // targets; they are never wider than 64 bits, so the cast
                // never truncates.
                #[allow(
                    clippy::unnecessary_cast,
                    reason = "u32 on 32-bit targets, u64 on 64-bit ones"
                )]
                df_usage(
                    stat.blocks() as u64,
                    stat.blocks_free() as u64,
                    stat.blocks_available() as u64,
                    stat.fragment_size() as u64,
                )
            });
        self.health
            .disk_usage
            .check("disk_usage", read)
            .unwrap_or_default()
    }

    fn sample_disk_io(&mut self, elapsed: Duration) -> DiskOperations {
        let read = self.read_proc("diskstats", |text| Some(parse_diskstats(text)));
        match self.health.disk_io.check("disk_io", read) {
            Some(disks) => {
                let rates = disk_rates(self.prev_disks.as_deref(), &disks, elapsed);
                self.prev_disks = Some(disks);
                rates
            }
            None => {
                self.prev_disks = None;
                DiskOperations::default()
            }
        }
    }

    fn sample_network(&mut self, elapsed: Duration) -> NetworkMetrics {
        let read = self.read_proc("net/dev", |text| Some(parse_net_dev(text)));
        match self.health.network.check("network", read) {
            Some(net) => {
                let metrics = net_metrics(self.prev_net.as_ref(), &net, elapsed);
                self.prev_net = Some(net);
                metrics
            }
            None => {
                self.prev_net = None;
                NetworkMetrics::default()
            }
        }
    }

    /// Reads `<proc_root>/<file>` into the reused buffer and parses it.
    /// Invalid UTF-8 (an exotic interface name) is replaced, not fatal.
    fn read_proc<T>(
        &mut self,
        file: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, SourceError> {
        let path = self.proc_root.join(file);
        self.buf.clear();
        if let Err(source) = File::open(&path).and_then(|mut f| f.read_to_end(&mut self.buf)) {
            return Err(SourceError::Read { path, source });
        }
        let text: Cow<'_, str> = String::from_utf8_lossy(&self.buf);
        parse(&text).ok_or(SourceError::Unparsable { path })
    }
}

/// Why a group of figures is zero this time.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} has no usable data", path.display())]
    Unparsable { path: PathBuf },
    #[error("statvfs({}) failed: {source}", path.display())]
    Statvfs { path: PathBuf, source: nix::Error },
}

/// Failure state of each data source, so each logs once per outage.
#[derive(Debug, Default)]
struct Health {
    cpu: SourceHealth,
    load_average: SourceHealth,
    memory: SourceHealth,
    disk_usage: SourceHealth,
    disk_io: SourceHealth,
    network: SourceHealth,
}

/// Whether one data source is currently failing. A restricted container may
/// hide a `/proc` file for the daemon's whole life; warning every heartbeat
/// would drown the log, so it is logged when it starts failing and when it
/// recovers (the vector habit for failing loops).
#[derive(Debug, Default)]
struct SourceHealth {
    failing: bool,
}

impl SourceHealth {
    /// Logs transitions and turns the result into "value or zeros".
    fn check<T>(&mut self, source: &'static str, result: Result<T, SourceError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.record_success() {
                    info!(source, "Host metric source available again.");
                }
                Some(value)
            }
            Err(error) => {
                if self.record_failure() {
                    warn!(source, %error, "Host metric source unavailable; reporting zeros.");
                }
                None
            }
        }
    }

    /// Marks a failure; true when it is the first of a streak (log it).
    fn record_failure(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// Marks a success; true when it ends a failure streak (log it).
    fn record_success(&mut self) -> bool {
        std::mem::replace(&mut self.failing, false)
    }
}

/// One `cpuN` line of `/proc/stat`, reduced to what the reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    /// The `N` of `cpuN`: cores are matched by id across samples, so a core
    /// going offline does not shift every later core's delta.
    id: u32,
    idle: u64,
    /// user + nice + system + idle + irq, in clock ticks.
    total: u64,
}

/// The per-core lines of `/proc/stat` (the aggregate `cpu` line is skipped:
/// the overall figure is the mean of the cores, as in the reference).
fn parse_proc_stat(text: &str) -> Vec<CpuTimes> {
    text.lines().filter_map(parse_cpu_line).collect()
}

fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_ascii_whitespace();
    let id = fields
        .next()?
        .strip_prefix("cpu")
        .filter(|n| is_digits(n))?;
    let id = id.parse().ok()?;
    let mut values = [0u64; PROC_STAT_FIELDS];
    let mut count = 0;
    for (slot, field) in values.iter_mut().zip(fields) {
        *slot = field.parse().ok()?;
        count += 1;
    }
    if count < PROC_STAT_MIN_FIELDS {
        return None;
    }
    let idle = values[PROC_STAT_IDLE];
    let total = values
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != PROC_STAT_IOWAIT)
        .fold(0u64, |sum, (_, v)| sum.saturating_add(*v));
    Some(CpuTimes { id, idle, total })
}

/// Integer percent per core of `current`, 0..=100, from the deltas since
/// `previous` (`None` on the first sample: all 0). A core without a previous
/// value, or whose counters went backwards, reports 0.
fn cpu_per_core_usage(previous: Option<&[CpuTimes]>, current: &[CpuTimes]) -> Vec<f64> {
    current
        .iter()
        .map(|cur| {
            previous
                .and_then(|prev| prev.iter().find(|p| p.id == cur.id))
                .map_or(0.0, |prev| core_usage(prev, cur))
        })
        .collect()
}

fn core_usage(prev: &CpuTimes, cur: &CpuTimes) -> f64 {
    let total = cur.total.saturating_sub(prev.total);
    if total == 0 {
        return 0.0;
    }
    let idle = cur.idle.saturating_sub(prev.idle);
    // The reference's formula, kept as is so ties round the same way.
    let usage = 100.0 - (100.0 * idle as f64) / total as f64;
    round_to(usage, 0).clamp(0.0, 100.0)
}

/// The rounded mean of the per-core figures; 0 without cores.
fn overall_cpu_usage(per_core: &[f64]) -> f64 {
    if per_core.is_empty() {
        return 0.0;
    }
    let mean = per_core.iter().sum::<f64>() / per_core.len() as f64;
    round_to(mean, 0).clamp(0.0, 100.0)
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`
/// (`0.52 0.58 0.59 1/467 12345`).
fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_ascii_whitespace();
    let mut loads = [0.0; 3];
    for slot in &mut loads {
        let value: f64 = fields.next()?.parse().ok()?;
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        *slot = value;
    }
    Some(loads)
}

/// What the memory figures are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemoryCounters {
    total_bytes: u64,
    /// `MemAvailable`: memory that can be handed to applications without
    /// swapping, page cache included. Node's `os.freemem()` (libuv) returns
    /// exactly this, and `MemFree` would call a host with a warm page cache
    /// "full". Kernels before 3.14 lack it; libuv then falls back to
    /// `sysinfo(2)`'s free RAM, which is `MemFree`, and so do we.
    available_bytes: u64,
}

/// `MemTotal` and `MemAvailable` (or `MemFree`) from `/proc/meminfo`;
/// `None` without `MemTotal` or without either free figure.
fn parse_meminfo(text: &str) -> Option<MemoryCounters> {
    let (mut total, mut available, mut free) = (None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(value) = parts.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(MEMINFO_UNIT_BYTES),
            _ => continue,
        };
        match key {
            "MemTotal" => total = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "MemFree" => free = Some(bytes),
            _ => {}
        }
    }
    let total_bytes = total?;
    let available_bytes = available.or(free)?.min(total_bytes);
    Some(MemoryCounters {
        total_bytes,
        available_bytes,
    })
}

/// Memory as the reference reports it: free = available, used = total − free.
fn memory_usage(counters: MemoryCounters) -> UsageMetrics {
    let used_bytes = counters
        .total_bytes
        .saturating_sub(counters.available_bytes);
    UsageMetrics {
        total_bytes: counters.total_bytes,
        free_bytes: counters.available_bytes,
        used_bytes,
        usage_percent: percent(used_bytes, counters.total_bytes),
    }
}

/// Disk usage exactly as `df -B1` prints it (the reference parses that
/// output): Size = blocks × frsize, Used = (blocks − bfree) × frsize,
/// Avail = bavail × frsize (what an unprivileged user can still write, i.e.
/// without the root-reserved blocks), and Use% = used / (used + avail)
/// rounded *up*, as GNU df does. So total ≠ used + free on file systems with
/// reserved blocks — same as the reference.
fn df_usage(
    blocks: u64,
    blocks_free: u64,
    blocks_available: u64,
    fragment_size: u64,
) -> UsageMetrics {
    let used_blocks = blocks.saturating_sub(blocks_free);
    let used = u128::from(used_blocks);
    let available = u128::from(blocks_available);
    let usage_percent = match used + available {
        0 => 0.0,
        // Both factors fit in 64 bits, so u128 cannot overflow; the result
        // is at most 100.
        nonroot_total => (used * 100).div_ceil(nonroot_total).min(100) as f64,
    };
    UsageMetrics {
        total_bytes: blocks.saturating_mul(fragment_size),
        free_bytes: blocks_available.saturating_mul(fragment_size),
        used_bytes: used_blocks.saturating_mul(fragment_size),
        usage_percent,
    }
}

/// Cumulative counters of one whole disk from `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DiskCounters {
    name: String,
    reads: u64,
    read_sectors: u64,
    writes: u64,
    write_sectors: u64,
}

/// Whether `name` is a whole physical disk the reference counts: `sd*`,
/// `vd*`, `hd*`, `xvd*` followed by drive letters only, or `nvme<N>n<M>`.
/// Partitions (`sda1`, `nvme0n1p1`), NVMe multipath paths (`nvme0c0n1`) and
/// virtual devices (`loop0`, `dm-0`, `md0`, `sr0`, `zram0`) are left out: a
/// partition's or device-mapper volume's I/O is already counted on its disk.
///
/// The reference's pattern is `sd[a-z]`; we also accept `sdaa`… so a host
/// with more than 26 disks is not undercounted.
fn is_physical_disk(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix(NVME_PREFIX) {
        return rest
            .split_once('n')
            .is_some_and(|(controller, namespace)| is_digits(controller) && is_digits(namespace));
    }
    LETTERED_DISK_PREFIXES.iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|letters| {
            !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase())
        })
    })
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The whole physical disks of `/proc/diskstats` (see [`is_physical_disk`]).
fn parse_diskstats(text: &str) -> Vec<DiskCounters> {
    text.lines().filter_map(parse_diskstats_line).collect()
}

fn parse_diskstats_line(line: &str) -> Option<DiskCounters> {
    let mut fields = [""; DISKSTATS_MIN_FIELDS];
    let mut count = 0;
    for (slot, field) in fields.iter_mut().zip(line.split_ascii_whitespace()) {
        *slot = field;
        count += 1;
    }
    if count < DISKSTATS_MIN_FIELDS || !is_physical_disk(fields[DISKSTATS_NAME]) {
        return None;
    }
    Some(DiskCounters {
        reads: fields[DISKSTATS_READS].parse().ok()?,
        read_sectors: fields[DISKSTATS_READ_SECTORS].parse().ok()?,
        writes: fields[DISKSTATS_WRITES].parse().ok()?,
        write_sectors: fields[DISKSTATS_WRITE_SECTORS].parse().ok()?,
        name: fields[DISKSTATS_NAME].to_owned(),
    })
}

/// Disk throughput between two snapshots. Devices are matched by name and
/// each device's delta is clamped at 0, so a counter reset or wrap, a
/// removed disk or a newly attached one (whose whole history is not a
/// delta) never yields a negative or absurd rate. All 0 on the first sample
/// (`previous` is `None`) or when no time has passed.
fn disk_rates(
    previous: Option<&[DiskCounters]>,
    current: &[DiskCounters],
    elapsed: Duration,
) -> DiskOperations {
    let (Some(previous), Some(seconds)) = (previous, positive_seconds(elapsed)) else {
        return DiskOperations::default();
    };
    let (mut reads, mut read_sectors, mut writes, mut write_sectors) = (0u64, 0u64, 0u64, 0u64);
    for cur in current {
        let Some(prev) = previous.iter().find(|p| p.name == cur.name) else {
            continue;
        };
        reads = reads.saturating_add(cur.reads.saturating_sub(prev.reads));
        read_sectors =
            read_sectors.saturating_add(cur.read_sectors.saturating_sub(prev.read_sectors));
        writes = writes.saturating_add(cur.writes.saturating_sub(prev.writes));
        write_sectors =
            write_sectors.saturating_add(cur.write_sectors.saturating_sub(prev.write_sectors));
    }
    let megabytes_per_second = |sectors: u64| {
        round_to(
            sectors as f64 * SECTOR_BYTES / BYTES_PER_MEGABYTE / seconds,
            MEGABYTES_PER_SECOND_DECIMALS,
        )
    };
    let read_iops = round_to(reads as f64 / seconds, IOPS_DECIMALS);
    let write_iops = round_to(writes as f64 / seconds, IOPS_DECIMALS);
    DiskOperations {
        read_megabytes_per_second: megabytes_per_second(read_sectors),
        write_megabytes_per_second: megabytes_per_second(write_sectors),
        read_iops,
        write_iops,
        total_iops: read_iops + write_iops,
    }
}

/// Cumulative byte counters of one interface from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InterfaceCounters {
    name: String,
    received_bytes: u64,
    sent_bytes: u64,
}

/// The counted interfaces of `/proc/net/dev`: all but loopback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct NetCounters {
    interfaces: Vec<InterfaceCounters>,
}

/// Parses `/proc/net/dev`. The two header lines have no `:` and are skipped
/// like any other malformed line. The name is split at the first `:` rather
/// than at whitespace because old kernels glued large counters to it
/// (`eth0:123456789`); Linux forbids `:` in interface names.
fn parse_net_dev(text: &str) -> NetCounters {
    NetCounters {
        interfaces: text.lines().filter_map(parse_net_dev_line).collect(),
    }
}

fn parse_net_dev_line(line: &str) -> Option<InterfaceCounters> {
    let (name, counters) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name == LOOPBACK_INTERFACE {
        return None;
    }
    let mut fields = counters.split_ascii_whitespace();
    let received_bytes = fields.next()?.parse().ok()?;
    let sent_bytes = fields.nth(NET_DEV_TRANSMIT_BYTES - 1)?.parse().ok()?;
    Some(InterfaceCounters {
        name: name.to_owned(),
        received_bytes,
        sent_bytes,
    })
}

/// Network figures: rates between two snapshots plus the current cumulative
/// totals. Interfaces are matched by name and each delta is clamped at 0, so
/// an interface going away, being recreated, or a counter wrapping never
/// yields a negative or absurd rate; a new interface (a container's veth)
/// counts from its second sample. Rates are 0 on the first sample or when no
/// time has passed; the cumulative totals are always reported.
fn net_metrics(
    previous: Option<&NetCounters>,
    current: &NetCounters,
    elapsed: Duration,
) -> NetworkMetrics {
    let (received_bytes, sent_bytes) =
        current.interfaces.iter().fold((0u64, 0u64), |(rx, tx), i| {
            (
                rx.saturating_add(i.received_bytes),
                tx.saturating_add(i.sent_bytes),
            )
        });
    let totals = NetworkMetrics {
        received_bytes,
        sent_bytes,
        ..NetworkMetrics::default()
    };
    let (Some(previous), Some(seconds)) = (previous, positive_seconds(elapsed)) else {
        return totals;
    };
    let (mut received, mut sent) = (0u64, 0u64);
    for cur in &current.interfaces {
        let Some(prev) = previous.interfaces.iter().find(|p| p.name == cur.name) else {
            continue;
        };
        received = received.saturating_add(cur.received_bytes.saturating_sub(prev.received_bytes));
        sent = sent.saturating_add(cur.sent_bytes.saturating_sub(prev.sent_bytes));
    }
    let incoming = received as f64 / BYTES_PER_KILOBYTE / seconds;
    let outgoing = sent as f64 / BYTES_PER_KILOBYTE / seconds;
    NetworkMetrics {
        incoming_kilobytes_per_second: round_to(incoming, KILOBYTES_PER_SECOND_DECIMALS),
        outgoing_kilobytes_per_second: round_to(outgoing, KILOBYTES_PER_SECOND_DECIMALS),
        // The reference rounds the unrounded sum, not the sum of the rounded.
        total_kilobytes_per_second: round_to(incoming + outgoing, KILOBYTES_PER_SECOND_DECIMALS),
        ..totals
    }
}

/// `elapsed` in seconds when it can be divided by: positive and finite.
fn positive_seconds(elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    (seconds > 0.0 && seconds.is_finite()).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    const SECOND: Duration = Duration::from_secs(1);

    // ---- /proc/stat -------------------------------------------------------

    /// A 4-core host (Linux 6.x: 10 fields per line), with the aggregate line
    /// and the usual non-CPU lines.
    const PROC_STAT: &str = "\
cpu  78590 120 11691 174144 597 30 183 2934 0 0
cpu0 37985 100 5624 88768 171 10 20 1496 0 0
cpu1 40605 20 6066 85375 425 20 163 1438 0 0
cpu2 1 2 3 4 5 6 7 8 9 10
cpu3 0 0 0 0 0 0 0 0 0 0
intr 26548125 9 0 0 0 0 0 0 0 0
ctxt 45481216
btime 1700000000
processes 123456
procs_running 2
procs_blocked 0
softirq 1234 5 6 7 8 9 10 11 12 13 14
";

    #[test]
    fn proc_stat_yields_one_entry_per_core_without_the_aggregate_line() {
        let cores = parse_proc_stat(PROC_STAT);
        assert_eq!(
            cores,
            vec![
                // total = user + nice + system + idle + irq (iowait excluded)
                CpuTimes {
                    id: 0,
                    idle: 88768,
                    total: 37985 + 100 + 5624 + 88768 + 10
                },
                CpuTimes {
                    id: 1,
                    idle: 85375,
                    total: 40605 + 20 + 6066 + 85375 + 20
                },
                CpuTimes {
                    id: 2,
                    idle: 4,
                    total: 1 + 2 + 3 + 4 + 6
                },
                CpuTimes {
                    id: 3,
                    idle: 0,
                    total: 0
                },
            ]
        );
    }

    #[test]
    fn proc_stat_skips_malformed_lines() {
        let text = "\
cpu0 1 2 3 4 5 6 7 8 9 10
cpu1 1 2 x 4 5 6 7 8 9 10
cpu2 1 2 3
cpu
cpux 1 2 3 4 5 6
cpu+3 1 2 3 4 5 6
cpu4 99999999999999999999999 0 0 0 0 0
cpu5 -1 0 0 0 0 0

garbage line
cpu6 10 0 0 10 0 0
";
        let ids: Vec<u32> = parse_proc_stat(text).iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![0, 6]);
    }

    #[test]
    fn proc_stat_accepts_four_field_lines_of_old_kernels_with_irq_zero() {
        assert_eq!(
            parse_proc_stat("cpu0 10 20 30 40\n"),
            vec![CpuTimes {
                id: 0,
                idle: 40,
                total: 100
            }]
        );
    }

    #[test]
    fn proc_stat_sums_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let cores = parse_proc_stat(&format!("cpu0 {max} {max} {max} {max} 0 {max}\n"));
        assert_eq!(
            cores,
            vec![CpuTimes {
                id: 0,
                idle: max,
                total: max
            }]
        );
    }

    #[test]
    fn proc_stat_of_empty_text_has_no_cores() {
        assert!(parse_proc_stat("").is_empty());
    }

    fn cpu(id: u32, idle: u64, total: u64) -> CpuTimes {
        CpuTimes { id, idle, total }
    }

    #[test]
    fn first_cpu_sample_is_all_zeros() {
        let cur = [cpu(0, 50, 100), cpu(1, 0, 100)];
        assert_eq!(cpu_per_core_usage(None, &cur), vec![0.0, 0.0]);
    }

    #[test]
    fn cpu_usage_is_the_busy_share_of_the_tick_delta_rounded() {
        let prev = [
            cpu(0, 100, 200),
            cpu(1, 100, 200),
            cpu(2, 100, 200),
            cpu(3, 100, 200),
        ];
        let cur = [
            cpu(0, 150, 300), // 50 idle of 100 → 50 %
            cpu(1, 100, 300), // no idle → 100 %
            cpu(2, 300, 400), // all idle → 0 %
            cpu(3, 101, 203), // 1 idle of 3 → 66.67 → 67 %
        ];
        assert_eq!(
            cpu_per_core_usage(Some(&prev), &cur),
            vec![50.0, 100.0, 0.0, 67.0]
        );
    }

    #[test]
    fn cpu_usage_ignores_iowait_softirq_and_steal_like_the_reference() {
        let prev = parse_proc_stat("cpu0 100 0 100 100 100 0 100 100 0 0\n");
        // Only iowait, softirq and steal moved: no tick the reference counts.
        let cur = parse_proc_stat("cpu0 100 0 100 100 900 0 900 900 0 0\n");
        assert_eq!(cpu_per_core_usage(Some(&prev), &cur), vec![0.0]);
    }

    #[test]
    fn cpu_usage_is_zero_when_counters_go_backwards() {
        let prev = [cpu(0, 500, 1000)];
        assert_eq!(
            cpu_per_core_usage(Some(&prev), &[cpu(0, 10, 20)]),
            vec![0.0]
        );
        // Idle going backwards while the total advances is clamped, not > 100.
        assert_eq!(
            cpu_per_core_usage(Some(&prev), &[cpu(0, 400, 1100)]),
            vec![100.0]
        );
    }

    #[test]
    fn cpu_usage_matches_cores_by_id_and_reports_new_cores_as_zero() {
        let prev = [cpu(0, 0, 0), cpu(2, 0, 0)];
        // cpu1 came online; cpu2 keeps its own baseline.
        let cur = [cpu(0, 50, 100), cpu(1, 0, 100), cpu(2, 25, 100)];
        assert_eq!(cpu_per_core_usage(Some(&prev), &cur), vec![50.0, 0.0, 75.0]);
    }

    #[test]
    fn overall_cpu_is_the_rounded_mean_of_the_cores() {
        assert_eq!(overall_cpu_usage(&[10.0, 15.0]), 13.0); // 12.5 rounds up, like Math.round
        assert_eq!(overall_cpu_usage(&[0.0, 0.0, 1.0]), 0.0);
        assert_eq!(overall_cpu_usage(&[100.0, 100.0]), 100.0);
        assert_eq!(overall_cpu_usage(&[]), 0.0);
    }

    // ---- /proc/loadavg ----------------------------------------------------

    #[test]
    fn loadavg_yields_the_three_averages() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("12.00 3.50 0.00"), Some([12.0, 3.5, 0.0]));
    }

    #[test]
    fn malformed_loadavg_is_rejected() {
        for text in [
            "",
            "\n",
            "0.52 0.58",
            "a b c",
            "NaN 1 2",
            "inf 1 2",
            "-1 0 0",
        ] {
            assert_eq!(parse_loadavg(text), None, "{text:?}");
        }
    }

    // ---- /proc/meminfo ----------------------------------------------------

    const MEMINFO: &str = "\
MemTotal:        8048448 kB
MemFree:          402648 kB
MemAvailable:    5364388 kB
Buffers:          180224 kB
Cached:          4671376 kB
SwapCached:            0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn meminfo_uses_mem_available_in_bytes() {
        assert_eq!(
            parse_meminfo(MEMINFO),
            Some(MemoryCounters {
                total_bytes: 8_048_448 * 1024,
                available_bytes: 5_364_388 * 1024,
            })
        );
    }

    #[test]
    fn meminfo_without_mem_available_falls_back_to_mem_free() {
        let text = "MemTotal: 1000 kB\nMemFree: 250 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemoryCounters {
                total_bytes: 1_024_000,
                available_bytes: 256_000
            })
        );
    }

    #[test]
    fn meminfo_without_totals_is_rejected_and_bad_lines_are_skipped() {
        assert_eq!(parse_meminfo(""), None);
        assert_eq!(
            parse_meminfo("MemFree: 250 kB\nMemAvailable: 300 kB\n"),
            None
        );
        assert_eq!(parse_meminfo("MemTotal: 1000 kB\n"), None);
        assert_eq!(
            parse_meminfo(
                "MemTotal: x kB\nMemTotal 5 kB\nMemTotal: 4 kB\nMemAvailable: 1 MB\nMemAvailable: 1 kB\n"
            ),
            Some(MemoryCounters {
                total_bytes: 4096,
                available_bytes: 1024
            })
        );
    }

    #[test]
    fn meminfo_available_is_capped_at_total() {
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n"),
            Some(MemoryCounters {
                total_bytes: 10_240,
                available_bytes: 10_240
            })
        );
    }

    #[test]
    fn memory_used_is_total_minus_available_with_rounded_percent() {
        let usage = memory_usage(MemoryCounters {
            total_bytes: 3000,
            available_bytes: 1000,
        });
        assert_eq!(
            usage,
            UsageMetrics {
                total_bytes: 3000,
                free_bytes: 1000,
                used_bytes: 2000,
                usage_percent: 67.0
            }
        );
        let empty = memory_usage(MemoryCounters {
            total_bytes: 0,
            available_bytes: 0,
        });
        assert_eq!(empty, UsageMetrics::default());
    }

    // ---- statvfs / df -----------------------------------------------------

    #[test]
    fn disk_usage_matches_df_columns() {
        // Size 4096000, Used (1000-300)*4096, Avail 250*4096,
        // Use% = ceil(700*100 / (700+250)) = ceil(73.68) = 74.
        assert_eq!(
            df_usage(1000, 300, 250, 4096),
            UsageMetrics {
                total_bytes: 4_096_000,
                free_bytes: 1_024_000,
                used_bytes: 2_867_200,
                usage_percent: 74.0,
            }
        );
    }

    #[test]
    fn disk_percent_rounds_up_like_df_but_not_when_exact() {
        assert_eq!(df_usage(100, 50, 50, 1).usage_percent, 50.0);
        assert_eq!(df_usage(1000, 999, 999, 1).usage_percent, 1.0); // 0.1 % → 1 %
        assert_eq!(df_usage(1000, 0, 0, 1).usage_percent, 100.0);
    }

    #[test]
    fn empty_or_absurd_statvfs_values_do_not_overflow() {
        assert_eq!(df_usage(0, 0, 0, 4096), UsageMetrics::default());
        let huge = df_usage(u64::MAX, 0, u64::MAX, u64::MAX);
        assert_eq!(huge.total_bytes, u64::MAX);
        assert_eq!(huge.usage_percent, 50.0);
        // More free blocks than blocks: used is 0, not a wrapped number.
        assert_eq!(df_usage(10, 20, 5, 1).used_bytes, 0);
    }

    // ---- /proc/diskstats --------------------------------------------------

    #[test]
    fn whole_physical_disks_are_recognised_without_regex() {
        for name in [
            "sda", "sdz", "sdaa", "vda", "vdb", "hda", "xvda", "xvdf", "nvme0n1", "nvme12n3",
        ] {
            assert!(is_physical_disk(name), "{name}");
        }
        for name in [
            "sda1",
            "sd",
            "sdA",
            "vda1",
            "hda2",
            "xvda1",
            "xvd",
            "nvme0n1p1",
            "nvme0c0n1",
            "nvme0",
            "nvmen1",
            "nvme0n",
            "nvme0n1n1",
            "loop0",
            "dm-0",
            "sr0",
            "md0",
            "zram0",
            "mmcblk0",
            "",
        ] {
            assert!(!is_physical_disk(name), "{name}");
        }
    }

    /// A VM with virtio and NVMe disks (kernel 5.5+: 20 fields), loop
    /// devices, device mapper and a CD-ROM, plus one 14-field line.
    const DISKSTATS: &str = "\
   7       0 loop0 57 0 2140 11 0 0 0 0 0 40 11 0 0 0 0 0 0
 252       0 vda 42032 8195 6002290 33098 7945 48645 7547400 32182 0 13216 66829 8234 27 1101392 1533 232 14
 252       1 vda1 41800 8195 5990000 33000 7900 48645 7540000 32100 0 13100 66700 8234 27 1101392 1533 0 0
 259       0 nvme0n1 100 1 2000 3 400 5 6000 7 0 9 10 0 0 0 0 0 0
 259       1 nvme0n1p1 90 1 1800 3 390 5 5900 7 0 9 10 0 0 0 0 0 0
 253       0 dm-0 500 0 9000 10 600 0 9500 10 0 20 20 0 0 0 0 0 0
  11       0 sr0 3 0 24 1 0 0 0 0 0 1 1 0 0 0 0
   8       0 sda 10 0 80 1 20 0 160 2
   8      16 sdb 11 0 88 1 22 0 176 2 0 3 3 0 0 0
";

    fn disk(
        name: &str,
        reads: u64,
        read_sectors: u64,
        writes: u64,
        write_sectors: u64,
    ) -> DiskCounters {
        DiskCounters {
            name: name.into(),
            reads,
            read_sectors,
            writes,
            write_sectors,
        }
    }

    #[test]
    fn diskstats_keeps_only_whole_physical_disks() {
        assert_eq!(
            parse_diskstats(DISKSTATS),
            vec![
                disk("vda", 42032, 6002290, 7945, 7547400),
                disk("nvme0n1", 100, 2000, 400, 6000),
                // sda has only 11 fields (name + 8 counters): skipped, as the
                // reference does.
                disk("sdb", 11, 88, 22, 176),
            ]
        );
    }

    #[test]
    fn malformed_diskstats_lines_are_skipped() {
        let text = "\
\n\
garbage\n\
 8 0 sda x 0 80 1 20 0 160 2 0 3 3 0 0 0\n\
 8 0 sdb 1 0 80 1 -20 0 160 2 0 3 3 0 0 0\n\
 8 0 sdc 1 0 99999999999999999999999 1 20 0 160 2 0 3 3 0 0 0\n\
 8 0 sdd 1 0 2 0 3 0 4 0 0 0 0 0 0 0\n";
        assert_eq!(parse_diskstats(text), vec![disk("sdd", 1, 2, 3, 4)]);
    }

    #[test]
    fn first_disk_sample_or_zero_elapsed_gives_zero_rates() {
        let cur = [disk("vda", 100, 100, 100, 100)];
        assert_eq!(disk_rates(None, &cur, SECOND), DiskOperations::default());
        let prev = [disk("vda", 0, 0, 0, 0)];
        assert_eq!(
            disk_rates(Some(&prev), &cur, Duration::ZERO),
            DiskOperations::default()
        );
    }

    #[test]
    fn disk_rates_are_sector_bytes_in_mib_and_ops_per_second() {
        let prev = [
            disk("vda", 1000, 8000, 500, 4000),
            disk("nvme0n1", 0, 0, 0, 0),
        ];
        let cur = [
            // 10 MiB read (20480 sectors) in 100 ops; 1 MiB written in 50 ops.
            disk("vda", 1100, 8000 + 20480, 550, 4000 + 2048),
            disk("nvme0n1", 0, 0, 1, 0),
        ];
        assert_eq!(
            disk_rates(Some(&prev), &cur, Duration::from_secs(3)),
            DiskOperations {
                read_megabytes_per_second: 3.33,  // 10 / 3
                write_megabytes_per_second: 0.33, // 1 / 3
                read_iops: 33.0,                  // 100 / 3
                write_iops: 17.0,                 // 51 / 3
                total_iops: 50.0,
            }
        );
    }

    #[test]
    fn disk_counter_resets_and_device_changes_never_give_negative_or_absurd_rates() {
        let prev = [disk("vda", 1000, 1000, 1000, 1000), disk("vdb", 5, 5, 5, 5)];
        let cur = [
            disk("vda", 10, 10, 10, 10),                         // reset/wrapped
            disk("vdc", u64::MAX, u64::MAX, u64::MAX, u64::MAX), // newly attached
        ];
        assert_eq!(
            disk_rates(Some(&prev), &cur, SECOND),
            DiskOperations::default()
        );
    }

    #[test]
    fn huge_disk_deltas_over_a_tiny_interval_stay_finite() {
        let prev = [disk("vda", 0, 0, 0, 0), disk("vdb", 0, 0, 0, 0)];
        let cur = [
            disk("vda", u64::MAX, u64::MAX, u64::MAX, u64::MAX),
            disk("vdb", u64::MAX, u64::MAX, u64::MAX, u64::MAX),
        ];
        let ops = disk_rates(Some(&prev), &cur, Duration::from_nanos(1));
        for v in [
            ops.read_megabytes_per_second,
            ops.write_megabytes_per_second,
            ops.read_iops,
            ops.write_iops,
            ops.total_iops,
        ] {
            assert!(v.is_finite() && v >= 0.0, "{v}");
        }
    }

    // ---- /proc/net/dev ----------------------------------------------------

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  eth0: 261619172   13103    0    0    0     0          0         0   865935    8226    0    0    0     0       0          0
docker0:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
veth1a2b3c:     500       5    0    0    0     0          0         0      700       7    0    0    0     0       0          0
";

    fn iface(name: &str, received_bytes: u64, sent_bytes: u64) -> InterfaceCounters {
        InterfaceCounters {
            name: name.into(),
            received_bytes,
            sent_bytes,
        }
    }

    fn net(interfaces: &[InterfaceCounters]) -> NetCounters {
        NetCounters {
            interfaces: interfaces.to_vec(),
        }
    }

    #[test]
    fn net_dev_yields_every_interface_but_loopback() {
        assert_eq!(
            parse_net_dev(NET_DEV),
            net(&[
                iface("eth0", 261_619_172, 865_935),
                iface("docker0", 1000, 2000),
                iface("veth1a2b3c", 500, 700),
            ])
        );
    }

    #[test]
    fn net_dev_accepts_counters_glued_to_the_name() {
        let text = "eth0:4294967296 1 0 0 0 0 0 0 77 1 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(text),
            net(&[iface("eth0", 4_294_967_296, 77)])
        );
    }

    #[test]
    fn malformed_net_dev_lines_are_skipped() {
        let text = "\
eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
bad name: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
eth1: x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
eth2: 1 2 3 4 5 6 7 8
eth3: 1 2 3 4 5 6 7 8 -9 10 11 12 13 14 15 16

eth4: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
";
        assert_eq!(parse_net_dev(text), net(&[iface("eth4", 1, 9)]));
    }

    #[test]
    fn first_net_sample_reports_cumulative_totals_and_zero_rates() {
        let cur = parse_net_dev(NET_DEV);
        assert_eq!(
            net_metrics(None, &cur, SECOND),
            NetworkMetrics {
                incoming_kilobytes_per_second: 0.0,
                outgoing_kilobytes_per_second: 0.0,
                total_kilobytes_per_second: 0.0,
                received_bytes: 261_619_172 + 1000 + 500,
                sent_bytes: 865_935 + 2000 + 700,
            }
        );
    }

    #[test]
    fn net_rates_are_kib_per_second_to_one_decimal() {
        let prev = net(&[iface("eth0", 0, 0), iface("docker0", 0, 0)]);
        // 10240 B in, 1536 B out over 2 s: 5.0 and 0.75 KiB/s.
        let cur = net(&[iface("eth0", 10_000, 1_000), iface("docker0", 240, 536)]);
        assert_eq!(
            net_metrics(Some(&prev), &cur, Duration::from_secs(2)),
            NetworkMetrics {
                incoming_kilobytes_per_second: 5.0,
                outgoing_kilobytes_per_second: 0.8,
                total_kilobytes_per_second: 5.8,
                received_bytes: 10_240,
                sent_bytes: 1_536,
            }
        );
    }

    #[test]
    fn net_total_rounds_the_unrounded_sum_like_the_reference() {
        let prev = net(&[iface("eth0", 0, 0)]);
        // 0.04 + 0.04 KiB/s: each rounds to 0.0, the sum 0.08 to 0.1.
        let cur = net(&[iface("eth0", 41, 41)]);
        let m = net_metrics(Some(&prev), &cur, SECOND);
        assert_eq!(m.incoming_kilobytes_per_second, 0.0);
        assert_eq!(m.outgoing_kilobytes_per_second, 0.0);
        assert_eq!(m.total_kilobytes_per_second, 0.1);
    }

    #[test]
    fn net_counter_drops_and_interface_changes_never_give_negative_or_absurd_rates() {
        let prev = net(&[
            iface("eth0", 1_000_000, 1_000_000),
            iface("veth0", 500, 500),
        ]);
        let cur = net(&[
            iface("eth0", 10, 10),              // counters went down (driver reset / wrap)
            iface("veth9", u64::MAX, u64::MAX), // new interface: no baseline yet
        ]);
        let m = net_metrics(Some(&prev), &cur, SECOND);
        assert_eq!(m.incoming_kilobytes_per_second, 0.0);
        assert_eq!(m.outgoing_kilobytes_per_second, 0.0);
        assert_eq!(m.total_kilobytes_per_second, 0.0);
        assert_eq!(m.received_bytes, u64::MAX); // saturated, not wrapped
    }

    #[test]
    fn net_rates_with_zero_elapsed_are_zero() {
        let prev = net(&[iface("eth0", 0, 0)]);
        let cur = net(&[iface("eth0", 1024, 1024)]);
        let m = net_metrics(Some(&prev), &cur, Duration::ZERO);
        assert_eq!(m.total_kilobytes_per_second, 0.0);
        assert_eq!(m.received_bytes, 1024);
    }

    #[test]
    fn positive_seconds_rejects_zero() {
        assert_eq!(positive_seconds(Duration::ZERO), None);
        assert_eq!(positive_seconds(Duration::from_millis(1500)), Some(1.5));
    }

    // ---- timestamp --------------------------------------------------------

    #[test]
    fn a_failing_source_is_logged_once_per_outage() {
        let mut health = SourceHealth::default();
        assert!(!health.record_success());
        assert!(health.record_failure());
        assert!(!health.record_failure());
        assert!(!health.record_failure());
        assert!(health.record_success());
        assert!(!health.record_success());
        assert!(health.record_failure());
    }

    // ---- the sampler ------------------------------------------------------

    #[test]
    fn host_sampler_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<HostSampler>();
    }

    fn assert_all_finite(m: &Metrics) {
        let mut values = vec![
            m.cpu_usage_percent,
            m.memory.usage_percent,
            m.disk.usage_percent,
            m.disk_operations.read_megabytes_per_second,
            m.disk_operations.write_megabytes_per_second,
            m.disk_operations.read_iops,
            m.disk_operations.write_iops,
            m.disk_operations.total_iops,
            m.network.incoming_kilobytes_per_second,
            m.network.outgoing_kilobytes_per_second,
            m.network.total_kilobytes_per_second,
        ];
        values.extend(&m.cpu_load_average);
        values.extend(&m.cpu_per_core_usage_percent);
        values.extend(m.cloud_latency_ms);
        for v in values {
            assert!(v.is_finite() && v >= 0.0, "{v} in {m:?}");
        }
        for p in [
            m.cpu_usage_percent,
            m.memory.usage_percent,
            m.disk.usage_percent,
        ]
        .into_iter()
        .chain(m.cpu_per_core_usage_percent.iter().copied())
        {
            assert!((0.0..=100.0).contains(&p), "{p} in {m:?}");
        }
        serde_json::to_string(m).expect("every field serialises");
    }

    #[test]
    fn sampling_this_machine_twice_gives_plausible_values() {
        let proc_stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let cores = proc_stat
            .lines()
            .filter(|l| {
                l.strip_prefix("cpu")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        let mut sampler = HostSampler::new(PathBuf::from("/"));

        let first = sampler.sample(None, false);
        assert_all_finite(&first);
        assert_eq!(first.cpu_per_core_usage_percent, vec![0.0; cores]);
        assert_eq!(first.cpu_usage_percent, 0.0);
        assert_eq!(first.disk_operations, DiskOperations::default());
        assert_eq!(first.network.incoming_kilobytes_per_second, 0.0);
        assert_eq!(first.network.outgoing_kilobytes_per_second, 0.0);
        assert_eq!(first.network.total_kilobytes_per_second, 0.0);
        assert_eq!(first.cloud_latency_ms, None);
        assert!(!first.connected_to_cloud);

        let second = sampler.sample(Some(42.5), true);
        for m in [&first, &second] {
            assert_all_finite(m);
            assert_eq!(m.cpu_per_core_usage_percent.len(), cores);
            assert_eq!(m.cpu_load_average.len(), 3);
            assert!(m.memory.total_bytes > 0);
            assert!(m.memory.free_bytes <= m.memory.total_bytes);
            assert_eq!(
                m.memory.used_bytes,
                m.memory.total_bytes - m.memory.free_bytes
            );
            assert!(m.disk.total_bytes > 0);
            assert!(!m.hostname.is_empty());
            assert!(m.uptime_seconds > 0);
            OffsetDateTime::parse(&m.timestamp, &Rfc3339).expect("RFC 3339 timestamp");
            assert!(
                m.timestamp.ends_with('Z') && m.timestamp.len() == "2026-11-23T10:00:00.123Z".len()
            );
        }
        assert_eq!(second.cloud_latency_ms, Some(42.5));
        assert!(second.connected_to_cloud);
        assert!(second.network.received_bytes >= first.network.received_bytes);
    }

    #[test]
    fn non_finite_or_negative_latency_is_reported_as_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sampler = HostSampler::with_proc_root(dir.path().into(), dir.path().into());
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(sampler.sample(Some(bad), true).cloud_latency_ms, None);
        }
        assert_eq!(sampler.sample(Some(0.0), true).cloud_latency_ms, Some(0.0));
    }

    #[test]
    fn missing_proc_files_and_mount_give_zeros_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sampler = HostSampler::with_proc_root(
            dir.path().join("no-such-mount"),
            dir.path().join("no-such-proc"),
        );
        for _ in 0..2 {
            let m = sampler.sample(Some(3.0), true);
            assert_all_finite(&m);
            assert!(m.cpu_per_core_usage_percent.is_empty());
            assert_eq!(m.cpu_usage_percent, 0.0);
            assert_eq!(m.cpu_load_average, vec![0.0; 3]);
            assert_eq!(m.memory, UsageMetrics::default());
            assert_eq!(m.disk, UsageMetrics::default());
            assert_eq!(m.disk_operations, DiskOperations::default());
            assert_eq!(m.network, NetworkMetrics::default());
            assert!(!m.hostname.is_empty());
            assert_eq!(m.cloud_latency_ms, Some(3.0));
        }
        assert!(sampler.health.cpu.failing && sampler.health.network.failing);
    }

    #[test]
    fn sampler_reads_a_proc_tree_and_recovers_after_a_file_disappears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc = dir.path();
        std::fs::create_dir(proc.join("net")).expect("mkdir net");
        let write =
            |file: &str, text: &str| std::fs::write(proc.join(file), text).expect("write fixture");
        write(
            "stat",
            "cpu  0 0 0 0\ncpu0 100 0 0 100 0 0\ncpu1 100 0 0 100 0 0\n",
        );
        write("loadavg", "1.50 0.75 0.25 2/300 999\n");
        write("meminfo", "MemTotal: 1000 kB\nMemAvailable: 250 kB\n");
        write("diskstats", DISKSTATS);
        write("net/dev", NET_DEV);
        let mut sampler = HostSampler::with_proc_root(dir.path().into(), proc.into());

        let first = sampler.sample(None, true);
        assert_eq!(first.cpu_per_core_usage_percent, vec![0.0, 0.0]);
        assert_eq!(first.cpu_load_average, vec![1.5, 0.75, 0.25]);
        assert_eq!(
            first.memory,
            UsageMetrics {
                total_bytes: 1_024_000,
                free_bytes: 256_000,
                used_bytes: 768_000,
                usage_percent: 75.0
            }
        );
        assert!(first.disk.total_bytes > 0);
        assert_eq!(first.network.received_bytes, 261_619_172 + 1000 + 500);

        // cpu0: 30 busy + 10 idle → 75 %; cpu1: 10 busy + 30 idle → 25 %.
        write(
            "stat",
            "cpu  0 0 0 0\ncpu0 130 0 0 110 0 0\ncpu1 110 0 0 130 0 0\n",
        );
        let second = sampler.sample(None, true);
        assert_eq!(second.cpu_per_core_usage_percent, vec![75.0, 25.0]);
        assert_eq!(second.cpu_usage_percent, 50.0);

        // /proc/stat vanishes: zeros, and the baseline is dropped…
        std::fs::remove_file(proc.join("stat")).expect("rm stat");
        let third = sampler.sample(None, true);
        assert!(third.cpu_per_core_usage_percent.is_empty());
        assert!(sampler.health.cpu.failing);
        // …so when it returns, the first figures are zeros again.
        write("stat", "cpu0 500 0 0 110 0 0\ncpu1 110 0 0 500 0 0\n");
        let fourth = sampler.sample(None, true);
        assert_eq!(fourth.cpu_per_core_usage_percent, vec![0.0, 0.0]);
        assert!(!sampler.health.cpu.failing);
        for m in [&first, &second, &third, &fourth] {
            assert_all_finite(m);
        }
    }
}
