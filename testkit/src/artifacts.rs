//! Provisioning artifacts for tests: wrapper scripts around the stand-ins
//! that behave like the real servers' command lines (`bin/mongod` runs
//! SecantusDB with translated flags, `minio` runs s3s-fs), a MongoDB-like
//! tarball of them, and catalogue files pointing at a [`Mirror`].

use crate::mirror::{Mirror, Serve};
use flate2::Compression;
use flate2::write::GzEncoder;
use voltd_actors::host::download::Sha256Digest;

pub const MONGO_VERSION: &str = "8.0.11";
pub const MINIO_VERSION: &str = "RELEASE.2025-02-28T09-55-16Z";
/// Publisher-style URLs; the catalogue's mirror maps them to the test server.
pub const MONGO_URL: &str = "https://fastdl.mongodb.org/linux/voltd-test-mongodb-linux-8.0.11.tgz";
pub const MINIO_URL: &str =
    "https://dl.min.io/server/minio/release/voltd-test/minio.RELEASE.2025-02-28T09-55-16Z";

/// The path of `url` on a mirror rooted at `/deps`.
pub fn mirror_path(url: &str) -> String {
    format!("/deps/{}", url.trim_start_matches("https://"))
}

/// Where a stand-in would be (not asserted: most tests never start it).
fn standin(var: &str, under_ci: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        let home = std::env::var("VOLTD_CI_DIR").unwrap_or_else(|_| {
            format!(
                "{}/.cache/voltd-ci",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        format!("{home}/{under_ci}")
    })
}

/// `mongod` that is SecantusDB: mongod's flags translated to secantusd-py's.
pub fn mongod_wrapper(version: &str) -> String {
    let secantus = standin("VOLTD_MONGO_SERVER", "venv/bin/secantusd-py");
    format!(
        r#"#!/bin/sh
# Test stand-in for mongod: runs SecantusDB (a MongoDB-wire server).
if [ "$1" = --version ]; then
  echo 'db version v{version}'
  echo 'Build Info: {{ "version": "{version}" }}'
  exit 0
fi
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case $a in
    --dbpath) set -- "$@" --storage-path "$1"; shift; n=$((n - 1));;
    --bind_ip) set -- "$@" --host "$1"; shift; n=$((n - 1));;
    --port) set -- "$@" --port "$1"; shift; n=$((n - 1));;
    --auth) set -- "$@" --auth;;
    *) echo "mongod stand-in: unsupported argument $a" >&2; exit 2;;
  esac
done
exec '{secantus}' --log-level WARNING "$@"
"#
    )
}

/// `minio` that is s3s-fs: `minio server DIR --address HOST:PORT` with the
/// root credentials in the environment.
pub fn minio_wrapper(version: &str) -> String {
    let s3s = standin("VOLTD_S3_SERVER", "cargo/bin/s3s-fs");
    format!(
        r#"#!/bin/sh
# Test stand-in for minio: runs s3s-fs (an S3 server).
if [ "$1" = --version ]; then
  echo 'minio version {version} (commit-id=voltd-test)'
  echo 'Runtime: stand-in'
  exit 0
fi
[ "$1" = server ] || {{ echo 'usage: minio server DIR --address HOST:PORT' >&2; exit 2; }}
dir=$2
[ "$3" = --address ] || {{ echo 'minio stand-in: --address required' >&2; exit 2; }}
host=${{4%:*}}
port=${{4##*:}}
exec '{s3s}' --host "$host" --port "$port" --access-key "$MINIO_ROOT_USER" --secret-key "$MINIO_ROOT_PASSWORD" "$dir"
"#
    )
}

/// A MongoDB-like tarball: one top directory with `bin/mongod` and friends.
pub fn mongo_tarball(version: &str) -> Vec<u8> {
    let top = format!("mongodb-linux-test-{version}");
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let files: [(&str, Vec<u8>, u32); 3] = [
        ("bin/mongod", mongod_wrapper(version).into_bytes(), 0o755),
        ("LICENSE-Community.txt", b"test licence".to_vec(), 0o644),
        ("README", b"test".to_vec(), 0o644),
    ];
    for (name, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, format!("{top}/{name}"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// One catalogue entry of [`catalogue_toml`].
pub struct Entry<'a> {
    pub service: &'a str,
    pub version: &'a str,
    pub url: &'a str,
    pub sha256: Sha256Digest,
    pub tarball: bool,
}

/// A catalogue file (`replace = true`, so only these entries) whose
/// mirror is `mirror`'s `/deps` tree, for this host's platform.
pub fn catalogue_toml(mirror: &Mirror, entries: &[Entry<'_>]) -> String {
    let mut text = format!(
        "format = 1\nreplace = true\nmirror = \"{}/deps\"\n",
        mirror.base
    );
    for e in entries {
        text.push_str(&format!(
            "\n[[artifact]]\nservice = \"{}\"\nversion = \"{}\"\nos = \"{}\"\narch = \"{}\"\nurl = \"{}\"\nsha256 = \"{}\"\n",
            e.service,
            e.version,
            std::env::consts::OS,
            std::env::consts::ARCH,
            e.url,
            e.sha256
        ));
        if e.tarball {
            text.push_str("layout = \"tar.gz\"\nstrip_components = 1\nentry = \"bin/mongod\"\n");
        } else {
            text.push_str(&format!(
                "layout = \"binary\"\nentry = \"bin/{}\"\n",
                e.service
            ));
        }
    }
    text
}

/// The catalogue entries of [`mongo_tarball`] and [`minio_wrapper`] as
/// served by [`serve_good_artifacts`].
pub fn good_entries(mongo: &[u8], minio: &[u8]) -> Vec<Entry<'static>> {
    vec![
        Entry {
            service: "mongo",
            version: MONGO_VERSION,
            url: MONGO_URL,
            sha256: Sha256Digest::of(mongo),
            tarball: true,
        },
        Entry {
            service: "minio",
            version: MINIO_VERSION,
            url: MINIO_URL,
            sha256: Sha256Digest::of(minio),
            tarball: false,
        },
    ]
}

/// Puts a good MongoDB tarball and MinIO binary on `mirror`; returns them.
pub fn serve_good_artifacts(mirror: &Mirror) -> (Vec<u8>, Vec<u8>) {
    let mongo = mongo_tarball(MONGO_VERSION);
    let minio = minio_wrapper(MINIO_VERSION).into_bytes();
    mirror.put(&mirror_path(MONGO_URL), mongo.clone(), Serve::Normal);
    mirror.put(&mirror_path(MINIO_URL), minio.clone(), Serve::Normal);
    (mongo, minio)
}
