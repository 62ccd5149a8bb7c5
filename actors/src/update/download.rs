//! The minimal download the self-update needs: a streaming GET that never
//! holds more than the signed size, hashes while it writes, and refuses a
//! body that is longer, shorter or different from what was signed.
//!
//! To be merged with the provisioning downloader (resume, progress events)
//! at `host/download.rs` once both land; keep this API (`get_capped`,
//! `fetch_verified`) or map it onto that one.

use super::UpdateError;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

fn network(url: &str, e: impl std::fmt::Display) -> UpdateError {
    UpdateError::Network {
        url: url.to_owned(),
        detail: e.to_string(),
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Result<reqwest::Response, UpdateError> {
    let resp = client
        .get(url)
        .timeout(super::DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(|e| network(url, e))?;
    if !resp.status().is_success() {
        return Err(UpdateError::HttpStatus {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    Ok(resp)
}

/// GETs a small body into memory, refusing more than `limit` bytes.
pub async fn get_capped(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, UpdateError> {
    let mut resp = get(client, url).await?;
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(UpdateError::TooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| network(url, e))? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(UpdateError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Downloads `url` to `dest` (created 0755, fsynced), checking that it is
/// exactly `size` bytes with SHA-256 `sha256`. On error `dest` may hold a
/// partial file; the caller removes its staging directory.
pub async fn fetch_verified(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), UpdateError> {
    let mut resp = get(client, url).await?;
    if resp.content_length().is_some_and(|n| n > size) {
        return Err(UpdateError::TooLarge { limit: size });
    }
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(dest)
            .map_err(|e| UpdateError::Io(format!("cannot create {}: {e}", dest.display())))?
    };
    // The file is written through a small channel to a blocking writer, so
    // no filesystem call runs on the async thread.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let dest_shown = dest.display().to_string();
    let writer = tokio::task::spawn_blocking(move || -> Result<(), UpdateError> {
        let mut file = file;
        for chunk in rx {
            file.write_all(&chunk)
                .map_err(|e| UpdateError::Io(format!("cannot write {dest_shown}: {e}")))?;
        }
        file.sync_all()
            .map_err(|e| UpdateError::Io(format!("cannot sync {dest_shown}: {e}")))
    });
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let streamed = async {
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                // A connection cut mid-body is a truncated download.
                Err(e) if got < size => {
                    tracing::debug!(%url, error = %e, got, size, "Download cut short.");
                    break;
                }
                Err(e) => return Err(network(url, e)),
            };
            got += chunk.len() as u64;
            if got > size {
                return Err(UpdateError::TooLarge { limit: size });
            }
            hasher.update(&chunk);
            if tx.send(chunk.to_vec()).is_err() {
                // The writer failed; its error is reported below.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(|e| UpdateError::Io(e.to_string()))?;
    streamed?;
    written?;
    if got < size {
        return Err(UpdateError::Truncated {
            expected: size,
            got,
        });
    }
    let digest = hex(&hasher.finalize());
    if digest != sha256 {
        return Err(UpdateError::ChecksumMismatch {
            expected: sha256.to_owned(),
            got: digest,
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
