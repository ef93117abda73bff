//! The MVCC store with 1,000,000 keys (64-byte keys, 256-byte values, one
//! put per write transaction as etcd applies them): put throughput and
//! range throughput (one key; 100 keys of a 1,000-key window). In test mode
//! (`cargo test --benches`) 10,000 keys. `strata-util bench-mvcc` also
//! reports the index's memory.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use strata_engine::mvcc::{PutRequest, RangeRequest};
use strata_tools::mvccbench::{key, load, open};

fn keys() -> usize {
    if strata_benches::test_mode() {
        10_000
    } else {
        1_000_000
    }
}

fn bench(c: &mut Criterion) {
    let n = keys();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), true).unwrap();
    load(&store, n, 64, 256).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let value = vec![0x62u8; 256];

    let mut g = c.benchmark_group(format!("mvcc_{n}_keys"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("put_existing_key", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let k = key(rng.random_range(0..n), 64);
                store
                    .put(&PutRequest {
                        key: k,
                        value: value.clone(),
                        ..Default::default()
                    })
                    .unwrap();
            }
            t.elapsed()
        })
    });
    g.bench_function("range_one_key", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let k = key(rng.random_range(0..n), 64);
                std::hint::black_box(
                    store
                        .range(&RangeRequest {
                            key: k,
                            ..Default::default()
                        })
                        .unwrap(),
                );
            }
            t.elapsed()
        })
    });
    g.bench_function("range_limit_100_of_1000", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let i = rng.random_range(0..n);
                let req = RangeRequest {
                    key: key(i, 64),
                    range_end: key((i + 1000).min(n), 64),
                    limit: 100,
                    ..Default::default()
                };
                std::hint::black_box(store.range(&req).unwrap());
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
