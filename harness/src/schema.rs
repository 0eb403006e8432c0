//! `wirecheck schema`: a JSON Schema (draft 2020-12) of the scenario format, v1 and
//! v2, every key with its description, for editors (Taplo / Even Better TOML read a
//! `#:schema` directive) and for checking scenario files with any JSON Schema tool.
//!
//! The schema is built here rather than kept by hand so that the names wirecheck
//! itself knows (step keywords, framings, built-in servers and their options) come
//! from the same tables the loader uses; the repository ships its output as
//! `scenario.schema.json`, and a test keeps the two equal. Keys the loader accepts
//! but the schema lacks (or the reverse) are caught by tests that compare both.
//!
//! Every object is closed (`additionalProperties: false`), so an unknown key or an
//! unknown step fails validation, as it fails loading.

use serde_json::{json, Map, Value};

use crate::framing::FramingKind;
use crate::proxy::fault::{LARGEST_COUNT, LARGEST_SLICE};
use crate::scenario::load::MAX_COALESCE_BYTES;
use crate::scenario::STEP_KEYWORDS;
use crate::servers::options::OptionKind;
use crate::servers::BuiltinKind;

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://wirecheck.invalid/scenario.schema.json";

/// The schema as pretty-printed JSON with a final newline (what `wirecheck schema`
/// prints and `scenario.schema.json` holds).
pub fn render() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a JSON value serializes");
    text.push('\n');
    text
}

fn described(mut value: Value, description: &str) -> Value {
    if let Value::Object(map) = &mut value {
        map.insert("description".into(), Value::String(description.into()));
    }
    value
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{name}") })
}

fn referenced(name: &str, description: &str) -> Value {
    described(reference(name), description)
}

/// An object with exactly these properties allowed.
fn closed(properties: Vec<(&str, Value)>) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("type".into(), json!("object"));
    let mut props = Map::new();
    for (key, value) in properties {
        props.insert(key.into(), value);
    }
    object.insert("properties".into(), Value::Object(props));
    object.insert("additionalProperties".into(), json!(false));
    object
}

/// A step: a table whose one step key is `keyword`, plus `timeout`.
fn step(keyword: &str, value: Value) -> Value {
    let mut object = closed(vec![
        (keyword, value),
        (
            "timeout",
            referenced(
                "duration",
                "overrides the scenario's `step_timeout` for this step",
            ),
        ),
    ]);
    object.insert("required".into(), json!([keyword]));
    Value::Object(object)
}

const TRUE_ONLY: &str = "only `true` is valid (a step with `false` would do nothing)";

fn flag(description: &str) -> Value {
    json!({ "const": true, "description": format!("{description}; {TRUE_ONLY}") })
}

/// The value schema of each step keyword, with its description.
fn step_value(keyword: &str) -> Option<Value> {
    Some(match keyword {
        "send" => referenced("send", "write the bytes (TCP: all of them; UDP: one datagram)"),
        "recv" => described(
            Value::Object({
                let mut o = closed(vec![
                    ("max", json!({ "type": "integer", "minimum": 1, "description": "the read buffer's size: ONE read call of at most this many bytes, like Python's sock.recv(N)" })),
                    ("expect", referenced("match", "what that single read must return")),
                ]);
                o.insert("required".into(), json!(["max"]));
                o
            }),
            "one read call with a buffer of `max` bytes (UDP: one datagram, truncated)",
        ),
        "expect" => referenced("match", "read until the expected bytes have arrived (however the stream splits them) and compare; UDP: the next datagram"),
        "send_frame" => referenced("send_frame", "encode the data as one frame of `framing`, then send it"),
        "expect_frame" => referenced("expect_frame", "read one whole frame of `framing` and match its payload"),
        "expect_eof" => flag("the peer closed its side: a read returns 0 bytes"),
        "expect_reset" => flag("the peer reset the connection"),
        "await_queued" => json!({ "type": "integer", "minimum": 0, "description": "wait, without reading, until at least N bytes sit in this socket's receive queue" }),
        "shutdown" => json!({ "enum": ["write", "read", "both"], "description": "half-close the connection" }),
        "close" => flag("close the socket (a reset where `linger = \"0s\"`)"),
        "sleep" => referenced("duration", "pause"),
        "signal" => json!({ "type": "string", "minLength": 1, "description": "wake every actor waiting on this name; a later `wait` on it returns at once" }),
        "wait" => json!({ "type": "string", "minLength": 1, "description": "wait for this signal" }),
        "connect" => flag("TCP client: connect here instead of before the first step"),
        "hold" => flag("from here, sends are held and not written"),
        "flush" => flag("write everything held in ONE write call"),
        "await_read" => flag("wait until the peer has read every byte this actor sent (loopback peers only)"),
        "expect_line" => referenced("match", "read one line (LF; a trailing CR stripped; at most 65536 bytes) and match it without its terminator"),
        "expect_silence" => referenced("duration", "nothing (no byte, no EOF, no datagram) arrives for that long"),
        _ => return None,
    })
}

/// The step keywords of the format contract (SCENARIO-FORMAT v1 and v2), described
/// even before the loader implements them, so a scenario written to the contract
/// validates whatever this build supports.
const CONTRACT_STEPS: &[&str] = &[
    "send",
    "recv",
    "expect",
    "send_frame",
    "expect_frame",
    "expect_eof",
    "expect_reset",
    "await_queued",
    "shutdown",
    "close",
    "sleep",
    "signal",
    "wait",
    "connect",
    "hold",
    "flush",
    "await_read",
    "expect_line",
    "expect_silence",
];

/// The contract's step keywords, then any the loader adds beyond them (so the
/// loader implementing a contract step leaves the schema's text unchanged).
fn step_keywords() -> Vec<&'static str> {
    let mut keywords: Vec<&'static str> = CONTRACT_STEPS.to_vec();
    for keyword in STEP_KEYWORDS {
        if !keywords.contains(keyword) {
            keywords.push(keyword);
        }
    }
    keywords
}

/// Every step keyword, as a `oneOf` of closed step tables.
fn steps() -> Value {
    let variants: Vec<Value> = step_keywords()
        .into_iter()
        .map(|keyword| {
            let value = step_value(keyword).unwrap_or_else(|| {
                // A step added to the loader without a schema entry: accepted with
                // any value until described (a test flags it).
                json!({ "description": format!("`{keyword}` (not yet described in the schema)") })
            });
            step(keyword, value)
        })
        .collect();
    json!({
        "description": "one step: an inline table whose one key names the step, plus an optional `timeout`",
        "oneOf": variants,
    })
}

/// The data keys (`text`, `hex`, ...) as properties, for tables that hold data.
fn data_properties() -> Vec<(&'static str, Value)> {
    vec![
        (
            "text",
            json!({ "type": "string", "description": "the string's UTF-8 bytes" }),
        ),
        (
            "hex",
            json!({ "type": "string", "pattern": "^[0-9a-fA-F\\s]*$", "description": "hex digits; white space ignored" }),
        ),
        (
            "base64",
            json!({ "type": "string", "description": "standard base64" }),
        ),
        (
            "file",
            json!({ "type": "string", "minLength": 1, "description": "a file, relative to the scenario file; read when the step runs" }),
        ),
        (
            "offset",
            json!({ "type": "integer", "minimum": 0, "description": "with `file`: where the slice starts (default 0)" }),
        ),
        (
            "len",
            json!({ "type": "integer", "minimum": 0, "description": "with `file`: how many bytes (default: to the end of the file)" }),
        ),
        (
            "repeat",
            json!({ "type": "string", "description": "a pattern repeated `times` times" }),
        ),
        (
            "times",
            json!({ "type": "integer", "minimum": 0, "description": "with `repeat`: how many times" }),
        ),
        (
            "template",
            json!({ "type": "string", "description": "text with placeholders ({port:NAME}, {host:NAME}, {addr:NAME}, captured {VAR}); `{{` and `}}` are literal braces" }),
        ),
    ]
}

/// Exactly one data key; `offset`/`len` only with `file`, `times` with `repeat`.
fn data_choice(required: bool) -> Vec<(&'static str, Value)> {
    let one_of = json!([
        { "required": ["text"] },
        { "required": ["hex"] },
        { "required": ["base64"] },
        { "required": ["file"] },
        { "required": ["repeat", "times"] },
        { "required": ["template"] },
    ]);
    let mut rules = vec![(
        "dependentRequired",
        json!({ "offset": ["file"], "len": ["file"], "times": ["repeat"], "repeat": ["times"] }),
    )];
    if required {
        rules.push(("oneOf", one_of));
    } else {
        // At most one: none of the data keys, or exactly one of them.
        rules.push((
            "not",
            json!({ "anyOf": [
                { "required": ["text", "hex"] }, { "required": ["text", "base64"] },
                { "required": ["text", "file"] }, { "required": ["text", "repeat"] },
                { "required": ["text", "template"] }, { "required": ["hex", "base64"] },
                { "required": ["hex", "file"] }, { "required": ["hex", "repeat"] },
                { "required": ["hex", "template"] }, { "required": ["base64", "file"] },
                { "required": ["base64", "repeat"] }, { "required": ["base64", "template"] },
                { "required": ["file", "repeat"] }, { "required": ["file", "template"] },
                { "required": ["repeat", "template"] },
            ] }),
        ));
    }
    rules
}

fn object_with(
    properties: Vec<(&str, Value)>,
    rules: Vec<(&str, Value)>,
    description: &str,
) -> Value {
    let mut object = closed(properties);
    for (key, value) in rules {
        object.insert(key.into(), value);
    }
    object.insert("description".into(), json!(description));
    Value::Object(object)
}

fn framing_names() -> Vec<&'static str> {
    FramingKind::NAMES.to_vec()
}

fn definitions() -> Map<String, Value> {
    let mut defs = Map::new();
    defs.insert(
        "duration".into(),
        json!({
            "type": "string",
            "pattern": "^\\s*[0-9]*\\.?[0-9]+\\s*(ns|us|µs|ms|s|m|h)\\s*$",
            "description": "a duration: a number and a unit, e.g. \"100us\", \"250ms\", \"2s\", \"1.5s\", \"1m\"",
        }),
    );
    defs.insert(
        "memory_limit".into(),
        json!({
            "description": "a size: an integer number of bytes (at least 1048576), or a number and a unit, e.g. \"600MiB\", \"1.5GiB\", \"800MB\" (B, KiB, MiB, GiB, TiB: powers of 1024; kB, MB, GB, TB: powers of 1000; any letter case)",
            "oneOf": [
                { "type": "integer", "minimum": crate::scenario::load::MIN_MEMORY_LIMIT, "maximum": crate::size::MAX_SIZE },
                { "type": "string", "pattern": "^\\s*[0-9]*\\.?[0-9]+\\s*([bB]|[kKmMgGtT][iI]?[bB])\\s*$" },
            ],
        }),
    );
    defs.insert(
        "data_table".into(),
        object_with(data_properties(), data_choice(true), "bytes given as a table: exactly one of text, hex, base64, file (with offset and len), repeat (with times), template"),
    );
    defs.insert(
        "data".into(),
        json!({
            "description": "bytes: a string (its UTF-8 bytes) or a data table",
            "oneOf": [ { "type": "string" }, reference("data_table") ],
        }),
    );
    let mut send = data_properties();
    send.extend([
        ("chunks", json!({ "type": "array", "minItems": 1, "items": { "type": "integer", "minimum": 1 }, "description": "write in successive calls of these sizes; the last size repeats (UDP: each chunk one datagram)" })),
        ("delay", referenced("duration", "pause between the chunks' write calls")),
        ("await_read", json!({ "type": "boolean", "description": "after each chunk (or the whole send), wait until the peer has read it" })),
    ]);
    defs.insert(
        "send".into(),
        json!({
            "description": "the bytes to send: DATA, or a data table with chunks, delay, await_read",
            "oneOf": [ { "type": "string" }, object_with(send, data_choice(true), "a send table") ],
        }),
    );
    let matcher_properties = || {
        vec![
            (
                "regex",
                json!({ "type": "string", "description": "Rust regex syntax on bytes, unanchored; named groups (?P<name>...) capture variables" }),
            ),
            ("contains", referenced("data", "the bytes contain this")),
            (
                "json",
                json!({ "type": "object", "description": "the bytes are a JSON document holding at least these keys with these values (tables nest)" }),
            ),
            (
                "max",
                json!({ "type": "integer", "minimum": 1, "description": "on a TCP stream, read at most this many bytes while looking for a match (default 65536)" }),
            ),
        ]
    };
    let mut match_table = data_properties();
    match_table.retain(|(k, _)| *k != "len");
    match_table.extend(matcher_properties());
    match_table.push(("len", json!({ "type": "integer", "minimum": 0, "description": "exactly this many bytes, whatever they are (with `file`: the slice's length)" })));
    defs.insert(
        "match".into(),
        json!({
            "description": "a MATCH: DATA (exact bytes), or { regex }, { contains }, { len }, { json }",
            "oneOf": [
                { "type": "string" },
                object_with(match_table, vec![(
                    "dependentRequired",
                    json!({ "offset": ["file"], "times": ["repeat"], "repeat": ["times"] }),
                )], "a data table or a matcher table"),
            ],
        }),
    );
    let frame_common = || {
        vec![
            (
                "framing",
                json!({ "enum": framing_names(), "description": "the frame format" }),
            ),
            (
                "max_frame",
                json!({ "type": "integer", "minimum": 1, "description": "the largest frame accepted" }),
            ),
            (
                "max_line",
                json!({ "type": "integer", "minimum": 1, "description": "the longest line accepted (line framings)" }),
            ),
            (
                "length_includes_header",
                json!({ "type": "boolean", "description": "the length prefix counts itself" }),
            ),
            (
                "header",
                json!({ "type": "object", "description": "json-header: the JSON header (send: `file_size` filled in unless given; \"{md5}\" and \"{size}\" replaced); expect: matched as `json` does" }),
            ),
        ]
    };
    let mut send_frame = data_properties();
    send_frame.extend(frame_common());
    defs.insert(
        "send_frame".into(),
        object_with(
            send_frame,
            {
                let mut rules = data_choice(false);
                rules.push(("required", json!(["framing"])));
                rules
            },
            "the payload (data keys) and its framing",
        ),
    );
    let mut expect_frame = data_properties();
    expect_frame.retain(|(k, _)| *k != "len");
    expect_frame.extend(frame_common());
    expect_frame.extend(matcher_properties());
    expect_frame.push(("len", json!({ "type": "integer", "minimum": 0, "description": "the payload is exactly this many bytes (with `file`: the slice's length)" })));
    expect_frame.push(("body", referenced("match", "json-header: the body's MATCH")));
    defs.insert(
        "expect_frame".into(),
        object_with(
            expect_frame,
            vec![("required", json!(["framing"]))],
            "the framing and what the payload must match (match keys beside `framing`)",
        ),
    );
    defs.insert("step".into(), steps());
    defs.insert(
        "script".into(),
        json!({ "type": "array", "items": reference("step"), "description": "the steps, in order" }),
    );
    defs.insert(
        "exit".into(),
        json!({
            "description": "the expected exit status: a number, or \"any\"",
            "oneOf": [ { "type": "integer", "minimum": 0, "maximum": 255 }, { "const": "any" } ],
        }),
    );
    defs.insert(
        "env".into(),
        json!({ "type": "object", "additionalProperties": { "type": "string" }, "description": "environment variables for the program; values take the same placeholders as `command`" }),
    );
    defs.insert(
        "command".into(),
        json!({ "type": "array", "minItems": 1, "items": { "type": "string" }, "description": "program and arguments; placeholders {port}, {port:NAME}, {host:NAME}, {addr:NAME} and {VAR} (a variable captured earlier in the run, resolved when the program starts) are replaced; never run through a shell" }),
    );
    defs.insert("server".into(), server());
    defs.insert("client".into(), client());
    defs.insert("proxy".into(), proxy());
    defs.insert("fault".into(), fault());
    defs
}

fn socket_options() -> Vec<(&'static str, Value)> {
    vec![
        (
            "nodelay",
            json!({ "type": "boolean", "description": "TCP_NODELAY" }),
        ),
        (
            "recv_buffer",
            json!({ "type": "integer", "minimum": 1, "description": "SO_RCVBUF in bytes" }),
        ),
        (
            "send_buffer",
            json!({ "type": "integer", "minimum": 1, "description": "SO_SNDBUF in bytes" }),
        ),
        (
            "linger",
            referenced("duration", "SO_LINGER; \"0s\" makes `close` a reset"),
        ),
    ]
}

fn proto(description: &str) -> Value {
    json!({ "enum": ["tcp", "udp"], "description": description })
}

/// A built-in server option as a schema.
fn option_schema(kind: &OptionKind<crate::servers::BuiltinConfig>, doc: &str) -> Value {
    match kind {
        OptionKind::Count { min, max, .. } => {
            json!({ "type": "integer", "minimum": min, "maximum": max, "description": doc })
        }
        OptionKind::Bool { .. } => json!({ "type": "boolean", "description": doc }),
        OptionKind::Duration { .. } => referenced("duration", doc),
        OptionKind::Framing { accepted, .. } => json!({ "enum": accepted, "description": doc }),
        OptionKind::Timestamp { .. } => {
            json!({ "type": "string", "description": format!("{doc} (RFC 3339)") })
        }
    }
}

fn server() -> Value {
    let mut properties = vec![
        ("builtin", json!({ "enum": BuiltinKind::names(), "description": "a reference server of wirecheck, run in-process; its options sit beside it" })),
        ("script", referenced("script", "a scripted server: it accepts connections (TCP) or receives datagrams (UDP) and runs the script")),
        ("command", referenced("command", "an external server under test, started for this scenario")),
        ("address", json!({ "type": "string", "description": "a server that is already running (loopback host:port); never started or stopped" })),
        ("proto", proto("transport (default \"tcp\")")),
        ("bind", json!({ "type": "string", "description": "where to listen (default \"127.0.0.1:0\", an ephemeral loopback port)" })),
        ("connections", json!({ "type": "integer", "minimum": 1, "maximum": 100000, "description": "script servers: accept N connections, each runs the script (default 1)" })),
        ("env", reference("env")),
        ("cwd", json!({ "type": "string", "description": "working directory of the command, relative to the scenario file" })),
        ("ready_timeout", referenced("duration", "how long the command may take to become ready (default \"5s\")")),
        ("ready_delay", referenced("duration", "a pause after readiness")),
        ("ready", json!({
            "description": "readiness of a command server: \"listening\" (default: its socket is in the kernel's table), \"connect\", \"none\", { log = REGEX } or { delay = DURATION }",
            "oneOf": [
                { "enum": ["listening", "connect", "none"] },
                { "type": "object", "properties": { "log": { "type": "string", "description": "a regex a line of its output must match" } }, "required": ["log"], "additionalProperties": false },
                { "type": "object", "properties": { "delay": reference("duration") }, "required": ["delay"], "additionalProperties": false },
            ],
        })),
        ("exit", referenced("exit", "a command server that exits before the scenario ends fails it unless its status is this")),
        ("max_memory", referenced("memory_limit", "command server: the most resident memory the program and every process it started may hold at once (sampled every 100 ms while the run goes, and once more when the clients are done); more fails the scenario")),
    ];
    properties.extend(socket_options());
    // Every built-in server's options; which server takes which is checked below.
    let mut option_keys: Vec<&'static str> = Vec::new();
    let mut rules: Vec<Value> = Vec::new();
    let common: Vec<&str> = properties.iter().map(|(k, _)| *k).collect();
    for kind in BuiltinKind::all() {
        let mut allowed: Vec<&str> = common.clone();
        let mut specific = Map::new();
        for option in kind.options() {
            allowed.push(option.key);
            specific.insert(option.key.into(), option_schema(&option.kind, option.doc));
            if !option_keys.contains(&option.key) {
                option_keys.push(option.key);
            }
        }
        rules.push(json!({
            "if": { "properties": { "builtin": { "const": kind.name() } }, "required": ["builtin"] },
            "then": { "propertyNames": { "enum": allowed }, "properties": specific },
        }));
    }
    let mut map = closed(properties);
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for key in &option_keys {
            props.entry(key.to_string()).or_insert_with(|| {
                json!({ "description": format!("an option of a built-in server (`{key}`; see `wirecheck serve --list`)") })
            });
        }
    }
    rules.push(json!({
        "if": { "not": { "required": ["builtin"] } },
        "then": { "propertyNames": { "enum": common } },
    }));
    map.insert(
        "oneOf".into(),
        json!([
            { "required": ["builtin"] }, { "required": ["script"] },
            { "required": ["command"] }, { "required": ["address"] },
        ]),
    );
    map.insert("allOf".into(), Value::Array(rules));
    map.insert(
        "description".into(),
        json!("a server: exactly one of builtin, script, command, address"),
    );
    Value::Object(map)
}

fn client() -> Value {
    let mut properties = vec![
        (
            "name",
            json!({ "type": "string", "description": "the client's name (default client1, client2, ...)" }),
        ),
        (
            "connect",
            json!({ "type": "string", "description": "a server's or proxy's NAME, or \"host:port\"" }),
        ),
        ("proto", proto("transport (default: the server's)")),
        (
            "count",
            json!({ "type": "integer", "minimum": 1, "maximum": 100000, "description": "run N copies of this client at once (default 1)" }),
        ),
        ("script", reference("script")),
        (
            "command",
            referenced(
                "command",
                "a client program under test, started once every server and proxy is ready",
            ),
        ),
        (
            "stdin",
            referenced(
                "data",
                "written to the program's stdin, which is then closed (default: empty)",
            ),
        ),
        (
            "exit",
            referenced("exit", "the program's expected exit status (default 0)"),
        ),
        (
            "stdout",
            referenced("match", "a MATCH on the program's whole standard output"),
        ),
        (
            "stderr",
            referenced("match", "a MATCH on the program's whole standard error"),
        ),
        ("env", reference("env")),
        (
            "cwd",
            json!({ "type": "string", "description": "the program's working directory, relative to the scenario file" }),
        ),
        (
            "wait",
            json!({ "type": "string", "minLength": 1, "description": "client program: start it only once this signal is raised (within step_timeout), e.g. after the step that captures a variable its command uses" }),
        ),
        (
            "signal",
            json!({ "type": "string", "minLength": 1, "description": "client program: raise this signal once it exited as expected and its output matched; its output's captures are visible from then on" }),
        ),
        (
            "max_memory",
            referenced("memory_limit", "client program: the most resident memory each copy and every process it started may hold at once (sampled every 100 ms); more fails the scenario"),
        ),
    ];
    properties.extend(socket_options());
    let mut map = closed(properties);
    map.insert(
        "description".into(),
        json!("a client: a scripted socket client (`script`) or a program under test (`command`)"),
    );
    Value::Object(map)
}

fn proxy() -> Value {
    let mut map = closed(vec![
        (
            "to",
            json!({ "type": "string", "description": "a server or proxy NAME, or \"host:port\"" }),
        ),
        (
            "seed",
            json!({ "type": "integer", "minimum": 0, "description": "seeds every fault decision (default: random, printed in every report; `run --seed N` overrides)" }),
        ),
        ("proto", proto("transport (default: the target's)")),
        (
            "bind",
            json!({ "type": "string", "description": "where the proxy listens (default an ephemeral loopback port)" }),
        ),
        (
            "faults",
            json!({ "type": "array", "items": reference("fault"), "description": "faults applied in order to the bytes flowing through" }),
        ),
    ]);
    map.insert("required".into(), json!(["to"]));
    map.insert(
        "description".into(),
        json!("a fault proxy between clients and a server; clients `connect` to its NAME"),
    );
    Value::Object(map)
}

fn fault() -> Value {
    let probability =
        |d: &str| json!({ "type": "number", "minimum": 0, "maximum": 1, "description": d });
    let kinds: Vec<(&str, Value)> = vec![
        (
            "latency",
            referenced(
                "duration",
                "deliver each piece this much later (order kept)",
            ),
        ),
        (
            "bandwidth",
            json!({ "type": "integer", "minimum": 1, "maximum": LARGEST_COUNT, "description": "pace delivery to this many bytes per second" }),
        ),
        (
            "slice",
            json!({ "description": "forward in writes of N bytes, or a random size in [MIN, MAX]", "oneOf": [ { "type": "integer", "minimum": 1, "maximum": LARGEST_SLICE }, { "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": LARGEST_SLICE }, "minItems": 2, "maxItems": 2 } ] }),
        ),
        (
            "coalesce",
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_COALESCE_BYTES, "description": "hold bytes until N are held or `window` passed, then forward them in one write" }),
        ),
        (
            "reset_after",
            json!({ "type": "integer", "minimum": 0, "maximum": LARGEST_COUNT, "description": "after N bytes in that direction, reset both connections" }),
        ),
        (
            "close_after",
            json!({ "type": "integer", "minimum": 0, "maximum": LARGEST_COUNT, "description": "after N bytes in that direction, close both connections" }),
        ),
        (
            "blackhole",
            json!({ "const": true, "description": "read and discard; forward nothing" }),
        ),
        (
            "slow_close",
            referenced("duration", "forward a close this much late"),
        ),
        (
            "drop",
            probability("UDP: drop a datagram with this probability"),
        ),
        (
            "duplicate",
            probability("UDP: send a datagram twice with this probability"),
        ),
        (
            "reorder",
            probability("UDP: swap a datagram with the next with this probability"),
        ),
        (
            "corrupt",
            probability("UDP: flip one byte with this probability"),
        ),
        (
            "truncate",
            json!({ "type": "integer", "minimum": 0, "maximum": 65535, "description": "UDP: cut datagrams to N bytes" }),
        ),
    ];
    let companions: Vec<(&str, Value)> = vec![
        (
            "jitter",
            referenced(
                "duration",
                "a random extra delay up to this: beside `latency`, or alone (latency 0)",
            ),
        ),
        (
            "shared",
            json!({ "type": "boolean", "description": "with `bandwidth`: shared by all connections of the proxy" }),
        ),
        (
            "delay",
            referenced("duration", "with `slice`: the pause between writes"),
        ),
        (
            "window",
            referenced(
                "duration",
                "with `coalesce`: the longest bytes are held (default \"100ms\"); with `reorder`: the longest a datagram is held back (default \"100ms\")",
            ),
        ),
        (
            "direction",
            json!({ "enum": ["up", "down", "both"], "description": "up (client to server), down, or both (default)" }),
        ),
        (
            "connections",
            json!({ "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": LARGEST_COUNT }, "description": "only these connections, numbered from 1 in accept order (UDP: client addresses in order of their first datagram; default all)" }),
        ),
        (
            "probability",
            probability(
                "the fault applies to a whole connection (UDP: a whole client address) with this probability, decided by the seed (default 1)",
            ),
        ),
    ];
    // Exactly one fault key. `jitter` is a fault of its own only without
    // `latency` (beside it, it is latency's companion), as the loader reads it.
    let one_of: Vec<Value> = kinds
        .iter()
        .map(|(k, _)| json!({ "required": [k] }))
        .chain([json!({ "required": ["jitter"], "not": { "required": ["latency"] } })])
        .collect();
    let mut properties = kinds;
    properties.extend(companions);
    let mut map = closed(properties);
    map.insert("oneOf".into(), Value::Array(one_of));
    // A companion only beside the fault it belongs to: the loader refuses the rest.
    map.insert(
        "dependentRequired".into(),
        json!({ "shared": ["bandwidth"], "delay": ["slice"] }),
    );
    map.insert(
        "dependentSchemas".into(),
        json!({ "window": { "anyOf": [ { "required": ["coalesce"] }, { "required": ["reorder"] } ] } }),
    );
    map.insert(
        "description".into(),
        json!("one fault: exactly one fault key, with its companions"),
    );
    Value::Object(map)
}

/// The whole schema.
pub fn schema() -> Value {
    let properties = vec![
        (
            "$schema",
            json!({ "type": "string", "description": "the JSON Schema of this file (for editors)" }),
        ),
        (
            "name",
            json!({ "type": "string", "description": "shown in reports (default: the file name without .toml)" }),
        ),
        (
            "description",
            json!({ "type": "string", "description": "why this scenario exists" }),
        ),
        (
            "timeout",
            referenced(
                "duration",
                "deadline for the whole scenario (default \"10s\")",
            ),
        ),
        (
            "step_timeout",
            referenced(
                "duration",
                "deadline of each step that waits (default \"2s\")",
            ),
        ),
        (
            "tags",
            json!({ "type": "array", "items": { "type": "string" }, "description": "labels for `--filter` and `-E 'tag(GLOB)'`" }),
        ),
        (
            "group",
            json!({ "type": "string", "minLength": 1, "description": "scenarios of one group never run at the same time, whatever -j says" }),
        ),
        (
            "retries",
            json!({ "type": "integer", "minimum": 0, "maximum": 100, "description": "how many more times a failed run is tried; one that then passes is flaky (default 0; `run --retries` overrides)" }),
        ),
        (
            "unread",
            json!({ "enum": ["warn", "fail", "ignore"], "description": "what happens when a TCP actor's script ends while bytes no step read have arrived (default \"warn\")" }),
        ),
        (
            "servers",
            json!({ "type": "object", "additionalProperties": reference("server"), "description": "[servers.NAME] tables" }),
        ),
        (
            "proxies",
            json!({ "type": "object", "additionalProperties": reference("proxy"), "description": "[proxies.NAME] fault proxies" }),
        ),
        (
            "clients",
            json!({ "type": "array", "items": reference("client"), "description": "[[clients]] entries" }),
        ),
    ];
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert("$id".into(), json!(SCHEMA_ID));
    root.insert("title".into(), json!("wirecheck scenario"));
    root.insert(
        "description".into(),
        json!("A wirecheck scenario file (format v1 and v2): servers, proxies and clients with scripts of steps, run on loopback. See docs/scenario-format.md."),
    );
    root.extend(closed(properties));
    root.insert(
        "anyOf".into(),
        json!([ { "required": ["servers"] }, { "required": ["clients"] } ]),
    );
    root.insert("$defs".into(), Value::Object(definitions()));
    Value::Object(root)
}

/// Step keywords the schema has no specific entry for (a test keeps this empty).
pub fn undescribed_steps() -> Vec<&'static str> {
    STEP_KEYWORDS
        .iter()
        .copied()
        .filter(|k| step_value(k).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_the_loader_knows_is_described() {
        assert_eq!(undescribed_steps(), Vec::<&str>::new());
    }

    #[test]
    fn the_schema_is_deterministic() {
        assert_eq!(render(), render());
    }
}
