//! `wirecheck fuzz`: fuzz a live server, starting from a scenario that passes.
//!
//! ```text
//! seed scenario --run 3 times (must pass every time)--> plan --> targets started
//!   clients' scripts --input::from_script--> seed inputs (corpus)
//!   loop: pick from corpus, mutate (arbitrary-driven, structure-aware)
//!         --exec::execute over loopback--> reply classes --new transition?--> corpus
//!         target.check (exit, crash reports on stderr, panics, memory), probes (hangs)
//!   finding: which input (confirm each candidate alone on a fresh target)
//!         --> delta debugging over ops, then bytes --> reproducer scenario (verified)
//! ```
//!
//! Executions do not go through the scenario runner: a connection replays the input
//! against a target that keeps running, which is what makes thousands of executions
//! per second possible. What the fuzzer writes at the end is an ordinary scenario,
//! checked with the runner itself.

pub mod exec;
pub mod input;
pub mod mutate;
pub mod reproducer;
pub mod symptom;
pub mod target;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::duration::format_duration;
use crate::event::EventStream;
use crate::report::render_failure;
use crate::scenario::{self, Scenario, Target as ClientTarget};
use exec::{Observation, Reply, Windows};
use input::Input;
use symptom::{Kind, Symptom};
use target::Target;

/// How often a seed scenario is run before fuzzing; all must pass.
pub const SEED_RUNS: usize = 3;
/// How often a written reproducer is run to check that it fails.
pub const VERIFY_RUNS: usize = 3;
/// Most inputs kept in the corpus.
const MAX_CORPUS: usize = 4096;
/// Inputs remembered after they ran, as candidates when a finding shows up late.
const RECENT: usize = 64;
/// A probe (the seed, unmutated) runs at least this often, in executions.
const PROBE_EVERY: u64 = 1000;
/// Executions in a row without any answer that call for a probe at once.
const STALLS_BEFORE_PROBE: usize = 32;
/// Most tests one minimization may run.
const MINIMIZE_TESTS: usize = 200;
/// Most time one minimization may take.
const MINIMIZE_TIME: Duration = Duration::from_secs(20);
/// How long a confirmation waits for a program to show a symptom after an input.
const CONFIRM_SETTLE: Duration = Duration::from_millis(40);
/// How long a confirmation of memory growth samples the program's memory after an
/// input, before the seed runs: an allocation of a few hundred megabytes takes a
/// program tens of milliseconds to touch. It is not the only look (a loaded
/// machine takes longer, see [`Fuzzer::confirm`]): the memory is looked at again
/// once the seed has been answered.
const MEMORY_SETTLE: Duration = Duration::from_millis(200);
/// Shortest reply window; the window is five times the slowest seed answer.
const MIN_WINDOW: Duration = Duration::from_micros(300);

/// How long to fuzz.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Time(Duration),
    Runs(u64),
}

/// Everything `wirecheck fuzz` was asked.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub path: PathBuf,
    pub budget: Budget,
    pub seed: u64,
    pub out: PathBuf,
    /// Executions in flight at once; 0 chooses (see [`default_jobs`]).
    pub jobs: usize,
    /// Memory growth of a program (bytes) that counts as a finding; 0: unchecked.
    pub memory_limit: u64,
    /// How often the stats line is printed.
    pub stats_every: Duration,
    /// Stop once this many distinct findings are in (tests and scripts that know
    /// what they are looking for); `None`: run out the budget.
    pub stop_after: Option<usize>,
}

/// One distinct finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub number: usize,
    pub symptom: Symptom,
    /// When it was first seen, from the start of fuzzing.
    pub found_after: Duration,
    /// How many executions had run by then.
    pub found_at_exec: u64,
    /// The reproducer scenario.
    pub reproducer: PathBuf,
    /// How many runs of the reproducer failed.
    pub verified_failures: usize,
    /// How many runs of the reproducer were made: [`VERIFY_RUNS`], fewer when the
    /// fuzzer was interrupted while it checked them.
    pub verify_runs: usize,
    /// What each of those runs did, in order, so a reproducer that did not fail
    /// every time says how it got away (which run passed, what the others failed
    /// with).
    pub verification: Verification,
    /// The minimized input: ops and bytes sent.
    pub ops: usize,
    pub bytes: usize,
    /// Whether the input reproduced the symptom alone on a fresh server.
    pub confirmed: bool,
    /// How many recent inputs were replayed alone to find the one that shows the
    /// symptom (all of them, for a finding that is not confirmed).
    pub tried_alone: usize,
    /// Further executions that showed the same symptom.
    pub hits: u64,
}

impl Finding {
    /// The one-line summary (printed, and written to `findings.txt`).
    pub fn line(&self) -> String {
        let file = self
            .reproducer
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (alone, verification) = if self.confirmed {
            (String::new(), self.verification.explain(self.symptom.kind))
        } else {
            (self.not_alone(), self.verification.explain_unconfirmed())
        };
        format!(
            "{file}: {} (after {}, {} execs; input {} ops, {} bytes{alone}; reproducer failed {} of {} runs{verification})",
            self.symptom,
            format_duration(self.found_after),
            self.found_at_exec,
            self.ops,
            self.bytes,
            self.verified_failures,
            self.verify_runs,
        )
    }

    /// Why an unconfirmed finding's input is not the culprit: every recent input
    /// was tried alone, and none showed the symptom. The usual cause, for memory,
    /// is a leak that needs many inputs to cross the limit.
    fn not_alone(&self) -> String {
        let tried = match self.tried_alone {
            0 => "no input was left to replay alone".to_owned(),
            1 => "the one recent input, replayed alone, did not show it".to_owned(),
            n => format!("none of the last {n} inputs, each replayed alone, showed it"),
        };
        let cause = match self.symptom.kind {
            Kind::MemoryGrowth => {
                " on a freshly started server: the growth took several inputs, a leak of a little per request"
            }
            _ => ": it took several inputs, or a state of the server they left",
        };
        format!(", not reproduced alone ({tried}{cause}); the reproducer sends the last input once")
    }
}

/// What one run of a written reproducer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyRun {
    /// It failed, as a reproducer should: the failure, on one line.
    Failed(String),
    /// It failed, but not with the finding's symptom (a memory-growth reproducer
    /// whose seed timed out, say, before any memory limit was crossed): it proves
    /// nothing about the finding and does not count as a failure.
    FailedOtherwise(String),
    /// It passed: the bug did not show in this run.
    Passed,
}

/// The fuzzer's own check of a reproducer: [`VERIFY_RUNS`] runs with the ordinary
/// runner, or why it could not be run at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    pub runs: Vec<VerifyRun>,
    /// The written file does not load (a fuzzer bug: it writes what it loads), so
    /// nothing ran.
    pub not_loaded: Option<String>,
}

impl Verification {
    pub fn failures(&self) -> usize {
        self.runs
            .iter()
            .filter(|run| matches!(run, VerifyRun::Failed(_)))
            .count()
    }

    /// For a finding no single input reproduced: its reproducer, which sends one
    /// input, is expected to pass, and is not a regression test.
    pub fn explain_unconfirmed(&self) -> String {
        if self.not_loaded.is_some() {
            return self.explain(Kind::Crash);
        }
        if self.failures() == self.runs.len() {
            String::new()
        } else {
            ", as expected of one input: it is not a regression test for this finding".into()
        }
    }

    /// Nothing for a reproducer that failed every run it had (the usual case, kept
    /// short); otherwise `: ` and what each run did, so whoever reads the summary
    /// line learns whether the bug showed at all, and how the runs that failed
    /// failed.
    pub fn explain(&self, kind: Kind) -> String {
        if let Some(error) = &self.not_loaded {
            return format!(": the reproducer does not load, so it was not run: {error}");
        }
        if self.failures() == self.runs.len() {
            return String::new();
        }
        let passed = match kind {
            Kind::MemoryGrowth => {
                "passed (the seed's script got every answer and the server stayed under its `max_memory` whenever it was measured)"
            }
            Kind::Hang => "passed (the seed's script got every answer in time)",
            _ => "passed (the server kept running and the seed's script got every answer)",
        };
        // Runs that did the same are said once: `runs 1 and 3 passed (...)`.
        let mut said: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, run) in self.runs.iter().enumerate() {
            let what = match run {
                VerifyRun::Passed => passed.to_owned(),
                VerifyRun::Failed(why) => format!("failed: {why}"),
                VerifyRun::FailedOtherwise(why) => {
                    format!("failed, but not with the finding's symptom: {why}")
                }
            };
            match said.iter_mut().find(|(known, _)| *known == what) {
                Some((_, runs)) => runs.push(index + 1),
                None => said.push((what, vec![index + 1])),
            }
        }
        let said: Vec<String> = said
            .into_iter()
            .map(|(what, runs)| format!("{} {what}", run_numbers(&runs)))
            .collect();
        format!(": {}", said.join("; "))
    }
}

/// `run 2`, `runs 1 and 3`, `runs 1, 2 and 3`.
fn run_numbers(runs: &[usize]) -> String {
    match runs {
        [one] => format!("run {one}"),
        [rest @ .., last] => format!(
            "runs {} and {last}",
            rest.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [] => "no run".into(),
    }
}

/// What a fuzz run did.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    pub seed: u64,
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub findings: Vec<Finding>,
    pub restarts: usize,
    /// Executions that were in flight at once.
    pub jobs: usize,
    /// The run was stopped by an interrupt before its budget was used up.
    pub interrupted: bool,
}

impl FuzzReport {
    pub fn execs_per_second(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An input of the corpus and where it goes.
#[derive(Debug, Clone)]
struct Entry {
    input: Input,
    /// Index into the seed scenario's clients (the script it came from).
    client: usize,
    /// Index into the targets.
    target: usize,
}

/// A seed input with what it got from a healthy server.
struct Seed {
    entry: Entry,
    /// For each reply the seed saw when calibrated, whether it was an answer.
    answered: Vec<bool>,
}

/// How a probe of the seed went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Every read the seed had answered was answered.
    Answered,
    /// The server refused the connection or closed it before answering: it is
    /// gone, or going (a program that died, its exit perhaps not yet seen).
    Gone,
    /// A read got nothing within the step timeout: the server hangs.
    Silent,
}

/// The fuzzer's state.
struct Fuzzer<'a> {
    options: &'a FuzzOptions,
    scenario: &'a Scenario,
    targets: Vec<Target>,
    seeds: Vec<Seed>,
    corpus: Vec<Entry>,
    transitions: HashSet<(Reply, Reply)>,
    windows: Windows,
    /// The scenario's step timeout: how long a probe waits for each answer.
    probe_windows: Windows,
    rng: fastrand::Rng,
    findings: Vec<Finding>,
    known: HashMap<(Kind, String), usize>,
    execs: u64,
    /// Probe failures no single input reproduced.
    unconfirmed: usize,
    started: Instant,
    log: &'a (dyn Fn(&str) + Sync),
    /// Cancelled by an interrupt: no new execution starts, a minimization stops
    /// where it is, and what was found is written.
    cancel: CancellationToken,
    /// Executions in flight at once (the option, or its default).
    jobs: usize,
}

/// Fuzzes `options.path`. `Err` is a usage problem (exit 2): a seed that fails or is
/// flaky, a server that does not start, an `--out` that cannot be written. `log`
/// receives the stats lines and findings as they happen.
pub async fn fuzz(
    options: &FuzzOptions,
    log: &(dyn Fn(&str) + Sync),
) -> Result<FuzzReport, String> {
    fuzz_until(options, log, CancellationToken::new()).await
}

/// [`fuzz`], stopped early when `cancel` is cancelled (an interrupt): the
/// executions in flight finish, a finding being minimized is written with the
/// smallest input reached so far, every target is stopped, and the report says
/// `interrupted`.
pub async fn fuzz_until(
    options: &FuzzOptions,
    log: &(dyn Fn(&str) + Sync),
    cancel: CancellationToken,
) -> Result<FuzzReport, String> {
    let started = Instant::now();
    let scenario = scenario::load_file(&options.path).map_err(|e| e.render())?;
    check_out_dir(&options.out)?;
    let fuzzable = fuzzable_clients(&scenario)?;
    log(&format!(
        "fuzz: seed {} (pass --seed {} to repeat this run)",
        options.seed, options.seed
    ));
    let jobs = match options.jobs {
        0 => default_jobs(&scenario, &fuzzable),
        jobs => jobs,
    };
    let settings = target::ScriptSettings {
        step_timeout: scenario.step_timeout,
        unread: scenario.unread,
    };
    let nothing_done = |interrupted| FuzzReport {
        seed: options.seed,
        execs: 0,
        elapsed: started.elapsed(),
        corpus: 0,
        findings: Vec::new(),
        restarts: 0,
        jobs,
        interrupted,
    };
    check_seed(&scenario, log, &cancel).await?;
    if cancel.is_cancelled() {
        return Ok(nothing_done(true));
    }
    let plan =
        crate::plan::plan(&scenario).map_err(|e| format!("server `{}`: {}", e.actor, e.message))?;
    let mut targets = Vec::new();
    let mut names = Vec::new();
    let addresses: Arc<HashMap<String, std::net::SocketAddr>> = Arc::new(
        plan.servers
            .iter()
            .map(|s| (s.name.to_string(), s.addr))
            .collect(),
    );
    let planned: Vec<(std::net::SocketAddr, crate::vocab::Proto)> =
        plan.servers.iter().map(|s| (s.addr, s.proto)).collect();
    // Started in file order, like a run: a server's `{VAR}` comes from an earlier
    // server's `ready = { log }`.
    let captures = target::LogCaptures::default();
    for server in plan.servers {
        names.push(server.name.to_string());
        let started = tokio::select! {
            started = Target::start(server, &addresses, &captures, options.memory_limit, settings) => Some(started),
            // A program still starting is killed when its future is dropped.
            () = cancel.cancelled() => None,
        };
        match started {
            Some(Ok(target)) => targets.push(target),
            Some(Err(e)) => {
                for target in &mut targets {
                    target.stop().await;
                }
                return Err(e);
            }
            None => {
                for target in &mut targets {
                    target.stop().await;
                }
                return Ok(nothing_done(true));
            }
        }
    }
    // A client that connects to a literal address goes to the server planned
    // there, or to a server outside the scenario at that address.
    let fuzzable: Vec<(usize, usize)> = fuzzable
        .into_iter()
        .map(|(client, aim)| {
            let target = match aim {
                Aim::Server(index) => index,
                Aim::Address(addr) => {
                    let proto = scenario.clients[client].proto;
                    match planned.iter().position(|(a, p)| *a == addr && *p == proto) {
                        Some(index) => index,
                        None => match targets
                            .iter()
                            .position(|t| t.addr == addr && t.proto == proto)
                        {
                            Some(index) => index,
                            None => {
                                targets.push(Target::outside(addr, proto));
                                names.push(addr.to_string());
                                targets.len() - 1
                            }
                        },
                    }
                }
            };
            (client, target)
        })
        .collect();
    let step_timeout = scenario.step_timeout;
    let mut fuzzer = Fuzzer {
        options,
        scenario: &scenario,
        targets,
        seeds: Vec::new(),
        corpus: Vec::new(),
        transitions: HashSet::new(),
        windows: Windows {
            reply: step_timeout,
            connect: step_timeout,
        },
        probe_windows: Windows {
            reply: step_timeout,
            connect: step_timeout,
        },
        rng: fastrand::Rng::with_seed(options.seed),
        findings: Vec::new(),
        known: HashMap::new(),
        execs: 0,
        unconfirmed: 0,
        started: Instant::now(),
        log,
        cancel: cancel.clone(),
        jobs,
    };
    let result = async {
        fuzzer.calibrate(&fuzzable, &names).await?;
        fuzzer.run().await
    }
    .await;
    for target in &mut fuzzer.targets {
        target.stop().await;
    }
    result?;
    Ok(FuzzReport {
        seed: options.seed,
        execs: fuzzer.execs,
        elapsed: fuzzer.started.elapsed(),
        corpus: fuzzer.corpus.len(),
        restarts: fuzzer.targets.iter().map(|t| t.restarts).sum(),
        findings: fuzzer.findings,
        jobs,
        interrupted: cancel.is_cancelled(),
    })
}

/// Executions in flight when `-j` is not given: 8 when every server fuzzed runs in
/// this process (built-in and scripted servers answer at once, so an execution is
/// mostly a round trip of the kernel and several overlap well), 1 when one is a
/// program or an outside address. Many programs serve one connection at a time;
/// executions overlapping on such a server wait in its backlog, and their replies
/// would come after the reply window and be counted as silence.
fn default_jobs(scenario: &Scenario, fuzzable: &[(usize, Aim)]) -> usize {
    let in_process = fuzzable.iter().all(|(_, aim)| match aim {
        Aim::Server(server) => matches!(
            scenario.servers[*server].kind,
            scenario::ServerKind::Builtin { .. } | scenario::ServerKind::Script { .. }
        ),
        Aim::Address(_) => false,
    });
    if in_process {
        8
    } else {
        1
    }
}

/// Creates `--out` and writes a file into it, so a folder that cannot take the
/// reproducers is refused before any fuzzing.
fn check_out_dir(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out)
        .map_err(|e| format!("--out {}: cannot create the folder: {e}", out.display()))?;
    let probe = out.join(".wirecheck-fuzz-write-test");
    std::fs::write(&probe, b"")
        .map_err(|e| format!("--out {}: cannot write into the folder: {e}", out.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Where a fuzzable client's connections go.
#[derive(Debug, Clone, Copy)]
enum Aim {
    /// A server of the scenario, by index.
    Server(usize),
    /// A literal address (`connect = "127.0.0.1:9000"`).
    Address(std::net::SocketAddr),
}

/// The clients whose scripts become seed inputs (TCP and UDP clients of a server
/// of the scenario or of a literal address, by index), or an error saying why
/// there are none. Clients behind a proxy are left out: the fuzzer goes to the
/// servers directly.
fn fuzzable_clients(scenario: &Scenario) -> Result<Vec<(usize, Aim)>, String> {
    let mut fuzzable = Vec::new();
    let mut skipped = Vec::new();
    for (index, client) in scenario.clients.iter().enumerate() {
        let aim = match &client.connect {
            ClientTarget::Server(name) => scenario
                .servers
                .iter()
                .position(|s| &s.name == name)
                .map(Aim::Server),
            ClientTarget::Address(addr) => Some(Aim::Address(*addr)),
            ClientTarget::Proxy(_) => None,
        };
        match aim {
            Some(aim) => fuzzable.push((index, aim)),
            None => skipped.push(format!("`{}` (behind a proxy)", client.name)),
        }
    }
    if fuzzable.is_empty() {
        return Err(format!(
            "{}: no client to fuzz with: the seed inputs are the scripts of clients that connect to a server of the scenario or to an address{}",
            scenario.path.display(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (not usable: {})", skipped.join(", "))
            }
        ));
    }
    Ok(fuzzable)
}

/// Runs the seed scenario [`SEED_RUNS`] times with the ordinary runner; it must pass
/// every time. A seed that fails would make every finding meaningless; one that is
/// flaky would make findings that are the flakiness.
/// An interrupt ends the check early with `Ok`; the caller looks at `cancel`.
async fn check_seed(
    scenario: &Scenario,
    log: &(dyn Fn(&str) + Sync),
    cancel: &CancellationToken,
) -> Result<(), String> {
    let mut failed = None;
    let mut passed = 0;
    for run in 1..=SEED_RUNS {
        let outcome =
            crate::runner::run_scenario(scenario, run, cancel.clone(), EventStream::disabled())
                .await;
        if cancel.is_cancelled() {
            return Ok(());
        }
        match &outcome.failure {
            None => passed += 1,
            Some(failure) => {
                if failed.is_none() {
                    failed = Some(render_failure(&outcome, failure));
                }
            }
        }
    }
    match failed {
        None => {
            log(&format!(
                "fuzz: the seed scenario `{}` passed {SEED_RUNS} of {SEED_RUNS} runs",
                scenario.name
            ));
            Ok(())
        }
        Some(report) if passed == 0 => Err(format!(
            "the seed scenario {} fails, so there is nothing to fuzz from; make it pass first:\n{report}",
            scenario.path.display()
        )),
        Some(report) => Err(format!(
            "the seed scenario {} is flaky: it passed {passed} of {SEED_RUNS} runs; a fuzzer would report its flakiness as findings. Make it pass every time (`wirecheck run --repeat 50 {}`). The failure:\n{report}",
            scenario.path.display(),
            scenario.path.display()
        )),
    }
}

/// Transitions between consecutive reply classes, from the connection's start.
fn transitions(observation: &Observation) -> impl Iterator<Item = (Reply, Reply)> + '_ {
    std::iter::once(Reply::Open)
        .chain(observation.replies.iter().copied())
        .zip(observation.replies.iter().copied())
}

impl Fuzzer<'_> {
    /// Runs each seed input against its healthy target to learn what it gets and
    /// how fast, which sets the reply window.
    async fn calibrate(
        &mut self,
        fuzzable: &[(usize, usize)],
        names: &[String],
    ) -> Result<(), String> {
        let mut slowest = Duration::ZERO;
        for &(client, target) in fuzzable {
            let input = input::from_script(self.scenario.clients[client].script.iter());
            let entry = Entry {
                input,
                client,
                target,
            };
            let (addr, proto) = (self.targets[target].addr, self.targets[target].proto);
            let mut answered = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let observation =
                    exec::execute(addr, proto, &entry.input, self.probe_windows).await;
                let reads = observation.replies.len().max(1) as u32;
                slowest = slowest.max(started.elapsed() / reads);
                if observation.refused {
                    return Err(format!(
                        "server `{}` refused the seed's connection at {addr}",
                        names[target]
                    ));
                }
                answered = observation.replies.iter().map(|r| r.answered()).collect();
                for transition in transitions(&observation) {
                    self.transitions.insert(transition);
                }
            }
            if let Some(symptom) = self.targets[target].check(false).await {
                return Err(format!(
                    "server `{}` failed on the seed input itself: {symptom}",
                    names[target]
                ));
            }
            self.corpus.push(entry.clone());
            self.seeds.push(Seed { entry, answered });
        }
        self.windows.reply = (slowest * 5).clamp(MIN_WINDOW, self.scenario.step_timeout);
        (self.log)(&format!(
            "fuzz: {} seed input(s) from {}; targets: {}; reply window {}; -j {}",
            self.seeds.len(),
            self.scenario.path.display(),
            self.targets
                .iter()
                .map(|t| format!("`{}` at {}", t.name, t.addr))
                .collect::<Vec<_>>()
                .join(", "),
            format_duration(self.windows.reply),
            self.jobs
        ));
        Ok(())
    }

    fn budget_left(&self, started: u64) -> bool {
        if self
            .options
            .stop_after
            .is_some_and(|n| self.findings.len() >= n)
        {
            return false;
        }
        match self.options.budget {
            Budget::Runs(n) => started < n,
            Budget::Time(d) => self.started.elapsed() < d,
        }
    }

    /// A new input: a corpus entry (a seed one time in five), mutated.
    fn next_input(&mut self) -> Entry {
        let base = if self.rng.u8(..5) == 0 || self.corpus.len() == self.seeds.len() {
            &self.seeds[self.rng.usize(..self.seeds.len())].entry
        } else {
            &self.corpus[self.rng.usize(..self.corpus.len())]
        };
        let mut entry = base.clone();
        let noise: Vec<u8> = (0..40).map(|_| self.rng.u8(..)).collect();
        let donors: Vec<&Input> = (0..3)
            .map(|_| &self.corpus[self.rng.usize(..self.corpus.len())].input)
            .collect();
        mutate::mutate(&mut entry.input, &noise, &donors);
        entry
    }

    async fn run(&mut self) -> Result<(), String> {
        let jobs = self.jobs.max(1);
        // Executions finish in the order they started (the first is awaited while
        // the others keep running), so the corpus grows in the same order on every
        // run and `--seed` replays the same inputs whatever `-j` is.
        let mut in_flight: VecDeque<(JoinHandle<Observation>, Entry)> = VecDeque::new();
        let mut recent: VecDeque<Entry> = VecDeque::new();
        let mut spawned = 0u64;
        let mut stalled_in_a_row = 0usize;
        let mut last_probe = 0u64;
        let mut last_stats = Instant::now();
        let mut last_memory = Instant::now();
        loop {
            while in_flight.len() < jobs && self.budget_left(spawned) && !self.cancel.is_cancelled()
            {
                let entry = self.next_input();
                let addr = self.targets[entry.target].addr;
                let proto = self.targets[entry.target].proto;
                let input = entry.input.clone();
                let windows = self.windows;
                let task =
                    tokio::spawn(async move { exec::execute(addr, proto, &input, windows).await });
                in_flight.push_back((task, entry));
                spawned += 1;
            }
            let Some((task, entry)) = in_flight.pop_front() else {
                break;
            };
            let observation = task
                .await
                .map_err(|e| format!("an execution task failed: {e}"))?;
            self.execs += 1;
            let target = entry.target;
            let mut novel = false;
            for transition in transitions(&observation) {
                novel |= self.transitions.insert(transition);
            }
            novel |= self.targets[target].take_new_lines() > 0;
            if novel && self.corpus.len() < MAX_CORPUS {
                self.corpus.push(entry.clone());
            }
            if observation.replies.iter().any(|r| r.answered()) {
                stalled_in_a_row = 0;
            } else {
                stalled_in_a_row += 1;
            }
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(entry);

            let check_memory = last_memory.elapsed() >= Duration::from_millis(250);
            if check_memory {
                last_memory = Instant::now();
            }
            let mut symptom = None;
            for (index, target) in self.targets.iter_mut().enumerate() {
                if let Some(found) = target.check(check_memory).await {
                    symptom = Some((index, found));
                    break;
                }
            }
            let probe_due = observation.refused
                || stalled_in_a_row >= STALLS_BEFORE_PROBE
                || self.execs - last_probe >= PROBE_EVERY;
            if symptom.is_none() && probe_due {
                last_probe = self.execs;
                stalled_in_a_row = 0;
                for seed in 0..self.seeds.len() {
                    let probe = self.probe(seed).await;
                    if probe != Probe::Answered {
                        let target = self.seeds[seed].entry.target;
                        let found = self.probe_failure(target, probe).await;
                        symptom = Some((target, found));
                        break;
                    }
                }
            }
            if let Some((target, symptom)) = symptom {
                // Everything still running may be the culprit too: let it finish.
                while let Some((task, entry)) = in_flight.pop_front() {
                    let _ = task.await;
                    recent.push_back(entry);
                }
                let candidates: Vec<Entry> = recent
                    .iter()
                    .rev()
                    .filter(|e| e.target == target)
                    .cloned()
                    .collect();
                self.finding(target, symptom, candidates).await?;
                recent.clear();
            }
            if last_stats.elapsed() >= self.options.stats_every {
                last_stats = Instant::now();
                (self.log)(&self.stats_line());
            }
        }
        Ok(())
    }

    fn stats_line(&self) -> String {
        let elapsed = self.started.elapsed();
        format!(
            "fuzz: {:>6.1}s  execs {}  ({:.0}/s)  corpus {}  findings {}  restarts {}",
            elapsed.as_secs_f64(),
            self.execs,
            self.execs as f64 / elapsed.as_secs_f64().max(1e-9),
            self.corpus.len(),
            self.findings.len(),
            self.targets.iter().map(|t| t.restarts).sum::<usize>()
        )
    }

    fn hang_symptom(&self) -> Symptom {
        Symptom::new(
            Kind::Hang,
            "no answer to the seed",
            format!(
                "the server stopped answering: the seed input got no answer within the step timeout ({})",
                format_duration(self.scenario.step_timeout)
            ),
        )
    }

    /// Runs seed `index` unmutated with the scenario's step timeout: whether every
    /// read the seed had answered got an answer again, and if not, how it failed.
    async fn probe(&mut self, index: usize) -> Probe {
        let seed = &self.seeds[index];
        let target = &self.targets[seed.entry.target];
        let observation = exec::execute(
            target.addr,
            target.proto,
            &seed.entry.input,
            self.probe_windows,
        )
        .await;
        if observation.refused {
            return Probe::Gone;
        }
        let answered = seed.answered.iter().enumerate().all(|(i, &answered)| {
            !answered || observation.replies.get(i).is_some_and(|r| r.answered())
        });
        if answered {
            Probe::Answered
        } else if observation
            .replies
            .iter()
            .any(|r| matches!(r, Reply::Eof | Reply::Reset))
        {
            Probe::Gone
        } else {
            Probe::Silent
        }
    }

    /// What broke a target whose seed probe failed: its crash, if it ended (given
    /// the scenario's step timeout to be seen ending, when the probe found its
    /// socket gone), or else a hang.
    async fn probe_failure(&mut self, target: usize, probe: Probe) -> Symptom {
        let found = match probe {
            Probe::Gone => {
                self.targets[target]
                    .check_after_silence(self.scenario.step_timeout)
                    .await
            }
            _ => self.targets[target].check(false).await,
        };
        found.unwrap_or_else(|| self.hang_symptom())
    }

    /// Runs `input` alone against a fresh target and says what it broke, if anything.
    ///
    /// For a crash or a hang the target is restarted first only if it showed a
    /// symptom since its last start: a healthy program is reused, which keeps
    /// minimization fast. With `memory`, a program is always started afresh: a
    /// program that grew under an earlier test without being caught (its growth
    /// still under way when that test was judged, as a 100 MB allocation is on a
    /// loaded machine) would otherwise cross the limit during this test and have
    /// its growth blamed on this input, and minimization would keep an input that
    /// grows nothing.
    ///
    /// Then, as a reproducer's run does: the input, the program's memory sampled
    /// for [`MEMORY_SETTLE`], the seed (whose answers show that a server serving
    /// one connection at a time is done with the input), and a last look at the
    /// memory once the seed is done, like the runner's last look when a run's
    /// clients are done. What is confirmed here is what the reproducer will see.
    async fn confirm(&mut self, target: usize, input: &Input, memory: bool) -> Option<Symptom> {
        let fresh_start = memory && self.targets[target].is_program();
        if self.targets[target].suspect || fresh_start {
            if let Err(e) = self.targets[target].restart().await {
                return Some(Symptom::new(Kind::Crash, "restart failed", e));
            }
        }
        let (addr, proto) = (self.targets[target].addr, self.targets[target].proto);
        exec::execute(addr, proto, input, self.windows).await;
        let settle = Instant::now();
        let wait = if memory {
            MEMORY_SETTLE
        } else {
            CONFIRM_SETTLE
        };
        while settle.elapsed() < wait {
            if let Some(symptom) = self.targets[target].check(memory).await {
                return Some(symptom);
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        for seed in 0..self.seeds.len() {
            if self.seeds[seed].entry.target != target {
                continue;
            }
            let probe = self.probe(seed).await;
            if probe != Probe::Answered {
                return Some(self.probe_failure(target, probe).await);
            }
        }
        self.targets[target].check(memory).await
    }

    async fn reproduces(&mut self, target: usize, input: &Input, key: &(Kind, String)) -> bool {
        let memory = key.0 == Kind::MemoryGrowth;
        self.confirm(target, input, memory)
            .await
            .is_some_and(|symptom| &symptom.key() == key)
    }

    /// Handles a symptom: counts a known one; for a new one finds the input,
    /// minimizes it and writes the reproducer.
    async fn finding(
        &mut self,
        target: usize,
        symptom: Symptom,
        candidates: Vec<Entry>,
    ) -> Result<(), String> {
        let key = symptom.key();
        if let Some(&index) = self.known.get(&key) {
            self.findings[index].hits += 1;
            return self.targets[target]
                .restart()
                .await
                .map_err(|e| format!("cannot restart after a finding: {e}"));
        }
        let found_after = self.started.elapsed();
        let found_at_exec = self.execs;
        (self.log)(&format!(
            "fuzz: {} after {} ({} execs); finding the input...",
            symptom,
            format_duration(found_after),
            found_at_exec
        ));
        // Memory growth too: an input that makes a freshly started program grow
        // past the limit on its own is the culprit (a leak that needs many inputs
        // to get there has none, and is kept as `not reproduced alone`).
        let mut culprit = None;
        let mut tried_alone = 0;
        for candidate in candidates.iter().take(RECENT) {
            if self.cancel.is_cancelled() {
                break;
            }
            tried_alone += 1;
            if self.reproduces(target, &candidate.input, &key).await {
                culprit = Some(candidate.clone());
                break;
            }
        }
        let confirmed = culprit.is_some();
        if !confirmed && symptom.kind == Kind::Hang {
            // A probe that failed once and never again was the machine being slow,
            // not the server hanging: no finding without an input that hangs it.
            (self.log)("fuzz: no input hangs the server on its own; not a finding");
            self.unconfirmed += 1;
            return self.targets[target]
                .restart()
                .await
                .map_err(|e| format!("cannot restart after a probe failed: {e}"));
        }
        let mut entry = match culprit.or_else(|| candidates.first().cloned()) {
            Some(entry) => entry,
            None => self.seeds[0].entry.clone(),
        };
        if confirmed {
            entry.input = self.minimize(target, entry.input.clone(), &key).await;
        }
        let number = self.findings.len() + 1;
        let file = self
            .options
            .out
            .join(format!("finding-{number}-{}.toml", symptom.kind.name()));
        let client = &self.scenario.clients[entry.client];
        // A memory-growth reproducer limits the server's memory to what the
        // fuzzer allowed it: its size after a start plus `--memory-limit`.
        let memory = match symptom.kind {
            Kind::MemoryGrowth => self.targets[target]
                .memory_ceiling()
                .map(|bytes| (self.targets[target].name.to_string(), bytes)),
            _ => None,
        };
        let text = reproducer::render(
            self.scenario,
            client,
            &entry.input,
            &symptom,
            number,
            &self.options.out,
            memory,
            confirmed,
        )?;
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        // The reproducer runs its own copy of the server; ours stays down meanwhile
        // only if it is a program that crashed, which the restart below handles.
        let verification = verify(&file, symptom.kind, &self.cancel).await;
        let bytes = entry.input.ops.iter().map(|op| op.wire_bytes().len()).sum();
        let finding = Finding {
            number,
            symptom,
            found_after,
            found_at_exec,
            reproducer: file,
            verified_failures: verification.failures(),
            verify_runs: verification.runs.len(),
            verification,
            ops: entry.input.ops.len(),
            bytes,
            confirmed,
            tried_alone,
            hits: 0,
        };
        let line = finding.line();
        (self.log)(&format!("fuzz: finding {number}: {line}"));
        let summary = self.options.out.join("findings.txt");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|e| format!("cannot write {}: {e}", summary.display()))?;
        self.known.insert(key, self.findings.len());
        self.findings.push(finding);
        self.targets[target]
            .restart()
            .await
            .map_err(|e| format!("cannot restart after a finding: {e}"))
    }

    /// Delta debugging: first over the input's ops, then over each send's bytes,
    /// keeping every reduction that still shows the same symptom.
    async fn minimize(&mut self, target: usize, input: Input, key: &(Kind, String)) -> Input {
        let started = Instant::now();
        let mut tests = 0usize;
        let ops = self
            .ddmin(
                target,
                input.ops.clone(),
                key,
                &mut tests,
                started,
                &|ops| Input { ops: ops.to_vec() },
            )
            .await;
        let mut current = Input { ops };
        for index in 0..current.ops.len() {
            let Some(bytes) = current.ops[index].payload_mut().map(|b| b.clone()) else {
                continue;
            };
            let base = current.clone();
            let build = |bytes: &[u8]| {
                let mut input = base.clone();
                if let Some(payload) = input.ops[index].payload_mut() {
                    *payload = bytes.to_vec();
                }
                input
            };
            // Often the bytes do not matter at all (a length prefix that lies needs
            // no payload): one test says so, where halving would take a dozen, each
            // a restart of the program when memory is judged.
            let empty_will_do = !bytes.is_empty()
                && tests < MINIMIZE_TESTS
                && started.elapsed() < MINIMIZE_TIME
                && !self.cancel.is_cancelled()
                && {
                    tests += 1;
                    self.reproduces(target, &build(&[]), key).await
                };
            let reduced = if empty_will_do {
                Vec::new()
            } else {
                self.ddmin(target, bytes, key, &mut tests, started, &build)
                    .await
            };
            current = build(&reduced);
            // Plain writes are easier to read than chunked, paused ones.
            if let Some((chunks, pause)) = current.ops[index].chunking_mut() {
                if !chunks.is_empty() || !pause.is_zero() {
                    let mut plain = current.clone();
                    if let Some((chunks, pause)) = plain.ops[index].chunking_mut() {
                        chunks.clear();
                        *pause = Duration::ZERO;
                    }
                    if tests < MINIMIZE_TESTS && self.reproduces(target, &plain, key).await {
                        current = plain;
                    }
                    tests += 1;
                }
            }
        }
        current
    }

    /// The ddmin algorithm (Zeller): try removing ever smaller parts of `items`,
    /// keeping any removal after which `build(rest)` still reproduces `key`.
    async fn ddmin<T: Clone>(
        &mut self,
        target: usize,
        mut items: Vec<T>,
        key: &(Kind, String),
        tests: &mut usize,
        started: Instant,
        build: &dyn Fn(&[T]) -> Input,
    ) -> Vec<T> {
        let mut parts = 2usize;
        while items.len() >= 2 {
            let chunk = items.len().div_ceil(parts);
            let mut reduced = false;
            let mut start = 0;
            while start < items.len() {
                if *tests >= MINIMIZE_TESTS
                    || started.elapsed() >= MINIMIZE_TIME
                    || self.cancel.is_cancelled()
                {
                    return items;
                }
                let end = (start + chunk).min(items.len());
                let mut rest = items[..start].to_vec();
                rest.extend_from_slice(&items[end..]);
                *tests += 1;
                if self.reproduces(target, &build(&rest), key).await {
                    items = rest;
                    reduced = true;
                    parts = (parts - 1).max(2);
                    break;
                }
                start = end;
            }
            if !reduced {
                if chunk == 1 {
                    break;
                }
                parts = (parts * 2).min(items.len());
            }
        }
        if items.len() == 1 && *tests < MINIMIZE_TESTS {
            *tests += 1;
            if self.reproduces(target, &build(&[]), key).await {
                items.clear();
            }
        }
        items
    }
}

/// Runs the reproducer [`VERIFY_RUNS`] times with the ordinary runner and keeps
/// what each run did: all of them fail, for a good reproducer, with the finding's
/// symptom where a run's failure shows it (a memory-growth reproducer fails on the
/// server's `max_memory`; a crash or a hang shows as the seed's connection or
/// reads failing, or as the program's exit, which are all failures here). A run
/// cut short by an interrupt proves nothing and is not kept.
async fn verify(file: &Path, kind: Kind, cancel: &CancellationToken) -> Verification {
    let scenario = match scenario::load_file(file) {
        Ok(scenario) => Arc::new(scenario),
        Err(e) => {
            return Verification {
                runs: Vec::new(),
                not_loaded: Some(first_line(&e.render())),
            }
        }
    };
    let mut verification = Verification::default();
    for run in 1..=VERIFY_RUNS {
        if cancel.is_cancelled() {
            break;
        }
        let outcome =
            crate::runner::run_scenario(&scenario, run, cancel.clone(), EventStream::disabled())
                .await;
        if cancel.is_cancelled() {
            break;
        }
        verification.runs.push(match &outcome.failure {
            None => VerifyRun::Passed,
            Some(failure) if kind == Kind::MemoryGrowth && !over_max_memory(failure) => {
                VerifyRun::FailedOtherwise(briefly(failure))
            }
            Some(failure) => VerifyRun::Failed(briefly(failure)),
        });
    }
    verification
}

/// Whether a run failed because a program held more memory than its `max_memory`.
fn over_max_memory(failure: &crate::outcome::Failure) -> bool {
    failure.kind == crate::outcome::FailureKind::Program
        && failure
            .step
            .as_ref()
            .is_some_and(|step| step.keyword == "max_memory")
}

/// A run's failure on one line: the client and step that failed, if one did, and
/// the message (a program's failure names the program itself).
fn briefly(failure: &crate::outcome::Failure) -> String {
    let who = match (&failure.actor, &failure.step) {
        (Some(actor), Some(step)) if step.index > 0 => {
            format!("`{actor}` at step {} ({}): ", step.index, step.keyword)
        }
        _ => String::new(),
    };
    format!("{who}{}", first_line(&failure.message))
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(why: &str) -> VerifyRun {
        VerifyRun::Failed(why.into())
    }

    #[test]
    fn a_reproducer_that_failed_every_run_is_said_briefly() {
        let verification = Verification {
            runs: vec![failed("a"), failed("b"), failed("c")],
            not_loaded: None,
        };
        assert_eq!(verification.failures(), 3);
        assert_eq!(verification.explain(Kind::MemoryGrowth), "");
    }

    #[test]
    fn a_reproducer_that_got_away_says_what_each_run_did() {
        let verification = Verification {
            runs: vec![
                VerifyRun::Passed,
                failed("server `s` (line 5) used 90 MiB"),
                VerifyRun::Passed,
            ],
            not_loaded: None,
        };
        assert_eq!(verification.failures(), 1);
        assert_eq!(
            verification.explain(Kind::MemoryGrowth),
            ": runs 1 and 3 passed (the seed's script got every answer and the server stayed under its `max_memory` whenever it was measured); run 2 failed: server `s` (line 5) used 90 MiB"
        );
        let all_passed = Verification {
            runs: vec![VerifyRun::Passed; 3],
            not_loaded: None,
        };
        assert_eq!(
            all_passed.explain(Kind::Crash),
            ": runs 1, 2 and 3 passed (the server kept running and the seed's script got every answer)"
        );
    }

    #[test]
    fn a_failure_without_the_findings_symptom_does_not_count() {
        let verification = Verification {
            runs: vec![
                failed("over max_memory"),
                VerifyRun::FailedOtherwise(
                    "`seed-after-input` at step 3 (expect): timed out".into(),
                ),
            ],
            not_loaded: None,
        };
        assert_eq!(verification.failures(), 1);
        assert_eq!(
            verification.explain(Kind::MemoryGrowth),
            ": run 1 failed: over max_memory; run 2 failed, but not with the finding's symptom: `seed-after-input` at step 3 (expect): timed out"
        );
    }

    #[test]
    fn a_reproducer_that_does_not_load_says_so() {
        let verification = Verification {
            runs: Vec::new(),
            not_loaded: Some("error: x.toml:3:1: unknown key".into()),
        };
        assert_eq!(verification.failures(), 0);
        assert_eq!(
            verification.explain(Kind::Crash),
            ": the reproducer does not load, so it was not run: error: x.toml:3:1: unknown key"
        );
        assert_eq!(
            verification.explain_unconfirmed(),
            verification.explain(Kind::Crash)
        );
    }

    #[test]
    fn an_unconfirmed_findings_passing_reproducer_is_expected() {
        let verification = Verification {
            runs: vec![VerifyRun::Passed; 3],
            not_loaded: None,
        };
        assert_eq!(
            verification.explain_unconfirmed(),
            ", as expected of one input: it is not a regression test for this finding"
        );
    }
}
