//! Crash consistency: every write, length change and sync of a workload is
//! recorded; for every point of the log we build the files a crash there
//! could leave (only synced data; all unsynced writes; torn and partial
//! subsets of them at 512-byte sector granularity) and reopen each. Every
//! image must open, pass `check`, hold exactly the last acknowledged state or
//! the one being committed, and accept new writes.

mod common;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use strata_engine::btree::{check, Database, Options, StorageIo, WriteBucket};

use common::{dump, Model};

#[derive(Debug, Clone)]
enum IoOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
    Sync,
    /// Recorded by the test after a commit returned.
    Ack,
}

struct RecordingIo {
    file: File,
    log: Arc<Mutex<Vec<IoOp>>>,
}

impl StorageIo for RecordingIo {
    fn file(&self) -> &File {
        &self.file
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(IoOp::Write(off, buf.to_vec()));
        self.file.write_all_at(buf, off)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.log.lock().unwrap().push(IoOp::SetLen(len));
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.log.lock().unwrap().push(IoOp::Sync);
        Ok(())
    }
}

fn apply(img: &mut Vec<u8>, op: &IoOp) {
    match op {
        IoOp::Write(off, data) => {
            let end = *off as usize + data.len();
            if img.len() < end {
                img.resize(end, 0);
            }
            img[*off as usize..end].copy_from_slice(data);
        }
        IoOp::SetLen(n) => img.resize(*n as usize, 0),
        IoOp::Sync | IoOp::Ack => {}
    }
}

/// A write of which only some 512-byte sectors reached the disk.
fn partial(op: &IoOp, rng: &mut StdRng, keep: f64) -> Vec<IoOp> {
    match op {
        IoOp::Write(off, data) => data
            .chunks(512)
            .enumerate()
            .filter(|_| rng.random_bool(keep))
            .map(|(i, c)| IoOp::Write(off + (i * 512) as u64, c.to_vec()))
            .collect(),
        other => {
            if rng.random_bool(keep) {
                vec![other.clone()]
            } else {
                vec![]
            }
        }
    }
}

/// Runs the workload, returning the log and the model after each ack.
fn record(dir: &std::path::Path) -> (Vec<IoOp>, Vec<Model>) {
    let path = dir.join("db");
    let log = Arc::new(Mutex::new(Vec::new()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let io = RecordingIo {
        file,
        log: log.clone(),
    };
    let opts = Options {
        page_size: 1024,
        no_sync: false,
    };
    let db = Database::open_with_io(&path, Box::new(io), opts).unwrap();
    let ack = |log: &Arc<Mutex<Vec<IoOp>>>| log.lock().unwrap().push(IoOp::Ack);
    ack(&log);
    let mut models = vec![Model::new()];
    let mut model = Model::new();
    let mut rng = StdRng::seed_from_u64(7);
    for t in 0..9u32 {
        let mut tx = db.begin_write().unwrap();
        let names: [&[u8]; 2] = [b"one", b"two"];
        for name in names {
            if t != 6 || name != b"two" {
                tx.create_bucket_if_missing(WriteBucket::ROOT, name)
                    .unwrap();
                model.entry(vec![name.to_vec()]).or_default();
            }
        }
        if t == 6 {
            // Drop a whole bucket with its pages.
            if tx.bucket(WriteBucket::ROOT, b"two").unwrap().is_some() {
                tx.delete_bucket(WriteBucket::ROOT, b"two").unwrap();
            }
            model.retain(|k, _| k[0] != b"two");
        }
        let b = tx.bucket(WriteBucket::ROOT, b"one").unwrap().unwrap();
        let nested = tx.create_bucket_if_missing(b, b"nested").unwrap();
        model
            .entry(vec![b"one".to_vec(), b"nested".to_vec()])
            .or_default();
        for _ in 0..40 {
            let k = format!("k{:04}", rng.random_range(0..200u32)).into_bytes();
            if rng.random_bool(0.25) {
                tx.delete(b, &k).unwrap();
                model.get_mut(&vec![b"one".to_vec()]).unwrap().remove(&k);
            } else {
                let len = if rng.random_bool(0.05) {
                    3000
                } else {
                    rng.random_range(1..120)
                };
                let v = vec![rng.random::<u8>(); len];
                tx.put(b, &k, &v).unwrap();
                model.get_mut(&vec![b"one".to_vec()]).unwrap().insert(k, v);
            }
        }
        tx.put(nested, format!("n{t}").as_bytes(), b"x").unwrap();
        model
            .get_mut(&vec![b"one".to_vec(), b"nested".to_vec()])
            .unwrap()
            .insert(format!("n{t}").into_bytes(), b"x".to_vec());
        if let Some(two) = tx.bucket(WriteBucket::ROOT, b"two").unwrap() {
            tx.put(two, format!("t{t}").as_bytes(), &[t as u8; 700])
                .unwrap();
            model
                .get_mut(&vec![b"two".to_vec()])
                .unwrap()
                .insert(format!("t{t}").into_bytes(), vec![t as u8; 700]);
        }
        tx.commit().unwrap();
        ack(&log);
        models.push(model.clone());
    }
    // A clean close writes the freelist in one more commit.
    drop(db);
    ack(&log);
    models.push(model);
    let ops = log.lock().unwrap().clone();
    (ops, models)
}

fn verify_image(dir: &std::path::Path, img: &[u8], allowed: &[&Model], what: &str) {
    let path = dir.join(format!("img-{what}"));
    std::fs::write(&path, img).unwrap();
    let db = Database::open(
        &path,
        Options {
            page_size: 1024,
            no_sync: true,
        },
    )
    .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    assert_eq!(check(&db).unwrap(), Vec::<String>::new(), "{what}: check");
    let got = dump(&db);
    assert!(
        allowed.iter().any(|m| **m == got),
        "{what}: state is neither the acknowledged nor the in-flight one"
    );
    // Recovery must leave a usable file: write, commit, check.
    let mut tx = db.begin_write().unwrap();
    let b = tx
        .create_bucket_if_missing(WriteBucket::ROOT, b"after")
        .unwrap();
    for i in 0..50u32 {
        tx.put(b, &i.to_be_bytes(), &[1; 90]).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(
        check(&db).unwrap(),
        Vec::<String>::new(),
        "{what}: check after a new commit"
    );
    drop(db);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_crash_point_recovers_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (ops, models) = record(dir.path());
    let mut rng = StdRng::seed_from_u64(11);
    let mut images = 0;
    for k in 0..=ops.len() {
        let acked = ops[..k].iter().filter(|o| matches!(o, IoOp::Ack)).count();
        if acked == 0 {
            continue; // the file was never created as far as anyone knows
        }
        let mut allowed = vec![&models[acked - 1]];
        if let Some(m) = models.get(acked) {
            allowed.push(m);
        }
        let last_sync = ops[..k]
            .iter()
            .rposition(|o| matches!(o, IoOp::Sync))
            .unwrap();
        let mut durable = Vec::new();
        for op in &ops[..=last_sync] {
            apply(&mut durable, op);
        }
        let unsynced = &ops[last_sync + 1..k];
        verify_image(dir.path(), &durable, &allowed, &format!("{k}-synced"));
        images += 1;
        if unsynced.iter().all(|o| matches!(o, IoOp::Ack)) {
            continue;
        }
        let mut all = durable.clone();
        unsynced.iter().for_each(|o| apply(&mut all, o));
        verify_image(dir.path(), &all, &allowed, &format!("{k}-all"));
        // The last write torn in half.
        let mut torn = durable.clone();
        let last = unsynced.iter().rposition(|o| matches!(o, IoOp::Write(..)));
        for (i, op) in unsynced.iter().enumerate() {
            match (op, Some(i) == last) {
                (IoOp::Write(off, data), true) => {
                    let half = (data.len() / 2).div_ceil(512) * 512;
                    apply(
                        &mut torn,
                        &IoOp::Write(*off, data[..half.min(data.len())].to_vec()),
                    );
                }
                _ => apply(&mut torn, op),
            }
        }
        verify_image(dir.path(), &torn, &allowed, &format!("{k}-torn"));
        for s in 0..3 {
            let mut img = durable.clone();
            for op in unsynced {
                for p in partial(op, &mut rng, 0.5) {
                    apply(&mut img, &p);
                }
            }
            verify_image(dir.path(), &img, &allowed, &format!("{k}-sectors{s}"));
        }
        images += 5;
    }
    eprintln!("{} log entries, {images} crash images", ops.len());
    assert!(images > 100, "only {images} crash images");
}

/// A sync that fails poisons the database: the commit reports the error and
/// every later write transaction is refused; readers still see the last
/// good commit, and a reopened file holds it (or the failed one, complete).
#[test]
fn failed_sync_poisons_the_database() {
    struct FailingIo {
        file: File,
        fail: Arc<Mutex<bool>>,
    }
    impl StorageIo for FailingIo {
        fn file(&self) -> &File {
            &self.file
        }
        fn sync_data(&self) -> io::Result<()> {
            if *self.fail.lock().unwrap() {
                Err(io::Error::other("injected fsync failure"))
            } else {
                self.file.sync_data()
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let fail = Arc::new(Mutex::new(false));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let db = Database::open_with_io(
        &path,
        Box::new(FailingIo {
            file,
            fail: fail.clone(),
        }),
        Options::default(),
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    let b = tx.create_bucket(WriteBucket::ROOT, b"b").unwrap();
    tx.put(b, b"k", b"good").unwrap();
    tx.commit().unwrap();
    *fail.lock().unwrap() = true;
    let mut tx = db.begin_write().unwrap();
    let b = tx.bucket(WriteBucket::ROOT, b"b").unwrap().unwrap();
    tx.put(b, b"k", b"lost").unwrap();
    assert!(matches!(tx.commit(), Err(strata_engine::Error::Io(_))));
    assert!(db.is_poisoned());
    *fail.lock().unwrap() = false;
    assert!(matches!(
        db.begin_write(),
        Err(strata_engine::Error::Poisoned)
    ));
    let rx = db.begin_read();
    let b = rx.bucket(rx.root(), b"b").unwrap().unwrap();
    assert_eq!(rx.get(b, b"k").unwrap(), Some(&b"good"[..]));
    drop(rx);
    drop(db);
    let db = Database::open(&path, Options::default()).unwrap();
    let rx = db.begin_read();
    let b = rx.bucket(rx.root(), b"b").unwrap().unwrap();
    let v = rx.get(b, b"k").unwrap().unwrap().to_vec();
    assert!(v == b"good" || v == b"lost");
    drop(rx);
    assert_eq!(check(&db).unwrap(), Vec::<String>::new());
}
