//! `[services.*]` configuration for local runs (the journey, the
//! benchmarks): each managed service on a free loopback port, run by its
//! real server when installed, else by the stand-in `.ci/install-services`
//! installs (SecantusDB for `mongod`, s3s-fs for `minio`). Every choice is
//! returned as a line to print, so the output says plainly what runs.

use std::path::{Path, PathBuf};

/// Where `.ci/install-services` puts the stand-ins.
pub fn ci_dir() -> PathBuf {
    std::env::var("VOLTD_CI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/voltd-ci")
        })
}

/// `binary` in `PATH`, if installed.
pub fn in_path(binary: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file())
}

/// A free loopback port (the kernel picks; released at once for the
/// service to bind).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `[services.*]` TOML and one human line per service.
pub fn services_config() -> std::io::Result<(String, Vec<String>)> {
    let ci = ci_dir();
    let services = [
        ("redis", "redis-server", None, "redis-server {config_file}"),
        (
            "mongo",
            "mongod",
            Some(("SecantusDB", ci.join("venv/bin/secantusd-py"))),
            "{bin} --host {bind} --port {port} --storage-path {data_dir} --auth",
        ),
        (
            "minio",
            "minio",
            Some(("s3s-fs", ci.join("cargo/bin/s3s-fs"))),
            "{bin} --host {bind} --port {port} --access-key {user} --secret-key {password} {data_dir}",
        ),
    ];
    let mut text = String::new();
    let mut notes = Vec::new();
    for (name, real, stand_in, template) in services {
        let port = free_port()?;
        text.push_str(&format!("\n[services.{name}]\nport = {port}\n"));
        match (in_path(real), stand_in) {
            (Some(p), _) => notes.push(format!("{name}: {} (port {port})", p.display())),
            (None, Some((label, path))) if path.is_file() => {
                notes.push(format!(
                    "{name}: {real} is not installed; using the stand-in {label} ({}) on port {port}",
                    path.display()
                ));
                let command = template.replace("{bin}", &path.display().to_string());
                text.push_str(&format!("command = {command:?}\n"));
            }
            (None, _) => notes.push(format!(
                "{name}: neither {real} nor its stand-in is installed (run .ci/install-services); voltd will report it"
            )),
        }
    }
    Ok((text, notes))
}
