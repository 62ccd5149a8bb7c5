//! One rustls client configuration for everything voltd dials (control
//! socket, enrollment, install manifest): the system's root certificates plus
//! an optional CA file, with the ring provider.
//!
//! Only ring is compiled in; the process-wide default provider is still
//! installed explicitly at start-up so that any crate calling
//! `ClientConfig::builder()` finds it instead of panicking.

use rustls::RootCertStore;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// TLS setup failures.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate")]
    EmptyCa { path: String },
    #[error("CA file {path}: {reason}")]
    BadCa { path: String, reason: String },
    #[error("no trusted root certificates: the system has none and no CA file is configured")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Installs ring as the process-wide rustls provider (idempotent).
pub fn install_default_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the client configuration.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // Unparsable system certificates are skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
            path: shown.clone(),
            source,
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| TlsError::BadCa {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| TlsError::BadCa {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::EmptyCa { path: shown });
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client for enrollment calls that trusts the same roots.
pub fn http_client(
    tls: &Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .use_preconfigured_tls((**tls).clone())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("voltd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// A client for downloads (provisioned servers, releases): the same trust
/// roots, a connect timeout but no whole-request timeout (a large artifact
/// on a slow link takes long; the downloader's idle timeout catches a
/// stall), and no transparent decompression (the bytes hashed are the
/// bytes served). Proxies come from the usual environment variables.
pub fn download_client(
    tls: &Arc<rustls::ClientConfig>,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .use_preconfigured_tls((**tls).clone())
        .connect_timeout(connect_timeout)
        .user_agent(concat!("voltd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_roots_load() {
        install_default_provider();
        install_default_provider();
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn bad_ca_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = client_config(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        assert!(matches!(
            client_config(Some(&empty)),
            Err(TlsError::EmptyCa { .. })
        ));
    }
}
