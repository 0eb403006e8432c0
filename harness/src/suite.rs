//! The suite scheduler: runs a selection of scenarios (each `repeat` times, at most
//! `jobs` at once, one at a time per `group`), retries failed runs (a run that fails
//! and then passes is flaky), stops starting runs after a failure under
//! `--fail-fast`, gives every attempt its event stream and the subscribers the CLI
//! chose, and tells the reporters as runs finish, the way nextest's executor feeds
//! its reporter. It never formats output itself.
//!
//! ```text
//! scenarios --schedule--> run task --runner::run_scenario--> outcome
//!                            |  event stream --> run subscribers (trace writer, ...)
//!                            v
//!                   SuiteEvent::RunFinished --> reporters (console, JUnit, JSON, TAP, HTML)
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::event::{self, Collected, Event, EventStream, Interest, RunSubscriber};
use crate::outcome::{Failure, FailureKind, ScenarioOutcome};
use crate::runner;
use crate::scenario::Scenario;

/// What the suite tells its reporters.
pub enum SuiteEvent<'a> {
    /// A run began (its first attempt).
    RunStarted { scenario: &'a Scenario, run: usize },
    /// An attempt of a run failed and the run will be tried again (`retries`).
    /// `events` as for [`SuiteEvent::RunFinished`].
    AttemptFailed {
        outcome: &'a ScenarioOutcome,
        /// This attempt's number (1-based) and how many the run may take.
        attempt: usize,
        attempts: usize,
        events: &'a [Event],
    },
    /// A run finished (after its last attempt); `events` holds the last attempt's
    /// events (without payloads) when some reporter asked for them, else nothing.
    RunFinished {
        record: &'a RunRecord,
        events: &'a [Event],
    },
    /// A run never started: `--fail-fast` stopped the suite first.
    RunSkipped { scenario: &'a Scenario, run: usize },
}

/// One run of a scenario with every attempt it took.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The last attempt: the run's result.
    pub outcome: ScenarioOutcome,
    /// The attempts before it, all failed, in order (empty without retries).
    pub failed_attempts: Vec<ScenarioOutcome>,
}

impl RunRecord {
    /// The last attempt passed (a flaky run passed too).
    pub fn passed(&self) -> bool {
        self.outcome.passed()
    }

    /// It failed, then passed on a retry.
    pub fn flaky(&self) -> bool {
        self.passed() && !self.failed_attempts.is_empty()
    }

    /// How many attempts it took.
    pub fn attempts(&self) -> usize {
        self.failed_attempts.len() + 1
    }

    /// Whether it counts as failed in the closing line and exit code:
    /// flaky runs count as passed unless `--flaky-result fail`.
    pub fn counts_as_failed(&self, flaky_fails: bool) -> bool {
        !self.passed() || (flaky_fails && self.flaky())
    }
}

/// A consumer of the suite's events: console, JUnit, JSON, TAP, HTML.
pub trait Reporter: Send {
    /// Whether this reporter needs each run's events (the JSON report does).
    fn wants_events(&self) -> bool {
        false
    }
    fn event(&mut self, event: &SuiteEvent<'_>);
    /// The suite is over; `records` are in scenario order, then run order.
    fn finish(&mut self, records: &[RunRecord], summary: &SuiteSummary) -> Result<(), String>;
}

/// Counts a reporter's closing words need.
#[derive(Debug, Clone, Default)]
pub struct SuiteSummary {
    /// Scenarios selected.
    pub scenarios: usize,
    pub repeat: usize,
    /// Scenario files that did not load (they count as failed).
    pub invalid_files: usize,
    /// Runs `--fail-fast` never started.
    pub skipped: Vec<SkippedRun>,
    /// `--flaky-result fail`: flaky runs count as failed.
    pub flaky_fails: bool,
}

impl SuiteSummary {
    /// `(passed, failed)` as the closing line counts them.
    pub fn counts(&self, records: &[RunRecord]) -> (usize, usize) {
        let failed = records
            .iter()
            .filter(|r| r.counts_as_failed(self.flaky_fails))
            .count();
        (records.len() - failed, failed + self.invalid_files)
    }

    /// The closing line: exactly `N passed, N failed`, with `, N skipped` only when
    /// something was skipped.
    pub fn closing_line(&self, records: &[RunRecord]) -> String {
        let (passed, failed) = self.counts(records);
        match self.skipped.len() {
            0 => format!("{passed} passed, {failed} failed"),
            skipped => format!("{passed} passed, {failed} failed, {skipped} skipped"),
        }
    }
}

/// A run that never started.
#[derive(Debug, Clone)]
pub struct SkippedRun {
    pub name: String,
    pub path: PathBuf,
    pub run: usize,
}

/// What one run gets besides the runner: its subscribers, and the trace file they
/// write (named in the run's report).
#[derive(Default)]
pub struct RunSetup {
    pub subscribers: Vec<Box<dyn RunSubscriber>>,
    pub trace: Option<PathBuf>,
}

/// Makes the subscribers of each run (`--pcap` and the like).
pub trait SubscriberFactory: Send + Sync {
    /// What the subscribers will need the stream to carry.
    fn interest(&self) -> Interest;
    /// The subscribers of attempt `attempt` (1-based) of run `run` of the scenario at
    /// `index` in the selection.
    fn make(
        &self,
        scenario: &Scenario,
        index: usize,
        run: RunId,
        stream: &EventStream,
    ) -> Result<RunSetup, String>;
}

/// Which run and attempt a subscriber is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId {
    /// The run of `--repeat` (1-based).
    pub run: usize,
    /// The attempt of that run (1-based; above 1 only with retries).
    pub attempt: usize,
}

/// No subscribers: runs reported by their outcome only.
pub struct NoSubscribers;

impl SubscriberFactory for NoSubscribers {
    fn interest(&self) -> Interest {
        Interest::default()
    }

    fn make(&self, _: &Scenario, _: usize, _: RunId, _: &EventStream) -> Result<RunSetup, String> {
        Ok(RunSetup::default())
    }
}

/// How the suite schedules its runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Runs of each scenario.
    pub repeat: usize,
    /// Runs at once at most.
    pub jobs: usize,
    /// `--retries N`: overrides every scenario's own `retries`.
    pub retries: Option<usize>,
    /// After the first failed run, start no new run.
    pub fail_fast: bool,
    /// Flaky runs count as failed (for `fail_fast` too).
    pub flaky_fails: bool,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            repeat: 1,
            jobs: 1,
            retries: None,
            fail_fast: false,
            flaky_fails: false,
        }
    }
}

/// What a suite produced.
pub struct SuiteResult {
    /// In scenario order, then run order.
    pub records: Vec<RunRecord>,
    /// Runs `--fail-fast` never started, in scenario order, then run order.
    pub skipped: Vec<SkippedRun>,
    /// Subscribers that failed (a trace that could not be written).
    pub subscriber_errors: usize,
}

/// Runs every scenario `repeat` times with at most `jobs` runs at once (and never two
/// scenarios of one `group` at once), retrying failed runs, and reports each run to
/// `reporters` as it finishes.
pub async fn run_suite(
    scenarios: &[Arc<Scenario>],
    options: &SuiteOptions,
    cancel: CancellationToken,
    factory: Arc<dyn SubscriberFactory>,
    reporters: &mut [Box<dyn Reporter>],
) -> SuiteResult {
    let want_events = reporters.iter().any(|r| r.wants_events());
    let jobs = options.jobs.max(1);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs));
    // Set by the first run that counts as failed, under `--fail-fast`, before it
    // gives back its job slot: a run waiting for a slot then never starts.
    let stop = CancellationToken::new();
    let mut groups: HashMap<&str, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(jobs * 2);
    let mut tasks = tokio::task::JoinSet::new();
    let mut identities = HashMap::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        let group = scenario
            .group
            .as_deref()
            .map(|name| Arc::clone(groups.entry(name).or_default()));
        let attempts = 1 + options.retries.or(scenario.retries).unwrap_or(0);
        for run in 1..=options.repeat {
            let scenario = Arc::clone(scenario);
            let semaphore = Arc::clone(&semaphore);
            let group = group.clone();
            let cancel = cancel.clone();
            let stop = stop.clone();
            let factory = Arc::clone(&factory);
            let done = done_tx.clone();
            let options = options.clone();
            let handle = tasks.spawn(async move {
                // The group first, then a job slot: a run waiting for its group
                // holds no slot another scenario could use.
                let _group = match group {
                    Some(lock) => Some(lock.lock_owned().await),
                    None => None,
                };
                let _permit = semaphore.acquire_owned().await;
                if stop.is_cancelled() {
                    let _ = done.send(Progress::Skipped(index, run)).await;
                    return;
                }
                let _ = done.send(Progress::Started(index, run)).await;
                let mut failed_attempts = Vec::new();
                let mut attempt = 1;
                let last = loop {
                    let id = RunId { run, attempt };
                    let finished = run_one(
                        &scenario,
                        index,
                        id,
                        cancel.clone(),
                        factory.as_ref(),
                        want_events,
                    )
                    .await;
                    if finished.outcome.passed() || attempt >= attempts || cancel.is_cancelled() {
                        break finished;
                    }
                    let outcome = finished.outcome.clone();
                    let _ = done
                        .send(Progress::AttemptFailed(
                            attempt,
                            attempts,
                            Box::new(finished),
                        ))
                        .await;
                    failed_attempts.push(outcome);
                    attempt += 1;
                };
                let Finished {
                    outcome,
                    events,
                    errors,
                } = last;
                let record = RunRecord {
                    outcome,
                    failed_attempts,
                };
                if options.fail_fast && record.counts_as_failed(options.flaky_fails) {
                    stop.cancel();
                }
                let _ = done
                    .send(Progress::Finished(
                        index,
                        Box::new((record, events, errors)),
                    ))
                    .await;
            });
            identities.insert(handle.id(), (index, run));
        }
    }
    drop(done_tx);
    let mut records = Vec::with_capacity(scenarios.len() * options.repeat);
    let mut skipped = Vec::new();
    let mut subscriber_errors = 0;
    let crashed = |index: usize, run: usize, error, reporters: &mut [Box<dyn Reporter>]| {
        let record = RunRecord {
            outcome: crashed_outcome(&scenarios[index], run, error),
            failed_attempts: Vec::new(),
        };
        let event = SuiteEvent::RunFinished {
            record: &record,
            events: &[],
        };
        reporters.iter_mut().for_each(|r| r.event(&event));
        (index, run, record)
    };
    loop {
        tokio::select! {
            progress = done_rx.recv() => match progress {
                Some(Progress::Started(index, run)) => {
                    let event = SuiteEvent::RunStarted { scenario: &scenarios[index], run };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                }
                Some(Progress::AttemptFailed(attempt, attempts, finished)) => {
                    subscriber_errors += finished.errors;
                    let event = SuiteEvent::AttemptFailed {
                        outcome: &finished.outcome,
                        attempt,
                        attempts,
                        events: &finished.events,
                    };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                }
                Some(Progress::Finished(index, finished)) => {
                    let (record, events, errors) = *finished;
                    subscriber_errors += errors;
                    let event = SuiteEvent::RunFinished { record: &record, events: &events };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                    let run = record.outcome.run;
                    records.push((index, run, record));
                }
                Some(Progress::Skipped(index, run)) => {
                    let event = SuiteEvent::RunSkipped { scenario: &scenarios[index], run };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                    skipped.push((index, run));
                }
                None => break,
            },
            Some(joined) = tasks.join_next_with_id() => {
                // A run task that panicked never sent its outcome: report it as a
                // failed run carrying the panic message, never drop it.
                if let Err(error) = joined {
                    let (index, run) = identities.get(&error.id()).copied().unwrap_or_default();
                    records.push(crashed(index, run, error, reporters));
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        if let Err(error) = joined {
            let (index, run) = identities.get(&error.id()).copied().unwrap_or_default();
            records.push(crashed(index, run, error, reporters));
        }
    }
    records.sort_by_key(|(index, run, _)| (*index, *run));
    skipped.sort();
    SuiteResult {
        records: records.into_iter().map(|(_, _, r)| r).collect(),
        skipped: skipped
            .into_iter()
            .map(|(index, run)| SkippedRun {
                name: scenarios[index].name.clone(),
                path: scenarios[index].path.clone(),
                run,
            })
            .collect(),
        subscriber_errors,
    }
}

/// The outcome of a run whose task panicked.
fn crashed_outcome(
    scenario: &Scenario,
    run: usize,
    error: tokio::task::JoinError,
) -> ScenarioOutcome {
    ScenarioOutcome {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        run,
        duration: std::time::Duration::ZERO,
        failure: Some(Failure::new(
            FailureKind::Panic,
            format!(
                "the run crashed (a bug in wirecheck): {}",
                runner::panic_message(error)
            ),
        )),
        notes: Vec::new(),
        started_at: std::time::SystemTime::now(),
        trace: None,
        seeds: Vec::new(),
    }
}

enum Progress {
    Started(usize, usize),
    /// Attempt K of at most N failed; another follows.
    AttemptFailed(usize, usize, Box<Finished>),
    Finished(usize, Box<(RunRecord, Vec<Event>, usize)>),
    Skipped(usize, usize),
}

struct Finished {
    outcome: ScenarioOutcome,
    events: Vec<Event>,
    errors: usize,
}

/// One run with its event stream: subscribers fed on their own thread while the
/// runner runs, finished after it returns.
async fn run_one(
    scenario: &Scenario,
    index: usize,
    run: RunId,
    cancel: CancellationToken,
    factory: &dyn SubscriberFactory,
    want_events: bool,
) -> Finished {
    let mut interest = factory.interest();
    interest.events |= want_events;
    let (stream, receiver) = EventStream::new(interest);
    let (mut subscribers, trace, mut errors) = match factory.make(scenario, index, run, &stream) {
        Ok(setup) => (setup.subscribers, setup.trace, Vec::new()),
        Err(e) => (Vec::new(), None, vec![e]),
    };
    let collected = want_events.then(|| Collected::new(false));
    if let Some(collected) = &collected {
        subscribers.push(Box::new(collected.clone()));
    }
    // A run nobody subscribed to needs no subscriber thread; dropping the receiver
    // makes every producer drop its events instead of waiting for a reader.
    let feeder = if subscribers.is_empty() {
        drop(receiver);
        None
    } else {
        Some(std::thread::spawn(move || {
            event::feed(receiver, &mut subscribers)
        }))
    };
    let mut outcome = runner::run_scenario(scenario, run.run, cancel, stream.clone()).await;
    stream.close();
    if let Some(feeder) = feeder {
        match tokio::task::spawn_blocking(move || feeder.join()).await {
            Ok(Ok(subscriber_errors)) => errors.extend(subscriber_errors),
            _ => errors.push("a report writer crashed".into()),
        }
    }
    for error in &errors {
        eprintln!("error: {error}");
    }
    if errors.is_empty() {
        outcome.trace = trace;
    }
    Finished {
        outcome,
        events: collected.map(|c| c.take()).unwrap_or_default(),
        errors: errors.len(),
    }
}
