//! `wirecheck fuzz FILE`: arguments, output and exit code. The fuzzing itself is
//! [`crate::fuzz`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{EXIT_FAILED, EXIT_PASSED, EXIT_USAGE};
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
    /// Executions in flight at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
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
        jobs: args.jobs as usize,
        memory_limit: args.memory_limit << 20,
        stats_every: Duration::from_secs(2),
        stop_after: args.max_findings.map(|n| n as usize),
    };
    let Some(runtime) = super::runtime(options.jobs > 1) else {
        return EXIT_USAGE;
    };
    crate::fuzz::target::install_panic_hook();
    let log = |line: &str| eprintln!("{line}");
    let report = runtime.block_on(async {
        tokio::select! {
            report = fuzz::fuzz(&options, &log) => Some(report),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Dropping the runtime stops every program the fuzzer started.
    drop(runtime);
    let Some(report) = report else {
        eprintln!("fuzz: interrupted");
        return super::EXIT_INTERRUPTED;
    };
    let report = match report {
        Ok(report) => report,
        Err(message) => {
            eprintln!("error: {}", message.trim_end());
            return EXIT_USAGE;
        }
    };
    println!(
        "fuzz summary: {} execs in {} ({:.0}/s), corpus {}, {} finding(s), {} restart(s), seed {}",
        report.execs,
        format_duration(report.elapsed),
        report.execs_per_second(),
        report.corpus,
        report.findings.len(),
        report.restarts,
        report.seed
    );
    for finding in &report.findings {
        println!("  {}", finding.line());
    }
    if report.findings.is_empty() {
        EXIT_PASSED
    } else {
        println!("reproducers in {}", options.out.display());
        EXIT_FAILED
    }
}
