//! MinIO: `minio server` with `MINIO_ROOT_USER/PASSWORD` from the install
//! manifest. Any S3 server works through the same command line (tests use
//! s3s-fs).
//!
//! Probe: a one-key object listing of `volt-dumps` (timed). rust-s3's
//! `list_buckets()` and `Bucket::exists()` cannot parse the bucket list of
//! some S3 servers, so the probe never relies on them; a missing bucket
//! (404) still proves the server answers and accepted the signature, while
//! 403 means the credentials were refused. Bootstrap: the four buckets the
//! VOLT daemon uses exist.

use super::core::{Driver, Probe, ProbeError};
use super::resolve::Resolved;
use super::{ServiceClient, ServiceKind};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, BucketConfiguration, Region};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

/// The buckets of the reference daemon (`MinioService.ensureBuckets`).
pub const BUCKETS: [&str; 4] = [
    "volt-dumps",
    "volt-models",
    "volt-plugins",
    "volt-rasterizer",
];
/// The signing region: MinIO's default, accepted by every S3 server.
pub const REGION: &str = "us-east-1";
/// Longest bucket name S3 allows.
const MAX_BUCKET_NAME: usize = 63;

/// The MinIO driver.
#[derive(Debug, Clone, Copy)]
pub struct Minio;

/// What it takes to talk to the S3 server: endpoint, region, credentials,
/// and the buckets built so far (each holds an HTTP client worth reusing).
#[derive(Clone)]
pub struct S3Access {
    region: Region,
    credentials: Credentials,
    timeout: Duration,
    buckets: Rc<RefCell<HashMap<String, Box<Bucket>>>>,
}

impl S3Access {
    /// Path-style, plain-HTTP access to `host:port` with the root keys.
    pub fn new(
        host: &str,
        port: u16,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let credentials = Credentials::new(Some(user), Some(password), None, None, None)
            .map_err(|e| format!("invalid S3 credentials: {e}"))?;
        Ok(S3Access {
            region: Region::Custom {
                region: REGION.to_owned(),
                endpoint: format!("http://{host}:{port}"),
            },
            credentials,
            timeout,
            buckets: Rc::default(),
        })
    }

    /// The bucket `name` (not checked for existence).
    pub fn bucket(&self, name: &str) -> Result<Box<Bucket>, String> {
        if name.is_empty()
            || name.len() > MAX_BUCKET_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        {
            return Err(format!("invalid bucket name {name:?}"));
        }
        if let Some(b) = self.buckets.borrow().get(name) {
            return Ok(b.clone());
        }
        let bucket = Bucket::new(name, self.region.clone(), self.credentials.clone())
            .map_err(|e| format!("cannot set up bucket {name}: {e}"))?
            .with_path_style();
        self.buckets
            .borrow_mut()
            .insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }

    /// The bucket with the probe timeout.
    fn probe_bucket(&self, name: &str) -> Result<Box<Bucket>, ProbeError> {
        self.bucket(name)
            .map_err(ProbeError::other)?
            .with_request_timeout(self.timeout)
            .map_err(|e| ProbeError::other(format!("cannot set up bucket {name}: {e}")))
    }
}

/// The `<Code>` of an S3 error body.
fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

fn classify(e: S3Error) -> ProbeError {
    match e {
        S3Error::HttpFailWithBody(403, body) => ProbeError::auth(format!(
            "HTTP 403 {}",
            error_code(&body).unwrap_or("Forbidden")
        )),
        S3Error::HttpFailWithBody(status, body) => ProbeError::other(
            format!("HTTP {status} {}", error_code(&body).unwrap_or(""))
                .trim_end()
                .to_owned(),
        ),
        S3Error::Reqwest(e) if e.is_timeout() => {
            ProbeError::new(super::core::ProbeErrorKind::Timeout, e.to_string())
        }
        S3Error::Reqwest(e) => ProbeError::unreachable(e.to_string()),
        other => ProbeError::other(other.to_string()),
    }
}

/// Whether `bucket` exists: `Ok(false)` on 404.
async fn exists(access: &S3Access, name: &str) -> Result<bool, ProbeError> {
    let bucket = access.probe_bucket(name)?;
    match bucket
        .list_page(String::new(), None, None, None, Some(1))
        .await
    {
        Ok(_) => Ok(true),
        Err(S3Error::HttpFailWithBody(404, _)) => Ok(false),
        Err(e) => Err(classify(e)),
    }
}

impl Driver for Minio {
    type Client = S3Access;
    const KIND: ServiceKind = ServiceKind::Minio;

    fn client(&self, r: &Resolved, timeout: Duration) -> Result<Self::Client, String> {
        S3Access::new(&r.host, r.port, &r.user, r.password.expose(), timeout)
    }

    fn share(client: &Self::Client) -> ServiceClient {
        ServiceClient::S3(client.clone())
    }

    async fn probe(&self, client: &Self::Client, _timeout: Duration) -> Result<Probe, ProbeError> {
        let started = Instant::now();
        let first = exists(client, BUCKETS[0]).await?;
        let latency = started.elapsed();
        let mut present = u32::from(first);
        for name in &BUCKETS[1..] {
            present += u32::from(exists(client, name).await?);
        }
        Ok(Probe {
            latency,
            stats: Some(json!({"buckets": present, "expectedBuckets": BUCKETS.len()})),
        })
    }

    async fn bootstrap(&self, client: &Self::Client, _r: &Resolved) -> Result<(), ProbeError> {
        for name in BUCKETS {
            if exists(client, name).await? {
                continue;
            }
            match Bucket::create_with_path_style(
                name,
                client.region.clone(),
                client.credentials.clone(),
                BucketConfiguration::default(),
            )
            .await
            {
                Ok(_) | Err(S3Error::HttpFailWithBody(409, _)) => {
                    tracing::info!(bucket = %name, "Bucket created.");
                }
                Err(e) => return Err(classify(e).context(format!("creating bucket {name}"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_path_style_and_names_are_checked() {
        let a = S3Access::new("127.0.0.1", 9100, "k", "s", Duration::from_secs(1)).unwrap();
        let b = a.bucket("volt-dumps").unwrap();
        assert!(b.is_path_style());
        assert_eq!(b.url(), "http://127.0.0.1:9100/volt-dumps");
        assert!(a.bucket("Bad_Name").is_err());
        assert!(a.bucket("").is_err());
        let v6 = S3Access::new("::1", 9100, "k", "s", Duration::from_secs(1)).unwrap();
        assert_eq!(v6.bucket("x").unwrap().url(), "http://[::1]:9100/x");
    }

    #[test]
    fn s3_errors_are_classified() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>".to_owned();
        let e = classify(S3Error::HttpFailWithBody(403, body));
        assert_eq!(
            e.to_string(),
            "auth rejected: HTTP 403 SignatureDoesNotMatch"
        );
        let e = classify(S3Error::HttpFailWithBody(500, String::new()));
        assert_eq!(e.to_string(), "HTTP 500");
    }
}
