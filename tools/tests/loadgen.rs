//! strata-bench's load generator against a real member (in this process,
//! through `strata_testkit::inprocess`).

use std::time::Duration;

use strata_testkit::inprocess;
use strata_tools::loadgen::{self, Common, PutOpts};

/// Runs `f` against a fresh member, then stops the member.
fn with_member<F, Fut>(f: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    inprocess::with_member(&dir.path().join("data"), &[], Duration::from_secs(120), f);
}

fn common(endpoint: &str, total: u64) -> Common {
    Common {
        endpoints: vec![endpoint.to_string()],
        conns: 2,
        clients: 4,
        total,
        stop_file: None,
        start_file: None,
    }
}

#[test]
fn watch_counts_every_event_even_those_that_beat_their_put() {
    with_member(|ep| async move {
        let (streams, watchers, total) = (2, 3, 300);
        let r = loadgen::watch(&common(&ep, total), streams, watchers, 16)
            .await
            .expect("the watch benchmark completes");
        assert_eq!(r.errors, 0);
        assert_eq!(r.count(), total * (streams * watchers) as u64);
        assert!(r.render().contains("Requests/sec"));
    });
}

#[test]
fn put_and_range_report_every_request() {
    with_member(|ep| async move {
        let opts = PutOpts {
            key_size: 8,
            val_size: 16,
            key_space_size: 100,
            sequential_keys: true,
        };
        let r = loadgen::put(&common(&ep, 500), &opts).await.unwrap();
        assert_eq!((r.count(), r.errors), (500, 0));
        let key = loadgen::make_key(0, 8);
        let r = loadgen::range(&common(&ep, 200), key, None, false)
            .await
            .unwrap();
        assert_eq!((r.count(), r.errors), (200, 0));
    });
}
