#![no_main]
//! Fuzz target: operation sequences against a model, see
//! strata_engine::fuzzing::ops_against_model.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_engine::fuzzing::ops_against_model(data));
