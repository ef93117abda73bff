//! Model-based property test of the MVCC store against a naive model that
//! keeps the full state at every revision: puts, deletes, txns (compares,
//! branches, reads of own writes), ranges at any revision with limits,
//! compaction, HashKV stability and reopen.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::*;
use strata_engine::Error;

type State = BTreeMap<Vec<u8>, KeyValue>;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    Txn {
        key: u8,
        expect_version: i64,
        then_put: u8,
        else_delete: u8,
    },
    Range {
        key: u8,
        end: Option<u8>,
        rev_back: u8,
        limit: u8,
    },
    Compact(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..6u8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (0..6u8, prop::option::of(0..7u8)).prop_map(|(k, e)| Op::Delete(k, e)),
        3 => (0..6u8, 0..3i64, 0..6u8, 0..6u8).prop_map(|(key, expect_version, then_put, else_delete)| Op::Txn { key, expect_version, then_put, else_delete }),
        6 => (0..6u8, prop::option::of(0..7u8), 0..8u8, 0..4u8).prop_map(|(key, end, rev_back, limit)| Op::Range { key, end, rev_back, limit }),
        1 => (0..6u8).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

/// `None`: the key alone; `Some(6)`: "\0" (to the end); else up to that key.
fn range_end(e: Option<u8>) -> Vec<u8> {
    match e {
        None => Vec::new(),
        Some(6) => vec![0],
        Some(x) => key(x),
    }
}

fn in_range(k: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == start,
        [0] => k >= start,
        e => k >= start && k < e,
    }
}

struct Model {
    history: Vec<State>, // history[r] = state at revision r (index 0 unused)
    compact: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.history.len() as i64 - 1
    }
    fn apply(&mut self, writes: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let rev = self.current() + 1;
        let mut st = self.history.last().unwrap().clone();
        let mut changed = false;
        for (k, v) in writes {
            match v {
                Some(v) => {
                    let (create, version) = st
                        .get(k)
                        .map_or((rev, 1), |o| (o.create_revision, o.version + 1));
                    st.insert(
                        k.clone(),
                        KeyValue {
                            key: k.clone(),
                            create_revision: create,
                            mod_revision: rev,
                            version,
                            value: v.clone(),
                            lease: 0,
                        },
                    );
                    changed = true;
                }
                None => changed |= st.remove(k).is_some(),
            }
        }
        if changed {
            self.history.push(st);
        }
    }
}

fn open(dir: &std::path::Path) -> Store {
    let cfg = BackendConfig {
        batch_limit: 5,
        no_sync: true,
        ..BackendConfig::new(dir.join("db"))
    };
    Store::open(Backend::open(cfg).unwrap()).unwrap()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut m = Model {
        history: vec![State::new(), State::new()],
        compact: -1,
    };
    assert_eq!(store.revision(), 1, "an empty store is at revision 1");
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let r = store
                    .put(&PutRequest {
                        key: key(k),
                        value: vec![v],
                        prev_kv: true,
                        ..Default::default()
                    })
                    .unwrap();
                assert_eq!(r.prev_kv.as_ref(), m.history.last().unwrap().get(&key(k)));
                m.apply(&[(key(k), Some(vec![v]))]);
                assert_eq!(r.revision, m.current());
            }
            Op::Delete(k, e) => {
                let end = range_end(e);
                let r = store
                    .delete_range(&DeleteRangeRequest {
                        key: key(k),
                        range_end: end.clone(),
                        prev_kv: true,
                    })
                    .unwrap();
                let gone: Vec<KeyValue> = m
                    .history
                    .last()
                    .unwrap()
                    .values()
                    .filter(|kv| in_range(&kv.key, &key(k), &end))
                    .cloned()
                    .collect();
                assert_eq!(r.prev_kvs, gone);
                assert_eq!(r.deleted, gone.len() as i64);
                let writes: Vec<_> = gone.iter().map(|kv| (kv.key.clone(), None)).collect();
                m.apply(&writes);
                assert_eq!(
                    r.revision,
                    m.current(),
                    "a delete of nothing keeps the revision"
                );
            }
            Op::Txn {
                key: k,
                expect_version,
                then_put,
                else_delete,
            } => {
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Version(expect_version),
                        key: key(k),
                        range_end: vec![],
                    }],
                    success: vec![
                        RequestOp::Put(PutRequest {
                            key: key(then_put),
                            value: b"t".to_vec(),
                            ..Default::default()
                        }),
                        RequestOp::Range(RangeRequest {
                            key: key(then_put),
                            ..Default::default()
                        }),
                    ],
                    failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                        key: key(else_delete),
                        ..Default::default()
                    })],
                };
                let r = store.txn(&req).unwrap();
                let version = m
                    .history
                    .last()
                    .unwrap()
                    .get(&key(k))
                    .map_or(0, |kv| kv.version);
                assert_eq!(r.succeeded, version == expect_version);
                if r.succeeded {
                    m.apply(&[(key(then_put), Some(b"t".to_vec()))]);
                    // The range inside the txn sees the txn's own put.
                    let ResponseOp::Range(rr) = &r.responses[1] else {
                        panic!()
                    };
                    assert_eq!(rr.kvs[0].mod_revision, m.current());
                } else {
                    m.apply(&[(key(else_delete), None)]);
                }
                assert_eq!(r.revision, m.current());
            }
            Op::Range {
                key: k,
                end,
                rev_back,
                limit,
            } => {
                let rev = (m.current() - i64::from(rev_back)).max(0);
                let end = range_end(end);
                let req = RangeRequest {
                    key: key(k),
                    range_end: end.clone(),
                    revision: rev,
                    limit: i64::from(limit),
                    ..Default::default()
                };
                let got = store.range(&req);
                let at = if rev == 0 { m.current() } else { rev };
                if at < m.compact {
                    assert!(matches!(got, Err(Error::Compacted)), "{got:?}");
                    continue;
                }
                let got = got.unwrap();
                let all: Vec<KeyValue> = m.history[at as usize]
                    .values()
                    .filter(|kv| in_range(&kv.key, &key(k), &end))
                    .cloned()
                    .collect();
                let lim = if limit == 0 {
                    all.len()
                } else {
                    (limit as usize).min(all.len())
                };
                assert_eq!(got.kvs, all[..lim].to_vec(), "range at {at}");
                assert_eq!(got.count, all.len() as i64);
                assert_eq!(got.more, lim < all.len());
                assert_eq!(got.revision, m.current());
                let count = store
                    .range(&RangeRequest {
                        count_only: true,
                        ..req
                    })
                    .unwrap();
                assert_eq!(count.count, all.len() as i64);
                assert!(count.kvs.is_empty());
            }
            Op::Compact(back) => {
                let rev = m.current() - i64::from(back);
                let r = store.compact(rev);
                if rev <= m.compact {
                    assert!(matches!(r, Err(Error::Compacted)));
                } else {
                    let before = store.hash_kv(0).unwrap();
                    r.unwrap();
                    m.compact = rev;
                    // Compaction changes no state a read at >= rev sees.
                    let after = store.hash_kv(0).unwrap();
                    assert_eq!(after.1, before.1);
                    assert_eq!(after.2, rev);
                }
            }
            Op::Reopen => {
                store.backend().clone().close().unwrap();
                drop(store);
                store = open(dir.path());
                assert_eq!(store.revision(), m.current());
                assert_eq!(store.compact_revision(), m.compact);
            }
        }
    }
    assert!(matches!(
        store.range(&RangeRequest {
            key: key(0),
            revision: m.current() + 1,
            ..Default::default()
        }),
        Err(Error::FutureRevision)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
