//! `--html FILE`: one self-contained page a person opens after a CI run.
//!
//! The page holds a summary table (one row per run) and, for each run, a sequence
//! diagram drawn from the run's events: every actor a lifeline, every write and
//! datagram an arrow from sender to receiver labelled with its byte count and time,
//! reads, closes and process output as notes on the actor's lifeline, signals and
//! (future) proxy fault events marked, and the failing step highlighted, with the
//! console's failure text (hex diff included) under the diagram and links to the
//! run's trace files.
//!
//! Self-contained means no network and no other file: styles and the small script
//! (filter buttons) are inline, the diagrams inline SVG, and a Content-Security-Policy
//! forbids loading anything else, so a stray reference would show as an error rather
//! than a silent fetch. Each run is rendered to text when it finishes and its events
//! dropped, so the reporter holds markup, not event logs. With `--repeat`, only
//! runs that failed or were flaky get a diagram, and at most [`MAX_DIAGRAMS`] in all.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{display_name, render_failure};
use crate::duration::format_duration;
use crate::event::{Event, EventKind};
use crate::outcome::ScenarioOutcome;
use crate::suite::{Reporter, RunRecord, SuiteEvent, SuiteSummary};

/// Runs that get a diagram, at most.
pub const MAX_DIAGRAMS: usize = 200;
/// Events drawn per diagram, at most; the rest are counted under it.
pub const MAX_ROWS: usize = 400;

const COLUMN: usize = 170;
const LEFT: usize = 110;
const ROW: usize = 24;
const TOP: usize = 56;

/// Writes `--html FILE` at the end of the suite.
pub struct HtmlReporter {
    path: PathBuf,
    repeat: usize,
    invalid: Vec<(PathBuf, String)>,
    /// Rendered run sections by (file, run).
    sections: std::collections::HashMap<(PathBuf, usize), String>,
    diagrams: usize,
}

impl HtmlReporter {
    pub fn new(path: &Path, repeat: usize, invalid: Vec<(PathBuf, String)>) -> Self {
        Self {
            path: path.to_owned(),
            repeat,
            invalid,
            sections: std::collections::HashMap::new(),
            diagrams: 0,
        }
    }
}

impl Reporter for HtmlReporter {
    fn wants_events(&self) -> bool {
        true
    }

    fn event(&mut self, event: &SuiteEvent<'_>) {
        if let SuiteEvent::RunFinished { record, events } = event {
            let wanted = self.repeat <= 1 || !record.passed() || record.flaky();
            let draw = wanted && self.diagrams < MAX_DIAGRAMS;
            if draw {
                self.diagrams += 1;
            }
            let base = self.path.parent().unwrap_or(Path::new("."));
            let section = run_section(
                record,
                if draw { Some(events) } else { None },
                self.repeat,
                base,
            );
            let key = (record.outcome.path.clone(), record.outcome.run);
            self.sections.insert(key, section);
        }
    }

    fn finish(&mut self, records: &[RunRecord], summary: &SuiteSummary) -> Result<(), String> {
        let sections: Vec<&str> = records
            .iter()
            .filter_map(|r| {
                let key = (r.outcome.path.clone(), r.outcome.run);
                self.sections.get(&key).map(String::as_str)
            })
            .collect();
        let page = page(records, summary, &sections, &self.invalid, self.repeat);
        std::fs::write(&self.path, page)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `PASS`, `FAIL` or `FLAKY`, as the console says it.
fn verdict(record: &RunRecord, flaky_fails: bool) -> (&'static str, &'static str) {
    match (record.flaky(), record.counts_as_failed(flaky_fails)) {
        (true, _) => ("FLAKY", "flaky"),
        (false, true) => ("FAIL", "fail"),
        (false, false) => ("PASS", "pass"),
    }
}

fn run_anchor(index: usize) -> String {
    format!("run-{index}")
}

/// The whole page.
fn page(
    records: &[RunRecord],
    summary: &SuiteSummary,
    sections: &[&str],
    invalid: &[(PathBuf, String)],
    repeat: usize,
) -> String {
    let mut out =
        String::with_capacity(16 * 1024 + sections.iter().map(|s| s.len()).sum::<usize>());
    let closing = summary.closing_line(records);
    let flaky = records.iter().filter(|r| r.flaky()).count();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>wirecheck: {}</title>", escape(&closing));
    out.push_str("<style>\n");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n");
    let _ = writeln!(
        out,
        "<header><h1>wirecheck report</h1><p class=\"closing\" id=\"closing\">{}</p>",
        escape(&closing)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} scenarios{}; {flaky} flaky; {} invalid files</p>",
        summary.scenarios,
        if repeat > 1 {
            format!(" x {repeat} runs each")
        } else {
            String::new()
        },
        invalid.len()
    );
    out.push_str(
        "<nav id=\"filters\"><button type=\"button\" data-show=\"all\" class=\"on\">all</button>\
         <button type=\"button\" data-show=\"fail\">failed</button>\
         <button type=\"button\" data-show=\"flaky\">flaky</button>\
         <button type=\"button\" data-show=\"pass\">passed</button></nav></header>\n",
    );
    out.push_str("<main>\n<table id=\"summary\">\n<thead><tr><th>#</th><th>result</th><th>scenario</th><th>run</th><th>attempts</th><th>time</th><th>file</th></tr></thead>\n<tbody>\n");
    for (index, record) in records.iter().enumerate() {
        let (word, class) = verdict(record, summary.flaky_fails);
        let outcome = &record.outcome;
        let _ = writeln!(
            out,
            "<tr class=\"run-row {class}\" data-result=\"{class}\"><td>{}</td><td class=\"verdict\">{word}</td>\
             <td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"path\">{}</td></tr>",
            index + 1,
            run_anchor(index + 1),
            escape(&outcome.name),
            outcome.run,
            record.attempts(),
            escape(&format_duration(outcome.duration)),
            escape(&outcome.path.display().to_string()),
        );
    }
    for skipped in &summary.skipped {
        let _ = writeln!(
            out,
            "<tr class=\"run-row skip\" data-result=\"skip\"><td></td><td class=\"verdict\">SKIP</td>\
             <td>{}</td><td>{}</td><td>0</td><td></td><td class=\"path\">{}</td></tr>",
            escape(&skipped.name),
            skipped.run,
            escape(&skipped.path.display().to_string()),
        );
    }
    for (path, _) in invalid {
        let _ = writeln!(
            out,
            "<tr class=\"run-row fail\" data-result=\"fail\"><td></td><td class=\"verdict\">INVALID</td>\
             <td colspan=\"4\">not a valid scenario file</td><td class=\"path\">{}</td></tr>",
            escape(&path.display().to_string()),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    for (path, error) in invalid {
        let _ = writeln!(
            out,
            "<section class=\"run fail invalid\" data-result=\"fail\"><h2>{} is not valid</h2><pre>{}</pre></section>",
            escape(&path.display().to_string()),
            escape(error)
        );
    }
    for (index, section) in sections.iter().enumerate() {
        // Each section was rendered without knowing its position; the anchor is
        // filled in here.
        out.push_str(&section.replacen(
            "id=\"run-?\"",
            &format!("id=\"{}\"", run_anchor(index + 1)),
            1,
        ));
    }
    out.push_str("</main>\n<script>\n");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

/// One run's section: heading, attempts, diagram (when `events` is given), failure.
fn run_section(record: &RunRecord, events: Option<&[Event]>, repeat: usize, base: &Path) -> String {
    let outcome = &record.outcome;
    let class = match (record.flaky(), record.passed()) {
        (true, _) => "flaky",
        (false, false) => "fail",
        (false, true) => "pass",
    };
    let mut out = String::new();
    let open = if class == "pass" { "" } else { " open" };
    let _ = writeln!(
        out,
        "<section class=\"run {class}\" id=\"run-?\" data-result=\"{class}\" data-run-id=\"{}#{}\">\
         <details{open}><summary><span class=\"verdict\">{}</span> {} <span class=\"took\">{}</span></summary>",
        escape(&outcome.path.display().to_string()),
        outcome.run,
        class.to_uppercase(),
        escape(&display_name(outcome, repeat)),
        escape(&format_duration(outcome.duration)),
    );
    let _ = writeln!(
        out,
        "<p class=\"path\">{}</p>",
        escape(&outcome.path.display().to_string())
    );
    let traces: Vec<(String, &Path)> = record
        .failed_attempts
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            o.trace
                .as_deref()
                .map(|t| (format!("attempt {}", i + 1), t))
        })
        .chain(outcome.trace.as_deref().map(|t| ("trace".to_owned(), t)))
        .collect();
    if !traces.is_empty() {
        out.push_str("<p class=\"traces\">traces: ");
        for (label, trace) in traces {
            let href = relative_link(base, trace);
            let _ = write!(
                out,
                "<a href=\"{}\">{} ({})</a> ",
                escape(&href),
                escape(&label),
                escape(&trace.display().to_string())
            );
        }
        out.push_str("</p>\n");
    }
    for (i, attempt) in record.failed_attempts.iter().enumerate() {
        if let Some(failure) = &attempt.failure {
            let _ = writeln!(
                out,
                "<div class=\"attempt\"><h3>attempt {} failed ({})</h3><pre class=\"failure\">{}</pre></div>",
                i + 1,
                escape(&format_duration(attempt.duration)),
                escape(&render_failure(attempt, failure))
            );
        }
    }
    match events {
        Some(events) if !events.is_empty() => out.push_str(&diagram(outcome, events)),
        Some(_) => out.push_str("<p class=\"note\">no events were recorded for this run</p>\n"),
        None => out.push_str("<p class=\"note\">no diagram: with --repeat only failed and flaky runs are drawn</p>\n"),
    }
    if let Some(failure) = &outcome.failure {
        let _ = writeln!(
            out,
            "<pre class=\"failure\">{}</pre>",
            escape(&render_failure(outcome, failure))
        );
    }
    for note in &outcome.notes {
        let _ = writeln!(out, "<p class=\"note\">note: {}</p>", escape(note));
    }
    out.push_str("</details></section>\n");
    out
}

/// A link from the report's folder to a trace file: relative when both are
/// relative to the same place, so the report and its traces move together.
fn relative_link(base: &Path, target: &Path) -> String {
    let absolute = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    // Lexically normalized components (`.` dropped, `..` applied), so
    // `out/../traces` and `traces` compare equal.
    let normal = |p: PathBuf| -> Vec<String> {
        let mut parts: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    parts.pop();
                }
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                Component::RootDir | Component::Prefix(_) => parts.push(String::new()),
            }
        }
        parts
    };
    let from = normal(absolute(base));
    let to = normal(absolute(target));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut link: Vec<String> = vec!["..".to_owned(); from.len() - common];
    link.extend(to[common..].iter().cloned());
    link.join("/")
}

/// Who is at the other end of a socket, by address.
struct Endpoints {
    /// (actor, conn) -> (local, peer).
    sockets: Vec<(String, u64, Option<SocketAddr>, Option<SocketAddr>)>,
}

impl Endpoints {
    fn from(events: &[Event]) -> Self {
        let mut sockets = Vec::new();
        for event in events {
            match &event.kind {
                EventKind::Connect { conn, local, peer }
                | EventKind::Accept { conn, local, peer } => {
                    sockets.push((event.actor.to_string(), *conn, Some(*local), Some(*peer)));
                }
                EventKind::UdpBound { conn, local } => {
                    sockets.push((event.actor.to_string(), *conn, Some(*local), None));
                }
                _ => {}
            }
        }
        Self { sockets }
    }

    fn socket(
        &self,
        actor: &str,
        conn: u64,
    ) -> Option<&(String, u64, Option<SocketAddr>, Option<SocketAddr>)> {
        self.sockets
            .iter()
            .rev()
            .find(|(a, c, _, _)| a == actor && *c == conn)
    }

    /// The actor owning the socket bound to `addr` (for a TCP connection: whose
    /// local address is the peer of the given one and whose peer is `from`).
    fn owner(&self, addr: SocketAddr, from: Option<SocketAddr>) -> Option<&str> {
        self.sockets
            .iter()
            .find(|(_, _, local, peer)| {
                *local == Some(addr) && (from.is_none() || peer.is_none() || *peer == from)
            })
            .map(|(a, _, _, _)| a.as_str())
    }

    /// The other end of `actor`'s connection `conn`.
    fn peer_of(&self, actor: &str, conn: u64) -> Option<String> {
        let (_, _, local, peer) = self.socket(actor, conn)?;
        let peer = (*peer)?;
        Some(
            self.owner(peer, *local)
                .map_or_else(|| peer.to_string(), str::to_owned),
        )
    }
}

/// A lifeline's name: copies (`client1#3`) and connection handlers (`srv#2`) share
/// their actor's lifeline, so fifty clients do not make fifty columns.
fn lifeline(actor: &str) -> &str {
    actor.split_once('#').map_or(actor, |(base, _)| base)
}

/// `#3` for a copy, nothing for the actor itself.
fn copy_suffix(actor: &str) -> String {
    actor
        .split_once('#')
        .map_or(String::new(), |(_, n)| format!(" (#{n})"))
}

enum Row {
    Arrow {
        from: String,
        to: String,
        label: String,
        class: &'static str,
    },
    Note {
        at: String,
        label: String,
        class: &'static str,
    },
}

fn bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

/// The rows of a run's diagram, with each row's time.
fn rows(outcome: &ScenarioOutcome, events: &[Event]) -> Vec<(Duration, Row, bool)> {
    let endpoints = Endpoints::from(events);
    let failing_actor = outcome.failure.as_ref().and_then(|f| f.actor.clone());
    let mut rows = Vec::new();
    for event in events {
        let actor = event.actor.as_ref();
        let me = lifeline(actor).to_owned();
        let copy = copy_suffix(actor);
        let note = |label: String, class: &'static str| Row::Note {
            at: me.clone(),
            label,
            class,
        };
        let mut highlight = false;
        let row = match &event.kind {
            EventKind::Connect { conn, .. } => match endpoints.peer_of(actor, *conn) {
                Some(to) => Row::Arrow {
                    from: me.clone(),
                    to: lifeline(&to).to_owned(),
                    label: format!("connect{copy}"),
                    class: "control",
                },
                None => note(format!("connected{copy}"), "control"),
            },
            EventKind::ConnectFailed { peer, error } => {
                note(format!("connect to {peer} failed: {error}"), "error")
            }
            EventKind::Accept { .. } => note(format!("accept{copy}"), "control"),
            EventKind::Write { conn, data } => match endpoints.peer_of(actor, *conn) {
                Some(to) => Row::Arrow {
                    from: me.clone(),
                    to: lifeline(&to).to_owned(),
                    label: format!("{}{copy}", bytes(data.len())),
                    class: "data",
                },
                None => note(format!("write {}{copy}", bytes(data.len())), "data"),
            },
            EventKind::Read { data, .. } => {
                note(format!("read {}{copy}", bytes(data.len())), "read")
            }
            EventKind::UdpBound { local, .. } => note(format!("bound {local}{copy}"), "control"),
            EventKind::DatagramSent { to, data, from, .. } => {
                let receiver = endpoints
                    .owner(*to, None)
                    .map_or_else(|| to.to_string(), |a| lifeline(a).to_owned());
                let _ = from;
                Row::Arrow {
                    from: me.clone(),
                    to: receiver,
                    label: format!("datagram {}{copy}", bytes(data.len())),
                    class: "data",
                }
            }
            EventKind::DatagramReceived { data, .. } => {
                note(format!("datagram in, {}{copy}", bytes(data.len())), "read")
            }
            EventKind::Shutdown { conn, how } => {
                let label = format!("shutdown {}{copy}", format!("{how:?}").to_lowercase());
                match endpoints.peer_of(actor, *conn) {
                    Some(to) => Row::Arrow {
                        from: me.clone(),
                        to: lifeline(&to).to_owned(),
                        label,
                        class: "control",
                    },
                    None => note(label, "control"),
                }
            }
            EventKind::Close { conn, reset } => {
                let (label, class) = if *reset {
                    (format!("reset (RST){copy}"), "error")
                } else {
                    (format!("close (FIN){copy}"), "control")
                };
                match endpoints.peer_of(actor, *conn) {
                    Some(to) => Row::Arrow {
                        from: me.clone(),
                        to: lifeline(&to).to_owned(),
                        label,
                        class,
                    },
                    None => note(label, class),
                }
            }
            EventKind::PeerReset { .. } => note(format!("peer reset{copy}"), "error"),
            EventKind::PeerEof { .. } => note(format!("end of stream{copy}"), "read"),
            EventKind::StepStarted { step, .. } => {
                // Signals are what coordinate actors; other steps show through
                // their socket events.
                let text = step.trim_start_matches('{').trim();
                if text.starts_with("signal") || text.starts_with("wait") {
                    note(format!("{}{copy}", step), "signal")
                } else {
                    continue;
                }
            }
            EventKind::StepPassed { .. } => continue,
            EventKind::StepFailed { index, message } => {
                highlight = failing_actor.as_deref() == Some(actor) || failing_actor.is_none();
                let first_line = message.lines().next().unwrap_or_default();
                note(format!("step {index} failed: {first_line}{copy}"), "error")
            }
            EventKind::ProcessOutput { stream, line } => {
                note(format!("{}: {line}", stream.name()), "output")
            }
            EventKind::ProcessExited { status } => note(format!("exited: {status}"), "control"),
            #[allow(unreachable_patterns)]
            other => {
                // An event kind this page does not draw specially (proxy faults and
                // whatever comes next): marked as a note with its fields.
                let value = serde_json::to_value(other).unwrap_or_default();
                let kind = value
                    .get("type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("event")
                    .to_owned();
                let fields: Vec<String> = value
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(k, _)| *k != "type")
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect()
                    })
                    .unwrap_or_default();
                note(format!("{kind} {}{copy}", fields.join(" ")), "fault")
            }
        };
        rows.push((event.at, row, highlight));
    }
    rows
}

/// Shortens a label to fit between lifelines.
fn fit(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_owned()
    } else {
        let cut: String = label.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The sequence diagram of one run, as inline SVG.
fn diagram(outcome: &ScenarioOutcome, events: &[Event]) -> String {
    let all_rows = rows(outcome, events);
    let hidden = all_rows.len().saturating_sub(MAX_ROWS);
    let rows = &all_rows[..all_rows.len().min(MAX_ROWS)];
    let mut actors: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !actors.iter().any(|a| a == name) {
            actors.push(name.to_owned());
        }
    };
    for event in events {
        add(lifeline(&event.actor));
    }
    for (_, row, _) in rows {
        match row {
            Row::Arrow { from, to, .. } => {
                add(from);
                add(to);
            }
            Row::Note { at, .. } => add(at),
        }
    }
    let x = |name: &str| {
        LEFT + COLUMN / 2 + actors.iter().position(|a| a == name).unwrap_or(0) * COLUMN
    };
    // Room on the right for the notes of the last lifeline.
    let width = LEFT + actors.len().max(1) * COLUMN + 380;
    let height = TOP + rows.len() * ROW + 30;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<div class=\"diagram\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"sequence\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"sequence diagram of {}\">",
        escape(&outcome.name)
    );
    svg.push_str("<defs><marker id=\"arrowhead\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\"/></marker></defs>\n");
    for (row_index, (_, _, highlight)) in rows.iter().enumerate() {
        if *highlight {
            let y = TOP + row_index * ROW;
            let _ = writeln!(
                svg,
                "<rect class=\"failed-step\" x=\"0\" y=\"{}\" width=\"{width}\" height=\"{ROW}\"/>",
                y
            );
        }
    }
    for actor in &actors {
        let cx = x(actor);
        let _ = writeln!(
            svg,
            "<g class=\"actor\"><rect x=\"{}\" y=\"8\" width=\"{}\" height=\"28\" rx=\"4\"/><text x=\"{cx}\" y=\"27\" text-anchor=\"middle\">{}</text>\
             <line class=\"lifeline\" x1=\"{cx}\" y1=\"36\" x2=\"{cx}\" y2=\"{}\"/></g>",
            cx - COLUMN / 2 + 8,
            COLUMN - 16,
            escape(&fit(actor, 20)),
            height - 8
        );
    }
    for (row_index, (at, row, _)) in rows.iter().enumerate() {
        let y = TOP + row_index * ROW + ROW / 2 + 4;
        let _ = writeln!(
            svg,
            "<text class=\"time\" x=\"6\" y=\"{y}\">{}</text>",
            escape(&format_duration(*at))
        );
        match row {
            Row::Arrow {
                from,
                to,
                label,
                class,
            } => {
                let (x1, x2) = (x(from), x(to));
                if x1 == x2 {
                    let _ = writeln!(
                        svg,
                        "<text class=\"note {class}\" x=\"{}\" y=\"{y}\">{}</text>",
                        x1 + 6,
                        escape(&fit(label, 40))
                    );
                    continue;
                }
                let mid = (x1 + x2) / 2;
                let _ = writeln!(
                    svg,
                    "<g class=\"arrow {class}\"><line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" marker-end=\"url(#arrowhead)\"/>\
                     <text x=\"{mid}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
                    y - 4,
                    escape(&fit(label, 28 * x1.abs_diff(x2) / COLUMN))
                );
            }
            Row::Note { at, label, class } => {
                let _ = writeln!(
                    svg,
                    "<g class=\"note {class}\"><circle cx=\"{}\" cy=\"{}\" r=\"3\"/><text x=\"{}\" y=\"{y}\">{}</text></g>",
                    x(at),
                    y - 4,
                    x(at) + 6,
                    escape(&fit(label, 60))
                );
            }
        }
    }
    svg.push_str("</svg></div>\n");
    if hidden > 0 {
        let _ = writeln!(
            svg,
            "<p class=\"note\">{hidden} more events not drawn (the first {MAX_ROWS} are)</p>"
        );
    }
    svg
}

const STYLE: &str = r#"
:root { --pass: #1a7f37; --fail: #cf222e; --flaky: #9a6700; --skip: #6e7781; font-family: system-ui, sans-serif; }
body { margin: 0; color: #1f2328; background: #fff; }
header { padding: 12px 24px; border-bottom: 1px solid #d0d7de; position: sticky; top: 0; background: #f6f8fa; z-index: 1; }
h1 { font-size: 20px; margin: 0 0 4px; }
.closing { font: 600 16px ui-monospace, monospace; margin: 0; }
.meta { color: #57606a; margin: 4px 0; }
nav button { margin-right: 6px; padding: 2px 10px; border: 1px solid #d0d7de; background: #fff; border-radius: 12px; cursor: pointer; }
nav button.on { background: #0969da; color: #fff; border-color: #0969da; }
main { padding: 12px 24px; }
table { border-collapse: collapse; margin-bottom: 24px; }
th, td { border-bottom: 1px solid #d0d7de; padding: 3px 10px; text-align: left; font-size: 14px; }
.path { font-family: ui-monospace, monospace; color: #57606a; font-size: 13px; }
.verdict { font-weight: 700; }
.pass .verdict { color: var(--pass); } .fail .verdict { color: var(--fail); }
.flaky .verdict { color: var(--flaky); } .skip .verdict { color: var(--skip); }
section.run { border: 1px solid #d0d7de; border-left: 6px solid var(--pass); border-radius: 6px; margin: 12px 0; padding: 6px 12px; }
section.run.fail { border-left-color: var(--fail); } section.run.flaky { border-left-color: var(--flaky); }
summary { cursor: pointer; font-size: 15px; } .took { color: #57606a; }
pre.failure { background: #fff8f8; border: 1px solid #ffcecb; padding: 8px; overflow-x: auto; font-size: 12px; }
.attempt h3 { font-size: 14px; color: var(--flaky); }
.diagram { overflow-x: auto; }
svg.sequence { font: 12px ui-monospace, monospace; }
svg .actor rect { fill: #ddf4ff; stroke: #54aeff; } svg .actor text { font-weight: 700; }
svg .lifeline { stroke: #8c959f; stroke-dasharray: 4 3; }
svg .arrow line { stroke: #0969da; stroke-width: 1.5; } svg .arrow text { fill: #0969da; }
svg .arrow.control line { stroke: #57606a; stroke-dasharray: 5 3; } svg .arrow.control text { fill: #57606a; }
svg .arrow.error line { stroke: var(--fail); } svg .arrow.error text { fill: var(--fail); }
svg marker path { fill: #57606a; }
svg .note text, svg text.note { fill: #57606a; } svg .note circle { fill: #8c959f; }
svg .note.error text { fill: var(--fail); font-weight: 700; } svg .note.error circle { fill: var(--fail); }
svg .note.signal text { fill: #8250df; font-weight: 700; } svg .note.signal circle { fill: #8250df; }
svg .note.fault text { fill: #bc4c00; font-weight: 700; } svg .note.fault circle { fill: #bc4c00; }
svg .note.output text { fill: #1a7f37; }
svg .time { fill: #8c959f; }
svg rect.failed-step { fill: #ffebe9; }
.hidden { display: none; }
"#;

/// Filter buttons; marks the body once wired so a test can see the script ran.
const SCRIPT: &str = r##"
(function () {
  "use strict";
  var buttons = document.querySelectorAll("#filters button");
  var items = document.querySelectorAll("[data-result]");
  function show(which) {
    for (var i = 0; i < items.length; i++) {
      var hit = which === "all" || items[i].getAttribute("data-result") === which;
      items[i].classList.toggle("hidden", !hit);
    }
    for (var j = 0; j < buttons.length; j++) {
      buttons[j].classList.toggle("on", buttons[j].getAttribute("data-show") === which);
    }
  }
  for (var k = 0; k < buttons.length; k++) {
    buttons[k].addEventListener("click", function (e) { show(e.currentTarget.getAttribute("data-show")); });
  }
  document.body.setAttribute("data-runs-shown", String(document.querySelectorAll("section.run[data-run-id]").length));
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_report() {
        assert_eq!(
            relative_link(Path::new("out"), Path::new("out/traces/a.pcapng")),
            "traces/a.pcapng"
        );
        assert_eq!(
            relative_link(Path::new("out/html"), Path::new("traces/a.pcapng")),
            "../../traces/a.pcapng"
        );
        assert_eq!(
            relative_link(Path::new("/r"), Path::new("/t/a.pcap")),
            "../t/a.pcap"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn copies_share_a_lifeline() {
        assert_eq!(lifeline("client1#3"), "client1");
        assert_eq!(copy_suffix("client1#3"), " (#3)");
        assert_eq!(lifeline("srv"), "srv");
    }
}
