//! Strata's wire types, generated from proto/ (own .proto files,
//! wire-compatible with etcd's: same packages, messages, field numbers and,
//! as services arrive, gRPC paths).
#![forbid(unsafe_code)]

/// `etcdserverpb`: the client API (KV, Watch, Lease, Cluster, Maintenance,
/// Auth) with their gRPC server traits; paths like `/etcdserverpb.KV/Range`.
#[allow(clippy::all)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// `authpb`: users, roles and permissions as stored.
#[allow(clippy::all)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// `mvccpb`: stored keys and watch events.
#[allow(clippy::all)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// `peerpb`: what members send each other on the peer URL (raft messages
/// in our own description of raft's wire format, and the Peer service).
#[allow(clippy::all)]
pub mod peerpb {
    include!(concat!(env!("OUT_DIR"), "/peerpb.rs"));
}

/// `v3lockpb`: the Lock service (`/v3lockpb.Lock/...`).
#[allow(clippy::all)]
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// `v3electionpb`: the Election service (`/v3electionpb.Election/...`).
#[allow(clippy::all)]
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
