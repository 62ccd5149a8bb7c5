//! Enrollment: turning a one-time token into the daemon password, once.
//!
//! Resolution order at start-up:
//! 1. stored credentials (`credentials.json`, or its sealed form; see
//!    `cloud/credentials.rs`) — never enroll again;
//! 2. an enrollment token → `POST …/healthcheck`; on success the returned
//!    password is stored (sealed where the host has a key store, else 0600;
//!    atomically) and the token is removed from
//!    the config file; a 409 while a password is already configured means
//!    the installer enrolled for us — carry on with that password;
//! 3. a configured password (`TEAM_CLUSTER_DAEMON_PASSWORD`) — stored too.
//!
//! 401/404/409 without usable credentials end the process with the
//! credentials-rejected exit code; network errors and 5xx are retried with
//! backoff, forever (a lab server may be offline for hours).

use crate::api::{CredentialOrigin, Credentials, CredentialsCell};
use crate::cloud::credentials::{self, CredentialStore, StoredCredentials};
use crate::config::{CloudUrl, Settings};
use crate::events::{Event, EventBus};
use crate::host::clock::now_iso;
use crate::host::keystore::SecretStore;
use actix::prelude::*;
use otp::backoff::ExponentialBackoff;
use otp::supervisor::StopChild;
use otp::{ExitCode, ExitReason, ExitSlot};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use volt_protocol::enrollment::{
    ApiError, ApiSuccess, HealthcheckData, HealthcheckRequest, InstallManifest,
    InstallManifestData, InstallManifestRequest, ServicePorts, healthcheck_path,
    install_manifest_path,
};
use volt_protocol::register::Secret;

/// Retry delays for enrollment: 1 s doubling to 1 min. Slower than socket
/// reconnects because each attempt is a full HTTP request to the server.
pub const ENROLL_RETRY_BASE: Duration = Duration::from_secs(1);
/// See [`ENROLL_RETRY_BASE`].
pub const ENROLL_RETRY_MAX: Duration = Duration::from_secs(60);
/// Per-request timeout of the enrollment calls.
pub const ENROLL_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at fetching the install manifest before giving up on it (it is
/// optional: services fall back to their configured credentials).
pub const MANIFEST_ATTEMPTS: u32 = 5;

/// Why an enrollment call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnrollError {
    /// The server refused (401, 404, 409 and other definitive 4xx).
    #[error("HTTP {status}: {message}")]
    Rejected {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Worth retrying: network failure, timeout, 5xx, 408, 429.
    #[error("{0}")]
    Transient(String),
}

impl EnrollError {
    pub fn status(&self) -> Option<u16> {
        match self {
            EnrollError::Rejected { status, .. } => Some(*status),
            EnrollError::Transient(_) => None,
        }
    }
}

async fn post_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    body: &impl serde::Serialize,
) -> Result<T, EnrollError> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| EnrollError::Transient(describe_reqwest(&e)))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| EnrollError::Transient(describe_reqwest(&e)))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice::<ApiSuccess<T>>(&bytes)
            .map(|s| s.data)
            .map_err(|e| EnrollError::Transient(format!("unexpected response from {url}: {e}")));
    }
    let err: ApiError = serde_json::from_slice(&bytes).unwrap_or_default();
    let message = err.describe();
    if status >= 500 || status == 408 || status == 429 {
        Err(EnrollError::Transient(format!("HTTP {status}: {message}")))
    } else {
        Err(EnrollError::Rejected {
            status,
            code: err.code,
            message,
        })
    }
}

/// reqwest errors carry the URL, never a body: safe to show.
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `POST /api/team-clusters/{id}/healthcheck`.
pub async fn enroll(
    client: &reqwest::Client,
    cloud_url: &CloudUrl,
    team_cluster_id: &str,
    token: &Secret,
    installed_version: &str,
) -> Result<HealthcheckData, EnrollError> {
    let body = HealthcheckRequest {
        enrollment_token: token.clone(),
        installed_version: Some(installed_version.to_owned()),
    };
    post_json(
        client,
        &cloud_url.join(&healthcheck_path(team_cluster_id)),
        &body,
    )
    .await
}

/// `POST /api/team-clusters/{id}/install-manifest`.
pub async fn fetch_manifest(
    client: &reqwest::Client,
    cloud_url: &CloudUrl,
    team_cluster_id: &str,
    password: &Secret,
    install_root: &str,
    ports: ServicePorts,
) -> Result<InstallManifest, EnrollError> {
    let body = InstallManifestRequest {
        daemon_password: password.clone(),
        install_root: install_root.to_owned(),
        ports,
    };
    post_json::<InstallManifestData>(
        client,
        &cloud_url.join(&install_manifest_path(team_cluster_id)),
        &body,
    )
    .await
    .map(|d| d.manifest)
}

/// Where the credentials came from (an alias kept for readability here).
pub type Source = CredentialOrigin;

fn fatal_store(e: credentials::StoreError) -> ExitReason {
    ExitReason::fatal(ExitCode::Config, e.to_string())
}

/// Runs a blocking credential-store call off the actor thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, credentials::StoreError> + Send + 'static,
) -> Result<T, ExitReason> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ExitReason::fatal(
                ExitCode::Retryable,
                format!("credential store task failed: {e}"),
            )
        })?
        .map_err(fatal_store)
}

async fn store(
    keystore: &CredentialStore,
    settings: &Settings,
    password: &Secret,
) -> Result<(), ExitReason> {
    let (ks, path) = (keystore.clone(), settings.credentials_file());
    let creds = StoredCredentials {
        team_cluster_id: settings.team_cluster_id.to_string(),
        daemon_password: password.clone(),
        cloud_url: settings.cloud_url.to_string(),
        enrolled_at: now_iso(),
    };
    blocking(move || ks.save(&path, &creds)).await
}

/// The token is spent: take it out of the config file it came from.
fn forget_token(settings: &Settings) {
    if let Some(path) = &settings.token_file {
        match credentials::remove_toml_key(path, "enrollment_token") {
            Ok(true) => {
                tracing::info!(path = %path.display(), "Removed the used enrollment token from the config file.")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Could not remove the used enrollment token from the config file.")
            }
        }
    }
}

/// Resolves the daemon's credentials (see the module docs). Errors are the
/// exit reason the daemon must end with.
pub async fn resolve(
    settings: &Settings,
    client: &reqwest::Client,
    bus: &EventBus,
) -> Result<(Credentials, Source), ExitReason> {
    let id = settings.team_cluster_id.clone();
    let keystore = tokio::task::spawn_blocking(CredentialStore::detect)
        .await
        .map_err(|e| {
            ExitReason::fatal(
                ExitCode::Retryable,
                format!("key store detection failed: {e}"),
            )
        })?;
    let (ks, path) = (keystore.clone(), settings.credentials_file());
    if let Some(stored) = blocking(move || ks.load(&path)).await? {
        if stored.team_cluster_id != id.as_str() {
            return Err(ExitReason::fatal(
                ExitCode::Config,
                format!(
                    "{} holds credentials for cluster {} but this daemon is configured for {id}",
                    settings.credentials_file().display(),
                    stored.team_cluster_id
                ),
            ));
        }
        if settings.enrollment_token.is_some() {
            tracing::info!(cluster_id = %id, "Already enrolled; ignoring the enrollment token.");
            forget_token(settings);
        }
        return Ok((stored.credentials(), Source::Stored));
    }

    let creds = |password: Secret| Credentials {
        team_cluster_id: id.to_string(),
        daemon_password: password,
    };

    if let Some(token) = &settings.enrollment_token {
        let backoff = ExponentialBackoff::try_new(ENROLL_RETRY_BASE, ENROLL_RETRY_MAX, 2.0, 0.2)
            .map_err(|e| ExitReason::fatal(ExitCode::Config, e.to_string()))?;
        let mut attempt = 0u32;
        loop {
            match enroll(
                client,
                &settings.cloud_url,
                &id,
                token,
                &settings.installed_version,
            )
            .await
            {
                Ok(data) => {
                    store(&keystore, settings, &data.daemon_password).await?;
                    forget_token(settings);
                    return Ok((creds(data.daemon_password), Source::Enrolled));
                }
                Err(EnrollError::Rejected { status: 409, .. })
                    if settings.daemon_password.is_some() =>
                {
                    tracing::info!(cluster_id = %id, "Enrollment already completed; using the configured daemon password.");
                    let password = settings.daemon_password.clone().unwrap_or_default();
                    store(&keystore, settings, &password).await?;
                    forget_token(settings);
                    return Ok((creds(password), Source::Config));
                }
                Err(EnrollError::Rejected {
                    status, message, ..
                }) => {
                    let hint = match status {
                        404 => "the cluster does not exist on this server",
                        409 => {
                            "this token was already used; regenerate one or configure the daemon password"
                        }
                        401 => "the enrollment token is wrong",
                        _ => "the server refused the request",
                    };
                    return Err(ExitReason::fatal(
                        ExitCode::CredentialsRejected,
                        format!("enrollment rejected (HTTP {status}: {message}): {hint}"),
                    ));
                }
                Err(EnrollError::Transient(error)) => {
                    let delay = backoff.delay(attempt);
                    bus.emit(Event::EnrollmentRetrying {
                        attempt: attempt + 1,
                        delay_ms: delay.as_millis() as u64,
                        error,
                    });
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    if let Some(password) = &settings.daemon_password {
        store(&keystore, settings, password).await?;
        return Ok((creds(password.clone()), Source::Config));
    }

    Err(ExitReason::fatal(
        ExitCode::Config,
        "no credentials: run `voltd enroll` with the enrollment token, or set \
         TEAM_CLUSTER_ENROLLMENT_TOKEN or TEAM_CLUSTER_DAEMON_PASSWORD",
    ))
}

/// Fetches and stores the install manifest when configured and not yet
/// stored. Failure is logged, not fatal: the manifest only seeds the managed
/// services' credentials and ports.
pub async fn ensure_manifest(settings: &Settings, client: &reqwest::Client, creds: &Credentials) {
    // A plain manifest from before the key store is sealed where this
    // process can seal (root: `voltd enroll`).
    let (path, dir) = (settings.manifest_file(), settings.install_dir());
    match tokio::task::spawn_blocking(move || {
        credentials::seal_manifest(SecretStore::shared(), &path, Some(&dir))
    })
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "Could not seal the stored install manifest."),
        Err(e) => tracing::warn!(error = %e, "Install manifest sealing task failed."),
    }
    if !settings.install.fetch_manifest {
        return;
    }
    let Some(ports) = settings.install.ports else {
        tracing::warn!(
            "Install manifest requested but no service ports are configured; skipping it."
        );
        return;
    };
    let path = settings.manifest_file();
    let stored = tokio::task::spawn_blocking(move || credentials::load_manifest(&path))
        .await
        .unwrap_or_else(|e| {
            Err(credentials::StoreError::Read {
                path: settings.manifest_file(),
                source: std::io::Error::other(e.to_string()),
            })
        });
    let sealed = crate::host::keystore::sealed_path(&settings.manifest_file());
    let sealed_exists = || async move {
        tokio::task::spawn_blocking(move || sealed.exists())
            .await
            .unwrap_or(false)
    };
    match stored {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) if sealed_exists().await => {
            // Sealed but not readable here (no LoadCredentialEncrypted= line
            // for it): fetching it again would store it in plain text.
            tracing::warn!(error = %e, "Sealed install manifest unreadable; services use their configured credentials.");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "Stored install manifest unreadable; fetching it again.");
        }
    }
    let root = settings.install.install_root.display().to_string();
    for attempt in 0..MANIFEST_ATTEMPTS {
        match fetch_manifest(
            client,
            &settings.cloud_url,
            &creds.team_cluster_id,
            &creds.daemon_password,
            &root,
            ports,
        )
        .await
        {
            Ok(manifest) => {
                let install_dir = settings.install_dir();
                let (path, dir) = (settings.manifest_file(), install_dir.clone());
                let stored = tokio::task::spawn_blocking(move || {
                    credentials::save_manifest_with(
                        SecretStore::shared(),
                        &path,
                        &manifest,
                        Some(&dir),
                    )
                })
                .await
                .unwrap_or_else(|e| {
                    Err(credentials::StoreError::Write {
                        path: settings.manifest_file(),
                        source: std::io::Error::other(e.to_string()),
                    })
                });
                match stored {
                    Ok(()) => {
                        tracing::info!(dir = %install_dir.display(), "Install manifest stored.")
                    }
                    Err(e) => tracing::warn!(error = %e, "Could not store the install manifest."),
                }
                return;
            }
            Err(EnrollError::Transient(e)) => {
                tracing::debug!(attempt, error = %e, "Install manifest fetch failed; retrying.");
                tokio::time::sleep(ENROLL_RETRY_BASE * 2u32.pow(attempt)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Install manifest refused by the server.");
                return;
            }
        }
    }
    tracing::warn!("Install manifest unavailable; services use their configured credentials.");
}

/// The enrollment actor: resolves credentials, publishes them, fetches the
/// manifest, then ends normally (it is a transient child).
pub struct Enrollment {
    settings: Arc<Settings>,
    client: reqwest::Client,
    credentials: CredentialsCell,
    bus: EventBus,
    exit: ExitSlot,
}

impl Enrollment {
    pub fn new(
        settings: Arc<Settings>,
        client: reqwest::Client,
        credentials: CredentialsCell,
        bus: EventBus,
        exit: ExitSlot,
    ) -> Self {
        Enrollment {
            settings,
            client,
            credentials,
            bus,
            exit,
        }
    }
}

impl Actor for Enrollment {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let settings = self.settings.clone();
        let client = self.client.clone();
        let bus = self.bus.clone();
        ctx.spawn(
            async move {
                let resolved = resolve(&settings, &client, &bus).await;
                if let Ok((creds, _)) = &resolved {
                    ensure_manifest(&settings, &client, creds).await;
                }
                resolved
            }
            .into_actor(self)
            .map(|resolved, act, ctx| {
                match resolved {
                    Ok((creds, source)) => {
                        act.bus.emit(Event::CredentialsReady {
                            cluster_id: creds.team_cluster_id.clone(),
                            source,
                        });
                        act.credentials.publish(creds);
                    }
                    Err(reason) => act.exit.set(reason),
                }
                ctx.stop();
            }),
        );
    }
}

impl Handler<StopChild> for Enrollment {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Self::Context) {
        self.exit.set(ExitReason::Shutdown);
        ctx.stop();
    }
}
