//! The KV service: Range, RangeStream, Put, DeleteRange, Txn, Compact.
//!
//! Writes go through raft ([`EtcdServer::propose`]); reads are served
//! locally, after the ReadIndex barrier unless the request is serializable.
//! Requests are checked here first, as etcd's v3rpc layer does, so a bad
//! request never reaches the log.

use std::sync::Arc;

use strata_engine::mvcc as m;
use strata_engine::mvcc::txn as mtxn;
use strata_proto::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use super::{propose, range_stream};
use crate::errors::{EtcdError, Grpc};
use crate::server::EtcdServer;
use crate::statemachine::auth::AuthInfo;
use crate::statemachine::convert;
use crate::statemachine::state::Applied;

pub struct KvService {
    pub srv: Arc<EtcdServer>,
}

/// etcd's checkTxnRequest: op counts (each nested txn on its own), empty
/// keys and ops.
fn check_txn(t: &pb::TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for op in t.success.iter().chain(&t.failure) {
        use pb::request_op::Request as R;
        match &op.request {
            Some(R::RequestRange(r)) if r.key.is_empty() => return Err(EtcdError::EmptyKey),
            Some(R::RequestPut(p)) => check_put(p)?,
            Some(R::RequestDeleteRange(d)) if d.key.is_empty() => return Err(EtcdError::EmptyKey),
            Some(R::RequestTxn(inner)) => check_txn(inner, max_ops)?,
            None => return Err(EtcdError::KeyNotFound),
            _ => {}
        }
    }
    Ok(())
}

fn check_put(p: &pb::PutRequest) -> Result<(), EtcdError> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// grpc-go's receive limit, as etcd configures it (the request limit plus
/// 512 KiB), with grpc-go's status. tonic's own cap is set higher so that
/// this check, with grpc-go's message, is the one clients see.
fn check_recv<M: prost::Message>(srv: &EtcdServer, m: &M) -> Result<(), Status> {
    let limit = srv.recv_limit();
    let n = m.encoded_len();
    if n > limit {
        return Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({n} vs. {limit})"
        )));
    }
    Ok(())
}

/// etcd's doSerialize: a read served while the auth store changed under
/// it is refused, so it never returns what a just-revoked permission
/// covered.
pub(super) fn stale_check(srv: &EtcdServer, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
    match who {
        Some(w) if w.revision != 0 && w.revision != srv.shared.auth.revision() => {
            Err(EtcdError::AuthOldRevision)
        }
        _ => Ok(()),
    }
}

/// Times a read of a range from the store
/// (`etcd_server_range_duration_seconds`, etcd's txn.Range).
pub(super) fn timed_range<T, E>(read: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let start = std::time::Instant::now();
    let r = read();
    let m = crate::metrics::global();
    m.observe_range(r.is_ok(), start.elapsed());
    m.mvcc_ops(1, 0, 0, 0);
    r
}

/// Times a read request on this member, barrier included
/// (`etcd_server_request_duration_seconds` of type `typ`).
pub(super) async fn timed_request<T>(
    typ: &str,
    request: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let start = std::time::Instant::now();
    let r = request.await;
    crate::metrics::global().observe_request(typ, r.is_ok(), start.elapsed());
    r
}

/// A range answered as one message in memory (an order by value, the
/// JSON gateway's path when it is not the streamed one, tests).
pub(super) fn materialized_range(
    srv: &EtcdServer,
    mr: &m::RangeRequest,
) -> Result<pb::RangeResponse, Status> {
    let store = srv.store();
    if !m::RangeRead::supports(mr) {
        let resp = timed_range(|| store.range(mr)).grpc()?;
        let h = srv.shared.header(resp.revision);
        return Ok(convert::range_out(resp, h));
    }
    // From the index and one pinned snapshot (keys-only without touching
    // values, as etcd 3.7).
    let read = timed_range(|| store.range_read(mr, true, false)).grpc()?;
    let mut kvs = Vec::with_capacity(read.len());
    for i in 0..read.len() {
        kvs.push(convert::kv_out(read.kv(i).grpc()?));
    }
    Ok(pb::RangeResponse {
        header: Some(srv.shared.header(read.revision)),
        kvs,
        more: read.more,
        count: read.count,
    })
}

/// What Range and RangeStream check before they read, in etcd's order:
/// the request (size, key, options), then the read barrier (learners
/// serve only serializable reads), then the user's permission.
pub(super) async fn admit_range(
    srv: &EtcdServer,
    req: Request<pb::RangeRequest>,
    stream: bool,
) -> Result<(m::RangeRequest, Option<AuthInfo>), Status> {
    let who = srv.who_of(&req).await?;
    let r = req.into_inner();
    check_recv(srv, &r)?;
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey.into());
    }
    let mr = convert::range_in(&r)?;
    if stream {
        range_stream::check(&r)?;
    }
    if !r.serializable {
        if srv.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        srv.read_barrier().await?;
    }
    srv.shared
        .auth
        .check_read(who.as_ref(), &r.key, &r.range_end)?;
    Ok((mr, who))
}

fn txn_put_bytes(t: &pb::TxnRequest) -> usize {
    use pb::request_op::Request as R;
    t.success
        .iter()
        .chain(&t.failure)
        .map(|op| match &op.request {
            Some(R::RequestPut(p)) => p.key.len() + p.value.len(),
            Some(R::RequestTxn(inner)) => txn_put_bytes(inner),
            _ => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        timed_request("Range", async {
            let (mr, who) = admit_range(&self.srv, req, false).await?;
            let resp = materialized_range(&self.srv, &mr)?;
            stale_check(&self.srv, who.as_ref())?;
            Ok(Response::new(resp))
        })
        .await
    }

    type RangeStreamStream = range_stream::Chunks;

    async fn range_stream(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let (mr, who) = admit_range(&self.srv, req, true).await?;
        stale_check(&self.srv, who.as_ref())?;
        Ok(Response::new(range_stream::start(self.srv.clone(), mr)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let p = req.into_inner();
        check_recv(&self.srv, &p)?;
        check_put(&p)?;
        self.srv.check_quota(p.key.len() + p.value.len()).await?;
        propose(&self.srv, who.as_ref(), p).await
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let d = req.into_inner();
        check_recv(&self.srv, &d)?;
        if d.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        propose(&self.srv, who.as_ref(), d).await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let t = req.into_inner();
        check_recv(&self.srv, &t)?;
        check_txn(&t, self.srv.cfg.max_txn_ops as usize)?;
        let mt = convert::txn_in(&t)?;
        mtxn::validate_txn(&mt).grpc()?;
        if !mtxn::is_write(&mt.success) && !mtxn::is_write(&mt.failure) {
            // Read-only: served locally after the barrier, like a range.
            return timed_request("ReadonlyTxn", async {
                self.srv.read_barrier().await?;
                self.srv.shared.auth.check_txn(who.as_ref(), &t)?;
                let resp = self.srv.store().txn(&mt).grpc()?;
                crate::metrics::global().mvcc_txn(&mt, &resp);
                stale_check(&self.srv, who.as_ref())?;
                let h = self.srv.shared.header(resp.revision);
                Ok(Response::new(convert::txn_out(resp, &h)))
            })
            .await;
        }
        let put_bytes = txn_put_bytes(&t);
        if put_bytes > 0 {
            self.srv.check_quota(put_bytes).await?;
        }
        propose(&self.srv, who.as_ref(), t).await
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        // etcd 3.6: compaction is root's.
        let who = self.srv.require_admin(&req).await?;
        let c = req.into_inner();
        match self.srv.propose_for(c, who.as_ref()).await? {
            Applied::Compaction(resp) => Ok(Response::new(resp)),
            // Physical: answered when the job ends, however long it takes
            // (etcd waits for its compaction likewise).
            Applied::Compacting { answer, done } => match done.await {
                Ok(Ok(())) => Ok(Response::new(answer)),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(EtcdError::Stopped.into()),
            },
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }
}
