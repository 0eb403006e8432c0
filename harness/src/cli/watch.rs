//! `run --watch`: run the selection, then run it again whenever something it depends
//! on changes, until Ctrl-C.
//!
//! What is watched: every folder given on the command line (recursively), the
//! folder of every scenario file given by name, and the folder of every file a
//! scenario names with `file = "..."` (data slices, uploads) outside those. Folders
//! rather than single files, because editors save by writing a new file and renaming
//! it over the old one, which a watch on the old file never sees; and the program
//! under test usually sits beside its scenario, so editing it re-runs too. What a
//! run writes itself (reports, traces, the rerun record, anything under `target/`
//! or `.git/`) never triggers a run, or the loop would feed itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::{discover, run_command, AfterRun, RunArgs, EXIT_INTERRUPTED, EXIT_USAGE};

/// Changes closer together than this are one change (an editor's save is several
/// events: write, rename, attributes).
const SETTLE: Duration = Duration::from_millis(200);

/// Runs `args` now and after every relevant change; returns the exit code of the
/// interrupted run, or 130 when interrupted between runs.
pub fn watch(args: RunArgs) -> i32 {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    }) {
        Ok(watcher) => watcher,
        Err(e) => {
            eprintln!("error: cannot watch files: {e}");
            return EXIT_USAGE;
        }
    };
    let ignored = ignored_paths(&args);
    let mut watched: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let Some(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
    else {
        eprintln!("error: cannot start the async runtime");
        return EXIT_USAGE;
    };
    loop {
        // Watch before running: a change made while the run goes is not lost.
        for (path, mode) in watch_list(&args) {
            if watched.iter().any(|(p, _)| *p == path) {
                continue;
            }
            match watcher.watch(&path, mode) {
                Ok(()) => watched.push((path, mode)),
                Err(e) => eprintln!("warning: cannot watch {}: {e}", path.display()),
            }
        }
        let code = run_command(args.clone(), AfterRun::RunAgain);
        if code == EXIT_INTERRUPTED || code > 128 {
            return code;
        }
        {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "watching {} folder(s) for changes; Ctrl-C stops",
                watched.len()
            );
            let _ = stdout.flush();
        }
        let changed = runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return None,
                    event = rx.recv() => match event {
                        None => return None,
                        Some(Ok(event)) => {
                            if let Some(path) = relevant(&event, &ignored) {
                                // Let the rest of this save arrive, then drop it.
                                tokio::time::sleep(SETTLE).await;
                                while rx.try_recv().is_ok() {}
                                return Some(path);
                            }
                        }
                        Some(Err(e)) => eprintln!("warning: watching failed: {e}"),
                    },
                }
            }
        });
        match changed {
            Some(path) => {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "changed: {}; running again",
                    path.display()
                );
            }
            None => return EXIT_INTERRUPTED,
        }
    }
}

/// The first path of `event` that should trigger a run, if any.
fn relevant(event: &notify::Event, ignored: &[PathBuf]) -> Option<PathBuf> {
    if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
        return None;
    }
    event
        .paths
        .iter()
        .find(|path| {
            let absolute = absolute(path);
            !ignored.iter().any(|i| absolute.starts_with(i))
                && !absolute
                    .components()
                    .any(|c| matches!(c.as_os_str().to_str(), Some("target" | ".git")))
                && !absolute
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| {
                        n.ends_with(".partial") || n.ends_with('~') || n.starts_with(".#")
                    })
        })
        .cloned()
}

fn absolute(path: &Path) -> PathBuf {
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    // Canonical where it exists (symlinked temp folders), else as given.
    path.canonicalize().unwrap_or(path)
}

/// What a run writes: never a reason to run again.
fn ignored_paths(args: &RunArgs) -> Vec<PathBuf> {
    [
        args.junit.as_ref(),
        args.json.as_ref(),
        args.tap.as_ref(),
        args.html.as_ref(),
        args.pcap.as_ref(),
        args.record.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        // The file may not exist yet: canonicalize its folder.
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                absolute(parent).join(name)
            }
            _ => absolute(p),
        }
    })
    .collect()
}

/// The folders to watch for `args`, found anew before each run (a new scenario may
/// name a new data file).
fn watch_list(args: &RunArgs) -> Vec<(PathBuf, RecursiveMode)> {
    fn add(list: &mut Vec<(PathBuf, RecursiveMode)>, path: PathBuf, mode: RecursiveMode) {
        if !list.iter().any(|(p, _)| *p == path) {
            list.push((path, mode));
        }
    }
    let mut list: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            add(&mut list, absolute(path), RecursiveMode::Recursive);
        } else if let Some(parent) = absolute(path).parent() {
            add(&mut list, parent.to_owned(), RecursiveMode::NonRecursive);
        }
    }
    let files = discover(&args.paths).unwrap_or_default();
    for file in files {
        let Ok(source) = std::fs::read_to_string(&file) else {
            continue;
        };
        let folder = absolute(&file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for name in referenced_files(&source) {
            let data = absolute(&folder.join(name));
            if let Some(parent) = data.parent() {
                let covered = list.iter().any(|(p, mode)| {
                    parent == p || (*mode == RecursiveMode::Recursive && parent.starts_with(p))
                });
                if !covered && parent.is_dir() {
                    add(&mut list, parent.to_owned(), RecursiveMode::NonRecursive);
                }
            }
        }
    }
    list
}

/// The values of `file = "..."` in a scenario's text: a textual scan, enough to
/// know which folders to watch (a file that does not load is watched by its folder).
pub fn referenced_files(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("file") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = value[1..].find(quote) {
            names.push(value[1..1 + end].to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_files_a_scenario_names() {
        let source = r#"
script = [ { send = { file = "data/a.bin", offset = 3 } }, { expect = { file='b.bin' } } ]
profile = "x"
# file_name = "not.me"
"#;
        assert_eq!(referenced_files(source), ["data/a.bin", "b.bin"]);
    }
}
