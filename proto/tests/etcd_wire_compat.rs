//! Our etcdserverpb must encode exactly like etcd's: random messages built
//! with our types are decoded with the etcd-client crate's generated types
//! (the reference) and re-encoded; the bytes must not change. prost drops
//! fields it does not know, so a wrong field number or type shows up here.

use proptest::prelude::*;
use prost::Message;
use strata_proto::etcdserverpb::{self as pb, compare, request_op, response_op};
use strata_proto::mvccpb;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..8)
}

fn kv() -> impl Strategy<Value = mvccpb::KeyValue> {
    (
        bytes(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        bytes(),
        any::<i64>(),
    )
        .prop_map(|(key, c, m, v, value, lease)| mvccpb::KeyValue {
            key,
            create_revision: c,
            mod_revision: m,
            version: v,
            value,
            lease,
        })
}

fn range_req() -> impl Strategy<Value = pb::RangeRequest> {
    (
        bytes(),
        bytes(),
        any::<i64>(),
        any::<i64>(),
        0..3i32,
        0..5i32,
        any::<[bool; 3]>(),
        any::<[i64; 4]>(),
    )
        .prop_map(
            |(key, range_end, limit, revision, so, st, flags, mm)| pb::RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order: so,
                sort_target: st,
                serializable: flags[0],
                keys_only: flags[1],
                count_only: flags[2],
                min_mod_revision: mm[0],
                max_mod_revision: mm[1],
                min_create_revision: mm[2],
                max_create_revision: mm[3],
            },
        )
}

fn op(depth: u32) -> BoxedStrategy<pb::RequestOp> {
    let leaf = prop_oneof![
        range_req().prop_map(request_op::Request::RequestRange),
        (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, f)| {
            request_op::Request::RequestPut(pb::PutRequest {
                key,
                value,
                lease,
                prev_kv: f[0],
                ignore_value: f[1],
                ignore_lease: f[2],
            })
        }),
        (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
            request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key,
                range_end,
                prev_kv,
            })
        }),
    ];
    if depth == 0 {
        leaf.prop_map(|r| pb::RequestOp { request: Some(r) })
            .boxed()
    } else {
        prop_oneof![3 => leaf, 1 => txn(depth - 1).prop_map(request_op::Request::RequestTxn)]
            .prop_map(|r| pb::RequestOp { request: Some(r) })
            .boxed()
    }
}

fn cmp() -> impl Strategy<Value = pb::Compare> {
    let target = prop_oneof![
        any::<i64>().prop_map(|v| (0, compare::TargetUnion::Version(v))),
        any::<i64>().prop_map(|v| (1, compare::TargetUnion::CreateRevision(v))),
        any::<i64>().prop_map(|v| (2, compare::TargetUnion::ModRevision(v))),
        bytes().prop_map(|v| (3, compare::TargetUnion::Value(v))),
        any::<i64>().prop_map(|v| (4, compare::TargetUnion::Lease(v))),
    ];
    (0..4i32, target, bytes(), bytes()).prop_map(|(result, (t, u), key, range_end)| pb::Compare {
        result,
        target: t,
        key,
        target_union: Some(u),
        range_end,
    })
}

fn txn(depth: u32) -> BoxedStrategy<pb::TxnRequest> {
    (
        prop::collection::vec(cmp(), 0..3),
        prop::collection::vec(op(depth), 0..3),
        prop::collection::vec(op(depth), 0..3),
    )
        .prop_map(|(compare, success, failure)| pb::TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

fn header() -> impl Strategy<Value = Option<pb::ResponseHeader>> {
    prop::option::of(
        (any::<u64>(), any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(c, m, r, t)| {
            pb::ResponseHeader {
                cluster_id: c,
                member_id: m,
                revision: r,
                raft_term: t,
            }
        }),
    )
}

fn roundtrip<Ours: Message, Theirs: Message + Default>(ours: &Ours) -> (Vec<u8>, Vec<u8>) {
    let bytes = ours.encode_to_vec();
    let theirs = Theirs::decode(bytes.as_slice()).expect("etcd's types decode ours");
    (bytes, theirs.encode_to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn txn_requests_match_etcd(t in txn(2)) {
        let (a, b) = roundtrip::<_, etcd_client::proto::PbTxnRequest>(&t);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn responses_match_etcd(h in header(), kvs in prop::collection::vec(kv(), 0..3), more in any::<bool>(), count in any::<i64>(), deleted in any::<i64>()) {
        let range = pb::RangeResponse { header: h, kvs: kvs.clone(), more, count };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbRangeResponse>(&range);
        prop_assert_eq!(a, b);
        let put = pb::PutResponse { header: h, prev_kv: kvs.first().cloned() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbPutResponse>(&put);
        prop_assert_eq!(a, b);
        let del = pb::DeleteRangeResponse { header: h, deleted, prev_kvs: kvs.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbDeleteResponse>(&del);
        prop_assert_eq!(a, b);
        let txn = pb::TxnResponse {
            header: h,
            succeeded: more,
            responses: vec![
                pb::ResponseOp { response: Some(response_op::Response::ResponseRange(range)) },
                pb::ResponseOp { response: Some(response_op::Response::ResponsePut(put)) },
                pb::ResponseOp { response: Some(response_op::Response::ResponseDeleteRange(del)) },
            ],
        };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbTxnResponse>(&txn);
        prop_assert_eq!(a, b);
        let events = kvs
            .iter()
            .enumerate()
            .map(|(i, kv)| mvccpb::Event { r#type: (i % 2) as i32, kv: Some(kv.clone()), prev_kv: kvs.last().cloned() })
            .collect();
        let watch = pb::WatchResponse {
            header: h,
            watch_id: count,
            created: more,
            canceled: !more,
            compact_revision: deleted,
            cancel_reason: "compacted".into(),
            fragment: more,
            events,
        };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbWatchResponse>(&watch);
        prop_assert_eq!(a, b);
    }
}
