//! Embeds the console's npm dependencies (xterm.js and its fit addon) into
//! the volt-plane binary.
//!
//! They come from `plane/console/node_modules`, which `npm ci` fills from
//! the pinned `plane/console/package-lock.json` (`.ci/install-services`
//! runs it). This script never touches the network: it copies what is
//! there into `OUT_DIR`. When the packages are missing (nobody ran the
//! install step) the build still succeeds, with a warning, and the console
//! shows the terminal as unavailable and says how to fix it; the browser
//! tests catch such a build.

use std::path::{Path, PathBuf};

/// What the console serves under `/console/vendor/`, and where npm puts it.
const VENDORED: [(&str, &str); 3] = [
    ("xterm.mjs", "node_modules/@xterm/xterm/lib/xterm.mjs"),
    ("xterm.css", "node_modules/@xterm/xterm/css/xterm.css"),
    (
        "addon-fit.mjs",
        "node_modules/@xterm/addon-fit/lib/addon-fit.mjs",
    ),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let console = manifest.join("console");
    println!(
        "cargo::rerun-if-changed={}",
        console.join("package-lock.json").display()
    );
    let mut missing = Vec::new();
    for (name, rel) in VENDORED {
        let src = console.join(rel);
        // A path that does not exist makes cargo re-run this script on
        // every build, so a later `npm ci` is picked up.
        println!("cargo::rerun-if-changed={}", src.display());
        let dst = out.join(name);
        match std::fs::read(&src) {
            Ok(bytes) => write(&dst, &strip_source_map(&bytes)),
            Err(_) => {
                missing.push(rel);
                write(&dst, b"");
            }
        }
    }
    let bundled = missing.is_empty();
    let version = read_version(&console.join("node_modules/@xterm/xterm/package.json"));
    if !bundled {
        println!(
            "cargo::warning=volt-plane console: {} missing; the terminal tab will be unavailable. Run `npm ci --prefix plane/console` (or .ci/install-services) and build again.",
            missing.join(", ")
        );
    }
    write(
        &out.join("vendor.rs"),
        format!(
            "/// xterm.js and its fit addon were found and embedded.\npub const XTERM_BUNDLED: bool = {bundled};\n/// The embedded @xterm/xterm version (empty when not bundled).\npub const XTERM_VERSION: &str = {version:?};\n"
        )
        .as_bytes(),
    );
}

/// Drops the trailing `//# sourceMappingURL=…` line: the maps are not
/// served, and a browser with its developer tools open would ask for them.
fn strip_source_map(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("//# sourceMappingURL="))
        .collect();
    let mut out = kept.join("\n").into_bytes();
    out.push(b'\n');
    out
}

fn read_version(package_json: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(package_json) else {
        return String::new();
    };
    // `"version": "6.0.0"` — enough of a parser for a package.json.
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("\"version\"")?
                .trim_start()
                .strip_prefix(':')?;
            Some(
                rest.trim()
                    .trim_end_matches(',')
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .unwrap_or_default()
}

fn write(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return;
    }
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
}
