//! The deterministic simulation (`strata_testkit::sim`: three members in
//! one process over a simulated network and clock, seeded faults, raft and
//! linearizability checks) over many seeds, and a run showing its checks
//! catch stale reads.
//!
//! One seed: `STRATA_SIM_SEED=N cargo test -p strata-server --test
//! simulation -- --nocapture` (prints its faults). More seeds:
//! `STRATA_SIM_SEEDS=K` (default 100), from `STRATA_SIM_BASE` (default:
//! from the clock, printed).

use strata_testkit::sim::{run_seed, seeds};

#[test]
fn seeded_runs_keep_raft_and_linearizability_invariants() {
    if let Some(seed) = std::env::var("STRATA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let v = run_seed(seed, false, true);
        assert!(v.is_empty(), "seed {seed}:\n{}", v.join("\n"));
        return;
    }
    let (base, count) = seeds();
    eprintln!("simulation: seeds {base}..{}", base + count);
    let mut failed = Vec::new();
    for seed in base..base + count {
        let v = run_seed(seed, false, false);
        if !v.is_empty() {
            eprintln!(
                "seed {seed} failed; replay: STRATA_SIM_SEED={seed} cargo test -p strata-server --test simulation seeded -- --nocapture\n{}",
                v.join("\n")
            );
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

/// The checks can fail: members that answer reads from their own state
/// without ReadIndex (serializable reads passed off as linearizable) are
/// caught on some seed.
#[test]
fn stale_reads_are_caught() {
    let caught = (0..20u64).find(|&seed| {
        run_seed(seed, true, false)
            .iter()
            .any(|v| v.contains("not linearizable"))
    });
    assert!(
        caught.is_some(),
        "20 seeds of reads without ReadIndex, under partitions, and the checker saw nothing"
    );
}
