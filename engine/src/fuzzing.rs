//! Bodies of the fuzz targets in fuzz/, kept here so ordinary tests run them
//! over a seed corpus too. Each must return normally (never panic) for any
//! input.

use std::collections::BTreeMap;
use std::io::Write;

use crate::btree::freelist::Freelist;
use crate::btree::meta::Meta;
use crate::btree::page::{Header, NodeView};
use crate::btree::{check, Database, Options, WriteBucket};

/// Node, meta and freelist decoding from arbitrary bytes.
pub fn decode_page(data: &[u8]) {
    if let Ok(v) = NodeView::parse(data) {
        for i in 0..v.len() {
            let _ = v.key(i);
            if v.is_leaf() {
                let _ = v.value(i);
            } else {
                let _ = v.child(i);
            }
        }
        let _ = v.lower_bound(b"k");
        if !v.is_leaf() {
            let _ = v.child_index(b"k");
        }
    }
    let _ = Meta::decode(data, 0);
    let _ = Meta::decode(data, 1);
    if let Some(h) = Header::read(data) {
        let _ = Freelist::decode(data, h.count as usize, u64::MAX);
    }
}

/// Opens arbitrary bytes as a database file and reads everything: open,
/// check and a full scan may fail, never panic.
pub fn open_file(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("db");
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    let Ok(db) = Database::open(&path, Options::default()) else {
        return;
    };
    let _ = check(&db);
    let rx = db.begin_read();
    let mut cur = rx.cursor(rx.root());
    let mut item = cur.first();
    let mut n = 0;
    while let Ok(Some(e)) = item {
        if let Ok(Some(b)) = rx.bucket(rx.root(), e.key) {
            let mut c = rx.cursor(b);
            let mut it = c.first();
            while let Ok(Some(_)) = it {
                it = c.next();
            }
        }
        n += 1;
        if n > 10_000 {
            break;
        }
        item = cur.next();
    }
}

/// Interprets bytes as operations on two buckets, applies them to a
/// database and to a BTreeMap model, and compares after each commit.
pub fn ops_against_model(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let opts = Options {
        page_size: 1024,
        no_sync: true,
    };
    let path = dir.path().join("db");
    let Ok(mut db) = Database::open(&path, opts.clone()) else {
        return;
    };
    let mut committed: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
    let mut working = committed.clone();
    let mut tx = None;
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let b = usize::from(op & 1);
        let key = vec![b'k', bytes.next().unwrap_or(0) % 64];
        let vlen = usize::from(bytes.next().unwrap_or(0)) * 13;
        if tx.is_none() {
            let Ok(mut t) = db.begin_write() else {
                panic!("begin_write failed")
            };
            for name in [b"a", b"b"] {
                let _ = t.create_bucket_if_missing(WriteBucket::ROOT, name);
            }
            tx = Some(t);
        }
        let Some(t) = tx.as_mut() else { return };
        let bucket = t.bucket(WriteBucket::ROOT, if b == 0 { b"a" } else { b"b" });
        let Ok(Some(bucket)) = bucket else {
            panic!("bucket vanished")
        };
        match (op >> 1) % 8 {
            0..=3 => {
                let value = vec![op; vlen];
                t.put(bucket, &key, &value).expect("put");
                working[b].insert(key, value);
            }
            4 | 5 => {
                let was = t.delete(bucket, &key).expect("delete");
                assert_eq!(was, working[b].remove(&key).is_some());
            }
            6 => {
                if let Some(t) = tx.take() {
                    t.commit().expect("commit");
                    committed = working.clone();
                }
            }
            _ => {
                tx = None;
                working = committed.clone();
                if op & 0x80 != 0 {
                    drop(db);
                    db = Database::open(&path, opts.clone()).expect("reopen");
                }
            }
        }
    }
    if let Some(t) = tx.take() {
        t.commit().expect("commit");
        committed = working;
    }
    let rx = db.begin_read();
    for (i, name) in [b"a", b"b"].iter().enumerate() {
        let got: BTreeMap<Vec<u8>, Vec<u8>> = match rx.bucket(rx.root(), *name).expect("bucket") {
            None => BTreeMap::new(),
            Some(bk) => {
                let mut out = BTreeMap::new();
                let mut c = rx.cursor(bk);
                let mut it = c.first().expect("first");
                while let Some(e) = it {
                    out.insert(e.key.to_vec(), e.value.to_vec());
                    it = c.next().expect("next");
                }
                out
            }
        };
        assert_eq!(got, committed[i], "bucket {i} differs from the model");
    }
    drop(rx);
    assert_eq!(check(&db).expect("check"), Vec::<String>::new());
}

/// WAL record decoding from arbitrary bytes, and arbitrary bytes opened as
/// the only segment of a log (open, repair and dump may fail, never panic).
pub fn wal_segment(data: &[u8]) {
    use crate::wal::record::{decode, decode_crc_record, Decoded};
    let mut off = 0;
    let mut crc = decode_crc_record(data).map_or(0, |(_, after, len)| {
        off = len;
        after
    });
    while let Decoded::Record(_, c, len) = decode(data, off, crc) {
        crc = c;
        off += len;
    }
    let Ok(dir) = tempfile::tempdir() else { return };
    let seg = dir.path().join(
        crate::wal::SegmentName {
            seq: 0,
            first_index: 0,
        }
        .file_name(),
    );
    if std::fs::write(&seg, data).is_err() {
        return;
    }
    let _ = crate::wal::dump::scan(dir.path());
    let opts = crate::wal::WalOptions {
        segment_size: 1 << 16,
        no_sync: true,
    };
    if let Ok((mut w, rec)) = crate::wal::Wal::open(dir.path(), &Default::default(), opts) {
        let next = rec.entries.last().map_or(1, |e| e.index + 1);
        let e = crate::wal::Entry {
            index: next,
            term: 1,
            entry_type: 0,
            data: b"x".to_vec(),
        };
        if w.save(None, std::slice::from_ref(&e)).is_ok() {
            let _ = w.sync();
        }
    }
}

/// The seed corpus of fuzz target `target` (fuzz/corpus/<target>/, sorted
/// by file name), for the tests that run the bodies in CI.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .iter()
        .map(|f| std::fs::read(f).expect("a corpus file"))
        .collect()
}

/// `seed` and `count` deterministic mutations of it: bit flips, and every
/// fifth a truncation.
pub fn mutations(seed: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut out = vec![seed.to_vec()];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut m = seed.to_vec();
        if m.is_empty() {
            break;
        }
        let at = (x as usize) % m.len();
        if i % 5 == 4 {
            m.truncate(at);
        } else {
            m[at] ^= 1 << (x >> 60 & 7);
        }
        out.push(m);
    }
    out
}
