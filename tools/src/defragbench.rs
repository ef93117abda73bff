//! `strata-util bench-defrag`: builds a backend of about `--size-mb` of
//! values, deletes every other key, then defragments it online while one
//! writer and one reader run, and reports the longest single put and get
//! each saw during the defragmentation (the stall), beside the
//! defragmentation's own figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use strata_engine::backend::{Backend, BackendConfig, Bucket};

#[derive(Args, Debug)]
pub struct BenchDefragArgs {
    /// Approximate size of the values loaded, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mb: usize,
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// (longest single operation, operations) of a loop run until `stop`.
fn timed_loop(stop: &AtomicBool, mut op: impl FnMut(u64)) -> (Duration, u64) {
    let (mut worst, mut n) = (Duration::ZERO, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        op(n);
        worst = worst.max(t.elapsed());
        n += 1;
    }
    (worst, n)
}

type WindowResult = (
    Duration,
    u64,
    Duration,
    u64,
    Option<strata_engine::backend::DefragStats>,
);

/// Runs one writer and one reader, then `work` (after a short lead-in),
/// for at least `lead`; returns each loop's longest single operation and
/// count, and what `work` returned.
fn window(
    be: &Backend,
    n: usize,
    lead: Duration,
    work: impl FnOnce(&Backend) -> strata_engine::Result<Option<strata_engine::backend::DefragStats>>,
) -> anyhow::Result<WindowResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (be, stop) = (be.clone(), stop.clone());
        std::thread::spawn(move || {
            timed_loop(&stop, |i| {
                let _ = be
                    .batch()
                    .and_then(|mut tx| tx.put(Bucket::Lease, &i.to_be_bytes(), b"during defrag"));
            })
        })
    };
    let reader = {
        let (be, stop) = (be.clone(), stop.clone());
        std::thread::spawn(move || {
            timed_loop(&stop, |i| {
                let k = (i * 7919 % n as u64) | 1;
                let _ = std::hint::black_box(be.read().get(Bucket::Key, &k.to_be_bytes()));
            })
        })
    };
    std::thread::sleep(lead);
    let out = work(be);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let (w, wn) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    let (r, rn) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    Ok((w, wn, r, rn, out?))
}

pub fn run(a: &BenchDefragArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let be = Backend::open(BackendConfig::new(tmp.path().join("db")))?;
    let n = (a.size_mb << 20) / a.value_size;
    let value = vec![0x5au8; a.value_size];
    let t = Instant::now();
    for chunk in (0..n as u64).collect::<Vec<_>>().chunks(10_000) {
        let mut tx = be.batch()?;
        for &i in chunk {
            tx.put(Bucket::Key, &i.to_be_bytes(), &value)?;
        }
    }
    for chunk in (0..n as u64).step_by(2).collect::<Vec<_>>().chunks(10_000) {
        let mut tx = be.batch()?;
        for &i in chunk {
            tx.delete(Bucket::Key, &i.to_be_bytes())?;
        }
    }
    be.force_commit()?;
    println!(
        "loaded {n} values of {} bytes and deleted half in {:.1?}",
        a.value_size,
        t.elapsed()
    );

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    // The same load first without a defragmentation (the anchor), then with.
    let baseline = window(&be, n, Duration::from_secs(5), |_| Ok(None))?;
    println!(
        "without defrag, 5 s: longest single put {:.2?} ({} puts), longest single get {:.2?} ({} gets)",
        baseline.0, baseline.1, baseline.2, baseline.3
    );
    let (w_worst, w_ops, r_worst, r_ops, stats) =
        window(&be, n, Duration::from_millis(200), |be| {
            be.defrag().map(Some)
        })?;
    let stats = stats.ok_or_else(|| anyhow::anyhow!("no defrag stats"))?;
    println!(
        "defrag: {:.1} MiB -> {:.1} MiB in {:.2?}; writers held off {:.2?} (final replay; {} changes made during the copy replayed in all)",
        mib(stats.size_before),
        mib(stats.size_after),
        stats.total,
        stats.stall,
        stats.journaled
    );
    println!("during defrag: longest single put {w_worst:.2?} ({w_ops} puts), longest single get {r_worst:.2?} ({r_ops} gets)");
    be.close()?;
    Ok(ExitCode::SUCCESS)
}
