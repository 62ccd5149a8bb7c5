//! The `voltd` command line.
//!
//! | command | does | exit |
//! |---|---|---|
//! | `voltd run` | runs the daemon | the daemon exit-code table (README) |
//! | `voltd enroll [--token T]` | enrolls once, stores the credentials and the install manifest, pre-generates the native services' passwords (all sealed where the host has a key store; on an enrolled host: seals plain files) | 0, 1 config, 2 unreachable, 4 rejected |
//! | `voltd status [--json]` | asks the running daemon | 0, 3 not running |
//! | `voltd logs [-f] [--tail N] [--json]` | the supervisor log stream | 0, 3 not running |
//! | `voltd config show` | effective config, secrets redacted | 0, 1 |
//! | `voltd provision [--dry-run] [--json]` | installs the services' servers (`provision_cmd.rs`) | 0, 1 |
//! | `voltd self-check` | a release candidate reads this config and state | 0 fit, 1 not |
//! | `voltd update-guard [--install-dir D]` | before each start: count trial starts, roll back | always 0 |
//! | `voltd terminal-helper` | one host terminal session on the connection in stdin (`voltd-terminal@.service`) | 0, 1 |

use crate::flags::Overrides;
use crate::logging;
use clap::{Parser, Subcommand};
use otp::supervisor::Shutdown;
use otp::{ExitCode, ExitReason};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use voltd_actors::admin;
use voltd_actors::cloud::enrollment;
use voltd_actors::cloud::tls;
use voltd_actors::config::{self, Loaded};
use voltd_actors::daemon::{self, StartError};
use voltd_actors::events::EventBus;
use voltd_actors::host::keystore::SecretStore;
use voltd_actors::services::resolve;

/// Exit status of `voltd status`/`voltd logs` when no daemon answers (the
/// LSB convention for "program is not running").
pub const NOT_RUNNING: i32 = 3;
/// Attempts `voltd enroll` makes on network errors before giving up.
pub const ENROLL_CLI_ATTEMPTS: u32 = 5;

#[derive(Debug, Parser)]
#[command(name = "voltd", version, about = "VOLT cluster daemon")]
pub struct Cli {
    /// Config file (default /etc/voltd/voltd.toml when it exists; env VOLTD_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Enroll this host with a one-time token and store the credentials.
    Enroll {
        /// The enrollment token (or TEAM_CLUSTER_ENROLLMENT_TOKEN).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Also write cloud_url and team_cluster_id to this config file.
        #[arg(long, value_name = "PATH")]
        write_config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Show the running daemon's status.
    Status {
        /// Print the raw JSON snapshot.
        #[arg(long)]
        json: bool,
        /// State directory of the daemon to ask.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Show the supervisor log stream.
    Logs {
        /// Keep streaming new records.
        #[arg(short, long)]
        follow: bool,
        /// Records of history to show first.
        #[arg(long, default_value_t = admin::DEFAULT_TAIL)]
        tail: usize,
        /// Print raw JSON lines.
        #[arg(long)]
        json: bool,
        /// State directory of the daemon to ask.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Make sure the managed services' servers are installed (MongoDB and
    /// MinIO from the catalogue; Redis from the OS package manager).
    Provision {
        #[command(flatten)]
        args: crate::provision_cmd::ProvisionArgs,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Check that this binary can run here: it reads the config and the
    /// state (what the updater asks of a new release before switching).
    SelfCheck,
    /// Run before every start of the unit (ExecStartPre): counts the starts
    /// of a release on trial and rolls it back after too many.
    UpdateGuard {
        /// Install directory with releases/, current and previous (default:
        /// `[update] install_dir` of the config, else /opt/voltd).
        #[arg(long, value_name = "DIR")]
        install_dir: Option<PathBuf>,
    },
    /// Serve one host terminal session on the connection passed as
    /// standard input (started by voltd-terminal.socket; runs the shell as
    /// the [terminal] user).
    TerminalHelper,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration with secrets redacted.
    Show {
        #[command(flatten)]
        overrides: Overrides,
    },
}

fn fail(code: i32, message: impl std::fmt::Display) -> i32 {
    eprintln!("voltd: {message}");
    code
}

/// Runs the parsed command; returns the process exit status.
pub fn main_with(cli: Cli) -> i32 {
    let env = config::process_env();
    match cli.command {
        Command::Run { overrides } => match config::load(cli.config.as_deref(), &env, &overrides.0)
        {
            Ok(eff) => run(eff),
            Err(e) => fail(ExitCode::Config.code(), e),
        },
        Command::Enroll {
            token,
            write_config,
            overrides,
        } => enroll(cli.config.as_deref(), &env, overrides, token, write_config),
        Command::Status { json, state_dir } => {
            let dir = state_dir_for(cli.config.as_deref(), &env, state_dir);
            status(&dir, json)
        }
        Command::Logs {
            follow,
            tail,
            json,
            state_dir,
        } => {
            let dir = state_dir_for(cli.config.as_deref(), &env, state_dir);
            logs(&dir, follow, tail, json)
        }
        Command::Provision { args, overrides } => {
            match config::load(cli.config.as_deref(), &env, &overrides.0) {
                Ok(eff) => crate::provision_cmd::provision(&eff, &args),
                Err(e) => fail(ExitCode::Config.code(), e),
            }
        }
        Command::SelfCheck => self_check(cli.config.as_deref(), &env),
        Command::UpdateGuard { install_dir } => {
            let state_dir = state_dir_for(cli.config.as_deref(), &env, None);
            // The guard never fails a start: an unreadable config falls
            // back to the default install directory.
            let install_dir = install_dir.unwrap_or_else(|| {
                config::load(cli.config.as_deref(), &env, &Overrides::default().0)
                    .map(|l| l.settings.update.install_dir.to_path_buf())
                    .unwrap_or_else(|_| {
                        PathBuf::from(voltd_actors::update::install::DEFAULT_INSTALL_DIR)
                    })
            });
            update_guard(install_dir, state_dir)
        }
        Command::TerminalHelper => terminal_helper(cli.config.as_deref(), &env),
        Command::Config {
            command: ConfigCommand::Show { overrides },
        } => match config::load(cli.config.as_deref(), &env, &overrides.0) {
            Ok(loaded) => {
                print!("{}", config::show(&loaded));
                0
            }
            Err(e) => fail(ExitCode::Config.code(), e),
        },
    }
}

/// `voltd terminal-helper`: logs to stderr (the journal), never stdout
/// (which may be the socket too).
fn terminal_helper(config_path: Option<&Path>, env: &config::Env) -> i32 {
    let loaded = config::load(config_path, env, &Overrides::default().0);
    let level = match &loaded {
        Ok(l) => l.settings.log_level.clone(),
        Err(_) => "info".to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    voltd_actors::remote::terminal::helper::serve_stdin(
        loaded
            .map(|l| l.settings.terminal)
            .map_err(|e| e.to_string()),
    )
}

/// `voltd self-check`: the new release's half of the updater's check.
fn self_check(config_path: Option<&Path>, env: &config::Env) -> i32 {
    let eff = match config::load(config_path, env, &Overrides::default().0) {
        Ok(e) => e,
        Err(e) => return fail(1, e),
    };
    match voltd_actors::update::selfcheck::check(&eff.settings) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            0
        }
        Err(e) => fail(1, e),
    }
}

/// `voltd update-guard`: never fails the start it guards (exit 0), says
/// what it did on stdout/stderr (the journal).
fn update_guard(install_dir: PathBuf, state_dir: PathBuf) -> i32 {
    use voltd_actors::update::install::InstallLayout;
    use voltd_actors::update::marker::{GuardOutcome, guard};
    match guard(&InstallLayout::new(install_dir, state_dir)) {
        Ok(GuardOutcome::Nothing) => {}
        Ok(GuardOutcome::Counted { starts }) => {
            println!("voltd update-guard: release on trial, start {starts}")
        }
        Ok(GuardOutcome::RolledBack { reason }) => {
            eprintln!("voltd update-guard: rolled back: {reason}")
        }
        Err(e) => eprintln!("voltd update-guard: {e}"),
    }
    0
}

/// The state directory for client commands: flag, else the config (even a
/// partial one), else the default.
fn state_dir_for(config_path: Option<&Path>, env: &config::Env, flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    config::layer::state_dir_hint(config_path, env)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `voltd run`.
pub fn run(eff: Loaded) -> i32 {
    if let Err(e) = logging::init(&eff.settings.log_level, eff.settings.log_format) {
        return fail(ExitCode::Config.code(), e);
    }
    logging::install_panic_hook();
    tls::install_default_provider();
    let settings = eff.settings;
    tracing::info!(
        cluster_id = %settings.team_cluster_id,
        cloud_url = %settings.cloud_url,
        state_dir = %settings.state_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "Starting voltd."
    );
    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        let handle = match daemon::start(settings) {
            Ok(h) => h,
            Err(StartError::Uninstalled(msg)) => {
                tracing::info!("{msg}");
                return ExitCode::Stopped;
            }
            Err(StartError::Config(msg)) => {
                tracing::error!(error = %msg, "Cannot start.");
                return ExitCode::Config;
            }
        };
        let root = handle.root.clone();
        actix_rt::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("Cannot install signal handlers; stop voltd with SIGKILL.");
                return;
            };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            root.do_send(Shutdown {
                code: ExitCode::Stopped,
                reason: "signal",
            });
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::warn!("Second signal: exiting at once.");
            std::process::exit(ExitCode::Stopped.code());
        });
        handle.wait().await
    });
    if code == ExitCode::Stopped {
        tracing::info!(exit_code = code.code(), "voltd stopped.");
    } else {
        tracing::error!(
            exit_code = code.code(),
            meaning = code.describe(),
            "voltd exiting."
        );
    }
    code.code()
}

/// `voltd enroll`.
fn enroll(
    config_path: Option<&Path>,
    env: &config::Env,
    overrides: Overrides,
    token: Option<String>,
    write_config: Option<PathBuf>,
) -> i32 {
    let mut eff = match config::load(config_path, env, &overrides.0) {
        Ok(e) => e,
        Err(e) => return fail(ExitCode::Config.code(), e),
    };
    if let Some(t) = token.filter(|t| !t.trim().is_empty()) {
        eff.settings.enrollment_token = Some(volt_protocol::register::Secret::new(t.trim()));
    }
    // Already enrolled: `voltd enroll` only reads the stored credentials
    // (and, as root with a key store, seals a plain file).
    let plain = eff.settings.credentials_file();
    let stored = plain.exists() || voltd_actors::host::keystore::sealed_path(&plain).exists();
    if !stored && eff.settings.enrollment_token.is_none() && eff.settings.daemon_password.is_none()
    {
        return fail(
            ExitCode::Config.code(),
            "no enrollment token: pass --token or set TEAM_CLUSTER_ENROLLMENT_TOKEN",
        );
    }
    let _ = logging::init(&eff.settings.log_level, eff.settings.log_format);
    tls::install_default_provider();
    let settings = eff.settings;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(ExitCode::Retryable.code(), e),
    };
    let result = rt.block_on(async {
        let tls = tls::client_config(settings.socket.ca_file.as_deref())
            .map_err(|e| ExitReason::fatal(ExitCode::Config, e.to_string()))?;
        let client = tls::http_client(&tls, enrollment::ENROLL_HTTP_TIMEOUT)
            .map_err(|e| ExitReason::fatal(ExitCode::Config, e.to_string()))?;
        let bus = EventBus::default();
        let resolve = enrollment::resolve(&settings, &client, &bus);
        // The daemon retries forever; an interactive command gives up.
        let limit = settings.socket.reconnect().max() * ENROLL_CLI_ATTEMPTS;
        let (creds, source) =
            tokio::time::timeout(limit.max(std::time::Duration::from_secs(60)), resolve)
                .await
                .map_err(|_| {
                    ExitReason::fatal(
                        ExitCode::Retryable,
                        format!("cannot reach {} (gave up retrying)", settings.cloud_url),
                    )
                })??;
        enrollment::ensure_manifest(&settings, &client, &creds).await;
        // The native services' generated passwords, made (and sealed) now
        // by root so the sandboxed daemon, which cannot seal, finds them.
        let s = settings.clone();
        tokio::task::spawn_blocking(move || {
            resolve::pregenerate(&s, SecretStore::shared()).map(|_| ())
        })
        .await
        .map_err(|e| ExitReason::fatal(ExitCode::Retryable, e.to_string()))?
        .map_err(|e| {
            ExitReason::fatal(
                ExitCode::Config,
                format!("pre-generating the services' passwords: {e}"),
            )
        })?;
        Ok::<_, ExitReason>((creds, source))
    });
    match result {
        Ok((creds, source)) => {
            if let Some(path) = write_config
                && let Err(e) = write_client_config(&path, &settings)
            {
                return fail(ExitCode::Config.code(), e);
            }
            let how = match source {
                enrollment::Source::Stored => "was already enrolled",
                enrollment::Source::Enrolled => "enrolled",
                enrollment::Source::Config => "uses the configured daemon password",
            };
            let plain = settings.credentials_file();
            let sealed = voltd_actors::host::keystore::sealed_path(&plain);
            let at = if sealed.exists() {
                format!("{} (sealed with systemd-creds)", sealed.display())
            } else {
                plain.display().to_string()
            };
            println!(
                "Cluster {} {how}; credentials stored in {at}.",
                creds.team_cluster_id
            );
            println!("Start the daemon with: voltd run");
            0
        }
        Err(ExitReason::Fatal { code, reason }) => fail(code.code(), reason),
        Err(other) => fail(ExitCode::Retryable.code(), other),
    }
}

/// Writes (or updates) `cloud_url`, `team_cluster_id` and `state_dir` in a
/// config file, keeping whatever else it holds.
fn write_client_config(path: &Path, s: &config::Settings) -> Result<(), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    doc["cloud_url"] = toml_edit::value(s.cloud_url.to_string());
    doc["team_cluster_id"] = toml_edit::value(s.team_cluster_id.to_string());
    doc["state_dir"] = toml_edit::value(s.state_dir.display().to_string());
    doc.remove("enrollment_token");
    voltd_actors::host::fsutil::write_atomic(path, doc.to_string().as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn ask(state_dir: &Path, req: Value) -> Result<admin::AdminClient, i32> {
    let socket = config::admin_socket(state_dir);
    admin::request(&socket, &req).await.map_err(|e| {
        fail(
            NOT_RUNNING,
            format!(
                "voltd is not running (no answer on {}: {e})",
                socket.display()
            ),
        )
    })
}

/// `voltd status`.
fn status(state_dir: &Path, raw: bool) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(1, e),
    };
    rt.block_on(async {
        let mut client = match ask(state_dir, json!({"op": "status"})).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let line = match client.lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => return fail(NOT_RUNNING, "voltd closed the connection without an answer"),
            Err(e) => return fail(NOT_RUNNING, e),
        };
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => return fail(1, format!("invalid answer from voltd: {e}")),
        };
        if v["ok"] != Value::Bool(true) {
            return fail(1, v["error"].as_str().unwrap_or("status unavailable"));
        }
        if raw {
            println!(
                "{}",
                serde_json::to_string_pretty(&v["status"]).unwrap_or_default()
            );
        } else {
            print!("{}", render_status(&v["status"]));
        }
        0
    })
}

/// Human rendering of a status snapshot.
pub fn render_status(s: &Value) -> String {
    let str_of = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    let up = s["uptimeSeconds"].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "voltd {} (pid {}, up {}h{:02}m{:02}s)\n",
        str_of(&s["version"]),
        s["pid"],
        up / 3600,
        up / 60 % 60,
        up % 60
    ));
    out.push_str(&format!(
        "cluster    {} @ {}\n",
        str_of(&s["clusterId"]),
        str_of(&s["cloudUrl"])
    ));
    let reason = s["reason"]
        .as_str()
        .map(|r| format!(" — {r}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "status     {} (server: {}){reason}\n",
        str_of(&s["status"]),
        str_of(&s["serverStatus"])
    ));
    if s["registered"] == Value::Bool(true) {
        out.push_str(&format!(
            "control    registered since {}\n",
            str_of(&s["registeredSince"])
        ));
    } else {
        out.push_str("control    not registered\n");
    }
    match s["lastHeartbeat"].as_object() {
        Some(h) => out.push_str(&format!(
            "heartbeat  last {} · {} ms · ok {} · failed {}\n",
            h.get("at").and_then(Value::as_str).unwrap_or("-"),
            h.get("latencyMs").cloned().unwrap_or(Value::Null),
            s["heartbeatsOk"],
            s["heartbeatsFailed"]
        )),
        None => out.push_str(&format!(
            "heartbeat  none yet (failed {})\n",
            s["heartbeatsFailed"]
        )),
    }
    if let Some(e) = s["lastHeartbeatError"].as_str() {
        out.push_str(&format!("           last error: {e}\n"));
    }
    if let Some(n) = s["terminalSessions"].as_u64() {
        out.push_str(&format!("terminal   {n} open session(s)\n"));
    }
    if let Some(services) = s["services"].as_object().filter(|m| !m.is_empty()) {
        out.push_str("services\n");
        for (name, v) in services {
            let mut line = format!("  {name:<8} {:<9}", str_of(&v["state"]));
            if let Some(ms) = v["probeLatencyMs"].as_f64() {
                line.push_str(&format!(" probe {ms:.1} ms"));
            }
            if let Some(pid) = v["pid"].as_u64() {
                line.push_str(&format!(" pid {pid}"));
            }
            if let Some(r) = v["restarts"].as_u64().filter(|r| *r > 0) {
                line.push_str(&format!(" restarts {r}"));
            }
            if let Some(e) = v["lastError"].as_str() {
                line.push_str(&format!(" — {e}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    if let Some(jobs) = s["jobs"].as_object() {
        out.push_str(&render_jobs(jobs));
    }
    if let Some(children) = s["children"].as_object() {
        out.push_str("actors\n");
        for (name, v) in children {
            let mut line = format!("  {name:<15} {}", str_of(&v["state"]));
            if let Some(r) = v["restarts"].as_u64().filter(|r| *r > 0) {
                line.push_str(&format!("  restarts {r}"));
            }
            if v["state"] != "running"
                && let Some(e) = v["lastExit"].as_str()
            {
                line.push_str(&format!("  last exit: {e}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The `jobs` part of a status snapshot: where the concurrency came from,
/// then one line per queue (its worker, or "no worker").
fn render_jobs(jobs: &serde_json::Map<String, Value>) -> String {
    let source = match jobs.get("source").and_then(Value::as_str) {
        Some("server") => "concurrency from the server",
        Some("config") => {
            "concurrency from the config (the server does not know runtime.config.get)"
        }
        _ => "concurrency from the config until the server answers",
    };
    let role = jobs
        .get("role")
        .and_then(Value::as_str)
        .map(|r| format!(", role {r}"))
        .unwrap_or_default();
    let mut out = format!("jobs       {source}{role}\n");
    for q in jobs
        .get("queues")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = q["queue"].as_str().unwrap_or("?");
        let worker = q["worker"].as_str().unwrap_or("?");
        let mut line = format!("  {name:<28} {worker:<11}");
        if q["concurrency"].as_u64().unwrap_or(0) > 0 {
            line.push_str(&format!(" busy {}/{} ·", q["busy"], q["concurrency"]));
        }
        line.push_str(&format!(
            " waiting {} · failed last hour {}",
            q["waiting"], q["failedLastHour"]
        ));
        if q["paused"] == Value::Bool(true) {
            line.push_str(" · paused");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Human rendering of one log record.
pub fn render_record(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return v.to_string();
    };
    if let Some(n) = map.get("lagged") {
        return format!("… {n} records skipped (reader too slow)");
    }
    let at = map.get("at").and_then(Value::as_str).unwrap_or("");
    let event = map.get("event").and_then(Value::as_str).unwrap_or("?");
    let mut fields = String::new();
    for (k, val) in map {
        if matches!(k.as_str(), "at" | "event" | "seq") {
            continue;
        }
        let shown = match val {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        fields.push_str(&format!(" {k}={shown}"));
    }
    format!("{at} {event}{fields}")
}

/// `voltd logs`.
fn logs(state_dir: &Path, follow: bool, tail: usize, raw: bool) -> i32 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(1, e),
    };
    rt.block_on(async {
        let mut client = match ask(
            state_dir,
            json!({"op": "logs", "tail": tail, "follow": follow}),
        )
        .await
        {
            Ok(c) => c,
            Err(code) => return code,
        };
        loop {
            match client.lines.next_line().await {
                Ok(Some(line)) => {
                    if raw {
                        println!("{line}");
                    } else {
                        match serde_json::from_str::<Value>(&line) {
                            Ok(v) => println!("{}", render_record(&v)),
                            Err(_) => println!("{line}"),
                        }
                    }
                }
                Ok(None) => return 0,
                Err(e) => return fail(1, e),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_render_on_one_line() {
        let v = json!({"seq": 3, "at": "2026-11-23T10:00:00.000Z", "event": "child-started", "child": "heartbeat", "restarts": 0});
        assert_eq!(
            render_record(&v),
            "2026-11-23T10:00:00.000Z child-started child=heartbeat restarts=0"
        );
        assert_eq!(
            render_record(&json!({"lagged": 4})),
            "… 4 records skipped (reader too slow)"
        );
    }

    #[test]
    fn status_renders_the_key_facts() {
        let s = json!({
            "status": "dependency-installation-failed", "reason": "redis: binary not found",
            "serverStatus": "dependency-installation-failed", "clusterId": "c1",
            "cloudUrl": "http://x", "registered": true, "registeredSince": "t0",
            "lastHeartbeat": {"at": "t1", "latencyMs": 1.5, "serverStatus": "connected"},
            "heartbeatsOk": 3, "heartbeatsFailed": 0, "version": "0.1.0", "pid": 7,
            "uptimeSeconds": 3725,
            "services": {"redis": {"state": "failed", "restarts": 2, "lastError": "binary not found"}},
            "children": {"heartbeat": {"state": "running", "restarts": 1}}
        });
        let out = render_status(&s);
        assert!(out.contains("up 1h02m05s"), "{out}");
        assert!(out.contains("status     dependency-installation-failed (server: dependency-installation-failed) — redis: binary not found"), "{out}");
        assert!(
            out.contains("heartbeat  last t1 · 1.5 ms · ok 3 · failed 0"),
            "{out}"
        );
        assert!(
            out.contains("redis    failed    restarts 2 — binary not found"),
            "{out}"
        );
        assert!(out.contains("heartbeat       running  restarts 1"), "{out}");
    }

    #[test]
    fn status_renders_worker_availability() {
        let s = json!({
            "jobs": {"source": "server", "role": "cluster", "queues": [
                {"queue": "ssh_import", "worker": "ssh-import", "concurrency": 2, "busy": 1,
                 "waiting": 3, "failedLastHour": 0, "paused": false},
                {"queue": "analysis_processing", "worker": "no worker", "concurrency": 0, "busy": 0,
                 "waiting": 5, "failedLastHour": 1, "paused": false}
            ]}
        });
        let out = render_status(&s);
        assert!(
            out.contains("jobs       concurrency from the server, role cluster"),
            "{out}"
        );
        assert!(
            out.contains("  ssh_import                   ssh-import  busy 1/2 · waiting 3 · failed last hour 0"),
            "{out}"
        );
        assert!(
            out.contains(
                "  analysis_processing          no worker   waiting 5 · failed last hour 1"
            ),
            "{out}"
        );
    }

    #[test]
    fn cli_parses_the_documented_commands() {
        for args in [
            vec![
                "voltd",
                "run",
                "--cloud-url",
                "http://x",
                "--cluster-id",
                "c",
            ],
            vec!["voltd", "enroll", "--token", "t"],
            vec!["voltd", "status", "--json"],
            vec!["voltd", "logs", "-f", "--tail", "5"],
            vec!["voltd", "--config", "/x.toml", "config", "show"],
            vec!["voltd", "run", "--log-format", "json"],
            vec!["voltd", "--config", "/x.toml", "self-check"],
            vec!["voltd", "update-guard", "--install-dir", "/opt/voltd"],
        ] {
            assert!(Cli::try_parse_from(&args).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["voltd", "run", "--log-format", "xml"]).is_err());
        assert!(Cli::try_parse_from(["voltd", "explode"]).is_err());
    }
}
