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

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9:/.]{0,12}"
}

fn member() -> impl Strategy<Value = pb::Member> {
    (
        any::<u64>(),
        text(),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(text(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(id, name, peers, clients, learner)| pb::Member {
            id,
            name,
            peer_ur_ls: peers,
            client_ur_ls: clients,
            is_learner: learner,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn maintenance_cluster_lease_auth_responses_match_etcd(
        h in header(),
        n in any::<[i64; 4]>(),
        u in any::<[u64; 4]>(),
        flag in any::<bool>(),
        s in text(),
        members in prop::collection::vec(member(), 0..3),
        keys in prop::collection::vec(bytes(), 0..3),
        names in prop::collection::vec(text(), 0..3),
    ) {
        use strata_proto::authpb;
        let status = pb::StatusResponse {
            header: h,
            version: s.clone(),
            db_size: n[0],
            leader: u[0],
            raft_index: u[1],
            raft_term: u[2],
            raft_applied_index: u[3],
            errors: names.clone(),
            db_size_in_use: n[1],
            is_learner: flag,
            storage_version: s.clone(),
            db_size_quota: n[2],
            downgrade_info: Some(pb::DowngradeInfo { enabled: flag, target_version: s.clone() }),
        };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbStatusResponse>(&status);
        prop_assert_eq!(a, b);
        let add = pb::MemberAddResponse { header: h, member: members.first().cloned(), members: members.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbMemberAddResponse>(&add);
        prop_assert_eq!(a, b);
        let list = pb::MemberListResponse { header: h, members: members.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbMemberListResponse>(&list);
        prop_assert_eq!(a, b);
        let grant = pb::LeaseGrantResponse { header: h, id: n[0], ttl: n[1], error: s.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbLeaseGrantResponse>(&grant);
        prop_assert_eq!(a, b);
        let ka = pb::LeaseKeepAliveResponse { header: h, id: n[0], ttl: n[1] };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbLeaseKeepAliveResponse>(&ka);
        prop_assert_eq!(a, b);
        let ttl = pb::LeaseTimeToLiveResponse { header: h, id: n[0], ttl: n[1], granted_ttl: n[2], keys: keys.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbLeaseTimeToLiveResponse>(&ttl);
        prop_assert_eq!(a, b);
        let leases = pb::LeaseLeasesResponse { header: h, leases: n.iter().map(|&id| pb::LeaseStatus { id }).collect() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbLeaseLeasesResponse>(&leases);
        prop_assert_eq!(a, b);
        let hkv = pb::HashKvResponse { header: h, hash: u[0] as u32, compact_revision: n[0], hash_revision: n[1] };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbHashKvResponse>(&hkv);
        prop_assert_eq!(a, b);
        let snap = pb::SnapshotResponse { header: h, remaining_bytes: u[0], blob: keys.concat(), version: s.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbSnapshotResponse>(&snap);
        prop_assert_eq!(a, b);
        let alarm = pb::AlarmResponse { header: h, alarms: vec![pb::AlarmMember { member_id: u[0], alarm: (n[0].rem_euclid(3)) as i32 }] };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbAlarmResponse>(&alarm);
        prop_assert_eq!(a, b);
        let perms: Vec<authpb::Permission> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| authpb::Permission { perm_type: (i % 3) as i32, key: k.clone(), range_end: k.clone() })
            .collect();
        let role = pb::AuthRoleGetResponse { header: h, perm: perms };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbAuthRoleGetResponse>(&role);
        prop_assert_eq!(a, b);
        let user = pb::AuthUserGetResponse { header: h, roles: names.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbAuthUserGetResponse>(&user);
        prop_assert_eq!(a, b);
        let auth = pb::AuthenticateResponse { header: h, token: s.clone() };
        let (a, b) = roundtrip::<_, etcd_client::proto::PbAuthenticateResponse>(&auth);
        prop_assert_eq!(a, b);
    }
}
