//! The shapes the explorers answer with and the helpers every target
//! shares — no handles, no I/O — so that a target (and the state the
//! handler context keeps for `host-files`) can use them without depending
//! on the dispatch in `mod.rs`.

use crate::api::reply::{Reply, StreamReply};
use serde::Serialize;
use volt_protocol::envelope::Headers;

/// A failure computed off the actor thread (a [`Reply`] is not `Send`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Fail {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Fail {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Fail::new(400, "BAD_REQUEST", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Fail::new(403, "PATH_FORBIDDEN", message)
    }

    pub fn into_reply(self) -> Reply {
        Reply::failure_with_code(self.status, self.code, self.message)
    }
}

impl From<Fail> for Reply {
    fn from(f: Fail) -> Reply {
        f.into_reply()
    }
}

/// Which page of a listing: `limit` entries after `cursor` (the one the
/// previous page returned). A request that names either gets the paged
/// shape `{entries, truncated, cursor}`; one that names neither gets the
/// reference's bare array (see [`Listing::into_value`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

impl Page {
    /// Whether the request asked for pages (and so understands the paged
    /// shape).
    pub fn paged(&self) -> bool {
        self.limit.is_some() || self.cursor.is_some()
    }

    /// The page size: `default` when none was asked for, at most `max`.
    pub fn limit_or(&self, default: usize, max: usize) -> Result<usize, Fail> {
        match self.limit {
            None => Ok(default),
            Some(0) => Err(Fail::bad_request(format!(
                "limit must be between 1 and {max}"
            ))),
            Some(n) => Ok(usize::try_from(n).unwrap_or(max).min(max)),
        }
    }
}

/// One page of entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// More entries follow: ask again with `cursor`.
    pub truncated: bool,
    pub cursor: Option<String>,
}

impl Listing {
    /// A listing that is complete.
    pub fn whole(entries: Vec<Entry>) -> Self {
        Listing {
            entries,
            truncated: false,
            cursor: None,
        }
    }

    /// The reply: `{entries, truncated, cursor}` when the request was
    /// paged; else the reference's bare array, ending — when truncated —
    /// with one entry of type `truncated` that tells a person there is
    /// more and how to ask for it (the reference has no way to say so, and
    /// a silent cut is worse).
    pub fn into_value(self, page: &Page, path: &str) -> serde_json::Value {
        if page.paged() {
            return serde_json::json!({
                "entries": self.entries,
                "truncated": self.truncated,
                "cursor": self.cursor,
            });
        }
        let mut entries = self.entries;
        if self.truncated {
            let shown = entries.len();
            let id = format!("{}#more", normalize(path));
            entries.push(Entry::new(
                id,
                format!("… more entries (first {shown} shown)"),
                "truncated",
                format!(
                    "Only the first {shown} entries are shown; ask with limit and cursor {:?} for the next page",
                    self.cursor.unwrap_or_default()
                ),
            ));
        }
        serde_json::to_value(entries).unwrap_or_default()
    }
}

/// One entry of a listing, exactly the reference's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: Option<u64>,
    pub updated_at: Option<String>,
    pub description: Option<String>,
}

impl Entry {
    /// An entry whose id and path are the same (every reference target).
    pub fn new(
        path: String,
        name: String,
        kind: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Entry {
            id: path.clone(),
            name,
            path,
            kind,
            size: None,
            updated_at: None,
            description: Some(description.into()),
        }
    }
}

/// One MongoDB document in a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MongoDocument {
    pub id: String,
    pub value: serde_json::Value,
}

/// What `remote.explorer.node` returns, exactly the reference's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub path: String,
    pub title: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub content_type: &'static str,
    pub text_content: Option<String>,
    pub mongo_documents: Vec<MongoDocument>,
}

impl Node {
    /// A node with nothing to show (e.g. a bucket, the root).
    pub fn empty(path: &str, title: impl Into<String>, kind: &'static str) -> Self {
        Node {
            path: path.to_owned(),
            title: title.into(),
            kind,
            content_type: "empty",
            text_content: None,
            mongo_documents: Vec::new(),
        }
    }

    pub fn text(path: &str, title: impl Into<String>, kind: &'static str, text: String) -> Self {
        Node {
            path: path.to_owned(),
            title: title.into(),
            kind,
            content_type: "text",
            text_content: Some(text),
            mongo_documents: Vec::new(),
        }
    }
}

/// `path` with leading and trailing slashes removed (the reference's rule).
pub fn normalize(path: &str) -> &str {
    path.trim_matches('/')
}

/// Headers of a download: type, a safe attachment file name, and the
/// length when known.
pub fn download_headers(content_type: &str, file_name: &str, length: Option<u64>) -> Headers {
    let mut h = Headers::new();
    h.insert("content-type".into(), content_type.to_owned());
    let safe: String = file_name
        .chars()
        .map(|c| {
            if c.is_control() || c == '"' || c == '\\' || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let ascii: String = safe
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    let encoded: String = safe
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    h.insert(
        "content-disposition".into(),
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"),
    );
    if let Some(n) = length {
        h.insert("content-length".into(), n.to_string());
    }
    h
}

/// A stream reply from a boxed body.
pub fn stream(
    headers: Headers,
    body: futures_util::stream::LocalBoxStream<'static, Result<Vec<u8>, String>>,
) -> Reply {
    Reply::Stream(StreamReply {
        status: 200,
        headers,
        body,
    })
}
