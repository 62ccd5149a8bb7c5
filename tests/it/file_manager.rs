//! The host file manager end to end, as a person drives it: curl-style
//! HTTP against a real volt-plane, which turns each request into daemon
//! commands for a real in-process voltd.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use testkit::daemon::Fixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Manager {
    f: Fixture,
    files: tempfile::TempDir,
    http: reqwest::Client,
}

impl Manager {
    async fn start() -> Manager {
        let files = tempfile::tempdir().unwrap();
        let base = files.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("rw")).unwrap();
        std::fs::create_dir_all(base.join("ro")).unwrap();
        std::fs::write(base.join("ro/keep.txt"), "keep").unwrap();
        let roots = voltd_actors::config::HostFilesSettings::try_new_with_access(vec![
            ("rw".into(), base.join("rw"), false),
            ("ro".into(), base.join("ro"), true),
        ])
        .unwrap();
        let f = Fixture::start_with(|s| s.host_files = roots).await;
        Manager {
            f,
            files,
            http: testkit::plane::http(),
        }
    }

    fn dir(&self, root: &str) -> PathBuf {
        self.files.path().canonicalize().unwrap().join(root)
    }

    fn url(&self, route: &str, query: &str) -> String {
        format!(
            "{}/api/clusters/{}/explorer/host-files/{route}?{query}",
            self.f.plane.base_url(),
            self.f.id
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn stop(self) {
        self.f.stop().await;
    }
}

/// Every name in `dir`, hidden ones included, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[actix_rt::test]
async fn a_50_mb_upload_in_chunks_downloads_byte_identical_then_rename_delete_and_read_only() {
    let m = Manager::start().await;
    let big: Vec<u8> = (0..50_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let sha = format!("{:x}", Sha256::digest(&big));

    // Upload: one PUT, many chunks below maxPayload.
    let (status, body) = m
        .send(
            m.http
                .put(m.url("upload", "path=rw/big.bin"))
                .body(big.clone()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["size"], 50_000_000);
    assert_eq!(body["data"]["sha256"], sha);
    assert_eq!(names(&m.dir("rw")), ["big.bin"], "no temporary file left");

    // Download: byte-identical, with the announced length.
    let r = m
        .http
        .get(m.url("download", "path=rw/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.content_length(), Some(50_000_000));
    let got = r.bytes().await.unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&got)), sha);
    drop(got);

    // A second upload to the same path is refused unless overwrite.
    let (status, body) = m
        .send(m.http.put(m.url("upload", "path=rw/big.bin")).body("x"))
        .await;
    assert_eq!(status, 409, "{body}");

    // mkdir, rename (move), stat, delete.
    let (status, body) = m
        .send(m.http.post(m.url("mkdir", "path=rw/old")).json(&json!({})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = m
        .send(
            m.http
                .post(m.url("rename", "path=rw/big.bin&to=rw/old/big.bin"))
                .json(&json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(m.dir("rw").join("old/big.bin").is_file());
    let (status, body) = m
        .send(m.http.get(m.url("stat", "path=rw/old/big.bin")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["size"], 50_000_000);
    assert_eq!(body["data"]["readOnly"], false);
    let (status, body) = m.send(m.http.delete(m.url("entries", "path=rw/old"))).await;
    assert_eq!(status, 409, "not empty without recursive: {body}");
    let (status, body) = m
        .send(
            m.http
                .delete(m.url("entries", "path=rw/old&recursive=true")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["removed"], 2);
    assert!(names(&m.dir("rw")).is_empty());

    // A read-only root refuses every change and keeps its file.
    for (status, body) in [
        m.send(m.http.put(m.url("upload", "path=ro/new.txt")).body("x"))
            .await,
        m.send(m.http.post(m.url("mkdir", "path=ro/d")).json(&json!({})))
            .await,
        m.send(
            m.http
                .post(m.url("rename", "path=ro/keep.txt&to=ro/moved.txt"))
                .json(&json!({})),
        )
        .await,
        m.send(m.http.delete(m.url("entries", "path=ro/keep.txt")))
            .await,
    ] {
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "ROOT_READ_ONLY", "{body}");
    }
    assert_eq!(names(&m.dir("ro")), ["keep.txt"]);
    m.stop().await;
}

#[actix_rt::test]
async fn an_interrupted_upload_leaves_no_file() {
    let m = Manager::start().await;
    // A client that announces 10 MB, sends 3 MB and hangs up.
    let url = reqwest::Url::parse(&m.url("upload", "path=rw/cut.bin")).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-length: 10000000\r\n\r\n",
        url.path(),
        url.query().unwrap(),
        testkit::plane::TEST_ADMIN_TOKEN,
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let part = vec![7u8; 3_000_000];
    tcp.write_all(&part).await.unwrap();
    tcp.flush().await.unwrap();
    // Half-close: the body ends 7 MB short. The plane aborts the upload
    // before it answers, so the answer means the abort is done.
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("nothing was stored"), "{answer}");
    let dir = m.dir("rw");
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    // Commands straight to the daemon: chunks never show before commit.
    let (_, begun) =
        m.f.plane
            .request(
                &m.f.id,
                "remote.explorer.upload.begin",
                json!({"target": "host-files", "path": "rw/half.bin", "size": 10}),
                None,
            )
            .await
            .unwrap();
    let id = begun["uploadId"].as_str().unwrap().to_owned();
    m.f.plane
        .request(
            &m.f.id,
            "remote.explorer.upload.chunk",
            json!({"uploadId": id, "offset": 0, "chunkBase64": "aGVsbG8="}),
            None,
        )
        .await
        .unwrap();
    assert!(names(&dir).is_empty());
    let short =
        m.f.plane
            .request(
                &m.f.id,
                "remote.explorer.upload.commit",
                json!({"uploadId": id}),
                None,
            )
            .await;
    assert!(
        format!("{short:?}").contains("UPLOAD_INCOMPLETE"),
        "{short:?}"
    );
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    m.stop().await;
}
