#![no_main]
//! Fuzz target: see strata_server::fuzzing::jwt.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_server::fuzzing::jwt(data));
