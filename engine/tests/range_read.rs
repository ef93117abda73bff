//! `Store::range_read` answers exactly what `Store::range` answers, for
//! every request it supports: random histories (puts with leases, deletes,
//! compaction), random ranges, revisions, limits, orders, filters,
//! keys-only and count-only. Keys-only answers carry no lease (etcd 3.7
//! serves them from its index). What `write_kv` writes is, byte for byte,
//! a KeyValue of `kv_len` bytes that decodes to the answer.

use proptest::prelude::*;
use prost::Message;
use strata_engine::backend::{Backend, BackendConfig};
use strata_engine::mvcc::*;
use strata_engine::Error;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, i64),
    Delete(u8, u8),
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..12u8, 1..40u8, 0..3i64).prop_map(|(k, n, l)| Op::Put(k, n, l)),
        2 => (0..12u8, 0..3u8).prop_map(|(k, w)| Op::Delete(k, w)),
        1 => Just(Op::Compact),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k:02}").into_bytes()
}

fn request() -> impl Strategy<Value = RangeRequest> {
    let order = prop_oneof![
        Just(SortOrder::None),
        Just(SortOrder::Ascend),
        Just(SortOrder::Descend)
    ];
    let target = prop_oneof![
        Just(SortTarget::Key),
        Just(SortTarget::Version),
        Just(SortTarget::Create),
        Just(SortTarget::Mod)
    ];
    let filters = prop::collection::vec(prop_oneof![4 => Just(0i64), 1 => 1..60i64], 4);
    (
        (0..13u8, 0..4u8, 0..6i64, 0..40i64),
        (order, target, any::<bool>(), 0..8u8),
        filters,
    )
        .prop_map(
            |((k, e, limit, rev_back), (order, target, keys_only, flags), f)| {
                let range_end = match e {
                    0 => Vec::new(),
                    1 => vec![0],
                    2 => key(k.saturating_add(4)),
                    _ => b"k".to_vec(), // before the start: empty
                };
                RangeRequest {
                    key: key(k),
                    range_end,
                    limit,
                    // Resolved against the store's revision in the test.
                    revision: -rev_back,
                    sort_order: order,
                    sort_target: target,
                    keys_only,
                    count_only: flags == 0,
                    min_mod_revision: f[0],
                    max_mod_revision: f[1],
                    min_create_revision: f[2],
                    max_create_revision: f[3],
                }
            },
        )
}

fn compare(store: &Store, mut req: RangeRequest) {
    let current = store.revision();
    req.revision = if req.revision == 0 {
        0
    } else {
        (current + req.revision).max(1)
    };
    let want = store.range(&req);
    let got = store.range_read(&req, true, false);
    let (want, got) = match (want, got) {
        (Ok(w), Ok(g)) => (w, g),
        (Err(Error::Compacted), Err(Error::Compacted)) => return,
        (w, g) => panic!("{req:?}: range {w:?}, range_read {:?}", g.map(|g| g.len())),
    };
    assert_eq!(got.count, want.count, "{req:?}");
    assert_eq!(got.more, want.more, "{req:?}");
    assert_eq!(got.revision, want.revision, "{req:?}");
    let mut kvs = Vec::new();
    for i in 0..got.len() {
        let mut buf = Vec::new();
        got.write_kv(i, &mut buf).unwrap();
        assert_eq!(buf.len(), got.kv_len(i).unwrap());
        let kv = KeyValue::decode(buf.as_slice()).unwrap();
        assert_eq!(kv, got.kv(i).unwrap());
        assert_eq!(got.key_of(i).unwrap(), kv.key);
        assert_eq!(got.mod_revision(i), kv.mod_revision);
        kvs.push(kv);
    }
    let mut want_kvs = want.kvs;
    if req.keys_only {
        for kv in &mut want_kvs {
            kv.lease = 0;
        }
    }
    assert_eq!(kvs, want_kvs, "{req:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn range_read_answers_as_range(
        ops in prop::collection::vec(op(), 1..60),
        reqs in prop::collection::vec(request(), 1..30),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BackendConfig {
            batch_limit: 7,
            no_sync: true,
            ..BackendConfig::new(dir.path().join("db"))
        };
        let store = Store::open(Backend::open(cfg).unwrap()).unwrap();
        for op in ops {
            match op {
                Op::Put(k, n, lease) => {
                    store
                        .put(&PutRequest {
                            key: key(k),
                            value: vec![b'v'; n as usize * 10],
                            lease,
                            ..Default::default()
                        })
                        .unwrap();
                }
                Op::Delete(k, width) => {
                    store
                        .delete_range(&DeleteRangeRequest {
                            key: key(k),
                            range_end: if width == 0 { Vec::new() } else { key(k + width) },
                            prev_kv: false,
                        })
                        .unwrap();
                }
                Op::Compact => {
                    let rev = store.revision() - 3;
                    if rev > store.compact_revision() && rev > 0 {
                        store.compact(rev).unwrap();
                    }
                }
            }
        }
        for r in reqs {
            compare(&store, r);
        }
    }
}

#[test]
fn order_by_value_is_not_supported() {
    let req = RangeRequest {
        key: b"a".to_vec(),
        sort_target: SortTarget::Value,
        ..Default::default()
    };
    assert!(!RangeRead::supports(&req));
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(Backend::open(BackendConfig::new(dir.path().join("db"))).unwrap()).unwrap();
    assert!(store.range_read(&req, true, false).is_err());
}
