//! `voltd`: the VOLT cluster daemon.
use clap::Parser;

fn main() {
    let cli = match voltd::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; every other parse error is a
            // configuration error (exit 1; 2 means "retryable" for voltd).
            let code = if e.use_stderr() { 1 } else { 0 };
            std::process::exit(code);
        }
    };
    std::process::exit(voltd::cli::main_with(cli));
}
