//! Everything that turns outcomes into words: the console, JUnit and JSON files.
//! Reporters consume the suite's events ([`crate::suite::Reporter`]); they never touch
//! sockets.

pub mod console;
pub mod dump;
pub mod json;
pub mod junit;

use std::fmt::Write as _;

use crate::duration::format_duration;
use crate::outcome::{Failure, FailureKind, ScenarioOutcome};

/// The full explanation of a failed run: where in the file, which actor and step,
/// what was expected and what arrived, how long it waited.
pub fn render_failure(outcome: &ScenarioOutcome, failure: &Failure) -> String {
    let mut out = String::new();
    let path = outcome.path.display();
    match &failure.step {
        Some(step) => {
            let _ = writeln!(
                out,
                "  --> {path}:{}:{}",
                step.location.line, step.location.column
            );
            let _ = writeln!(
                out,
                "  actor `{}`, step {} ({}): {}",
                failure.actor.as_deref().unwrap_or("?"),
                step.index,
                step.keyword,
                step.text
            );
            if let Some(quote) = quote_step(&outcome.path, step) {
                out.push_str(&quote);
            }
        }
        None => {
            let _ = writeln!(out, "  --> {path}");
            if let Some(actor) = &failure.actor {
                let _ = writeln!(out, "  actor `{actor}`");
            }
        }
    }
    let kind = match failure.kind {
        FailureKind::Step => "",
        FailureKind::StepTimeout => "step timeout: ",
        FailureKind::ScenarioTimeout => "scenario timeout: ",
        FailureKind::Setup => "setup failed: ",
        FailureKind::Cleanup => "cleanup failed: ",
        FailureKind::Interrupted => "",
        FailureKind::Panic => "internal error: ",
    };
    let _ = writeln!(out, "  {kind}{}", failure.message);
    if let Some(waited) = failure.waited {
        let _ = writeln!(out, "  the step waited {}", format_duration(waited));
    }
    let dump = match (&failure.expected, &failure.actual) {
        (Some(expected), actual) => {
            dump::side_by_side(expected, actual.as_deref().unwrap_or_default())
        }
        // Nothing to compare against (a frame that would not decode): show what came.
        (None, Some(actual)) => dump::single("received", actual),
        (None, None) => String::new(),
    };
    for line in dump.lines() {
        let _ = writeln!(out, "  {line}");
    }
    for note in failure.notes.iter().chain(&outcome.notes) {
        let _ = writeln!(out, "  note: {note}");
    }
    if let Some(trace) = &outcome.trace {
        let _ = writeln!(out, "  trace: {}", trace.display());
    }
    out
}

/// The failing step's line of the scenario file with a caret under the step, the
/// way load errors point at a key. The file is read again here (only for a failure),
/// so a run never keeps scenario text around for its report; a file that changed
/// or went away since the run simply gets no quote.
fn quote_step(path: &std::path::Path, step: &crate::outcome::StepRef) -> Option<String> {
    let source = std::fs::read_to_string(path).ok()?;
    let line = source.lines().nth(step.location.line.checked_sub(1)?)?;
    let before: String = line
        .chars()
        .take(step.location.column.saturating_sub(1))
        .collect();
    let rest = line.chars().count().saturating_sub(before.chars().count());
    // The step text as the file has it; on one line it is underlined whole.
    let width = step.text.chars().count().min(rest).max(1);
    let gutter = step.location.line.to_string();
    let pad = " ".repeat(gutter.len());
    let indent: String = before
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    Some(format!(
        "  {pad} |\n  {gutter} | {line}\n  {pad} | {indent}{}\n",
        "^".repeat(width)
    ))
}

/// `name (run 3)` when repeating, else just the name.
pub fn display_name(outcome: &ScenarioOutcome, repeat: usize) -> String {
    if repeat > 1 {
        format!("{} (run {} of {repeat})", outcome.name, outcome.run)
    } else {
        outcome.name.clone()
    }
}
