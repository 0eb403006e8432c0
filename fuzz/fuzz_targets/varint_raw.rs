//! Varint-delimited decoding of arbitrary bytes: byte 0 is max_frame, byte 1 the read sizes; the rest is the stream.
//! The check is `wirecheck_fuzz_checks::Target::VarintRaw`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::VarintRaw, data));
