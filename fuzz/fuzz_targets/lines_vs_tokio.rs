//! wirecheck's LF line decoder against tokio-util's LinesCodec with the same max length.
//! The check is `wirecheck_fuzz_checks::Target::LinesVsTokio`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::LinesVsTokio, data));
