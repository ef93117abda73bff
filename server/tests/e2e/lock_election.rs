//! The Lock and Election services (etcd's v3lock and v3election), through
//! the etcd-client crate (which calls them over gRPC), and etcdctl's lock
//! with a holder killed while it holds the lock.

use strata_testkit as common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tool, Server};
use etcd_client::{Client, LockOptions};

async fn client(s: &Server) -> Client {
    Client::connect([s.endpoint()], None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_held_by_one_caller_at_a_time() {
    let s = Server::start(&[]);
    let mut a = client(&s).await;
    let mut b = client(&s).await;
    let la = a.lease_grant(30, None).await.unwrap().id();
    let lb = b.lease_grant(30, None).await.unwrap().id();
    let held = a
        .lock("job", Some(LockOptions::new().with_lease(la)))
        .await
        .unwrap();
    let key_a = held.key().to_vec();
    assert!(key_a.starts_with(b"job/"), "{key_a:?}");
    assert_eq!(key_a, format!("job/{la:x}").into_bytes());
    // The second caller waits while the first holds it.
    let waiter = tokio::spawn(async move {
        let r = b
            .lock("job", Some(LockOptions::new().with_lease(lb)))
            .await
            .unwrap();
        r.key().to_vec()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "the lock is held");
    a.unlock(key_a).await.unwrap();
    let key_b = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter gets the lock once it is released")
        .unwrap();
    assert_eq!(key_b, format!("job/{lb:x}").into_bytes());
    // A lock whose lease ends is released too.
    let short = a.lease_grant(2, None).await.unwrap().id();
    let mut c = client(&s).await;
    let lc = c.lease_grant(30, None).await.unwrap().id();
    c.unlock(key_b).await.unwrap();
    a.lock("expiring", Some(LockOptions::new().with_lease(short)))
        .await
        .unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(15),
        c.lock("expiring", Some(LockOptions::new().with_lease(lc))),
    )
    .await
    .expect("the holder's lease expired and the waiter got the lock")
    .unwrap();
    assert_eq!(got.key(), format!("expiring/{lc:x}").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_proclaim_observe_and_resign() {
    let s = Server::start(&[]);
    let mut a = client(&s).await;
    let mut b = client(&s).await;
    let la = a.lease_grant(30, None).await.unwrap().id();
    let lb = b.lease_grant(30, None).await.unwrap().id();
    let no_leader = a.leader("vote").await.unwrap_err();
    assert!(
        no_leader.to_string().contains("election: no leader"),
        "{no_leader}"
    );
    let won = a.campaign("vote", "alpha", la).await.unwrap();
    let lead = won.leader().unwrap().clone();
    assert_eq!(lead.key(), format!("vote/{la:x}").as_bytes());
    let now = a.leader("vote").await.unwrap();
    assert_eq!(now.kv().unwrap().value(), b"alpha");

    let mut observer = client(&s).await;
    let mut seen = observer.observe("vote").await.unwrap();
    let first = seen.message().await.unwrap().unwrap();
    assert_eq!(first.kv().unwrap().value(), b"alpha");

    a.proclaim(
        "beta",
        Some(etcd_client::ProclaimOptions::new().with_leader(lead.clone())),
    )
    .await
    .unwrap();
    let next = seen.message().await.unwrap().unwrap();
    assert_eq!(next.kv().unwrap().value(), b"beta");

    // b waits behind a, and leads once a resigns.
    let campaign_b = tokio::spawn(async move { b.campaign("vote", "gamma", lb).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign_b.is_finished());
    a.resign(Some(
        etcd_client::ResignOptions::new().with_leader(lead.clone()),
    ))
    .await
    .unwrap();
    let b_won = tokio::time::timeout(Duration::from_secs(10), campaign_b)
        .await
        .expect("b leads after a resigned")
        .unwrap();
    assert_eq!(
        b_won.leader().unwrap().key(),
        format!("vote/{lb:x}").as_bytes()
    );
    let after = seen.message().await.unwrap().unwrap();
    assert_eq!(after.kv().unwrap().value(), b"gamma");
    // The old leader's proclamation is refused.
    let stale = a
        .proclaim(
            "late",
            Some(etcd_client::ProclaimOptions::new().with_leader(lead)),
        )
        .await
        .unwrap_err();
    assert!(
        stale.to_string().contains("election: not leader"),
        "{stale}"
    );
}

/// etcdctl's lock: a holder killed with -9 keeps the lock until its
/// session's lease (--ttl) expires; then the next waiter gets it.
#[test]
fn a_killed_holder_s_lock_passes_to_the_next_waiter() {
    let s = Server::start(&[]);
    let spawn = |ttl: &str| {
        Command::new(tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", s.endpoint()))
            .args(["lock", "shared", &format!("--ttl={ttl}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut holder = spawn("2");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("shared/"),
        "the holder prints its key: {line:?}"
    );
    let mut waiter = spawn("10");
    let waiter_out = waiter.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(waiter_out).read_line(&mut l);
        let _ = tx.send(l);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "the waiter must not get the lock while it is held"
    );
    let _ = holder.kill();
    let _ = holder.wait();
    let got = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the waiter gets the lock once the killed holder's lease expires");
    let _ = waiter.kill();
    let _ = waiter.wait();
    assert!(got.starts_with("shared/"), "{got:?}");
}
