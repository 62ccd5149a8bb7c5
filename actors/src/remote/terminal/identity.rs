//! Who a terminal's shell runs as, and the clean login environment it
//! gets: the configured `[terminal] user` — a dedicated login account,
//! never root and never the account of voltd (the peer that asked for the
//! shell) unless `allow_daemon_user` says so for development; switching to
//! it needs root (the helper, or voltd itself when it runs as root) and
//! `setpriv`. The shell comes from the config, the passwd entry, or
//! `/bin/bash`; the environment is built from scratch (voltd's own
//! environment may hold the daemon password). Every refusal is a 403 with
//! the reason; nothing falls back to voltd's account.

use super::AttachError;
use crate::config::TerminalSettings;
use nix::unistd::{Uid, User};
use std::path::{Path, PathBuf};

/// `PATH` before the login shell's profile runs (the Debian/Ubuntu default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Shell when neither the config nor the passwd entry names one.
pub const FALLBACK_SHELL: &str = "/bin/bash";

/// What the reference sets, and what the terminal emulators the VOLT UI
/// embeds understand.
const TERM: &str = "xterm-256color";

/// Where `setpriv` (util-linux) is looked for when switching users.
const SETPRIV_PATHS: [&str; 4] = [
    "/usr/bin/setpriv",
    "/bin/setpriv",
    "/usr/sbin/setpriv",
    "/sbin/setpriv",
];

/// The only variables passed from voltd's environment to the shell (locale
/// and time zone); everything else is set explicitly.
const PASSED_ENV: [&str; 4] = ["LANG", "LANGUAGE", "LC_ALL", "TZ"];

/// Who a shell runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: PathBuf,
    pub(super) shell: PathBuf,
    /// voltd is root and the user is someone else: switch with `setpriv`.
    pub(super) switch: bool,
}

/// A passwd entry, reduced to what a shell needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: PathBuf,
}

impl From<User> for Account {
    fn from(u: User) -> Self {
        Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }
    }
}

/// Looks the configured account up (a passwd lookup: blocking, so this
/// runs in the helper, never on an actor thread) and decides how to run
/// the shell. `euid`: who runs the helper; `peer`: the uid of the voltd
/// that asked.
pub(super) fn resolve_identity(
    settings: &TerminalSettings,
    euid: Uid,
    peer: u32,
) -> Result<Identity, AttachError> {
    let name: &str = &settings.user;
    let account: Account = User::from_name(name)
        .map_err(|e| AttachError::new(500, format!("cannot look up terminal user {name}: {e}")))?
        .ok_or_else(|| {
            AttachError::new(
                403,
                format!(
                    "the terminal account {name} does not exist on this host: install.sh creates it; or name another login account in [terminal] user"
                ),
            )
        })?
        .into();
    plan_identity(
        settings.shell.as_deref(),
        euid.as_raw(),
        peer,
        settings.allow_daemon_user,
        account,
    )
}

/// The pure part of [`resolve_identity`].
pub(super) fn plan_identity(
    configured_shell: Option<&Path>,
    euid: u32,
    peer: u32,
    allow_daemon_user: bool,
    account: Account,
) -> Result<Identity, AttachError> {
    if account.uid == 0 {
        return Err(AttachError::new(
            403,
            format!(
                "the terminal account {} is root: a terminal never runs as root (use sudo inside it)",
                account.name
            ),
        ));
    }
    if account.uid == peer && !allow_daemon_user {
        return Err(AttachError::new(
            403,
            format!(
                "the terminal account {} (uid {}) is the account voltd runs as, whose shell could read voltd's credentials; name a dedicated login account in [terminal] user",
                account.name, account.uid
            ),
        ));
    }
    let switch = account.uid != euid;
    if switch && euid != 0 {
        return Err(AttachError::new(
            403,
            format!(
                "the host terminal runs as {} (uid {}), but this process runs as uid {euid} and only root can switch accounts: install the terminal helper (voltd-terminal.socket, install.sh does) or run voltd as root",
                account.name, account.uid
            ),
        ));
    }
    let shell = match configured_shell {
        Some(s) => s.to_path_buf(),
        None if !account.shell.as_os_str().is_empty() => account.shell.clone(),
        None => PathBuf::from(FALLBACK_SHELL),
    };
    Ok(Identity {
        name: account.name,
        uid: account.uid,
        gid: account.gid,
        home: account.home,
        shell,
        switch,
    })
}

/// The command line and environment of a login shell for `id`:
/// `setsid --ctty` makes the shell a session leader with the PTY (its
/// stdin) as controlling terminal, `setpriv` switches the account (both
/// util-linux; no code of ours runs between fork and exec).
pub(super) fn shell_command(
    id: &Identity,
    setsid: &Path,
    setpriv: Option<&Path>,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(setsid);
    cmd.arg("--ctty").arg("--");
    if let Some(setpriv) = setpriv {
        cmd.arg(setpriv);
        cmd.arg(format!("--reuid={}", id.uid));
        cmd.arg(format!("--regid={}", id.gid));
        cmd.arg("--init-groups");
        cmd.arg("--");
    }
    cmd.arg(&id.shell);
    cmd.arg("-l");
    cmd.env_clear();
    for key in PASSED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("TERM", TERM);
    cmd.env("HOME", &id.home);
    cmd.env("USER", &id.name);
    cmd.env("LOGNAME", &id.name);
    cmd.env("SHELL", &id.shell);
    cmd.env("PATH", DEFAULT_PATH);
    let cwd = if id.home.is_dir() {
        id.home.as_path()
    } else {
        Path::new("/")
    };
    cmd.current_dir(cwd);
    cmd
}

/// Where `setsid` (util-linux) is looked for.
const SETSID_PATHS: [&str; 4] = [
    "/usr/bin/setsid",
    "/bin/setsid",
    "/usr/sbin/setsid",
    "/sbin/setsid",
];

pub(super) fn find_setsid() -> Option<&'static Path> {
    SETSID_PATHS.iter().map(Path::new).find(|p| p.is_file())
}

pub(super) fn find_setpriv() -> Option<&'static Path> {
    SETPRIV_PATHS.iter().map(Path::new).find(|p| p.is_file())
}

/// Makes the terminal the user's, as `login` and `sshd` do, so programs
/// that check who owns their tty (`screen`, `mesg`) work.
pub(super) fn give_tty(tty: Option<&Path>, id: &Identity) {
    use std::os::unix::fs::PermissionsExt;
    let Some(tty) = tty else {
        return;
    };
    let owned = nix::unistd::chown(
        tty,
        Some(Uid::from_raw(id.uid)),
        Some(nix::unistd::Gid::from_raw(id.gid)),
    )
    .map_err(std::io::Error::from)
    .and_then(|()| std::fs::set_permissions(tty, std::fs::Permissions::from_mode(0o600)));
    if let Err(e) = owned {
        tracing::warn!(tty = %tty.display(), user = %id.name, error = %e, "Cannot hand the terminal to its user.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn account(uid: u32, shell: &str) -> Account {
        Account {
            name: format!("user{uid}"),
            uid,
            gid: uid,
            home: PathBuf::from(format!("/home/user{uid}")),
            shell: PathBuf::from(shell),
        }
    }

    #[test]
    fn identity_is_never_root_nor_voltd_and_switches_only_from_root() {
        // Root helper, voltd (peer) is uid 999: the account is switched to.
        let from_root = plan_identity(None, 0, 999, false, account(1000, "")).unwrap();
        assert!(from_root.switch);
        assert_eq!(from_root.shell, PathBuf::from(FALLBACK_SHELL));
        let configured = plan_identity(
            Some(Path::new("/bin/sh")),
            0,
            999,
            false,
            account(1000, "/bin/bash"),
        );
        assert_eq!(configured.unwrap().shell, PathBuf::from("/bin/sh"));

        for (euid, peer, allow, acct, needle) in [
            (0, 0, true, 0, "never runs as root"),
            (1000, 1000, false, 1000, "is the account voltd runs as"),
            (0, 1000, false, 1000, "is the account voltd runs as"),
            (1000, 1000, false, 1001, "only root can switch accounts"),
        ] {
            let err = plan_identity(None, euid, peer, allow, account(acct, "/bin/sh")).unwrap_err();
            assert_eq!(err.status, 403, "{needle}");
            assert!(err.message.contains(needle), "{}", err.message);
        }
        // Development: voltd's own account, explicitly allowed.
        let same = plan_identity(None, 1000, 1000, true, account(1000, "/bin/zsh")).unwrap();
        assert!(!same.switch);
        assert_eq!(same.shell, PathBuf::from("/bin/zsh"));
    }

    #[test]
    fn shell_environment_is_built_from_scratch() {
        let id = plan_identity(None, 5, 5, true, account(5, "/bin/sh")).unwrap();
        let cmd = shell_command(&id, Path::new("/usr/bin/setsid"), None);
        let env: HashMap<String, String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert_eq!(env["TERM"], "xterm-256color");
        assert_eq!(env["HOME"], "/home/user5");
        assert_eq!(env["USER"], "user5");
        assert_eq!(env["LOGNAME"], "user5");
        assert_eq!(env["SHELL"], "/bin/sh");
        assert!(env.keys().all(|k| {
            ["TERM", "HOME", "USER", "LOGNAME", "SHELL", "PATH"].contains(&k.as_str())
                || PASSED_ENV.contains(&k.as_str())
        }));
        let argv = |c: &std::process::Command| -> Vec<String> {
            std::iter::once(c.get_program())
                .chain(c.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            argv(&cmd),
            ["/usr/bin/setsid", "--ctty", "--", "/bin/sh", "-l"]
        );
        let switched = shell_command(
            &plan_identity(None, 0, 999, false, account(7, "/bin/sh")).unwrap(),
            Path::new("/usr/bin/setsid"),
            Some(Path::new("/usr/bin/setpriv")),
        );
        assert_eq!(
            argv(&switched),
            [
                "/usr/bin/setsid",
                "--ctty",
                "--",
                "/usr/bin/setpriv",
                "--reuid=7",
                "--regid=7",
                "--init-groups",
                "--",
                "/bin/sh",
                "-l"
            ]
        );
    }
}
