//! host/keystore.rs with the real `systemd-creds` and the host key
//! (`--with-key=host`: no TPM here). Sealing with the host key needs root,
//! so these tests are ignored by default and run by `.ci/run` as root; run
//! as another user they fail rather than pass silently.

use volt_protocol::register::Secret;
use voltd_actors::host::keystore::{Keystore, SealKey, sealed_path};

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .unwrap();
    assert_eq!(uid, "0", "this test needs root (systemd-creds' host key)");
}

fn host_key_store() -> Keystore {
    require_root();
    let ks = Keystore::detect(SealKey::Host);
    assert!(ks.is_sealed(), "systemd-creds must work as root: {ks:?}");
    ks
}

/// Sealing with the host key needs root: run by `scripts/test.sh` as root.
mod needs_root {
    use super::*;

    #[test]
    #[ignore = "needs root"]
    fn a_sealed_secret_round_trips_and_is_not_readable_on_disk() {
        let ks = host_key_store();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("daemon-password");
        let secret = "7f3c9a0e5b1d2c4f8a6e0b9d3c7f1a2e5d8b4c6a0f9e3d7c";
        ks.store(&plain, "daemon-password", &Secret::new(secret))
            .unwrap();
        let sealed = sealed_path(&plain);
        assert!(!plain.exists(), "no plain copy next to the sealed one");
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = ks.load(None, &plain, "daemon-password").unwrap().unwrap();
        assert_eq!(back.expose(), secret);
    }

    #[test]
    #[ignore = "needs root"]
    fn a_credential_cannot_be_read_under_another_name() {
        let ks = host_key_store();
        let sealed = ks.seal("redis-password", b"abc").unwrap();
        assert_eq!(ks.unseal("redis-password", &sealed).unwrap(), b"abc");
        let e = ks.unseal("mongo-password", &sealed).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("mongo-password"), "{text}");
        assert!(!text.contains("abc"), "{text}");
    }

    #[test]
    #[ignore = "needs root"]
    fn switching_to_the_plain_fallback_removes_the_sealed_copy_and_back() {
        let ks = host_key_store();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("pw");
        ks.store(&plain, "pw", &Secret::new("one")).unwrap();
        Keystore::PlainFile
            .store(&plain, "pw", &Secret::new("two"))
            .unwrap();
        assert!(!sealed_path(&plain).exists());
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "two");
        ks.store(&plain, "pw", &Secret::new("three")).unwrap();
        assert!(!plain.exists());
        // A host without a usable keystore still reads the sealed file through
        // systemd-creds (here root can).
        assert_eq!(
            Keystore::PlainFile
                .load(None, &plain, "pw")
                .unwrap()
                .unwrap()
                .expose(),
            "three"
        );
    }
}
