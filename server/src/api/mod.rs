//! The etcd v3 gRPC services over an [`EtcdServer`](crate::server::EtcdServer).

use tonic::Status;

use crate::apply::Applied;

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

/// A proposal's applied result of a kind its RPC never produces.
pub(crate) fn unexpected(a: Applied) -> Status {
    Status::internal(format!("unexpected apply result {a:?}"))
}
