//! The shipped systemd unit: its sandbox score (CI fails above 3.5), and
//! install.sh carrying exactly the same bytes.

use crate::repo;

/// The highest `systemd-analyze security` exposure the unit may have.
const MAX_EXPOSURE: f64 = 3.5;

fn unit() -> String {
    std::fs::read_to_string(repo().join("install/voltd.service")).unwrap()
}

#[test]
fn the_unit_scores_at_most_3_5_in_systemd_analyze_security() {
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(repo().join("install/voltd.service"))
        .output()
        .expect("systemd-analyze is needed (Debian package systemd; .ci/install-services)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no score in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= MAX_EXPOSURE, "{line}");
}

#[test]
fn install_sh_embeds_the_unit_byte_for_byte() {
    let script = std::fs::read_to_string(repo().join("install/install.sh")).unwrap();
    let start = script
        .find("<<'VOLTD_UNIT'\n")
        .expect("install.sh has the unit heredoc")
        + "<<'VOLTD_UNIT'\n".len();
    let len = script[start..]
        .find("\nVOLTD_UNIT\n")
        .expect("the heredoc ends")
        + 1;
    assert_eq!(&script[start..start + len], unit());
    // And volt-plane serves the same two files.
    assert_eq!(volt_plane::VOLTD_SERVICE, unit());
    assert_eq!(volt_plane::INSTALL_SH, script);
}

#[test]
fn the_unit_and_the_installer_use_the_paths_the_updater_uses() {
    use voltd_actors::update::{DEFAULT_KEY_FILE, install::DEFAULT_INSTALL_DIR};
    let u = unit();
    assert!(u.contains(&format!("ExecStart={DEFAULT_INSTALL_DIR}/current/voltd ")));
    assert!(u.contains(&format!(
        "ExecStartPre=-{DEFAULT_INSTALL_DIR}/previous/voltd --config /etc/voltd/voltd.toml update-guard"
    )));
    assert!(u.contains(&format!("ReadWritePaths={DEFAULT_INSTALL_DIR} ")));
    assert!(u.contains("Type=notify"));
    let script = std::fs::read_to_string(repo().join("install/install.sh")).unwrap();
    assert!(script.contains("INSTALL_DIR=\"$PREFIX/opt/voltd\""));
    assert_eq!(DEFAULT_KEY_FILE, "/etc/voltd/release-key.pub");
    assert!(script.contains("KEY_FILE=\"$CONF_DIR/release-key.pub\""));
    assert!(script.contains("CONF_DIR=\"$PREFIX/etc/voltd\""));
}

/// The terminal helper's units: embedded byte for byte, on the socket path
/// and group voltd expects, starting the helper subcommand.
#[test]
fn install_sh_embeds_the_terminal_helper_units_and_they_match_voltd() {
    let script = std::fs::read_to_string(repo().join("install/install.sh")).unwrap();
    for (file, tag) in [
        ("voltd-terminal.socket", "VOLTD_TERMINAL_SOCKET"),
        ("voltd-terminal@.service", "VOLTD_TERMINAL_SERVICE"),
    ] {
        let text = std::fs::read_to_string(repo().join("install").join(file)).unwrap();
        let open = format!("<<'{tag}'\n");
        let start = script
            .find(&open)
            .unwrap_or_else(|| panic!("{tag} heredoc"))
            + open.len();
        let len = script[start..]
            .find(&format!("\n{tag}\n"))
            .expect("the heredoc ends")
            + 1;
        assert_eq!(&script[start..start + len], text, "{file}");
    }
    let socket = std::fs::read_to_string(repo().join("install/voltd-terminal.socket")).unwrap();
    assert!(socket.contains(&format!(
        "ListenStream={}\n",
        voltd_actors::config::sections::DEFAULT_TERMINAL_HELPER_SOCKET
    )));
    assert!(socket.contains("Accept=yes"));
    assert!(socket.contains("SocketGroup=volt\n") && socket.contains("SocketMode=0660"));
    assert!(unit().contains("User=volt\n"));
    let service = std::fs::read_to_string(repo().join("install/voltd-terminal@.service")).unwrap();
    assert!(service.contains("--config /etc/voltd/voltd.toml terminal-helper\n"));
    assert!(service.contains("StandardInput=socket") && service.contains("StandardOutput=journal"));
    assert!(script.contains("TERMINAL_USER=volt-terminal"));
    assert_eq!(
        voltd_actors::config::sections::DEFAULT_TERMINAL_USER,
        "volt-terminal"
    );
}
