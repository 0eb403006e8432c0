//! `wirecheck fuzz FILE`: arguments, output and exit code. The fuzzing itself is
//! [`crate::fuzz`].

use std::path::PathBuf;
use std::time::Duration;

use std::sync::atomic::Ordering;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, EXIT_USAGE};
use crate::duration::{format_duration, parse_duration};
use crate::fuzz::{self, Budget, FuzzOptions};

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// A scenario that passes: its servers are fuzzed, its clients' scripts are the
    /// seed inputs.
    pub file: PathBuf,
    /// Fuzz for this long (`30s`, `5m`); the default when `--runs` is not given is 60s.
    #[arg(long, value_name = "DURATION", conflicts_with = "runs", value_parser = parse_duration)]
    pub time: Option<Duration>,
    /// Stop after N executions.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: Option<u64>,
    /// The random seed (printed at start); the same seed with `-j 1` replays the
    /// same inputs.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Where reproducers and `findings.txt` go.
    #[arg(long, value_name = "DIR", default_value = "fuzz-findings")]
    pub out: PathBuf,
    /// Executions in flight at once [default: 8 when every fuzzed server is built-in
    /// or scripted, 1 when one is a program or an address].
    #[arg(long, short = 'j', value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// Memory growth of a `command` server, in MiB, that counts as a finding (0: do
    /// not watch memory).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub memory_limit: u64,
    /// Stop once N distinct findings are in (`--max-findings 1`: stop at the first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_findings: Option<u64>,
}

pub fn fuzz_command(args: FuzzArgs) -> i32 {
    crate::runner::descriptors::open_file_limit();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
            % 1_000_000_000
    });
    let options = FuzzOptions {
        path: args.file,
        budget: match (args.runs, args.time) {
            (Some(runs), _) => Budget::Runs(runs),
            (None, time) => Budget::Time(time.unwrap_or(Duration::from_secs(60))),
        },
        seed,
        out: args.out,
        // 0: chosen from the scenario's servers once it is loaded.
        jobs: args.jobs.map_or(0, |n| n as usize),
        memory_limit: args.memory_limit << 20,
        stats_every: Duration::from_secs(2),
        stop_after: args.max_findings.map(|n| n as usize),
    };
    // The runtime has worker threads whatever `-j` is: the default is only known
    // once the scenario is loaded, and one thread per core costs nothing at -j 1.
    let Some(runtime) = super::runtime(true) else {
        return EXIT_USAGE;
    };
    crate::fuzz::target::install_panic_hook();
    let log = |line: &str| eprintln!("{line}");
    let cancel = CancellationToken::new();
    let result = runtime.block_on(async {
        // The runner's listener: SIGINT, SIGTERM or SIGHUP cancels the run (every
        // program is stopped, what was found is written, the summary printed); a
        // second one kills every program at once and exits.
        let interrupted_by = super::interrupt_listener(cancel.clone())
            .map_err(|e| format!("cannot listen for interrupts: {e}"))?;
        let report = fuzz::fuzz_until(&options, &log, cancel.clone()).await?;
        Ok::<_, String>((report, interrupted_by))
    });
    drop(runtime);
    let (report, interrupted_by) = match result {
        Ok(done) => done,
        Err(message) if cancel.is_cancelled() => {
            // Interrupted before the fuzzing started (a seed run cut short).
            eprintln!("fuzz: interrupted: {}", message.trim_end());
            return EXIT_INTERRUPTED;
        }
        Err(message) => {
            eprintln!("error: {}", message.trim_end());
            return EXIT_USAGE;
        }
    };
    let signal = interrupted_by.load(Ordering::SeqCst);
    if report.interrupted {
        eprintln!("fuzz: interrupted by {}", signal_name(signal));
    }
    println!(
        "fuzz summary: {} execs in {} ({:.0}/s, -j {}), corpus {}, {} finding(s), {} restart(s), seed {}{}",
        report.execs,
        format_duration(report.elapsed),
        report.execs_per_second(),
        report.jobs,
        report.corpus,
        report.findings.len(),
        report.restarts,
        report.seed,
        if report.interrupted { " (interrupted)" } else { "" }
    );
    for finding in &report.findings {
        println!("  {}", finding.line());
    }
    if !report.findings.is_empty() {
        println!("reproducers in {}", options.out.display());
    }
    if report.interrupted {
        128 + signal
    } else if report.findings.is_empty() {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "SIGINT",
    }
}
