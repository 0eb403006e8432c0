//! wirecheck's length-prefixed decoder against tokio-util's LengthDelimitedCodec, configured alike.
//! The check is `wirecheck_fuzz_checks::Target::LengthVsTokio`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::LengthVsTokio, data));
