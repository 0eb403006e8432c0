//! The suite scheduler: runs a selection of scenarios (each `repeat` times, at most
//! `jobs` at once), gives every run its event stream and the subscribers the CLI
//! chose, and tells the reporters as runs finish, the way nextest's executor feeds
//! its reporter. It never formats output itself.
//!
//! ```text
//! scenarios --schedule--> run task --runner::run_scenario--> outcome
//!                            |  event stream --> run subscribers (trace writer, ...)
//!                            v
//!                   SuiteEvent::RunFinished --> reporters (console, JUnit, JSON)
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::event::{self, Collected, Event, EventStream, Interest, RunSubscriber};
use crate::outcome::{Failure, FailureKind, ScenarioOutcome};
use crate::runner;
use crate::scenario::Scenario;

/// What the suite tells its reporters.
pub enum SuiteEvent<'a> {
    /// A run began.
    RunStarted { scenario: &'a Scenario, run: usize },
    /// A run finished; `events` holds its events (without payloads) when some
    /// reporter asked for them, else nothing.
    RunFinished {
        outcome: &'a ScenarioOutcome,
        events: &'a [Event],
    },
}

/// A consumer of the suite's events: console, JUnit, JSON, and whatever comes next.
pub trait Reporter: Send {
    /// Whether this reporter needs each run's events (the JSON report does).
    fn wants_events(&self) -> bool {
        false
    }
    fn event(&mut self, event: &SuiteEvent<'_>);
    /// The suite is over; `outcomes` are in scenario order, then run order.
    fn finish(
        &mut self,
        outcomes: &[ScenarioOutcome],
        summary: &SuiteSummary,
    ) -> Result<(), String>;
}

/// Counts a reporter's closing words need.
#[derive(Debug, Clone, Copy)]
pub struct SuiteSummary {
    /// Scenarios selected.
    pub scenarios: usize,
    pub repeat: usize,
    /// Scenario files that did not load (they count as failed).
    pub invalid_files: usize,
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
    /// The subscribers of run `run` of the scenario at `index` in the selection.
    fn make(
        &self,
        scenario: &Scenario,
        index: usize,
        run: usize,
        stream: &EventStream,
    ) -> Result<RunSetup, String>;
}

/// No subscribers: runs reported by their outcome only.
pub struct NoSubscribers;

impl SubscriberFactory for NoSubscribers {
    fn interest(&self) -> Interest {
        Interest::default()
    }

    fn make(&self, _: &Scenario, _: usize, _: usize, _: &EventStream) -> Result<RunSetup, String> {
        Ok(RunSetup::default())
    }
}

/// What a suite produced.
pub struct SuiteResult {
    /// In scenario order, then run order.
    pub outcomes: Vec<ScenarioOutcome>,
    /// Subscribers that failed (a trace that could not be written).
    pub subscriber_errors: usize,
}

/// Runs every scenario `repeat` times with at most `jobs` runs at once and reports
/// each run to `reporters` as it finishes.
pub async fn run_suite(
    scenarios: &[Arc<Scenario>],
    repeat: usize,
    jobs: usize,
    cancel: CancellationToken,
    factory: Arc<dyn SubscriberFactory>,
    reporters: &mut [Box<dyn Reporter>],
) -> SuiteResult {
    let want_events = reporters.iter().any(|r| r.wants_events());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(jobs.max(1) * 2);
    let mut tasks = tokio::task::JoinSet::new();
    let mut identities = std::collections::HashMap::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        for run in 1..=repeat {
            let scenario = Arc::clone(scenario);
            let semaphore = Arc::clone(&semaphore);
            let cancel = cancel.clone();
            let factory = Arc::clone(&factory);
            let done = done_tx.clone();
            let handle = tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let _ = done.send(Progress::Started(index, run)).await;
                let finished =
                    run_one(&scenario, index, run, cancel, factory.as_ref(), want_events).await;
                let _ = done
                    .send(Progress::Finished(index, run, Box::new(finished)))
                    .await;
            });
            identities.insert(handle.id(), (index, run));
        }
    }
    drop(done_tx);
    let mut outcomes = Vec::with_capacity(scenarios.len() * repeat);
    let mut subscriber_errors = 0;
    loop {
        tokio::select! {
            progress = done_rx.recv() => match progress {
                Some(Progress::Started(index, run)) => {
                    let event = SuiteEvent::RunStarted { scenario: &scenarios[index], run };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                }
                Some(Progress::Finished(index, run, finished)) => {
                    subscriber_errors += finished.errors;
                    let event = SuiteEvent::RunFinished { outcome: &finished.outcome, events: &finished.events };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                    let Finished { outcome, .. } = *finished;
                    outcomes.push((index, run, outcome));
                }
                None => break,
            },
            Some(joined) = tasks.join_next_with_id() => {
                // A run task that panicked never sent its outcome: report it as a
                // failed run carrying the panic message, never drop it.
                if let Err(error) = joined {
                    let (index, run) = identities.get(&error.id()).copied().unwrap_or_default();
                    let outcome = crashed_outcome(&scenarios[index], run, error);
                    let event = SuiteEvent::RunFinished { outcome: &outcome, events: &[] };
                    reporters.iter_mut().for_each(|r| r.event(&event));
                    outcomes.push((index, run, outcome));
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        if let Err(error) = joined {
            let (index, run) = identities.get(&error.id()).copied().unwrap_or_default();
            outcomes.push((index, run, crashed_outcome(&scenarios[index], run, error)));
        }
    }
    outcomes.sort_by_key(|(index, run, _)| (*index, *run));
    SuiteResult {
        outcomes: outcomes.into_iter().map(|(_, _, o)| o).collect(),
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
    }
}

enum Progress {
    Started(usize, usize),
    Finished(usize, usize, Box<Finished>),
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
    run: usize,
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
    let mut outcome = runner::run_scenario(scenario, run, cancel, stream.clone()).await;
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
