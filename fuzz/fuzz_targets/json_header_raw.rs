//! json-header decoding of arbitrary bytes: byte 0 is max_header, byte 1 max_body, byte 2 the read sizes; the rest is the stream.
//! The check is `wirecheck_fuzz_checks::Target::JsonHeaderRaw`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::JsonHeaderRaw, data));
