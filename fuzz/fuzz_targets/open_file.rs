#![no_main]
//! Fuzz target: see strata_engine::fuzzing::open_file.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_engine::fuzzing::open_file(data));
