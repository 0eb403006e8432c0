//! JUnit XML for CI systems: one test case per scenario. With `--repeat`, a scenario
//! fails if any of its runs failed, and the message names the first failing run.
//! Retries follow the convention CI systems read (Maven Surefire's, which
//! quick-junit writes): a flaky run is a success with `<flakyFailure>` elements, one
//! per failed attempt; a run that failed every attempt is a failure with
//! `<rerunFailure>` elements for the attempts before the last. Scenarios whose runs
//! `--fail-fast` never started are `<skipped>`.

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::render_failure;
use crate::outcome::ScenarioOutcome;
use crate::suite::{Reporter, RunRecord, SuiteEvent, SuiteSummary};

pub fn write(path: &Path, records: &[RunRecord], summary: &SuiteSummary) -> std::io::Result<()> {
    let xml = render(records, summary).map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::write(path, xml)
}

/// A failed attempt as a `<flakyFailure>` or `<rerunFailure>`.
fn rerun(outcome: &ScenarioOutcome) -> TestRerun {
    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
    if let Some(failure) = &outcome.failure {
        rerun.set_message(failure.message.clone());
        rerun.set_description(render_failure(outcome, failure));
    }
    rerun.set_time(outcome.duration);
    rerun
}

pub fn render(
    records: &[RunRecord],
    summary: &SuiteSummary,
) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("wirecheck");
    let mut suite = TestSuite::new("scenarios");
    // Group runs by scenario file, keeping first-seen order.
    let mut order: Vec<&Path> = Vec::new();
    for record in records {
        if !order.contains(&record.outcome.path.as_path()) {
            order.push(&record.outcome.path);
        }
    }
    for path in order {
        let runs: Vec<&RunRecord> = records.iter().filter(|r| r.outcome.path == path).collect();
        let first = &runs[0].outcome;
        let failed_run = runs
            .iter()
            .find(|r| r.counts_as_failed(summary.flaky_fails));
        let status = match failed_run {
            None => {
                let mut status = TestCaseStatus::success();
                for record in runs.iter().filter(|r| r.flaky()) {
                    status.add_reruns(record.failed_attempts.iter().map(rerun));
                }
                status
            }
            Some(failed) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let failed_runs = runs
                    .iter()
                    .filter(|r| r.counts_as_failed(summary.flaky_fails))
                    .count();
                let (message, description) = match &failed.outcome.failure {
                    Some(failure) => (
                        failure.message.clone(),
                        render_failure(&failed.outcome, failure),
                    ),
                    // Only a flaky run under `--flaky-result fail` fails without a
                    // failure of its own: the failure is its first attempt's.
                    None => {
                        let attempt = &failed.failed_attempts[0];
                        let failure = attempt.failure.as_ref().expect("a failed attempt");
                        (
                            format!(
                                "flaky (--flaky-result fail): passed on attempt {} after: {}",
                                failed.attempts(),
                                failure.message
                            ),
                            render_failure(attempt, failure),
                        )
                    }
                };
                let message = if runs.len() > 1 {
                    format!(
                        "{message} ({failed_runs} of {} runs failed; first: run {})",
                        runs.len(),
                        failed.outcome.run
                    )
                } else {
                    message
                };
                status.set_message(message);
                status.set_description(description);
                if failed.outcome.failure.is_some() {
                    status.add_reruns(failed.failed_attempts.iter().map(rerun));
                }
                status
            }
        };
        let mut case = TestCase::new(first.name.clone(), status);
        case.set_classname(path.display().to_string());
        case.set_time(
            runs.iter()
                .flat_map(|r| r.failed_attempts.iter().chain([&r.outcome]))
                .map(|o| o.duration)
                .sum(),
        );
        suite.add_test_case(case);
    }
    // Scenarios none of whose runs started.
    let mut skipped_paths: Vec<(&str, &Path)> = Vec::new();
    for skipped in &summary.skipped {
        let ran = records.iter().any(|r| r.outcome.path == skipped.path);
        if !ran && !skipped_paths.iter().any(|(_, p)| *p == skipped.path) {
            skipped_paths.push((&skipped.name, &skipped.path));
        }
    }
    for (name, path) in skipped_paths {
        let mut status = TestCaseStatus::skipped();
        status.set_message("not started: --fail-fast stopped the suite after a failure");
        let mut case = TestCase::new(name.to_owned(), status);
        case.set_classname(path.display().to_string());
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

    fn finish(&mut self, records: &[RunRecord], summary: &SuiteSummary) -> Result<(), String> {
        write(&self.path, records, summary)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
