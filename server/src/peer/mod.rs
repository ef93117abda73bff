//! Members talking to members over the peer URL (`--listen-peer-urls`):
//! [`transport`] sends raft messages (one long-lived stream per peer,
//! bounded queues, never blocking raft), [`service`] receives them after
//! checking cluster and sender, [`convert`] moves messages between raft's
//! protobuf 2 structs and our prost description of the same wire format.

pub mod convert;
pub mod service;
pub mod transport;

pub use transport::{PeerTransport, MAX_FRAME};
