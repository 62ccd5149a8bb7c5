//! What "version" means per service, how it is read from `<binary>
//! --version`, and the minimum voltd accepts.
//!
//! * Redis and MongoDB use dotted numbers (`Redis server v=7.0.15 …`,
//!   `db version v8.0.11`); pre-release suffixes (`-rc1`) are ignored, so an
//!   8.0.0 release candidate counts as 8.0.0.
//! * MinIO has no version number: a release is named after the UTC moment
//!   it was cut, `RELEASE.2025-02-28T09-55-16Z`, and `minio --version`
//!   prints `minio version RELEASE.…`. Its "version" is therefore that
//!   timestamp, ordered chronologically; a minimum is a release tag. Builds
//!   without a tag (`DEVELOPMENT.GOGET`, source builds) have no version.
//!
//! The child runs without a shell, with stdin closed, its output capped and
//! a timeout; a binary that hangs or prints garbage gives a typed error,
//! never a panic.

use crate::api::vocab::ServiceKind;
use std::cmp::Ordering;
use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use thiserror::Error;
use tokio::io::AsyncReadExt;

/// The floor issue 8 sets for Redis: older servers are not what the VOLT
/// server is run against, so a host's Redis 6 is replaced, not trusted.
pub const MIN_REDIS: ServiceVersion = ServiceVersion::Numeric([7, 0, 0]);
/// The floor issue 8 sets for MongoDB (the reference daemon runs 8.0).
pub const MIN_MONGO: ServiceVersion = ServiceVersion::Numeric([7, 0, 0]);
/// RELEASE.2022-06-02T02-11-04Z is the first MinIO release that lays out a
/// single-drive data directory in the erasure-coded format (`xl-single`)
/// every later release reads; an older server would create the legacy `fs`
/// layout, which releases after October 2022 refuse to start on.
pub const MIN_MINIO: ServiceVersion = ServiceVersion::Release([2022, 6, 2, 2, 11, 4]);
/// `--version` answers in milliseconds; 10 s tolerates a cold disk and a
/// loaded host, and bounds a binary that starts serving instead.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// `mongod --version` prints its build info (a few KiB); anything beyond
/// this is not a version banner.
pub const VERSION_OUTPUT_CAP: u64 = 64 << 10;

/// A service's version (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceVersion {
    /// major.minor.patch (missing parts are 0).
    Numeric([u64; 3]),
    /// MinIO: year, month, day, hour, minute, second (UTC).
    Release([u16; 6]),
}

impl ServiceVersion {
    /// The minimum voltd accepts for `kind`.
    pub fn minimum(kind: ServiceKind) -> ServiceVersion {
        match kind {
            ServiceKind::Redis => MIN_REDIS,
            ServiceKind::Mongo => MIN_MONGO,
            ServiceKind::Minio => MIN_MINIO,
        }
    }

    /// Ordering within the same scheme; `None` across schemes.
    pub fn compare(&self, other: &ServiceVersion) -> Option<Ordering> {
        match (self, other) {
            (ServiceVersion::Numeric(a), ServiceVersion::Numeric(b)) => Some(a.cmp(b)),
            (ServiceVersion::Release(a), ServiceVersion::Release(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Whether `self` ≥ `min` (false across schemes).
    pub fn at_least(&self, min: &ServiceVersion) -> bool {
        matches!(self.compare(min), Some(Ordering::Greater | Ordering::Equal))
    }

    /// Parses a catalogue version string for `kind` (`8.0.11`,
    /// `RELEASE.2025-02-28T09-55-16Z`).
    pub fn parse(kind: ServiceKind, s: &str) -> Option<ServiceVersion> {
        match kind {
            ServiceKind::Minio => parse_release(s.strip_prefix("RELEASE.")?),
            ServiceKind::Redis | ServiceKind::Mongo => {
                let (v, rest) = parse_numeric(s.strip_prefix('v').unwrap_or(s))?;
                // The whole string must be the version (suffixes allowed
                // after a '-' or '+').
                (rest.is_empty() || rest.starts_with(['-', '+'])).then_some(v)
            }
        }
    }
}

impl fmt::Display for ServiceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceVersion::Numeric([a, b, c]) => write!(f, "{a}.{b}.{c}"),
            ServiceVersion::Release([y, mo, d, h, mi, s]) => {
                write!(f, "RELEASE.{y:04}-{mo:02}-{d:02}T{h:02}-{mi:02}-{s:02}Z")
            }
        }
    }
}

impl serde::Serialize for ServiceVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `7.0.15…` → ([7,0,15], rest). One to three parts.
fn parse_numeric(s: &str) -> Option<(ServiceVersion, &str)> {
    let mut parts = [0u64; 3];
    let mut rest = s;
    for (i, part) in parts.iter_mut().enumerate() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        *part = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        if i < 2 {
            match rest.strip_prefix('.') {
                Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
                _ => break,
            }
        }
    }
    Some((ServiceVersion::Numeric(parts), rest))
}

/// `2025-02-28T09-55-16Z` (exactly).
fn parse_release(s: &str) -> Option<ServiceVersion> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b'-' {
        return None;
    }
    if b[16] != b'-' || b[19] != b'Z' {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u16> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let v = [
        num(0, 4)?,
        num(5, 2)?,
        num(8, 2)?,
        num(11, 2)?,
        num(14, 2)?,
        num(17, 2)?,
    ];
    let valid =
        (1..=12).contains(&v[1]) && (1..=31).contains(&v[2]) && v[3] < 24 && v[4] < 60 && v[5] < 61;
    valid.then_some(ServiceVersion::Release(v))
}

/// Finds `kind`'s version in the output of `<binary> --version`.
pub fn parse_version_output(kind: ServiceKind, output: &str) -> Option<ServiceVersion> {
    match kind {
        // `Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 …`
        ServiceKind::Redis => output
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .and_then(|v| parse_numeric(v).map(|(v, _)| v)),
        // `db version v8.0.11` (first line; build info JSON follows).
        ServiceKind::Mongo => output.lines().find_map(|line| {
            let at = line.find("db version v")?;
            parse_numeric(&line[at + "db version v".len()..]).map(|(v, _)| v)
        }),
        // `minio version RELEASE.2025-02-28T09-55-16Z (commit-id=…)`
        ServiceKind::Minio => output.match_indices("RELEASE.").find_map(|(at, _)| {
            let start = at + "RELEASE.".len();
            output.get(start..start + 20).and_then(parse_release)
        }),
    }
}

/// Why a version could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    #[error("cannot run {binary} --version: {reason}")]
    Spawn { binary: String, reason: String },
    #[error("{binary} --version did not answer within {}s", timeout.as_secs())]
    Timeout { binary: String, timeout: Duration },
    #[error("{binary} --version {status}: {output}")]
    Failed {
        binary: String,
        status: String,
        output: String,
    },
    #[error("{binary} --version printed no version voltd understands: {output}")]
    Unrecognised { binary: String, output: String },
}

/// Runs `binary --version` (no shell) and parses `kind`'s version from it.
pub async fn probe_version(
    kind: ServiceKind,
    binary: &Path,
    timeout: Duration,
) -> Result<ServiceVersion, VersionError> {
    let shown = binary.display().to_string();
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = crate::host::spawn::spawn(&mut cmd)
        .await
        .map_err(|e| VersionError::Spawn {
            binary: shown.clone(),
            reason: e.to_string(),
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(VersionError::Spawn {
            binary: shown,
            reason: "no output pipes".into(),
        });
    };
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(VERSION_OUTPUT_CAP);
        let mut stderr = stderr.take(VERSION_OUTPUT_CAP);
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        (a.and(b), status, out, err)
    };
    let (read, status, out, err) = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => {
            return Err(VersionError::Timeout {
                binary: shown,
                timeout,
            });
        }
    };
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if !err.is_empty() {
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&err));
    }
    let summary = summarize(&text);
    let status = status.map_err(|e| VersionError::Spawn {
        binary: shown.clone(),
        reason: e.to_string(),
    })?;
    if let Err(e) = read {
        return Err(VersionError::Spawn {
            binary: shown,
            reason: format!("reading its output: {e}"),
        });
    }
    if !status.success() {
        return Err(VersionError::Failed {
            binary: shown,
            status: crate::host::proc::describe_exit(status),
            output: summary,
        });
    }
    parse_version_output(kind, &text).ok_or(VersionError::Unrecognised {
        binary: shown,
        output: summary,
    })
}

/// The first lines of a program's output, for an error message.
fn summarize(text: &str) -> String {
    const MAX: usize = 300;
    let joined: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    if joined.chars().count() > MAX {
        let cut: String = joined.chars().take(MAX).collect();
        format!("{cut}…")
    } else if joined.is_empty() {
        "(no output)".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_version_output_is_parsed() {
        let out = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0";
        assert_eq!(
            parse_version_output(ServiceKind::Redis, out),
            Some(ServiceVersion::Numeric([7, 0, 15]))
        );
        assert_eq!(
            parse_version_output(ServiceKind::Redis, "Redis server v=6.2 sha=0"),
            Some(ServiceVersion::Numeric([6, 2, 0]))
        );
        assert_eq!(parse_version_output(ServiceKind::Redis, "redis 7"), None);
    }

    #[test]
    fn mongod_version_output_is_parsed() {
        let out = "db version v8.0.11\nBuild Info: {\n    \"version\": \"8.0.11\",\n    \"gitVersion\": \"x\"\n}\n";
        assert_eq!(
            parse_version_output(ServiceKind::Mongo, out),
            Some(ServiceVersion::Numeric([8, 0, 11]))
        );
        assert_eq!(
            parse_version_output(ServiceKind::Mongo, "db version v8.0.0-rc1\n"),
            Some(ServiceVersion::Numeric([8, 0, 0]))
        );
        assert_eq!(
            parse_version_output(ServiceKind::Mongo, "MongoDB shell version v6.0.1"),
            None
        );
        assert_eq!(parse_version_output(ServiceKind::Mongo, ""), None);
    }

    #[test]
    fn minio_version_output_is_parsed() {
        let out = "minio version RELEASE.2025-02-28T09-55-16Z (commit-id=8c2c92f7af6cb6e2d5e2d3ab5f0bd0d0b8f5e8a4)\nRuntime: go1.23.6 linux/amd64\nLicense: GNU AGPLv3\n";
        assert_eq!(
            parse_version_output(ServiceKind::Minio, out),
            Some(ServiceVersion::Release([2025, 2, 28, 9, 55, 16]))
        );
        assert_eq!(
            parse_version_output(ServiceKind::Minio, "minio version DEVELOPMENT.GOGET"),
            None
        );
        assert_eq!(
            parse_version_output(ServiceKind::Minio, "RELEASE.2025-13-28T09-55-16Z"),
            None
        );
        assert_eq!(
            parse_version_output(ServiceKind::Minio, "RELEASE.2025"),
            None
        );
    }

    #[test]
    fn versions_compare_within_their_scheme() {
        let v = |k, s| ServiceVersion::parse(k, s).unwrap();
        assert!(v(ServiceKind::Mongo, "8.0.11").at_least(&MIN_MONGO));
        assert!(v(ServiceKind::Mongo, "7.0.0").at_least(&MIN_MONGO));
        assert!(!v(ServiceKind::Mongo, "6.0.26").at_least(&MIN_MONGO));
        assert!(v(ServiceKind::Redis, "7.0.15").at_least(&MIN_REDIS));
        assert!(!v(ServiceKind::Redis, "6.2.14").at_least(&MIN_REDIS));
        assert!(v(ServiceKind::Mongo, "10.0.0").at_least(&v(ServiceKind::Mongo, "9.9.9")));
        let new = v(ServiceKind::Minio, "RELEASE.2025-02-28T09-55-16Z");
        let old = v(ServiceKind::Minio, "RELEASE.2022-06-01T23-59-59Z");
        assert!(new.at_least(&MIN_MINIO));
        assert!(!old.at_least(&MIN_MINIO));
        assert!(!new.at_least(&MIN_MONGO), "schemes do not compare");
        assert_eq!(new.to_string(), "RELEASE.2025-02-28T09-55-16Z");
        assert_eq!(MIN_MINIO.to_string(), "RELEASE.2022-06-02T02-11-04Z");
        assert_eq!(v(ServiceKind::Mongo, "8.0").to_string(), "8.0.0");
    }

    #[test]
    fn catalogue_version_strings_must_be_whole_versions() {
        assert!(ServiceVersion::parse(ServiceKind::Mongo, "8.0.11").is_some());
        assert!(ServiceVersion::parse(ServiceKind::Mongo, "8.0.11-rc0").is_some());
        assert!(ServiceVersion::parse(ServiceKind::Mongo, "8.0.11x").is_none());
        assert!(ServiceVersion::parse(ServiceKind::Mongo, "latest").is_none());
        assert!(ServiceVersion::parse(ServiceKind::Minio, "2025-02-28T09-55-16Z").is_none());
        assert!(
            ServiceVersion::parse(ServiceKind::Minio, "RELEASE.2025-02-28T09-55-16Z").is_some()
        );
    }

    #[test]
    fn long_output_is_summarized() {
        let s = summarize(&"x".repeat(1000));
        assert!(s.chars().count() <= 301, "{s}");
        assert_eq!(summarize("\n\n"), "(no output)");
        assert_eq!(summarize("a\nb\nc\nd"), "a | b | c");
    }

    #[tokio::test]
    async fn probing_runs_the_binary_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("mongod");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = --version ] && echo 'db version v7.0.14' && exit 0\nexit 9\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v = probe_version(ServiceKind::Mongo, &script, VERSION_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(v, ServiceVersion::Numeric([7, 0, 14]));

        let failing = dir.path().join("broken");
        std::fs::write(
            &failing,
            "#!/bin/sh\necho 'libcrypto.so.3: cannot open' >&2\nexit 127\n",
        )
        .unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = probe_version(ServiceKind::Mongo, &failing, VERSION_TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, VersionError::Failed { output, .. } if output.contains("libcrypto")),
            "{e}"
        );

        let hanging = dir.path().join("hang");
        std::fs::write(&hanging, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&hanging, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = probe_version(ServiceKind::Mongo, &hanging, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, VersionError::Timeout { .. }), "{e}");

        let e = probe_version(
            ServiceKind::Mongo,
            &dir.path().join("absent"),
            VERSION_TIMEOUT,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, VersionError::Spawn { .. }), "{e}");
    }
}
