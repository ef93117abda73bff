//! Benchmarks live in benches/; see benches/kv_compare.rs.
