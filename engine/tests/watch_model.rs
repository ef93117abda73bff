//! Watch guarantees against a model: for random writes and watchers with
//! random start revisions, ranges and filters, each watcher's stream equals
//! the model's history (ordered, no duplicates, none missing), and no
//! revision is split across responses. Slow watchers never block writers.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;

use proptest::prelude::*;
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::*;

fn open(dir: &std::path::Path) -> WatchableStore {
    let cfg = BackendConfig {
        no_sync: true,
        ..BackendConfig::new(dir.join("db"))
    };
    WatchableStore::new(Store::open(Backend::open(cfg).unwrap()).unwrap())
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8),
    Delete(u8, bool),
    TwoPuts(u8, u8),
    Watch {
        key: u8,
        range: bool,
        back: u8,
        no_put: bool,
        no_delete: bool,
        prev: bool,
    },
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..5u8).prop_map(Op::Put),
        2 => (0..5u8, any::<bool>()).prop_map(|(k, r)| Op::Delete(k, r)),
        2 => (0..5u8, 0..5u8).prop_map(|(a, b)| Op::TwoPuts(a, b)),
        3 => (0..5u8, any::<bool>(), 0..6u8, any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(key, range, back, no_put, no_delete, prev)| Op::Watch { key, range, back, no_put, no_delete, prev }),
        1 => Just(Op::Sync),
    ]
}

/// (revision, kind, key, value, prev value) of one event.
type Ev = (i64, EventKind, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

struct Expect {
    rx: Receiver<WatchResponse>,
    req: WatchRequest,
    from: i64,
}

fn flatten(
    rx: &Receiver<WatchResponse>,
    per_rev: &BTreeMap<i64, Vec<Ev>>,
    req: &WatchRequest,
) -> Vec<Ev> {
    let mut out = Vec::new();
    while let Ok(resp) = rx.try_recv() {
        assert!(!resp.canceled);
        let mut revs = BTreeMap::<i64, usize>::new();
        for e in &resp.events {
            *revs.entry(e.kv.mod_revision).or_default() += 1;
            out.push((
                e.kv.mod_revision,
                e.kind,
                e.kv.key.clone(),
                e.kv.value.clone(),
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            ));
        }
        // Whole revisions only.
        for (rev, n) in revs {
            let want = per_rev[&rev].iter().filter(|e| matches(req, e)).count();
            assert_eq!(n, want, "revision {rev} split across responses");
        }
    }
    out
}

fn matches(req: &WatchRequest, e: &Ev) -> bool {
    let in_range = if req.range_end.is_empty() {
        e.2 == req.key
    } else {
        e.2 >= req.key && e.2 < req.range_end
    };
    in_range
        && !(req.no_put && e.1 == EventKind::Put)
        && !(req.no_delete && e.1 == EventKind::Delete)
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let ws = open(dir.path());
    let s = ws.store().clone();
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut per_rev: BTreeMap<i64, Vec<Ev>> = BTreeMap::new();
    let mut watchers: Vec<Expect> = Vec::new();
    let mut n = 0u8;
    for op in ops {
        n = n.wrapping_add(1);
        let mut record = |writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
                          rev: i64,
                          state: &mut BTreeMap<Vec<u8>, Vec<u8>>| {
            let mut evs = Vec::new();
            for (k, v) in writes {
                let prev = state.get(&k).cloned();
                match v {
                    Some(v) => {
                        evs.push((rev, EventKind::Put, k.clone(), v.clone(), prev));
                        state.insert(k, v);
                    }
                    None => {
                        if prev.is_some() {
                            evs.push((rev, EventKind::Delete, k.clone(), Vec::new(), prev));
                            state.remove(&k);
                        }
                    }
                }
            }
            if !evs.is_empty() {
                per_rev.insert(rev, evs);
            }
        };
        match op {
            Op::Put(k) => {
                let rev = s
                    .put(&PutRequest {
                        key: key(k),
                        value: vec![n],
                        ..Default::default()
                    })
                    .unwrap()
                    .revision;
                record(vec![(key(k), Some(vec![n]))], rev, &mut state);
            }
            Op::Delete(k, range) => {
                let end = if range { key(k + 2) } else { vec![] };
                let keys: Vec<Vec<u8>> = state
                    .keys()
                    .filter(|x| {
                        if range {
                            **x >= key(k) && **x < end
                        } else {
                            **x == key(k)
                        }
                    })
                    .cloned()
                    .collect();
                let rev = s
                    .delete_range(&DeleteRangeRequest {
                        key: key(k),
                        range_end: end,
                        prev_kv: false,
                    })
                    .unwrap()
                    .revision;
                record(
                    keys.into_iter().map(|k| (k, None)).collect(),
                    rev,
                    &mut state,
                );
            }
            Op::TwoPuts(a, b) if a != b => {
                let req = TxnRequest {
                    compare: vec![],
                    success: vec![
                        RequestOp::Put(PutRequest {
                            key: key(a),
                            value: vec![n],
                            ..Default::default()
                        }),
                        RequestOp::Put(PutRequest {
                            key: key(b),
                            value: vec![n, 1],
                            ..Default::default()
                        }),
                    ],
                    failure: vec![],
                };
                let rev = s.txn(&req).unwrap().revision;
                record(
                    vec![(key(a), Some(vec![n])), (key(b), Some(vec![n, 1]))],
                    rev,
                    &mut state,
                );
            }
            Op::TwoPuts(..) => {}
            Op::Watch {
                key: k,
                range,
                back,
                no_put,
                no_delete,
                prev,
            } => {
                let current = s.revision();
                let start = if back == 0 {
                    0
                } else {
                    (current - i64::from(back) + 1).max(1)
                };
                let req = WatchRequest {
                    key: key(k),
                    range_end: if range { key(k + 2) } else { vec![] },
                    start_revision: start,
                    prev_kv: prev,
                    no_put,
                    no_delete,
                };
                let (_, rx) = ws.watch(&req);
                watchers.push(Expect {
                    rx,
                    req,
                    from: if start == 0 { current + 1 } else { start },
                });
            }
            Op::Sync => ws.sync().unwrap(),
        }
    }
    ws.sync().unwrap();
    for w in &watchers {
        let got = flatten(&w.rx, &per_rev, &w.req);
        let want: Vec<Ev> = per_rev
            .range(w.from..)
            .flat_map(|(_, evs)| evs.iter().filter(|e| matches(&w.req, e)).cloned())
            .map(|mut e| {
                if !w.req.prev_kv {
                    e.4 = None;
                }
                e
            })
            .collect();
        assert_eq!(got, want, "watcher {:?} from {}", w.req, w.from);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn watchers_see_exactly_the_history(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn a_slow_watcher_never_blocks_writers_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ws = open(dir.path());
    let (_, rx) = ws.watch_with_capacity(
        &WatchRequest {
            key: b"k".to_vec(),
            ..Default::default()
        },
        1,
    );
    for i in 0..500u32 {
        ws.store()
            .put(&PutRequest {
                key: b"k".to_vec(),
                value: i.to_be_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap();
    }
    // The writer finished although nobody read; now drain, syncing as we go.
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        while let Ok(r) = rx.try_recv() {
            seen.extend(r.events.iter().map(|e| e.kv.mod_revision));
        }
        if seen.len() == 500 {
            break;
        }
        ws.sync().unwrap();
    }
    assert_eq!(seen, (2..502).collect::<Vec<i64>>());
}

#[test]
fn a_compacted_start_revision_cancels_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let ws = open(dir.path());
    for i in 0..10u8 {
        ws.store()
            .put(&PutRequest {
                key: b"k".to_vec(),
                value: vec![i],
                ..Default::default()
            })
            .unwrap();
    }
    ws.store().compact(8).unwrap();
    let (_, rx) = ws.watch(&WatchRequest {
        key: b"k".to_vec(),
        start_revision: 3,
        ..Default::default()
    });
    ws.sync().unwrap();
    let r = rx.try_recv().unwrap();
    assert!(r.canceled);
    assert_eq!(r.compact_revision, 8);
    // From the compacted revision itself: fine.
    let (id, rx) = ws.watch(&WatchRequest {
        key: b"k".to_vec(),
        start_revision: 8,
        ..Default::default()
    });
    ws.sync().unwrap();
    let r = rx.try_recv().unwrap();
    assert_eq!(
        r.events
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect::<Vec<_>>(),
        vec![8, 9, 10, 11]
    );
    assert_eq!(ws.progress(id), Some(11));
}

/// A watcher whose start revision is still ahead of the store (a follower
/// that has not applied it yet) gets nothing before it, then everything
/// from it (etcd's minRev).
#[test]
fn a_start_revision_ahead_of_the_store_skips_what_comes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let ws = open(dir.path());
    let put = |v: u8| {
        ws.store()
            .put(&PutRequest {
                key: b"k".to_vec(),
                value: vec![v],
                ..Default::default()
            })
            .unwrap()
    };
    let current = ws.store().revision();
    let (_, rx) = ws.watch(&WatchRequest {
        key: b"k".to_vec(),
        start_revision: current + 3,
        ..Default::default()
    });
    for v in 0..5u8 {
        put(v);
        ws.sync().unwrap();
    }
    let mut seen = Vec::new();
    while let Ok(r) = rx.try_recv() {
        seen.extend(r.events.iter().map(|e| e.kv.mod_revision));
    }
    assert_eq!(seen, vec![current + 3, current + 4, current + 5]);
}

/// A store whose backend file is replaced by a copy of a store further
/// ahead (a follower installing the leader's snapshot): reads, the
/// revision and the index are the new file's, and a watcher that was
/// caught up gets every event the new file holds after its revision, in
/// order, once; a watcher whose next revision the new file compacted away
/// is cancelled with the compact revision.
#[test]
fn replacing_the_file_moves_reads_and_watchers_to_it() {
    let put = |ws: &WatchableStore, k: &[u8], v: u32| {
        ws.store()
            .put(&PutRequest {
                key: k.to_vec(),
                value: v.to_be_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap()
    };
    let behind_dir = tempfile::tempdir().unwrap();
    let ahead_dir = tempfile::tempdir().unwrap();
    let behind = open(behind_dir.path());
    let ahead = open(ahead_dir.path());
    // The same first 5 revisions on both; then only `ahead` goes on.
    for i in 0..5 {
        put(&behind, b"k", i);
        put(&ahead, b"k", i);
    }
    for i in 5..40 {
        put(&ahead, if i % 2 == 0 { b"k" } else { b"j" }, i);
    }
    let (_, caught_up) = behind.watch(&WatchRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    let (_, from_two) = behind.watch(&WatchRequest {
        key: b"k".to_vec(),
        start_revision: 2,
        ..Default::default()
    });
    behind.sync().unwrap();
    let early: Vec<i64> = from_two
        .try_iter()
        .flat_map(|r| r.events.into_iter().map(|e| e.kv.mod_revision))
        .collect();
    assert_eq!(early, vec![2, 3, 4, 5, 6]);
    ahead.store().compact(30).unwrap();
    let copy = behind_dir.path().join("incoming.db");
    let mut f = std::fs::File::create(&copy).unwrap();
    ahead.store().backend().snapshot(&mut f).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let mut swapped = false;
    behind
        .store()
        .backend()
        .replace_with(&copy, || swapped = true)
        .unwrap();
    assert!(swapped);
    behind.reload().unwrap();
    assert_eq!(behind.store().revision(), ahead.store().revision());
    assert_eq!(behind.store().compact_revision(), 30);
    let got = behind
        .store()
        .range(&RangeRequest {
            key: b"j".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(got.kvs[0].mod_revision, 41);

    // Caught up at revision 6, behind the new file's compaction at 30:
    // cancelled, with the compact revision.
    behind.sync().unwrap();
    let r: Vec<WatchResponse> = caught_up.try_iter().collect();
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].canceled);
    assert_eq!(r[0].compact_revision, 30);
    let _ = from_two;

    // A watcher synced on the new file gets the new writes; writes after
    // the swap land in the new file, which survives a reopen.
    let (_, later) = behind.watch(&WatchRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    put(&behind, b"k", 99);
    let r = later.try_recv().unwrap();
    assert_eq!(r.events[0].kv.mod_revision, 42);
    behind.store().backend().force_commit().unwrap();
    drop(later);
    drop(behind);
    // The background sync thread lets go of the store within 100 ms.
    let cfg = BackendConfig {
        no_sync: true,
        ..BackendConfig::new(behind_dir.path().join("db"))
    };
    let mut reopened = None;
    for _ in 0..100 {
        match Backend::open(cfg.clone()) {
            Ok(b) => {
                reopened = Some(Store::open(b).unwrap());
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    assert_eq!(reopened.expect("reopened").revision(), 42);
}

/// Without a compaction in the way, a caught-up watcher gets exactly the
/// events of the revisions it missed, from the new file.
#[test]
fn a_caught_up_watcher_gets_what_the_new_file_adds() {
    let behind_dir = tempfile::tempdir().unwrap();
    let ahead_dir = tempfile::tempdir().unwrap();
    let behind = open(behind_dir.path());
    let ahead = open(ahead_dir.path());
    let put = |ws: &WatchableStore, v: u32| {
        ws.store()
            .put(&PutRequest {
                key: b"k".to_vec(),
                value: v.to_be_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap()
    };
    put(&behind, 0);
    put(&ahead, 0);
    let (_, rx) = behind.watch(&WatchRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    for i in 1..20 {
        put(&ahead, i);
    }
    let copy = behind_dir.path().join("incoming.db");
    let mut f = std::fs::File::create(&copy).unwrap();
    ahead.store().backend().snapshot(&mut f).unwrap();
    drop(f);
    behind.store().backend().replace_with(&copy, || {}).unwrap();
    behind.reload().unwrap();
    put(&behind, 20);
    behind.sync().unwrap();
    let seen: Vec<i64> = rx
        .try_iter()
        .flat_map(|r| r.events.into_iter().map(|e| e.kv.mod_revision))
        .collect();
    assert_eq!(seen, (3..=22).collect::<Vec<i64>>());
}
