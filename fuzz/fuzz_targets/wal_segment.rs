#![no_main]
//! Fuzz target: WAL record decoding and recovery, see
//! strata_engine::fuzzing::wal_segment.
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_engine::fuzzing::wal_segment(data));
