//! One program under test: started in its own process group, awaited until ready
//! (without touching it, by default), its output captured line by line as events,
//! its exit status watched, and stopped with every descendant at the end, whatever
//! way the run ends.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{sockets, tree};
use crate::duration::format_duration;
use crate::event::{EventKind, EventStream, OutputStream};
use crate::runner::OutputTail;
use crate::scenario::{CommandSpec, Readiness, Template};
use crate::vocab::Proto;

/// How much of one output line goes into an event; a program that prints megabytes
/// without a newline must not grow our memory.
const MAX_LINE: usize = 8 * 1024;
/// How many lines per stream go into the event log.
const MAX_LINES: usize = 10_000;
/// How much of a client program's whole stdout or stderr is kept for its MATCH.
pub const MAX_KEPT_OUTPUT: usize = 1 << 20;
/// How long a program gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long the output pipes may stay open after the program and its descendants
/// are gone (they cannot be: every holder is dead; this bounds the unforeseen).
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// Readiness polls of the socket table start this often and slow down to
/// [`POLL_MAX`]: a server that is up in 2 ms is seen at once, one that takes a
/// second costs a few dozen reads of the table.
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(20);
/// A port held by a process wirecheck cannot inspect is reported only after this
/// many polls in a row, so a socket that is being closed or handed over is not
/// blamed on anyone.
const UNSEEN_OWNER_POLLS: u32 = 5;
/// How many times the readiness-timeout message reads the socket table before it
/// says the program listens nowhere (one read can miss a socket; see `not_listening`).
const NOT_LISTENING_SCANS: u32 = 3;
/// How often a program's resident memory is sampled against its `max_memory`: often
/// enough that a program growing by 100 MB a second is stopped within about 10 MB
/// of its limit, rarely enough that a look at `/proc` (about a millisecond) costs
/// the run nothing that matters.
pub const MEMORY_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What to start.
pub struct Launch {
    /// The program and its arguments, placeholders already replaced.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Written to its stdin, which is then closed; `None`: stdin is empty.
    pub stdin: Option<Bytes>,
    /// Keep the whole stdout and stderr (up to [`MAX_KEPT_OUTPUT`]) for matching.
    pub keep_output: bool,
    /// `ready = { log = REGEX }`: watch the output for it.
    pub log_ready: Option<regex::Regex>,
}

impl Launch {
    /// A `command` server on `port`, its placeholders resolved through `lookup`
    /// (servers' and proxies' addresses) and `var` (the run's variables): the
    /// runner and `wirecheck fuzz` (which restarts servers on fresh ports, with
    /// the captures of earlier servers' `ready = { log }`) start servers the same
    /// way. The error is the first variable that has no value yet.
    pub fn server_with_variables(
        spec: &CommandSpec,
        port: u16,
        lookup: &dyn Fn(&str) -> Option<SocketAddr>,
        var: &dyn Fn(&str) -> Option<Bytes>,
    ) -> Result<Launch, String> {
        let (argv, env) = expand_command(&spec.argv, &spec.env, Some(port), lookup, var)?;
        Ok(Self::for_server(spec, argv, env))
    }

    fn for_server(spec: &CommandSpec, argv: Vec<String>, env: Vec<(String, String)>) -> Launch {
        Launch {
            argv,
            env,
            cwd: spec.cwd.clone(),
            stdin: None,
            keep_output: false,
            log_ready: match &spec.ready {
                Readiness::Log(regex) => Some(regex.clone()),
                _ => None,
            },
        }
    }
}

/// A program's `command` and `env` with every placeholder replaced: `own` is a
/// server's own port, `lookup` gives servers' and proxies' addresses, `var` the
/// run's variables. The error is the first variable that has no value yet.
#[allow(clippy::type_complexity)]
pub fn expand_command(
    argv: &[Template],
    env: &[(String, Template)],
    own: Option<u16>,
    lookup: &dyn Fn(&str) -> Option<SocketAddr>,
    var: &dyn Fn(&str) -> Option<Bytes>,
) -> Result<(Vec<String>, Vec<(String, String)>), String> {
    let argv = argv
        .iter()
        .map(|t| t.expand_text(own, lookup, var))
        .collect::<Result<_, _>>()?;
    let env = env
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.expand_text(own, lookup, var)?)))
        .collect::<Result<_, String>>()?;
    Ok((argv, env))
}

/// How a program ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// `None` if its status could not be collected.
    pub status: Option<ExitStatus>,
    /// When, since the program started.
    pub after: Duration,
}

impl Exit {
    /// `exit status: 3`, `signal: 11 (SIGSEGV)`, as the standard library words it.
    pub fn describe(&self) -> String {
        match &self.status {
            Some(status) => status.to_string(),
            None => "an exit status that could not be collected".into(),
        }
    }
}

/// The whole stdout or stderr of a program, as far as it was kept.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// More arrived than [`MAX_KEPT_OUTPUT`].
    pub truncated: bool,
}

/// A running program. Dropping it kills its process group and every descendant it
/// was seen with, so a panic or a cancelled run never leaves it behind.
pub struct Program {
    pub pid: u32,
    actor: Arc<str>,
    started: Instant,
    exit: watch::Receiver<Option<Exit>>,
    /// Set once wirecheck starts stopping it: an exit after that is wirecheck's doing.
    stopping: Arc<AtomicBool>,
    stdout: Option<JoinHandle<Captured>>,
    stderr: Option<JoinHandle<Captured>>,
    log_ready: Option<watch::Receiver<bool>>,
    /// The `ready = { log }` regex, and what its named groups captured.
    log_watch: Option<Arc<LogWatch>>,
    /// Every process seen below the program, `setsid` children included.
    known: HashSet<u32>,
    stopped: bool,
}

impl Program {
    /// Starts the program in its own process group, with `PYTHONUNBUFFERED=1`
    /// unless its `env` sets it (a Python program's prints reach the report while
    /// it runs, not when a block buffer fills).
    pub fn spawn(
        launch: Launch,
        log: &EventStream,
        tail: &OutputTail,
        actor: &Arc<str>,
    ) -> Result<Self, String> {
        let mut command = Command::new(&launch.argv[0]);
        command
            .args(&launch.argv[1..])
            .current_dir(&launch.cwd)
            .stdin(if launch.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so stopping it also stops what it started.
            .process_group(0)
            .kill_on_drop(true);
        if !launch.env.iter().any(|(k, _)| k == "PYTHONUNBUFFERED") {
            command.env("PYTHONUNBUFFERED", "1");
        }
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        let spawning = tree::spawn_guard();
        let mut child = command.spawn().map_err(|e| {
            let mut message = format!("cannot start `{}`: {e}", launch.argv.join(" "));
            if e.kind() == std::io::ErrorKind::NotFound && !launch.cwd.is_dir() {
                message.push_str(&format!(
                    " (the working folder {} does not exist)",
                    launch.cwd.display()
                ));
            } else if e.kind() == std::io::ErrorKind::NotFound {
                message.push_str(
                    " (the program is looked up on PATH; give a script to its interpreter, \
                     e.g. [\"python3\", \"server.py\"], or an absolute path)",
                );
            }
            message
        })?;
        let pid = child.id().unwrap_or(0);
        tree::register_spawned(pid);
        drop(spawning);
        let started = Instant::now();
        let (log_ready_tx, log_ready) = match launch.log_ready {
            Some(regex) => {
                let (matched, rx) = watch::channel(false);
                let watch = LogWatch {
                    regex,
                    matched,
                    captures: std::sync::Mutex::default(),
                };
                (Some(Arc::new(watch)), Some(rx))
            }
            None => (None, None),
        };
        let capture_task = |stream: Option<Box<dyn AsyncRead + Unpin + Send>>, which| {
            stream.map(|stream| {
                tokio::spawn(capture(
                    stream,
                    which,
                    log.clone(),
                    tail.clone(),
                    Arc::clone(actor),
                    launch.keep_output,
                    log_ready_tx.clone(),
                ))
            })
        };
        let stdout = capture_task(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
            OutputStream::Stdout,
        );
        let stderr = capture_task(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>),
            OutputStream::Stderr,
        );
        if let (Some(mut stdin), Some(data)) = (child.stdin.take(), launch.stdin) {
            // A program that never reads its stdin must not block the run: the write
            // runs on its own and ends when the program exits (broken pipe).
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
                let _ = stdin.shutdown().await;
            });
        }
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            tree::forget_spawned(pid);
            let _ = exit_tx.send(Some(Exit {
                status,
                after: started.elapsed(),
            }));
        });
        Ok(Self {
            pid,
            actor: Arc::clone(actor),
            started,
            exit,
            stopping: Arc::new(AtomicBool::new(false)),
            stdout,
            stderr,
            log_ready,
            log_watch: log_ready_tx,
            known: HashSet::from([pid]),
            stopped: false,
        })
    }

    /// What the named groups of its `ready = { log }` regex captured in the line
    /// that made it ready (empty before that, or without such groups).
    pub fn log_captures(&self) -> Vec<(String, Bytes)> {
        self.log_watch.as_ref().map_or_else(Vec::new, |watch| {
            watch
                .captures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// How it ended, if it has.
    pub fn exited(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Resolves when the program exits on its own, before wirecheck stops it; never
    /// resolves for an exit wirecheck caused.
    pub fn exit_on_its_own(&self) -> impl std::future::Future<Output = Exit> + Send + 'static {
        let mut exit = self.exit.clone();
        let stopping = Arc::clone(&self.stopping);
        async move {
            let ended = exit
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|e| e.clone());
            match ended {
                Some(ended) if !stopping.load(Ordering::SeqCst) => ended,
                _ => std::future::pending().await,
            }
        }
    }

    /// Samples the resident memory of the program and everything it started (see
    /// [`tree::resident_bytes`]) every [`MEMORY_SAMPLE_EVERY`], and resolves with
    /// `Some(size seen)` once it is more than `limit` bytes, or with `None` once the
    /// program has exited (whoever ended it), so a watching task ends with it. The
    /// first sample is taken at once.
    pub fn memory_over(
        &self,
        limit: u64,
    ) -> impl std::future::Future<Output = Option<u64>> + Send + 'static {
        let pid = self.pid;
        let mut exit = self.exit.clone();
        async move {
            let mut every = tokio::time::interval(MEMORY_SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = exit.wait_for(Option::is_some) => return None,
                }
                // Off the runtime's threads: reading /proc is blocking file I/O.
                let seen = tokio::task::spawn_blocking(move || tree::resident_bytes(pid))
                    .await
                    .unwrap_or(0);
                if exit.borrow().is_some() {
                    return None;
                }
                if seen > limit {
                    return Some(seen);
                }
            }
        }
    }

    /// The resident memory of the program and everything it started, now (0 once
    /// it has exited).
    pub fn resident_bytes(&self) -> u64 {
        if self.exited().is_some() {
            return 0;
        }
        tree::resident_bytes(self.pid)
    }

    /// Resolves when the program exits, whoever caused it.
    pub async fn wait_exit(&mut self) -> Exit {
        let mut exit = self.exit.clone();
        let ended = exit
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|e| e.clone());
        ended.unwrap_or(Exit {
            status: None,
            after: self.started.elapsed(),
        })
    }

    fn not_exited(&self) -> Result<(), String> {
        match self.exited() {
            Some(exit) => Err(format!(
                "the program exited before it was ready ({}, after {})",
                exit.describe(),
                format_duration(exit.after)
            )),
            None => Ok(()),
        }
    }

    /// Checks, before the program starts, that nothing holds `addr`: with a fixed
    /// `bind`, an old server still running there would otherwise be tested instead
    /// of the new one.
    pub fn check_port_free(proto: Proto, addr: SocketAddr) -> Result<(), String> {
        let Ok(holders) = sockets::holders(proto, addr) else {
            return Ok(());
        };
        if holders.is_empty() {
            return Ok(());
        }
        let inodes: HashSet<u64> = holders.iter().map(|e| e.inode).collect();
        let all: Vec<u32> = tree::snapshot().iter().map(|p| p.pid).collect();
        let owners = sockets::owners(all, &inodes);
        match owners.values().next() {
            Some(&pid) => Err(held_by(proto, addr, pid)),
            None => Err(format!(
                "{addr} ({}) is already in use by a process wirecheck cannot inspect (another \
                 user's?); stop it or pick another port in `bind`",
                proto.name()
            )),
        }
    }

    /// Waits until the program is ready as `ready` says, for at most `timeout`.
    pub async fn wait_ready(
        &mut self,
        ready: &Readiness,
        proto: Proto,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        match ready {
            Readiness::Immediately => self.not_exited(),
            Readiness::Delay(delay) => {
                let mut exit = self.exit.clone();
                tokio::select! {
                    _ = tokio::time::sleep(*delay) => {}
                    _ = exit.wait_for(Option::is_some) => {}
                }
                self.not_exited()
            }
            Readiness::Log(regex) => {
                let Some(mut matched) = self.log_ready.clone() else {
                    return Ok(());
                };
                let mut exit = self.exit.clone();
                let outcome = tokio::select! {
                    seen = tokio::time::timeout_at(deadline, matched.wait_for(|m| *m)) => seen.is_ok(),
                    _ = exit.wait_for(Option::is_some) => false,
                };
                self.not_exited()?;
                if outcome {
                    Ok(())
                } else {
                    Err(format!(
                        "no line of its output matched `{}` within {timeout:?} (ready_timeout, ready = {{ log }})",
                        regex.as_str(),
                    ))
                }
            }
            Readiness::Connect => self.wait_connect(proto, addr, timeout, deadline).await,
            Readiness::Listening => self.wait_listening(proto, addr, timeout, deadline).await,
        }
    }

    /// The v1 probe: connect until a connection succeeds. The server sees it.
    async fn wait_connect(
        &mut self,
        proto: Proto,
        addr: SocketAddr,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), String> {
        if proto == Proto::Udp {
            // The loader refuses this combination; a UDP server has no handshake.
            return self.not_exited();
        }
        let mut pause = Duration::from_millis(5);
        loop {
            self.not_exited()?;
            let attempt = tokio::time::timeout(
                Duration::from_millis(250),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            if let Ok(Ok(_probe)) = attempt {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server did not accept a TCP connection on {addr} within {timeout:?} (ready_timeout, ready = \"connect\")"
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Every process of the program right now, plus the orphans this process
    /// adopted as a subreaper (a `setsid` grandchild whose parent exited), which
    /// may be this program's or another's: only the program's own descendants are
    /// remembered for stopping it.
    fn processes(&mut self) -> HashSet<u32> {
        let (descendants, adopted) = tree::ours(self.pid);
        // Remember them: after the program exits its children are no longer
        // below it, and stopping must still find them.
        self.known.extend(descendants.iter().copied());
        descendants.into_iter().chain(adopted).collect()
    }

    /// `ready = "listening"`: the kernel's socket table shows a socket of the
    /// program (or a descendant) listening on the port (TCP) or bound to it (UDP).
    /// Nothing connects to the program. A socket there of any other process is an
    /// error naming that process.
    async fn wait_listening(
        &mut self,
        proto: Proto,
        addr: SocketAddr,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), String> {
        let mut pause = POLL_MIN;
        let mut unseen_owner = 0;
        loop {
            // Whether it exited is read before the table, so a program that listened
            // and exited at once is judged by what it did, not by a stale table.
            let exited = self.not_exited();
            let holders = sockets::holders(proto, addr)
                .map_err(|e| format!("cannot read the kernel's socket table: {e}"))?;
            if !holders.is_empty() {
                let ours = self.processes();
                let inodes: HashSet<u64> = holders.iter().map(|e| e.inode).collect();
                let owners = sockets::owners(ours.iter().copied(), &inodes);
                if owners.len() == inodes.len() {
                    // An adopted orphan that listens on the program's port is the
                    // program's (a daemon that forked away): stop it with the program.
                    self.known.extend(owners.values().copied());
                    return Ok(());
                }
                let others: HashSet<u64> = inodes
                    .iter()
                    .copied()
                    .filter(|inode| !owners.contains_key(inode))
                    .collect();
                let everyone: Vec<u32> = tree::snapshot()
                    .iter()
                    .map(|p| p.pid)
                    .filter(|pid| !ours.contains(pid))
                    .collect();
                if let Some(&pid) = sockets::owners(everyone, &others).values().next() {
                    return Err(held_by(proto, addr, pid));
                }
                unseen_owner += 1;
                if unseen_owner >= UNSEEN_OWNER_POLLS && owners.is_empty() {
                    return Err(format!(
                        "{addr} ({}) is held by a process wirecheck cannot inspect (another \
                         user's?), not by the program it started",
                        proto.name()
                    ));
                }
            } else {
                unseen_owner = 0;
            }
            exited?;
            if Instant::now() >= deadline {
                return Err(self.not_listening(proto, addr, timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// The readiness timeout message, saying where the program does listen, which
    /// is the usual mistake (a port of its own instead of `{port}`).
    fn not_listening(&mut self, proto: Proto, addr: SocketAddr, timeout: Duration) -> String {
        let verb = match proto {
            Proto::Tcp => "listened",
            Proto::Udp => "bound a socket",
        };
        let mut message = format!(
            "no process of the program {verb} on {addr} ({}) within {timeout:?} (ready_timeout, ready = \"listening\")",
            proto.name(),
        );
        let ours = self.processes();
        // The kernel's socket table is read a page at a time, and a socket can be
        // skipped while other sockets come and go between two pages (a busy
        // machine, a test suite running in parallel). An empty answer is the one
        // that would mislead, so it is asked again before it is believed.
        let mut places: Vec<String> = Vec::new();
        for _ in 0..NOT_LISTENING_SCANS {
            let sockets = sockets::listening_sockets(proto).unwrap_or_default();
            let inodes: HashSet<u64> = sockets.iter().map(|e| e.inode).collect();
            let owned = sockets::owners(ours.iter().copied(), &inodes);
            places = sockets
                .iter()
                .filter(|e| owned.contains_key(&e.inode))
                .map(|e| e.local.to_string())
                .collect();
            if !places.is_empty() {
                break;
            }
        }
        places.sort();
        places.dedup();
        if places.is_empty() {
            message.push_str(&format!(
                "; it has no {} socket {} anywhere: does it take its port from its \
                 arguments (`{{port}}`)?",
                proto.name(),
                if proto == Proto::Tcp {
                    "listening"
                } else {
                    "bound"
                }
            ));
        } else {
            message.push_str(&format!(
                "; it {verb} on {} instead: pass it `{{port}}`, or set `bind` to where it listens",
                places.join(", ")
            ));
        }
        message
    }

    /// Waits until the program's output pipes are closed (everything it printed is
    /// in the log), at most `limit`.
    pub async fn drain_output(&mut self, limit: Duration) -> (Captured, Captured) {
        let deadline = Instant::now() + limit;
        let take = |handle: Option<JoinHandle<Captured>>| async move {
            match handle {
                Some(mut handle) => match tokio::time::timeout_at(deadline, &mut handle).await {
                    Ok(Ok(captured)) => captured,
                    _ => {
                        handle.abort();
                        Captured::default()
                    }
                },
                None => Captured::default(),
            }
        };
        let stdout = take(self.stdout.take()).await;
        let stderr = take(self.stderr.take()).await;
        (stdout, stderr)
    }

    /// Stops the program and everything it started: SIGTERM to its group and to every
    /// descendant seen (a `setsid` child has a group of its own), SIGKILL after a
    /// grace period, then SIGKILL to whatever is left. Records how it ended and
    /// waits for its last output. Returns a problem if anything is still alive.
    pub async fn stop(&mut self, log: &EventStream) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        self.stopping.store(true, Ordering::SeqCst);
        self.processes();
        let status = match self.exited() {
            Some(exit) => format!(
                "{} (on its own, after {})",
                exit.describe(),
                format_duration(exit.after)
            ),
            None => {
                self.signal_all(Signal::SIGTERM);
                match tokio::time::timeout(STOP_GRACE, self.wait_exit()).await {
                    Ok(exit) => exit.describe(),
                    Err(_) => {
                        self.signal_all(Signal::SIGKILL);
                        match tokio::time::timeout(STOP_GRACE, self.wait_exit()).await {
                            Ok(exit) => format!("{} (after SIGKILL)", exit.describe()),
                            Err(_) => "did not exit".into(),
                        }
                    }
                }
            }
        };
        log.record(&self.actor, EventKind::ProcessExited { status });
        // Descendants that ignored SIGTERM, or outlived their parent, end now.
        self.processes();
        self.signal_all(Signal::SIGKILL);
        let deadline = Instant::now() + STOP_GRACE;
        let problem = loop {
            tree::reap_adopted();
            let alive = self.alive();
            if alive.is_empty() {
                break None;
            }
            if Instant::now() >= deadline {
                break Some(format!(
                    "processes {alive:?} of program `{}` are still alive after SIGKILL",
                    self.actor
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        problem
    }

    /// [`Self::stop`], then everything it printed: the output pipes are read to
    /// their end (every writer is dead by then), so the last lines are in the log.
    pub async fn finish(&mut self, log: &EventStream) -> (Option<String>, Captured, Captured) {
        let problem = self.stop(log).await;
        let (stdout, stderr) = self.drain_output(DRAIN_LIMIT).await;
        (problem, stdout, stderr)
    }

    /// Signals the process group and every known descendant.
    fn signal_all(&self, signal: Signal) {
        signal_group(self.pid, signal);
        tree::signal_each(
            self.known.iter().copied().filter(|p| *p != self.pid),
            signal,
        );
        // A setsid child leads a group of its own; its children are in that group.
        for pid in &self.known {
            if *pid != self.pid {
                if let Some(info) = tree::read_stat(*pid) {
                    if info.pgrp == *pid {
                        signal_group(*pid, signal);
                    }
                }
            }
        }
    }

    /// The program's processes (its group, its known descendants) still running.
    fn alive(&self) -> Vec<u32> {
        let snapshot = tree::snapshot();
        snapshot
            .iter()
            .filter(|p| p.is_alive())
            .filter(|p| p.pgrp == self.pid || self.known.contains(&p.pid))
            .map(|p| p.pid)
            .collect()
    }

    /// Whether a line matching `ready = { log }` was printed.
    pub fn log_matched(&self) -> bool {
        self.log_ready.as_ref().is_some_and(|rx| *rx.borrow())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if !self.stopped {
            self.stopping.store(true, Ordering::SeqCst);
            self.signal_all(Signal::SIGKILL);
        }
    }
}

/// "held by pid N (command line)".
fn held_by(proto: Proto, addr: SocketAddr, pid: u32) -> String {
    let command = tree::command_line(pid).unwrap_or_else(|| "?".into());
    let who = if pid == std::process::id() {
        "wirecheck itself (another server of this or a parallel scenario)".to_owned()
    } else {
        format!("pid {pid} ({command})")
    };
    format!(
        "{addr} ({}) is already in use by {who}, which is not the program this scenario \
         started; stop it, or pick another port in `bind`",
        proto.name()
    )
}

/// Sends `signal` to every process of the group `pgid` (the program's pid: it
/// leads the group it was started in).
fn signal_group(pgid: u32, signal: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid as i32), signal);
    }
}

/// A `ready = { log = REGEX }` being watched for: set once, by the first line of
/// stdout or stderr that matches; its named groups are variables of the run.
struct LogWatch {
    regex: regex::Regex,
    matched: watch::Sender<bool>,
    captures: std::sync::Mutex<Vec<(String, Bytes)>>,
}

async fn capture(
    stream: impl AsyncRead + Unpin,
    which: OutputStream,
    log: EventStream,
    tail: OutputTail,
    actor: Arc<str>,
    keep: bool,
    log_ready: Option<Arc<LogWatch>>,
) -> Captured {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut lines = 0;
    let mut captured = Captured::default();
    loop {
        line.clear();
        let kept = keep.then_some(&mut captured);
        match take_line_bounded(&mut reader, &mut line, kept).await {
            Ok(0) | Err(_) => return captured,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(ready) = &log_ready {
            if !*ready.matched.borrow() {
                if let Some(found) = ready.regex.captures(text) {
                    let mut captures = ready.captures.lock().unwrap_or_else(|e| e.into_inner());
                    for name in ready.regex.capture_names().flatten() {
                        if let Some(group) = found.name(name) {
                            captures.push((
                                name.to_owned(),
                                Bytes::copy_from_slice(group.as_str().as_bytes()),
                            ));
                        }
                    }
                    drop(captures);
                    let _ = ready.matched.send(true);
                }
            }
        }
        if lines < MAX_LINES {
            lines += 1;
            tail.push(&actor, which, text);
            log.record(
                &actor,
                EventKind::ProcessOutput {
                    stream: which,
                    line: text.to_owned(),
                },
            );
        }
    }
}

/// Reads one line, keeping at most [`MAX_LINE`] bytes of it in `line` (and, with
/// `keep`, every byte up to [`MAX_KEPT_OUTPUT`] there); returns the line's whole
/// length.
async fn take_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    mut keep: Option<&mut Captured>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&available[..used.min(room)]);
        if let Some(kept) = keep.as_deref_mut() {
            // The whole output, not only the part of each line that goes into events.
            let room = MAX_KEPT_OUTPUT - kept.bytes.len();
            kept.bytes.extend_from_slice(&available[..used.min(room)]);
            kept.truncated |= used > room;
        }
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}
