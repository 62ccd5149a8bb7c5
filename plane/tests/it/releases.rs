//! `/downloads/`: signed releases published with the library (what
//! `volt-plane release publish` calls) and served to installers and daemons.

use sha2::{Digest, Sha256};
use testkit::plane::*;
use volt_plane::{PlaneConfig, ReleaseStore};
use volt_protocol::release::{Platform, PublicKey, ReleaseManifest};

async fn plane_with_releases(dir: &std::path::Path) -> volt_plane::PlaneHandle {
    volt_plane::start(PlaneConfig {
        releases_dir: Some(dir.to_owned()),
        ..config()
    })
    .await
    .unwrap()
}

async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_published_release_is_served_with_a_manifest_that_verifies_against_the_served_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::new(dir.path().join("releases"));
    let bin = dir.path().join("voltd-build");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&bin, &body).unwrap();
    let linux = Platform::new("linux", "x86_64").unwrap();
    store.publish("1.4.0", &linux, &bin).unwrap();
    let plane = plane_with_releases(store.dir()).await;
    let base = format!("{}/downloads", plane.base_url());

    let (status, key) = fetch(&format!("{base}/release-key.pub")).await;
    assert_eq!(status, 200);
    let key = PublicKey::parse(std::str::from_utf8(&key).unwrap()).unwrap();
    assert_eq!(key, store.public_key().unwrap().unwrap());
    let (status, pem) = fetch(&format!("{base}/release-key.pem")).await;
    assert_eq!(status, 200);
    assert_eq!(
        PublicKey::parse(std::str::from_utf8(&pem).unwrap()).unwrap(),
        key
    );

    for version in ["1.4.0", "latest"] {
        let (status, m) = fetch(&format!(
            "{base}/voltd/{version}/linux/x86_64/manifest.json"
        ))
        .await;
        assert_eq!(status, 200, "{version}");
        let verified = ReleaseManifest::parse(&m).unwrap().verify(&key).unwrap();
        assert_eq!(verified.info().version(), "1.4.0");
        assert_eq!(verified.info().size(), body.len() as u64);
        assert_eq!(verified.info().sha256(), hex::encode(Sha256::digest(&body)));
    }
    let r = reqwest::get(format!("{base}/voltd/1.4.0/linux/x86_64/voltd"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(body.len() as u64));
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    plane.shutdown().await;
}

#[tokio::test]
async fn unknown_releases_and_bad_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_releases(dir.path()).await;
    let base = format!("{}/downloads", plane.base_url());
    // Nothing published yet: no key, no latest.
    assert_eq!(fetch(&format!("{base}/release-key.pub")).await.0, 404);
    assert_eq!(
        fetch(&format!("{base}/voltd/latest/linux/x86_64/manifest.json"))
            .await
            .0,
        404
    );
    assert_eq!(
        fetch(&format!("{base}/voltd/9.9.9/linux/x86_64/voltd"))
            .await
            .0,
        404
    );
    assert_eq!(
        fetch(&format!("{base}/voltd/1.0.0/plan9/x86_64/voltd"))
            .await
            .0,
        400
    );
    assert_eq!(
        fetch(&format!("{base}/voltd/1.0.0/linux/x86_64/secret.pk8"))
            .await
            .0,
        404
    );
    assert_eq!(
        fetch(&format!(
            "{base}/voltd/..%2F..%2Frelease-key.pk8/linux/x86_64/voltd"
        ))
        .await
        .0,
        400
    );
    plane.shutdown().await;

    // A plane without a releases directory serves no downloads at all.
    let plane = testkit::plane::plane().await;
    assert_eq!(
        fetch(&format!("{}/downloads/release-key.pub", plane.base_url()))
            .await
            .0,
        404
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn the_install_command_pins_the_release_key_and_carries_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::new(dir.path());
    let bin = dir.path().join("b");
    std::fs::write(&bin, b"x").unwrap();
    store
        .publish("1.0.0", &Platform::new("linux", "x86_64").unwrap(), &bin)
        .unwrap();
    let key = store.public_key().unwrap().unwrap().to_base64();
    let plane = plane_with_releases(dir.path()).await;
    let created = plane.create_cluster(Default::default()).await.unwrap();
    let url = plane.public_url();
    // base64 (`A-Za-z0-9+/=`) needs no shell quoting.
    assert_eq!(
        created.install_command,
        format!(
            "curl -fsSL {url}/install.sh | sudo bash -s -- --url {url} --cluster {} --release-key {key}",
            created.team_cluster.id
        )
    );
    assert!(!created.install_command.contains(&created.enrollment_token));
    plane.shutdown().await;
}

#[tokio::test]
async fn installer_files_are_served_byte_for_byte() {
    let plane = plane().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../install");
    for (route, file) in [
        ("install.sh", "install.sh"),
        ("install.ps1", "install.ps1"),
        ("voltd.service", "voltd.service"),
    ] {
        let (status, body) = fetch(&format!("{}/{route}", plane.base_url())).await;
        assert_eq!(status, 200, "{route}");
        assert_eq!(body, std::fs::read(root.join(file)).unwrap(), "{route}");
    }
    plane.shutdown().await;
}
