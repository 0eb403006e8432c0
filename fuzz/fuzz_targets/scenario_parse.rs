//! The scenario loader on arbitrary UTF-8: no panic, every diagnostic located in the file.
//! The check is `wirecheck_fuzz_checks::Target::ScenarioParse`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::ScenarioParse, data));
