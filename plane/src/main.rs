//! `volt-plane`: run a local VOLT control plane, or create a cluster on one.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use volt_plane::PlaneConfig;

/// Exit code for a plane that could not start (bad data file, port in use).
const EXIT_START_FAILED: u8 = 2;
/// Exit code for a failed `create-cluster` call.
const EXIT_REQUEST_FAILED: u8 = 1;
/// Timeout of the `create-cluster` HTTP call: the plane answers at once.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "volt-plane",
    version,
    about = "A light reference VOLT control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the daemon protocol and the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value_t = volt_plane::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// JSON file for cluster records (holds daemon passwords; written 0600).
        #[arg(long)]
        data_file: Option<PathBuf>,
        /// URL daemons and installers use (default http://<listen address>).
        #[arg(long)]
        public_url: Option<String>,
        /// Heartbeat timeout before a cluster is marked disconnected.
        #[arg(long, default_value_t = millis(volt_plane::DEFAULT_HEARTBEAT_TIMEOUT))]
        heartbeat_timeout_ms: u64,
        /// Interval of the heartbeat/delete/update timeout sweep.
        #[arg(long, default_value_t = millis(volt_plane::DEFAULT_SWEEP_INTERVAL))]
        sweep_interval_ms: u64,
        /// Default timeout of a server→daemon command.
        #[arg(long, default_value_t = millis(volt_plane::DEFAULT_COMMAND_TIMEOUT))]
        command_timeout_ms: u64,
        /// Bytes queued for one streamed download before a client too slow
        /// to keep up has its transfer aborted.
        #[arg(long, default_value_t = volt_plane::DEFAULT_STREAM_BUFFER_LIMIT)]
        stream_buffer_limit: usize,
        /// Bytes of terminal output queued for one WebSocket client before
        /// a client too slow to keep up is closed (1013).
        #[arg(long, default_value_t = volt_plane::DEFAULT_SESSION_BUFFER_LIMIT)]
        session_buffer_limit: usize,
        /// Directory of signed releases served under /downloads/ (default:
        /// the one `release publish` uses).
        #[arg(long, env = "VOLT_PLANE_RELEASES_DIR")]
        releases_dir: Option<PathBuf>,
        /// Behave like a strict reference server: announce no extension
        /// (daemons then send only reference payload shapes).
        #[arg(long)]
        no_extensions: bool,
        /// Another host name the console and person API answer to (besides
        /// loopback, the listen address and the public URL's host);
        /// repeatable. Protects against DNS rebinding.
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Human)]
        log_format: LogFormat,
    },
    /// Manage signed voltd releases.
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Create a cluster on a running plane and print how to install it
    /// (authenticates with VOLT_PLANE_ADMIN_TOKEN).
    CreateCluster {
        /// Base URL of the plane.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Cluster name.
        #[arg(long)]
        name: Option<String>,
        /// Print the plane's JSON answer instead of the summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Sign FILE as voltd version V with the plane's release key (created,
    /// 0600, at first use) and make it the latest for its platform.
    Publish {
        /// Release version (1..64 characters of [A-Za-z0-9.+_-]).
        #[arg(long)]
        version: String,
        /// Operating system the binary is for.
        #[arg(long, default_value = "linux")]
        os: String,
        /// Architecture the binary is for (default: this machine's).
        #[arg(long, default_value = std::env::consts::ARCH)]
        arch: String,
        /// Releases directory (default: the one `serve` uses).
        #[arg(long, env = "VOLT_PLANE_RELEASES_DIR")]
        releases_dir: Option<PathBuf>,
        /// The binary.
        file: PathBuf,
    },
    /// Print the public key hosts pin (base64; `--pem` for openssl).
    Key {
        #[arg(long, env = "VOLT_PLANE_RELEASES_DIR")]
        releases_dir: Option<PathBuf>,
        #[arg(long)]
        pem: bool,
    },
}

/// The admin token, from the environment (never a flag: flags show in
/// process lists).
const ADMIN_TOKEN_ENV: &str = "VOLT_PLANE_ADMIN_TOKEN";

fn admin_token_from_env() -> Result<Option<volt_plane::AdminToken>, String> {
    match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => volt_plane::AdminToken::new(t.trim())
            .map(Some)
            .map_err(|e| format!("{ADMIN_TOKEN_ENV}: {e}")),
        _ => Ok(None),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_file,
            public_url,
            heartbeat_timeout_ms,
            sweep_interval_ms,
            command_timeout_ms,
            stream_buffer_limit,
            session_buffer_limit,
            releases_dir,
            no_extensions,
            allowed_hosts,
            log_format,
        } => {
            init_logging(log_format);
            let admin_token = match admin_token_from_env() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("volt-plane: {e}");
                    return ExitCode::from(EXIT_START_FAILED);
                }
            };
            let cfg = PlaneConfig {
                admin_token,
                allowed_hosts,
                listen,
                data_file,
                public_url,
                heartbeat_timeout: Duration::from_millis(heartbeat_timeout_ms),
                sweep_interval: Duration::from_millis(sweep_interval_ms),
                command_timeout: Duration::from_millis(command_timeout_ms),
                stream_buffer_limit,
                session_buffer_limit,
                releases_dir: Some(
                    releases_dir.unwrap_or_else(volt_plane::ReleaseStore::default_dir),
                ),
                announce_extensions: !no_extensions,
                ..PlaneConfig::default()
            };
            serve(cfg).await
        }
        Command::Release { command } => release(command),
        Command::CreateCluster { url, name, json } => create_cluster(&url, name, json).await,
    }
}

fn release(command: ReleaseCommand) -> ExitCode {
    let dir = |d: Option<PathBuf>| d.unwrap_or_else(volt_plane::ReleaseStore::default_dir);
    match command {
        ReleaseCommand::Publish {
            version,
            os,
            arch,
            releases_dir,
            file,
        } => {
            let store = volt_plane::ReleaseStore::new(dir(releases_dir));
            let platform = match volt_protocol::release::Platform::new(&os, &arch) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("volt-plane: {e}");
                    return ExitCode::from(EXIT_REQUEST_FAILED);
                }
            };
            match store.publish(&version, &platform, &file) {
                Ok(m) => {
                    println!("Published voltd {} for {platform}", m.version);
                    println!("  size    {} bytes", m.size);
                    println!("  sha256  {}", m.sha256);
                    println!("  key     {}", m.key_id);
                    println!(
                        "  in      {}",
                        store.release_dir(&m.version, &platform).display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("volt-plane: {e}");
                    ExitCode::from(EXIT_REQUEST_FAILED)
                }
            }
        }
        ReleaseCommand::Key { releases_dir, pem } => {
            let store = volt_plane::ReleaseStore::new(dir(releases_dir));
            match store.public_key() {
                Ok(Some(k)) if pem => {
                    print!("{}", k.to_pem());
                    ExitCode::SUCCESS
                }
                Ok(Some(k)) => {
                    println!("{}", k.to_base64());
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    eprintln!(
                        "volt-plane: no release key in {} yet (it is created by the first `release publish`)",
                        store.dir().display()
                    );
                    ExitCode::from(EXIT_REQUEST_FAILED)
                }
                Err(e) => {
                    eprintln!("volt-plane: {e}");
                    ExitCode::from(EXIT_REQUEST_FAILED)
                }
            }
        }
    }
}

/// Raises the open-file limit to its hard maximum: one socket per daemon,
/// and the usual soft limit (1024) is far below a plane's clusters.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, error = %e, "Cannot raise the open-file limit.");
    }
}

async fn serve(cfg: PlaneConfig) -> ExitCode {
    raise_nofile();
    let plane = match volt_plane::start(cfg).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "Control plane failed to start.");
            eprintln!("volt-plane: {e}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    if plane.admin_token_generated()
        && let Some(token) = plane.admin_token()
    {
        // Shown once, on stderr (not in the log): only its hash is kept.
        eprintln!(
            "\nvolt-plane: the console's admin token (shown once; only its hash is stored):\n\n    {token}\n\nOpen {} and log in with it; scripts send `Authorization: Bearer <token>`.\nLost it? Stop the plane, delete the \"admin\" entry from the data file, start again.\n",
            plane.base_url()
        );
    }
    wait_for_signal().await;
    tracing::info!("Shutting down.");
    plane.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn create_cluster(url: &str, name: Option<String>, json: bool) -> ExitCode {
    match request_cluster(url, name).await {
        Ok(body) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
                );
            } else {
                let d = &body["data"];
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                println!("Cluster:          {}", s(&d["teamCluster"]["_id"]));
                println!("Name:             {}", s(&d["teamCluster"]["name"]));
                println!(
                    "Enrollment token: {} (single use)",
                    s(&d["enrollmentToken"])
                );
                println!();
                println!("Install on a Linux host (it asks for the token):");
                println!("  {}", s(&d["installCommand"]));
                println!();
                println!("Or enroll voltd:");
                println!("  {}", s(&d["voltdCommand"]));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("volt-plane: {e}");
            ExitCode::from(EXIT_REQUEST_FAILED)
        }
    }
}

async fn request_cluster(url: &str, name: Option<String>) -> Result<serde_json::Value, String> {
    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{}/api/clusters", url.trim_end_matches('/'));
    let body = match name {
        Some(n) => serde_json::json!({ "name": n }),
        None => serde_json::json!({}),
    };
    let token = admin_token_from_env()?.ok_or_else(|| {
        format!(
            "set {ADMIN_TOKEN_ENV} to the plane's admin token (it printed it at its first start)"
        )
    })?;
    let resp = client
        .post(&endpoint)
        .bearer_auth(token.expose())
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    let status = resp.status();
    let value: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("{endpoint} answered {status} without JSON: {e}"))?;
    if !status.is_success() {
        let msg = value["message"].as_str().unwrap_or("request failed");
        return Err(format!("{endpoint} answered {status}: {msg}"));
    }
    Ok(value)
}
