//! etcd's exact semantics for the cases clients depend on.

use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_engine::mvcc::*;
use strata_engine::Error;

fn store(dir: &std::path::Path) -> Store {
    Store::open(
        Backend::open(BackendConfig {
            no_sync: true,
            ..BackendConfig::new(dir.join("db"))
        })
        .unwrap(),
    )
    .unwrap()
}

fn put(s: &Store, k: &str, v: &str) -> i64 {
    s.put(&PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
    .unwrap()
    .revision
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

#[test]
fn put_validation_and_ignore_flags() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let p = |req: PutRequest| s.put(&req);
    assert!(matches!(
        p(PutRequest {
            key: vec![],
            value: b"v".to_vec(),
            ..Default::default()
        }),
        Err(Error::KeyNotProvided)
    ));
    assert!(matches!(
        p(PutRequest {
            key: b"k".to_vec(),
            ignore_value: true,
            ..Default::default()
        }),
        Err(Error::KeyNotFound)
    ));
    assert!(matches!(
        p(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        }),
        Err(Error::ValueProvided)
    ));
    assert!(matches!(
        p(PutRequest {
            key: b"k".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        }),
        Err(Error::LeaseProvided)
    ));
    assert_eq!(s.revision(), 1, "failed requests take no revision");
    p(PutRequest {
        key: b"k".to_vec(),
        value: b"v1".to_vec(),
        lease: 7,
        ..Default::default()
    })
    .unwrap();
    let r = p(PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        prev_kv: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.prev_kv.unwrap().value, b"v1");
    let kv = &s
        .range(&RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .kvs[0];
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.lease,
            kv.version,
            kv.create_revision,
            kv.mod_revision
        ),
        (&b"v1"[..], 0, 2, 2, 3)
    );
    p(PutRequest {
        key: b"k".to_vec(),
        value: b"v2".to_vec(),
        ignore_lease: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.range(&RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .kvs[0]
            .lease,
        0
    );
}

#[test]
fn txn_rejects_duplicate_keys() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    let put_op = |k: &str| {
        RequestOp::Put(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    };
    let del_op = |k: &str, e: &str| {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: e.into(),
            prev_kv: false,
        })
    };
    let txn = |success: Vec<RequestOp>| {
        s.txn(&TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        })
    };
    assert!(matches!(
        txn(vec![put_op("a"), put_op("a")]),
        Err(Error::DuplicateKey)
    ));
    assert!(matches!(
        txn(vec![del_op("a", "c"), put_op("b")]),
        Err(Error::DuplicateKey)
    ));
    let nested = RequestOp::Txn(TxnRequest {
        compare: vec![],
        success: vec![put_op("a")],
        failure: vec![put_op("a")],
    });
    assert!(matches!(
        txn(vec![put_op("a"), nested.clone()]),
        Err(Error::DuplicateKey)
    ));
    // The same key in both branches of a nested txn is fine (one runs).
    assert!(txn(vec![put_op("z"), nested]).is_ok());
    // Overlapping deletes are fine.
    assert!(txn(vec![del_op("a", "c"), del_op("b", "d")]).is_ok());
}

#[test]
fn compares_on_missing_keys_and_nested_txns() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    // Kubernetes' create: if mod_revision(key) == 0 then put.
    let create = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Mod(0),
            key: b"pod".to_vec(),
            range_end: vec![],
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: b"pod".to_vec(),
            value: b"v1".to_vec(),
            ..Default::default()
        })],
        failure: vec![RequestOp::Range(RangeRequest {
            key: b"pod".to_vec(),
            ..Default::default()
        })],
    };
    let r = s.txn(&create).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 2);
    let r = s.txn(&create).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 2, "a read-only branch takes no revision");
    // A value compare on a missing key is always false, even NOT_EQUAL.
    let missing_value = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::NotEqual,
            target: CompareTarget::Value(b"x".to_vec()),
            key: b"nope".to_vec(),
            range_end: vec![],
        }],
        ..Default::default()
    };
    assert!(!s.txn(&missing_value).unwrap().succeeded);
    // Nested: the inner compare is decided at the start; all writes share
    // one revision with sub revisions in order.
    let nested = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                ..Default::default()
            }),
            RequestOp::Txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target: CompareTarget::Version(0),
                    key: b"a".to_vec(),
                    range_end: vec![],
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: b"b".to_vec(),
                    value: b"2".to_vec(),
                    ..Default::default()
                })],
                failure: vec![RequestOp::Put(PutRequest {
                    key: b"c".to_vec(),
                    value: b"3".to_vec(),
                    ..Default::default()
                })],
            }),
        ],
        failure: vec![],
    };
    let r = s.txn(&nested).unwrap();
    let ResponseOp::Txn(inner) = &r.responses[1] else {
        panic!()
    };
    assert!(inner.succeeded, "decided before the outer put ran");
    assert_eq!(r.revision, 3);
    let all = s
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(keys(&all), ["a", "b", "pod"]);
    assert!(all
        .kvs
        .iter()
        .filter(|kv| kv.key != b"pod")
        .all(|kv| kv.mod_revision == 3));
}

#[test]
fn sorting_filters_and_keys_only() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    put(&s, "b", "3"); // rev 2
    put(&s, "a", "2"); // rev 3
    put(&s, "c", "1"); // rev 4
    put(&s, "a", "9"); // rev 5
    let base = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let r = |f: &dyn Fn(&mut RangeRequest)| {
        let mut q = base.clone();
        f(&mut q);
        s.range(&q).unwrap()
    };
    assert_eq!(
        keys(&r(&|q| q.sort_order = SortOrder::Descend)),
        ["c", "b", "a"]
    );
    assert_eq!(
        keys(&r(&|q| q.sort_target = SortTarget::Value)),
        ["c", "b", "a"],
        "a target without an order sorts ascending"
    );
    assert_eq!(
        keys(&r(&|q| {
            q.sort_target = SortTarget::Mod;
            q.sort_order = SortOrder::Descend
        })),
        ["a", "c", "b"]
    );
    assert_eq!(keys(&r(&|q| q.min_mod_revision = 4)), ["a", "c"]);
    assert_eq!(keys(&r(&|q| q.max_create_revision = 3)), ["a", "b"]);
    let lim = r(&|q| {
        q.limit = 2;
        q.sort_order = SortOrder::Descend;
        q.sort_target = SortTarget::Version
    });
    assert_eq!(
        (keys(&lim), lim.more, lim.count),
        (vec!["a".to_string(), "b".to_string()], true, 3)
    );
    assert!(r(&|q| q.keys_only = true)
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty()));
    // Prefix: key + 1.
    assert_eq!(
        keys(
            &s.range(&RangeRequest {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                ..Default::default()
            })
            .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        keys(
            &s.range(&RangeRequest {
                key: b"b".to_vec(),
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap()
        ),
        ["b", "c"]
    );
}

#[test]
fn interrupted_compaction_resumes_on_open() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path());
    for i in 0..50 {
        put(&s, &format!("k{}", i % 5), &i.to_string());
    }
    let rev = s.revision() - 10;
    // A crash after the schedule was durable but before any delete.
    {
        let mut b = s.backend().batch().unwrap();
        b.put(
            Bucket::Meta,
            strata_engine::mvcc::store::SCHEDULED_COMPACT_KEY,
            &Revision::new(rev, 0).to_key(false),
        )
        .unwrap();
    }
    s.backend().clone().close().unwrap();
    drop(s);
    let s = store(d.path());
    assert_eq!(s.compact_revision(), rev);
    let stored = s
        .backend()
        .read()
        .range(Bucket::Key, b"", b"", 0)
        .unwrap()
        .len();
    // 5 keys keep their revision at `rev`, plus the 10 later revisions.
    assert_eq!(stored, 5 + 10);
    assert!(matches!(
        s.range(&RangeRequest {
            key: b"k0".to_vec(),
            revision: rev - 1,
            ..Default::default()
        }),
        Err(Error::Compacted)
    ));
    assert_eq!(
        s.range(&RangeRequest {
            key: b"k0".to_vec(),
            revision: rev,
            ..Default::default()
        })
        .unwrap()
        .kvs
        .len(),
        1
    );
    let finished = s
        .backend()
        .read()
        .get(
            Bucket::Meta,
            strata_engine::mvcc::store::FINISHED_COMPACT_KEY,
        )
        .unwrap();
    assert_eq!(finished, Some(Revision::new(rev, 0).to_key(false)));
}

#[test]
fn compaction_in_two_halves_survives_a_stop_between_them() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = store(d.path());
        for i in 0..2500 {
            put(&s, &format!("k{}", i % 10), &i.to_string());
        }
        let job = s.begin_compaction(2000).unwrap();
        // Reads below are refused at once; writes go on before the
        // deleting half runs.
        let below = s.range(&RangeRequest {
            key: b"k1".to_vec(),
            revision: 1500,
            ..Default::default()
        });
        assert!(matches!(below, Err(Error::Compacted)));
        put(&s, "during", "x");
        assert!(matches!(s.begin_compaction(2000), Err(Error::Compacted)));
        // Stop without finishing: the schedule is durable.
        drop(job);
        s.backend().force_commit().unwrap();
    }
    let s = store(d.path());
    assert_eq!(s.compact_revision(), 2000);
    let view = s.backend().read();
    let finished = view.get(Bucket::Meta, b"finishedCompactRev").unwrap();
    assert!(finished.is_some(), "open finishes a scheduled compaction");
    // Only what reads at >= 2000 need is left: 10 keys' values at 2000,
    // the newer revisions, and the write made in between.
    let left = view.range(Bucket::Key, b"", b"", 0).unwrap().len();
    assert_eq!(left, 10 + 501 + 1);
    let r = s
        .range(&RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            revision: 2000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.count, 10);
}

/// A stored KeyValue that no longer decodes is reported with the db file,
/// the bucket and the revision key it sits under: on open (the index
/// rebuild reads every record) and never returned as data.
#[test]
fn a_damaged_record_names_file_bucket_and_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store(dir.path());
        put(&s, "a", "1");
        s.backend().force_commit().unwrap();
    }
    // Overwrite the value under revision {2, 0} with bytes that are not a
    // KeyValue (a field tag with no value).
    let path = dir.path().join("db");
    let rev_key = Revision::new(2, 0).to_key(false);
    {
        let db = strata_engine::btree::Database::open(&path, Default::default()).unwrap();
        let mut tx = db.begin_write().unwrap();
        let b = tx
            .bucket(strata_engine::btree::WriteBucket::ROOT, b"key")
            .unwrap()
            .unwrap();
        tx.put(b, &rev_key, &[0x0a]).unwrap();
        tx.commit().unwrap();
    }
    let err = Store::open(Backend::open(BackendConfig::new(&path)).unwrap())
        .err()
        .expect("a damaged record must not open");
    match &err {
        Error::CorruptedRecord {
            file, bucket, key, ..
        } => {
            assert_eq!(file, &path);
            assert_eq!(*bucket, "key");
            let hex: String = rev_key.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(key, &hex);
        }
        other => panic!("expected CorruptedRecord, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("bucket key"), "{msg}");
}

/// etcd 3.6 (and 3.5.17) hash at exactly the compaction revision; only
/// revisions below it are compacted. After compacting to r the hash at r
/// covers what a read at r still needs (the superseded revisions are gone,
/// so it differs from the hash at r taken before). A tombstone at r itself
/// is left out of the hash, as etcd leaves it out (it deletes or keeps it
/// depending on its version); the rule is exercised below.
#[test]
fn hashkv_at_the_compaction_revision_is_answered_and_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    put(&s, "a", "1");
    put(&s, "b", "1");
    let r = put(&s, "a", "2");
    put(&s, "c", "1");
    let (before, _, _) = s.hash_kv(r).unwrap();
    s.compact(r).unwrap();
    let (after, current, compact) = s.hash_kv(r).unwrap();
    assert_eq!((compact, current), (r, r + 1));
    assert_ne!(after, before, "the superseded revision of a is gone");
    assert_eq!(s.hash_kv(r).unwrap().0, after, "stable");
    assert!(matches!(s.hash_kv(r - 1), Err(Error::Compacted)));

    // A delete at the compaction revision: its tombstone is not hashed.
    let d = s
        .delete_range(&DeleteRangeRequest {
            key: "c".into(),
            ..Default::default()
        })
        .unwrap()
        .revision;
    put(&s, "e", "1");
    s.compact(d).unwrap();
    let (at_d, _, compact) = s.hash_kv(d).unwrap();
    assert_eq!(compact, d);
    assert_eq!(s.hash_kv(d).unwrap().0, at_d, "stable");
    assert_eq!(
        at_d, after,
        "c's put and its tombstone at d are out of the hash: what is left is what r left"
    );
}
