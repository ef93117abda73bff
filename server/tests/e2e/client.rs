//! End to end with the etcd-client crate: every RPC of the five services,
//! and the watch options etcdctl cannot reach (several watchers on one
//! stream, client-chosen ids, filters, progress, fragments).

use strata_testkit as common;

use std::time::Duration;

use common::Server;
use etcd_client::*;

async fn client(s: &Server) -> Client {
    Client::connect([s.url()], None).await.expect("connect")
}

fn status_of(e: Error) -> (tonic::Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

async fn next(ws: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), ws.message())
        .await
        .expect("a watch response in time")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test]
async fn kv_txn_compact_and_errors() {
    let s = Server::start(&[]);
    let mut c = client(&s).await;
    let r = c.put("a", "1", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 2);
    c.put("b", "2", None).await.unwrap();
    let g = c
        .get("a", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(g.count(), 1);
    let g = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(1)))
        .await
        .unwrap();
    assert_eq!((g.count(), g.more(), g.kvs().len()), (2, true, 1));
    // Kubernetes' create: put if mod_revision == 0, else get.
    let t = Txn::new()
        .when([Compare::mod_revision("a", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("a", "new", None)])
        .or_else([TxnOp::get("a", None)]);
    let r = c.txn(t).await.unwrap();
    assert!(!r.succeeded());
    match &r.op_responses()[0] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"1"),
        other => panic!("{other:?}"),
    }
    // Nested txn, one revision for all its writes.
    let inner = Txn::new()
        .when([Compare::version("b", CompareOp::Greater, 0)])
        .and_then([TxnOp::put("c", "3", None), TxnOp::delete("b", None)]);
    let r = c
        .txn(Txn::new().and_then([TxnOp::put("d", "4", None), TxnOp::txn(inner)]))
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 4);
    let e = c
        .txn(Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::delete("x", None)]))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request".into()
        )
    );
    let e = c.put("", "v", None).await.unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let e = c
        .put("nokey", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key not found".into()
        )
    );
    let e = c
        .put("a", "v", Some(PutOptions::new().with_lease(12345)))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    c.compact(3, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let e = c
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );
    let d = c
        .delete(
            "",
            Some(DeleteOptions::new().with_all_keys().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(d.deleted(), 3);
    assert_eq!(d.prev_kvs().len(), 3);
}

#[tokio::test]
async fn watch_stream_options() {
    let s = Server::start(&["--experimental-watch-progress-notify-interval=300ms"]);
    let mut c = client(&s).await;
    c.put("w/1", "a", None).await.unwrap(); // rev 2
    let mut ws = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(1)
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    let created = next(&mut ws).await;
    assert!(created.created());
    assert_eq!(created.watch_id(), 0);
    let hist = next(&mut ws).await;
    assert_eq!(hist.events().len(), 1);
    assert_eq!(hist.events()[0].kv().unwrap().key(), b"w/1");
    // A second watcher with the client's own id, on the same stream.
    ws.watch(
        "solo",
        Some(
            WatchOptions::new()
                .with_watch_id(77)
                .with_filters([WatchFilterType::NoDelete]),
        ),
    )
    .await
    .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created());
    assert_eq!(r.watch_id(), 77);
    // The same id again is refused.
    ws.watch("other", Some(WatchOptions::new().with_watch_id(77)))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && r.canceled());
    assert_eq!(r.watch_id(), -1);
    c.put("solo", "x", None).await.unwrap(); // rev 3
    c.delete("solo", None).await.unwrap(); // rev 4: filtered out
    c.put("w/2", "b", None).await.unwrap(); // rev 5
    let r = next(&mut ws).await;
    assert_eq!((r.watch_id(), r.header().unwrap().revision()), (77, 3));
    let r = next(&mut ws).await;
    assert_eq!((r.watch_id(), r.header().unwrap().revision()), (0, 5));
    // Progress on request: watch id -1 and the current revision.
    ws.request_progress().await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!((r.watch_id(), r.events().len()), (-1, 0));
    assert_eq!(r.header().unwrap().revision(), 5);
    ws.cancel(0).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.canceled());
    assert_eq!(r.watch_id(), 0);
    c.put("w/3", "c", None).await.unwrap();
    c.put("solo", "y", None).await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), 77, "the canceled watcher got nothing more");

    // Periodic progress notifications for a watcher that asked.
    let mut ws2 = c
        .watch("quiet", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    assert!(next(&mut ws2).await.created());
    let r = next(&mut ws2).await;
    assert!(r.events().is_empty() && !r.canceled());
    assert_eq!(r.header().unwrap().revision(), 7);
}

#[tokio::test]
async fn watch_fragments_large_revisions() {
    let s = Server::start(&["--max-request-bytes=4096"]);
    let mut c = client(&s).await;
    for i in 0..10 {
        c.put(format!("f/{i}"), vec![b'v'; 1000], None)
            .await
            .unwrap();
    }
    let mut ws = c
        .watch(
            "f/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_fragment()
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    assert!(next(&mut ws).await.created());
    // One delete of 10 keys: one revision whose events (with their 1 KB
    // previous values) are larger than the limit.
    c.delete("f/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut events = 0;
    let mut parts = 0;
    loop {
        let r = next(&mut ws).await;
        parts += 1;
        events += r.events().len();
        if !r.0.fragment {
            break;
        }
    }
    assert_eq!(events, 10);
    assert!(parts > 1, "a revision over the limit comes in fragments");
}

#[tokio::test]
async fn leases_keepalive_ttl_and_list() {
    let s = Server::start(&[]);
    let mut c = client(&s).await;
    let g = c.lease_grant(30, None).await.unwrap();
    assert_eq!(g.ttl(), 30);
    let g2 = c
        .lease_grant(10, Some(LeaseGrantOptions::new().with_id(4242)))
        .await
        .unwrap();
    assert_eq!(g2.id(), 4242);
    let e = c
        .lease_grant(10, Some(LeaseGrantOptions::new().with_id(4242)))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: lease already exists".into()
        )
    );
    let e = c.lease_grant(9_000_000_001, None).await.unwrap_err();
    assert_eq!(
        status_of(e),
        (
            tonic::Code::OutOfRange,
            "etcdserver: too large lease TTL".into()
        )
    );
    c.put("l1", "v", Some(PutOptions::new().with_lease(g.id())))
        .await
        .unwrap();
    let (mut keeper, mut stream) = c.lease_keep_alive(g.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!((r.id(), r.ttl()), (g.id(), 30));
    // An unknown lease answers TTL 0 (the crate reports that as "lease
    // not found").
    let e = c.lease_keep_alive(999).await.unwrap_err();
    assert!(e.to_string().contains("lease not found"), "{e}");
    let t = c
        .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(t.granted_ttl(), 30);
    assert!(t.ttl() > 25 && t.ttl() <= 30);
    assert_eq!(t.keys(), [b"l1".to_vec()]);
    let t = c.lease_time_to_live(31337, None).await.unwrap();
    assert_eq!(t.ttl(), -1);
    let mut ids: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    ids.sort();
    let mut want = vec![g.id(), 4242];
    want.sort();
    assert_eq!(ids, want);
    c.lease_revoke(g.id()).await.unwrap();
    assert_eq!(c.get("l1", None).await.unwrap().count(), 0);
}

#[tokio::test]
async fn maintenance_and_cluster_rpcs() {
    // MemberList reports the advertised client URLs (strata listens on a
    // port it picks; what it advertises is the flag's).
    let s = Server::start(&["--advertise-client-urls=http://127.0.0.1:23790"]);
    let mut c = client(&s).await;
    c.put("k", "v", None).await.unwrap();
    let st = c.status().await.unwrap();
    assert_eq!(st.version(), "3.5.17");
    assert_eq!(st.leader(), st.header().unwrap().member_id());
    assert!(st.raft_index() >= 2 && st.raft_applied_index() >= 2);
    assert!(st.db_size() > 0);
    let h1 = c.hash_kv(0).await.unwrap();
    c.put("k2", "v", None).await.unwrap();
    let h2 = c.hash_kv(2).await.unwrap();
    assert_eq!(
        h1.hash(),
        h2.hash(),
        "HashKV at the same revision is stable"
    );
    let _ = c.hash().await.unwrap();
    c.defragment().await.unwrap();
    let mut snap = c.snapshot().await.unwrap();
    let mut data = Vec::new();
    let mut last_remaining = u64::MAX;
    while let Some(chunk) = snap.message().await.unwrap() {
        assert!(chunk.remaining_bytes() < last_remaining);
        last_remaining = chunk.remaining_bytes();
        data.extend_from_slice(chunk.blob());
    }
    assert_eq!(last_remaining, 0);
    use sha2::Digest;
    let (db, sum) = data.split_at(data.len() - 32);
    assert_eq!(sha2::Sha256::digest(db).as_slice(), sum);
    let ml = c.member_list().await.unwrap();
    assert_eq!(ml.members().len(), 1);
    assert_eq!(ml.members()[0].name(), "default");
    assert_eq!(ml.members()[0].client_urls(), ["http://127.0.0.1:23790"]);
    let a = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert!(a.alarms().is_empty());
}

/// The gRPC health service load balancers probe: SERVING with a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_says_serving() {
    let s = common::Server::start(&[]);
    let mut answer = None;
    for _ in 0..20 {
        let r: tonic_health::pb::HealthCheckResponse = common::grpc_unary(
            s.port,
            "/grpc.health.v1.Health/Check",
            tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            },
            None,
        )
        .await
        .unwrap();
        answer = Some(r.status);
        if r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        answer,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    );
}

/// A progress response at revision R comes after every event at or below
/// R (etcd's guarantee, which the fault harness caught broken: the
/// response overtook events still queued for the stream). Writes and
/// progress requests race for a while; every revision after the watch's
/// start is one of the watched puts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_responses_never_overtake_events() {
    use etcd_client::WatchOptions;
    let s = Server::start(&[]);
    let mut c = client(&s).await;
    let start = c
        .put("pr/0", "0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut ws = c
        .watch(
            "pr/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(start + 1),
            ),
        )
        .await
        .unwrap();
    assert!(next(&mut ws).await.created());
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    c.put(format!("pr/{w}/{i}"), "v", None).await.unwrap();
                }
            })
        })
        .collect();
    let mut last_event = start;
    let mut progress = 0;
    let end = start + 8 * 300;
    let mut ask = tokio::time::interval(Duration::from_millis(1));
    while last_event < end {
        tokio::select! {
            _ = ask.tick() => ws.request_progress().await.unwrap(),
            r = next(&mut ws) => {
                if r.events().is_empty() {
                    let rev = r.header().unwrap().revision();
                    assert!(
                        rev <= last_event,
                        "a progress response at revision {rev} came before the event at {}",
                        last_event + 1
                    );
                    progress += 1;
                } else {
                    for e in r.events() {
                        let rev = e.kv().unwrap().mod_revision();
                        assert_eq!(rev, last_event + 1, "events in order, none missing");
                        last_event = rev;
                    }
                }
            }
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(progress > 10, "only {progress} progress responses");
}
