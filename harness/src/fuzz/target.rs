//! The servers under fuzz: started once from the seed scenario's plan, watched
//! between executions, restarted when they die.
//!
//! A `command` server runs through the runner's own process handling (its process
//! group, readiness rules and cleanup), with its output arriving as the run's
//! `ProcessOutput` events; a subscriber of that stream scans each line for crash
//! reports. A built-in server runs in this process on the plan's bound socket, and
//! so does a scripted one (its script on every connection, through the runner's
//! own actors); a panic in either is caught by the fuzz command's panic hook.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::symptom::{normalize, Kind, Scanner, Symptom};
use crate::event::{Event, EventKind, EventStream, Interest, OutputStream, RunSubscriber};
use crate::plan::Script;
use crate::plan::{PlannedServer, PlannedServerKind};
use crate::programs::process::{Launch, Program};
use crate::runner::OutputTail;
use crate::scenario::{CommandSpec, UnreadPolicy};
use crate::servers::{self, BuiltinConfig, ServerContext};
use crate::vocab::{Proto, SocketOptions};

/// The most a dead program's output pipes are waited for before its crash is
/// judged: they close when it dies, unless a process it started still holds them.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// The actor of the marker event the fuzzer sends through a program's event stream
/// after its pipes closed: once the watch has seen it, it has seen every line the
/// program printed (the stream is in order).
const READ_TO_HERE: &str = "wirecheck fuzz: output read to here";

/// What the output watcher found, shared with the subscriber thread.
#[derive(Debug, Default)]
pub struct Watch {
    /// One scanner per stream, stdout then stderr: the two pipes are read apart,
    /// so their lines interleave in any order (Python flushes a buffered stdout
    /// line at exit, after its traceback went to stderr), and a line of one
    /// stream must not be read as the end of a report on the other.
    scanners: [Scanner; 2],
    /// Reports completed and not yet taken.
    symptoms: Vec<Symptom>,
    /// Every kind of line seen (numbers blanked): a new kind is new behaviour.
    kinds: HashSet<String>,
    /// New kinds of line since the last [`Target::take_new_lines`].
    new_kinds: usize,
    /// The last lines, for a crash without a recognizable report.
    last: Vec<String>,
    /// [`READ_TO_HERE`] markers seen.
    marks_seen: u64,
}

impl Watch {
    fn line(&mut self, stream: OutputStream, line: &str) {
        let scanner = match stream {
            OutputStream::Stdout => &mut self.scanners[0],
            OutputStream::Stderr => &mut self.scanners[1],
        };
        if let Some(symptom) = scanner.push(line) {
            self.symptoms.push(symptom);
        }
        if self.kinds.len() < 10_000 && self.kinds.insert(normalize(line)) {
            self.new_kinds += 1;
        }
        if self.last.len() == 20 {
            self.last.remove(0);
        }
        self.last.push(line.to_owned());
    }
}

/// Forwards a program's output lines to its [`Watch`].
struct WatchSubscriber(Arc<Mutex<Watch>>);

impl RunSubscriber for WatchSubscriber {
    fn interest(&self) -> Interest {
        Interest {
            events: true,
            payloads: false,
        }
    }

    fn event(&mut self, event: &Event) {
        if let EventKind::ProcessOutput { stream, line } = &event.kind {
            lock(&self.0).line(*stream, line);
        } else if &*event.actor == READ_TO_HERE {
            lock(&self.0).marks_seen += 1;
        }
    }
}

fn lock(watch: &Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_captures(
    captures: &LogCaptures,
) -> std::sync::MutexGuard<'_, HashMap<String, bytes::Bytes>> {
    captures.lock().unwrap_or_else(|e| e.into_inner())
}

/// Panics in this process while the fuzzer runs: a built-in server's connection
/// task that panics is caught by tokio, so the hook is where it can be seen.
static PANICS: Mutex<Vec<Symptom>> = Mutex::new(Vec::new());

/// Records every panic of this process as a symptom (and stays quiet about it: the
/// fuzz report prints it). Installed by `wirecheck fuzz` only.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown place".into());
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let mut symptom = Symptom::new(
            Kind::RustPanic,
            format!("panic at {location}"),
            format!("a built-in server panicked at {location}: {message}"),
        );
        symptom.detail.push(message);
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(symptom);
    }));
}

fn take_panics() -> Vec<Symptom> {
    std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()))
}

enum Running {
    Builtin {
        config: BuiltinConfig,
        options: SocketOptions,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    },
    Command {
        /// Boxed: a spec is far larger than the other variants' state.
        spec: Box<CommandSpec>,
        process: Option<Program>,
        /// Every server's address, for `{addr:NAME}` placeholders.
        addresses: Arc<HashMap<String, SocketAddr>>,
        /// Captures of earlier servers' `ready = { log }`, for `{VAR}`.
        captures: LogCaptures,
        log: EventStream,
        tail: OutputTail,
        /// Resident memory right after the last start, in bytes.
        baseline: u64,
    },
    Script {
        script: Script,
        options: SocketOptions,
        /// The scenario's `step_timeout` and `unread`, which the script runs with.
        step_timeout: Duration,
        unread: UnreadPolicy,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    },
    Address,
}

/// Variables that `ready = { log }` regexes of the targets captured, by name: a
/// later server's `command` and `env` use them (`{TOKEN}`), as in a run. Shared by
/// every target; a restarted program's new captures replace its old ones, and a
/// server started (or restarted) afterwards gets the newest values.
pub type LogCaptures = Arc<Mutex<HashMap<String, bytes::Bytes>>>;

/// What a scripted server's actors need from the scenario.
#[derive(Debug, Clone, Copy)]
pub struct ScriptSettings {
    pub step_timeout: Duration,
    pub unread: UnreadPolicy,
}

/// One server of the scenario under fuzz.
pub struct Target {
    pub name: Arc<str>,
    pub proto: Proto,
    /// Where executions connect; a restarted program may get a new port.
    pub addr: SocketAddr,
    running: Running,
    watch: Arc<Mutex<Watch>>,
    /// Times the server was started again after a finding.
    pub restarts: usize,
    /// It showed a symptom since it was last started.
    pub suspect: bool,
    /// Memory growth over the start that counts as a finding, in bytes.
    memory_limit: u64,
}

impl Target {
    /// Starts the planned server. An error is a sentence for the user.
    pub async fn start(
        server: PlannedServer,
        addresses: &Arc<HashMap<String, SocketAddr>>,
        captures: &LogCaptures,
        memory_limit: u64,
        settings: ScriptSettings,
    ) -> Result<Self, String> {
        let watch = Arc::new(Mutex::new(Watch::default()));
        let name = Arc::clone(&server.name);
        let running = match server.kind {
            PlannedServerKind::Builtin { config, bound } => {
                let shutdown = CancellationToken::new();
                let task = spawn_builtin(
                    &name,
                    config.clone(),
                    bound,
                    server.options.clone(),
                    &shutdown,
                );
                Running::Builtin {
                    config,
                    options: server.options,
                    shutdown,
                    task,
                }
            }
            PlannedServerKind::Command(spec) => {
                let (log, receiver) = EventStream::new(Interest {
                    events: true,
                    payloads: false,
                });
                let subscriber = WatchSubscriber(Arc::clone(&watch));
                std::thread::spawn(move || {
                    let mut subscribers: [Box<dyn RunSubscriber>; 1] = [Box::new(subscriber)];
                    crate::event::feed(receiver, &mut subscribers);
                });
                Running::Command {
                    spec: Box::new(spec),
                    process: None,
                    addresses: Arc::clone(addresses),
                    captures: Arc::clone(captures),
                    log,
                    tail: OutputTail::default(),
                    baseline: 0,
                }
            }
            PlannedServerKind::Address => Running::Address,
            PlannedServerKind::Script { script, bound, .. } => {
                let shutdown = CancellationToken::new();
                let task = spawn_script(
                    &name,
                    Arc::clone(&script),
                    bound,
                    server.options.clone(),
                    settings,
                    &shutdown,
                );
                Running::Script {
                    script,
                    options: server.options,
                    step_timeout: settings.step_timeout,
                    unread: settings.unread,
                    shutdown,
                    task,
                }
            }
        };
        let mut target = Self {
            name,
            proto: server.proto,
            addr: server.addr,
            running,
            watch,
            restarts: 0,
            suspect: false,
            memory_limit,
        };
        if matches!(target.running, Running::Command { .. }) {
            target.launch().await?;
        }
        Ok(target)
    }

    /// A server outside the scenario, at the literal address a client connects to:
    /// never started, stopped or restarted (like an `address` server).
    pub fn outside(addr: SocketAddr, proto: Proto) -> Self {
        Self {
            name: Arc::from(addr.to_string()),
            proto,
            addr,
            running: Running::Address,
            watch: Arc::new(Mutex::new(Watch::default())),
            restarts: 0,
            suspect: false,
            memory_limit: 0,
        }
    }

    /// Starts the program (again) on a fresh port, with the readiness rules of a
    /// run (`ready`, `ready_timeout`, `ready_delay`).
    async fn launch(&mut self) -> Result<(), String> {
        let Running::Command {
            spec,
            process,
            addresses,
            captures,
            log,
            tail,
            baseline,
        } = &mut self.running
        else {
            return Ok(());
        };
        if let Some(mut old) = process.take() {
            old.stop(log).await;
        }
        // A fresh port each time: the old one may sit in TIME_WAIT, and a program
        // that does not set SO_REUSEADDR could not bind it again.
        let port = crate::plan::free_port(self.proto, self.addr.ip())
            .map_err(|e| format!("server `{}`: cannot find a free port: {e}", self.name))?;
        let addr = SocketAddr::new(self.addr.ip(), port);
        let lookup = |name: &str| {
            if name == &*self.name {
                Some(addr)
            } else {
                addresses.get(name).copied()
            }
        };
        let failed = |e: String| format!("server `{}`: {e}", self.name);
        // `{VAR}` in the command or env: what an earlier server's `ready = { log }`
        // captured, as the runner gives it (the seed passed, so it has a value).
        let known = lock_captures(captures).clone();
        let var = |name: &str| known.get(name).cloned();
        let launch = Launch::server_with_variables(spec, port, &lookup, &var).map_err(|missing| {
            failed(format!(
                "the variable `{missing}` in its `command` or `env` has no value: only a capture of an earlier server's `ready = {{ log }}` can be used there"
            ))
        })?;
        let mut program = Program::spawn(launch, log, tail, &self.name).map_err(failed)?;
        let mut ready = program
            .wait_ready(&spec.ready, self.proto, addr, spec.ready_timeout)
            .await;
        if ready.is_ok() && !spec.ready_delay.is_zero() {
            tokio::time::sleep(spec.ready_delay).await;
            if let Some(exit) = program.exited() {
                ready = Err(format!(
                    "the program exited during its ready_delay ({})",
                    exit.describe()
                ));
            }
        }
        if let Err(e) = ready {
            program.finish(log).await;
            return Err(failed(e));
        }
        self.addr = addr;
        // Its captures are variables for the servers started after it.
        lock_captures(captures).extend(program.log_captures());
        *baseline = program.resident_bytes();
        *process = Some(program);
        // Output of the old process (its last traceback) belongs to the finding
        // already judged; start the new one clean.
        let mut watch = lock(&self.watch);
        watch.symptoms.clear();
        watch.scanners = Default::default();
        Ok(())
    }

    /// Starts the server again: a program is relaunched; a built-in server keeps
    /// running (its connections are independent), unless its task ended.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.restarts += 1;
        self.suspect = false;
        match &mut self.running {
            Running::Command { .. } => self.launch().await,
            Running::Builtin {
                config,
                options,
                shutdown,
                task,
            } => {
                if task.is_finished() {
                    let bound = rebind(&self.name, self.proto, &mut self.addr, options)?;
                    *task =
                        spawn_builtin(&self.name, config.clone(), bound, options.clone(), shutdown);
                }
                take_panics();
                Ok(())
            }
            Running::Script {
                script,
                options,
                step_timeout,
                unread,
                shutdown,
                task,
            } => {
                if task.is_finished() {
                    let bound = rebind(&self.name, self.proto, &mut self.addr, options)?;
                    let settings = ScriptSettings {
                        step_timeout: *step_timeout,
                        unread: *unread,
                    };
                    *task = spawn_script(
                        &self.name,
                        Arc::clone(script),
                        bound,
                        options.clone(),
                        settings,
                        shutdown,
                    );
                }
                take_panics();
                Ok(())
            }
            Running::Address => Ok(()),
        }
    }

    /// Whether the target has failed since the last check: a program that exited
    /// (with its report, if it printed one), a report on its output, a panic of a
    /// built-in server, memory beyond the limit.
    pub async fn check(&mut self, with_memory: bool) -> Option<Symptom> {
        let symptom = self.check_now(with_memory).await;
        self.suspect |= symptom.is_some();
        symptom
    }

    async fn check_now(&mut self, with_memory: bool) -> Option<Symptom> {
        match &mut self.running {
            Running::Command {
                spec,
                process,
                baseline,
                log,
                ..
            } => {
                let process = process.as_mut()?;
                if let Some(exit) = process.exited() {
                    let status = exit.describe();
                    // Its report (a traceback) is judged whole, however late a loaded
                    // machine delivers it: the pipes read to their end, then every
                    // line through the stream to the watch.
                    process.drain_output(OUTPUT_DRAIN_LIMIT).await;
                    read_to_here(log, &self.watch, OUTPUT_DRAIN_LIMIT).await;
                    let mut watch = lock(&self.watch);
                    let first = watch.symptoms.drain(..).next();
                    // A report cut short by the exit, stderr's first (where runtimes write).
                    let report = first
                        .or_else(|| watch.scanners[1].finish())
                        .or_else(|| watch.scanners[0].finish());
                    let mut symptom = report.unwrap_or_else(|| {
                        let last = watch.last.last().cloned().unwrap_or_default();
                        let mut symptom = Symptom::new(
                            Kind::Crash,
                            status.clone(),
                            format!("the server ended ({status}); its last line: {last}"),
                        );
                        symptom.detail = watch.last.clone();
                        symptom
                    });
                    if symptom.kind != Kind::Crash {
                        symptom.summary =
                            format!("{} (the server ended: {status})", symptom.summary);
                    }
                    return Some(symptom);
                }
                if let Some(symptom) = lock(&self.watch).symptoms.drain(..).next() {
                    return Some(symptom);
                }
                let ceiling = memory_ceiling(spec, *baseline, self.memory_limit);
                if let (true, Some((ceiling, why))) = (with_memory, ceiling) {
                    let rss = process.resident_bytes();
                    if rss > ceiling {
                        return Some(Symptom::new(
                            Kind::MemoryGrowth,
                            "memory growth",
                            format!(
                                "the server's memory grew from {} MiB to {} MiB ({why})",
                                *baseline >> 20,
                                rss >> 20,
                            ),
                        ));
                    }
                }
                None
            }
            Running::Builtin { .. } | Running::Script { .. } => take_panics().into_iter().next(),
            Running::Address => None,
        }
    }

    /// [`Target::check`] after the seed got no answer: a program whose listener is
    /// gone but whose exit has not been collected yet (a loaded machine is slow to
    /// tell) is given up to `patience` to end, so its crash is reported as the
    /// crash, not as a hang. `None`: no symptom, so the server hangs.
    pub async fn check_after_silence(&mut self, patience: Duration) -> Option<Symptom> {
        if let Running::Command {
            process: Some(process),
            ..
        } = &mut self.running
        {
            let _ = tokio::time::timeout(patience, process.wait_exit()).await;
        }
        self.check(false).await
    }

    /// The resident memory a program may reach before the fuzzer calls it growth,
    /// rounded up to a whole MiB: its size right after its last start plus
    /// `--memory-limit`, or the seed's own `max_memory` on it where that is lower.
    /// `None` for a target that is not a program, or with neither limit.
    pub fn memory_ceiling(&self) -> Option<u64> {
        match &self.running {
            Running::Command { spec, baseline, .. } => {
                let (ceiling, _) = memory_ceiling(spec, *baseline, self.memory_limit)?;
                Some(ceiling.div_ceil(1 << 20) << 20)
            }
            _ => None,
        }
    }

    /// Whether the target is a program the fuzzer started (and can restart, and
    /// whose memory it watches).
    pub fn is_program(&self) -> bool {
        matches!(self.running, Running::Command { .. })
    }

    /// Kinds of output line never seen before, since the last call.
    pub fn take_new_lines(&self) -> usize {
        std::mem::take(&mut lock(&self.watch).new_kinds)
    }

    /// Stops whatever was started.
    pub async fn stop(&mut self) {
        match &mut self.running {
            Running::Command { process, log, .. } => {
                if let Some(mut process) = process.take() {
                    process.stop(log).await;
                }
                log.close();
            }
            Running::Builtin { shutdown, task, .. } | Running::Script { shutdown, task, .. } => {
                shutdown.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
            Running::Address => {}
        }
    }
}

/// The memory a program may hold before it is a finding, and why, in words for
/// the symptom: `--memory-limit` of growth over `baseline` (its size after start;
/// 0: unchecked), or the seed's `max_memory` on the server, whichever is lower (a
/// server the seed limits is held to that limit while fuzzed too).
fn memory_ceiling(spec: &CommandSpec, baseline: u64, growth: u64) -> Option<(u64, String)> {
    let by_growth = (growth > 0).then(|| {
        (
            baseline.saturating_add(growth),
            format!("limit: {} MiB of growth", growth >> 20),
        )
    });
    let declared = spec.max_memory.as_ref().map(|limit| {
        (
            limit.value,
            format!("over its `{}` (line {})", limit.text, limit.location.line),
        )
    });
    match (by_growth, declared) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Sends a [`READ_TO_HERE`] marker through `log` and waits, at most `limit`, until
/// the watch has seen it: every event recorded before it has then been read.
async fn read_to_here(log: &EventStream, watch: &Arc<Mutex<Watch>>, limit: Duration) {
    let wanted = lock(watch).marks_seen + 1;
    log.record(
        &Arc::from(READ_TO_HERE),
        EventKind::ProcessExited {
            status: String::new(),
        },
    );
    let deadline = tokio::time::Instant::now() + limit;
    while lock(watch).marks_seen < wanted && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn spawn_builtin(
    name: &Arc<str>,
    config: BuiltinConfig,
    bound: servers::Bound,
    options: SocketOptions,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let context = ServerContext {
        log: EventStream::disabled(),
        actor: Arc::clone(name),
        options,
    };
    let task = servers::serve(config, bound, context, shutdown.clone());
    tokio::spawn(async move {
        let _ = task.await;
    })
}

fn spawn_script(
    name: &Arc<str>,
    script: Script,
    bound: servers::Bound,
    options: SocketOptions,
    settings: ScriptSettings,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(crate::runner::serve_script_until(
        Arc::clone(name),
        bound,
        options,
        script,
        settings.step_timeout,
        settings.unread,
        shutdown.clone(),
    ))
}

/// A new socket for an in-process server whose task ended, on a fresh port of the
/// same address (the old port may still be held by its last connections); `addr`
/// becomes where it listens.
fn rebind(
    name: &str,
    proto: Proto,
    addr: &mut SocketAddr,
    options: &SocketOptions,
) -> Result<servers::Bound, String> {
    let bound = servers::bind(proto, SocketAddr::new(addr.ip(), 0), options)
        .map_err(|e| format!("cannot bind a new socket for `{name}`: {e}"))?;
    *addr = bound.local_addr().map_err(|e| e.to_string())?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdout_line_amid_a_traceback_on_stderr_is_not_its_exception() {
        // Python flushes its buffered stdout at exit, after the traceback went to
        // stderr; the two pipes are read apart, so the line can land anywhere.
        let mut watch = Watch::default();
        let stderr = [
            "Traceback (most recent call last):",
            "  File \"srv.py\", line 81, in serve",
            "    text = payload.decode(\"utf-8\")",
        ];
        for line in stderr {
            watch.line(OutputStream::Stderr, line);
        }
        watch.line(
            OutputStream::Stdout,
            "connection ended: frame too long: 1701143909 bytes",
        );
        assert!(watch.symptoms.is_empty(), "{:?}", watch.symptoms);
        watch.line(
            OutputStream::Stderr,
            "UnicodeDecodeError: 'utf-8' codec can't decode byte 0x80",
        );
        assert_eq!(watch.symptoms.len(), 1, "{:?}", watch.symptoms);
        assert_eq!(
            watch.symptoms[0].signature,
            "UnicodeDecodeError at srv.py:81 in serve"
        );
    }
}
