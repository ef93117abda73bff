#![no_main]
//! Fuzz target: see strata_server::fuzzing::simple_token.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_server::fuzzing::simple_token(data));
