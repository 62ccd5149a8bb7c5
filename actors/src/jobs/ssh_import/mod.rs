//! The `ssh_import` executor: fetches a file or a directory tree from a
//! remote host over SSH/SFTP and stores it in the object store under
//! `volt-dumps/<teamId>/<trajectoryId>/<relative path>`.
//!
//! * **Host keys** are always checked ([`host_keys`]): against the job's
//!   `knownHosts`, or trust-on-first-use recorded per `host:port`.
//! * **Auth** with the payload's private key (OpenSSH/PEM, optional
//!   passphrase) or password ([`payload`]).
//! * **Streaming**: each file flows SFTP → S3 through a bounded buffer
//!   (single PUT below 8 MiB, multipart above, [`transfer::PARTS_IN_FLIGHT`]
//!   parts in flight); no file is ever held whole in memory.
//! * **Resumable** at file granularity across restarts, none twice and none
//!   missing ([`transfer`]'s ledger + HEAD check).
//! * **Progress** `{filesTotal, filesDone, bytesTotal, bytesDone, file}`
//!   after each file and every [`SshImportSettings::progress_every`].
//! * **Cancellation** stops the transfer at once (the SFTP read and the
//!   upload in flight are dropped; the SSH connection is closed).
//!
//! SSH is `russh` (pure Rust, built with `ring`: no OpenSSL, no aws-lc-rs)
//! and `russh-sftp`.

pub mod host_keys;
pub mod payload;
pub mod transfer;

use super::executor::{DEFAULT_DEADLINE, Executor, JobContext, JobError, JobInput};
use async_trait::async_trait;
use bullmq::redis_connection::RedisConnection;
use host_keys::{HostKeyError, KnownHosts, TofuStore, Trust, fingerprint};
use payload::{Auth, ImportRequest};
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, decode_secret_key};
use russh_sftp::client::SftpSession;
use s3::Bucket;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transfer::{Ledger, Target, Totals, already_uploaded, job_tag, upload, walk};

/// The bucket imports land in (volt-protocol.md §7.3).
pub const DUMPS_BUCKET: &str = "volt-dumps";

/// Tunables of the executor.
#[derive(Debug, Clone)]
pub struct SshImportSettings {
    /// TCP connect + SSH handshake + auth.
    pub connect_timeout: Duration,
    /// Progress report interval during a file.
    pub progress_every: Duration,
    /// Deadline of one attempt.
    pub deadline: Duration,
}

impl Default for SshImportSettings {
    fn default() -> Self {
        SshImportSettings {
            // An unreachable lab host should fail the attempt, not hold a
            // worker slot; 20 s covers slow WAN handshakes.
            connect_timeout: Duration::from_secs(20),
            progress_every: Duration::from_millis(500),
            deadline: DEFAULT_DEADLINE,
        }
    }
}

/// The executor. Cheap to share: one per daemon, `Arc`'d into the pool.
pub struct SshImport {
    bucket: Box<Bucket>,
    tofu: TofuStore,
    redis: RedisConnection,
    settings: SshImportSettings,
}

impl SshImport {
    /// `bucket` is the `volt-dumps` bucket of the cluster's object store;
    /// `tofu` the host-key file; `redis` the jobs connection (resume ledger).
    pub fn new(
        bucket: Box<Bucket>,
        tofu: TofuStore,
        redis: RedisConnection,
        settings: SshImportSettings,
    ) -> Self {
        SshImport {
            bucket,
            tofu,
            redis,
            settings,
        }
    }
}

/// What `check_server_key` decided, read back after the handshake.
type Verdict = Arc<Mutex<Option<Result<(Trust, String), HostKeyError>>>>;

enum Policy {
    Known(KnownHosts),
    Tofu(TofuStore),
}

struct Client {
    host: String,
    port: u16,
    policy: Arc<Policy>,
    verdict: Verdict,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            let refusal = HostKeyError::NotKnown {
                host: host_keys::host_id(&self.host, self.port),
                got: "a certificate (not supported)".into(),
            };
            if let Ok(mut v) = self.verdict.lock() {
                *v = Some(Err(refusal));
            }
            return Ok(false);
        };
        let result = match self.policy.as_ref() {
            Policy::Known(kh) => kh.check(&self.host, self.port, key),
            Policy::Tofu(store) => store.check(&self.host, self.port, key).await,
        };
        let ok = result.is_ok();
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(result.map(|t| (t, fingerprint(key))));
        }
        Ok(ok)
    }
}

fn host_key_refusal(
    verdict: &Mutex<Option<Result<(Trust, String), HostKeyError>>>,
) -> Option<HostKeyError> {
    verdict.lock().ok().and_then(|v| match v.as_ref() {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    })
}

impl SshImport {
    async fn connect(
        &self,
        req: &ImportRequest,
        ctx: &JobContext,
    ) -> Result<(client::Handle<Client>, Trust, String), JobError> {
        let policy = match &req.known_hosts {
            Some(text) => {
                Policy::Known(KnownHosts::parse(text).map_err(|e| JobError::Fatal(e.to_string()))?)
            }
            None => Policy::Tofu(self.tofu.clone()),
        };
        let verdict = Arc::new(Mutex::new(None));
        let handler = Client {
            host: req.host.clone(),
            port: req.port,
            policy: Arc::new(policy),
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(120)),
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            ..client::Config::default()
        });
        let addr = (req.host.clone(), req.port);
        let connect = async {
            let mut session = match client::connect(config, addr, handler).await {
                Ok(s) => s,
                Err(e) => {
                    return Err(match host_key_refusal(&verdict) {
                        Some(refusal) => JobError::Fatal(refusal.to_string()),
                        None => JobError::Retryable(format!(
                            "connecting to {}:{}: {e}",
                            req.host, req.port
                        )),
                    });
                }
            };
            let auth = match &req.auth {
                Auth::Password(pw) => session.authenticate_password(&req.username, pw).await,
                Auth::Key { pem, passphrase } => {
                    let key = decode_secret_key(pem, passphrase.as_deref()).map_err(|_| {
                        JobError::Fatal(
                            "privateKey cannot be decoded (wrong format or passphrase)".into(),
                        )
                    })?;
                    let hash = session
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| JobError::Retryable(format!("SSH negotiation: {e}")))?
                        .flatten();
                    session
                        .authenticate_publickey(
                            &req.username,
                            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                        )
                        .await
                }
            }
            .map_err(|e| JobError::Retryable(format!("SSH authentication: {e}")))?;
            if !auth.success() {
                return Err(JobError::Fatal(format!(
                    "SSH authentication as {} on {}:{} was refused",
                    req.username, req.host, req.port
                )));
            }
            Ok(session)
        };
        let session = tokio::select! {
            r = tokio::time::timeout(self.settings.connect_timeout, connect) => match r {
                Ok(r) => r?,
                Err(_) => return Err(JobError::Retryable(format!(
                    "connecting to {}:{} timed out after {:?}", req.host, req.port, self.settings.connect_timeout
                ))),
            },
            () = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
        };
        let (trust, fp) = verdict
            .lock()
            .ok()
            .and_then(|v| v.as_ref().and_then(|r| r.as_ref().ok().cloned()))
            .ok_or_else(|| JobError::Fatal("the server's host key was not checked".into()))?;
        Ok((session, trust, fp))
    }

    async fn import(&self, ctx: &JobContext, req: &ImportRequest) -> Result<Value, JobError> {
        let (session, trust, fp) = self.connect(req, ctx).await?;
        ctx.log(format!(
            "connected to {}:{} as {}; host key {fp} accepted by {}",
            req.host,
            req.port,
            req.username,
            trust.as_str()
        ));
        let channel = session
            .channel_open_session()
            .await
            .map_err(|e| JobError::Retryable(format!("opening an SSH channel: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| JobError::Retryable(format!("starting SFTP: {e}")))?;
        let sftp = SftpSession::new(channel.into_stream())
            .await
            .map_err(|e| JobError::Retryable(format!("starting SFTP: {e}")))?;
        let result = self.transfer(ctx, req, &sftp, &trust, &fp).await;
        let _ = sftp.close().await;
        let _ = session
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        result
    }

    async fn transfer(
        &self,
        ctx: &JobContext,
        req: &ImportRequest,
        sftp: &SftpSession,
        trust: &Trust,
        fp: &str,
    ) -> Result<Value, JobError> {
        let files = walk(sftp, &req.remote_path, ctx).await?;
        let ledger = Ledger::new(self.redis.clone(), &ctx.job.id);
        let done = ledger.done().await?;
        let tag = job_tag(&ctx.job.id);
        let prefix = req.key_prefix();
        let mut totals = Totals {
            files_total: files.len(),
            bytes_total: files.iter().map(|f| f.size).sum(),
            ..Totals::default()
        };
        let (mut uploaded, mut resumed, mut recorded) = (0usize, 0usize, 0usize);
        ctx.log(format!(
            "{} files, {} bytes under {}",
            totals.files_total, totals.bytes_total, req.remote_path
        ));
        for file in &files {
            if ctx.is_cancelled() {
                return Err(JobError::Cancelled);
            }
            let key = format!("{prefix}/{}", file.rel);
            if done.contains_key(&file.rel) {
                recorded += 1;
            } else if already_uploaded(&self.bucket, &key, file.size, &tag).await? {
                ledger.record(&file.rel, file.size).await?;
                ctx.log(format!(
                    "resumed {} (already in the object store)",
                    file.rel
                ));
                resumed += 1;
            } else {
                let target = Target {
                    bucket: &self.bucket,
                    key: &key,
                    tag: &tag,
                };
                let sent = upload(
                    sftp,
                    file,
                    &target,
                    ctx,
                    &totals,
                    self.settings.progress_every,
                )
                .await?;
                ledger.record(&file.rel, sent).await?;
                ctx.log(format!("uploaded {} ({sent} bytes)", file.rel));
                uploaded += 1;
            }
            totals.files_done += 1;
            totals.bytes_done += file.size;
            ctx.progress(json!({
                "filesTotal": totals.files_total, "filesDone": totals.files_done,
                "bytesTotal": totals.bytes_total, "bytesDone": totals.bytes_done,
                "file": file.rel,
            }));
        }
        Ok(json!({
            "bucket": self.bucket.name(),
            "prefix": prefix,
            "files": totals.files_total,
            "bytes": totals.bytes_total,
            "uploaded": uploaded,
            "resumed": resumed + recorded,
            "hostKey": { "fingerprint": fp, "trust": trust.as_str() },
        }))
    }
}

#[async_trait]
impl Executor for SshImport {
    fn name(&self) -> &'static str {
        "ssh-import"
    }

    fn deadline(&self, _job: &JobInput) -> Duration {
        self.settings.deadline
    }

    async fn run(&self, ctx: JobContext) -> Result<Value, JobError> {
        let req = ImportRequest::parse(&ctx.job.payload).map_err(JobError::Fatal)?;
        self.import(&ctx, &req).await
    }
}
