//! Length-prefixed decoding of arbitrary bytes: byte 0 picks the prefix and length_includes_header, byte 1 max_frame, byte 2 the read sizes; the rest is the stream.
//! The check is `wirecheck_fuzz_checks::Target::LengthRaw`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::LengthRaw, data));
