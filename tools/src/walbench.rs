//! WAL append throughput beside the disk's own anchors, measured in the
//! same run: the raw fdatasync rate (a small write at the next offset of a
//! preallocated file, then fdatasync) and the sequential write bandwidth
//! (large writes, then one fdatasync; and 1 MiB writes each followed by a
//! fdatasync, which is what a batch of 1,000 x 1 KiB entries costs).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use strata_engine::wal::{Entry, Metadata, Wal, WalOptions};

const PREALLOC: u64 = 512 << 20;

fn scratch(dir: &Path, name: &str) -> io::Result<(File, PathBuf)> {
    let path = dir.join(name);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    fs4::FileExt::allocate(&f, PREALLOC)?;
    f.sync_all()?;
    Ok((f, path))
}

/// fdatasyncs per second of `size`-byte writes at consecutive offsets.
pub fn fdatasync_rate(dir: &Path, size: usize, time: Duration) -> io::Result<f64> {
    let (f, path) = scratch(dir, "anchor-fdatasync")?;
    let buf = vec![0x5au8; size];
    let (start, mut n, mut off) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < time {
        f.write_all_at(&buf, off)?;
        f.sync_data()?;
        off = (off + size as u64) % (PREALLOC - size as u64);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// MB/s of `total` bytes written in `chunk`-byte writes, with a fdatasync
/// every `sync_every` bytes (0: once at the end).
pub fn write_bandwidth(dir: &Path, total: u64, chunk: usize, sync_every: u64) -> io::Result<f64> {
    let (f, path) = scratch(dir, "anchor-bandwidth")?;
    let buf = vec![0xa5u8; chunk];
    let start = Instant::now();
    let mut off = 0;
    while off < total.min(PREALLOC) {
        f.write_all_at(&buf, off)?;
        off += chunk as u64;
        if sync_every > 0 && off % sync_every == 0 {
            f.sync_data()?;
        }
    }
    f.sync_data()?;
    let mbs = off as f64 / 1e6 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(mbs)
}

/// A fresh WAL in `dir/wal-bench` and a source of entries.
pub struct Appender {
    pub wal: Wal,
    next: u64,
    data: Vec<u8>,
    cache: Vec<Entry>,
}

impl Appender {
    pub fn new(dir: &Path, entry_size: usize) -> strata_engine::Result<Appender> {
        let d = dir.join("wal-bench");
        let _ = std::fs::remove_dir_all(&d);
        let wal = Wal::create(
            &d,
            Metadata {
                member_id: 1,
                cluster_id: 1,
            },
            WalOptions::default(),
        )?;
        Ok(Appender {
            wal,
            next: 1,
            data: vec![0x42; entry_size],
            cache: Vec::new(),
        })
    }

    /// Saves `batch` entries and syncs once. The entries are built once and
    /// renumbered, so the figure is the log's cost, not the allocator's.
    pub fn batch(&mut self, batch: usize) -> strata_engine::Result<()> {
        if self.cache.len() != batch {
            self.cache = (0..batch as u64)
                .map(|_| Entry {
                    index: 0,
                    term: 1,
                    entry_type: 0,
                    data: self.data.clone(),
                })
                .collect();
        }
        for (i, e) in self.cache.iter_mut().enumerate() {
            e.index = self.next + i as u64;
        }
        self.next += batch as u64;
        self.wal.save(None, &self.cache)?;
        self.wal.sync()
    }
}

#[derive(Args, Debug)]
pub struct BenchWalArgs {
    /// Directory on the disk to measure (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds per case.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Entry sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    pub sizes: Vec<usize>,
    /// Entries per sync.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    pub batches: Vec<usize>,
    /// Rounds (anchors and cases each round); figures are medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Entries per second of `batch`-entry appends with one sync each.
fn append_rate(
    dir: &Path,
    size: usize,
    batch: usize,
    time: Duration,
) -> anyhow::Result<(f64, f64)> {
    let mut app = Appender::new(dir, size)?;
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < time {
        app.batch(batch)?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(((n * batch as u64) as f64 / secs, n as f64 / secs))
}

pub fn run(a: &BenchWalArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir_in(a.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let dir = tmp.path();
    let time = Duration::from_secs_f64(a.seconds);
    // This machine's page-cache state swings write throughput between runs,
    // so every figure is the median of `rounds` rounds, and each round
    // measures the anchors again next to the cases.
    let mut sync_rates = Vec::new();
    let mut streams = Vec::new();
    let mut per_mibs = Vec::new();
    let mut cases: Vec<Vec<(f64, f64)>> = vec![Vec::new(); a.sizes.len() * a.batches.len()];
    for _ in 0..a.rounds.max(1) {
        sync_rates.push(fdatasync_rate(dir, 128, time)?);
        streams.push(write_bandwidth(dir, 256 << 20, 1 << 20, 0)?);
        per_mibs.push(write_bandwidth(dir, 128 << 20, 1 << 20, 1 << 20)?);
        for (i, (size, batch)) in a
            .sizes
            .iter()
            .flat_map(|s| a.batches.iter().map(move |b| (*s, *b)))
            .enumerate()
        {
            cases[i].push(append_rate(dir, size, batch, time)?);
        }
    }
    let rounds = a.rounds.max(1);
    let sync_rate = median(sync_rates);
    let stream = median(streams);
    let per_mib = median(per_mibs);
    println!("medians of {rounds} rounds");
    println!("anchor: fdatasync rate (128-byte writes)          {sync_rate:>10.0} syncs/s");
    println!("anchor: sequential write, 1 MiB writes, one sync  {stream:>10.1} MB/s");
    println!("anchor: sequential write, fdatasync every 1 MiB   {per_mib:>10.1} MB/s");
    println!();
    println!(
        "{:>6} {:>6} {:>12} {:>10} {:>10} {:>22} {:>26}",
        "size",
        "batch",
        "entries/s",
        "syncs/s",
        "MB/s",
        "vs fdatasync rate",
        "vs 1 MiB writes: 1 sync / each synced"
    );
    for (i, (size, batch)) in a
        .sizes
        .iter()
        .flat_map(|s| a.batches.iter().map(move |b| (*s, *b)))
        .enumerate()
    {
        let eps = median(cases[i].iter().map(|c| c.0).collect());
        let sps = median(cases[i].iter().map(|c| c.1).collect());
        let mbs = eps * size as f64 / 1e6;
        println!(
            "{size:>6} {batch:>6} {eps:>12.0} {sps:>10.0} {mbs:>10.1} {:>21.1}% {:>12.1}% / {:>6.1}%",
            sps * 100.0 / sync_rate,
            mbs * 100.0 / stream,
            mbs * 100.0 / per_mib
        );
    }
    Ok(ExitCode::SUCCESS)
}
