//! The etcd v3 gRPC services over an [`EtcdServer`](crate::server::EtcdServer).
//!
//! Every write goes through [`propose`]: the request is proposed through
//! raft and the member answers with the response its applier produced.

use tonic::{Response, Status};

use crate::server::EtcdServer;
use crate::statemachine::auth::AuthInfo;
use crate::statemachine::state::{Applied, RaftRequest};

pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod range_body;
pub mod range_stream;
pub mod watch;

/// Proposes a client's `r` (sent by `who`) and answers with the response
/// of type `T` that applying it produced (each request kind has its one
/// response kind).
pub(crate) async fn propose<T>(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    r: impl RaftRequest,
) -> Result<Response<T>, Status>
where
    T: TryFrom<Applied, Error = Applied>,
{
    propose_raw(srv, who, r).await.map(Response::new)
}

/// [`propose`] without the gRPC response wrapper (for services that build
/// on several proposals).
pub(crate) async fn propose_raw<T>(
    srv: &EtcdServer,
    who: Option<&AuthInfo>,
    r: impl RaftRequest,
) -> Result<T, Status>
where
    T: TryFrom<Applied, Error = Applied>,
{
    T::try_from(srv.propose_for(r, who).await?)
        .map_err(|other| Status::internal(format!("unexpected apply result {other:?}")))
}
