//! Field-by-field conversions between the wire types (strata-proto, etcd's
//! messages) and the engine's MVCC requests and responses. Unknown enum
//! values are rejected here with etcd's errors, so the engine only ever
//! sees valid requests.

use strata_engine::mvcc as m;
use strata_proto::etcdserverpb as pb;
use strata_proto::mvccpb;

use crate::errors::EtcdError;

pub fn kv_out(kv: m::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event_out(e: m::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            m::EventKind::Put => mvccpb::event::EventType::Put as i32,
            m::EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_out(e.kv)),
        prev_kv: e.prev_kv.map(kv_out),
    }
}

pub fn range_in(r: &pb::RangeRequest) -> Result<m::RangeRequest, EtcdError> {
    use pb::range_request::{SortOrder, SortTarget};
    let sort_order = match SortOrder::try_from(r.sort_order) {
        Ok(SortOrder::None) => m::SortOrder::None,
        Ok(SortOrder::Ascend) => m::SortOrder::Ascend,
        Ok(SortOrder::Descend) => m::SortOrder::Descend,
        Err(_) => return Err(EtcdError::InvalidSortOption),
    };
    let sort_target = match SortTarget::try_from(r.sort_target) {
        Ok(SortTarget::Key) => m::SortTarget::Key,
        Ok(SortTarget::Version) => m::SortTarget::Version,
        Ok(SortTarget::Create) => m::SortTarget::Create,
        Ok(SortTarget::Mod) => m::SortTarget::Mod,
        Ok(SortTarget::Value) => m::SortTarget::Value,
        Err(_) => return Err(EtcdError::InvalidSortOption),
    };
    Ok(m::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn range_out(r: m::RangeResponse, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header),
        kvs: r.kvs.into_iter().map(kv_out).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_in(p: &pb::PutRequest) -> m::PutRequest {
    m::PutRequest {
        key: p.key.clone(),
        value: p.value.clone(),
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    }
}

pub fn put_out(p: m::PutResponse, header: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(header),
        prev_kv: p.prev_kv.map(kv_out),
    }
}

pub fn delete_in(d: &pb::DeleteRangeRequest) -> m::DeleteRangeRequest {
    m::DeleteRangeRequest {
        key: d.key.clone(),
        range_end: d.range_end.clone(),
        prev_kv: d.prev_kv,
    }
}

pub fn delete_out(
    d: m::DeleteRangeResponse,
    header: pb::ResponseHeader,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header),
        deleted: d.deleted,
        prev_kvs: d.prev_kvs.into_iter().map(kv_out).collect(),
    }
}

fn compare_in(c: &pb::Compare) -> Result<m::Compare, EtcdError> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => m::CompareResult::Equal,
        Ok(CompareResult::Greater) => m::CompareResult::Greater,
        Ok(CompareResult::Less) => m::CompareResult::Less,
        Ok(CompareResult::NotEqual) => m::CompareResult::NotEqual,
        Err(_) => return Err(EtcdError::BadCompare),
    };
    // etcd reads the value from the oneof that matches `target`; a missing
    // one compares against the zero value.
    let u = c.target_union.clone();
    let target = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Version) => m::CompareTarget::Version(match u {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Create) => m::CompareTarget::Create(match u {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => m::CompareTarget::Mod(match u {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Value) => m::CompareTarget::Value(match u {
            Some(TargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        Ok(CompareTarget::Lease) => m::CompareTarget::Lease(match u {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => return Err(EtcdError::BadCompare),
    };
    Ok(m::Compare {
        result,
        target,
        key: c.key.clone(),
        range_end: c.range_end.clone(),
    })
}

fn ops_in(ops: &[pb::RequestOp]) -> Result<Vec<m::RequestOp>, EtcdError> {
    use pb::request_op::Request;
    ops.iter()
        .map(|op| {
            Ok(match &op.request {
                Some(Request::RequestRange(r)) => m::RequestOp::Range(range_in(r)?),
                Some(Request::RequestPut(p)) => m::RequestOp::Put(put_in(p)),
                Some(Request::RequestDeleteRange(d)) => m::RequestOp::DeleteRange(delete_in(d)),
                Some(Request::RequestTxn(t)) => m::RequestOp::Txn(txn_in(t)?),
                // etcd rejects an op with nothing in it as a bad request.
                None => return Err(EtcdError::KeyNotFound),
            })
        })
        .collect()
}

pub fn txn_in(t: &pb::TxnRequest) -> Result<m::TxnRequest, EtcdError> {
    Ok(m::TxnRequest {
        compare: t.compare.iter().map(compare_in).collect::<Result<_, _>>()?,
        success: ops_in(&t.success)?,
        failure: ops_in(&t.failure)?,
    })
}

pub fn txn_out(t: m::TxnResponse, header: &pb::ResponseHeader) -> pb::TxnResponse {
    use pb::response_op::Response;
    // etcd fills only the revision in the headers of a txn's responses.
    let sub = |rev: i64| pb::ResponseHeader {
        revision: rev,
        ..Default::default()
    };
    pb::TxnResponse {
        header: Some(*header),
        succeeded: t.succeeded,
        responses: t
            .responses
            .into_iter()
            .map(|r| pb::ResponseOp {
                response: Some(match r {
                    m::ResponseOp::Range(x) => {
                        let h = sub(x.revision);
                        Response::ResponseRange(range_out(x, h))
                    }
                    m::ResponseOp::Put(x) => {
                        let h = sub(x.revision);
                        Response::ResponsePut(put_out(x, h))
                    }
                    m::ResponseOp::DeleteRange(x) => {
                        let h = sub(x.revision);
                        Response::ResponseDeleteRange(delete_out(x, h))
                    }
                    m::ResponseOp::Txn(x) => {
                        let h = sub(x.revision);
                        Response::ResponseTxn(txn_out(x, &h))
                    }
                }),
            })
            .collect(),
    }
}
