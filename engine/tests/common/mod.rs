//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use strata_engine::btree::{Database, ReadBucket, ReadTxn};

pub type Model = BTreeMap<Vec<Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Reads every bucket (by path) and its keys, checking cursor order both ways.
pub fn dump(db: &Database) -> Model {
    let rx = db.begin_read();
    let mut out = Model::new();
    dump_bucket(&rx, rx.root(), &mut Vec::new(), &mut out, true);
    out
}

fn dump_bucket(rx: &ReadTxn, b: ReadBucket, path: &mut Vec<Vec<u8>>, out: &mut Model, top: bool) {
    let mut keys = BTreeMap::new();
    let mut forward = Vec::new();
    let mut c = rx.cursor(b);
    let mut it = c.first().unwrap();
    while let Some(e) = it {
        forward.push(e.key.to_vec());
        if e.is_bucket {
            let child = rx.bucket(b, e.key).unwrap().unwrap();
            path.push(e.key.to_vec());
            dump_bucket(rx, child, path, out, false);
            path.pop();
        } else {
            assert_eq!(rx.get(b, e.key).unwrap(), Some(e.value));
            keys.insert(e.key.to_vec(), e.value.to_vec());
        }
        it = c.next().unwrap();
    }
    let mut backward = Vec::new();
    let mut it = c.last().unwrap();
    while let Some(e) = it {
        backward.push(e.key.to_vec());
        it = c.prev().unwrap();
    }
    backward.reverse();
    assert_eq!(forward, backward, "cursor order differs between directions");
    assert!(
        forward.windows(2).all(|w| w[0] < w[1]),
        "cursor not in key order"
    );
    if !top {
        out.insert(path.clone(), keys);
    }
}
