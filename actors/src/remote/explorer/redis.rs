//! `redis-data`: keyspaces and keys.
//!
//! Paths: `` (the keyspace databases), `db/<n>` (keys of database n, via
//! `SCAN`), `db/<n>/key/<encodeURIComponent(key)>` (one key). Shapes and
//! limits are the reference's: at most 200 keys per listing, node values as
//! pretty JSON `{type, value}` (list/zset/stream: first 100 elements; zset
//! as a flat `[member, score, …]` array like ioredis). Downloads export the
//! whole value, streamed page by page: a string as its raw bytes, anything
//! else as JSON.

use super::{Entry, Node, download_headers, normalize, stream, unavailable};
use crate::api::reply::Reply;
use crate::remote::context::HandlerContext;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value, json};

/// Keys per listing (the reference's limit).
pub const MAX_LIST_KEYS: usize = 200;
/// `SCAN … COUNT` hint per round trip (the reference's).
const SCAN_COUNT: usize = 100;
/// Elements shown for list/zset/stream nodes (the reference's limit).
const NODE_ELEMENTS: isize = 100;
/// Elements per page while downloading a large collection.
const DOWNLOAD_PAGE: usize = 1000;

fn failed(e: redis::RedisError) -> Reply {
    Reply::failure_with_code(502, "REDIS_ERROR", format!("Redis: {e}"))
}

/// A connection of its own (so `SELECT` affects nobody else) on database `db`.
async fn connect(ctx: &HandlerContext, db: i64) -> Result<MultiplexedConnection, Reply> {
    let client = ctx
        .services
        .redis_client()
        .ok_or_else(|| unavailable("redis", ctx))?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(failed)?;
    if db != 0 {
        redis::cmd("SELECT")
            .arg(db)
            .query_async::<()>(&mut con)
            .await
            .map_err(failed)?;
    }
    Ok(con)
}

/// JavaScript's `encodeURIComponent`.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// JavaScript's `decodeURIComponent`; `None` for malformed escapes.
pub fn decode_uri_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `db/<n>` → n.
fn parse_db(path: &str) -> Option<i64> {
    let mut seg = normalize(path).split('/').filter(|s| !s.is_empty());
    if seg.next()? != "db" {
        return None;
    }
    seg.next()?.parse().ok()
}

/// `db/<n>/key/<encoded…>` → (n, key).
fn parse_key(path: &str) -> Result<Option<(i64, String)>, Reply> {
    let segs: Vec<&str> = normalize(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if segs.len() < 4 || segs[0] != "db" || segs[2] != "key" {
        return Ok(None);
    }
    let Ok(db) = segs[1].parse() else {
        return Ok(None);
    };
    let key = decode_uri_component(&segs[3..].join("/"))
        .ok_or_else(|| Reply::bad_request("invalid percent-encoding in the Redis key path"))?;
    Ok(Some((db, key)))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A reply value as JSON (binary strings decoded leniently as UTF-8).
pub fn to_json(v: &redis::Value) -> Value {
    use redis::Value as R;
    match v {
        R::Nil => Value::Null,
        R::Int(n) => json!(n),
        R::BulkString(b) => Value::String(lossy(b)),
        R::Array(items) | R::Set(items) => Value::Array(items.iter().map(to_json).collect()),
        R::SimpleString(s) => Value::String(s.clone()),
        R::Okay => Value::String("OK".into()),
        R::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(key, to_json(v));
            }
            Value::Object(m)
        }
        R::Attribute { data, .. } => to_json(data),
        R::Double(f) => json!(f),
        R::Boolean(b) => Value::Bool(*b),
        R::VerbatimString { text, .. } => Value::String(text.clone()),
        other => Value::String(format!("{other:?}")),
    }
}

/// `INFO keyspace` → (db, keys) pairs; db0 with 0 keys when empty.
pub fn parse_keyspace(info: &str) -> Vec<(i64, u64)> {
    let mut out: Vec<(i64, u64)> = info
        .lines()
        .filter_map(|l| {
            let (db, rest) = l.trim().strip_prefix("db")?.split_once(':')?;
            let keys = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db.parse().ok()?, keys))
        })
        .collect();
    if out.is_empty() {
        out.push((0, 0));
    }
    out
}

pub async fn list(ctx: &HandlerContext, path: &str) -> Result<Vec<Entry>, Reply> {
    if normalize(path).is_empty() {
        let mut con = connect(ctx, 0).await?;
        let info: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        return Ok(parse_keyspace(&info)
            .into_iter()
            .map(|(db, keys)| {
                Entry::new(
                    format!("db/{db}"),
                    format!("db{db}"),
                    "redis-database",
                    format!("{keys} keys"),
                )
            })
            .collect());
    }
    let Some(db) = parse_db(path) else {
        return Ok(Vec::new());
    };
    let mut con = connect(ctx, db).await?;
    let mut cursor: u64 = 0;
    let mut keys: Vec<String> = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        keys.extend(batch.iter().map(|k| lossy(k)));
        cursor = next;
        if cursor == 0 || keys.len() >= MAX_LIST_KEYS {
            break;
        }
    }
    keys.truncate(MAX_LIST_KEYS);
    Ok(keys
        .into_iter()
        .map(|k| {
            let p = format!("db/{db}/key/{}", encode_uri_component(&k));
            Entry::new(p, k, "redis-key", "Key")
        })
        .collect())
}

async fn key_type(con: &mut MultiplexedConnection, key: &str) -> Result<String, Reply> {
    redis::cmd("TYPE")
        .arg(key)
        .query_async(con)
        .await
        .map_err(failed)
}

pub async fn node(ctx: &HandlerContext, path: &str) -> Result<Node, Reply> {
    let Some((db, key)) = parse_key(path)? else {
        return Ok(Node::empty(path, "Redis", "redis-value"));
    };
    let mut con = connect(ctx, db).await?;
    let kind = key_type(&mut con, &key).await?;
    let cmd = |name: &str| {
        let mut c = redis::cmd(name);
        c.arg(&key);
        c
    };
    let value: redis::Value = match kind.as_str() {
        "string" => cmd("GET").query_async(&mut con).await,
        "hash" => cmd("HGETALL").query_async(&mut con).await,
        "list" => {
            cmd("LRANGE")
                .arg(0)
                .arg(NODE_ELEMENTS - 1)
                .query_async(&mut con)
                .await
        }
        "set" => cmd("SMEMBERS").query_async(&mut con).await,
        "zset" => {
            cmd("ZRANGE")
                .arg(0)
                .arg(NODE_ELEMENTS - 1)
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await
        }
        "stream" => {
            cmd("XRANGE")
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(NODE_ELEMENTS)
                .query_async(&mut con)
                .await
        }
        _ => Ok(redis::Value::Nil),
    }
    .map_err(failed)?;
    let mut value = to_json(&value);
    if kind == "hash"
        && let Value::Array(flat) = &value
    {
        // RESP2 answers HGETALL with a flat array; ioredis shows an object.
        let mut m = Map::new();
        for pair in flat.chunks(2) {
            if let [Value::String(k), v] = pair {
                m.insert(k.clone(), v.clone());
            }
        }
        value = Value::Object(m);
    }
    let text =
        serde_json::to_string_pretty(&json!({ "type": kind, "value": value })).unwrap_or_default();
    Ok(Node::text(path, key, "redis-value", text))
}

/// What the next page of a download fetches.
enum Page {
    /// `HSCAN`/`SSCAN`/`ZSCAN` from a cursor.
    Scan {
        cursor: u64,
        first: bool,
    },
    /// `LRANGE` from an index.
    Range {
        from: isize,
    },
    /// `XRANGE` from an exclusive id.
    Stream {
        after: Option<String>,
    },
    Done,
}

struct Export {
    con: MultiplexedConnection,
    key: String,
    kind: String,
    page: Page,
    /// Whether an element has been written (for commas).
    wrote: bool,
}

impl Export {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let err = |e: redis::RedisError| format!("Redis: {e}");
        let mut out = Vec::new();
        let push = |out: &mut Vec<u8>, wrote: &mut bool, v: Value| {
            if *wrote {
                out.push(b',');
            }
            *wrote = true;
            out.extend(serde_json::to_vec(&v).unwrap_or_default());
        };
        match &mut self.page {
            Page::Done => return Ok(None),
            Page::Scan { cursor, first } => {
                let cmd = match self.kind.as_str() {
                    "hash" => "HSCAN",
                    "set" => "SSCAN",
                    _ => "ZSCAN",
                };
                let (next, items): (u64, Vec<Vec<u8>>) = redis::cmd(cmd)
                    .arg(&self.key)
                    .arg(*cursor)
                    .arg("COUNT")
                    .arg(DOWNLOAD_PAGE)
                    .query_async(&mut self.con)
                    .await
                    .map_err(err)?;
                if *first {
                    out.extend_from_slice(if self.kind == "hash" { b"{" } else { b"[" });
                    *first = false;
                }
                match self.kind.as_str() {
                    "hash" => {
                        for pair in items.chunks(2) {
                            if let [k, v] = pair {
                                if self.wrote {
                                    out.push(b',');
                                }
                                self.wrote = true;
                                out.extend(serde_json::to_vec(&lossy(k)).unwrap_or_default());
                                out.push(b':');
                                out.extend(serde_json::to_vec(&lossy(v)).unwrap_or_default());
                            }
                        }
                    }
                    _ => {
                        for item in &items {
                            push(&mut out, &mut self.wrote, Value::String(lossy(item)));
                        }
                    }
                }
                *cursor = next;
                if next == 0 {
                    out.extend_from_slice(if self.kind == "hash" { b"}}" } else { b"]}" });
                    self.page = Page::Done;
                }
            }
            Page::Range { from } => {
                if *from == 0 {
                    out.push(b'[');
                }
                let to = *from + DOWNLOAD_PAGE as isize - 1;
                let items: Vec<Vec<u8>> = redis::cmd("LRANGE")
                    .arg(&self.key)
                    .arg(*from)
                    .arg(to)
                    .query_async(&mut self.con)
                    .await
                    .map_err(err)?;
                let n = items.len();
                for item in &items {
                    push(&mut out, &mut self.wrote, Value::String(lossy(item)));
                }
                *from = to + 1;
                if n < DOWNLOAD_PAGE {
                    out.extend_from_slice(b"]}");
                    self.page = Page::Done;
                }
            }
            Page::Stream { after } => {
                let start = match after {
                    None => {
                        out.push(b'[');
                        "-".to_owned()
                    }
                    Some(id) => format!("({id}"),
                };
                let v: redis::Value = redis::cmd("XRANGE")
                    .arg(&self.key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(DOWNLOAD_PAGE)
                    .query_async(&mut self.con)
                    .await
                    .map_err(err)?;
                let entries = match to_json(&v) {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                };
                let n = entries.len();
                let last = entries
                    .last()
                    .and_then(|e| e.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                for e in entries {
                    push(&mut out, &mut self.wrote, e);
                }
                match last {
                    Some(id) if n == DOWNLOAD_PAGE => *after = Some(id),
                    _ => {
                        out.extend_from_slice(b"]}");
                        self.page = Page::Done;
                    }
                }
            }
        }
        Ok(Some(out))
    }
}

pub async fn download(ctx: &HandlerContext, path: &str) -> Reply {
    let (db, key) = match parse_key(path) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return Reply::bad_request("download needs a key: path must be db/<n>/key/<key>");
        }
        Err(r) => return r,
    };
    let mut con = match connect(ctx, db).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let kind = match key_type(&mut con, &key).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    if kind == "string" {
        let bytes: Option<Vec<u8>> = match redis::cmd("GET").arg(&key).query_async(&mut con).await {
            Ok(b) => b,
            Err(e) => return failed(e),
        };
        let bytes = bytes.unwrap_or_default();
        let (ctype, ext) = if std::str::from_utf8(&bytes).is_ok() {
            ("text/plain; charset=utf-8", "txt")
        } else {
            ("application/octet-stream", "bin")
        };
        let headers = download_headers(ctype, &format!("{key}.{ext}"), Some(bytes.len() as u64));
        return stream(
            headers,
            futures_util::stream::once(async move { Ok(bytes) }).boxed_local(),
        );
    }
    let page = match kind.as_str() {
        "hash" | "set" | "zset" => Page::Scan {
            cursor: 0,
            first: true,
        },
        "list" => Page::Range { from: 0 },
        "stream" => Page::Stream { after: None },
        "none" => return Reply::not_found(format!("Key not found: {key} (db {db})")),
        other => return Reply::failure(415, format!("cannot export a Redis {other}")),
    };
    let head = format!("{{\"type\":{},\"value\":", json!(kind)).into_bytes();
    let export = Export {
        con,
        key: key.clone(),
        kind,
        page,
        wrote: false,
    };
    let body = futures_util::stream::once(async move { Ok(head) }).chain(
        futures_util::stream::unfold(export, |mut export| async move {
            match export.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), export)),
                Ok(None) => None,
                Err(e) => {
                    export.page = Page::Done;
                    Some((Err(e), export))
                }
            }
        }),
    );
    stream(
        download_headers("application/json", &format!("{key}.json"), None),
        body.boxed_local(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_component_coding_matches_javascript() {
        assert_eq!(encode_uri_component("a b/c:d?é"), "a%20b%2Fc%3Ad%3F%C3%A9");
        assert_eq!(encode_uri_component("A-z_0.!~*'()"), "A-z_0.!~*'()");
        assert_eq!(
            decode_uri_component("a%20b%2Fc%3Ad%3F%C3%A9").unwrap(),
            "a b/c:d?é"
        );
        assert_eq!(decode_uri_component("%zz"), None);
        assert_eq!(decode_uri_component("%4"), None);
    }

    #[test]
    fn key_paths_parse_like_the_reference() {
        assert_eq!(parse_db("/db/3/"), Some(3));
        assert_eq!(parse_db("db/x"), None);
        assert_eq!(parse_db("nope/1"), None);
        assert_eq!(
            parse_key("db/0/key/jobs%3Astatus%3A1").ok().flatten(),
            Some((0, "jobs:status:1".into()))
        );
        // Raw slashes in the key part are joined back, as the reference does.
        assert_eq!(
            parse_key("/db/2/key/a/b/").ok().flatten(),
            Some((2, "a/b".into()))
        );
        assert!(parse_key("db/0/keys/a").unwrap().is_none());
        assert!(parse_key("db/0/key/%ZZ").is_err());
    }

    #[test]
    fn keyspace_parses_and_defaults_to_db0() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=1,avg_ttl=5\r\n";
        assert_eq!(parse_keyspace(info), vec![(0, 12), (3, 1)]);
        assert_eq!(parse_keyspace("# Keyspace\r\n"), vec![(0, 0)]);
    }

    #[test]
    fn reply_values_become_json() {
        use redis::Value as R;
        let v = R::Array(vec![
            R::BulkString(b"1-0".to_vec()),
            R::Array(vec![
                R::BulkString(b"f".to_vec()),
                R::BulkString(b"v".to_vec()),
            ]),
        ]);
        assert_eq!(to_json(&v), json!(["1-0", ["f", "v"]]));
        assert_eq!(to_json(&R::Nil), Value::Null);
        assert_eq!(to_json(&R::Int(4)), json!(4));
    }
}
