//! Command-line arguments and the commands they run. `main.rs` only calls
//! [`main_with_args`] and exits with its code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod proxy;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::event::{EventStream, Interest};
use crate::outcome::ScenarioOutcome;
use crate::report::{self, console::Console};
use crate::scenario::{self, LoadError, Proto, Scenario, SocketOptions};
use crate::servers::{self, BuiltinConfig, BuiltinKind, ServerContext};
use crate::suite::{
    run_suite, NoSubscribers, Reporter, RunId, RunRecord, RunSetup, SubscriberFactory,
    SuiteOptions, SuiteSummary,
};
use crate::trace::{self, TraceFormat, TraceSettings};

mod selection;
mod watch;
pub use selection::SelectionArgs;
mod fuzz;

/// Exit code: every scenario passed.
pub const EXIT_PASSED: i32 = 0;
/// Exit code: at least one scenario failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad usage, or a scenario file that is not valid.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: interrupted by Ctrl-C (128 + SIGINT, as shells do). SIGTERM gives
/// 143 and SIGHUP 129, the same way.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "wirecheck",
    version,
    about = "Test TCP and UDP protocol code with declarative scenarios on loopback",
    after_help = "Exit codes: 0 all passed, 1 a scenario failed, 2 usage or scenario-file errors, 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenario files (or every *.toml below folders), in parallel.
    Run(RunArgs),
    /// Validate scenario files without running them.
    Check(CheckArgs),
    /// Run a built-in reference server until Ctrl-C.
    Serve(ServeArgs),
    /// Turn a pcap or pcapng trace into a scenario that replays its conversation.
    Import(ImportArgs),
    /// Print the JSON Schema (draft 2020-12) of the scenario format, v1 and v2, for
    /// editors and validators (the repository ships it as scenario.schema.json).
    Schema,
    /// Fuzz the servers of a passing scenario with mutations of its clients' scripts.
    Fuzz(fuzz::FuzzArgs),
    /// Run one fault proxy in front of any program until SIGINT or SIGTERM,
    /// logging each fault action.
    Proxy(proxy::ProxyArgs),
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Scenario files or folders (searched recursively for *.toml).
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// How many scenario runs at once (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Run each scenario N times (the determinism check).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub repeat: u32,
    /// Try a failed run up to N more times; a run that then passes is FLAKY.
    /// Overrides every scenario's own `retries`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: Option<u32>,
    /// What a flaky run counts as: pass (the default) or fail.
    #[arg(long, value_enum, default_value_t = FlakyResult::Pass)]
    pub flaky_result: FlakyResult,
    /// After the first failed run, start no new run; the rest count as skipped.
    #[arg(long)]
    pub fail_fast: bool,
    /// Run only the scenarios that did not pass in the previous run of the same
    /// selection (recorded under target/wirecheck/, or in --record FILE).
    #[arg(long)]
    pub rerun_failed: bool,
    /// Run the selection again whenever a scenario file, or a file in a folder that
    /// holds one or that a scenario names, changes; until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Where to keep the record --rerun-failed reads (default:
    /// target/wirecheck/rerun-HASH.json, HASH naming the selection).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report (runs, failures, events) here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a TAP version 14 report here (one test point per run).
    #[arg(long, value_name = "FILE")]
    pub tap: Option<PathBuf>,
    /// Write a self-contained HTML report here: a summary table and a sequence
    /// diagram of every run drawn from its events.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write a packet trace of every run into DIR (`STEM-runN.pcapng`), synthesized
    /// from the run's events. A failed run's report names its trace.
    #[arg(long, value_name = "DIR")]
    pub pcap: Option<PathBuf>,
    /// Trace file format: pcapng (nanosecond timestamps, a comment per packet) or
    /// classic pcap.
    #[arg(long, value_enum, default_value_t = PcapFormat::Pcapng, requires = "pcap")]
    pub pcap_format: PcapFormat,
    /// Keep only the first N bytes of each packet in traces (lengths stay whole).
    #[arg(long, value_name = "N", requires = "pcap",
          value_parser = clap::value_parser!(u32).range(1..=262_144))]
    pub snaplen: Option<u32>,
    /// Capture the real packets on `lo` (AF_PACKET; needs CAP_NET_RAW) instead of
    /// synthesizing them. Without the privilege, traces are synthesized.
    #[arg(long, requires = "pcap")]
    pub capture: bool,
    /// Use seed N for every fault proxy (overrides each proxy's `seed`): replays
    /// the fault decisions of a run whose report printed that seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// `--flaky-result` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlakyResult {
    Pass,
    Fail,
}

/// `--pcap-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PcapFormat {
    Pcapng,
    Pcap,
}

impl From<PcapFormat> for TraceFormat {
    fn from(format: PcapFormat) -> Self {
        match format {
            PcapFormat::Pcapng => TraceFormat::Pcapng,
            PcapFormat::Pcap => TraceFormat::Pcap,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A pcap or pcapng file (Ethernet with VLAN tags, raw IP, Linux cooked v1/v2,
    /// BSD loopback, PPP; tunnels inside them).
    pub trace: PathBuf,
    /// Replay against the server at HOST:PORT instead of scripted servers.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// Write the scenario here, and its payloads to OUT.bin beside it. Without it
    /// the scenario goes to standard output with its payloads inline (up to 16 MiB).
    #[arg(long, short = 'o', value_name = "OUT.toml")]
    pub output: Option<PathBuf>,
    /// The scenario's name (default: `imported from FILE`).
    #[arg(long)]
    pub name: Option<String>,
    /// `keep`: each recorded segment is one write call; `merge`: one write per run
    /// of one side's bytes.
    #[arg(long, value_name = "keep|merge", default_value = "keep", value_parser = parse_import_option::<trace::import::Boundaries>)]
    pub boundaries: trace::import::Boundaries,
    /// `keep`: replay the recorded gaps as sleeps (each at most 60 s); `none`: as
    /// fast as the peers go; `scaled:F`: the gaps times F.
    #[arg(long, value_name = "keep|none|scaled:F", default_value = "keep", value_parser = parse_import_option::<trace::import::Timing>)]
    pub timing: trace::import::Timing,
    /// Import only these conversations: tcp:N or udp:N (numbered as --list shows,
    /// like tshark's tcp.stream; a bare N is tcp:N), port:P, an address, or
    /// ADDRESS:PORT. Repeat to import several.
    #[arg(long = "conversation", value_name = "WHICH", value_parser = parse_import_option::<trace::import::Selector>)]
    pub conversations: Vec<trace::import::Selector>,
    /// Print the conversations of the trace (protocol, endpoints, bytes each way,
    /// packets, gaps) and write nothing.
    #[arg(long)]
    pub list: bool,
}

fn parse_import_option<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, String> {
    text.parse()
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scenario files or folders.
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which server (see --list).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// Transport.
    #[arg(long, value_enum, default_value_t = ServeProto::Tcp)]
    pub proto: ServeProto,
    /// Framing for servers that use one (same as `--set framing=NAME`; the command
    /// server also takes `none`).
    #[arg(long)]
    pub framing: Option<String>,
    /// Read size for readsplit (same as `--set read_size=N`).
    #[arg(long)]
    pub read_size: Option<usize>,
    /// Any option a scenario may set beside `builtin = "NAME"`, as KEY=VALUE with a
    /// TOML value (`--set clock="2024-01-02T03:04:05Z"`, `--set max_reply=1024`);
    /// a value that is not valid TOML is taken as a string. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Allow listening on an address other than loopback.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// List the built-in servers and exit.
    #[arg(long)]
    pub list: bool,
}

/// `serve --proto` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeProto {
    Tcp,
    Udp,
}

impl From<ServeProto> for Proto {
    fn from(proto: ServeProto) -> Self {
        match proto {
            ServeProto::Tcp => Proto::Tcp,
            ServeProto::Udp => Proto::Udp,
        }
    }
}

/// Writes to stdout, ignoring a closed pipe: `wirecheck check | head` must not
/// panic the way `print!` does when the reader goes away.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Parses arguments, runs the command, returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_PASSED
            };
        }
    };
    if let Command::Run(args) = cli.command {
        return if args.watch {
            watch::watch(args)
        } else {
            run_command(args, AfterRun::Exit)
        };
    }
    // Only the commands that do network work get an async runtime: starting one
    // costs threads and time that `check` or `schema` would only throw away.
    let networked = match cli.command {
        Command::Run(args) => return run_command(args, AfterRun::Exit),
        Command::Fuzz(args) => return fuzz::fuzz_command(args),
        Command::Check(args) => return check(args),
        Command::Import(args) => return import(args),
        Command::Schema => {
            out!("{}", crate::schema::render());
            return EXIT_PASSED;
        }
        command @ (Command::Serve(_) | Command::Proxy(_)) => command,
    };
    let Some(runtime) = runtime(true) else {
        return EXIT_USAGE;
    };
    runtime.block_on(async {
        match networked {
            Command::Serve(args) => serve(args).await,
            Command::Proxy(args) => proxy::proxy(args).await,
            _ => unreachable!("only serve and proxy are left"),
        }
    })
}

/// The async runtime: several worker threads, or one. A single scenario run is a
/// chain of small round trips, and on one thread each wake-up stays on the core
/// that saw the socket ready; runs in parallel (`-j`) want every core.
pub(crate) fn runtime(multi_thread: bool) -> Option<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    match builder.enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `wirecheck run`: loads and selects the files first (no runtime needed), then
/// runs them on a runtime sized for the work.
/// What comes after a `wirecheck run`: the process's exit, or (`--watch`) the
/// next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRun {
    Exit,
    RunAgain,
}

fn run_command(args: RunArgs, after: AfterRun) -> i32 {
    // A report that cannot be written would otherwise fail only after every run.
    for (flag, path) in [
        ("--junit", &args.junit),
        ("--json", &args.json),
        ("--tap", &args.tap),
        ("--html", &args.html),
    ] {
        if let Some(path) = path {
            if let Err(problem) = check_report_path(path) {
                eprintln!("error: {flag} {}: {problem}", path.display());
                return EXIT_USAGE;
            }
        }
    }
    // Raise the open-file soft limit to the hard limit before anything opens a
    // socket; the client copies' descriptor budget is made from it.
    crate::runner::descriptors::open_file_limit();
    let prepared = match prepare_run(&args) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let runs = prepared.selected.len() * args.repeat as usize;
    let parallel = runs > 1 && args.jobs != Some(1);
    let Some(runtime) = runtime(parallel) else {
        return EXIT_USAGE;
    };
    // Orphans of the programs under test (a `setsid` child whose parent exited) are
    // re-parented to wirecheck instead of init, so they are still found and stopped.
    crate::programs::tree::become_subreaper();
    let code = runtime.block_on(run(args, prepared, after));
    // Whatever a program left behind that escaped every group is ended here.
    crate::programs::tree::kill_all_descendants();
    code
}

/// A run's selection, loaded and narrowed, before anything runs.
pub struct PreparedRun {
    /// The scenarios to run, in order.
    pub selected: Vec<Arc<Scenario>>,
    /// Files that did not load (reported, counted as failed).
    pub errors: Vec<LoadError>,
    /// Where this selection's rerun record lives.
    pub record_path: PathBuf,
    /// The selection before `--rerun-failed` narrowed it (the record's key).
    pub full_selection: Vec<PathBuf>,
    /// What the previous run recorded as not passed, when `--rerun-failed` used it.
    pub previous_failed: Option<Vec<PathBuf>>,
    /// Scenarios the filters kept before `--partition` took this job's share.
    pub matched_before_partition: usize,
}

/// Loads the files, applies the selection flags and `--rerun-failed`, and handles
/// `--list`. `Err` is the exit code when there is nothing more to do.
fn prepare_run(args: &RunArgs) -> Result<PreparedRun, i32> {
    let selection = args.selection.selection().map_err(|message| {
        eprint!("{message}");
        EXIT_USAGE
    })?;
    let (mut scenarios, errors) = load_all(&args.paths).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    // `--seed N` is every proxy's seed: the replay of a report's fault decisions.
    if let Some(seed) = args.seed {
        for scenario in &mut scenarios {
            for proxy in &mut scenario.proxies {
                proxy.seed = Some(seed);
            }
        }
    }
    let matched_before_partition = scenarios.iter().filter(|s| selection.matches(s)).count();
    let selected: Vec<Scenario> = selection.apply(scenarios, |s| s);
    let full_selection: Vec<PathBuf> = selected.iter().map(|s| s.path.clone()).collect();
    let record_path = args.record.clone().unwrap_or_else(|| {
        let paths: Vec<&Path> = full_selection.iter().map(PathBuf::as_path).collect();
        crate::select::rerun::default_path(&paths)
    });
    let mut previous_failed = None;
    let selected = if args.rerun_failed {
        match crate::select::rerun::load(&record_path) {
            Err(e) => {
                eprintln!("error: {e}");
                return Err(EXIT_USAGE);
            }
            Ok(None) => {
                eprintln!(
                    "note: no record of a previous run of this selection ({}); running all of it",
                    record_path.display()
                );
                selected
            }
            Ok(Some(record)) => {
                let rerun: Vec<Scenario> = selected
                    .into_iter()
                    .filter(|s| record.failed.contains(&s.path))
                    .collect();
                if rerun.is_empty() {
                    eprintln!(
                        "note: nothing failed in the previous run of this selection ({})",
                        record_path.display()
                    );
                } else {
                    eprintln!(
                        "note: re-running the {} scenario(s) that did not pass last time ({})",
                        rerun.len(),
                        record_path.display()
                    );
                }
                previous_failed = Some(record.failed);
                rerun
            }
        }
    } else {
        selected
    };
    if args.selection.list {
        for error in &errors {
            eprint!("{}", error.render());
        }
        selection::print_list(&selected);
        eprintln!("{} scenarios selected", selected.len());
        return Err(if errors.is_empty() {
            EXIT_PASSED
        } else {
            EXIT_USAGE
        });
    }
    Ok(PreparedRun {
        selected: selected.into_iter().map(Arc::new).collect(),
        errors,
        record_path,
        full_selection,
        previous_failed,
        matched_before_partition,
    })
}

/// Whether a report file can be created at `path`: it is not a folder and its
/// folder exists. Checked before anything runs.
fn check_report_path(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("this is a folder; give a file name".into());
    }
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Err(format!(
            "the folder {} does not exist; create it first (the report is written after the runs)",
            folder.display()
        ));
    }
    Ok(())
}

/// Expands folders into their *.toml files (sorted, recursive); files stay as given.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_toml(path, &mut files)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("{} does not exist", path.display()));
        }
    }
    Ok(files)
}

fn collect_toml(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_toml(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    Ok(())
}

/// Loads the files `paths` name, in order, on loader threads: a folder's files
/// in parallel, as many threads as cores (never more than files), a single file
/// on one thread of its own.
///
/// Why a thread even for one file: the run's exchanges happen on this thread,
/// and loading a long script is milliseconds of CPU. On the virtual machines we
/// measure on, a thread that has just been busy gets the server it talks to
/// woken on another, halted, core far more often, and each round trip then
/// waits for that core to wake; CPU spent on a thread that has exited does not
/// count. Measured in BENCHMARKS.md ("where the run's thread comes from"): the
/// median of 1,000 exchanges went from 1.1-1.5x a hand-written client's to
/// 0.86-0.97x.
fn load_all(paths: &[PathBuf]) -> Result<(Vec<Scenario>, Vec<LoadError>), String> {
    let files = discover(paths)?;
    let threads = match files.len() {
        0 | 1 => 1,
        many => std::thread::available_parallelism().map_or(1, |n| n.get().min(many)),
    };
    let per_thread = files.len().div_ceil(threads).max(1);
    // Each result comes back by its file's position as soon as it is loaded; the
    // loader thread then frees the file's syntax tree while this thread goes on
    // (see `scenario::load_file_then`).
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut workers = Vec::new();
    for (chunk, share) in files.chunks(per_thread).enumerate() {
        let first = chunk * per_thread;
        let owned_share = share.to_vec();
        let thread_sender = sender.clone();
        // The main thread's stack size: the loader recurses as deep as a file
        // nests, which the main thread has always allowed.
        let spawned = std::thread::Builder::new()
            .name("loader".into())
            .stack_size(8 << 20)
            .spawn(move || load_share(first, &owned_share, &thread_sender));
        match spawned {
            Ok(worker) => workers.push(worker),
            // No thread to be had: load here instead.
            Err(_) => load_share(first, share, &sender),
        }
    }
    drop(sender);
    let mut loaded: Vec<Option<Result<Scenario, LoadError>>> =
        std::iter::repeat_with(|| None).take(files.len()).collect();
    // Ends when every file is in, or early when a loader panicked (its sender
    // went with it).
    for _ in 0..files.len() {
        let Ok((index, result)) = receiver.recv() else {
            for worker in workers {
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            return Err("a loader thread ended without loading its files".to_owned());
        };
        loaded[index] = Some(result);
    }
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for result in loaded.into_iter().flatten() {
        match result {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(e),
        }
    }
    Ok((scenarios, errors))
}

/// Loads `share`, the files from position `first` on, and sends each result with
/// its position as soon as it is in.
fn load_share(
    first: usize,
    share: &[PathBuf],
    sender: &std::sync::mpsc::Sender<(usize, Result<Scenario, LoadError>)>,
) {
    for (offset, file) in share.iter().enumerate() {
        scenario::load_file_then(file, |result| {
            // The receiver outlives every loader; a send can fail only once
            // the loading thread has nothing left to report to.
            let _ = sender.send((first + offset, result));
        });
    }
}

async fn run(args: RunArgs, prepared: PreparedRun, after: AfterRun) -> i32 {
    let PreparedRun {
        selected,
        errors,
        record_path,
        full_selection,
        previous_failed,
        matched_before_partition,
    } = prepared;
    for error in &errors {
        eprint!("{}", error.render());
    }
    let nothing_to_rerun = previous_failed.is_some() && selected.is_empty();
    // With few scenarios and many CI jobs a job's share can be empty: that job has
    // nothing to do, which is not a mistake (a filter matching nothing is).
    let empty_share = selected.is_empty() && matched_before_partition > 0;
    if empty_share {
        eprintln!(
            "note: this job's share of --partition {} is empty ({matched_before_partition} scenarios selected in all)",
            args.selection.partition.as_deref().unwrap_or_default()
        );
    }
    if selected.is_empty() && errors.is_empty() && !nothing_to_rerun && !empty_share {
        eprintln!(
            "error: no scenario matched (paths: {:?}, filters: {:?}, expressions: {:?}, partition: {:?})",
            args.paths, args.selection.filter, args.selection.exprs, args.selection.partition
        );
        return EXIT_USAGE;
    }
    let repeat = args.repeat as usize;
    let options = SuiteOptions {
        repeat,
        // One run needs no more: asking the machine its parallelism reads cgroup
        // files, a cost every single-scenario run would pay for nothing.
        jobs: args
            .jobs
            .unwrap_or_else(|| match selected.len() * repeat {
                0 | 1 => 1,
                _ => std::thread::available_parallelism().map_or(2, |n| n.get()),
            })
            .max(1),
        retries: args.retries.map(|n| n as usize),
        fail_fast: args.fail_fast,
        flaky_fails: args.flaky_result == FlakyResult::Fail,
    };
    let cancel = CancellationToken::new();
    let interrupted_by = match interrupt_listener(cancel.clone()) {
        Ok(signal) => signal,
        Err(e) => {
            eprintln!("error: cannot listen for interrupts: {e}");
            return EXIT_USAGE;
        }
    };
    let factory: Arc<dyn SubscriberFactory> = match &args.pcap {
        Some(dir) => match TraceConfig::new(dir, &args, &selected) {
            Ok(config) => Arc::new(config),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        },
        None => Arc::new(NoSubscribers),
    };
    let total = selected.len() * repeat;
    let console =
        Console::new(total, repeat).with_progress(report::progress::Progress::for_terminal(total));
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(console)];
    if let Some(path) = &args.junit {
        reporters.push(Box::new(report::junit::JunitReporter::new(path)));
    }
    if let Some(path) = &args.json {
        reporters.push(Box::new(report::json::JsonReporter::new(path, repeat)));
    }
    if let Some(path) = &args.tap {
        let invalid = errors
            .iter()
            .map(|e| (e.path().to_owned(), e.render()))
            .collect();
        reporters.push(Box::new(report::tap::TapReporter::new(path, invalid)));
    }
    if let Some(path) = &args.html {
        let invalid = errors
            .iter()
            .map(|e| (e.path().to_owned(), e.render()))
            .collect();
        reporters.push(Box::new(report::html::HtmlReporter::new(
            path, repeat, invalid,
        )));
    }
    let result = run_suite(&selected, &options, cancel.clone(), factory, &mut reporters).await;
    let summary = SuiteSummary {
        scenarios: selected.len(),
        repeat,
        invalid_files: errors.len(),
        skipped: result.skipped.clone(),
        flaky_fails: options.flaky_fails,
    };
    let mut report_errors = 0;
    for reporter in &mut reporters {
        if let Err(e) = reporter.finish(&result.records, &summary) {
            eprintln!("error: {e}");
            report_errors += 1;
        }
    }
    let record = rerun_record(
        full_selection,
        previous_failed,
        &selected,
        &result.records,
        options.flaky_fails,
    );
    if let Err(e) = crate::select::rerun::save(&record_path, &record) {
        eprintln!("warning: {e}");
    }
    let (_, failed) = summary.counts(&result.records);
    if after == AfterRun::Exit {
        // The process ends right after this (`main` leaves with `_exit`), and the
        // kernel takes the memory back at once. Freeing the scenarios here would
        // read every step of every script once more, from lines long out of the
        // cache: 2,000 steps were 0.2-0.3 ms of a 12 ms run (BENCHMARKS.md,
        // "Second session of 28 Nov"). A watched run frees them: another follows.
        std::mem::forget(selected);
    }
    if cancel.is_cancelled() {
        128 + interrupted_by.load(std::sync::atomic::Ordering::SeqCst)
    } else if !errors.is_empty() || report_errors > 0 || result.subscriber_errors > 0 {
        EXIT_USAGE
    } else if failed == 0 && result.skipped.is_empty() {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    }
}

/// Cancels `cancel` on SIGINT, SIGTERM or SIGHUP (Ctrl-C, CI cancellation and
/// `timeout`, a closed terminal): every run stops, every program is stopped, the
/// reports are written. The returned number is the signal's, for the exit code
/// (128 + it). A second interrupt while that cleanup runs kills every program at
/// once and exits without reports.
fn interrupt_listener(
    cancel: CancellationToken,
) -> std::io::Result<Arc<std::sync::atomic::AtomicI32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let received = Arc::new(std::sync::atomic::AtomicI32::new(libc::SIGINT));
    let mut streams = [
        (libc::SIGINT, signal(SignalKind::interrupt())?),
        (libc::SIGTERM, signal(SignalKind::terminate())?),
        (libc::SIGHUP, signal(SignalKind::hangup())?),
    ];
    let record = Arc::clone(&received);
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let next = std::future::poll_fn(|cx| {
                for (number, stream) in streams.iter_mut() {
                    if let std::task::Poll::Ready(Some(())) = stream.poll_recv(cx) {
                        return std::task::Poll::Ready(*number);
                    }
                }
                std::task::Poll::Pending
            })
            .await;
            count += 1;
            if count == 1 {
                record.store(next, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel();
            } else {
                eprintln!("interrupted again: killing every program and exiting without reports");
                crate::programs::tree::kill_all_descendants();
                std::process::exit(128 + next);
            }
        }
    });
    Ok(received)
}

/// The record the next `--rerun-failed` reads: every scenario of this run that
/// did not pass every run (failed, skipped, interrupted), plus, after a
/// `--rerun-failed`, what failed before and was not run this time.
fn rerun_record(
    full_selection: Vec<PathBuf>,
    previous_failed: Option<Vec<PathBuf>>,
    ran: &[Arc<Scenario>],
    records: &[RunRecord],
    flaky_fails: bool,
) -> crate::select::rerun::RerunRecord {
    let passed = |path: &Path| {
        let runs: Vec<&RunRecord> = records.iter().filter(|r| r.outcome.path == path).collect();
        !runs.is_empty() && runs.iter().all(|r| !r.counts_as_failed(flaky_fails))
    };
    let ran_paths: Vec<&Path> = ran.iter().map(|s| s.path.as_path()).collect();
    let mut failed: Vec<PathBuf> = Vec::new();
    for path in &full_selection {
        let not_passed = if ran_paths.contains(&path.as_path()) {
            !passed(path) || records.iter().filter(|r| &r.outcome.path == path).count() == 0
        } else {
            previous_failed.as_ref().is_some_and(|f| f.contains(path))
        };
        if not_passed && !failed.contains(path) {
            failed.push(path.clone());
        }
    }
    crate::select::rerun::RerunRecord {
        selection: full_selection,
        failed,
    }
}

/// Runs every scenario `repeat` times with at most `jobs` runs at once, printing
/// progress as runs finish. Outcomes come back in scenario order.
pub async fn run_all(
    scenarios: &[Arc<Scenario>],
    repeat: usize,
    jobs: usize,
    cancel: CancellationToken,
) -> Vec<ScenarioOutcome> {
    let mut reporters: Vec<Box<dyn Reporter>> =
        vec![Box::new(Console::new(scenarios.len() * repeat, repeat))];
    let options = SuiteOptions {
        repeat,
        jobs,
        ..SuiteOptions::default()
    };
    run_suite(
        scenarios,
        &options,
        cancel,
        Arc::new(NoSubscribers),
        &mut reporters,
    )
    .await
    .records
    .into_iter()
    .map(|r| r.outcome)
    .collect()
}

/// Where and how `run --pcap` writes traces: the subscriber factory that gives
/// each run its [`trace::TraceWriter`].
#[derive(Debug)]
pub struct TraceConfig {
    pub dir: PathBuf,
    pub settings: TraceSettings,
    /// Capture on `lo` as well as synthesizing (only if the privilege is there).
    pub capture: bool,
    /// File stem of each scenario, by its index in the selection: the file's stem,
    /// with parent folders prefixed where two selected files share a stem.
    pub stems: Vec<String>,
}

impl TraceConfig {
    fn new(dir: &Path, args: &RunArgs, scenarios: &[Arc<Scenario>]) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the trace folder {}: {e}", dir.display()))?;
        let mut capture = args.capture;
        if capture {
            if let Err(e) = trace::capture::check_permission() {
                eprintln!(
                    "note: --capture needs a packet socket on `lo` ({e}); run as root or give the \
                     binary CAP_NET_RAW (`setcap cap_net_raw+ep`). Writing synthesized traces instead."
                );
                capture = false;
            }
        }
        let paths: Vec<&Path> = scenarios.iter().map(|s| s.path.as_path()).collect();
        Ok(Self {
            dir: dir.to_owned(),
            settings: TraceSettings {
                format: args.pcap_format.into(),
                snaplen: args.snaplen,
                fixed_isn: None,
            },
            capture,
            stems: unique_stems(&paths),
        })
    }

    /// `STEM-runN.pcapng`; a retry's attempt K (K > 1) gets `STEM-runN-tryK.pcapng`,
    /// so a flaky run keeps the trace of the attempt that failed.
    fn path_for(&self, index: usize, id: RunId) -> PathBuf {
        let stem = self.stems.get(index).map_or("scenario", String::as_str);
        let name = match id.attempt {
            1 => trace::trace_file_name(stem, id.run, self.settings.format),
            attempt => format!(
                "{stem}-run{}-try{attempt}.{}",
                id.run,
                self.settings.format.extension()
            ),
        };
        self.dir.join(name)
    }
}

impl SubscriberFactory for TraceConfig {
    fn interest(&self) -> Interest {
        Interest {
            events: true,
            payloads: true,
        }
    }

    fn make(
        &self,
        scenario: &Scenario,
        index: usize,
        id: RunId,
        stream: &EventStream,
    ) -> Result<RunSetup, String> {
        let path = self.path_for(index, id);
        let label = trace::RunLabel {
            scenario: scenario.name.clone(),
            path: scenario.path.clone(),
            run: id.run,
        };
        let mut writer =
            trace::TraceWriter::create(&path, &label, stream.started_at(), &self.settings)
                .map_err(|e| format!("cannot write the trace {}: {e}", path.display()))?;
        if self.capture {
            // A capture must be listening before the scenario's servers start.
            writer = match writer.with_capture(&label, &self.settings) {
                Ok(writer) => writer,
                Err(e) => {
                    eprintln!(
                        "warning: cannot capture on lo ({e}); synthesizing the trace of {}",
                        path.display()
                    );
                    trace::TraceWriter::create(&path, &label, stream.started_at(), &self.settings)
                        .map_err(|e| format!("cannot write the trace {}: {e}", path.display()))?
                }
            };
        }
        Ok(RunSetup {
            subscribers: vec![Box::new(writer)],
            trace: Some(path),
        })
    }
}

/// A file stem per path, unique among `paths`: the stem alone, or with as many parent
/// folder names (joined by `-`) as it takes to tell equal stems apart.
pub fn unique_stems(paths: &[&Path]) -> Vec<String> {
    // The same file named twice shares a name; its repeats are numbered below.
    let mut distinct: Vec<&Path> = Vec::new();
    for path in paths {
        if !distinct.contains(path) {
            distinct.push(path);
        }
    }
    let parts: Vec<Vec<String>> = distinct
        .iter()
        .map(|path| {
            let mut parts: Vec<String> = path
                .with_extension("")
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(part) => Some(sanitize(&part.to_string_lossy())),
                    _ => None,
                })
                .collect();
            parts.reverse();
            if parts.is_empty() {
                parts.push("scenario".into());
            }
            parts
        })
        .collect();
    let mut depth = vec![1usize; distinct.len()];
    let names = loop {
        let names: Vec<String> = parts
            .iter()
            .zip(&depth)
            .map(|(parts, &depth)| {
                let mut used: Vec<&str> = parts.iter().take(depth).map(String::as_str).collect();
                used.reverse();
                used.join("-")
            })
            .collect();
        let mut seen: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            seen.entry(name.as_str()).or_default().push(i);
        }
        let mut grew = false;
        for clash in seen.values().filter(|v| v.len() > 1) {
            for &i in clash {
                if depth[i] < parts[i].len() {
                    depth[i] += 1;
                    grew = true;
                }
            }
        }
        if !grew {
            break names;
        }
    };
    let mut count: HashMap<String, usize> = HashMap::new();
    paths
        .iter()
        .map(|path| {
            let index = distinct.iter().position(|p| p == path).unwrap_or(0);
            let name = names[index].clone();
            let n = count.entry(name.clone()).or_default();
            *n += 1;
            if *n == 1 {
                name
            } else {
                format!("{name}-{n}")
            }
        })
        .collect()
}

/// A file-name-safe version of a path component.
fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `wirecheck import`: a trace becomes a replay scenario.
fn import(args: ImportArgs) -> i32 {
    // Checked here, so a bad `--address` reads as the user's mistake rather than as
    // an invalid generated scenario.
    if let Some(address) = &args.address {
        use std::net::ToSocketAddrs as _;
        let resolved: Vec<SocketAddr> = address
            .to_socket_addrs()
            .map(|addrs| addrs.collect())
            .unwrap_or_default();
        if resolved.is_empty() {
            eprintln!("error: --address `{address}` is not HOST:PORT (e.g. 127.0.0.1:8080)");
            return EXIT_USAGE;
        }
        if !resolved.iter().all(|a| a.ip().is_loopback()) {
            eprintln!("error: --address `{address}` is not a loopback address; wirecheck only talks to this machine");
            return EXIT_USAGE;
        }
    }
    if args.list {
        let listed = std::fs::File::open(&args.trace)
            .map_err(|source| {
                trace::import::ImportError::Read(trace::read::ReadError::Io {
                    path: args.trace.clone(),
                    source,
                })
            })
            .and_then(|file| trace::import::list_conversations(file, &args.trace));
        return match listed {
            Ok(scan) => {
                for warning in &scan.warnings {
                    eprintln!("warning: {warning}");
                }
                if scan.flows.is_empty() {
                    eprintln!(
                        "{} holds no TCP or UDP conversation ({} packets read)",
                        args.trace.display(),
                        scan.frames
                    );
                } else {
                    out!("{}", trace::import::render_list(&scan.flows));
                }
                EXIT_PASSED
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        };
    }
    let options = trace::import::ImportOptions {
        address: args.address,
        name: args.name,
        boundaries: args.boundaries,
        timing: args.timing,
        conversations: args.conversations,
        output: args.output.clone(),
    };
    let imported = match trace::import::import_trace(&args.trace, &options) {
        Ok(imported) => imported,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    let summary = format!(
        "{} TCP connection(s) and {} UDP flow(s) from {} packets of {}",
        imported.tcp_connections,
        imported.udp_flows,
        imported.frames,
        args.trace.display()
    );
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return EXIT_USAGE;
            }
            match &imported.payload_file {
                Some((bin, size)) => eprintln!(
                    "imported {summary} into {} (payloads: {}, {size} bytes)",
                    path.display(),
                    bin.display()
                ),
                None => eprintln!("imported {summary} into {}", path.display()),
            }
        }
        None => {
            out!("{}", imported.toml);
            eprintln!("imported {summary}");
        }
    }
    if imported.refused > 0 {
        eprintln!(
            "note: {} refused or unanswered connection attempt(s) are listed as comments, not replayed",
            imported.refused
        );
    }
    EXIT_PASSED
}

/// `wirecheck check`: loads every file; with selection flags, reports only the
/// selected scenarios as valid (a file that does not load is always reported: its
/// name and tags are unknown, so no filter can tell it is not wanted).
fn check(args: CheckArgs) -> i32 {
    let selection = match args.selection.selection() {
        Ok(selection) => selection,
        Err(message) => {
            eprint!("{message}");
            return EXIT_USAGE;
        }
    };
    let (scenarios, errors) = match load_all(&args.paths) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let matched_before_partition = scenarios.iter().filter(|s| selection.matches(s)).count();
    let selected = selection.apply(scenarios, |s| s);
    for error in &errors {
        eprint!("{}", error.render());
    }
    let invalid = errors.len();
    if args.selection.list {
        selection::print_list(&selected);
    } else {
        for s in &selected {
            outln!("ok   {} ({})", s.path.display(), s.name);
        }
    }
    outln!("{} valid, {invalid} invalid", selected.len());
    // The same rule as `run`: nothing to check is a usage error, not a pass, except
    // for a CI job whose --partition share happens to be empty.
    if selected.is_empty() && invalid == 0 && matched_before_partition == 0 {
        eprintln!(
            "error: no scenario matched (paths: {:?}, filters: {:?}, expressions: {:?}, partition: {:?})",
            args.paths, args.selection.filter, args.selection.exprs, args.selection.partition
        );
        return EXIT_USAGE;
    }
    if invalid == 0 {
        EXIT_PASSED
    } else {
        EXIT_USAGE
    }
}

/// A standalone server's configuration: `--framing`, `--read-size` and every
/// `--set KEY=VALUE`, checked against the server's option schema (the one the
/// scenario loader uses, with the same messages). `Err` is the rendered report.
fn serve_config(
    kind: BuiltinKind,
    args: &ServeArgs,
) -> Result<(BuiltinConfig, SocketOptions), String> {
    use servers::OptionValue;
    let mut options = servers::CommandLineOptions::new();
    if let Some(framing) = &args.framing {
        options.flag(
            "--framing",
            "framing",
            framing,
            OptionValue::Str(framing.clone()),
        );
    }
    if let Some(size) = args.read_size {
        let value = OptionValue::Int(i64::try_from(size).unwrap_or(i64::MAX));
        options.flag("--read-size", "read_size", &size.to_string(), value);
    }
    for setting in &args.set {
        options.set(setting);
    }
    options.configure(kind).map_err(|error| error.render())
}

async fn serve(args: ServeArgs) -> i32 {
    if args.list {
        for kind in BuiltinKind::all() {
            outln!("{:<12} {}", kind.name(), kind.summary());
        }
        return EXIT_PASSED;
    }
    let name = args.name.clone().unwrap_or_default();
    let Some(kind) = BuiltinKind::from_name(&name) else {
        eprintln!(
            "error: unknown server `{name}`; built-in servers: {}",
            BuiltinKind::names().join(", ")
        );
        return EXIT_USAGE;
    };
    let proto = Proto::from(args.proto);
    if !kind.supports(proto) {
        eprintln!("error: `{name}` does not speak {}", proto.name());
        return EXIT_USAGE;
    }
    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        eprintln!(
            "error: {} is not a loopback address; pass --allow-non-loopback to listen there",
            args.listen
        );
        return EXIT_USAGE;
    }
    let (config, options) = match serve_config(kind, &args) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprint!("{message}");
            return EXIT_USAGE;
        }
    };
    let bound = match servers::bind(proto, args.listen, &options) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return EXIT_USAGE;
        }
    };
    let addr = bound
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    outln!(
        "{name} listening on {addr} ({}); Ctrl-C stops it",
        proto.name()
    );
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
    let context = ServerContext {
        log: crate::event::EventStream::disabled(),
        actor: Arc::from(name.as_str()),
        options,
    };
    match servers::serve(config, bound, context, shutdown).await {
        Ok(()) => EXIT_PASSED,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}
