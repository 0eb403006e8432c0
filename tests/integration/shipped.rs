//! Every scenario shipped under `scenarios/` loads and passes.
//!
//! rstest's `#[files]` expands the glob when this file is compiled, giving one named
//! test per scenario. A scenario added later is not seen until this file is rebuilt,
//! so `the_compiled_list_matches_the_folder` compares the compiled tests with the
//! folder at run time and says what to do when they differ.

use std::path::PathBuf;

use rstest::rstest;
use wirecheck::cli::discover;
use wirecheck::scenario::load_file;

use crate::{run_loaded, scenarios_dir};

#[rstest]
#[tokio::test]
async fn shipped_scenario_passes(#[files("../scenarios/**/*.toml")] path: PathBuf) {
    let scenario = load_file(&path).unwrap_or_else(|e| panic!("{}", e.render()));
    let outcome = run_loaded(&scenario).await;
    crate::assert_passed(&outcome);
}

#[test]
fn the_compiled_list_matches_the_folder() {
    let on_disk = discover(&[scenarios_dir()]).expect("the scenarios folder is readable");
    assert!(
        !on_disk.is_empty(),
        "no scenario under {}",
        scenarios_dir().display()
    );
    let exe = std::env::current_exe().expect("the test binary's path");
    let listing = std::process::Command::new(exe)
        .args(["--list", "shipped::shipped_scenario_passes::"])
        .output()
        .expect("the test binary lists its tests");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let compiled = listing
        .lines()
        .filter(|l| l.starts_with("shipped::shipped_scenario_passes::") && l.ends_with(": test"))
        .count();
    assert_eq!(
        compiled,
        on_disk.len(),
        "scenarios/ holds {} files but this test binary was compiled with {compiled}; \
         rstest expands `#[files]` at compile time, so rebuild it \
         (`touch tests/integration/shipped.rs`)",
        on_disk.len()
    );
}

/// The scenarios of `examples/naive/` run a tutorial's buggy program (or the v1
/// connect probe) against the checks its twin in `scenarios/programs/` passes:
/// each must fail, every time. Three runs each here; the tutorial's claim "every
/// time" is measured with `wirecheck run examples/naive --repeat 200` (BENCHMARKS.md).
#[rstest]
#[tokio::test]
async fn naive_example_fails(#[files("../examples/naive/*.toml")] path: PathBuf) {
    let scenario = load_file(&path).unwrap_or_else(|e| panic!("{}", e.render()));
    assert!(
        scenario.tags.iter().any(|t| t == "expected-failure"),
        "{} is not tagged expected-failure",
        path.display()
    );
    for _ in 0..3 {
        let outcome = run_loaded(&scenario).await;
        crate::failure(&outcome);
    }
}
