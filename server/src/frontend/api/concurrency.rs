//! What the Lock and Election services share: clientv3's concurrency
//! recipes, run inside the member with the caller's credentials.
//!
//! A lock or a campaign is a key `<name>/<lease id in hex>` bound to the
//! caller's lease, created in one txn if it does not exist. Its create
//! revision orders the waiters: the holder is the key with the lowest one,
//! and each waiter waits until every key under the prefix created before
//! its own is deleted (by an unlock, a resignation, or its lease ending).
//! A waiter whose call ends before it gets there deletes its key, as
//! clientv3's Mutex does.

use std::sync::Arc;

use strata_engine::mvcc as m;
use strata_proto::etcdserverpb as pb;
use strata_proto::mvccpb;
use tokio::sync::mpsc;
use tonic::Status;

use super::watch::Sink;
use crate::errors::{EtcdError, Grpc};
use crate::server::EtcdServer;
use crate::statemachine::auth::AuthInfo;
use crate::statemachine::convert;

/// The end of the range of keys under `prefix` (etcd's prefix end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn compare_create(key: &[u8], rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn op_put(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn op_get(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

fn op_delete(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// Proposes a txn for `who` and answers with its response.
pub async fn txn(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    t: pb::TxnRequest,
) -> Result<pb::TxnResponse, Status> {
    super::propose_raw(srv, who, t).await
}

/// "Compare the create revision of `key` with `rev`; if equal, `then`."
pub async fn if_created_at(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    key: &[u8],
    rev: i64,
    then: pb::RequestOp,
) -> Result<pb::TxnResponse, Status> {
    let t = pb::TxnRequest {
        compare: vec![compare_create(key, rev)],
        success: vec![then],
        failure: Vec::new(),
    };
    txn(srv, who, t).await
}

/// A linearizable range of `pfx`'s keys, sorted by create revision,
/// limited; with `max_create` the newest ones created up to it.
pub async fn by_create(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    pfx: &[u8],
    newest_first: bool,
    max_create: i64,
) -> Result<(Option<mvccpb::KeyValue>, pb::ResponseHeader), Status> {
    use pb::range_request::{SortOrder, SortTarget};
    srv.read_barrier().await?;
    let r = pb::RangeRequest {
        key: pfx.to_vec(),
        range_end: prefix_end(pfx),
        limit: 1,
        sort_order: if newest_first {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    };
    srv.shared.auth.check_read(who, &r.key, &r.range_end)?;
    let resp = srv.store().range(&convert::range_in(&r)?).grpc()?;
    let header = srv.shared.header(resp.revision);
    Ok((resp.kvs.into_iter().next().map(convert::kv_out), header))
}

/// A watch on the engine, cancelled when dropped.
pub struct Watching {
    srv: Arc<EtcdServer>,
    id: i64,
    pub rx: mpsc::Receiver<m::WatchResponse>,
}

impl Watching {
    pub fn new(srv: &Arc<EtcdServer>, key: &[u8], range_end: &[u8], from: i64) -> Watching {
        let (tx, rx) = mpsc::channel(m::watch::CHANNEL_CAPACITY);
        let req = m::WatchRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            start_revision: from,
            prev_kv: false,
            no_put: false,
            no_delete: false,
        };
        let id = srv.shared.store.watch_into(&req, Box::new(Sink(tx)));
        Watching {
            srv: srv.clone(),
            id,
            rx,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.srv.shared.store.cancel(self.id);
    }
}

/// Waits until `key` is deleted (from revision `from` on).
async fn deleted(srv: &Arc<EtcdServer>, key: &[u8], from: i64) -> Result<(), Status> {
    let mut w = Watching::new(srv, key, &[], from);
    while let Some(r) = w.rx.recv().await {
        if r.canceled || r.compact_revision != 0 {
            return Ok(());
        }
        if r.events.iter().any(|e| e.kind == m::EventKind::Delete) {
            return Ok(());
        }
    }
    Err(EtcdError::Stopped.into())
}

/// Deletes a waiter's key if its call ends before it owns the lock.
struct Pending {
    srv: Arc<EtcdServer>,
    who: Option<AuthInfo>,
    key: Option<Vec<u8>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let srv = self.srv.clone();
            let who = self.who.clone();
            tokio::spawn(async move {
                let d = pb::DeleteRangeRequest {
                    key,
                    ..Default::default()
                };
                let _ = srv.propose_for(d, who.as_ref()).await;
            });
        }
    }
}

/// Owning `<pfx><lease hex>`: the key, its create revision and the header
/// once it is the oldest key under `pfx`. A campaign whose key already
/// exists with another value updates it (clientv3's Election does).
pub async fn acquire(
    srv: &Arc<EtcdServer>,
    who: Option<&AuthInfo>,
    pfx: &[u8],
    lease: i64,
    value: &[u8],
    update_value: bool,
) -> Result<(Vec<u8>, i64, pb::ResponseHeader), Status> {
    let mut key = pfx.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    let t = pb::TxnRequest {
        compare: vec![compare_create(&key, 0)],
        success: vec![op_put(&key, value, lease)],
        failure: vec![op_get(&key)],
    };
    let resp = txn(srv, who, t).await?;
    let mut pending = Pending {
        srv: srv.clone(),
        who: who.cloned(),
        key: Some(key.clone()),
    };
    let rev = if resp.succeeded {
        resp.header.as_ref().map_or(0, |h| h.revision)
    } else {
        let existing = resp
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(pb::response_op::Response::ResponseRange(rr)) => rr.kvs.into_iter().next(),
                _ => None,
            })
            .ok_or_else(|| Status::internal("the lock key vanished"))?;
        if update_value && existing.value != value {
            if_created_at(
                srv,
                who,
                &key,
                existing.create_revision,
                op_put(&key, value, lease),
            )
            .await?;
        }
        existing.create_revision
    };
    loop {
        let (before, header) = by_create(srv, who, pfx, true, rev - 1).await?;
        match before {
            None => {
                pending.key = None;
                return Ok((key, rev, header));
            }
            Some(kv) => deleted(srv, &kv.key, header.revision + 1).await?,
        }
    }
}

/// Deletes `key` if it was created at `rev` (a resignation); answers with
/// the header.
pub async fn release(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    key: &[u8],
    rev: i64,
) -> Result<pb::ResponseHeader, Status> {
    let r = if_created_at(srv, who, key, rev, op_delete(key)).await?;
    Ok(r.header.unwrap_or_default())
}

/// Puts `value` on `key` if it was created at `rev` (a proclamation);
/// false if it was not (not the leader).
pub async fn proclaim(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    key: &[u8],
    rev: i64,
    lease: i64,
    value: &[u8],
) -> Result<(bool, pb::ResponseHeader), Status> {
    let r = if_created_at(srv, who, key, rev, op_put(key, value, lease)).await?;
    Ok((r.succeeded, r.header.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_ends() {
        assert_eq!(super::prefix_end(b"a/"), b"a0");
        assert_eq!(super::prefix_end(b"a\xff"), b"b");
        assert_eq!(super::prefix_end(b"\xff"), vec![0]);
    }
}
