//! The batched backend: readers see applied writes before commit and keep a
//! stable view; ranges merge the snapshot with applied changes; the batch
//! commits on its limit and interval; the consistent index written by the
//! pre-commit hook always matches the committed data; snapshots are whole
//! database files with their SHA-256.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_engine::btree::{check, Database, Options};

fn config(dir: &std::path::Path, interval: Duration, limit: usize) -> BackendConfig {
    BackendConfig {
        batch_interval: interval,
        batch_limit: limit,
        no_sync: true,
        ..BackendConfig::new(dir.join("db"))
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// What the B+tree itself has committed (not what readers of the backend see).
fn committed(be: &Backend, bucket: Bucket, key: &[u8]) -> Option<Vec<u8>> {
    let rx = be.db().begin_read();
    let b = rx.bucket(rx.root(), bucket.name()).unwrap().unwrap();
    rx.get(b, key).unwrap().map(|v| v.to_vec())
}

#[test]
fn applied_writes_are_visible_before_commit_and_views_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), HOUR, 1_000_000)).unwrap();
    let before = be.read();
    {
        let mut tx = be.batch().unwrap();
        tx.put(Bucket::Key, b"a", b"1").unwrap();
        assert_eq!(
            tx.get(Bucket::Key, b"a").unwrap(),
            Some(b"1".to_vec()),
            "a batch reads its own writes"
        );
        assert_eq!(
            be.read().get(Bucket::Key, b"a").unwrap(),
            None,
            "not visible before unlock"
        );
    }
    let after = be.read();
    assert_eq!(after.get(Bucket::Key, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        before.get(Bucket::Key, b"a").unwrap(),
        None,
        "an older view does not change"
    );
    assert_eq!(committed(&be, Bucket::Key, b"a"), None, "not committed yet");
    be.force_commit().unwrap();
    assert_eq!(committed(&be, Bucket::Key, b"a"), Some(b"1".to_vec()));
    assert_eq!(
        be.read().get(Bucket::Key, b"a").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(after.get(Bucket::Key, b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn changes_published_while_no_reader_holds_the_view_are_all_seen() {
    // With no reader holding the view, an unlock adds its changes in place;
    // a view taken later must still not change under its reader.
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), HOUR, 1_000_000)).unwrap();
    for i in 0..50u8 {
        let mut tx = be.batch().unwrap();
        tx.put(Bucket::Key, &[i], &[i]).unwrap();
    }
    let held = be.read();
    {
        let mut tx = be.batch().unwrap();
        tx.put(Bucket::Key, &[7], b"changed").unwrap();
        tx.delete(Bucket::Key, &[8]).unwrap();
    }
    for i in 50..60u8 {
        let mut tx = be.batch().unwrap();
        tx.put(Bucket::Key, &[i], &[i]).unwrap();
    }
    let now = be.read();
    for i in 0..60u8 {
        let want = match i {
            7 => Some(b"changed".to_vec()),
            8 => None,
            _ => Some(vec![i]),
        };
        assert_eq!(now.get(Bucket::Key, &[i]).unwrap(), want, "key {i}");
        let was = (i < 50).then(|| vec![i]);
        assert_eq!(
            held.get(Bucket::Key, &[i]).unwrap(),
            was,
            "held view, key {i}"
        );
    }
    assert_eq!(now.range(Bucket::Key, &[], &[], 0).unwrap().len(), 59);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Unlock,
    Commit,
    Range(u8, u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..40u8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (0..40u8).prop_map(Op::Delete),
        3 => Just(Op::Unlock),
        1 => Just(Op::Commit),
        3 => (0..40u8, 0..45u8, 0..6usize).prop_map(|(a, b, l)| Op::Range(a, b, l)),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k:02}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Readers' merged ranges equal a model of everything unlocked so far;
    /// the batch's own ranges equal everything written so far.
    #[test]
    fn ranges_merge_snapshot_and_applied_changes(ops in prop::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let be = Backend::open(config(dir.path(), HOUR, 1_000_000)).unwrap();
        let mut visible: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut written = visible.clone();
        let mut tx = Some(be.batch().unwrap());
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    tx.get_or_insert_with(|| be.batch().unwrap()).put(Bucket::Key, &key(k), &[v]).unwrap();
                    written.insert(key(k), vec![v]);
                }
                Op::Delete(k) => {
                    tx.get_or_insert_with(|| be.batch().unwrap()).delete(Bucket::Key, &key(k)).unwrap();
                    written.remove(&key(k));
                }
                Op::Unlock => {
                    tx = None;
                    visible = written.clone();
                }
                Op::Commit => {
                    tx = None;
                    visible = written.clone();
                    be.force_commit().unwrap();
                }
                Op::Range(a, b, limit) => {
                    let (start, end) = (key(a), if b >= 40 { Vec::new() } else { key(b) });
                    let model = |m: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
                        m.range(start.clone()..)
                            .take_while(|(k, _)| end.is_empty() || **k < end)
                            .take(if limit == 0 { usize::MAX } else { limit })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    };
                    let got = be.read().range(Bucket::Key, &start, &end, limit).unwrap();
                    prop_assert_eq!(got, model(&visible));
                    if let Some(t) = tx.as_ref() {
                        prop_assert_eq!(t.range(Bucket::Key, &start, &end, limit).unwrap(), model(&written));
                    }
                }
            }
        }
    }
}

#[test]
fn the_batch_commits_on_its_limit_and_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), HOUR, 10)).unwrap();
    let start = be.db().info().txid;
    for i in 0..25u32 {
        be.batch()
            .unwrap()
            .put(Bucket::Key, &i.to_be_bytes(), b"v")
            .unwrap();
    }
    assert_eq!(be.db().info().txid, start + 2, "two commits of 10");
    assert_eq!(
        committed(&be, Bucket::Key, &19u32.to_be_bytes()),
        Some(b"v".to_vec())
    );
    assert_eq!(committed(&be, Bucket::Key, &20u32.to_be_bytes()), None);
    drop(be);

    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), Duration::from_millis(20), 1_000_000)).unwrap();
    be.batch().unwrap().put(Bucket::Key, b"k", b"v").unwrap();
    let mut waited = 0;
    while committed(&be, Bucket::Key, b"k").is_none() {
        assert!(waited < 500, "the interval commit never came");
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
}

/// Every file image taken between commits, or in the middle of a batch,
/// holds exactly the keys up to the consistent index the hook stored.
#[test]
fn consistent_index_is_committed_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), HOUR, 7)).unwrap();
    let applied = Arc::new(AtomicU64::new(0));
    let a = applied.clone();
    be.set_pre_commit_hook(Box::new(move |tx| {
        tx.put(
            Bucket::Meta,
            b"consistent_index",
            &a.load(Ordering::SeqCst).to_be_bytes(),
        )
    }));
    let mut images = Vec::new();
    for i in 1..=60u64 {
        {
            let mut tx = be.batch().unwrap();
            tx.put(Bucket::Key, &i.to_be_bytes(), b"v").unwrap();
            applied.store(i, Ordering::SeqCst);
        }
        if i % 5 == 0 {
            // Nothing is writing now: the file is what a crash would leave.
            images.push(std::fs::read(be.path()).unwrap());
        }
    }
    assert!(images.len() == 12);
    let mut seen = std::collections::BTreeSet::new();
    for img in images {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("db"), &img).unwrap();
        let db = Database::open(d.path().join("db"), Options::default()).unwrap();
        assert_eq!(check(&db).unwrap(), Vec::<String>::new());
        let rx = db.begin_read();
        let meta = rx.bucket(rx.root(), b"meta").unwrap().unwrap();
        let ci = rx
            .get(meta, b"consistent_index")
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
        let keys = rx.bucket(rx.root(), b"key").unwrap().unwrap();
        for i in 1..=60u64 {
            assert_eq!(
                rx.get(keys, &i.to_be_bytes()).unwrap().is_some(),
                i <= ci,
                "key {i} vs consistent index {ci}"
            );
        }
        seen.insert(ci);
    }
    assert!(seen.len() > 3, "images at several commit points: {seen:?}");
}

#[test]
fn snapshot_is_a_whole_database_with_its_sha256() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), HOUR, 1_000_000)).unwrap();
    for i in 0..2000u32 {
        be.batch()
            .unwrap()
            .put(Bucket::Key, &i.to_be_bytes(), &[7u8; 100])
            .unwrap();
    }
    be.batch().unwrap().put(Bucket::Meta, b"m", b"x").unwrap();
    let mut out = Vec::new();
    let (size, sum) = be.snapshot(&mut out).unwrap();
    assert_eq!(size, out.len() as u64);
    assert_eq!(sum, <[u8; 32]>::from(sha2::Sha256::digest(&out)));
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("db"), &out).unwrap();
    let db = Database::open(d.path().join("db"), Options::default()).unwrap();
    assert_eq!(check(&db).unwrap(), Vec::<String>::new());
    let rx = db.begin_read();
    let keys = rx.bucket(rx.root(), b"key").unwrap().unwrap();
    assert_eq!(
        rx.get(keys, &1999u32.to_be_bytes()).unwrap(),
        Some(&[7u8; 100][..])
    );
    // The same state streams the same bytes.
    let mut again = Vec::new();
    assert_eq!(be.snapshot(&mut again).unwrap().1, sum);
}

#[test]
fn readers_do_not_wait_for_a_held_batch() {
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), HOUR, 1_000_000)).unwrap();
    be.batch().unwrap().put(Bucket::Key, b"k", b"v").unwrap();
    let tx = be.batch().unwrap();
    let be2 = be.clone();
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let v = be2.read().get(Bucket::Key, b"k").unwrap();
        send.send(v).unwrap();
    });
    // Bounded wait: a deadlock fails the test instead of hanging it.
    let got = recv
        .recv_timeout(Duration::from_secs(30))
        .expect("a reader blocked behind the batch");
    assert_eq!(got, Some(b"v".to_vec()));
    drop(tx);
}

/// Defragmentation while a writer and a reader run: every write lands,
/// readers never fail, a view taken before still reads its data, and the
/// file shrinks.
#[test]
fn online_defrag_keeps_every_write_and_shrinks_the_file() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let be = Backend::open(config(dir.path(), Duration::from_millis(20), 1000)).unwrap();
    for i in 0..20_000u32 {
        let mut tx = be.batch().unwrap();
        tx.put(Bucket::Key, &i.to_be_bytes(), &[1u8; 200]).unwrap();
    }
    for i in (0..20_000u32).filter(|i| i % 4 != 0) {
        be.batch()
            .unwrap()
            .delete(Bucket::Key, &i.to_be_bytes())
            .unwrap();
    }
    be.force_commit().unwrap();
    let old_view = be.read();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (be, stop) = (be.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) || n < 200 {
                be.batch()
                    .unwrap()
                    .put(Bucket::Lease, &n.to_be_bytes(), b"during")
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let reader = {
        let (be, stop) = (be.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                assert_eq!(
                    be.read().get(Bucket::Key, &0u32.to_be_bytes()).unwrap(),
                    Some(vec![1u8; 200])
                );
                reads += 1;
            }
            reads
        })
    };
    let stats = be.defrag().unwrap();
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    assert!(stats.size_after < stats.size_before, "{stats:?}");
    // The view from before the swap still reads the old file.
    assert_eq!(
        old_view.get(Bucket::Key, &4u32.to_be_bytes()).unwrap(),
        Some(vec![1u8; 200])
    );
    be.force_commit().unwrap();
    let view = be.read();
    for n in 0..written {
        assert_eq!(
            view.get(Bucket::Lease, &n.to_be_bytes()).unwrap(),
            Some(b"during".to_vec()),
            "write {n} lost"
        );
    }
    assert_eq!(view.range(Bucket::Key, b"", b"", 0).unwrap().len(), 5000);
    drop(view);
    drop(old_view);
    be.close().unwrap();
    {
        // check waits for the writer, which an open backend always holds.
        let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
        assert_eq!(check(&db).unwrap(), Vec::<String>::new());
    }
    let be = Backend::open(config(dir.path(), HOUR, 1000)).unwrap();
    assert_eq!(
        be.read().range(Bucket::Lease, b"", b"", 0).unwrap().len(),
        written as usize
    );
}
