//! Readers holding snapshots across many commits keep reading exactly their
//! snapshot: no page they can reach is reused or changed under them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_engine::btree::{check, Database, Options, ReadTxn, WriteBucket};

fn scan(rx: &ReadTxn) -> Vec<(Vec<u8>, Vec<u8>)> {
    let b = rx.bucket(rx.root(), b"data").unwrap().unwrap();
    let mut out = Vec::new();
    let mut c = rx.cursor(b);
    let mut it = c.first().unwrap();
    while let Some(e) = it {
        out.push((e.key.to_vec(), e.value.to_vec()));
        it = c.next().unwrap();
    }
    out
}

#[test]
fn snapshots_survive_many_commits() {
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
    let b = tx.create_bucket(WriteBucket::ROOT, b"data").unwrap();
    for i in 0..2000u32 {
        tx.put(b, &i.to_be_bytes(), &[0u8; 50]).unwrap();
    }
    tx.commit().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let db = db.clone();
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) || rounds < 3 {
                // Pin a snapshot, let the writer run many commits, re-read.
                let rx = db.begin_read();
                let first = scan(&rx);
                // Every value of one snapshot carries the same generation.
                let generation = first[0].1[0];
                assert!(first.iter().all(|(_, v)| v[0] == generation));
                for _ in 0..20 {
                    std::thread::yield_now();
                    assert_eq!(scan(&rx), first, "reader {r} saw its snapshot change");
                }
                rounds += 1;
            }
            rounds
        }));
    }
    // The writer rewrites every value each commit, freeing every page.
    for generation in 1..=60u8 {
        let mut tx = db.begin_write().unwrap();
        let b = tx.bucket(WriteBucket::ROOT, b"data").unwrap().unwrap();
        for i in 0..2000u32 {
            tx.put(b, &i.to_be_bytes(), &[generation; 50]).unwrap();
        }
        tx.commit().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 3);
    }
    assert_eq!(check(&db).unwrap(), Vec::<String>::new());
    // With the readers gone the freed pages are reused: the file stops growing.
    let before = db.info().page_count;
    for generation in 61..=80u8 {
        let mut tx = db.begin_write().unwrap();
        let b = tx.bucket(WriteBucket::ROOT, b"data").unwrap().unwrap();
        for i in 0..2000u32 {
            tx.put(b, &i.to_be_bytes(), &[generation; 50]).unwrap();
        }
        tx.commit().unwrap();
    }
    assert!(
        db.info().page_count <= before + 10,
        "{} -> {}",
        before,
        db.info().page_count
    );
}

#[test]
fn second_open_is_refused_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Database::open(&path, Options::default()).unwrap();
    assert!(matches!(
        Database::open(&path, Options::default()),
        Err(strata_engine::Error::Locked(_))
    ));
    drop(db);
    Database::open(&path, Options::default()).unwrap();
}
