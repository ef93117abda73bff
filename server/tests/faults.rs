//! The fault harness (tools/fault, `strata-fault`) against this build's
//! `strata`, whose crash points are compiled in (test builds turn the fail
//! crate's points on):
//! - seeded runs of a three-member cluster under faults (kill -9, SIGSTOP,
//!   partitions, one-way loss, delays, crash points, disk faults, power
//!   losses, wall-clock steps), every history
//!   checked; a short budget here (`STRATA_FAULT_SEEDS`, default 5, of
//!   `STRATA_FAULT_SECS`, default 15, from `STRATA_FAULT_BASE`, default
//!   from the clock); longer runs are `strata-fault`'s;
//! - the crash-point sweep: a member dies at each crash point in turn and
//!   recovers;
//! - exact scenarios a seed rarely draws ([`scenario`]);
//! - the checker shown to fail on a stale read planted in a real history,
//!   and the power-loss checks on members run with `--unsafe-no-fsync`.
//!
//! The tests take turns (each drives a cluster hard on few cores).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use strata_fault::{check, faults, run, scenario, sweep};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn config(dir: &tempfile::TempDir, secs: u64, kinds: &[&str]) -> run::Config {
    // Small WAL segments: every member start writes its segment out.
    std::env::set_var("STRATA_WAL_SEGMENT_SIZE", "4194304");
    run::Config {
        strata: PathBuf::from(env!("CARGO_BIN_EXE_strata")),
        dir: dir.path().to_path_buf(),
        members: 3,
        clients: 6,
        duration: Duration::from_secs(secs),
        faults: kinds.iter().map(|s| s.to_string()).collect(),
        keep: false,
        member_flags: Vec::new(),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seeded_fault_runs_keep_every_invariant() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seeds = env_u64("STRATA_FAULT_SEEDS", 5);
    let secs = env_u64("STRATA_FAULT_SECS", 15);
    let base = env_u64(
        "STRATA_FAULT_BASE",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    // Kept on failure: a temp dir that is not removed then.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, secs, faults::ALL);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut failed = Vec::new();
    for seed in base..base + seeds {
        let r = rt.block_on(run::run_seed(&cfg, seed)).expect("the run");
        println!(
            "seed {seed}: {} ops, {} acknowledged, {} unknown, {} watch events, {} leases, {} faults, {} violations",
            r.ops,
            r.acknowledged,
            r.unknown,
            r.watch_events,
            r.leases,
            r.faults.len(),
            r.violations.len()
        );
        for f in &r.faults {
            println!("  {f}");
        }
        assert!(
            r.acknowledged > 100,
            "seed {seed}: the clients got almost nothing done"
        );
        if !r.violations.is_empty() {
            for v in &r.violations {
                println!("  VIOLATION {v}");
            }
            failed.push(seed);
        }
    }
    if !failed.is_empty() {
        let kept = dir.keep();
        panic!(
            "seeds {failed:?} found violations (files in {}); again: \
             STRATA_FAULT_BASE={} STRATA_FAULT_SEEDS=1 STRATA_FAULT_SECS={secs} \
             cargo test -p strata-server --test faults seeded -- --nocapture",
            kept.display(),
            failed[0]
        );
    }
}

#[test]
fn every_crash_point_is_reached_and_recovered_from() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, 0, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sweep_dir = dir.path().join("sweep");
    let out = rt
        .block_on(sweep::sweep(&cfg.strata, &sweep_dir, sweep::POINTS))
        .expect("the sweep");
    let mut bad = Vec::new();
    for o in &out {
        println!(
            "{:<36} on {}: reached {}, {} writes, {:.1} s",
            o.point,
            o.member,
            o.reached,
            o.writes,
            o.took.as_secs_f64()
        );
        for v in &o.violations {
            println!("  VIOLATION {v}");
            bad.push(format!("{}: {v}", o.point));
        }
    }
    assert_eq!(out.len(), sweep::POINTS.len());
    fail_if_any(dir, &bad);
}

/// Fails the test on any violation, keeping its files for a post-mortem.
fn fail_if_any(dir: tempfile::TempDir, violations: &[String]) {
    if !violations.is_empty() {
        let kept = dir.keep();
        panic!(
            "{} violations (files in {}):\n{}",
            violations.len(),
            kept.display(),
            violations.join("\n")
        );
    }
}

#[test]
fn a_member_makes_durable_what_it_reads_back_before_acknowledging_it() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, 0, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let at = dir.path().join("reread");
    let found = rt
        .block_on(scenario::reread_unsynced(&cfg.strata, &at))
        .expect("the scenario");
    fail_if_any(dir, &found);
}

#[test]
fn a_stale_read_planted_in_a_real_history_is_caught() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, 3, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(run::run_seed(&cfg, 1)).expect("the run");
    assert!(
        r.violations.is_empty(),
        "a run without faults: {:?}",
        r.violations
    );
    assert!(check::linearizability(&r.records).is_empty());
    let planted = check::plant_stale_read(&r.records).expect("two puts one after the other");
    let found = check::linearizability(&planted);
    assert_eq!(found.len(), 1, "the planted stale read went unseen");
    assert!(found[0].contains("no linearization"), "{found:?}");
}

#[test]
fn a_power_loss_of_members_that_never_fsync_is_caught() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir, 6, &["power-loss-all"]);
    cfg.member_flags = vec!["--unsafe-no-fsync".into()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(run::run_seed(&cfg, 5)).expect("the run");
    for f in &r.faults {
        println!("  {f}");
    }
    assert!(!r.faults.is_empty());
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("acknowledged write lost")),
        "nothing was synced, the power went, and no acknowledged write was missed: {:?}",
        &r.violations[..r.violations.len().min(5)]
    );
}
