//! The pcap/pcapng importer on arbitrary bytes: no panic, and what it writes loads.
//! The check is `wirecheck_fuzz_checks::Target::TraceImport`; see FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirecheck_fuzz::Target;

fuzz_target!(|data: &[u8]| wirecheck_fuzz::run(Target::TraceImport, data));
