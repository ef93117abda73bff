//! Model-based property test: random puts, deletes, bucket creation and
//! deletion (nested too), commits, rollbacks and reopens against a BTreeMap
//! model; after every commit and reopen the file must hold exactly the model
//! and pass `check`.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_engine::btree::{check, Database, Options, WriteBucket, WriteTxn};
use strata_engine::Error;

use common::{dump, Model};

#[derive(Debug, Clone)]
enum Op {
    Put { bucket: usize, key: u16, len: usize },
    Delete { bucket: usize, key: u16 },
    CreateBucket(usize),
    DeleteBucket(usize),
    Seek { bucket: usize, key: u16 },
    Commit,
    Rollback,
    Reopen,
}

/// Bucket paths the test uses: two top-level, two nested.
fn paths() -> Vec<Vec<Vec<u8>>> {
    vec![
        vec![b"alpha".to_vec()],
        vec![b"beta".to_vec()],
        vec![b"alpha".to_vec(), b"inner".to_vec()],
        vec![b"beta".to_vec(), b"inner".to_vec()],
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..4usize, 0..300u16, prop_oneof![9 => 0..200usize, 1 => 1000..6000usize])
            .prop_map(|(bucket, key, len)| Op::Put { bucket, key, len }),
        12 => (0..4usize, 0..300u16).prop_map(|(bucket, key)| Op::Delete { bucket, key }),
        4 => (0..4usize).prop_map(Op::CreateBucket),
        1 => (0..4usize).prop_map(Op::DeleteBucket),
        3 => (0..4usize, 0..300u16).prop_map(|(bucket, key)| Op::Seek { bucket, key }),
        4 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("key-{k:05}").into_bytes()
}

fn open_path(tx: &mut WriteTxn, path: &[Vec<u8>]) -> Option<WriteBucket> {
    let refs: Vec<&[u8]> = path.iter().map(|p| p.as_slice()).collect();
    tx.bucket_path(&refs).unwrap()
}

/// The parent bucket of a path, if it exists.
fn parent_of(tx: &mut WriteTxn, path: &[Vec<u8>]) -> Option<WriteBucket> {
    if path.len() == 1 {
        Some(WriteBucket::ROOT)
    } else {
        open_path(tx, &path[..1])
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = Options {
        page_size: 1024,
        no_sync: true,
    };
    let mut db = Database::open(&path, opts.clone()).unwrap();
    let mut committed = Model::new();
    let mut working = Model::new();
    let mut tx: Option<WriteTxn> = None;
    let all = paths();
    for op in ops {
        if tx.is_none() && !matches!(op, Op::Reopen | Op::Rollback | Op::Commit) {
            tx = Some(db.begin_write().unwrap());
        }
        match op {
            Op::Put {
                bucket,
                key: k,
                len,
            } => {
                let t = tx.as_mut().unwrap();
                let value = vec![(k % 251) as u8; len];
                match open_path(t, &all[bucket]) {
                    Some(b) => {
                        t.put(b, &key(k), &value).unwrap();
                        working.get_mut(&all[bucket]).unwrap().insert(key(k), value);
                    }
                    None => assert!(!working.contains_key(&all[bucket])),
                }
            }
            Op::Delete { bucket, key: k } => {
                let t = tx.as_mut().unwrap();
                if let Some(b) = open_path(t, &all[bucket]) {
                    let was = t.delete(b, &key(k)).unwrap();
                    assert_eq!(
                        was,
                        working
                            .get_mut(&all[bucket])
                            .unwrap()
                            .remove(&key(k))
                            .is_some()
                    );
                }
            }
            Op::CreateBucket(i) => {
                let t = tx.as_mut().unwrap();
                let p = &all[i];
                let parent = parent_of(t, p);
                if let Some(parent) = parent {
                    let r = t.create_bucket(parent, p.last().unwrap());
                    if working.contains_key(p) {
                        assert!(matches!(r, Err(Error::BucketExists)));
                    } else {
                        r.unwrap();
                        working.insert(p.clone(), BTreeMap::new());
                    }
                }
            }
            Op::DeleteBucket(i) => {
                let t = tx.as_mut().unwrap();
                let p = &all[i];
                let parent = parent_of(t, p);
                if let Some(parent) = parent {
                    let r = t.delete_bucket(parent, p.last().unwrap());
                    if working.contains_key(p) {
                        r.unwrap();
                        working.retain(|k, _| !k.starts_with(p));
                    } else {
                        assert!(matches!(r, Err(Error::BucketNotFound)));
                    }
                }
            }
            Op::Seek { bucket, key: k } => {
                let t = tx.as_mut().unwrap();
                if let Some(b) = open_path(t, &all[bucket]) {
                    let m = &working[&all[bucket]];
                    let mut c = t.cursor(b).unwrap();
                    let mut got = c.seek(&key(k)).unwrap().map(|e| e.key.to_vec());
                    // Nested buckets live among the keys of their parent.
                    let expect_next = |from: &[u8], incl: bool| -> Option<Vec<u8>> {
                        let keys = m.keys().cloned();
                        let buckets = working
                            .keys()
                            .filter(|q| {
                                q.len() == all[bucket].len() + 1 && q.starts_with(&all[bucket])
                            })
                            .map(|q| q.last().unwrap().clone());
                        keys.chain(buckets)
                            .filter(|x| {
                                if incl {
                                    x.as_slice() >= from
                                } else {
                                    x.as_slice() > from
                                }
                            })
                            .min()
                    };
                    assert_eq!(got, expect_next(&key(k), true));
                    if let Some(g) = got.take() {
                        let n = c.next().unwrap().map(|e| e.key.to_vec());
                        assert_eq!(n, expect_next(&g, false));
                        let p = c.prev().unwrap().map(|e| e.key.to_vec());
                        assert_eq!(p, Some(g));
                    }
                }
            }
            Op::Commit => {
                if let Some(t) = tx.take() {
                    t.commit().unwrap();
                    committed = working.clone();
                    assert_eq!(dump(&db), committed);
                    assert_eq!(check(&db).unwrap(), Vec::<String>::new());
                }
            }
            Op::Rollback => {
                tx = None;
                working = committed.clone();
            }
            Op::Reopen => {
                tx = None;
                working = committed.clone();
                drop(db);
                db = Database::open(&path, opts.clone()).unwrap();
                assert_eq!(dump(&db), committed);
                assert_eq!(check(&db).unwrap(), Vec::<String>::new());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn btree_matches_model(ops in prop::collection::vec(op(), 1..400)) {
        run(ops);
    }
}

#[test]
fn bulk_insert_delete_shrinks_and_stays_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(
        dir.path().join("db"),
        Options {
            page_size: 1024,
            no_sync: true,
        },
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    let b = tx.create_bucket(WriteBucket::ROOT, b"b").unwrap();
    for i in 0..20_000u32 {
        tx.put(b, &i.to_be_bytes(), &[7u8; 40]).unwrap();
    }
    tx.commit().unwrap();
    let full = strata_engine::btree::stats(&db).unwrap();
    let mut tx = db.begin_write().unwrap();
    let b = tx.bucket(WriteBucket::ROOT, b"b").unwrap().unwrap();
    for i in 0..20_000u32 {
        if i % 10 != 0 {
            assert!(tx.delete(b, &i.to_be_bytes()).unwrap());
        }
    }
    tx.commit().unwrap();
    assert_eq!(check(&db).unwrap(), Vec::<String>::new());
    let after = strata_engine::btree::stats(&db).unwrap();
    assert_eq!(after.keys, 2_000);
    // Deletes rebalance: a tenth of the keys in well under a third of the pages.
    assert!(
        after.leaf_pages * 3 < full.leaf_pages,
        "{} vs {}",
        after.leaf_pages,
        full.leaf_pages
    );
    assert!(after.leaf_fill() > 0.25, "leaf fill {}", after.leaf_fill());
}

#[test]
/// Found by the property test: `prev` after `next` ran off the end must
/// give the last key again (here a one-key bucket whose value spans pages).
fn prev_after_running_off_the_end() {
    run(vec![
        Op::CreateBucket(1),
        Op::Commit,
        Op::CreateBucket(3),
        Op::Put {
            bucket: 3,
            key: 181,
            len: 4893,
        },
        Op::Commit,
        Op::Seek {
            bucket: 3,
            key: 129,
        },
    ]);
}

/// One large transaction of random inserts, overwrites and deletes (dirty
/// nodes split during the transaction), then the same after a commit.
#[test]
fn large_random_transaction_matches_model() {
    use rand::{RngExt, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(
        dir.path().join("db"),
        Options {
            page_size: 1024,
            no_sync: true,
        },
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut model = BTreeMap::new();
    for round in 0..2 {
        let mut tx = db.begin_write().unwrap();
        let b = tx
            .create_bucket_if_missing(WriteBucket::ROOT, b"b")
            .unwrap();
        for _ in 0..30_000 {
            let k = rng.random::<u32>() % 50_000;
            let key = format!("{k:08}").into_bytes();
            if rng.random_bool(0.2) {
                assert_eq!(tx.delete(b, &key).unwrap(), model.remove(&key).is_some());
            } else {
                let v = vec![round as u8; rng.random_range(1..300)];
                tx.put(b, &key, &v).unwrap();
                model.insert(key, v);
            }
        }
        let mut c = tx.cursor(b).unwrap();
        let mut seen = Vec::new();
        let mut it = c.first().unwrap();
        while let Some(e) = it {
            seen.push((e.key.to_vec(), e.value.to_vec()));
            it = c.next().unwrap();
        }
        assert_eq!(
            seen,
            model
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        );
        drop(c);
        tx.commit().unwrap();
        assert_eq!(check(&db).unwrap(), Vec::<String>::new());
        let got = dump(&db);
        assert_eq!(got[&vec![b"b".to_vec()]], model);
    }
}
