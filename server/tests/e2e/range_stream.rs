//! `KV.RangeStream` (etcd 3.7) against the unary Range of the same server:
//! the chunks merge into exactly Range's answer for every range shape,
//! limit, keys-only, count-only and revision; etcd's refusals and errors,
//! auth's answers as Range's;
//! a compaction past the pinned revision ends the stream with etcd's
//! compacted error; a reader that stops holds bounded server memory and no
//! snapshot (a defrag meanwhile leaves no old db file mapped); a client
//! that goes away stops the producer. A unary Range of the same size
//! costs the server a few pieces of its encoding at a time.

use std::time::Duration;

use strata_proto::etcdserverpb as pb;
use strata_testkit::clients::grpc_server_stream;
use strata_testkit::{grpc_unary, Server};
use tonic::Code;

const RANGE: &str = "/etcdserverpb.KV/Range";
const STREAM: &str = "/etcdserverpb.KV/RangeStream";

fn port(s: &Server) -> u16 {
    s.port
}

async fn put(p: u16, key: &str, value: Vec<u8>, lease: i64) -> i64 {
    let req = pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        lease,
        ..Default::default()
    };
    let r: pb::PutResponse = grpc_unary(p, "/etcdserverpb.KV/Put", req, None)
        .await
        .expect("put");
    r.header.expect("header").revision
}

/// Every chunk of a stream, or the status that ended it.
async fn chunks(p: u16, req: pb::RangeRequest) -> Result<Vec<pb::RangeResponse>, tonic::Status> {
    let mut s = grpc_server_stream::<_, pb::RangeStreamResponse>(p, STREAM, req, None).await?;
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m.range_response.expect("a range response in every chunk"));
    }
    Ok(out)
}

/// proto.Merge of the chunks: kvs concatenated, the rest from the chunk
/// that set it (the last).
fn merge(chunks: &[pb::RangeResponse]) -> pb::RangeResponse {
    let mut out = pb::RangeResponse::default();
    for (i, c) in chunks.iter().enumerate() {
        if i + 1 < chunks.len() {
            assert!(
                c.header.is_none() && !c.more && c.count == 0,
                "only the last chunk carries header, more and count: {c:?}"
            );
        }
        out.kvs.extend(c.kvs.iter().cloned());
        if c.header.is_some() {
            out.header = c.header;
        }
        out.more |= c.more;
        if c.count != 0 {
            out.count = c.count;
        }
    }
    out
}

fn status(r: Result<Vec<pb::RangeResponse>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(c) => panic!("expected an error, got {} chunks", c.len()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// A small deterministic generator (no test depends on a seed's luck).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn chunks_merge_into_the_unary_range() {
    // Small chunks: a request limit of 3,000 bytes.
    let s = Server::start(&["--max-request-bytes", "3000"]);
    let p = port(&s);
    let grant: pb::LeaseGrantResponse = grpc_unary(
        p,
        "/etcdserverpb.Lease/LeaseGrant",
        pb::LeaseGrantRequest { ttl: 600, id: 0 },
        None,
    )
    .await
    .unwrap();
    let mut rng = Lcg(7);
    for i in 0..300u64 {
        let len = rng.next(700) as usize;
        let lease = if i % 9 == 0 { grant.id } else { 0 };
        put(
            p,
            &format!("k{i:04}"),
            vec![b'a' + (i % 26) as u8; len],
            lease,
        )
        .await;
    }
    let mid = put(p, "k0005", b"again".to_vec(), 0).await;
    for i in (0..300u64).step_by(17) {
        let req = pb::DeleteRangeRequest {
            key: format!("k{i:04}").into_bytes(),
            ..Default::default()
        };
        let _: pb::DeleteRangeResponse = grpc_unary(p, "/etcdserverpb.KV/DeleteRange", req, None)
            .await
            .unwrap();
    }
    for _ in 0..40u64 {
        put(p, &format!("k{:04}", rng.next(300)), b"x".to_vec(), 0).await;
    }
    let ranges: [(&[u8], &[u8]); 6] = [
        (b"k0010", b""),
        (b"k0017", b""),
        (b"k0", b"k1"),
        (b"\0", b"\0"),
        (b"k0100", b"k0250"),
        (b"k0200", b"k0100"),
    ];
    let mut multi_chunk = 0;
    for (key, end) in ranges {
        for limit in [0, 1, 7, 150, 1000] {
            for (keys_only, count_only) in [(false, false), (true, false), (false, true)] {
                for revision in [0, mid] {
                    let req = pb::RangeRequest {
                        key: key.to_vec(),
                        range_end: end.to_vec(),
                        limit,
                        keys_only,
                        count_only,
                        revision,
                        ..Default::default()
                    };
                    let unary: pb::RangeResponse =
                        grpc_unary(p, RANGE, req.clone(), None).await.unwrap();
                    let got = chunks(p, req.clone()).await.unwrap();
                    if got.len() > 2 {
                        multi_chunk += 1;
                    }
                    if count_only {
                        assert_eq!(got.len(), 1, "count-only is one chunk");
                    }
                    assert_eq!(merge(&got), unary, "{req:?} in {} chunks", got.len());
                }
            }
        }
    }
    assert!(multi_chunk > 10, "small limits make many chunks");
    // Keys-only comes from the index, as etcd 3.7's: no value, no lease.
    put(p, "leased", b"v".to_vec(), grant.id).await;
    let req = pb::RangeRequest {
        key: b"leased".to_vec(),
        keys_only: true,
        ..Default::default()
    };
    let unary: pb::RangeResponse = grpc_unary(p, RANGE, req, None).await.unwrap();
    assert_eq!((unary.kvs[0].lease, unary.kvs[0].value.len()), (0, 0));
}

#[tokio::test]
async fn refusals_and_errors_are_etcds() {
    let s = Server::start(&[]);
    let p = port(&s);
    let rev = put(p, "a", b"1".to_vec(), 0).await;
    put(p, "a", b"2".to_vec(), 0).await;
    let base = pb::RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        ..Default::default()
    };
    use pb::range_request::{SortOrder, SortTarget};
    let cases: Vec<(pb::RangeRequest, Code, &str)> = vec![
        (
            pb::RangeRequest {
                sort_order: SortOrder::Descend as i32,
                ..base.clone()
            },
            Code::Unimplemented,
            "RangeStream does not support custom sort orders",
        ),
        (
            pb::RangeRequest {
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Mod as i32,
                ..base.clone()
            },
            Code::Unimplemented,
            "RangeStream does not support custom sort orders",
        ),
        (
            pb::RangeRequest {
                min_mod_revision: 2,
                ..base.clone()
            },
            Code::Unimplemented,
            "RangeStream does not support revision filters",
        ),
        (
            pb::RangeRequest {
                key: Vec::new(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            pb::RangeRequest {
                sort_order: 9,
                ..base.clone()
            },
            Code::InvalidArgument,
            "etcdserver: invalid sort option",
        ),
        (
            pb::RangeRequest {
                revision: 1000,
                ..base.clone()
            },
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
    ];
    for (req, code, msg) in cases {
        assert_eq!(
            status(chunks(p, req.clone()).await),
            (code, msg.to_string()),
            "{req:?}"
        );
    }
    // Ascending by key is the default order: allowed.
    let ok = pb::RangeRequest {
        sort_order: SortOrder::Ascend as i32,
        ..base.clone()
    };
    assert_eq!(merge(&chunks(p, ok).await.unwrap()).count, 1);
    let _: pb::CompactionResponse = grpc_unary(
        p,
        "/etcdserverpb.KV/Compact",
        pb::CompactionRequest {
            revision: rev + 1,
            physical: true,
        },
        None,
    )
    .await
    .unwrap();
    let old = pb::RangeRequest {
        revision: rev,
        ..base
    };
    assert_eq!(
        status(chunks(p, old).await),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".to_string()
        )
    );
}

/// Anonymous resident memory of a process, in bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("RssAnon")
        * 1024
}

/// Mappings of db files that were replaced (a defrag's old file).
fn deleted_db_maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .lines()
        .filter(|l| l.contains("/db") && l.ends_with("(deleted)"))
        .count()
}

async fn load_big(p: u16, n: usize, value: usize) -> i64 {
    let mut rev = 0;
    for i in 0..n {
        rev = put(p, &format!("big{i:05}"), vec![b'v'; value], 0).await;
    }
    rev
}

#[tokio::test]
async fn a_stalled_reader_holds_one_chunk_and_no_snapshot() {
    let s = Server::start(&[]);
    let p = port(&s);
    let pid = s.child.as_ref().expect("running").id();
    // 96 MiB of values: 1,536 keys x 64 KiB, about 48 chunks of 1.5 MiB.
    load_big(p, 1536, 64 << 10).await;
    let req = pb::RangeRequest {
        key: b"big".to_vec(),
        range_end: b"bih".to_vec(),
        ..Default::default()
    };
    let before = rss_anon(pid);
    let mut stream = grpc_server_stream::<_, pb::RangeStreamResponse>(p, STREAM, req.clone(), None)
        .await
        .unwrap();
    let first = stream.message().await.unwrap().expect("a first chunk");
    let mut seen = first.range_response.unwrap().kvs.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled = rss_anon(pid).saturating_sub(before);
    assert!(
        stalled < 32 << 20,
        "a stalled stream grew the server by {stalled} bytes (the range is 96 MiB)"
    );
    // A defrag while the reader stalls: no snapshot keeps the old file.
    let out = s.etcdctl(&["defrag"]);
    assert!(out.status.success(), "{out:?}");
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = deleted_db_maps(pid);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the old db file is still mapped");
    // The reader resumes and gets everything.
    while let Some(m) = stream.message().await.unwrap() {
        seen += m.range_response.unwrap().kvs.len();
    }
    assert_eq!(seen, 1536);
    // A reader that goes away: the server stays lean and serves on.
    let before = rss_anon(pid);
    for _ in 0..4 {
        let mut s2 = grpc_server_stream::<_, pb::RangeStreamResponse>(p, STREAM, req.clone(), None)
            .await
            .unwrap();
        s2.message().await.unwrap().expect("a chunk");
        drop(s2);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_anon(pid).saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "abandoned streams grew the server by {grown} bytes"
    );
    put(p, "after", b"1".to_vec(), 0).await;

    // The unary Range of the same 96 MiB is encoded as it is sent: the
    // server's peak growth is a few pieces, not the list plus the message.
    let before = rss_anon(pid);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_anon(pid));
            if stopped.try_recv().is_ok() {
                return peak;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let whole: pb::RangeResponse = grpc_unary(p, RANGE, req.clone(), None).await.unwrap();
    let _ = stop.send(());
    let peak = sampler.await.unwrap().saturating_sub(before);
    assert_eq!((whole.kvs.len(), whole.count), (1536, 1536));
    assert!(whole.kvs.iter().all(|kv| kv.value.len() == 64 << 10));
    assert!(
        peak < 48 << 20,
        "a unary range of 96 MiB grew the server by {peak} bytes at its peak"
    );
}

#[tokio::test]
async fn a_compaction_past_the_pinned_revision_ends_the_stream() {
    // 8 MiB at 256 KiB per chunk (request limit): 32+ chunks.
    let s = Server::start(&["--max-request-bytes", "262144"]);
    let p2 = port(&s);
    let pinned = load_big(p2, 256, 32 << 10).await;
    let req = pb::RangeRequest {
        key: b"big".to_vec(),
        range_end: b"bih".to_vec(),
        ..Default::default()
    };
    let mut stream = grpc_server_stream::<_, pb::RangeStreamResponse>(p2, STREAM, req, None)
        .await
        .unwrap();
    let first = stream.message().await.unwrap().expect("a first chunk");
    assert!(first.range_response.unwrap().header.is_none());
    let now = put(p2, "later", b"1".to_vec(), 0).await;
    assert!(now > pinned);
    let _: pb::CompactionResponse = grpc_unary(
        p2,
        "/etcdserverpb.KV/Compact",
        pb::CompactionRequest {
            revision: now,
            physical: true,
        },
        None,
    )
    .await
    .unwrap();
    let mut got = Ok(());
    loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                got = Err((e.code(), e.message().to_string()));
                break;
            }
        }
    }
    assert_eq!(
        got,
        Err((
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".to_string()
        ))
    );
}

#[tokio::test]
async fn auth_rules_are_ranges() {
    let s = Server::start(&[]);
    let p = port(&s);
    put(p, "a", b"1".to_vec(), 0).await;
    put(p, "b", b"2".to_vec(), 0).await;
    strata_testkit::set_up_auth(&s.endpoint());
    let alice = strata_testkit::login(p, "alice", "alicepw").await.unwrap();
    let one = |key: &str| pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    let read = |key: &'static str, token: Option<String>| async move {
        let mut s =
            grpc_server_stream::<_, pb::RangeStreamResponse>(p, STREAM, one(key), token.as_deref())
                .await?;
        let mut kvs = Vec::new();
        while let Some(m) = s.message().await? {
            kvs.extend(m.range_response.unwrap_or_default().kvs);
        }
        Ok::<_, tonic::Status>(kvs)
    };
    // Alice reads "a" (her permission), not "b"; nobody reads without a
    // user; the same answers as Range's.
    let got = read("a", Some(alice.clone())).await.unwrap();
    assert_eq!(got[0].value, b"1");
    let denied = read("b", Some(alice.clone())).await.unwrap_err();
    let unary: Result<pb::RangeResponse, _> = grpc_unary(p, RANGE, one("b"), Some(&alice)).await;
    let unary = unary.unwrap_err();
    assert_eq!(
        (denied.code(), denied.message()),
        (Code::PermissionDenied, "etcdserver: permission denied")
    );
    assert_eq!(
        (unary.code(), unary.message()),
        (denied.code(), denied.message())
    );
    let anonymous = read("a", None).await.unwrap_err();
    let unary: Result<pb::RangeResponse, _> = grpc_unary(p, RANGE, one("a"), None).await;
    let unary = unary.unwrap_err();
    assert_eq!(
        (anonymous.code(), anonymous.message()),
        (unary.code(), unary.message())
    );
    assert_eq!(anonymous.code(), Code::InvalidArgument, "{anonymous:?}");
}
