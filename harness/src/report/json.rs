//! Machine-readable results: every run with its failure (bytes as hex) and its
//! events (payloads as lengths).

use std::path::Path;

use serde::Serialize;

use crate::event::Event;
use crate::runner::ScenarioOutcome;

#[derive(Serialize)]
struct JsonReport<'a> {
    passed: usize,
    failed: usize,
    runs: Vec<JsonRun<'a>>,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    #[serde(flatten)]
    outcome: &'a ScenarioOutcome,
    passed: bool,
    events: &'a [Event],
}

pub fn render(outcomes: &[ScenarioOutcome]) -> serde_json::Result<String> {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let report = JsonReport {
        passed,
        failed: outcomes.len() - passed,
        runs: outcomes
            .iter()
            .map(|outcome| JsonRun {
                outcome,
                passed: outcome.passed(),
                events: &outcome.events,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&report)
}

pub fn write(path: &Path, outcomes: &[ScenarioOutcome]) -> std::io::Result<()> {
    std::fs::write(path, render(outcomes)?)
}
