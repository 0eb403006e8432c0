//! JUnit XML for CI systems: one test case per scenario. With `--repeat`, a scenario
//! fails if any of its runs failed, and the message names the first failing run.

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::render_failure;
use crate::outcome::ScenarioOutcome;
use crate::suite::{Reporter, SuiteEvent, SuiteSummary};

pub fn write(path: &Path, outcomes: &[ScenarioOutcome]) -> std::io::Result<()> {
    let xml = render(outcomes).map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::write(path, xml)
}

pub fn render(outcomes: &[ScenarioOutcome]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("wirecheck");
    let mut suite = TestSuite::new("scenarios");
    // Group runs by scenario file, keeping first-seen order.
    let mut order: Vec<&Path> = Vec::new();
    for outcome in outcomes {
        if !order.contains(&outcome.path.as_path()) {
            order.push(&outcome.path);
        }
    }
    for path in order {
        let runs: Vec<&ScenarioOutcome> = outcomes.iter().filter(|o| o.path == path).collect();
        let first = runs[0];
        let status = match runs.iter().find(|o| !o.passed()) {
            None => TestCaseStatus::success(),
            Some(failed) => {
                let failure = failed.failure.as_ref().expect("a failed run has a failure");
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let failed_runs = runs.iter().filter(|o| !o.passed()).count();
                let message = if runs.len() > 1 {
                    format!(
                        "{} ({failed_runs} of {} runs failed; first: run {})",
                        failure.message,
                        runs.len(),
                        failed.run
                    )
                } else {
                    failure.message.clone()
                };
                status.set_message(message);
                status.set_description(render_failure(failed, failure));
                status
            }
        };
        let mut case = TestCase::new(first.name.clone(), status);
        case.set_classname(path.display().to_string());
        case.set_time(runs.iter().map(|o| o.duration).sum());
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string()
}

/// Writes `--junit FILE` at the end of the suite.
pub struct JunitReporter {
    path: std::path::PathBuf,
}

impl JunitReporter {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
}

impl Reporter for JunitReporter {
    fn event(&mut self, _: &SuiteEvent<'_>) {}

    fn finish(&mut self, outcomes: &[ScenarioOutcome], _: &SuiteSummary) -> Result<(), String> {
        write(&self.path, outcomes)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
