//! The console reporter: a line per finished scenario run as it happens (progress),
//! the failure explanations, and the closing `N passed, N failed` line.

use std::io::Write;

use super::{display_name, render_failure};
use crate::duration::format_duration;
use crate::outcome::ScenarioOutcome;
use crate::suite::{Reporter, SuiteEvent, SuiteSummary};

/// Prints to stdout; each call writes whole lines so parallel runs never interleave.
pub struct Console {
    pub repeat: usize,
    /// Print a line for passing runs too (not only failures).
    pub show_passes: bool,
    pub total: usize,
    pub done: usize,
}

impl Console {
    pub fn new(total: usize, repeat: usize) -> Self {
        Self {
            repeat,
            show_passes: repeat <= 1,
            total,
            done: 0,
        }
    }

    /// One finished run.
    pub fn finished(&mut self, outcome: &ScenarioOutcome) {
        self.done += 1;
        let mut text = String::new();
        let progress = format!("[{}/{}]", self.done, self.total);
        match &outcome.failure {
            None if !self.show_passes => {
                // With --repeat, passes are counted, not listed: print a heartbeat
                // every 10% so a long determinism run shows it is alive.
                let step = (self.total / 10).max(1);
                if self.done % step == 0 {
                    text.push_str(&format!("{progress} running...\n"));
                }
            }
            None => {
                text.push_str(&format!(
                    "{progress} PASS {} ({})\n",
                    display_name(outcome, self.repeat),
                    format_duration(outcome.duration)
                ));
                for note in &outcome.notes {
                    text.push_str(&format!("  note: {note}\n"));
                }
            }
            Some(failure) => {
                text.push_str(&format!(
                    "{progress} FAIL {} ({})\n",
                    display_name(outcome, self.repeat),
                    format_duration(outcome.duration)
                ));
                text.push_str(&render_failure(outcome, failure));
            }
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// The closing summary; its last line is exactly `N passed, N failed`. Scenario
    /// files that are not valid count as failed, so CI never reads "0 failed" for a
    /// folder with a broken scenario in it.
    pub fn summary(
        &self,
        outcomes: &[ScenarioOutcome],
        scenarios: usize,
        invalid_files: usize,
    ) -> String {
        let passed = outcomes.iter().filter(|o| o.passed()).count();
        let failed = outcomes.len() - passed + invalid_files;
        let mut text = String::new();
        if self.repeat > 1 {
            text.push_str(&format!(
                "{scenarios} scenarios x {} runs each\n",
                self.repeat
            ));
        }
        let failures: Vec<&ScenarioOutcome> = outcomes.iter().filter(|o| !o.passed()).collect();
        if !failures.is_empty() {
            text.push_str("failed:\n");
            for outcome in failures.iter().take(50) {
                text.push_str(&format!(
                    "  {} ({})\n",
                    display_name(outcome, self.repeat),
                    outcome.path.display()
                ));
            }
            if failures.len() > 50 {
                text.push_str(&format!("  ... and {} more\n", failures.len() - 50));
            }
        }
        match invalid_files {
            0 => {}
            1 => text.push_str("1 scenario file is not valid (see the errors above)\n"),
            n => text.push_str(&format!(
                "{n} scenario files are not valid (see the errors above)\n"
            )),
        }
        text.push_str(&format!("{passed} passed, {failed} failed\n"));
        text
    }
}

impl Reporter for Console {
    fn event(&mut self, event: &SuiteEvent<'_>) {
        if let SuiteEvent::RunFinished { outcome, .. } = event {
            self.finished(outcome);
        }
    }

    fn finish(
        &mut self,
        outcomes: &[ScenarioOutcome],
        summary: &SuiteSummary,
    ) -> Result<(), String> {
        let text = self.summary(outcomes, summary.scenarios, summary.invalid_files);
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Ok(())
    }
}
