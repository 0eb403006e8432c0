//! `--tap FILE`: the Test Anything Protocol, version 14, for CI systems and tools that
//! read TAP rather than JUnit.
//!
//! One test point per run (with `--repeat`, `NAME (run K of N)`), in scenario order:
//!
//! ```text
//! TAP version 14
//! 1..3
//! ok 1 - echo round trip
//! not ok 2 - two quick sends coalesce into one recv
//!   ---
//!   message: "the bytes that arrived differ from the expected ones"
//!   severity: fail
//!   ...
//! ok 3 - third # SKIP not started: --fail-fast stopped the suite
//! ```
//!
//! A failed run carries a YAML diagnostic block (file, line, actor, step, message,
//! and the console's failure text as a literal block); a flaky run is `ok` with
//! `flaky: true` and its attempts in the block (TAP has no flaky directive), or
//! `not ok` under `--flaky-result fail`. Invalid scenario files are `not ok` points
//! too, so a TAP consumer never reads a clean plan for a broken folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{display_name, render_failure};
use crate::suite::{Reporter, RunRecord, SuiteEvent, SuiteSummary};

/// Writes `--tap FILE` at the end of the suite.
pub struct TapReporter {
    path: PathBuf,
    /// Files that did not load, with their rendered errors.
    invalid: Vec<(PathBuf, String)>,
}

impl TapReporter {
    pub fn new(path: &Path, invalid: Vec<(PathBuf, String)>) -> Self {
        Self {
            path: path.to_owned(),
            invalid,
        }
    }
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The test point's description: `#` starts a directive in TAP, so it is escaped.
fn description(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('#', "\\#")
        .replace('\n', " ")
}

/// A YAML literal block (`|`) of `text` at two spaces inside the block.
fn literal(out: &mut String, key: &str, text: &str) {
    let _ = writeln!(out, "  {key}: |");
    for line in text.lines() {
        let _ = writeln!(out, "    {line}");
    }
}

pub fn render(
    records: &[RunRecord],
    summary: &SuiteSummary,
    invalid: &[(PathBuf, String)],
) -> String {
    let repeat = summary.repeat.max(1);
    let total = records.len() + summary.skipped.len() + invalid.len();
    let mut out = format!("TAP version 14\n1..{total}\n");
    let mut number = 0;
    for record in records {
        number += 1;
        let outcome = &record.outcome;
        let name = description(&display_name(outcome, repeat));
        let failed = record.counts_as_failed(summary.flaky_fails);
        let _ = writeln!(
            out,
            "{} {number} - {name}",
            if failed { "not ok" } else { "ok" }
        );
        if !failed && !record.flaky() {
            continue;
        }
        out.push_str("  ---\n");
        let _ = writeln!(
            out,
            "  file: {}",
            quoted(&outcome.path.display().to_string())
        );
        let _ = writeln!(
            out,
            "  duration_ms: {:.3}",
            outcome.duration.as_secs_f64() * 1000.0
        );
        if record.flaky() {
            let _ = writeln!(out, "  flaky: true");
            let _ = writeln!(out, "  attempts: {}", record.attempts());
        }
        let failure_of = record
            .outcome
            .failure
            .as_ref()
            .map(|f| (&record.outcome, f))
            .or_else(|| {
                record
                    .failed_attempts
                    .first()
                    .and_then(|o| o.failure.as_ref().map(|f| (o, f)))
            });
        if let Some((outcome, failure)) = failure_of {
            let _ = writeln!(out, "  message: {}", quoted(&failure.message));
            let _ = writeln!(out, "  severity: {}", if failed { "fail" } else { "flaky" });
            if let Some(actor) = &failure.actor {
                let _ = writeln!(out, "  actor: {}", quoted(actor));
            }
            if let Some(step) = &failure.step {
                let _ = writeln!(
                    out,
                    "  at:\n    line: {}\n    column: {}\n    step: {}",
                    step.location.line, step.location.column, step.index
                );
            }
            literal(&mut out, "report", &render_failure(outcome, failure));
        }
        out.push_str("  ...\n");
    }
    for skipped in &summary.skipped {
        number += 1;
        let name = if repeat > 1 {
            format!("{} (run {} of {repeat})", skipped.name, skipped.run)
        } else {
            skipped.name.clone()
        };
        let _ = writeln!(
            out,
            "ok {number} - {} # SKIP not started: --fail-fast stopped the suite",
            description(&name)
        );
    }
    for (path, error) in invalid {
        number += 1;
        let _ = writeln!(
            out,
            "not ok {number} - {} is not a valid scenario file",
            description(&path.display().to_string())
        );
        out.push_str("  ---\n  severity: fail\n");
        literal(&mut out, "report", error);
        out.push_str("  ...\n");
    }
    let _ = writeln!(out, "# {}", summary.closing_line(records));
    out
}

impl Reporter for TapReporter {
    fn event(&mut self, _: &SuiteEvent<'_>) {}

    fn finish(&mut self, records: &[RunRecord], summary: &SuiteSummary) -> Result<(), String> {
        std::fs::write(&self.path, render(records, summary, &self.invalid))
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_escape_the_directive_character() {
        assert_eq!(description("a # b"), "a \\# b");
        assert_eq!(description("x\\y"), "x\\\\y");
    }
}
