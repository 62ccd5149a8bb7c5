//! `mongo-documents`: the collections of database `volt`.
//!
//! list → every collection, sorted, type `collection`; node → the first 100
//! documents as `{id, value}` with values rendered as the reference's
//! JavaScript driver renders them (`JSON.stringify` of BSON: ObjectId → hex
//! string, dates → ISO strings, binary → base64); download → the whole
//! collection as JSON lines, streamed from a cursor.

use super::{
    Entry, Listing, MongoDocument, Node, Page, download_headers, normalize, stream, unavailable,
};
use crate::api::reply::Reply;
use crate::remote::context::HandlerContext;
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Map, Value, json};

/// Documents shown in a node (the reference's limit).
pub const MAX_NODE_DOCUMENTS: i64 = 100;
/// Documents fetched per cursor batch while downloading: keeps memory flat
/// on large collections.
const DOWNLOAD_BATCH: u32 = 500;

fn db(ctx: &HandlerContext) -> Result<mongodb::Database, Reply> {
    ctx.services
        .mongo_database()
        .ok_or_else(|| unavailable("mongo", ctx))
}

fn failed(e: mongodb::error::Error) -> Reply {
    Reply::failure_with_code(502, "MONGO_ERROR", format!("MongoDB: {e}"))
}

/// `JSON.stringify` of a BSON value as the Node driver produces it.
pub fn to_js_json(value: &Bson) -> Value {
    match value {
        Bson::Double(f) => {
            if f.is_finite() {
                json!(f)
            } else {
                Value::Null
            }
        }
        Bson::String(s) | Bson::Symbol(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(to_js_json).collect()),
        Bson::Document(d) => doc_to_js_json(d),
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::RegularExpression(r) => Value::String(format!("/{}/{}", r.pattern, r.options)),
        Bson::JavaScriptCode(code) => json!({ "code": code }),
        Bson::JavaScriptCodeWithScope(c) => {
            json!({ "code": c.code, "scope": doc_to_js_json(&c.scope) })
        }
        Bson::Int32(n) => json!(n),
        Bson::Int64(n) => json!(n),
        Bson::Timestamp(t) => json!({ "$timestamp": { "t": t.time, "i": t.increment } }),
        Bson::Binary(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&b.bytes))
        }
        Bson::ObjectId(oid) => Value::String(oid.to_hex()),
        Bson::DateTime(d) => js_iso(d.timestamp_millis())
            .map(Value::String)
            .unwrap_or_else(|| json!(d.timestamp_millis())),
        Bson::Decimal128(d) => json!({ "$numberDecimal": d.to_string() }),
        Bson::MaxKey => json!({ "$maxKey": 1 }),
        Bson::MinKey => json!({ "$minKey": 1 }),
        Bson::DbPointer(_) => Value::Null,
    }
}

/// JavaScript's `Date.prototype.toJSON`: UTC with milliseconds; `None`
/// outside the years 0..=9999 that format can express.
fn js_iso(millis: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

fn doc_to_js_json(d: &Document) -> Value {
    let mut m = Map::with_capacity(d.len());
    for (k, v) in d {
        m.insert(k.clone(), to_js_json(v));
    }
    Value::Object(m)
}

/// `{id, value}`: `id` is a string `_id` as is, anything else as its JSON.
pub fn document(d: &Document) -> MongoDocument {
    let value = doc_to_js_json(d);
    let id = match value.get("_id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "\"\"".to_owned(),
    };
    MongoDocument { id, value }
}

/// Collections per listing page when none is asked for.
pub const DEFAULT_PAGE: usize = 1000;

pub async fn list(ctx: &HandlerContext, page: &Page) -> Result<Listing, Reply> {
    let limit = page
        .limit_or(DEFAULT_PAGE, DEFAULT_PAGE)
        .map_err(|f| f.into_reply())?;
    let db = db(ctx)?;
    let mut names = db.list_collection_names().await.map_err(failed)?;
    names.sort();
    if let Some(after) = &page.cursor {
        names.retain(|n| n > after);
    }
    let truncated = names.len() > limit;
    names.truncate(limit);
    let cursor = truncated.then(|| names.last().cloned()).flatten();
    Ok(Listing {
        entries: names
            .into_iter()
            .map(|n| Entry::new(n.clone(), n, "collection", "Collection"))
            .collect(),
        truncated,
        cursor,
    })
}

pub async fn node(ctx: &HandlerContext, path: &str) -> Result<Node, Reply> {
    let name = normalize(path);
    if name.is_empty() {
        return Ok(Node::empty(path, "MongoDB", "collection"));
    }
    let db = db(ctx)?;
    let docs: Vec<Document> = db
        .collection::<Document>(name)
        .find(doc! {})
        .limit(MAX_NODE_DOCUMENTS)
        .await
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(Node {
        path: path.to_owned(),
        title: name.to_owned(),
        kind: "collection",
        content_type: "mongo-documents",
        text_content: None,
        mongo_documents: docs.iter().map(document).collect(),
    })
}

pub async fn download(ctx: &HandlerContext, path: &str) -> Reply {
    let name = normalize(path).to_owned();
    if name.is_empty() {
        return Reply::bad_request("download needs a collection: path must name one");
    }
    let db = match db(ctx) {
        Ok(db) => db,
        Err(r) => return r,
    };
    match db.list_collection_names().await {
        Ok(names) if names.iter().any(|n| n == &name) => {}
        Ok(_) => return Reply::not_found(format!("Collection not found: {name}")),
        Err(e) => return failed(e),
    }
    let cursor = match db
        .collection::<Document>(&name)
        .find(doc! {})
        .batch_size(DOWNLOAD_BATCH)
        .await
    {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let body = cursor.map(|d| match d {
        Ok(d) => {
            let mut line = serde_json::to_vec(&doc_to_js_json(&d)).unwrap_or_default();
            line.push(b'\n');
            Ok(line)
        }
        Err(e) => Err(format!("MongoDB: {e}")),
    });
    stream(
        download_headers("application/x-ndjson", &format!("{name}.jsonl"), None),
        body.boxed_local(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn renders_bson_like_the_node_driver() {
        let oid = ObjectId::parse_str("65f1a2b3c4d5e6f708192a3b").unwrap();
        let d = doc! {
            "_id": oid,
            "n": 5_i32,
            "big": 5_000_000_000_i64,
            "x": 1.5,
            "when": mongodb::bson::DateTime::from_millis(0),
            "bin": mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "nested": { "list": [true, null] },
        };
        let m = document(&d);
        assert_eq!(m.id, "65f1a2b3c4d5e6f708192a3b");
        assert_eq!(
            m.value,
            json!({
                "_id": "65f1a2b3c4d5e6f708192a3b", "n": 5, "big": 5_000_000_000_i64, "x": 1.5,
                "when": "1970-01-01T00:00:00.000Z", "bin": "AQI=", "nested": {"list": [true, null]}
            })
        );
    }

    #[test]
    fn non_string_ids_are_their_json() {
        assert_eq!(document(&doc! {"_id": 7}).id, "7");
        assert_eq!(document(&doc! {"_id": "s"}).id, "s");
        assert_eq!(document(&doc! {"_id": {"a": 1}}).id, "{\"a\":1}");
    }
}
