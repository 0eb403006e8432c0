//! Structured: json-header frames with arbitrary JSON headers and bodies, limits
//! and read sizes, built by `arbitrary`. Every frame the encoder accepts decodes
//! back with the same header, body and wire bytes.
//! The check is `wirecheck_fuzz_checks::check_json_header_round_trip`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::checks::{check_json_header_round_trip, JsonRoundTripInput};

fuzz_target!(|input: JsonRoundTripInput| {
    wirecheck_fuzz::ensure_counting();
    check_json_header_round_trip(&input);
});
