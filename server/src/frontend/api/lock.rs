//! The Lock service (etcd's v3lock): Lock waits until the caller holds
//! `<name>/<lease>` (see [`super::concurrency`]); Unlock deletes the key.
//! A lock with no lease gets one of 60 s, as etcd's session does.

use std::sync::Arc;

use strata_proto::etcdserverpb as pb;
use strata_proto::v3lockpb as lp;
use tonic::{Request, Response, Status};

use super::concurrency;
use crate::server::EtcdServer;

pub struct LockService {
    pub srv: Arc<EtcdServer>,
}

/// etcd's session default TTL, for a lock or campaign without a lease.
const SESSION_TTL: i64 = 60;

/// The caller's lease, or a new one of etcd's session TTL.
pub(super) async fn lease_or_new(
    srv: &EtcdServer,
    who: Option<&crate::statemachine::auth::AuthInfo>,
    lease: i64,
) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let g = srv.lease_grant_request(0, SESSION_TTL)?;
    let r: pb::LeaseGrantResponse = super::propose_raw(srv, who, g).await?;
    Ok(r.id)
}

#[tonic::async_trait]
impl lp::lock_server::Lock for LockService {
    async fn lock(
        &self,
        req: Request<lp::LockRequest>,
    ) -> Result<Response<lp::LockResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let r = req.into_inner();
        let lease = lease_or_new(&self.srv, who.as_ref(), r.lease).await?;
        let mut pfx = r.name;
        pfx.push(b'/');
        let (key, _, header) =
            concurrency::acquire(&self.srv, who.as_ref(), &pfx, lease, b"", false).await?;
        Ok(Response::new(lp::LockResponse {
            header: Some(header),
            key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<lp::UnlockRequest>,
    ) -> Result<Response<lp::UnlockResponse>, Status> {
        let who = self.srv.who_of(&req).await?;
        let d = pb::DeleteRangeRequest {
            key: req.into_inner().key,
            ..Default::default()
        };
        let r: pb::DeleteRangeResponse = super::propose_raw(&self.srv, who.as_ref(), d).await?;
        Ok(Response::new(lp::UnlockResponse { header: r.header }))
    }
}
