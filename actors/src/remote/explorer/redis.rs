//! `redis-data`: keyspaces and keys.
//!
//! Paths: `` (the keyspace databases), `db/<n>` (keys of database n, via
//! `SCAN`), `db/<n>/key/<encodeURIComponent(key)>` (one key). Shapes and
//! limits are the reference's: 200 keys per listing page (a `cursor` goes
//! on), node values as pretty JSON `{type, value}` (zset as a flat
//! `[member, score, …]` array like ioredis).
//!
//! Nothing is read whole: a node asks for the size first (`STRLEN`,
//! `HLEN`, `LLEN`, `SCARD`, `ZCARD`, `XLEN`) and reads at most
//! [`NODE_BYTES`] of a string (`GETRANGE`) and [`NODE_ELEMENTS`] elements of
//! anything else (`LRANGE`, `HSCAN`, `SSCAN`, `ZRANGE`, `XRANGE` with
//! limits), each element shown up to [`NODE_ELEMENT_BYTES`]; what was cut
//! is marked `"truncated": true` with the full `length`. Before reading
//! elements a node estimates their size (`MEMORY USAGE … SAMPLES 5`) and
//! reads only as many as fit [`NODE_READ_BUDGET`]; elements too large for
//! any preview leave `value` empty with a `note` saying so. Downloads export
//! the value streamed page by page: a string as its raw bytes in
//! `GETRANGE` slices up to the length announced, anything else as JSON in
//! pages of at most [`DOWNLOAD_PAGE`] elements, fewer when their size (by
//! `MEMORY USAGE` first, then by what the last page weighed) says more
//! would not fit [`DOWNLOAD_READ_BUDGET`] — down to one element a page
//! (one element is the least Redis can send).

use super::{Entry, Listing, Node, Page, download_headers, normalize, stream, unavailable};
use crate::api::reply::Reply;
use crate::remote::context::HandlerContext;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value, json};

/// Keys per listing page (the reference's limit).
pub const MAX_LIST_KEYS: usize = 200;
/// Largest `limit` a listing accepts.
pub const MAX_LIST_LIMIT: usize = 1000;
/// `SCAN … COUNT` hint per round trip (the reference's).
const SCAN_COUNT: usize = 100;
/// Elements shown in a node (the reference's limit for list/zset/stream,
/// now for every collection).
pub const NODE_ELEMENTS: usize = 100;
/// Bytes of a string shown in a node (as for objects and files).
pub const NODE_BYTES: usize = 65_536;
/// Bytes of one collection element shown in a node.
pub const NODE_ELEMENT_BYTES: usize = 4096;
/// Bytes of collection elements a node reads at most, estimated with
/// `MEMORY USAGE` before reading: Redis cannot read part of an element, so
/// a list of a few 100 MB elements is previewed by its length alone, not
/// pulled into the daemon (8 MiB: a preview's worth, far under the budget
/// of the commands in flight).
pub const NODE_READ_BUDGET: u64 = 8 * 1024 * 1024;
/// `*SCAN` round trips a node makes to gather its elements (a sparse hash
/// table can return empty pages).
const NODE_SCAN_ROUNDS: usize = 64;
/// Elements per page while downloading a collection of small elements
/// (one round trip per thousand keeps a large download fast).
const DOWNLOAD_PAGE: usize = 1000;
/// Bytes of elements a download page reads at most (by estimate): a page
/// is held whole while it is encoded, so this bounds what a download holds
/// beside its stream chunks — the same 8 MiB a node may read.
pub const DOWNLOAD_READ_BUDGET: u64 = NODE_READ_BUDGET;
/// Bytes per `GETRANGE` while downloading a string.
const STRING_SLICE: usize = 1024 * 1024;

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

/// A listing cursor: the `SCAN` cursor of the batch to read, and how many
/// keys of that batch the previous page already returned.
fn parse_cursor(cursor: &str) -> Result<(u64, usize), Reply> {
    let bad = || Reply::bad_request("invalid cursor (pass the one the previous page returned)");
    let (scan, skip) = cursor.split_once(':').ok_or_else(bad)?;
    Ok((
        scan.parse().map_err(|_| bad())?,
        skip.parse().map_err(|_| bad())?,
    ))
}

pub async fn list(ctx: &HandlerContext, path: &str, page: &Page) -> Result<Listing, Reply> {
    if normalize(path).is_empty() {
        let mut con = connect(ctx, 0).await?;
        let info: String = redis::cmd("INFO")
            .arg("keyspace")
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        return Ok(Listing::whole(
            parse_keyspace(&info)
                .into_iter()
                .map(|(db, keys)| {
                    Entry::new(
                        format!("db/{db}"),
                        format!("db{db}"),
                        "redis-database",
                        format!("{keys} keys"),
                    )
                })
                .collect(),
        ));
    }
    let Some(db) = parse_db(path) else {
        return Ok(Listing::whole(Vec::new()));
    };
    let limit = page
        .limit_or(MAX_LIST_KEYS, MAX_LIST_LIMIT)
        .map_err(|f| f.into_reply())?;
    let (mut cursor, mut skip) = match page.cursor.as_deref() {
        Some(c) => parse_cursor(c)?,
        None => (0, 0),
    };
    let mut con = connect(ctx, db).await?;
    let mut keys: Vec<String> = Vec::new();
    let mut next_page: Option<String> = None;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        let room = limit - keys.len();
        let fresh = batch.len().saturating_sub(skip);
        if fresh > room {
            keys.extend(batch[skip..skip + room].iter().map(|k| lossy(k)));
            next_page = Some(format!("{cursor}:{}", skip + room));
            break;
        }
        keys.extend(batch[skip.min(batch.len())..].iter().map(|k| lossy(k)));
        skip = 0;
        cursor = next;
        if cursor == 0 {
            break;
        }
        if keys.len() >= limit {
            next_page = Some(format!("{cursor}:0"));
            break;
        }
    }
    Ok(Listing {
        entries: keys
            .into_iter()
            .map(|k| {
                let p = format!("db/{db}/key/{}", encode_uri_component(&k));
                Entry::new(p, k, "redis-key", "Key")
            })
            .collect(),
        truncated: next_page.is_some(),
        cursor: next_page,
    })
}

async fn key_type(con: &mut MultiplexedConnection, key: &str) -> Result<String, Reply> {
    redis::cmd("TYPE")
        .arg(key)
        .query_async(con)
        .await
        .map_err(failed)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (s, true)
}

/// An element as shown in a node (cut to [`NODE_ELEMENT_BYTES`]).
fn shown(b: &[u8], cut_any: &mut bool) -> Value {
    let (s, was_cut) = cut(lossy(b), NODE_ELEMENT_BYTES);
    *cut_any |= was_cut;
    Value::String(s)
}

/// `HSCAN`/`SSCAN` until `NODE_ELEMENTS` elements (pairs for a hash).
async fn scan_some(
    con: &mut MultiplexedConnection,
    cmd: &str,
    key: &str,
    per_element: usize,
    limit: usize,
) -> Result<Vec<Vec<u8>>, Reply> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut cursor = 0u64;
    for _ in 0..NODE_SCAN_ROUNDS {
        let (next, items): (u64, Vec<Vec<u8>>) = redis::cmd(cmd)
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(limit)
            .query_async(con)
            .await
            .map_err(failed)?;
        out.extend(items);
        cursor = next;
        if cursor == 0 || out.len() >= limit * per_element {
            break;
        }
    }
    out.truncate(limit * per_element);
    Ok(out)
}

/// How many of a collection's `len` elements a node may read: at most
/// [`NODE_ELEMENTS`], and no more than fit [`NODE_READ_BUDGET`] by the
/// server's estimate of the key's size. A server that does not answer
/// `MEMORY USAGE` (an ACL without it, an older server) gets the count limit
/// only.
async fn readable_elements(con: &mut MultiplexedConnection, key: &str, len: u64) -> usize {
    match bytes_per_element(con, key, len).await {
        Some(per_element) => elements_within(NODE_READ_BUDGET, per_element, NODE_ELEMENTS),
        None => NODE_ELEMENTS,
    }
}

/// The server's estimate of one element's size (`MEMORY USAGE … SAMPLES
/// 5` over the length); `None` when it does not answer (an ACL without
/// it, an older server) or the collection is empty.
async fn bytes_per_element(con: &mut MultiplexedConnection, key: &str, len: u64) -> Option<u64> {
    let usage: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(5)
        .query_async(con)
        .await
        .ok()
        .flatten();
    match usage {
        Some(bytes) if len > 0 => Some((bytes / len).max(1)),
        _ => None,
    }
}

/// How many elements of `per_element` bytes fit `budget`, at most `most`
/// (none when one element is larger than the budget).
fn elements_within(budget: u64, per_element: u64, most: usize) -> usize {
    (budget / per_element.max(1)).min(most as u64) as usize
}

/// Elements a download page asks for: as many as fit
/// [`DOWNLOAD_READ_BUDGET`], and one when even one does not (a download
/// must read every element; one is the least Redis can send).
fn download_page(per_element: u64) -> usize {
    elements_within(DOWNLOAD_READ_BUDGET, per_element, DOWNLOAD_PAGE).max(1)
}

/// The first `limit` elements of a list or sorted set by index range
/// (`LRANGE`/`ZRANGE key 0 limit-1 extra…`); none when `limit` is 0.
async fn first_elements(
    con: &mut MultiplexedConnection,
    cmd: &str,
    key: &str,
    limit: usize,
    extra: &[&str],
) -> Result<Vec<Vec<u8>>, Reply> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    redis::cmd(cmd)
        .arg(key)
        .arg(0)
        .arg(limit as i64 - 1)
        .arg(extra)
        .query_async(con)
        .await
        .map_err(failed)
}

async fn count(con: &mut MultiplexedConnection, cmd: &str, key: &str) -> Result<u64, Reply> {
    redis::cmd(cmd)
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
    let mut cut_any = false;
    let mut too_large = false;
    let (length, value): (Option<u64>, Value) = match kind.as_str() {
        "string" => {
            let len = count(&mut con, "STRLEN", &key).await?;
            let bytes: Vec<u8> = redis::cmd("GETRANGE")
                .arg(&key)
                .arg(0)
                .arg(NODE_BYTES as i64 - 1)
                .query_async(&mut con)
                .await
                .map_err(failed)?;
            cut_any = len > bytes.len() as u64;
            (Some(len), Value::String(lossy(&bytes)))
        }
        "hash" => {
            let len = count(&mut con, "HLEN", &key).await?;
            let limit = readable_elements(&mut con, &key, len).await;
            too_large = limit == 0 && len > 0;
            let flat = scan_some(&mut con, "HSCAN", &key, 2, limit).await?;
            let mut m = Map::new();
            for pair in flat.chunks(2) {
                if let [k, v] = pair {
                    let (k, c) = cut(lossy(k), NODE_ELEMENT_BYTES);
                    cut_any |= c;
                    m.insert(k, shown(v, &mut cut_any));
                }
            }
            cut_any |= (m.len() as u64) < len;
            (Some(len), Value::Object(m))
        }
        "set" => {
            let len = count(&mut con, "SCARD", &key).await?;
            let limit = readable_elements(&mut con, &key, len).await;
            too_large = limit == 0 && len > 0;
            let items = scan_some(&mut con, "SSCAN", &key, 1, limit).await?;
            cut_any |= (items.len() as u64) < len;
            let v = items.iter().map(|b| shown(b, &mut cut_any)).collect();
            (Some(len), Value::Array(v))
        }
        "list" => {
            let len = count(&mut con, "LLEN", &key).await?;
            let limit = readable_elements(&mut con, &key, len).await;
            too_large = limit == 0 && len > 0;
            let items = first_elements(&mut con, "LRANGE", &key, limit, &[]).await?;
            cut_any |= (items.len() as u64) < len;
            let v = items.iter().map(|b| shown(b, &mut cut_any)).collect();
            (Some(len), Value::Array(v))
        }
        "zset" => {
            let len = count(&mut con, "ZCARD", &key).await?;
            let limit = readable_elements(&mut con, &key, len).await;
            too_large = limit == 0 && len > 0;
            let items = first_elements(&mut con, "ZRANGE", &key, limit, &["WITHSCORES"]).await?;
            cut_any |= (items.len() as u64 / 2) < len;
            let v = items.iter().map(|b| shown(b, &mut cut_any)).collect();
            (Some(len), Value::Array(v))
        }
        "stream" => {
            let len = count(&mut con, "XLEN", &key).await?;
            let limit = readable_elements(&mut con, &key, len).await;
            too_large = limit == 0 && len > 0;
            let v: redis::Value = if limit == 0 {
                redis::Value::Array(Vec::new())
            } else {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut con)
                    .await
                    .map_err(failed)?
            };
            let v = to_json(&v);
            let n = v.as_array().map_or(0, Vec::len) as u64;
            cut_any |= n < len;
            // Stream fields are small by design; the whole page is capped.
            let (text, c) = cut(v.to_string(), NODE_BYTES);
            cut_any |= c;
            (Some(len), if c { Value::String(text) } else { v })
        }
        _ => (None, Value::Null),
    };
    let mut shape = json!({ "type": kind, "value": value });
    if cut_any || too_large {
        shape["truncated"] = json!(true);
        shape["length"] = json!(length);
    }
    if too_large {
        shape["note"] = json!(format!(
            "elements too large to preview (over {} MiB read in all); download the key",
            NODE_READ_BUDGET / (1024 * 1024)
        ));
    }
    let text = serde_json::to_string_pretty(&shape).unwrap_or_default();
    Ok(Node::text(path, key, "redis-value", text))
}

/// What the next page of a download fetches.
enum ExportPage {
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
    page: ExportPage,
    /// Whether an element has been written (for commas).
    wrote: bool,
    /// Elements the next page asks for (see the module docs).
    page_len: usize,
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
        // Elements and bytes this page read, for the next page's length.
        let read: (usize, u64);
        match &mut self.page {
            ExportPage::Done => return Ok(None),
            ExportPage::Scan { cursor, first } => {
                let cmd = match self.kind.as_str() {
                    "hash" => "HSCAN",
                    "set" => "SSCAN",
                    _ => "ZSCAN",
                };
                let (next, items): (u64, Vec<Vec<u8>>) = redis::cmd(cmd)
                    .arg(&self.key)
                    .arg(*cursor)
                    .arg("COUNT")
                    .arg(self.page_len)
                    .query_async(&mut self.con)
                    .await
                    .map_err(err)?;
                read = (
                    // Hash fields and sorted-set members come with their
                    // value or score.
                    items.len() / if self.kind == "set" { 1 } else { 2 },
                    items.iter().map(|i| i.len() as u64).sum(),
                );
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
                    self.page = ExportPage::Done;
                }
            }
            ExportPage::Range { from } => {
                if *from == 0 {
                    out.push(b'[');
                }
                let asked = self.page_len;
                let to = *from + asked as isize - 1;
                let items: Vec<Vec<u8>> = redis::cmd("LRANGE")
                    .arg(&self.key)
                    .arg(*from)
                    .arg(to)
                    .query_async(&mut self.con)
                    .await
                    .map_err(err)?;
                let n = items.len();
                read = (n, items.iter().map(|i| i.len() as u64).sum());
                for item in &items {
                    push(&mut out, &mut self.wrote, Value::String(lossy(item)));
                }
                *from = to + 1;
                if n < asked {
                    out.extend_from_slice(b"]}");
                    self.page = ExportPage::Done;
                }
            }
            ExportPage::Stream { after } => {
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
                    .arg(self.page_len)
                    .query_async(&mut self.con)
                    .await
                    .map_err(err)?;
                let entries = match to_json(&v) {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                };
                let n = entries.len();
                let asked = self.page_len;
                let last = entries
                    .last()
                    .and_then(|e| e.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let before = out.len();
                for e in entries {
                    push(&mut out, &mut self.wrote, e);
                }
                read = (n, (out.len() - before) as u64);
                match last {
                    Some(id) if n == asked => *after = Some(id),
                    _ => {
                        out.extend_from_slice(b"]}");
                        self.page = ExportPage::Done;
                    }
                }
            }
        }
        if let (n @ 1.., bytes) = read {
            self.page_len = download_page(bytes.div_ceil(n as u64));
        }
        Ok(Some(out))
    }
}

/// A string in `GETRANGE` slices, exactly the length `STRLEN` announced.
async fn download_string(mut con: MultiplexedConnection, key: String) -> Reply {
    let len = match count(&mut con, "STRLEN", &key).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let head: Vec<u8> = match redis::cmd("GETRANGE")
        .arg(&key)
        .arg(0)
        .arg(1023)
        .query_async(&mut con)
        .await
    {
        Ok(b) => b,
        Err(e) => return failed(e),
    };
    let text = std::str::from_utf8(&head).is_ok()
        || std::str::from_utf8(&head).is_err_and(|e| e.error_len().is_none());
    let (ctype, ext) = if text {
        ("text/plain; charset=utf-8", "txt")
    } else {
        ("application/octet-stream", "bin")
    };
    let headers = download_headers(ctype, &format!("{key}.{ext}"), Some(len));
    let body = futures_util::stream::unfold(Some((con, 0u64)), move |state| {
        let key = key.clone();
        async move {
            let (mut con, sent) = state?;
            if sent >= len {
                return None;
            }
            let end = (sent + STRING_SLICE as u64).min(len) - 1;
            let r: Result<Vec<u8>, _> = redis::cmd("GETRANGE")
                .arg(&key)
                .arg(sent)
                .arg(end)
                .query_async(&mut con)
                .await;
            match r {
                Ok(b) if b.is_empty() => Some((
                    Err(format!(
                        "the value of {key} shrank while it was read: {sent} of the {len} bytes announced"
                    )),
                    None,
                )),
                Ok(mut b) => {
                    b.truncate((len - sent) as usize);
                    let n = b.len() as u64;
                    Some((Ok(b), Some((con, sent + n))))
                }
                Err(e) => Some((Err(format!("Redis: {e}")), None)),
            }
        }
    });
    stream(headers, body.boxed_local())
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
        return download_string(con, key).await;
    }
    let page = match kind.as_str() {
        "hash" | "set" | "zset" => ExportPage::Scan {
            cursor: 0,
            first: true,
        },
        "list" => ExportPage::Range { from: 0 },
        "stream" => ExportPage::Stream { after: None },
        "none" => return Reply::not_found(format!("Key not found: {key} (db {db})")),
        other => return Reply::failure(415, format!("cannot export a Redis {other}")),
    };
    let length = match kind.as_str() {
        "hash" => "HLEN",
        "set" => "SCARD",
        "zset" => "ZCARD",
        "list" => "LLEN",
        _ => "XLEN",
    };
    let page_len = match count(&mut con, length, &key).await {
        Ok(len) => match bytes_per_element(&mut con, &key, len).await {
            Some(per_element) => download_page(per_element),
            None => DOWNLOAD_PAGE,
        },
        Err(r) => return r,
    };
    let head = format!("{{\"type\":{},\"value\":", json!(kind)).into_bytes();
    let export = Export {
        con,
        key: key.clone(),
        kind,
        page,
        wrote: false,
        page_len,
    };
    let body = futures_util::stream::once(async move { Ok(head) }).chain(
        futures_util::stream::unfold(export, |mut export| async move {
            match export.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), export)),
                Ok(None) => None,
                Err(e) => {
                    export.page = ExportPage::Done;
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
    fn a_page_holds_as_many_elements_as_fit_the_budget_within_one_and_the_most() {
        const MIB: u64 = 1 << 20;
        assert_eq!(DOWNLOAD_READ_BUDGET, 8 * MIB);
        assert_eq!(download_page(100), DOWNLOAD_PAGE);
        assert_eq!(download_page(MIB), 8);
        assert_eq!(download_page(3 * MIB), 2);
        // An element larger than the budget is still downloaded, alone…
        assert_eq!(download_page(9 * MIB), 1);
        assert_eq!(download_page(u64::MAX), 1);
        // …but not previewed.
        assert_eq!(elements_within(NODE_READ_BUDGET, 9 * MIB, NODE_ELEMENTS), 0);
        assert_eq!(elements_within(NODE_READ_BUDGET, MIB, NODE_ELEMENTS), 8);
        // A zero estimate (nothing to divide by) counts as one byte.
        assert_eq!(
            elements_within(NODE_READ_BUDGET, 0, NODE_ELEMENTS),
            NODE_ELEMENTS
        );
        assert_eq!(download_page(0), DOWNLOAD_PAGE);
    }

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
