//! The generated services answer on etcd's gRPC paths
//! (`/etcdserverpb.KV/Range`, `/etcdserverpb.Watch/Watch`, ...), and the
//! messages keep etcd's field numbers for the fields clients depend on most.

use prost::Message;
use strata_proto::etcdserverpb as pb;

#[test]
fn services_are_named_as_etcds() {
    use pb::kv_server::KvServer;
    use pb::watch_server::WatchServer;
    assert_eq!(
        <KvServer<()> as tonic::server::NamedService>::NAME,
        "etcdserverpb.KV"
    );
    assert_eq!(
        <WatchServer<()> as tonic::server::NamedService>::NAME,
        "etcdserverpb.Watch"
    );
}

#[test]
fn field_numbers_of_etcd() {
    // RangeRequest.key = 1 (bytes), range_end = 2, limit = 3 (varint).
    let r = pb::RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        limit: 5,
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 5]
    );
    // Compare.range_end = 64: tag (64 << 3 | 2) = 514 = 0x82 0x04.
    let c = pb::Compare {
        range_end: b"z".to_vec(),
        ..Default::default()
    };
    assert_eq!(c.encode_to_vec(), vec![0x82, 0x04, 1, b'z']);
    // WatchResponse.events = 11: tag 0x5a.
    let w = pb::WatchResponse {
        events: vec![Default::default()],
        ..Default::default()
    };
    assert_eq!(w.encode_to_vec(), vec![0x5a, 0]);
}
