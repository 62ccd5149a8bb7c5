//! `voltd provision [--dry-run] [--json]`: the managed services' servers,
//! made present by hand with the same steps the daemon takes — the same
//! provisioner, built from the same configuration
//! (`voltd_actors::provision::source::load`: `[provision]` keys, the stored
//! install manifest, `[socket] ca_file`). `--deps-dir`, `--catalogue`,
//! `--mirror` and `--manifest-catalogue` are those keys' flags, so they
//! work for `voltd run` too. `--dry-run` prints the plan — per service the
//! binary in use, or what would be fetched (version, URL, SHA-256,
//! destination) — and changes nothing.
//!
//! Exit status: 0 when every native service has (or, dry, would get) a
//! server; 1 when one cannot (the reason is printed) or the configuration
//! or catalogue is invalid.

use voltd_actors::config::Loaded as Effective;
use voltd_actors::host::download::DownloadEvent;
use voltd_actors::provision::{ProvisionEvent, ServiceRequest, source};
use voltd_actors::services::ServiceMode;

/// The flags of `voltd provision`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProvisionArgs {
    /// Print what would be fetched; download and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON document (dry run) or one JSON event per line.
    #[arg(long)]
    pub json: bool,
}

fn fail(message: impl std::fmt::Display) -> i32 {
    eprintln!("voltd: {message}");
    1
}

/// Runs `voltd provision`; returns the exit status.
pub fn provision(eff: &Effective, args: &ProvisionArgs) -> i32 {
    let settings = &eff.settings;
    let reqs: Vec<ServiceRequest> = settings
        .services
        .enabled()
        .into_iter()
        .filter(|k| settings.services.get(*k).mode == ServiceMode::Native)
        .map(|k| ServiceRequest::from_settings(k, settings.services.get(k)))
        .collect();
    if reqs.is_empty() {
        println!("no native service is enabled: nothing to provision");
        return 0;
    }
    let provisioner = match source::load(settings) {
        Ok((p, warnings)) => {
            for w in warnings {
                eprintln!("voltd: warning: {w}");
            }
            p
        }
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async {
        if args.dry_run {
            let plan = provisioner.plan(&reqs).await;
            if args.json {
                match serde_json::to_string_pretty(&plan) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail(e),
                }
            } else {
                print!("{plan}");
            }
            return if plan.is_ok() { 0 } else { 1 };
        }
        let mut failed = 0;
        for req in &reqs {
            let json = args.json;
            let result = provisioner
                .ensure(req, |event| print_event(&event, json))
                .await;
            match result {
                Ok(ready) if !json => println!(
                    "{}: ready: {} {}",
                    ready.service,
                    ready.binary.display(),
                    ready
                        .version
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "(version not checked)".into())
                ),
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "event": "failed",
                                "service": e.service,
                                "step": e.step,
                                "status": e.status().as_str(),
                                "reason": e.reason(),
                            })
                        );
                    } else {
                        eprintln!("voltd: {e} ({})", e.status().as_str());
                    }
                }
            }
        }
        if failed > 0 { 1 } else { 0 }
    })
}

fn print_event(event: &ProvisionEvent, json: bool) {
    if json {
        if let Ok(s) = serde_json::to_string(event) {
            println!("{s}");
        }
        return;
    }
    match event {
        ProvisionEvent::PassedOver {
            service,
            binary,
            reason,
        } => println!("{service}: not using {}: {reason}", binary.display()),
        ProvisionEvent::Fetching {
            service,
            version,
            url,
            dest,
        } => println!(
            "{service}: fetching {version} from {url} into {}",
            dest.display()
        ),
        ProvisionEvent::Download { service, progress } => match progress {
            DownloadEvent::Started {
                offset: o, total, ..
            } if *o > 0 => println!(
                "{service}: resuming at {o} of {} bytes",
                total.map_or_else(|| "?".to_owned(), |t| t.to_string())
            ),
            DownloadEvent::Progress {
                received,
                total: Some(t),
            } if *t > 0 => println!("{service}: {}% of {t} bytes", received * 100 / t),
            DownloadEvent::Retrying { error, .. } => {
                println!("{service}: retrying after: {error}")
            }
            DownloadEvent::Verified { size } => {
                println!("{service}: {size} bytes, sha256 verified")
            }
            _ => {}
        },
        ProvisionEvent::Unpacking { service, .. } => println!("{service}: unpacking"),
        ProvisionEvent::Installed {
            service, binary, ..
        } => println!("{service}: installed {}", binary.display()),
        ProvisionEvent::Found { .. } | ProvisionEvent::Retrying { .. } => {}
    }
}
