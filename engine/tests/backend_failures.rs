//! A failed fsync in a batch commit poisons the backend: the commit reports
//! it, and every later write is refused (retrying an fsync can report success
//! for data that was lost). Reads keep working; a reopened backend holds the
//! last good commit.

use strata_engine::backend::{Backend, BackendConfig, Bucket};
use strata_engine::Error;

#[test]
fn failed_commit_sync_refuses_writes() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = BackendConfig {
        batch_interval: std::time::Duration::from_secs(3600),
        ..BackendConfig::new(dir.path().join("db"))
    };
    let be = Backend::open(cfg.clone()).unwrap();
    be.batch().unwrap().put(Bucket::Key, b"good", b"1").unwrap();
    be.force_commit().unwrap();
    be.batch().unwrap().put(Bucket::Key, b"lost", b"2").unwrap();
    fail::cfg("btree::commit::sync", "return").unwrap();
    assert!(matches!(be.force_commit(), Err(Error::Io(_))));
    fail::remove("btree::commit::sync");
    assert!(matches!(be.batch(), Err(Error::Poisoned)));
    assert!(matches!(be.force_commit(), Err(Error::Poisoned)));
    assert_eq!(
        be.read().get(Bucket::Key, b"good").unwrap(),
        Some(b"1".to_vec())
    );
    drop(be);
    let be = Backend::open(cfg).unwrap();
    assert_eq!(
        be.read().get(Bucket::Key, b"good").unwrap(),
        Some(b"1".to_vec())
    );
    scenario.teardown();
}
