//! Loading the configuration end to end: file → environment → flags,
//! validation, `config show`.

use super::layer::{self, resolve};
use super::*;
use crate::api::vocab::ServiceKind;
use std::path::Path;
use toml::{Table, Value};

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str) -> Table {
    text.parse().unwrap()
}

const BASE: &str = r#"
cloud_url = "http://file.example:8080/"
team_cluster_id = "file-id"
daemon_password = "file-pw"
heartbeat_interval_ms = 5000
state_dir = "/tmp/voltd-test-state"
[socket]
command_timeout_ms = 1000
[install]
ports = { minio = 9100, redis = 6390, mongodb = 27018, daemon = 8090 }
"#;

fn base() -> Table {
    parse(BASE)
}

/// `base()` with `path` set to `value`.
fn base_with(path: &str, value: impl Into<Value>) -> Table {
    let mut t = base();
    layer::set(&mut t, path, value.into());
    t
}

fn base_without(path: &str) -> Table {
    let mut t = base();
    layer::remove(&mut t, path);
    t
}

fn load(file: Table, env: &Env, flags: &Flags) -> Result<Settings, ConfigError> {
    resolve(Some(file), None, env, flags)
}

fn ok(file: Table) -> Settings {
    load(file, &Env::new(), &Flags::new()).unwrap()
}

fn err(file: Table) -> String {
    load(file, &Env::new(), &Flags::new())
        .unwrap_err()
        .to_string()
}

fn shown(settings: Settings) -> String {
    show(&Loaded {
        settings,
        file: None,
    })
}

#[test]
fn file_values_apply() {
    let s = ok(base());
    assert_eq!(s.cloud_url.as_str(), "http://file.example:8080");
    assert_eq!(s.socket_url.as_str(), "http://file.example:8080");
    assert_eq!(s.team_cluster_id, "file-id");
    assert_eq!(s.daemon_password.as_ref().unwrap().expose(), "file-pw");
    assert_eq!(s.heartbeat_interval, Duration::from_millis(5000));
    assert_eq!(s.socket.command_timeout, Duration::from_millis(1000));
    assert_eq!(s.install.ports.unwrap().redis, 6390);
    assert_eq!(
        s.admin_socket(),
        PathBuf::from("/tmp/voltd-test-state/voltd.sock")
    );
    assert_eq!(s.log_level, "info");
    assert_eq!(s.log_format, LogFormat::Human);
    // Everything not in the file is the default.
    assert_eq!(s.terminal, TerminalSettings::default());
    assert_eq!(s.supervisor, SupervisorSettings::default());
    assert_eq!(s.socket.reconnect(), sections::default_reconnect());
    assert_eq!(s.services, ServicesSettings::native());
    assert_eq!(s.installed_version, DEFAULT_INSTALLED_VERSION);
}

#[test]
fn the_defaults_document_is_the_defaults_of_the_model() {
    let doc = layer::defaults(&Env::new()).unwrap();
    for required in ["cloud_url", "team_cluster_id", "socket_url"] {
        assert!(!doc.contains_key(required), "{required}");
    }
    let mut doc = doc;
    layer::set(&mut doc, "cloud_url", "http://x".into());
    layer::set(&mut doc, "socket_url", "http://x".into());
    layer::set(&mut doc, "team_cluster_id", "c".into());
    let s: Settings = doc.try_into().unwrap();
    let mut expected = Settings::new(
        CloudUrl::parse("http://x").unwrap(),
        ClusterId::parse("c").unwrap(),
        s.state_dir.clone(),
    );
    expected.services = ServicesSettings::native();
    assert_eq!(s, expected);
}

#[test]
fn layers_apply_in_order_defaults_file_environment_flags() {
    // One key per layer boundary: heartbeat_interval_ms has all four.
    let none = Env::new();
    let no_flags = Flags::new();
    let s = load(base_without("heartbeat_interval_ms"), &none, &no_flags).unwrap();
    assert_eq!(s.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL, "default");
    let s = load(base(), &none, &no_flags).unwrap();
    assert_eq!(s.heartbeat_interval, Duration::from_millis(5000), "file");
    let e = env(&[("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS", "2500")]);
    let s = load(base(), &e, &no_flags).unwrap();
    assert_eq!(s.heartbeat_interval, Duration::from_millis(2500), "env");
    let flags = Flags::new().with("heartbeat-interval-ms", "100");
    let s = load(base(), &e, &flags).unwrap();
    assert_eq!(s.heartbeat_interval, Duration::from_millis(100), "flag");
    // Environment without a file, flags without either.
    let s = resolve(
        None,
        None,
        &env(&[("VOLT_CLOUD_URL", "http://e"), ("TEAM_CLUSTER_ID", "e")]),
        &Flags::new().with("cluster-id", "f"),
    )
    .unwrap();
    assert_eq!(s.cloud_url.as_str(), "http://e");
    assert_eq!(s.team_cluster_id, "f");
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let e = env(&[
        ("VOLT_CLOUD_URL", "https://env.example"),
        ("TEAM_CLUSTER_ID", "env-id"),
        ("TEAM_CLUSTER_DAEMON_PASSWORD", "env-pw"),
        ("TEAM_CLUSTER_ENROLLMENT_TOKEN", "env-token"),
        ("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS", "2500"),
        ("VOLT_CLUSTER_INSTALL_MANIFEST_VERSION", "2.0.0"),
        ("VOLT_CLOUD_DAEMON_SOCKET_URL", "https://socket.example"),
        ("LOG_LEVEL", "debug"),
        ("VOLTD_CA_FILE", "/etc/ca.pem"),
        ("TEAM_CLUSTER_INSTALL_ROOT", "/srv/volt"),
        ("VOLTD_STATE_DIR", "/srv/state"),
    ]);
    let s = load(base(), &e, &Flags::new()).unwrap();
    assert_eq!(s.cloud_url.as_str(), "https://env.example");
    assert_eq!(s.socket_url.as_str(), "https://socket.example");
    assert_eq!(s.team_cluster_id, "env-id");
    assert_eq!(s.daemon_password.as_ref().unwrap().expose(), "env-pw");
    assert_eq!(s.enrollment_token.as_ref().unwrap().expose(), "env-token");
    assert!(
        s.token_file.is_none(),
        "a token from the environment is not in a file"
    );
    assert_eq!(s.heartbeat_interval, Duration::from_millis(2500));
    assert_eq!(s.installed_version, "2.0.0");
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.socket.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(s.install.install_root.as_path(), Path::new("/srv/volt"));
    assert_eq!(s.state_dir, PathBuf::from("/srv/state"));
    assert_eq!(s.admin_socket(), PathBuf::from("/srv/state/voltd.sock"));

    let flags = Flags::new()
        .with("cloud-url", "http://flag.example")
        .with("cluster-id", "flag-id")
        .with("heartbeat-interval-ms", "100")
        .with("state-dir", "/flag/state")
        .with("log-level", "warn")
        .with("log-format", "json");
    let s = load(base(), &e, &flags).unwrap();
    assert_eq!(s.cloud_url.as_str(), "http://flag.example");
    assert_eq!(s.team_cluster_id, "flag-id");
    assert_eq!(s.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(s.state_dir, PathBuf::from("/flag/state"));
    assert_eq!(s.log_level, "warn");
    assert_eq!(s.log_format, LogFormat::Json);
    // The socket URL set in the environment stays.
    assert_eq!(s.socket_url.as_str(), "https://socket.example");
}

#[test]
fn aliases_fallbacks_and_blank_variables() {
    // VOLT_CLOUD_SERVER_URL is the reference's other name for the URL.
    let s = load(
        base_without("cloud_url"),
        &env(&[("VOLT_CLOUD_SERVER_URL", "https://alias.example")]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.cloud_url.as_str(), "https://alias.example");
    let s = load(
        base(),
        &env(&[
            ("VOLT_CLOUD_URL", "https://first.example"),
            ("VOLT_CLOUD_SERVER_URL", "https://alias.example"),
        ]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.cloud_url.as_str(), "https://first.example");
    // RUST_LOG when LOG_LEVEL is not set.
    let s = load(base(), &env(&[("RUST_LOG", "trace")]), &Flags::new()).unwrap();
    assert_eq!(s.log_level, "trace");
    let s = load(
        base(),
        &env(&[("LOG_LEVEL", "warn"), ("RUST_LOG", "trace")]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.log_level, "warn");
    // A blank variable is not set: the file's value stays.
    let s = load(
        base(),
        &env(&[
            ("TEAM_CLUSTER_ID", "  "),
            ("TEAM_CLUSTER_DAEMON_PASSWORD", ""),
        ]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.team_cluster_id, "file-id");
    assert_eq!(s.daemon_password.as_ref().unwrap().expose(), "file-pw");
    // Blank secrets in the file are no secrets; values are trimmed.
    let s = ok(base_with("daemon_password", " "));
    assert!(s.daemon_password.is_none());
    let s = ok(base_with("update_command", Value::Array(vec![])));
    assert!(s.update_command.is_none());
    let s = ok(base_with("team_cluster_id", " c-1 "));
    assert_eq!(s.team_cluster_id, "c-1");
}

#[test]
fn the_socket_url_follows_the_effective_cloud_url() {
    let s = load(
        base(),
        &Env::new(),
        &Flags::new().with("cloud-url", "https://flag.example"),
    )
    .unwrap();
    assert_eq!(s.socket_url.as_str(), "https://flag.example");
    let s = ok(base_with("socket_url", "https://socket.example"));
    assert_eq!(s.socket_url.as_str(), "https://socket.example");
    assert_eq!(s.cloud_url.as_str(), "http://file.example:8080");
}

#[test]
fn token_from_the_file_remembers_the_file() {
    let file = Path::new("/etc/voltd/voltd.toml");
    let s = resolve(
        Some(base_with("enrollment_token", "tok")),
        Some(file),
        &Env::new(),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.token_file.as_deref(), Some(file));
    // A blank token in the file is none, and no file to clean up.
    let s = resolve(
        Some(base_with("enrollment_token", "")),
        Some(file),
        &Env::new(),
        &Flags::new(),
    )
    .unwrap();
    assert!(s.enrollment_token.is_none() && s.token_file.is_none());
    // The environment's token wins and is not in the file.
    let s = resolve(
        Some(base_with("enrollment_token", "tok")),
        Some(file),
        &env(&[("TEAM_CLUSTER_ENROLLMENT_TOKEN", "env-tok")]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.enrollment_token.unwrap().expose(), "env-tok");
    assert!(s.token_file.is_none());
}

#[test]
fn missing_and_invalid_values_are_clear_errors() {
    let e = resolve(None, None, &Env::new(), &Flags::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cloud_url") && e.contains("VOLT_CLOUD_URL"),
        "{e}"
    );
    assert!(e.contains("--cloud-url"), "{e}");
    let e = err(base_without("team_cluster_id"));
    assert!(
        e.contains("TEAM_CLUSTER_ID") && e.contains("--cluster-id"),
        "{e}"
    );
    let e = err(base_with("team_cluster_id", "../etc"));
    assert!(e.contains("team_cluster_id"), "{e}");
    let e = load(
        base(),
        &env(&[("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS", "soon")]),
        &Flags::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS"), "{e}");
    // A value from the environment that is out of range names both.
    let e = load(
        base(),
        &env(&[("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS", "0")]),
        &Flags::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("heartbeat_interval_ms"), "{e}");
    assert!(e.contains("TEAM_CLUSTER_HEARTBEAT_INTERVAL_MS"), "{e}");
    let e = err(base_with("heartbeat_interval_ms", 0));
    assert!(
        e.contains("heartbeat_interval_ms: must be greater than 0"),
        "{e}"
    );
    let e = err(base_with("heartbeat_interval_ms", "5000"));
    assert!(e.contains("heartbeat_interval_ms"), "{e}");
    let e = err(base_with("socket.reconnect_jitter", 2.0));
    assert!(e.contains("socket.reconnect_jitter"), "{e}");
    let e = err(base_with("socket.reconnect_base_ms", 60_000));
    assert!(e.contains("socket.reconnect"), "{e}");
    let e = err(base_with("socket.emit_buffer", 0));
    assert!(e.contains("socket.emit_buffer"), "{e}");
    let e = err(base_with("supervisor.window_secs", 0));
    assert!(e.contains("supervisor.window_secs"), "{e}");
    let e = err(base_with("installed_version", ""));
    assert!(e.contains("installed_version"), "{e}");
    let e = err(base_with("install.install_root", "opt/volt"));
    assert!(e.contains("install.install_root"), "{e}");
    let mut ports = Table::new();
    for (k, v) in [("minio", 1), ("redis", 1), ("mongodb", 2), ("daemon", 3)] {
        ports.insert(k.into(), Value::Integer(v));
    }
    let e = err(base_with("install.ports", ports));
    assert!(e.contains("install.ports") && e.contains("distinct"), "{e}");
    let e = err(base_with("socket.proxy", "http://u:proxy-pw@host/x"));
    assert!(e.contains("socket.proxy") && !e.contains("proxy-pw"), "{e}");
    let e = load(base(), &Env::new(), &Flags::new().with("log-format", "xml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--log-format"), "{e}");
    let e = err(base_with("log_format", "xml"));
    assert!(e.contains("log_format"), "{e}");
    let e = load(base(), &Env::new(), &Flags::new().with("bogus", "1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--bogus"), "{e}");
}

#[test]
fn unknown_keys_and_wrong_types_are_rejected() {
    let e = err(base_with("heartbeat_intervall_ms", 5));
    assert!(e.contains("heartbeat_intervall_ms"), "{e}");
    let e = err(base_with("socket.reconect_base_ms", 5));
    assert!(
        e.contains("socket") && e.contains("reconect_base_ms"),
        "{e}"
    );
    let e = err(base_with("terminal.idle_timeout", 5));
    assert!(e.contains("idle_timeout"), "{e}");
    let e = err(base_with("socket", 5));
    assert!(e.contains("socket"), "{e}");
}

#[test]
fn explicit_config_file_must_exist_and_files_load() {
    let e = locate(Some(Path::new("/nonexistent/voltd.toml")), &Env::new()).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/voltd.toml"));
    let e = locate(None, &env(&[("VOLTD_CONFIG", "/nonexistent/v.toml")])).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/v.toml"));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, BASE).unwrap();
    let loaded = super::load(Some(&p), &Env::new(), &Flags::new()).unwrap();
    assert_eq!(loaded.file.as_deref(), Some(p.as_path()));
    assert_eq!(loaded.settings.team_cluster_id, "file-id");
    let via_env = super::load(
        None,
        &env(&[("VOLTD_CONFIG", p.to_str().unwrap())]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(via_env.file.as_deref(), Some(p.as_path()));

    std::fs::write(&p, "cloud_url = \n").unwrap();
    let e = super::load(Some(&p), &Env::new(), &Flags::new()).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

#[test]
fn the_state_dir_defaults_by_user_and_client_commands_find_it() {
    let e = env(&[("XDG_STATE_HOME", "/xdg"), ("HOME", "/home/u")]);
    let d = default_state_dir(&e);
    let home = default_state_dir(&env(&[("HOME", "/home/u")]));
    if nix::unistd::geteuid().is_root() {
        assert_eq!(d, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(home, PathBuf::from(DEFAULT_STATE_DIR));
    } else {
        assert_eq!(d, PathBuf::from("/xdg/voltd"));
        assert_eq!(home, PathBuf::from("/home/u/.local/state/voltd"));
    }
    let s = ok(base_without("state_dir"));
    assert_eq!(s.state_dir, default_state_dir(&Env::new()));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    // Even a file that would not load tells where the state is.
    std::fs::write(&p, "state_dir = \"/from/file\"\nbogus = 1\n").unwrap();
    assert_eq!(
        layer::state_dir_hint(Some(&p), &Env::new()),
        PathBuf::from("/from/file")
    );
    assert_eq!(
        layer::state_dir_hint(Some(&p), &env(&[("VOLTD_STATE_DIR", "/from/env")])),
        PathBuf::from("/from/env")
    );
    assert_eq!(
        layer::state_dir_hint(None, &Env::new()),
        default_state_dir(&Env::new())
    );
}

#[test]
fn proxy_from_environment_by_scheme_with_auth_and_no_proxy() {
    let e = env(&[
        ("HTTPS_PROXY", "http://user:secret@proxy.lan:3128"),
        ("NO_PROXY", "localhost, .internal"),
    ]);
    let s = load(
        base_with("cloud_url", "https://cloud.example"),
        &e,
        &Flags::new(),
    )
    .unwrap();
    let p = s.socket.proxy.as_ref().unwrap();
    assert_eq!(p.address, "proxy.lan:3128");
    assert_eq!(p.basic_auth.as_ref().unwrap().expose(), "user:secret");
    assert_eq!(s.socket.no_proxy, ["localhost", ".internal"]);
    assert!(s.socket.proxy_for("cloud.example").is_some());
    assert!(s.socket.proxy_for("db.internal").is_none());
    // http URLs look at HTTP_PROXY instead.
    let s = load(base(), &e, &Flags::new()).unwrap();
    assert!(s.socket.proxy.is_none());
    let s = load(
        base(),
        &env(&[("http_proxy", "proxy.lan:8080")]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.socket.proxy.unwrap().address, "proxy.lan:8080");
    // ALL_PROXY serves both.
    let s = load(base(), &env(&[("ALL_PROXY", "all.lan")]), &Flags::new()).unwrap();
    assert_eq!(s.socket.proxy.unwrap().address, "all.lan:80");
    // The scheme is the socket URL's, not the cloud URL's.
    let s = load(
        base_with("socket_url", "https://socket.example"),
        &e,
        &Flags::new(),
    )
    .unwrap();
    assert!(s.socket.proxy.is_some());
    // A proxy in the file wins over the environment; NO_PROXY over the
    // file's list.
    let mut file = base_with("socket.proxy", "http://file-proxy:1");
    layer::set(
        &mut file,
        "socket.no_proxy",
        Value::Array(vec!["file.lan".into()]),
    );
    let s = load(
        file.clone(),
        &env(&[("HTTP_PROXY", "env-proxy:2")]),
        &Flags::new(),
    )
    .unwrap();
    assert_eq!(s.socket.proxy.unwrap().address, "file-proxy:1");
    assert_eq!(s.socket.no_proxy, ["file.lan"]);
    let s = load(file, &env(&[("no_proxy", "env.lan")]), &Flags::new()).unwrap();
    assert_eq!(s.socket.no_proxy, ["env.lan"]);
}

#[test]
fn show_redacts_every_secret_and_loads_back() {
    let e = env(&[
        ("TEAM_CLUSTER_ENROLLMENT_TOKEN", "tok-secret-1"),
        ("HTTPS_PROXY", "http://u:proxy-secret@p:1"),
    ]);
    let settings = load(
        base_with("cloud_url", "https://cloud.example"),
        &e,
        &Flags::new(),
    )
    .unwrap();
    let out = shown(settings.clone());
    for secret in ["file-pw", "tok-secret-1", "proxy-secret"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(out.contains("daemon_password = \"***\""), "{out}");
    assert!(out.contains("enrollment_token = \"***\""), "{out}");
    assert!(out.contains("proxy = \"http://***@p:1\""), "{out}");
    assert!(out.contains("team_cluster_id = \"file-id\""), "{out}");
    assert!(out.contains("reconnect_jitter = 0.3"), "{out}");
    assert!(out.contains("voltd.sock"), "the admin socket: {out}");
    assert!(!format!("{settings:?}").contains("file-pw"));
    // The output is a config file: it loads back to the same settings,
    // secrets aside.
    let back = load(parse(&out), &Env::new(), &Flags::new()).unwrap();
    assert_eq!(back.daemon_password.as_ref().unwrap().expose(), "***");
    let mut expected = settings;
    expected.daemon_password = back.daemon_password.clone();
    expected.enrollment_token = back.enrollment_token.clone();
    expected.socket.proxy = back.socket.proxy.clone();
    assert_eq!(back, expected);
}

#[test]
fn services_sections_apply_are_validated_and_shown_redacted() {
    let file = parse(
        "cloud_url = \"http://x\"\nteam_cluster_id = \"c\"\n[services.redis]\nmode = \"external\"\nuser = \"u\"\npassword = \"svc-secret-7\"\n[services.minio]\nmode = \"disabled\"\n",
    );
    let s = ok(file);
    assert_eq!(s.services.redis.mode, ServiceMode::External);
    assert_eq!(s.services.mongo.mode, ServiceMode::Native);
    assert_eq!(s.services.minio.mode, ServiceMode::Disabled);
    assert!(!format!("{s:?}").contains("svc-secret-7"));
    let out = shown(s);
    assert!(!out.contains("svc-secret-7"), "{out}");
    assert!(out.contains("[services.redis]"), "{out}");

    let e = err(base_with("services.redis.probe_intervall_ms", 5));
    assert!(e.contains("probe_intervall_ms"), "{e}");
    let e = err(base_with("services.redis.bind", "not-an-ip"));
    assert!(e.contains("services.redis.bind"), "{e}");
}

fn services(text: &str) -> Result<ServicesSettings, String> {
    let mut file = base();
    let extra: Table = text.parse().map_err(|e| format!("{e}"))?;
    file.insert("services".into(), Value::Table(extra));
    load(file, &Env::new(), &Flags::new())
        .map(|s| s.services)
        .map_err(|e| e.to_string())
}

#[test]
fn without_sections_every_service_runs_natively_with_the_production_commands() {
    let s = ok(base()).services;
    assert_eq!(s.enabled().len(), 3);
    assert_eq!(s.redis.command, ["redis-server", "{config_file}"]);
    assert_eq!(s.mongo.auth_flag.as_deref(), Some("--auth"));
    assert_eq!(s.minio.env["MINIO_ROOT_USER"], "{user}");
}

#[test]
fn every_service_key_applies() {
    let s = services(
        r#"
        [redis]
        mode = "external"
        host = " 10.0.0.7 "
        port = 6390
        user = "volt"
        password = "pw-1"
        probe_interval_ms = 1000
        probe_timeout_ms = 500
        unhealthy_after = 2
        [mongo]
        command = ["/opt/secantus/bin/secantusd-py", "--port", "{port}", "--storage-path", "{data_dir}", "--auth"]
        data_dir = "/srv/mongo data"
        start_timeout_ms = 9000
        stop_timeout_ms = 7000
        restart_base_ms = 10
        restart_max_ms = 40
        max_restarts = 2
        restart_window_secs = 30
        failed_retry_secs = 60
        auth_flag = "--auth"
        [minio]
        command = "s3s-fs --host {bind} --port {port} --access-key {user} --secret-key {password} {data_dir}"
        bind = " 0.0.0.0 "
        env = { RUST_LOG = "info" }
        "#,
    )
    .unwrap();
    assert_eq!(s.redis.mode, ServiceMode::External);
    assert_eq!(s.redis.host.as_deref(), Some("10.0.0.7"));
    assert_eq!(s.redis.port, Some(6390));
    assert_eq!(s.redis.password.as_ref().unwrap().expose(), "pw-1");
    assert_eq!(s.redis.probe_interval, Duration::from_secs(1));
    assert_eq!(s.redis.probe_timeout, Duration::from_millis(500));
    assert_eq!(s.redis.unhealthy_after, 2);
    assert_eq!(s.mongo.command[0], "/opt/secantus/bin/secantusd-py");
    assert_eq!(
        s.mongo.data_dir.as_deref(),
        Some(Path::new("/srv/mongo data"))
    );
    assert_eq!(s.mongo.start_timeout, Duration::from_secs(9));
    assert_eq!(s.mongo.stop_timeout, Duration::from_secs(7));
    assert_eq!(s.mongo.restart_backoff().base(), Duration::from_millis(10));
    assert_eq!(s.mongo.restart_backoff().max(), Duration::from_millis(40));
    assert_eq!(s.mongo.intensity().max_restarts(), 2);
    assert_eq!(s.mongo.intensity().window(), Duration::from_secs(30));
    assert_eq!(s.mongo.failed_retry, Duration::from_secs(60));
    assert_eq!(s.minio.command.len(), 10);
    assert_eq!(s.minio.bind.to_string(), "0.0.0.0");
    assert_eq!(s.minio.env["RUST_LOG"], "info");
    assert_eq!(s.minio.env["MINIO_ROOT_USER"], "{user}", "defaults kept");
}

#[test]
fn a_raised_restart_delay_raises_the_default_maximum() {
    let s = services("[redis]\nrestart_base_ms = 40000\n").unwrap();
    assert_eq!(s.redis.restart_base, Duration::from_secs(40));
    assert_eq!(s.redis.restart_max, Duration::from_secs(40));
    assert_eq!(s.mongo.restart_max, config_default_restart_max());
    // Given both, they must agree.
    let e = services("[minio]\nrestart_base_ms = 500\nrestart_max_ms = 100\n").unwrap_err();
    assert!(e.contains("services.minio restart delay"), "{e}");
}

fn config_default_restart_max() -> Duration {
    services::DEFAULT_RESTART_MAX
}

#[test]
fn unknown_service_keys_and_bad_values_are_clear_errors() {
    assert!(services("[postgres]\nmode = \"native\"\n").is_err());
    assert!(services("[redis]\nmode = \"docker\"\n").is_err());
    for (text, needle) in [
        ("[redis]\nprobe_intervall_ms = 5\n", "probe_intervall_ms"),
        ("[redis]\nbind = \"localhost\"\n", "services.redis.bind"),
        (
            "[redis]\nprobe_timeout_ms = 0\n",
            "services.redis.probe_timeout_ms",
        ),
        (
            "[redis]\nunhealthy_after = 0\n",
            "services.redis.unhealthy_after",
        ),
        ("[mongo]\ncommand = \"\"\n", "services.mongo.command"),
        (
            "[mongo]\ncommand = \"mongod --dbpath {dbpath}\"\n",
            "{dbpath}",
        ),
        (
            "[minio]\nrestart_base_ms = 500\nrestart_max_ms = 100\n",
            "services.minio restart delay",
        ),
        ("[redis]\nport = 7000\n[minio]\nport = 7000\n", "both 7000"),
        ("[redis]\nauth_flag = \"--auth\"\n", "auth_flag"),
        (
            "[mongo]\ndata_dir = \"relative\"\n",
            "services.mongo.data_dir",
        ),
        (
            "[redis]\nrestart_window_secs = 0\n",
            "services.redis.restart_window_secs",
        ),
        ("[redis]\ncommand = 5\n", "services.redis.command"),
        ("[redis]\nhost = \" \"\n", "services.redis.host"),
    ] {
        let e = services(text).unwrap_err();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn the_services_flag_disables_what_it_does_not_name() {
    let with = |list: &str| load(base(), &Env::new(), &Flags::new().with("services", list));
    assert_eq!(with("all").unwrap().services.enabled().len(), 3);
    assert_eq!(
        with("redis, minio").unwrap().services.enabled(),
        [ServiceKind::Redis, ServiceKind::Minio]
    );
    assert!(with("none").unwrap().services.enabled().is_empty());
    let e = with("postgres").unwrap_err().to_string();
    assert!(e.contains("--services") && e.contains("postgres"), "{e}");
    assert!(with(",").is_err());
    // `all` keeps what the file says.
    let mut file = base();
    layer::set(&mut file, "services.mongo.mode", "external".into());
    let s = load(file, &Env::new(), &Flags::new().with("services", "all")).unwrap();
    assert_eq!(s.services.mongo.mode, ServiceMode::External);
}

#[test]
fn an_empty_auth_flag_means_none() {
    let s = services("[mongo]\nauth_flag = \"\"\n").unwrap();
    assert_eq!(s.mongo.auth_flag, None);
}

#[test]
fn show_redacts_passwords_env_secrets_and_literal_passwords_in_commands() {
    let mut file = base();
    let svc: Table = r#"
        [minio]
        command = "s3s-fs --secret-key lit-secret-9 {data_dir}"
        password = "lit-secret-9"
        env = { API_TOKEN = "tok-secret-3", MINIO_ROOT_PASSWORD = "{password}", MODE = "fast", URL = "http://a:lit-secret-9@h" }
        "#
    .parse()
    .unwrap();
    file.insert("services".into(), Value::Table(svc));
    let s = ok(file);
    assert!(!format!("{s:?}").contains("lit-secret-9"));
    assert!(!format!("{s:?}").contains("tok-secret-3"));
    let out = shown(s);
    for secret in ["lit-secret-9", "tok-secret-3"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
    let v: Table = out.parse().unwrap();
    let minio = &v["services"]["minio"];
    assert_eq!(minio["password"].as_str(), Some("***"));
    assert_eq!(
        minio["env"]["MINIO_ROOT_PASSWORD"].as_str(),
        Some("{password}")
    );
    assert_eq!(minio["env"]["MODE"].as_str(), Some("fast"));
    assert_eq!(minio["env"]["API_TOKEN"].as_str(), Some("***"));
    assert_eq!(minio["command"][2].as_str(), Some("***"));
    assert_eq!(v["services"]["redis"]["mode"].as_str(), Some("native"));
}

#[test]
fn terminal_section_applies_and_is_shown() {
    let mut file = base();
    let t: Table = r#"
        enabled = false
        user = "volt"
        shell = "/bin/zsh"
        idle_timeout_secs = 60
        max_sessions = 4
        "#
    .parse()
    .unwrap();
    file.insert("terminal".into(), Value::Table(t));
    let s = ok(file);
    let t = &s.terminal;
    assert!(!t.enabled);
    assert_eq!(&*t.user, "volt");
    assert_eq!(t.shell.as_deref(), Some(Path::new("/bin/zsh")));
    assert_eq!(t.idle_timeout, Duration::from_secs(60));
    assert_eq!(t.max_sessions, 4);
    let out = shown(s);
    assert!(out.contains("[terminal]"), "{out}");
    assert!(out.contains("max_sessions = 4"), "{out}");
    assert!(out.contains("user = \"volt\""), "{out}");

    let defaults = ok(base());
    assert_eq!(defaults.terminal, TerminalSettings::default());
    assert!(defaults.terminal.enabled);
    // A dedicated account by default, never voltd's own.
    assert_eq!(&*defaults.terminal.user, "volt-terminal");
    assert!(!defaults.terminal.allow_daemon_user);
    assert!(shown(defaults).contains("idle_timeout_secs = 600"));
}

#[test]
fn terminal_section_is_validated() {
    for (text, needle) in [
        ("user = \"-rf\"", "terminal.user"),
        ("user = \"a b\"", "terminal.user"),
        ("user = \"\"", "terminal.user"),
        ("user = \"root\"", "must not be root"),
        ("helper_socket = \"run/x.sock\"", "absolute path"),
        ("shell = \"bash\"", "absolute path"),
        ("idle_timeout_secs = 0", "terminal.idle_timeout_secs"),
        ("max_sessions = 0", "terminal.max_sessions"),
        ("max_sessions = 100000", "terminal.max_sessions"),
        ("idle_timeout = 5", "idle_timeout"),
    ] {
        let mut file = base();
        file.insert("terminal".into(), Value::Table(text.parse().unwrap()));
        let e = err(file);
        assert!(e.contains(needle), "{text}: {e}");
    }
}

fn roots(items: &str) -> Table {
    parse(&format!(
        "cloud_url = \"http://x\"\nteam_cluster_id = \"c\"\nstate_dir = \"/tmp/s\"\n[host_files]\nroots = {items}\n"
    ))
}

#[test]
fn host_file_roots_by_path_or_name() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let s = ok(roots(&format!(
        "[\"{}\", {{ name = \"lab\", path = \"{}\" }}, {{ name = \"rw\", path = \"{}\", read_only = false }}]",
        a.path().display(),
        b.path().display(),
        b.path().display()
    )));
    let r = &s.host_files.roots;
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].name, a.path().file_name().unwrap().to_string_lossy());
    assert_eq!(r[0].path, a.path().canonicalize().unwrap());
    assert_eq!(r[1].name, "lab");
    // Listed without read_only: read-only, so an upgrade changes nothing.
    assert!(r[0].read_only && r[1].read_only);
    assert!(!r[2].read_only);
    assert!(shown(s).contains("name = \"lab\""));
    assert!(ok(roots("[]")).host_files.roots.is_empty());
}

#[test]
fn bad_host_file_roots_are_config_errors() {
    let a = tempfile::tempdir().unwrap();
    let p = a.path().display();
    for items in [
        "[\"relative/dir\"]".to_owned(),
        "[\"/nonexistent/dir/x\"]".to_owned(),
        format!("[{{ name = \"x\", path = \"{p}\" }}, {{ name = \"x\", path = \"{p}\" }}]"),
        format!("[{{ name = \"a/b\", path = \"{p}\" }}]"),
        "[5]".to_owned(),
    ] {
        let e = err(roots(&items));
        assert!(e.contains("host_files"), "{items}: {e}");
    }
}

#[test]
fn update_command_is_an_argument_vector_never_a_shell_string() {
    let e = err(base_with("update_command", "echo {image} > f"));
    assert!(e.contains("argument vector"), "{e}");
    let argv = |a: &[&str]| Value::Array(a.iter().map(|s| Value::from(*s)).collect());
    let s = ok(base_with(
        "update_command",
        argv(&["/usr/local/sbin/up", "--quiet"]),
    ));
    assert_eq!(
        s.update_command,
        Some(vec!["/usr/local/sbin/up".to_owned(), "--quiet".to_owned()])
    );
    let e = err(base_with("update_command", argv(&["up"])));
    assert!(e.contains("absolute path"), "{e}");
}
