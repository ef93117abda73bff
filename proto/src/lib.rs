//! Strata's wire types, generated from proto/ (own .proto files,
//! wire-compatible with etcd's: same packages, messages, field numbers and,
//! as services arrive, gRPC paths).
#![forbid(unsafe_code)]

/// `mvccpb`: stored keys and watch events.
#[allow(clippy::all)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}
