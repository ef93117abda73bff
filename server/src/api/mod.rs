//! The etcd v3 gRPC services over an [`EtcdServer`](crate::server::EtcdServer).
//!
//! Every write goes through [`propose`]: the request is proposed through
//! raft and the member answers with the response its applier produced.

use tonic::{Response, Status};

use crate::server::EtcdServer;
use crate::state::{Applied, RaftRequest};

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

/// Proposes `r` and answers with the response of type `T` that applying it
/// produced (each request kind has its one response kind).
pub(crate) async fn propose<T>(srv: &EtcdServer, r: impl RaftRequest) -> Result<Response<T>, Status>
where
    T: TryFrom<Applied, Error = Applied>,
{
    T::try_from(srv.propose(r).await?)
        .map(Response::new)
        .map_err(|other| Status::internal(format!("unexpected apply result {other:?}")))
}
