//! The provisioner as the configuration describes it — one code path for
//! the daemon's service actors and for `voltd provision`.
//!
//! [`load`] assembles it from the `[provision]` keys (deps directory,
//! catalogue file, mirror, how far the install manifest's catalogue is
//! trusted), the stored install manifest and `[socket] ca_file` (the
//! downloads trust the same roots as the control channel). It reads files:
//! call it off the actor thread. [`ProvisionSource`] is the daemon's
//! handle: it builds the provisioner on first use and again whenever the
//! install manifest changed (enrollment stores it after the services
//! started; its catalogue may name a mirror).

use super::{Catalogue, ManifestPolicy, ProvisionSettings, Provisioner, load_catalogue};
use crate::cloud::credentials;
use crate::cloud::tls;
use crate::config::{ManifestCatalogue, Settings};
use crate::host::download::{DownloadOptions, Downloader};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

/// The manifest trust policy a `[provision] manifest_catalogue` value means.
pub fn manifest_policy(c: ManifestCatalogue) -> ManifestPolicy {
    match c {
        ManifestCatalogue::MirrorOnly => ManifestPolicy::MirrorOnly,
        ManifestCatalogue::Full => ManifestPolicy::Full,
        ManifestCatalogue::Ignore => ManifestPolicy::Ignore,
    }
}

/// The catalogue `settings` describe (with the stored install manifest's
/// part), plus warnings worth logging. Blocking.
pub fn catalogue(settings: &Settings) -> Result<(Catalogue, Vec<String>), String> {
    let mut warnings = Vec::new();
    let manifest = match credentials::load_manifest(&settings.manifest_file()) {
        Ok(m) => m,
        Err(e) => {
            warnings.push(format!("install manifest unreadable, ignored: {e}"));
            None
        }
    };
    let p = &settings.provision;
    let (catalogue, more) = load_catalogue(
        p.catalogue.as_deref(),
        manifest.as_ref(),
        manifest_policy(p.manifest_catalogue),
        p.mirror.as_deref(),
    )
    .map_err(|e| format!("catalogue: {e}"))?;
    warnings.extend(more);
    Ok((catalogue, warnings))
}

/// The provisioner `settings` describe, plus warnings worth logging.
/// Blocking (reads the catalogue file, the manifest and the CA file).
pub fn load(settings: &Settings) -> Result<(Provisioner, Vec<String>), String> {
    let (catalogue, warnings) = catalogue(settings)?;
    let opts = DownloadOptions::default();
    tls::install_default_provider();
    let roots =
        tls::client_config(settings.socket.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let client = tls::download_client(&roots, opts.connect_timeout).map_err(|e| e.to_string())?;
    let provisioner = Provisioner::with_downloader(
        ProvisionSettings::new(settings.deps_dir()),
        catalogue,
        Downloader::with_client(client, opts),
    );
    Ok((provisioner, warnings))
}

/// A provisioner and the install manifest's modification time it was
/// built for.
type Built = (Option<SystemTime>, Provisioner);

/// The daemon's provisioner, rebuilt when the install manifest changes.
/// Lives on the daemon's single actix thread; cheap to clone.
#[derive(Clone)]
pub struct ProvisionSource {
    settings: Arc<Settings>,
    /// The provisioner and the manifest stamp it was built for.
    cached: Rc<RefCell<Option<Built>>>,
}

impl ProvisionSource {
    pub fn new(settings: Arc<Settings>) -> Self {
        ProvisionSource {
            settings,
            cached: Rc::default(),
        }
    }

    /// The current provisioner; `Err` says why none can be built (a
    /// catalogue file that went bad, an unreadable CA file).
    pub async fn get(&self) -> Result<Provisioner, String> {
        let stamp = {
            let settings = self.settings.clone();
            tokio::task::spawn_blocking(move || {
                crate::cloud::credentials::manifest_stamp(&settings)
            })
            .await
            .ok()
            .flatten()
        };
        if let Some((built_for, p)) = &*self.cached.borrow()
            && *built_for == stamp
        {
            return Ok(p.clone());
        }
        let settings = self.settings.clone();
        let (p, warnings) = tokio::task::spawn_blocking(move || load(&settings))
            .await
            .map_err(|e| format!("building the provisioner failed: {e}"))??;
        for w in warnings {
            tracing::warn!(warning = %w, "Provisioning catalogue.");
        }
        *self.cached.borrow_mut() = Some((stamp, p.clone()));
        Ok(p)
    }
}
