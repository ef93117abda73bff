//! `strata-util bench-mvcc`: the MVCC store at scale. Loads N keys (one
//! write transaction each, as etcd applies puts), then measures point and
//! limited ranges, reopens (rebuilding the index from the key bucket) and
//! reports the process's memory: anonymous RSS (the index and buffers) and
//! file-backed RSS (mapped database pages).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::{PutRequest, RangeRequest, Store};

#[derive(Args, Debug)]
pub struct BenchMvccArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: usize,
    #[arg(long, default_value_t = 64)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Seconds per read measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Commit without fdatasync (the store is measured, not the disk).
    #[arg(long)]
    pub no_sync: bool,
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Internal: only reopen the store in DIR and print the memory figures
    /// (run in a fresh process, so the load's freed memory does not count).
    #[arg(long, hide = true)]
    pub measure_only: Option<PathBuf>,
}

/// The key for index `i`, `size` bytes.
pub fn key(i: usize, size: usize) -> Vec<u8> {
    let mut k = format!("key/{i:016}").into_bytes();
    k.resize(size.max(k.len()), b'.');
    k
}

pub fn open(dir: &Path, no_sync: bool) -> strata_engine::Result<Store> {
    Store::open(Backend::open(BackendConfig {
        no_sync,
        ..BackendConfig::new(dir.join("db"))
    })?)
}

/// Loads `n` keys, one put per transaction; returns the elapsed time.
pub fn load(
    store: &Store,
    n: usize,
    key_size: usize,
    value_size: usize,
) -> strata_engine::Result<Duration> {
    let value = vec![0x61u8; value_size];
    let t = Instant::now();
    for i in 0..n {
        store.put(&PutRequest {
            key: key(i, key_size),
            value: value.clone(),
            ..Default::default()
        })?;
    }
    Ok(t.elapsed())
}

/// Ranges per second for `time`: single random keys, or `limit` keys from a
/// random start.
pub fn ranges(
    store: &Store,
    n: usize,
    key_size: usize,
    limit: i64,
    time: Duration,
) -> strata_engine::Result<f64> {
    let mut rng = StdRng::seed_from_u64(9);
    let (t, mut ops) = (Instant::now(), 0u64);
    while t.elapsed() < time {
        let k = key(rng.random_range(0..n), key_size);
        let req = if limit <= 1 {
            RangeRequest {
                key: k,
                ..Default::default()
            }
        } else {
            // A window of 10x the limit: `count` makes a range visit every
            // key in it, as etcd's does.
            let i = rng.random_range(0..n);
            let end = key((i + 10 * limit as usize).min(n), key_size);
            RangeRequest {
                key: key(i, key_size),
                range_end: end,
                limit,
                ..Default::default()
            }
        };
        std::hint::black_box(store.range(&req)?);
        ops += 1;
    }
    Ok(ops as f64 / t.elapsed().as_secs_f64())
}

/// (VmRSS, RssAnon, RssFile) in bytes, from /proc/self/status.
pub fn rss() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

pub fn run(a: &BenchMvccArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &a.measure_only {
        return measure(dir);
    }
    let tmp = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let time = Duration::from_secs_f64(a.seconds);
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let store = open(tmp.path(), a.no_sync)?;
    let took = load(&store, a.keys, a.key_size, a.value_size)?;
    println!(
        "put: {} keys of {} + {} bytes, one txn each: {:.2?} ({:.0} puts/s), store revision {}",
        a.keys,
        a.key_size,
        a.value_size,
        took,
        a.keys as f64 / took.as_secs_f64(),
        store.revision()
    );
    println!(
        "range, one key:       {:>10.0} ranges/s",
        ranges(&store, a.keys, a.key_size, 1, time)?
    );
    println!(
        "range, limit 100 of a 1000-key window: {:>10.0} ranges/s",
        ranges(&store, a.keys, a.key_size, 100, time)?
    );
    store.backend().clone().close()?;
    drop(store);
    println!(
        "db file: {:.1} MiB",
        mb(std::fs::metadata(tmp.path().join("db"))?.len())
    );
    // Memory in a fresh process that only reopens the store.
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("bench-mvcc")
        .arg("--measure-only")
        .arg(tmp.path())
        .status()?;
    anyhow::ensure!(status.success(), "measuring process failed");
    Ok(ExitCode::SUCCESS)
}

/// Reopens the store in `dir` in this (fresh) process and prints memory.
pub fn measure(dir: &Path) -> anyhow::Result<ExitCode> {
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let before = rss();
    let t = Instant::now();
    let store = open(dir, true)?;
    let restore = t.elapsed();
    let after = rss();
    println!(
        "reopen, index rebuilt from the key bucket: {restore:.2?}, {} keys at revision {}",
        store.index_len(),
        store.revision()
    );
    println!(
        "memory after reopen: RSS {:.1} MiB = anonymous {:.1} MiB + file-backed {:.1} MiB (mapped pages); the reopen added {:.1} MiB anonymous (index and buffers)",
        mb(after.0),
        mb(after.1),
        mb(after.2),
        mb(after.1.saturating_sub(before.1))
    );
    drop(store);
    Ok(ExitCode::SUCCESS)
}
