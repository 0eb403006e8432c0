//! Runs a scenario: starts its servers, runs every actor concurrently on its own
//! task, enforces every deadline, and cleans up whatever happens.
//!
//! The runner reports only through the run's [`EventStream`] and the returned
//! [`ScenarioOutcome`]; it never prints or writes files.

// A failure carries everything a report needs (bytes, notes), so it is large; it is
// produced once per failed run and moved, never copied in a loop, so boxing it
// would buy nothing.
#![allow(clippy::result_large_err)]

mod actor;
pub mod descriptors;
mod peeked;
mod resolve;
mod signals;
mod step_timer;
pub mod variables;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::outcome::{Failure, FailureKind, ScenarioOutcome, StepRef};
pub use crate::plan::free_port;
use crate::programs::process::{Launch, Program};
pub use actor::split_chunks;
use actor::{Actor, Conn};
use descriptors::DescriptorUse;
use signals::Signals;
use variables::Variables;

use crate::duration::format_duration;
use crate::event::{EventKind, EventStream, OutputStream, RunSubscriber};
use crate::net::Recorder;
use crate::plan::{Plan, PlannedClient, PlannedServer, PlannedServerKind, Script};
use crate::scenario::{Checked, ClientProgram, ExitExpectation, Scenario, UnreadPolicy};
use crate::servers::accept::{accept_exactly, Accepted};
use crate::servers::{self, Bound, ServerContext};
use crate::vocab::{Proto, SocketOptions};

/// How long built-in servers get to finish their connections after the scripts end.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(2);
/// How many lines of program output a failure report quotes.
const OUTPUT_TAIL_LINES: usize = 20;
/// After a failure, programs keep running this long before they are stopped, so
/// what they print about it (a traceback) still reaches the report.
const FAILURE_GRACE: Duration = Duration::from_millis(250);
/// After a step failed because its peer closed or reset the connection, how long the
/// run waits for a server program to be seen exiting: such a failure is usually the
/// program's crash, and on a loaded machine an interpreter can take longer than
/// [`FAILURE_GRACE`] to print its traceback and exit. Only that kind of failure waits
/// this long, and a crash seen earlier ends the wait.
const CRASH_WAIT: Duration = Duration::from_secs(2);

/// Shared by every actor of one run.
pub struct RunContext {
    /// Where the run's events go; disabled when nobody subscribed.
    pub log: EventStream,
    pub signals: Signals,
    pub step_timeout: Duration,
    pub board: Board,
    /// The last lines external programs printed, quoted under a failure.
    pub output: OutputTail,
    /// What to do with bytes no step read when a TCP script ends.
    pub unread: UnreadPolicy,
    /// Values captured by matchers so far, shared by every actor.
    pub variables: Variables,
    /// Which step captures each variable, for "used before it was captured".
    pub capturers: Arc<HashMap<String, String>>,
    /// Every server's address, for `{port:NAME}` in templates; set once the
    /// servers are planned.
    pub addresses: std::sync::OnceLock<Arc<HashMap<String, SocketAddr>>>,
    /// Notes for the report, whatever the run's result (`unread` warnings).
    notes: Mutex<RunNotes>,
    /// The sockets of actors that failed, kept open until the run is cleaned up:
    /// closing them at once would reset a program in the middle of a read, and its
    /// crash would hide the real failure during the grace period.
    pub parked: Mutex<Vec<Conn>>,
}

/// At most this many notes of one kind are kept; the rest are counted.
const MAX_NOTES: usize = 20;

#[derive(Debug, Default)]
struct RunNotes {
    kept: Vec<String>,
    dropped: usize,
}

impl RunContext {
    /// Adds a note to the run's report (a thousand clients warning about the same
    /// thing keep the first twenty and a count).
    pub fn note(&self, note: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.kept.len() < MAX_NOTES {
            notes.kept.push(note);
        } else {
            notes.dropped += 1;
        }
    }

    fn take_notes(&self) -> Vec<String> {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = std::mem::take(&mut notes.kept);
        if notes.dropped > 0 {
            kept.push(format!("... and {} more notes like these", notes.dropped));
        }
        kept
    }
}

/// The last lines every external program of a run printed: a small ring, so a
/// failure can quote them without the run keeping its whole output.
#[derive(Debug, Clone, Default)]
pub struct OutputTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl OutputTail {
    pub fn push(&self, actor: &str, stream: OutputStream, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == OUTPUT_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(format!("{actor} {}: {line}", stream.name()));
    }

    fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

/// What an actor is doing right now, kept cheap to update on every step; it is
/// only put into words when a scenario timeout asks who was stuck where.
#[derive(Debug, Clone)]
pub enum Doing {
    Connecting,
    Accepting {
        number: usize,
        of: usize,
    },
    WaitingForDescriptor,
    /// Step `index` (1-based) of `script`.
    Step {
        index: usize,
        script: Script,
    },
    /// A client program waits for its `wait` signal before it starts.
    WaitingForSignal {
        signal: Arc<str>,
    },
    /// A client program runs; the command line as started.
    RunningProgram {
        command: Arc<str>,
    },
}

impl std::fmt::Display for Doing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Doing::Connecting => write!(f, "connecting"),
            Doing::Accepting { number, of } => write!(f, "accepting connection {number} of {of}"),
            Doing::WaitingForDescriptor => write!(f, "waiting for a free file descriptor"),
            Doing::WaitingForSignal { signal } => {
                write!(f, "`wait = \"{signal}\"`, before starting its program")
            }
            Doing::RunningProgram { command } => {
                write!(f, "running `{command}`, which had not exited")
            }
            Doing::Step { index, script } => match script.get(index - 1) {
                Some(step) => write!(
                    f,
                    "step {index} `{}` (line {}:{})",
                    step.source_text, step.location.line, step.location.column
                ),
                None => write!(f, "step {index}"),
            },
        }
    }
}

/// What each actor is doing right now, so a scenario timeout can say who was stuck
/// where.
#[derive(Default)]
pub struct Board {
    actors: Mutex<HashMap<Arc<str>, Arc<BoardSlot>>>,
}

/// One actor's line on the [`Board`]. An actor running a script keeps its slot,
/// so each step updates it with one uncontended lock instead of a lookup by name
/// in the board every actor shares.
#[derive(Default)]
pub struct BoardSlot(Mutex<Option<(Doing, Instant)>>);

impl BoardSlot {
    /// The actor is at `doing`, since `since`.
    pub fn set(&self, doing: Doing, since: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((doing, since));
    }
}

impl Board {
    /// The slot of `actor`, made on first use.
    pub fn slot(&self, actor: &Arc<str>) -> Arc<BoardSlot> {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        match actors.get(actor) {
            Some(slot) => Arc::clone(slot),
            None => {
                let slot = Arc::new(BoardSlot::default());
                actors.insert(Arc::clone(actor), Arc::clone(&slot));
                slot
            }
        }
    }

    pub fn set(&self, actor: &Arc<str>, doing: Doing) {
        self.slot(actor).set(doing, Instant::now());
    }

    /// Takes `actor` off the board (a finished actor is nobody's answer to "who
    /// was stuck"; 50,000 finished clients must not stay in memory either).
    pub fn done(&self, actor: &str) {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        actors.remove(actor);
    }

    fn describe(&self) -> Vec<String> {
        let actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<(&Arc<str>, String)> = actors
            .iter()
            .filter_map(|(actor, slot)| {
                let state = slot.0.lock().unwrap_or_else(|e| e.into_inner());
                let (doing, since) = state.as_ref()?;
                Some((
                    actor,
                    format!(
                        "{actor} was at {doing}, for {}",
                        format_duration(since.elapsed())
                    ),
                ))
            })
            .collect();
        lines.sort_by(|a, b| a.0.cmp(b.0));
        // A timeout of 50,000 clients must not print 50,000 lines.
        let total = lines.len();
        let mut out: Vec<String> = lines.into_iter().take(20).map(|(_, l)| l).collect();
        if total > 20 {
            out.push(format!("... and {} more actors", total - 20));
        }
        out
    }
}

/// Plans and runs one scenario once, recording into `events`. `cancel` interrupts
/// it (Ctrl-C); cleanup still happens. The caller closes `events` afterwards.
pub async fn run_scenario(
    scenario: &Scenario,
    run: usize,
    cancel: CancellationToken,
    events: EventStream,
) -> ScenarioOutcome {
    match crate::plan::plan(scenario) {
        Ok(plan) => run_plan(plan, run, cancel, events).await,
        Err(error) => {
            let mut failure = Failure::new(FailureKind::Setup, error.message);
            failure.actor = Some(error.actor);
            ScenarioOutcome {
                name: scenario.name.clone(),
                path: scenario.path.clone(),
                run,
                duration: Duration::ZERO,
                failure: Some(failure),
                notes: Vec::new(),
                started_at: events.started_at(),
                trace: None,
                seeds: Vec::new(),
            }
        }
    }
}

/// Runs a planned scenario once, recording into `events`. `cancel` interrupts it
/// (Ctrl-C); cleanup still happens. The caller closes `events` afterwards.
pub async fn run_plan(
    plan: Plan,
    run: usize,
    cancel: CancellationToken,
    events: EventStream,
) -> ScenarioOutcome {
    let started = std::time::Instant::now();
    let started_at = events.started_at();
    let context = Arc::new(RunContext {
        log: events,
        signals: Signals::default(),
        step_timeout: plan.step_timeout,
        board: Board::default(),
        output: OutputTail::default(),
        unread: plan.unread,
        variables: Variables::default(),
        capturers: Arc::clone(&plan.capturers),
        addresses: std::sync::OnceLock::new(),
        notes: Mutex::default(),
        parked: Mutex::new(Vec::new()),
    });
    let mut run_state = RunState {
        context: Arc::clone(&context),
        shutdown: CancellationToken::new(),
        builtin_tasks: JoinSet::new(),
        actors: JoinSet::new(),
        processes: Vec::new(),
        program_failures: tokio::sync::mpsc::unbounded_channel(),
        descriptors: DescriptorUse::default(),
        memory_limits: Vec::new(),
    };
    let (name, path, timeout) = (plan.name.clone(), plan.path.clone(), plan.timeout);
    let seeds = plan
        .proxies
        .iter()
        .map(|proxy| crate::outcome::ProxySeed {
            proxy: proxy.config.name.to_string(),
            seed: proxy.config.seed,
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut failure = tokio::select! {
        result = tokio::time::timeout_at(deadline, run_state.start_and_wait(plan)) => match result {
            Ok(result) => result.err(),
            Err(_) => {
                let mut failure = Failure::new(
                    FailureKind::ScenarioTimeout,
                    format!("the scenario did not finish within its timeout of {}", format_duration(timeout)),
                );
                failure.notes = context.board.describe();
                Some(failure)
            }
        },
        _ = cancel.cancelled() => Some(Failure::new(FailureKind::Interrupted, "interrupted")),
    };
    if failure.is_none() {
        // A program that grew after its last sample fails the run as surely as one
        // caught while the run went.
        failure = run_state.memory_now();
    }
    let interrupted = matches!(&failure, Some(f) if f.kind == FailureKind::Interrupted);
    if failure.is_some() && !interrupted && !run_state.processes.is_empty() {
        // Let the programs finish saying what went wrong before they are stopped.
        let grace_ends = Instant::now() + FAILURE_GRACE;
        // A server that crashed is the cause of the "connection reset" its client
        // saw a moment earlier: report the crash, and the client's step under it.
        // (The failed client's socket is still open, so the crash is not its doing.)
        let step_failed = matches!(
            &failure,
            Some(f) if matches!(f.kind, FailureKind::Step | FailureKind::StepTimeout)
        );
        if step_failed {
            let wait = if failure.as_ref().is_some_and(peer_went_away) {
                CRASH_WAIT
            } else {
                FAILURE_GRACE
            };
            let crash = tokio::time::timeout(wait, run_state.program_failures.1.recv()).await;
            if let Ok(Some(mut crash)) = crash {
                if let Some(step_failure) = failure.take() {
                    crash.notes.push(describe_briefly(&step_failure));
                }
                failure = Some(crash);
            }
        }
        tokio::time::sleep_until(grace_ends).await;
    }
    if let Some(failure) = failure.as_mut() {
        failure.notes.extend(run_state.program_exit_notes());
    }
    let cleanup_problems = run_state.cleanup().await;
    if failure.is_none() {
        if let Some(problem) = cleanup_problems.first() {
            failure = Some(Failure::new(FailureKind::Cleanup, problem.clone()));
        }
    }
    if let Some(failure) = failure.as_mut() {
        failure.notes.extend(context.output.lines());
    }
    let mut notes = context.take_notes();
    if let Some(note) = run_state.descriptors.note() {
        notes.push(note);
    }
    ScenarioOutcome {
        name,
        path,
        run,
        duration: started.elapsed(),
        failure,
        notes,
        started_at,
        trace: None,
        seeds,
    }
}

/// Runs one scenario once and keeps every event in memory: for tests and tools that
/// inspect a whole run afterwards. `payloads` keeps the bytes of socket events too.
pub async fn run_collecting(
    scenario: &Scenario,
    payloads: bool,
) -> (ScenarioOutcome, Vec<crate::event::Event>) {
    let collected = crate::event::Collected::new(payloads);
    let (events, receiver) = EventStream::new(collected.interest());
    let subscriber = collected.clone();
    let feeder = std::thread::spawn(move || {
        let mut subscribers: [Box<dyn RunSubscriber>; 1] = [Box::new(subscriber)];
        crate::event::feed(receiver, &mut subscribers);
    });
    let outcome = run_scenario(scenario, 1, CancellationToken::new(), events.clone()).await;
    events.close();
    let _ = tokio::task::spawn_blocking(move || feeder.join()).await;
    (outcome, collected.take())
}

/// Runs one copy of a client program to its end and checks how it ended: its exit
/// status, then its stdout and stderr against their MATCH. The scenario timeout
/// bounds it; if the run ends first, dropping the program kills it.
///
/// With `wait`, it starts once that signal is raised. Its `command`, `env` and
/// `stdin` are made from the run's variables when it starts; named groups of its
/// output's regexes capture variables once it has exited and its output matched,
/// and then its `signal` is raised, so an actor that waits for the signal sees them.
async fn client_program(
    context: Arc<RunContext>,
    spec: Arc<ClientProgram>,
    name: Arc<str>,
    addresses: Arc<HashMap<String, SocketAddr>>,
) -> Result<(), Failure> {
    let fail = |checked: &Checked<()>, keyword: &'static str, text: &str, message: String| {
        let mut failure = Failure::new(FailureKind::Program, message);
        failure.actor = Some(name.to_string());
        failure.step = Some(StepRef {
            index: 0,
            keyword,
            location: (&checked.location).into(),
            text: text.to_owned(),
        });
        failure
    };
    let command_at = &spec.command_at;
    if let Some(wait) = &spec.wait {
        context.board.set(
            &name,
            Doing::WaitingForSignal {
                signal: Arc::from(wait.value.as_str()),
            },
        );
        let waited = Instant::now();
        if tokio::time::timeout(context.step_timeout, context.signals.wait(&wait.value))
            .await
            .is_err()
        {
            let place = Checked {
                value: (),
                location: wait.location.clone(),
                text: wait.text.clone(),
            };
            let mut failure = fail(
                &place,
                "wait",
                &wait.text,
                format!(
                    "client program `{name}` was never started: timed out waiting for signal `{}`",
                    wait.value
                ),
            );
            failure.kind = FailureKind::StepTimeout;
            failure.waited = Some(waited.elapsed());
            return Err(failure);
        }
    }
    let lookup = |server: &str| addresses.get(server).copied();
    let var = |variable: &str| context.variables.get(variable);
    let user = format!("before client program `{name}` started");
    let (argv, env) =
        crate::programs::process::expand_command(&spec.argv, &spec.env, None, &lookup, &var)
            .map_err(|missing| {
                fail(
                    command_at,
                    "command",
                    &command_at.text,
                    resolve::missing_variable(
                        &context,
                        &missing,
                        &user,
                        "start the program later: `wait = \"NAME\"` on it, `{ signal = \"NAME\" }` after the capturing step",
                    ),
                )
            })?;
    let stdin = resolve::data(&context, &spec.stdin, &user)
        .and_then(|data| data.head(usize::MAX).map_err(|e| e.to_string()))
        .map_err(|message| fail(command_at, "stdin", &command_at.text, message))?;
    let launch = Launch {
        argv: argv.clone(),
        env,
        cwd: spec.cwd.clone(),
        stdin: Some(stdin),
        keep_output: true,
        log_ready: None,
    };
    let command_at = &spec.command_at;
    context.board.set(
        &name,
        Doing::RunningProgram {
            command: Arc::from(argv.join(" ")),
        },
    );
    let mut program = Program::spawn(launch, &context.log, &context.output, &name)
        .map_err(|e| fail(command_at, "command", &command_at.text, e))?;
    let started = Instant::now();
    let exit = match &spec.max_memory {
        None => program.wait_exit().await,
        Some(limit) => {
            let over = program.memory_over(limit.value);
            tokio::select! {
                exit = program.wait_exit() => exit,
                // `None` (it exited) disables this branch: its exit is awaited above.
                Some(seen) = over => {
                    // Stopped here, its output drained into the report.
                    program.finish(&context.log).await;
                    context.board.done(&name);
                    let line = spec.location.line;
                    return Err(memory_failure("client program", &name, line, limit, seen, started.elapsed()));
                }
            }
        }
    };
    let (problem, stdout, stderr) = program.finish(&context.log).await;
    context.board.done(&name);
    let at = |checked: &Checked<ExitExpectation>| Checked {
        value: (),
        location: checked.location.clone(),
        text: checked.text.clone(),
    };
    if !spec.exit.value.accepts_early(&exit) {
        return Err(fail(
            &at(&spec.exit),
            "exit",
            &spec.exit.text,
            format!(
                "client program `{name}` ended with {} after {}; expected {}",
                exit.describe(),
                format_duration(exit.after),
                spec.exit.value.describe()
            ),
        ));
    }
    let mut captured = Vec::new();
    for (which, check, output) in [
        ("stdout", &spec.stdout, &stdout),
        ("stderr", &spec.stderr, &stderr),
    ] {
        let Some(check) = check else { continue };
        let place = Checked {
            value: (),
            location: check.location.clone(),
            text: check.text.clone(),
        };
        let user = format!("when the {which} of client program `{name}` was checked");
        let matcher = resolve::matcher(&context, &check.value, &user)
            .map_err(|message| fail(&place, which, &check.text, message))?;
        let verdict = matcher.match_whole(&output.bytes);
        if let Ok(captures) = verdict {
            captured.push(captures);
            continue;
        }
        if let Err(mismatch) = verdict {
            let why = mismatch.message;
            let mut failure = fail(
                &place,
                which,
                &check.text,
                format!(
                    "the {which} of client program `{name}` ({} bytes{}) does not match: {why}",
                    output.bytes.len(),
                    if output.truncated {
                        ", cut at 1 MiB"
                    } else {
                        ""
                    }
                ),
            );
            failure.expected = matcher.expected_bytes();
            // Without expected bytes the dump shows the output alone.
            failure.actual = Some(bytes::Bytes::from(output.bytes.clone()));
            return Err(failure);
        }
    }
    if let Some(problem) = problem {
        let mut failure = Failure::new(FailureKind::Cleanup, problem);
        failure.actor = Some(name.to_string());
        return Err(failure);
    }
    // Only a program that passed publishes what it captured, then its signal.
    for captures in captured {
        if !captures.is_empty() {
            context.variables.set(captures);
        }
    }
    if let Some(signal) = &spec.signal {
        context.signals.raise(signal);
    }
    Ok(())
}

/// Whether a step failed because its peer closed or reset the connection under it
/// (the reading and writing steps say so in these words), the usual sign of a
/// server program that crashed.
fn peer_went_away(failure: &Failure) -> bool {
    let message = &failure.message;
    message.contains("the peer closed the connection")
        || message.contains("the peer reset the connection")
        || message.contains("recv returned 0 bytes")
}

/// One line for a failure that is reported under another one.
fn describe_briefly(failure: &Failure) -> String {
    let actor = failure.actor.as_deref().unwrap_or("?");
    match &failure.step {
        Some(step) => format!(
            "meanwhile `{actor}` failed at step {} ({}) on line {}: {}",
            step.index, step.keyword, step.location.line, failure.message
        ),
        None => format!("meanwhile `{actor}` failed: {}", failure.message),
    }
}

/// The message a panicked task left, for the failure report.
pub fn panic_message(error: tokio::task::JoinError) -> String {
    if error.is_cancelled() {
        return "the task was cancelled".into();
    }
    let payload = error.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".into()
    }
}

/// A panicked actor task is a failed run that carries the panic message.
fn crashed(error: tokio::task::JoinError) -> Failure {
    Failure::new(
        FailureKind::Panic,
        format!(
            "an actor crashed (a bug in wirecheck): {}",
            panic_message(error)
        ),
    )
}

struct RunState {
    context: Arc<RunContext>,
    /// Stops built-in servers.
    shutdown: CancellationToken,
    builtin_tasks: JoinSet<()>,
    /// Clients and scripted servers: the scenario is over when all of them are.
    actors: JoinSet<Result<(), Failure>>,
    processes: Vec<(Arc<str>, Program)>,
    /// Programs that ended in a way their `exit` does not allow, while the run went.
    program_failures: (
        tokio::sync::mpsc::UnboundedSender<Failure>,
        tokio::sync::mpsc::UnboundedReceiver<Failure>,
    ),
    descriptors: DescriptorUse,
    /// Server programs with a `max_memory`, checked once more when the scripts end.
    memory_limits: Vec<MemoryLimit>,
}

/// A program's `max_memory`, for the last look when the run's actors are done (a
/// program that grew after the last sample still fails the run).
struct MemoryLimit {
    actor: Arc<str>,
    /// Where the server is declared.
    line: usize,
    limit: Checked<u64>,
    started: Instant,
}

/// A program held more resident memory than its `max_memory` allows: a program
/// failure that names the program, where it is declared, the size seen and the
/// limit, and points at the `max_memory` key.
fn memory_failure(
    role: &str,
    actor: &str,
    line: usize,
    limit: &Checked<u64>,
    seen: u64,
    after: Duration,
) -> Failure {
    let mut failure = Failure::new(
        FailureKind::Program,
        format!(
            "{role} `{actor}` (line {line}) used {} of resident memory ({seen} bytes: the program and every process it started), more than its `{}` (line {}) allows ({}), {} after it started",
            crate::size::format_size(seen),
            limit.text,
            limit.location.line,
            crate::size::format_size(limit.value),
            format_duration(after)
        ),
    );
    failure.actor = Some(actor.to_owned());
    failure.step = Some(StepRef {
        index: 0,
        keyword: "max_memory",
        location: (&limit.location).into(),
        text: limit.text.clone(),
    });
    failure
}

impl RunState {
    async fn start_and_wait(&mut self, plan: Plan) -> Result<(), Failure> {
        // `{port:NAME}`, `{host:NAME}` and `{addr:NAME}` name servers and proxies.
        let addresses: Arc<HashMap<String, SocketAddr>> = Arc::new(
            plan.servers
                .iter()
                .map(|s| (s.name.to_string(), s.addr))
                .chain(
                    plan.proxies
                        .iter()
                        .map(|p| (p.config.name.to_string(), p.addr)),
                )
                .collect(),
        );
        let _ = self.context.addresses.set(Arc::clone(&addresses));
        // Proxies first: their listeners were bound by the plan, and with their
        // tasks running every fault is in place before any client connects.
        for proxy in plan.proxies {
            let task = crate::proxy::serve(
                proxy.bound,
                proxy.config,
                self.context.log.clone(),
                self.shutdown.clone(),
            );
            self.builtin_tasks.spawn(task);
        }
        for server in plan.servers {
            self.start_server(server, &addresses).await?;
        }
        // Client programs start with the clients: every server is ready by now.
        for spec in plan.programs {
            let spec = Arc::new(spec);
            for copy in 1..=spec.count {
                let name: Arc<str> = if spec.count == 1 {
                    Arc::from(spec.name.as_str())
                } else {
                    Arc::from(format!("{}#{copy}", spec.name))
                };
                self.actors.spawn(client_program(
                    Arc::clone(&self.context),
                    Arc::clone(&spec),
                    name,
                    Arc::clone(&addresses),
                ));
            }
        }
        // Client declarations start their copies in file order: a declaration begins
        // once every copy of the one before it has started, so when descriptors run
        // short the same copies wait on every run.
        let mut previous_started: Option<tokio::sync::oneshot::Receiver<()>> = None;
        for client in plan.clients {
            let context = Arc::clone(&self.context);
            let usage = self.descriptors.clone();
            let step_timeout = plan.step_timeout;
            let (started, next) = tokio::sync::oneshot::channel();
            let after = previous_started.replace(next);
            self.actors.spawn(async move {
                if let Some(after) = after {
                    // An error means the previous launch ended early: it failed, and
                    // its failure ends the run.
                    let _ = after.await;
                }
                launch_clients(context, client, step_timeout, usage, started).await
            });
        }
        loop {
            tokio::select! {
                joined = self.actors.join_next() => match joined {
                    // The first failure decides the outcome; the other actors are
                    // stopped rather than left to time out waiting for a peer that
                    // is gone.
                    Some(joined) => joined.unwrap_or_else(|e| Err(crashed(e)))?,
                    None => return Ok(()),
                },
                Some(failure) = self.program_failures.1.recv() => return Err(failure),
            }
        }
    }

    async fn start_server(
        &mut self,
        server: PlannedServer,
        addresses: &Arc<HashMap<String, SocketAddr>>,
    ) -> Result<(), Failure> {
        let actor = Arc::clone(&server.name);
        match server.kind {
            PlannedServerKind::Address => Ok(()),
            PlannedServerKind::Command(spec) => {
                let setup_failure = |e: String| {
                    let mut failure = Failure::new(
                        FailureKind::Setup,
                        format!("server `{actor}` (line {}): {e}", server.location.line),
                    );
                    failure.actor = Some(actor.to_string());
                    failure
                };
                let port = server.addr.port();
                let lookup = |name: &str| addresses.get(name).copied();
                let var = |name: &str| self.context.variables.get(name);
                let launch = Launch::server_with_variables(&spec, port, &lookup, &var)
                    .map_err(|missing| {
                        setup_failure(resolve::missing_variable(
                            &self.context,
                            &missing,
                            "before this server started",
                            "a server's `command` and `env` are made when it starts, in file order and before every client, so only a variable an earlier server's `ready = { log }` captured can have a value then",
                        ))
                    })?;
                Program::check_port_free(server.proto, server.addr).map_err(setup_failure)?;
                let mut program =
                    Program::spawn(launch, &self.context.log, &self.context.output, &actor)
                        .map_err(setup_failure)?;
                let ready = program
                    .wait_ready(&spec.ready, server.proto, server.addr, spec.ready_timeout)
                    .await;
                let ready = match ready {
                    Ok(()) if !spec.ready_delay.is_zero() => {
                        tokio::time::sleep(spec.ready_delay).await;
                        match program.exited() {
                            Some(exit) if !spec.exit.accepts_early(&exit) => Err(format!(
                                "the program exited during its ready_delay ({})",
                                exit.describe()
                            )),
                            _ => Ok(()),
                        }
                    }
                    other => other,
                };
                if let Err(e) = ready {
                    // Its last words explain the failure: wait for them.
                    program.finish(&self.context.log).await;
                    return Err(setup_failure(e));
                }
                // Named groups of `ready = { log }` are variables from here on:
                // a later server's command or any step may use them.
                for (name, value) in program.log_captures() {
                    self.context.variables.insert(&name, value);
                }
                self.watch_exit(&actor, &program, spec.exit, server.location.line);
                if let Some(limit) = &spec.max_memory {
                    self.watch_memory(&actor, &program, limit, server.location.line);
                }
                self.processes.push((actor, program));
                Ok(())
            }
            PlannedServerKind::Builtin { config, bound } => {
                let context = ServerContext {
                    log: self.context.log.clone(),
                    actor,
                    options: server.options,
                };
                let task = servers::serve(config, bound, context, self.shutdown.clone());
                self.builtin_tasks.spawn(async move {
                    let _ = task.await;
                });
                Ok(())
            }
            PlannedServerKind::Script {
                connections,
                script,
                bound,
            } => {
                let task = script_server(
                    Arc::clone(&self.context),
                    actor,
                    bound,
                    connections,
                    server.options,
                    script,
                );
                self.actors.spawn(task);
                Ok(())
            }
        }
    }

    /// Stops everything that was started; returns what could not be cleaned up.
    async fn cleanup(&mut self) -> Vec<String> {
        self.actors.shutdown().await;
        self.shutdown.cancel();
        let mut builtin = std::mem::take(&mut self.builtin_tasks);
        if tokio::time::timeout(SERVER_STOP_GRACE, async {
            while builtin.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            builtin.shutdown().await;
        }
        let mut problems = Vec::new();
        // Stopped together: each may take a grace period, and they do not depend on
        // one another.
        let log = &self.context.log;
        let stops = self
            .processes
            .iter_mut()
            .map(|(_, program)| program.finish(log));
        for (problem, _, _) in futures_join_all(stops).await {
            problems.extend(problem);
        }
        self.processes.clear();
        let parked = std::mem::take(
            &mut *self
                .context
                .parked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        drop(parked);
        problems
    }

    /// Fails the run if the program ends in a way `exit` does not allow before the
    /// scenario is over (exiting with status 0 is fine unless `exit` says otherwise;
    /// being stopped by wirecheck at the end is never a failure).
    fn watch_exit(&self, actor: &Arc<str>, program: &Program, exit: ExitExpectation, line: usize) {
        let ended = program.exit_on_its_own();
        let failures = self.program_failures.0.clone();
        let actor = Arc::clone(actor);
        tokio::spawn(async move {
            let ended = ended.await;
            if exit.accepts_early(&ended) {
                return;
            }
            let mut failure = Failure::new(
                FailureKind::Program,
                format!(
                    "server `{actor}` (line {line}) exited with {} after {}, before the scenario was over; `exit` allows {}",
                    ended.describe(),
                    format_duration(ended.after),
                    match exit {
                        ExitExpectation::Status(0) => "exit status 0 only (set `exit = \"any\"` if it may end otherwise)".to_owned(),
                        other => other.describe(),
                    }
                ),
            );
            failure.actor = Some(actor.to_string());
            let _ = failures.send(failure);
        });
    }

    /// Fails the run when the program's resident memory (with its descendants) is
    /// seen above its `max_memory`, sampled every
    /// [`crate::programs::process::MEMORY_SAMPLE_EVERY`] until it exits. The
    /// program is stopped with the others when the run ends, after the usual grace
    /// period, so its last output is in the report.
    fn watch_memory(
        &mut self,
        actor: &Arc<str>,
        program: &Program,
        limit: &Checked<u64>,
        line: usize,
    ) {
        let over = program.memory_over(limit.value);
        let failures = self.program_failures.0.clone();
        let started = Instant::now();
        let watched = MemoryLimit {
            actor: Arc::clone(actor),
            line,
            limit: limit.clone(),
            started,
        };
        let (actor, limit) = (Arc::clone(actor), limit.clone());
        tokio::spawn(async move {
            // `None`: the program ended (its exit is `watch_exit`'s business).
            if let Some(seen) = over.await {
                let failure =
                    memory_failure("server", &actor, line, &limit, seen, started.elapsed());
                let _ = failures.send(failure);
            }
        });
        self.memory_limits.push(watched);
    }

    /// The last look at every `max_memory` when the actors are done: growth since
    /// the last sample (a reply the client got before the next tick) still counts.
    fn memory_now(&self) -> Option<Failure> {
        self.memory_limits.iter().find_map(|watched| {
            let (_, program) = self
                .processes
                .iter()
                .find(|(actor, _)| *actor == watched.actor)?;
            let seen = program.resident_bytes();
            (seen > watched.limit.value).then(|| {
                memory_failure(
                    "server",
                    &watched.actor,
                    watched.line,
                    &watched.limit,
                    seen,
                    watched.started.elapsed(),
                )
            })
        })
    }

    /// A note for each program that had exited on its own by the time the run
    /// failed: often the real cause of a client's "connection reset".
    fn program_exit_notes(&self) -> Vec<String> {
        self.processes
            .iter()
            .filter_map(|(actor, program)| {
                let exit = program.exited()?;
                Some(format!(
                    "program `{actor}` had exited ({}) after {}",
                    exit.describe(),
                    format_duration(exit.after)
                ))
            })
            .collect()
    }
}

/// Awaits every future of `futures` concurrently, keeping their order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> =
        futures.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(index, future)| match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => {
                outputs[*index] = Some(output);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Starts every copy of a client, each once the descriptors it needs are free, and
/// waits for all of them; the first failure ends the launch (and the run).
async fn launch_clients(
    context: Arc<RunContext>,
    client: PlannedClient,
    step_timeout: Duration,
    usage: DescriptorUse,
    all_started: tokio::sync::oneshot::Sender<()>,
) -> Result<(), Failure> {
    let mut copies: JoinSet<Result<(), Failure>> = JoinSet::new();
    for copy in 1..=client.count {
        let name: Arc<str> = if client.count == 1 {
            Arc::from(client.name.as_str())
        } else {
            Arc::from(format!("{}#{copy}", client.name))
        };
        let permit = loop {
            let room = copies.len() < client.max_in_flight;
            if room {
                if let Some(permit) = descriptors::try_acquire(client.descriptors_each) {
                    break permit;
                }
                usage.waited();
                context.board.set(&name, Doing::WaitingForDescriptor);
            }
            let waited = Instant::now();
            let acquired = tokio::select! {
                permit = descriptors::acquire(client.descriptors_each), if room => Some(permit),
                Some(joined) = copies.join_next(), if !copies.is_empty() => {
                    joined.unwrap_or_else(|e| Err(crashed(e)))?;
                    None
                }
                _ = tokio::time::sleep(step_timeout) => {
                    let mut failure = Failure::new(
                        FailureKind::Setup,
                        descriptors::starved_message(client.count, copy, usage.peak(), waited.elapsed()),
                    );
                    failure.actor = Some(name.to_string());
                    return Err(failure);
                }
            };
            if let Some(permit) = acquired {
                break permit;
            }
        };
        usage.opened(client.descriptors_each);
        let conn = match client.proto {
            Proto::Tcp => Conn::NotConnected {
                target: client.target,
                source: source_address(client.target, copy),
            },
            Proto::Udp => {
                udp_client(&context.log, &name, client.target, &client.options).map_err(|e| {
                    let mut failure =
                        Failure::new(FailureKind::Setup, format!("cannot open a UDP socket: {e}"));
                    failure.actor = Some(name.to_string());
                    failure
                })?
            }
        };
        let actor = Actor::new(name, conn, client.options.clone(), Arc::clone(&context));
        let script = Arc::clone(&client.script);
        let usage = usage.clone();
        let each = client.descriptors_each;
        copies.spawn(async move {
            let result = actor.run(&script).await;
            usage.closed(each);
            drop(permit);
            result
        });
        // Reap finished copies as we go so a long launch holds no finished tasks.
        while let Some(joined) = copies.try_join_next() {
            joined.unwrap_or_else(|e| Err(crashed(e)))?;
        }
    }
    let _ = all_started.send(());
    while let Some(joined) = copies.join_next().await {
        joined.unwrap_or_else(|e| Err(crashed(e)))?;
    }
    Ok(())
}

/// The source address of a client copy. One loopback address has about 28,000
/// ephemeral ports (and a closed connection holds its port in TIME_WAIT for a
/// minute), so copies beyond the first 10,000 of a client spread over other
/// addresses of 127.0.0.0/8, which all reach the same server.
fn source_address(target: SocketAddr, copy: usize) -> Option<std::net::IpAddr> {
    const COPIES_PER_ADDRESS: usize = 10_000;
    match target.ip() {
        std::net::IpAddr::V4(ip) if ip.is_loopback() && copy > COPIES_PER_ADDRESS => {
            let spread = (copy - 1) / COPIES_PER_ADDRESS; // 1, 2, ...
            Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                0,
                1,
                (spread % 250) as u8 + 1,
            )))
        }
        _ => None,
    }
}

fn udp_client(
    log: &EventStream,
    name: &Arc<str>,
    target: SocketAddr,
    options: &SocketOptions,
) -> std::io::Result<Conn> {
    let bind: SocketAddr = if target.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    crate::net::apply_socket_options(socket2::SockRef::from(&socket), options)?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    let local = socket.local_addr()?;
    let recorder = Recorder::for_new_connection(log, Arc::clone(name));
    recorder.record(EventKind::UdpBound {
        conn: recorder.conn,
        local,
    });
    Ok(Conn::Udp {
        socket,
        recorder,
        local,
        peer: Some(target),
        connected: true,
    })
}

/// A scripted server: TCP accepts `connections` connections and runs the script on
/// each concurrently; UDP runs the script once on its socket.
async fn script_server(
    context: Arc<RunContext>,
    name: Arc<str>,
    bound: Bound,
    connections: usize,
    options: SocketOptions,
    script: Script,
) -> Result<(), Failure> {
    let listener = match bound {
        Bound::Udp(socket) => {
            let local = socket
                .local_addr()
                .map_err(|e| Failure::new(FailureKind::Setup, e.to_string()))?;
            let recorder = Recorder::for_new_connection(&context.log, Arc::clone(&name));
            recorder.record(EventKind::UdpBound {
                conn: recorder.conn,
                local,
            });
            let actor = Actor::new(
                name,
                Conn::Udp {
                    socket,
                    recorder,
                    local,
                    peer: None,
                    connected: false,
                },
                options,
                context,
            );
            return actor.run(&script).await;
        }
        Bound::Tcp(listener) => listener,
    };
    // The one accept loop of all servers: it applies the socket options, backs off on
    // accept errors such as EMFILE, and closes the listener after the last wanted
    // connection so late clients are refused instead of hanging in the backlog.
    let mut incoming = accept_exactly(listener, connections, options.clone(), Arc::clone(&name));
    let mut sessions = JoinSet::new();
    for number in 1..=connections {
        let actor_name: Arc<str> = if connections == 1 {
            Arc::clone(&name)
        } else {
            Arc::from(format!("{name}#{number}"))
        };
        context.board.set(
            &actor_name,
            Doing::Accepting {
                number,
                of: connections,
            },
        );
        let next = loop {
            tokio::select! {
                next = incoming.next() => break next,
                Some(joined) = sessions.join_next(), if !sessions.is_empty() => {
                    joined.unwrap_or_else(|e| Err(crashed(e)))?;
                }
            }
        };
        let accepted = match next {
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                let mut failure = Failure::new(FailureKind::Setup, format!("`{name}`: {e}"));
                failure.actor = Some(actor_name.to_string());
                return Err(failure);
            }
            None => break,
        };
        let actor = accepted_actor(actor_name, accepted, &options, &context);
        let script = Arc::clone(&script);
        sessions.spawn(async move { actor.run(&script).await });
    }
    while let Some(joined) = sessions.join_next().await {
        joined.unwrap_or_else(|e| Err(crashed(e)))?;
    }
    Ok(())
}

/// A scripted server as `wirecheck fuzz` runs it, until `shutdown`: TCP runs the
/// script on every connection it accepts (however many; `connections` is for
/// runs), UDP runs it on its socket again each time it ends. A script that fails
/// on what a fuzzed connection sent is what fuzzing expects and is not reported;
/// a panic of an actor reaches the fuzzer's panic hook. Every signal the script
/// waits for counts as raised from the start: the fuzzer replays one client's
/// bytes, not the scenario's order between actors.
pub async fn serve_script_until(
    name: Arc<str>,
    bound: Bound,
    options: SocketOptions,
    script: Script,
    step_timeout: Duration,
    unread: UnreadPolicy,
    shutdown: CancellationToken,
) {
    let context = Arc::new(RunContext {
        log: EventStream::disabled(),
        signals: Signals::default(),
        step_timeout,
        board: Board::default(),
        output: OutputTail::default(),
        unread,
        variables: Variables::default(),
        capturers: Arc::default(),
        addresses: std::sync::OnceLock::new(),
        notes: Mutex::default(),
        parked: Mutex::new(Vec::new()),
    });
    for step in script.iter() {
        if let crate::scenario::Action::Wait(signal) = &step.action {
            context.signals.raise(signal);
        }
    }
    let listener = match bound {
        Bound::Udp(socket) => {
            let Ok(local) = socket.local_addr() else {
                return;
            };
            let Ok(socket) = socket.into_std() else {
                return;
            };
            loop {
                let Ok(copy) = socket.try_clone().and_then(tokio::net::UdpSocket::from_std) else {
                    return;
                };
                let recorder = Recorder::for_new_connection(&context.log, Arc::clone(&name));
                let conn = Conn::Udp {
                    socket: copy,
                    recorder,
                    local,
                    peer: None,
                    connected: false,
                };
                let actor = Actor::new(
                    Arc::clone(&name),
                    conn,
                    options.clone(),
                    Arc::clone(&context),
                );
                tokio::select! {
                    _ = actor.run(&script) => {}
                    () = shutdown.cancelled() => return,
                }
                release_parked(&context);
                // A script that ends at once must not spin the thread.
                tokio::task::yield_now().await;
            }
        }
        Bound::Tcp(listener) => listener,
    };
    let mut incoming = accept_exactly(listener, usize::MAX, options.clone(), Arc::clone(&name));
    let mut sessions = JoinSet::new();
    loop {
        let next = tokio::select! {
            next = incoming.next() => next,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {
                release_parked(&context);
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let Some(Ok(accepted)) = next else {
            break;
        };
        let actor = accepted_actor(Arc::clone(&name), accepted, &options, &context);
        let script = Arc::clone(&script);
        sessions.spawn(async move { actor.run(&script).await });
    }
    sessions.shutdown().await;
}

/// The actor that runs a scripted server's script on one accepted connection, the
/// accept recorded under its own connection id: a run's servers and
/// [`serve_script_until`] (`wirecheck fuzz`) take connections the same way.
fn accepted_actor(
    name: Arc<str>,
    accepted: Accepted,
    options: &SocketOptions,
    context: &Arc<RunContext>,
) -> Actor {
    let Accepted {
        stream,
        peer,
        local,
    } = accepted;
    let recorder = Recorder::for_new_connection(&context.log, Arc::clone(&name));
    recorder.record(EventKind::Accept {
        conn: recorder.conn,
        local,
        peer,
    });
    Actor::new(
        name,
        Conn::Tcp { stream, recorder },
        options.clone(),
        Arc::clone(context),
    )
}

/// Closes the sockets failed actors left open. A run keeps them until its end (see
/// [`RunContext::parked`]); a fuzzed server has no end, and would keep one per
/// failed connection.
fn release_parked(context: &RunContext) {
    drop(std::mem::take(
        &mut *context.parked.lock().unwrap_or_else(|e| e.into_inner()),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_actor_task_is_a_failure_that_carries_the_panic_message() {
        let mut actors: JoinSet<Result<(), Failure>> = JoinSet::new();
        actors.spawn(async { panic!("index out of bounds in a step handler") });
        let joined = actors.join_next().await.expect("one task");
        let failure = joined.unwrap_or_else(|e| Err(crashed(e))).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Panic);
        assert!(
            failure
                .message
                .contains("index out of bounds in a step handler"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn copies_beyond_ten_thousand_connect_from_other_loopback_addresses() {
        let target: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(source_address(target, 1), None);
        assert_eq!(source_address(target, 10_000), None);
        assert_eq!(
            source_address(target, 10_001),
            Some("127.0.1.2".parse().unwrap())
        );
        assert_eq!(
            source_address(target, 100_000),
            Some("127.0.1.10".parse().unwrap())
        );
        assert_eq!(source_address("[::1]:7".parse().unwrap(), 50_000), None);
    }
}
