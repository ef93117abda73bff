//! `strata-util bench`: the engine benchmark, with `bbolt bench`'s flags and
//! meaning so the two can be run side by side.
//!
//! Writes `--count` keys in transactions of `--batch-size` (0 = all in one),
//! each key `--key-size` bytes whose first four are a big-endian u32 (1, 2, 3…
//! for `seq`, random for `rnd`), each value `--value-size` zero bytes, then
//! reads for at least one second: `seq` iterates the bucket with a cursor
//! again and again (bbolt's only read mode); `rnd` (ours) looks up the
//! written keys in random order. Prints bbolt's two result lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use strata_engine::btree::{Database, Options, WriteBucket};

use crate::display::go_duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WriteMode {
    Seq,
    Rnd,
    SeqNest,
    RndNest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    Seq,
    Rnd,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Number of keys to write.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Keys per write transaction (0: all in one).
    #[arg(long, default_value_t = 0)]
    batch_size: usize,
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    #[arg(long, value_enum, default_value_t = WriteMode::Seq)]
    write_mode: WriteMode,
    #[arg(long, value_enum, default_value_t = ReadMode::Seq)]
    read_mode: ReadMode,
    /// Commit without fdatasync.
    #[arg(long)]
    no_sync: bool,
    /// Database file (default: a temporary file, removed afterwards).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Keep the database file and print its path.
    #[arg(long)]
    work: bool,
    /// Page size of the new file.
    #[arg(long, default_value_t = strata_engine::btree::DEFAULT_PAGE_SIZE)]
    page_size: usize,
}

const BUCKET: &[u8] = b"bench";

struct Keys {
    seq: u32,
    rng: StdRng,
    random: bool,
    size: usize,
}

impl Keys {
    fn next(&mut self) -> Vec<u8> {
        let n = if self.random {
            self.rng.random::<u32>()
        } else {
            self.seq += 1;
            self.seq
        };
        let mut k = vec![0u8; self.size];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    }
}

pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    if a.key_size < 4 {
        bail!("--key-size must be at least 4 (the key holds a u32)");
    }
    let batch = if a.batch_size == 0 {
        a.count
    } else {
        a.batch_size
    };
    if batch == 0 || !a.count.is_multiple_of(batch) {
        bail!("number of iterations must be divisible by the batch size");
    }
    let dir = tempfile::tempdir()?;
    let path = a
        .path
        .clone()
        .unwrap_or_else(|| dir.path().join("bench.db"));
    if a.work {
        println!("work: {}", path.display());
    }
    let db = Database::open(
        &path,
        Options {
            page_size: a.page_size,
            no_sync: a.no_sync,
        },
    )?;
    let random = matches!(a.write_mode, WriteMode::Rnd | WriteMode::RndNest);
    let nested = matches!(a.write_mode, WriteMode::SeqNest | WriteMode::RndNest);
    let seed = 0x5747_4154;
    let mut keys = Keys {
        seq: 0,
        rng: StdRng::seed_from_u64(seed),
        random,
        size: a.key_size,
    };
    let value = vec![0u8; a.value_size];
    let bar = ProgressBar::new(a.count as u64);

    let start = Instant::now();
    let mut written = Vec::new();
    for _ in 0..a.count / batch {
        let mut tx = db.begin_write()?;
        let top = tx.create_bucket_if_missing(WriteBucket::ROOT, BUCKET)?;
        let b = if nested {
            tx.create_bucket_if_missing(top, &keys.next())?
        } else {
            top
        };
        for _ in 0..batch {
            let k = keys.next();
            tx.put(b, &k, &value)?;
            if !nested && a.read_mode == ReadMode::Rnd {
                written.push(k);
            }
        }
        tx.commit()?;
        bar.inc(batch as u64);
    }
    let write_time = start.elapsed();
    bar.finish_and_clear();

    let (read_ops, read_time) = match a.read_mode {
        ReadMode::Seq => read_seq(&db, nested, a)?,
        ReadMode::Rnd => {
            if nested {
                bail!("--read-mode rnd needs a flat write mode");
            }
            read_rnd(&db, written)?
        }
    };
    let line = |name: &str, d: Duration, ops: usize| {
        let per = if ops == 0 {
            Duration::ZERO
        } else {
            d / ops as u32
        };
        let per_sec = if d.is_zero() {
            0
        } else {
            (ops as f64 / d.as_secs_f64()) as u64
        };
        eprintln!(
            "# {name}\t{}\t({}/op)\t({per_sec} op/sec)",
            go_duration(d),
            go_duration(per)
        );
    };
    line("Write", write_time, a.count);
    line("Read", read_time, read_ops);
    eprintln!();
    drop(db);
    if a.work {
        std::mem::forget(dir);
    }
    Ok(ExitCode::SUCCESS)
}

/// Cursor over every key, repeated for at least a second, in one read txn.
fn read_seq(db: &Database, nested: bool, a: &BenchArgs) -> Result<(usize, Duration)> {
    let rx = db.begin_read();
    let top = rx
        .bucket(rx.root(), BUCKET)?
        .ok_or_else(|| anyhow::anyhow!("bench bucket missing"))?;
    let start = Instant::now();
    let mut ops = 0;
    loop {
        let mut count = 0;
        if nested {
            let mut outer = rx.cursor(top);
            let mut it = outer.first()?;
            while let Some(e) = it {
                let b = rx
                    .bucket(top, e.key)?
                    .ok_or_else(|| anyhow::anyhow!("nested bucket missing"))?;
                let mut c = rx.cursor(b);
                let mut inner = c.first()?;
                while inner.is_some() {
                    count += 1;
                    inner = c.next()?;
                }
                it = outer.next()?;
            }
        } else {
            let mut c = rx.cursor(top);
            let mut it = c.first()?;
            while it.is_some() {
                count += 1;
                it = c.next()?;
            }
        }
        if a.write_mode == WriteMode::Seq && count != a.count {
            bail!("read seq: iter mismatch: expected {}, got {count}", a.count);
        }
        ops += count;
        if start.elapsed() >= Duration::from_secs(1) {
            return Ok((ops, start.elapsed()));
        }
    }
}

/// Point lookups of the written keys in random order, for at least a second.
fn read_rnd(db: &Database, mut keys: Vec<Vec<u8>>) -> Result<(usize, Duration)> {
    let rx = db.begin_read();
    let b = rx
        .bucket(rx.root(), BUCKET)?
        .ok_or_else(|| anyhow::anyhow!("bench bucket missing"))?;
    keys.shuffle(&mut StdRng::seed_from_u64(1));
    let start = Instant::now();
    let mut ops = 0;
    loop {
        for k in &keys {
            if rx.get(b, k)?.is_none() {
                bail!("read rnd: key missing");
            }
        }
        ops += keys.len();
        if start.elapsed() >= Duration::from_secs(1) || keys.is_empty() {
            return Ok((ops, start.elapsed()));
        }
    }
}
