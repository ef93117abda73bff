#![no_main]
//! Fuzz target: see strata_engine::fuzzing::decode_page.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_engine::fuzzing::decode_page(data));
