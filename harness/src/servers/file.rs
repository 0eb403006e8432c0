//! The file server: the JSON-header file transfer of the socket tutorials,
//! with uploads checked and names never trusted.
//!
//! Every request and reply is one json-header frame (an `i32le` header
//! length, a JSON object header, then `file_size` body bytes). `file_size` is
//! always the length of the frame's own body: a download request and a
//! status-only reply carry `"file_size":0`.
//!
//! ```text
//!  upload   -> {"op":"upload","file_name":"a.txt","file_size":5,"md5":"<hex>"} + 5 bytes
//!                ("op" may be left out: upload is the default)
//!           <- {"file_name":"a.txt","file_size":0,"md5":"<hex>","size":5,"status":"ok"}
//!  download -> {"op":"download","file_name":"a.txt","file_size":0}
//!           <- {"file_name":"a.txt","file_size":5,"md5":"<hex>","status":"ok"} + 5 bytes
//!  failure  <- {"error":"<why>",["file_name":...,]"file_size":0,["md5":...,]"status":"error"}
//! ```
//!
//! Reply headers are compact JSON with their keys in sorted order, so a
//! scenario can `expect` them byte for byte. An upload whose body does not
//! hash to its `md5` gets `"error":"md5 mismatch"` with the md5 of what did
//! arrive. Files live in memory, in a map shared by the connections of one
//! server instance and bounded by `max_store` bytes and `max_files` files, so
//! there is nothing on disk to clean up. A file name is a key, never a path:
//! see [`validate_file_name`].
//!
//! A request the server cannot use (bad name, unknown `op`, md5 mismatch,
//! missing file, full store) gets an error reply and the connection goes on.
//! A framing error (a header that is not a JSON object, no `file_size`, a
//! length over `max_header`/`max_body`, a negative length) gets an error reply
//! and then an orderly close, since nothing after it can be trusted.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::conn::{FramedConn, Next};
use super::options::{framing, limit, max_header, OptionSpec, Unit, MAX_CONNECTIONS, MAX_LIMIT};
use super::BuiltinConfig;
use crate::framing::{Frame, FramingConfig, DEFAULT_MAX_FRAME};
use crate::net::Recorder;

/// Default `max_store`: 64 MiB.
pub const DEFAULT_MAX_STORE: usize = 64 * 1024 * 1024;
/// Default `max_files`.
pub const DEFAULT_MAX_FILES: usize = 1024;
/// The longest file name, in bytes (the usual file-system limit).
pub const MAX_FILE_NAME: usize = 255;

/// The file server's `max_body` is its json-header codec's `max_frame`.
fn set_max_body(config: &mut BuiltinConfig, n: usize) {
    config.framing.max_frame = n;
}
fn set_max_store(config: &mut BuiltinConfig, n: usize) {
    config.max_store = n;
}
fn set_max_files(config: &mut BuiltinConfig, n: usize) {
    config.max_files = n;
}

pub const OPTIONS: &[OptionSpec<BuiltinConfig>] = &[
    framing(
        &["json-header"],
        "json-header",
        "the file server speaks json-header framing",
        "the only value accepted",
    ),
    max_header("largest request header"),
    limit(
        "max_body",
        0,
        MAX_LIMIT,
        DEFAULT_MAX_FRAME,
        Unit::Bytes,
        "largest request body (`file_size`)",
        set_max_body,
    ),
    limit(
        "max_store",
        0,
        MAX_LIMIT << 2,
        DEFAULT_MAX_STORE,
        Unit::Bytes,
        "most bytes stored at once, all files together",
        set_max_store,
    ),
    limit(
        "max_files",
        1,
        1_000_000,
        DEFAULT_MAX_FILES,
        Unit::Number,
        "most files stored at once",
        set_max_files,
    ),
    MAX_CONNECTIONS,
];

struct Stored {
    data: Bytes,
    md5: String,
}

/// The files of one server instance.
pub struct Store {
    files: HashMap<String, Stored>,
    total: usize,
    max_store: usize,
    max_files: usize,
}

pub type SharedStore = Arc<Mutex<Store>>;

impl Store {
    pub fn shared(config: &BuiltinConfig) -> SharedStore {
        Arc::new(Mutex::new(Store {
            files: HashMap::new(),
            total: 0,
            max_store: config.max_store,
            max_files: config.max_files,
        }))
    }

    /// Stores (or replaces) a file, within the limits.
    fn put(&mut self, name: &str, data: Bytes, md5: String) -> Result<(), String> {
        let replaced = self.files.get(name).map_or(0, |f| f.data.len());
        let total = self.total - replaced + data.len();
        if total > self.max_store {
            return Err(format!(
                "store full: {} more bytes would exceed max_store ({} bytes)",
                data.len(),
                self.max_store
            ));
        }
        if !self.files.contains_key(name) && self.files.len() >= self.max_files {
            return Err(format!(
                "store full: max_files ({}) reached",
                self.max_files
            ));
        }
        self.total = total;
        self.files.insert(name.to_owned(), Stored { data, md5 });
        Ok(())
    }

    fn get(&self, name: &str) -> Option<(Bytes, String)> {
        self.files
            .get(name)
            .map(|f| (f.data.clone(), f.md5.clone()))
    }
}

/// Checks a file name from the wire. Names are keys in memory, never paths,
/// but a name that would be dangerous as a path is refused all the same, so
/// the server cannot be used to test a client's traversal handling the wrong
/// way round: empty, over [`MAX_FILE_NAME`] bytes, `/`, `\`, `..` anywhere,
/// `.` alone, NUL or any other control character.
pub fn validate_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("file_name is empty");
    }
    if name.len() > MAX_FILE_NAME {
        return Err("file_name is longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\\') {
        return Err("file_name contains a path separator");
    }
    if name == "." || name.contains("..") {
        return Err("file_name contains `..` or is `.`");
    }
    if name.chars().any(char::is_control) {
        return Err("file_name contains a control character");
    }
    Ok(())
}

/// The lowercase hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A reply header, built with its keys inserted in sorted order (which is also
/// the order serde_json writes them in).
fn reply(entries: &[(&str, Value)]) -> Map<String, Value> {
    let mut sorted: Vec<(&str, Value)> = entries.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn error_reply(error: &str, name: Option<&str>) -> Map<String, Value> {
    let mut entries = vec![
        ("error", Value::from(error)),
        ("file_size", Value::from(0)),
        ("status", Value::from("error")),
    ];
    if let Some(name) = name {
        entries.push(("file_name", Value::from(name)));
    }
    reply(&entries)
}

/// Handles one request frame: the reply header and body.
pub fn handle(frame: &Frame, store: &Mutex<Store>) -> (Map<String, Value>, Bytes) {
    let empty = Map::new();
    let header = frame.header.as_ref().unwrap_or(&empty);
    let op = match header.get("op") {
        None => "upload",
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return (error_reply("op must be a string", None), Bytes::new()),
    };
    let name = match header.get("file_name") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => {
            return (
                error_reply("file_name must be a string", None),
                Bytes::new(),
            )
        }
        None => return (error_reply("file_name is missing", None), Bytes::new()),
    };
    if let Err(why) = validate_file_name(name) {
        // An unsafe name is not repeated back.
        return (error_reply(why, None), Bytes::new());
    }
    let failed = |why: &str| (error_reply(why, Some(name)), Bytes::new());
    match op {
        "upload" => {
            let claimed = match header.get("md5") {
                Some(Value::String(md5)) => md5,
                Some(_) => return failed("md5 must be a string"),
                None => return failed("md5 is missing"),
            };
            if claimed.len() != 32 || !claimed.bytes().all(|b| b.is_ascii_hexdigit()) {
                return failed("md5 must be 32 hex digits");
            }
            let actual = md5_hex(&frame.payload);
            if !claimed.eq_ignore_ascii_case(&actual) {
                let mut header = failed("md5 mismatch").0;
                header.insert("md5".to_owned(), Value::from(actual));
                return (header, Bytes::new());
            }
            let size = frame.payload.len();
            // A copy of just the body: the frame's bytes may be a slice of a
            // much larger read buffer, which a stored slice would keep alive.
            let body = Bytes::copy_from_slice(&frame.payload);
            let stored = store
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .put(name, body, actual.clone());
            match stored {
                Ok(()) => (
                    reply(&[
                        ("file_name", Value::from(name)),
                        ("file_size", Value::from(0)),
                        ("md5", Value::from(actual)),
                        ("size", Value::from(size)),
                        ("status", Value::from("ok")),
                    ]),
                    Bytes::new(),
                ),
                Err(why) => failed(&why),
            }
        }
        "download" => {
            if !frame.payload.is_empty() {
                return failed("a download request has no body (file_size must be 0)");
            }
            let found = store
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(name);
            match found {
                Some((data, md5)) => (
                    reply(&[
                        ("file_name", Value::from(name)),
                        ("file_size", Value::from(data.len())),
                        ("md5", Value::from(md5)),
                        ("status", Value::from("ok")),
                    ]),
                    data,
                ),
                None => failed("no such file"),
            }
        }
        _ => failed("unknown op (use \"upload\" or \"download\")"),
    }
}

pub async fn serve_tcp(
    stream: TcpStream,
    recorder: Recorder,
    shutdown: CancellationToken,
    config: &BuiltinConfig,
    store: &SharedStore,
) -> io::Result<()> {
    let framing: &FramingConfig = &config.framing;
    let mut conn = FramedConn::new(stream, recorder, framing, shutdown);
    loop {
        let (header, body, last) = match conn.next().await? {
            Next::Frame(frame) => {
                let (header, body) = handle(&frame, store);
                (header, body, false)
            }
            Next::Fatal(e) | Next::Skipped(e) => {
                (error_reply(&e.to_string(), None), Bytes::new(), true)
            }
            Next::Eof => return conn.close().await,
            Next::Stopped => return Ok(()),
        };
        let mut out = BytesMut::new();
        if framing
            .encode_json_header(&header, &body, &mut out)
            .is_err()
        {
            // Only a reply over max_header (a huge error text) gets here.
            return conn.close().await;
        }
        drop(body);
        if !conn.send(out.freeze()).await? {
            return Ok(());
        }
        if last {
            return conn.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_store: usize, max_files: usize) -> Mutex<Store> {
        Mutex::new(Store {
            files: HashMap::new(),
            total: 0,
            max_store,
            max_files,
        })
    }

    fn frame(header: Value, body: &[u8]) -> Frame {
        let Value::Object(mut header) = header else {
            unreachable!()
        };
        header.insert("file_size".into(), Value::from(body.len()));
        Frame {
            payload: Bytes::copy_from_slice(body),
            header: Some(header),
        }
    }

    fn json(map: &Map<String, Value>) -> String {
        serde_json::to_string(map).unwrap()
    }

    #[test]
    fn file_names_are_never_paths() {
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "/abs",
            "a\\b",
            "..\\win",
            "a..b",
            "nul\0byte",
            "tab\there",
            "new\nline",
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_file_name(&"x".repeat(256)).is_err());
        for good in [
            "a.txt",
            ".hidden",
            "x".repeat(255).as_str(),
            "été.pdf",
            "a b",
        ] {
            assert_eq!(validate_file_name(good), Ok(()), "{good:?} refused");
        }
    }

    #[test]
    fn md5_is_lowercase_hex() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn upload_then_download() {
        let store = store(1000, 10);
        let up = frame(
            serde_json::json!({"file_name": "a.txt", "md5": "5D41402ABC4B2A76B9719D911017C592"}),
            b"hello",
        );
        let (header, body) = handle(&up, &store);
        assert_eq!(
            json(&header),
            r#"{"file_name":"a.txt","file_size":0,"md5":"5d41402abc4b2a76b9719d911017c592","size":5,"status":"ok"}"#
        );
        assert!(body.is_empty());
        let down = frame(
            serde_json::json!({"op": "download", "file_name": "a.txt"}),
            b"",
        );
        let (header, body) = handle(&down, &store);
        assert_eq!(
            json(&header),
            r#"{"file_name":"a.txt","file_size":5,"md5":"5d41402abc4b2a76b9719d911017c592","status":"ok"}"#
        );
        assert_eq!(&body[..], b"hello");
    }

    #[test]
    fn failures_get_error_statuses() {
        let store = store(8, 1);
        let cases = [
            (
                serde_json::json!({"file_name": "a", "md5": "00000000000000000000000000000000"}),
                &b"hello"[..],
                r#"{"error":"md5 mismatch","file_name":"a","file_size":0,"md5":"5d41402abc4b2a76b9719d911017c592","status":"error"}"#,
            ),
            (
                serde_json::json!({"file_name": "../x", "md5": "5d41402abc4b2a76b9719d911017c592"}),
                b"hello",
                r#"{"error":"file_name contains a path separator","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"file_name": "a"}),
                b"hello",
                r#"{"error":"md5 is missing","file_name":"a","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"file_name": "a", "md5": "xyz"}),
                b"hello",
                r#"{"error":"md5 must be 32 hex digits","file_name":"a","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"op": "download", "file_name": "missing"}),
                b"",
                r#"{"error":"no such file","file_name":"missing","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"op": "delete", "file_name": "a"}),
                b"",
                r#"{"error":"unknown op (use \"upload\" or \"download\")","file_name":"a","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"op": 1, "file_name": "a"}),
                b"",
                r#"{"error":"op must be a string","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"file_name": 7}),
                b"",
                r#"{"error":"file_name must be a string","file_size":0,"status":"error"}"#,
            ),
            (
                serde_json::json!({"file_name": "big", "md5": md5_hex(b"123456789")}),
                b"123456789",
                r#"{"error":"store full: 9 more bytes would exceed max_store (8 bytes)","file_name":"big","file_size":0,"status":"error"}"#,
            ),
        ];
        for (header, body, expected) in cases {
            let (reply, reply_body) = handle(&frame(header, body), &store);
            assert_eq!(json(&reply), expected);
            assert!(reply_body.is_empty());
        }
    }

    #[test]
    fn a_stored_file_does_not_keep_the_read_buffer_alive() {
        let store = store(1000, 10);
        // The frame's body is a slice of a much larger buffer, as a decoder's
        // frames are slices of its read buffer.
        let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut up = frame(
            serde_json::json!({"file_name": "a", "md5": md5_hex(b"xxxxx")}),
            b"",
        );
        up.payload = buffer.slice(..5);
        up.header
            .as_mut()
            .unwrap()
            .insert("file_size".into(), Value::from(5));
        let (reply, _) = handle(&up, &store);
        assert_eq!(reply["status"], "ok");
        drop(up);
        assert!(buffer.is_unique(), "the store holds a slice of the buffer");
        let stored = store.lock().unwrap().get("a").unwrap().0;
        assert_eq!(&stored[..], b"xxxxx");
    }

    #[test]
    fn store_limits_count_replacements() {
        let store = store(10, 1);
        let put = |name: &str, body: &[u8]| {
            let (reply, _) = handle(
                &frame(
                    serde_json::json!({"file_name": name, "md5": md5_hex(body)}),
                    body,
                ),
                &store,
            );
            reply["status"].as_str().unwrap().to_owned()
        };
        assert_eq!(put("a", b"0123456789"), "ok");
        // Replacing the only file with one of the same size fits.
        assert_eq!(put("a", b"abcdefghij"), "ok");
        assert_eq!(put("b", b""), "error", "max_files is 1");
        assert_eq!(store.lock().unwrap().total, 10);
    }
}
