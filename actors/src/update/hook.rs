//! The `update_command` hook, for hosts whose binary is managed by
//! something else (a package manager, configuration management): an
//! argument vector from the operator's config, run as is, with the target
//! version appended as one more argument. No shell is involved and nothing
//! the server sends is pasted into anything: `targetVersion` is validated
//! (`[A-Za-z0-9.+_-]`, ≤ 128) and is a single `argv` element; `targetImage`
//! is not passed at all.

use std::time::Duration;

/// Longest an update command may run before it counts as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(600);
/// stderr kept for the failure reason.
const MAX_STDERR: usize = 4096;

/// Runs `argv + [version]`. `Err` carries the reason for `update-failed`.
pub async fn run(argv: &[String], version: &str, timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("update_command is empty".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(version)
        .env("VOLTD_TARGET_VERSION", version)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = async {
        crate::host::spawn::spawn(&mut cmd)
            .await?
            .wait_with_output()
            .await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let end = out.stderr.len().min(MAX_STDERR);
            let stderr = String::from_utf8_lossy(&out.stderr[out.stderr.len() - end..]);
            let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            Err(format!("update command failed ({}): {tail}", out.status))
        }
        Ok(Err(e)) => Err(format!("cannot run the update command {program:?}: {e}")),
        Err(_) => Err(format!(
            "update command did not finish within {} s",
            timeout.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_version_is_one_argument_and_no_shell_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > {}\n",
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hostile = "1.0.0;touch pwned";
        run(
            &[script.display().to_string(), "--flag".into()],
            hostile,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("2\n--flag\n{hostile}\n")
        );
        assert!(!dir.path().join("pwned").exists());
        assert!(!std::path::Path::new("pwned").exists());
    }

    #[tokio::test]
    async fn failures_carry_the_status_and_stderr() {
        let e = run(
            &[
                "/bin/sh".into(),
                "-c".into(),
                "echo nope >&2; exit 7".into(),
            ],
            "1.0.0",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.contains("exit status: 7") && e.contains("nope"), "{e}");
        let e = run(&["/nonexistent/x".into()], "1", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        assert!(run(&[], "1", Duration::from_secs(1)).await.is_err());
    }
}
