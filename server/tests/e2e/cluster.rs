//! Three real members on loopback: replication, requests on any member,
//! linearizable reads on followers, a leader killed with -9 under a write
//! load (no acknowledged write lost, on any member), and the killed member
//! catching up after a restart.

use strata_testkit as common;
use strata_testkit::linearizable;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{json_number as field, Cluster};
use common::wait_for;
use etcd_client::{Client, GetOptions};

#[test]
fn three_members_replicate_and_serve_reads_anywhere() {
    let mut c = Cluster::local(3, &[]);
    // A write through every member, each visible through every member.
    for (i, m) in c.members.iter().enumerate() {
        m.etcdctl_ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    for m in &c.members {
        let out = m.etcdctl_ok(&["get", "k", "--prefix"]);
        assert_eq!(out, "k0\nv0\nk1\nv1\nk2\nv2\n", "{}", m.endpoint());
    }
    // Linearizable reads on a follower see a write made just before
    // through another member.
    let leader = c.leader_now();
    let follower = (leader + 1) % 3;
    for round in 0..20 {
        let v = format!("r{round}");
        c.members[(follower + 1) % 3].etcdctl_ok(&["put", "latest", &v]);
        let got = c.members[follower].etcdctl_ok(&["get", "latest", "--print-value-only"]);
        assert_eq!(got.trim(), v, "a follower's linearizable read was stale");
    }
    // Serializable reads are local and answer too.
    let got =
        c.members[follower].etcdctl_ok(&["get", "k0", "--consistency=s", "--print-value-only"]);
    assert_eq!(got.trim(), "v0");
    // Every member lists all three, each with its published client URL.
    let list = c.members[0].etcdctl_ok(&["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    for name in ["m0", "m1", "m2"] {
        assert!(list.contains(&format!(", {name}, ")), "{list}");
    }
    // A lease granted on a follower is known on every member.
    let out = c.members[follower].etcdctl_ok(&["lease", "grant", "60"]);
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_string();
    for m in &c.members {
        let l = m.etcdctl_ok(&["lease", "list"]);
        assert!(
            l.contains(&id),
            "{} does not list lease {id}: {l}",
            m.endpoint()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::local(3, &[]);
    let leader = c.leader_now();
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| c.members[i].url())
        .collect();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    // Writers on the two followers (their member stays up); each write
    // reaches the leader through raft.
    for w in 0..4 {
        let acked = acked.clone();
        let stop = stop.clone();
        let url = survivors[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect([url], None).await.expect("connect");
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let k = format!("load/w{w}/{i:06}");
                let v = format!("v{w}-{i}");
                if let Ok(Ok(_)) = tokio::time::timeout(
                    Duration::from_secs(3),
                    client.put(k.clone(), v.clone(), None),
                )
                .await
                {
                    acked.lock().unwrap().push((k, v));
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_kill = acked.lock().unwrap().len();
    c.kill(leader);
    // A write sent right after the kill through a follower that still
    // believes in the dead leader: it succeeds, or fails with etcd's
    // errors for this case (a wait that never ends is a failure).
    let probe_url = survivors[0].clone();
    let probe = tokio::spawn(async move {
        let mut client = Client::connect([probe_url], None).await.expect("connect");
        tokio::time::timeout(Duration::from_secs(20), client.put("probe", "1", None)).await
    });
    // Writes go on through the new leader.
    let resumed = wait_for(15, || {
        (acked.lock().unwrap().len() > before_kill + 50).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Release);
    for t in tasks {
        let _ = t.await;
    }
    assert!(
        resumed.is_some(),
        "writes did not resume after the leader died"
    );
    match probe
        .await
        .unwrap()
        .expect("the probe write ends within 20 s")
    {
        Ok(_) => {}
        Err(etcd_client::Error::GRpcStatus(s)) => assert!(
            [
                "etcdserver: request timed out, possibly due to previous leader failure",
                "etcdserver: no leader",
                "etcdserver: leader changed",
                // etcd's rule: the "previous leader failure" wording only
                // when the next leader was elected within two election
                // timeouts of the request's start; a slower election (a
                // loaded machine) gives the plain timeout.
                "etcdserver: request timed out",
            ]
            .contains(&s.message()),
            "a write lost with the leader failed with {:?}",
            s.message()
        ),
        Err(e) => panic!("the probe write failed with {e}"),
    }
    let acked: HashMap<String, String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(before_kill > 0, "no write was acknowledged before the kill");

    // The killed member comes back and catches up from the log.
    c.restart(leader);
    for m in &c.members {
        let mut client = Client::connect([m.url()], None).await.expect("connect");
        let got = client
            .get("load/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("a linearizable read on every member");
        let present: HashMap<String, String> = got
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                )
            })
            .collect();
        for (k, v) in &acked {
            assert_eq!(
                present.get(k),
                Some(v),
                "{}: acknowledged {k} missing or wrong",
                m.endpoint()
            );
        }
        for kv in got.kvs() {
            assert_eq!(kv.version(), 1, "{}: a write applied twice", m.endpoint());
        }
    }
}

/// `remaining(Ns)` of `etcdctl lease timetolive`.
fn remaining(out: &str) -> i64 {
    let at = out.find("remaining(").expect("a remaining TTL") + "remaining(".len();
    out[at..]
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[test]
fn leases_are_served_by_the_leader_through_any_member() {
    let mut c = Cluster::local(3, &["--experimental-lease-checkpoint-interval=1s"]);
    let leader = c.leader_now();
    let f = (leader + 1) % 3;
    let out = c.members[f].etcdctl_ok(&["lease", "grant", "30"]);
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_string();
    c.members[f].etcdctl_ok(&["put", "leased", "x", "--lease", &id]);
    // Keep-alive and time-to-live through a follower reach the leader.
    let ka = c.members[f].etcdctl_ok(&["lease", "keep-alive", "--once", &id]);
    assert!(ka.contains("TTL(30)"), "{ka}");
    std::thread::sleep(Duration::from_millis(3500));
    let ttl = remaining(&c.members[f].etcdctl_ok(&["lease", "timetolive", &id]));
    assert!(
        (24..=28).contains(&ttl),
        "a follower reported remaining {ttl}"
    );
    // An unknown lease: TTL 0 on keep-alive, -1 on time-to-live, as etcd.
    let unknown = c.members[f].etcdctl_ok(&["lease", "timetolive", "1234abcd"]);
    assert!(unknown.contains("already expired"), "{unknown}");
    // A new leader resumes from the checkpointed remainder: the lease does
    // not get its whole TTL back.
    c.kill(leader);
    let survivor = (leader + 2) % 3;
    let ttl = wait_for(15, || {
        let out = c.members[survivor].etcdctl(&["lease", "timetolive", &id]);
        out.status
            .success()
            .then(|| remaining(&String::from_utf8_lossy(&out.stdout)))
    })
    .expect("time-to-live after the leader died");
    assert!(
        (1..=28).contains(&ttl),
        "after a leader change the lease has {ttl}s left (granted 30, 3.5s used)"
    );
    let got = c.members[survivor].etcdctl_ok(&["get", "leased", "--print-value-only"]);
    assert_eq!(got.trim(), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_quorum_answers_require_leader_with_no_leader() {
    let mut c = Cluster::local(3, &[]);
    let leader = c.leader_now();
    let lone = (leader + 1) % 3;
    let url = c.members[lone].url();
    let opts = etcd_client::ConnectOptions::new().with_require_leader(true);
    let mut client = Client::connect([url.clone()], Some(opts))
        .await
        .expect("connect");
    // A require-leader watch opened while there is a leader.
    let mut watch = client.watch("k", None).await.expect("watch");
    assert!(watch.message().await.expect("created").is_some());
    // Lose quorum: the leader and one follower die; the last member's
    // leader is gone once check-quorum / its election timeout passes.
    c.kill(leader);
    c.kill((leader + 2) % 3);
    let err = wait_for(15, || {
        let r = futures_lite_block(client.get("k", None));
        match r {
            Err(etcd_client::Error::GRpcStatus(s)) if s.message() == "etcdserver: no leader" => {
                Some(s)
            }
            _ => None,
        }
    })
    .expect("a request requiring a leader fails with etcd's no-leader error");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // The watch is ended with the same error once the leader has been gone
    // for three election timeouts, as etcd ends require-leader streams.
    let ended = tokio::time::timeout(Duration::from_secs(15), watch.message())
        .await
        .expect("the require-leader watch ends within 15 s");
    match ended {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.message(), "etcdserver: no leader")
        }
        other => panic!("the watch ended with {other:?}, not etcd's no-leader error"),
    }
    // Without the requirement, a serializable read is still served locally.
    let mut plain = Client::connect([url], None).await.expect("connect");
    let got = plain
        .get("k", Some(GetOptions::new().with_serializable()))
        .await
        .expect("a serializable read needs no leader");
    assert!(got.kvs().is_empty());
    // Status answers, and says there is no leader, as etcd's does.
    let st = plain.status().await.expect("status needs no leader");
    assert_eq!(st.leader(), 0);
    assert_eq!(st.errors(), ["etcdserver: no leader"]);
    // So does /health.
    assert_eq!(
        common::http_get(c.members[lone].client_port, "/health"),
        (
            503,
            r#"{"health":"false","reason":"RAFT NO LEADER"}"#.to_string()
        )
    );
    // /livez passes (local reads work); /readyz fails on the
    // linearizable read, and says which check failed.
    let port = c.members[lone].client_port;
    assert_eq!(common::http_get(port, "/livez"), (200, "ok\n".to_string()));
    let (code, body) = common::http_get(port, "/readyz");
    assert_eq!(code, 503);
    assert!(
        body.contains(
            "[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed:"
        ),
        "{body}"
    );
    assert_eq!(
        common::http_get(port, "/readyz?exclude=linearizable_read").0,
        200
    );
}

/// Runs a future to completion from a synchronous poll loop (inside the
/// test's runtime, on a blocking-allowed thread).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[test]
fn move_leader_hands_leadership_to_the_target() {
    let mut c = Cluster::local(3, &[]);
    let leader = c.leader_now();
    let target = (leader + 1) % 3;
    let id_of = |i: usize| {
        let out = c.members[i].etcdctl_ok(&["endpoint", "status", "-w", "json"]);
        format!("{:x}", field(&out, "member_id").expect("member id"))
    };
    let (from, to) = (id_of(leader), id_of(target));
    // Asked of a follower: etcd's "not leader".
    let err = c.members[target].etcdctl_err(&["move-leader", &to]);
    assert!(
        err.contains("no leader endpoint") || err.contains("etcdserver: not leader"),
        "{err}"
    );
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let out = common::etcdctl(&endpoints.join(","), &["move-leader", &to], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("Leadership transferred from {from} to {to}")),
        "{text}"
    );
    assert_eq!(c.leader_now(), target);
    // Writes go on under the new leader.
    c.members[leader].etcdctl_ok(&["put", "after-move", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_stay_linearizable_across_a_leader_kill() {
    use linearizable::{Event, Op};
    let mut c = Cluster::local(3, &[]);
    let leader = c.leader_now();
    let urls: Vec<String> = c.members.iter().map(|m| m.url()).collect();
    let t0 = std::time::Instant::now();
    let now = move || t0.elapsed().as_micros() as u64;
    let history = Arc::new(Mutex::new(Vec::<Event>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    // Four clients, two on each follower, on three keys: writes of unique
    // values and linearizable reads. A failed read tells nothing and is
    // left out; a failed write's outcome is unknown (it may take effect at
    // any later time, or never).
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    for client_no in 0..4usize {
        let url = survivors[client_no % 2].clone();
        let history = history.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut client) = Client::connect([url], None).await else {
                return;
            };
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                seq += 1;
                let key = format!("reg{}", (seq + client_no as u64) % 3);
                let invoke = now();
                if (seq + client_no as u64).is_multiple_of(2) {
                    let value = format!("c{client_no}-{seq}");
                    let r = tokio::time::timeout(
                        Duration::from_secs(2),
                        client.put(key.clone(), value.clone(), None),
                    )
                    .await;
                    let ok = matches!(r, Ok(Ok(_)));
                    history.lock().unwrap().push(Event {
                        key,
                        op: Op::Write(value),
                        invoke,
                        ret: ok.then(now),
                    });
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                } else {
                    let r =
                        tokio::time::timeout(Duration::from_secs(2), client.get(key.clone(), None))
                            .await;
                    match r {
                        Ok(Ok(resp)) => {
                            let ret = now();
                            let v = resp
                                .kvs()
                                .first()
                                .map(|kv| kv.value_str().unwrap().to_string());
                            history.lock().unwrap().push(Event {
                                key,
                                op: Op::Read(v),
                                invoke,
                                ret: Some(ret),
                            });
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = now();
    c.kill(leader);
    // Run on until 50 operations completed after the kill (at most 20 s).
    let enough = {
        let history = history.clone();
        wait_for(20, move || {
            let h = history.lock().unwrap();
            (h.iter()
                .filter(|e| e.invoke > killed_at && e.ret.is_some())
                .count()
                >= 50)
                .then_some(())
        })
    };
    stop.store(true, std::sync::atomic::Ordering::Release);
    for t in tasks {
        let _ = t.await;
    }
    let h = history.lock().unwrap().clone();
    let after_kill = h
        .iter()
        .filter(|e| e.invoke > killed_at && e.ret.is_some())
        .count();
    assert!(
        enough.is_some(),
        "only {after_kill} operations completed in the 20 s after the kill"
    );
    linearizable::check(&h).unwrap_or_else(|e| panic!("{e} ({} operations)", h.len()));
    eprintln!(
        "linearizable: {} operations, {after_kill} completed after the leader's kill",
        h.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_every_endpoint_survive_the_death_of_one_member() {
    let mut c = Cluster::local(3, &[]);
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let all = endpoints.join(",");
    let urls: Vec<String> = c.members.iter().map(|m| m.url()).collect();
    let mut client = Client::connect(urls, None).await.expect("connect");
    client
        .put("before", "1", None)
        .await
        .expect("put before the kill");
    // A member the clients use dies (a follower: the leader's death, with
    // its election, is the load test's case).
    let leader = c.leader_now();
    c.kill((leader + 1) % 3);
    // etcdctl with all three endpoints keeps working.
    let out = common::etcdctl(&all, &["put", "after", "etcdctl"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::etcdctl(&all, &["get", "after", "--print-value-only"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "etcdctl");
    // So does the etcd-client crate. It does not retry by itself: a request
    // its balancer still sends to the dead member fails at once (the
    // connection is refused), and the caller retries, as with etcd. About a
    // third of requests go to the dead member, so five tries in a row
    // fail for one put in 250: allow twenty.
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..100 {
        for _attempt in 0..20 {
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                client.put(format!("after/{i}"), "v", None),
            )
            .await;
            if matches!(r, Ok(Ok(_))) {
                ok += 1;
                break;
            }
            refused += 1;
        }
    }
    eprintln!("etcd-client: 100 puts after the kill, {refused} attempts refused on the way");
    assert_eq!(
        ok, 100,
        "puts failed twenty times in a row after a member died"
    );
    let mut count = None;
    for _attempt in 0..5 {
        let opts = GetOptions::new().with_prefix().with_count_only();
        if let Ok(got) = client.get("after/", Some(opts)).await {
            count = Some(got.count());
            break;
        }
    }
    assert_eq!(
        count,
        Some(ok),
        "a read after the kill (retried like the puts)"
    );
}

/// (revision, number of keys under `prefix`) of a serializable read.
async fn local_state(url: &str, prefix: &str) -> Option<(i64, i64)> {
    let mut client = Client::connect([url], None).await.ok()?;
    let got = client
        .get(
            prefix,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await
        .ok()?;
    Some((got.header()?.revision(), got.count()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_retained_log_catches_up_from_a_db_snapshot() {
    use etcd_client::{EventType, PutOptions, WatchOptions};
    // Small snapshot and catch-up settings, so a few hundred writes leave
    // a stopped follower behind the leader's log.
    let mut c = Cluster::local(
        3,
        &[
            "--snapshot-count",
            "100",
            "--snapshot-catchup-entries",
            "20",
        ],
    );
    let leader = c.leader_now();
    let behind = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut writer = Client::connect([c.members[other].url()], None)
        .await
        .expect("connect");
    let start = writer.put("snap/first", "0", None).await.unwrap();
    let from = start.header().unwrap().revision() + 1;
    // A watcher on the member that will fall behind: across the snapshot
    // install it must see every event, in order, once.
    let mut watcher = Client::connect([c.members[behind].url()], None)
        .await
        .expect("connect");
    let mut events = watcher
        .watch(
            "snap/",
            Some(WatchOptions::new().with_prefix().with_start_revision(from)),
        )
        .await
        .expect("watch");

    c.pause(behind, true).expect("SIGSTOP");
    let lease = writer.lease_grant(600, None).await.unwrap().id();
    let mut expected = Vec::new();
    // More than raft's 512 messages in flight to the stopped member, so the
    // leader stops sending and compacts past what it holds.
    for i in 0..800 {
        let r = writer
            .put(format!("snap/{i:04}"), format!("v{i}"), None)
            .await
            .unwrap();
        expected.push((r.header().unwrap().revision(), EventType::Put));
    }
    let r = writer
        .put(
            "snap/leased",
            "l",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    expected.push((r.header().unwrap().revision(), EventType::Put));
    let r = writer
        .delete(
            "snap/0000",
            Some(etcd_client::DeleteOptions::new().with_range("snap/0010")),
        )
        .await
        .unwrap();
    let del_rev = r.header().unwrap().revision();
    for _ in 0..10 {
        expected.push((del_rev, EventType::Delete));
    }
    c.pause(behind, false).expect("SIGCONT");

    // The leader's own view, then the follower's once it caught up.
    let want = local_state(&c.members[leader].url(), "snap/")
        .await
        .unwrap();
    let got = {
        let url = c.members[behind].url();
        let mut last = None;
        for _ in 0..200 {
            last = local_state(&url, "snap/").await;
            if last == Some(want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    };
    assert_eq!(got, Some(want), "the follower did not catch up in 20 s");
    let log = c.log_since_start(behind);
    assert!(
        log.contains("installed a database snapshot from the leader"),
        "the follower caught up without a snapshot (the log was not compacted?):\n{log}"
    );

    // The watcher saw every event of the writes made while it was behind.
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let resp = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("watch events within 10 s")
            .expect("watch stream")
            .expect("watch open");
        for e in resp.events() {
            seen.push((e.kv().unwrap().mod_revision(), e.event_type()));
        }
    }
    assert_eq!(seen, expected, "the watcher across the snapshot install");

    // Status counts the snapshot's index as committed (no write since).
    let mut status = Client::connect([c.members[behind].url()], None)
        .await
        .expect("connect");
    let st = status.status().await.unwrap();
    assert!(
        st.raft_index() >= st.raft_applied_index(),
        "raftIndex {} behind raftAppliedIndex {}",
        st.raft_index(),
        st.raft_applied_index()
    );

    // The lease and its key came with the snapshot.
    let out =
        c.members[behind].etcdctl_ok(&["lease", "timetolive", &format!("{lease:x}"), "--keys"]);
    assert!(out.contains("snap/leased"), "{out}");
    // The log goes on after the snapshot, and a restart reopens on it.
    writer.put("snap/after", "1", None).await.unwrap();
    c.restart(behind);
    let got = c.members[behind].etcdctl_ok(&["get", "snap/after", "--print-value-only"]);
    assert_eq!(got.trim(), "1");
    let want = local_state(&c.members[leader].url(), "snap/")
        .await
        .unwrap();
    assert_eq!(
        local_state(&c.members[behind].url(), "snap/").await,
        Some(want)
    );
}

/// Auth changes made through one member hold on every member, and a
/// simple token issued by one member works on the others (each records it
/// when it applies the login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_reaches_every_member_and_a_token_from_one_works_on_all() {
    let c = Cluster::local(3, &[]);
    common::set_up_auth(&c.endpoint(0));
    let token = common::login(c.members[0].client_port, "alice", "alicepw")
        .await
        .unwrap();
    for m in &c.members {
        common::put_with_token(m.client_port, "a", Some(&token))
            .await
            .unwrap_or_else(|e| panic!("put through {}: {e}", m.client_port));
        let e = common::put_with_token(m.client_port, "b", Some(&token))
            .await
            .unwrap_err();
        assert_eq!(e.message(), "etcdserver: permission denied");
        let e = common::put_with_token(m.client_port, "a", None)
            .await
            .unwrap_err();
        assert_eq!(e.message(), "etcdserver: user name is empty");
    }
    let out = c.members[2].etcdctl_ok(&["--user=root:rootpw", "user", "list"]);
    assert_eq!(out, "alice\nroot\n");
}

type Samples = Vec<(String, std::collections::HashMap<String, String>, f64)>;

/// A scrape of /metrics, parsed: (name, labels, value) per sample (a
/// histogram's value is its count, under its base name).
fn scrape(port: u16) -> Samples {
    scrape_text(port).0
}

fn scrape_text(port: u16) -> (Samples, String) {
    let (code, body) = common::http_get(port, "/metrics");
    assert_eq!(code, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let samples = parsed
        .samples
        .into_iter()
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
                prometheus_parse::Value::Summary(_) => 0.0,
            };
            (
                s.metric,
                s.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                v,
            )
        })
        .collect();
    (samples, body)
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Every series etcd's official Grafana dashboard and alert rules read is
/// there, with etcd's names and labels, and moves as writes happen.
#[test]
fn metrics_have_etcd_s_names_and_move_with_writes() {
    let mut c = Cluster::local(3, &["--metrics=extensive"]);
    // Round trips are timed every 5 s.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let port = c.members[0].client_port;
    let before = scrape(port);
    for i in 0..20 {
        c.members[0].etcdctl_ok(&["put", &format!("m{i}"), "v"]);
    }
    let (after, text) = scrape_text(port);
    // The series the dashboard (etcd/contrib/mixin) and alerts use.
    for name in [
        "etcd_server_has_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_wal_fsync_duration_seconds_sum",
        "etcd_disk_wal_fsync_duration_seconds_count",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_network_peer_round_trip_time_seconds_bucket",
        "etcd_network_peer_sent_bytes_total",
        "etcd_network_peer_received_bytes_total",
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "etcd_debugging_mvcc_keys_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        // etcd 3.6/3.7 (v3.7.1 server/storage/metrics.go,
        // server/etcdserver/api/v3rpc/metrics.go, .../membership/metrics.go,
        // server/etcdserver/txn/metrics.go, server/etcdserver/metrics.go,
        // server/storage/backend/metrics.go).
        "etcd_server_quota_backend_bytes",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        "etcd_network_known_peers",
        "etcd_server_request_duration_seconds_bucket",
        "etcd_disk_defrag_inflight",
        // --metrics=extensive.
        "grpc_server_handling_seconds_bucket",
    ] {
        let line = format!("\n{name}");
        assert!(
            text.contains(&format!("{line}{{")) || text.contains(&format!("{line} ")),
            "no {name} in the scrape"
        );
    }
    assert_eq!(value(&after, "etcd_server_has_leader", &[]), 1.0);
    assert!(value(&after, "etcd_server_leader_changes_seen_total", &[]) >= 1.0);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(moved("etcd_server_proposals_committed_total", &[]) >= 20.0);
    assert!(moved("etcd_server_proposals_applied_total", &[]) >= 20.0);
    assert!(moved("etcd_disk_wal_fsync_duration_seconds", &[]) >= 1.0);
    assert!(moved("etcd_debugging_mvcc_keys_total", &[]) >= 20.0);
    assert_eq!(
        moved(
            "grpc_server_handled_total",
            &[
                ("grpc_service", "etcdserverpb.KV"),
                ("grpc_method", "Put"),
                ("grpc_code", "OK"),
                ("grpc_type", "unary")
            ]
        ),
        20.0
    );
    // Errors carry their gRPC code.
    c.members[0].etcdctl_err(&["get", "k", "--rev=999"]);
    let err = scrape(port);
    assert!(
        value(
            &err,
            "grpc_server_handled_total",
            &[("grpc_method", "Range"), ("grpc_code", "OutOfRange")]
        ) >= 1.0
    );
    // Peer traffic, labelled by the peer's id.
    let peers: Vec<&String> = after
        .iter()
        .filter(|(n, _, _)| n == "etcd_network_peer_sent_bytes_total")
        .filter_map(|(_, l, _)| l.get("To"))
        .collect();
    assert_eq!(peers.len(), 2, "{peers:?}");
    // types.ID's String: hex without leading zeros.
    assert!(peers
        .iter()
        .all(|p| !p.starts_with('0') && u64::from_str_radix(p, 16).is_ok()));
    assert!(value(&after, "etcd_network_peer_round_trip_time_seconds", &[]) >= 1.0);
    assert!(value(&after, "etcd_mvcc_db_total_size_in_bytes", &[]) > 0.0);
    // etcd's bucket bounds: 1 ms doubling 14 times for the disk.
    assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"));
    assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"}"));

    // etcd 3.6/3.7's series move with requests.
    assert_eq!(
        value(&after, "etcd_server_quota_backend_bytes", &[]),
        2147483648.0
    );
    assert!(moved("etcd_network_client_grpc_received_bytes_total", &[]) >= 20.0 * 8.0);
    assert!(moved("etcd_network_client_grpc_sent_bytes_total", &[]) >= 20.0 * 8.0);
    assert_eq!(
        moved(
            "etcd_server_request_duration_seconds",
            &[("type", "Put"), ("success", "true")]
        ),
        20.0
    );
    assert_eq!(
        moved(
            "grpc_server_handling_seconds",
            &[("grpc_method", "Put"), ("grpc_type", "unary")]
        ),
        20.0
    );
    assert!(
        value(
            &err,
            "etcd_server_request_duration_seconds",
            &[("type", "Range")]
        ) >= 1.0
    );
    assert!(value(&err, "etcd_server_range_duration_seconds", &[]) >= 1.0);
    assert_eq!(value(&after, "etcd_disk_defrag_inflight", &[]), 0.0);
    // etcd's mvcc counters (v3.6.14 server/storage/mvcc/metrics.go): every
    // member counts what it applies.
    assert_eq!(moved("etcd_mvcc_put_total", &[]), 20.0);
    assert_eq!(
        moved(
            "etcd_server_apply_duration_seconds",
            &[("version", "v3"), ("op", "Put"), ("success", "true")]
        ),
        20.0
    );
    assert!(moved("etcd_debugging_mvcc_total_put_size_in_bytes", &[]) >= 20.0 * 3.0);
    assert!(value(&err, "etcd_mvcc_range_total", &[]) >= 1.0);
    // 20 puts on a fresh store.
    assert_eq!(
        value(&after, "etcd_debugging_mvcc_current_revision", &[]),
        21.0
    );
    assert_eq!(value(&after, "etcd_server_is_learner", &[]), 0.0);
    assert_eq!(
        after
            .iter()
            .filter(|(n, _, v)| n == "etcd_server_id" && *v == 1.0)
            .count(),
        1
    );
    // Every member, this one included, known to this one.
    let known: Vec<&String> = after
        .iter()
        .filter(|(n, _, v)| n == "etcd_network_known_peers" && *v == 1.0)
        .filter_map(|(_, l, _)| l.get("Remote"))
        .collect();
    assert_eq!(known.len(), 3, "{known:?}");
    // A watch: its created response and an event go through the send loop.
    let mut watching = std::process::Command::new("etcdctl")
        .args(["--endpoints", &c.members[0].endpoint()])
        .args(["watch", "m0", "--rev=1"])
        .env("ETCDCTL_API", "3")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    // While it watches: one stream, one watcher, and its history sent.
    let open = common::wait_for(10, || {
        let m = scrape(port);
        let sent = "etcd_debugging_server_watch_send_loop_watch_stream_duration_seconds";
        (value(&m, "etcd_debugging_mvcc_watcher_total", &[]) == 1.0
            && value(&m, "etcd_debugging_mvcc_watch_stream_total", &[]) == 1.0
            && value(&m, sent, &[]) >= 1.0)
            .then_some(())
    });
    // etcdctl prints what it got.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = watching.kill();
    let watched = watching.wait_with_output().expect("etcdctl watch output");
    assert!(
        open.is_some(),
        "the watch stream and watcher were not counted"
    );
    assert!(String::from_utf8_lossy(&watched.stdout).contains("m0"));
    let w = scrape(port);
    // The stream ended with etcdctl: no stream or watcher is left open.
    let closed = common::wait_for(10, || {
        let m = scrape(port);
        (value(&m, "etcd_debugging_mvcc_watcher_total", &[]) == 0.0
            && value(&m, "etcd_debugging_mvcc_watch_stream_total", &[]) == 0.0)
            .then_some(())
    });
    assert!(closed.is_some(), "a watch stream or watcher left counted");
    for name in [
        "etcd_debugging_server_watch_send_loop_control_stream_duration_seconds",
        "etcd_debugging_server_watch_send_loop_watch_stream_duration_seconds",
        "etcd_debugging_server_watch_send_loop_watch_stream_duration_per_event_seconds",
    ] {
        assert!(value(&w, name, &[]) >= 1.0, "{name}");
    }
    // A follower gone: the leader's raft messages to it fail and are
    // counted by peer.
    let leader = c.leader_now();
    let victim = (1..3).find(|&i| i != leader).unwrap();
    c.kill(victim);
    for i in 0..5 {
        c.members[0].etcdctl_ok(&["put", &format!("f{i}"), "v"]);
    }
    let failures = common::wait_for(10, || {
        let total: f64 = (0..3)
            .filter(|&i| i != victim)
            .map(|i| {
                value(
                    &scrape(c.members[i].client_port),
                    "etcd_network_peer_sent_failures_total",
                    &[],
                )
            })
            .sum();
        (total >= 1.0).then_some(total)
    });
    assert!(
        failures.is_some(),
        "no send failures counted to a killed member"
    );
}

/// `--metrics=basic` (the default) leaves out gRPC's handling-time
/// histograms, as etcd's interceptor does (v3.7.1
/// server/etcdserver/api/v3rpc/grpc.go).
#[test]
fn basic_metrics_have_no_handling_histogram() {
    let s = common::Server::start(&[]);
    s.etcdctl_ok(&["put", "k", "v"]);
    let (code, body) = common::http_get(s.port, "/metrics");
    assert_eq!(code, 200);
    assert!(!body.contains("grpc_server_handling_seconds"));
    assert!(body.contains("etcd_server_request_duration_seconds_bucket"));
}

/// Changes the value of the newest revision in a stopped member's db, as a
/// disk that returned wrong bytes would (revision and key stay).
fn corrupt_newest_value(db: &std::path::Path) {
    use prost::Message;
    use strata_engine::backend::{Backend, BackendConfig, Bucket};
    let b = Backend::open(BackendConfig::new(db)).expect("open the member's db");
    {
        let mut tx = b.batch().unwrap();
        let all = tx.range(Bucket::Key, &[], &[], 0).unwrap();
        let (k, v) = all.last().expect("a revision").clone();
        let mut kv = strata_proto::mvccpb::KeyValue::decode(v.as_slice()).unwrap();
        kv.value = b"not what was written".to_vec();
        tx.put(Bucket::Key, &k, &kv.encode_to_vec()).unwrap();
    }
    b.force_commit().unwrap();
    b.close().unwrap();
}

#[test]
fn the_leader_raises_corrupt_for_a_follower_whose_data_differs() {
    let mut c = Cluster::local(3, &["--experimental-corrupt-check-time=1s"]);
    for i in 0..5 {
        c.members[0].etcdctl_ok(&["put", &format!("k{i}"), "v"]);
    }
    let leader = c.leader_now();
    let f = (leader + 1) % 3;
    // The follower has applied every write before it stops (a clean stop
    // commits its db).
    let applied = wait_for(10, || {
        let out = c.members[f].etcdctl_ok(&["get", "k4", "--consistency=s"]);
        out.contains("k4").then_some(())
    });
    assert!(applied.is_some(), "the follower did not apply the writes");
    // No alarm while the data agree.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.members[leader].etcdctl_ok(&["alarm", "list"]), "");
    c.terminate(f);
    corrupt_newest_value(&c.data_dir(f).join("member").join("db"));
    c.restart(f);
    let alarm = wait_for(30, || {
        let out = c.members[leader].etcdctl_ok(&["alarm", "list"]);
        out.contains("CORRUPT").then_some(out)
    });
    let alarm = alarm.expect("the CORRUPT alarm within 30 s");
    let id = c.members[f].etcdctl_ok(&["endpoint", "status", "-w", "json"]);
    let id = field(&id, "member_id").expect("the follower's id");
    assert!(alarm.contains(&format!("memberID:{id} ")), "{alarm}");
    // Writes are refused on every member; reads go on.
    for m in &c.members {
        let err = m.etcdctl_err(&["put", "after", "x"]);
        assert!(err.contains("etcdserver: corrupt cluster"), "{err}");
    }
    assert!(c.members[leader].etcdctl_ok(&["get", "k0"]).contains("k0"));
}

/// Every member's whole-state hash (the Hash RPC) once all answer at one
/// raft applied index, unchanged from before to after the hashes were
/// taken (so every hash is of the same log prefix).
async fn whole_state_hashes(c: &Cluster) -> Vec<u32> {
    for _ in 0..100 {
        if let Some((_, hashes)) = c.whole_state_hashes().await {
            return hashes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the members never stood at one applied index");
}

/// python-etcd3's alarm tests: an alarm raised for member id 0 is stored
/// as the request says on every member (it was stored under the id of
/// whichever member applied it: three members, three records), and the
/// whole-state hashes agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_for_member_zero_is_one_record_on_every_member() {
    use etcd_client::{AlarmAction, AlarmOptions, AlarmType};
    let member = |id| {
        let mut o = AlarmOptions::new();
        o.with_member(id);
        Some(o)
    };
    let c = Cluster::local(3, &[]);
    c.members[0].etcdctl_ok(&["put", "k", "v"]);
    assert!(whole_state_hashes(&c)
        .await
        .windows(2)
        .all(|w| w[0] == w[1]));
    let mut cl = Client::connect([c.endpoint(1)], None).await.unwrap();
    let raised = cl
        .alarm(AlarmAction::Activate, AlarmType::Nospace, member(0))
        .await
        .unwrap();
    // The whole-state hashes agree (checked before the lists, so that a
    // member-dependent record fails here: the check must see it).
    let hashes = whole_state_hashes(&c).await;
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "whole-state hashes differ: {hashes:?}"
    );
    let ids: Vec<u64> = raised.alarms().iter().map(|a| a.member_id()).collect();
    assert_eq!(ids, vec![0]);
    for m in &c.members {
        let mut cl = Client::connect([m.endpoint()], None).await.unwrap();
        let listed = cl
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .unwrap();
        let ids: Vec<u64> = listed.alarms().iter().map(|a| a.member_id()).collect();
        assert_eq!(ids, vec![0], "alarms listed on {}", m.endpoint());
    }
    // DEACTIVATE removes exactly the pair it names.
    for (id, left) in [(5, 1), (0, 0)] {
        cl.alarm(AlarmAction::Deactivate, AlarmType::Nospace, member(id))
            .await
            .unwrap();
        let listed = cl
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .unwrap();
        assert_eq!(listed.alarms().len(), left, "after disarming member {id}");
    }
}

/// A follower whose state differs outside the key bucket (HashKV cannot
/// see it: here a lease only it holds) gets the CORRUPT alarm from the
/// leader's whole-state comparison.
#[test]
fn the_leader_raises_corrupt_for_a_follower_whose_leases_differ() {
    let mut c = Cluster::local(3, &["--experimental-corrupt-check-time=1s"]);
    c.members[0].etcdctl_ok(&["put", "k", "v"]);
    let leader = c.leader_now();
    let f = (leader + 1) % 3;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.members[leader].etcdctl_ok(&["alarm", "list"]), "");
    c.terminate(f);
    {
        use prost::Message;
        use strata_engine::backend::{Backend, BackendConfig, Bucket};
        let db = c.data_dir(f).join("member").join("db");
        let b = Backend::open(BackendConfig::new(db)).expect("open the member's db");
        let planted = strata_proto::etcdserverpb::LeasePb {
            id: 4242,
            ttl: 600,
            remaining_ttl: 0,
        };
        b.batch()
            .unwrap()
            .put(
                Bucket::Lease,
                &4242i64.to_be_bytes(),
                &planted.encode_to_vec(),
            )
            .unwrap();
        b.close().unwrap();
    }
    c.restart(f);
    let alarm = wait_for(30, || {
        let out = c.members[leader].etcdctl_ok(&["alarm", "list"]);
        out.contains("CORRUPT").then_some(out)
    })
    .expect("the CORRUPT alarm within 30 s");
    let id = c.members[f].etcdctl_ok(&["endpoint", "status", "-w", "json"]);
    let id = field(&id, "member_id").expect("the follower's id");
    assert!(alarm.contains(&format!("memberID:{id} ")), "{alarm}");
    let leader = c.leader_now();
    let log = c.log_since_start(leader);
    assert!(
        log.contains("whole-state hash mismatch") && log.contains("lease"),
        "the leader's log names the differing bucket"
    );
}

/// `--warning-apply-duration` (etcd 3.6's name; `--experimental-…` before):
/// an entry that takes longer to apply is logged with etcd's words ("apply
/// request took too long") and counted in etcd_server_slow_apply_total
/// (v3.6.14 server/etcdserver/txn/util.go).
#[test]
fn slow_applies_are_logged_and_counted() {
    let s = common::Server::start(&["--warning-apply-duration=1us"]);
    s.etcdctl_ok(&["put", "slow", "v"]);
    let logged = common::wait_for(10, || {
        s.drain_log()
            .iter()
            .any(|l| l.contains("apply request took too long") && l.contains("Put"))
            .then_some(())
    });
    assert!(logged.is_some(), "no slow-apply warning");
    let (_, m) = common::http_get(s.port, "/metrics");
    let slow: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("etcd_server_slow_apply_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(slow >= 1.0, "{m}");
}
