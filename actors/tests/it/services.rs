//! The managed services against real servers: `redis-server`, SecantusDB
//! (MongoDB wire) and s3s-fs (S3), all run through the same native-mode
//! code as production's `redis-server`, `mongod` and `minio`.
//! `.ci/install-services` installs them; a missing one fails the test with
//! a pointer to it.

use mongodb::bson::{Document, doc};
use mongodb::options::WriteConcern;
use otp::ExitCode;
use std::time::Duration;
use testkit::process::{Signal, signal};
use testkit::services::*;
use testkit::standins::{StandIn, WITHIN, redis_server};
use testkit::{alive, eventually, free_port};
use volt_protocol::register::Secret;
use voltd_actors::config::ServiceSettings;
use voltd_actors::events::Event;
use voltd_actors::services::{
    CredentialSource, ServiceKind, ServiceMode, ServiceState, ServicesSettings, minio, mongo,
};

const ALL: [&str; 3] = ["redis", "mongo", "minio"];

async fn redis_con(client: &redis::Client) -> redis::aio::MultiplexedConnection {
    client.get_multiplexed_async_connection().await.unwrap()
}

#[actix_rt::test]
async fn native_services_become_healthy_and_are_bootstrapped() {
    let state = tempfile::tempdir().unwrap();
    let svcs = Services::start(settings_with(state.path(), native_services()));
    let reg = svcs.registry.clone();
    wait_all_healthy(&reg, &ALL).await;

    // MinIO: the four VOLT buckets exist.
    for name in minio::BUCKETS {
        let bucket = reg.s3_bucket(name).expect("minio healthy");
        let (_, status) = bucket
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .unwrap_or_else(|e| panic!("bucket {name}: {e}"));
        assert_eq!(status, 200);
    }

    // MongoDB: database `volt` with the daemon's collections; the root
    // user was provisioned and authentication is on.
    let db = reg.mongo_database().expect("mongo healthy");
    let names = db.list_collection_names().await.unwrap();
    for c in mongo::COLLECTIONS {
        assert!(names.iter().any(|n| n == c), "{c} missing in {names:?}");
    }
    let mongo_view = reg.view("mongo").unwrap();
    let port = mongo_view.port.unwrap();
    let anonymous = mongodb::Client::with_options(mongo::client_options(
        "127.0.0.1",
        port,
        None,
        Duration::from_secs(5),
    ))
    .unwrap();
    let err = anonymous
        .database("volt")
        .list_collection_names()
        .await
        .expect_err("authentication is required");
    assert!(err.to_string().contains("requires authentication"), "{err}");
    assert!(
        state
            .path()
            .join("services/mongo")
            .join(mongo::PROVISIONED_MARKER)
            .exists()
    );

    // Redis: we are the ACL user; the default user is off.
    let mut con = redis_con(&reg.redis_client().expect("redis healthy")).await;
    let me: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(me.starts_with("volt_redis_"), "{me}");
    let redis_port = reg.view("redis").unwrap().port.unwrap();
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).unwrap();
    let refused = match anonymous.get_multiplexed_async_connection().await {
        Err(e) => e.to_string(),
        Ok(mut c) => redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .expect_err("the default user is off")
            .to_string(),
    };
    assert!(refused.contains("NOAUTH"), "{refused}");
    // Nor can anyone log in as it (it keeps permissions only so that the
    // AOF replays whole; see services/redis.rs).
    let as_default =
        redis::Client::open(format!("redis://default:anything@127.0.0.1:{redis_port}/")).unwrap();
    match as_default.get_multiplexed_async_connection().await {
        Err(e) => assert_eq!(e.kind(), redis::ErrorKind::AuthenticationFailed, "{e}"),
        Ok(_) => panic!("logged in as the disabled default user"),
    }

    // Every view has a pid, a probe latency and the service's figures.
    let minio_view = eventually(WITHIN, "minio figures after bootstrap", async || {
        reg.view("minio")
            .filter(|v| v.stats.as_ref().is_some_and(|s| s["buckets"] == 4))
    })
    .await;
    assert_eq!(minio_view.stats.unwrap()["expectedBuckets"], 4);
    for name in ALL {
        let v = reg.view(name).unwrap();
        assert!(v.pid.is_some_and(alive), "{name}: {v:?}");
        assert!(
            v.probe_latency_ms.is_some_and(|ms| ms >= 0.0),
            "{name}: {v:?}"
        );
        assert_eq!(v.credentials, Some(CredentialSource::Generated));
        assert_eq!(v.restarts, 0);
    }
    let m = reg.view("mongo").unwrap().stats.unwrap();
    assert!(m["connections"].as_i64().unwrap() >= 1, "{m}");
    assert!(m["opcounters"]["command"].as_i64().unwrap() >= 1, "{m}");
    let r = reg.view("redis").unwrap().stats.unwrap();
    assert!(r["connectedClients"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["usedMemoryBytes"].as_u64().unwrap() > 0, "{r}");

    // Generated secrets never reach the log stream.
    let secrets = testkit::creds::generated_service_credentials(state.path());
    let log: String = svcs
        .bus
        .recent(usize::MAX)
        .iter()
        .map(|r| serde_json::to_string(&**r).unwrap())
        .collect();
    for name in ALL {
        let pw = secrets[name]["password"].as_str().unwrap();
        assert_eq!(pw.len(), 48);
        assert!(!log.contains(pw), "{name} password in the log stream");
    }

    let pids: Vec<i32> = ALL
        .iter()
        .filter_map(|n| reg.view(n).unwrap().pid)
        .collect();
    assert_eq!(svcs.stop().await, ExitCode::Stopped);
    for pid in pids {
        assert!(!alive(pid), "{pid} outlived its supervisor");
    }
    for name in ALL {
        assert!(!state.path().join(format!("services/{name}.pid")).exists());
        assert_eq!(reg.view(name).unwrap().state, ServiceState::Stopped);
    }
}

#[actix_rt::test]
async fn killed_servers_are_restarted_and_keep_their_data() {
    let state = tempfile::tempdir().unwrap();
    let svcs = Services::start(settings_with(state.path(), native_services()));
    let reg = svcs.registry.clone();
    wait_all_healthy(&reg, &ALL).await;

    let mut con = redis_con(&reg.redis_client().unwrap()).await;
    redis::cmd("SET")
        .arg("voltd:test")
        .arg("before the kill")
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    reg.mongo_database()
        .unwrap()
        .collection::<Document>("killtest")
        .insert_one(doc! {"_id": "k", "value": "before the kill"})
        .write_concern(WriteConcern::builder().journal(true).build())
        .await
        .unwrap();
    reg.s3_bucket("volt-dumps")
        .unwrap()
        .put_object("kill/test.txt", b"before the kill")
        .await
        .unwrap();

    for name in ALL {
        let old = reg.view(name).unwrap().pid.unwrap();
        signal(old, Signal::SIGKILL);
        let v = eventually(
            WITHIN,
            format!("{name} restarted and healthy"),
            async || {
                reg.view(name)
                    .filter(|v| v.state == ServiceState::Healthy && v.pid.is_some_and(|p| p != old))
            },
        )
        .await;
        assert_eq!(v.restarts, 1, "{name}");
        assert_eq!(v.last_error.as_deref(), Some("killed by SIGKILL"), "{name}");
        assert!(!alive(old));
        let reasons = svcs.states(name);
        assert!(
            reasons.iter().any(|(s, r)| s == "starting"
                && r.as_deref()
                    .is_some_and(|r| r.starts_with("killed by SIGKILL; restarting in"))),
            "{name}: {reasons:?}"
        );
    }

    let mut con = redis_con(&reg.redis_client().unwrap()).await;
    let value: String = redis::cmd("GET")
        .arg("voltd:test")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "before the kill", "Redis AOF kept the key");
    let found = reg
        .mongo_database()
        .unwrap()
        .collection::<Document>("killtest")
        .find_one(doc! {"_id": "k"})
        .await
        .unwrap()
        .expect("the document survived");
    assert_eq!(found.get_str("value").unwrap(), "before the kill");
    let object = reg
        .s3_bucket("volt-dumps")
        .unwrap()
        .get_object("kill/test.txt")
        .await
        .unwrap();
    assert_eq!(object.as_slice(), b"before the kill");

    assert_eq!(svcs.stop().await, ExitCode::Stopped);
}

#[actix_rt::test]
async fn a_missing_binary_fails_at_once_and_installing_it_heals_without_a_restart_loop() {
    let state = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let future_binary = bin.path().join("redis-server");
    let mut services = native_services();
    services.mongo.mode = ServiceMode::Disabled;
    services.minio.mode = ServiceMode::Disabled;
    services.redis.command = vec![future_binary.display().to_string(), "{config_file}".into()];
    services.redis.failed_retry = Duration::from_millis(500);
    let svcs = Services::start(settings_with(state.path(), services));
    let reg = svcs.registry.clone();

    let v = wait_state(&reg, "redis", ServiceState::Failed).await;
    // Provisioning's resolution step names the configured path.
    let expected = format!(
        "resolve: {} not found; services.redis.command names this path; install the server there, or name just \"redis-server\" to let voltd provision it",
        future_binary.display()
    );
    assert_eq!(v.last_error.as_deref(), Some(expected.as_str()));
    assert_eq!(v.pid, None);
    let failed = svcs
        .states("redis")
        .into_iter()
        .find(|(s, _)| s == "failed")
        .unwrap();
    assert_eq!(
        failed.1,
        Some(format!("{expected}; next attempt in 500 ms"))
    );

    // Installing the binary later heals the service on the next slow retry.
    std::os::unix::fs::symlink(redis_server(), &future_binary).unwrap();
    let v = wait_state(&reg, "redis", ServiceState::Healthy).await;
    assert_eq!(
        v.restarts, 0,
        "a missing binary is no crash: nothing was restarted"
    );
    assert!(
        !svcs
            .states("redis")
            .iter()
            .any(|(_, r)| r.as_deref().is_some_and(|r| r.contains("restarting in"))),
        "no restart loop: {:?}",
        svcs.states("redis")
    );
    assert_eq!(svcs.stop().await, ExitCode::Stopped);
}

#[actix_rt::test]
async fn a_server_that_exits_at_once_hits_the_intensity_limit_then_retries_slowly() {
    let state = tempfile::tempdir().unwrap();
    let mut services = ServicesSettings::disabled();
    let mut redis = ServiceSettings::defaults(ServiceKind::Redis, ServiceMode::Native);
    redis.command = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
    redis.port = Some(free_port());
    redis.restart_base = Duration::from_millis(10);
    redis.restart_max = Duration::from_millis(100);
    redis.restart_jitter = voltd_actors::config::Jitter::new(0.0).unwrap();
    redis.max_restarts = 3;
    redis.restart_window = Duration::from_secs(60);
    redis.failed_retry = Duration::from_secs(300);
    services.redis = redis;
    let svcs = Services::start(settings_with(state.path(), services));
    let reg = svcs.registry.clone();

    let v = wait_state(&reg, "redis", ServiceState::Failed).await;
    assert_eq!(v.restarts, 3, "the first start and three restarts");
    let states = svcs.states("redis");
    let delays: Vec<String> = states
        .iter()
        .filter_map(|(s, r)| (s == "starting").then_some(r.clone()?))
        .collect();
    assert_eq!(
        delays,
        [
            "exited with code 3; restarting in 10 ms",
            "exited with code 3; restarting in 20 ms",
            "exited with code 3; restarting in 40 ms",
        ]
    );
    let (_, reason) = states.last().unwrap().clone();
    assert_eq!(
        reason.as_deref(),
        Some("exited with code 3; restarted 3 times within 1 min, next attempt in 5 min")
    );

    // Backing off: nothing happens for five minutes, then one new attempt.
    tokio::time::pause();
    let spawned = |svcs: &Services| {
        svcs.states("redis")
            .iter()
            .filter(|(s, r)| s == "starting" && r.is_none())
            .count()
    };
    let before = spawned(&svcs);
    assert_eq!(before, 4);
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(
        spawned(&svcs),
        before,
        "no attempt inside the slow retry period"
    );
    assert_eq!(reg.view("redis").unwrap().state, ServiceState::Failed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    eventually(WITHIN, "the slow retry", async || spawned(&svcs) > before).await;
    tokio::time::resume();
    assert_eq!(svcs.stop().await, ExitCode::Stopped);
}

/// Servers started by the test itself, for external mode.
struct External {
    servers: Vec<StandIn>,
    redis_port: u16,
    mongo_port: u16,
    s3_port: u16,
    _dir: tempfile::TempDir,
}

const EXT_USER: &str = "volt_external";
const EXT_PASSWORD: &str = "external-secret-1";

impl External {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (redis_port, mongo_port, s3_port) = (free_port(), free_port(), free_port());
        let acl = dir.path().join("users.acl");
        std::fs::write(
            &acl,
            format!("user default off\nuser {EXT_USER} on >{EXT_PASSWORD} ~* &* +@all\n"),
        )
        .unwrap();
        let redis_dir = dir.path().join("redis");
        std::fs::create_dir(&redis_dir).unwrap();
        let redis = StandIn::redis(
            redis_port,
            &redis_dir,
            &["--aclfile", acl.to_str().unwrap()],
        );
        let s3_dir = dir.path().join("s3");
        std::fs::create_dir(&s3_dir).unwrap();
        let s3 = StandIn::s3(s3_port, &s3_dir, EXT_USER, EXT_PASSWORD);
        // SecantusDB: users are created on a server without auth, which
        // then restarts with --auth.
        let mongo_dir = dir.path().join("mongo");
        let mut setup = StandIn::mongo(mongo_port, &mongo_dir, false);
        setup.listening().await;
        let client = mongodb::Client::with_options(mongo::client_options(
            "127.0.0.1",
            mongo_port,
            None,
            Duration::from_secs(10),
        ))
        .unwrap();
        client
            .database("admin")
            .run_command(doc! {"createUser": EXT_USER, "pwd": EXT_PASSWORD, "roles": [{"role": "root", "db": "admin"}]})
            .await
            .unwrap();
        client.shutdown().await;
        setup.stop().await;
        let mongo = StandIn::mongo(mongo_port, &mongo_dir, true);
        let mut servers = vec![redis, s3, mongo];
        for server in &mut servers {
            server.listening().await;
        }
        External {
            servers,
            redis_port,
            mongo_port,
            s3_port,
            _dir: dir,
        }
    }

    fn settings(&self, password: &str) -> ServicesSettings {
        let mut all = ServicesSettings::disabled();
        for (kind, port) in [
            (ServiceKind::Redis, self.redis_port),
            (ServiceKind::Mongo, self.mongo_port),
            (ServiceKind::Minio, self.s3_port),
        ] {
            let mut s = ServiceSettings::defaults(kind, ServiceMode::External);
            s.port = Some(port);
            s.user = Some(EXT_USER.into());
            s.password = Some(Secret::new(password));
            s.probe_interval = Duration::from_millis(200);
            // SecantusDB answers SCRAM in Python: under a loaded CI machine
            // a rejected login can take seconds, and this test is about the
            // reason, not about timing.
            s.probe_timeout = Duration::from_secs(20);
            s.unhealthy_after = 2;
            *all.get_mut(kind) = s;
        }
        all
    }

    fn alive(&mut self) -> bool {
        self.servers.iter_mut().all(StandIn::running)
    }
}

#[actix_rt::test]
async fn external_services_are_probed_and_bootstrapped_but_never_run_by_voltd() {
    let mut ext = External::start().await;
    let state = tempfile::tempdir().unwrap();
    let svcs = Services::start(settings_with(state.path(), ext.settings(EXT_PASSWORD)));
    let reg = svcs.registry.clone();
    wait_all_healthy(&reg, &ALL).await;
    for name in ALL {
        let v = reg.view(name).unwrap();
        assert_eq!(v.mode, ServiceMode::External);
        assert_eq!(v.pid, None, "{name}: voltd runs nothing");
        assert_eq!(v.credentials, Some(CredentialSource::Config));
        assert!(v.probe_latency_ms.is_some());
    }
    for name in minio::BUCKETS {
        reg.s3_bucket(name)
            .unwrap()
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .unwrap_or_else(|e| panic!("bucket {name}: {e}"));
    }
    let names = reg
        .mongo_database()
        .unwrap()
        .list_collection_names()
        .await
        .unwrap();
    assert!(names.iter().any(|n| n == "scriptingnotebooks"), "{names:?}");
    assert!(
        reg.restart("redis").is_err(),
        "an external service cannot be restarted by voltd"
    );
    assert!(!state.path().join("services/redis.pid").exists());

    assert_eq!(svcs.stop().await, ExitCode::Stopped);
    assert!(ext.alive(), "stopping voltd leaves external servers alone");
}

#[actix_rt::test]
async fn wrong_credentials_make_every_service_unhealthy_with_an_auth_reason() {
    let ext = External::start().await;
    let state = tempfile::tempdir().unwrap();
    let svcs = Services::start(settings_with(
        state.path(),
        ext.settings("not-the-password"),
    ));
    let reg = svcs.registry.clone();
    for name in ALL {
        let v = wait_state(&reg, name, ServiceState::Failed).await;
        let err = v.last_error.unwrap_or_default();
        assert!(err.starts_with("auth rejected: "), "{name}: {err}");
        assert!(!err.contains("not-the-password"), "{name}: {err}");
    }
    assert!(reg.redis_client().is_none());
    assert!(reg.mongo_client().is_none());
    assert!(reg.s3_bucket("volt-dumps").is_none());
    let events = svcs.bus.recent(usize::MAX);
    assert!(events.iter().any(|r| matches!(
        &r.event,
        Event::ServiceState { service, state, reason: Some(reason) }
            if service.name() == "minio" && state.as_str() == "failed" && reason.contains("HTTP 403")
    )));
    assert_eq!(svcs.stop().await, ExitCode::Stopped);
    drop(ext);
}
