//! The console reporter: a line per finished scenario run as it happens, the failure
//! explanations, and the closing `N passed, N failed` line.
//!
//! Output goes through `anstream`, which keeps colour for a terminal and strips it
//! for a pipe or a CI log, and honours `NO_COLOR` and `CLICOLOR_FORCE`. The lines
//! themselves are the same either way, so a CI log stays plain and stable; the live
//! progress bar (a terminal only) lives in [`super::progress`] and prints these
//! lines above itself.
//!
//! With `--repeat`, failing runs are grouped by their failure signature (actor,
//! step, kind and message): the first run with a signature is explained in full,
//! later ones take one line, and the summary gives each distinct failure once with
//! its count and run numbers, and each scenario's failure rate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anstyle::{AnsiColor, Style};

use super::progress::Progress;
use super::{display_name, render_failure};
use crate::duration::format_duration;
use crate::outcome::{Failure, ScenarioOutcome};
use crate::suite::{Reporter, RunRecord, SuiteEvent, SuiteSummary};

const PASS: Style = AnsiColor::Green.on_default().bold();
const FAIL: Style = AnsiColor::Red.on_default().bold();
const FLAKY: Style = AnsiColor::Yellow.on_default().bold();

/// How many failing runs (or skipped runs) the summary lists by name.
const LISTED: usize = 50;
/// How many run numbers a repeat-mode signature lists.
const RUN_NUMBERS: usize = 20;

/// What identifies "the same failure" across runs of one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    pub path: PathBuf,
    pub actor: Option<String>,
    pub step: Option<usize>,
    pub kind: String,
    pub message: String,
}

impl Signature {
    pub fn of(outcome: &ScenarioOutcome, failure: &Failure) -> Self {
        Self {
            path: outcome.path.clone(),
            actor: failure.actor.clone(),
            step: failure.step.as_ref().map(|s| s.index),
            kind: format!("{:?}", failure.kind),
            message: failure.message.clone(),
        }
    }

    /// `actor `client1`, step 2: MESSAGE`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(actor) = &self.actor {
            let _ = write!(text, "actor `{actor}`, ");
        }
        if let Some(step) = self.step {
            let _ = write!(text, "step {step}: ");
        }
        text.push_str(&self.message);
        text
    }
}

/// Runs that failed with one signature.
struct SignatureRuns {
    name: String,
    runs: Vec<usize>,
}

/// Prints to stdout; each call writes whole lines so parallel runs never interleave.
pub struct Console {
    pub repeat: usize,
    /// Print a line for passing runs too (not only failures).
    pub show_passes: bool,
    pub total: usize,
    pub done: usize,
    /// Distinct failures in the order first seen (repeat mode).
    signatures: Vec<(Signature, SignatureRuns)>,
    signature_index: HashMap<Signature, usize>,
    /// The live progress bar, on a terminal only.
    progress: Option<Progress>,
}

impl Console {
    pub fn new(total: usize, repeat: usize) -> Self {
        Self {
            repeat,
            show_passes: repeat <= 1,
            total,
            done: 0,
            signatures: Vec::new(),
            signature_index: HashMap::new(),
            progress: None,
        }
    }

    /// Draws a live progress bar (running scenarios, elapsed times) on the terminal.
    pub fn with_progress(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    fn print(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        match &self.progress {
            Some(progress) => progress.print(text),
            None => {
                let mut stdout = anstream::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
        }
    }

    /// Records the failure's signature; returns the run that first showed it when
    /// this is a repeat of a known one.
    fn remember(&mut self, outcome: &ScenarioOutcome, failure: &Failure) -> Option<usize> {
        let signature = Signature::of(outcome, failure);
        match self.signature_index.get(&signature) {
            Some(&i) => {
                let entry = &mut self.signatures[i].1;
                entry.runs.push(outcome.run);
                entry.runs.first().copied()
            }
            None => {
                self.signature_index
                    .insert(signature.clone(), self.signatures.len());
                self.signatures.push((
                    signature,
                    SignatureRuns {
                        name: outcome.name.clone(),
                        runs: vec![outcome.run],
                    },
                ));
                None
            }
        }
    }

    /// One finished run.
    pub fn finished(&mut self, record: &RunRecord) {
        self.done += 1;
        let outcome = &record.outcome;
        let mut text = String::new();
        let progress = format!("[{}/{}]", self.done, self.total);
        let name = display_name(outcome, self.repeat);
        let took = format_duration(outcome.duration);
        match &outcome.failure {
            None if record.flaky() => {
                let _ = writeln!(
                    text,
                    "{progress} {FLAKY}FLAKY{FLAKY:#} {name} ({took}, passed on attempt {})",
                    record.attempts()
                );
            }
            None if !self.show_passes => {
                // With --repeat, passes are counted, not listed: print a heartbeat
                // every 10% so a long determinism run shows it is alive (not on a
                // terminal, where the bar shows it).
                let step = (self.total / 10).max(1);
                if self.done % step == 0 && self.progress.is_none() {
                    let _ = writeln!(text, "{progress} running...");
                }
            }
            None => {
                let _ = writeln!(text, "{progress} {PASS}PASS{PASS:#} {name} ({took})");
                for note in &outcome.notes {
                    let _ = writeln!(text, "  note: {note}");
                }
            }
            Some(failure) => {
                let first = if self.repeat > 1 {
                    self.remember(outcome, failure)
                } else {
                    None
                };
                match first {
                    Some(first) => {
                        let _ = writeln!(
                            text,
                            "{progress} {FAIL}FAIL{FAIL:#} {name} ({took}): the same failure as run {first}"
                        );
                    }
                    None => {
                        let _ = writeln!(text, "{progress} {FAIL}FAIL{FAIL:#} {name} ({took})");
                        text.push_str(&render_failure(outcome, failure));
                    }
                }
            }
        }
        self.print(&text);
    }

    /// An attempt that failed and will be retried.
    fn attempt_failed(&mut self, outcome: &ScenarioOutcome, attempt: usize, attempts: usize) {
        let Some(failure) = &outcome.failure else {
            return;
        };
        let mut text = format!(
            "  {FLAKY}TRY {attempt} FAIL{FLAKY:#} {} ({}), retrying ({} of {attempts} attempts left)\n",
            display_name(outcome, self.repeat),
            format_duration(outcome.duration),
            attempts - attempt
        );
        text.push_str(&render_failure(outcome, failure));
        self.print(&text);
    }

    /// The closing summary; its last line is exactly `N passed, N failed` (with
    /// `, N skipped` when `--fail-fast` skipped runs). Scenario files that are not
    /// valid count as failed, so CI never reads "0 failed" for a folder with a broken
    /// scenario in it.
    pub fn summary(&self, records: &[RunRecord], summary: &SuiteSummary) -> String {
        let mut text = String::new();
        if self.repeat > 1 {
            let _ = writeln!(
                text,
                "{} scenarios x {} runs each",
                summary.scenarios, self.repeat
            );
        }
        let failures: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.counts_as_failed(summary.flaky_fails))
            .collect();
        if self.repeat > 1 && !self.signatures.is_empty() {
            text.push_str(&self.grouped_failures(records));
        } else if !failures.is_empty() {
            text.push_str("failed:\n");
            for record in failures.iter().take(LISTED) {
                let outcome = &record.outcome;
                let flaky = if record.flaky() { " [flaky]" } else { "" };
                let _ = writeln!(
                    text,
                    "  {}{flaky} ({})",
                    display_name(outcome, self.repeat),
                    outcome.path.display()
                );
            }
            if failures.len() > LISTED {
                let _ = writeln!(text, "  ... and {} more", failures.len() - LISTED);
            }
        }
        if !summary.skipped.is_empty() {
            let _ = writeln!(
                text,
                "skipped (--fail-fast stopped the suite before they started): {} runs",
                summary.skipped.len()
            );
            if self.repeat <= 1 {
                for skipped in summary.skipped.iter().take(LISTED) {
                    let _ = writeln!(text, "  {} ({})", skipped.name, skipped.path.display());
                }
                if summary.skipped.len() > LISTED {
                    let _ = writeln!(text, "  ... and {} more", summary.skipped.len() - LISTED);
                }
            }
        }
        match summary.invalid_files {
            0 => {}
            1 => text.push_str("1 scenario file is not valid (see the errors above)\n"),
            n => {
                let _ = writeln!(
                    text,
                    "{n} scenario files are not valid (see the errors above)"
                );
            }
        }
        let flaky: Vec<&RunRecord> = records.iter().filter(|r| r.flaky()).collect();
        if !flaky.is_empty() {
            let counted = if summary.flaky_fails {
                "counted as failed (--flaky-result fail)"
            } else {
                "counted as passed"
            };
            let _ = writeln!(text, "{FLAKY}flaky{FLAKY:#} ({counted}):");
            for record in flaky.iter().take(LISTED) {
                let _ = writeln!(
                    text,
                    "  {} ({}): passed on attempt {}",
                    display_name(&record.outcome, self.repeat),
                    record.outcome.path.display(),
                    record.attempts()
                );
            }
            if flaky.len() > LISTED {
                let _ = writeln!(text, "  ... and {} more", flaky.len() - LISTED);
            }
        }
        let _ = writeln!(text, "{}", summary.closing_line(records));
        text
    }

    /// Repeat mode: each scenario's failure rate, and under it each distinct
    /// failure once, with how often and in which runs it happened.
    fn grouped_failures(&self, records: &[RunRecord]) -> String {
        let mut text = String::from("failures by scenario and signature:\n");
        let mut scenarios: Vec<&PathBuf> = Vec::new();
        for (signature, _) in &self.signatures {
            if !scenarios.contains(&&signature.path) {
                scenarios.push(&signature.path);
            }
        }
        for path in scenarios {
            let runs = records.iter().filter(|r| &r.outcome.path == path).count();
            let failed = records
                .iter()
                .filter(|r| &r.outcome.path == path && !r.passed())
                .count();
            let name = self
                .signatures
                .iter()
                .find(|(s, _)| &s.path == path)
                .map_or("", |(_, r)| r.name.as_str());
            let rate = 100.0 * failed as f64 / runs.max(1) as f64;
            let _ = writeln!(
                text,
                "  {name} ({}): {failed} of {runs} runs failed ({rate:.1}%)",
                path.display()
            );
            for (signature, found) in self.signatures.iter().filter(|(s, _)| &s.path == path) {
                let mut numbers: Vec<String> = found
                    .runs
                    .iter()
                    .take(RUN_NUMBERS)
                    .map(usize::to_string)
                    .collect();
                if found.runs.len() > RUN_NUMBERS {
                    numbers.push(format!("... {} more", found.runs.len() - RUN_NUMBERS));
                }
                let _ = writeln!(
                    text,
                    "    {}x {} (runs {})",
                    found.runs.len(),
                    signature.describe(),
                    numbers.join(", ")
                );
            }
        }
        text
    }
}

impl Reporter for Console {
    fn event(&mut self, event: &SuiteEvent<'_>) {
        match event {
            SuiteEvent::RunStarted { scenario, run } => {
                if let Some(progress) = &mut self.progress {
                    progress.started(
                        &scenario.path,
                        *run,
                        &display_name_of(&scenario.name, *run, self.repeat),
                    );
                }
            }
            SuiteEvent::AttemptFailed {
                outcome,
                attempt,
                attempts,
                ..
            } => self.attempt_failed(outcome, *attempt, *attempts),
            SuiteEvent::RunFinished { record, .. } => {
                if let Some(progress) = &mut self.progress {
                    progress.finished(&record.outcome.path, record.outcome.run, record.passed());
                }
                self.finished(record);
            }
            SuiteEvent::RunSkipped { .. } => {
                if let Some(progress) = &mut self.progress {
                    progress.skipped();
                }
            }
        }
    }

    fn finish(&mut self, records: &[RunRecord], summary: &SuiteSummary) -> Result<(), String> {
        if let Some(progress) = self.progress.take() {
            progress.clear();
        }
        let text = self.summary(records, summary);
        let mut stdout = anstream::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Ok(())
    }
}

/// `name (run 3 of 10)` for a scenario that has not produced an outcome yet.
fn display_name_of(name: &str, run: usize, repeat: usize) -> String {
    if repeat > 1 {
        format!("{name} (run {run} of {repeat})")
    } else {
        name.to_owned()
    }
}
