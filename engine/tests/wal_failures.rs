//! After a failed write or fdatasync the log refuses every later write
//! (retrying an fsync can report success for data that was lost); a reopened
//! log holds everything synced before the failure.

use strata_engine::wal::{Entry, Metadata, SnapshotMark, Wal, WalOptions};
use strata_engine::Error;

fn entry(i: u64) -> Entry {
    Entry {
        index: i,
        term: 1,
        entry_type: 0,
        data: vec![i as u8; 64],
    }
}

fn fails_then_refuses(point: &str) {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::create(dir.path(), Metadata::default(), WalOptions::default()).unwrap();
    w.save(None, &[entry(1), entry(2)]).unwrap();
    w.sync().unwrap();
    fail::cfg(point, "return").unwrap();
    w.save(None, &[entry(3)]).unwrap();
    assert!(
        matches!(w.sync(), Err(Error::Io(_))),
        "{point}: the failure is reported"
    );
    fail::remove(point);
    assert!(
        matches!(w.save(None, &[entry(4)]), Err(Error::Poisoned)),
        "{point}: save after failure"
    );
    assert!(
        matches!(w.sync(), Err(Error::Poisoned)),
        "{point}: sync after failure"
    );
    drop(w);
    let (_, rec) = Wal::open(dir.path(), &SnapshotMark::default(), WalOptions::default()).unwrap();
    assert_eq!(&rec.entries[..2], &[entry(1), entry(2)]);
    assert!(rec.entries.len() <= 3, "nothing saved after the failure");
    scenario.teardown();
}

#[test]
fn failed_sync_or_write_poisons_the_log() {
    // One test: fail points are process-wide.
    fails_then_refuses("wal::sync");
    fails_then_refuses("wal::write");
}
