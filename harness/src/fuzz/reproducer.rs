//! A finding written as an ordinary scenario that `wirecheck run` fails.
//!
//! The seed file's own text is the starting point (its servers, timeouts and
//! comments stay as the user wrote them; toml_edit keeps the formatting); its
//! clients are replaced by two: `fuzz-input` sends the minimized input and then
//! signals, and `seed-after-input` waits for that signal, connects and runs the seed
//! client's script unchanged. The seed passes against a healthy server, so the
//! scenario fails exactly when the input broke the server: it died (the connect or
//! a read fails), hangs (a step times out) or closed on the seed.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use toml_edit::{DocumentMut, Item, Value};

use super::input::{seed_bytes, Input, Op};
use super::symptom::Symptom;
use crate::event::ShutdownHow;
use crate::scenario::{Action, ClientSpec, Expected, Scenario, Target};

/// The signal between the two clients of a reproducer.
pub const INPUT_SENT: &str = "fuzz-input-sent";

/// The reproducer's text. `memory` (a memory-growth finding): the fuzzed server's
/// name and the resident memory it may reach, written as its `max_memory`, so the
/// runner fails the reproducer when the input makes it grow past what the fuzzer
/// allowed (its size after a start plus `--memory-limit`). `confirmed`: the input
/// showed the symptom alone; if not, the description says that this file may pass
/// while the bug is there.
#[allow(clippy::too_many_arguments)]
pub fn render(
    seed: &Scenario,
    client: &ClientSpec,
    input: &Input,
    symptom: &Symptom,
    number: usize,
    out_dir: &Path,
    memory: Option<(String, u64)>,
    confirmed: bool,
) -> Result<String, String> {
    let mut doc: DocumentMut = seed
        .source
        .parse()
        .map_err(|e| format!("cannot re-read {}: {e}", seed.path.display()))?;
    doc.remove("clients");
    doc["name"] = toml_edit::value(format!(
        "fuzz finding {number}: {} ({})",
        symptom.kind.name(),
        seed.name
    ));
    let verdict = if confirmed {
        "it fails while the bug is there."
    } else {
        "NOT REPRODUCED ALONE: no recent input, sent alone, showed the symptom (it took \
         several inputs, as a leak of a little per request does), so this file, which \
         sends the last input once, may pass while the bug is there. It records what the \
         fuzzer saw; it is not a regression test."
    };
    doc["description"] = toml_edit::value(format!(
        "Written by `wirecheck fuzz {}`. Symptom: {}. The second client runs the seed's \
         script after the first sent the fuzz input; {verdict}",
        seed.path.display(),
        symptom.summary
    ));
    // A program's working folder was the seed's folder (or relative to it); the
    // reproducer lives elsewhere, so say where it is.
    let seed_dir = seed
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Some(servers) = doc.get_mut("servers").and_then(Item::as_table_like_mut) {
        // A scripted server runs its script on as many connections as it was told
        // to accept: the fuzzed one gets the reproducer's two clients; the others
        // have no client left and would wait for one until the scenario's timeout.
        let target = match &client.connect {
            Target::Server(name) => Some(name.as_str()),
            _ => None,
        };
        let idle: Vec<String> = seed
            .servers
            .iter()
            .filter(|s| matches!(s.kind, crate::scenario::ServerKind::Script { .. }))
            .filter(|s| Some(s.name.as_str()) != target)
            .map(|s| s.name.clone())
            .collect();
        for name in &idle {
            servers.remove(name);
        }
        if let Some(table) = target
            .and_then(|name| servers.get_mut(name))
            .and_then(Item::as_table_like_mut)
        {
            if table.contains_key("script") && client.proto == crate::vocab::Proto::Tcp {
                table.insert("connections", Item::Value(Value::from(2i64)));
            }
        }
        for (name, server) in servers.iter_mut() {
            let Some(table) = server.as_table_like_mut() else {
                continue;
            };
            if !table.contains_key("command") {
                continue;
            }
            let cwd = seed
                .servers
                .iter()
                .find(|s| s.name == name.get())
                .and_then(|s| match &s.kind {
                    crate::scenario::ServerKind::Command(spec) => Some(spec.cwd.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| seed_dir.clone());
            let cwd = relative_to(&absolute(&cwd), &absolute(out_dir));
            table.insert(
                "cwd",
                Item::Value(Value::from(cwd.to_string_lossy().as_ref())),
            );
        }
    }
    if let Some((server, bytes)) = &memory {
        limit_memory(&mut doc, server, *bytes);
    }
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&clients(client, input));
    Ok(text)
}

/// Writes `max_memory` on server `name` (a `command` server), replacing the seed's
/// own limit if it had one: the reproducer must fail at the fuzzer's limit.
fn limit_memory(doc: &mut DocumentMut, name: &str, bytes: u64) {
    let Some(server) = doc
        .get_mut("servers")
        .and_then(Item::as_table_like_mut)
        .and_then(|servers| servers.get_mut(name))
    else {
        return;
    };
    let value = Value::from(format!("{}MiB", bytes >> 20));
    if let Some(table) = server.as_table_mut() {
        table.insert("max_memory", Item::Value(value));
        if let Some(mut key) = table.key_mut("max_memory") {
            key.leaf_decor_mut().set_prefix(
                "# Written by `wirecheck fuzz`: the server's memory right after it started,\n\
                 # plus --memory-limit. The input below makes it grow past this.\n",
            );
        }
    } else if let Some(table) = server.as_table_like_mut() {
        table.insert("max_memory", Item::Value(value));
    }
}

fn clients(client: &ClientSpec, input: &Input) -> String {
    let connect = match &client.connect {
        Target::Server(name) | Target::Proxy(name) => toml_string(name),
        Target::Address(addr) => toml_string(&addr.to_string()),
    };
    let mut text = String::new();
    let udp = client.proto == crate::vocab::Proto::Udp;
    // A client's proto defaults to its server's; a literal address needs it said.
    let proto = if udp { "\nproto = \"udp\"" } else { "" };
    let resets = !udp && input.ops.iter().any(|op| matches!(op, Op::Reset));
    let _ = writeln!(text, "\n# The input the fuzzer found, minimized.");
    let _ = writeln!(
        text,
        "[[clients]]\nname = \"fuzz-input\"\nconnect = {connect}{proto}"
    );
    if resets {
        let _ = writeln!(text, "linger = \"0s\"  # its close is a reset");
    }
    let _ = writeln!(text, "script = [");
    for op in &input.ops {
        for line in op_lines(op) {
            let _ = writeln!(text, "  {line}");
        }
        if matches!(op, Op::Close | Op::Reset) {
            break;
        }
    }
    let _ = writeln!(text, "  {{ signal = \"{INPUT_SENT}\" }},\n]");
    let _ = writeln!(
        text,
        "\n# The seed's own script, which passes against a healthy server.\n[[clients]]\nname = \"seed-after-input\"\nconnect = {connect}{proto}\nscript = [\n  {{ wait = \"{INPUT_SENT}\" }},"
    );
    if !udp {
        // Connecting only now: the input has been sent (and may have broken the
        // server) before the seed's connection exists.
        let _ = writeln!(text, "  {{ connect = true }},");
    }
    for step in client.script.iter() {
        if matches!(step.action, Action::Connect) {
            continue;
        }
        // The step as the user wrote it, unless it names a file relative to the
        // seed's folder: then its bytes, which need no file.
        let line = if step.source_text.contains("file") {
            match regenerate(&step.action) {
                Some(line) => line,
                None => step.source_text.to_string(),
            }
        } else {
            step.source_text.to_string()
        };
        let _ = writeln!(text, "  {line},");
    }
    let _ = writeln!(text, "]");
    text
}

fn op_lines(op: &Op) -> Vec<String> {
    match op {
        Op::Write {
            bytes,
            chunks,
            pause,
        } => vec![format!("{},", send(bytes, chunks, *pause))],
        Op::Frame {
            framing,
            payload,
            lie,
            chunks,
            pause,
        } => {
            let comment = match lie {
                Some(lie) => format!(
                    "# frame ({}), {} payload bytes; its length lies: {}",
                    framing.kind,
                    payload.len(),
                    lie.describe()
                ),
                None => format!(
                    "# frame ({}), {} payload bytes",
                    framing.kind,
                    payload.len()
                ),
            };
            vec![
                comment,
                format!("{},", send(&op.wire_bytes(), chunks, *pause)),
            ]
        }
        Op::Read { .. } | Op::ReadEnd => Vec::new(),
        Op::Shutdown(how) => vec![format!(
            "{{ shutdown = \"{}\" }},",
            match how {
                ShutdownHow::Write => "write",
                ShutdownHow::Read => "read",
                ShutdownHow::Both => "both",
            }
        )],
        Op::Close | Op::Reset => vec!["{ close = true },".into()],
        Op::Pause(d) => vec![format!("{{ sleep = \"{}us\" }},", d.as_micros())],
    }
}

fn send(bytes: &[u8], chunks: &[usize], pause: std::time::Duration) -> String {
    let data = data(bytes);
    if chunks.is_empty() && pause.is_zero() {
        return format!("{{ send = {data} }}");
    }
    let mut fields = match data.strip_prefix("{ ").and_then(|d| d.strip_suffix(" }")) {
        Some(inner) => inner.to_owned(),
        None => format!("text = {data}"),
    };
    if !chunks.is_empty() {
        let sizes: Vec<String> = chunks.iter().map(usize::to_string).collect();
        let _ = write!(fields, ", chunks = [{}]", sizes.join(", "));
    }
    if !pause.is_zero() {
        let _ = write!(fields, ", delay = \"{}us\"", pause.as_micros());
    }
    format!("{{ send = {{ {fields} }} }}")
}

/// DATA for `bytes`: a TOML string when they are printable text, hex otherwise.
fn data(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text.is_empty()
                && text
                    .chars()
                    .all(|c| !c.is_control() || c == '\n' || c == '\t' || c == '\r') =>
        {
            toml_string(text)
        }
        _ if bytes.is_empty() => "\"\"".into(),
        _ => {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("{{ hex = \"{}\" }}", hex.join(" "))
        }
    }
}

/// One-line basic string, as the importer writes them (`"hello\n"`).
fn toml_string(text: &str) -> String {
    crate::trace::import::basic_string(text)
}

/// A step rewritten with its bytes inline, for the kinds that carry file data.
fn regenerate(action: &Action) -> Option<String> {
    Some(match action {
        Action::Send { data: bytes, .. } => format!("{{ send = {} }}", data(&seed_bytes(bytes))),
        Action::Expect(Expected::Data(bytes)) => {
            format!("{{ expect = {} }}", data(&seed_bytes(bytes)))
        }
        Action::Recv {
            max,
            expect: Some(Expected::Data(bytes)),
        } => format!(
            "{{ recv = {{ max = {max}, expect = {} }} }}",
            data(&seed_bytes(bytes))
        ),
        _ => return None,
    })
}

fn absolute(path: &Path) -> PathBuf {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    // Lexically, without following links: `a/./b/../c` -> `a/c`.
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `to` as a path relative to `from` (both absolute).
fn relative_to(to: &Path, from: &Path) -> PathBuf {
    let to: Vec<Component> = to.components().collect();
    let from: Vec<Component> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative() {
        assert_eq!(
            relative_to(Path::new("/a/b/scen"), Path::new("/a/out")),
            PathBuf::from("../b/scen")
        );
        assert_eq!(
            relative_to(Path::new("/a"), Path::new("/a")),
            PathBuf::from(".")
        );
        assert_eq!(absolute(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }

    #[test]
    fn bytes_are_text_when_printable() {
        assert_eq!(data(b"hi\n"), "\"hi\\n\"");
        assert_eq!(data(&[0xff, 0]), "{ hex = \"ff 00\" }");
        assert_eq!(
            send(b"abc", &[1], std::time::Duration::from_micros(5)),
            "{ send = { text = \"abc\", chunks = [1], delay = \"5us\" } }"
        );
        assert_eq!(
            send(&[1, 2], &[1], std::time::Duration::ZERO),
            "{ send = { hex = \"01 02\", chunks = [1] } }"
        );
    }
}
