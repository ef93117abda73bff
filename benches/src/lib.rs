//! Benchmarks live in benches/ (kv_compare, wal, mvcc); this library holds
//! what they share.
#![forbid(unsafe_code)]

/// Whether the benchmark binary runs in test mode (`cargo test --benches`,
/// or `cargo bench -- --test`): cargo passes `--bench` only to real
/// benchmark runs. Benchmarks then use small sizes.
pub fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}
