//! Runs the fuzz targets' bodies over the seed corpus in fuzz/corpus, and over
//! deterministic mutations (bit flips, truncations) of each seed.

use strata_engine::btree::{Database, Options, WriteBucket};
use strata_engine::fuzzing;

use fuzzing::{corpus, mutations};
use std::path::Path;

#[test]
fn decode_page_seeds() {
    for seed in corpus("decode_page") {
        for m in mutations(&seed, 300) {
            fuzzing::decode_page(&m);
        }
    }
}

#[test]
fn open_file_seeds() {
    for seed in corpus("open_file") {
        for m in mutations(&seed, 60) {
            fuzzing::open_file(&m);
        }
    }
}

#[test]
fn btree_ops_seeds() {
    for seed in corpus("btree_ops") {
        fuzzing::ops_against_model(&seed);
    }
}

#[test]
fn wal_segment_seeds() {
    for seed in corpus("wal_segment") {
        for m in mutations(&seed, 200) {
            fuzzing::wal_segment(&m);
        }
    }
}

/// Writes the seed corpus (run by hand: `cargo test -p strata-engine --test
/// fuzz_seeds -- --ignored`), from small real database files.
#[test]
#[ignore]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(
        &path,
        Options {
            page_size: 1024,
            no_sync: true,
        },
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    let b = tx.create_bucket(WriteBucket::ROOT, b"key").unwrap();
    let n = tx.create_bucket(b, b"nested").unwrap();
    for i in 0..60u32 {
        tx.put(
            b,
            format!("k{i:03}").as_bytes(),
            &vec![i as u8; if i == 7 { 1500 } else { 20 }],
        )
        .unwrap();
    }
    tx.put(n, b"x", b"y").unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    let b = tx.bucket(WriteBucket::ROOT, b"key").unwrap().unwrap();
    for i in 0..30u32 {
        tx.delete(b, format!("k{i:03}").as_bytes()).unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let file = std::fs::read(&path).unwrap();
    let wal_dir = dir.path().join("wal");
    {
        use strata_engine::wal::{Entry, HardState, Metadata, SnapshotMark, Wal, WalOptions};
        let opts = WalOptions {
            segment_size: 4096,
            no_sync: true,
        };
        let mut w = Wal::create(
            &wal_dir,
            Metadata {
                member_id: 1,
                cluster_id: 2,
            },
            opts,
        )
        .unwrap();
        for i in 1..6u64 {
            let e = Entry {
                index: i,
                term: 1,
                entry_type: (i % 3) as u8,
                data: vec![i as u8; 40],
            };
            w.save(
                Some(&HardState {
                    term: 1,
                    vote: 1,
                    commit: i,
                }),
                &[e],
            )
            .unwrap();
        }
        w.save_snapshot(&SnapshotMark {
            index: 3,
            term: 1,
            ..Default::default()
        })
        .unwrap();
        w.sync().unwrap();
    }
    let seg = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes.truncate(end.div_ceil(8) * 8 + 64);
    for t in ["decode_page", "open_file", "btree_ops", "wal_segment"] {
        std::fs::create_dir_all(root.join(t)).unwrap();
    }
    std::fs::write(root.join("open_file/small-db"), &file).unwrap();
    for (i, page) in file.chunks(1024).enumerate().take(12) {
        std::fs::write(root.join(format!("decode_page/page-{i:02}")), page).unwrap();
    }
    let mut ops = Vec::new();
    for i in 0..200u32 {
        ops.extend_from_slice(&[
            (i * 37 % 256) as u8,
            (i * 11 % 256) as u8,
            (i % 7 * 40) as u8,
        ]);
    }
    std::fs::write(root.join("btree_ops/mixed"), &ops).unwrap();
    std::fs::write(root.join("wal_segment/small-log"), &bytes).unwrap();
    std::fs::write(
        root.join("btree_ops/puts-then-commit"),
        [0u8, 1, 2, 2, 3, 4, 12, 0, 0, 8, 1, 0, 13, 0, 0],
    )
    .unwrap();
}
