//! `wirecheck schema` and the shipped `scenario.schema.json`: the file is the
//! command's output, every shipped scenario validates against it, unknown keys and
//! steps do not, the forms of SCENARIO-FORMAT v1 and v2 do, and every key the loader
//! accepts is in it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

fn schema_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenario.schema.json")
}

fn shipped_schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(schema_file()).expect("scenario.schema.json"))
        .expect("scenario.schema.json is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&shipped_schema()).expect("a valid JSON Schema")
}

/// A scenario file's TOML as the JSON value a schema validator (or an editor) sees.
fn as_json(text: &str) -> Value {
    toml::from_str(text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

fn errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let instance = as_json(text);
    validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[tokio::test]
async fn the_shipped_file_is_what_the_command_prints() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.arg("schema");
    let output = crate::output_within(
        command,
        std::time::Duration::from_secs(30),
        "wirecheck schema",
    )
    .await;
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let shipped = std::fs::read_to_string(schema_file()).unwrap();
    assert!(
        printed == shipped,
        "scenario.schema.json is out of date: run `cargo run -p wirecheck -- schema > scenario.schema.json`"
    );
    let value: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        value["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[test]
fn every_shipped_scenario_validates() {
    let validator = validator();
    let files = wirecheck::cli::discover(&[crate::scenarios_dir()]).unwrap();
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let errors = errors(&validator, &text);
        assert!(
            errors.is_empty(),
            "{} does not validate:\n{}",
            file.display(),
            errors.join("\n")
        );
    }
}

#[test]
fn unknown_keys_and_steps_fail_validation() {
    let validator = validator();
    let base = "[servers.echo]\nbuiltin = \"echo\"\n\n[[clients]]\nscript = [ { send = \"x\" } ]\n";
    assert!(
        errors(&validator, base).is_empty(),
        "{:?}",
        errors(&validator, base)
    );
    let bad = [
        format!("step_timout = \"1s\"\n{base}"),
        base.replace("{ send = \"x\" }", "{ sned = \"x\" }"),
        base.replace("{ send = \"x\" }", "{ send = \"x\", bogus = 1 }"),
        base.replace(
            "{ send = \"x\" }",
            "{ send = { hex = \"00\", text = \"a\" } }",
        ),
        base.replace("{ send = \"x\" }", "{ close = false }"),
        base.replace("{ send = \"x\" }", "{ shutdown = \"sideways\" }"),
        base.replace(
            "builtin = \"echo\"",
            "builtin = \"echo\"\nframing = \"u32le\"",
        ),
        base.replace("builtin = \"echo\"", "builtin = \"nope\""),
        base.replace("builtin = \"echo\"", "builtin = \"echo\"\nscript = []"),
        base.replace("[[clients]]", "[[clients]]\ncolor = \"red\""),
        format!("timeout = \"ten seconds\"\n{base}"),
        format!("retries = 101\n{base}"),
        format!("{base}\n[proxies.p]\nto = \"echo\"\nfaults = [ {{ explode = true }} ]\n"),
        "name = \"nothing to run\"\n".to_owned(),
    ];
    for text in bad {
        assert!(
            !errors(&validator, &text).is_empty(),
            "this should not validate:\n{text}"
        );
    }
}

#[test]
fn the_forms_of_the_format_contract_validate() {
    let validator = validator();
    let examples = [
        // v1: every step, data form and server kind.
        r#"
name = "v1"
description = "d"
timeout = "10s"
step_timeout = "250ms"
tags = ["a"]
[servers.a]
builtin = "readsplit"
framing = "u16be"
read_size = 4
[servers.b]
script = [
  { wait = "go", timeout = "1s" }, { await_queued = 3 }, { recv = { max = 2, expect = "ab" } },
  { expect = { hex = "de ad" } }, { expect_frame = { framing = "varint", text = "x" } },
  { expect_eof = true }, { shutdown = "write" }, { close = true },
]
connections = 2
proto = "tcp"
bind = "127.0.0.1:0"
nodelay = true
recv_buffer = 4096
send_buffer = 4096
linger = "0s"
[servers.c]
command = ["python3", "srv.py", "{port}"]
env = { K = "V" }
cwd = "."
ready_timeout = "5s"
ready_delay = "10ms"
[servers.d]
address = "127.0.0.1:8080"
[[clients]]
name = "c1"
connect = "b"
proto = "tcp"
count = 3
script = [
  { connect = true }, { send = "x" }, { send = { base64 = "aGk=" } }, { send = { file = "p.bin" } },
  { send = { repeat = "ab", times = 10, chunks = [1, 2], delay = "5ms" } },
  { send_frame = { framing = "u32le", text = "hi" } }, { sleep = "1ms" }, { signal = "go" },
  { expect_reset = true },
]
"#,
        // v2: templates, file slices, matchers, new steps, json-header, unread.
        r#"
unread = "fail"
[servers.srv]
command = ["python3", "srv.py", "{port}", "{addr:other}"]
ready = { log = "listening on" }
exit = "any"
[servers.other]
command = ["./other", "{port}"]
ready = { delay = "300ms" }
[servers.third]
command = ["./third", "{port}"]
ready = "connect"
exit = 3
[[clients]]
connect = "flaky"
script = [
  { send = { template = "auth {token}\n" } },
  { send = { file = "x.bin", offset = 1024, len = 4096 } },
  { send = { text = "ab", chunks = [2, 7], await_read = true } },
  { hold = true }, { send = "a" }, { send = "b" }, { flush = true }, { await_read = true },
  { expect = { regex = "token=(?P<token>\\w+)" } },
  { expect = { contains = "ok", max = 1024 } },
  { expect = { len = 4 } },
  { expect = { json = { status = "ok", nested = { n = 1 } } } },
  { recv = { max = 10, expect = { regex = "^a" } } },
  { expect_line = { contains = "x" } }, { expect_line = "exact" },
  { expect_silence = "200ms" },
  { expect_frame = { framing = "line", regex = "^ok" } },
  { send_frame = { framing = "json-header", header = { file_name = "a.txt", md5 = "{md5}" }, file = "a.txt" } },
  { expect_frame = { framing = "json-header", header = { status = "ok" }, body = { len = 3 } } },
]
[[clients]]
name = "tutorial-client"
command = ["python3", "client.py", "{port:srv}"]
stdin = "hello\nquit\n"
exit = 0
stdout = { contains = "received 10 bytes" }
stderr = { regex = "^$" }
env = { A = "1" }
cwd = "."
count = 2
[proxies.flaky]
to = "srv"
seed = 7
faults = [
  { coalesce = 10, window = "50ms" },
  { latency = "20ms", jitter = "5ms", direction = "down" },
  { bandwidth = 1000, shared = true },
  { slice = 1, delay = "1ms", connections = [1, 3] },
  { slice = [1, 5] },
  { reset_after = 100, direction = "up", probability = 0.5 },
  { close_after = 10 }, { blackhole = true }, { slow_close = "1s" },
]
[proxies.udp]
to = "127.0.0.1:9000"
proto = "udp"
faults = [ { drop = 0.1 }, { duplicate = 0.2 }, { reorder = 0.3 }, { corrupt = 0.01 }, { truncate = 10 }, { latency = "1ms" } ]
"#,
        // v1 + the suite's keys.
        r#"
group = "port-8080"
retries = 2
[servers.s]
builtin = "echo"
[[clients]]
script = [ { send = "x" }, { expect = "x" } ]
"#,
    ];
    for text in examples {
        let errors = errors(&validator, text);
        assert!(
            errors.is_empty(),
            "a contract form does not validate:\n{}\n{text}",
            errors.join("\n")
        );
    }
}

/// Every key the loader lists as valid in each context is a key of the schema, so
/// a key added to the loader without the schema fails here.
#[tokio::test]
async fn every_key_the_loader_accepts_is_in_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(
        &file,
        "zz_top = 1\n[servers.b]\nbuiltin = \"echo\"\nzz_builtin = 1\n[servers.s]\nscript = []\nzz_script = 1\n\
         [servers.c]\ncommand = [\"x\", \"{port}\"]\nzz_command = 1\n[[clients]]\nconnect = \"b\"\nzz_client = 1\nscript = []\n\
         [[clients]]\ncommand = [\"x\"]\nzz_program = 1\n",
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command.arg("check").arg(&file);
    let output = crate::output_within(
        command,
        std::time::Duration::from_secs(30),
        "wirecheck check",
    )
    .await;
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    let schema = shipped_schema();
    let keys = |value: &Value| -> Vec<String> {
        value["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let top = keys(&schema);
    let server = keys(&schema["$defs"]["server"]);
    let client = keys(&schema["$defs"]["client"]);
    let mut checked = 0;
    let lines: Vec<&str> = report.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(context) = line.strip_prefix("error: unknown key `zz_") else {
            continue;
        };
        let valid = lines[i..]
            .iter()
            .find_map(|l| {
                l.trim_start_matches([' ', '='])
                    .strip_prefix("valid keys: ")
            })
            .unwrap_or_else(|| panic!("no list of valid keys after `{line}`:\n{report}"));
        let against = if context.starts_with("top") {
            &top
        } else if context.contains("in server") {
            &server
        } else {
            &client
        };
        for key in valid.split(", ") {
            assert!(
                against.iter().any(|k| k == key),
                "the loader accepts `{key}` ({line}) but the schema does not know it"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 6, "{report}");
}

/// Every form of a fault table: the schema takes exactly what the loader takes
/// (the one check it cannot make is whether a fault fits the proxy's protocol,
/// which depends on the target: a UDP fault on a TCP proxy is the loader's error).
#[test]
fn fault_tables_validate_exactly_when_the_loader_takes_them() {
    let validator = validator();
    let cases: &[(&str, &str, bool)] = &[
        ("tcp", r#"{ latency = "1ms" }"#, true),
        (
            "tcp",
            r#"{ latency = "1ms", jitter = "5ms", direction = "down" }"#,
            true,
        ),
        ("tcp", r#"{ jitter = "5ms" }"#, true),
        ("tcp", r#"{ slice = 1, delay = "1ms" }"#, true),
        ("tcp", r#"{ slice = [1, 4] }"#, true),
        ("tcp", r#"{ coalesce = 10, window = "5ms" }"#, true),
        ("tcp", r#"{ coalesce = 1048576 }"#, true),
        ("tcp", r#"{ bandwidth = 1000, shared = true }"#, true),
        ("tcp", r#"{ reset_after = 0 }"#, true),
        ("tcp", r#"{ close_after = 5, direction = "up" }"#, true),
        ("tcp", r#"{ blackhole = true }"#, true),
        (
            "tcp",
            r#"{ slow_close = "1ms", connections = [1, 2], probability = 0.5 }"#,
            true,
        ),
        ("tcp", r#"{ jitter = "5ms", delay = "1ms" }"#, false),
        ("tcp", r#"{ latency = "1ms", window = "1ms" }"#, false),
        ("tcp", r#"{ delay = "1ms" }"#, false),
        ("tcp", r#"{ shared = true }"#, false),
        ("tcp", r#"{ slice = 1, shared = true }"#, false),
        ("tcp", r#"{ coalesce = 1048577 }"#, false),
        ("tcp", r#"{ slice = 1073741825 }"#, false),
        ("tcp", r#"{ slice = [1, 2, 3] }"#, false),
        ("tcp", r#"{ blackhole = false }"#, false),
        ("tcp", r#"{ slice = 1, probability = 1.5 }"#, false),
        ("tcp", r#"{ slice = 1, connections = [0] }"#, false),
        ("tcp", r#"{ slice = 1, direction = "sideways" }"#, false),
        ("tcp", r#"{ reset_after = -1 }"#, false),
        ("tcp", r#"{ latency = "1ms", slice = 1 }"#, false),
        ("tcp", r#"{ jitter = "1ms", slice = 1 }"#, false),
        ("tcp", r#"{ direction = "up" }"#, false),
        ("tcp", r#"{ explode = true }"#, false),
        ("udp", r#"{ drop = 0.5 }"#, true),
        ("udp", r#"{ duplicate = 1, connections = [1] }"#, true),
        ("udp", r#"{ reorder = 0.5, window = "10ms" }"#, true),
        ("udp", r#"{ corrupt = 0.1 }"#, true),
        ("udp", r#"{ truncate = 65535 }"#, true),
        ("udp", r#"{ jitter = "2ms" }"#, true),
        ("udp", r#"{ latency = "2ms", jitter = "1ms" }"#, true),
        ("udp", r#"{ truncate = 65536 }"#, false),
        ("udp", r#"{ drop = 2 }"#, false),
        ("udp", r#"{ drop = 0.1, window = "1ms" }"#, false),
        ("udp", r#"{ corrupt = 0.1, delay = "1ms" }"#, false),
    ];
    for (proto, fault, valid) in cases {
        let text = format!(
            "[proxies.p]\nto = \"127.0.0.1:9\"\nproto = \"{proto}\"\nfaults = [ {fault} ]\n\n\
             [[clients]]\nconnect = \"p\"\nscript = [ {{ send = \"x\" }} ]\n"
        );
        let schema_errors = errors(&validator, &text);
        let loaded = wirecheck::scenario::load_str(Path::new("fault.toml"), &text);
        assert_eq!(
            schema_errors.is_empty(),
            *valid,
            "the schema on {proto} {fault}: {schema_errors:?}"
        );
        assert_eq!(
            loaded.is_ok(),
            *valid,
            "the loader on {proto} {fault}: {:?}",
            loaded.err().map(|e| e.render())
        );
    }
}
