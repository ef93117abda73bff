//! WAL appends: 100-byte and 1 KiB entries in batches of 1, 10, 100 and
//! 1,000, one sync per batch, beside the same disk's anchors measured in the
//! same run: a small write + fdatasync, and a 1 MiB write + fdatasync (what a
//! batch of 1,000 x 1 KiB costs the disk). `strata-util bench-wal` is the
//! quick version that also prints the ratios.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_tools::walbench::{fdatasync_rate, write_bandwidth, Appender};

fn anchors(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("anchor");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fdatasync_128B", |b| {
        b.iter_custom(|iters| {
            // fdatasync_rate runs for a time; convert its rate back to a
            // time for `iters` syncs.
            let rate = fdatasync_rate(dir.path(), 128, Duration::from_millis(200)).unwrap();
            Duration::from_secs_f64(iters as f64 / rate)
        })
    });
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("write_1MiB_fdatasync", |b| {
        b.iter_custom(|iters| {
            let mbs = write_bandwidth(dir.path(), 32 << 20, 1 << 20, 1 << 20).unwrap();
            Duration::from_secs_f64(iters as f64 * (1 << 20) as f64 / 1e6 / mbs)
        })
    });
    g.finish();
}

fn appends(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for size in [100usize, 1024] {
        let mut g = c.benchmark_group(format!("wal_append_{size}B"));
        for batch in [1usize, 10, 100, 1000] {
            g.throughput(Throughput::Elements(batch as u64));
            let mut app = Appender::new(dir.path(), size).unwrap();
            g.bench_function(BenchmarkId::new("batch", batch), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        app.batch(batch).unwrap();
                    }
                    t.elapsed()
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = anchors, appends
}
criterion_main!(benches);
