//! The chaos suite's fast part: every scenario of `testkit::chaos` with
//! counts that fit in CI (the long run with the README's counts is
//! `scripts/chaos.sh`, i.e. `cargo bench --bench chaos`). The network
//! scenarios need root (namespaces, `ip`, `tc`).

use crate::voltd_bin;
use std::path::Path;
use std::time::Duration;
use testkit::chaos;

#[actix_rt::test]
async fn killed_managed_servers_come_back_and_keep_acknowledged_redis_writes() {
    let report = chaos::service_kills(2).await;
    assert!(report.acked_writes > 0);
    println!("{report}");
}

#[actix_rt::test]
async fn voltd_killed_at_random_points_keeps_its_one_enrollment_and_registers_again() {
    let report = chaos::voltd_kills(Path::new(voltd_bin()), 4, 6, 20261123).await;
    assert_eq!(
        report.before_enrollment + report.after_credentials + report.token_spent,
        4
    );
    println!("{report}");
}

#[actix_rt::test]
async fn a_restarted_plane_gets_exactly_one_registration_each_time() {
    let report = chaos::plane_restarts(Path::new(voltd_bin()), 3).await;
    println!("{report}");
}

mod needs_root {
    use super::*;

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn after_a_partition_voltd_is_back_within_5_s_of_the_heal() {
        testkit::needs_root();
        // Longer than TCP_USER_TIMEOUT (30 s): the old connection dies
        // during the outage and the heal starts a new one (the 60 s run of
        // scripts/chaos.sh takes the same path).
        let report = chaos::partition(Path::new(voltd_bin()), Duration::from_secs(40)).await;
        assert!(report.back_after_heal <= Duration::from_secs(5));
        println!("{report}");
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn a_network_change_does_not_cancel_a_connected_attempt_waiting_for_its_registration() {
        testkit::needs_root();
        let (registrations, log) =
            chaos::network_change_while_registering(Path::new(voltd_bin())).await;
        assert!(
            log.contains("the connection attempt under way goes on (it is connected)"),
            "{log}"
        );
        assert_eq!(registrations, 1, "{log}");
    }

    #[actix_rt::test]
    #[ignore = "needs root"]
    async fn a_download_on_a_slow_long_link_does_not_hold_back_pongs_or_heartbeats() {
        testkit::needs_root();
        let report = chaos::throttled_download(
            Path::new(voltd_bin()),
            20_000_000,
            Some(Duration::from_secs(30)),
        )
        .await;
        // The link was busy with the download the whole time.
        assert!(report.bytes > 1_000_000, "{report}");
        println!("{report}");
    }
}
