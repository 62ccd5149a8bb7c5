//! Logging setup: human-readable lines by default, JSON with
//! `--log-format json` (one object per line, as the reference daemon's pino
//! output in production). Logs go to stdout, where journald or a container
//! runtime picks them up; command output of the CLI goes to stdout too and
//! errors to stderr.

use tracing_subscriber::EnvFilter;
use voltd_actors::config::LogFormat;

/// Installs the global subscriber. `level` is a level (`info`) or any
/// tracing filter (`voltd_actors=debug,info`).
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid log level {level:?}: {e}"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only for a person at a terminal, never into a journal.
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))?;
    // Libraries that log through the `log` crate (tungstenite logs whole
    // frames at trace level, register and heartbeat frames carry the daemon
    // password) stay at info unless a full filter expression asks otherwise.
    if is_bare_verbose(level) {
        log::set_max_level(log::LevelFilter::Info);
    }
    Ok(())
}

fn is_bare_verbose(level: &str) -> bool {
    matches!(
        level.trim().to_ascii_lowercase().as_str(),
        "trace" | "debug"
    )
}

/// A bare `debug`/`trace` raises voltd's own crates only: libraries log
/// frame contents at those levels (the register frame carries the daemon
/// password). A full filter expression is taken as written.
pub fn directive(level: &str) -> String {
    if is_bare_verbose(level) {
        let l = level.trim().to_ascii_lowercase();
        format!("info,voltd={l},voltd_actors={l},volt_protocol={l}")
    } else {
        level.trim().to_owned()
    }
}

/// Routes panics through the logger (with their location) so a panic in any
/// task leaves a line in the journal next to the supervisor's reaction.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        tracing::error!(%location, panic = %message, "Panic.");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_levels_apply_to_voltd_crates_only() {
        assert_eq!(directive("info"), "info");
        assert_eq!(
            directive(" DEBUG "),
            "info,voltd=debug,voltd_actors=debug,volt_protocol=debug"
        );
        assert_eq!(directive("tungstenite=trace"), "tungstenite=trace");
        assert!(EnvFilter::try_new(directive("trace")).is_ok());
    }
}
