//! Who a terminal's shell runs as, and the clean login environment it
//! gets: the configured `[terminal] user` (switching needs root and
//! `setpriv`) or the account voltd runs as; the shell from the config, the
//! passwd entry, or `/bin/bash`; an environment built from scratch
//! (voltd's own environment may hold the daemon password).

use super::AttachError;
use crate::config::TerminalSettings;
use nix::unistd::{Uid, User};
use portable_pty::CommandBuilder;
use std::ffi::OsString;
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

/// Looks the configured user (or voltd's own) up and decides how to run
/// the shell.
pub(super) fn resolve_identity(
    settings: &TerminalSettings,
    euid: Uid,
) -> Result<Identity, AttachError> {
    let account: Account = match &settings.user {
        Some(name) => User::from_name(name)
            .map_err(|e| {
                AttachError::new(500, format!("cannot look up terminal user {name}: {e}"))
            })?
            .ok_or_else(|| {
                AttachError::new(
                    500,
                    format!("terminal user {name} does not exist on this host ([terminal] user)"),
                )
            })?
            .into(),
        None => User::from_uid(euid)
            .map_err(|e| AttachError::new(500, format!("cannot look up uid {euid}: {e}")))?
            .ok_or_else(|| {
                AttachError::new(
                    500,
                    format!(
                        "voltd runs as uid {euid}, which has no passwd entry; set [terminal] user"
                    ),
                )
            })?
            .into(),
    };
    plan_identity(settings.shell.as_deref(), euid.as_raw(), account)
}

/// The pure part of [`resolve_identity`].
pub(super) fn plan_identity(
    configured_shell: Option<&Path>,
    euid: u32,
    account: Account,
) -> Result<Identity, AttachError> {
    let switch = account.uid != euid;
    if switch && euid != 0 {
        return Err(AttachError::new(
            403,
            format!(
                "the host terminal is configured to run as {} (uid {}), but voltd runs as uid {euid} and only root can switch users; run voltd as root or remove [terminal] user",
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

/// The command line and environment of a login shell for `id`.
pub(super) fn shell_command(id: &Identity, setpriv: Option<&Path>) -> CommandBuilder {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(setpriv) = setpriv {
        argv.push(setpriv.into());
        argv.push(format!("--reuid={}", id.uid).into());
        argv.push(format!("--regid={}", id.gid).into());
        argv.push("--init-groups".into());
        argv.push("--".into());
    }
    argv.push(id.shell.clone().into());
    argv.push("-l".into());
    let mut cmd = CommandBuilder::from_argv(argv);
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
    cmd.cwd(cwd);
    cmd
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
    fn identity_switches_only_from_root_and_picks_the_shell() {
        let same = plan_identity(None, 1000, account(1000, "/bin/zsh")).unwrap();
        assert!(!same.switch);
        assert_eq!(same.shell, PathBuf::from("/bin/zsh"));

        let from_root = plan_identity(None, 0, account(1000, "")).unwrap();
        assert!(from_root.switch);
        assert_eq!(from_root.shell, PathBuf::from(FALLBACK_SHELL));

        let configured = plan_identity(Some(Path::new("/bin/sh")), 0, account(0, "/bin/bash"));
        assert_eq!(configured.unwrap().shell, PathBuf::from("/bin/sh"));

        let err = plan_identity(None, 1000, account(1001, "/bin/bash")).unwrap_err();
        assert_eq!(err.status, 403);
        assert!(
            err.message.contains("only root can switch users"),
            "{}",
            err.message
        );
    }

    #[test]
    fn shell_environment_is_built_from_scratch() {
        let id = plan_identity(None, 0, account(0, "/bin/sh")).unwrap();
        let cmd = shell_command(&id, None);
        let env: HashMap<&str, &str> = cmd.iter_full_env_as_str().collect();
        assert_eq!(env.get("TERM"), Some(&"xterm-256color"));
        assert_eq!(env.get("HOME"), Some(&"/home/user0"));
        assert_eq!(env.get("USER"), Some(&"user0"));
        assert_eq!(env.get("LOGNAME"), Some(&"user0"));
        assert_eq!(env.get("SHELL"), Some(&"/bin/sh"));
        assert!(env.keys().all(|k| {
            ["TERM", "HOME", "USER", "LOGNAME", "SHELL", "PATH"].contains(k)
                || PASSED_ENV.contains(k)
        }));
        assert_eq!(cmd.get_argv(), &["/bin/sh", "-l"]);
        let switched = shell_command(
            &plan_identity(None, 0, account(7, "/bin/sh")).unwrap(),
            Some(Path::new("/usr/bin/setpriv")),
        );
        assert_eq!(
            switched.get_argv(),
            &[
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
