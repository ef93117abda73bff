//! A compaction's job (schedule commit, index compaction a slice of keys
//! at a time, deletion) runs while writes go on: the store ends exactly as
//! one whose writes waited for the job — same HashKV, same answers at the
//! compaction revision and after, same index size.

use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::*;

const KEYS: u64 = 25_000; // more than two index slices

fn open(dir: &std::path::Path) -> Store {
    let cfg = BackendConfig {
        no_sync: true,
        ..BackendConfig::new(dir.join("db"))
    };
    Store::open(Backend::open(cfg).unwrap()).unwrap()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn history(s: &Store) {
    for i in 0..KEYS {
        s.put(&PutRequest {
            key: key(i),
            value: vec![b'a'; 16],
            ..Default::default()
        })
        .unwrap();
    }
    for i in (0..KEYS).step_by(3) {
        s.put(&PutRequest {
            key: key(i),
            value: vec![b'b'; 16],
            ..Default::default()
        })
        .unwrap();
    }
    for i in (0..KEYS).step_by(5) {
        s.delete_range(&DeleteRangeRequest {
            key: key(i),
            ..Default::default()
        })
        .unwrap();
    }
}

/// Writes made while (or after) the job runs: new revisions of old keys,
/// re-creations of deleted ones, deletions.
fn later(s: &Store) {
    for i in (0..KEYS).step_by(7) {
        s.put(&PutRequest {
            key: key(i),
            value: vec![b'c'; 16],
            ..Default::default()
        })
        .unwrap();
    }
    for i in (1..KEYS).step_by(11) {
        s.delete_range(&DeleteRangeRequest {
            key: key(i),
            ..Default::default()
        })
        .unwrap();
    }
}

fn all(s: &Store, revision: i64) -> RangeResponse {
    s.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn writes_during_the_job_end_as_writes_after_it() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(da.path()), open(db.path()));
    history(&a);
    history(&b);
    let rev = a.revision();
    assert_eq!(rev, b.revision());

    // a: the job on its own thread while the later writes go on.
    let job = a.begin_compaction(rev).unwrap();
    let worker = std::thread::spawn(move || job.finish());
    later(&a);
    worker.join().unwrap().unwrap();

    // b: the job first, the writes after it.
    b.begin_compaction(rev).unwrap().finish().unwrap();
    later(&b);

    assert_eq!(a.revision(), b.revision());
    assert_eq!(a.index_len(), b.index_len());
    assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
    assert_eq!(a.hash_kv(rev).unwrap(), b.hash_kv(rev).unwrap());
    assert_eq!(all(&a, rev), all(&b, rev));
    assert_eq!(all(&a, 0), all(&b, 0));
    assert!(matches!(
        a.range(&RangeRequest {
            key: key(1),
            revision: rev - 1,
            ..Default::default()
        }),
        Err(strata_engine::Error::Compacted)
    ));
}
