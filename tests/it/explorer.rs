//! Explorers and objects end to end: a real volt-plane drives the daemon,
//! which runs real Redis, a MongoDB-wire server (SecantusDB) and an S3
//! server (s3s-fs) natively; shapes are asserted field by field against the
//! reference's.

use mongodb::bson::doc;
use otp::ExitCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use testkit::daemon::*;
use testkit::services::{native_services, wait_all_healthy};
use volt_plane::{DaemonReply, PlaneHandle, ResponseType};
use voltd_actors::daemon::DaemonHandle;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));

struct Cluster {
    plane: PlaneHandle,
    daemon: DaemonHandle,
    id: String,
    _state: tempfile::TempDir,
    files: tempfile::TempDir,
}

async fn cluster_with_services() -> Cluster {
    let plane = plane().await;
    let created = cluster(&plane).await;
    let id = created.team_cluster.id.clone();
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut s = settings(&plane.base_url(), &created, state.path());
    s.services = native_services();
    std::fs::create_dir_all(files.path().join("data/runs")).unwrap();
    s.host_files = voltd_actors::config::HostFilesSettings::try_new(vec![(
        "data".into(),
        files.path().join("data"),
    )])
    .unwrap();
    let daemon = start_daemon(s);
    wait_all_healthy(daemon.services(), &["redis", "mongo", "minio"]).await;
    wait_connected(&plane, &id).await;
    Cluster {
        plane,
        daemon,
        id,
        _state: state,
        files,
    }
}

impl Cluster {
    async fn json(&self, command: &str, payload: Value) -> (u16, Value) {
        match self
            .plane
            .send_command(&self.id, command, payload, ResponseType::Json, TIMEOUT)
            .await
            .unwrap()
        {
            DaemonReply::Json(r) if r.ok => (r.status, r.data.unwrap()["data"].clone()),
            DaemonReply::Json(r) => (r.status, json!({"message": r.message})),
            other => panic!("unexpected {:?}", other.response()),
        }
    }

    async fn list(&self, target: &str, path: &str) -> Value {
        let (status, data) = self
            .json(
                "remote.explorer.list",
                json!({"target": target, "path": path}),
            )
            .await;
        assert_eq!(status, 200, "{target} {path}: {data}");
        data
    }

    async fn node(&self, target: &str, path: &str) -> Value {
        let (status, data) = self
            .json(
                "remote.explorer.node",
                json!({"target": target, "path": path}),
            )
            .await;
        assert_eq!(status, 200, "{target} {path}: {data}");
        data
    }

    async fn stream(&self, command: &str, payload: Value) -> DaemonReply {
        self.plane
            .send_command(&self.id, command, payload, ResponseType::Stream, TIMEOUT)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.daemon.shutdown(ExitCode::Stopped, "test");
        self.daemon.wait().await;
        self.plane.shutdown().await;
    }
}

fn entry(path: &str, name: &str, kind: &str, description: &str) -> Value {
    json!({"id": path, "name": name, "path": path, "type": kind, "size": null, "updatedAt": null, "description": description})
}

#[actix_rt::test]
async fn mongo_and_redis_explorers_have_the_reference_shapes() {
    let c = cluster_with_services().await;
    let db = c.daemon.services().mongo_database().unwrap();
    let oid = mongodb::bson::oid::ObjectId::parse_str("65f1a2b3c4d5e6f708192a3b").unwrap();
    db.collection("trajectorysceneartifacts")
        .insert_one(doc! {"_id": oid, "name": "frame-1", "n": 3})
        .await
        .unwrap();
    db.collection("pluginlistingrows")
        .insert_one(doc! {"_id": "row-1", "v": 1.5})
        .await
        .unwrap();

    let list = c.list("mongo-documents", "/").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "trajectorysceneartifacts")
        .unwrap();
    assert_eq!(
        e,
        &entry(
            "trajectorysceneartifacts",
            "trajectorysceneartifacts",
            "collection",
            "Collection"
        )
    );

    let node = c
        .node("mongo-documents", "/trajectorysceneartifacts/")
        .await;
    assert_eq!(node["path"], "/trajectorysceneartifacts/");
    assert_eq!(node["title"], "trajectorysceneartifacts");
    assert_eq!(node["type"], "collection");
    assert_eq!(node["contentType"], "mongo-documents");
    assert_eq!(node["textContent"], Value::Null);
    assert_eq!(
        node["mongoDocuments"],
        json!([{"id": "65f1a2b3c4d5e6f708192a3b", "value": {"_id": "65f1a2b3c4d5e6f708192a3b", "name": "frame-1", "n": 3}}])
    );
    let root = c.node("mongo-documents", "").await;
    assert_eq!(root["contentType"], "empty");
    assert_eq!(root["title"], "MongoDB");

    // Redis: one key of every type, in database 1 (database 0 holds the
    // job queues the daemon opens once Redis is healthy).
    let client = c.daemon.services().redis_client().unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("SELECT")
        .arg(1)
        .cmd("SET")
        .arg("jobs:status:1")
        .arg("{\"ok\":true}")
        .cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("1")
        .cmd("RPUSH")
        .arg("l")
        .arg("x")
        .arg("y")
        .cmd("SADD")
        .arg("s")
        .arg("only")
        .cmd("ZADD")
        .arg("z")
        .arg(2)
        .arg("two")
        .arg(1)
        .arg("one")
        .cmd("XADD")
        .arg("st")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .cmd("SET")
        .arg("a key/with:odd chars")
        .arg("v");
    pipe.query_async::<()>(&mut con).await.unwrap();

    let dbs = c.list("redis-data", "").await;
    // Database 0 is listed too once the job queues are open.
    let dbs = dbs.as_array().unwrap();
    let ours = dbs
        .iter()
        .find(|d| d["path"] == "db/1")
        .expect("db/1 listed");
    assert_eq!(ours, &entry("db/1", "db1", "redis-database", "7 keys"));
    assert!(
        dbs.iter()
            .all(|d| d["type"] == "redis-database" && (d["path"] == "db/0" || d["path"] == "db/1")),
        "{dbs:?}"
    );
    let keys = c.list("redis-data", "/db/1/").await;
    let odd = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "a key/with:odd chars")
        .unwrap();
    assert_eq!(
        odd,
        &entry(
            "db/1/key/a%20key%2Fwith%3Aodd%20chars",
            "a key/with:odd chars",
            "redis-key",
            "Key"
        )
    );
    assert_eq!(keys.as_array().unwrap().len(), 7);

    let value = |node: &Value| -> Value {
        serde_json::from_str(node["textContent"].as_str().unwrap()).unwrap()
    };
    for (key, expected) in [
        (
            "jobs%3Astatus%3A1",
            json!({"type": "string", "value": "{\"ok\":true}"}),
        ),
        ("h", json!({"type": "hash", "value": {"a": "1"}})),
        ("l", json!({"type": "list", "value": ["x", "y"]})),
        ("s", json!({"type": "set", "value": ["only"]})),
        (
            "z",
            json!({"type": "zset", "value": ["one", "1", "two", "2"]}),
        ),
        (
            "st",
            json!({"type": "stream", "value": [["1-1", ["f", "v"]]]}),
        ),
        ("missing", json!({"type": "none", "value": null})),
    ] {
        let node = c.node("redis-data", &format!("db/1/key/{key}")).await;
        assert_eq!(node["type"], "redis-value");
        assert_eq!(node["contentType"], "text");
        assert_eq!(value(&node), expected, "{key}");
        // Pretty JSON with two-space indentation, as JSON.stringify(v, null, 2).
        assert!(
            node["textContent"]
                .as_str()
                .unwrap()
                .starts_with("{\n  \"type\""),
            "{node}"
        );
    }
    let node = c
        .node("redis-data", "db/1/key/a%20key%2Fwith%3Aodd%20chars")
        .await;
    assert_eq!(node["title"], "a key/with:odd chars");

    // Downloads: a Redis list as JSON, a collection as JSON lines.
    let DaemonReply::Stream {
        response,
        body,
        error,
        ..
    } = c
        .stream(
            "remote.explorer.download",
            json!({"target": "redis-data", "path": "db/1/key/l"}),
        )
        .await
    else {
        panic!("not a stream")
    };
    assert!(error.is_none());
    assert_eq!(
        response.headers.as_ref().unwrap()["content-type"],
        "application/json"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"type": "list", "value": ["x", "y"]})
    );
    let DaemonReply::Stream { response, body, .. } = c
        .stream(
            "remote.explorer.download",
            json!({"target": "mongo-documents", "path": "pluginlistingrows"}),
        )
        .await
    else {
        panic!("not a stream")
    };
    assert!(
        response.headers.as_ref().unwrap()["content-disposition"]
            .contains("pluginlistingrows.jsonl")
    );
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "{\"_id\":\"row-1\",\"v\":1.5}\n"
    );

    let (status, data) = c
        .json(
            "remote.explorer.list",
            json!({"target": "host-terminal", "path": ""}),
        )
        .await;
    assert_eq!(status, 400, "{data}");
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .contains("mongo-documents, redis-data, minio, host-files")
    );
    c.stop().await;
}

#[actix_rt::test]
async fn huge_collection_elements_are_previewed_by_count_and_downloaded_one_a_page() {
    let c = cluster_with_services().await;
    let client = c.daemon.services().redis_client().unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Two 9 MiB elements per collection: over the 8 MiB a preview may
    // read, so none is read (Redis cannot read part of an element). One
    // command per element, each within the client's response timeout.
    redis::cmd("SELECT")
        .arg(3)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let big = vec![b'x'; 9 << 20];
    for i in 0..2u8 {
        let mut v = big.clone();
        v[0] = b'0' + i;
        for cmd in [
            redis::cmd("RPUSH").arg("big-list").arg(&v).clone(),
            redis::cmd("SADD").arg("big-set").arg(&v).clone(),
            redis::cmd("HSET").arg("big-hash").arg(i).arg(&v).clone(),
        ] {
            cmd.query_async::<()>(&mut con).await.unwrap();
        }
    }
    // Beside them, small elements are shown as ever.
    redis::cmd("RPUSH")
        .arg("small-list")
        .arg("a")
        .arg("b")
        .query_async::<()>(&mut con)
        .await
        .unwrap();

    let value = |node: &Value| -> Value {
        serde_json::from_str(node["textContent"].as_str().unwrap()).unwrap()
    };
    for (key, kind, empty) in [
        ("big-list", "list", json!([])),
        ("big-set", "set", json!([])),
        ("big-hash", "hash", json!({})),
    ] {
        let shown = value(&c.node("redis-data", &format!("db/3/key/{key}")).await);
        assert_eq!(shown["type"], kind, "{shown}");
        assert_eq!(shown["value"], empty, "{key}: {shown}");
        assert_eq!(shown["truncated"], true, "{shown}");
        assert_eq!(shown["length"], 2, "{shown}");
        assert!(
            shown["note"]
                .as_str()
                .unwrap()
                .contains("too large to preview"),
            "{shown}"
        );
    }
    let small = value(&c.node("redis-data", "db/3/key/small-list").await);
    assert_eq!(small, json!({"type": "list", "value": ["a", "b"]}));

    // A download reads them all, but page by page within 8 MiB: one 9 MiB
    // element a page, not a thousand (the slow log records every command
    // with its arguments).
    for cmd in [
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .clone(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(4096)
            .clone(),
        redis::cmd("SLOWLOG").arg("RESET").clone(),
    ] {
        cmd.query_async::<()>(&mut con).await.unwrap();
    }
    for (key, kind) in [
        ("big-list", "list"),
        ("big-hash", "hash"),
        ("big-set", "set"),
    ] {
        let DaemonReply::Stream { body, error, .. } = c
            .stream(
                "remote.explorer.download",
                json!({"target": "redis-data", "path": format!("db/3/key/{key}")}),
            )
            .await
        else {
            panic!("not a stream")
        };
        assert!(error.is_none(), "{key}: {error:?}");
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got["type"], kind);
        let mut values: Vec<String> = match &got["value"] {
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            Value::Object(o) => o.values().map(|v| v.as_str().unwrap().to_owned()).collect(),
            other => panic!("{key}: {other}"),
        };
        values.sort();
        assert_eq!(values.len(), 2, "{key}");
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v.len(), 9 << 20, "{key}");
            assert!(v.starts_with(&format!("{i}xxx")), "{key}");
        }
    }
    // Every LRANGE of the big list asked for one element.
    let log: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    let redis::Value::Array(entries) = log else {
        panic!("{log:?}")
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    let lranges: Vec<Vec<String>> = entries
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(fields) => match fields.get(3) {
                Some(redis::Value::Array(args)) => Some(args.iter().map(text).collect()),
                _ => None,
            },
            _ => None,
        })
        .filter(|args: &Vec<String>| {
            args.first()
                .is_some_and(|a| a.eq_ignore_ascii_case("lrange"))
        })
        .collect();
    assert!(lranges.len() >= 2, "{lranges:?}");
    for args in &lranges {
        let from: i64 = args[2].parse().unwrap();
        let to: i64 = args[3].parse().unwrap();
        assert_eq!(to, from, "one element a page: {args:?}");
    }
    c.stop().await;
}

#[actix_rt::test]
async fn minio_explorer_objects_and_a_20_mb_download() {
    let c = cluster_with_services().await;
    let buckets = c.list("minio", "").await;
    let names: Vec<&str> = buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    for b in [
        "volt-dumps",
        "volt-models",
        "volt-plugins",
        "volt-rasterizer",
    ] {
        assert!(names.contains(&b), "{names:?}");
    }
    assert_eq!(buckets[0], entry(names[0], names[0], "bucket", "Bucket"));

    // Objects through the commands.
    for (key, content, encoding) in [
        ("runs/a.txt", "hello".to_owned(), "utf8"),
        ("runs/deep/b.bin", "AAEC".to_owned(), "base64"),
        ("top.txt", "x".repeat(70_000), "utf8"),
    ] {
        let (status, data) = c
            .json(
                "object.upload",
                json!({"bucket": "volt-dumps", "objectKey": key, "content": content, "encoding": encoding,
                       "metadata": {"content-type": "text/plain", "origin": "test"}}),
            )
            .await;
        assert_eq!((status, data), (200, json!({"uploaded": true})), "{key}");
    }
    let (_, data) = c
        .json(
            "object.list",
            json!({"bucket": "volt-dumps", "prefix": "runs/"}),
        )
        .await;
    let mut keys: Vec<String> = serde_json::from_value(data["keys"].clone()).unwrap();
    keys.sort();
    assert_eq!(keys, ["runs/a.txt", "runs/deep/b.bin"]);

    let listing = c.list("minio", "volt-dumps/").await;
    assert_eq!(
        listing,
        json!([
            entry("volt-dumps/runs", "runs", "directory", "Directory"),
            entry("volt-dumps/top.txt", "top.txt", "object", "Object"),
        ])
    );
    let listing = c.list("minio", "volt-dumps/runs").await;
    assert_eq!(
        listing,
        json!([
            entry("volt-dumps/runs/a.txt", "a.txt", "object", "Object"),
            entry("volt-dumps/runs/deep", "deep", "directory", "Directory"),
        ])
    );
    let node = c.node("minio", "volt-dumps/top.txt").await;
    assert_eq!(node["contentType"], "text");
    assert_eq!(node["title"], "top.txt");
    assert_eq!(
        node["textContent"].as_str().unwrap().len(),
        65_536,
        "first 64 KiB only"
    );
    let node = c.node("minio", "volt-dumps").await;
    assert_eq!(
        node,
        json!({"path": "volt-dumps", "title": "volt-dumps", "type": "object", "contentType": "empty", "textContent": null, "mongoDocuments": []})
    );

    let DaemonReply::Stream { response, body, .. } = c
        .stream(
            "object.get",
            json!({"bucket": "volt-dumps", "objectKey": "runs/deep/b.bin"}),
        )
        .await
    else {
        panic!("not a stream")
    };
    assert_eq!(body, [0u8, 1, 2]);
    let h = response.headers.unwrap();
    assert_eq!(h["content-length"], "3");
    assert_eq!(h["content-type"], "text/plain");
    let DaemonReply::Stream { response, .. } = c
        .stream(
            "object.get",
            json!({"bucket": "volt-dumps", "objectKey": "nope"}),
        )
        .await
    else {
        panic!("not a stream")
    };
    assert!(!response.ok);
    assert_eq!(response.status, 404);

    // The same object as a buffer reply when the server asks for one.
    let DaemonReply::Buffer(r) = c
        .plane
        .send_command(
            &c.id,
            "object.get",
            json!({"bucket": "volt-dumps", "objectKey": "runs/deep/b.bin"}),
            ResponseType::Buffer,
            TIMEOUT,
        )
        .await
        .unwrap()
    else {
        panic!("not a buffer reply")
    };
    assert!(r.ok);
    assert_eq!(r.body_base64.as_deref(), Some("AAEC"));
    assert_eq!(r.headers.as_ref().unwrap()["content-length"], "3");

    // 20 MB: intact, in many chunks, every packet under maxPayload.
    let big: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let bucket = c.daemon.services().s3_bucket("volt-models").unwrap();
    bucket.put_object("big/model.bin", &big).await.unwrap();
    let DaemonReply::Stream {
        response,
        body,
        chunks,
        max_chunk_packet_len,
        error,
    } = c
        .stream(
            "remote.explorer.download",
            json!({"target": "minio", "path": "/volt-models/big/model.bin"}),
        )
        .await
    else {
        panic!("not a stream")
    };
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        response.headers.as_ref().unwrap()["content-length"],
        "20000000"
    );
    assert!(response.headers.as_ref().unwrap()["content-disposition"].contains("model.bin"));
    assert_eq!(Sha256::digest(&body), Sha256::digest(&big));
    assert!(chunks > 100, "{chunks} chunks");
    assert!(max_chunk_packet_len < 1_000_000, "{max_chunk_packet_len}");
    // Too big for one message: a buffer reply is refused with 413.
    let r = c
        .plane
        .send_command(
            &c.id,
            "object.get",
            json!({"bucket": "volt-models", "objectKey": "big/model.bin"}),
            ResponseType::Buffer,
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(!r.response().ok);
    assert_eq!(r.response().status, 413);
    c.stop().await;
}

#[actix_rt::test]
async fn host_files_stay_inside_their_roots() {
    let c = cluster_with_services().await;
    let data = c.files.path().join("data");
    std::fs::write(data.join("runs/log.txt"), "step 1\nstep 2\n").unwrap();
    std::fs::create_dir_all(c.files.path().join("outside")).unwrap();
    std::fs::write(c.files.path().join("outside/secret"), "no").unwrap();
    std::os::unix::fs::symlink(c.files.path().join("outside"), data.join("link-out")).unwrap();

    let roots = c.list("host-files", "").await;
    assert_eq!(roots[0]["name"], "data");
    assert_eq!(roots[0]["type"], "directory");
    let runs = c.list("host-files", "data/runs").await;
    assert_eq!(runs[0]["name"], "log.txt");
    assert_eq!(runs[0]["type"], "file");
    assert_eq!(runs[0]["size"], 14);
    assert!(runs[0]["updatedAt"].is_string());
    let node = c.node("host-files", "data/runs/log.txt").await;
    assert_eq!(node["textContent"], "step 1\nstep 2\n");
    let DaemonReply::Stream { body, response, .. } = c
        .stream(
            "remote.explorer.download",
            json!({"target": "host-files", "path": "data/runs/log.txt"}),
        )
        .await
    else {
        panic!("not a stream")
    };
    assert_eq!(body, b"step 1\nstep 2\n");
    assert_eq!(
        response.headers.unwrap()["content-type"],
        "text/plain; charset=utf-8"
    );

    let abs_outside = c.files.path().join("outside/secret");
    for (path, status) in [
        ("data/../outside/secret".to_owned(), 403),
        ("data/runs/../../outside/secret".to_owned(), 403),
        ("data/link-out/secret".to_owned(), 403),
        (abs_outside.display().to_string(), 403),
        ("/etc/passwd".to_owned(), 403),
        ("data/runs/log\0.txt".to_owned(), 400),
        ("data/nope.txt".to_owned(), 404),
    ] {
        for command in ["remote.explorer.list", "remote.explorer.node"] {
            let (got, data) = c
                .json(command, json!({"target": "host-files", "path": path}))
                .await;
            assert_eq!(got, status, "{command} {path:?}: {data}");
            assert!(data["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let DaemonReply::Stream { response, .. } = c
            .stream(
                "remote.explorer.download",
                json!({"target": "host-files", "path": path}),
            )
            .await
        else {
            panic!("not a stream")
        };
        assert_eq!(response.status, status, "download {path:?}");
    }
    // The daemon is unaffected.
    let (status, _) = c.json("runtime.ping", json!({})).await;
    assert_eq!(status, 200);
    c.stop().await;
}
