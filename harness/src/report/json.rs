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
use crate::suite::{Reporter, SuiteEvent, SuiteSummary};

#[derive(Serialize)]
struct JsonRun<'a> {
    #[serde(flatten)]
    outcome: &'a ScenarioOutcome,
    passed: bool,
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
pub fn render_run(outcome: &ScenarioOutcome, events: &[Event]) -> serde_json::Result<String> {
    serde_json::to_string(&JsonRun {
        outcome,
        passed: outcome.passed(),
        events,
    })
}

/// The whole report from runs already rendered by [`render_run`], in order.
pub fn render(passed: usize, failed: usize, runs: &[&str]) -> String {
    let mut out = format!("{{\"passed\":{passed},\"failed\":{failed},\"runs\":[");
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(run);
    }
    out.push_str("]}\n");
    out
}

impl Reporter for JsonReporter {
    fn wants_events(&self) -> bool {
        true
    }

    fn event(&mut self, event: &SuiteEvent<'_>) {
        if let SuiteEvent::RunFinished { outcome, events } = event {
            let events = if outcome.passed() && !self.keep_passing_events {
                &[]
            } else {
                *events
            };
            if let Ok(text) = render_run(outcome, events) {
                self.runs.insert((outcome.path.clone(), outcome.run), text);
            }
        }
    }

    fn finish(&mut self, outcomes: &[ScenarioOutcome], _: &SuiteSummary) -> Result<(), String> {
        let passed = outcomes.iter().filter(|o| o.passed()).count();
        let runs: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| self.runs.get(&(o.path.clone(), o.run)).map(String::as_str))
            .collect();
        std::fs::write(&self.path, render(passed, outcomes.len() - passed, &runs))
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
