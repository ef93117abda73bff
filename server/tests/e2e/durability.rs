//! Durability of the real binary: kill -9 during a write load at several
//! instants, restart, and every acknowledged write is there exactly once;
//! graceful shutdown; raft snapshots and WAL replay; lease TTLs across a
//! restart.

use strata_testkit as common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use etcd_client::*;

async fn client(url: &str) -> Client {
    Client::connect([url], None).await.expect("connect")
}

/// Runs `writers` tasks putting unique keys until the server dies; returns
/// the acknowledged (key, value) pairs.
async fn load_until_killed(
    s: &mut Server,
    round: usize,
    kill_after: Duration,
) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let url = s.url();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let acked = acked.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(&url).await;
            for i in 0.. {
                let k = format!("r{round}/w{w}/{i:06}");
                let v = format!("value-{round}-{w}-{i}");
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    c.put(k.clone(), v.clone(), None),
                )
                .await
                {
                    Ok(Ok(_)) => acked.lock().unwrap().push((k, v)),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(kill_after).await;
    s.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let v = acked.lock().unwrap().clone();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots often, so a kill can land around one too.
    let mut s = Server::start_in(dir.path(), &["--snapshot-count=500"]);
    let mut all: HashMap<String, String> = HashMap::new();
    for (round, ms) in [150u64, 400, 900, 1300].into_iter().enumerate() {
        let acked = load_until_killed(&mut s, round, Duration::from_millis(ms)).await;
        assert!(
            !acked.is_empty(),
            "round {round}: no write was acknowledged"
        );
        all.extend(acked);
        s.restart();
        let mut c = client(&s.url()).await;
        let got = c
            .get("r", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        let present: HashMap<String, (String, i64)> = got
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    (kv.value_str().unwrap().to_string(), kv.version()),
                )
            })
            .collect();
        for (k, v) in &all {
            match present.get(k) {
                Some((pv, _)) => assert_eq!(pv, v, "round {round}: {k} has the wrong value"),
                None => panic!("round {round}: acknowledged {k} is missing after kill -9"),
            }
        }
        // Each key was put once: a write applied twice would show version 2.
        for (k, (_, version)) in &present {
            assert_eq!(*version, 1, "round {round}: {k} was applied more than once");
        }
        // Revisions are dense: every write took exactly one.
        let rev = got.header().unwrap().revision();
        assert_eq!(
            rev as usize,
            present.len() + 1,
            "round {round}: revision vs keys"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &["--snapshot-count=50"]);
    let mut c = client(&s.url()).await;
    for i in 0..200 {
        if let Err(e) = c.put(format!("k{i:03}"), format!("v{i}"), None).await {
            panic!("put {i}: {e}\n{}", s.drain_log().join("\n"));
        }
    }
    drop(c);
    assert_eq!(s.terminate(), Some(0), "SIGTERM exits cleanly");
    let log: Vec<String> = s.drain_log();
    assert!(
        log.iter().any(|l| l.contains("raft snapshot taken")),
        "snapshots every 50 entries"
    );
    assert!(log.iter().any(|l| l.contains("stopped")));
    s.restart();
    let mut c = client(&s.url()).await;
    let r = c
        .get("k", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.count(), 200);
    assert_eq!(r.header().unwrap().revision(), 201);
    let r = c.put("after", "restart", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 202);
}

#[tokio::test]
async fn lease_remaining_ttl_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &["--experimental-lease-checkpoint-interval=1s"]);
    let mut c = client(&s.url()).await;
    let g = c.lease_grant(60, None).await.unwrap();
    c.put("held", "v", Some(PutOptions::new().with_lease(g.id())))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    s.restart();
    let mut c = client(&s.url()).await;
    let t = c
        .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(t.granted_ttl(), 60);
    assert!(
        t.ttl() > 0 && t.ttl() <= 58,
        "resumes from the checkpointed remainder, not the whole TTL: {}",
        t.ttl()
    );
    assert_eq!(t.keys(), [b"held".to_vec()]);
}
