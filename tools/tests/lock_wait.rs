//! `strata-util --timeout` (etcdutl 3.7's flag, v3.7.1 etcdutl/ctl.go): a
//! verb waits for a db file another process holds, up to the timeout,
//! then gives up saying so; a lock released in time lets it through.

mod common;
use common::util;

use std::time::{Duration, Instant};

use strata_engine::backend::{Backend, BackendConfig};

#[test]
fn a_held_db_is_waited_for_up_to_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let path = db.to_str().unwrap().to_string();
    {
        let store =
            strata_engine::mvcc::Store::open(Backend::open(BackendConfig::new(&db)).unwrap())
                .unwrap();
        drop(store);
    }
    std::thread::sleep(Duration::from_millis(50));
    let held = Backend::open(BackendConfig::new(&db)).unwrap();

    let began = Instant::now();
    let (ok, out) = util(&["--timeout", "300ms", "hashkv", &path]);
    assert!(
        !ok && out.contains("timeout:") && out.contains("locked by another process"),
        "{out}"
    );
    assert!(began.elapsed() >= Duration::from_millis(300));

    // Released after half a second: a 10 s wait gets through.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        held.close().unwrap();
    });
    let (ok, out) = util(&["--timeout", "10s", "hashkv", &path]);
    releaser.join().unwrap();
    assert!(ok, "{out}");
}
