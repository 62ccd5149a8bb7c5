//! Explorer and object routes, with a test daemon on a real socket.io
//! connection playing the daemon side of `remote.explorer.*` / `object.*`.

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::WAIT;
use testkit::plane::*;
use testkit::sio::*;
use tokio::sync::mpsc;
use volt_plane::{MAX_OBJECT_UPLOAD_BYTES, MAX_PAYLOAD, PlaneConfig, PlaneError};
use volt_protocol::MESSAGE_EVENT;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

/// Deterministic, incompressible-looking test bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A stream reply: opening response with `headers`, `body` in chunks of
/// `chunk`, then `stream-end` (with `fail` as its message, after
/// `fail_after` chunks, when given).
fn stream_reply(
    cmd: &Value,
    headers: Value,
    body: &[u8],
    chunk: usize,
    fail: Option<(usize, &str)>,
) -> Vec<Value> {
    let id = cmd["requestId"].clone();
    let sid = format!("s-{}", id.as_str().unwrap());
    let mut out = vec![
        json!({"type": "response", "requestId": id, "ok": true, "status": 200,
                              "headers": headers, "streamId": sid}),
    ];
    for (i, part) in body.chunks(chunk).enumerate() {
        if let Some((after, message)) = fail
            && i == after
        {
            out.push(
                json!({"type": "stream-end", "requestId": id, "streamId": sid, "message": message}),
            );
            return out;
        }
        out.push(
            json!({"type": "stream", "requestId": id, "streamId": sid, "chunkBase64": b64(part)}),
        );
    }
    out.push(json!({"type": "stream-end", "requestId": id, "streamId": sid}));
    out
}

fn failure(cmd: &Value, status: u16, message: &str, code: Option<&str>) -> Value {
    let mut r = json!({"type": "response", "requestId": cmd["requestId"], "ok": false,
                       "status": status, "message": message});
    if let Some(code) = code {
        r["data"] = json!({"status": "error", "code": code, "message": message});
    }
    r
}

/// A daemon that records every command it gets and answers with `reply`.
async fn recording_daemon<F>(
    plane: &volt_plane::PlaneHandle,
    reply: F,
) -> (String, ScriptedDaemon, mpsc::UnboundedReceiver<Value>)
where
    F: Fn(&Value) -> Vec<Value> + Send + 'static,
{
    let (created, pw) = enrolled_cluster(plane).await;
    let id = created.team_cluster.id.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let daemon = ScriptedDaemon::start(&plane.base_url(), &id, &pw, move |cmd| {
        let _ = tx.send(cmd.clone());
        reply(cmd)
    })
    .await;
    (id, daemon, rx)
}

fn explorer_script(cmd: &Value) -> Vec<Value> {
    let p = &cmd["payload"];
    match (cmd["command"].as_str().unwrap(), p["target"].as_str()) {
        (_, Some("nope")) => vec![failure(
            cmd,
            400,
            "Unsupported explorer target: nope (supported: mongo-documents, redis-data, minio, host-files)",
            None,
        )],
        (_, Some("host-files")) if p["path"] == "../etc" => vec![failure(
            cmd,
            403,
            "Path escapes the configured roots",
            Some("Explorer::PathOutsideRoots"),
        )],
        ("remote.explorer.list", _) => vec![success_for(
            cmd,
            json!([{"id": "db/0", "name": "db0", "path": "db/0", "type": "redis-database",
                    "size": null, "updatedAt": null, "description": "3 keys",
                    "echo": {"target": p["target"], "path": p["path"]}}]),
        )],
        ("remote.explorer.node", _) => vec![success_for(
            cmd,
            json!({"path": p["path"], "title": "k", "type": "redis-key", "contentType": "text",
                   "textContent": "{\"type\":\"string\"}", "mongoDocuments": [],
                   "echoTarget": p["target"]}),
        )],
        _ => vec![failure(cmd, 404, "Unknown daemon command", None)],
    }
}

#[tokio::test]
async fn explorer_entries_and_node_forward_target_and_path() {
    let plane = plane().await;
    let (id, _daemon, mut seen) = recording_daemon(&plane, explorer_script).await;
    let base = format!("{}/api/clusters/{id}/explorer", plane.base_url());

    let (status, body) = get(&format!(
        "{base}/redis-data/entries?path=db%2F0%2Fkey%2Fa%20b"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"][0]["id"], "db/0");
    assert_eq!(body["data"][0]["description"], "3 keys");
    assert_eq!(
        body["data"][0]["echo"],
        json!({"target": "redis-data", "path": "db/0/key/a b"})
    );
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["command"], "remote.explorer.list");
    assert_eq!(cmd["responseType"], "json");
    assert_eq!(
        cmd["payload"],
        json!({"target": "redis-data", "path": "db/0/key/a b"})
    );

    // No path: the root, as an empty path.
    let (status, _) = get(&format!("{base}/minio/entries")).await;
    assert_eq!(status, 200);
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["payload"], json!({"target": "minio", "path": ""}));

    let (status, body) = get(&format!("{base}/mongo-documents/node?path=analyses")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["path"], "analyses");
    assert_eq!(body["data"]["echoTarget"], "mongo-documents");
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["command"], "remote.explorer.node");
    assert_eq!(
        cmd["payload"],
        json!({"target": "mongo-documents", "path": "analyses"})
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn daemon_failures_keep_their_status_and_code() {
    let plane = plane().await;
    let (id, _daemon, _seen) = recording_daemon(&plane, explorer_script).await;
    let base = format!("{}/api/clusters/{id}/explorer", plane.base_url());

    let (status, body) = get(&format!("{base}/nope/entries")).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], "TeamCluster::DaemonRequestFailed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("supported: mongo-documents"),
        "{body}"
    );

    let (status, body) = get(&format!("{base}/host-files/node?path=../etc")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"status": "error", "code": "Explorer::PathOutsideRoots",
               "message": "Path escapes the configured roots"})
    );

    // A refused download is a JSON error too, not a stream.
    let (status, body) = get(&format!("{base}/nope/download?path=x")).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "TeamCluster::DaemonRequestFailed");

    // Unknown cluster, and no daemon.
    let (status, body) = get(&format!(
        "{}/api/clusters/000000000000000000000000/explorer/minio/entries",
        plane.base_url()
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("TeamCluster::NotFound"))
    );
    let other = plane.create_cluster(Default::default()).await.unwrap();
    let (status, body) = get(&format!(
        "{}/api/clusters/{}/objects/b",
        plane.base_url(),
        other.team_cluster.id
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("TeamCluster::DaemonUnavailable"))
    );
    plane.shutdown().await;
}

const BIG: usize = 4 * 1024 * 1024 + 12_345;
const CHUNK: usize = 64 * 1024;

fn download_script(cmd: &Value) -> Vec<Value> {
    let body = pattern(BIG);
    match cmd["command"].as_str().unwrap() {
        "remote.explorer.download" => {
            let path = cmd["payload"]["path"].as_str().unwrap();
            let headers = json!({
                "Content-Type": "application/x-test",
                "content-disposition": "attachment; filename=\"big.bin\"",
                "content-length": BIG.to_string(),
            });
            match path {
                "big.bin" => stream_reply(cmd, headers, &body, CHUNK, None),
                "chunked.bin" => stream_reply(
                    cmd,
                    json!({"content-type": "text/plain"}),
                    &body,
                    CHUNK,
                    None,
                ),
                "broken.bin" => {
                    stream_reply(cmd, headers, &body, CHUNK, Some((20, "disk read failed")))
                }
                "broken-chunked.bin" => {
                    stream_reply(cmd, json!({}), &body, CHUNK, Some((3, "disk read failed")))
                }
                _ => vec![failure(cmd, 404, "No such value", None)],
            }
        }
        "object.get" => match cmd["payload"]["objectKey"].as_str().unwrap() {
            "dir/a b.bin" => stream_reply(
                cmd,
                json!({"content-length": "11", "content-type": "application/pdf"}),
                b"hello world",
                4,
                None,
            ),
            _ => vec![failure(cmd, 404, "Object not found", None)],
        },
        _ => vec![failure(cmd, 404, "Unknown daemon command", None)],
    }
}

#[tokio::test]
async fn downloads_stream_many_chunks_intact_with_the_daemons_headers() {
    let plane = plane().await;
    let (id, _daemon, mut seen) = recording_daemon(&plane, download_script).await;
    let url = format!(
        "{}/api/clusters/{id}/explorer/minio/download?path=big.bin",
        plane.base_url()
    );
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"big.bin\""
    );
    assert_eq!(r.headers()["content-length"], BIG.to_string().as_str());
    let mut got = Vec::new();
    let mut r = r;
    let mut reads = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        got.extend_from_slice(&c);
        reads += 1;
    }
    assert_eq!(got.len(), BIG);
    assert_eq!(sha(&got), sha(&pattern(BIG)));
    assert!(reads > 10, "body arrived in {reads} reads");
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["command"], "remote.explorer.download");
    assert_eq!(cmd["responseType"], "stream");
    assert_eq!(
        cmd["payload"],
        json!({"target": "minio", "path": "big.bin"})
    );

    // Without a content-length the body is chunked, and still intact.
    let r = http()
        .get(url.replace("big.bin", "chunked.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(r.headers().get("content-length").is_none());
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&pattern(BIG)));
    plane.shutdown().await;
}

#[tokio::test]
async fn a_failed_stream_end_aborts_the_http_body() {
    let plane = plane().await;
    let (id, _daemon, _seen) = recording_daemon(&plane, download_script).await;
    for path in ["broken.bin", "broken-chunked.bin"] {
        let url = format!(
            "{}/api/clusters/{id}/explorer/minio/download?path={path}",
            plane.base_url()
        );
        // Either the body breaks off, or (when the failure comes before
        // hyper flushed the head) the response itself does: never a
        // complete-looking file.
        match http().get(&url).send().await {
            Ok(r) => {
                assert_eq!(r.status(), 200, "{path}");
                assert!(
                    r.bytes().await.is_err(),
                    "{path}: a failed stream must not look complete"
                );
            }
            Err(e) => assert!(e.is_request(), "{path}: {e:?}"),
        }
    }
    // The plane is fine afterwards.
    let url = format!(
        "{}/api/clusters/{id}/explorer/minio/download?path=big.bin",
        plane.base_url()
    );
    assert_eq!(
        http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        BIG
    );
    plane.shutdown().await;
}

#[tokio::test]
async fn downloads_are_streamed_as_chunks_arrive() {
    let plane = plane().await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let url = format!(
        "{}/api/clusters/{id}/explorer/redis-data/download?path=db/0/key/k",
        plane.base_url()
    );
    let client = tokio::spawn(async move {
        let mut r = http().get(&url).send().await.unwrap();
        let first = r.chunk().await.unwrap().unwrap();
        (r, first)
    });
    let cmd = c.expect_event(MESSAGE_EVENT).await;
    let rid = cmd["requestId"].clone();
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "response", "requestId": rid, "ok": true, "status": 200,
                "headers": {"content-type": "application/json"}, "streamId": rid}),
    )
    .await;
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "stream", "requestId": rid, "streamId": rid, "chunkBase64": b64(b"first")}),
    )
    .await;
    // The client has its headers and first chunk while the stream is open.
    let (mut r, first) = tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
    assert_eq!(&first[..], b"first");
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "stream", "requestId": rid, "streamId": rid, "chunkBase64": b64(b"-second")}),
    )
    .await;
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "stream-end", "requestId": rid, "streamId": rid}),
    )
    .await;
    let mut rest = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"-second");
    plane.shutdown().await;
}

/// Answers the next stream command with `total` bytes in 256 KiB chunks,
/// all sent before anyone reads.
async fn flood_stream(c: &mut SioClient, total: usize) {
    let cmd = c.expect_event(MESSAGE_EVENT).await;
    let rid = cmd["requestId"].clone();
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "response", "requestId": rid, "ok": true, "status": 200,
                "headers": {}, "streamId": rid}),
    )
    .await;
    let chunk = b64(&vec![7u8; 256 * 1024]);
    for _ in 0..total / (256 * 1024) {
        c.emit(
            MESSAGE_EVENT,
            &json!({"type": "stream", "requestId": rid, "streamId": rid, "chunkBase64": chunk}),
        )
        .await;
    }
    c.emit(
        MESSAGE_EVENT,
        &json!({"type": "stream-end", "requestId": rid, "streamId": rid}),
    )
    .await;
}

#[tokio::test]
async fn a_client_slower_than_the_buffer_fails_the_download_cleanly() {
    // Far more than loopback socket buffers absorb while the client waits.
    const TOTAL: usize = 16 * 1024 * 1024;
    let plane = start(PlaneConfig {
        stream_buffer_limit: 256 * 1024,
        ..config()
    })
    .await;
    let (created, pw) = enrolled_cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let mut c = SioClient::connect(&plane.base_url()).await;
    c.register(&id, &pw).await;
    let url = format!(
        "{}/api/clusters/{id}/explorer/minio/download?path=x",
        plane.base_url()
    );
    let request = tokio::spawn(async move { http().get(&url).send().await });
    flood_stream(&mut c, TOTAL).await;
    // Past the marker the plane has taken every chunk (it handles one
    // socket's messages in order); only now does the client start reading.
    c.sync().await;
    let mut got = 0usize;
    let failed = match request.await.unwrap() {
        Err(_) => true,
        Ok(mut r) => loop {
            match r.chunk().await {
                Ok(Some(c)) => got += c.len(),
                Ok(None) => break false,
                Err(_) => break true,
            }
        },
    };
    assert!(
        failed,
        "download completed ({got} bytes) despite the slow client"
    );
    assert!(got < TOTAL);

    // The library API says why.
    let (s, ()) = tokio::join!(
        plane.open_stream(&id, "remote.explorer.download", json!({}), None),
        flood_stream(&mut c, TOTAL)
    );
    let mut s = s.unwrap();
    c.sync().await;
    let err = loop {
        match s.next_chunk().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("stream completed despite the slow reader"),
        }
    };
    assert!(
        matches!(err, PlaneError::BufferFull { limit: 262_144 }),
        "{err:?}"
    );
    assert!(s.next_chunk().await.is_none());
    plane.shutdown().await;
}

#[tokio::test]
async fn objects_list_put_and_get() {
    let plane = plane().await;
    let (id, _daemon, mut seen) = recording_daemon(&plane, |cmd| match cmd["command"].as_str() {
        Some("object.list") => vec![success_for(cmd, json!({"keys": ["dir/a b.bin", "z"]}))],
        Some("object.upload") => vec![success_for(cmd, json!({"uploaded": true}))],
        _ => download_script(cmd),
    })
    .await;
    let base = format!("{}/api/clusters/{id}/objects", plane.base_url());

    let (status, body) = get(&format!("{base}/volt-dumps?prefix=dir%2F")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({"keys": ["dir/a b.bin", "z"]}));
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["command"], "object.list");
    assert_eq!(
        cmd["payload"],
        json!({"bucket": "volt-dumps", "prefix": "dir/"})
    );
    let (status, _) = get(&format!("{base}/volt-dumps")).await;
    assert_eq!(status, 200);
    assert_eq!(
        seen.recv().await.unwrap()["payload"],
        json!({"bucket": "volt-dumps"})
    );

    // Any bytes, under a key with slashes and spaces.
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r = http()
        .put(format!("{base}/volt-dumps/dir/sub%20dir/a%20b+c.bin"))
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "data": {"uploaded": true}})
    );
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["command"], "object.upload");
    assert_eq!(cmd["payload"]["bucket"], "volt-dumps");
    assert_eq!(cmd["payload"]["objectKey"], "dir/sub dir/a b+c.bin");
    assert_eq!(cmd["payload"]["encoding"], "base64");
    assert_eq!(unb64(&cmd["payload"]["content"]), content);

    // GET streams the object with its headers; a missing one is 404.
    let r = http()
        .get(format!("{base}/volt-dumps/dir/a%20b.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.headers()["content-length"], "11");
    assert_eq!(&r.bytes().await.unwrap()[..], b"hello world");
    let cmd = seen.recv().await.unwrap();
    assert_eq!(cmd["command"], "object.get");
    assert_eq!(cmd["responseType"], "stream");
    assert_eq!(
        cmd["payload"],
        json!({"bucket": "volt-dumps", "objectKey": "dir/a b.bin"})
    );
    let (status, body) = get(&format!("{base}/volt-dumps/missing")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"status": "error", "code": "TeamCluster::DaemonRequestFailed", "message": "Object not found"})
    );
    plane.shutdown().await;
}

/// PUTs `body` with `Transfer-Encoding: chunked` (no content-length) over
/// a raw connection; returns the response status.
async fn put_chunked(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TEST_ADMIN_TOKEN}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for c in body.chunks(100_000) {
        // The plane may answer (and close) before reading everything.
        if s.write_all(format!("{:x}\r\n", c.len()).as_bytes())
            .await
            .is_err()
            || s.write_all(c).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_never_reach_the_daemon() {
    let plane = plane().await;
    let (id, _daemon, mut seen) = recording_daemon(&plane, |cmd| {
        vec![success_for(cmd, json!({"uploaded": true}))]
    })
    .await;
    let base = format!("{}/api/clusters/{id}/objects/b", plane.base_url());
    let client = http();

    // Exactly the limit fits in one packet.
    let r = client
        .put(format!("{base}/max.bin"))
        .body(pattern(MAX_OBJECT_UPLOAD_BYTES))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cmd = seen.recv().await.unwrap();
    assert_eq!(
        unb64(&cmd["payload"]["content"]).len(),
        MAX_OBJECT_UPLOAD_BYTES
    );

    // One byte more: 413 naming the limit, with or without a content-length.
    let too_big = pattern(MAX_OBJECT_UPLOAD_BYTES + 1);
    let r = client
        .put(format!("{base}/big.bin"))
        .body(too_big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "Request::PayloadTooLarge");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(&MAX_OBJECT_UPLOAD_BYTES.to_string())
            && msg.contains(&MAX_PAYLOAD.to_string()),
        "{msg}"
    );
    let status = put_chunked(
        plane.addr(),
        &format!("/api/clusters/{id}/objects/b/big.bin"),
        &too_big,
    )
    .await;
    assert_eq!(status, 413);

    // A body under the limit whose command still would not fit in one
    // packet (a huge key) is refused as well.
    let key = "k".repeat(45_000);
    let r = client
        .put(format!("{base}/{key}"))
        .body(pattern(MAX_OBJECT_UPLOAD_BYTES))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("maxPayload"),
        "{body}"
    );

    // A later upload is the ordering marker: commands reach the daemon in
    // the order the plane sends them, so it is the next one the daemon sees.
    let r = client
        .put(format!("{base}/marker.bin"))
        .body("m")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let next = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("the marker reaches the daemon")
        .unwrap();
    assert_eq!(
        next["payload"]["objectKey"], "marker.bin",
        "an oversized upload reached the daemon"
    );
    plane.shutdown().await;
}
