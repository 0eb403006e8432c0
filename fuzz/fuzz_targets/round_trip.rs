//! Structured: messages, a framing configuration, read sizes and optional damage,
//! built by `arbitrary`. Encoded messages must decode back unchanged under any
//! reads; a damaged stream must decode the same way under any reads.
//! The check is `wirecheck_fuzz_checks::check_round_trip`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::checks::{check_round_trip, RoundTripInput};

fuzz_target!(|input: RoundTripInput| {
    wirecheck_fuzz::ensure_counting();
    check_round_trip(&input);
});
