//! Shared by every fuzz target in `fuzz_targets/`: the counting global
//! allocator that enforces the allocation budget (libFuzzer's `-malloc_limit_mb`
//! does nothing without a sanitizer), and re-exports of the checks.
//!
//! A target is one line: it hands its input to [`Target::run`] or, for the
//! structured targets, to the check for its `arbitrary` input type. The same
//! checks replay the committed corpora under `cargo test`
//! (tests/integration/fuzz_corpora.rs), so everything a target asserts lives
//! in the `wirecheck-fuzz-checks` crate (../fuzz-checks), not here.

pub use wirecheck_fuzz_checks::{self as checks, Target};

/// Counts live heap bytes per thread so each check can fail an input whose
/// decoding outgrows its budget (see `wirecheck_fuzz_checks::within_budget`).
#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

/// Runs `target`'s check on one input under the allocation budget.
pub fn run(target: Target, data: &[u8]) {
    ensure_counting();
    target.run(data);
}

/// Panics unless the counting allocator serves this process, so a target can
/// never silently run without its allocation budget.
pub fn ensure_counting() {
    assert!(
        checks::counting_allocator_active(),
        "the counting global allocator is not installed: allocation budgets would not be enforced"
    );
}
