//! The live progress bar of `run` on a terminal: a bar of finished runs with the
//! pass/fail counts, and under it a line per running scenario with its elapsed time.
//! Drawn on stderr by `indicatif`, only when both stdout and stderr are terminals
//! (and `TERM` is not `dumb`): a CI log or a pipe gets the console's plain lines and
//! nothing else. The console prints its lines through [`Progress::print`], above the
//! bar, so the two never overwrite each other.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// At most this many running scenarios get a line of their own; the rest are
/// counted on the bar.
const RUNNING_LINES: usize = 8;

pub struct Progress {
    multi: MultiProgress,
    bar: ProgressBar,
    running: Vec<((PathBuf, usize), ProgressBar)>,
    /// Running runs without a line of their own.
    hidden: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Progress {
    /// A bar for `total` runs, or `None` when the output is not a terminal.
    pub fn for_terminal(total: usize) -> Option<Self> {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if dumb || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Self::new(total, ProgressDrawTarget::stderr()))
    }

    fn new(total: usize, target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let bar = multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:30.green/red} {pos}/{len} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            bar,
            running: Vec::new(),
            hidden: 0,
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    fn update_message(&self) {
        let mut message = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            message.push_str(&format!(", {} skipped", self.skipped));
        }
        if self.hidden > 0 {
            message.push_str(&format!(" (+{} more running)", self.hidden));
        }
        self.bar.set_message(message);
    }

    /// A run began: a line with a spinner, its name and elapsed time.
    pub fn started(&mut self, path: &Path, run: usize, name: &str) {
        if self.running.len() >= RUNNING_LINES {
            self.hidden += 1;
            self.update_message();
            return;
        }
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(
            ProgressStyle::with_template("  {spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        line.set_message(name.to_owned());
        line.enable_steady_tick(Duration::from_millis(100));
        self.running.push(((path.to_owned(), run), line));
    }

    /// A run finished: its line goes, the bar moves.
    pub fn finished(&mut self, path: &Path, run: usize, passed: bool) {
        match self
            .running
            .iter()
            .position(|((p, r), _)| p == path && *r == run)
        {
            Some(i) => {
                let (_, line) = self.running.remove(i);
                line.finish_and_clear();
                self.multi.remove(&line);
            }
            None => self.hidden = self.hidden.saturating_sub(1),
        }
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.bar.inc(1);
        self.update_message();
    }

    pub fn skipped(&mut self) {
        self.skipped += 1;
        self.update_message();
    }

    /// Prints whole lines to stdout above the bar.
    pub fn print(&self, text: &str) {
        self.multi.suspend(|| {
            let mut stdout = anstream::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        });
    }

    /// Removes the bar before the closing summary.
    pub fn clear(self) {
        for (_, line) in &self.running {
            line.finish_and_clear();
        }
        self.bar.finish_and_clear();
        let _ = self.multi.clear();
    }
}
