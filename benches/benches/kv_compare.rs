//! Strata's B+tree side by side with redb and LMDB (heed), in one process, on
//! redb's published benchmark workload: random 24-byte keys, 150-byte values.
//! Scaled to N = 200,000 elements by default (STRATA_BENCH_ELEMENTS
//! overrides) so the whole run takes minutes on 2 cores.
//!
//! - criterion groups (steady state, on a database preloaded with N
//!   elements): individual durable writes (one key per commit), batch writes
//!   (1,000 keys per commit), random gets, range scans of 10;
//! - one-shot phases, printed as a table (median of 3 runs for bulk load):
//!   bulk load of N in one transaction, removal of half the keys in commits of
//!   1,000, and the file size after load, after removals and after
//!   compaction.
//!
//! Every engine commits durably (fsync) as it does by default.
//!
//! LMDB's environment can only be opened through heed's `unsafe fn open`
//! (opening one environment twice in a process is undefined behaviour); this
//! bench crate, which ships nothing, allows that one call.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use redb::ReadableDatabase;

const KEY: usize = 24;
const VALUE: usize = 150;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn pairs(n: usize, seed: u64) -> Pairs {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut k = vec![0u8; KEY];
            let mut v = vec![0u8; VALUE];
            rng.fill(&mut k[..]);
            rng.fill(&mut v[..]);
            (k, v)
        })
        .collect()
}

fn elements() -> usize {
    if strata_benches::test_mode() {
        return 2_000;
    }
    std::env::var("STRATA_BENCH_ELEMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

trait Kv {
    fn name(&self) -> &'static str;
    fn bulk_load(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]);
    /// One commit.
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]);
    /// Gets in one read transaction; returns how many were found.
    fn gets(&self, keys: &[Vec<u8>]) -> usize;
    /// Range scans of `len` entries from each start, in one read transaction.
    fn ranges(&self, starts: &[Vec<u8>], len: usize) -> usize;
    /// One commit.
    fn remove_batch(&mut self, keys: &[Vec<u8>]);
    fn file_size(&self) -> u64;
    /// Compacts and returns the size of the compacted file.
    fn compact(&mut self) -> u64;
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

// ---------- Strata ----------

struct Strata {
    db: Option<strata_engine::btree::Database>,
    dir: PathBuf,
    path: PathBuf,
}

impl Strata {
    fn open(dir: &Path) -> Self {
        let path = dir.join("strata.db");
        let db = strata_engine::btree::Database::open(&path, Default::default()).unwrap();
        Strata {
            db: Some(db),
            dir: dir.to_path_buf(),
            path,
        }
    }
    fn db(&self) -> &strata_engine::btree::Database {
        self.db.as_ref().unwrap()
    }
}

impl Kv for Strata {
    fn name(&self) -> &'static str {
        "strata"
    }
    fn bulk_load(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        self.put_batch(pairs);
    }
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        use strata_engine::btree::WriteBucket;
        let mut tx = self.db().begin_write().unwrap();
        let b = tx
            .create_bucket_if_missing(WriteBucket::ROOT, b"t")
            .unwrap();
        for (k, v) in pairs {
            tx.put(b, k, v).unwrap();
        }
        tx.commit().unwrap();
    }
    fn gets(&self, keys: &[Vec<u8>]) -> usize {
        let rx = self.db().begin_read();
        let b = rx.bucket(rx.root(), b"t").unwrap().unwrap();
        keys.iter()
            .filter(|k| black_box(rx.get(b, k).unwrap()).is_some())
            .count()
    }
    fn ranges(&self, starts: &[Vec<u8>], len: usize) -> usize {
        let rx = self.db().begin_read();
        let b = rx.bucket(rx.root(), b"t").unwrap().unwrap();
        let mut n = 0;
        for s in starts {
            let mut c = rx.cursor(b);
            let mut it = c.seek(s).unwrap();
            for _ in 0..len {
                match it {
                    Some(e) => {
                        black_box(e.value);
                        n += 1;
                    }
                    None => break,
                }
                it = c.next().unwrap();
            }
        }
        n
    }
    fn remove_batch(&mut self, keys: &[Vec<u8>]) {
        use strata_engine::btree::WriteBucket;
        let mut tx = self.db().begin_write().unwrap();
        let b = tx.bucket(WriteBucket::ROOT, b"t").unwrap().unwrap();
        for k in keys {
            tx.delete(b, k).unwrap();
        }
        tx.commit().unwrap();
    }
    fn file_size(&self) -> u64 {
        size(&self.path)
    }
    fn compact(&mut self) -> u64 {
        let dst = self.dir.join("strata-compact.db");
        let _ = std::fs::remove_file(&dst);
        strata_engine::btree::compact(self.db(), &dst, &mut |_| {}).unwrap();
        size(&dst)
    }
}

// ---------- redb ----------

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");

struct Redb {
    db: redb::Database,
    path: PathBuf,
}

impl Redb {
    fn open(dir: &Path) -> Self {
        let path = dir.join("redb.db");
        Redb {
            db: redb::Database::create(&path).unwrap(),
            path,
        }
    }
}

impl Kv for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn bulk_load(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        self.put_batch(pairs);
    }
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let tx = self.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in pairs {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn gets(&self, keys: &[Vec<u8>]) -> usize {
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        keys.iter()
            .filter(|k| black_box(t.get(k.as_slice()).unwrap()).is_some())
            .count()
    }
    fn ranges(&self, starts: &[Vec<u8>], len: usize) -> usize {
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        let mut n = 0;
        for s in starts {
            for e in t.range::<&[u8]>(s.as_slice()..).unwrap().take(len) {
                black_box(e.unwrap().1.value());
                n += 1;
            }
        }
        n
    }
    fn remove_batch(&mut self, keys: &[Vec<u8>]) {
        let tx = self.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for k in keys {
                t.remove(k.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn file_size(&self) -> u64 {
        size(&self.path)
    }
    fn compact(&mut self) -> u64 {
        while self.db.compact().unwrap() {}
        size(&self.path)
    }
}

// ---------- LMDB (heed) ----------

struct Lmdb {
    /// Leaked: heed ties its database handles to the environment's lifetime.
    env: &'static heed::Env,
    db: heed::Database<'static, heed::types::Bytes, heed::types::Bytes>,
    dir: PathBuf,
}

impl Lmdb {
    fn open(dir: &Path) -> Self {
        let dir = dir.join("lmdb");
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: each environment directory is opened exactly once in this
        // process (a fresh temporary directory per instance).
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .map_size(8 << 30)
                .max_dbs(1)
                .open(&dir)
                .unwrap()
        };
        let env: &'static heed::Env = Box::leak(Box::new(env));
        let tx = env.write_txn().unwrap();
        let db = env
            .create_databases_and_commit(tx, |opener, tx| -> Result<_, heed::Error> {
                let db = opener
                    .create_database::<heed::types::Bytes, heed::types::Bytes>(tx, Some("t"))?;
                Ok(heed::CommitOrAbort::<_, ()>::Commit(db))
            })
            .unwrap()
            .unwrap_commit();
        Lmdb { env, db, dir }
    }
}

impl Kv for Lmdb {
    fn name(&self) -> &'static str {
        "lmdb"
    }
    fn bulk_load(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        self.put_batch(pairs);
    }
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut tx = self.env.write_txn().unwrap();
        for (k, v) in pairs {
            self.db.put(&mut tx, k, v).unwrap();
        }
        tx.commit().unwrap();
    }
    fn gets(&self, keys: &[Vec<u8>]) -> usize {
        let tx = self.env.read_txn().unwrap();
        keys.iter()
            .filter(|k| black_box(self.db.get(&tx, k).unwrap()).is_some())
            .count()
    }
    fn ranges(&self, starts: &[Vec<u8>], len: usize) -> usize {
        use std::ops::Bound;
        let tx = self.env.read_txn().unwrap();
        let mut n = 0;
        for s in starts {
            let r = (Bound::Included(s.as_slice()), Bound::Unbounded);
            for e in self.db.range(&tx, &r).unwrap().take(len) {
                black_box(e.unwrap().1);
                n += 1;
            }
        }
        n
    }
    fn remove_batch(&mut self, keys: &[Vec<u8>]) {
        let mut tx = self.env.write_txn().unwrap();
        for k in keys {
            self.db.delete(&mut tx, k).unwrap();
        }
        tx.commit().unwrap();
    }
    fn file_size(&self) -> u64 {
        size(&self.dir.join("data.mdb"))
    }
    fn compact(&mut self) -> u64 {
        let dst = self.dir.join("compact.mdb");
        let _ = std::fs::remove_file(&dst);
        self.env
            .copy_to_path(&dst, heed::CompactionOption::Enabled)
            .unwrap();
        size(&dst)
    }
}

fn engines(dir: &Path) -> Vec<Box<dyn Kv>> {
    vec![
        Box::new(Strata::open(&dir.join("s"))) as Box<dyn Kv>,
        Box::new(Redb::open(&dir.join("r"))),
        Box::new(Lmdb::open(&dir.join("l"))),
    ]
}

fn mkdirs(dir: &Path) {
    for d in ["s", "r", "l"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// Steady-state operations on databases preloaded with N elements.
fn steady(c: &mut Criterion) {
    let n = elements();
    let data = pairs(n, 1);
    let dir = tempfile::tempdir().unwrap();
    mkdirs(dir.path());
    let mut kvs = engines(dir.path());
    for kv in kvs.iter_mut() {
        kv.bulk_load(&data);
    }
    let mut rng = StdRng::seed_from_u64(2);
    let mut sample = |count: u64| -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| data[rng.random_range(0..data.len())].0.clone())
            .collect()
    };

    let mut g = c.benchmark_group("individual_writes");
    g.throughput(Throughput::Elements(1));
    for kv in kvs.iter_mut() {
        let mut seed = 100;
        g.bench_function(BenchmarkId::from_parameter(kv.name()), |b| {
            b.iter_custom(|iters| {
                seed += 1;
                let fresh = pairs(iters as usize, seed);
                let t = Instant::now();
                for p in fresh.chunks(1) {
                    kv.put_batch(p);
                }
                t.elapsed()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("batch_writes_1000");
    g.throughput(Throughput::Elements(1000));
    for kv in kvs.iter_mut() {
        let mut seed = 10_000;
        g.bench_function(BenchmarkId::from_parameter(kv.name()), |b| {
            b.iter_custom(|iters| {
                seed += 1;
                let fresh = pairs(iters as usize * 1000, seed);
                let t = Instant::now();
                for p in fresh.chunks(1000) {
                    kv.put_batch(p);
                }
                t.elapsed()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("random_gets");
    g.throughput(Throughput::Elements(1));
    for kv in kvs.iter() {
        g.bench_function(BenchmarkId::from_parameter(kv.name()), |b| {
            b.iter_custom(|iters| {
                let keys = sample(iters);
                let t = Instant::now();
                assert_eq!(kv.gets(&keys), keys.len());
                t.elapsed()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("range_scan_10");
    g.throughput(Throughput::Elements(1));
    for kv in kvs.iter() {
        g.bench_function(BenchmarkId::from_parameter(kv.name()), |b| {
            b.iter_custom(|iters| {
                let starts = sample(iters);
                let t = Instant::now();
                black_box(kv.ranges(&starts, 10));
                t.elapsed()
            })
        });
    }
    g.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Bulk load, removals and file sizes: one-shot phases, printed as a table.
fn phases(_c: &mut Criterion) {
    let n = elements();
    let data = pairs(n, 1);
    let runs = if n <= 2_000 { 1 } else { 3 };
    println!("\none-shot phases, N = {n} (24-byte random keys, 150-byte values)");
    println!(
        "{:<8} {:>14} {:>14} {:>14} {:>16} {:>16}",
        "engine", "bulk load", "remove N/2", "size loaded", "size removed", "size compacted"
    );
    for which in 0..3 {
        let mut loads = Vec::new();
        let mut row = None;
        for _ in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            mkdirs(dir.path());
            let mut kv = engines(dir.path()).remove(which);
            let t = Instant::now();
            kv.bulk_load(&data);
            loads.push(t.elapsed());
            if row.is_none() {
                let loaded = kv.file_size();
                let t = Instant::now();
                let half: Vec<Vec<u8>> = data.iter().step_by(2).map(|p| p.0.clone()).collect();
                for chunk in half.chunks(1000) {
                    kv.remove_batch(chunk);
                }
                let removal = t.elapsed();
                let removed = kv.file_size();
                let compacted = kv.compact();
                row = Some((kv.name(), removal, loaded, removed, compacted));
            }
        }
        let (name, removal, loaded, removed, compacted) = row.unwrap();
        println!(
            "{:<8} {:>14?} {:>14?} {:>14} {:>16} {:>16}",
            name,
            median(loads),
            removal,
            loaded,
            removed,
            compacted
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = phases, steady
}
criterion_main!(benches);
