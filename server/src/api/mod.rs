//! The etcd v3 gRPC services over an [`EtcdServer`](crate::server::EtcdServer).

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;
