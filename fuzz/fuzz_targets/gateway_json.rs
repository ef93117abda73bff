#![no_main]
//! Fuzz target: see strata_server::fuzzing::gateway_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_server::fuzzing::gateway_json(data));
