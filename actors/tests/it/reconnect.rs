//! The reconnect rule (`cloud/reconnect.rs`) end to end, with paused tokio
//! time: the real control socket against a scriptable server
//! (`testkit::wire`) that registers it and cuts it when the test says.
//! Virtual time makes the waits instant and the measured delays exact.

use otp::ExitSlot;
use otp::supervisor::spawn_actor;
use std::sync::Arc;
use std::time::Duration;
use testkit::wire::{RawConn, RawServer, reference_open};
use tokio::time::Instant;
use voltd_actors::cloud::control_socket::ControlSocket;
use voltd_actors::cloud::credentials::Credentials;
use voltd_actors::config::{CloudUrl, ClusterId, Settings};
use voltd_actors::daemon::Wiring;
use voltd_actors::events::EventBus;

/// The reference's reconnect settings (500 ms × 2ⁿ ≤ 30 s, ± 30 %, reset
/// after 2 s registered); the network watch is off so that another
/// process changing the machine's network cannot shorten a wait.
fn settings(url: &str) -> Settings {
    let dir = std::env::temp_dir().join(format!("voltd-reconnect-{}", std::process::id()));
    let mut s = Settings::new(
        CloudUrl::parse(url).unwrap(),
        ClusterId::parse("c1").unwrap(),
        dir,
    );
    s.socket.watch_network = false;
    s
}

/// A control socket pointed at `server`; its bus.
fn daemon(server: &RawServer) -> EventBus {
    let bus = EventBus::default();
    let wiring = Wiring::new(bus.clone());
    wiring.credentials.publish(Credentials {
        team_cluster_id: "c1".into(),
        daemon_password: "pw".into(),
    });
    voltd_actors::cloud::tls::install_default_provider();
    let tls = voltd_actors::cloud::tls::client_config(None).unwrap();
    let (_addr, _) = spawn_actor(ControlSocket::new(
        Arc::new(settings(&server.url())),
        tls,
        wiring.credentials.clone(),
        wiring.socket_events.clone(),
        bus.clone(),
        ExitSlot::new(),
    ));
    bus
}

/// Accepts the next connection and registers it.
async fn registered(server: &mut RawServer) -> RawConn {
    let mut c = server.accept_within(Duration::from_secs(120)).await;
    let reg = c.register(&reference_open()).await;
    assert_eq!(reg.payload["teamClusterId"], "c1");
    c
}

/// Cuts `conn` (the TCP connection ends, as when a server instance goes
/// away) and returns how long the daemon took to connect again.
async fn cut_and_time_reconnect(server: &mut RawServer, conn: RawConn) -> (Duration, RawConn) {
    drop(conn);
    let cut = Instant::now();
    let mut next = server.accept_within(Duration::from_secs(120)).await;
    let gap = cut.elapsed();
    next.register(&reference_open()).await;
    (gap, next)
}

#[actix_rt::test]
async fn a_server_that_cuts_registered_sockets_seconds_apart_gets_sub_second_reconnects() {
    // The measured problem: 25 cuts a few seconds apart (a rolling deploy)
    // used to take up to 30 s to recover from.
    tokio::time::pause();
    let mut server = RawServer::start().await;
    let _bus = daemon(&server);
    let mut conn = registered(&mut server).await;
    let mut gaps = Vec::new();
    for _ in 0..25 {
        // Registered for 2.5 s, then cut.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (gap, next) = cut_and_time_reconnect(&mut server, conn).await;
        gaps.push(gap);
        conn = next;
    }
    let worst = gaps.iter().max().unwrap();
    assert!(
        *worst < Duration::from_secs(1),
        "every reconnect within 1 s (jitter included): {gaps:?}"
    );
    // Jittered, not a fixed delay: the base 500 ms ± 30 %.
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_millis(350) && *g <= Duration::from_millis(655)),
        "{gaps:?}"
    );
}

#[actix_rt::test]
async fn a_server_that_registers_and_drops_at_once_is_backed_off() {
    tokio::time::pause();
    let mut server = RawServer::start().await;
    let _bus = daemon(&server);
    let mut conn = registered(&mut server).await;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let (gap, next) = cut_and_time_reconnect(&mut server, conn).await;
        gaps.push(gap.as_millis() as u64);
        conn = next;
    }
    // Nominal 0.5, 1, 2, 4, 8, 16 s, each ± 30 %.
    for (gap, nominal) in gaps.iter().zip([500u64, 1000, 2000, 4000, 8000, 16000]) {
        assert!(
            *gap >= nominal * 7 / 10 && *gap <= nominal * 13 / 10 + 5,
            "gap {gap} ms for nominal {nominal} ms: {gaps:?}"
        );
    }

    // One registration that lasts resets the streak: the next cut is
    // followed by a sub-second reconnect again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (gap, _conn) = cut_and_time_reconnect(&mut server, conn).await;
    assert!(
        gap < Duration::from_secs(1),
        "{gap:?} after a stable registration"
    );
}

#[actix_rt::test]
async fn failed_registrations_back_off_and_a_registration_ends_the_streak() {
    tokio::time::pause();
    let mut server = RawServer::start().await;
    let _bus = daemon(&server);
    // Five attempts that never register: the server hangs up right after
    // the register event.
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut c = server.accept_within(Duration::from_secs(120)).await;
        times.push(Instant::now());
        c.handshake(&reference_open()).await;
        drop(c);
    }
    let mut conn = server.accept_within(Duration::from_secs(120)).await;
    times.push(Instant::now());
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    for (gap, nominal) in gaps.iter().zip([500u64, 1000, 2000, 4000, 8000]) {
        assert!(
            *gap >= nominal * 7 / 10 && *gap <= nominal * 13 / 10 + 5,
            "gap {gap} ms for nominal {nominal} ms: {gaps:?}"
        );
    }
    // This one registers and lasts: its loss costs under a second.
    conn.register(&reference_open()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (gap, _conn) = cut_and_time_reconnect(&mut server, conn).await;
    assert!(gap < Duration::from_secs(1), "{gap:?}");
}
