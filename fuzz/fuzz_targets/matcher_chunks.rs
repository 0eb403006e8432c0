//! The incremental matchers (regex, contains, lines) fed a stream in arbitrary reads,
//! against matching the whole buffer at once.
//! The check is `wirecheck_fuzz_checks::Target::MatcherChunks`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::MatcherChunks, data));
