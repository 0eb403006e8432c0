//! Machine-readable results: every run with its failure (bytes as hex) and its
//! events (payloads as lengths).
//!
//! Each run is serialized when it finishes and its events are dropped, so the
//! report holds text, not event structures, while the suite goes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::Event;
use crate::outcome::ScenarioOutcome;
use crate::suite::{Reporter, RunRecord, SuiteEvent, SuiteSummary};

#[derive(Serialize)]
struct JsonRun<'a> {
    #[serde(flatten)]
    outcome: &'a ScenarioOutcome,
    passed: bool,
    /// Failed, then passed on a retry.
    flaky: bool,
    /// Attempts the run took (1 without retries).
    attempts: usize,
    /// The failed attempts before the last, without their events.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failed_attempts: &'a [ScenarioOutcome],
    events: &'a [Event],
}

/// Writes `--json FILE` at the end of the suite.
pub struct JsonReporter {
    path: PathBuf,
    /// With `--repeat` > 1 passing runs keep no events: a determinism run of
    /// thousands of passes must not grow the report with identical logs.
    keep_passing_events: bool,
    /// Each finished run, serialized, by (file, run).
    runs: HashMap<(PathBuf, usize), String>,
}

impl JsonReporter {
    pub fn new(path: &Path, repeat: usize) -> Self {
        Self {
            path: path.to_owned(),
            keep_passing_events: repeat <= 1,
            runs: HashMap::new(),
        }
    }
}

/// One run as a JSON object.
pub fn render_run(record: &RunRecord, events: &[Event]) -> serde_json::Result<String> {
    serde_json::to_string(&JsonRun {
        outcome: &record.outcome,
        passed: record.passed(),
        flaky: record.flaky(),
        attempts: record.attempts(),
        failed_attempts: &record.failed_attempts,
        events,
    })
}

/// The whole report from runs already rendered by [`render_run`], in order: the
/// closing line's counts (`skipped` and `flaky` too), then the runs.
pub fn render(counts: &Counts, runs: &[&str]) -> String {
    let Counts {
        passed,
        failed,
        skipped,
        flaky,
    } = counts;
    let mut out = format!(
        "{{\"passed\":{passed},\"failed\":{failed},\"skipped\":{skipped},\"flaky\":{flaky},\"runs\":["
    );
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(run);
    }
    out.push_str("]}\n");
    out
}

/// The counts at the top of the report, as the closing line has them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub flaky: usize,
}

impl Reporter for JsonReporter {
    fn wants_events(&self) -> bool {
        true
    }

    fn event(&mut self, event: &SuiteEvent<'_>) {
        if let SuiteEvent::RunFinished { record, events } = event {
            let outcome = &record.outcome;
            let events = if outcome.passed() && !self.keep_passing_events {
                &[]
            } else {
                *events
            };
            if let Ok(text) = render_run(record, events) {
                self.runs.insert((outcome.path.clone(), outcome.run), text);
            }
        }
    }

    fn finish(&mut self, records: &[RunRecord], summary: &SuiteSummary) -> Result<(), String> {
        let (passed, failed) = summary.counts(records);
        let counts = Counts {
            passed,
            failed: failed - summary.invalid_files,
            skipped: summary.skipped.len(),
            flaky: records.iter().filter(|r| r.flaky()).count(),
        };
        let runs: Vec<&str> = records
            .iter()
            .filter_map(|r| {
                let o = &r.outcome;
                self.runs.get(&(o.path.clone(), o.run)).map(String::as_str)
            })
            .collect();
        std::fs::write(&self.path, render(&counts, &runs))
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
