//! `voltd provision`: the real binary's dry run, JSON plan, catalogue and
//! mirror flags, and exit status. (The provisioning steps themselves are
//! tested against a local mirror in `actors/tests/it/provision.rs`.)

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn voltd(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let config = dir.join("voltd.toml");
    std::fs::write(
        &config,
        format!(
            "cloud_url = \"http://127.0.0.1:9\"\nteam_cluster_id = \"c1\"\nstate_dir = \"{0}/state\"\n[install]\ninstall_root = \"{0}/root\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_voltd"))
        .arg("--config")
        .arg(&config)
        .arg("provision")
        .args(args)
        .env_remove("VOLTD_CONFIG")
        .env("PATH", dir.join("no-bin"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_dry_run_prints_what_would_be_fetched_from_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = voltd(
        dir.path(),
        &[
            "--dry-run",
            "--json",
            "--services",
            "mongo,minio",
            "--mirror",
            "https://mirror.lab/voltd-deps",
        ],
    );
    if std::env::consts::OS != "linux" || !["x86_64", "aarch64"].contains(&std::env::consts::ARCH) {
        assert_eq!(code, 1, "{out}{err}");
        return;
    }
    assert_eq!(code, 0, "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["mirror"], "https://mirror.lab/voltd-deps");
    let items = plan["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["action"], "fetch", "{item}");
        let url = item["url"].as_str().unwrap();
        assert!(url.starts_with("https://mirror.lab/voltd-deps/"), "{url}");
        assert_eq!(item["sha256"].as_str().unwrap().len(), 64);
        let dest = item["dest"].as_str().unwrap();
        assert!(
            dest.starts_with(&format!("{}/root/deps/", dir.path().display())),
            "{dest}"
        );
    }
    assert_eq!(items[0]["service"], "mongo");
    assert!(
        items[0]["url"]
            .as_str()
            .unwrap()
            .contains("/fastdl.mongodb.org/linux/mongodb-linux-")
    );
    assert!(
        !dir.path().join("root").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn a_service_without_artifact_fails_the_plan_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "format = 1\nreplace = true\n").unwrap();
    let (code, out, err) = voltd(
        dir.path(),
        &[
            "--dry-run",
            "--services",
            "redis,minio",
            "--catalogue",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("minio: cannot provision (operating-system-not-supported, resolve)"),
        "{out}"
    );
    assert!(
        out.contains("redis: cannot provision (dependency-installation-failed, resolve)"),
        "{out}"
    );
    assert!(out.contains("package manager"), "{out}");
}

#[test]
fn an_invalid_catalogue_or_mirror_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "format = 1\n[[artifact]]\nservice = \"mongo\"\n").unwrap();
    let (code, _, err) = voltd(
        dir.path(),
        &["--dry-run", "--catalogue", bad.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml"), "{err}");
    let (code, _, err) = voltd(dir.path(), &["--dry-run", "--mirror", "http://10.0.0.1/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("https"), "{err}");
}
