//! A CRC-32C over a consistent copy of a 1 GiB db file (8 MiB in test
//! mode; the Hash RPC's work until it hashed the logical state instead),
//! as `Backend::hash` computes it with the CPU's
//! CRC instruction (crc32c), beside the path it replaced ("before": the
//! Snapshot RPC's stream, which also takes a SHA-256, into the `crc`
//! crate's byte-at-a-time CRC_32_ISCSI table). Both read the same file in
//! the same run.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_engine::backend::{Backend, BackendConfig, Bucket};

fn db_bytes() -> u64 {
    if strata_benches::test_mode() {
        8 << 20
    } else {
        1 << 30
    }
}

/// A backend holding about `bytes` of values (64 KiB each).
fn build(dir: &std::path::Path, bytes: u64) -> Backend {
    let b = Backend::open(BackendConfig {
        no_sync: true,
        ..BackendConfig::new(dir.join("db"))
    })
    .unwrap();
    let value = vec![0x5au8; 64 << 10];
    let n = bytes / value.len() as u64;
    for i in 0..n {
        b.batch()
            .unwrap()
            .put(Bucket::Key, &i.to_be_bytes(), &value)
            .unwrap();
        if i % 1024 == 1023 {
            b.force_commit().unwrap();
        }
    }
    b.force_commit().unwrap();
    b
}

/// The replaced implementation: the `crc` crate's table, one byte a step.
struct TableCrc(crc::Digest<'static, u32>);

impl std::io::Write for TableCrc {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let backend = build(dir.path(), db_bytes());
    let size = backend.snapshot(&mut std::io::sink()).unwrap().0;
    // Both implementations agree before either is timed.
    let mut table = TableCrc(CASTAGNOLI.digest());
    backend.snapshot(&mut table).unwrap();
    assert_eq!(table.0.finalize(), backend.hash().unwrap());

    let mut g = c.benchmark_group(format!("hash_{}_mib_db", size >> 20));
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("crc_table_before", |b| {
        b.iter(|| {
            let mut t = TableCrc(CASTAGNOLI.digest());
            backend.snapshot(&mut t).unwrap();
            t.0.finalize()
        })
    });
    g.bench_function("crc32c_backend_hash", |b| {
        b.iter(|| backend.hash().unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
