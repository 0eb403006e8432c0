//! Structured: faults that drop no data (slice, coalesce, latency with jitter,
//! bandwidth, slow_close) and a sequence of reads and clock steps, built by
//! `arbitrary`. The TCP fault pipeline, driven by a virtual clock, must deliver the
//! bytes in, in order, in time order, with the close last.
//! The check is `wirecheck_fuzz_checks::check_proxy_pipeline`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::checks::{check_proxy_pipeline, ProxyPipelineInput};

fuzz_target!(|input: ProxyPipelineInput| {
    wirecheck_fuzz::ensure_counting();
    check_proxy_pipeline(&input);
});
