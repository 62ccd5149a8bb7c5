//! Where a program is: looked up the way `execvp` would (services start
//! their servers by name, provisioning checks what is installed).

use std::path::{Path, PathBuf};

/// The search path when the environment has none (the one systemd gives
/// services, plus `/usr/local`).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `program` the way `execvp` would: as given when it contains a
/// `/`, else in the directories of `path`.
pub fn find_binary(program: &str, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    path.unwrap_or(DEFAULT_PATH)
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_like_execvp() {
        assert_eq!(
            find_binary("sh", Some("/nonexistent:/bin")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_binary("/bin/sh", None), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_binary("no-such-binary-voltd", None), None);
        assert_eq!(find_binary("/nonexistent/redis-server", None), None);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            find_binary(plain.to_str().unwrap(), None),
            None,
            "not executable"
        );
    }
}
