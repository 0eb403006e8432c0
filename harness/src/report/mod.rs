//! Everything that turns outcomes into words: the console, JUnit, JSON, TAP and HTML
//! files.
//! Reporters consume the suite's events ([`crate::suite::Reporter`]); they never touch
//! sockets.

pub mod console;
pub mod dump;
pub mod html;
pub mod json;
pub mod junit;
pub mod progress;
pub mod tap;

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
            if step.index == 0 {
                // Not a script step: a key of a client program (`exit`, `stdout`).
                let _ = writeln!(
                    out,
                    "  actor `{}`, `{}`: {}",
                    failure.actor.as_deref().unwrap_or("?"),
                    step.keyword,
                    step.text
                );
            } else {
                let _ = writeln!(
                    out,
                    "  actor `{}`, step {} ({}): {}",
                    failure.actor.as_deref().unwrap_or("?"),
                    step.index,
                    step.keyword,
                    step.text
                );
            }
            // The step's line with carets under it, the way load errors point at a
            // key; nothing if the file changed since the run.
            let location = crate::scenario::Location::from(&step.location);
            if let Some(quote) = crate::scenario::quote_location(&outcome.path, &location, "") {
                for line in quote.lines() {
                    let _ = writeln!(out, "  {line}");
                }
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
        FailureKind::Program => "program failed: ",
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
    render_seeds(&mut out, outcome);
    out
}

/// The seeds of the run's fault proxies and the command that replays them.
fn render_seeds(out: &mut String, outcome: &ScenarioOutcome) {
    if outcome.seeds.is_empty() {
        return;
    }
    let list: Vec<String> = outcome
        .seeds
        .iter()
        .map(|s| format!("`{}` {}", s.proxy, s.seed))
        .collect();
    let _ = writeln!(
        out,
        "  seed: {} (proxy {})",
        outcome.seeds[0].seed,
        list.join(", ")
    );
    match crate::outcome::replay_command(&outcome.path, &outcome.seeds) {
        Some(command) => {
            let _ = writeln!(out, "  replay: {command}");
        }
        None => {
            let _ = writeln!(
                out,
                "  replay: the proxies used different seeds; write each one's seed in its table (`seed = N`) and run `wirecheck run {}`",
                outcome.path.display()
            );
        }
    }
}

/// `name (run 3)` when repeating, else just the name.
pub fn display_name(outcome: &ScenarioOutcome, repeat: usize) -> String {
    if repeat > 1 {
        format!("{} (run {} of {repeat})", outcome.name, outcome.run)
    } else {
        outcome.name.clone()
    }
}
