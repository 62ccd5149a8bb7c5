//! The chaos suite's long run (not a test): `cargo bench --bench chaos --
//! [SCENARIO…]`, normally through `scripts/chaos.sh` (as root). The
//! scenarios are `testkit::chaos`'s, with the counts the README quotes;
//! `tests/it/chaos.rs` runs the same code with small counts in CI.
//!
//! Scenarios: `services` (50 kills of each managed server), `voltd`
//! (25 kills during enrollment of fresh clusters + 100 of a running
//! daemon), `plane` (20 restarts), `partition` (60 s, root), `throttle`
//! (a 20 MB download over 1 Mbit/s + 200 ms, root). None named: all.
//! `--seed N` fixes the kill points (default: the time); `--voltd PATH`
//! runs another voltd binary (e.g. an older release, for a comparison).

use std::path::Path;
use std::time::Duration;
use testkit::chaos;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    // The in-process plane's log, when asked for (`RUST_LOG=volt_plane=info`).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let known = ["services", "voltd", "plane", "partition", "throttle"];
    let picked: Vec<&str> = known
        .iter()
        .copied()
        .filter(|k| args.iter().any(|a| a == k))
        .collect();
    let run = |name: &str| picked.is_empty() || picked.contains(&name);
    let bin_arg = args
        .iter()
        .position(|a| a == "--voltd")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let bin_path = bin_arg.unwrap_or_else(|| env!("CARGO_BIN_EXE_voltd").to_owned());
    let bin = Path::new(&bin_path);
    let system = actix_rt::System::new();
    system.block_on(async move {
        if run("services") {
            println!("[chaos] {}", chaos::service_kills(50).await);
        }
        if run("voltd") {
            println!("[chaos] {}", chaos::voltd_kills(bin, 25, 100, seed).await);
        }
        if run("plane") {
            println!("[chaos] {}", chaos::plane_restarts(bin, 20).await);
        }
        if run("partition") {
            testkit::needs_root();
            println!(
                "[chaos] {}",
                chaos::partition(bin, Duration::from_secs(60)).await
            );
        }
        if run("throttle") {
            testkit::needs_root();
            println!(
                "[chaos] {}",
                chaos::throttled_download(bin, 20_000_000, None).await
            );
        }
    });
}
